"""-x/--extract and --xl/--extract-last (as in llm): an answer's first or last fenced code block."""

import json
import types

import pytest
from typer.testing import CliRunner

from aigc import logs
from aigc.cli.app import app
from aigc.errors import BadInputError
from aigc.markdown_blocks import code_block, extract_code

runner = CliRunner()
ANSWER = "Here:\n```python\nprint(1)\n```\nor, in a shell:\n~~~\necho 2\n~~~\nDone."


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


@pytest.mark.parametrize(
    "text, first, last",
    [
        (ANSWER, "print(1)", "echo 2"),
        ("a\r\n```sh\r\nls\r\n\r\npwd\r\n```\r\nb", "ls\n\npwd", "ls\n\npwd"),  # CRLF
        ("1. Run:\n    ```sh\n    ls\n      -l\n    ```\n", "ls\n  -l", "ls\n  -l"),  # indented in a list: that indent taken off
        ("````md\n```py\nx\n```\n````", "```py\nx\n```", "```py\nx\n```"),  # a longer fence holds shorter ones
        ("```\nx\n~~~\ny\n```", "x\n~~~\ny", "x\n~~~\ny"),  # only the opening kind closes it
        ("```py\nx\n```\n```py\ncut off", "x", "x"),  # unclosed: no block, and none after it
        ("```\n```", "", ""),  # an empty block is a block
        ("```python\nx\n``` trailing\n```", "x\n``` trailing", "x\n``` trailing"),  # a closing fence has nothing after it
        ("Use ```ls``` here.", None, None),  # inline code, not a fence
        ("$$\nx^2\n$$", None, None),  # math, not code
        ("no code at all", None, None),
        ("```py\nnever closed", None, None),
    ],
)
def test_code_block_is_the_body_of_the_first_or_last_complete_fence(text, first, last):
    assert code_block(text) == first and code_block(text, last=True) == last
    assert extract_code(text) == (text if first is None else first)  # no block: the whole answer, as llm


def fake(monkeypatch, *answers):
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator
    from aigc.generators.template import TemplateGenerator
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue(*answers)
    monkeypatch.setattr(RunOptions, "generator", lambda self, name, **kwargs: (ChatGenerator if name == "chat" else TemplateGenerator)(engine=engine))
    return engine


@pytest.mark.parametrize("command", [("chat", "code please"), ("chat", "-S", "trip", "code please"), ("run", "chat", "--var", "input=code please")])
def test_x_and_xl_print_a_code_block_and_the_log_keeps_the_whole_answer(monkeypatch, command):
    fake(monkeypatch, ANSWER, ANSWER, "no code here")
    first, last, plain = invoke(*command, "-x"), invoke(*command, "--extract-last"), invoke(*command, "--xl")
    assert (first.exit_code, first.stdout) == (0, "print(1)\n"), first.output
    assert (last.exit_code, last.stdout) == (0, "echo 2\n"), last.output
    assert plain.stdout == "no code here\n"
    assert [row["response"] for row in json.loads(invoke("logs", "--json").stdout)] == [ANSWER, ANSWER, "no code here"]


def test_x_is_not_streamed_on_a_terminal(monkeypatch):
    from aigc import ui
    from aigc.cli import run as run_cli

    fake(monkeypatch, ANSWER)
    monkeypatch.setattr(run_cli, "sys", types.SimpleNamespace(stdout=types.SimpleNamespace(isatty=lambda: True)))
    monkeypatch.setattr(ui, "stream_result", lambda *args, **kwargs: pytest.fail("streamed"))
    result = invoke("run", "chat", "--var", "input=x", "-x", "--no-log")
    assert result.exit_code == 0 and result.stdout == "print(1)\n", result.output


def test_a_chat_with_x_held_is_not_streamed(monkeypatch):
    from aigc.cli import chat as chat_cli
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator
    from aigc.testing import FakeEngine

    monkeypatch.setattr("sys.stdout", types.SimpleNamespace(isatty=lambda: True))
    generator = ChatGenerator(engine=FakeEngine())
    assert chat_cli._streamed(generator, {"template": "chat"}, RunOptions(), held=False)
    assert not chat_cli._streamed(generator, {"template": "chat"}, RunOptions(), held=True)


def test_run_x_writes_the_block_to_o(monkeypatch, tmp_path):
    fake(monkeypatch, ANSWER)
    result = invoke("run", "chat", "--var", "input=x", "--xl", "-o", str(tmp_path / "out.sh"), "--no-log")
    assert result.exit_code == 0 and (tmp_path / "out.sh").read_text() == "echo 2\n", result.output


@pytest.mark.parametrize(
    "argv, error",
    [
        (["chat", "hi", "-x", "--json"], "give -x or --json, not both"),
        (["run", "chat", "--var", "input=x", "--xl", "--json"], "give --xl or --json, not both"),
        (["logs", "-x", "--json"], "give -x or --json, not both"),
        (["chat", "hi", "-x", "--xl"], "give -x (the first code block) or --xl (the last), not both"),
    ],
)
def test_x_with_json_is_a_one_line_error(argv, error):
    result = invoke(*argv)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and error in result.stderr, result.output


def test_x_is_for_one_shot_chats(monkeypatch):
    from aigc.cli import chat as chat_cli
    from aigc.cli.options import RunOptions

    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(isatty=lambda: True))
    with pytest.raises(BadInputError, match="--xl is for one-shot answers"):
        chat_cli._chat(None, None, [], None, None, None, False, RunOptions(log=False), None, code="--xl")


def test_logs_x_prints_each_shown_answers_block():
    for response in (ANSWER, "plain words", "```sql\nselect 1;\n```"):
        logs.record(logs.Entry(command="chat", model="m", prompt="p", response=response, options={}))
    assert invoke("logs", "-x").stdout == "print(1)\n\nplain words\n\nselect 1;\n"
    assert invoke("logs", "list", "--xl", "-n", "2").stdout == "plain words\n\nselect 1;\n"
    assert invoke("logs", "-r", "-x").stdout == "select 1;\n"
    misplaced = invoke("logs", "-x", "path")
    assert misplaced.exit_code == 2 and "aigc logs path takes no --extract" in misplaced.stderr


def test_run_x_prints_the_block_of_each_answer_a_template_asks_for(monkeypatch):
    from aigc import templates

    templates.user_dir().mkdir(parents=True, exist_ok=True)
    (templates.user_dir() / "twice.j2").write_text("---\ndefaults: {n: 2, temperature: 1}\n---\n{{ input }}\n")
    fake(monkeypatch, ANSWER, "Also:\n```\nsecond\n```")
    result = invoke("run", "twice", "--var", "input=x", "-x", "--no-log")
    assert result.exit_code == 0 and result.stdout == "print(1)\n\n---\n\nsecond\n", result.output
