"""Loading a text model into an engine: its device, dtype and quantization (checked without torch), and the engines loaded so far."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .. import config
from ..errors import BadInputError, ModelKindError, ModelSettingError, ModelUnavailableError, OptionError, option, spelt, translated
from . import schemes
from .base import Engine
from .models import ModelRef, Progress, first_line, loaded_from, missing_parts, no_progress, resolve, unreadable
from .pulling import bars_on_a_terminal_only, check_cache_writable, converting_elsewhere, converts, first_time, hub_stage, pull


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "int4", "int8")


def check_text_model(ref: ModelRef | None, device: str = "auto", dtype: str = "auto", quantize: str | None = None) -> None:
    """What `load_model` refuses before loading anything (no torch): unknown settings, an image
    model, a remote one (`ref`; None: the default model, not yet resolved) given settings for how
    a model runs here, quantize off the CPU or not in float32."""
    check_names(device, dtype, quantize)
    if ref is not None and ref.kind == "remote":
        local = [option(key, value) for key, value in (("device", device), ("dtype", dtype), ("quantize", quantize)) if value not in (None, "auto", "none")]
        if local:
            them = "them" if len(local) > 1 else "it"
            raise ModelSettingError(f"{' and '.join(local)} {'set' if len(local) > 1 else 'sets'} how a model runs here; {ref.name} runs on {schemes.runs_on(ref.engine)}, which decides that: leave {them} out")
        return
    if ref is not None and ref.image:
        run = spelt(f"`aigc image -m {ref.name}`", f"aigc.generate('image', prompt, model={ref.name!r})")
        raise ModelKindError(f"{ref.name} is an image model, for the image task ({run}); pick a text model")
    if quantize not in (None, "none") and (device not in ("auto", "cpu") or dtype not in ("auto", "float32")):
        raise ModelSettingError(f"{option('quantize', quantize)} runs on the CPU in float32; use {option('device', 'cpu')} and {option('dtype', 'auto')}")


def check_names(device: str = "auto", dtype: str = "auto", quantize: str | None = None) -> None:
    """A `BadInputError` for a device, dtype or quantization aigc does not know (names only: no torch)."""
    if device not in DEVICES:
        raise OptionError("device", f"must be auto, cpu, cuda or mps, got {device!r}")
    if dtype not in DTYPES:
        raise OptionError("dtype", f"must be auto, float32, bfloat16 or float16, got {dtype!r}")
    if quantize not in (None, *QUANTIZATIONS):
        raise OptionError("quantize", f"must be none, int4 or int8, got {quantize!r}")


def use_threads(count: int | None) -> None:
    """Give torch `count` CPU threads, as `config.threads()` reads it (`--threads`, `AIGC_THREADS`,
    `threads` in config.toml); None: torch keeps its own (one per core). Its inter-op threads are
    left: aigc runs no inter-op work, and torch takes their number only once, before any parallel work."""
    if count is not None:
        import torch

        torch.set_num_threads(count)


def pick_device(device: str = "auto") -> str:
    """`auto` -> cuda, then mps, then cpu. An explicit device that is missing is an error."""
    import torch

    check_names(device=device)

    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if device == "auto":
        return next(name for name, ok in available.items() if ok)
    if not available[device]:
        raise BadInputError(f"device {device!r} is not available here; use {option('device', 'auto')} or {option('device', 'cpu')}")
    return device


def pick_dtype(dtype: str, device: str):
    """`auto` -> bfloat16 on CUDA (float16 without bf16 support) and on CPUs with native bf16
    (faster there: 36 vs 22 tok/s measured on this project's dev CPU), float16 on MPS, else float32."""
    import torch

    check_names(dtype=dtype)
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "bfloat16" and device == "mps" and not torch.backends.mps.is_macos_or_newer(14, 0):  # else torch's TypeError as the model moves there
        raise OptionError("dtype", "bfloat16 needs macOS 14 or newer on the mps device; use float16 (what auto picks there) or float32")
    if dtype != "auto":
        return names[dtype]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


def dtype_used(name: str | None, device: str = "auto", dtype: str = "auto", quantize: str | None = None) -> str | None:
    """The dtype `load_model` runs model `name` (None: the default) in with these settings, without
    loading it: "bfloat16" where auto picks that; None for one that does not run here (echo, a remote server)."""
    ref = resolve(name)
    if ref.kind in ("echo", "remote") or ref.image:
        return None
    return str(pick_dtype("float32" if quantize not in (None, "none") else dtype, pick_device(device))).removeprefix("torch.")


_loaded: dict[tuple, object] = {}
load_lock = threading.Lock()  # one model load at a time (text or image): concurrent callers wait and get the same engine


def loaded(cache: dict, key: tuple, make: Callable[[], Any]) -> Any:
    """`cache[key]`, made by `make()` the first time under `load_lock`; a model already loaded is
    handed out without waiting for another's load."""
    engine = cache.get(key)  # read once: `unload` may drop the key between two reads
    if engine is None:
        with load_lock:
            engine = cache.get(key)
            if engine is None:
                engine = cache[key] = make()
    return engine


def load_model(
    name: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress: Progress = no_progress,
    trust_remote_code: bool = False,
    quantize: str | None = None,
) -> Engine:
    """Load (pulling first if needed) and return its `Engine` (a `LocalEngine`; for SCHEME:LOCATION
    what its engine scheme's factory makes, an `OpenAIEngine` for openai: and remote:); loaded engines are reused, and threads asking at once wait for one load.

    `quantize="int4"` stores Linear weights as int4 in groups of 32 (weight-only, CPU only);
    `quantize="int8"` as int8 with activations quantized on the fly (dynamic quantization, CPU only)."""
    ref = resolve(name)
    check_text_model(ref, device, dtype, quantize)
    if ref.kind == "echo":
        from ..testing import EchoEngine

        return EchoEngine()
    if ref.kind == "remote":  # made by its engine scheme's factory (openai:, remote:, a plugin's)
        from .schemes import maker

        more, make = maker(ref.engine, ref.keyless)
        key = (ref, *more)
    else:
        threads = config.threads()  # a bad setting is an error before the loading note
        progress, announced = announce(ref, _loaded, progress)
        use_threads(threads)
        device_name = pick_device(device)
        quantize = None if quantize == "none" else quantize
        if quantize and (device_name != "cpu" or dtype not in ("auto", "float32")):
            raise BadInputError(f"{option('quantize', quantize)} runs on the CPU in float32; use {option('device', 'cpu')} and {option('dtype', 'auto')}")
        if quantize == "int4":
            from .quantize import check_int4_kernel

            check_int4_kernel()
        torch_dtype = pick_dtype("float32" if quantize else dtype, device_name)
        key = (ref, local_place(ref), device_name, str(torch_dtype), quantize, trust_remote_code)  # a call that runs no remote code never gets an engine that does
        make = functools.partial(_load, ref, device_name, torch_dtype, quantize, progress, trust_remote_code, announced)
    return loaded(_loaded, key, make)


def unload(name: str | None = None) -> list[Any]:
    """Drop from the caches `load_model` and `load_image_model` hand engines out of those of model
    `name` (every device, dtype and quantization; None: every model), and return them."""
    caches = [_loaded]
    if "aigc.engine.diffusion" in sys.modules:  # no image model was loaded otherwise
        caches.append(sys.modules["aigc.engine.diffusion"]._loaded)
    ref = None if name is None else resolve(name, kind=None)
    dropped = []
    with load_lock:
        for cache in caches:
            for key in [key for key in cache if ref is None or _same_model(key, ref)]:
                dropped.append(cache.pop(key))
    return dropped


def local_place(ref: ModelRef) -> str | None:
    """The absolute path of a model directory or file (`./model` from another directory is another
    model), as engine caches key it; None for other models."""
    return str(Path(ref.location).resolve()) if ref.kind in ("dir", "gguf", "diffusers", "checkpoint") else None


def _same_model(key: tuple, ref: ModelRef) -> bool:
    """Whether the engine cached under `key` is of model `ref`, whatever name reached it (an alias,
    its hub id, `hf:ID`); a model on disk by its path when loaded, whatever the working directory now."""
    cached = key[0]
    if cached.kind != ref.kind:
        return False
    place = local_place(ref)
    return key[1] == place if place is not None else cached.location == ref.location


def announce(ref: ModelRef, cache: dict, progress: Progress) -> tuple[Progress, bool]:
    """Report the first stage of loading `ref` before torch's import (seconds), so a terminal shows
    it at once: `loading NAME` for a model on disk (True: the loader reports it no more), the hub
    lookup for a hub one, the once-only download and conversion for a GGUF not converted yet, unless
    another aigc is converting it, which the pull says it waits for (the callback returned passes
    over the stage when the pull reports it again).
    Nothing for a model in `cache`, loaded already."""
    if ref in {key[0] for key in list(cache)}:  # list(): other threads add
        return progress, False
    if ref.installed and ref.kind != "hub":
        progress(f"loading {ref.name}")
        return progress, True
    first = hub_stage(ref.location) if ref.kind == "hub" else first_time(ref) if converts(ref) and not converting_elsewhere(ref) else None
    if first is None:
        return progress, False
    if converts(ref):
        check_cache_writable(ref)  # before saying it converts there
    progress(first)
    return (lambda stage, *rest: None if stage == first and not rest else progress(stage, *rest)), False


def _load(ref: ModelRef, device_name: str, torch_dtype, quantize: str | None, progress: Progress, trust_remote_code: bool, announced: bool):
    """The engine of a local model; `announced`: `load_model` has reported the loading stage already."""
    pulling = time.perf_counter()
    path = pull(ref, progress) if not ref.installed or ref.kind == "hub" else Path(ref.load_path())
    pulled = time.perf_counter() - pulling if not ref.installed else 0.0  # a download or conversion, not a cache lookup
    denied = unreadable(Path(path))
    if denied:  # else transformers' loaders say "no such file"
        raise ModelUnavailableError(f"could not load {loaded_from(ref.name, path)}: {denied}")
    if not announced:
        progress(f"loading {ref.name}")
    started = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else a fork after tokenizing (multiprocessing) gets tokenizers' deadlock warning; a caller's own setting holds (README)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with bars_on_a_terminal_only():  # its "Loading weights" bar
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (ImportError, MemoryError):  # a missing library or memory: not the files' fault
        raise
    except Exception as exc:  # noqa: BLE001 - broken files fail in many ways (KeyError from a tokenizer.json, ...)
        lacking = missing_parts(Path(path)) if ref.kind == "dir" else []
        if lacking:
            raise BadInputError(f"could not load {loaded_from(ref.name, path)}: it has no {' and no '.join(lacking)}; copy the whole model directory") from translated(exc)
        raise ModelUnavailableError(f"could not load {loaded_from(ref.name, path)}: {first_line(exc)} (is it a whole model: config.json, weights and tokenizer files?)") from translated(exc)
    model.to(device_name).eval()
    if device_name == "cpu" and torch_dtype in (torch.bfloat16, torch.float16) and not quantize:
        float32_output_layer(model)
    if quantize:
        from . import quantize as quantization

        progress(f"converting {ref.name}'s weights to {quantize}")
        model = {"int4": quantization.quantize_int4, "int8": quantization.quantize_int8}[quantize](model)
    from .local import LocalEngine

    variant = " ".join(filter(None, (device_name, str(torch_dtype).removeprefix("torch."), quantize, fingerprint(Path(path)))))
    engine = LocalEngine(ref.name, model, tokenizer, load_seconds=time.perf_counter() - started, variant=variant)
    engine.stats.pull_seconds = pulled
    engine.modified = written(Path(path))
    engine.weights = str(path)
    return engine


def fingerprint(path: Path) -> str:
    """Which weights `path` (a model directory or file) holds, as its resolved place and its files'
    sizes and times tell: `./model` in two projects, or a model saved again in place, differ."""
    path = path.resolve()
    files = sorted(entry for entry in path.iterdir() if entry.is_file()) if path.is_dir() else [path]
    stamps = "\n".join(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}" for entry in files for stat in [entry.stat()])
    return hashlib.sha256(os.fsencode(f"{path}\n{stamps}")).hexdigest()[:12]


def written(path: Path) -> float:
    """When the weights at `path` (a model directory or file) were last written: its newest file's modification time
    (a hub snapshot's files are links to the downloaded blobs, whose times these are)."""
    files = [entry for entry in path.iterdir() if entry.is_file()] if path.is_dir() else [path]
    return max((entry.stat().st_mtime for entry in files), default=path.stat().st_mtime)


def float32_output_layer(model) -> None:
    """Give a half-precision model a float32 copy of its output layer, fed float32 hidden states, so
    its logits come whole: in bfloat16 they come in steps of 1/8 at the embedded model's scale,
    which ties near-equal tokens (classify's label probabilities) and derails greedy decoding (an
    answer held to a JSON schema that never closed its string). Measured here on the embedded model:
    the copy takes 113 MB, and a decoding step of the layer 6.1 ms against 5.8 ms in bfloat16. The
    model's own forward still applies it, so any scaling or soft-capping after it stays."""
    import torch

    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear:  # a quantized or custom layer keeps its own precision
        return
    full = torch.nn.utils.skip_init(torch.nn.Linear, head.in_features, head.out_features, bias=head.bias is not None, device=head.weight.device, dtype=torch.float32)  # no random init of what copy_ overwrites (0.14 s a load)
    with torch.no_grad():
        full.weight.copy_(head.weight)
        if head.bias is not None:
            full.bias.copy_(head.bias)
    full.requires_grad_(False)
    full.register_forward_pre_hook(lambda module, args: (args[0].float(), *args[1:]))
    model.set_output_embeddings(full)  # no longer tied to the input embeddings, which stay as they are
