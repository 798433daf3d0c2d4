"""The sandboxed jinja2 environment every template renders in, with the filters and globals plugins add."""

from __future__ import annotations

import inspect
import re
import sys
import threading
import time
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any, Callable

from .errors import AigcError, PluginError

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

    env = _sandbox(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False, loader=FunctionLoader(_other_template))
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


def _other_template(name: str) -> tuple[str, str, Callable[[], bool]]:
    """The loader of `{% include %}`, `{% import %}` and `{% extends %}`: the template `templates.included`
    finds, its text without its front matter, rendered in the same sandbox. Read again when its file
    changes, or the name comes to find another file (an override added or removed)."""
    from .templates import included, path_of

    template = included(name)
    stamp = _stamp(template.path)
    return template.body, str(template.path), lambda: _stamp(template.path) == stamp and path_of(name) == template.path


def _stamp(path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


_UNSET = object()
MAX_SIZE = 100_000  # characters or items of a string or list, bits of an integer, made by `*` or `**` (as jinja2's MAX_RANGE)
MAX_RENDERED = 1_000_000  # characters a template may write, or hold in one value it builds, beyond the text of the values it is given
MAX_MADE = 50_000_000  # characters, items or bits the values it built and still holds may hold together, beyond 10 times its values' text
_TRACKED = 1024  # a value built at least this big is counted until the template lets go of it; a smaller one for good
MAX_STEPS = 1_000_000  # loop iterations and calls one render may take, beyond one a character of its values
MAX_SECONDS = 30  # and the time it may take (a step that filters a big value is one step, however slow)

_budget: ContextVar[_Budget | None] = ContextVar("aigc_render_budget", default=None)


class _Budget:
    """What one render may still build and do: a shared template (`aigc run ./shared.j2`) is code that
    others run, so it must end, in bounded memory, whatever it tries."""

    def __init__(self, given: int) -> None:
        self.largest = MAX_RENDERED + given  # characters or items of the text written, or of one value built
        self.made = MAX_MADE + 10 * given
        self.held: list[tuple[int, Any]] = []  # the big values built and what each was counted for, until only this holds it
        self.steps = MAX_STEPS + given
        self.deadline = time.monotonic() + MAX_SECONDS

    def fits(self, size: int, what: str) -> None:
        """Refuse a value of `size` that `what` is about to build, past the largest one a render may hold."""
        if size > self.largest:
            raise OverflowError(f"Result too big: {what} would make {size} characters or items, more than {self.largest}, {MAX_RENDERED} beyond the variables'; the sandbox stops it")

    def make(self, value: Any, what: str) -> Any:
        """`value`, just built by `what`, counted against all a render may hold (a big one until the
        template lets go of it: `ns.acc = ns.acc ~ line` in a loop holds one `acc` at a time)."""
        size = _size(value)
        self.fits(size, what)
        self.made -= size
        if size >= _TRACKED:
            self.held.append((size, value))
        if self.made < 0:
            self._let_go()
        if self.made < 0:
            raise OverflowError(f"Result too big: the template holds more than {MAX_MADE} characters, items or bits it built, beyond 10 times its variables'; the sandbox stops it")
        return value

    def _let_go(self) -> None:
        """Give back what the big values the template no longer holds were counted for."""
        held, self.held = self.held, []
        while held:
            size, value = held.pop()
            if sys.getrefcount(value) > _ALONE:
                self.held.append((size, value))
            else:
                self.made += size  # what it was counted for (a list may have grown since)
        self.held.reverse()

    def step(self) -> None:
        """Count one loop iteration or call."""
        self.steps -= 1
        if self.steps < 0:
            raise OverflowError(f"Too much work: the template took more than {MAX_STEPS} loop iterations and calls beyond one a character of its variables; the sandbox stops it")
        if not self.steps % 1000 and time.monotonic() > self.deadline:
            raise OverflowError(f"Too much work: the template ran for more than {MAX_SECONDS} seconds; the sandbox stops it")


def _refs_alone() -> int:
    """The references `_Budget._let_go` sees to a value nothing else holds."""
    held = [(0, object())]
    _, value = held.pop()
    return sys.getrefcount(value)


_ALONE = _refs_alone()


def _current() -> _Budget:
    """The running render's budget (outside `render_bounded`, a fresh one: each value is bounded, not the sum)."""
    return _budget.get() or _Budget(0)


def _sandbox(**options):
    """jinja2's sandbox, where what a template builds is bounded before it is built (a `*` or `**` past
    `MAX_SIZE`, as a huge `range()` is; a `+`, `~`, `%`, filter or method past the render's `_Budget`),
    and each loop iteration and call is a step of the render."""
    from jinja2.compiler import CodeGenerator
    from jinja2.exceptions import SecurityError
    from jinja2.runtime import LoopContext, markup_join, str_join
    from jinja2.sandbox import SandboxedEnvironment
    from jinja2.utils import generate_lorem_ipsum

    class Generator(CodeGenerator):
        """jinja2's compiler, with each `{% for %}` iterating through `counted` and `~` joining through `Sandbox.joined`."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.iterables: set[int] = set()  # the `{% for %}` iterables, by id (jinja2 allows no node of one's own)

        def visit_For(self, node, frame) -> None:
            self.iterables.add(id(node.iter))
            super().visit_For(node, frame)

        def visit(self, node, *args, **kwargs) -> Any:
            if id(node) not in self.iterables:
                return super().visit(node, *args, **kwargs)
            self.write("environment.counted(")
            super().visit(node, *args, **kwargs)
            self.write(")")

        def visit_Concat(self, node, frame) -> None:
            self.write("environment.joined((")
            for part in node.nodes:
                self.visit(part, frame)
                self.write(", ")
            self.write("), context.eval_ctx)")

    class Sandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})  # also keeps them from being folded when compiled
        code_generator_class = Generator

        def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
            budget = _current()
            if operator == "+":
                budget.fits(_size(left) + _size(right), "+")
            elif operator == "%" and isinstance(left, str):
                budget.fits(_formatted_size(left, right), "%")
            elif operator != "%":
                size, unit = _result_size(operator, left, right)
                if size > MAX_SIZE:
                    raise OverflowError(f"Result too big. {operator} would make {size} {unit}; the sandbox blocks more than MAX_SIZE ({MAX_SIZE}).")
            return budget.make(super().call_binop(context, operator, left, right), operator)

        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            """Not `str.encode` nor anything of bytes: templates work on text, and bytes are not bounded here."""
            if (attr == "encode" and isinstance(obj, str)) or isinstance(obj, (bytes, bytearray)):
                return False
            return super().is_safe_attribute(obj, attr, value)

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            if not isinstance(obj, (str, bytes, bytearray)):
                return super().unsafe_undefined(obj, attribute)
            return self.undefined(f"templates work on text, not bytes: {type(obj).__name__}.{attribute} is not available in a template", name=attribute, obj=obj, exc=SecurityError)

        def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (as jinja2's)
            budget = _current()
            budget.step()
            if isinstance(__obj, LoopContext) and args:  # `loop(children)` of a recursive loop
                args = (__self.counted(args[0]), *args[1:])
            method = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
            target = getattr(method, "__self__", None)
            given = {key: value for key, value in kwargs.items() if key not in ("_loop_vars", "_block_vars")}  # jinja2's own
            if isinstance(target, (str, list)):
                args = _method_fits(budget, target, getattr(method, "__name__", ""), args, given)
            elif __obj is generate_lorem_ipsum:
                budget.fits(_lorem_size(*args, **given), "lipsum")
            result = super().call(__context, __obj, *args, **kwargs)
            if isinstance(target, (str, list)):
                budget.make(result, getattr(method, "__name__", "a call"))
            return result

        def concat(self, pieces) -> str:
            """What a macro, `{% set %}` or `{% filter %}` block wrote, counted before it is joined."""
            pieces = list(pieces)
            _current().fits(sum(map(len, pieces)), "a block")
            return _current().make("".join(pieces), "a block")

        def joined(self, parts: tuple, eval_ctx) -> str:
            """`a ~ b`, counted before it is joined (joined as jinja2 does)."""
            _current().fits(sum(map(_text_size, parts)), "~")
            return _current().make((markup_join if eval_ctx.volatile or eval_ctx.autoescape else str_join)(parts), "~")

        @staticmethod
        def counted(iterable: Any):
            """`iterable`, each item a step of the render."""
            budget = _current()
            for item in iterable:
                budget.step()
                yield item

    env = Sandbox(**options)
    for name, function in list(env.filters.items()):
        env.filters[name] = _bounded_filter(name, function)
    return env


def _size(value: Any) -> int:
    """Characters of a string, items of a collection, bits of an integer (0 for anything else)."""
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return len(value)
    return value.bit_length() if isinstance(value, int) else 0


def _text_size(value: Any) -> int:
    """Characters of `value` as text (what `~` and `join` make of it)."""
    return len(value) if isinstance(value, str) else len(str(value))


def _replaced_size(text: str, old: str, new: str, count: Any = None) -> int:
    """Characters of `text.replace(old, new, count)`, counted without making it."""
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?|\{[^{}]*:([^{}]*\{?)")


def _formatted_size(template: str, values: Any) -> int:
    """A bound on `template` filled with `values` (`%`, `|format`, `.format`): its text, theirs, and the
    widths and precisions it names, or takes from the values (`%*d`, `{:{}}`)."""
    values = list(values.values()) if isinstance(values, dict) else list(values) if isinstance(values, (tuple, list)) else [values]
    size = len(template) + sum(map(_text_size, values))
    for width, precision, spec in _SPEC.findall(template):
        size += sum(int(number) for number in re.findall(r"\d+", width + " " + precision + " " + spec))
        if "*" in width + precision or "{" in spec:
            size += sum(abs(value) for value in values if isinstance(value, int))
    return size


def _refuse(message: str) -> None:
    """Stop a template that asks for what the sandbox cannot bound before it is built."""
    from jinja2.exceptions import SecurityError

    raise SecurityError(message)


_ITEM_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\{[^{}]*[\[.]")  # `{0:{1[0]}}`: a width or precision taken from an item or attribute


def _plain_widths(template: str) -> str:
    """`template` (for `.format`), refused where a width or precision comes from inside a value, which
    `_formatted_size` cannot see before it is built."""
    if found := _ITEM_WIDTH.search(template):
        _refuse(f"a width or precision in .format() comes from a value's item or attribute ({found.group()}...); in a template give it as a value of its own, as in '{{0:{{1}}}}'.format(text, width)")
    return template


def _table_values(table: Any) -> Any:
    """What `str.translate` may put for each character: a dict's values, a list's or string's items."""
    if isinstance(table, dict):
        return table.values()
    if isinstance(table, (list, tuple, str)):
        return table
    _refuse(f"str.translate in a template takes a dict or a list as its table, not a {type(table).__name__}")


def _tojson_size(value: Any, indent: Any = None) -> int:
    """No size (the filter's result is counted when made), but an indent refused past 16 spaces: each level of each item repeats it."""
    if len(indent) > 16 if isinstance(indent, str) else isinstance(indent, int) and indent > 16:
        _refuse(f"tojson's indent is at most 16 in a template, not {indent!r}")
    return 0


def _lorem_size(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> int:  # noqa: A002 (jinja2's names)
    """At most the characters of `lipsum(n, html, min, max)`: n paragraphs of `max` words."""
    return n * (max * 15 + 20)


def _method_fits(budget: _Budget, target: str | list, name: str, args: tuple, kwargs: dict) -> tuple:
    """Refuse a str or list method call that would build a value past the render's bound, before it runs;
    its arguments (an iterator `join` reads is read once, here)."""
    if name == "join" and args and not isinstance(args[0], (str, list, tuple)):
        args = (list(args[0]), *args[1:])
    sizes = {
        "center": lambda width, *_: width, "ljust": lambda width, *_: width, "rjust": lambda width, *_: width, "zfill": lambda width: width,
        "expandtabs": lambda tabsize=8: target.count("\t") * tabsize,
        "replace": lambda old, new, count=-1: _replaced_size(target, old, new, count),
        "join": lambda items: sum(map(_text_size, items)) + len(target) * max(len(items) - 1, 0),
        "format": lambda *values, **named: _formatted_size(_plain_widths(target), [*values, *named.values()]),
        "format_map": lambda values: _formatted_size(_plain_widths(target), dict(values)),
        "translate": lambda table: len(target) * max([len(value) for value in _table_values(table) if isinstance(value, str)] + [1]),
        "extend": lambda items: len(target) + (len(items) if hasattr(items, "__len__") else 0),
    }
    if name in sizes and isinstance(target, str) != (name == "extend"):
        try:
            size = sizes[name](*args, **kwargs)
        except (TypeError, ValueError, AttributeError):  # the call itself will say what is wrong
            return args
        budget.fits(size if isinstance(size, int) else 0, name)
    return args


_FILTER_SIZES: dict[str, Callable] = {  # the size each of jinja2's filters that can build more than it is given would build
    "replace": lambda s, old, new, count=None: _replaced_size(str(s), str(old), str(new), count),
    "join": lambda items, d="", attribute=None: sum(map(_text_size, items)) + len(str(d)) * max(len(items) - 1, 0),
    "center": lambda value, width=80: max(len(str(value)), width),
    "indent": lambda s, width=4, *_, **__: len(str(s)) + (len(width) if isinstance(width, str) else width) * (str(s).count("\n") + 1),
    "format": lambda value, *values, **named: _formatted_size(str(value), [*values, *named.values()]),
    "wordwrap": lambda s, width=79, break_long_words=True, wrapstring=None, *_, **__: len(str(s)) + len(wrapstring or "\n") * (len(str(s)) // max(width, 1) + len(str(s).split()) + 1),
    "batch": lambda value, linecount, fill_with=None: linecount,
    "slice": lambda value, slices, fill_with=None: slices,
    "tojson": _tojson_size,
    "sum": lambda items, attribute=None, start=0: (_size(start) + sum(map(_size, items))) if isinstance(start, (list, tuple)) else 0,
}


def _bounded_filter(name: str, function: Callable) -> Callable:
    """One of jinja2's filters, refused before it builds a value past the render's bound, and what it
    builds counted."""
    from jinja2.utils import _PassArg

    size = _FILTER_SIZES.get(name)
    passed = 1 if _PassArg.from_obj(function) else 0  # the context or environment jinja2 passes first

    @wraps(function)
    def bounded(*args, **kwargs):
        budget = _current()
        if size is not None:
            if name in ("join", "sum") and len(args) > passed and not isinstance(args[passed], (str, list, tuple)):
                args = (*args[:passed], list(args[passed]), *args[passed + 1 :])
            try:
                estimate = size(*args[passed:], **kwargs)
            except (TypeError, ValueError, AttributeError):  # the filter itself will say what is wrong
                estimate = 0
            budget.fits(estimate if isinstance(estimate, int) else 0, f"the filter {name}")
        return budget.make(function(*args, **kwargs), f"the filter {name}")

    return bounded


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


def templates_named(text: str) -> frozenset[str]:
    """The templates text includes, imports or extends by a name written out (`{% include "_house" %}`)."""
    return _templates_named(environment(), text)


@lru_cache(maxsize=1024)
def _templates_named(env: Any, text: str) -> frozenset[str]:
    from jinja2 import meta

    return frozenset(name for name in meta.find_referenced_templates(env.parse(text)) if name is not None)


def render_bounded(compiled, values: dict[str, Any]) -> str:
    """A compiled template's text, stopped once it writes `MAX_RENDERED` characters more than its
    values hold (each range is bounded, nested loops multiply them: a shared template grew without end),
    or builds or works past the sandbox's other bounds (`_Budget`)."""
    budget = _Budget(sum(len(str(value)) for value in values.values()))
    limit, pieces, size = budget.largest, [], 0
    token = _budget.set(budget)
    try:
        for piece in compiled.generate(**values):
            size += len(piece)
            if size > limit:
                raise OverflowError(f"Result too big: the template wrote more than {limit} characters, {MAX_RENDERED} beyond its variables'; the sandbox stops it")
            pieces.append(piece)
    finally:
        _budget.reset(token)
    return "".join(pieces)


@lru_cache(maxsize=256)
def compile_text(env, text: str):
    """Each template text compiled once per environment (a new environment starts afresh)."""
    return env.from_string(text)
