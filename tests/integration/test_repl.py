"""The interactive `aigc chat` REPL through a pseudo-terminal: streaming, the kept conversation,
slash commands, Ctrl-C (stops a reply; at the prompt only a hint) and Ctrl-D."""

import json
import os
import re
import signal
import subprocess
import sys

import pexpect
import pytest

pytestmark = pytest.mark.integration

PROMPT = ">>> "
TIMEOUT = 180  # model load is ~5 s and a reply a few seconds on 2 cores; much more on a busy machine
FRANCE = "What is the capital of France?"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_children: list[pexpect.spawn] = []


def _default_sigint() -> None:
    """Ctrl-C must reach the REPL even when the tests run where SIGINT is ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(max_tokens: int = 60, *args: str, cwd=None) -> pexpect.spawn:
    """Start `aigc chat` (greedy, at most `max_tokens` per reply) on a pty and wait for its first prompt."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "aigc", "chat", "--temperature", "0", "--max-tokens", str(max_tokens), *args],
        env=env,
        cwd=cwd,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(50, 250),  # wide, so long /save paths are not wrapped
        preexec_fn=_default_sigint,
    )
    child.logfile_read = sys.stdout  # pytest shows the session when a test fails
    _children.append(child)
    child.expect_exact(PROMPT)
    return child


@pytest.fixture(autouse=True)
def _no_leftover_children():
    yield
    while _children:
        child = _children.pop()
        if child.isalive():
            child.terminate(force=True)


def ask(child: pexpect.spawn, line: str) -> str:
    """Send a line; everything printed up to the next prompt (the echo included)."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return child.before


def save(child: pexpect.spawn, path, typed=None) -> str:
    """`/save` (the name as `typed`, else the full path), then the file's text."""
    shown = ask(child, f"/save {typed or path}")
    assert "saved to" in shown, shown
    return path.read_text(encoding="utf-8")


def saved_messages(child: pexpect.spawn, path, typed=None) -> list[dict]:
    return json.loads(save(child, path, typed))["messages"]


def exits_with_0(child: pexpect.spawn) -> None:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)


def test_the_answer_is_shown_and_the_conversation_is_kept_and_saved(tmp_path):
    child = spawn(60)
    child.sendline(FRANCE)
    child.expect_exact(FRANCE)  # the terminal's echo
    child.expect_exact(PROMPT)
    assert "Paris" in child.before

    messages = saved_messages(child, tmp_path / "chat.json")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == FRANCE
    assert "Paris" in messages[1]["content"]

    ask(child, "And what is the capital of Germany?")  # a second turn goes on the same conversation
    messages = saved_messages(child, tmp_path / "chat2.json")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == FRANCE and "Paris" in messages[1]["content"]
    assert messages[3]["content"]

    markdown = save(child, tmp_path / "chat.md")
    assert markdown.startswith("## User")
    assert "## Assistant" in markdown and FRANCE in markdown and "Paris" in markdown
    child.sendline("/exit")
    exits_with_0(child)


def test_slash_commands(tmp_path):
    child = spawn(30, cwd=tmp_path)  # /save names below are relative to it
    shown = ask(child, "/help")
    assert "/reset" in shown and "/save" in shown and "/system" in shown and "/exit" in shown

    ask(child, "/system You are a pirate.")
    assert saved_messages(child, tmp_path / "x.json", "x.json") == [{"role": "system", "content": "You are a pirate."}]
    ask(child, "Hello!")
    assert [m["role"] for m in saved_messages(child, tmp_path / "x2.json", "x2.json")] == ["system", "user", "assistant"]

    assert "conversation cleared" in ask(child, "/reset")
    messages = saved_messages(child, tmp_path / "y.json", "y.json")
    assert not [m for m in messages if m["role"] in ("user", "assistant")]
    assert messages == [{"role": "system", "content": "You are a pirate."}]  # /reset keeps the system prompt

    child.sendline('"""Say')  # a message over several lines
    child.expect_exact("... ")
    child.sendline('hello."""')
    child.expect_exact(PROMPT)
    first = saved_messages(child, tmp_path / "m.json", "m.json")
    assert [m["role"] for m in first] == ["system", "user", "assistant"] and first[1]["content"] == "Say\nhello."
    assert "temperature 1.0" in ask(child, "/set temperature 1")
    ask(child, "/retry")  # sampled anew, in place of the first reply
    again = saved_messages(child, tmp_path / "m2.json", "m2.json")
    assert again[:2] == first[:2] and len(again) == 3 and again[2]["content"]
    assert "last turn forgotten: new conversation" in ask(child, "/undo")
    assert saved_messages(child, tmp_path / "m3.json", "m3.json") == first[:1]

    shown = ask(child, "/foo")
    assert "/foo" in shown.split("\n", 1)[1] and "/help" in shown  # past the echo: the error names both
    assert "Error" in shown

    child.sendline("/exit")
    exits_with_0(child)


def test_ctrl_c_stops_a_reply_and_keeps_the_session(tmp_path):
    child = spawn(400)
    question = "Write a long story about a dragon."
    child.sendline(question)
    child.expect_exact(question)  # the echo
    child.expect(r"\w+ \w+ \w+")  # a few words are on screen while the reply is still being written
    shown = child.before + child.after
    child.sendintr()
    child.expect_exact("(reply stopped)")
    # The partial reply as displayed, less colour codes and the terminal's echo of Ctrl-C.
    shown = ANSI.sub("", shown + child.before).replace("^C", "").replace("\r\n", "\n").strip()
    child.expect_exact(PROMPT)
    assert shown

    child.sendline(FRANCE)  # the session is still alive and answers
    child.expect_exact(FRANCE)
    child.expect_exact(PROMPT)
    assert "Paris" in child.before

    messages = saved_messages(child, tmp_path / "c.json")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == question and messages[2]["content"] == FRANCE
    partial = messages[1]["content"]
    # The stopped reply was kept: what was on screen (the last piece may have been stopped between
    # being generated and being written, so the saved text can run on a little).
    assert partial.startswith(shown), (partial, shown)
    assert "Paris" in messages[3]["content"]
    child.sendline("/exit")
    exits_with_0(child)
    logged = json.loads(subprocess.run([sys.executable, "-m", "aigc", "logs", "--json"], capture_output=True, text=True, check=True).stdout)
    assert [(e["prompt"], e["response"]) for e in logged] == [(m["content"], r["content"]) for m, r in (messages[:2], messages[2:])]  # the stopped reply too


def test_ctrl_d_at_the_prompt_exits():
    child = spawn()
    child.sendeof()
    exits_with_0(child)


def test_ctrl_c_at_the_prompt_does_not_exit(tmp_path):
    child = spawn()
    child.sendintr()
    child.expect_exact("Ctrl-D")  # the hint on how to leave
    child.expect_exact(PROMPT)
    assert child.isalive()
    assert "there is nothing to save yet" in ask(child, f"/save {tmp_path / 'empty.json'}")  # still taking commands; nothing was said
    assert not (tmp_path / "empty.json").exists()
    child.sendeof()
    exits_with_0(child)


def test_a_session_is_saved_after_each_reply_and_goes_on_in_the_next_run(tmp_path):
    path = tmp_path / "trip.json"
    child = spawn(30, "--session", str(path))
    assert "new conversation" in child.before
    ask(child, FRANCE)
    saved = json.loads(path.read_text(encoding="utf-8"))["messages"]  # written without /save
    assert [m["role"] for m in saved] == ["user", "assistant"] and "Paris" in saved[1]["content"]
    child.sendline("/exit")
    exits_with_0(child)

    child = spawn(30, "--session", str(path))
    assert "1 earlier turn" in child.before
    ask(child, "And of Germany?")
    assert [m["content"] for m in json.loads(path.read_text(encoding="utf-8"))["messages"]][:2] == [FRANCE, saved[1]["content"]]
    (tmp_path / "other.json").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}))
    child.sendline(f"/load {tmp_path / 'other.json'}")
    child.expect_exact("[y/N]")  # the session holds turns: /load asks before replacing it, as /save does
    assert "replace it with" in child.before and "1 earlier turn" in ask(child, "y")
    assert json.loads(path.read_text(encoding="utf-8"))["messages"][0]["content"] == "hi"  # the session now holds it
    child.sendline("/exit")
    exits_with_0(child)
