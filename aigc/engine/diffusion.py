"""Image models -> a loaded diffusers pipeline. The only module in aigc that imports diffusers.

Model references go through the shared registry (`models.resolve`): image aliases (`ModelSpec`
with `kind="image"`), hub ids, local diffusers directories (with `model_index.json`) and
single-file checkpoints (`.safetensors` / `.ckpt`, through diffusers' `from_single_file`).
Device and dtype are picked by the same `pick_device` / `pick_dtype` as text models. Nothing
here imports torch or diffusers at module level.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import BadInputError, MissingExtraError, ModelKindError, ModelUnavailableError, install_advice, option, spelt, translated
from .. import config
from . import loading, models, pulling
from .sampling import make_generator

Progress = Callable[..., None]
StepCallback = Callable[[int, int], None]  # (steps done, the scheduler's steps: one more than asked for with PNDM); 0 as the first step starts

INSTALL_HINT = f"image generation needs the image extra (diffusers and Pillow): {install_advice('image')}"
# diffusers' name for a single-file checkpoint's model type -> the text-to-image pipeline that loads it
_SINGLE_FILE_PIPELINES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "playground-v2-5": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "sd35_large": "StableDiffusion3Pipeline",
    "sd35_medium": "StableDiffusion3Pipeline",
    "flux-dev": "FluxPipeline",
    "flux-schnell": "FluxPipeline",
}


def available() -> bool:
    """Whether the image extra (diffusers and Pillow) is installed, without importing it."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("diffusers", "PIL"))
    except (ImportError, ValueError):
        return False


def require() -> None:
    """Raise `MissingExtraError` (exit 2, one line on how to install) unless the extra is installed."""
    if not available():
        raise MissingExtraError(INSTALL_HINT)


def _import_diffusers():
    require()
    try:
        import diffusers
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} [{exc}]") from None
    diffusers.utils.logging.disable_progress_bar()
    # diffusers' advisories (prompt truncated to 77 tokens, outdated scheduler configs) follow
    # transformers' verbosity, which the CLI sets to "error" unless -v.
    level = os.environ.get("DIFFUSERS_VERBOSITY") or os.environ.get("TRANSFORMERS_VERBOSITY")
    if level in getattr(diffusers.utils.logging, "log_levels", {}):
        diffusers.utils.logging.set_verbosity(diffusers.utils.logging.log_levels[level])
    return diffusers


def default_image_model() -> str:
    """The image model used when `-m` is not given: `AIGC_DEFAULT_IMAGE_MODEL`, `default_image_model`
    in the settings file, or `sd-turbo`."""
    return config.default_source("image")[0]


def resolve_image(name: str | None) -> models.ModelRef:
    """A `-m` value as an image model reference; text models are an error that says what to use."""
    if name is None:
        with models.blamed_default("image") as default:
            return resolve_image(default)
    ref = models.resolve(name, "image")
    if ref.kind == "hub" and ref.spec is None:
        return ref  # a bare hub id: taken as a diffusers repository
    if ref.kind == "dir":
        _check_not_a_component(ref)
    if not ref.image:
        raise ModelKindError(
            f"{ref.name} is a text model; {spelt('aigc image', 'the image task')} needs an image model: an image alias from "
            f"{models.MODELS_LISTED}, a diffusers directory (with model_index.json), a .safetensors/.ckpt "
            "checkpoint or a hub id"
        )
    return ref


def _check_not_a_component(ref: models.ModelRef) -> None:
    """A directory of one part of a diffusers pipeline (`sd/unet`: its config.json names diffusers) is a `ModelKindError` naming the pipeline's."""
    settings = models._read_json(Path(ref.location) / "config.json")
    if "_diffusers_version" not in settings:
        return
    parent = Path(ref.location).parent
    where = str(parent) if (parent / "model_index.json").is_file() else "the pipeline's directory"
    raise ModelKindError(
        f"{ref.name} is one part of a diffusers pipeline ({settings.get('_class_name', 'a component')}), not a whole pipeline; "
        f"pass {where}, the one with model_index.json"
    )


def pull_image(ref: models.ModelRef, progress: Progress = models.no_progress) -> Path:
    """The local path of an image model, downloading a hub repository's pipeline files if needed."""
    if ref.kind in ("diffusers", "checkpoint"):
        return Path(ref.location)
    diffusers = _import_diffusers()
    progress(pulling.hub_stage(ref.location))
    try:
        return Path(diffusers.DiffusionPipeline.download(ref.location))
    except Exception as exc:
        raise pulling.hub_unavailable(ref.location, exc) from translated(exc)


@dataclass
class ImageEngine:
    """A loaded text-to-image pipeline: `generate` makes one image from one seed."""

    name: str
    pipeline: Any
    device: str
    dtype: str
    load_seconds: float = 0.0
    defaults: dict[str, Any] = field(default_factory=dict)  # per-model generator defaults (steps, guidance)

    def __repr__(self) -> str:  # the dataclass's would print the whole pipeline
        return f"<ImageEngine {self.name!r} on {self.device} in {str(self.dtype).removeprefix('torch.')}>"

    @property
    def native_size(self) -> tuple[int, int]:
        """The (width, height) the model was trained at."""
        pipe = self.pipeline
        scale = getattr(pipe, "vae_scale_factor", 8)
        sample = getattr(pipe, "default_sample_size", None)
        if sample is None:
            unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
            sample = getattr(getattr(unet, "config", None), "sample_size", None)
        if isinstance(sample, (list, tuple)):
            sample = sample[0]
        side = int(sample * scale) if sample else 512
        return side, side

    def memory_needed(self, width: int, height: int) -> int:
        """Rough peak bytes for one image: the VAE decoder's full-resolution activations dominate
        (a few tensors of width x height x its first block's channels)."""
        vae = getattr(self.pipeline, "vae", None)
        channels = (getattr(getattr(vae, "config", None), "block_out_channels", None) or [128])[0]
        itemsize = 2 if self.dtype in ("bfloat16", "float16") else 4
        return width * height * channels * itemsize * 6

    def memory_free(self) -> int | None:
        """Free bytes where the pipeline runs: CUDA memory, else available RAM (None if unknown)."""
        if self.device == "cuda":
            import torch

            return torch.cuda.mem_get_info()[0]
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    @property
    def max_steps(self) -> int | None:
        """The most denoising steps the pipeline's scheduler takes (its training steps, less its offset)."""
        schedule = getattr(self.pipeline.scheduler, "config", {})
        if "num_train_timesteps" not in schedule:
            return None
        return int(schedule["num_train_timesteps"]) - int(schedule.get("steps_offset", 0) or 0)

    def accepts(self, argument: str) -> bool:
        return argument in inspect.signature(self.pipeline.__call__).parameters

    def generate(
        self,
        prompt: str,
        *,
        seed: int,
        steps: int,
        guidance: float,
        width: int,
        height: int,
        negative: str = "",
        on_step: StepCallback | None = None,
    ):
        """One PIL image. The seed drives a CPU generator, so the starting noise is the same on every device."""
        import torch

        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "width": width,
            "height": height,
            "generator": make_generator(seed, "cpu"),
            "output_type": "pil",
        }
        if negative:
            if not self.accepts("negative_prompt"):
                raise BadInputError(f"{self.name} ({type(self.pipeline).__name__}) takes no negative prompt; leave out {option('negative')}")
            kwargs["negative_prompt"] = negative
        def timesteps() -> int:  # as the pipeline set them for this run (diffusers' own bar counts them)
            found = getattr(self.pipeline.scheduler, "timesteps", None)
            return len(found) if found is not None and len(found) else steps

        if on_step is not None and self.accepts("callback_on_step_end"):

            def step_end(pipe, step, timestep, callback_kwargs):
                on_step(step + 1, timesteps())
                return callback_kwargs

            kwargs["callback_on_step_end"] = step_end
        denoiser = getattr(self.pipeline, "unet", None) or getattr(self.pipeline, "transformer", None)
        started = None
        if on_step is not None and isinstance(denoiser, torch.nn.Module):  # after the prompt's encoding, which is no step

            def first_step(module, args):
                started.remove()
                on_step(0, timesteps())

            started = denoiser.register_forward_pre_hook(first_step)
        try:
            with torch.inference_mode():
                output = self.pipeline(**kwargs)
        finally:
            if started is not None:
                started.remove()
        return output.images[0]


_loaded: dict[tuple, ImageEngine] = {}


def load_image_model(
    name: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress: Progress = models.no_progress,
) -> ImageEngine:
    """Load (downloading first if needed) an image model as an `ImageEngine`; loaded ones are reused,
    and threads asking at once wait for one load."""
    ref = resolve_image(name)
    threads = config.threads()  # a bad setting is an error before the loading note
    progress, announced = loading.announce(ref, _loaded, progress)  # before torch's and diffusers' imports
    loading.use_threads(threads)
    device_name = loading.pick_device(device)
    torch_dtype = loading.pick_dtype(dtype, device_name)
    key = (ref, loading.local_place(ref), device_name, str(torch_dtype))
    return loading.loaded(_loaded, key, lambda: _load(ref, device_name, torch_dtype, progress, announced))


def _load(ref: models.ModelRef, device_name: str, torch_dtype, progress: Progress, announced: bool) -> ImageEngine:
    """The engine of an image model; `announced`: `load_image_model` has reported the loading stage already."""
    diffusers = _import_diffusers()
    path = pull_image(ref, progress)
    if not announced:
        progress(f"loading {ref.name}")
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():  # newer diffusers call it `dtype`; older ones know only `torch_dtype`
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            if ref.kind == "checkpoint":
                pipeline = _load_single_file(diffusers, path, torch_dtype)
            else:
                pipeline = diffusers.DiffusionPipeline.from_pretrained(path, torch_dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailableError(f"could not load {models.loaded_from(ref.name, path)}: {models.first_line(exc)}") from translated(exc)
    if "prompt" not in inspect.signature(pipeline.__call__).parameters:
        raise BadInputError(f"{ref.name} is a {type(pipeline).__name__}, not a text-to-image pipeline")
    pipeline.to(device_name)
    pipeline.set_progress_bar_config(disable=True)
    local = ref.kind in ("diffusers", "checkpoint") and ref.spec is None
    return ImageEngine(
        name=str(Path(ref.location).resolve()) if local else ref.name,
        pipeline=pipeline,
        device=device_name,
        dtype=str(torch_dtype).removeprefix("torch."),
        load_seconds=time.perf_counter() - started,
        defaults=dict(ref.spec.defaults) if ref.spec else {},
    )


def _load_single_file(diffusers, path: Path, torch_dtype):
    """A `.safetensors` / `.ckpt` checkpoint through `from_single_file`. The pipeline's component
    configs come from a diffusers directory beside it (`model_index.json` in the same folder), else
    from the hub (cached after the first time)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

    checkpoint = load_single_file_checkpoint(str(path))
    model_type = infer_diffusers_model_type(checkpoint)
    class_name = _SINGLE_FILE_PIPELINES.get(model_type)
    if class_name is None:
        raise BadInputError(
            f"{path} is a {model_type!r} checkpoint, not a text-to-image model aigc can load from one file "
            f"(it loads {', '.join(sorted(set(_SINGLE_FILE_PIPELINES.values())))}); convert it to a diffusers directory"
        )
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
    if (path.parent / "model_index.json").is_file():
        kwargs["config"] = str(path.parent)
    try:
        return getattr(diffusers, class_name).from_single_file(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        if "config" in kwargs:
            raise
        raise ModelUnavailableError(
            f"loading {path.name} needs its {class_name} configuration from the Hugging Face hub once, "
            "which is unreachable; put the checkpoint in a folder with that pipeline's diffusers config "
            f"files (model_index.json and its subfolders), or pass a diffusers directory as {option('model')} [{type(exc).__name__}]"
        ) from translated(exc)
