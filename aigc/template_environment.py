"""The sandboxed jinja2 environment every template renders in, with the filters and globals plugins add."""

from __future__ import annotations

import inspect
import threading
from functools import lru_cache, wraps
from typing import Any, Callable

from .errors import AigcError, BadInputError, PluginError

_built: dict[str, Any] = {}  # the environment, and the plugins it was built with
_building = threading.RLock()  # batch workers render at once: one builds it (a hook may render)


def environment():
    """The sandboxed jinja2 environment; plugins add filters and globals through `prepare_jinja_env`.
    Built again when the registered plugins change (one registered at run time adds its filters)."""
    from .plugins import get_plugin_manager

    plugins = [plugin for _, plugin in get_plugin_manager().list_name_plugin()]
    with _building:
        built = _built.get("plugins")
        if built is None or len(built) != len(plugins) or any(a is not b for a, b in zip(built, plugins)):
            _built.update(env=_environment(), plugins=plugins)
        return _built["env"]


def forget_environment() -> None:
    """Build the environment anew at its next use (the plugin manager was reset)."""
    _built.clear()


def _environment() -> Any:
    from jinja2 import FunctionLoader, StrictUndefined

    from .plugins import call_each

    env = _sandbox(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False, loader=FunctionLoader(_no_other_files))
    owner: dict[tuple[str, str], str] = {}  # (filter or global, name) -> the plugin that added it
    turn: dict[str, Any] = {"plugin": None}

    def settle() -> None:
        """A filter or global the plugin just run replaced, that an earlier plugin set, is put back
        (replacing one of jinja2's own makes it the plugin's)."""
        for kind, table in (("filter", env.filters), ("global", env.globals)):
            for name, value in list(table.items()):
                if not isinstance(name, str):  # no template can use it, and `aigc plugins` sorts the names
                    from .plugins import record_problem

                    del table[name]
                    record_problem(turn["plugin"], "prepare_jinja_env", f"jinja {kind} {name!r}: a {kind}'s name is text (a name templates can use); it is left out")
                    continue
                old = turn["before"][kind].get(name, _UNSET)
                if old is not _UNSET and value is old:
                    continue
                if (kind, name) in owner and old is not _UNSET:
                    from .plugins import record_clash

                    record_clash("prepare_jinja_env", f"jinja {kind}", name, owner[kind, name], turn["plugin"])
                    table[name] = old
                else:
                    owner[kind, name] = turn["plugin"]
                    if inspect.isroutine(value):  # not classes or callable objects: wrapping would change them
                        table[name] = _blamed(value, f"jinja {kind} {name!r} of plugin {turn['plugin']!r}")

    def before(plugin: str) -> None:
        if turn["plugin"] is not None:
            settle()
        turn.update(plugin=plugin, before={"filter": dict(env.filters), "global": dict(env.globals)})

    call_each("prepare_jinja_env", before=before, env=env)
    if turn["plugin"] is not None:
        settle()
    env.aigc_owners = owner  # for `aigc plugins`: which plugin added which filter or global
    return env


def _no_other_files(name: str) -> None:
    """The loader: a template is one file, so `{% include %}`, `{% import %}` and `{% extends %}` say so
    (without one, jinja2's error is "TypeError: no loader for this environment specified")."""
    raise BadInputError(f"a template cannot include, import or extend another file ({name!r}); put the text it needs in the template itself (a {{% macro %}} there for a part used twice)")


_UNSET = object()
MAX_SIZE = 100_000  # characters or items of a string or list, bits of an integer, made by `*` or `**` (as jinja2's MAX_RANGE)


def _sandbox(**options):
    """jinja2's sandbox, where a `*` or `**` that would make a huge result (`"x" * 10**10`) is refused
    before it runs, as a huge `range()` is."""
    from jinja2.sandbox import SandboxedEnvironment

    class Sandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})  # also keeps them from being folded when compiled

        def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
            size, unit = _result_size(operator, left, right)
            if size > MAX_SIZE:
                raise OverflowError(f"Result too big. {operator} would make {size} {unit}; the sandbox blocks more than MAX_SIZE ({MAX_SIZE}).")
            return super().call_binop(context, operator, left, right)

    return Sandbox(**options)


def _result_size(operator: str, left: Any, right: Any) -> tuple[int, str]:
    """How big `left operator right` would be: bits of an integer, characters or items of a repeated
    string or list (0 for anything else)."""
    if isinstance(left, int) and isinstance(right, int):
        if operator == "**":
            return (right * (abs(left) - 1).bit_length() if left else 0), "bits"
        return left.bit_length() + right.bit_length(), "bits"
    for sequence, count in ((left, right), (right, left)):
        if operator == "*" and isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
            return len(sequence) * count, "characters" if isinstance(sequence, str) else "items"
    return 0, ""


def _blamed(function: Callable, what: str) -> Callable:
    """`function` (a plugin's jinja filter or global) whose failures become a `PluginError` naming it."""
    from jinja2.exceptions import TemplateError

    @wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (AigcError, TemplateError):  # the template's own fault (an undefined variable) stays the template's
            raise
        except Exception as exc:
            raise PluginError(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    return call


@lru_cache(maxsize=256)
def variables_read(text: str) -> frozenset[str]:
    """The variables template text reads from its caller."""
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(environment().parse(text)))


MAX_RENDERED = 1_000_000  # characters a template may write beyond the text of the values it is given


def render_bounded(compiled, values: dict[str, Any]) -> str:
    """A compiled template's text, stopped once it writes `MAX_RENDERED` characters more than its
    values hold: each range is bounded, nested loops multiply them (a shared template grew without end)."""
    limit = MAX_RENDERED + sum(len(str(value)) for value in values.values())
    pieces, size = [], 0
    for piece in compiled.generate(**values):
        size += len(piece)
        if size > limit:
            raise OverflowError(f"Result too big: the template wrote more than {limit} characters, {MAX_RENDERED} beyond its variables'; the sandbox stops it")
        pieces.append(piece)
    return "".join(pieces)


@lru_cache(maxsize=256)
def compile_text(env, text: str):
    """Each template text compiled once per environment (a new environment starts afresh)."""
    return env.from_string(text)
