"""Per-command option defaults from config.toml tables named after commands ([chat], [translate], ...):
a flag beats an AIGC_* variable, which beats the table, which beats the built-in default; a bad key
or value is reported with its file, table and line; --help shows the defaults that apply."""

import json

import pytest

from aigc import config
from config_cli import invoke, write


def last_options() -> dict:
    """The sampling settings the last logged answer was made with."""
    result = invoke("logs", "--json", "-n", "1")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]["options"]


def test_the_built_in_default_applies_without_a_table():
    result = invoke("chat", "-m", "echo", "hi")
    assert result.exit_code == 0, result.output
    assert last_options()["temperature"] == 0.0 and last_options()["max_tokens"] == 512


def test_a_command_table_gives_its_options_their_defaults_with_either_spelling():
    write("[chat]\ntemperature = 0.5\nmax-tokens = 33\n\n[headline]\nmax_tokens = 20\n")
    result = invoke("chat", "-m", "echo", "hi")
    assert result.exit_code == 0 and "Warning" not in result.stderr, result.output
    options = last_options()
    assert (options["temperature"], options["max_tokens"]) == (0.5, 33)


def test_a_flag_beats_the_table():
    write("[chat]\ntemperature = 0.5\nmax_tokens = 33\n")
    assert invoke("chat", "-m", "echo", "--temperature", "0.2", "hi").exit_code == 0
    options = last_options()
    assert (options["temperature"], options["max_tokens"]) == (0.2, 33)


def test_a_required_option_may_come_from_the_table():
    write('[translate]\nto = "fr"\n')
    result = invoke("translate", "-m", "echo", "Hello")
    assert result.exit_code == 0 and result.stdout == "Hello\n" and "reads no setting" not in result.stderr, result.output


def test_an_environment_variable_beats_the_table_and_a_flag_beats_both(monkeypatch):
    from types import SimpleNamespace

    from aigc.serve import running as serve_running

    seen = {}
    monkeypatch.setattr(serve_running, "bind", lambda host, port, *names: seen.update(port=port) or SimpleNamespace(listen=lambda backlog: None, getsockname=lambda: (host, port)))
    monkeypatch.setattr(serve_running, "build", lambda *args, **kwargs: SimpleNamespace(state=SimpleNamespace(backends={"tiny": None})))
    monkeypatch.setattr(serve_running, "run_server", lambda *args, **kwargs: 0)
    write("[serve]\nport = 9123\n")
    assert invoke("serve", env={"AIGC_PORT": None}).exit_code == 0 and seen["port"] == 9123
    assert invoke("serve", env={"AIGC_PORT": "9200"}).exit_code == 0 and seen["port"] == 9200
    assert invoke("serve", "--port", "9300", env={"AIGC_PORT": "9200"}).exit_code == 0 and seen["port"] == 9300


def test_a_table_model_is_the_commands_default_model():
    write('[chat]\nmodel = "echo"\n')
    result = invoke("chat", "hi")
    assert result.exit_code == 0 and result.stdout == "hi\n", result.output
    assert json.loads(invoke("logs", "--json", "-n", "1").stdout)[0]["model"] == "echo"


def test_an_unknown_key_is_a_warning_with_its_likely_meaning_and_the_options():
    path = write("[chat]\ntemprature = 0.5\n")
    result = invoke("chat", "-m", "echo", "hi")
    assert result.exit_code == 0, result.output
    assert f"Warning: [chat] in {path} has unknown keys temprature; temprature (line 2): did you mean temperature? it takes " in result.stderr
    assert "max_tokens" in result.stderr and last_options()["temperature"] == 0.0
    assert "reads no setting" not in result.stderr  # [chat] itself is a table aigc reads


@pytest.mark.parametrize(("table", "said"), [
    ('temperature = "hot"', "[chat] in {path}: temperature must be a number, got 'hot' (line 2)"),
    ("max_tokens = true", "[chat] in {path}: max_tokens must be a whole number, got True (line 2)"),
    ('output = "answer.md"', "[chat] in {path}: -o names the file one run writes"),
    ('prompt = "hi"', "[chat] in {path}: prompt is the command's input (PROMPT), given each time it runs; it has no default (line 2); remove the line"),
])
def test_a_bad_value_or_a_refused_key_is_a_one_line_error_naming_file_table_and_line(table, said):
    path = write(f"[chat]\n{table}\n")
    result = invoke("chat", "-m", "echo", "hi")
    assert result.exit_code == 2 and result.stderr.startswith("Error: " + said.format(path=path)) and result.stderr.count("\n") == 1, result.output


def helped(command: str) -> str:
    """`aigc COMMAND --help` (click's plain help), its whitespace made single spaces."""
    result = invoke(command, "--help", env={"TERM": "dumb"})
    assert result.exit_code == 0 and result.stderr == "", result.output
    return " ".join(result.stdout.split())


def test_help_shows_each_commands_own_sampling_defaults():
    from aigc.generators.chat import ChatGenerator
    from aigc.generators.headline import HeadlineGenerator

    chat, headline = helped("chat"), helped("headline")
    assert ChatGenerator.sampling_defaults["temperature"] == 0 and "0 = greedy. [default: 0 (greedy)]" in chat
    assert f"[default: {ChatGenerator.sampling_defaults['max_tokens']}]" in chat
    assert "[default: 0.7]" in headline and "[default: 40]" in headline  # headline's template's defaults:
    assert HeadlineGenerator.sampling_defaults["max_tokens"] == 40
    assert "Default depends on the task" not in chat
    summarize = helped("summarize")  # its max_tokens follows --length: no number that would be wrong
    assert "[default: fitted to the summary's length (--length, --words)]" in summarize and "[default: 256]" not in summarize


def test_help_marks_a_default_from_the_table_and_still_helps_with_a_broken_one():
    write("[chat]\ntemperature = 0.5\n")
    assert "[default: 0.5 (config.toml)]" in helped("chat")
    write('[chat]\ntemperature = "hot"\ntemprature = 1\n')
    assert "[default: 0 (greedy)]" in helped("chat")  # and nothing on stderr: running reports it


def test_config_show_and_doctor_read_the_tables_as_the_command_does():
    path = write('[translate]\nto = "fr"\n\n[chat]\ntemprature = 1\n')
    shown = invoke("config", "show")
    assert shown.exit_code == 0, shown.output
    assert any(line.split() == ["translate", "to", "=", "fr", "config.toml"] for line in shown.stdout.splitlines())
    check = json.loads(invoke("doctor", "--json").stdout)["checks"]["table:chat"]
    assert check["status"] == "warning" and check["summary"].startswith(f"[chat] in {path} has unknown keys temprature; temprature (line 5): did you mean temperature?")
    write('[translate]\nto = 3\n')
    shown = invoke("config", "show")
    assert shown.exit_code == 2 and "[translate] in " in shown.stderr and "to must be a string in quotes, got 3 (line 2)" in shown.stderr


def test_a_variable_aigc_reads_itself_beats_the_table(monkeypatch):
    write('[chat]\nlog = true\nmodel = "no-such-model"\n')
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", "echo")
    monkeypatch.setenv("AIGC_LOGS", "0")
    result = invoke("chat", "hi")
    assert result.exit_code == 0 and result.stdout == "hi\n", result.output  # AIGC_DEFAULT_MODEL, not the table's model
    assert "no-such-model" not in helped("chat")  # nor does --help show it as the default
    monkeypatch.delenv("AIGC_LOGS")
    assert json.loads(invoke("logs", "--json").stdout) == []  # AIGC_LOGS=0 kept the answer out of the log
    assert invoke("chat", "--no-log", "-m", "echo", "hi").exit_code == 0 and json.loads(invoke("logs", "--json").stdout) == []  # a flag beats both


@pytest.mark.parametrize(("command", "table", "args"), [
    ("summarize", 'length = "short"', ["--words", "5"]),
    ("summarize", "words = 5", ["--length", "short"]),
    ("translate", "plain = true", ["--markdown", "--to", "fr"]),
    ("chat", "extract = true", ["--json"]),
])
def test_a_table_value_yields_to_a_flag_it_cannot_go_with(tmp_path, command, table, args):
    write(f"[{command}]\n{table}\n")
    doc = tmp_path / "doc.txt"
    doc.write_text("One sentence here. Another one there.\n")
    result = invoke(command, "-m", "echo", *args, str(doc) if command != "chat" else "hi")
    assert result.exit_code == 0 and "not both" not in result.stderr, result.output


@pytest.mark.parametrize(("command", "key"), [("headline", 'topic = "cats"'), ("batch", 'input = "rows.jsonl"'), ("similar", 'input = "items.txt"')])
def test_a_table_may_not_name_a_runs_input(command, key):
    path = write(f"[{command}]\n{key}\n")
    result = invoke(command, "--help")
    assert result.exit_code == 0  # the help still helps
    result = invoke("headline", "-m", "echo", "--topic", "dogs") if command == "headline" else invoke(command, "x", "-o", "-") if command == "batch" else invoke(command, "q")
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: [{command}] in {path}: ") and "it has no default (line 2); remove the line" in result.stderr, result.output


def test_the_tables_one_shot_settings_leave_interactive_chat_alone(monkeypatch):
    import sys
    from types import SimpleNamespace

    from aigc.cli import chat as chat_module

    write("[chat]\njson = true\nn = 2\n")
    seen = {}
    monkeypatch.setattr(chat_module, "stdin_text", lambda: None)
    monkeypatch.setattr(chat_module, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True), stdout=sys.stdout, stderr=sys.stderr))
    monkeypatch.setattr(chat_module, "_repl", lambda run, *args: seen.update(n=run.n))
    result = invoke("chat", "-m", "echo")
    assert result.exit_code == 0 and seen == {"n": None}, result.output


def test_config_show_warns_of_an_unknown_key_in_a_table():
    path = write('[summarize]\nlenght = "short"\n')
    shown = invoke("config", "show")
    assert shown.exit_code == 0, shown.output
    said = f"Warning: [summarize] in {path} has unknown keys lenght; lenght (line 2): did you mean length?"
    assert said in " ".join(shown.stderr.split()), shown.stderr
    as_json = invoke("config", "show", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["settings"]["summarize"]["warnings"][0].startswith(f"[summarize] in {path} has unknown keys lenght")
    assert json.loads(as_json.stdout)["settings"]["logs"]["warnings"] == []
