"""The example plugins in plugins/ work through the same hooks an installed entry point uses."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from aigc import plugins, templates
from aigc.cli.app import AigcGroup
from aigc.errors import AigcWarning

ROOT = Path(__file__).resolve().parents[2]


def load_plugin_module(package_dir: Path, module: str):
    """The plugin package in this checkout, its submodules (`from .cli import ...`) too, not a copy
    installed elsewhere."""
    spec = importlib.util.spec_from_file_location(module, package_dir / module / "__init__.py", submodule_search_locations=[str(package_dir / module)])
    plugin = importlib.util.module_from_spec(spec)
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        del sys.modules[name]
    sys.modules[module] = plugin
    spec.loader.exec_module(plugin)
    return plugin


def test_social_templates_plugin_adds_the_tweet_template():
    plugin = load_plugin_module(ROOT / "plugins" / "aigc-social-templates", "aigc_social_templates")
    plugins.reset()
    plugins.get_plugin_manager().register(plugin, name="social-templates")
    try:
        tweet = templates.get_template("tweet")
        assert tweet.source == "social-templates"
        rendered = templates.render(tweet, {"input": "a new bakery"})
        assert rendered.messages[0]["role"] == "system"
        assert "a new bakery" in rendered.messages[-1]["content"]
        assert rendered.defaults["max_tokens"] == 80
    finally:
        plugins.reset()


def register_adcopy():
    plugin = load_plugin_module(ROOT / "plugins" / "aigc-adcopy", "aigc_adcopy")
    plugins.reset()
    plugins.get_plugin_manager().register(plugin, name="adcopy")
    return plugin


def test_adcopy_plugin_register_generators_template_dirs_and_commands():
    import shlex

    import typer
    import typer.main
    from typer.testing import CliRunner

    from aigc.generators.base import registered_generators

    register_adcopy()
    try:
        assert registered_generators()["adcopy"][0] == "adcopy"
        assert templates.get_template("adcopy-headline").source == "adcopy"
        app = typer.Typer()
        app.callback()(lambda: None)
        assert plugins.register_commands(app)["adcopy"] == "adcopy"
        result = CliRunner().invoke(app, ["adcopy", "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0 and all(flag in result.stdout for flag in ("--audience", "--temperature", "--output", "--lines"))
        command = typer.main.get_command(app).get_command(None, "adcopy")
        examples = [line.strip() for line in command.epilog.splitlines()[2:]]
        assert len(examples) == 3 and "Examples:" in result.stdout and all(line in result.stdout for line in examples)
        for line in examples:  # each parses as the command takes its options
            command.make_context("adcopy", shlex.split(line)[2:])
    finally:
        plugins.reset()


def test_adcopy_generator_keeps_distinct_clean_variants():
    from aigc.testing import FakeEngine

    from aigc.generators.base import get_generator

    register_adcopy()
    try:
        engine = FakeEngine()
        # round 1: 4 headline samples (two usable and new), then 3 body samples for each of them
        engine.enqueue('"Hike Light, Drink Green"', "Hike Light, Drink Green", "Headline: Best Ad Ever", "Trail Water Made Simple")
        engine.enqueue("Hike Light, Drink Green", "Body: Bamboo keeps your water cool on every trail, all day long.", "x")
        engine.enqueue("Made from bamboo, it weighs almost nothing in your pack", "", "Refill it at any stream and carry less plastic up the mountain.")
        result = get_generator("adcopy", engine=engine)({"product": "a bamboo bottle", "audience": "hikers"}, n=2, sampling={"seed": 1})
        assert result == {
            "variants": [
                {"headline": "Hike Light, Drink Green", "body": "Bamboo keeps your water cool on every trail, all day long."},
                {"headline": "Trail Water Made Simple", "body": "Refill it at any stream and carry less plastic up the mountain."},
            ],
            "missing": 0,
            "cut_off": False,
        }
        assert len(engine.calls) == 2 and len(engine.calls[1][0]) == 2  # bodies batched, one prompt per headline
        assert engine.calls[1][1].max_tokens >= 50  # a body gets room for a sentence by default...
        engine.enqueue("Hike Light", "Hike Light", "Hike Light", "Hike Light")
        engine.enqueue("Carry less plastic up the trail.", "Carry less plastic up the trail.", "Carry less plastic up the trail.")
        get_generator("adcopy", engine=engine)({"product": "a bamboo bottle", "audience": "hikers"}, n=1, sampling={"max_tokens": 20})
        assert engine.calls[-1][1].max_tokens == 20  # ...and what --max-tokens asks for when it is given
    finally:
        plugins.reset()


def test_adcopy_body_drops_a_list_marker_but_keeps_a_leading_number():
    from aigc.testing import FakeEngine

    from aigc.generators.base import get_generator

    register_adcopy()
    try:
        engine = FakeEngine()
        engine.enqueue("Trail Water Made Simple", "Trail Water Made Simple", "Trail Water Made Simple", "Trail Water Made Simple")
        engine.enqueue("1. Biodegradable and eco-friendly bamboo for every trail.\n2. Light in your pack.", "x", "x")
        result = get_generator("adcopy", engine=engine)({"product": "a bamboo bottle", "audience": "hikers"}, n=1, sampling={"seed": 1})
        assert result["variants"] == [{"headline": "Trail Water Made Simple", "body": "Biodegradable and eco-friendly bamboo for every trail."}]
        clean_body = sys.modules["aigc_adcopy.generator"].clean_body  # the plugin loaded from this checkout
        for item in ("2) Light in your pack, tough on every trail.", "- Light in your pack, tough on every trail.", "* Light in your pack, tough on every trail.", "• Light in your pack, tough on every trail."):
            assert clean_body(item, "Trail Water") == "Light in your pack, tough on every trail."
        assert clean_body("1.5 million hikers carry less plastic now.", "Trail Water") == "1.5 million hikers carry less plastic now."
    finally:
        plugins.reset()


def test_adcopy_returns_the_variants_found_and_how_many_are_missing():
    import pytest
    import typer
    from typer.testing import CliRunner

    from aigc.errors import BadInputError
    from aigc.generators.base import get_generator
    from aigc.testing import FakeEngine

    register_adcopy()
    try:
        engine = FakeEngine()
        # round 1: 6 headline samples, one usable, then 3 body samples for it; later rounds write nothing
        engine.enqueue("Hike Light, Drink Green", *[""] * 5, "Bamboo keeps your water cool on every trail, all day long.")
        with pytest.warns(AigcWarning, match=r"^only 1 of the 3 variants asked for came out distinct; raise temperature or max_words, or ask for fewer \(n\)$"):
            result = get_generator("adcopy", engine=engine)({"product": "a bamboo bottle", "audience": "hikers"}, n=3, sampling={"seed": 1})
        assert [v["headline"] for v in result["variants"]] == ["Hike Light, Drink Green"] and result["missing"] == 2
        with pytest.raises(BadInputError, match="no ad-copy variant came out"):  # nothing at all: nothing to return
            get_generator("adcopy", engine=FakeEngine())({"product": "a bamboo bottle", "audience": "hikers"}, n=2, sampling={"seed": 1})

        app = typer.Typer(cls=AigcGroup)  # as `aigc` runs it: warnings shown on stderr
        app.callback()(lambda: None)
        plugins.register_commands(app)
        engine.enqueue("Hike Light, Drink Green", *[""] * 5, "Bamboo keeps your water cool on every trail, all day long.")
        generator = get_generator("adcopy", engine=engine)
        from unittest import mock

        with mock.patch("aigc.cli.options.RunOptions.generator", return_value=generator):
            done = CliRunner().invoke(app, ["adcopy", "--product", "x", "--audience", "y", "-n", "3", "--seed", "1", "--no-log"])
        assert done.exit_code == 0, done.output
        assert done.stdout.startswith("Hike Light, Drink Green") and "only 1 of the 3 variants asked for came out distinct" in done.stderr
    finally:
        plugins.reset()


def test_adcopy_with_nothing_whole_under_max_tokens_says_to_raise_it():
    import pytest

    from aigc.errors import BadInputError
    from aigc.generators.base import get_generator
    from aigc.testing import FakeEngine

    class CutEngine(FakeEngine):  # every answer ends at max_tokens, as a too-low --max-tokens makes it
        def generate(self, prompts, params):
            return [[c.__class__(c.text, c.prompt_tokens, c.completion_tokens, "length") for c in group] for group in super().generate(prompts, params)]

    register_adcopy()
    try:
        with pytest.raises(BadInputError) as error:
            get_generator("adcopy", engine=CutEngine())({"product": "a bamboo bottle", "audience": "hikers"}, n=1, sampling={"seed": 1, "max_tokens": 3})
        assert "cut off at max_tokens=3" in str(error.value) and str(error.value).endswith("raise max_tokens")
    finally:
        plugins.reset()


def test_adcopy_leaves_out_a_body_cut_off_by_max_tokens_and_says_so():
    import json
    from unittest import mock

    import typer
    from typer.testing import CliRunner

    from aigc.generators.base import get_generator
    from aigc.testing import FakeEngine

    class LimitEngine(FakeEngine):  # an answer longer than max_tokens (in words here) stops there, as a model's does
        def generate(self, prompts, params):
            return [
                [c.__class__(" ".join(c.text.split()[: params.max_tokens]), c.prompt_tokens, min(c.completion_tokens, params.max_tokens), "length" if c.completion_tokens >= params.max_tokens else c.finish_reason) for c in group]
                for group in super().generate(prompts, params)
            ]

    def queued(engine):
        # round 1: 4 headline samples, two usable; then 3 body samples each: the second headline's are all cut off at 8 words
        engine.enqueue("Hike Light, Drink Green", "Trail Water Made Simple", "", "")
        engine.enqueue("Bamboo keeps water cool all day.", "", "")
        engine.enqueue(*["Refill it at any stream and carry less plastic up the mountain."] * 3)
        return engine

    register_adcopy()
    try:
        inputs = {"product": "a bamboo bottle", "audience": "hikers"}
        with pytest.warns(AigcWarning, match=r"^only 1 of the 2 variants asked for came out distinct; some bodies were cut off at the token limit; raise max_tokens$"):
            result = get_generator("adcopy", engine=queued(LimitEngine()))(inputs, n=2, sampling={"seed": 1, "max_tokens": 8})
        assert result == {"variants": [{"headline": "Hike Light, Drink Green", "body": "Bamboo keeps water cool all day."}], "missing": 1, "cut_off": True}
        app = typer.Typer(cls=AigcGroup)  # as `aigc` runs it: warnings name its flags
        app.callback()(lambda: None)
        plugins.register_commands(app)
        with mock.patch("aigc.cli.options.RunOptions.generator", return_value=get_generator("adcopy", engine=queued(LimitEngine()))):
            done = CliRunner().invoke(app, ["adcopy", "--product", "x", "--audience", "y", "-n", "2", "--seed", "1", "--max-tokens", "8", "--json", "--no-log"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["cut_off"] is True and "some bodies were cut off at the token limit; raise --max-tokens" in done.stderr
    finally:
        plugins.reset()


def test_adcopy_rejects_bad_input_before_any_model_loads():
    import pytest

    from aigc.errors import BadInputError
    from aigc.generators.base import get_generator

    register_adcopy()
    try:
        generator = get_generator("adcopy")
        with pytest.raises(BadInputError, match="^audience is required"):  # the library's name; the CLI says --audience
            generator({"product": "x", "audience": " "})
        with pytest.raises(BadInputError, match='adcopy takes {"product": TEXT, "audience": TEXT}, got str'):
            generator("honey")
        with pytest.raises(BadInputError, match="^n must be"):
            generator({"product": "x", "audience": "y"}, n=0)
        assert generator._engine is None
    finally:
        plugins.reset()


def test_adcopy_batch_reads_the_product_from_field_and_the_audience_column(tmp_path):
    import json

    import pytest

    from aigc.batch import run_batch
    from aigc.batch_inputs import check_inputs, read_rows
    from aigc.errors import BadInputError
    from aigc.generators.base import get_generator
    from aigc.testing import FakeEngine

    register_adcopy()
    try:
        rows = tmp_path / "ads.csv"
        rows.write_text("id,product,audience\nb,a bamboo bottle,hikers\nc,a tent,\n")
        engine = FakeEngine()
        engine.enqueue("Hike Light, Drink Green", "", "", "", "Bamboo keeps your water cool on every trail, all day long.")  # 4 headline samples, then its bodies
        generator = get_generator("adcopy", engine=engine)
        run_batch(generator, read_rows(str(rows), field="product"), str(tmp_path / "out.jsonl"), {"n": 1}, {"seed": 1}, field_name="product")
        done, empty = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert done["result"]["variants"] == [{"headline": "Hike Light, Drink Green", "body": "Bamboo keeps your water cool on every trail, all day long."}]
        assert "a bamboo bottle" in str(engine.calls[0][0]) and "hikers" in str(engine.calls[0][0])
        assert empty["error"] == "audience is required and must be text that is not empty"
        (tmp_path / "products.txt").write_text("a tent\n")
        with pytest.raises(BadInputError, match="no row can run: the row has no 'audience' column"):  # before any model loads
            check_inputs(generator, read_rows(str(tmp_path / "products.txt")), "text", "products.txt", {})
    finally:
        plugins.reset()


def test_adcopy_command_runs_on_echo_with_a_body_that_is_not_the_headline_again():
    import json

    import pytest
    import typer
    from typer.testing import CliRunner

    import aigc
    from aigc.errors import BadInputError

    register_adcopy()
    try:
        app = typer.Typer(cls=AigcGroup)  # as `aigc` runs it: warnings name its flags
        app.callback()(lambda: None)
        plugins.register_commands(app)
        done = CliRunner().invoke(app, ["adcopy", "--product", "a standing desk", "--audience", "remote workers", "--json", "-m", "echo", "--no-log"])
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)  # the headline prompt is about the product, the body's about why the audience will love it
        assert result["variants"] == [{"headline": "a standing desk", "body": "remote workers will love a standing desk"}] and result["missing"] == 2
        assert "the model echo gives the same answer to every sample; ask for fewer (-n)" in done.stderr and "--temperature" not in done.stderr
        with pytest.raises(BadInputError) as long:  # a product longer than --max-words: no headline, whatever the temperature
            aigc.generate("adcopy", {"product": "a standing desk with two drawers and one small hook and a bright light", "audience": "x"}, model="echo")
        assert str(long.value) == "no ad-copy variant came out of 5 tries; raise max_words"
        with pytest.raises(BadInputError) as short:  # echo's body, "runners will love Shoes", is too short: --max-words cannot help
            aigc.generate("adcopy", {"product": "Shoes", "audience": "runners"}, model="echo", max_words=20)
        assert str(short.value) == "no ad-copy variant came out of 5 tries: no body the model wrote was usable (5 to 35 words, not the headline again), and the model echo gives the same answer to every sample"
    finally:
        plugins.reset()


def test_adcopy_writes_to_an_output_file_and_runs_each_line_as_a_product_as_the_built_in_commands_do(tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from aigc.errors import BadInputError

    register_adcopy()
    try:
        app = typer.Typer()
        app.callback()(lambda: None)
        plugins.register_commands(app)
        run = lambda *args, **kw: CliRunner().invoke(app, ["adcopy", *args, "-n", "1", "-m", "echo", "--no-log"], **kw)
        one = run("--product", "a standing desk", "--audience", "remote workers", "-o", str(tmp_path / "ad.txt"))
        assert one.exit_code == 0 and one.stdout == "", one.output
        assert (tmp_path / "ad.txt").read_text() == "a standing desk\nremote workers will love a standing desk\n" and "wrote " in one.stderr
        products = tmp_path / "products.txt"
        products.write_text("a standing desk\n\na bamboo water bottle\n")
        lines = run(str(products), "--lines", "--audience", "hikers")
        assert lines.exit_code == 0, lines.output
        assert lines.stdout == "a standing desk — hikers will love a standing desk\n\na bamboo water bottle — hikers will love a bamboo water bottle\n"
        piped = run("--lines", "--audience", "hikers", "--json", "-o", str(tmp_path / "ads.jsonl"), input=products.read_text())
        assert piped.exit_code == 0 and piped.stdout == "", piped.output
        rows = [json.loads(line) for line in (tmp_path / "ads.jsonl").read_text().splitlines()]
        assert [(row["line"], row["variants"][0]["headline"]) for row in rows] == [(1, "a standing desk"), (3, "a bamboo water bottle")]
        given = run("--product", "a standing desk\na tent", "--lines", "--audience", "campers")  # as headline's --topic with --lines
        assert given.exit_code == 0 and given.stdout.splitlines() == ["a standing desk — campers will love a standing desk", "a tent — campers will love a tent"], given.output
        both = run(str(products), "--product", "a tent", "--audience", "hikers")
        assert isinstance(both.exception, BadInputError) and "not both" in str(both.exception)  # exit 2 under aigc's app
        (tmp_path / "ads.csv").write_text("product,audience\na tent,hikers\n")
        rows_file = run(str(tmp_path / "ads.csv"), "--lines", "--audience", "hikers")
        assert isinstance(rows_file.exception, BadInputError) and "aigc batch adcopy -i" in str(rows_file.exception)
        for more in ((), ("--lines",)):  # stdin empty (cron, < /dev/null): what to give names --product
            empty = run(*more, "--audience", "hikers", input="")
            assert isinstance(empty.exception, BadInputError) and str(empty.exception) == "standard input is empty; give --product TEXT, or a document describing the product"
    finally:
        plugins.reset()


def test_social_templates_work_with_the_template_generator():
    from aigc.testing import FakeEngine

    from aigc.generators.template import TemplateGenerator

    plugin = load_plugin_module(ROOT / "plugins" / "aigc-social-templates", "aigc_social_templates")
    plugins.reset()
    plugins.get_plugin_manager().register(plugin, name="social-templates")
    try:
        engine = FakeEngine()
        engine.enqueue("1/4 ...")
        result = TemplateGenerator(engine=engine)({"input": "four-day weeks", "tweets": "4"}, template="tweet-thread")
        assert "1/4, 2/4" in result["messages"][-1]["content"] and engine.calls[0][1].max_tokens == 300
    finally:
        plugins.reset()


def test_the_plugin_tutorial_in_docs_builds_a_package_whose_tests_pass(tmp_path):
    """docs/plugins.md's aigc-shout, file by file from its code blocks, with the tests it shows."""
    import re
    import subprocess

    tutorial = (ROOT / "docs" / "plugins.md").read_text().split("## Tutorial", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", tutorial, re.S)
    python = [code for lang, code in blocks if lang == "python"]
    package = tmp_path / "aigc-shout" / "aigc_shout"
    (package / "templates").mkdir(parents=True)
    (package / "templates" / "shout.j2").write_text(next(code for lang, code in blocks if code.startswith("---\n")))
    files = {"generator.py": "# aigc_shout/generator.py", "cli.py": "# aigc_shout/cli.py"}
    for name, marker in files.items():
        (package / name).write_text(next(code for code in python if code.startswith(marker)))
    hooks = [code for code in python if "@hookimpl" in code and not code.startswith(tuple(files.values()))]
    assert len(hooks) == 3  # the filter and template directory, the generator, the command
    (package / "__init__.py").write_text("\n\n".join(hooks))
    tests = [code for code in python if code.startswith("import pytest") or code.startswith("def test_")]
    assert len(tests) == 2
    (tmp_path / "test_shout.py").write_text("\n\n".join(tests))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package.parent), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_shout.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr


def test_the_plugin_tutorials_command_names_its_argument_in_its_usage_as_aigcs_own_commands_do():
    import re
    import types

    import typer
    from typer.testing import CliRunner

    tutorial = (ROOT / "docs" / "plugins.md").read_text().split("## Tutorial", 1)[1].split("\n## ", 1)[0]
    cli = next(code for code in re.findall(r"```python\n(.*?)```", tutorial, re.S) if code.startswith("# aigc_shout/cli.py"))
    module = types.ModuleType("aigc_shout_cli")
    exec(compile(cli, "docs/plugins.md (aigc_shout/cli.py)", "exec"), module.__dict__)
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command()(module.shout)
    usage = CliRunner().invoke(app, ["shout", "--help"]).stdout
    assert "[OPTIONS] {TEXT}" in usage, usage
