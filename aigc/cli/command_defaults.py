"""Option defaults from config.toml: a table named after a command (`[chat] temperature = 0.7`,
`[translate] to = "fr"`, `[serve] port = 8080`) gives that command's options their defaults, as
click's `default_map`. A flag beats its AIGC_* variable, which beats the table, which beats aigc's
own default (click's order; `VARIABLES` for the variables aigc reads itself). A table value is a
default: it yields to a flag given for an option it cannot go with (`CONFLICTS`). One code path for
every command that takes them (`DefaultsCommand`)."""

from __future__ import annotations

import warnings
from typing import Any

from typer.core import TyperCommand

from ..errors import AigcError, AigcWarning, BadInputError

HELP_FLAGS = ("-h", "--help")
# What a table may not set, and why: each run names its own (the input, -o's file), or a file others may read is no place for it.
REFUSED = {
    "output": "-o names the file one run writes; a default would overwrite the same file on every run, so give -o each time",
    "api_key": "api_key is not read from the settings file; name the variable that holds it with api_key_env, set AIGC_API_KEY (a systemd EnvironmentFile, say) or give --api-key",
    "help": "--help is no setting",
    "topic": "--topic names what one run writes about, given each time it runs; it has no default",
    "input": "-i names the input one run reads, given each time it runs; it has no default",
}
# Options aigc reads an AIGC_* variable for itself (not click's `envvar=`), per command (None: any):
# the variable, when set, beats the table: the table's value (checked all the same) gives way to the option's own default.
VARIABLES = {
    ("image", "model"): "AIGC_DEFAULT_IMAGE_MODEL",
    (None, "model"): "AIGC_DEFAULT_MODEL",
    (None, "log"): "AIGC_LOGS",
}
# Options that cannot go together, per command: a table value for one yields to the other given as a
# flag (`[summarize] length` to `--words`), rather than making the flag an error.
_ONE_SHOT = [("as_json", "extract"), ("as_json", "extract_last"), ("extract", "extract_last")]
CONFLICTS = {
    "summarize": [("length", "words")],
    "translate": [("plain", "markdown")],
    "chat": [*_ONE_SHOT, ("n", "resume"), ("n", "session"), ("n", "cid")],
    "run": _ONE_SHOT,
}
# The generator whose sampling defaults a command's --help shows (its template's defaults: over them).
TASKS = {"chat": "chat", "summarize": "summarize", "headline": "headline", "translate": "translate", "run": "template"}
SHOWN = ("temperature", "top_p", "max_tokens", "repetition_penalty")
_TYPES = {int: ((int,), "a whole number"), float: ((int, float), "a number"), bool: ((bool,), "true or false"), str: ((str,), "a string in quotes")}  # as TOML writes them


def option_keys(command) -> dict[str, Any]:
    """The keys a command's table takes, each to its click parameter: an option's long flag without
    its dashes, with `_` or `-` between words (`max_tokens`, `max-tokens`), or its parameter name; an
    argument (the input) by its name, to be refused by it."""
    keys: dict[str, Any] = {}
    for param in command.params:
        names = {param.name} | {opt.lstrip("-") for opt in param.opts if opt.startswith("--")}
        for name in names:
            keys[name.replace("-", "_")] = keys[name.replace("_", "-")] = param
    return keys


def _listed(command) -> str:
    """The keys a table takes, as `--help` lists their options (the long flag, with _)."""
    shown = []
    for param in command.params:
        if param.param_type_name != "option" or param.name in REFUSED:
            continue
        long = next((opt for opt in param.opts if opt.startswith("--")), None)
        shown.append(long[2:].replace("-", "_") if long else param.name)
    return ", ".join(shown)


def table_defaults(command, name: str | None = None) -> dict[str, Any]:
    """The `[NAME]` table of config.toml (NAME: the command's name) as the defaults of `command`'s
    options, click's `default_map` keyed by parameter name; each value checked as its TOML type and
    converted as click converts the option's value. A key no option has is a warning (with its
    likely meaning, and the keys there are) and is left out; a key for the input, -o or the API key,
    or a value of the wrong type, is a `BadInputError` naming the file, table, key and line."""
    from ..config import command_table, key_line, settings_file, unknown_hint

    name = name or command.name
    table = command_table(name)
    if not table:
        return {}
    where = f"[{name}] in {settings_file()}"
    keys = option_keys(command)
    unknown = sorted(key for key in table if key not in keys and key not in REFUSED)
    if unknown:
        known = sorted({key for key, param in keys.items() if param.param_type_name == "option" and param.name not in REFUSED and "-" not in key})
        warnings.warn(f"{where} has unknown keys {', '.join(unknown)}; {unknown_hint(unknown, known, (name,))}it takes {_listed(command)}", AigcWarning, stacklevel=2)
    defaults: dict[str, Any] = {}
    for key, value in table.items():
        if key in unknown:
            continue
        line = key_line((name,), key)
        at = f" (line {line})" if line else ""
        param = keys.get(key)
        refused = REFUSED.get(param.name if param is not None else key)
        if param is not None and param.param_type_name == "argument":
            refused = f"{key} is the command's input ({param.metavar or param.name.upper()}), given each time it runs; it has no default"
        if refused:
            raise BadInputError(f"{where}: {refused}{at}; remove the line")
        defaults[param.name] = _converted(command, param, value, f"{where}: {key}", at)
    return defaults


def variable_of(command: str, name: str) -> str | None:
    """The AIGC_* variable aigc reads for option `name` of `command` itself (`VARIABLES`), or None."""
    return VARIABLES.get((command, name), VARIABLES.get((None, name)))


def _set(variable: str) -> bool:
    import os

    return bool(os.environ.get(variable, "").strip())


def from_table(name: str, ctx=None) -> bool:
    """Whether option `name` of the running command (or `ctx`'s) has its value from the command's
    table of config.toml: a default, which yields where the run's mode has no use for it."""
    if ctx is None:
        from typer.core import _click
        from typer._click import globals  # noqa: F401 - _click.globals

        ctx = _click.globals.get_current_context(silent=True)
    return ctx is not None and getattr(ctx.get_parameter_source(name), "name", None) == "DEFAULT_MAP"


def _yield_to_flags(ctx) -> None:
    """Give an option whose value came from the table its own default back where the AIGC_* variable
    aigc reads for it is set (`VARIABLES`; the table's value still checked, as a line that cannot be
    used is an error), or where a flag it cannot go with was given (`CONFLICTS`)."""
    params = {param.name: param for param in ctx.command.params}
    for name, param in params.items():
        variable = variable_of(ctx.command.name, name)
        if variable is not None and _set(variable) and from_table(name, ctx) and name in ctx.params:
            ctx.params[name] = param.default
            ctx.set_parameter_source(name, type(ctx.get_parameter_source(name)).DEFAULT)
    for pair in CONFLICTS.get(ctx.command.name, ()):
        for ours, theirs in (pair, pair[::-1]):
            given = getattr(ctx.get_parameter_source(theirs), "name", None) in ("COMMANDLINE", "ENVIRONMENT")
            if from_table(ours, ctx) and given and ours in ctx.params:
                ctx.params[ours] = params[ours].default
                ctx.set_parameter_source(ours, type(ctx.get_parameter_source(ours)).DEFAULT)


def _python_type(param) -> Any:
    """The Python type of one value of `param` (float for Optional[float], str for list[str])."""
    import typing

    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    while typing.get_origin(kind) in (typing.Union, list, tuple) or type(kind).__name__ == "UnionType":
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), None)
    return kind


def _converted(command, param, value: Any, what: str, at: str) -> Any:
    """`value` as option `param` takes it, checked as its TOML type (true is no number, 8080 no
    string) and converted as typer converts a value given on the command line (a range's bounds);
    else a `BadInputError`."""
    taken, wanted = _TYPES.get(_python_type(param), (None, "a value its option takes"))
    if param.multiple or param.nargs != 1:
        value = [value] if not isinstance(value, list) else value
        items, wanted = value, f"{wanted} or a list of them" if param.multiple else wanted
    else:
        items = [value]
    if taken is not None and not all(isinstance(item, taken) and (bool in taken or not isinstance(item, bool)) for item in items):
        raise BadInputError(f"{what} must be {wanted}, got {value!r}{at}")
    from typer.core import _click  # the click typer builds its commands with

    coerce = getattr(param, "get_runtime_param", None)
    try:
        if coerce is not None:
            coerce().coerce(value, param=param, ctx=_click.Context(command))
    except _click.exceptions.BadParameter as exc:
        raise BadInputError(f"{what}: {exc.message.rstrip('.')}{at}") from None
    return value


def _helped(args: list[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in args[: args.index("--") if "--" in args else len(args)])


class DefaultsCommand(TyperCommand):
    """A command whose options default to its table of config.toml (`table_defaults`); its `--help`
    shows those defaults, marked (config.toml), and the task's own sampling defaults."""

    def make_context(self, info_name, args, parent=None, **extra):
        broken = None
        if not (parent is not None and parent.resilient_parsing):  # not while a shell completes
            try:
                with warnings.catch_warnings():
                    if _helped(args):  # the help lists the keys there are; running warns of the unknown ones
                        warnings.simplefilter("ignore", AigcWarning)
                    extra.setdefault("default_map", table_defaults(self, info_name or self.name))
            except AigcError as exc:  # a broken settings file: --help still helps; running reports it
                broken = exc
        ctx = super().make_context(info_name, args, parent=parent, **extra)  # --help exits in here
        if broken:
            raise broken
        _yield_to_flags(ctx)
        return ctx

    def format_help(self, ctx, formatter):
        table, ctx.default_map = ctx.default_map or {}, None  # shown marked, by show_defaults (not where a variable beats it)
        table = {name: value for name, value in table.items() if not ((variable := variable_of(self.name, name)) and _set(variable))}
        show_defaults(self, table)
        return super().format_help(ctx, formatter)


def task_defaults(command_name: str, template: str | None = None) -> dict[str, Any]:
    """The sampling settings a command's answers are made with when none is given, as far as they
    are fixed: those its task's `sampling_defaults` and its default template's `defaults:` set (as
    the generator merges them; a setting neither sets is the task's to fit, as summarize's max_tokens);
    {} for a command that names no task or one that cannot be read."""
    task = TASKS.get(command_name)
    if task is None:
        return {}
    try:
        from .. import templates
        from ..engine.sampling import SamplingParams
        from ..generators.base import registered_generators

        cls = registered_generators()[task][1]
        fields = getattr(cls.Options, "__dataclass_fields__", {})
        template = template or (fields["template"].default if "template" in fields and isinstance(fields["template"].default, str) else None)
        merged = {**cls.sampling_defaults, **(templates.get_template(template).defaults if template else {})}
        params = SamplingParams.from_settings(merged)
        return {name: getattr(params, name) for name in merged if hasattr(params, name)}
    except (AigcError, KeyError, TypeError, ValueError):
        return {}


# What a task fits where neither it nor its template fixes the setting, for --help to say.
FITTED = {("summarize", "max_tokens"): "fitted to the summary's length (--length, --words)", ("translate", "max_tokens"): "fitted to each passage's length"}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def show_defaults(command, table: dict[str, Any]) -> None:
    """Have `--help` show the defaults that apply: the table's, marked (config.toml), over the task's
    sampling defaults (temperature 0 marked greedy). Only as the help is shown, which ends the
    command: it sets the options' defaults as text."""
    template = next((p.default for p in command.params if p.name == "template" and p.param_type_name == "option" and isinstance(p.default, str)), None)
    sampling = task_defaults(command.name, template)
    for param in command.params:
        if param.param_type_name != "option":
            continue
        if param.name in table:
            shown = f"{_shown(table[param.name])} (config.toml)"
        elif param.name in SHOWN and param.name in sampling:
            value = sampling[param.name]
            shown = f"{_shown(value)} (greedy)" if param.name == "temperature" and value == 0 else _shown(value)
            if command.name == "run":
                shown += ", or the template's"
        elif (command.name, param.name) in FITTED:
            shown = FITTED[command.name, param.name]
        else:
            continue
        if getattr(param, "is_flag", False):
            param.default = table[param.name]
        else:
            param.default, param.show_default = shown, True


def click_command(name: str):
    """The click command `aigc NAME` runs: the running CLI's, else built from the app (doctor's
    checks called from Python); None for no such command."""
    from typer.core import _click
    from typer._click import globals  # noqa: F401 - _click.globals

    ctx = _click.globals.get_current_context(silent=True)
    if ctx is not None:
        root = ctx.find_root()
    else:
        import typer.main

        from .app import app

        root = _click.Context(typer.main.get_command(app), info_name="aigc")
    group = root.command
    return group.get_command(root, name) if hasattr(group, "get_command") else None


def checked_table(name: str) -> tuple[dict[str, Any], list[str]]:
    """`table_defaults` of the command NAME's table and the warnings it gave (unknown keys), for
    doctor and `aigc config show`; ({}, []) for a command that is not there. A key it refuses or a
    bad value is a `BadInputError`, as running the command gives."""
    command = click_command(name)
    if command is None:
        return {}, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AigcWarning)
        defaults = table_defaults(command, name)
    return defaults, [str(w.message) for w in caught if issubclass(w.category, AigcWarning)]
