from pathlib import Path

import pytest

from aigc import templates
from aigc.errors import BadInputError, UnknownTemplateError


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


def test_env_path_wins_over_user_directory(tmp_path, monkeypatch):
    write(templates.user_dir(), "greet", "user {{ name }}")
    write(tmp_path / "env", "greet", "env {{ name }}")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path / "env"))
    assert templates.render("greet", {"name": "a"}).messages[-1]["content"] == "env a"


def test_unknown_template_suggests_close_names():
    with pytest.raises(UnknownTemplateError, match="did you mean summarize"):
        templates.get_template("sumarize")


def test_missing_required_variable_names_it_and_lists_variables():
    write(templates.user_dir(), "two", "---\nvariables:\n  - {name: a, required: true}\n  - {name: b, default: x}\n---\n{{ a }}{{ b }}")
    with pytest.raises(BadInputError, match=r"needs a; its variables: a, b"):
        templates.render("two", {})


def test_bad_front_matter_names_file_and_line():
    path = write(templates.user_dir(), "broken", "---\ndescription: ok\nvariables: [unclosed\n---\nbody")
    with pytest.raises(BadInputError) as info:
        templates.get_template("chat")  # discovering all templates parses the broken one
    assert f"{path}:" in str(info.value)


def test_sandbox_stops_attribute_escapes():
    write(templates.user_dir(), "evil", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(BadInputError, match="unsafe"):
        templates.render("evil", {})


def test_system_prompt_override_and_template_defaults():
    rendered = templates.render("summarize", {"text": "t"}, system="Be brief.")
    assert rendered.messages[0] == {"role": "system", "content": "Be brief."}
    assert rendered.defaults["temperature"] == 0
