"""Saved conversations and chat sessions kept in a file (`aigc chat --session`)."""

import codecs
import json
import os
import re

import pytest

from aigc import conversations
from aigc.errors import BadInputError
from aigc.generators.chat import ChatGenerator, ChatSession
from aigc.testing import FakeEngine


def session(path, engine=None, **kwargs):
    return ChatSession(ChatGenerator(engine=engine or FakeEngine()), path=path, **kwargs)


def test_a_session_file_is_written_after_each_reply_and_read_back(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("Hello Ada.", "You are Ada.")
    first = session(path, engine, system="Be brief.")
    "".join(first.send("I am Ada."))
    saved = json.loads(path.read_text())
    assert saved == {"model": "fake", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hello Ada."},
    ]}
    first.close()  # lets go of the file for the next session
    second = session(path, engine)
    assert second.system == "Be brief." and len(second.messages) == 2
    "".join(second.send("Who am I?"))
    prompt = engine.calls[-1][0][0]
    assert [m["content"] for m in prompt] == ["Be brief.", "I am Ada.", "Hello Ada.", "Who am I?"]
    assert conversations.read(path).messages[-1] == {"role": "assistant", "content": "You are Ada."}


def test_a_given_system_prompt_replaces_the_saved_one_and_reset_empties_the_file(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one")
    "".join(session(path, engine, system="old").send("hi"))
    again = session(path, engine, system="new")
    assert again.system == "new" and len(again.messages) == 2
    again.reset()
    assert conversations.read(path).transcript() == [{"role": "system", "content": "new"}]


def test_a_reply_stopped_midway_is_saved_as_far_as_it_went(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one two three")
    stream = session(path, engine).send("count")
    next(stream)
    stream.close()
    assert conversations.read(path).messages[-1] == {"role": "assistant", "content": "one"}


def test_other_keys_of_a_session_file_are_kept(tmp_path):
    path = tmp_path / "talk.json"
    path.write_text(json.dumps({"title": "Trip", "model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}))
    engine = FakeEngine()
    engine.enqueue("fine")
    "".join(session(path, engine).send("how are you?"))
    saved = json.loads(path.read_text())
    assert saved["title"] == "Trip" and len(saved["messages"]) == 4


def test_load_goes_on_from_a_saved_conversation(tmp_path):
    source = tmp_path / "saved.json"
    source.write_text(json.dumps([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]))
    target = tmp_path / "live.json"
    live = session(target)
    live.load(source)
    assert live.system == "s" and [m["content"] for m in live.messages] == ["u", "a"]
    assert conversations.read(target).transcript() == conversations.read(source).transcript()


@pytest.mark.parametrize(
    "content, reason",
    [("not json", "not JSON"), ('{"messages": [{"role": "robot", "content": "x"}]}', "not a saved conversation"),
     ('{"messages": "hi"}', "not a saved conversation"), (b"\xff\xfe", "not UTF-8"),
     ('{"messages": [{"role": "user", "content": "\\ud800"}]}', "escaped lone surrogate"), ("[" * 100000 + "]" * 100000, "nested too deeply")],
)
def test_a_file_that_is_not_a_conversation_is_one_line_bad_input(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BadInputError, match=reason):
        session(path)


def test_session_names_and_paths():
    assert conversations.session_path("work") == conversations.sessions_dir() / "work.json"
    assert conversations.session_path("notes.json").name == "notes.json"
    assert conversations.session_path("dir/notes.JSON").parent.name == "dir"
    for bad, words in (("dir/notes.md", "must end in .json"), ("notes.txt", "must end in .json"), ("-x", "letters, digits"), ("a b", "letters, digits")):
        with pytest.raises(BadInputError, match=words):
            conversations.session_path(bad)


def test_session_names_may_be_letters_of_any_script_in_nfc_within_a_file_names_bytes():
    folder = conversations.sessions_dir()
    assert conversations.session_path("旅行计划") == folder / "旅行计划.json"
    assert conversations.session_path("हिन्दी-नोट्स") == folder / "हिन्दी-नोट्स.json"  # combining vowel signs and viramas
    assert conversations.session_path("cafe\u0301") == conversations.session_path("caf\u00e9") == folder / "caf\u00e9.json"  # a Mac's NFD is the same session
    for bad in ("旅行 计划", "_x", "\u0301x", "a\x07b", "计" * 67):  # a space, a start that is no letter, a control, over 200 bytes
        with pytest.raises(BadInputError, match="letters, digits"):
            conversations.session_path(bad)
    assert conversations.session_path("计" * 66).name == "计" * 66 + ".json"


def test_sessions_are_listed_newest_first_and_a_broken_file_is_named(tmp_path):
    folder = conversations.sessions_dir()
    folder.mkdir(parents=True)
    for name, when in (("old", 1_000_000), ("new", 2_000_000)):
        path = folder / f"{name}.json"
        conversations.Conversation(None, [{"role": "user", "content": f"{name} question"}], "fake").save(path)
        os.utime(path, (when, when))
    (folder / "broken.json").write_text("{")
    rows = conversations.list_sessions()
    assert [r["name"] for r in rows] == ["broken", "new", "old"]
    assert rows[1]["first"] == "new question" and rows[1]["messages"] == 1
    assert "not JSON" in rows[0]["error"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_turn_stopped_before_any_reply_is_not_kept(tmp_path, stop):
    class Stopped(FakeEngine):
        def stream(self, prompt, params):
            raise stop()
            yield

    path = tmp_path / "talk.json"
    live = session(path, Stopped())
    with pytest.raises(stop):
        "".join(live.send("hello"))
    assert live.messages == [] and not path.exists()


def test_a_reply_never_read_leaves_no_turn_and_ask_returns_the_whole_reply(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("Paris.", "Madrid.")
    chat = session(path, engine)
    assert chat.ask("Capital of France?") == "Paris."
    chat.send("Capital of Italy?")  # never iterated: nothing is asked or recorded
    assert chat.ask("Capital of Spain?") == "Madrid."
    assert [m["content"] for m in chat.messages] == ["Capital of France?", "Paris.", "Capital of Spain?", "Madrid."]
    assert [m["content"] for m in conversations.read(path).messages] == [m["content"] for m in chat.messages]
    with pytest.raises(BadInputError, match="empty"):
        chat.send("  ")  # bad input fails at once, not when the reply is read


def test_a_session_turn_is_an_answer_stream_with_its_result_recorded_when_it_ends(tmp_path):
    from aigc import AnswerStream

    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("Paris is big. ", "Rome is old.")
    chat = session(path, engine)
    stream = chat.send("Capital of France?")
    assert isinstance(stream, AnswerStream) and chat.messages == []  # taken when it is read
    assert next(stream) == "Paris" and chat.messages[-1] == {"role": "assistant", "content": ""} and not path.exists()
    assert stream.usage == {"prompt_tokens": engine.count_tokens(engine.calls[-1][0][0]), "completion_tokens": 3}
    assert stream.text == "Paris is big." and stream.finish_reason == "stop" and stream.result["text"] == "Paris is big."
    assert chat.messages[-1] == {"role": "assistant", "content": "Paris is big."} == conversations.read(path).messages[-1]
    again = chat.retry()
    assert isinstance(again, AnswerStream) and again.result["messages"][-1] == {"role": "assistant", "content": "Rome is old."}
    assert [m["content"] for m in conversations.read(path).messages] == ["Capital of France?", "Rome is old."]


def test_a_reply_left_in_a_broken_loop_keeps_what_was_written(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one two three")
    chat = session(path, engine)
    for _ in chat.send("count"):
        break  # the stream, no longer held, is closed
    assert chat.messages[-1] == {"role": "assistant", "content": "one"} == conversations.read(path).messages[-1]
    engine.enqueue("four five")
    stopped = chat.send("more")
    next(stopped)
    stopped.close()
    assert stopped.text == "four" == stopped.result["text"] and stopped.finish_reason == "cancelled"  # as a closed aigc.stream
    assert stopped.result["messages"][-1] == chat.messages[-1] and stopped.usage["completion_tokens"] == engine.count_tokens("four")
    assert chat.messages[-1] == {"role": "assistant", "content": "four"} == conversations.read(path).messages[-1]


def test_a_turn_waits_for_the_reply_being_written_and_a_stale_reply_is_not_written(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("Hello there.", "Second.")
    chat = session(path, engine)
    first = chat.send("Hi")
    next(first)
    for turn in (lambda: chat.ask("Second question"), chat.retry, lambda: chat.answer("x")):
        with pytest.raises(BadInputError, match="a reply is still being written"):
            turn()
    first.close()
    stale = chat.send("Asked before the next turn")
    assert chat.ask("Second question") == "Second."
    with pytest.raises(BadInputError, match="the conversation went on since this reply was asked for"):
        next(stale)
    kept = [m["content"] for m in conversations.read(path).messages]
    assert kept == [m["content"] for m in chat.messages] and kept[-2:] == ["Second question", "Second."] and len(kept) == 4


def test_a_session_file_that_is_a_pipe_is_refused_rather_than_waited_on(tmp_path):
    os.mkfifo(tmp_path / "talk.json")
    with pytest.raises(BadInputError, match="is not a regular file"):
        session(tmp_path / "talk.json")


def test_a_session_file_must_be_json_and_the_generator_chat(tmp_path):
    with pytest.raises(BadInputError, match=r"notes\.md must end in \.json"):
        session(tmp_path / "notes.md")
    assert not (tmp_path / "notes.md").exists()
    from aigc.generators.summarize import SummarizeGenerator

    with pytest.raises(BadInputError, match="runs the chat generator"):
        ChatSession(SummarizeGenerator(engine=FakeEngine()))


def test_a_session_keeps_its_template_and_a_given_one_replaces_it(tmp_path, monkeypatch):
    template = tmp_path / "pirate.j2"
    template.write_text("---\nsystem: Talk like a pirate.\n---\n{{ input }}\n")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("Arr.", "Aye.", "Hello.")
    "".join(session(path, engine, template="pirate.j2").send("hi"))
    assert json.loads(path.read_text())["template"] == str(template)
    assert conversations.read(path).to_markdown().startswith(f"Template: `{template}`\n\n## User")
    "".join(session(path, engine).send("again"))  # the saved template goes on, from any directory
    assert engine.calls[-1][0][0][0] == {"role": "system", "content": "Talk like a pirate."}
    "".join(session(path, engine, template="chat").send("plain now"))
    assert engine.calls[-1][0][0][0]["role"] == "user" and "template" not in json.loads(path.read_text())


def test_a_session_keeps_its_template_variables_with_its_template_only(tmp_path):
    template = tmp_path / "tone.j2"
    template.write_text("---\nvariables:\n  - name: tone\n  - name: input\n---\n({{ tone }}) {{ input }}\n")
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("One.", "Two.", "Three.", "Four.")
    "".join(session(path, engine, template=str(template), variables={"tone": "dry"}).send("hi"))
    assert json.loads(path.read_text())["variables"] == {"tone": "dry"}
    "".join(session(path, engine).send("again"))  # the saved template goes on with its variables
    assert engine.calls[-1][0][0][-1]["content"] == "(dry) again"
    "".join(session(path, engine, variables={"tone": "warm"}).send("more"))  # given ones replace them
    assert engine.calls[-1][0][0][-1]["content"] == "(warm) more"
    assert json.loads(path.read_text())["variables"] == {"tone": "warm"}
    chat = session(path, engine, template="chat")  # another template: the saved variables are not its
    assert chat.variables == {} and chat.options() == {"template": "chat", "system": None}
    "".join(chat.send("plain"))
    assert "variables" not in json.loads(path.read_text())
    chat.close()
    with pytest.raises(BadInputError, match="template 'chat' has no variable tone"):
        session(path, engine, variables={"tone": "x"})


def test_a_session_whose_template_is_gone_fails_before_any_turn(tmp_path):
    path = tmp_path / "talk.json"
    path.write_text(json.dumps({"template": "no-such-template", "messages": []}))
    with pytest.raises(BadInputError, match="this session was saved with template 'no-such-template', which cannot be used: unknown template") as caught:
        session(path)
    assert "(template=chat)" in str(caught.value)
    assert session(path, template="chat").template == "chat"  # the way on
    for kept in (123, None, ["chat"], ""):
        path.write_text(json.dumps({"template": kept, "messages": []}))
        with pytest.raises(BadInputError, match="this session's template must be a name or a .j2 file"):
            session(path)


def test_undo_forgets_the_last_turn_and_retry_replaces_the_last_reply(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one", "two", "three")
    talk = session(path, engine)
    talk.ask("first")
    talk.ask("second")
    assert "".join(talk.retry()) == "three"
    assert [m["content"] for m in conversations.read(path).messages] == ["first", "one", "second", "three"]
    assert [m["content"] for m in engine.calls[-1][0][0]] == ["first", "one", "second"]  # asked again without the old reply
    talk.undo()
    assert [m["content"] for m in conversations.read(path).messages] == ["first", "one"]
    talk.undo()
    with pytest.raises(BadInputError, match="no turn to undo"):
        talk.undo()
    with pytest.raises(BadInputError, match="no reply to retry"):
        talk.retry()


def test_a_retry_that_fails_or_is_stopped_before_its_first_word_keeps_the_old_reply(tmp_path):
    from aigc.errors import ModelUnavailableError

    engine = FakeEngine()
    engine.enqueue("kept reply", "new words")
    talk = session(tmp_path / "talk.json", engine)
    talk.ask("hi")
    stopped = talk.retry()
    stopped.close()  # before its first word
    assert talk.messages[-1]["content"] == "kept reply"

    def down(prompt, params):
        raise ModelUnavailableError("gone")
        yield

    engine.stream = down
    with pytest.raises(ModelUnavailableError):
        "".join(talk.retry())
    assert [m["content"] for m in talk.messages] == ["hi", "kept reply"]


def test_a_reply_that_answers_no_message_is_not_retried_and_the_repl_says_so(tmp_path, monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions

    path = tmp_path / "greeting.json"
    path.write_text(json.dumps({"messages": [{"role": "assistant", "content": "Hello! How can I help?"}]}))
    talk = session(path)
    with pytest.raises(BadInputError, match="no reply to retry"):
        talk.retry()
    monkeypatch.setattr("builtins.input", lambda prompt="": "/retry")
    assert _turn(talk, RunOptions(log=False), []) is None  # an error line, not an IndexError
    assert "no reply to retry" in capsys.readouterr().err and talk.messages == [{"role": "assistant", "content": "Hello! How can I help?"}]


def test_sampling_settings_change_for_the_next_replies_and_bad_ones_are_refused(tmp_path):
    engine = FakeEngine()
    engine.enqueue("a", "b")
    talk = session(None, engine, sampling={"max_tokens": 40})
    assert talk.settings()["max_tokens"] == 40 and talk.settings()["temperature"] == 0.0  # the chat default
    talk.set_sampling("temperature", "0.7")
    talk.set_sampling("seed", "3")
    talk.ask("hi")
    params = engine.calls[-1][1]
    assert (params.temperature, params.seed, params.max_tokens) == (0.7, 3, 40)
    talk.set_sampling("seed", "none")
    talk.set_sampling("max_tokens", "99")
    talk.set_sampling("max_tokens", "default")  # the value the session started with
    talk.set_sampling("top_k", "5")
    talk.set_sampling("top_k", None)  # not given at the start: the task's
    assert (talk.settings()["seed"], talk.settings()["max_tokens"], talk.settings()["top_k"]) == (None, 40, 0)
    for name, value, error in (("temperature", "5", "between 0 and 2"), ("top_k", "2.5", "whole number"), ("colour", "1", "no setting 'colour'")):
        with pytest.raises(BadInputError, match=error):
            talk.set_sampling(name, value)
    assert talk.settings()["temperature"] == 0.7
    with pytest.raises(BadInputError, match=r"no setting 'tempurature' \(did you mean temperature\?\); settings: "):  # as generate(sampling=...) says it
        talk.set_sampling("tempurature", 0.5)


def test_several_answers_a_turn_are_refused_when_the_session_is_made_not_at_its_first_reply():
    with pytest.raises(BadInputError, match=r"^n is for one-shot calls .*a ChatSession writes one reply a turn: leave it out$"):
        session(None, sampling={"n": 2, "temperature": 0.7})
    engine = FakeEngine()
    engine.enqueue("one")
    assert session(None, engine, sampling={"n": "1"}).ask("hi") == "one"


def test_several_system_messages_in_a_hand_edited_file_are_kept_as_one_system_prompt(tmp_path):
    path = tmp_path / "talk.json"
    path.write_text(json.dumps([{"role": "system", "content": "A"}, {"role": "user", "content": "hi"}, {"role": "system", "content": "B"}]))
    engine = FakeEngine()
    engine.enqueue("yo")
    talk = session(path, engine)
    talk.ask("again")
    assert conversations.read(path).transcript()[0] == {"role": "system", "content": "A\n\nB"}


def test_the_latest_conversation_is_the_newest_of_sessions_and_unnamed_ones_that_can_be_read():
    with pytest.raises(BadInputError, match="no conversation to continue"):
        conversations.latest()
    session = conversations.sessions_dir() / "trip.json"
    session.parent.mkdir(parents=True)
    unnamed = conversations.new_conversation()
    for path, when in ((session, 1_000_000), (unnamed, 2_000_000)):
        conversations.Conversation(None, [{"role": "user", "content": "hi"}], "fake").save(path)
        os.utime(path, (when, when))
    assert conversations.latest() == unnamed and conversations.unnamed(unnamed) and not conversations.unnamed(session)
    assert conversations.conversation_path(unnamed.stem) == unnamed and conversations.session_label(unnamed) == unnamed.stem
    assert conversations.conversation_path("trip") == session and conversations.conversation_path(str(session.absolute())) == session
    unnamed.write_text("{")  # newest, but broken: passed over
    assert conversations.latest() == session
    with pytest.raises(BadInputError, match="no conversation 'gone'"):
        conversations.conversation_path("gone")
    assert conversations.forget(conversations.unnamed_files()) == [unnamed] and conversations.latest() == session


def test_the_latest_conversation_is_one_with_turns_and_an_unnamed_one_is_made_by_its_first_turn():
    older, newer = conversations.new_conversation(), conversations.sessions_dir() / "blank.json"
    conversations.Conversation(None, [{"role": "user", "content": "hi"}], "fake").save(older)
    os.utime(older, (1_000_000, 1_000_000))
    conversations.sessions_dir().mkdir(parents=True)
    conversations.Conversation("Be brief.", [], "fake").save(newer)  # newer, but no turns: passed over, as `llm -c` does
    assert conversations.latest() == older
    empty = conversations.conversations_dir() / "20261205-132634-4bb047.json"
    chat = session(empty)
    chat.set_system("Be kind.")
    chat.reset()
    assert not empty.exists() and conversations.latest() == older  # slash commands alone leave no file
    chat.generator.engine.enqueue("Hello.")
    chat.ask("Hi")
    assert conversations.read(empty).system == "Be kind." and conversations.latest() == empty
    chat.reset()
    assert conversations.read(empty).messages == [] and conversations.latest() == older  # cleared: kept empty, and passed over


def test_the_latest_conversation_may_be_a_session_file_opened_by_its_path(tmp_path):
    import stat

    from aigc import config

    named = conversations.sessions_dir() / "trip.json"
    named.parent.mkdir(parents=True)
    mine, gone = tmp_path / "mine.json", tmp_path / "gone.json"
    for path, when in ((named, 2_000_000), (mine, 3_000_000), (gone, 4_000_000)):
        conversations.Conversation(None, [{"role": "user", "content": "hi"}], "fake").save(path)
        os.utime(path, (when, when))
        conversations.remember(path)
    record = conversations.recent_files_record()
    assert json.loads(record.read_text()) == [str(gone), str(mine)]  # a named session is not noted: it is found anyway
    assert stat.S_IMODE(record.stat().st_mode) == 0o600 and not [p for p in config.data_dir().iterdir() if p.suffix == ".tmp"]
    assert conversations.latest() == gone
    gone.unlink()  # gone since: passed over
    assert conversations.latest() == mine
    os.utime(mine, (1_000_000, 1_000_000))
    assert conversations.latest() == named  # by the time each was changed
    for number in range(12):
        conversations.remember(tmp_path / f"{number}.json")
    conversations.remember(tmp_path / "5.json")  # again: it moves to the front
    assert json.loads(record.read_text()) == [str(tmp_path / f"{n}.json") for n in (5, 11, 10, 9, 8, 7, 6, 4, 3, 2)]
    os.utime(mine, (5_000_000, 5_000_000))
    assert conversations.latest() == named  # no longer among the last 10
    record.write_text("{")  # a broken record: passed over, and written anew
    assert conversations.latest() == named
    conversations.remember(mine)
    assert json.loads(record.read_text()) == [str(mine)] and conversations.latest() == mine


def test_a_record_of_session_files_nested_too_deeply_is_passed_over():
    record = conversations.recent_files_record()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("[" * 100000 + "]" * 100000)
    assert conversations.recent_files() == []


def test_a_session_file_named_in_no_utf8_is_noted_and_found_again(tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.json")  # as Python reads such a name from argv: a lone surrogate
    conversations.Conversation(None, [{"role": "user", "content": "hi"}], "fake").save(odd)
    conversations.remember(odd)
    assert conversations.recent_files() == [odd] and conversations.latest() == odd


def test_none_open_refuses_while_a_chat_holds_any_and_holds_them_all_while_its_block_runs():
    from aigc.errors import ConversationOpenError

    free, busy = conversations.sessions_dir() / "free.json", conversations.new_conversation()
    with conversations.in_use(busy):
        with pytest.raises(ConversationOpenError, match=rf"^conversation {busy.stem} is open in another aigc chat; leave that chat, then run this again \(nothing was deleted\)$"):
            with conversations.none_open([free, busy]):
                pytest.fail("the block ran while a conversation was open")
    with conversations.in_use(free):  # the refusal left none held
        with pytest.raises(ConversationOpenError, match="^session 'free' is open in another aigc chat"):
            with conversations.none_open([busy, free]):
                pytest.fail("the block ran while a session was open")
    with conversations.none_open([free, busy]):
        for path in (free, busy):
            with pytest.raises(BadInputError, match="is in use by another aigc chat"):  # a chat cannot start on one meanwhile
                with conversations.in_use(path):
                    pytest.fail("a chat held a conversation being deleted")


def test_a_conversation_deleted_while_a_session_has_it_is_not_made_again(tmp_path):
    from aigc.errors import ConversationDeletedError

    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one", "two")
    talk = session(path, engine)
    talk.ask("hi")  # the first reply makes the file
    path.unlink()  # `aigc logs rm` or `aigc sessions rm` in another terminal
    with pytest.raises(ConversationDeletedError, match=f"^session '{path}' was deleted meanwhile; this chat stops without writing it again"):
        talk.ask("again")
    assert not path.exists()
    talk.close()
    conversations.Conversation(None, [{"role": "user", "content": "hi"}], "fake").save(path)
    talk = session(path, engine)
    path.unlink()  # before its first reply
    with pytest.raises(ConversationDeletedError):
        talk.reset()
    assert not path.exists()
    talk.close()
    with pytest.raises(ConversationDeletedError, match="was deleted meanwhile"):  # picked while it was there, gone when held
        with conversations.in_use(path, existing=True):
            pytest.fail("held a conversation that is gone")
    with conversations.in_use(path):  # a new one
        assert session(path, engine).ask("new") == "" and path.is_file()


def test_a_conversation_s_lock_file_goes_with_it_and_a_chat_that_opened_the_old_one_takes_the_new(monkeypatch):
    import fcntl

    from aigc import config, locks
    from aigc.errors import ConversationOpenError

    kept, gone = conversations.sessions_dir() / "kept.json", conversations.new_conversation()
    kept.parent.mkdir(parents=True)
    for path in (kept, gone):
        conversations.Conversation(None, [{"role": "user", "content": "hi"}], "fake").save(path)
    with conversations.none_open([kept, gone]):  # `aigc logs rm` or `aigc sessions rm`
        assert locks.lock_file(kept).exists() and locks.lock_file(gone).exists()
        conversations.forget([gone])
    assert not list(config.data_dir().rglob("*.lock"))  # let go of: gone
    with conversations.in_use(conversations.new_conversation()):
        pass  # a chat left before its first reply: its conversation was never made
    assert not list(config.data_dir().rglob("*.lock"))
    real, raced = fcntl.flock, []

    def flock(handle, how):  # between this chat opening the lock file and taking it, another process deletes the session
        if not raced:
            raced.append(True)
            with conversations.none_open([kept]):
                kept.unlink()
        return real(handle, how)

    monkeypatch.setattr(fcntl, "flock", flock)
    with conversations.in_use(kept):  # holds the lock file there now, not the one removed
        assert raced and locks.lock_file(kept).exists()
        with pytest.raises(ConversationOpenError, match="^session 'kept' is open in another aigc chat"):
            with conversations.none_open([kept]):
                pytest.fail("two held the same conversation")
    assert not list(config.data_dir().rglob("*.lock"))


def test_chats_noting_session_files_at_once_each_keep_their_entry(tmp_path):
    import threading

    paths = [tmp_path / f"{n}.json" for n in range(8)]
    start = threading.Barrier(len(paths))

    def note(path):
        start.wait()
        conversations.remember(path)

    threads = [threading.Thread(target=note, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(conversations.recent_files()) == sorted(paths)


def test_a_waiting_holder_gets_the_lock_once_it_is_freed(tmp_path):
    import threading

    from aigc import locks

    path, order = tmp_path / "record.json", []

    def wait_then_note():
        with locks.held(path, wait=True):
            order.append("waiter")

    with locks.held(path, "busy") as locked:
        waiter = threading.Thread(target=wait_then_note)
        waiter.start()
        waiter.join(0.3)
        order.append("holder")
    waiter.join()
    assert locked and order == ["holder", "waiter"]


def test_loading_an_empty_file_is_refused_and_the_conversation_kept(tmp_path):
    path, empty = tmp_path / "talk.json", tmp_path / "empty.txt"
    empty.write_text("\n")
    engine = FakeEngine()
    engine.enqueue("Hello.")
    talk = session(path, engine)
    "".join(talk.send("hi"))
    with pytest.raises(BadInputError, match="is empty"):
        talk.load(empty)
    assert len(talk.messages) == 2 and len(conversations.read(path).messages) == 2
    (tmp_path / "cleared.json").write_text('{"messages": []}')
    talk.load(tmp_path / "cleared.json")  # a conversation saved empty is still one
    assert talk.messages == [] and conversations.read(path).messages == []


def test_a_conversation_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "talk.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}).encode())
    assert [m["content"] for m in conversations.read(path).messages] == ["hi", "yo"]


def test_a_reply_that_ends_after_a_reset_is_not_recorded_but_still_has_its_result(tmp_path):
    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one two three")
    chat = session(path, engine)
    stream = chat.send("count")
    next(stream)
    chat.reset()  # /reset while the reply is written
    assert "".join(stream) == " two three" and stream.result["text"] == "one two three"
    assert chat.messages == [] == conversations.read(path).messages
    engine.enqueue("four")
    assert chat.ask("again") == "four"  # the session is free for the next turn


def test_a_streamed_json_reply_is_recorded_as_answer_records_it(tmp_path):
    engine = FakeEngine()
    engine.enqueue('{"a":   1}', '{"a":   2}')
    chat = session(tmp_path / "talk.json", engine, sampling={"json_schema": "a int"})
    stream = chat.send("one")
    assert "".join(stream) == '{"a":   1}'  # the pieces as the model wrote them
    assert chat.messages[-1]["content"] == stream.result["text"] == '{"a": 1}' == conversations.read(tmp_path / "talk.json").messages[-1]["content"]
    assert chat.answer("two")["text"] == chat.messages[-1]["content"] == '{"a": 2}'


@pytest.mark.parametrize("saved", ["openai:http://evil.example:8000/v1#m", "openai:https://10.0.0.7/v1"])
def test_a_session_file_saved_with_a_server_elsewhere_does_not_pick_it_on_its_own(tmp_path, saved, monkeypatch):
    from aigc.engine.remote import OpenAIEngine

    monkeypatch.setattr(OpenAIEngine, "from_location", classmethod(lambda cls, location: pytest.fail(f"{location} was reached")))
    path = tmp_path / "shared.json"
    path.write_text(json.dumps({"model": saved, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}))
    host = saved.split("/")[2].split(":")[0]
    with pytest.raises(BadInputError, match=f"saved with model {re.escape(saved)}, a server on {re.escape(host)}; a session file may not send your messages and API key elsewhere on its own.*ChatSession\\(model={re.escape(repr(saved))}\\) yourself"):
        ChatSession(path=path)
    assert ChatSession(path=path, model="echo").ask("other") == "other"  # given by the caller, the model is theirs to pick


@pytest.mark.parametrize("saved", ["openai:http://127.0.0.1:9/v1#m", "openai:http://localhost:9/v1#m", "openai:http://[::1]:9/v1#m", "openai:https://api.openai.com/v1#gpt-4o-mini"])
def test_a_session_file_saved_with_a_server_on_this_machine_or_openais_goes_on_with_it(tmp_path, saved, monkeypatch):
    from aigc.engine.remote import OpenAIEngine

    asked = []
    monkeypatch.setattr(OpenAIEngine, "from_location", classmethod(lambda cls, location: asked.append(f"openai:{location}") or FakeEngine()))
    path = tmp_path / "talk.json"
    path.write_text(json.dumps({"model": saved, "messages": []}))
    ChatSession(path=path).generator.engine  # noqa: B018 - loads it
    assert asked == [saved]


def test_a_session_made_without_a_model_goes_on_with_the_model_it_was_saved_with(tmp_path):
    from aigc.errors import UnknownModelError

    path = tmp_path / "talk.json"
    path.write_text(json.dumps({"model": "echo", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}))
    assert ChatSession(path=path).ask("say this back") == "say this back"  # the echo model, not the default one
    path.write_text(json.dumps({"model": "no-such-model-here", "messages": []}))
    with pytest.raises(UnknownModelError, match="saved with model no-such-model-here.*ChatSession\\(model=NAME\\)"):
        ChatSession(path=path)
    assert ChatSession(path=path, model="echo").ask("other") == "other"


def test_a_session_holds_its_file_as_aigc_chat_does_until_closed_so_no_turn_is_overwritten(tmp_path):
    import gc

    from aigc import locks
    from aigc.errors import ConversationOpenError

    path = tmp_path / "same.json"
    first = session(path)
    first.ask("A first")
    with pytest.raises(ConversationOpenError, match=rf"^{re.escape(str(path))} is in use by another aigc chat or ChatSession; close that session"):
        session(path)  # a second session in this process
    with pytest.raises(ConversationOpenError, match="is in use by another aigc chat"):
        with conversations.in_use(path):  # as `aigc chat -S` takes it
            pytest.fail("held a file a session has open")
    first.close()
    with pytest.raises(BadInputError, match=r"^this ChatSession is closed \(close\(\), or its with block ended\)"):
        first.ask("A second")
    with session(path) as second:
        second.ask("B")
        with pytest.raises(ConversationOpenError):
            session(path)
    third = session(path)
    del third
    gc.collect()
    with locks.held(path, "busy", ConversationOpenError):  # garbage collected, the session let go of it
        session(path, keep=False).messages  # noqa: B018 - one that writes nothing holds nothing
    assert [m["content"] for m in conversations.read(path).messages] == ["A first", "", "B", ""]


def test_a_session_that_fails_to_be_made_does_not_hold_its_file(tmp_path):
    from aigc.errors import OptionError

    path = tmp_path / "same.json"
    with pytest.raises(OptionError, match="^n is for one-shot calls"):
        session(path, sampling={"n": 2})  # the error's traceback keeps the half-made session
    assert session(path).ask("hi") == ""


def test_aigc_chat_on_a_file_a_session_holds_is_refused_and_the_session_s_turns_stay(tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    path = tmp_path / "same.json"
    held = session(path)
    held.ask("A first")
    refused = CliRunner().invoke(app, ["chat", "-S", str(path), "-m", "echo", "cli turn"])
    assert refused.exit_code == 75 and f"{path} is in use by another aigc chat" in refused.stderr
    held.ask("A second")
    assert [m["content"] for m in conversations.read(path).messages] == ["A first", "", "A second", ""]
    held.close()
    assert CliRunner().invoke(app, ["chat", "-S", str(path), "-m", "echo", "cli turn"]).exit_code == 0
    assert [m["content"] for m in conversations.read(path).messages][-2:] == ["cli turn", "cli turn"]


def test_aigc_chat_wait_takes_its_turn_once_the_session_is_free(tmp_path, monkeypatch):
    import threading

    from typer.testing import CliRunner

    from aigc.cli import chat
    from aigc.cli.app import app

    path = tmp_path / "same.json"
    held, free = threading.Event(), threading.Event()

    def other_chat():  # another aigc chat, in the middle of its turn
        with conversations.in_use(path):
            held.set()
            free.wait(30)
            conversations.Conversation(None, [{"role": "user", "content": "A first"}, {"role": "assistant", "content": "A first"}], "echo").save(path)

    info = chat.ui.info

    def said(message):  # the waiting chat says so, then the other one ends its turn
        info(message)
        if message.startswith("(waiting for another aigc chat"):
            free.set()

    monkeypatch.setattr(chat.ui, "info", said)
    thread = threading.Thread(target=other_chat)
    thread.start()
    held.wait(30)
    result = CliRunner().invoke(app, ["chat", "-S", str(path), "-m", "echo", "--wait", "cli turn"])
    thread.join()
    assert result.exit_code == 0 and "(waiting for another aigc chat to finish with session" in result.stderr
    assert [m["content"] for m in conversations.read(path).messages] == ["A first", "A first", "cli turn", "cli turn"]
