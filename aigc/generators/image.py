"""Text to image: a prompt -> PIL images through a diffusers pipeline (`engine/diffusion.py`).

    gen = aigc.get_generator("image", model="sd-turbo")
    result = gen("a lighthouse at dusk", seed=1, width=512, height=512)
    save_images(result["images"], ["a.png"], [png_settings(result, 0)])  # or a.jpg, a.webp

Image `i` of `n` uses seed `seed + i` and is made on its own, so `n=1, seed=seed + i` gives the
same pixels. The settings written into each image (`save_images`: a PNG text chunk, or the EXIF
UserComment of a JPEG or WebP) are enough to make it again (`read_settings`, `aigc image
--from-image`). Nothing here imports torch, diffusers or Pillow at module level.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import BadInputError, ModelSettingError, OptionError, option, spelt
from ..textio import parse_json
from ..writing import file_mode
from .base import Generator, warn

MIN_SIDE = 64
MAX_SIDE = 2048
MAX_IMAGES = 16
MAX_STEPS = 1000
FALLBACK_DEFAULTS = {"steps": 30, "guidance": 7.5}  # for models that register no defaults of their own
METADATA_KEY = "aigc"
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}  # by the file name's suffix
SUFFIXES = ".png, .jpg, .jpeg or .webp"
EXIF_IFD, USER_COMMENT, SOFTWARE = 0x8769, 0x9286, 0x0131
ASCII_COMMENT = b"ASCII\0\0\0"  # a UserComment's 8-byte character code; the settings JSON is written \u-escaped, so ASCII
MAX_JPEG_EXIF = 65533  # one JPEG APP1 segment
SETTINGS = ("prompt", "negative", "model", "seed", "steps", "guidance", "width", "height", "dtype", "device")


@dataclass
class ImageOptions:
    negative: str = ""
    n: int = 1
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None


def parse_size(text: str) -> tuple[int, int]:
    """`"512x768"` -> (512, 768); `"512"` -> (512, 512)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×*]\s*(\d+))?\s*", text or "")
    if not match:
        raise OptionError("size", f"must be WIDTHxHEIGHT like 512x512, got {text!r}")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def check_size(width: int, height: int) -> None:
    size = f"{width}x{height}"
    if width % 8 or height % 8:
        fixed = "x".join(str(min(MAX_SIDE, max(MIN_SIDE, round(side / 8) * 8))) for side in (width, height))
        raise BadInputError(f"{size}: width and height must be multiples of 8, e.g. {fixed}")
    if min(width, height) < MIN_SIDE:
        raise BadInputError(f"{size} is too small: at least {MIN_SIDE} pixels a side")
    if max(width, height) > MAX_SIDE:
        raise BadInputError(f"{size} is too large: at most {MAX_SIDE} pixels a side; use a smaller size")


class ImageGenerator(Generator):
    """Generates images from a prompt. Unset steps/guidance/size come from the model (its registered defaults, its native size).

    `self.engine` is an `ImageEngine` (engine/diffusion.py), not a text `Engine`. `text_model` is the
    text model `enhance` uses (default: the default text model)."""

    name = "image"
    description = "Generate images from a text prompt with a diffusers pipeline"
    samples = False  # its seed is an option
    Options = ImageOptions

    def __init__(self, *args: Any, text_model: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.text_model = text_model

    @classmethod
    def check_model(cls, model: str | None, device: str = "auto", dtype: str = "auto", quantize: str | None = None) -> None:
        from ..engine.diffusion import resolve_image
        from ..engine.loading import check_names

        if quantize not in (None, "none"):
            raise ModelSettingError(f"{option('quantize', quantize)} is for text models; image models load as they are: leave it out")
        check_names(device, dtype)
        if model is not None:
            resolve_image(model)

    @property
    def engine(self):
        if self._engine is None:
            from ..engine.diffusion import load_image_model

            self._engine = load_image_model(self.model, self.device, self.dtype, progress=self.load_progress)
        return self._engine

    def validate(self, options: dict[str, Any]) -> ImageOptions:
        from ..engine.diffusion import require

        require()
        opts = super().validate(options)
        if not 1 <= opts.n <= MAX_IMAGES:
            raise OptionError("n", f"must be between 1 and {MAX_IMAGES}, got {opts.n}")
        if opts.steps is not None and opts.steps < 1:
            raise OptionError("steps", f"must be at least 1, got {opts.steps}")
        if opts.steps is not None and opts.steps > MAX_STEPS:
            raise OptionError("steps", f"must be at most {MAX_STEPS}, got {opts.steps}")
        if opts.guidance is not None and not 0 <= opts.guidance < math.inf:  # nan too
            raise OptionError("guidance", f"must be 0 or more and finite (0 turns guidance off), got {opts.guidance}")
        if opts.seed is not None and not 0 <= opts.seed < 2**63 - MAX_IMAGES:
            raise OptionError("seed", f"must be from 0 to {2**63 - MAX_IMAGES - 1} (image i uses seed + i), got {opts.seed}")
        if (opts.width is None) != (opts.height is None):
            raise BadInputError("give both width and height, or neither (the model's native size)")
        if opts.width is not None:
            check_size(opts.width, opts.height)
        return opts

    def check_batch(self, opts: ImageOptions) -> None:
        """Images are files, not the JSON Lines results `aigc batch` and `many` give back."""
        loop = spelt('n=0; while read -r p; do n=$((n+1)); aigc image "$p" -o "image-$n.png"; done < prompts.txt', "call the image generator once per prompt and save_images its images")
        raise BadInputError(f"image is no batch task: its results are image files, not rows of text; for many prompts, {loop}")

    def check_inputs(self, prompt: Any) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadInputError("the prompt is empty; say what to draw, e.g. aigc image \"a red fox in snow\" -o fox.png")

    def preprocess(self, prompt: str, opts: ImageOptions) -> str:
        return " ".join(prompt.split())

    def settings(self, opts: ImageOptions) -> dict[str, Any]:
        """The full settings of a run: the options, with unset ones filled from the model and a seed
        drawn; settings the loaded model cannot take (size, steps) are a `BadInputError`."""
        engine = self.engine
        width, height = (opts.width, opts.height) if opts.width else engine.native_size
        check_size(width, height)
        needed, free = engine.memory_needed(width, height), engine.memory_free()
        if free is not None and needed > free:
            raise BadInputError(
                f"{width}x{height} is too large for memory here: decoding needs about {needed / 1e9:.1f} GB "
                f"and {free / 1e9:.1f} GB is free; use a smaller size"
            )
        defaults = {**FALLBACK_DEFAULTS, **engine.defaults}
        steps = opts.steps or int(defaults["steps"])
        if engine.max_steps is not None and steps > engine.max_steps:
            raise BadInputError(f"{engine.name}'s scheduler takes at most {engine.max_steps} steps; lower {option('steps')}")
        guidance = float(opts.guidance if opts.guidance is not None else defaults["guidance"])
        return {
            "negative": opts.negative if guidance > 1 else "",  # pipelines use it only with guidance: not recorded as applied
            "model": engine.name,
            "seed": opts.seed if opts.seed is not None else secrets.randbelow(2**31),
            "steps": steps,
            "guidance": guidance,
            "width": width,
            "height": height,
            "dtype": engine.dtype,
            "device": engine.device,
        }

    def forward(self, prompt: str, opts: ImageOptions, sampling: dict[str, Any]):
        settings = {"prompt": prompt, **self.settings(opts)}
        if opts.negative and not settings["negative"]:
            whose = "" if opts.guidance is not None else " (the model's default)"
            warn(f"{option('negative')} changes nothing here: the negative prompt is used only with guidance above 1, and it is {settings['guidance']:g}{whose}; give {option('guidance')} above 1 to use it")
        timesteps = [settings["steps"]]  # an image's denoising steps: the scheduler's (PNDM runs one more), once it has set them
        images, seeds, per_step = [], [], []
        for index in range(opts.n):
            seed = settings["seed"] + index
            starts: list[float] = []
            ends: list[float] = []

            def on_step(done: int, steps: int, index: int = index, starts: list = starts, ends: list = ends) -> None:
                (ends if done else starts).append(time.perf_counter())
                timesteps[0] = steps
                self.progress(index * steps + done, steps * opts.n, "denoising")

            self.progress(index * timesteps[0], timesteps[0] * opts.n, "denoising")
            images.append(
                self.engine.generate(
                    prompt,
                    seed=seed,
                    steps=settings["steps"],
                    guidance=settings["guidance"],
                    width=settings["width"],
                    height=settings["height"],
                    negative=settings["negative"],
                    on_step=on_step,
                )
            )
            seeds.append(seed)
            # from the first step's start (else its end) to the last one's end: denoising only (no prompt encoding, no decoding)
            counted = len(ends) - (0 if starts else 1)
            if counted > 0:
                per_step.append((ends[-1] - (starts or ends)[0]) / counted)
        return images, seeds, settings, per_step, timesteps[0]

    def postprocess(self, raw, opts: ImageOptions) -> dict[str, Any]:
        images, seeds, settings, per_step, timesteps = raw
        return {
            "images": images,
            "seeds": seeds,
            "settings": settings,
            "timesteps": timesteps,
            "seconds_per_step": round(sum(per_step) / len(per_step), 4) if per_step else None,
        }

    def enhance(self, prompt: str, seed: int | None = None, template: str = "image-enhance", load_progress=None) -> str:
        """Rewrite a short idea into a detailed image prompt with the text model (`prompts/image-enhance.j2`).
        Returns the prompt unchanged if the model answers with nothing usable."""
        from .base import get_generator

        from ..engine.models import resolve

        self.check_inputs(prompt)
        local = resolve(self.text_model).kind != "remote"  # a remote server picks its own device
        chat = get_generator("chat", model=self.text_model, device=self.device if local else "auto", load_progress=load_progress)
        sampling = {"seed": seed} if seed is not None else {}
        answer = chat(prompt, sampling=sampling, template=template)
        return clean_prompt(answer["text"], unfinished=answer["finish_reason"] == "length") or " ".join(prompt.split())


def clean_prompt(text: str, max_words: int = 50, unfinished: bool = False) -> str:
    """The first non-empty line of a model's answer, without a label or quotes, at most `max_words`
    words (about 65 of CLIP's 77 tokens); one that is too long or `unfinished` (max_tokens cut it
    off) is cut back to its last sentence or phrase."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^\s*(?:\*\*)?(?:enhanced |image |detailed )?prompt(?:\*\*)?\s*:\s*", "", line, flags=re.I)
    line = "".join(ch for ch in line if ch.isprintable()).strip().strip("\"'`“”").strip()
    words = line.split()
    kept = " ".join(words[:max_words])
    if len(words) <= max_words and not unfinished or kept.endswith((".", "!", "?")):
        return kept
    cut = max(kept.rfind(". "), kept.rfind(", "), kept.rfind("; "))
    return kept[: cut + 1].rstrip(",;") if cut > len(kept) // 2 else kept


def png_settings(result: dict[str, Any], index: int, **extra: Any) -> dict[str, Any]:
    """The settings to record in image `index` of a result (its own seed), plus `extra` (e.g. original_prompt)."""
    return {**result["settings"], "seed": result["seeds"][index], **{k: v for k, v in extra.items() if v is not None}}


def image_format(path: str | os.PathLike) -> str:
    """The format a file name asks for by its suffix: "PNG" (.png), "JPEG" (.jpg, .jpeg) or "WEBP"
    (.webp); another suffix is a `BadInputError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        got = f"its suffix is {suffix}" if suffix else "it has no suffix"
        raise BadInputError(f"{os.fspath(path)}: images are written as PNG, JPEG or WebP by the file name's suffix, and {got}; give a name ending in {SUFFIXES}")
    return FORMATS[suffix]


def check_quality(quality: int | None, kind: str | None = None) -> None:
    """`quality` (1-100) is for JPEG and WebP; given for a `kind` "PNG" file (lossless) it is an error."""
    if quality is None:
        return
    if kind == "PNG":
        raise OptionError("quality", "is for JPEG and WebP files; PNG is lossless: leave it out, or write a .jpg or .webp")
    if not 1 <= quality <= 100:
        raise OptionError("quality", f"must be from 1 to 100, got {quality}")


def _settings_json(settings: dict[str, Any], ascii_only: bool = False) -> str:
    from .. import __version__

    return json.dumps({**settings, "aigc_version": __version__}, ensure_ascii=ascii_only)


def _png_info(settings: dict[str, Any]):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(METADATA_KEY, _settings_json(settings), zip=False)
    # The "parameters" chunk other Stable Diffusion tools read.
    parameters = settings["prompt"]
    if settings.get("negative"):
        parameters += f"\nNegative prompt: {settings['negative']}"
    parameters += (
        f"\nSteps: {settings['steps']}, CFG scale: {settings['guidance']}, Seed: {settings['seed']}, "
        f"Size: {settings['width']}x{settings['height']}, Model: {settings['model']}"
    )
    info.add_itxt("parameters", parameters)
    return info


def _exif(settings: dict[str, Any], kind: str, target: Path) -> bytes:
    """EXIF for a JPEG or WebP: the settings JSON as its UserComment, aigc as its Software."""
    from PIL import Image

    from .. import __version__

    exif = Image.Exif()
    exif[SOFTWARE] = f"aigc {__version__}"
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = ASCII_COMMENT + _settings_json(settings, ascii_only=True).encode("ascii")
    data = exif.tobytes()
    if kind == "JPEG" and len(data) > MAX_JPEG_EXIF:
        raise BadInputError(f"{target}: the settings ({len(data)} bytes with a prompt this long) do not fit a JPEG's 64 KB of EXIF; write a .png or .webp")
    return data


def check_settings_fit(paths: Sequence[str | os.PathLike], settings: dict[str, Any]) -> None:
    """The `BadInputError` `save_images` gives where `settings` (a prompt this long) do not fit a
    JPEG's EXIF, for a caller to raise before the images are made; nothing for other formats."""
    for target in paths:
        if image_format(target) == "JPEG":
            _exif({**settings, "seed": 2**32}, "JPEG", Path(target))  # any seed: the widest
            return


def save_images(
    images: Sequence[Any],
    paths: Sequence[str | os.PathLike],
    settings: Sequence[dict[str, Any]],
    quality: int | None = None,
    format: str | None = None,
) -> list[Path]:
    """Write each image in the format its suffix names (`image_format`: .png, .jpg/.jpeg, .webp) with
    its settings: PNG text chunks, or a JPEG's or WebP's EXIF UserComment. `quality` (1-100) is for
    the JPEG and WebP files among them (None: Pillow's, 75 and 80; given for PNG files alone, an
    error); `format` ("PNG", "JPEG", "WEBP") overrides the suffix.
    All files are written to temp files beside their targets first and renamed into place only when
    every one succeeded."""
    if format and format.upper() not in FORMATS.values():  # checked with no images too
        raise OptionError("format", f"must be PNG, JPEG or WEBP, got {format!r}")
    targets = [Path(p).expanduser() for p in paths]
    kinds = [format.upper() if format else image_format(target) for target in targets]
    check_quality(quality, "PNG" if kinds and set(kinds) == {"PNG"} else None)
    temps: list[str] = []
    try:
        for image, target, kind, meta in zip(images, targets, kinds, settings, strict=True):
            real = Path(os.path.realpath(target))
            if kind == "PNG":
                saving: dict[str, Any] = {"pnginfo": _png_info(meta)}
            else:
                saving = {"exif": _exif(meta, kind, target), **({"quality": quality} if quality is not None else {})}
                if image.mode not in ("RGB", "L"):
                    image = image.convert("RGB")
            fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as handle:
                image.save(handle, format=kind, **saving)
            os.chmod(tmp, file_mode(real))
        for tmp, target in zip(temps, targets):
            os.replace(tmp, os.path.realpath(target))
    except BaseException:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return targets


def save_pngs(images: Sequence[Any], paths: Sequence[str | os.PathLike], settings: Sequence[dict[str, Any]]) -> list[Path]:
    """`save_images` as PNG whatever the suffix (as before there were other formats)."""
    return save_images(images, paths, settings, format="PNG")


def _exif_comment(image) -> str | None:
    """A JPEG's or WebP's EXIF UserComment written as ASCII (as `save_images` writes it), else None."""
    try:
        comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (OSError, ValueError, SyntaxError, TypeError):  # damaged EXIF
        return None
    if isinstance(comment, bytes) and comment.startswith(ASCII_COMMENT):
        return comment[len(ASCII_COMMENT) :].decode("ascii", "replace")
    return None


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings `save_images` recorded in a PNG, JPEG or WebP; a missing file, another format or
    an image without aigc settings is a `BadInputError`."""
    from PIL import Image, UnidentifiedImageError

    source = Path(path).expanduser()
    wanted = "give a PNG, JPEG or WebP made by aigc image"
    if not source.is_file():
        raise BadInputError(f"no such file: {path}" if not source.exists() else f"{path} is not a file; {wanted}")
    try:
        with Image.open(source) as image:
            kind = image.format
            if kind == "PNG":
                text = dict(getattr(image, "text", {}) or {}).get(METADATA_KEY)
            else:
                text = _exif_comment(image) if kind in ("JPEG", "WEBP") else None
    except (UnidentifiedImageError, OSError):
        raise BadInputError(f"{path} is not an image; {wanted}") from None
    if kind not in FORMATS.values():
        raise BadInputError(f"{path} is a {kind}, not a PNG, JPEG or WebP; {wanted}")
    try:
        recorded = parse_json(text) if text is not None else None
    except ValueError:
        recorded = None
    if recorded is None:
        raise BadInputError(f"{path} has no aigc settings in it (it was not made by aigc image, or they were stripped)")
    if not isinstance(recorded, dict) or not recorded.get("prompt"):
        raise BadInputError(f"{path} has damaged aigc settings; they hold no prompt")
    return {key: recorded[key] for key in (*SETTINGS, "original_prompt") if key in recorded}
