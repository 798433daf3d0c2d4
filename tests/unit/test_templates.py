import json
import os
import re
from pathlib import Path

import pytest

from aigc import template_edits, template_files, templates
from aigc.errors import AigcWarning, BadInputError, UnknownTemplateError
from installed_copy import run_from, site_copy


def sample_values(template):
    return {v["name"]: "sample text" for v in template.variables}


def test_every_builtin_template_renders_under_strict_undefined():
    found = templates.discover()
    builtins = sorted(p.stem for p in templates.builtin_dir().glob("*.j2"))
    assert builtins and set(builtins) <= set(found)
    for name in builtins:
        template = found[name]
        assert template.description, f"{name} has no description"
        values = sample_values(template)
        if name == "headline":
            values.update(style="news", max_words=10, article="")
        if name.startswith("summarize"):
            values.update(format="paragraph", words=50)
        if name == "classify":
            values.update(labels=["a", "b"], aspect="", kind="", demonstrations=[{"text": "an example", "label": "a"}])
        rendered = templates.render(template, values)
        assert rendered.messages[-1]["role"] == "user"
        assert "sample text" in rendered.messages[-1]["content"]


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.j2"
    path.write_text(text)
    return path


def test_user_directory_overrides_a_builtin():
    write(templates.user_dir(), "chat", "---\ndescription: mine\n---\nMINE {{ input }}")
    template = templates.get_template("chat")
    assert template.source == "user"
    assert templates.render(template, {"input": "x"}).messages[-1]["content"] == "MINE x"


def test_an_edited_template_is_read_again():
    path = write(templates.user_dir(), "greet", "hello {{ name }}")
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "hello a"
    path.write_text("---\ndescription: edited\n---\nbye {{ name }}!")
    assert templates.get_template("greet").description == "edited"
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "bye a!"


def test_the_user_directory_wins_over_the_env_path_whose_first_directory_wins(tmp_path, monkeypatch):
    for where in ("first", "second"):
        write(tmp_path / where, "greet", f"{where} {{{{ name }}}}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", f"{tmp_path / 'first'}{os.pathsep}{tmp_path / 'second'}")
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "first a"  # as in PATH
    assert templates.shadowed() == {"greet": ["env"]}
    write(templates.user_dir(), "greet", "user {{ name }}")
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "user a"  # yours over a team's
    assert templates.shadowed() == {"greet": ["env", "env"]}


def test_unknown_template_suggests_close_names():
    with pytest.raises(UnknownTemplateError, match="did you mean summarize"):
        templates.get_template("sumarize")


def test_a_template_is_looked_up_by_reading_the_files_of_its_name_alone(tmp_path, monkeypatch):
    for name in ("notes", "notes-short", "bees"):
        write(tmp_path, name, "Sum up {{ text }}.")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    monkeypatch.setattr(template_files, "_parsed", {})  # nothing read before
    read = []
    real = template_files._read
    monkeypatch.setattr(template_files, "_read", lambda path, source: read.append(path.name) or real(path, source))
    assert templates.get_template("notes").source == "env" and read == ["notes.j2"]  # every command's start reads one
    with pytest.raises(UnknownTemplateError, match="did you mean notes, notes-short"):  # a miss reads all, for its suggestions
        templates.get_template("note")


def test_an_unknown_name_with_a_template_file_of_that_name_here_says_to_name_it_as_a_path(tmp_path, monkeypatch):
    write(tmp_path, "shared", "Tell me about {{ input }}.")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownTemplateError, match=r"^unknown template 'shared'; to use the file shared.j2 here, name it as a path: ./shared.j2 \(or copy it to "):
        templates.get_template("shared")
    assert templates.render("./shared.j2", {"input": "bees"}).messages[-1]["content"] == "Tell me about bees."


def test_a_default_left_empty_is_no_text():
    write(templates.user_dir(), "optional", "---\nvariables:\n  - {name: input, required: true}\n  - name: extra\n    default:\n---\n{{ input }}{{ extra }}")
    template = templates.get_template("optional")
    assert template.required == ["input"] and template.variables[1]["default"] == ""
    assert templates.render(template, {"input": "x"}).messages[-1]["content"] == "x"


@pytest.mark.parametrize(("tag", "then"), [
    ('{% include "_house" %}', ""), ('{% import "_house.j2" as h %}', "{{ h.bullet(input) }}"), ('{% from "_house" import bullet %}', "{{ bullet(input) }}"),
])
def test_a_template_includes_or_imports_another_template_by_name_without_its_front_matter(tag, then):
    write(templates.user_dir(), "_house", "---\ndescription: house style\n---\n{% macro bullet(x) %}- {{ x }}{% endmacro %}Be brief. ")
    write(templates.user_dir(), "including", "---\nvariables:\n  - {name: input, required: true}\n---\n" + tag + then + "{{ input }}")
    shown = templates.render("including", {"input": "x"}).messages[-1]["content"]
    assert shown == ("Be brief. x" if not then else "- xx") and "description" not in shown
    write(templates.user_dir(), "_house", "{% macro bullet(x) %}* {{ x }}{% endmacro %}Be kind. ")  # edited: read again
    assert templates.render("including", {"input": "x"}).messages[-1]["content"] == ("Be kind. x" if not then else "* xx")


def test_an_included_part_is_read_from_the_file_its_name_finds_now_as_the_digest_is(tmp_path, monkeypatch):
    write(tmp_path / "team", "_p", "TEAM PART {{ input }}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path / "team"))
    write(templates.user_dir(), "whole", '{% include "_p" %}')
    assert templates.render("whole", {"input": "x"}).messages[-1]["content"] == "TEAM PART x"
    before = templates.digest("whole")
    mine = write(templates.user_dir(), "_p", "MY PART {{ input }}")  # yours, added in a running process, wins
    assert templates.render("whole", {"input": "x"}).messages[-1]["content"] == "MY PART x" and templates.digest("whole") != before
    mine.unlink()
    assert templates.render("whole", {"input": "x"}).messages[-1]["content"] == "TEAM PART x" and templates.digest("whole") == before


def test_extends_takes_a_base_template_and_a_path_or_unknown_name_is_refused(tmp_path):
    write(templates.user_dir(), "base", "Intro. {% block main %}{% endblock %} Outro.")
    write(templates.user_dir(), "child", '{% extends "base" %}{% block main %}About {{ input }}.{% endblock %}')
    assert templates.render("child", {"input": "bees"}).messages[-1]["content"] == "Intro. About bees. Outro."
    (tmp_path / "secret.j2").write_text("secret")
    for tag, said in ((f'{{% include "{tmp_path}/secret.j2" %}}', "is a path"), ('{% include "../secret" %}', "is a path"), ('{% include "nope" %}', "of 'nope': unknown template 'nope'")):
        write(templates.user_dir(), "bad", tag + "{{ input }}")
        with pytest.raises(BadInputError, match=re.escape(said)):
            templates.render("bad", {"input": "x"})


def test_an_include_of_a_name_with_two_j2_suffixes_reads_no_file_of_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.j2").write_text("CWD FILE {{ secret }}")
    write(templates.user_dir(), "doubled", '{% include "x.j2.j2" %}{{ input }}')
    with pytest.raises(BadInputError, match=re.escape("'x.j2.j2' is a path")):
        templates.render("doubled", {"input": "i"})
    assert templates.get_template("doubled").names_used == {"input"}
    before = templates.digest("doubled")
    (tmp_path / "x.j2").write_text("CHANGED")
    assert templates.digest("doubled") == before


def test_a_loop_of_includes_is_an_error_naming_it_and_an_override_builds_on_the_builtin_by_builtin_name():
    write(templates.user_dir(), "selfinc", '{% include "selfinc" %}{{ input }}')
    with pytest.raises(BadInputError, match=re.escape("template 'selfinc' includes itself (selfinc -> selfinc), which never ends; take one include")):
        templates.render("selfinc", {"input": "x"})
    write(templates.user_dir(), "a", '{% include "b" %}{{ input }}')
    write(templates.user_dir(), "b", '{% include "a.j2" %}')
    with pytest.raises(BadInputError, match=re.escape("template 'a' includes itself (a -> b -> a)")):
        templates.render("a", {"input": "x"})
    builtin = templates.render("summarize", {"text": "some text"}).messages
    front_matter = (templates.builtin_dir() / "summarize.j2").read_text().partition("\n---\n")[0] + "\n---\n"
    write(templates.user_dir(), "summarize", front_matter + '{% extends "summarize" %}')
    with pytest.raises(BadInputError, match=re.escape("""(summarize -> summarize), which never ends; to build on aigc's own 'summarize', name it builtin:summarize: {% extends "builtin:summarize" %}""")):
        templates.render("summarize", {"text": "some text"})
    write(templates.user_dir(), "summarize", front_matter + '{% extends "builtin:summarize" %}')
    assert templates.get_template("summarize").source == "user" and "text" in templates.get_template("summarize").names_used
    assert templates.render("summarize", {"text": "some text"}).messages == builtin


def test_missing_required_variable_names_it_says_how_to_give_it_and_lists_variables():
    write(templates.user_dir(), "two", "---\nvariables:\n  - {name: a, required: true}\n  - {name: b, default: x}\n---\n{{ a }}{{ b }}")
    with pytest.raises(BadInputError, match=r"^template 'two' needs a: give it with variables=\{'a': \.\.\.\} \(its variables: a, b\)$"):
        templates.render("two", {})


def test_bad_front_matter_names_file_and_line():
    path = write(templates.user_dir(), "broken", "---\ndescription: ok\nvariables: [unclosed\n---\nbody")
    with pytest.raises(BadInputError) as info:
        templates.get_template("broken")
    assert f"{path}:" in str(info.value)


def test_front_matter_closed_on_the_files_last_line_without_a_newline():
    write(templates.user_dir(), "pattern_noeol", "---\ndescription: p\nsystem: You extract action items.\n---")
    template = templates.discover()["pattern_noeol"]
    assert (template.description, template.system, template.body) == ("p", "You extract action items.", "")
    assert templates.render(template, {"input": "x"}).messages[-1] == {"role": "user", "content": "x"}
    write(templates.user_dir(), "unclosed-meta", "---\ndescription: p\n---x")
    with pytest.raises(BadInputError, match="never closed"):
        templates.get_template("unclosed-meta")


def test_front_matter_lines_may_end_in_blanks():
    write(templates.user_dir(), "blanks", "--- \ndescription: p\nsystem: Be brief.\n---\t\nSay {{ input }}\n")
    template = templates.get_template("blanks")
    assert (template.description, template.body_line) == ("p", 5)
    assert templates.render(template, {"input": "x"}).messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say x"}]


def test_a_jinja_syntax_error_is_found_when_the_template_is_looked_up():
    path = write(templates.user_dir(), "unclosed", "---\ndescription: x\n---\nLine one\n{{ input }\n")
    with pytest.raises(BadInputError, match=rf"^{path}:5: unexpected '}}'"):
        templates.get_template("unclosed")
    for name, front, line in (
        ("system-block", "description: x\n\nsystem: |\n  You help.\n  Answer in {{ lang }\n", 6),  # the line of the error in the block
        ("system-plain", "description: x\n\nsystem: You help {% if x %} in French.\n", 4),  # the line of system:
        ("system-twice", "system: You help.\nsystem: You help {{ x }.\n", 3),  # the one that counts
    ):
        path = write(templates.user_dir(), name, f"---\n{front}---\n{{{{ input }}}}\n")
        with pytest.raises(BadInputError, match=rf"^{path}:{line}: "):
            templates.get_template(name)
    write(templates.user_dir(), "no-filter", "{{ input | shout }}")
    with pytest.raises(BadInputError, match="No filter named 'shout'"):
        templates.get_template("no-filter")


def test_a_broken_template_is_skipped_with_a_warning_and_the_others_work():
    path = write(templates.user_dir(), "broken", "---\ndescription: [unclosed\n---\nbody")
    write(templates.user_dir(), "bad-bytes", "")
    (templates.user_dir() / "bad-bytes.j2").write_bytes(b"---\ndescription: caf\xe9\n---\n")
    with pytest.warns(AigcWarning) as caught:
        found = templates.discover()
    assert "broken" not in found and "bad-bytes" not in found and "chat" in found
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any(f"{path}:2: bad front matter" in m for m in messages)
    assert any("bad-bytes.j2 is not valid UTF-8 (at line 2)" in m for m in messages)
    assert templates.render("chat", {"input": "x"}).messages[-1]["content"] == "x"


def test_a_template_with_a_byte_order_mark_keeps_its_front_matter():
    (templates.user_dir()).mkdir(parents=True, exist_ok=True)
    (templates.user_dir() / "notepad.j2").write_bytes("\ufeff---\r\nsystem: Be brief.\r\n---\r\nHi {{ input }}\r\n".encode("utf-8"))
    assert templates.render("notepad", {"input": "x"}).messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi x"}]


def test_a_variable_used_but_not_declared_is_an_error_when_the_template_is_read():
    path = write(templates.user_dir(), "undecl", "---\nvariables: [{name: input, required: true}]\n---\n{{ input }} in {{ lang }}\n")
    words = "template 'undecl' uses {{ lang }} but does not declare it; add it under variables: in its front matter, with a default: (or required: false) where optional"
    with pytest.raises(BadInputError) as info:
        templates.get_template("undecl")
    assert str(info.value) == f"{words} ({path})"
    with pytest.warns(AigcWarning, match=re.escape(f"skipping template: {words}")):
        assert "undecl" not in templates.discover()
    write(templates.user_dir(), "two", "---\nsystem: 'In {{ tone }}'\nvariables: [{name: input}]\n---\n{{ input }} {{ lang }}\n")
    with pytest.raises(BadInputError, match=r"uses \{\{ lang \}\} and \{\{ tone \}\} but does not declare them; add them under"):
        templates.get_template("two")
    fine = {
        "no-variables": "{{ input }} in {{ lang }}",  # declaring none takes any
        "globals-and-locals": "---\nvariables: [{name: input}]\n---\n{% set n = 2 %}{% for i in range(n) %}{{ loop.index }}{{ input }}{% endfor %}{{ namespace }}",
        "system-alone": "---\nsystem: 'Answer {{ input }} in {{ lang }}.'\nvariables: [{name: lang, default: French}]\n---\n",
    }
    for name, text in fine.items():
        write(templates.user_dir(), name, text)
        assert templates.get_template(name).name == name


def test_a_misspelt_variable_names_the_declared_one_it_is_close_to():
    path = write(templates.user_dir(), "typo", "---\nvariables: [{name: input, required: true}, {name: tone, default: calm}]\n---\n{{ tone }}: {{ inpt }}\n")
    with pytest.raises(BadInputError) as info:
        templates.get_template("typo")
    assert str(info.value) == (
        "template 'typo' uses {{ inpt }} but does not declare it (did you mean {{ input }}?); add it under variables: in its front matter, "
        f"with a default: (or required: false) where optional ({path})"
    )


def test_sandbox_stops_attribute_escapes():
    write(templates.user_dir(), "evil", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(BadInputError, match="unsafe"):
        templates.render("evil", {})


def test_system_prompt_override_and_template_defaults():
    rendered = templates.render("summarize", {"text": "t"}, system="Be brief.")
    assert rendered.messages[0] == {"role": "system", "content": "Be brief."}
    assert rendered.defaults["temperature"] == 0
    literal = templates.render("chat", {"input": "x"}, system="Write Jinja like {{ name }} {# here #}")
    assert literal.messages[0]["content"] == "Write Jinja like {{ name }} {# here #}"  # the caller's words, not a template


def test_a_system_prompt_given_cannot_drop_the_only_place_a_variable_is_used():
    write(templates.user_dir(), "sysin", "---\nsystem: 'Summarize {{ input }} in {{ lang }}.'\n---\nDo it in {{ lang }}.\n")
    with pytest.raises(BadInputError, match=r"uses \{\{ input \}\} only in its system prompt, which the system prompt given replaces"):
        templates.render("sysin", {"input": "the text", "lang": "French"}, system="Be brief.")
    kept = templates.render("sysin", {"input": "the text", "lang": "French"})
    assert kept.messages[0]["content"] == "Summarize the text in French."


def test_an_optional_variable_with_no_default_says_how_to_give_it():
    write(templates.user_dir(), "mood", "---\nvariables:\n  - {name: input, required: true}\n  - {name: mood, required: false}\n---\n{{ input }} {{ mood }}\n")
    with pytest.raises(BadInputError, match=r"^template 'mood': mood is not given and has no default; give it \(variables=\{'mood': ...\}\) or add a `default:` to it in "):
        templates.render("mood", {"input": "hi"})
    assert templates.render("mood", {"input": "hi", "mood": "calm"}).messages[-1]["content"] == "hi calm"


def test_a_variable_a_template_without_declared_ones_reads_and_is_not_given_says_how_to_give_it():
    write(templates.user_dir(), "loose", "{{ input }} for {{ audience }}\n")
    with pytest.raises(BadInputError, match=r"^template 'loose': 'audience' is undefined; give it \(variables=\{'audience': ...\}\), or declare it with a `default:` under variables: in "):
        templates.render("loose", {"input": "hi"})
    assert templates.render("loose", {"input": "hi", "audience": "kids"}).messages[-1]["content"] == "hi for kids"


def test_an_unknown_front_matter_key_is_a_warning_with_a_suggestion():
    write(templates.user_dir(), "typo", "---\nsytem: be brief\n---\n{{ input }}\n")
    with pytest.warns(AigcWarning, match="unknown front-matter key 'sytem' is ignored; did you mean system"):
        assert templates.get_template("typo").system is None


def test_llm_style_front_matter_keys_say_where_they_go_here():
    write(templates.user_dir(), "llm-style", "---\ntemperature: 0.2\noptions: {top_p: 0.5}\nprompt: Hi $input\nmodel: smollm2\n---\n{{ input }}\n")
    with pytest.warns(AigcWarning) as caught:
        assert templates.get_template("llm-style").model == "smollm2"  # read, as llm reads it
    hints = {re.search(r"key '(\w+)' is ignored; (.*)", str(w.message)).groups() for w in caught}
    assert hints == {
        ("options", "sampling settings go under defaults: (defaults: {temperature: ...})"),
        ("prompt", "the prompt is the text after the front matter's closing ---"),
        ("temperature", "sampling settings go under defaults: (defaults: {temperature: ...})"),
    }
    for name, front, refusal in [
        ("var-default", "defaults: {topic: bees, temperature: 0.2}", r"unknown sampling setting topic; .*; a variable's default goes in its entry under variables: \(\{name: topic, default: \.\.\.\}\)$"),
        ("model-default", "defaults: {model: smollm2}", r"unknown sampling setting model; .*; the model goes at the top of the front matter \(model: NAME\), not under defaults:$"),
        ("bad-model", "model: [smollm2]", r"bad-model.j2: 'model' must be a model name, as -m takes .*, got \['smollm2'\]$"),
        ("list-description", "description: [a, b]", r"list-description.j2: 'description' must be one line of text, got a list; quote it if it holds \[ \] \{ \} or a colon$"),
        ("map-description", "description: {a: b}", r"map-description.j2: 'description' must be one line of text, got a mapping; "),
        ("typo-default", "defaults: {temprature: 0.2}", r"unknown sampling setting temprature \(did you mean temperature\?\); known: [^;]*$"),
    ]:
        write(templates.user_dir(), name, f"---\n{front}\n---\n{{{{ topic }}}}\n")
        with pytest.raises(BadInputError, match=refusal):
            templates.get_template(name)


def test_an_empty_or_numeric_description_is_listed_as_text():
    write(templates.user_dir(), "empty-description", "---\ndescription:\n---\n{{ input }}\n")
    write(templates.user_dir(), "year-description", "---\ndescription: 2024\n---\n{{ input }}\n")
    assert (templates.get_template("empty-description").description, templates.get_template("year-description").description) == ("", "2024")


def test_an_unknown_front_matter_key_is_warned_of_only_where_its_template_is_used_or_listed():
    import warnings

    path = write(templates.user_dir(), "typo", "---\nsytem: be brief\n---\n{{ input }}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        templates.get_template("chat")
        templates.scan()
        assert templates.render("chat", {"input": "x"}).messages[-1]["content"] == "x"
    assert [str(w.message) for w in caught] == []
    for use in (lambda: templates.get_template("typo"), templates.discover, lambda: template_files.parse(path, "user")):
        with pytest.warns(AigcWarning, match=f"^{path}: unknown front-matter key 'sytem' is ignored"):
            use()


def test_a_system_prompt_alone_with_variables_takes_the_input_as_its_message():
    from aigc.generators.template import checked_values

    write(templates.user_dir(), "pattern", "---\nsystem: 'Summarize in {{ lang }}.'\nvariables:\n  - {name: lang, default: English}\n---\n")
    pattern = templates.get_template("pattern")
    assert pattern.input_variable({"lang": "French"}) == "input"
    values = checked_values(pattern, {"lang": "French", "input": "the text"})
    assert templates.render(pattern, values).messages == [{"role": "system", "content": "Summarize in French."}, {"role": "user", "content": "the text"}]


def test_a_variable_given_as_text_takes_the_type_of_its_default_a_list_too():
    from aigc.generators.template import checked_values

    write(templates.user_dir(), "typed", "---\nvariables:\n  - {name: tags, default: [a, b]}\n  - {name: n, default: 2}\n  - {name: formal, default: false}\n---\n{{ tags|join('+') }} {{ n + 1 }} {{ formal }}")
    values = checked_values(templates.get_template("typed"), {"tags": "c, d", "n": "3", "formal": "yes"})
    assert values == {"tags": ["c", "d"], "n": 3, "formal": True}
    assert templates.render("typed", values).messages[-1]["content"] == "c+d 4 True"


PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_every_example_plugin_template_renders_under_strict_undefined():
    from aigc.template_environment import environment

    env = environment()
    assert env.undefined.__name__ == "StrictUndefined"
    paths = sorted(PLUGINS.glob("*/*/templates/*.j2"))
    assert {"tweet", "tweet-thread", "product-description", "email-subjects", "adcopy-headline", "adcopy-body"} <= {
        p.stem for p in paths
    }
    for path in paths:
        template = template_files.parse(path, "example")
        assert template.description, f"{path} has no description"
        values = {v["name"]: "sample text" for v in template.variables if v.get("required", "default" not in v)}
        rendered = templates.render(template, values)  # declared defaults fill the rest
        assert "sample text" in rendered.messages[-1]["content"], path
        assert "{{" not in rendered.messages[-1]["content"]


def test_new_template_skeleton_renders_and_is_never_overwritten():
    path, copied = template_edits.new_template("fresh")
    assert path.parent == templates.user_dir() and path.read_text() == template_edits.SKELETON and copied is None
    rendered = templates.render("fresh", {"input": "sample text"})
    assert rendered.messages[0]["role"] == "system" and "friendly" in rendered.messages[-1]["content"]
    path.write_text("mine")
    with pytest.raises(BadInputError, match="already exists; edit it with aigc templates edit fresh,"):
        template_edits.new_template("fresh")
    assert path.read_text() == "mine"
    with pytest.raises(BadInputError, match="must be letters"):
        template_edits.new_template("../up")


def test_a_template_may_be_named_in_any_script_but_never_as_a_path():
    path, _ = template_edits.new_template("产品描述")
    assert path == templates.user_dir() / "产品描述.j2" and templates.render("产品描述", {"input": "x"}).messages
    assert template_edits.user_template_path("cafe\u0301") == templates.user_dir() / "caf\u00e9.j2"
    for bad in ("产品/描述", ".产品", "产品\n", "产" * 67):
        with pytest.raises(BadInputError, match="must be letters, digits \\(of any script\\)"):
            template_edits.user_template_path(bad)


def test_new_template_where_the_config_directory_is_a_file_says_so(tmp_path, monkeypatch):
    blocker = tmp_path / "aigc-config"
    blocker.write_text("")
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(blocker / "sub"))  # a one-line error (exit 2), not a NotADirectoryError crash (exit 1)
    with pytest.raises(BadInputError, match=re.escape(f"cannot make directory {blocker / 'sub' / 'templates'}: {blocker} is a file (AIGC_CONFIG_DIR moves")):
        template_edits.new_template("fresh")


def test_new_template_named_like_a_builtin_starts_from_a_copy_of_it():
    builtin = templates.get_template("summarize")
    path, copied = template_edits.new_template("summarize")
    assert path.read_text() == builtin.path.read_text() and copied == builtin
    copy = templates.get_template("summarize")
    assert copy.source == "user" and copy.generator == builtin.generator and copy.variables == builtin.variables


@pytest.mark.parametrize(
    "source",
    [
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('touch /tmp/aigc-pwned') }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{% set x = namespace() %}{{ x.__class__.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
    ],
)
def test_sandbox_escapes_are_security_errors_and_nothing_runs(source):
    write(templates.user_dir(), "evil", source)
    with pytest.raises(BadInputError, match="unsafe"):
        templates.render("evil", {})
    assert not Path("/tmp/aigc-pwned").exists()


def test_a_template_file_is_used_by_its_path(tmp_path):
    path = write(tmp_path, "tagline", "---\ndescription: x\n---\nA tagline for {{ input }}")
    assert templates.render(str(path), {"input": "bees"}).messages[-1]["content"] == "A tagline for bees"
    assert templates.get_template(str(path)).name == "tagline"
    with pytest.raises(UnknownTemplateError, match="no template file"):
        templates.get_template(str(tmp_path / "missing.j2"))


@pytest.mark.parametrize(
    "defaults, words",
    [("{max_tokens: 0}", "defaults: max_tokens must be at least 1, got 0"), ("{n: 5000}", "defaults: n must be between 1 and 128"), ("{tempo: 1}", "defaults: unknown sampling setting tempo"), ("[1]", "'defaults' must be a mapping")],
)
def test_bad_front_matter_defaults_are_found_at_lookup(defaults, words):
    path = write(templates.user_dir(), "bad-defaults", f"---\ndefaults: {defaults}\n---\n{{{{ input }}}}")
    with pytest.raises(BadInputError) as info:
        templates.get_template("bad-defaults")
    assert str(info.value).startswith(f"{path}: {words}")


def test_a_json_schema_default_may_be_written_as_schemas_concise_fields():
    from aigc.json_schemas import read_schema

    write(templates.user_dir(), "person", "---\ndefaults: {json_schema: 'name, age int: in years'}\n---\n{{ input }}")
    assert templates.get_template("person").defaults["json_schema"] == read_schema("name, age int: in years")
    assert templates.render("person", {"input": "x"}).defaults["json_schema"]["required"] == ["name", "age"]
    path = write(templates.user_dir(), "bad-fields", "---\ndefaults: {json_schema: 'age integer'}\n---\n{{ input }}")
    with pytest.raises(BadInputError) as info:
        templates.get_template("bad-fields")
    assert str(info.value).startswith(f"{path}: defaults: cannot read schema field 'age integer'")
    for written in ("'{\"type\": \"object\"}'", "person.json"):
        write(templates.user_dir(), "json-text", f"---\ndefaults: {{json_schema: {written}}}\n---\n{{{{ input }}}}")
        with pytest.raises(BadInputError, match="write the JSON schema itself as a YAML mapping under json_schema:"):
            templates.get_template("json-text")


def test_a_template_that_never_uses_its_input_variable_is_an_error_not_the_text_dropped():
    plain = templates.get_template(str(write(templates.user_dir(), "plain", "Tell me a joke.")))
    with pytest.raises(BadInputError, match=r"template 'plain' never uses \{\{ input \}\}.*put \{\{ input \}\} where it goes"):
        plain.input_variable()
    write(templates.user_dir(), "notes", "---\nvariables:\n  - {name: text, required: true}\n---\nSummarize.")
    with pytest.raises(BadInputError, match=r"never uses \{\{ text \}\}"):
        templates.get_template("notes").input_variable()
    used = {
        "in-system": "---\nsystem: 'Answer {{ input }}'\n---\nGo.",
        "in-macro": "{% macro say() %}{{ input }}{% endmacro %}{% if 1 %}{{ say() }}{% endif %}",
        "fabric": "---\nsystem: You summarize text in one line.\n---\n",  # a system prompt alone: the text is the message
    }
    for name, text in used.items():
        write(templates.user_dir(), name, text)
        assert templates.get_template(name).input_variable() == "input", name
    assert templates.render("fabric", {"input": "The cat sat."}).messages[-1] == {"role": "user", "content": "The cat sat."}


@pytest.mark.parametrize(
    "source, made",
    [
        ('{{ "x" * 100001 }}{{ input }}', "100001 characters"),
        ("{{ input * 50001 }}", "100002 characters"),
        ("{{ [input] * 100001 }}", "100001 items"),
        ("{{ 2 ** 100001 }}", "100001 bits"),
        ("{% set ns = namespace(n=3) %}{% for _ in range(20) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ input }}", "103874 bits"),
    ],
)
def test_a_huge_product_is_refused_before_it_is_made(source, made):
    write(templates.user_dir(), "big", source)
    with pytest.raises(BadInputError, match=rf"^template 'big' failed while rendering: OverflowError: Result too big\. .* would make {made}; the sandbox blocks more than MAX_SIZE \(100000\)\.$"):
        templates.render("big", {"input": "ab"})
    write(templates.user_dir(), "fits", '{{ "-" * 100000 }}{{ 2 ** 64 }}{{ 1 ** 1000000 }}{{ 2.5 * 2 }}')
    assert templates.render("fits", {}).messages[-1]["content"] == "-" * 100000 + "18446744073709551616" + "1" + "5.0"


def test_nested_loops_that_write_without_end_are_stopped_and_big_inputs_still_render():
    write(templates.user_dir(), "loops", "{% for i in range(100000) %}{% for j in range(100000) %}0123456789{% endfor %}{% endfor %}{{ input }}")
    with pytest.raises(BadInputError, match=r"^template 'loops' failed while rendering: OverflowError: Result too big: the template wrote more than 1000002 characters, 1000000 beyond its variables'"):
        templates.render("loops", {"input": "ab"})  # 10**10 characters before; each range is within the sandbox's bound
    book = "word " * 400_000  # 2 MB of input: its own size does not count against the bound
    write(templates.user_dir(), "book", "Summarize: {{ input }}")
    assert templates.render("book", {"input": book}).messages[-1]["content"] == "Summarize: " + book.strip()


DOUBLE = '{% set ns = namespace(s="x" * 100000) %}{% for _ in range(4) %}' + "{% set ns.s = EXPR %}" + "{% endfor %}{{ input }}"


@pytest.mark.parametrize(
    "source, made",
    [
        (DOUBLE.replace("EXPR", "ns.s ~ ns.s"), "~ would make 1600000"),
        (DOUBLE.replace("EXPR", "ns.s + ns.s"), r"\+ would make 1600000"),
        (DOUBLE.replace("\"x\" * 100000", "[1] * 100000").replace("EXPR", "ns.s + ns.s"), r"\+ would make 1600000"),  # a list
        (DOUBLE.replace("EXPR", "ns.s.replace('x', 'xx')"), "replace would make 1600000"),
        (DOUBLE.replace("{% set ns.s = EXPR %}", "{% set s %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = s %}"), "a block would make 1600000"),
        ("{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}" + DOUBLE.replace("EXPR", "twice(ns.s)"), "a block would make 1600000"),
        ('{{ ("x" * 10000) | replace("x", "y" * 10000) }}', "the filter replace would make 100000000"),
        ('{{ range(100000) | join("y" * 100000) }}', "the filter join would make 10000388890"),
        ('{{ ("y" * 100000).join(range(100000) | map("string")) }}', "join would make 10000388890"),
        ('{{ "x" | center(10 ** 10) }}', "the filter center would make 10000000000"),
        ('{{ "x".ljust(10 ** 10) }}', "ljust would make 10000000000"),
        ('{{ ("a" * 100000).translate({97: "b" * 100000}) }}', "translate would make 10000000000"),
        ('{{ ("a" * 100000).translate(["b" * 100000] * 98) }}', "translate would make 10000000000"),  # a list as the table
        ('{{ ("a\n" * 50000) | indent(100000) }}', "the filter indent would make 5000200000"),
        ('{{ "%10000000000d" | format(1) }}', "the filter format would make 10000000014"),
        ('{{ "%*d" % (10 ** 10, 1) }}', "% would make 10000000016"),
        ('{{ "{:{}}".format(1, 10 ** 10) }}', "format would make 10000000018"),
        ("{{ [1] | batch(10 ** 10, 0) | list }}", "the filter batch would make 10000000000"),
        ("{{ lipsum(10 ** 7) }}", "lipsum would make 15200000000"),
        ('{% set ns = namespace(l=[1] * 100000) %}{% for _ in range(4) %}{% set _ = ns.l.extend(ns.l) %}{% endfor %}', "extend would make 1600000"),
    ],
)
def test_a_value_built_past_the_render_bound_is_refused_before_it_is_made(source, made):
    write(templates.user_dir(), "big", source)
    with pytest.raises(BadInputError, match=rf"^template 'big' failed while rendering: OverflowError: Result too big: {made} characters or items, more than 1000002, 1000000 beyond the variables'; the sandbox stops it$"):
        templates.render("big", {"input": "ab"})


def test_all_a_render_builds_is_bounded_and_big_inputs_still_fill_a_template():
    write(templates.user_dir(), "kept", '{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set _ = ns.l.append("x" * 100000 ~ i) %}{% endfor %}{{ ns.l | length }}')
    held = r"^template 'kept' failed while rendering: OverflowError: Result too big: the template holds more than 50000000 characters, items or bits it built, beyond 10 times its variables'; the sandbox stops it$"
    with pytest.raises(BadInputError, match=held):
        templates.render("kept", {})  # 100 MB of distinct strings, each within the bound
    write(templates.user_dir(), "kept", '{% set ns = namespace(l=none, s="x" * 100000) %}{% for i in range(1000) %}{% set ns.l = [ns.l, ns.s ~ ""] %}{% endfor %}{{ ns.l | length }}')
    with pytest.raises(BadInputError, match=held):
        templates.render("kept", {})  # the same, each string a copy kept in a chain of lists
    book = "word " * 400_000  # 2 MB of input: what is built from it is counted beyond its own size
    write(templates.user_dir(), "quoted", '{{ "<" ~ input ~ ">" }}|{{ (input + "!") | length }}|{{ input | replace("word", "words") | length }}|{{ input.split() | join(",") | length }}|{{ "%s." % input[:3] }}|{{ "{:>5}".format(input[:2]) }}|{{ "ab" | center(6) }}')
    expected = f"<{book}>|{len(book) + 1}|{len(book) + 400_000}|{400_000 * 5 - 1}|wor.|   wo|  ab"
    assert templates.render("quoted", {"input": book}).messages[-1]["content"] == expected.strip()


@pytest.mark.parametrize("source", ['{{ "x".encode().center(10 ** 10) }}', '{{ ("x" | attr("encode"))() }}', '{{ "{0.encode}".format("x") }}', "{{ data.center(10 ** 10) }}"])
def test_templates_get_no_bytes_which_their_bounds_do_not_cover(source):
    write(templates.user_dir(), "bytes", source)
    with pytest.raises(BadInputError, match=r"^template 'bytes' tried something unsafe and was stopped: templates work on text, not bytes: (str\.encode|bytes\.center) is not available in a template$"):
        templates.render("bytes", {"data": b"x"})


@pytest.mark.parametrize(
    "source, refused",
    [
        ('{{ "{0:{1[0]}}".format("x", [10 ** 10]) }}', r"a width or precision in \.format\(\) comes from a value's item or attribute \(\{0:\{1\[\.\.\.\); in a template give it as a value of its own, as in '\{0:\{1\}\}'\.format\(text, width\)"),
        ('{{ "{0:{1[w]}}".format_map({0: "x", 1: {"w": 10 ** 10}}) }}', r"a width or precision in \.format\(\) comes from .*"),
        ('{{ "{:{1.real}}".format("x", 10 ** 10) }}', r"a width or precision in \.format\(\) comes from .*"),
        ("{{ [1, 2] | tojson(indent=10 ** 8) }}", r"tojson's indent is at most 16 in a template, not 100000000"),
        ('{{ [1, 2] | tojson("x" * 17) }}', r"tojson's indent is at most 16 in a template, not 'x{17}'"),
        ('{{ "a".translate(cycler("b")) }}', r"str\.translate in a template takes a dict or a list as its table, not a Cycler"),
    ],
)
def test_what_the_sandbox_cannot_bound_before_it_is_built_is_refused(source, refused):
    write(templates.user_dir(), "unbounded", source)
    with pytest.raises(BadInputError, match=rf"^template 'unbounded' tried something unsafe and was stopped: {refused}$"):
        templates.render("unbounded", {})
    write(templates.user_dir(), "bounded", '{{ "{0:{1}}|{0:>{w}}".format("x", 3, w=2) }}|{{ {"a": [1]} | tojson(2) | length }}|{{ "abc".translate(["-"] * 98 + [none, "B"]) }}')
    assert templates.render("bounded", {}).messages[-1]["content"] == f"x  | x|{len(json.dumps({'a': [1]}, indent=2))}|-B"  # b (98) deleted


def test_text_built_line_by_line_from_a_big_input_renders():
    write(templates.user_dir(), "bullets", '{% set ns = namespace(acc="") %}{% for line in input.splitlines() %}{% set ns.acc = ns.acc ~ "- " ~ line ~ "\\n" %}{% endfor %}{{ ns.acc }}')
    lines = ["word " * 20] * 3000  # 300 KB: each step rebuilds `acc`, 450 MB in all, one `acc` held at a time
    assert templates.render("bullets", {"input": "\n".join(lines)}).messages[-1]["content"] == "".join(f"- {line}\n" for line in lines).strip()


def test_a_render_that_never_ends_is_stopped_after_its_steps_or_its_time(monkeypatch):
    from aigc import template_environment

    stopped = r"^template 'spin' failed while rendering: OverflowError: Too much work: the template took more than 1000000 loop iterations and calls beyond one a character of its variables; the sandbox stops it$"
    for source in [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done",  # 10**10 iterations writing nothing
        "{% for x in range(100) recursive %}{% if loop.depth < 6 %}{{ loop(range(100)) }}{% endif %}{% endfor %}done",
    ]:
        write(templates.user_dir(), "spin", source)
        with pytest.raises(BadInputError, match=stopped):
            templates.render("spin", {"input": "ab"})
    monkeypatch.setattr(template_environment, "MAX_STEPS", 10_000)  # 2**40 calls, each a step (at the real bound, seconds)
    write(templates.user_dir(), "spin", "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}")
    with pytest.raises(BadInputError, match=stopped.replace("1000000", "10000")):
        templates.render("spin", {})
    write(templates.user_dir(), "deep", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
    with pytest.raises(BadInputError, match=r"^template 'deep' failed while rendering: RecursionError: maximum recursion depth exceeded"):
        templates.render("deep", {})
    monkeypatch.setattr(template_environment, "MAX_SECONDS", 0)  # a step that is slow however few (filtering a big value)
    write(templates.user_dir(), "slow", "{% for i in range(5000) %}{% endfor %}done")
    with pytest.raises(BadInputError, match=r"^template 'slow' failed while rendering: OverflowError: Too much work: the template ran for more than 0 seconds; the sandbox stops it$"):
        templates.render("slow", {})


def test_an_edit_that_fails_the_checks_is_kept_aside_and_the_template_stays_as_it_was():
    target, draft, note = template_edits.start_edit("headline")
    assert target == templates.user_dir() / "headline.j2" and not target.exists() and note.startswith("copied from")
    draft.write_text(draft.read_text().replace("{{", "{%", 1))
    with pytest.raises(BadInputError, match=rf"^{draft}:\d+: .*; not saved: your edit is kept in {draft}, and `aigc templates edit headline` opens it again$"):
        template_edits.save_edit(target, draft)
    assert not target.exists() and draft.exists() and templates.get_template("headline").source == "builtin"
    assert template_edits.start_edit("headline") == (target, draft, f"resuming your edit kept in {draft}")
    draft.write_text("---\ndescription: mine\n---\n{{ topic }}")
    saved = template_edits.save_edit(target, draft)
    assert (saved.path, saved.source, saved.description) == (target, "user", "mine") and not draft.exists()
    assert templates.get_template("headline").description == "mine"


def test_a_kept_edit_goes_back_to_its_own_file_and_is_set_aside_when_that_file_changed(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    shared = write(env_dir, "memo", "---\ndescription: shared\n---\n{{ input }}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(env_dir))
    own = templates.user_dir() / "memo.j2"
    target, draft, note = template_edits.start_edit("memo")
    assert target == own and note == f"copied from {shared}; yours overrides it"  # the shared file is not edited
    draft.write_text("{% broken")
    with pytest.raises(BadInputError, match="your edit is kept"):
        template_edits.save_edit(target, draft)
    assert template_edits.start_edit("memo") == (own, draft, f"resuming your edit kept in {draft}")
    write(own.parent, "memo", "---\ndescription: by hand\n---\n{{ input }}")  # made since: the draft is not saved over it
    target, draft, note = template_edits.start_edit("memo")
    aside = draft.with_name("memo.old1.j2")
    assert target == own and draft.read_text().strip() == own.read_text().strip() and aside.read_text() == "{% broken"
    assert note == f"your earlier edit, kept in {draft}, is not opened, as {own} changed since: it is set aside as {aside}; opening the current template"


def test_a_kept_edit_whose_record_is_nested_too_deeply_is_set_aside():
    target, draft, _ = template_edits.start_edit("headline")
    draft.write_text("{% broken")
    with pytest.raises(BadInputError, match="your edit is kept"):
        template_edits.save_edit(target, draft)
    draft.with_name(draft.name + ".json").write_text("[" * 100000 + "]" * 100000)
    aside = draft.with_name("headline.old1.j2")
    _, draft, note = template_edits.start_edit("headline")
    assert note.startswith(f"your earlier edit, kept in {draft}, is not opened, as it does not say which file it is for: it is set aside as {aside}; ")
    assert aside.read_text() == "{% broken"


def test_an_edit_is_not_saved_over_a_template_changed_while_it_was_open():
    shared = write(templates.user_dir(), "memo", "---\ndescription: shared\n---\n{{ input }}")
    target, draft, _ = template_edits.start_edit("memo")
    draft.write_text("---\ndescription: mine\n---\n{{ input }}")
    shared.write_text("---\ndescription: by hand\n---\n{{ input }}")  # meanwhile, in another window
    with pytest.raises(BadInputError, match="changed while you edited it"):
        template_edits.save_edit(target, draft)
    aside = draft.with_name("memo.old1.j2")
    assert "by hand" in shared.read_text() and "mine" in aside.read_text() and not draft.exists()


def test_an_unedited_or_emptied_edit_keeps_no_draft():
    target, draft, _ = template_edits.start_edit("headline")
    assert template_edits.drop_unedited(draft) and not draft.exists()
    target, draft, _ = template_edits.start_edit("headline")  # a look at a built-in pins no copy of it
    assert template_edits.save_edit(target, draft) is None and not draft.exists() and not target.exists()
    target, draft, _ = template_edits.start_edit("headline")
    draft.write_text(" \n")
    with pytest.raises(BadInputError, match="is empty: nothing saved"):
        template_edits.save_edit(target, draft)
    assert not draft.exists() and not target.exists()


def test_an_override_a_task_could_not_use_is_refused_when_saved_and_named_with_its_file_when_used():
    from aigc.errors import OptionError
    from aigc.generators.headline import HeadlineOptions
    from aigc.generators.summarize import SummarizeOptions

    target, draft, _ = template_edits.start_edit("headline")
    draft.write_text("---\ndescription: mine\n---\nWrite a headline.")
    with pytest.raises(BadInputError, match=r"^template 'headline' never reads article or topic, where headline puts its input, so `aigc headline` could not use it; not saved: your edit is kept"):
        template_edits.save_edit(target, draft)
    assert not target.exists() and draft.exists()
    target, draft, _ = template_edits.start_edit("mine")  # a new template written for a task is checked as that task's
    draft.write_text("---\ngenerator: summarize\n---\nSummarize something.")
    with pytest.raises(BadInputError, match="never reads text, where summarize puts its input, so `aigc summarize` could not use it"):
        template_edits.save_edit(target, draft)
    own = write(templates.user_dir(), "headline", "---\ndescription: mine\n---\nWrite a headline.")  # written by hand
    with pytest.raises(BadInputError) as caught:
        HeadlineOptions()
    assert not isinstance(caught.value, OptionError) and str(caught.value) == (
        f"template 'headline', in {own}, never reads article or topic, where headline puts its input, so headline cannot use it; "
        "fix it with `aigc templates edit headline`, or remove it with `aigc templates rm headline`, going back to the built-in one"
    )
    with pytest.raises(OptionError, match="^template names template 'chat', which needs input"):  # not an override: the option is named
        SummarizeOptions(template="chat")


def test_removing_an_override_gives_back_the_template_it_hid_and_a_builtin_is_refused():
    write(templates.user_dir(), "chat", "---\ndescription: [unclosed\n---\nx")
    with pytest.raises(BadInputError, match=r"remove it with `aigc templates rm chat`, going back to the built-in one$"):
        templates.get_template("chat")
    assert templates.shadowed() == {"chat": ["builtin"]}
    removed, now = template_edits.remove_template("chat")
    assert removed == templates.user_dir() / "chat.j2" and not removed.exists() and now.source == "builtin"
    assert templates.shadowed() == {}
    with pytest.raises(BadInputError, match="it is built in .* with no override of yours; only your own templates can be removed"):
        template_edits.remove_template("chat")
    with pytest.raises(UnknownTemplateError, match="no template 'nope' of yours"):
        template_edits.remove_template("nope")
    write(templates.user_dir(), "mine", "{{ input }}")
    assert template_edits.remove_template("mine") == (templates.user_dir() / "mine.j2", None)


def test_a_missing_directory_in_aigc_templates_path_is_one_warning(tmp_path, monkeypatch):
    import warnings

    monkeypatch.setattr(templates, "_missing_warned", set())
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", f"{tmp_path}:{tmp_path / 'nope'}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        templates.discover()
        templates.get_template("chat")
    assert [str(w.message) for w in caught] == [f"AIGC_TEMPLATES_PATH names {tmp_path / 'nope'}, which does not exist; its templates are not found"]


def settings(text):
    from aigc import config

    config.settings_file().parent.mkdir(parents=True, exist_ok=True)
    config.settings_file().write_text(text)


def test_templates_path_in_config_toml_adds_directories_after_aigc_templates_path(tmp_path, monkeypatch):
    for where in ("env", "team", "shared"):
        write(tmp_path / where, "greet", f"{where} {{{{ name }}}}")
    write(tmp_path / "shared", "farewell", "bye {{ name }}")
    monkeypatch.setenv("HOME", str(tmp_path))
    settings(f'templates_path = ["~/team", {json.dumps(str(tmp_path / "shared"))}]\n')
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "team a"  # the first wins, `~` expanded
    assert templates.get_template("farewell").source == "config"
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path / "env"))
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "env a"  # the variable over the setting
    assert templates.shadowed() == {"greet": ["config", "config"]}
    write(templates.user_dir(), "greet", "user {{ name }}")
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "user a"
    assert [(source, d) for source, d in templates.template_dirs() if source in ("config", "env", "user")] == [
        ("config", tmp_path / "shared"), ("config", tmp_path / "team"), ("env", tmp_path / "env"), ("user", templates.user_dir())]


def test_a_relative_directory_in_templates_path_is_from_the_config_files_directory(tmp_path, monkeypatch):
    from aigc import config

    write(config.config_dir() / "prompts", "greet", "relative {{ name }}")
    monkeypatch.chdir(tmp_path)  # not from the working directory
    settings('templates_path = ["prompts"]\n')
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "relative a"


@pytest.mark.parametrize("value", ['"~/prompts"', "[1]", '[""]'])
def test_a_templates_path_that_is_no_list_of_directories_is_an_error_saying_how_to_write_it(value):
    settings(f"templates_path = {value}\n")
    with pytest.raises(BadInputError, match=r'templates_path in .*config.toml must be a list of directories in quotes \(templates_path = \["~/team-prompts"\]\); fix it or remove the line'):
        templates.get_template("chat")


def test_a_missing_directory_in_templates_path_is_one_warning(tmp_path, monkeypatch):
    import warnings

    from aigc import config

    monkeypatch.setattr(templates, "_missing_warned", set())
    settings(f"templates_path = [{json.dumps(str(tmp_path / 'nope'))}]\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        templates.discover()
        templates.get_template("chat")
    assert [str(w.message) for w in caught] == [f"templates_path in {config.settings_file()} names {tmp_path / 'nope'}, which does not exist; its templates are not found"]


def test_a_generator_that_is_not_registered_is_refused_when_the_template_is_read():
    write(templates.user_dir(), "typo-task", "---\ngenerator: sumarize\n---\n{{ input }}\n")
    with pytest.raises(BadInputError, match=r"typo-task.j2: generator: 'sumarize' is no generator; did you mean summarize\?$"):
        templates.get_template("typo-task")
    write(templates.user_dir(), "other-task", "---\ngenerator: [poem]\n---\n{{ input }}\n")
    with pytest.raises(BadInputError, match=r"generator: must be the name of the task it is for \(such as summarize\), got \['poem'\]$"):
        templates.get_template("other-task")
    for name in ("summarize", "poem"):  # poem: like no generator here, a plugin's maybe
        write(templates.user_dir(), "mine", f"---\ngenerator: {name}\n---\n{{{{ input }}}}\n")
        assert templates.get_template("mine").generator == name


def test_an_installed_copy_reads_its_own_built_in_templates_never_a_prompts_folder_beside_it_and_says_when_they_are_missing(tmp_path):
    site = site_copy(tmp_path)
    (site / "prompts").mkdir()  # another project's, in site-packages
    (site / "prompts" / "summarize.j2").write_text("---\ndescription: NOT AIGC\n---\n{{ text }}\n")
    (tmp_path / "doc.md").write_text("Some text to summarize.\n")
    listed = run_from(site, "templates", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    missing = f"aigc's built-in templates are missing: {site / 'aigc' / 'prompts'} is not there (an incomplete install)"
    used = run_from(site, "summarize", "-m", "echo", "doc.md", cwd=tmp_path)
    assert used.returncode == 1 and used.stderr.startswith(f"Error: {missing}; reinstall it: "), used.stderr
    doctor = run_from(site, "doctor", "--json", cwd=tmp_path)
    check = json.loads(doctor.stdout)["checks"]["templates"]
    assert doctor.returncode == 1 and check["status"] == "problem" and check["summary"] == missing
    import shutil

    shutil.copytree(templates.builtin_dir(), site / "aigc" / "prompts")  # as the wheel has them
    shown = run_from(site, "templates", "show", "summarize", cwd=tmp_path)
    assert shown.returncode == 0 and "NOT AIGC" not in shown.stdout and str(site / "aigc" / "prompts" / "summarize.j2") in shown.stdout + shown.stderr


@pytest.mark.parametrize("lead", ["\n", "\n  \n", "{# Copyright the team #}\n", "{# two\n   lines #}\n\n"])
def test_blank_lines_and_comments_may_come_before_the_front_matter(lead):
    path = write(templates.user_dir(), "lead", lead + "---\nsystem: SYS\nvariables:\n  - {name: input, required: true}\n  - {name: x, default: 1\n---\nHi {{ input }}\n")
    with pytest.raises(BadInputError, match=rf"lead.j2:{lead.count(chr(10)) + 5}: bad front matter"):  # its line, counting the lines before
        templates.get_template("lead")
    path.write_text(path.read_text().replace("default: 1", "default: 1}"))
    rendered = templates.render("lead", {"input": "x"}).messages
    assert rendered == [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Hi x"}]


def test_a_front_matter_after_other_text_is_an_error_not_sent_as_the_prompt():
    write(templates.user_dir(), "late", "# copied from somewhere\n---\ndescription: late\nsystem: SYS\n---\nHi {{ input }}\n")
    with pytest.raises(BadInputError, match=r"late.j2:2: the front matter must begin the file .*move the 1 line above it"):
        templates.get_template("late")
    write(templates.user_dir(), "rule", "Write a post.\n\n---\n\n{{ input }}\n---\n")  # a Markdown rule, no front matter: text
    assert templates.render("rule", {"input": "x"}).messages[-1]["content"] == "Write a post.\n\n---\n\nx\n---"


@pytest.mark.parametrize(("text", "sent"), [
    ("Reply like the example transcript below.\n\n---\nsystem: You are a pirate\nuser: hi\nassistant: arr\n---\n\n{{ input }}",
     "Reply like the example transcript below.\n\n---\nsystem: You are a pirate\nuser: hi\nassistant: arr\n---\n\nx"),
    ("\n---\nHorizontal rule then prose.\n\n{{ input }}", "---\nHorizontal rule then prose.\n\nx"),
    ("{# note #}\n---\nText\n---\n{{ input }}", "---\nText\n---\nx"),
    ("{# note #}\n---\nsystem: You are a pirate\nuser: hi\n---\n{{ input }}", "---\nsystem: You are a pirate\nuser: hi\n---\nx"),
])
def test_text_with_dashed_lines_that_is_no_front_matter_is_sent_as_written(text, sent):
    write(templates.user_dir(), "prose", text)
    assert templates.render("prose", {"input": "x"}).messages[-1]["content"] == sent


@pytest.mark.parametrize(("text", "line"), [
    ("Summarize this for a child.\n\n---\ndescription: late\nsystem: SYS\n---\n{{ input }}", 3),
    ("Notes.\n---\ndescription: a section\nmodel: the one we use\n---\n{{ input }}", 2),
    ("# Notes\nSee below.\n---\nmodel: the one we use\n---\n{{ input }}", 3),
    ("Intro.\n\n---\n\nMore prose.\n\n---\nsystem: SYS\n---\n{{ input }}", 7),  # the block of keys, not the rule above it
])
def test_a_front_matter_below_prose_is_sent_as_written_with_a_warning_saying_how_to_fix_it(text, line):
    path = write(templates.user_dir(), "below", text)
    with pytest.warns(AigcWarning) as caught:
        template = templates.get_template("below")
    assert [str(w.message) for w in caught] == [
        f"{path}:{line}: this --- block of front-matter keys comes after text, so it is sent to the model as part of the prompt and its settings "
        "are not used; move it to the top of the file (only blank lines and {# comments #} may come before it) and the text above it below it"
    ]
    assert template.system is None and template.description == ""
    assert templates.render(template, {"input": "x"}).messages == [{"role": "user", "content": text.replace("{{ input }}", "x")}]


def test_a_template_that_renders_an_empty_message_is_refused_naming_it_and_what_was_given():
    write(templates.user_dir(), "cond", "---\nvariables:\n  - {name: input, required: true}\n  - {name: show, default: false}\n---\n{% if show %}{{ input }}{% endif %}\n")
    with pytest.raises(BadInputError, match=r"template 'cond' renders an empty message with input='secret', so there is nothing to send; .*cond.j2:6\)"):
        templates.render("cond", {"input": "secret"})
    assert templates.render("cond", {"input": "secret", "show": True}).messages[-1]["content"] == "secret"


@pytest.mark.parametrize(("entry", "said"), [
    ("{name: tone, defualt: calm}", "variable 'tone' has an unknown key 'defualt'; did you mean default?"),
    ("{name: tone, requird: false}", "variable 'tone' has an unknown key 'requird'; did you mean required?"),
    ("{name: tone, Default: calm}", "variable 'tone' has an unknown key 'Default'; did you mean default?"),
    ("{name: tone, defaults: calm}", "variable 'tone' has an unknown key 'defaults'; did you mean default?"),
])
def test_a_misspelt_default_or_required_in_a_variables_entry_is_an_error_with_the_key_meant(entry, said):
    write(templates.user_dir(), "typo", f"---\nvariables:\n  - {{name: input, required: true}}\n  - {entry}\n---\n{{{{ input }}}}\n")
    with pytest.raises(BadInputError, match=re.escape(said)):
        templates.get_template("typo")


@pytest.mark.parametrize(("entry", "said"), [
    ("{name: n, type: int, default: 3}", "variable 'n' has an unknown key 'type', which is ignored; its type is its default:'s"),
    ("{name: n, example: 4, default: 3}", "variable 'n' has an unknown key 'example', which is ignored; known: name, description"),
])
def test_another_unknown_key_in_a_variables_entry_is_a_warning_and_the_template_works(entry, said):
    write(templates.user_dir(), "typed", f"---\nvariables:\n  - {{name: input, required: true}}\n  - {entry}\n---\n{{{{ input }}}} {{{{ n }}}}\n")
    with pytest.warns(AigcWarning, match=re.escape(said)):
        template = templates.get_template("typed")
    assert templates.render(template, {"input": "x"}).messages[-1]["content"] == "x 3"


def test_render_template_gives_what_a_run_would_send_without_a_model_and_generate_names_a_template_way():
    import aigc
    from aigc.errors import UnknownGeneratorError

    write(templates.user_dir(), "review", "---\nsystem: You review {{ lang }}.\ndefaults: {temperature: 0}\nvariables:\n  - {name: input, required: true}\n  - {name: lang, default: Python}\n---\nReview: {{ input }}\n")
    shown = aigc.render_template("review", "def f(): pass", variables={"lang": "Rust"})
    assert shown["messages"] == [{"role": "system", "content": "You review Rust."}, {"role": "user", "content": "Review: def f(): pass"}]
    assert shown["defaults"]["temperature"] == 0 and shown["defaults"]["max_tokens"] == 512  # the template's over the task's
    assert aigc.render_template("review", {"input": "x"})["messages"][0]["content"] == "You review Python."
    ran = aigc.generate("template", "def f(): pass", model="echo", template="review", variables={"lang": "Rust"})
    assert ran["messages"] == shown["messages"]
    with pytest.raises(BadInputError, match="needs input"):
        aigc.render_template("review")
    with pytest.raises(UnknownGeneratorError, match=re.escape("""'review' is a template: generate("template", text, template='review', variables={...})""")):
        aigc.generate("review", "x")


def test_a_variable_an_included_template_reads_counts_as_used_by_the_template_including_it():
    write(templates.user_dir(), "_part", "Say it {{ tone }}: {{ input }}")
    write(templates.user_dir(), "whole", "---\nvariables:\n  - {name: input, required: true}\n  - {name: tone, default: calmly}\n---\n{% include '_part' %}")
    whole = templates.get_template("whole")
    assert whole.names_used == {"input", "tone"} and whole.input_variable() == "input"  # not "never uses {{ input }}"
    assert templates.render(whole, {"input": "x", "tone": "loudly"}).messages[-1]["content"] == "Say it loudly: x"
    write(templates.user_dir(), "_part", "{% include 'whole' %}{{ input }}")  # a loop of includes ends the lookup
    assert templates.get_template("whole").names_used == {"input"}


def test_two_templates_with_variables_that_include_each_other_are_read_without_end():
    write(templates.user_dir(), "ping", "---\nvariables:\n  - {name: input, required: true}\n  - {name: extra, default: ''}\n---\n{% if false %}{% include 'pong' %}{% endif %}{{ input }}")
    write(templates.user_dir(), "pong", "---\nvariables:\n  - {name: input, required: true}\n  - {name: extra, default: ''}\n---\n{% include 'ping' %}{{ extra }}")
    assert templates.get_template("pong").names_used == templates.get_template("ping").names_used == {"input", "extra"}
    assert templates.render("ping", {"input": "x"}).messages[-1]["content"] == "x"
    assert "ping" in templates.discover()


def test_a_templates_digest_changes_with_a_part_it_includes_and_not_otherwise():
    write(templates.user_dir(), "_part", "Be brief. {% include 'whole' %}")  # a loop of includes ends
    write(templates.user_dir(), "whole", "{% include '_part.j2' %}{{ input }}")
    write(templates.user_dir(), "plain", "{{ input }}")
    before, plain = templates.digest("whole"), templates.digest("plain")
    write(templates.user_dir(), "_part", "Be kind. {% include 'whole' %}")
    assert templates.digest("whole") != before and templates.digest("plain") == plain
