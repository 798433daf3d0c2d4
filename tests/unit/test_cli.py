"""The CLI on a tiny random model: options, errors, exit codes, output files, lazy imports."""

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from aigc import hookimpl, plugins
from aigc.cli.app import app

runner = CliRunner()


def invoke(*args, input=None, env=None):
    return runner.invoke(app, list(args), input=input, env=env)


def imports_after(argv):
    code = (
        "import sys, runpy\n"
        f"sys.argv = {['aigc', *argv]!r}\n"
        "try:\n    runpy.run_module('aigc', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--help"], ["models", "list"], ["chat", "--help"], ["templates", "list"]])
def test_help_and_models_list_never_import_torch(argv):
    assert imports_after(argv) == "False False"


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("aigc ")


def test_one_shot_chat_json_on_a_local_model_directory(tiny_model_dir):
    result = invoke("chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "5", "--seed", "1", "--json", "--stats")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"model", "text", "usage"} and data["usage"]["prompt_tokens"] > 0
    assert "tokens/s:" in result.stderr


def test_same_seed_same_output(tiny_model_dir):
    args = ("chat", "Bees", "-m", str(tiny_model_dir), "--max-tokens", "12", "--temperature", "1", "--seed", "5")
    assert invoke(*args).stdout == invoke(*args).stdout


def test_summarize_writes_the_output_file(tiny_model_dir, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Bees make honey.\n\nCities have rooftops.")
    out = tmp_path / "summary.txt"
    result = invoke("summarize", str(doc), "-m", str(tiny_model_dir), "--max-tokens", "8", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().endswith("\n")
    assert result.stdout == ""


def bad(*args, input=None):
    result = invoke(*args, input=input)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines


@pytest.mark.parametrize(
    "content, words", [(b"", "empty"), (b"\x00\x01\x02", "binary"), (b"\xff\xfe caf\xe9", "not valid UTF-8")]
)
def test_bad_files_are_one_line_errors_with_exit_2(tmp_path, content, words):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    out = tmp_path / "out.txt"
    code, lines = bad("summarize", str(path), "-o", str(out))
    assert code == 2 and len(lines) == 1 and words in lines[0] and lines[0].startswith("Error:")
    assert not out.exists()


def test_missing_file(tmp_path):
    code, lines = bad("headline", str(tmp_path / "missing.txt"))
    assert code == 2 and lines == [f"Error: no such file: {tmp_path / 'missing.txt'}"]


def test_unknown_model_lists_aliases():
    code, lines = bad("chat", "hi", "-m", "no-such-model")
    assert code == 2 and len(lines) == 1 and "smollm2" in lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["chat", "hi", "--temperature", "5"], "temperature must be between 0 and 2"),
        (["headline", "--topic", "x", "-n", "0"], "-n must be between"),
        (["chat", "hi", "--template", "nope"], "unknown template"),
        (["summarize", "-", "--length", "huge"], "--length must be"),
        (["chat", "hi", "--device", "tpu"], "unknown device"),
        (["chat"], "prompt is empty"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(tiny_model_dir, args, words):
    code, lines = bad(*args, "-m", str(tiny_model_dir), input="some text" if "-" in args else "")
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_unknown_option_is_a_usage_error():
    assert invoke("chat", "--colour", "red").exit_code == 2


def test_unwritable_output_fails_before_any_work(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("text")
    code, lines = bad("summarize", str(doc), "-o", str(tmp_path / "missing-dir" / "out.txt"))
    assert code == 2 and "does not exist" in lines[0]


def test_debug_shows_the_exception(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_DEBUG", "1")
    result = invoke("summarize", str(tmp_path / "none.txt"))
    assert result.exit_code != 0 and type(result.exception).__name__ == "BadInputError"


def test_models_info_and_list_json(tiny_model_dir):
    listed = json.loads(invoke("models", "list", "--json").stdout)
    assert any(row["alias"] == "smollm2" and row["default"] for row in listed)
    info = json.loads(invoke("models", "info", str(tiny_model_dir), "--json").stdout)
    assert info["kind"] == "dir" and info["layers"] == 2 and info["installed"]


def test_register_commands_hook_adds_a_plugin_command():
    class CommandPlugin:
        @hookimpl
        def register_commands(self, app):
            @app.command()
            def hello(name: str):
                typer.echo(f"hello {name}")

    plugins.reset()
    plugins.get_plugin_manager().register(CommandPlugin(), name="hello-plugin")
    fresh = typer.Typer()
    fresh.callback()(lambda: None)
    try:
        plugins.call_each("register_commands", app=fresh)
    finally:
        plugins.reset()
    assert runner.invoke(fresh, ["hello", "x"]).stdout == "hello x\n"


def test_templates_list_show_and_path():
    listed = json.loads(invoke("templates", "list", "--json").stdout)
    assert {"chat", "summarize", "headline"} <= {row["name"] for row in listed}
    shown = invoke("templates", "show", "headline").stdout
    assert "max_words" in shown and "{{" in shown
    assert invoke("templates", "path").stdout.strip().endswith("templates")
    assert invoke("templates", "show", "headlin").exit_code == 2


def test_offline_hub_id_fails_fast_and_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, lines = bad("chat", "hi", "-m", "some-org/some-model-that-is-not-cached")
    assert code == 1 and lines[-1].startswith("Error: cannot fetch")
    assert "huggingface-cli download" in lines[-1] and "-m DIR" in lines[-1]
