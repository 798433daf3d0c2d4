"""The interactive chat REPL through a pseudo-terminal: streaming, slash commands, Ctrl-C, Ctrl-D."""

import json
import os
import re
import sys

import pexpect
import pytest

pytestmark = pytest.mark.integration

PROMPT = ">>> "


def spawn(*args: str) -> pexpect.spawn:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "dumb"}
    child = pexpect.spawn(
        sys.executable, ["-m", "aigc", "chat", "--max-tokens", "60", *args], env=env, encoding="utf-8", timeout=120,
        dimensions=(40, 200),
    )
    child.expect_exact(PROMPT)
    return child


def ask(child: pexpect.spawn, text: str) -> str:
    child.sendline(text)
    child.expect_exact(PROMPT)
    return child.before


def saved(child: pexpect.spawn, path) -> dict:
    assert "saved to" in ask(child, f"/save {path}")
    return json.loads(path.read_text())


def test_answers_stream_and_the_conversation_is_kept_and_saved(tmp_path):
    child = spawn()
    assert "Paris" in ask(child, "What is the capital of France?")
    data = saved(child, tmp_path / "chat.json")
    roles = [m["role"] for m in data["messages"]]
    assert roles == ["user", "assistant"] and "Paris" in data["messages"][1]["content"]
    ask(child, "And of Germany?")
    assert [m["role"] for m in saved(child, tmp_path / "chat2.json")["messages"]] == ["user", "assistant"] * 2
    ask(child, f"/save {tmp_path / 'chat.md'}")
    assert "## User" in (tmp_path / "chat.md").read_text()
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_slash_commands(tmp_path):
    child = spawn()
    shown = ask(child, "/help")
    assert "/reset" in shown and "/save" in shown
    ask(child, "/system You are a pirate.")
    assert saved(child, tmp_path / "a.json")["messages"][0] == {"role": "system", "content": "You are a pirate."}
    ask(child, "Hello")
    ask(child, "/reset")
    assert [m["role"] for m in saved(child, tmp_path / "b.json")["messages"]] == ["system"]
    assert "/help" in ask(child, "/foo")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_the_reply_and_keeps_the_session(tmp_path):
    child = spawn("--max-tokens", "400")
    child.sendline("Write a long story about a dragon.")
    child.expect_exact("dragon.")  # the terminal's echo of the question
    child.expect(r"\w+ \w+ \w+ \w+")  # some of the reply has been streamed
    child.sendintr()
    child.expect_exact("(reply stopped)")
    child.expect_exact(PROMPT)
    assert "Paris" in ask(child, "What is the capital of France?")
    messages = saved(child, tmp_path / "c.json")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert messages[1]["content"]  # the partial reply was kept
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_at_the_prompt_does_not_exit_and_ctrl_d_does():
    child = spawn()
    child.sendintr()
    child.expect(re.compile(r"Ctrl-D"))
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
