"""Engines from plugins: the `register_engines` hook, `-m SCHEME:LOCATION`, and how their failures are named."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from aigc import EngineBase, get_generator, hookimpl, load_model, plugins
from aigc.cli.app import app
from aigc.engine.loading import unload
from aigc.engine.models import resolve
from aigc.engine.schemes import registered_engines
from aigc.engine.base import Completion, stoppable_context
from aigc.errors import BadInputError, EngineError, ModelSettingError, PluginError, UnknownModelError
from aigc.testing import EchoEngine, FakeEngine, check_engine


@pytest.fixture
def pm():
    reporter = plugins._reporter
    plugins.set_reporter(lambda failure: None)  # the tests read plugins.failures()
    plugins.reset()
    unload()
    yield plugins.get_plugin_manager()
    unload()
    plugins.reset()
    plugins._reporter = reporter


class Acme(EchoEngine):
    """ACME's in-house service."""

    def __init__(self, location: str):
        super().__init__()
        self.name = f"acme:{location}"
        self.location = location


class AcmePlugin:
    @hookimpl
    def register_engines(self, register):
        register("acme", Acme)


def test_register_engines_gives_a_scheme_that_model_names_run_on(pm):
    pm.register(AcmePlugin(), name="acme-plugin")
    assert registered_engines()["acme"] == ("acme-plugin", Acme)
    ref = resolve("acme:big-model")
    assert (ref.kind, ref.location, ref.engine) == ("remote", "big-model", "acme:big-model")
    engine = load_model("acme:big-model")
    assert isinstance(engine.engine, Acme) and engine.location == "big-model" and engine.plugin == "acme-plugin"
    assert load_model("acme:big-model") is engine  # made once per location
    assert get_generator("chat", model="acme:big-model")("hello there")["text"] == "hello there"


def test_a_local_path_that_exists_wins_over_an_engine_scheme_of_its_prefix(pm, tmp_path, monkeypatch):
    pm.register(AcmePlugin(), name="acme-plugin")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acme:v2").mkdir()
    (tmp_path / "acme:v2" / "config.json").write_text("{}")
    assert (resolve("acme:v2").kind, resolve("acme:v2").location) == ("dir", "acme:v2")  # your model directory, not ACME's v2
    assert resolve("acme:v3").engine == "acme:v3"


def test_the_built_in_schemes_come_through_the_same_hook(pm):
    engines = registered_engines()
    assert engines["openai"][0] == engines["remote"][0] == "aigc.default_plugins.engines"
    assert resolve("openai:http://127.0.0.1:9/v1#m").engine == "openai:http://127.0.0.1:9/v1#m"
    with pytest.raises(UnknownModelError, match="needs an http"):
        resolve("openai:ftp://host/v1")


def test_an_unknown_scheme_lists_the_registered_ones(pm):
    pm.register(AcmePlugin(), name="acme-plugin")
    with pytest.raises(UnknownModelError, match=r"nor is inhouse: an engine scheme \(registered: acme: \(plugin 'acme-plugin'\), openai:, remote:\)"):
        resolve("inhouse:model")


class BadEngines:
    @hookimpl
    def register_engines(self, register):
        register("Acme", Acme)
        register("hf", Acme)
        register("x", Acme)
        register("fine", "not callable")
        register("lone")
        register("good", Acme)


class SecondAcme:
    @hookimpl
    def register_engines(self, register):
        register("acme", EchoEngine)
        register("openai", EchoEngine)


def test_bad_schemes_and_clashes_are_recorded_and_the_rest_count(pm):
    pm.register(AcmePlugin(), name="first")
    pm.register(BadEngines(), name="bad")
    pm.register(SecondAcme(), name="second")
    engines = registered_engines()
    assert engines["acme"][0] == "first" and engines["openai"][0] == "aigc.default_plugins.engines" and engines["good"][0] == "bad"
    errors = [f.error for f in plugins.failures() if f.plugin == "bad"]
    for start in ("engine scheme 'Acme' must be two or more", "engine scheme 'x' must be two or more", "engine scheme 'hf' is a model source", "engine scheme 'fine': the factory must be callable", "register() takes an engine scheme and a factory"):
        assert any(error.startswith(f"PluginError: {start}") for error in errors), (start, errors)
    assert len(errors) == 5
    clashes = sorted(f.error for f in plugins.failures() if f.clash)
    assert clashes == [
        "PluginClashError: engine scheme 'acme' is already registered by plugin 'first'; the one from 'second' is ignored",
        "PluginClashError: engine scheme 'openai' is already registered by plugin 'aigc.default_plugins.engines'; the one from 'second' is ignored",
    ]


class RaisingFactory:
    @hookimpl
    def register_engines(self, register):
        def make(location):
            raise ConnectionRefusedError("[Errno 111] Connection refused")

        register("down", make)
        register("wrong", lambda location: "not an engine")


def test_a_factory_that_fails_or_makes_no_engine_is_an_error_naming_the_plugin(pm):
    pm.register(RaisingFactory(), name="flaky")
    with pytest.raises(PluginError, match=r"^the engine scheme down: \(plugin 'flaky'\) could not make an engine for 'x': ConnectionRefusedError: \[Errno 111\] Connection refused$"):
        load_model("down:x")
    with pytest.raises(PluginError, match=r"made str, which is no aigc Engine"):
        load_model("wrong:x")


def test_the_cli_runs_on_a_plugins_engine_and_lists_its_scheme(pm, monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path))
    pm.register(AcmePlugin(), name="acme-plugin")
    runner = CliRunner()
    done = runner.invoke(app, ["chat", "-m", "acme:big", "hello"])
    assert (done.exit_code, done.stdout) == (0, "hello\n"), done.output
    listed = runner.invoke(app, ["models", "list", "--json"])
    row = next(row for row in json.loads(listed.stdout) if row["alias"] == "acme:LOCATION")
    assert (row["plugin"], row["kind"], row["description"]) == ("acme-plugin", "engine", "ACME's in-house service.")
    shown = runner.invoke(app, ["plugins"])
    assert "  engines: acme:\n" in shown.stdout
    doctor = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)
    assert doctor["checks"]["plugins"]["facts"]["engines"]["acme:"] == "acme-plugin"
    assert "their engine schemes: acme: (acme-plugin)" in doctor["checks"]["plugins"]["summary"]
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", "acme:big")  # runs in this process, on no remote server
    doctor = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)["checks"]
    assert doctor["device"]["summary"] == "the default model acme:big runs on the engine of plugin 'acme-plugin'"
    assert doctor["model:text"]["summary"].endswith("(set by AIGC_DEFAULT_MODEL): runs on the engine of plugin 'acme-plugin', at big (not contacted)")
    with pytest.raises(ModelSettingError, match=r"^device=cpu sets how a model runs here; acme:big runs on the engine of plugin 'acme-plugin', which decides that"):
        load_model("acme:big", device="cpu")
    pulled = runner.invoke(app, ["models", "pull", "acme:big"])
    assert pulled.exit_code == 2 and "acme:big runs on the engine of plugin 'acme-plugin'; there is nothing to download" in pulled.output
    wrong = runner.invoke(app, ["chat", "-m", "acmee:big", "hello"])
    assert wrong.exit_code == 2 and "registered: acme: (plugin 'acme-plugin'), openai:, remote:" in wrong.output


class NeverMade:
    @hookimpl
    def register_engines(self, register):
        def make(location):
            raise AssertionError(f"serve made an engine for {location} before refusing it")

        register("acme", make)


def test_serve_refuses_a_plugin_engines_model_before_making_its_engine(pm, monkeypatch, tmp_path):
    pytest.importorskip("fastapi")
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path))
    pm.register(NeverMade(), name="acme-plugin")
    result = CliRunner().invoke(app, ["serve", "-m", "acme:x", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "Error: acme:x runs on the engine of plugin 'acme-plugin', with no local weights to serve; "
        "serve runs local models (an alias such as smollm2, a model directory, a .gguf file or a hub id)"
    )


class AliasPlugin:
    @hookimpl
    def register_engines(self, register):
        register("acme", Acme)

    @hookimpl
    def register_models(self, register):
        from aigc import ModelSpec

        register(ModelSpec(alias="acme-7b", source="acme:acme-7b", description="ACME 7B on the in-house service"))
        register(ModelSpec(alias="acme-openai", source="openai:http://127.0.0.1:9/v1#acme-7b"))
        register(ModelSpec(alias="nowhere", source="inhouse:acme-7b"))
        register(ModelSpec(alias="picture", source="acme:sd", kind="image"))
        register(ModelSpec(alias="bad-url", source="openai:ftp://host/v1"))


def test_a_plugins_model_alias_may_name_an_engines_model(pm, monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path))
    pm.register(AliasPlugin(), name="acme-plugin")
    ref = resolve("acme-7b")
    assert (ref.name, ref.kind, ref.engine, ref.spec.description) == ("acme-7b", "remote", "acme:acme-7b", "ACME 7B on the in-house service")
    assert isinstance(load_model("acme-7b").engine, Acme) and load_model("acme-7b").location == "acme-7b"
    assert resolve("acme-openai").engine == "openai:http://127.0.0.1:9/v1#acme-7b"
    errors = [f.error for f in plugins.failures() if f.plugin == "acme-plugin"]
    assert errors == [
        "PluginError: model 'nowhere' source 'inhouse:acme-7b' names the engine scheme inhouse:, which no plugin registers (registered: acme: (plugin 'acme-plugin'), openai:, remote:)",
        "PluginError: model 'picture' source 'acme:sd' is an engine's model, which is a text model: leave kind out",
    ]
    with pytest.raises(UnknownModelError, match=r"^model alias 'bad-url' \(plugin 'acme-plugin'\) names openai:ftp://host/v1, which cannot be used: .*needs an http"):
        resolve("bad-url")
    listed = {row["alias"]: row for row in json.loads(CliRunner().invoke(app, ["models", "list", "--json"]).stdout)}
    assert (listed["acme-7b"]["kind"], listed["acme-7b"]["installed"], listed["acme-7b"]["plugin"]) == ("engine", None, "acme-plugin")


def test_models_list_shows_the_plugin_that_added_each_alias(pm, monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path))
    pm.register(AliasPlugin(), name="acme-plugin")
    assert CliRunner().invoke(app, ["models", "alias", "mine", "acme:mine"]).exit_code == 0
    shown = CliRunner().invoke(app, ["models", "list"]).stdout.splitlines()
    assert shown[0].split() == ["alias", "kind", "installed", "plugin", "source"]
    cells = {line.split()[0]: line.split()[1:] for line in shown[1:]}
    assert cells["acme-7b"] == ["engine", "-", "acme-plugin", "acme:acme-7b"]
    assert cells["acme:LOCATION"][:3] == ["engine", "-", "acme-plugin"]
    assert cells["mine"] == ["engine", "-", "config", "acme:mine"]  # yours, in the settings file
    assert cells["qwen2.5-0.5b"][2:] == ["aigc", "hf:Qwen/Qwen2.5-0.5B-Instruct"]  # aigc's own


class Parrot(EngineBase):
    """A backend that defines generate only: EngineBase gives the rest."""

    name = "parrot"

    def generate(self, prompts, params):
        return [[Completion(f"heard {len(prompts)}", 3, 2, "stop")] * params.n for _ in prompts]


def test_engine_base_gives_the_defaults_and_says_what_it_cannot():
    engine = Parrot()
    assert get_generator("chat", engine=engine)("hi")["text"] == "heard 1"
    assert "".join(get_generator("chat", engine=engine).stream("hi")) == "heard 1"
    assert engine.count_tokens("twelve bytes") == 5 and engine.stats.calls == 0
    with pytest.raises(EngineError, match=r"^engine 'parrot' cannot score continuations"):
        get_generator("classify", engine=engine)("text", labels=["a", "b"])
    with pytest.raises(EngineError, match=r"^engine 'parrot' cannot embed texts, which embed and similar need"):
        engine.embed(["a"])
    with pytest.raises(BadInputError, match="cannot embed prompts while scoring them"):
        engine.score_many(["a"], ["b"], embed=True)
    assert check_engine(engine) == {"can": ["count_tokens", "generate", "stream"], "cannot": ["score", "score_many", "embed"]}


class Bare:
    """An engine of generate and count_tokens only, as the trial's InhouseEngine was."""

    name = "bare"
    context_length = 512

    def count_tokens(self, prompt):
        return 3

    def generate(self, prompts, params):
        return [[Completion("ok", 3, 1, "stop")] * params.n for _ in prompts]


def test_a_task_that_needs_what_a_plugin_engine_lacks_is_an_engine_error_naming_it(pm):
    pm.register(BarePlugin(), name="bareplug")
    with pytest.raises(EngineError, match=r"^engine 'bare' \(plugin 'bareplug'\) has no score_many, which scoring labels \(classify\) needs; define it, or subclass aigc.EngineBase"):
        get_generator("classify", model="bare:x")("text", labels=["a", "b"])
    with pytest.raises(AssertionError, match="it has no score_many") as caught:
        check_engine(Bare())
    assert "can_embed must be True or False, got None" in str(caught.value) and "stats must be" in str(caught.value)
    complete = FakeEngine()
    assert get_generator("chat", engine=complete).engine is complete  # one with every method is run as given


class Mine(Bare):
    """A caller's own engine, of some methods only, whose bug is a ValueError."""

    name = "mine"

    def generate(self, prompts, params):
        raise ValueError("my bug")


def test_an_engine_the_caller_gives_is_run_as_it_is():
    engine = Mine()
    generator = get_generator("chat", engine=engine)
    assert generator.engine is engine and not hasattr(generator.engine, "can_score_chat")  # headline reads it as it always did
    with pytest.raises(ValueError, match="^my bug$"):
        generator("hi")


class BarePlugin:
    @hookimpl
    def register_engines(self, register):
        register("bare", lambda location: Bare())


def test_a_plugin_engine_lacking_a_method_runs_as_loaded_and_reads_as_lacking_it(pm):
    pm.register(BarePlugin(), name="bareplug")
    engine = load_model("bare:x")
    generator = get_generator("chat", engine=engine)
    assert generator.engine is engine and generator("hi")["text"] == "ok"
    assert not hasattr(engine, "embed") and getattr(engine, "stream", None) is None
    with pytest.raises(EngineError, match=r"^engine 'bare' \(plugin 'bareplug'\) has no embed, which embeddings"):
        engine.embed(["a"])


class Failing(EngineBase):
    name = "acme:down"

    def __init__(self, location):
        self.failure = OSError("[Errno 111] Connection refused")

    def generate(self, prompts, params):
        raise self.failure


class Lacking(Bare):
    def __init__(self, location):
        self.name = f"lacking:{location}"


class BrokenPlugin:
    @hookimpl
    def register_engines(self, register):
        register("acme", Failing)
        register("lacking", Lacking)


def test_a_plugin_engines_failures_reach_the_cli_as_one_line_naming_the_plugin(pm, monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path))
    pm.register(BrokenPlugin(), name="acme-plugin")
    runner = CliRunner()
    done = runner.invoke(app, ["chat", "-m", "acme:x", "hello"])
    assert (done.exit_code, done.stdout) == (1, "")
    assert done.stderr == "Error: engine 'acme:down' (plugin 'acme-plugin') failed in stream: OSError: [Errno 111] Connection refused\n"  # chat streams
    lacking = runner.invoke(app, ["classify", "text", "--labels", "a,b", "-m", "lacking:x"])
    assert lacking.exit_code == 1 and lacking.stderr.startswith("Error: engine 'lacking:x' (plugin 'acme-plugin') has no score_many, which scoring labels (classify) needs")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "hi"}\n')
    runner.invoke(app, ["batch", "chat", "-i", str(rows), "-o", str(tmp_path / "out.jsonl"), "-m", "acme:x"])
    written = json.loads((tmp_path / "out.jsonl").read_text())
    assert "engine 'acme:down' (plugin 'acme-plugin') failed in generate: OSError" in written["error"]
    stream = load_model("acme:x").stream("hi", __import__("aigc").SamplingParams())
    with pytest.raises(EngineError, match=r"^engine 'acme:down' \(plugin 'acme-plugin'\) failed in stream: OSError"):
        next(stream)


def _backend_example(tmp_path) -> "object":
    """docs/plugins.md's Backends example, as the package aigc_acme under `tmp_path`."""
    import re
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text().split("## Backends (engines)", 1)[1].split("\n## ", 1)[0]
    package = tmp_path / "aigc_acme"
    package.mkdir()
    for code in re.findall(r"```python\n(.*?)```", docs, re.S):
        (package / code.split("\n", 1)[0].removeprefix("# aigc_acme/")).write_text(code)
    return package


def test_the_backends_example_in_the_docs_runs_as_a_plugin(pm, monkeypatch, tmp_path):
    import http.server
    import importlib
    import sys
    import threading

    from aigc.errors import ModelUnavailableError

    class Service(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            words = asked["input"].split()[-asked["max_new"]:]
            body = json.dumps({"output": " ".join(words).upper(), "tok_in": len(asked["input"].split()), "tok_out": len(words)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ACME_URL", f"http://127.0.0.1:{server.server_port}/infer")
    monkeypatch.syspath_prepend(str(_backend_example(tmp_path).parent))
    try:
        module = importlib.import_module("aigc_acme")
        pm.register(module, name="acme")
        assert get_generator("chat", model="acme-7b")("say hi")["text"] == "USER: SAY HI"
        assert get_generator("chat", model="acme:acme-7b")("hi", sampling={"stop": [":"]})["text"] == "USER"
        assert check_engine(module.engine.AcmeEngine("acme-7b"))["cannot"] == ["score", "score_many", "embed"]
        context, stop = stoppable_context()
        stop.set()  # as Ctrl-C in a batch tells it
        with pytest.raises(asyncio.CancelledError):
            context.run(module.engine.AcmeEngine("acme-7b").generate, ["hi"], __import__("aigc").SamplingParams())
        monkeypatch.setenv("ACME_URL", "http://127.0.0.1:9/infer")  # nothing listens there
        with pytest.raises(ModelUnavailableError, match=r"^cannot reach ACME at http://127.0.0.1:9/infer: .*; is it running\?$"):
            module.engine.AcmeEngine("acme-7b").generate(["hi"], __import__("aigc").SamplingParams())
    finally:
        server.shutdown()
        for name in [name for name in sys.modules if name.startswith("aigc_acme")]:
            del sys.modules[name]


def test_a_plugin_alias_naming_an_openai_url_gets_the_api_key_only_for_openai_or_your_remotes(pm, monkeypatch):
    import http.server
    import threading

    from aigc import ModelSpec
    from aigc.config import settings_file

    class Service(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"data": [{"id": "m"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Catalogue:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(alias="fast-llm", source=f"openai:{url}#m"))
            register(ModelSpec(alias="gpt-here", source="openai:https://api.openai.com/v1#gpt"))

    seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-secret")
    pm.register(Catalogue(), name="catalogue")
    try:
        assert resolve("fast-llm").keyless and not resolve("gpt-here").keyless
        load_model("fast-llm")
        load_model(f"openai:{url}#m")  # named by the user: their key goes there
        assert seen == [None, "Bearer sk-user-secret"]
        settings_file().parent.mkdir(parents=True, exist_ok=True)
        settings_file().write_text(f'[remotes.mine]\nurl = "{url}"\n')  # a server of yours
        unload()
        load_model("fast-llm")
        assert seen[-1] == "Bearer sk-user-secret"
    finally:
        server.shutdown()
        server.server_close()
