"""The digest of a model's weights that logs and --json record: computed once, kept, read after."""

import hashlib
import json
import os
import shutil

from typer.testing import CliRunner

from aigc.cli.app import app
from aigc.engine import digests


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


sha256_of = digests._sha256


def no_hashing(monkeypatch):
    """Hashing fails from here on; `monkeypatch.undo()` would also undo conftest's user_dirs, so this
    is undone by `hashing_again(monkeypatch)`."""

    def hashed(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(digests, "_sha256", hashed)


def hashing_again(monkeypatch):
    monkeypatch.setattr(digests, "_sha256", sha256_of)


def yours(tiny_model_dir, tmp_path):
    """A copy of the tiny model as a directory of the user's: no digest recorded beside it."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns(digests.RECORD))
    return model


def test_a_model_directorys_digest_is_its_weights_sha256_computed_once_and_kept_outside_it(tiny_model_dir, tmp_path, monkeypatch):
    model = yours(tiny_model_dir, tmp_path)
    before = sorted(os.listdir(model))
    digest = digests.model_digest(model)
    assert digest == sha256(model / "model.safetensors")[: digests.SHOWN]
    assert sorted(os.listdir(model)) == before  # kept in aigc's cache, not in the user's directory
    no_hashing(monkeypatch)
    assert digests.model_digest(model) == digest == digests.model_digest(model, compute=False)  # read, not hashed again
    hashing_again(monkeypatch)
    data = bytearray((model / "model.safetensors").read_bytes())
    data[-1] ^= 1  # the weights written again: hashed again
    (model / "model.safetensors").write_bytes(bytes(data))
    assert digests.model_digest(model, compute=False) is None
    assert digests.model_digest(model) == sha256(model / "model.safetensors")[: digests.SHOWN] != digest


def test_shards_give_the_digest_of_their_sha256sum_lines_and_a_directory_without_weights_none(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"two")
    lines = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in (("model-00001-of-00002.safetensors", b"one"), ("model-00002-of-00002.safetensors", b"two")))
    assert digests.model_digest(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()[: digests.SHOWN]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert digests.model_digest(empty) is None


def test_a_hub_downloads_blob_names_are_its_digest_without_hashing(tmp_path, monkeypatch):
    content = b"weights"
    blob = tmp_path / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(content)
    snapshot = tmp_path / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    no_hashing(monkeypatch)
    assert digests.model_digest(snapshot, compute=False) == hashlib.sha256(content).hexdigest()[: digests.SHOWN]


def test_a_converted_copy_records_its_digest_beside_it_and_loads_read_it(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"converted")
    digests.record_converted(tmp_path)
    assert json.loads((tmp_path / digests.RECORD).read_text())["sha256"] == {"model.safetensors": hashlib.sha256(b"converted").hexdigest()}
    no_hashing(monkeypatch)
    assert digests.model_digest(tmp_path) == hashlib.sha256(b"converted").hexdigest()[: digests.SHOWN]
    assert not (digests.config.cache_dir() / "digests").exists()  # nothing more kept


def test_runs_never_hash_a_directory_of_yours_models_info_does_and_runs_then_record_it(tiny_model_dir, tmp_path, monkeypatch):
    runner = CliRunner()
    directory = yours(tiny_model_dir, tmp_path)
    expected = sha256(directory / "model.safetensors")[: digests.SHOWN]
    model = ("-m", str(directory), "--max-tokens", "4")
    source = tmp_path / "rows.jsonl"
    source.write_text('{"id": 1, "text": "Bees make"}\n')

    def runs(out):
        answer = runner.invoke(app, ["chat", "Bees make", *model, "--json"])
        assert answer.exit_code == 0, answer.output
        summary = runner.invoke(app, ["summarize", "-", *model, "--json"], input="Bees make honey.\n\nCities have rooftops.")
        assert summary.exit_code == 0, summary.output
        assert runner.invoke(app, ["batch", "chat", "-i", str(source), "-o", str(out), *model]).exit_code == 0
        return [json.loads(answer.stdout).get("model_digest"), json.loads(summary.stdout).get("model_digest"), json.loads(out.read_text()).get("model_digest")]

    no_hashing(monkeypatch)  # as a 15 GB model would stall a run after its answer
    assert runs(tmp_path / "before.jsonl") == [None, None, None]  # not known yet: left out
    hashing_again(monkeypatch)
    info = runner.invoke(app, ["models", "info", str(directory), "--json"])
    assert json.loads(info.stdout)["model_digest"] == expected
    assert f"hashing {directory}'s weights ({(directory / 'model.safetensors').stat().st_size / 1e6:.1f} MB)" in info.stderr  # said, as it takes a few seconds a GB
    no_hashing(monkeypatch)
    assert runs(tmp_path / "after.jsonl") == [expected] * 3  # read from what models info kept
    rows = json.loads(runner.invoke(app, ["logs", "--json", "-n", "0"]).stdout)
    assert [row["options"].get("model_digest") for row in rows] == [None, None, expected, expected]  # oldest first
    assert "hashing" not in runner.invoke(app, ["models", "info", str(directory)]).stderr  # once


def test_json_outputs_log_rows_batch_lines_and_models_info_record_a_converted_models_digest(tiny_model_dir, tmp_path, monkeypatch):
    runner = CliRunner()
    expected = sha256(tiny_model_dir / "model.safetensors")[: digests.SHOWN]
    model = ("-m", str(tiny_model_dir), "--max-tokens", "4")
    no_hashing(monkeypatch)  # recorded beside it, as at conversion
    answer = runner.invoke(app, ["chat", "Bees make", *model, "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["model_digest"] == expected
    rows = json.loads(runner.invoke(app, ["logs", "--json", "-n", "0"]).stdout)
    assert [row["options"]["model_digest"] for row in rows] == [expected]
    info = json.loads(runner.invoke(app, ["models", "info", str(tiny_model_dir), "--json"]).stdout)
    assert info["model_digest"] == expected
    echoed = runner.invoke(app, ["chat", "hi", "-m", "echo", "--json"])
    assert "model_digest" not in json.loads(echoed.stdout)  # a model that does not run here has none


def test_a_converted_copy_made_by_an_older_aigc_gets_its_digest_once_and_models_list_only_reads_it(tmp_path, monkeypatch):
    from aigc.engine.models import ModelRef, stored_digest

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"old cache")  # converted before digests were recorded: no record beside it
    ref = ModelRef("old", "pypi-gguf", "pypi:x==1/x.gguf")
    assert stored_digest(ref, tmp_path, compute=False) is None  # as `models list` asks: nothing hashed there
    expected = hashlib.sha256(b"old cache").hexdigest()[: digests.SHOWN]
    assert stored_digest(ref, tmp_path) == expected  # `models info` computes it, and keeps it
    no_hashing(monkeypatch)
    assert stored_digest(ref, tmp_path, compute=False) == expected
