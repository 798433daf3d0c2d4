import importlib.metadata
import inspect
import re
import sys

import pytest

from aigc import hookimpl, hookspecs, plugins, template_edits, template_environment, templates
from aigc.errors import BadInputError, PluginError
from aigc.engine.models import ModelSpec, registered_models
from aigc.generators.base import Generator, get_generator, registered_generators


@pytest.fixture
def pm():
    reporter = plugins._reporter
    plugins.set_reporter(lambda failure: None)  # the tests read plugins.failures()
    plugins.reset()
    yield plugins.get_plugin_manager()
    plugins.reset()
    plugins._reporter = reporter


class Echo(Generator):
    name = "echo"


class GoodPlugin:
    @hookimpl
    def register_generators(self, register):
        register("echo", Echo)

    @hookimpl
    def register_models(self, register):
        register(ModelSpec(alias="tiny", source="/nowhere", description="test"))


class ClashingPlugin:
    @hookimpl
    def register_generators(self, register):
        register("chat", Echo)


class RaisingPlugin:
    @hookimpl
    def register_models(self, register):
        raise RuntimeError("boom")


def test_builtins_register_through_the_public_hooks(pm):
    assert {"chat", "summarize", "headline"} <= set(registered_generators())
    assert registered_generators()["chat"][0] == "aigc.default_plugins.generators"
    assert registered_models()["smollm2"][0] == "aigc.default_plugins.models"


def test_register_generators_and_register_models_add_a_generator_and_a_model(pm):
    pm.register(GoodPlugin(), name="good")
    assert isinstance(get_generator("echo"), Echo)
    assert registered_models()["tiny"] == ("good", ModelSpec(alias="tiny", source="/nowhere", description="test"))


def test_a_clash_keeps_the_first_and_records_the_later_plugin(pm):
    pm.register(ClashingPlugin(), name="clasher")
    assert registered_generators()["chat"][0] == "aigc.default_plugins.generators"
    assert "summarize" in registered_generators()
    (failure,) = [f for f in plugins.failures() if f.plugin == "clasher"]
    assert failure.error == "PluginClashError: generator 'chat' is already registered by plugin 'aigc.default_plugins.generators'; the one from 'clasher' is ignored"
    assert failure.message() == (
        "plugin 'clasher' clashes in register_generators: generator 'chat' is already registered by plugin "
        "'aigc.default_plugins.generators'; the one from 'clasher' is ignored (a built-in name: rename it in 'clasher')"  # registered in-process: nothing to uninstall
    )


def test_a_hook_that_raises_is_recorded_and_the_rest_still_work(pm):
    pm.register(RaisingPlugin(), name="raiser")
    assert "smollm2" in registered_models()
    (failure,) = [f for f in plugins.failures() if f.plugin == "raiser"]
    assert failure.stage == "register_models" and "boom" in failure.error
    assert "AIGC_TRACE_PLUGINS=1 shows where" in failure.message() and "uninstall" not in failure.message()  # registered in-process


class PlainOptions(Generator):
    class Options:  # no @dataclass
        words: int = 3


class MisspeltDefaults(Generator):
    sampling_defaults = {"max_new_tokens": 50}


class MisspeltLineOptions(Generator):
    line_options = {"plane": True}


class MalformedPlugin:
    @hookimpl
    def register_generators(self, register):
        register("notgen", object)
        register("number", 42)
        register(Echo)
        register("instance", Echo())
        register("plain", PlainOptions)
        register("misspelt", MisspeltDefaults)
        register("lines", MisspeltLineOptions)
        register("echo", Echo)

    @hookimpl
    def register_models(self, register):
        register({"alias": "tiny"})
        register(ModelSpec(alias="tiny", source="/nowhere"))

    @hookimpl
    def register_template_dirs(self, register):
        register(12345)
        register("/no/such/dir")  # skipped: an optional directory may not exist
        register(__file__)


def test_malformed_registrations_are_recorded_one_by_one_and_the_good_ones_count(pm):
    pm.register(MalformedPlugin(), name="malformed")
    generators, models = registered_generators(), registered_models()
    assert "echo" in generators and "notgen" not in generators and "number" not in generators and "tiny" in models
    assert [(source, str(path)) for source, path in templates.template_dirs() if source == "malformed"] == [("malformed", "/no/such/dir")]
    errors = [f.error for f in plugins.failures() if f.plugin == "malformed"]
    assert any("'notgen' must be a subclass of aigc.Generator" in e for e in errors)
    assert any("'number' must be a subclass" in e for e in errors)
    assert any("takes a name and a class, got <class" in e for e in errors)
    assert any("'instance' must be a subclass of aigc.Generator, got an instance of Echo; register the class, not an instance" in e for e in errors)
    assert any("'plain': Options must be a dataclass" in e for e in errors)
    assert any("'misspelt': its sampling_defaults: unknown sampling setting max_new_tokens" in e for e in errors)
    assert any("'lines': its line_options name no option of its Options: plane" in e for e in errors)
    assert any(f"{__file__} is a file" in e for e in errors)
    registered_generators()
    assert [f.error for f in plugins.failures() if f.plugin == "malformed"] == errors  # a second lookup adds none
    assert any("takes an aigc.ModelSpec" in e for e in errors)
    assert any("takes a directory of templates, got int 12345" in e for e in errors)
    assert not any("/no/such/dir" in e for e in errors)


def test_a_failure_is_one_line_of_bounded_length(pm):
    class Chatty:
        @hookimpl
        def register_models(self, register):
            raise RuntimeError("first line\n  second line " + "x" * 2000)

    pm.register(Chatty(), name="chatty")
    registered_models()
    (failure,) = [f for f in plugins.failures() if f.plugin == "chatty"]
    assert "\n" not in failure.error and failure.error.startswith("RuntimeError: first line second line x")
    assert len(failure.error) == plugins.MAX_ERROR and failure.error.endswith("...")


def test_describe_shows_a_prepare_jinja_env_failure_before_any_render(pm):
    class BadFilters:
        @hookimpl
        def prepare_jinja_env(self, env):
            raise RuntimeError("no filters today")

    bad = BadFilters()
    pm.register(bad, name="badfilters")
    (row,) = [r for r in plugins.describe()["plugins"] if r["name"] == "badfilters"]
    assert row["failures"] == [{"stage": "prepare_jinja_env", "error": "RuntimeError: no filters today"}]
    plugins.reset()  # the same plugin again: its failure is found again, not lost with the old records
    plugins.get_plugin_manager().register(bad, name="badfilters")
    (row,) = [r for r in plugins.describe()["plugins"] if r["name"] == "badfilters"]
    assert row["failures"] == [{"stage": "prepare_jinja_env", "error": "RuntimeError: no filters today"}]


class FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.target = name, target

    def load(self):
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


class MisspelledPlugin:
    @hookimpl
    def register_generator(self, register):
        register("never", Echo)


class UnmarkedPlugin:
    def register_generators(self, register):  # no @hookimpl
        register("never", Echo)


class MisspelledUnmarkedPlugin:
    def register_generator(self, register):  # neither a hook's name nor @hookimpl
        register("never", Echo)


class EmptyPlugin:  # an entry point naming the wrong module or object: no hook at all
    def helper(self):
        return "never"


class FarOffPlugin:
    @hookimpl
    def add_things(self, register):
        register("never", Echo)


def test_a_helper_named_like_a_hook_it_implements_is_no_failure(monkeypatch):
    class Helped:
        def register_generator(self, register):  # a helper the real hook calls
            register("helped", Echo)

        @hookimpl
        def register_generators(self, register):
            self.register_generator(register)

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("helped", Helped())] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        assert plugins.failures() == [] and "helped" in registered_generators()
    finally:
        plugins.reset()


@pytest.mark.parametrize("plugin, words", [
    (MisspelledPlugin(), "'register_generator' is not an aigc hook, so it is never called; did you mean register_generators?"),
    (FarOffPlugin(), "'add_things' is not an aigc hook, so it is never called; the hooks: "),  # names the real hooks
    (UnmarkedPlugin(), "register_generators is not marked @aigc.hookimpl, so it is never called"),
    (MisspelledUnmarkedPlugin(), "register_generator is not an aigc hook, so it is never called; did you mean register_generators (with @aigc.hookimpl"),
    (EmptyPlugin(), "EmptyPlugin implements no aigc hook, so the plugin adds nothing; its entry point should name the module (or object) with the @aigc.hookimpl functions, named as the hooks: prepare_jinja_env, register_commands"),
])
def test_a_hook_that_would_never_be_called_is_recorded(monkeypatch, plugin, words):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("odd", plugin)] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert failure.plugin == "odd" and words in failure.error
        assert "never" not in registered_generators() and "chat" in registered_generators()
        assert plugins.hooks_of("odd") == []  # a misspelt hook is a failure, not one of its hooks
    finally:
        plugins.reset()


class BadModelsPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(alias="no-org", source="hf:"))
        register(ModelSpec(alias="deep", source="hf:Org/Name/extra"))
        register(ModelSpec(alias="wheel", source="pypi:pkg/file.gguf"))
        register(ModelSpec(alias="", source="/abs"))
        register(ModelSpec(alias="video", source="/abs", kind="video"))
        register(ModelSpec(alias="relative", source="models/mine"))
        register(ModelSpec(alias="fine", source="hf:Org/Name"))


def test_malformed_model_specs_are_dropped_and_the_list_still_works(pm):
    pm.register(BadModelsPlugin(), name="badmodels")
    models = registered_models()
    assert "fine" in models and "smollm2" in models
    assert not {"no-org", "deep", "wheel", "", "video", "relative"} & set(models)
    errors = " | ".join(f.error for f in plugins.failures() if f.plugin == "badmodels")
    for expected in ("'hf:' must be hf:ORG/NAME", "'hf:Org/Name/extra' must be hf:ORG/NAME", "must be pypi:PACKAGE==VERSION/FILE.gguf",
                     "alias '': it must be letters, digits", "kind 'video'; it must be text or image", "'models/mine' must be hf:ORG/NAME, pypi:PACKAGE==VERSION/FILE.gguf, an absolute path or an engine's SCHEME:LOCATION (openai:URL#MODEL), as a str"):
        assert expected in errors


def test_a_model_alias_or_generator_name_that_reads_as_a_path_or_a_hub_id_is_refused(pm):
    names = ("hf:x/y", "/abs/alias", "org/name", "~home", "openai:gpt", "two words", "x.gguf")

    class Lookalike:
        @hookimpl
        def register_models(self, register):
            for alias in names:
                register(ModelSpec(alias=alias, source="/abs"))

        @hookimpl
        def register_generators(self, register):
            for name in names:
                register(name, Echo)
            register("echo-too", Echo)

    pm.register(Lookalike(), name="lookalike")
    assert not set(names) & (set(registered_models()) | set(registered_generators()))
    errors = [f.error for f in plugins.failures() if f.plugin == "lookalike"]
    assert sum("model alias" in e and "it must be letters, digits (of any script)" in e for e in errors) == len(names) - 1
    assert sum("generator name" in e and "it must be ASCII letters, digits" in e for e in errors) == len(names) - 1
    assert "model alias 'x.gguf': it ends in .gguf, so `-m x.gguf` is read as the path of a weights file, never as an alias; drop .gguf" in " | ".join(errors)
    assert "generator name 'x.gguf': it ends in .gguf, as a weights file's name does; drop .gguf" in " | ".join(errors)
    assert get_generator("echo-too").name == "echo-too"  # as registered, whatever the class calls itself


def test_trylast_or_tryfirst_never_lets_a_plugin_take_a_built_in_name(pm, capsys):
    class Hijack:
        @hookimpl(trylast=True)
        def register_generators(self, register):
            print("registering")  # stdout is for results: a hook's print goes to stderr
            register("summarize", Echo)

        @hookimpl(tryfirst=True)
        def register_models(self, register):
            register(ModelSpec(alias="smollm2", source="/nowhere"))

    pm.register(Hijack(), name="hijack")
    assert registered_generators()["summarize"][0] == "aigc.default_plugins.generators"
    assert registered_models()["smollm2"][0] == "aigc.default_plugins.models"
    assert {f.stage for f in plugins.failures() if f.plugin == "hijack" and f.clash} == {"register_generators", "register_models"}
    captured = capsys.readouterr()
    assert "registering" in captured.err and "registering" not in captured.out


@pytest.mark.parametrize("where", ["import", "hook"])
def test_a_plugin_that_calls_sys_exit_is_recorded_and_aigc_goes_on(monkeypatch, where):
    class Exits:
        @hookimpl
        def register_generators(self, register):
            raise SystemExit(3)

    target = SystemExit("missing dependency foo; install it") if where == "import" else Exits()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("quits", target)] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        assert "chat" in registered_generators()
        (failure,) = plugins.failures()
        assert failure.plugin == "quits" and failure.error.startswith("SystemExit: ")
    finally:
        plugins.reset()


class AskingBack:
    """Hooks that ask aigc, while they run, for what their own hook registers."""

    @hookimpl
    def register_models(self, register):
        if "mine" not in registered_models():
            register(ModelSpec(alias="mine", source="hf:org/mine"))

    @hookimpl
    def prepare_jinja_env(self, env):
        env.globals["greeting"] = templates.render("summarize", {"text": "x"}).messages[-1]["content"]


def test_a_hook_that_asks_for_what_its_own_hook_registers_fails_once_instead_of_recurring(pm):
    pm.register(AskingBack(), name="asking")
    assert "smollm2" in registered_models() and "mine" not in registered_models()
    templates.render("summarize", {"text": "x"})
    failures = plugins.failures()
    assert [(f.plugin, f.stage) for f in failures] == [("asking", "register_models"), ("asking", "prepare_jinja_env")]
    assert all("which would run them again without end" in f.error and "RecursionError" not in f.error for f in failures)


def test_a_hook_that_returns_what_it_adds_is_told_to_call_register(pm):
    class LlmStyle:
        @hookimpl
        def register_generators(self, register):
            return [("echo", Echo)]

    pm.register(LlmStyle(), name="llmstyle")
    assert "echo" not in registered_generators()
    (failure,) = [f for f in plugins.failures() if f.plugin == "llmstyle"]
    assert failure.error == "PluginError: it returned list, which is ignored: aigc hooks return nothing (call register(...) for each item)"
    assert failure.message().endswith("(AIGC_TRACE_PLUGINS=1 shows where)")  # registered in-process: nothing to uninstall


def test_a_hook_that_yields_what_it_adds_is_told_its_body_never_ran(pm):
    ran = []

    class Yielding:
        @hookimpl
        def register_generators(self, register):
            ran.append(True)
            yield ("echo", Echo)

    pm.register(Yielding(), name="yielding")
    assert "echo" not in registered_generators() and ran == []
    (failure,) = [f for f in plugins.failures() if f.plugin == "yielding"]
    assert failure.error.startswith("PluginError: it is a generator function (it uses yield), so its body never ran")


def test_reset_forgets_the_jinja_filters_of_earlier_plugins(pm):
    class Shout:
        @hookimpl
        def prepare_jinja_env(self, env):
            env.filters["shout"] = str.upper

    assert "shout" not in template_environment.environment().filters  # built before the plugin came
    plugins.reset()
    plugins.get_plugin_manager().register(Shout(), name="shout")
    assert template_environment.environment().filters["shout"]("hi") == "HI"


def test_a_global_of_prepare_jinja_env_needs_no_declaring_in_a_templates_variables(pm):
    class Today:
        @hookimpl
        def prepare_jinja_env(self, env):
            env.globals["today"] = lambda: "Monday"

    pm.register(Today(), name="today")
    path = templates.user_dir() / "dated.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\nvariables: [{name: input, required: true}]\n---\n{{ today() }}: {{ input }}")
    assert templates.render("dated", {"input": "x"}).messages[-1]["content"] == "Monday: x"


def test_broken_entry_point_is_recorded_and_allowlist_is_honoured(monkeypatch):
    points = [FakeEntryPoint("broken", ImportError("no module named zzz")), FakeEntryPoint("good", GoodPlugin())]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        assert plugins.get_plugin_manager().has_plugin("good")
        assert [f.plugin for f in plugins.failures()] == ["broken"]
        monkeypatch.setenv("AIGC_LOAD_PLUGINS", "good")
        plugins.reset()
        assert plugins.get_plugin_manager().has_plugin("good") and plugins.failures() == []
        monkeypatch.setenv("AIGC_LOAD_PLUGINS", "")
        plugins.reset()
        assert not plugins.get_plugin_manager().has_plugin("good")
    finally:
        plugins.reset()


def test_two_distributions_with_one_plugin_name_load_the_first_and_name_both(monkeypatch):
    points = [FakeEntryPoint("twin", MisspelledPlugin()), FakeEntryPoint("twin", GoodPlugin())]  # loaded in name order, whatever the listing order
    points[1].dist = type("Dist", (), {"name": "dist-twin", "version": "1.0"})()
    points[0].dist = type("Dist", (), {"name": "other-twin", "version": "2.0"})()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert failure.plugin == "other-twin" and failure.error == (
            "PluginClashError: its entry point is called 'twin', like the plugin of dist-twin 1.0, which is loaded; so it is not"
        )
        assert [(row["name"], row["loaded"], row["version"]) for row in plugins.describe()["plugins"]] == [("twin", True, "1.0"), ("other-twin", False, "2.0")]
        assert plugins.sources()["twin"].distribution == "dist-twin" and "echo" in registered_generators()
        assert plugins.distribution_of("twin") == "dist-twin"  # what `aigc plugins uninstall twin` removes: the one loaded
    finally:
        plugins.reset()


def test_an_entry_point_named_like_a_built_in_plugin_is_not_loaded_and_is_reported(monkeypatch):
    points = [FakeEntryPoint("aigc.default_plugins.models", GoodPlugin())]
    points[0].dist = type("Dist", (), {"name": "impostor", "version": "1.0"})()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert failure.plugin == "impostor" and not failure.clash
        assert "the name of one of aigc's built-in plugins, so it is not loaded; rename the entry point" in failure.error
        assert "smollm2" in registered_models() and "tiny" not in registered_models()
        assert [(row["name"], row["loaded"]) for row in plugins.describe()["plugins"]] == [("impostor", False)]
    finally:
        plugins.reset()


def test_an_entry_point_that_names_a_class_is_told_to_name_an_instance(monkeypatch):
    class Static:
        @hookimpl
        @staticmethod
        def register_generators(register):
            register("static-echo", Echo)

    points = [FakeEntryPoint("classy", GoodPlugin), FakeEntryPoint("static", Static)]  # GoodPlugin's hooks take self
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert (failure.plugin, failure.stage) == ("classy", "import") and "names the class GoodPlugin" in failure.error
        assert "tiny" not in registered_models() and "static-echo" in registered_generators() and plugins.failures() == [failure]
    finally:
        plugins.reset()


def test_a_broken_first_distribution_does_not_hide_a_working_one_of_the_same_name(monkeypatch):
    points = [FakeEntryPoint("twin", ImportError("stale copy")), FakeEntryPoint("twin", GoodPlugin())]
    points[1].dist = type("Dist", (), {"name": "good-twin", "version": "2.0"})()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        assert [(f.plugin, f.stage) for f in plugins.failures()] == [("twin", "import")]
        assert plugins.sources()["twin"].distribution == "good-twin" and "echo" in registered_generators()
    finally:
        plugins.reset()


def test_an_unknown_name_in_aigc_load_plugins_is_reported_and_distribution_of_ignores_the_allowlist(monkeypatch):
    points = [FakeEntryPoint("good", GoodPlugin())]
    points[0].dist = type("Dist", (), {"name": "dist-good", "version": "1.0"})()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.setenv("AIGC_LOAD_PLUGINS", "nosuch")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert failure.plugin == "nosuch" and failure.stage == "AIGC_LOAD_PLUGINS" and failure.error == "PluginError: no installed plugin is called that (installed: good)"
        assert failure.message() == "AIGC_LOAD_PLUGINS names 'nosuch': no installed plugin is called that (installed: good)"
        assert "good" not in plugins.sources() and plugins.distribution_of("good") == "dist-good"
        assert plugins.distribution_of("nosuch") is None
    finally:
        plugins.reset()


def test_trace_prints_each_hook_call(pm, monkeypatch, capsys):
    monkeypatch.setenv("AIGC_TRACE_PLUGINS", "1")
    registered_models()
    assert "register_models -> aigc.default_plugins.models" in capsys.readouterr().err


def test_trace_says_how_long_each_entry_point_took_to_import(monkeypatch, capsys):
    points = [FakeEntryPoint("good", GoodPlugin()), FakeEntryPoint("broken", ImportError("no module named zzz"))]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    monkeypatch.setenv("AIGC_TRACE_PLUGINS", "1")
    monkeypatch.setattr(plugins, "_reporter", lambda failure: None)  # the broken one is reported elsewhere
    plugins.reset()
    try:
        plugins.get_plugin_manager()
        err = capsys.readouterr().err
        assert re.search(r"\[aigc plugins\] import good: \d+\.\d\ds\n", err) and re.search(r"\[aigc plugins\] import broken: \d+\.\d\ds\n", err)
    finally:
        plugins.reset()


def test_every_hookspec_has_a_docstring_and_a_test():
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "aigc_spec")]
    assert set(specs) == {"register_generators", "register_models", "register_engines", "register_template_dirs", "register_commands", "prepare_jinja_env"}
    tested = "".join(
        open(__file__.replace("test_plugins", other)).read()
        for other in ("test_plugins", "test_templates", "test_cli", "test_example_plugins", "test_engine_plugins")
    )
    docs = open(__file__.replace("tests/unit/test_plugins.py", "docs/plugins.md")).read()
    for name in specs:
        assert getattr(hookspecs, name).__doc__
        assert re.search(rf"def test_\w*{name}", tested), f"hook {name} has no test (a test function named after it)"
        assert f"### `{name}(" in docs, f"hook {name} has no entry in docs/plugins.md"


def _hook_examples() -> dict[str, str]:
    """Each hook's python example in docs/plugins.md's hook reference, by hook name."""
    docs = open(__file__.replace("tests/unit/test_plugins.py", "docs/plugins.md")).read()
    reference = docs.split("## Hook reference", 1)[1]
    sections = re.findall(r"^### `(\w+)\(.*?`\n(.*?)(?=^##)", reference + "\n## end", re.M | re.S)
    return {name: "\n".join(re.findall(r"```python\n(.*?)```", body, re.S)) for name, body in sections}


def test_every_hook_reference_entry_has_an_example_that_registers_something(pm, tmp_path):
    import types

    import typer

    examples = _hook_examples()
    assert set(examples) == {"register_generators", "register_models", "register_engines", "register_template_dirs", "register_commands", "prepare_jinja_env"}
    for name, code in examples.items():
        assert "@hookimpl" in code and f"def {name}(" in code, f"the reference entry of {name} has no @hookimpl example"
        if "from ." in code:  # the tutorial's package: its generator is tested there
            continue
        module = types.ModuleType(f"docs_{name}")
        module.__file__ = str(tmp_path / name / "__init__.py")
        (tmp_path / name / "templates").mkdir(parents=True)
        exec(compile(code, f"docs/plugins.md ({name})", "exec"), module.__dict__)
        pm.register(module, name=f"docs-{name}")
    app = typer.Typer()
    app.callback()(lambda: None)
    plugins.register_commands(app)
    assert plugins.failures() == []
    rows = {row["name"]: row["registered"] for row in plugins.describe()["plugins"]}
    assert rows["docs-register_models"]["models"] and rows["docs-register_commands"]["commands"] and rows["docs-register_engines"]["engines"] == ["parrot:"]
    assert rows["docs-register_template_dirs"]["template_dirs"] and rows["docs-prepare_jinja_env"]["jinja_filters"]
    from typer.testing import CliRunner

    command = rows["docs-register_commands"]["commands"][0]
    done = CliRunner().invoke(app, [command, "hello", "bob"])
    assert done.exit_code == 0 and done.stdout == "HELLO, BOB!\n", done.output


class FilterPlugin:
    @hookimpl
    def prepare_jinja_env(self, env):
        env.filters["shout"] = lambda s: s.upper() + "!"

    @hookimpl
    def register_template_dirs(self, register):
        register(self.directory)


def test_prepare_jinja_env_and_register_template_dirs(pm, tmp_path):
    from aigc import templates

    plugin = FilterPlugin()
    plugin.directory = str(tmp_path)
    (tmp_path / "loud.j2").write_text("{{ word | shout }}")
    pm.register(plugin, name="filters")
    assert templates.get_template("loud").source == "filters"
    assert templates.render("loud", {"word": "hi"}).messages[-1]["content"] == "HI!"
    row = next(row for row in plugins.describe()["plugins"] if row["name"] == "filters")
    assert row["registered"]["jinja_filters"] == ["shout"] and row["registered"]["templates"] == ["loud"]


def test_a_jinja_filter_or_global_whose_name_is_no_text_is_dropped_and_aigc_plugins_still_lists(pm, tmp_path):
    class NumberNames:
        @hookimpl
        def prepare_jinja_env(self, env):
            env.filters[3] = str.upper
            env.globals[("a", "b")] = 1
            env.filters["shout"] = lambda text: text.upper()

    pm.register(NumberNames(), name="numbers")
    (row,) = [r for r in plugins.describe()["plugins"] if r["name"] == "numbers"]
    assert row["registered"] == {"jinja_filters": ["shout"]}
    assert [f["error"] for f in row["failures"]] == [
        "PluginError: jinja filter 3: a filter's name is text (a name templates can use); it is left out",
        "PluginError: jinja global ('a', 'b'): a global's name is text (a name templates can use); it is left out",
    ]
    env = template_environment.environment()
    assert 3 not in env.filters and ("a", "b") not in env.globals


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures"


class ImportingEntryPoint(FakeEntryPoint):
    """Imports a real module, like importlib.metadata.EntryPoint.load."""

    def __init__(self, name, module, version="9.9.9"):
        super().__init__(name, None)
        self.module, self.value = module, module
        self.dist = type("Dist", (), {"name": f"dist-{name}", "version": version})()

    def load(self):
        return importlib.import_module(self.module)


def test_a_plugin_that_raises_on_import_is_recorded_with_its_version(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "aigc-broken-plugin"))
    points = [ImportingEntryPoint("broken", "aigc_broken_plugin", "0.0.1")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    (failure,) = plugins.failures()
    assert failure.plugin == "broken" and failure.stage == "import" and "on purpose" in failure.error
    assert "`aigc plugins uninstall broken` removes it" in failure.message()  # an installed one
    (row,) = plugins.describe()["plugins"]
    assert row["name"] == "broken" and not row["loaded"] and row["version"] == "0.0.1"
    assert row["distribution"] == "dist-broken" and "on purpose" in row["failures"][0]["error"]
    assert "chat" in registered_generators()  # the rest still works


def test_each_failure_is_reported_once(pm, monkeypatch):
    seen = []
    pm.register(RaisingPlugin(), name="raiser")
    monkeypatch.setattr(plugins, "_reporter", None)  # the CLI's reporter comes back after the test
    plugins.set_reporter(seen.append)
    registered_models()
    registered_models()
    assert [f.plugin for f in seen] == ["raiser"]


def test_describe_lists_hooks_and_what_each_plugin_registered(pm):
    pm.register(GoodPlugin(), name="good")
    rows = {row["name"]: row for row in plugins.describe()["plugins"]}
    assert set(rows) == {"good"}  # built-ins only with include_builtins
    assert rows["good"]["hooks"] == ["register_generators", "register_models"]
    assert rows["good"]["registered"] == {"generators": ["echo"], "models": ["tiny"]}
    everything = {row["name"]: row for row in plugins.describe(include_builtins=True)["plugins"]}
    assert "headline" in everything["aigc.default_plugins.generators"]["registered"]["generators"]
    assert everything["aigc.default_plugins.templates"]["registered"]["templates"]


def test_describe_reports_a_clash_as_the_later_plugins_failure(pm):
    pm.register(ClashingPlugin(), name="clasher")
    rows = {row["name"]: row for row in plugins.describe()["plugins"]}
    assert [f["stage"] for f in rows["clasher"]["failures"]] == ["register_generators"]
    assert "chat" not in rows["clasher"]["registered"].get("generators", [])


def command_plugin(label):
    class CommandPlugin:
        @hookimpl
        def register_commands(self, app):
            @app.command("hello")
            def hello():
                print(f"hello from {label}")

    return CommandPlugin()


def test_register_commands_clash_names_both_plugins_and_keeps_the_first(pm):
    import typer
    from typer.testing import CliRunner

    pm.register(command_plugin("first"), name="first")
    pm.register(command_plugin("second"), name="second")
    app = typer.Typer()
    app.callback()(lambda: None)
    owners = plugins.register_commands(app)
    assert owners["hello"] == "first" and owners["chat"] == "aigc.default_plugins.commands"
    (failure,) = [f for f in plugins.failures() if f.stage == "register_commands"]
    assert failure.plugin == "second" and "already registered by plugin 'first'; the one from 'second' is ignored" in failure.error
    assert CliRunner().invoke(app, ["hello"]).stdout == "hello from first\n"


def test_a_plugin_cannot_replace_the_apps_own_callback(pm):
    import typer
    from typer.testing import CliRunner

    class Takeover:
        @hookimpl
        def register_commands(self, app):
            @app.callback()
            def mine():
                print("mine")

    pm.register(Takeover(), name="takeover")
    app = typer.Typer()

    @app.callback()
    def own(flag: bool = typer.Option(False, "--flag")):
        """aigc's own."""

    plugins.register_commands(app)
    assert app.registered_callback.callback is own
    (failure,) = [f for f in plugins.failures() if f.plugin == "takeover"]
    assert "set the app's own callback (app.callback()), which is aigc's; it is ignored" in failure.error
    assert CliRunner().invoke(app, ["--flag", "chat", "--help"]).exit_code == 0


def group_plugin(command, label):
    class GroupPlugin:
        @hookimpl
        def register_commands(self, app):
            import typer

            group = typer.Typer()

            @group.command(command)
            def run():
                print(f"{command} from {label}")

            app.add_typer(group)  # no name: Typer puts its commands at the top level

    return GroupPlugin()


def test_the_commands_of_a_group_added_without_a_name_are_checked_by_their_own_names(pm):
    import typer
    from typer.testing import CliRunner

    pm.register(group_plugin("chat", "hijacker"), name="hijacker")
    pm.register(group_plugin("quip", "wordsmith"), name="wordsmith")
    pm.register(group_plugin("pun", "punster"), name="punster")
    app = typer.Typer()
    app.callback()(lambda: None)
    owners = plugins.register_commands(app)
    assert owners["quip"] == "wordsmith" and owners["pun"] == "punster" and "" not in owners
    (failure,) = [f for f in plugins.failures() if f.stage == "register_commands"]
    assert failure.plugin == "hijacker" and "command 'chat' is already registered by plugin 'aigc.default_plugins.commands'" in failure.error
    runner = CliRunner()
    assert runner.invoke(app, ["quip"]).stdout == "quip from wordsmith\n"
    assert runner.invoke(app, ["pun"]).stdout == "pun from punster\n"
    assert "hijacker" not in runner.invoke(app, ["chat", "--help"]).stdout


def test_every_later_clash_is_caught_while_removed_commands_are_freed(pm):
    import typer
    from typer.testing import CliRunner

    for i in range(12):  # a removed entry's id could be taken by the next plugin's new one
        pm.register(command_plugin(f"p{i}"), name=f"p{i}")
    app = typer.Typer()
    app.callback()(lambda: None)
    owners = plugins.register_commands(app)
    assert owners["hello"] == "p0"
    assert sorted(f.plugin for f in plugins.failures() if f.stage == "register_commands") == sorted(f"p{i}" for i in range(1, 12))
    assert CliRunner().invoke(app, ["hello"]).stdout == "hello from p0\n"


def test_a_command_typer_cannot_build_is_dropped_and_recorded_and_the_cli_still_works(pm):
    import functools

    import typer
    from typer.testing import CliRunner

    class Unbuildable:
        @hookimpl
        def register_commands(self, app):
            def greet(name: "Undefined"):  # noqa: F821 - an annotation under TYPE_CHECKING only
                print(name)

            app.command()(greet)
            app.command()(functools.partial(print, "no __name__"))
            group = typer.Typer()
            group.command("inner")(greet)
            app.add_typer(group, name="grp")

            @app.command("fine")
            def fine():
                print("fine")

    pm.register(Unbuildable(), name="unbuildable")
    app = typer.Typer()
    app.callback()(lambda: None)
    owners = plugins.register_commands(app)
    assert owners["fine"] == "unbuildable" and "greet" not in owners and "grp" not in owners
    errors = [f.error for f in plugins.failures() if f.plugin == "unbuildable" and f.stage == "register_commands"]
    assert len(errors) == 3 and all("typer cannot build" in error and "it added, so it is left out" in error for error in errors)
    assert any("the command 'greet' it added" in error and "NameError" in error for error in errors)
    runner = CliRunner()
    assert runner.invoke(app, ["fine"]).stdout == "fine\n"
    assert runner.invoke(app, ["chat", "--help"]).exit_code == 0


def test_checking_that_typer_builds_a_plugins_commands_adds_none_of_typers_warnings(pm):
    import warnings

    import typer

    class CallbackGroup:
        @hookimpl
        def register_commands(self, app):
            group = typer.Typer()
            group.callback()(lambda: None)  # typer warns of it each time it builds the CLI to run it
            group.command("zap")(lambda: None)
            app.add_typer(group)

    pm.register(CallbackGroup(), name="callbackgroup")
    app = typer.Typer()
    app.callback()(lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        owners = plugins.register_commands(app)
    assert owners["zap"] == "callbackgroup" and caught == []


def test_a_group_added_without_a_name_with_a_callback_typer_ignores_is_recorded_and_typer_warns_no_more(pm):
    import warnings

    import typer
    from typer.testing import CliRunner

    class CallbackGroup:
        @hookimpl
        def register_commands(self, app):
            group = typer.Typer()
            group.callback()(lambda: print("never run"))

            @group.command("zap")
            def zap():
                print("zap")

            app.add_typer(group)

    pm.register(CallbackGroup(), name="callbackgroup")
    app = typer.Typer()
    app.callback()(lambda: None)
    plugins.register_commands(app)
    (failure,) = [f for f in plugins.failures() if f.plugin == "callbackgroup"]
    assert failure.stage == "register_commands" and "typer never runs that callback" in failure.error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert CliRunner().invoke(app, ["zap"]).stdout == "zap\n"
    assert [str(w.message) for w in caught] == []


def test_two_plugins_with_one_filter_or_template_name_clash_and_the_first_stays(pm, tmp_path):
    for name, text in (("first", "first {{ input }}"), ("second", "second {{ input }}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "reply.j2").write_text(text)

    def plugin(name, filter_):
        class Plugin:
            @hookimpl
            def register_template_dirs(self, register):
                register(tmp_path / name)

            @hookimpl
            def prepare_jinja_env(self, env):
                env.filters["quote_email"] = filter_
                env.filters["upper"] = filter_  # jinja's own filters are the first plugin's to replace

        return Plugin()

    pm.register(plugin("first", lambda text: f"> {text}"), name="first")
    pm.register(plugin("second", lambda text: "HIJACKED"), name="second")
    assert templates.render("reply", {"input": "hi"}).messages[-1]["content"] == "first hi"
    assert template_environment.environment().filters["quote_email"]("hi") == "> hi"
    assert template_environment.environment().filters["upper"]("hi") == "> hi"
    clashes = sorted((f.stage, f.error) for f in plugins.failures() if f.plugin == "second")
    assert clashes == [
        ("prepare_jinja_env", "PluginClashError: jinja filter 'quote_email' is already registered by plugin 'first'; the one from 'second' is ignored"),
        ("prepare_jinja_env", "PluginClashError: jinja filter 'upper' is already registered by plugin 'first'; the one from 'second' is ignored"),
        ("register_template_dirs", "PluginClashError: template 'reply' is already registered by plugin 'first'; the one from 'second' is ignored"),
    ]
    plugins.reset()  # `aigc plugins` alone (no template looked up first) shows the clash, and whose template it is
    pm = plugins.get_plugin_manager()
    pm.register(plugin("first", str), name="first")
    pm.register(plugin("second", str), name="second")
    rows = {row["name"]: row for row in plugins.describe()["plugins"]}
    assert rows["first"]["registered"]["templates"] == ["reply"] and "templates" not in rows["second"]["registered"]
    assert "register_template_dirs" in [f["stage"] for f in rows["second"]["failures"]]


@pytest.mark.parametrize("name", ["shipper", "aigc.shipper"])  # a plugin named like aigc's own is a plugin all the same
def test_a_plugins_broken_template_is_its_problem_and_the_builtin_of_that_name_stays(pm, tmp_path, name):
    (tmp_path / "headline.j2").write_text("---\ndescription: [broken\n---\nx")

    class Shipper:
        @hookimpl
        def register_template_dirs(self, register):
            register(tmp_path)

    pm.register(Shipper(), name=name)
    assert templates.get_template("headline").source == "builtin" and "headline" in templates.discover()
    assert templates.shadowed() == {}  # listed as the built-in, overriding nothing
    (failure,) = [f for f in plugins.failures() if f.plugin == name]
    assert failure.stage == "register_template_dirs" and "its template is skipped" in failure.error and "headline.j2:2: bad front matter" in failure.error
    _, draft, note = template_edits.start_edit("headline")  # an edit starts from the built-in
    assert note == f"copied from {templates.builtin_dir() / 'headline.j2'}; yours overrides it"
    assert draft.read_text() == (templates.builtin_dir() / "headline.j2").read_text()


def test_aigc_plugins_lists_only_a_plugins_templates_in_use_as_templates_list_does(pm, tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    (tmp_path / "fine.j2").write_text("fine {{ input }}")
    (tmp_path / "undeclared.j2").write_text("---\nvariables: [{name: input}]\n---\n{{ input }} {{ other }}")
    (tmp_path / "unclosed.j2").write_text("{{ input ")

    class Shipper:
        @hookimpl
        def register_template_dirs(self, register):
            register(tmp_path)

    pm.register(Shipper(), name="shipper")
    (row,) = [r for r in plugins.describe()["plugins"] if r["name"] == "shipper"]
    assert row["registered"]["templates"] == ["fine"] == [t.name for t in templates.discover().values() if t.source == "shipper"]
    skipped = [f["error"] for f in row["failures"]]
    assert len(skipped) == 2 and all("its template is skipped" in error for error in skipped)
    shown = CliRunner().invoke(app, ["plugins"])
    assert shown.exit_code == 0 and "  templates: fine\n" in shown.stdout
    assert shown.stdout.count("failed in register_template_dirs: PluginError: its template is skipped") == 2
    from aigc.errors import UnknownTemplateError

    with pytest.raises(UnknownTemplateError, match=r"template 'undeclared' of plugin 'shipper' is skipped: .* uses \{\{ other \}\} but does not declare it"):
        templates.get_template("undeclared")  # not "unknown template"


def test_aigc_plugins_says_which_built_in_templates_a_plugins_own_replace(pm, tmp_path):
    from typer.testing import CliRunner

    from aigc.cli.app import app

    (tmp_path / "summarize.j2").write_text("---\nvariables: [{name: text}]\n---\nSUMMARIZE: {{ text }}")
    (tmp_path / "mine.j2").write_text("{{ input }}")

    class Replacer:
        @hookimpl
        def register_template_dirs(self, register):
            register(tmp_path)

    pm.register(Replacer(), name="replacer")
    (row,) = [r for r in plugins.describe()["plugins"] if r["name"] == "replacer"]
    assert row["registered"]["templates"] == ["mine", "summarize"] and row["replaces_builtin_templates"] == ["summarize"]
    assert templates.get_template("summarize").source == "replacer"
    shown = CliRunner().invoke(app, ["plugins"])
    assert shown.exit_code == 0 and "  templates: mine, summarize (replaces the built-in one)\n" in shown.stdout


def test_a_relative_template_directory_is_refused(pm):
    class Relative:
        @hookimpl
        def register_template_dirs(self, register):
            register("templates")

    pm.register(Relative(), name="relative")
    assert all(source != "relative" for source, _ in templates.template_dirs())
    (failure,) = [f for f in plugins.failures() if f.plugin == "relative"]
    assert "takes an absolute path" in failure.error


def test_without_a_reporter_a_failure_is_a_warning_for_library_callers(pm):
    from aigc.errors import AigcWarning

    plugins.set_reporter(None)  # the pm fixture puts the earlier one back
    pm.register(RaisingPlugin(), name="raiser")
    with pytest.warns(AigcWarning, match="plugin 'raiser' failed in register_models: RuntimeError: boom") as caught:
        registered_models()
    assert [w.filename for w in caught] == [__file__]  # shown at the caller's line, not inside aigc


def test_a_failing_plugin_filter_names_the_plugin_and_undefined_values_stay_the_templates_fault(pm, tmp_path):
    class Broken:
        @hookimpl
        def prepare_jinja_env(self, env):
            env.filters["halve"] = lambda value: 1 / 0 if value == "zero" else str(value)[: len(str(value)) // 2]

    pm.register(Broken(), name="halver")
    template = tmp_path / "t.j2"
    template.write_text("{{ input | halve }}{{ missing | default('') | halve }}\n")
    assert templates.render(str(template), {"input": "abcd"}).messages[-1]["content"] == "ab"
    with pytest.raises(PluginError, match="jinja filter 'halve' of plugin 'halver' failed: ZeroDivisionError"):
        templates.render(str(template), {"input": "zero"})
    template.write_text("{{ missing | halve }}\n")
    with pytest.raises(BadInputError, match="'missing' is undefined"):
        templates.render(str(template), {"input": "x"})


def test_plugin_globals_that_are_classes_or_callable_objects_are_left_as_they_are(pm):
    import datetime

    class Dates:
        @hookimpl
        def prepare_jinja_env(self, env):
            env.globals["date"] = datetime.date
            env.globals["twice"] = lambda text: text * 2

    pm.register(Dates(), name="dates")
    env = template_environment.environment()
    assert env.globals["date"] is datetime.date and env.from_string("{{ date(2026, 1, 2).year }}").render() == "2026"
    assert env.globals["twice"] is not None and env.from_string("{{ twice('ab') }}").render() == "abab"


class ReturnsText(Generator):
    name = "strgen"

    def preprocess(self, inputs, opts):
        return inputs

    def forward(self, prepared, opts, sampling):
        return prepared

    def postprocess(self, raw, opts):
        return f"just {raw}"


def test_a_generator_that_returns_no_dict_is_a_plugin_error_naming_it(pm):
    from aigc.errors import PluginError
    from aigc.generators.base import get_generator

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register("strgen", ReturnsText)

    pm.register(Plugin(), name="strings")
    with pytest.raises(PluginError, match=r"generator 'strgen' \(plugin 'strings'\) returned str where a dict of results is due"):
        get_generator("strgen")("hi")


def test_what_a_plugin_prints_at_import_goes_to_stderr(monkeypatch, capsys):
    class Chatty:
        @hookimpl
        def register_generators(self, register):
            register("echo", Echo)

    class Loud(FakeEntryPoint):
        def load(self):
            print("imported!")
            return super().load()

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [Loud("chatty", Chatty())] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        assert "echo" in registered_generators()
        out, err = capsys.readouterr()
        assert out == "" and "imported!" in err
    finally:
        plugins.reset()


def test_tryfirst_and_trylast_order_the_plugins_after_the_built_ins(pm):
    def plugin(mark, name):
        class Marked:
            @hookimpl(**mark)
            def register_generators(self, register):
                register("shared", Echo)
                register(f"only-{name}", Echo)

        return Marked()

    for name, mark in (("first", {}), ("eager", {"tryfirst": True}), ("second", {}), ("late", {"trylast": True})):
        pm.register(plugin(mark, name), name=name)
    order = []
    plugins.call_each("register_generators", before=order.append, register=lambda *item: None)
    assert order[0] == "aigc.default_plugins.generators" and order[1:] == ["eager", "first", "second", "late"]
    assert registered_generators()["shared"][0] == "eager"


def test_a_hook_wrapper_is_reported_as_never_run(pm):
    class Wrapper:
        @hookimpl(wrapper=True)
        def register_generators(self, register):
            register("echo", Echo)
            yield

    pm.register(Wrapper(), name="wrapper")
    assert "echo" not in registered_generators()
    (failure,) = [f for f in plugins.failures() if f.plugin == "wrapper"]
    assert "it is a hook wrapper, which aigc never runs" in failure.error


def test_a_hook_with_a_wrong_signature_fails_in_hook_validation_not_import(monkeypatch):
    class WrongSignature:
        @hookimpl
        def register_generators(self, register, extra):
            raise AssertionError("never called")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("badsig", WrongSignature())] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert (failure.plugin, failure.stage) == ("badsig", "hook validation") and "extra" in failure.error
        assert "chat" in registered_generators()
    finally:
        plugins.reset()


def test_a_plugin_registered_after_a_render_adds_its_filters(pm, tmp_path):
    templates.render("chat", {"input": "x"})  # the environment is built before the plugin comes
    plugin = FilterPlugin()
    plugin.directory = str(tmp_path)
    (tmp_path / "loud.j2").write_text("{{ word | shout }}")
    pm.register(plugin, name="late")
    assert templates.render("loud", {"word": "hi"}).messages[-1]["content"] == "HI!"


def test_an_option_type_aigc_does_not_convert_is_a_recorded_problem_and_the_generator_still_works(pm):
    import dataclasses
    import datetime
    from typing import Any, Literal

    @dataclasses.dataclass
    class OddOptions:
        when: datetime.date | None = None
        counts: list[int] = dataclasses.field(default_factory=list)
        mode: Literal["a", "b"] = "a"
        raw: Any = None
        n: int | None = None
        tags: list[str] = dataclasses.field(default_factory=list)

    class Odd(Echo):
        Options = OddOptions

    register_one(pm, "odd-types", "odd", Odd)
    assert "odd" in registered_generators()
    (failure,) = plugins.failures()
    assert (failure.plugin, failure.stage) == ("odd-types", "register_generators")
    assert failure.error == (
        "PluginError: generator 'odd': aigc converts option values to bool, int, float, str or list[str] (or None), not the type of "
        "when (datetime.date | None), counts (list[int]), which would get text from a command line or a form as it is; declare one of those "
        "types, or Any and convert the value in Options.__post_init__"
    )
    registered_generators()
    assert len(plugins.failures()) == 1  # recorded once, however often generators are looked up
    assert get_generator("odd").validate({"n": "3", "tags": "x,y", "mode": "b"}) == OddOptions(n=3, tags=["x", "y"], mode="b")


def register_one(pm, plugin: str, name: str, cls) -> None:
    """Register a plugin `plugin` whose one hook registers the generator `cls` as `name`."""

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register(name, cls)

    pm.register(Plugin(), name=plugin)


def test_a_literal_option_takes_only_its_choices(pm):
    import dataclasses
    from typing import Literal

    from aigc.errors import OptionError

    @dataclasses.dataclass
    class ModeOptions:
        mode: Literal["a", "b"] = "a"

    class Moded(Echo):
        Options = ModeOptions

    register_one(pm, "moded", "moded", Moded)
    assert get_generator("moded").validate({"mode": "b"}).mode == "b"
    with pytest.raises(OptionError, match=r"^mode must be one of a, b, got 'c'$"):
        get_generator("moded").validate({"mode": "c"})


def test_a_plugin_generators_options_or_prepare_failing_name_it_and_prepare_gets_converted_values(pm):
    import dataclasses

    from aigc.errors import OptionError

    @dataclasses.dataclass
    class LevelOptions:
        level: int = 1
        tags: list[str] | None = None

        def __post_init__(self):
            if self.level == 4:
                raise ValueError("four is unlucky")
            if self.level == 5:
                raise KeyError("bug")

    got = []

    class Leveled(Echo):
        Options = LevelOptions

        def prepare(self, options):
            got.append(options)
            if options["level"] == 3:
                raise RuntimeError("prepare exploded")

    class Plugin:
        @hookimpl
        def register_generators(self, register):
            register("leveled", Leveled)

    pm.register(Plugin(), name="levels")
    generator = get_generator("leveled")
    with pytest.raises(OptionError) as caught:  # the caller's bad value, named by its option
        generator.validate({"level": "4"})
    assert str(caught.value) == "level is refused by the leveled generator (plugin 'levels'): four is unlucky"
    with pytest.raises(BadInputError, match=r"^the leveled generator \(plugin 'levels'\) refused its options \(level=4, tags=\['x'\]\): four is unlucky$"):
        generator.validate({"level": "4", "tags": "x"})
    with pytest.raises(PluginError, match=r"^the leveled generator \(plugin 'levels'\) failed checking its options: KeyError: 'bug'$"):
        generator.validate({"level": "5"})
    generator.prepare({"level": "2", "tags": "x,y"})
    assert got == [{"level": 2, "tags": ["x", "y"]}]
    with pytest.raises(PluginError, match=r"^the leveled generator \(plugin 'levels'\) failed in prepare: RuntimeError: prepare exploded$"):
        generator.prepare({"level": "3"})


def test_a_plugin_alias_whose_file_is_missing_names_the_alias_and_plugin(pm, tmp_path):
    from aigc.engine.models import resolve
    from aigc.errors import UnknownModelError

    class Models:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(alias="gone", source=str(tmp_path / "gone.gguf"), description="test"))
            register(ModelSpec(alias="odd", source=str(tmp_path), description="test"))

    pm.register(Models(), name="shelf")
    with pytest.raises(UnknownModelError, match=rf"^model alias 'gone' \(plugin 'shelf'\) names {tmp_path}/gone.gguf, which cannot be used: no such file or directory; "):
        resolve("gone")
    with pytest.raises(UnknownModelError, match=rf"^model alias 'odd' \(plugin 'shelf'\) names {tmp_path}, which cannot be used: {tmp_path} is neither a model directory"):
        resolve("odd")


def test_m_reads_weights_suffixes_in_any_case_as_the_alias_rule_does(tmp_path, monkeypatch):
    from aigc.engine.models import resolve
    from aigc.errors import UnknownModelError

    weights = tmp_path / "m.GGUF"
    weights.write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    assert (resolve("m.GGUF").kind, resolve(str(weights)).kind) == ("gguf", "gguf")
    assert resolve("m.GGUF").location == "m.GGUF"
    with pytest.raises(UnknownModelError, match=r"^no such file or directory: other.GGUF; give a local model directory or .gguf file"):
        resolve("other.GGUF")
    assert "never as an alias" in plugins.name_problem("x.GGUF", alias=True)


@pytest.mark.parametrize("name, meant", [("smollm2:135m", "smollm2"), ("smollm2:360m", "smollm2-360m"), ("qwen2.5:0.5b", "qwen2.5-0.5b"), ("smolm2", "smollm2"), ("my model!", None)])
def test_an_unknown_model_names_the_alias_it_likely_means_ollamas_tags_too(name, meant):
    from aigc.engine.models import resolve
    from aigc.errors import UnknownModelError

    with pytest.raises(UnknownModelError) as caught:
        resolve(name)
    assert str(caught.value).startswith(f"unknown model {name!r}; " + (f"did you mean {meant}? known aliases: " if meant else "known aliases: "))


def test_an_unknown_ollama_name_says_how_to_use_it_through_ollamas_api():
    from aigc.engine.models import resolve
    from aigc.errors import UnknownModelError

    for name in ("llama3.2:3b", "llama3.2", "mistral"):  # ollama's names, with its tag or without (its :latest)
        with pytest.raises(UnknownModelError, match=rf"^unknown model '{name}'; a model ollama serves is model='openai:http://127.0.0.1:11434/v1#{name}'; known aliases: "):
            resolve(name)


def test_an_unknown_openai_model_name_says_how_to_use_it_through_openais_api():
    from aigc.engine.models import resolve
    from aigc.errors import UnknownModelError

    for name in ("gpt-4o", "gpt-4.1-mini", "o3-mini", "o1"):
        with pytest.raises(UnknownModelError, match=rf"^unknown model '{name}'; OpenAI's model is model='openai:https://api.openai.com/v1#{name}' \(its key in AIGC_OPENAI_API_KEY\); known aliases: "):
            resolve(name)


def test_errors_point_python_to_python_and_a_command_to_commands():
    import aigc
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.errors import UnknownModelError, UnknownTemplateError

    with pytest.raises(UnknownTemplateError, match=r"^unknown template 'nope'; see aigc.list_templates\(\) for all of them$"):
        aigc.generate("template", "hi", template="nope", model="echo")
    with pytest.raises(UnknownModelError, match=r"give an alias \(aigc.registered_models\(\)\)"):
        aigc.generate("chat", "hi", model=" ")
    listed = aigc.list_templates()
    assert "summarize" in listed and listed["summarize"].description and "list_templates" in aigc.__all__
    told = CliRunner().invoke(app, ["run", "nope", "-m", "echo", "hi"])
    assert told.exit_code == 2 and told.stderr == "Error: unknown template 'nope'; see `aigc templates list` for all of them\n", told.output
    told = CliRunner().invoke(app, ["chat", "-m", "llama3.2", "hi"])
    assert told.exit_code == 2 and "a model ollama serves is -m 'openai:http://127.0.0.1:11434/v1#llama3.2'; " in told.stderr, told.output


class KeywordRegisterPlugin:
    @hookimpl
    def register_models(self, register):
        register(alias="kw", source="hf:org/kw")  # ModelSpec's arguments, without the ModelSpec

    @hookimpl
    def register_generators(self, register):
        register(name="echo2", generator_class=Echo)


def test_register_models_and_generators_given_keywords_say_what_register_takes(pm):
    pm.register(KeywordRegisterPlugin(), name="keywords")
    assert "kw" not in registered_models() and "echo2" not in registered_generators()
    errors = {f.stage: f.error for f in plugins.failures() if f.plugin == "keywords"}
    assert errors["register_models"] == "PluginError: register() takes no keyword arguments (alias, source); register() takes an aigc.ModelSpec(alias=..., source=...)"
    assert errors["register_generators"] == "PluginError: register() takes no keyword arguments (name, generator_class); register(name, generator_class) takes a name and a class"


def test_allowlist_naming_a_module_that_is_no_entry_point_says_how_to_load_it(monkeypatch, tmp_path):
    (tmp_path / "my_unpackaged_plugin.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # on PYTHONPATH, but no installed distribution declares it
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("good", GoodPlugin())] if group == "aigc" else [])
    monkeypatch.setenv("AIGC_LOAD_PLUGINS", "my_unpackaged_plugin,nosuch")
    plugins.reset()
    try:
        errors = {f.plugin: f.error for f in plugins.failures()}
        assert errors["my_unpackaged_plugin"].endswith(
            "no installed plugin is called that (installed: good); it is a module aigc can import, but AIGC_LOAD_PLUGINS names installed "
            "plugins: AIGC_PLUGINS=my_unpackaged_plugin loads a module as a plugin without installing it, `aigc plugins install -e DIR` installs the one in DIR, editable"
        )
        assert errors["nosuch"].endswith("no installed plugin is called that (installed: good)")
        assert "my_unpackaged_plugin" not in sys.modules  # found, not imported
    finally:
        plugins.reset()


@pytest.mark.parametrize("name", ["hf:gpt2", "hf:a/b/c", "hf:"])
def test_an_hf_name_that_is_no_hub_id_says_what_hf_takes_not_ollamas_form(name):
    from aigc.engine.models import resolve
    from aigc.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match=rf"^{re.escape(repr(name))} is not a Hugging Face id: hf: takes ORG/NAME"):
        resolve(name)


TRIED = '''
from aigc import Generator, hookimpl

__version__ = "0.3"


class Tried(Generator):
    name = "tried"


@hookimpl
def register_generators(register):
    register("tried", Tried)
'''


def test_aigc_plugins_registers_modules_that_are_not_installed_each_isolated_as_an_entry_point_is(tmp_path, monkeypatch):
    (tmp_path / "aigc_tried_good.py").write_text(TRIED)
    (tmp_path / "aigc_tried_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "aigc_tried_misspelt.py").write_text("from aigc import hookimpl\n\n@hookimpl\ndef register_generator(register):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIGC_PLUGINS", "aigc_tried_good, aigc_tried_broken,aigc_tried_misspelt,aigc_tried_none,./aigc_tried_good.py,")
    seen = []
    monkeypatch.setattr(plugins, "_reporter", None)
    plugins.set_reporter(seen.append)
    plugins.reset()  # AIGC_LOAD_PLUGINS is empty: no installed plugin, but AIGC_PLUGINS's modules all the same
    try:
        assert registered_generators()["tried"][0] == "aigc_tried_good" and "chat" in registered_generators()
        assert [(f.plugin, f.stage) for f in seen] == [
            ("aigc_tried_broken", "import"), ("aigc_tried_misspelt", "hooks"), ("aigc_tried_none", "import"), ("./aigc_tried_good.py", "AIGC_PLUGINS"),
        ]
        broken, misspelt, missing, path = (f.message() for f in seen)
        assert "broken on purpose" in broken and broken.endswith("; take it out of AIGC_PLUGINS to stop loading it)") and "uninstall" not in broken
        assert misspelt.startswith("plugin 'aigc_tried_misspelt' is loaded, but 'register_generator' is not an aigc hook, so it is never called; did you mean register_generators?")
        assert "ModuleNotFoundError" in missing
        assert path.startswith("AIGC_PLUGINS names './aigc_tried_good.py': give the names of modules to import (my_plugin, package.module), not paths")
        rows = {row["name"]: (row["loaded"], row["version"], row["aigc_plugins"]) for row in plugins.describe()["plugins"]}
        assert rows == {
            "aigc_tried_good": (True, "0.3", True), "aigc_tried_misspelt": (True, None, True),
            "aigc_tried_broken": (False, None, True), "aigc_tried_none": (False, None, True),
        }
    finally:
        plugins.reset()


def test_an_aigc_plugins_module_with_no_hook_is_told_to_name_the_one_with_them(tmp_path, monkeypatch):
    (tmp_path / "aigc_tried_empty.py").write_text("import json\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIGC_PLUGINS", "aigc_tried_empty")
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert (failure.plugin, failure.stage) == ("aigc_tried_empty", "hooks")
        assert "aigc_tried_empty implements no aigc hook, so the plugin adds nothing; AIGC_PLUGINS should name the module with the @aigc.hookimpl functions" in failure.error
        assert "entry point" not in failure.message()
    finally:
        plugins.reset()


def test_an_aigc_plugins_module_installed_too_loads_once_and_one_named_like_a_loaded_plugin_is_a_clash(tmp_path, monkeypatch):
    (tmp_path / "aigc_tried_twice.py").write_text(TRIED)
    (tmp_path / "clashing.py").write_text(TRIED)
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [ImportingEntryPoint("twice", "aigc_tried_twice"), FakeEntryPoint("clashing", GoodPlugin())]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    monkeypatch.setenv("AIGC_PLUGINS", "aigc_tried_twice,clashing")
    plugins.set_reporter(lambda failure: None)
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert (failure.plugin, failure.stage, failure.clash) == ("clashing", "AIGC_PLUGINS", True) and "a plugin of that name is loaded already" in failure.message()
        assert [row["name"] for row in plugins.describe()["plugins"]] == ["clashing", "twice"]  # the module of `twice` once, under its entry point's name
    finally:
        plugins.reset()


def test_a_plugin_outside_aigcs_environment_is_told_to_come_off_pythonpath_not_to_be_uninstalled(tmp_path, monkeypatch):
    points = [ImportingEntryPoint("elsewhere", "aigc_tried_nowhere")]
    points[0].dist.locate_file = lambda path: tmp_path / path
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))  # aigc runs in a virtual environment, the plugin lies outside it
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    plugins.set_reporter(lambda failure: None)
    plugins.reset()
    try:
        (failure,) = plugins.failures()
        assert failure.message().endswith(
            f"it is outside aigc's environment, in {tmp_path}, where `aigc plugins uninstall` cannot remove it: take that directory off PYTHONPATH (or delete the plugin there))"
        )
        monkeypatch.setattr(sys, "prefix", str(tmp_path))
        assert failure.message().endswith("; `aigc plugins uninstall elsewhere` removes it)")
    finally:
        plugins.reset()


def test_distributions_whose_metadata_directories_read_as_one_name_are_reported_not_dropped(tmp_path, monkeypatch):
    for name in ("bk-gen", "bk-hook"):
        module = "aigc_" + name.replace("-", "_")
        (tmp_path / f"{module}.py").write_text(TRIED.replace('"tried"', f'"{name}"'))
        info = tmp_path / f"{name}-0.1.dist-info"  # as a hand-made one may be called: it reads as distribution `bk`
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[aigc]\n{name.replace('-', '')} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIGC_LOAD_PLUGINS", "bkgen,bkhook")
    plugins.set_reporter(lambda failure: None)
    plugins.reset()
    try:
        loaded = [name for name in ("bk-gen", "bk-hook") if name in registered_generators()]
        (hidden,) = {"bk-gen", "bk-hook"} - set(loaded)  # which one Python sees first is the file system's order
        failure = next(f for f in plugins.failures() if f.plugin == hidden)
        assert f"reads as distribution 'bk', as {loaded[0]}-0.1.dist-info does" in failure.error
        assert failure.error.endswith(f"rename the directory {hidden.replace('-', '_')}-0.1.dist-info ('_' in the name, '-' only before the version)")
    finally:
        plugins.reset()
