"""Thread control: `aigc --threads N`, `AIGC_THREADS` and `threads` in config.toml reach
torch.set_num_threads when a local model loads; bad values stop the command before any load."""

import pytest
import torch
from typer.testing import CliRunner

from aigc import config
from aigc.cli.app import app
from aigc.engine.loading import load_model

runner = CliRunner()


@pytest.fixture
def asked(monkeypatch) -> list[int]:
    """The counts given to torch.set_num_threads (mocked: the test process keeps its threads)."""
    counts: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", counts.append)
    return counts


def chat(tiny_model_dir, *global_options, env=None):
    args = [*global_options, "chat", "-m", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--max-tokens", "2", "--no-log", "hi"]
    return runner.invoke(app, args, env=env)


def test_the_threads_option_reaches_torch(tiny_model_dir, asked):
    result = chat(tiny_model_dir, "--threads", "3")
    assert result.exit_code == 0, result.output
    assert asked == [3]


def test_the_option_comes_before_the_variable(tiny_model_dir, asked):
    result = chat(tiny_model_dir, "--threads", "2", env={"AIGC_THREADS": "1"})
    assert result.exit_code == 0, result.output
    assert asked == [2]


def test_aigc_threads_reaches_torch(tiny_model_dir, asked, monkeypatch):
    monkeypatch.setenv("AIGC_THREADS", " 1 ")
    load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert asked == [1]


def test_the_settings_file_comes_after_the_variable(tiny_model_dir, asked, monkeypatch):
    config.settings_file().parent.mkdir(parents=True)
    config.settings_file().write_text("threads = 4\n")
    load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    monkeypatch.setenv("AIGC_THREADS", "2")
    load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert asked == [4, 2]


def test_unset_leaves_torch_its_own_threads(tiny_model_dir, asked):
    result = chat(tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert asked == []


@pytest.mark.parametrize(
    "options, env, message",
    [
        (["--threads", "0"], {}, "Error: --threads must be a whole number of 1 or more, got 0"),
        (["--threads", "-2"], {}, "Error: --threads must be a whole number of 1 or more, got -2"),
        (["--threads", "two"], {}, "Error: --threads must be a whole number, got 'two' (see `aigc --help`)"),
        ([], {"AIGC_THREADS": "0"}, "Error: AIGC_THREADS must be a whole number of 1 or more, got '0'"),
        ([], {"AIGC_THREADS": "1.5"}, "Error: AIGC_THREADS must be a whole number of 1 or more, got '1.5'"),
        ([], {"AIGC_THREADS": "all"}, "Error: AIGC_THREADS must be a whole number of 1 or more, got 'all'"),
    ],
)
def test_a_bad_count_is_one_line_before_any_load(tiny_model_dir, asked, monkeypatch, options, env, message):
    import aigc.engine.loading as loading

    monkeypatch.setattr(loading, "_load", lambda *args: pytest.fail("a model loaded"))
    result = chat(tiny_model_dir.parent / "not-loaded", *options, env=env)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [message]
    assert asked == []


def test_a_bad_count_in_the_settings_file_names_the_file(tiny_model_dir, asked, tmp_path):
    import shutil

    config.settings_file().parent.mkdir(parents=True)
    config.settings_file().write_text("threads = \"2\"\n")
    fresh = shutil.copytree(tiny_model_dir, tmp_path / "model")  # not loaded yet: no loading note comes before the error either
    result = chat(fresh, "-v")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"Error: threads in {config.settings_file()} must be a whole number of 1 or more (threads = 2), got '2'; fix it or remove the line"]
    assert asked == []


def test_threads_after_the_command_reaches_torch(tiny_model_dir, asked):
    for given in (["--threads", "2"], ["--threads=3"]):
        args = ["chat", "-m", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--max-tokens", "2", "--no-log", *given, "hi"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert asked == [2, 3]


def test_an_image_model_gets_the_threads_too(tmp_path, asked, monkeypatch):
    from test_image import build_tiny_pipeline

    from aigc.engine.diffusion import load_image_model

    monkeypatch.setattr(config, "given_threads", 2)  # as `aigc --threads 2 image ...` sets it
    load_image_model(str(build_tiny_pipeline(tmp_path / "pipeline")), device="cpu", dtype="float32")
    assert asked == [2]


def test_served_models_get_the_threads_too(tiny_model_dir, asked, monkeypatch):
    from aigc.serve.app import ServeSettings
    from aigc.serve.running import build

    monkeypatch.setenv("AIGC_THREADS", "1")
    build([str(tiny_model_dir)], ServeSettings(), device="cpu", dtype="float32")
    assert asked == [1]
