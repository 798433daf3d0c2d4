"""The plugin manager: built-in plugins, isolated loading of entry points and AIGC_PLUGINS modules, and the registries hooks fill."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy
import regex

from . import config, hookspecs
from .errors import AigcWarning, PluginClashError, PluginError, Terminated

ENTRY_POINT_GROUP = "aigc"
WEIGHTS_SUFFIXES = (".gguf", ".safetensors", ".ckpt", ".bin", ".pt")  # `-m` reads a name ending so (in any case) as a weights file's path
_SUFFIXES = "|".join(suffix[1:] for suffix in WEIGHTS_SUFFIXES)
NAME = re.compile(rf"(?!.*\.(?:{_SUFFIXES})$)[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII | re.I)  # a generator name or model alias: not a path, a weights file, a hub id or a prefixed name
_WEIGHTS = re.compile(rf"[^\W_][\w.-]*(\.(?:{_SUFFIXES}))", re.I)  # a name ending like a weights file: said so, not as a bad name
_ALIAS = regex.compile(rf"(?!.*\.(?:{_SUFFIXES})$)[\p{{L}}\p{{N}}][\p{{L}}\p{{N}}\p{{M}}._-]*", regex.I)  # a model alias may be in any script (a generator's name goes in URLs: ASCII)
HOOKS_STAGE = "hooks"  # a loaded plugin's hook that is never called, or a plugin with none: not a failure to load
MAX_ERROR = 500  # characters of a failure's error kept (pluggy's can hold a whole registry)
DEFAULT_PLUGINS = (
    "aigc.default_plugins.generators",
    "aigc.default_plugins.models",
    "aigc.default_plugins.engines",
    "aigc.default_plugins.templates",
    "aigc.default_plugins.commands",
)


def name_problem(name: Any, alias: bool = False) -> str | None:
    """Why `name` cannot be a generator name (or, `alias`, a model alias) (None: it can), as a clause."""
    weights = _WEIGHTS.fullmatch(name) if isinstance(name, str) else None
    if weights and alias:
        return f"it ends in {weights[1]}, so `-m {name}` is read as the path of a weights file, never as an alias; drop {weights[1]}"
    if weights:
        return f"it ends in {weights[1]}, as a weights file's name does; drop {weights[1]}"
    if alias and isinstance(name, str) and _ALIAS.fullmatch(name):
        return None
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"it must be {'letters, digits (of any script)' if alias else 'ASCII letters, digits'}, '.', '-' and '_' (no spaces, '/' or ':'), starting with a letter or digit"
    return None


@dataclass
class PluginFailure:
    """A plugin that failed to load or raised inside a hook."""

    plugin: str
    stage: str
    error: str
    clash: bool = False  # it registered a name another plugin has: uninstalling either one fixes it

    def message(self) -> str:
        advice = self.advice()
        return f"{self.summary()} ({advice})" if advice else self.summary()

    def summary(self) -> str:
        """What went wrong, without what to do about it."""
        if self.stage in ("AIGC_LOAD_PLUGINS", "AIGC_PLUGINS"):
            return f"{self.stage} names {self.plugin!r}: {self.error.split(': ', 1)[-1]}"
        if self.clash:
            return f"plugin {self.plugin!r} clashes in {self.stage}: {self.error.split(': ', 1)[-1]}"
        if self.stage == HOOKS_STAGE:
            return f"plugin {self.plugin!r} is loaded, but {self.error.removeprefix('PluginError: ')}"
        return f"plugin {self.plugin!r} failed in {self.stage}: {self.error}"

    def advice(self) -> str | None:
        """What to do about it, as a clause; None where the summary says (a bad AIGC_LOAD_PLUGINS or AIGC_PLUGINS)."""
        if self.stage in ("AIGC_LOAD_PLUGINS", "AIGC_PLUGINS"):
            return None
        removal = removal_of(self.plugin)
        if self.clash:
            builtin = any(f"by plugin {name!r}" in self.error for name in DEFAULT_PLUGINS)
            return f"a built-in name: rename it in {self.plugin!r}" + (f", or {removal}" if removal else "") if builtin else "uninstall one of the two plugins"
        return "AIGC_TRACE_PLUGINS=1 shows where" + (f"; {removal}" if removal else "")  # no removal for one registered in-process


def removal_of(plugin: str) -> str | None:
    """How to stop loading plugin `plugin`, as a clause: `aigc plugins uninstall` for a distribution
    pip can remove, else what to change (AIGC_PLUGINS, PYTHONPATH); None for one registered in-process."""
    if plugin in _state.modules:
        return "take it out of AIGC_PLUGINS to stop loading it"
    source = _state.sources.get(plugin)
    if source is None:
        return None
    if source.location and not _in_environment(source.location):
        return f"it is outside aigc's environment, in {source.location}, where `aigc plugins uninstall` cannot remove it: take that directory off PYTHONPATH (or delete the plugin there)"
    return f"`aigc plugins uninstall {plugin}` removes it"


def _in_environment(location: str) -> bool:
    """Whether pip, run by aigc, uninstalls a distribution in `location`: in a virtual environment
    only one inside it (pip's own rule), else any."""
    if sys.prefix == sys.base_prefix:
        return True
    return Path(location).resolve().is_relative_to(Path(sys.prefix).resolve())


@dataclass
class PluginSource:
    """Where an entry-point plugin comes from: its entry point and the distribution that ships it."""

    name: str
    value: str
    distribution: str | None = None
    version: str | None = None
    location: str | None = None  # the directory the distribution's metadata is in


@dataclass
class _State:
    manager: pluggy.PluginManager | None = None
    failures: list[PluginFailure] = field(default_factory=list)
    sources: dict[str, PluginSource] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)  # command name -> plugin
    modules: dict[str, str | None] = field(default_factory=dict)  # AIGC_PLUGINS plugin -> its module's __version__


_state = _State()
_reporter: Callable[[PluginFailure], None] | None = None
_running = threading.local()  # the hooks `call_each` is running in this thread


def _trace(message: str) -> None:
    if config.flag("AIGC_TRACE_PLUGINS"):
        sys.stderr.write(f"[aigc plugins] {message}\n")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    allow = os.environ.get("AIGC_LOAD_PLUGINS")
    allowed = None if allow is None else {name.strip() for name in allow.split(",") if name.strip()}
    # by name, then distribution: which of two clashing plugins loads first does not depend on the file system
    points = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, _source(ep).distribution or ""))
    for name in sorted((allowed or set()) - {ep.name for ep in points}):
        installed = ", ".join(sorted({ep.name for ep in points})) or "none"
        hint = ""
        if name.isidentifier() and _importable(name):  # a plugin's module on PYTHONPATH, not installed
            hint = f"; it is a module aigc can import, but AIGC_LOAD_PLUGINS names installed plugins: AIGC_PLUGINS={name} loads a module as a plugin without installing it, `aigc plugins install -e DIR` installs the one in DIR, editable"
        _record(name, "AIGC_LOAD_PLUGINS", PluginError(f"no installed plugin is called that (installed: {installed}){hint}"))
    _check_collapsed(points)
    for ep in points:
        if allowed is not None and ep.name not in allowed:
            continue
        source = _source(ep)
        if pm.get_plugin(ep.name) is not None:  # another distribution's plugin of this name loaded first, or a built-in's name
            _state.sources.setdefault(source.distribution or source.value, source)  # listed with its version
            _record(source.distribution or source.value, "import", PluginError(
                f"its entry point is called {ep.name!r}, the name of one of aigc's built-in plugins, so it is not loaded; rename the entry point"
            ) if ep.name in DEFAULT_PLUGINS else PluginClashError(
                f"its entry point is called {ep.name!r}, like the plugin of {_label(_state.sources[ep.name])}, which is loaded; so it is not"
            ))
            continue
        _state.sources[ep.name] = source
        _register(pm, ep.name, ep.load)


def _load_modules(pm: pluggy.PluginManager) -> None:
    """AIGC_PLUGINS=a,b (as pytest's PYTEST_PLUGINS): import each module and register it as the plugin
    of its name, isolated as an entry point is, whatever AIGC_LOAD_PLUGINS says: a plugin to try without installing it."""
    given = os.environ.get("AIGC_PLUGINS", "")
    for name in dict.fromkeys(name.strip() for name in given.split(",") if name.strip()):
        if not all(part.isidentifier() for part in name.split(".")):
            _record(name, "AIGC_PLUGINS", PluginError(
                "give the names of modules to import (my_plugin, package.module), not paths or distribution names; the directory a module is in goes on PYTHONPATH"
            ))
            continue
        loaded = pm.get_plugin(name)
        if loaded is not None and loaded is sys.modules.get(name):  # installed too: its entry point loaded this module
            continue
        if loaded is not None:
            _record(name, "AIGC_PLUGINS", PluginClashError(f"a plugin of that name is loaded already ({_label(_state.sources[name]) if name in _state.sources else 'a built-in'}), so the module is not"))
            continue
        _state.modules[name] = None
        module = _register(pm, name, lambda name=name: importlib.import_module(name), again=True)
        if module is not None and pm.get_plugin(name) is not module:  # loaded already, as an installed plugin
            del _state.modules[name]
            continue
        version = getattr(module, "__version__", None)
        _state.modules[name] = version if isinstance(version, str) else None


def _register(pm: pluggy.PluginManager, name: str, load: Callable[[], Any], again: bool = False) -> Any:
    """Load a plugin (`load()`) and register it as `name`, recording (never raising) what fails; the
    plugin, or None when it failed. `again`: one registered already, under another name, is left so."""
    stage = "import"
    started = time.perf_counter()
    try:
        with _prints_to_stderr():  # stdout is for results: a print at import goes with diagnostics
            try:
                module = load()
            finally:
                _trace(f"import {name}: {time.perf_counter() - started:.2f}s")  # what slows every aigc command
        if isinstance(module, type) and any(inspect.isfunction(value) and hasattr(value, "aigc_impl") for klass in module.__mro__ for value in vars(klass).values()):  # its hooks would be called without `self`
            raise PluginError(f"its entry point names the class {module.__name__}; name an instance of it (plugin = {module.__name__}()) or a module of hook functions")
        if again and pm.is_registered(module):
            _trace(f"{name}: loaded already, as plugin {pm.get_name(module)!r}")
            return module
        stage = "hook validation"  # pluggy checks each hook's signature against its spec
        pm.register(module, name=name)
    except Terminated:
        raise
    except (Exception, SystemExit) as exc:  # a broken plugin must never break aigc (nor end it with sys.exit)
        _record(name, stage, exc)
        return None
    _check_hook_names(pm, name, module)
    return module


def _check_collapsed(points: list) -> None:
    """Record the installed distributions with `aigc` entry points that Python does not see because
    the name of their metadata directory reads as another's (`bk-gen-0.1.dist-info` reads as `bk`,
    its name ending at the first '-'): importlib.metadata lists only the first of those."""
    from importlib.metadata import distributions

    loaded = {(_source(ep).distribution or "").lower() for ep in points}
    seen: dict[str, Any] = {}
    for dist in distributions():  # listing only: their metadata is read where two share a name
        key = getattr(dist, "_normalized_name", None)
        if key is None:
            continue
        first = seen.setdefault(key, dist)
        if first is dist:
            continue
        name = dist.metadata["Name"] or ""
        if name.lower() in loaded or not any(ep.group == ENTRY_POINT_GROUP for ep in dist.entry_points):
            continue  # the same distribution twice on sys.path (the first shadows the other), or no plugin
        here = Path(str(getattr(dist, "_path", "")))
        fixed = re.sub(r"[-_.]+", "_", name) + f"-{dist.version}.dist-info"
        _record(name, "import", PluginError(
            f"its metadata directory {here} reads as distribution {key!r}, as {Path(str(getattr(first, '_path', ''))).name} does, so Python "
            f"sees only that one and none of its plugins is loaded; rename the directory {fixed} ('_' in the name, '-' only before the version)"
        ))


def _importable(module: str) -> bool:
    """Whether top-level `module` can be imported (found, not imported)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _source(ep: Any) -> PluginSource:
    dist = getattr(ep, "dist", None)
    locate = getattr(dist, "locate_file", None)
    return PluginSource(
        name=ep.name,
        value=str(getattr(ep, "value", "")),
        distribution=getattr(dist, "name", None) if dist else None,
        version=getattr(dist, "version", None) if dist else None,
        location=str(locate("")) if callable(locate) else None,
    )


def _label(source: PluginSource) -> str:
    return " ".join(filter(None, (source.distribution or source.value, source.version)))


def distribution_of(name: str) -> str | None:
    """The distribution that ships the entry-point plugin `name`, loaded or not (AIGC_LOAD_PLUGINS
    plays no part); of two that ship one name, the one aigc loads."""
    from importlib.metadata import entry_points

    shipping = sorted(_source(ep).distribution or "" for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name)  # as they load
    return (shipping[0] or None) if shipping else None


def plugins_of(distribution: str) -> list[str]:
    """The entry-point plugins that `distribution` ships (what uninstalling it removes)."""
    from importlib.metadata import entry_points

    wanted = distribution.lower().replace("_", "-")
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if (_source(ep).distribution or "").lower().replace("_", "-") == wanted)


def _check_hook_names(pm: pluggy.PluginManager, name: str, plugin: Any) -> None:
    """A hookimpl that no hookspec declares (a misspelled hook; what pluggy's `check_pending` finds),
    or a hook function without `@hookimpl`, would never be called: record it. A plugin with no
    hook at all, and none of those mistakes to explain it, adds nothing: record that too."""
    import difflib

    known = sorted(hook for hook, caller in vars(pm.hook).items() if caller.has_spec())
    callers = pm.get_hookcallers(plugin) or []
    recorded = len(_state.failures)
    for caller in callers:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the hooks: {', '.join(known)}"
            _record(name, HOOKS_STAGE, PluginError(f"{caller.name!r} is not an aigc hook, so it is never called; {hint}"))
    marked = {caller.name for caller in callers}
    for attribute in sorted(set(dir(plugin)) - marked):
        close = difflib.get_close_matches(attribute, known, n=1, cutoff=0.85) if attribute.startswith("register_") else []
        if attribute in known and callable(getattr(plugin, attribute, None)):
            _record(name, HOOKS_STAGE, PluginError(f"{attribute} is not marked @aigc.hookimpl, so it is never called; put @hookimpl above it"))
        elif close and close[0] not in marked and callable(getattr(plugin, attribute, None)) and _defined_in(plugin, getattr(plugin, attribute)):  # a misspelt hook without @hookimpl
            _record(name, HOOKS_STAGE, PluginError(f"{attribute} is not an aigc hook, so it is never called; did you mean {close[0]} (with @aigc.hookimpl above it)?"))
    if not any(caller.has_spec() for caller in callers) and len(_state.failures) == recorded:
        target = getattr(plugin, "__name__", type(plugin).__name__)
        should = "AIGC_PLUGINS should name the module" if name in _state.modules else "its entry point should name the module (or object)"
        _record(name, HOOKS_STAGE, PluginError(
            f"{target} implements no aigc hook, so the plugin adds nothing; {should} with the @aigc.hookimpl functions, named as the hooks: {', '.join(known)}"
        ))


def _defined_in(plugin: Any, function: Any) -> bool:
    """Whether a module plugin's function is its own (not imported from elsewhere); any method of an object."""
    return not isinstance(plugin, type(sys)) or getattr(function, "__module__", None) == plugin.__name__


def _record(plugin: str, stage: str, exc: BaseException) -> None:
    error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the exception says
    failure = PluginFailure(plugin, stage, error if len(error) <= MAX_ERROR else error[: MAX_ERROR - 3] + "...", isinstance(exc, PluginClashError))
    if failure not in _state.failures:
        _state.failures.append(failure)
        if _reporter:
            _reporter(failure)
        else:  # the library: a warning the caller's warning filters control, shown at the caller's line
            warnings.warn(failure.message(), AigcWarning, stacklevel=outside_aigc())
    _trace("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def outside_aigc() -> int:
    """The `stacklevel` of the first frame outside aigc (and pluggy, importlib) for a warning
    raised by this module's caller: where the caller's own code called aigc."""
    inside = (str(Path(__file__).parent) + os.sep, str(Path(pluggy.__file__).parent) + os.sep, "<frozen importlib")
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def set_reporter(report: Callable[[PluginFailure], None] | None) -> None:
    """Call `report(failure)` once for each plugin failure, those already recorded included (the CLI
    warns on stderr with it). Without a reporter each failure is an `AigcWarning`."""
    global _reporter
    _reporter = report
    if report:
        for failure in _state.failures:
            report(failure)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading built-ins and entry points on first use."""
    if _state.manager is None:
        pm = pluggy.PluginManager("aigc")
        pm.add_hookspecs(hookspecs)
        for name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
        _state.manager = pm
        _load_entry_points(pm)
        _load_modules(pm)
    return _state.manager


def failures() -> list[PluginFailure]:
    """Plugins that failed to load or raised in a hook so far."""
    get_plugin_manager()
    return list(_state.failures)


def call_each(hook_name: str, before: Callable[[str], None] | None = None, **kwargs: Any) -> None:
    """Call every implementation of a hook on its own, so one failing plugin cannot stop the rest.

    Built-ins run first (whatever a plugin marks, so none takes a built-in name), then plugins marked
    `tryfirst`, the others in the order they loaded, and those marked `trylast`; ``before(plugin_name)`` is called ahead of each
    implementation. What a hook prints in the main thread goes to stderr: stdout is for results.
    """
    hook = getattr(get_plugin_manager().hook, hook_name)
    running = _running.__dict__.setdefault("hooks", set())
    if hook_name in running:  # raised in the plugin's hook, so recorded as its failure
        raise PluginError(f"while its {hook_name} hook runs, it asks aigc for what the {hook_name} hooks register, which would run them again without end; do not look that up inside the hook")
    running.add(hook_name)
    try:
        for impl in sorted(hook.get_hookimpls(), key=lambda impl: (impl.plugin_name not in DEFAULT_PLUGINS, 0 if impl.tryfirst else 2 if impl.trylast else 1)):
            _trace(f"{hook_name} -> {impl.plugin_name}")
            if before:
                before(impl.plugin_name)
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                with _prints_to_stderr():
                    returned = impl.function(**args)
            except Terminated:
                raise
            except (Exception, SystemExit) as exc:
                _record(impl.plugin_name, hook_name, exc)
                continue
            if impl.hookwrapper or impl.wrapper:
                _record(impl.plugin_name, hook_name, PluginError("it is a hook wrapper, which aigc never runs: each hook implementation is called on its own"))
            elif inspect.isgenerator(returned):  # its body has not run at all
                returned.close()
                _record(impl.plugin_name, hook_name, PluginError("it is a generator function (it uses yield), so its body never ran: call register(...) for each item instead of yielding"))
            elif returned is not None:  # llm's plugins return what they add; aigc's hooks take it through their arguments
                _record(impl.plugin_name, hook_name, PluginError(f"it returned {type(returned).__name__}, which is ignored: aigc hooks return nothing (call register(...) for each item)"))
    finally:
        running.discard(hook_name)


def _prints_to_stderr() -> contextlib.AbstractContextManager:
    """What a hook prints goes to stderr, in the main thread (sys.stdout is one for the whole process:
    swapped in worker threads that look generators up at once, it would not come back)."""
    main = threading.current_thread() is threading.main_thread()
    return contextlib.redirect_stdout(sys.stderr) if main else contextlib.nullcontext()


def sources() -> dict[str, PluginSource]:
    """Entry-point plugins seen at load time (loaded or failed), by name."""
    get_plugin_manager()
    return dict(_state.sources)


def modules() -> dict[str, str | None]:
    """AIGC_PLUGINS's modules (loaded or failed) by plugin name, with their `__version__`."""
    get_plugin_manager()
    return dict(_state.modules)


def hooks_of(name: str) -> list[str]:
    """The hooks a registered plugin implements."""
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is None:
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if caller.has_spec())  # a misspelt one is a failure


def _command_names(app: Any) -> list[tuple[str, list, Any]]:
    """(name, list it sits in, entry) for every command and command group at a Typer app's top
    level; the commands of a group added without a name are at the top level too (Typer merges them)."""
    from typer.main import get_command_name, solve_typer_info_defaults

    found = []
    for info in app.registered_commands:
        name = info.name or (get_command_name(info.callback.__name__) if info.callback else "")
        found.append((name, app.registered_commands, info))
    for info in app.registered_groups:
        name = solve_typer_info_defaults(info).name if info.typer_instance is not None else info.name
        if isinstance(name, str) and name:
            found.append((name, app.registered_groups, info))
        elif info.typer_instance is not None:
            found += _command_names(info.typer_instance)
    return found


def _build_problem(entry: Any, group: bool) -> PluginError | None:
    """Why typer cannot build a command (or, `group`, a command group) a plugin added; None when it can."""
    import typer
    from typer.main import get_group

    alone = typer.Typer()
    (alone.registered_groups if group else alone.registered_commands).append(entry)
    try:
        with warnings.catch_warnings():  # typer's own warnings come when it builds the CLI to run it
            warnings.simplefilter("ignore")
            get_group(alone)
    except Exception as exc:  # noqa: BLE001 - an annotation that does not resolve, a callback that is no function...
        name = getattr(entry, "name", None) or getattr(getattr(entry, "callback", None), "__name__", None)
        kind = "command group" if group else "command"
        what = f"the {kind} {name!r}" if isinstance(name, str) else f"a {kind}"
        return PluginError(f"typer cannot build {what} it added, so it is left out: {type(exc).__name__}: {exc}")
    return None


def _nameless_with_callback(entry: Any) -> bool:
    """Whether a command group added to the app has no name (its commands join the top level) and a callback."""
    from typer.main import solve_typer_info_defaults

    solved = solve_typer_info_defaults(entry)
    return not solved.name and solved.callback is not None


def register_commands(app: Any) -> dict[str, str]:
    """Run every `register_commands` hook on `app` (a `typer.Typer`), one plugin at a time.

    A command name that an earlier plugin already added is a clash: the later command is removed,
    and the failure names both plugins; a plugin's command typer cannot build is removed and recorded. Returns `{command name: plugin}`.
    """
    owners: dict[str, str] = {}
    seen = {id(entry): entry for _, _, entry in _command_names(app)}  # held, so no later entry gets a seen id
    current = {"plugin": ""}
    root = {"callback": app.registered_callback}  # aigc's: set before any plugin runs

    def claim_new() -> None:
        if app.registered_callback is not root["callback"]:  # it would take aigc's global options (--version, -v, -q) and run before every command
            app.registered_callback = root["callback"]
            _record(current["plugin"], "register_commands", PluginError("it set the app's own callback (app.callback()), which is aigc's; it is ignored: give your commands their own callbacks"))
        if current["plugin"] not in DEFAULT_PLUGINS:  # typer builds every command at each run: one it cannot build would stop them all
            for holder in (app.registered_commands, app.registered_groups):
                for entry in [entry for entry in holder if id(entry) not in seen]:
                    problem = _build_problem(entry, holder is app.registered_groups)
                    if problem:
                        seen[id(entry)] = entry
                        holder.remove(entry)
                        _record(current["plugin"], "register_commands", problem)
                    elif holder is app.registered_groups and _nameless_with_callback(entry):
                        entry.callback = None  # typer never runs it, and would warn of it (naming no plugin) at every run
                        _record(current["plugin"], "register_commands", PluginError(
                            "it added a command group without a name (app.add_typer(group)) that has a callback: typer never runs that callback, "
                            "so it is dropped; give the group a name (app.add_typer(group, name=...)) or do the callback's work in its commands"
                        ))
        for name, holder, entry in _command_names(app):
            if id(entry) in seen:
                continue
            seen[id(entry)] = entry
            if name in owners and owners[name] != current["plugin"]:
                holder.remove(entry)
                _record(current["plugin"], "register_commands", clash("command", name, owners[name], current["plugin"]))
            else:
                owners[name] = current["plugin"]

    def before(plugin: str) -> None:
        claim_new()  # what the previous plugin added
        current["plugin"] = plugin

    call_each("register_commands", before=before, app=app)
    claim_new()
    _state.commands = dict(owners)
    return owners


def command_owner(command: str) -> str | None:
    """The entry-point plugin that added CLI command `command`; None for aigc's own."""
    owner = _state.commands.get(command)
    return owner if owner and owner not in DEFAULT_PLUGINS else None


def clash(kind: str, name: str, first: str, later: str) -> PluginError:
    return PluginClashError(f"{kind} {name!r} is already registered by plugin {first!r}; the one from {later!r} is ignored")


def record_clash(stage: str, kind: str, name: str, first: str, later: str) -> None:
    """Record that plugin `later` registered, in hook `stage`, a `kind` name that `first` has."""
    _record(later, stage, clash(kind, name, first, later))


def record_problem(plugin: str, stage: str, problem: str) -> None:
    """Record (and so report once) a problem of plugin `plugin` in hook `stage` that does not stop
    what it registered from working."""
    _record(plugin, stage, PluginError(problem))


def collect(
    hook_name: str, key: Callable[[Any], str] | None, kind: str, check: Callable[[Any], str | None] | None = None
) -> dict[str, tuple[str, Any]]:
    """Run a ``register`` hook and return ``{name: (plugin, item)}``. A name that an earlier plugin
    (built-ins come first) already registered keeps the first; the later one is a recorded failure.
    ``check(item)`` says what is wrong with an item (None when nothing): such items are recorded
    failures too, and the plugin's other items still count."""
    found: dict[str, tuple[str, Any]] = {}
    current = {"plugin": ""}

    def register(*item: Any, **keywords: Any) -> None:
        value = item[0] if len(item) == 1 else item
        problem = check(value) if check else None
        if keywords:  # register(alias=..., source=...): say what it takes (the check's first clause)
            usage = (problem or "").split(", got ")[0]
            problem = f"register() takes no keyword arguments ({', '.join(keywords)})" + (f"; {usage}" if usage else "")
        if problem:
            _record(current["plugin"], hook_name, PluginError(problem))
            return
        name = key(value) if key else str(value)
        if name in found and found[name][0] != current["plugin"]:
            _record(current["plugin"], hook_name, clash(kind, name, found[name][0], current["plugin"]))
            return
        found[name] = (current["plugin"], value)

    def enter(plugin: str) -> None:
        current["plugin"] = plugin

    call_each(hook_name, before=enter, register=register)
    return found


def reset() -> None:
    """Forget the plugin manager and what was built from it (tests register plugins and start over)."""
    from .template_environment import forget_environment

    forget_environment()  # its filters came from `prepare_jinja_env`, whose failures are forgotten too
    _state.manager = None
    _state.failures.clear()
    _state.sources.clear()
    _state.modules.clear()


def describe(include_builtins: bool = False) -> dict[str, Any]:
    """What `aigc plugins` shows: every plugin with its version, hooks, what it registered (its
    templates in use: a broken one is a failure), the built-in templates its own replace and its
    failures (clashes included), plus entry points that failed to load.

    Built-in plugins are listed only with `include_builtins`.
    """
    from .engine.models import registered_models
    from .engine.schemes import registered_engines
    from .generators.base import registered_generators
    from .template_environment import environment
    from .templates import plugin_templates, registered_template_dirs, scan

    pm = get_plugin_manager()
    env = environment()  # runs `prepare_jinja_env`, so its failures show too
    scan()  # so do templates of one name in two plugins' directories
    usable = plugin_templates()  # not a plugin's broken template: it is one of its failures
    registered: dict[str, dict[str, list[str]]] = {}

    def gather(kind: str, fetch: Callable[[], dict[str, tuple[str, Any]]]) -> None:
        for name, (plugin, _) in fetch().items():
            registered.setdefault(plugin, {}).setdefault(kind, []).append(name)

    gather("generators", registered_generators)
    gather("models", registered_models)
    gather("engines", lambda: {f"{scheme}:": item for scheme, item in registered_engines().items()})
    gather("template_dirs", registered_template_dirs)
    replacing: dict[str, list[str]] = {}  # plugin -> the built-in templates its own replace
    for plugin, kinds in registered.items():
        in_use = {name: replaces for directory in kinds.get("template_dirs", []) for name, replaces in usable.get(Path(directory), {}).items()}
        if in_use:
            kinds["templates"] = list(in_use)
            replacing[plugin] = sorted(name for name, replaces in in_use.items() if replaces)
    for command, plugin in _state.commands.items():
        registered.setdefault(plugin, {}).setdefault("commands", []).append(command)
    for (kind, name), plugin in env.aigc_owners.items():
        registered.setdefault(plugin, {}).setdefault(f"jinja_{kind}s", []).append(name)

    from . import __version__

    rows = []
    names = [name for name, plugin in pm.list_name_plugin() if plugin is not None]
    names += [name for name in _state.sources if name not in names]  # entry points that failed to load
    names += [name for name in _state.modules if name not in names]  # AIGC_PLUGINS modules that failed to load
    names += list(dict.fromkeys(f.plugin for f in _state.failures if f.plugin not in names and f.stage not in ("AIGC_LOAD_PLUGINS", "AIGC_PLUGINS")))  # a clashing entry point's distribution
    for name in names:
        builtin = name in DEFAULT_PLUGINS
        if builtin and not include_builtins:
            continue
        source = _state.sources.get(name)
        rows.append(
            {
                "name": name,
                "builtin": builtin,
                "loaded": pm.get_plugin(name) is not None,
                "distribution": "aigc" if builtin else (source.distribution if source else None),
                "version": __version__ if builtin else (source.version if source else _state.modules.get(name)),
                "entry_point": source.value if source else None,
                "aigc_plugins": name in _state.modules,  # loaded from AIGC_PLUGINS, not installed
                "hooks": hooks_of(name),
                "registered": {kind: sorted(items) for kind, items in sorted(registered.get(name, {}).items())},
                "replaces_builtin_templates": replacing.get(name, []),
                "failures": [{"stage": f.stage, "error": f.error} for f in _state.failures if f.plugin == name],
            }
        )
    return {"plugins": rows}
