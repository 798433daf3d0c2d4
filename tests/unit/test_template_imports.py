"""`aigc templates import`: llm's YAML templates made into aigc templates."""

from pathlib import Path

from typer.testing import CliRunner

from aigc import templates
from aigc.cli.app import app

runner = CliRunner()

SUMMARIZE = """\
system: |
  You summarize in {curly} words for $$5.
  Style: $style
prompt: "Summarize for ${reader}: $input"
defaults:
  style: terse
options:
  temperature: 0.3
  max_tokens: 50
model: echo
"""


def imported(tmp_path: Path, text: str, *args: str):
    (tmp_path / "llmt.yaml").write_text(text)
    return runner.invoke(app, ["templates", "import", str(tmp_path / "llmt.yaml"), *args])


def test_an_llm_template_becomes_an_aigc_template_that_renders_as_llm_would(tmp_path):
    done = imported(tmp_path, SUMMARIZE, "--name", "brief")
    assert done.exit_code == 0 and done.stdout == f"{templates.user_dir() / 'brief.j2'}\n", done.output
    template = templates.get_template("brief")
    assert template.source == "user" and template.model == "echo" and template.defaults == {"temperature": 0.3, "max_tokens": 50}
    assert template.required == ["input", "reader"]
    rendered = templates.render("brief", {"input": "the text", "reader": "kids"})
    assert rendered.messages == [
        {"role": "system", "content": "You summarize in {curly} words for $5.\nStyle: terse"},
        {"role": "user", "content": "Summarize for kids: the text"},
    ]


def test_the_imported_template_runs_with_piped_input_under_its_files_name(tmp_path):
    assert imported(tmp_path, "prompt: Answer this $input\n").exit_code == 0
    ran = runner.invoke(app, ["run", "llmt", "-", "-m", "echo", "--no-log"], input="why is the sky blue\n")
    assert ran.exit_code == 0 and ran.stdout == "why is the sky blue\n", ran.output


def test_a_prompt_without_input_gets_the_input_after_it_as_llm_does(tmp_path):
    assert imported(tmp_path, "prompt: Tell me about $topic\n").exit_code == 0
    assert templates.render("llmt", {"topic": "bees", "input": "and wasps"}).messages[-1]["content"] == "Tell me about bees\nand wasps"
    assert templates.render("llmt", {"topic": "bees"}).messages[-1]["content"] == "Tell me about bees"


def test_a_system_prompt_alone_answers_the_input(tmp_path):
    assert imported(tmp_path, "system: Translate to $lang\ndefaults: {lang: French}\n").exit_code == 0
    rendered = templates.render("llmt", {"input": "hello"})
    assert rendered.messages == [{"role": "system", "content": "Translate to French"}, {"role": "user", "content": "hello"}]


def test_what_has_no_aigc_equivalent_is_refused_and_nothing_is_written(tmp_path):
    tools = imported(tmp_path, "system: Be brief\ntools: [llm_time]\n")
    assert tools.exit_code == 2 and "llm's tools cannot be converted" in tools.stderr
    option = imported(tmp_path, "system: Be brief\noptions: {reasoning_effort: high}\n")
    assert option.exit_code == 2 and "option reasoning_effort has no aigc sampling setting" in option.stderr
    dollar = imported(tmp_path, "prompt: costs $ 5 $input\n")
    assert dollar.exit_code == 2 and "write $$ for a dollar sign" in dollar.stderr
    neither = imported(tmp_path, "model: gpt-4o\n")
    assert neither.exit_code == 2 and "no llm template" in neither.stderr
    assert not (templates.user_dir() / "llmt.j2").exists()


def test_an_existing_template_is_never_overwritten(tmp_path):
    assert imported(tmp_path, "system: first\n").exit_code == 0
    again = imported(tmp_path, "system: second\n")
    assert again.exit_code == 2 and "already exists; give another name with --name" in again.stderr
    assert templates.get_template("llmt").system == "first"


def test_a_fabric_pattern_of_that_name_is_not_hidden(tmp_path):
    pattern = templates.user_dir() / "llmt" / "system.md"
    pattern.parent.mkdir(parents=True)
    pattern.write_text("You answer in one line.\n")
    for args in [(), ("--name", "llmt")]:
        done = imported(tmp_path, "system: first\n", *args)
        assert done.exit_code == 2 and done.stderr == f"Error: 'llmt' is the fabric pattern {pattern.parent}; a template of that name would hide it: give another name with --name\n", done.output
    assert not (templates.user_dir() / "llmt.j2").exists() and templates.get_template("llmt").path == pattern
    assert imported(tmp_path, "system: first\n", "--name", "other").exit_code == 0


def test_a_json_schema_object_becomes_the_json_schema_default(tmp_path):
    text = "prompt: List dogs from $input\nschema_object:\n  type: object\n  properties: {name: {type: string}}\n"
    assert imported(tmp_path, text).exit_code == 0
    assert templates.get_template("llmt").defaults["json_schema"] == {"type": "object", "properties": {"name": {"type": "string"}}}


def test_dash_reads_the_template_from_stdin_under_the_name_given(monkeypatch):
    done = runner.invoke(app, ["templates", "import", "-", "--name", "piped"], input=SUMMARIZE)  # `llm templates show x | aigc templates import - --name x`
    assert done.exit_code == 0 and done.stdout == f"{templates.user_dir() / 'piped.j2'}\n", done.output
    template = templates.get_template("piped")
    assert template.defaults == {"temperature": 0.3, "max_tokens": 50} and template.description == "imported from an llm template on standard input"
    nameless = runner.invoke(app, ["templates", "import", "-"], input=SUMMARIZE)
    assert nameless.exit_code == 2 and nameless.stderr == "Error: - reads the llm template from stdin, which gives it no name: name the new template with --name NAME\n"
    neither = runner.invoke(app, ["templates", "import", "-", "--name", "other"], input="model: gpt-4o\n")
    assert neither.exit_code == 2 and neither.stderr.startswith("Error: standard input is no llm template")
    monkeypatch.setattr("aigc.cli.options._piped", lambda: False)
    alone = runner.invoke(app, ["templates", "import", "-", "--name", "other"])
    assert alone.exit_code == 2 and alone.stderr == "Error: - reads the llm template from stdin, but nothing was piped in: `cat t.yaml | aigc templates import - --name NAME`, or give the file\n"
    assert not (templates.user_dir() / "other.j2").exists()
