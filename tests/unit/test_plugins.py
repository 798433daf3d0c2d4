import importlib.metadata
import inspect

import pytest

from aigc import hookimpl, hookspecs, plugins
from aigc.engine.models import ModelSpec, registered_models
from aigc.errors import PluginError
from aigc.generators.base import Generator, get_generator, registered_generators


@pytest.fixture
def pm():
    plugins.reset()
    yield plugins.get_plugin_manager()
    plugins.reset()


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


def test_a_plugin_adds_a_generator_and_a_model(pm):
    pm.register(GoodPlugin(), name="good")
    assert isinstance(get_generator("echo"), Echo)
    assert registered_models()["tiny"] == ("good", ModelSpec(alias="tiny", source="/nowhere", description="test"))


def test_clash_names_both_plugins(pm):
    pm.register(ClashingPlugin(), name="clasher")
    with pytest.raises(PluginError, match="'aigc.default_plugins.generators' and 'clasher'"):
        registered_generators()


def test_a_hook_that_raises_is_recorded_and_the_rest_still_work(pm):
    pm.register(RaisingPlugin(), name="raiser")
    assert "smollm2" in registered_models()
    (failure,) = [f for f in plugins.failures() if f.plugin == "raiser"]
    assert failure.stage == "register_models" and "boom" in failure.error
    assert "AIGC_LOAD_PLUGINS" in failure.message()


class FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.target = name, target

    def load(self):
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def test_broken_entry_point_is_recorded_and_allowlist_is_honoured(monkeypatch):
    points = [FakeEntryPoint("broken", ImportError("no module named zzz")), FakeEntryPoint("good", GoodPlugin())]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "aigc" else [])
    plugins.reset()
    try:
        assert "good" in plugins.plugin_names()
        assert [f.plugin for f in plugins.failures()] == ["broken"]
        monkeypatch.setenv("AIGC_LOAD_PLUGINS", "good")
        plugins.reset()
        assert "good" in plugins.plugin_names() and plugins.failures() == []
        monkeypatch.setenv("AIGC_LOAD_PLUGINS", "")
        plugins.reset()
        assert "good" not in plugins.plugin_names()
    finally:
        plugins.reset()


def test_trace_prints_each_hook_call(pm, monkeypatch, capsys):
    monkeypatch.setenv("AIGC_TRACE_PLUGINS", "1")
    registered_models()
    assert "register_models -> aigc.default_plugins.models" in capsys.readouterr().err


def test_every_hookspec_has_a_docstring_and_a_test():
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "aigc_spec")]
    assert set(specs) == {"register_generators", "register_models", "register_template_dirs", "register_commands", "prepare_jinja_env"}
    tested = open(__file__).read() + open(__file__.replace("test_plugins", "test_templates")).read() + open(
        __file__.replace("test_plugins", "test_cli")).read()
    for name in specs:
        assert getattr(hookspecs, name).__doc__
        assert name in tested, f"hook {name} has no test"


class FilterPlugin:
    @hookimpl
    def prepare_jinja_env(self, env):
        env.filters["shout"] = lambda s: s.upper() + "!"

    @hookimpl
    def register_template_dirs(self, register):
        register(self.directory)


def test_prepare_jinja_env_and_register_template_dirs(pm, tmp_path):
    from aigc import templates

    templates.environment.cache_clear()
    plugin = FilterPlugin()
    plugin.directory = str(tmp_path)
    (tmp_path / "loud.j2").write_text("{{ word | shout }}")
    pm.register(plugin, name="filters")
    try:
        assert templates.get_template("loud").source == "filters"
        assert templates.render("loud", {"word": "hi"}).messages[-1]["content"] == "HI!"
    finally:
        templates.environment.cache_clear()
