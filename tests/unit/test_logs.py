"""The response log: what generating commands keep, `aigc logs` to read and manage it, on/off."""

import hashlib
import json

import pytest
from typer.testing import CliRunner

import aigc
from aigc import config, logs
from aigc.cli.app import app
from aigc.errors import BadInputError

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def logged(*args) -> list[dict]:
    result = invoke("logs", "--json", "-n", "0", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def entry(n: int, **changes) -> logs.Entry:
    values = {"command": "chat", "model": "m", "prompt": f"prompt {n}", "response": f"answer {n}", "options": {"template": "chat"}}
    return logs.Entry(**{**values, **changes})


def test_entries_are_the_latest_oldest_first_and_filter_by_text_model_command_and_session():
    ids = [logs.record(entry(n, model="a" if n % 2 else "b", session="trip" if n == 4 else None)) for n in range(1, 6)]
    assert ids == sorted(ids)
    assert [e.prompt for e in logs.entries(3)] == ["prompt 3", "prompt 4", "prompt 5"]
    assert [e.prompt for e in logs.entries(None, model="a")] == ["prompt 1", "prompt 3", "prompt 5"]
    assert [e.response for e in logs.entries(None, query="ANSWER 2")] == ["answer 2"]
    assert [e.prompt for e in logs.entries(None, session="trip")] == ["prompt 4"]
    assert logs.entries(None, command="summarize") == []
    assert logs.log_path().stat().st_mode & 0o777 == 0o600  # prompts and answers are private
    first = logs.entries(None)[0]
    assert first.options == {"template": "chat"} and first.datetime_utc and first.id == ids[0]


def test_query_finds_each_word_in_any_order_and_a_quoted_phrase_as_it_is():
    logs.record(entry(1, prompt="What is the capital of Italy?", response="Rome."))
    logs.record(entry(2, prompt="Plan a trip to New York", response="Day 1: the park."))
    found = lambda query: [e.id for e in logs.entries(None, query=query)]  # noqa: E731
    first, second = [e.id for e in logs.entries(None)]
    assert found("italy CAPITAL") == [first]  # as `llm logs -q "italy capital"` finds it
    assert found("rome capital") == [first]  # one word in the response, one in the prompt
    assert found("trip rome") == []
    assert found('"new york" trip') == [second] and found('"york new"') == []
    assert found("  ") == []  # spaces alone are searched for as they are
    assert invoke("logs", "-q", "italy capital", "-r").stdout == "Rome.\n"


def test_query_finds_the_template_name_too():
    logs.record(entry(1, prompt="Bake bread", response="Flour, water.", options={"template": "Recipe-Card"}))
    logs.record(entry(2, prompt="Bake a cake", response="Eggs.", options={"template": "chat"}))
    logs.record(entry(3, prompt="recipe for soup", response="Leeks.", options={"template": 5}))  # no name: searched as text, no error
    logs.record(entry(4, prompt="recipe notes", response="Salt.", options={}))
    found = lambda query: [e.prompt for e in logs.entries(None, query=query)]  # noqa: E731
    assert found("recipe-card") == ["Bake bread"]
    assert found("card bake") == ["Bake bread"]  # one word in the template's name, one in the prompt
    assert found("recipe") == ["Bake bread", "recipe for soup", "recipe notes"]
    assert found("chat cake") == ["Bake a cake"] and found("chat bread") == []
    assert invoke("logs", "-q", "recipe-card", "-r").stdout == "Flour, water.\n"


def test_truncate_shows_each_answer_as_one_line_with_no_options_line():
    document = "Bees.\n\n" + "word " * 200
    first = logs.record(entry(1, prompt=document, response="A short\nsummary.", options={"template": "chat", "temperature": 0.0, "top_p": 0.9}))
    second = logs.record(entry(2, command="run", prompt="bake", response="bread " * 50, options={"template": "recipe"}))
    shown = invoke("logs", "-t")
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert len(lines) == 2  # one line an entry, none between them: no options line, no ### Prompt
    day_and_minute = logs.entries(None)[0].datetime_utc[:16].replace("T", " ")
    assert lines[0] == f"## {first} · {day_and_minute} UTC · chat · m · " + ("Bees. " + "word " * 200)[:37] + "... → A short summary."
    assert lines[1].startswith(f"## {second} · ") and " · run/recipe · m · bake → " + ("bread " * 50)[:57] + "..." in lines[1]  # the template after the command it is not
    assert "temperature" not in shown.stdout and document in invoke("logs").stdout  # without -t: all of it, options too
    for other in ("-r", "--json", "-x"):
        refused = invoke("logs", "-t", other)
        assert refused.exit_code == 2 and "--truncate shortens the Markdown listing" in refused.stderr


def test_truncate_counts_terminal_columns_and_never_cuts_inside_a_character_as_shown():
    from rich.cells import cell_len

    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one emoji, seven code points
    logs.record(entry(1, prompt="人工智能正在改变内容创作的方式。" * 5, response="a" * 55 + " " + family + " and more"))
    shown = invoke("logs", "-t").stdout
    prompt, response = shown.split(" · m · ")[1].rstrip("\n").split(" → ")
    assert prompt == ("人工智能正在改变内容创作的方式。" * 5)[:18] + "..." and cell_len(prompt) == 39  # 18 wide characters: 36 columns
    assert response == "a" * 55 + " ..."  # the family whole or not at all


def test_a_session_file_named_in_no_utf8_is_logged_with_its_odd_bytes_shown_as_u_fffd():
    name = "/tmp/caf\udce9.json"  # as Python reads such a name from argv: a lone surrogate, which SQLite takes not
    logs.record(entry(1, session=name, options={"template": "chat", "path": name}))
    logged = logs.entries(None)[0]
    assert logged.session == "/tmp/caf\ufffd.json" and logged.options["path"] == "/tmp/caf\ufffd.json" and logged.prompt == "prompt 1"


def test_a_filter_naming_what_the_log_never_holds_says_so():
    for n, command in enumerate(("chat", "summarize")):
        logs.record(entry(n, command=command))
    assert invoke("logs", "-S", "nope").stderr == "No logged answer matches: no answer was logged with --session nope (the log has none).\n"
    logs.record(entry(2, session="trip"))
    assert invoke("logs", "-S", "nope").stderr == "No logged answer matches: no answer was logged with --session nope (the log has trip).\n"
    assert invoke("logs", "-S", "trip", "--command", "summarize").stderr == "No logged answer matches.\n"
    assert invoke("logs", "--command", "chatt").stderr == "No logged answer matches: no answer was logged with --command chatt (the log has chat, summarize).\n"
    assert invoke("logs", "--model", "x").stderr == "No logged answer matches: no answer was logged with --model x (the log has m).\n"
    assert invoke("logs", "-q", "nowhere").stderr == "No logged answer matches.\n"


def test_remove_checks_every_id_first_and_clear_empties_the_log():
    ids = [logs.record(entry(n)) for n in range(3)]
    with pytest.raises(BadInputError, match="no logged response 99"):
        logs.remove([ids[0], 99])
    assert len(logs.entries(None)) == 3
    assert logs.remove([ids[0]]) == 1
    assert [e.id for e in logs.entries(None)] == ids[1:]
    assert logs.clear() == 2 and logs.entries(None) == []


def test_logging_is_on_by_default_off_by_setting_and_the_environment_decides_first(monkeypatch):
    assert logs.logging_state() == (True, "aigc's default")
    logs.set_enabled(False)
    assert logs.enabled() is False and "logs = false" in config.settings_file().read_text()
    monkeypatch.setenv("AIGC_LOGS", "on")
    assert logs.logging_state() == (True, "set by AIGC_LOGS")
    monkeypatch.setenv("AIGC_LOGS", "maybe")
    with pytest.raises(BadInputError, match="AIGC_LOGS must be on or off"):
        logs.enabled()
    monkeypatch.delenv("AIGC_LOGS")
    logs.set_enabled(True)
    assert logs.logging_state() == (True, "aigc's default")


def test_a_data_directory_that_is_a_file_is_said_to_be_one(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "afile"))
    for command in (["logs", "status"], ["logs"], ["sessions"]):
        result = invoke(*command)
        assert result.exit_code == 2 and "data directory" in result.stderr and "is a file; point AIGC_DATA_DIR at a directory" in result.stderr


def test_a_data_directory_that_cannot_be_made_for_the_log_says_how_to_run_without_it(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "afile" / "data"))  # as a read-only one, which root could write
    monkeypatch.setenv("AIGC_LOGS", "1")
    said = f"cannot make directory {tmp_path / 'afile' / 'data'}: {tmp_path / 'afile'} is a file (AIGC_DATA_DIR moves aigc's data; AIGC_LOGS=0 or --no-log runs without writing it)"
    chat = invoke("chat", "-m", "echo", "hi")  # its conversation is not kept either, and it still answers
    assert chat.exit_code == 0 and chat.stdout == "hi\n"
    assert chat.stderr == f"Warning: this chat is not kept for -c or --cid: {said}\nWarning: {said} (answers are not logged in this run)\n"
    headline = invoke("headline", "-m", "echo", "--topic", "bees", "-n", "1")
    assert headline.exit_code == 0 and headline.stdout == "bees\n" and headline.stderr == f"Warning: {said} (answers are not logged in this run)\n"
    assert invoke("chat", "-m", "echo", "hi", "--no-log").stdout == "hi\n"


def test_a_file_that_is_not_a_log_is_a_one_line_error_and_is_left_as_it_is():
    import sqlite3

    logs.log_path().parent.mkdir(parents=True)
    logs.log_path().write_text("not a database " * 100)
    with pytest.raises(BadInputError, match="move it away"):
        logs.record(entry(1))
    logs.log_path().unlink()
    with sqlite3.connect(logs.log_path()) as other:  # another program's database, even with a responses table
        other.execute("CREATE TABLE responses (id INTEGER PRIMARY KEY, foo TEXT)")
    for action in (lambda: logs.record(entry(1)), lambda: logs.entries(None)):
        with pytest.raises(BadInputError, match="not aigc's response log"):
            action()
    with sqlite3.connect(logs.log_path()) as other:
        assert [row[0] for row in other.execute("SELECT name FROM sqlite_master")] == ["responses"]
        assert other.execute("PRAGMA user_version").fetchone()[0] == 0


def test_a_second_aigc_logging_while_the_first_makes_the_log_waits_for_it(monkeypatch):
    import sqlite3
    import threading

    connect, seen = sqlite3.connect, []

    def second():
        try:
            logs.record(entry(2))
        except BadInputError as exc:
            seen.append(exc)

    class Making(sqlite3.Connection):
        def execute(self, sql, *args):
            cursor = super().execute(sql, *args)
            if sql == logs.SCHEMA and not seen:  # the table is made: another aigc logs now
                seen.append(threading.Thread(target=second))
                seen[0].start()
                seen[0].join(0.5)  # it fails at once, or waits for this transaction
            return cursor

    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: connect(*args, factory=Making, **kwargs))
    logs.record(entry(1))
    seen[0].join()
    assert seen[1:] == [] and sorted(e.prompt for e in logs.entries(None)) == ["prompt 1", "prompt 2"]  # not "is not aigc's response log"


def test_an_empty_file_is_an_empty_log_and_search_folds_any_case():
    logs.log_path().parent.mkdir(parents=True)
    logs.log_path().touch()
    assert logs.entries(None) == [] and logs.status()["responses"] == 0
    logs.record(entry(1, prompt="Été froid à Genève"))
    assert [e.prompt for e in logs.entries(None, query="ÉTÉ FROID")] == ["Été froid à Genève"]


def test_ids_and_counts_beyond_sqlite_integers_are_bad_input_not_crashes():
    logs.record(entry(1))
    with pytest.raises(BadInputError, match="no logged response 99999999999999999999"):
        logs.remove([99999999999999999999])
    assert len(logs.entries(99999999999999999999)) == 1


def test_a_one_shot_chat_is_logged_with_its_tokens_and_time(tiny_model_dir):
    result = invoke("chat", "Bees make", "-m", str(tiny_model_dir), "--max-tokens", "6", "--seed", "2", "--temperature", "1", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    (row,) = logged()
    assert row["command"] == "chat" and row["prompt"] == "Bees make" and row["response"] == result.stdout.strip()
    from aigc import templates

    in_effect = {"top_p": 0.9, "top_k": 0, "n": 1, "repetition_penalty": 1.1, "min_p": 0.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}  # chat's defaults, and SamplingParams'
    assert row["model"] == str(tiny_model_dir) and row["options"] == {"template": "chat", "template_digest": templates.digest("chat"), "temperature": 1.0, "max_tokens": 6, "seed": 2, **in_effect, "dtype": "float32", "model_digest": hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()[:16], "aigc_version": aigc.__version__}
    assert row["prompt_tokens"] > 0 and 0 < row["completion_tokens"] <= 6 and row["duration_ms"] >= 0


def test_no_log_logs_off_and_log_decide_what_is_kept(tiny_model_dir):
    args = ("chat", "Bees", "-m", str(tiny_model_dir), "--max-tokens", "3")
    assert invoke(*args, "--no-log").exit_code == 0 and logged() == []
    assert invoke("logs", "off").exit_code == 0
    assert invoke(*args).exit_code == 0 and logged() == []
    assert invoke(*args, "--log").exit_code == 0 and len(logged()) == 1
    assert invoke("logs", "on").exit_code == 0
    assert invoke(*args).exit_code == 0 and len(logged()) == 2


def test_summarize_run_and_classify_keep_what_they_printed_and_their_result(tiny_model_dir, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Bees make honey.\n\nCities have rooftops.")
    model = ("-m", str(tiny_model_dir))
    summary = invoke("summarize", str(doc), *model, "--max-tokens", "8", "--length", "short")
    answer = invoke("run", "chat", "--var", "input=bees", *model, "--max-tokens", "8")
    label = invoke("classify", "Bees make honey", "-l", "insects,cities", *model)
    assert all(r.exit_code == 0 for r in (summary, answer, label)), [r.output for r in (summary, answer, label)]
    rows = {row["command"]: row for row in logged()}
    assert rows["summarize"]["prompt"] == doc.read_text() and rows["summarize"]["response"] == summary.stdout.strip()
    assert rows["summarize"]["result"]["summary"] == rows["summarize"]["response"] and rows["summarize"]["options"]["length"] == "short"
    assert json.loads(rows["run"]["prompt"]) == {"input": "bees"} and rows["run"]["response"] == answer.stdout.strip()
    assert rows["classify"]["response"] in ("insects", "cities") and label.stdout.startswith(rows["classify"]["response"])
    assert sum(rows["classify"]["result"]["scores"].values()) == pytest.approx(1)


def test_lines_log_each_line_without_per_line_tokens(tiny_model_dir):
    result = invoke("translate", "-", "--to", "fr", "--lines", "-m", str(tiny_model_dir), "--max-tokens", "4", input="Bees.\n\nCities.\n")
    assert result.exit_code == 0, result.output
    rows = logged("--command", "translate")
    assert [r["prompt"] for r in rows] == ["Bees.", "Cities."]
    assert [r["response"] for r in rows] == result.stdout.splitlines()[::2]  # the blank input line is a blank output line
    assert all(r["prompt_tokens"] is None and r["duration_ms"] is None for r in rows)


def test_a_log_that_cannot_be_written_is_one_warning_and_the_answers_stand(tiny_model_dir):
    logs.log_path().parent.mkdir(parents=True)
    logs.log_path().write_bytes(b"\x00garbage" * 200)
    args = ("chat", "Bees", "-m", str(tiny_model_dir), "--max-tokens", "8", "--seed", "2", "--temperature", "1")
    result = invoke(*args)
    assert result.exit_code == 0 and result.stdout == invoke(*args, "--no-log").stdout
    assert "move it away" in result.stderr and "not logged" in result.stderr
    lines = invoke("classify", "-", "-l", "a,b", "--lines", "-m", str(tiny_model_dir), input="one\ntwo\nthree\n")
    assert lines.exit_code == 0 and len(lines.stdout.splitlines()) == 3
    assert lines.stderr.count("not logged") == 1


def test_keep_without_a_mark_logs_the_answer_unmeasured(tiny_engine):
    from aigc.cli.options import RunOptions

    class Generator:
        engine = tiny_engine

    RunOptions().keep(Generator(), "shout", "hi", "HI", {"n": 1})
    (row,) = logs.entries(None)
    assert (row.command, row.response, row.duration_ms, row.prompt_tokens) == ("shout", "HI", None, None)


def test_logs_list_markdown_response_and_rm_through_the_cli():
    for n in range(4):
        logs.record(entry(n, prompt=f"question {n}"))
    shown = invoke("logs")
    assert shown.exit_code == 0
    assert shown.stdout.count("### Prompt") == 3 and "question 1" in shown.stdout and "question 0" not in shown.stdout
    assert invoke("logs", "-r").stdout == "answer 3\n"
    assert invoke("logs", "list", "-q", "question 2", "-n", "0").stdout.count("### Prompt") == 1
    ids = [row["id"] for row in logged()]
    one = invoke("logs", "show", str(ids[1]))
    assert one.exit_code == 0 and "question 1" in one.stdout and one.stdout.count("### Prompt") == 1
    assert invoke("logs", "show", str(ids[1]), "-r").stdout == "answer 1\n"
    assert json.loads(invoke("logs", "show", str(ids[2]), "--json").stdout) == logged()[2]
    for bad in ("12345", "99999999999999999999", "0"):
        assert "no logged response" in invoke("logs", "show", bad).stderr
    assert invoke("logs", "rm", str(ids[0])).exit_code == 0
    assert [row["id"] for row in logged()] == ids[1:]
    missing = invoke("logs", "rm", "12345")
    assert missing.exit_code == 2 and "no logged response 12345" in missing.stderr
    assert invoke("logs", "rm").exit_code == 2
    assert invoke("logs", "rm", "--all").exit_code == 0 and logged() == []
    assert invoke("logs", "-n", "5", "off").exit_code == 2  # list options belong to list


def test_the_markdown_header_leaves_out_options_given_no_value_and_json_keeps_them():
    logs.record(entry(1, options={"labels": "a,b", "aspect": "", "threshold": None, "multi_label": False}))
    header = invoke("logs", "-n", "1").stdout.split("\n\n")[1]
    assert header == "labels=a,b, multi_label=false"
    assert logged()[0]["options"] == {"labels": "a,b", "aspect": "", "threshold": None, "multi_label": False}
    logs.record(entry(2, options={"aspect": ""}))
    assert invoke("logs", "-n", "1").stdout.split("\n\n")[1] == "### Prompt"  # no options line at all


def test_logs_on_and_off_check_the_environment_before_changing_the_setting(monkeypatch):
    monkeypatch.setenv("AIGC_LOGS", "garbage")
    assert invoke("logs", "off").exit_code == 2
    assert not config.settings_file().exists()


def test_a_session_filter_takes_a_name_or_its_file(tiny_model_dir, tmp_path):
    from aigc import conversations

    named = invoke("chat", "Bees", "-S", "trip", "-m", str(tiny_model_dir), "--max-tokens", "3")
    file = invoke("chat", "Cities", "-S", str(tmp_path / "mine.json"), "-m", str(tiny_model_dir), "--max-tokens", "3")
    assert named.exit_code == 0 and file.exit_code == 0, named.output + file.output
    assert [r["prompt"] for r in logged("-S", "trip")] == ["Bees"]
    assert [r["prompt"] for r in logged("-S", str(conversations.sessions_dir() / "trip.json"))] == ["Bees"]
    assert [r["prompt"] for r in logged("-S", str(tmp_path / "mine.json"))] == ["Cities"]


def test_current_shows_the_latest_conversation_as_llm_logs_c_does():
    import os

    from aigc import conversations

    assert invoke("logs", "-c").stderr.startswith("Error: there is no conversation")
    conversations.conversations_dir().mkdir(parents=True, exist_ok=True)
    for n, cid in enumerate(("20261205-010000-aaaaaa", "20261205-020000-bbbbbb")):
        (conversations.conversations_dir() / f"{cid}.json").write_text('{"messages": [{"role": "user", "content": "hi"}]}')
        os.utime(conversations.conversations_dir() / f"{cid}.json", (1000 + n, 1000 + n))
    for n, cid in enumerate(("20261205-020000-bbbbbb", "20261205-010000-aaaaaa", "20261205-020000-bbbbbb", None)):
        logs.record(entry(n, session=cid))
    assert [r["prompt"] for r in logged("--current")] == ["prompt 0", "prompt 2"]  # the latest changed, whatever was logged last
    assert invoke("logs", "list", "-c", "-r").stdout == "answer 2\n"
    assert invoke("logs", "-c", "-S", "trip").stderr == "Error: give --current or --session, not both\n"


def test_logs_status_path_and_an_empty_log():
    assert "No answers logged yet" in invoke("logs").stderr
    status = json.loads(invoke("logs", "status", "--json").stdout)
    assert status["logging"] is True and status["responses"] == 0 and status["path"] == invoke("logs", "path").stdout.strip()


def test_only_commands_that_log_have_the_log_option():
    for command in (("eval", "classify"), ("batch",)):
        assert "--no-log" not in invoke(*command, "--help").stdout
    for command in ("chat", "summarize", "headline", "translate", "classify", "run"):
        assert "--no-log" in invoke(command, "--help").stdout


def test_an_entry_nested_too_deeply_is_an_entry_aigc_cannot_read():
    import sqlite3
    from contextlib import closing

    logs.record(entry(1))
    with closing(sqlite3.connect(logs.log_path())) as db, db:
        db.execute("UPDATE responses SET options = ?", ("[" * 100000 + "]" * 100000,))
    for args in (["logs"], ["logs", "show", "1"]):
        result = invoke(*args)
        assert result.exit_code == 2 and result.stderr == f"Error: {logs.log_path()} holds an entry aigc cannot read (ValueError: nested too deeply); move the file away\n", result.output


def test_a_session_file_is_one_session_however_its_path_is_written(tmp_path):
    from aigc import conversations

    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    logs.record(entry(1, session=conversations.session_label(tmp_path / "sub" / ".." / "mine.json")))  # `chat -S sub/../mine.json`
    logs.record(entry(2, session=conversations.session_label(tmp_path / "link" / "theirs.json")))
    assert [r["prompt"] for r in logged("-S", str(tmp_path / "mine.json"))] == ["prompt 1"]
    assert [r["prompt"] for r in logged("-S", str(tmp_path / "sub" / "theirs.json"))] == ["prompt 2"]
    assert conversations.session_label(conversations.sessions_dir() / ".." / "sessions" / "trip.json") == "trip"


def test_id_gt_id_gte_and_since_give_what_came_after_for_a_cron_export():
    import sqlite3
    from contextlib import closing

    ids = [logs.record(entry(n)) for n in range(6)]
    with closing(sqlite3.connect(logs.log_path())) as db, db:
        for n, when in enumerate(("2026-12-01T10:00:00+00:00", "2026-12-02T10:00:00+00:00", "2026-12-03T09:00:00+00:00", "2026-12-03T10:00:00+00:00", "2026-12-04T10:00:00+00:00", "2026-12-05T10:00:00+00:00")):
            db.execute("UPDATE responses SET datetime_utc = ? WHERE id = ?", (when, ids[n]))
    ids_of = lambda *args: [r["id"] for r in json.loads(invoke("logs", "--json", *args).stdout)]  # noqa: E731
    assert ids_of("--id-gt", str(ids[0])) == ids[1:]  # every one after it: no -n 3 unless asked
    assert ids_of("--id-gte", str(ids[4])) == ids[4:]
    assert ids_of("--id-gt", str(ids[0]), "-n", "2") == ids[4:]  # the latest 2 of those
    assert ids_of("--id-gt", str(ids[-1])) == [] and ids_of("--id-gt", str(2**70)) == []
    assert ids_of("--id-gt", str(ids[1]), "--id-gte", str(ids[4])) == ids[4:]  # both hold
    assert ids_of("--since", "2026-12-03T10:00Z") == ids[3:]
    assert ids_of("--since", "2026-12-03 10:00:00 UTC", "--id-gt", str(ids[4])) == ids[5:]  # as `aigc logs` shows a time
    assert [e.id for e in logs.entries(None, min_id=ids[1], since=logs.since_time("2026-12-03T09:30Z"))] == ids[3:]  # the library's filters
    none = invoke("logs", "--id-gt", str(ids[-1]))
    assert none.exit_code == 0 and none.stderr == "No logged answer matches.\n"
    for bad in ("last tuesday", ""):
        refused = invoke("logs", "--since", bad)
        assert refused.exit_code == 2 and "--since takes a date or time" in refused.stderr
    assert invoke("logs", "--since", "1d", "list").exit_code == 2  # list options belong to list
    assert [r["id"] for r in json.loads(invoke("logs", "list", "--json", "--id-gt", str(ids[3])).stdout)] == ids[4:]


def test_until_gives_what_came_before_and_with_since_a_window():
    import sqlite3
    from contextlib import closing

    ids = [logs.record(entry(n)) for n in range(5)]
    with closing(sqlite3.connect(logs.log_path())) as db, db:
        for n, when in enumerate(("2026-12-01T10:00:00+00:00", "2026-12-02T10:00:00+00:00", "2026-12-03T10:00:00+00:00", "2026-12-04T10:00:00+00:00", "2026-12-05T10:00:00+00:00")):
            db.execute("UPDATE responses SET datetime_utc = ? WHERE id = ?", (when, ids[n]))
    ids_of = lambda *args: [r["id"] for r in json.loads(invoke("logs", "--json", *args).stdout)]  # noqa: E731
    assert ids_of("--until", "2026-12-03T10:00Z", "-n", "0") == ids[:2]  # before it: a window's end is not in it
    assert ids_of("--until", "2026-12-05 10:00:00 UTC") == ids[1:4]  # the latest 3 unless -n says, as without --until
    assert ids_of("--since", "2026-12-02T00:00Z", "--until", "2026-12-04T00:00Z") == ids[1:3]  # every one in between
    assert ids_of("--since", "2026-12-04T00:00Z", "--until", "1d") == ids[3:]  # a time ago, as --since takes
    assert [r["id"] for r in json.loads(invoke("logs", "list", "--json", "--until", "2026-12-02T10:00:01Z").stdout)] == ids[:2]
    assert [e.id for e in logs.entries(None, since=logs.since_time("2026-12-02T00:00Z"), until=logs.since_time("2026-12-03T00:00Z", flag="--until"))] == [ids[1]]
    backwards = invoke("logs", "--since", "2026-12-04", "--until", "2026-12-02")
    assert backwards.exit_code == 2 and backwards.stderr.startswith("Error: --until (2026-12-0") and "must be after --since (2026-12-0" in backwards.stderr
    assert len(backwards.stderr.splitlines()) == 1 and "Traceback" not in backwards.stderr
    with pytest.raises(BadInputError, match=r"^until \(2026-12-02 00:00:00 UTC\) must be after since \(2026-12-02 00:00:00 UTC\)"):
        logs.entries(None, since=logs.since_time("2026-12-02T00:00Z"), until=logs.since_time("2026-12-02T00:00Z"))
    refused = invoke("logs", "--until", "last tuesday")
    assert refused.exit_code == 2 and "--until takes a date or time" in refused.stderr
    assert invoke("logs", "--until", "1d", "list").exit_code == 2  # list options belong to list
    none = invoke("logs", "--until", "2026-11-01")
    assert none.exit_code == 0 and none.stderr == "No logged answer matches.\n"


def test_since_reads_a_time_ago_a_zoned_time_and_a_local_one(monkeypatch):
    import time
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert logs.since_time("90s", now) == now - timedelta(seconds=90)
    assert [logs.since_time(ago, now) for ago in ("30m", "12h", "7d", "2w")] == [now - timedelta(minutes=30), now - timedelta(hours=12), now - timedelta(days=7), now - timedelta(weeks=2)]
    assert logs.since_time("2026-12-06T08:00+01:00") == datetime(2026, 12, 6, 7, 0, tzinfo=timezone.utc)
    assert logs.since_time("2026-12-06 08:00:00 UTC") == logs.since_time("2026-12-06T08:00Z") == logs.since_time("2026-12-06T08:00z") == datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
    monkeypatch.setenv("TZ", "UTC-02")  # POSIX: two hours east of UTC
    time.tzset()
    try:
        assert logs.since_time("2026-12-06") == datetime(2026, 12, 5, 22, 0, tzinfo=timezone.utc)  # a time naming no zone is local, as `date` shows it
    finally:
        monkeypatch.undo()
        time.tzset()
    for bad in ("yesterday", "2026-12-06T08:00+01:00Z", "3 days", "10y", f"{10**12}d", "999999999d", ""):
        with pytest.raises(BadInputError, match="--since takes a date or time"):
            logs.since_time(bad, now)


def test_a_date_alone_as_until_is_the_end_of_that_day_so_since_and_until_the_same_day_is_that_day(monkeypatch):
    import sqlite3
    import time
    from contextlib import closing
    from datetime import datetime, timezone

    monkeypatch.setenv("TZ", "UTC-02")  # local time two hours east of UTC: the day is a local one, as --since's
    time.tzset()
    try:
        assert logs.since_time("2026-12-06", flag="--until", end_of_day=True) == datetime(2026, 12, 6, 22, 0, tzinfo=timezone.utc)
        assert logs.since_time("2026-12-06 UTC", flag="--until", end_of_day=True) == datetime(2026, 12, 7, 0, 0, tzinfo=timezone.utc)
        assert logs.since_time("2026-12-06T08:00", flag="--until", end_of_day=True) == datetime(2026, 12, 6, 6, 0, tzinfo=timezone.utc)  # a time: as it is
        ids = [logs.record(entry(n)) for n in range(4)]
        with closing(sqlite3.connect(logs.log_path())) as db, db:  # local: Dec 5 23:30, Dec 6 00:30, Dec 6 23:30, Dec 7 00:30
            for n, when in enumerate(("2026-12-05T21:30:00+00:00", "2026-12-05T22:30:00+00:00", "2026-12-06T21:30:00+00:00", "2026-12-06T22:30:00+00:00")):
                db.execute("UPDATE responses SET datetime_utc = ? WHERE id = ?", (when, ids[n]))
        day = invoke("logs", "--json", "--since", "2026-12-06", "--until", "2026-12-06")
        assert day.exit_code == 0, day.output
        assert [r["id"] for r in json.loads(day.stdout)] == ids[1:3]
        assert invoke("logs", "rm", "--until", "2026-12-06").exit_code == 0 and [row["id"] for row in logged()] == ids[3:]  # that day's too
        for command in (["logs", "--help"], ["logs", "rm", "--help"]):
            assert "that day" in " ".join(invoke(*command).stdout.replace("│", " ").split())
    finally:
        monkeypatch.undo()
        time.tzset()


def test_short_is_llm_logs_s_for_the_one_line_listing():
    logs.record(entry(1, prompt="line one\nline two", response="A short\nsummary."))
    assert invoke("logs", "-s").stdout == invoke("logs", "--truncate").stdout == invoke("logs", "--short").stdout
    assert " · line one line two → A short summary.\n" in invoke("logs", "-s").stdout


def test_a_template_run_logs_its_templates_digest_and_logs_template_finds_its_runs():
    from aigc import templates

    path = templates.user_dir() / "review.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("Review for: {{ input }}")
    assert invoke("run", "review", "--var", "input=code", "-m", "echo").exit_code == 0
    path.write_text("Please review for: {{ input }}")
    assert invoke("run", "review", "--var", "input=code", "-m", "echo").exit_code == 0
    assert invoke("chat", "hi", "-m", "echo").exit_code == 0
    rows = logged("--template", "review")
    assert [row["command"] for row in rows] == ["run", "run"]
    assert rows[0]["options"]["template_digest"] != rows[1]["options"]["template_digest"] == templates.digest("review")
    missing = invoke("logs", "--template", "reveiw")
    assert missing.exit_code == 0 and "no answer was logged with --template reveiw (the log has chat, review)" in missing.stderr


def test_the_seed_drawn_for_a_sampled_answer_is_recorded_and_makes_it_again(tiny_model_dir):
    model = ("-m", str(tiny_model_dir), "--max-tokens", "6")
    sampled = invoke("chat", "Bees make", *model, "--temperature", "1.5", "--json")
    assert sampled.exit_code == 0, sampled.output
    seed = json.loads(sampled.stdout)["seed"]
    assert isinstance(seed, int) and logged()[-1]["options"]["seed"] == seed
    again = invoke("chat", "Bees make", *model, "--temperature", "1.5", "--json", "--seed", str(seed), "--no-log")
    assert json.loads(again.stdout)["text"] == json.loads(sampled.stdout)["text"] and "seed" not in json.loads(again.stdout)  # given, not drawn
    several = invoke("run", "chat", "--var", "input=bees", *model, "--json")  # aigc run samples at 0.7 by default
    assert isinstance(json.loads(several.stdout)["seed"], int) and logged()[-1]["options"]["seed"] == json.loads(several.stdout)["seed"]
    summary = invoke("summarize", "-", *model, "--temperature", "1", "--json", input="Bees make honey.\n\nCities have rooftops.")
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["seed"] == logged()[-1]["options"]["seed"]
    greedy = invoke("chat", "Bees make", *model, "--json")
    assert "seed" not in json.loads(greedy.stdout) and "seed" not in logged()[-1]["options"]  # a greedy answer draws none
    echoed = invoke("chat", "Bees make", "-m", "echo", "--temperature", "1", "--json")
    assert "seed" not in json.loads(echoed.stdout)  # a model that does not sample


def test_a_log_row_records_the_sampling_defaults_an_answer_took(tiny_model_dir):
    assert invoke("chat", "Bees make", "-m", str(tiny_model_dir), "--max-tokens", "3", "-n", "2").exit_code == 0
    (row,) = logged()
    assert row["options"]["temperature"] == 0.7 and row["options"]["n"] == 2 and row["options"]["repetition_penalty"] == 1.1  # chat -n's implicit temperature
    assert invoke("run", "chat", "--var", "input=bees", "-m", "echo").exit_code == 0
    from aigc import templates

    assert logged()[-1]["options"] | {"aigc_version": None} == {"template": "chat", "template_digest": templates.digest("chat"), "temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_tokens": 512, "n": 1, "repetition_penalty": 1.1, "min_p": 0.0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "aigc_version": None}
    assert logged()[-1]["options"]["aigc_version"] == aigc.__version__


def _aged(entry_id: int, days: int) -> None:
    """Make an entry look logged `days` days ago."""
    from datetime import datetime, timedelta, timezone

    with logs._connect() as db, db:
        db.execute("UPDATE responses SET datetime_utc = ? WHERE id = ?", ((datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds"), entry_id))


def test_rm_until_deletes_the_answers_logged_before_when_and_keep_all_but_the_latest_n():
    ids = [logs.record(entry(n)) for n in range(6)]
    for entry_id, days in zip(ids, (40, 35, 31, 10, 1)):
        _aged(entry_id, days)
    done = invoke("logs", "rm", "--until", "30d")  # not a terminal: no question
    assert done.exit_code == 0, done.output
    assert "deleted 3 logged answers (logged before " in done.stderr and "3 kept" in done.stderr
    assert [row["id"] for row in logged()] == ids[3:]
    nothing = invoke("logs", "rm", "--until", "30d")
    assert nothing.exit_code == 0 and "nothing deleted: no logged answer is logged before" in nothing.stderr
    assert invoke("logs", "rm", "--keep", "2").exit_code == 0 and [row["id"] for row in logged()] == ids[4:]
    assert invoke("logs", "rm", "--keep", "5").exit_code == 0 and [row["id"] for row in logged()] == ids[4:]


def test_rm_until_with_keep_deletes_only_the_old_answers_beyond_the_latest_n():
    ids = [logs.record(entry(n)) for n in range(5)]
    for entry_id in ids[:4]:
        _aged(entry_id, 60)
    assert logs.to_prune(logs.since_time("30d"), 2) == (3, set())
    done = invoke("logs", "rm", "--until", "30d", "--keep", "2")
    assert done.exit_code == 0 and "beyond the latest 2" in done.stderr
    assert [row["id"] for row in logged()] == ids[3:]  # the latest 2 kept though one is old; the new one kept


@pytest.mark.parametrize("args", [("--keep", "-1"), ("--until", "soon"), ("--all", "--keep", "1"), ("1", "--until", "1d"), ()])
def test_rm_refuses_bad_or_clashing_ways_of_choosing_what_to_delete(args):
    logs.record(entry(1))
    refused = invoke("logs", "rm", *args)
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: ") and len(logged()) == 1


def test_a_prune_gives_the_space_back_so_logs_status_shows_the_file_smaller():
    for n in range(100):
        logs.record(entry(n, response="word " * 2000))
    before = json.loads(invoke("logs", "status", "--json").stdout)
    assert invoke("logs", "rm", "--keep", "5").exit_code == 0
    after = json.loads(invoke("logs", "status", "--json").stdout)
    assert after["responses"] == 5 and after["bytes"] < before["bytes"] / 5


def test_rm_of_many_answers_asks_first_on_a_terminal_and_a_no_deletes_nothing(monkeypatch):
    from aigc.cli import options

    monkeypatch.setattr(options, "stdin_is_terminal", lambda: True)
    ids = [logs.record(entry(n)) for n in range(3)]
    for entry_id in ids:
        _aged(entry_id, 1)  # logged a day ago: "--until 1h" takes them all, whatever second this runs in
    for args in (("--all",), ("--keep", "1"), ("--until", "1h")):
        for answer in ("n\n", "\n", "", "whatever\n"):  # "" : Ctrl-D
            kept = invoke("logs", "rm", *args, input=answer)
            assert kept.exit_code == 1 and "[y/N]" in kept.stderr and "nothing deleted" in kept.stderr, kept.output
            assert len(logged()) == 3
    asked = invoke("logs", "rm", "--keep", "1", input="y\n")
    assert asked.exit_code == 0 and "delete 2 of the 3 logged answers (beyond the latest 1)? [y/N]" in asked.stderr
    assert [row["id"] for row in logged()] == ids[2:]
    one = invoke("logs", "rm", str(ids[2]))  # an answer named by its id: not asked
    assert one.exit_code == 0 and "[y/N]" not in one.stderr and logged() == []
    logs.record(entry(9))
    sure = invoke("logs", "rm", "--all", "-y")
    assert sure.exit_code == 0 and "[y/N]" not in sure.stderr and logged() == []


def test_ctrl_c_at_the_question_is_a_no(monkeypatch):
    from aigc.cli import options

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(options, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(options, "_answer", interrupted)
    logs.record(entry(1))
    kept = invoke("logs", "rm", "--all")
    assert kept.exit_code == 1 and "nothing deleted" in kept.stderr and len(logged()) == 1, kept.output


def test_an_answer_made_through_your_alias_is_logged_as_its_model_and_found_by_either_name(tiny_model_dir):
    model = str(tiny_model_dir)
    logs.record(entry(1, model="mine"))  # as aigc logged one before: the alias as typed
    config.set_alias("mine", model)
    for name, prompt in (("mine", "hi"), (model, "hello")):
        assert invoke("chat", prompt, "-m", name, "--max-tokens", "2").exit_code == 0
    assert [(row["model"], row["options"].get("model_alias")) for row in logged()] == [("mine", None), (model, "mine"), (model, None)]
    assert [row["prompt"] for row in logged("-m", model)] == ["hi", "hello"]  # the model's answers, those made through your alias too
    assert [row["prompt"] for row in logged("-m", "mine")] == ["prompt 1", "hi"]  # the alias's, the older row too
    config.set_alias("mine", None)  # gone or re-pointed later: its answers still name the model that made them
    assert [row["prompt"] for row in logged("-m", model)] == ["hi", "hello"] and ", model_alias=mine, " in invoke("logs", "-n", "2").stdout


def test_each_batch_row_and_lines_item_records_the_seed_it_was_sampled_with_and_makes_it_again_alone(tiny_model_dir, tmp_path):
    model = ("-m", str(tiny_model_dir), "--max-tokens", "6", "--dtype", "float32")
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(["Bees make", "Paris is", "The quick brown", "Summaries are"])))
    out = tmp_path / "out.jsonl"
    ran = invoke("batch", "chat", "-i", str(source), "-o", str(out), *model, "--temperature", "1.5")
    assert ran.exit_code == 0, ran.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    seeds = [line["seed"] for line in lines]
    assert all(isinstance(seed, int) for seed in seeds) and len(set(seeds)) == len(seeds)  # each row its own
    for line in lines[1:3]:  # one row alone, with the seed its line records, gives the row's text
        alone = invoke("chat", ["Bees make", "Paris is", "The quick brown", "Summaries are"][line["id"]], *model, "--temperature", "1.5", "--seed", str(line["seed"]), "--json", "--no-log")
        assert alone.exit_code == 0, alone.output
        assert json.loads(alone.stdout)["text"] == line["result"]["text"]
    given = tmp_path / "given.jsonl"
    assert invoke("batch", "chat", "-i", str(source), "-o", str(given), *model, "--temperature", "1.5", "--seed", "3").exit_code == 0
    assert all("seed" not in json.loads(line) for line in given.read_text().splitlines())  # a given seed is in the run's settings, not drawn
    greedy = tmp_path / "greedy.jsonl"
    assert invoke("batch", "chat", "-i", str(source), "-o", str(greedy), *model).exit_code == 0
    assert all("seed" not in json.loads(line) for line in greedy.read_text().splitlines())  # a greedy row draws none

    texts = ["Bees make honey.", "Cities have rooftops.", "Paris is the capital."]
    translated = invoke("translate", "-", "--to", "fr", "--lines", *model, "--temperature", "1.5", "--json", input="\n".join(texts) + "\n")
    assert translated.exit_code == 0, translated.output
    items = [json.loads(line) for line in translated.stdout.splitlines()]
    rows = {row["prompt"]: row for row in logged() if row["command"] == "translate"}
    assert all(isinstance(item["seed"], int) for item in items) and len({item["seed"] for item in items}) == 3
    assert [rows[text]["options"]["seed"] for text in texts] == [item["seed"] for item in items]  # the log row records it too
    alone = invoke("translate", texts[1], "--to", "fr", *model, "--temperature", "1.5", "--seed", str(items[1]["seed"]), "--json", "--no-log")
    assert json.loads(alone.stdout)["translation"] == items[1]["translation"]
    greedy_lines = invoke("translate", "-", "--to", "fr", "--lines", *model, "--json", "--no-log", input="\n".join(texts) + "\n")
    assert all("seed" not in json.loads(line) for line in greedy_lines.stdout.splitlines())


def test_each_chat_repl_reply_logs_the_seed_it_was_sampled_with(tiny_model_dir, monkeypatch):
    from aigc.cli import chat
    from aigc.cli.options import RunOptions

    monkeypatch.setattr("builtins.input", lambda prompt="", typed=iter(["/set temperature 1.5", "Bees make", "/retry", "/set seed 5", "Paris is", "exit"]): next(typed))
    run = RunOptions(model=str(tiny_model_dir), max_tokens=6, dtype="float32", log=True)
    chat._repl(run, None, None, None)
    rows = logged()
    assert [row["prompt"] for row in rows] == ["Bees make", "Bees make", "Paris is"]
    drawn = [row["options"]["seed"] for row in rows[:2]]
    assert all(isinstance(seed, int) for seed in drawn) and drawn[0] != drawn[1] and rows[2]["options"]["seed"] == 5  # each reply its own; a /set seed is used as given
    again = invoke("chat", "Bees make", "-m", str(tiny_model_dir), "--max-tokens", "6", "--dtype", "float32", "--temperature", "1.5", "--seed", str(drawn[0]), "--json", "--no-log")
    assert json.loads(again.stdout)["text"] == rows[0]["response"]


def test_a_prune_deletes_only_the_conversations_all_of_whose_answers_it_deletes():
    from aigc import conversations

    assert invoke("chat", "-m", "echo", "one").exit_code == 0
    assert invoke("chat", "-c", "-m", "echo", "two").exit_code == 0
    assert invoke("chat", "-m", "echo", "alone").exit_code == 0  # a second conversation, of one answer
    first = conversations.latest()
    assert invoke("chat", "-c", "-m", "echo", "three").exit_code == 0  # goes on from "alone"
    cids = {row["session"] for row in logged()}
    assert len(cids) == 2
    pruned = invoke("logs", "rm", "--keep", "2")  # "one" and "two": the first conversation's answers, all of them
    assert pruned.exit_code == 0 and "deleted 1 unnamed conversation" in pruned.stderr, pruned.output
    assert [path.stem for path in conversations.unnamed_files()] == [first.stem]
    assert invoke("logs", "rm", "--keep", "1").exit_code == 0  # "alone" goes, "three" stays: its conversation is kept
    assert [path.stem for path in conversations.unnamed_files()] == [first.stem]
    going_on = invoke("chat", "-c", "-m", "echo", "four")
    assert going_on.exit_code == 0 and going_on.stdout == "four\n", going_on.output
