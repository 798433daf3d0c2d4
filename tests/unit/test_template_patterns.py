"""fabric's patterns (NAME/system.md, optional user.md) as templates, and files in template directories that are neither."""

import json
import os
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc import get_generator, hookimpl, plugins, templates
from aigc.cli.app import app
from aigc.conversations import session_path
from aigc.generators.chat import ChatSession
from aigc.template_files import placeholders
from aigc.errors import AigcWarning, BadInputError, ContextLengthError

runner = CliRunner()


def pattern(directory: Path, name: str, system: str, user: str | None = None) -> Path:
    (directory / name).mkdir(parents=True)
    (directory / name / "system.md").write_text(system)
    if user is not None:
        (directory / name / "user.md").write_text(user)
    return directory / name / "system.md"


def test_a_pattern_on_the_templates_path_is_listed_with_its_source(tmp_path, monkeypatch):
    path = pattern(tmp_path, "extract_wisdom", "# IDENTITY\nYou extract wisdom.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    listed = runner.invoke(app, ["templates", "list", "--json"])
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "extract_wisdom")
    assert row["source"] == "env" and row["path"] == str(path) and "fabric pattern" in row["description"]


def test_a_patterns_text_is_its_system_prompt_as_written_braces_and_all(tmp_path, monkeypatch):
    system = "# IDENTITY\nFill {{ this }} and {% that %} and {# not a comment #} in {x}."
    pattern(templates.user_dir(), "braces", system)
    rendered = templates.render("braces", {"input": "the article"})
    assert rendered.messages == [{"role": "system", "content": system}, {"role": "user", "content": "the article"}]


def test_a_patterns_user_md_goes_before_the_input_as_written(tmp_path):
    pattern(templates.user_dir(), "rate", "Rate it.", user="CONTENT {as is}:\n")
    rendered = templates.render("rate", {"input": "the text"})
    assert rendered.messages[-1]["content"] == "CONTENT {as is}:\n\nthe text"
    assert templates.get_template("rate").required == ["input"]


def test_aigc_run_answers_piped_input_and_a_file_with_a_pattern(tmp_path, monkeypatch):
    pattern(tmp_path, "extract_wisdom", "You extract {wisdom}.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    piped = runner.invoke(app, ["run", "extract_wisdom", "-", "-m", "echo", "--no-log"], input="an essay\n")
    assert piped.exit_code == 0 and piped.stdout == "an essay\n", piped.output
    (tmp_path / "essay.txt").write_text("a file's essay")
    given = runner.invoke(app, ["run", "extract_wisdom", str(tmp_path / "essay.txt"), "-m", "echo", "--no-log"])
    assert given.exit_code == 0 and given.stdout == "a file's essay\n", given.output


def test_a_pattern_with_user_md_and_no_input_says_to_give_it(tmp_path):
    pattern(templates.user_dir(), "rate", "Rate it.", user="CONTENT:")
    done = runner.invoke(app, ["run", "rate", "-m", "echo", "--no-log"])
    assert done.exit_code == 2 and "needs input" in done.stderr


def test_templates_show_prints_a_patterns_files(tmp_path):
    pattern(templates.user_dir(), "rate", "Rate {it}.", user="CONTENT:")
    shown = runner.invoke(app, ["templates", "show", "rate"])
    assert shown.exit_code == 0 and "Rate {it}." in shown.stdout and "CONTENT:" in shown.stdout
    as_json = json.loads(runner.invoke(app, ["templates", "show", "rate", "--json"]).stdout)
    assert as_json["system"] == "Rate {it}."


def test_a_j2_template_of_the_same_name_in_the_directory_comes_first(tmp_path):
    pattern(templates.user_dir(), "rate", "the pattern")
    (templates.user_dir() / "rate.j2").write_text("---\nsystem: the j2\n---\n")
    assert templates.render("rate", {"input": "x"}).messages[0]["content"] == "the j2"


def test_an_llm_yaml_file_in_a_template_directory_is_warned_of_once_with_the_import_command(tmp_path, monkeypatch):
    pattern(tmp_path, "p", "P.")
    (tmp_path / "llmt.yaml").write_text("system: hi\n")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    with pytest.warns(AigcWarning, match="aigc templates import") as caught:
        templates.discover()
        templates.discover()
    assert [str(w.message) for w in caught if "llmt.yaml" in str(w.message)] == [
        f"{tmp_path / 'llmt.yaml'} is ignored: templates are NAME.j2 files and fabric patterns NAME/system.md; "
        f"if it is an llm template, `aigc templates import {tmp_path / 'llmt.yaml'}` makes an aigc template of it"
    ]


def test_a_directory_of_patterns_a_level_too_deep_is_warned_of_and_other_files_too(tmp_path):
    pattern(templates.user_dir() / "patterns", "p", "P.")
    (templates.user_dir() / "notes.txt").write_text("mine")
    (templates.user_dir() / ".hidden").write_text("")
    with pytest.warns(AigcWarning) as caught:
        templates.discover()
    said = [str(w.message) for w in caught]
    assert any("put " + str(templates.user_dir() / "patterns") + " itself on AIGC_TEMPLATES_PATH" in m for m in said)
    assert any(str(templates.user_dir() / "notes.txt") + " is ignored" in m and "rename it NAME.j2" in m for m in said)
    assert not any(".hidden" in m for m in said)


def test_a_template_directory_of_templates_and_patterns_alone_gives_no_warning(tmp_path):
    pattern(templates.user_dir(), "p", "P.", user="")
    (templates.user_dir() / "t.j2").write_text("{{ input }}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert {"p", "t"} <= set(templates.discover())


def test_templates_edit_opens_a_patterns_own_file_as_plain_text(tmp_path, monkeypatch):
    import sys

    path = pattern(templates.user_dir(), "rate", "Rate it.")
    editor = tmp_path / "editor.py"
    editor.write_text("import sys, pathlib\np = pathlib.Path(sys.argv[1]); p.write_text(p.read_text() + ' Use {braces}.')\n")
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    edited = runner.invoke(app, ["templates", "edit", "rate"])
    assert edited.exit_code == 0 and edited.stdout == f"{path}\n", edited.output
    assert not (templates.user_dir() / "rate.j2").exists()
    assert templates.render("rate", {"input": "x"}).messages[0]["content"] == "Rate it. Use {braces}."


def test_templates_new_and_rm_of_a_pattern_say_what_to_do_instead(tmp_path):
    pattern(templates.user_dir(), "rate", "Rate it.")
    new = runner.invoke(app, ["templates", "new", "rate"])
    assert new.exit_code == 2 and "is the fabric pattern" in new.stderr and "give another name" in new.stderr
    removed = runner.invoke(app, ["templates", "rm", "rate"])
    assert removed.exit_code == 2 and "remove that directory yourself" in removed.stderr
    assert not (templates.user_dir() / "rate.j2").exists() and templates.get_template("rate").system == "Rate it."


def test_fabric_input_placeholder_in_system_md_makes_the_pattern_the_one_message_with_the_input_in_place(tmp_path):
    pattern(templates.user_dir(), "insights", "# STEPS\nFind insights.\n\n# INPUT\n\n{{input}}\n\nThen {{input}} again.")
    rendered = templates.render("insights", {"input": "the talk"})
    assert rendered.messages == [{"role": "user", "content": "# STEPS\nFind insights.\n\n# INPUT\n\nthe talk\n\nThen the talk again."}]


def test_a_chat_session_sends_a_pattern_placing_the_input_as_its_first_message_and_later_turns_alone(tmp_path):
    pattern(templates.user_dir(), "summarize_it", "You summarize.\n\nINPUT:\n{{input}}\n")
    session = ChatSession(model="echo", template="summarize_it", path=tmp_path / "s.json")
    assert [session.ask("TEXT1"), session.ask("TEXT2")] == ["TEXT1", "TEXT2"]
    session.close()
    again = ChatSession(model="echo", path=tmp_path / "s.json")  # the saved session goes on with its pattern
    again.ask("TEXT3")
    assert [m["content"] for m in again.messages if m["role"] != "assistant"] == ["You summarize.\n\nINPUT:\nTEXT1", "TEXT2", "TEXT3"]
    again.reset()
    again.ask("TEXT4")
    assert again.messages[0] == {"role": "user", "content": "You summarize.\n\nINPUT:\nTEXT4"}


def test_aigc_chat_session_on_a_pattern_placing_the_input_sends_the_pattern_once(tmp_path, monkeypatch):
    pattern(tmp_path, "summarize_it", "You summarize.\n\nINPUT:\n{{input}}\n")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    first = runner.invoke(app, ["chat", "-t", "summarize_it", "-m", "echo", "-S", "foo", "--no-log", "TEXT1"])
    second = runner.invoke(app, ["chat", "-m", "echo", "-S", "foo", "--no-log", "TEXT2"])
    assert first.exit_code == second.exit_code == 0 and second.stdout == "TEXT2\n", second.output
    saved = json.loads(session_path("foo").read_text())["messages"]
    assert [m["content"] for m in saved if m["role"] == "user"] == ["You summarize.\n\nINPUT:\nTEXT1", "TEXT2"]


def sent_prompts(session: ChatSession) -> list:
    """The prompts `session`'s engine is given from now on."""
    engine, generate, sent = session.generator.engine, session.generator.engine.generate, []
    engine.generate = lambda prompts, params: (sent.append(prompts[0]), generate(prompts, params))[1]
    return sent


def test_a_pattern_sent_once_stays_in_the_prompt_when_older_turns_are_dropped_to_fit(tmp_path):
    pattern(templates.user_dir(), "pirate", "You summarize in pirate speak. " * 20 + "\n\nINPUT:\n{{input}}\n")
    session = ChatSession(model="echo", template="pirate")
    session.generator.engine.context_length = 400
    sent = sent_prompts(session)
    for i in range(6):
        session.ask(f"turn {i} " + "word " * 40)
    assert len(sent[-1]) < len(session.messages) - 1  # older turns were dropped
    assert sent[-1][0] == session.messages[0] and sent[-1][0]["content"].startswith("You summarize in pirate")  # but not the pattern
    roles = [m["role"] for m in sent[-1]]  # the pattern is kept with its reply: roles alternate, as strict chat templates require
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] and sent[-1][-1]["content"] == "turn 5 " + "word " * 40
    assert sent[-1][1] == session.messages[1]
    session.generator.engine.context_length = 250  # the pattern and the last message alone no longer fit
    with pytest.raises(ContextLengthError):
        session.ask("turn 6 " + "word " * 40)


def test_a_session_switched_to_a_pattern_placing_the_input_sends_it_on_its_next_turn(tmp_path):
    pattern(templates.user_dir(), "summarize_it", "You summarize.\n\nINPUT:\n{{input}}\n")
    ChatSession(model="echo", path=tmp_path / "s.json").ask("hello")
    switched = ChatSession(model="echo", path=tmp_path / "s.json", template="summarize_it")
    switched.ask("TEXT1")
    switched.ask("TEXT2")
    switched.close()
    again = ChatSession(model="echo", path=tmp_path / "s.json")
    again.ask("TEXT3")
    assert [m["content"] for m in again.messages if m["role"] == "user"] == ["hello", "You summarize.\n\nINPUT:\nTEXT1", "TEXT2", "TEXT3"]
    again.undo(), again.undo(), again.undo()  # the pattern's turn undone: the next one sends it again
    again.ask("TEXT4")
    assert [m["content"] for m in again.messages if m["role"] == "user"] == ["hello", "You summarize.\n\nINPUT:\nTEXT4"]


def test_aigc_chat_session_switched_to_a_pattern_placing_the_input_sends_it(tmp_path, monkeypatch):
    pattern(tmp_path, "summarize_it", "You summarize.\n\nINPUT:\n{{input}}\n")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    first = runner.invoke(app, ["chat", "-m", "echo", "-S", "sw", "--no-log", "hello"])
    second = runner.invoke(app, ["chat", "-m", "echo", "-S", "sw", "-t", "summarize_it", "--no-log", "TEXT2"])
    assert first.exit_code == second.exit_code == 0, second.output
    saved = json.loads(session_path("sw").read_text())["messages"]
    assert [m["content"] for m in saved if m["role"] == "user"] == ["hello", "You summarize.\n\nINPUT:\nTEXT2"]


def test_echo_answers_the_input_of_a_pattern_with_a_variable_and_no_input_placeholder(tmp_path, monkeypatch):
    pattern(tmp_path, "p_var", "Trans to {{lang_code}}.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    run = runner.invoke(app, ["run", "p_var", "-", "-m", "echo", "--no-log", "--var", "lang_code=fr"], input="TEXT\n")
    chat = runner.invoke(app, ["chat", "-t", "p_var", "-m", "echo", "--no-log", "--var", "lang_code=fr", "TEXT"])
    assert (run.exit_code, run.stdout, chat.exit_code, chat.stdout) == (0, "TEXT\n", 0, "TEXT\n"), run.output + chat.output


def test_fabric_input_placeholder_in_system_md_comes_after_user_md_text(tmp_path):
    pattern(templates.user_dir(), "rate", "Rate this:\n{{input}}\nDone.", user="CONTENT {as is} for {{who}}:")
    rendered = templates.render("rate", {"input": "the text", "who": "me"})
    assert rendered.messages == [{"role": "user", "content": "Rate this:\nCONTENT {as is} for me:\n\nthe text\nDone."}]


def test_fabric_input_placeholder_in_user_md_is_where_the_input_goes_and_it_is_not_appended(tmp_path):
    pattern(templates.user_dir(), "rate", "Rate it.", user="<text>{{input}}</text> rate that")
    rendered = templates.render("rate", {"input": "the text"})
    assert rendered.messages == [{"role": "system", "content": "Rate it."}, {"role": "user", "content": "<text>the text</text> rate that"}]


def test_fabric_variables_are_filled_and_every_other_brace_stays_as_written(tmp_path):
    system = "Translate to {{lang_code}} ({{{lang_code}}}); keep {{ spaced }}, {{plugin:text:upper:x}}, {% raw %}, {% endraw %}, {# c #}, {x}, {{true}}, {{not}}, {{range}} and {{a-b}}."
    pattern(templates.user_dir(), "translate", system)
    with pytest.warns(AigcWarning, match="plugin:text:upper:x"):
        template = templates.get_template("translate")
    rendered = templates.render(template, {"input": "Hallo", "lang_code": "fr"})
    assert rendered.messages == [
        {"role": "system", "content": system.replace("{{lang_code}}", "fr")},
        {"role": "user", "content": "Hallo"},
    ]
    assert template.required == ["input", "lang_code"]


class Dated:
    @hookimpl
    def prepare_jinja_env(self, env):
        env.globals["dated_now"] = "today"


def test_a_placeholder_is_text_once_a_plugin_registered_later_makes_its_name_a_jinja_global():
    plugins.reset()
    try:
        assert placeholders("On {{dated_now}}: {{input}}") == ["dated_now", "input"]
        plugins.get_plugin_manager().register(Dated(), name="dated")
        assert placeholders("On {{dated_now}}: {{input}}") == ["input"]
    finally:
        plugins.reset()


def test_a_value_or_input_holding_braces_is_not_filled_again(tmp_path):
    pattern(templates.user_dir(), "essay", "Write as {{author}}.", user="Topic: {{input}}")
    rendered = templates.render("essay", {"input": "{{author}} {% x %}", "author": "{{input}}"})
    assert [m["content"] for m in rendered.messages] == ["Write as {{input}}.", "Topic: {{author}} {% x %}"]


def test_aigc_run_fills_a_fabric_variable_from_var_and_a_missing_one_is_a_one_line_error(tmp_path, monkeypatch):
    pattern(tmp_path, "write_essay", "Write like {{author_name}} about {{topic}}.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    shown = runner.invoke(app, ["run", "write_essay", "-", "-m", "echo", "--no-log", "--dry-run", "--var", "author_name=Orwell", "--var", "topic=tea"], input="notes\n")
    assert shown.exit_code == 0 and shown.stdout == "## System\n\nWrite like Orwell about tea.\n\n## User\n\nnotes\n", shown.output
    missing = runner.invoke(app, ["run", "write_essay", "-", "-m", "echo", "--no-log", "--var", "topic=tea"], input="notes\n")
    assert missing.exit_code == 2 and missing.stdout == ""
    assert missing.stderr.strip() == (
        "Error: template 'write_essay' needs author_name: give it with --var author_name=... (its variables: input, author_name, topic); "
        "or, where {{author_name}} is text to send as written, give --no-variable-replacement"
    )
    unknown = runner.invoke(app, ["run", "write_essay", "-", "-m", "echo", "--no-log", "--var", "author=Orwell"], input="notes\n")
    assert unknown.exit_code == 2 and "has no variable author; its variables: author_name, input, topic" in unknown.stderr


def test_aigc_chat_fills_a_fabric_variable_from_var(tmp_path, monkeypatch):
    pattern(tmp_path, "translate", "Translate to {{lang_code}}.\n\n{{input}}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    done = runner.invoke(app, ["chat", "-t", "translate", "--var", "lang_code=fr", "-m", "echo", "--no-log", "Hallo"])
    assert done.exit_code == 0 and done.stdout == "Hallo\n", done.output


def test_fabric_plugin_calls_are_not_run_but_sent_as_written_with_a_warning(tmp_path):
    pattern(templates.user_dir(), "dated", "Today is {{plugin:datetime:now}}; home {{ext:env:get:HOME}}.")
    with pytest.warns(AigcWarning, match=r"\{\{plugin:datetime:now\}\}, \{\{ext:env:get:HOME\}\} is sent to the model as written: aigc does not run fabric's template plugins"):
        template = templates.get_template("dated")
    assert templates.render(template, {"input": "x"}).messages[0]["content"] == "Today is {{plugin:datetime:now}}; home {{ext:env:get:HOME}}."


def test_templates_list_and_show_say_where_a_patterns_input_goes_and_its_variables(tmp_path, monkeypatch):
    pattern(tmp_path, "insights", "Insights for {{who}}:\n{{input}}")
    pattern(tmp_path, "plain", "Plain.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    rows = {r["name"]: r["description"] for r in json.loads(runner.invoke(app, ["templates", "list", "--json"]).stdout)}
    assert rows["insights"] == "fabric pattern (system.md with {{input}}: one message); --var who"
    assert rows["plain"] == "fabric pattern (system.md)"
    shown = runner.invoke(app, ["templates", "show", "insights"])
    assert shown.exit_code == 0 and "# who: fabric's {{who}} (required)" in shown.stdout and shown.stdout.endswith("Insights for {{who}}:\n{{input}}\n")


NUCLEI = "Write a nuclei rule: GET {{BaseURL}}/login\nHost: {{Hostname}}\n\nINPUT:\n{{input}}\n"


def test_aigc_run_no_variable_replacement_sends_a_patterns_placeholders_as_written_and_fills_the_input(tmp_path, monkeypatch):
    pattern(tmp_path, "write_nuclei_template_rule", NUCLEI)
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    shown = runner.invoke(app, ["run", "write_nuclei_template_rule", "-", "-m", "echo", "--no-log", "--dry-run", "--no-variable-replacement"], input="the CVE\n")
    assert shown.exit_code == 0 and shown.stdout == "## User\n\nWrite a nuclei rule: GET {{BaseURL}}/login\nHost: {{Hostname}}\n\nINPUT:\nthe CVE\n", shown.output
    answered = runner.invoke(app, ["run", "write_nuclei_template_rule", "-", "-m", "echo", "--no-log", "--no-variable-replacement"], input="the CVE\n")
    assert answered.exit_code == 0 and answered.stdout == "the CVE\n", answered.output


def test_no_variable_replacement_with_a_var_for_a_placeholder_or_a_jinja_template_is_a_one_line_error(tmp_path, monkeypatch):
    pattern(tmp_path, "write_nuclei_template_rule", NUCLEI)
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    both = runner.invoke(app, ["run", "write_nuclei_template_rule", "-", "-m", "echo", "--no-log", "--no-variable-replacement", "--var", "Hostname=x"], input="the CVE\n")
    assert both.exit_code == 2 and both.stderr.strip() == (
        "Error: --no-variable-replacement sends {{Hostname}} as written, so --var Hostname=... would be dropped; give one or the other"
    ), both.output
    jinja = runner.invoke(app, ["chat", "-m", "echo", "--no-log", "--no-variable-replacement", "hi"])
    assert jinja.exit_code == 2 and jinja.stderr.startswith("Error: --no-variable-replacement is for fabric patterns (NAME/system.md); template 'chat' is a jinja template"), jinja.output


def test_the_template_generator_takes_no_variable_replacement_as_a_library_option(tmp_path):
    pattern(templates.user_dir(), "nuclei", "Rule for {{Hostname}}.", user="CVE: {{input}}")
    generator = get_generator("template", model="echo")
    result = generator("the CVE", no_variable_replacement=True, template="nuclei")
    assert [m["content"] for m in result["messages"]] == ["Rule for {{Hostname}}.", "CVE: the CVE"]
    with pytest.raises(BadInputError, match=r"needs Hostname: .*; or, where \{\{Hostname\}\} is text to send as written, give no_variable_replacement"):
        generator("the CVE", template="nuclei")


def test_aigc_chat_no_variable_replacement_one_shot_and_a_session_that_keeps_it(tmp_path, monkeypatch):
    pattern(tmp_path, "write_nuclei_template_rule", NUCLEI)
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    once = runner.invoke(app, ["chat", "-t", "write_nuclei_template_rule", "-m", "echo", "--no-log", "--no-variable-replacement", "the CVE"])
    assert once.exit_code == 0 and once.stdout == "the CVE\n", once.output
    first = runner.invoke(app, ["chat", "-t", "write_nuclei_template_rule", "-m", "echo", "-S", "nuc", "--no-log", "--no-variable-replacement", "TEXT1"])
    second = runner.invoke(app, ["chat", "-m", "echo", "-S", "nuc", "--no-log", "TEXT2"])  # the session goes on with its pattern, placeholders as written
    assert first.exit_code == second.exit_code == 0 and second.stdout == "TEXT2\n", first.output + second.output
    saved = json.loads(session_path("nuc").read_text())["messages"]
    assert [m["content"] for m in saved if m["role"] == "user"] == [NUCLEI.replace("{{input}}", "TEXT1").strip(), "TEXT2"]


def test_a_session_switched_from_a_pattern_and_back_sends_the_pattern_again(tmp_path):
    pattern(templates.user_dir(), "summarize_it", "You summarize.\n\nINPUT:\n{{input}}\n")
    pattern(templates.user_dir(), "pirate_it", "Talk like a pirate.\n\nINPUT:\n{{input}}\n")
    for template, text in [("summarize_it", "TEXT1"), ("pirate_it", "TEXT2"), ("summarize_it", "TEXT3"), ("summarize_it", "TEXT4")]:
        ChatSession(model="echo", path=tmp_path / "s.json", template=template).ask(text)
    session = ChatSession(model="echo", template="summarize_it")  # switched within one session's life too
    session.ask("TEXT5")
    session.template = "pirate_it"
    session.ask("TEXT6")
    session.template = "summarize_it"
    sent = sent_prompts(session)
    session.ask("TEXT7")
    saved = ChatSession(model="echo", path=tmp_path / "s.json").messages
    assert [m["content"] for m in saved if m["role"] == "user"] == [
        "You summarize.\n\nINPUT:\nTEXT1", "Talk like a pirate.\n\nINPUT:\nTEXT2", "You summarize.\n\nINPUT:\nTEXT3", "TEXT4",
    ]
    assert sent[-1][-1]["content"] == "You summarize.\n\nINPUT:\nTEXT7"
    session.undo()  # the last turn is the pirate's again: the next one sends the pattern again too
    session.ask("TEXT8")
    session.ask("TEXT9")
    assert [m["content"] for m in sent[-2:] for m in m[-1:]] == ["You summarize.\n\nINPUT:\nTEXT8", "TEXT9"]


def test_fabric_patterns_named_as_task_templates_leave_the_tasks_their_built_in_prompts(tmp_path, monkeypatch):
    pattern(tmp_path, "summarize", "# IDENTITY\nYou summarize content.")
    pattern(tmp_path, "translate", "Translate into {{lang_code}}:\n\n{{input}}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    text = "Bees make honey in their hives all summer long, and they rest through the winter."
    summarized = runner.invoke(app, ["summarize", "-", "--words", "5", "-m", "echo", "--no-log"], input=text)
    assert summarized.exit_code == 0 and summarized.stdout.strip() == text, summarized.output
    assert "fabric pattern 'summarize'" in summarized.stderr and "`aigc run summarize`" in summarized.stderr
    translated = runner.invoke(app, ["translate", "Good morning", "--to", "de", "-m", "echo", "--no-log"])
    assert translated.exit_code == 0 and translated.stdout.strip() == "Good morning", translated.output
    quiet = runner.invoke(app, ["-q", "summarize", "-", "--words", "5", "-m", "echo", "--no-log"], input=text)
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    ran = runner.invoke(app, ["run", "summarize", "-", "-m", "echo", "--no-log", "--dry-run"], input="Bees make honey.")
    assert "You summarize content." in ran.stdout, ran.output  # `aigc run` runs the pattern


def test_templates_list_says_a_task_keeps_its_built_in_template_beside_a_fabric_pattern(tmp_path, monkeypatch):
    pattern(tmp_path, "summarize", "You summarize content.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    line = next(l for l in runner.invoke(app, ["templates", "list"]).stdout.splitlines() if l.startswith("summarize "))
    assert "`aigc summarize` keeps the built-in one" in line, line


def test_a_task_the_pattern_and_the_template_beneath_both_fail_is_not_told_to_edit_the_pattern(tmp_path, monkeypatch):
    pattern(templates.user_dir(), "headline", "Write a headline.")
    (tmp_path / "headline.j2").write_text("---\nvariables: [{name: other, required: true}]\n---\n{{ other }}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    result = runner.invoke(app, ["headline", "--topic", "bees", "-m", "echo", "--no-log"])
    assert result.exit_code == 2 and "fabric pattern" in result.stderr and "templates edit" not in result.stderr, result.stderr


def test_templates_list_says_keeps_only_for_a_task_that_uses_the_template_a_pattern_hides(tmp_path, monkeypatch):
    """A template made for summarize but named otherwise is no template `aigc summarize` uses: a pattern
    over it is what its name gives (`aigc run`, a plugin task that renders it), so nothing keeps it."""
    (tmp_path / "brief.j2").write_text("---\ngenerator: summarize\n---\nSummarize in {{ words }} words: {{ text }}")
    pattern(templates.user_dir(), "brief", "You write briefs.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    line = next(l for l in runner.invoke(app, ["templates", "list"]).stdout.splitlines() if l.startswith("brief "))
    assert "(overrides the one in AIGC_TEMPLATES_PATH)" in line and "keeps" not in line, line


def test_a_pattern_over_a_template_earlier_on_the_templates_path_names_that_one_as_kept(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summarize.j2").write_text("Summarize in {{ words }} words: {{ text }}")  # yours, with no generator: front matter
    pattern(tmp_path / "b", "summarize", "You summarize content.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", os.pathsep.join([str(tmp_path / "b"), str(tmp_path / "a")]))  # the first wins
    kept = f"`aigc summarize` keeps the one in AIGC_TEMPLATES_PATH ({tmp_path / 'a' / 'summarize.j2'})"
    line = next(l for l in runner.invoke(app, ["templates", "list"]).stdout.splitlines() if l.startswith("summarize "))
    assert kept in line, line
    result = runner.invoke(app, ["summarize", "-", "--words", "5", "-m", "echo", "--no-log"], input="Bees make honey.")
    assert result.exit_code == 0 and kept in " ".join(result.stderr.split()), result.output


def test_a_pattern_named_by_template_for_another_task_says_to_give_one_made_for_the_task(tmp_path, monkeypatch):
    """The built-in translate template beneath the pattern is fine: it is translate's, not summarize's."""
    pattern(tmp_path, "translate", "Translate into {{lang_code}}:\n\n{{input}}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    result = runner.invoke(app, ["summarize", "-", "--template", "translate", "-m", "echo", "--no-log"], input="Bees make honey.")
    words = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "give a template made for summarize" in words and "fix that one" not in words, words


def test_a_task_template_bound_beneath_a_pattern_copies_and_pickles_with_its_template(tmp_path, monkeypatch):
    import copy
    import dataclasses
    import pickle

    from aigc.generators.summarize import SummarizeOptions

    pattern(tmp_path, "summarize", "You summarize content.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = SummarizeOptions()
    assert isinstance(options.template, templates.TaskTemplate)
    for again in (copy.copy(options.template), copy.deepcopy(options).template, pickle.loads(pickle.dumps(options)).template):
        assert again == "summarize" and templates.get_template(again).source == "builtin"
    assert dataclasses.asdict(options)["template"] == "summarize"


def test_a_pattern_over_a_template_rendered_without_input_says_how_to_use_either(tmp_path, monkeypatch):
    """A plugin task renders its template with its variables alone: a pattern of that name cannot answer them."""
    (tmp_path / "ad.j2").write_text("Write an ad for {{ product }}.")
    pattern(templates.user_dir(), "ad", "You write ads.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    with pytest.raises(BadInputError, match="is a system prompt with no message") as caught:
        templates.render("ad", {"product": "lamp"})
    there = "the one in AIGC_TEMPLATES_PATH"
    assert f"it is a fabric pattern, over {there}: run it with `aigc run ad`, or move {templates.user_dir() / 'ad'} away to use {there}" in str(caught.value)


def test_templates_edit_and_new_of_a_pattern_not_yours_make_your_copy_and_leave_it_as_it_was(tmp_path, monkeypatch):
    path = pattern(tmp_path, "rate", "Rate it.", user="Here:")  # fabric's own, or a team's
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "true")  # nothing edited: no copy is left
    edited = runner.invoke(app, ["templates", "edit", "rate"])
    assert edited.exit_code == 0 and "nothing was edited" in edited.stderr and not (templates.user_dir() / "rate").exists()
    monkeypatch.setenv("EDITOR", "sed -i s/Rate/Grade/")
    edited = runner.invoke(app, ["templates", "edit", "rate"])
    own = templates.user_dir() / "rate" / "system.md"
    assert edited.exit_code == 0 and edited.stdout == f"{own}\n" and f"copied from {path.parent}; yours overrides it" in edited.stderr
    assert path.read_text() == "Rate it." and own.read_text() == "Grade it." and own.with_name("user.md").read_text() == "Here:"
    assert templates.get_template("rate").path == own
    pattern(tmp_path, "improve", "Improve it.")
    new = runner.invoke(app, ["templates", "new", "improve"])
    assert new.exit_code == 0 and new.stdout == f"{templates.user_dir() / 'improve' / 'system.md'}\n"
    assert templates.get_template("improve").source == "user" and templates.render("improve", {"input": "x"}).messages[0]["content"] == "Improve it."


def test_a_shared_directorys_readme_license_and_markdown_files_are_ignored_without_a_warning(tmp_path, monkeypatch):
    pattern(tmp_path, "p", "P.")
    for name in ("README.md", "LICENSE", "COPYING.txt", "pattern_explanations.md", "notes.txt"):
        (tmp_path / name).write_text("docs")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "p" in templates.discover()
    assert [str(w.message).split(" is ignored")[0] for w in caught] == [str(tmp_path / "notes.txt")]  # maybe a template misnamed
