"""`aigc image PROMPT -o out.png` (or .jpg, .webp), or `aigc image --from-image out.png -o again.png`."""

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import ui
from ..engine.models import no_progress
from ..errors import BadInputError, UnknownModelError
from ..textio import readable_json
from ..writing import check_writable
from . import complete, examples
from .options import given_model, stdin_text
from .command_defaults import DefaultsCommand, from_table

PANEL = "Model"


def output_paths(output: Optional[str], n: int, force: bool, quality: Optional[int] = None) -> list[Path]:
    """`out.png` for one image, `out-1.png` ... `out-N.png` for several (.jpg, .jpeg and .webp too, by
    the suffix); each must be writable and, without --force, not exist yet."""
    from ..generators.image import FORMATS, SUFFIXES, check_quality

    if not output:
        raise BadInputError('give -o FILE.png (or .jpg, .webp), where to write the image (e.g. aigc image "a red fox" -o fox.png)')
    path = Path(output).expanduser()
    if path.is_dir():
        raise BadInputError(f"-o {output} is a directory; give the file to write in it, e.g. -o {path / 'image.png'}")
    if path.suffix.lower() not in FORMATS:
        raise BadInputError(f"-o {output}: images are written as PNG, JPEG or WebP by the file name's suffix; give a name ending in {SUFFIXES}")
    check_quality(quality, FORMATS[path.suffix.lower()])
    paths = [path] if n == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, n + 1)]
    for target in paths:
        check_writable(target)
        if target.exists() and not force:
            raise BadInputError(f"{target} already exists; pass --force to overwrite it, or choose another -o")
    return paths


def image(
    prompt: Annotated[Optional[str], typer.Argument(metavar="PROMPT", help="What to draw (or pipe it in; optional with --from-image).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Image to write (required): .png, .jpg/.jpeg or .webp, by its suffix; with -n N: NAME-1.png ... NAME-N.png.")] = None,
    n: Annotated[int, typer.Option("-n", help="How many images, 1 to 16; image i uses seed SEED+i-1.")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: a random one, recorded in the image).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's; 30 if it has none).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale; 0 = off (default: the model's; 7.5 if it has none).")] = None,
    size: Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT, multiples of 8 from 64 to 2048 (default: the model's native size).")] = None,
    negative: Annotated[Optional[str], typer.Option(help="Negative prompt: what to keep out of the image.")] = None,
    from_image: Annotated[Optional[str], typer.Option("--from-image", "--from-png", help="Re-run the settings recorded in an image aigc made (PNG, JPEG or WebP); options given here override them.")] = None,
    quality: Annotated[Optional[int], typer.Option(help="JPEG/WebP quality, 1-100 (default: Pillow's, 75 JPEG, 80 WebP); PNG is lossless.")] = None,
    enhance: Annotated[bool, typer.Option("--enhance", help="Have the text model rewrite the prompt into a detailed image prompt first (shown on stderr).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the written paths and the settings as JSON.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Image model alias, diffusers directory, .safetensors/.ckpt checkpoint or hub id.", callback=given_model, rich_help_panel=PANEL, autocompletion=complete.image_models)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.", rich_help_panel=PANEL, autocompletion=complete.devices)] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.", rich_help_panel=PANEL, autocompletion=complete.dtypes)] = "auto",
) -> None:
    """Generate images from a text prompt with a diffusers pipeline; the settings go into each image (PNG, JPEG or WebP)."""
    from ..engine import diffusion
    from ..generators.base import get_generator
    from ..generators.image import check_settings_fit, parse_size, png_settings, read_settings, save_images

    diffusion.require()
    if output and Path(output).suffix.lower() == ".png" and from_table("quality"):  # the table's quality is for the files it applies to
        quality = None
    if from_image == "":  # `--from-image "$IMAGE"` with IMAGE unset: not a run of other settings
        raise BadInputError("--from-image was given an empty file name; give a PNG, JPEG or WebP made by aigc image")
    recorded: dict[str, Any] = read_settings(from_image) if from_image is not None else {}
    if prompt is None and not recorded:
        prompt = stdin_text()
    replayed = prompt is None  # the recorded prompt, and the one it was enhanced from
    prompt = recorded.get("prompt") if replayed else prompt
    width, height = parse_size(size) if size is not None else (recorded.get("width"), recorded.get("height"))
    options = {
        "negative": negative if negative is not None else recorded.get("negative", ""),
        "n": n,
        "seed": seed if seed is not None else recorded.get("seed"),
        "steps": steps if steps is not None else recorded.get("steps"),
        "guidance": guidance if guidance is not None else recorded.get("guidance"),
        "width": width,
        "height": height,
    }
    try:
        generator = get_generator(
            "image",
            model=model or recorded.get("model"),
            device=device,
            dtype=recorded.get("dtype", dtype) if dtype == "auto" else dtype,
        )
        opts = generator.validate(options)
        generator.check_inputs(prompt)
        paths = output_paths(output, n, force, quality)
        with ui.stage_status() as stage:
            generator.load_progress = stage
            generator.engine  # noqa: B018 - loads the model
    except UnknownModelError as exc:
        if model or not recorded.get("model"):
            raise
        raise UnknownModelError(f"{from_image} was made with {recorded['model']}, which is not there now ({exc}); -m MODEL runs its settings on another model") from None
    generator.load_progress = no_progress
    generator.settings(opts)  # what the model cannot take fails before --enhance runs the text model
    original = None
    if enhance:
        with ui.stage_status() as stage:
            enhanced = generator.enhance(prompt, seed=options["seed"], load_progress=stage)
        original, prompt = prompt, enhanced
        if ui.settings.verbosity >= 0:  # unwrapped, so it can be copied whole
            ui.stderr().print(f"enhanced prompt: {prompt}", markup=False, style="dim", soft_wrap=True)
    original = original or (recorded.get("original_prompt") if replayed else None)
    check_settings_fit(paths, {"prompt": generator.preprocess(prompt, opts), **generator.settings(opts), **({"original_prompt": original} if original else {})})  # before the steps run, not after
    with ui.prints_to_stderr(), ui.progress_bar() as progress:  # what generator code prints goes to stderr
        generator.progress = progress
        result = generator(prompt, **options)
    settings = [png_settings(result, i, original_prompt=original) for i in range(n)]
    written = save_images(result["images"], paths, settings, quality=quality)
    per_step = result["seconds_per_step"]
    timing = f", {per_step:.3f} s/step" if per_step else ""
    steps, ran = result["settings"]["steps"], result["timesteps"]
    more = f" (the scheduler runs {ran})" if ran != steps else ""  # PNDM: one more; s/step is over those it ran
    ui.info(f"{n} image{'s' if n > 1 else ''}, {steps} step{'s' if steps != 1 else ''}{more}{timing} on {result['settings']['device']}")
    if as_json:
        data = {
            "images": [{"path": str(path), "seed": seed} for path, seed in zip(written, result["seeds"])],
            "settings": {**result["settings"], **({"original_prompt": original} if original else {})},
            "seconds_per_step": per_step,
        }
        ui.result(json.dumps(readable_json(data), ensure_ascii=False))  # a name's bytes in no UTF-8 (-o, a model's path) as U+FFFD
    else:
        ui.result("\n".join(str(path) for path in written))


EXAMPLES = examples(
    'aigc image "a lighthouse at dusk, oil painting" -o lighthouse.png --seed 1',
    'aigc image "a red fox in snow" -o fox.jpg -n 4 --quality 90   # fox-1.jpg ... fox-4.jpg',
    'aigc image --from-image fox-2.jpg -o again.webp    # the settings recorded in fox-2.jpg again',
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(image)
