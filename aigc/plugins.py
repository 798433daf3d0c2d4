"""The plugin manager: built-in plugins, isolated entry-point loading, and the registries hooks fill."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "aigc"
DEFAULT_PLUGINS = (
    "aigc.default_plugins.generators",
    "aigc.default_plugins.models",
    "aigc.default_plugins.templates",
    "aigc.default_plugins.commands",
)


@dataclass
class PluginFailure:
    """A plugin that failed to load or raised inside a hook."""

    plugin: str
    stage: str
    error: str

    def message(self) -> str:
        return (
            f"plugin {self.plugin!r} failed in {self.stage}: {self.error} "
            f"(disable it with AIGC_LOAD_PLUGINS, or `pip uninstall` it)"
        )


@dataclass
class _State:
    manager: pluggy.PluginManager | None = None
    failures: list[PluginFailure] = field(default_factory=list)


_state = _State()


def _trace(message: str) -> None:
    if os.environ.get("AIGC_TRACE_PLUGINS", "") not in ("", "0"):
        sys.stderr.write(f"[aigc plugins] {message}\n")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    allow = os.environ.get("AIGC_LOAD_PLUGINS")
    allowed = None if allow is None else {name.strip() for name in allow.split(",") if name.strip()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must never break aigc
            _record(ep.name, "import", exc)


def _record(plugin: str, stage: str, exc: BaseException) -> None:
    failure = PluginFailure(plugin, stage, f"{type(exc).__name__}: {exc}")
    if failure not in _state.failures:
        _state.failures.append(failure)
    _trace("".join(traceback.format_exception(exc)))


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading built-ins and entry points on first use."""
    if _state.manager is None:
        pm = pluggy.PluginManager("aigc")
        pm.add_hookspecs(hookspecs)
        for name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
        _state.manager = pm
        _load_entry_points(pm)
    return _state.manager


def failures() -> list[PluginFailure]:
    """Plugins that failed to load or raised in a hook so far."""
    get_plugin_manager()
    return list(_state.failures)


def call_each(hook_name: str, before: Callable[[str], None] | None = None, **kwargs: Any) -> None:
    """Call every implementation of a hook on its own, so one failing plugin cannot stop the rest.

    Built-ins run first; ``before(plugin_name)`` is called ahead of each implementation.
    """
    hook = getattr(get_plugin_manager().hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order: built-ins first
        _trace(f"{hook_name} -> {impl.plugin_name}")
        if before:
            before(impl.plugin_name)
        args = {name: kwargs[name] for name in impl.argnames}
        try:
            impl.function(**args)
        except PluginError:
            raise
        except Exception as exc:
            _record(impl.plugin_name, hook_name, exc)


def plugin_names() -> list[str]:
    return [name for name, _ in get_plugin_manager().list_name_plugin()]


def collect(hook_name: str, key: Callable[[Any], str] | None, kind: str) -> dict[str, tuple[str, Any]]:
    """Run a ``register`` hook and return ``{name: (plugin, item)}``; two plugins claiming a name clash."""
    found: dict[str, tuple[str, Any]] = {}
    current = {"plugin": ""}

    def register(*item: Any) -> None:
        value = item[0] if len(item) == 1 else item
        name = key(value) if key else str(value)
        if name in found and found[name][0] != current["plugin"]:
            raise PluginError(
                f"{kind} {name!r} is registered by both {found[name][0]!r} and {current['plugin']!r}; "
                "uninstall one of them or disable it with AIGC_LOAD_PLUGINS"
            )
        found[name] = (current["plugin"], value)

    def enter(plugin: str) -> None:
        current["plugin"] = plugin

    call_each(hook_name, before=enter, register=register)
    return found


def reset() -> None:
    """Forget the plugin manager (tests register plugins and start over)."""
    _state.manager = None
    _state.failures.clear()
