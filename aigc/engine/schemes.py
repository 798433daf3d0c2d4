"""Engine schemes: `-m SCHEME:LOCATION` is the engine that the factory a plugin's `register_engines`
hook registered for SCHEME makes from LOCATION. aigc's own `openai:` and `remote:` come through the
same hook (`aigc.default_plugins.engines`); they check their location when named, before any engine is made."""

from __future__ import annotations

import re
from typing import Any, Callable

from ..errors import AigcError, PluginError, UnknownModelError

SCHEME = re.compile(r"[a-z][a-z0-9+.-]+", re.ASCII)  # two characters at least: `C:` is a Windows drive
RESERVED = ("hf", "pypi")  # model sources aigc reads itself (hf:ORG/NAME, pypi:...gguf), no engines
BUILTIN = "aigc.default_plugins.engines"


def registered_engines() -> dict[str, tuple[str, Callable[[str], Any]]]:
    """`{scheme: (plugin, factory)}` from every plugin's `register_engines` hook."""
    from ..plugins import collect

    found = collect("register_engines", key=lambda item: item[0], kind="engine scheme", check=_engine_problem)
    return {scheme: (plugin, item[1]) for scheme, (plugin, item) in found.items()}


def _engine_problem(item: Any) -> str | None:
    usage = "register() takes an engine scheme and a factory, register('acme', make_engine), and `-m acme:LOCATION` runs make_engine('LOCATION')"
    if not isinstance(item, tuple) or len(item) != 2:
        return f"{usage}, got {item!r}"
    scheme, factory = item
    if not isinstance(scheme, str) or not SCHEME.fullmatch(scheme):
        return f"engine scheme {scheme!r} must be two or more lowercase ASCII letters, digits, '+', '.' and '-', starting with a letter, without the ':'"
    if scheme in RESERVED:
        return f"engine scheme {scheme!r} is a model source aigc reads itself ({scheme}:...); pick another name"
    if not callable(factory):
        return f"engine scheme {scheme!r}: the factory must be callable (a class or function taking the LOCATION text), got {type(factory).__name__}"
    return None


def scheme_of(name: str) -> str | None:
    """The text before `name`'s first ':' where it could be an engine scheme (registered or not), else None."""
    scheme, colon, _ = name.partition(":")
    return scheme if colon and SCHEME.fullmatch(scheme) and scheme not in RESERVED else None


def by_plugin(plugin: str) -> str:
    """` (plugin 'NAME')` for a plugin's scheme, '' for aigc's own, for errors that name it."""
    return "" if plugin.startswith("aigc.") else f" (plugin {plugin!r})"


def engine_plugin(engine: str | None) -> str | None:
    """The outside plugin whose scheme makes the engine of `ModelRef.engine` (SCHEME:LOCATION): its
    model runs on that plugin's engine; None for aigc's own (openai:, remote:: a remote server)."""
    plugin = registered_engines().get((engine or "").partition(":")[0], (BUILTIN,))[0]
    return None if plugin.startswith("aigc.") else plugin


def runs_on(engine: str | None) -> str:
    """Where a model of `ModelRef.engine` runs, as messages say it: `a remote server`, or `the engine of plugin 'acme'`."""
    plugin = engine_plugin(engine)
    return f"the engine of plugin {plugin!r}" if plugin else "a remote server"


def listed(engines: dict[str, tuple[str, Any]]) -> str:
    """The registered schemes as an error lists them: `openai:, remote:, acme: (plugin 'acme')`."""
    return ", ".join(f"{scheme}:{by_plugin(plugin)}" for scheme, (plugin, _) in sorted(engines.items())) or "none"


def located(name: str, scheme: str, location: str, plugin: str) -> str:
    """Where `name`'s model is, as `aigc models` shows it: a built-in scheme's, checked now
    (openai:'s URL, remote:'s table); a plugin's LOCATION as given, which its factory checks."""
    if plugin != BUILTIN:
        return location
    from .remote import named_remote, url_problem

    if scheme == "remote":  # a [remotes.NAME] table of the settings file
        return named_remote(location).location
    problem = url_problem(location.partition("#")[0])
    if problem:
        raise UnknownModelError(f"{name!r}: a remote model needs an http(s) URL, like openai:http://127.0.0.1:8000/v1#MODEL ({problem})")
    return location


def maker(engine: str, keyless: bool = False) -> tuple[tuple, Callable[[], Any]]:
    """For `ModelRef.engine` (SCHEME:LOCATION): what more keys the engine in `load_model`'s cache,
    and a function that makes it (`keyless`, for openai:: one that sends no API key). A plugin factory's failure that is no `AigcError` is a
    `PluginError` naming the plugin; one that returns no engine is one too."""
    scheme, _, location = engine.partition(":")
    engines = registered_engines()
    if scheme not in engines:  # its plugin was unloaded since
        raise UnknownModelError(f"no plugin registers the engine scheme {scheme}: now (registered: {listed(engines)})")
    plugin, factory = engines[scheme]
    if plugin == BUILTIN and scheme == "openai" and keyless:
        from .remote import OpenAIEngine

        return (), lambda: OpenAIEngine.from_location(location, keyed=False)
    if plugin == BUILTIN and scheme == "remote":
        from .remote import named_remote

        remote = named_remote(location)
        return (remote.key(),), lambda: factory(location)  # a missing key variable fails every time; a new key, a new engine
    return (), lambda: _made(plugin, scheme, location, factory)


def _made(plugin: str, scheme: str, location: str, factory: Callable[[str], Any]) -> Any:
    whose = f"the engine scheme {scheme}:{by_plugin(plugin)}"
    try:
        engine = factory(location)
    except AigcError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's bug or its service's failure, named as the plugin's
        raise PluginError(f"{whose} could not make an engine for {location!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(engine, "generate", None)):
        raise PluginError(f"{whose} made {type(engine).__name__}, which is no aigc Engine (it has no generate); its factory must return one (aigc.EngineBase gives the rest)")
    if plugin == BUILTIN:
        return engine
    from .plugged import PluggedEngine

    return PluggedEngine(engine, plugin, f"{scheme}:{location}")
