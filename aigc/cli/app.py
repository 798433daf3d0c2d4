"""The root Typer app: global options, error handling, and commands registered through plugins."""

import difflib
import functools
import gc
import os
import re
import shlex
import signal
import stat
import sys
import threading
import traceback
import warnings
from typing import Annotated, Optional

import typer
try:
    from typer._click.exceptions import ClickException, MissingParameter, NoArgsIsHelpError, NoSuchOption, UsageError  # typer vendors click since 0.26
except ImportError:  # a typer built on click itself
    from click.exceptions import ClickException, MissingParameter, NoArgsIsHelpError, NoSuchOption, UsageError
from typer.core import TyperArgument, TyperGroup, TyperOption

from .. import config, ui
from ..errors import DISK_FULL, AigcError, AigcMessage, AigcNote, BadInputError, Terminated, options_named
from ..textio import URL
from . import help_layout
from .options import PARAMETERS, env_source, fabric_var, stdin_ready
from .starting import started


def _show_warning(message, category, filename, lineno, file=None, line=None, *, shown: set[str]) -> None:
    """aigc's own warnings as one `Warning:` line on stderr (its notes as a note, which -q hides), each
    once in `shown` (a command's: Python's own record of warnings shown is reset whenever a library
    loaded changes the warning filters); others as Python shows them."""
    if issubclass(category, AigcMessage):
        if str(message) not in shown:
            shown.add(str(message))
            (ui.info if issubclass(category, AigcNote) else ui.warn)(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _value_type(self, ctx) -> str | None:
    """Help shows no value type for flags and counts (typer shows `<bool>`, `<int>`, which reads as
    if they took a value), and a repeatable option's or argument's element type (`<str>`, not `<list[str]>`)."""
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    shown = (_typer_argument_type if isinstance(self, TyperArgument) else _typer_option_type)(self, ctx)
    if shown and shown.startswith("<list[") and shown.endswith("]>"):
        return f"<{shown[6:-2]}>"
    return shown


_typer_option_type, _typer_argument_type = TyperOption.display_type_rich, TyperArgument.display_type_rich
TyperOption.display_type_rich = TyperArgument.display_type_rich = _value_type


def _commands(ctx) -> list:
    """The commands the arguments name, from the top group through sub-groups (`aigc`, `eval`,
    `classify`); read before the group runs them, while the arguments are still there."""
    chain, args = [ctx.command], [*getattr(ctx, "_protected_args", ()), *ctx.args]
    while hasattr(chain[-1], "get_command") and args and not args[0].startswith("-"):  # a group's option: left to it
        found = chain[-1].get_command(ctx, args[0])
        if found is None:  # no such command: its own error comes later
            break
        chain, args = [*chain, found], args[1:]
    return chain


def flag_name(opts: list[str]) -> str:
    """An option's name as messages give it: its longest (`--max-tokens`, not `-t`), but the short form
    of a one-letter one (`-n`, as it is typed, not `--n`)."""
    return max(opts, key=lambda name: (len(name.lstrip("-")), -len(name)))


def _flagger(command):
    """How `command` names a library option (given a value or None): its flag (`--max-tokens`,
    `--method probe`; `-O n=1` for a task option of aigc batch), else None: the library's name."""
    flags = {param.name: flag_name(param.opts) for param in getattr(command, "params", ()) if getattr(param, "param_type_name", "") == "option"}

    def flag(name: str, value: str | None) -> str | None:
        shown = flags.get(PARAMETERS.get(name, name))
        if shown is None and name == "model":  # `aigc models pull`: the flag the generating commands take
            shown = "--model"
        if shown is None and "--option" in flags.values():  # aigc batch: a task's options are given with -O
            if name == "variables" and value is not None and "=" in value:  # `audience=...`: a dict, in JSON
                key, _, given = value.partition("=")
                return f"-O 'variables={{\"{key}\": \"{given}\"}}'"
            return f"-O {name}" if value is None else f"-O {name}={value}"
        return shown if shown is None or value is None else f"{shown} {value}"

    return flag


ARGS = "aigc.args"  # ctx.meta key: the command line's arguments
NOTE = "aigc.note"  # ctx.meta key: a note on how the command line was read, shown once -q or -v is known
CLOSE = 0.75  # how alike an unknown option's name and one offered in its place must be (without their dashes), as did_you_mean's
FABRIC_VAR = re.compile(r"#?[A-Za-z_]\w*:[^\s/]")  # fabric's `-v NAME:VALUE`, not a prompt such as "Question: ..." or a URL
GLOBAL_OPTIONS = ("-q", "--quiet", "-v", "--verbose", "--threads")  # taken after the command too (`aigc chat -q`); --version only before it
_SETTINGS = "each setting is an option of its own: --temperature 0.7 --max-tokens 200"
_VARS = "a template's variables are given as --var key=value"
_USAGE = "--stats prints the token counts"
# Options of `llm` and `ollama run` that aigc names otherwise: the option a command must have for
# the hint to fit it, and the hint (said in place of click's guesses, which point elsewhere).
ELSEWHERE = {
    "-o": ("--temperature", _SETTINGS), "--option": ("--temperature", _SETTINGS),
    "-p": ("--var", _VARS), "--param": ("--var", _VARS),
    "-n": ("--no-log", "--no-log keeps the answer out of the log"),
    "-u": ("--stats", _USAGE), "--usage": ("--stats", _USAGE),
    "--conversation": ("--cid", "--cid ID goes on from a conversation"),
    "--cid": ("--session", "-S ID shows a conversation's answers, by the id after 'session'"),
    "--no-stream": ("--system", "an answer streams only to a terminal; piped or redirected, it comes whole"),
    "--format": ("--schema", "--schema holds the answer to JSON: --schema '{}' for any JSON, or a JSON schema"),
    "--output": (None, "the answer goes to stdout: `> FILE` writes it to a file"),  # a command with no -o (chat, similar): any
}


def _one_line(exc: UsageError, command: str | None = None, misplaced: str | None = None):
    """A usage error as one `Error:` line with exit code 2, like every other bad input; `command`
    names the command when the error does not (a missing option value); `misplaced`: the hint for a
    command's option given before the command (`_misplaced`)."""
    if isinstance(exc, NoArgsIsHelpError) and exc.message:  # `aigc eval` alone, click's plain help (typer's rich help printed itself)
        try:
            typer.echo(exc.message)
        except OSError as error:  # a full disk under stdout
            _stop_if_disk_full(error)
            raise
        raise typer.Exit(exc.exit_code)
    if isinstance(exc, NoArgsIsHelpError) or config.debug():  # `aigc eval` alone shows its help
        raise exc
    where = exc.ctx.command_path if exc.ctx else command or "aigc"
    hint = f"see `{where} --help`"
    if isinstance(exc, NoSuchOption) and exc.possibilities:  # click offers the nearest even when far (--bogus: --log)
        exc.possibilities = [close for close in exc.possibilities if difflib.SequenceMatcher(None, exc.option_name.lstrip("-"), close.lstrip("-")).ratio() >= CLOSE]
    message = _not_a_number(exc) or exc.format_message().rstrip(".")
    name = getattr(exc, "option_name", None)
    if isinstance(exc, NoSuchOption) and exc.ctx and (fabric := _fabric(name, exc.ctx.meta.get(ARGS, []), where, exc.ctx.command)):
        message, hint = f"No such option: {name}", f"{fabric}; {hint}"
    elif misplaced:
        message, hint = f"No such option: {name}", misplaced
    elif isinstance(exc, NoSuchOption) and exc.ctx and (file := _dashed_file(name, exc.ctx.meta.get(ARGS, []))):
        message, hint = f"No such option: {name}", f"{file} is a file here: use {shlex.quote('./' + file)} or put -- before it; {hint}"
    elif isinstance(exc, NoSuchOption) and exc.ctx and (text := _dashed_text(name, exc.ctx.meta.get(ARGS, []), where)):
        message, hint = f"No such option: {name}", f"text that starts with - goes after --, the options before it: `{text}`; {hint}"
    elif name == "--version" and where != "aigc":
        message, hint = f"No such option: {name}", "`aigc --version` prints the version"  # not click's guess at a command option it might be
    elif name == "--threads" and where != "aigc":  # given last, with no number for it
        message, hint = "Option '--threads' requires an argument", "--threads N: the CPU threads a local model computes with, before or after the command"
    elif isinstance(exc, NoSuchOption) and name in ELSEWHERE and exc.ctx and ELSEWHERE[name][0] in {None, *_option_names(exc.ctx.command)}:
        message, hint = f"No such option: {name}", f"{_elsewhere(name, exc.ctx.meta.get(ARGS, []))}; {hint}"
    elif "--n" in getattr(getattr(exc, "param", None), "opts", ()) and exc.ctx and "--no-log" in _option_names(exc.ctx.command):  # llm's -n (no log): run's and chat's count of answers here
        hint = f"-n N asks for N answers; {ELSEWHERE['-n'][1]}; {hint}"
    elif isinstance(exc, NoSuchOption) and where == "aigc batch" and _task_option(name):
        message, hint = f"No such option: {name}", f"a task's options go in -O, as -O {_task_option(name)}=VALUE; {hint}"
    elif (several := _several_documents(message, where, exc)) is not None:
        hint = f"{several}; {hint}"
    elif isinstance(exc, MissingParameter) and where == "aigc batch" and getattr(exc.param, "name", None) == "output":
        hint = f"-o OUT.jsonl, .csv or .tsv writes the results, -o - prints them; {hint}"
    if _full_width(message):
        hint = f"{FULL_WIDTH_HINT}; {hint}"
    ui.error(f"{message} ({hint})")
    raise typer.Exit(exc.exit_code) from None


_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")
_FULL_WIDTH = re.compile(r"[\uff10-\uff19\uff1d\uff21-\uff3a\uff41-\uff5a]")  # full-width digits, letters and =, as an input method's full-width mode types them


FULL_WIDTH_HINT = "full-width characters: type them in ASCII"


def _full_width(message: str) -> bool:
    """Whether a value the error `message` quotes holds full-width digits, letters or `=`, as an
    input method's full-width mode types them (`--words １００`, `--var 产品＝手表`, `--length ｓｈｏｒｔ`)."""
    return any(_FULL_WIDTH.search(a or b) for a, b in _QUOTED.findall(message))


def _values(name: str, args: list[str]) -> list[str]:
    """The values the command line gives option `name`, as `name=VALUE` or `name VALUE`."""
    return [arg.split("=", 1)[1] if arg != name else args[i + 1] for i, arg in enumerate(args) if arg.startswith(f"{name}=") or (arg == name and i + 1 < len(args))]


def _fabric(name: str, args: list[str], where: str, command) -> str | None:
    """What aigc calls a fabric option: `-v=name:value` (`--variable`) is `--var name=value`, where
    the command has --var; `-p NAME` (`--pattern`, `-sp`: stream and pattern) is `aigc run NAME`, or
    `aigc chat -t NAME` in chat (a `-p` whose value names no template is llm's, left to ELSEWHERE);
    `-u URL` is a page to download first."""
    if name in ("-v", "--variable"):
        spelt = [fabric_var(value) for option in ("-v", "--variable") for value in _values(option, args)]
        usable = "--var" in _option_names(command) and spelt and all(spelt)
        return f"fabric's -v=NAME:VALUE is --var NAME=VALUE here: `{' '.join(spelt)}`" if usable else None
    if name == "-u":  # fabric's -u URL, not llm's -u (--usage)
        url = next((v for v in _values("-u", args) if URL.match(v)), None)
        return f"fabric's -u URL is not fetched here: download the page first, `curl -sL {shlex.quote(url)} -o page.html`, and give the file" if url else None
    if name not in ("-p", "--pattern", "-s") or (name == "-s" and "-sp" not in args):
        return None
    from .. import templates

    value = next((v for option in ("-p", "--pattern", "-sp") for v in _values(option, args) if not v.startswith("-")), None)
    if name == "-p" and value not in templates.discover():
        return None
    run = "aigc chat -t NAME" if where == "aigc chat" else "aigc run NAME"
    return f"fabric's -p NAME is `{run}` here" + (f": `{run.replace('NAME', shlex.quote(value))}`" if value else "")


def _dashed_file(name: str, args: list[str]) -> str | None:
    """The argument click took for option `name` (`-d` of `-dash.txt`) where it names a file that
    exists (`aigc summarize -dash.txt`); else None."""
    return next((arg for arg in args if arg.startswith(name) and arg not in ("-", "--") and os.path.exists(arg)), None)


def _dashed_text(name: str, args: list[str], where: str) -> str | None:
    """For text with spaces that click took for option `name` (`aigc chat "-5 degrees is cold"`),
    the command line with that text after `--`, the options before it; else None."""
    text = next((arg for arg in args if arg.startswith(name) and len(arg.split()) > 1), None)
    if text is None:
        return None
    asked = ["chat"] if where == "aigc" else []  # no command: llm's way to ask, chat's
    line = shlex.join(["aigc", *(arg for arg in args if arg != text), *asked, "--", text])
    return line if "\n" not in line and len(line) <= 100 else f"{where} [OPTIONS] -- TEXT"


def _elsewhere(name: str, args: list[str]) -> str:
    """ELSEWHERE's hint for `name`; for `-o FILE` (a path, as other commands' -o takes, rather than
    llm's `-o KEY VALUE`) and `--output FILE`, that the answer goes to stdout, to redirect."""
    value = next(iter(_values(name, args)), "")
    if (name == "-o" and ("." in value or "/" in value) and not value.replace(".", "", 1).isdigit()) or (name == "--output" and value and not value.startswith("-")):
        return f"the answer goes to stdout: `> {shlex.quote(value)}` writes it to a file"
    return ELSEWHERE[name][1]


def _task_option(name: str) -> str | None:
    """The task option that `name`, a flag (`--labels`, `--to`, `-n`), sets, as `aigc batch -O`
    takes it (`labels`, `to`), if any task has it; else None."""
    from ..generators.base import registered_generators

    flags = {flag.rstrip("_"): option for option, flag in PARAMETERS.items()}  # to: target_language, as -O takes it too
    key = name.lstrip("-").replace("-", "_")
    known = {option for _, cls in registered_generators().values() for option in cls.option_names()}
    return key if key in known or flags.get(key) in known else None


DOCUMENT_COMMANDS = ("summarize", "headline", "translate")  # a FILE each; `aigc batch TASK FILE...` runs several


def _several_documents(message: str, where: str, exc: UsageError) -> str | None:
    """For several files given a command that reads one document (`aigc summarize inbox/*.html`):
    the `aigc batch` command that runs each, loading the model once; else None."""
    task = where.removeprefix("aigc ")
    if task not in DOCUMENT_COMMANDS or not message.startswith("Got unexpected extra argument") or not exc.ctx:
        return None
    files = [arg for arg in exc.ctx.meta.get(ARGS, []) if not arg.startswith("-") and os.path.isfile(os.path.expanduser(arg))]
    if len(files) < 2:
        return None
    return f"{where} reads one document; `aigc batch {task} FILE... -o OUT.jsonl` runs it on each of several (or on a folder's), one JSON line each, loading the model once (its options as -O KEY=VALUE)"


def _option_names(command) -> set[str]:
    """Every name of the command's options (`--log` and `--no-log` both)."""
    return {name for param in command.params for name in [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]}


NUMBER_KINDS = {"int_parsing": "a whole number", "int_from_float": "a whole number", "float_parsing": "a number"}


def _not_a_number(exc: UsageError) -> Optional[str]:
    """`--count must be a whole number, got 'abc'`, as aigc's own checks word it, for a value typer
    could not convert (its message names neither the value nor what to give)."""
    errors = getattr(exc.__cause__, "errors", None)
    named = re.match(r"Invalid value for '([^']+)'", exc.format_message())  # 'ID', or '--count' / '-n'
    if not callable(errors) or named is None or len(errors()) != 1 or errors()[0].get("type") not in NUMBER_KINDS:
        return None
    param = getattr(exc, "param", None)
    name = (exc.ctx and param is not None and env_source(exc.ctx, param.name)) or (flag_name(param.opts) if getattr(param, "opts", None) and named.group(1).startswith("-") else named.group(1))  # AIGC_PORT=abc names AIGC_PORT
    return f"{name} must be {NUMBER_KINDS[errors()[0]['type']]}, got {errors()[0].get('input')!r}"


def _leave(code: int) -> None:
    """End the process at once with `code`, without tearing Python down under worker threads that
    may be inside torch (that aborts). Tests replace it: in pytest's process it would end the run."""
    os._exit(code)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer cannot be written, and must not fail again at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file
        pass


def _stop_if_disk_full(exc: Exception) -> None:
    """A full disk (or quota) under what aigc writes, or a closed stdout: one `Error:` line and exit 1;
    other errors are left to the caller."""
    full = isinstance(exc, OSError) and exc.errno in DISK_FULL
    if (full or isinstance(exc, ui.StdoutClosedError)) and not config.debug():
        _quiet_stdout()
        ui.error(f"cannot write {exc.filename or 'the output'}: {exc.strerror}{' (free some space, or write elsewhere)' * full}")
        raise typer.Exit(1) from None


# Commands of `ollama` and `llm` that aigc has under another name.
COMMANDS_ELSEWHERE = {"list": "models list", "pull": "models pull", "show": "models info", "rm": "models rm", "prompt": "chat", "aliases": "models alias", "install": "plugins install", "version": "--version"}


def _command_hint(name: str) -> str | None:
    """What an unknown root command was likely meant as: aigc's name for an ollama or llm command
    (`aigc --version` for theirs), or `aigc chat` for a prompt given as `llm` takes one (a command has no spaces)."""
    if name in COMMANDS_ELSEWHERE:
        return f"Did you mean `aigc {COMMANDS_ELSEWHERE[name]}`?"
    if " " in name.strip():
        asked = shlex.quote(name) if "\n" not in name and len(name) <= 60 else '"PROMPT"'
        return f"To ask the model: `aigc chat {asked}`"
    return None


def _global(command, arg: str, following: str | None) -> bool:
    """Whether `arg`, given among `command`'s arguments, is a global option to take as if given before
    the command (`-q`, `--verbose`, `-vv`, `--threads=2`): `command` has no option of that name, and a
    `-v NAME:VALUE` (fabric's --variable: NAME a word, no space after the colon, so that `-v "Question: ..."`
    is verbose and a question) where the command has --var is left for its hint, and a
    `--threads` with no number after it for its error (before the command it would take the command's name)."""
    if arg == "--threads" and following is None:
        return False
    if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and set(arg[1:]) <= {"q", "v"}:  # -vv, -qv
        names = [f"-{flag}" for flag in set(arg[1:])]
    else:
        names = [arg.split("=", 1)[0] if arg.startswith("--threads=") else arg]
    own = _option_names(command)
    if not all(name in GLOBAL_OPTIONS and name not in own for name in names):
        return False
    return not (arg == "-v" and following is not None and FABRIC_VAR.match(following) and "--var" in own)


def _globals_first(group, ctx, args: list[str]) -> list[str]:
    """`args` with the global options given after the command (`aigc summarize notes.txt -q`, `aigc
    models list -v`) put before it, as pip, git and docker take them; a command's own option of the
    same name stays its own, and nothing after `--` moves. `--verbose` there, where the command has
    --stats and it is not given, gets a note for ollama's users (`ollama run MODEL --verbose` prints timings)."""
    command, start, moved, kept, at = group, None, [], [], 0
    while at < len(args):
        arg, following = args[at], args[at + 1] if at + 1 < len(args) else None
        if arg == "--":
            kept += args[at:]
            break
        if command is not group and _global(command, arg, following):
            taken = 2 if arg == "--threads" else 1
            moved += args[at : at + taken]
            at += taken
            continue
        kept.append(arg)
        if _takes_value(command, arg) and following is not None:  # its value, whatever it looks like
            kept.append(following)
            at += 1
        elif not arg.startswith("-") and hasattr(command, "get_command"):
            found = command.get_command(ctx, arg)
            if found is None:  # no such command: its own error comes later
                kept += args[at + 1 :]
                break
            command, start = found, len(kept) - 1 if start is None else start
        at += 1
    if "--verbose" in moved and "--stats" in _option_names(command) and "--stats" not in kept:
        ctx.meta[NOTE] = "--verbose is aigc's -v here (more detail on stderr); --stats prints token counts and tokens/s, as ollama's --verbose"
    return kept if start is None else [*kept[:start], *moved, *kept[start:]]


def _takes_value(command, name: str) -> bool:
    """Whether `name` is an option of `command` that takes a value (`-m NAME`, not `--json`)."""
    return any(name in getattr(p, "opts", ()) and not (getattr(p, "is_flag", False) or getattr(p, "count", False)) for p in command.params)


def _misplaced(group, ctx, name: str, args: list[str]) -> str | None:
    """The hint for a command's option given before the command: the command line with it put after
    the command (`aigc -m smollm2 chat`; llm's `llm -m MODEL 'PROMPT'`, with no command but a prompt:
    chat's), where that command takes it as given (a value where it takes one, none for a flag);
    with no command named (or with --version, --help), that it is a command's option (`aigc COMMAND
    --json`), made up for no command; else None."""
    path, found, at = ["chat"], group.get_command(ctx, "chat"), None  # no command named: llm's way to ask
    for i, arg in enumerate(args):
        command = None if arg.startswith("-") else group.get_command(ctx, arg)
        if command is None or (i and _takes_value(command, args[i - 1])):  # not a command, or the value of an option
            continue
        path, found, at = [arg], command, i + 1
        while hasattr(found, "get_command") and at < len(args) and found.get_command(ctx, args[at]) is not None:  # models list
            path, found, at = [*path, args[at]], found.get_command(ctx, args[at]), at + 1
        break
    before = args if at is None else args[: at - len(path)]
    asking = {"--version", "--help", "-h"} & {arg.split("=", 1)[0] for arg in before}
    prompts = _read_as(group, found, before, at is None) if found is not None and name in _option_names(found) else None
    if at is None and (not prompts or asking):  # no command, and no prompt to ask chat
        if not any(name in _option_names(command) for command in _all_commands(group, ctx)):
            return None
        return f"{name} is an option of a command: `aigc COMMAND {name}`; see `aigc --help`"
    if prompts is None or (at is not None and (prompts or asking & {"--version"})):  # no such option there, or not taken as given
        return None
    line = shlex.join(["aigc", *path, *(args if at is None else args[: at - len(path)] + args[at:])])
    return f"{name} is an option of a command, given after it: `{line if len(line) <= 100 else f'aigc {shlex.join(path)} {name} ...'}`"


def _read_as(group, command, before: list[str], prompt: bool) -> int | None:
    """How many arguments of `before` (given before `command`) it would take as text (a prompt), each
    option with the value `command` (or aigc itself) takes it with; None where an option would not
    read as given: its value missing, or one given to a flag (`-t x` where -t is a flag; unless the
    text is a `prompt`, as for chat with no command named)."""
    texts, at = 0, 0
    while at < len(before):
        arg = before[at]
        option, given, _ = arg.partition("=")
        if not arg.startswith("-") or arg == "-":
            texts += 1
        elif _takes_value(command, option) or _takes_value(group, option):
            if not given and at + 1 == len(before):
                return None
            at += 0 if given else 1
        elif given and option in _option_names(command) | _option_names(group):  # a flag given a value
            return None
        elif not prompt and at + 1 < len(before) and not before[at + 1].startswith("-") and option in _option_names(command):  # a flag followed by text: its value, as typed
            return None
        at += 1
    return texts


def _all_commands(group, ctx) -> list:
    """Every command of `group`, those of its sub-groups too (`models list`)."""
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None:
            found += [command, *(_all_commands(command, ctx) if hasattr(command, "get_command") else [])]
    return found


class AigcGroup(TyperGroup):
    """Turns `AigcError` into a one-line message and its exit code (no traceback unless AIGC_DEBUG=1),
    and aigc's warnings into `Warning:` lines."""

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            hint = _command_hint(args[0]) if args and ("Did you mean" not in exc.message or args[0] in COMMANDS_ELSEWHERE) else None
            if hint:  # in place of click's guess at a name alike (version: sessions)
                exc.message = f"{exc.message.split('. Did you mean')[0].rstrip('.')}. {hint}"
            raise

    def parse_args(self, ctx, args):
        if not args and ctx.parent is None and not ctx.resilient_parsing and _text_piped():  # `cat notes.md | aigc > out.md`: not the help into the result
            ui.error("no command given (to ask the model about the piped text: `... | aigc chat`; `aigc --help` lists the commands)")
            raise typer.Exit(2)
        if ctx.parent is None and not ctx.resilient_parsing:  # not while the shell asks for completions
            names = set(self.list_commands(ctx))
            options = args[: next((i for i, arg in enumerate(args) if arg in names or arg == "--"), len(args))]  # aigc's own, before the command (`aigc chat --show-completion` is chat's)
            flags = {arg.split("=", 1)[0] for arg in options}
            for flag in ("--show-completion", "--install-completion"):
                if flag in flags:
                    try:
                        _completion(options, flag)
                    except OSError as exc:  # the script into a full disk or a closed stdout: one line, as for --help
                        _stop_if_disk_full(exc)
                        raise
        if ctx.parent is None and not ctx.resilient_parsing:
            args = _globals_first(self, ctx, args)
            help_layout.choose(self, ctx, args)
        given = list(args)  # the parser takes from args
        ctx.meta[ARGS] = given  # for a command's usage error to read its options' values
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # an unknown global option
            name = getattr(exc, "option_name", None) if isinstance(exc, NoSuchOption) else None
            _one_line(exc, misplaced=_misplaced(self, ctx, name, given) if name else None)
        except OSError as exc:  # `aigc --help`, `--version` or `aigc` alone into a full disk
            _stop_if_disk_full(exc)
            raise

    def invoke(self, ctx):
        with warnings.catch_warnings():
            warnings.simplefilter("default", AigcMessage)
            warnings.showwarning = functools.partial(_show_warning, shown=set())
            chain = _commands(ctx)
            with options_named(_flagger(chain[-1]), commands=True):  # errors name the command's flags
                return self._invoke(ctx, [command.name for command in chain[1:]])

    def _invoke(self, ctx, names: list[str]):
        try:
            return super().invoke(ctx)
        except AigcError as exc:
            _debug_traceback()
            ui.error(f"{exc} ({FULL_WIDTH_HINT})" if _full_width(str(exc)) else str(exc))
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:  # an unknown or missing option of a command
            _one_line(exc, f"{ctx.command_path} {ctx.invoked_subcommand}" if ctx.invoked_subcommand else None)
        except (KeyboardInterrupt, Terminated) as exc:
            _debug_traceback()
            code, what = (exc.code, "terminated") if isinstance(exc, Terminated) else (130, "interrupted")
            ui.error(what)
            if threading.active_count() > 1:  # workers may be inside torch; tearing Python down under them aborts
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):  # a closed pipe
                        pass
                _leave(code)
            raise typer.Exit(code) from None
        except (typer.Exit, SystemExit) as exc:  # typer.Exit(3), sys.exit(3); Terminated is one, handled above
            _say_why_a_plugin_command_exited(exc, names)
            raise
        except (typer.Abort, ClickException):
            raise
        except BrokenPipeError:  # whatever read stdout stopped (`| head`): stop quietly, with typer's exit code for it
            _quiet_stdout()
            batch = sys.modules.get("aigc.batch")  # its workers, left inside torch: tearing Python down under them aborts
            if batch and any(thread.name == batch.WORKER for thread in threading.enumerate()):
                sys.stderr.flush()
                _leave(1)
            raise typer.Exit(1) from None
        except Exception as exc:  # a full disk, or a bug (in aigc or in a plugin's command)
            if config.debug():
                raise
            _stop_if_disk_full(exc)
            from .. import plugins

            owner = plugins.command_owner(names[0]) if names else None
            where = f"`{' '.join(['aigc', *names])}`" + (f" (a command of plugin {owner!r})" if owner else "")
            detail = " ".join(str(exc).split())
            detail = f"{type(exc).__name__}: {detail[:400]}" if detail else type(exc).__name__
            ui.error(f"{where} failed: {detail} (AIGC_DEBUG=1 shows the traceback)")
            raise typer.Exit(1) from None


def _text_piped() -> bool:
    """Whether standard input holds text piped or redirected in (`cat notes.md | aigc`), not an idle
    socket or a device such as /dev/null (cron, CI, `ssh host aigc`), which `stdin_ready` also takes."""
    if not stdin_ready():
        return False
    try:
        return not stat.S_ISCHR(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError):  # no file descriptor: an in-memory stream
        return True


COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _completion(args: list[str], flag: str) -> None:
    """`aigc --show-completion [SHELL]` / `aigc --install-completion [SHELL]`: the completion script of
    the shell named, printed or installed (`shell_completion`: typer's flags take no value, and used the
    shell they ran in whatever was named), else of the shell it runs in; a shell with none (`sh`) is a one-line
    error, exit 2. Exits."""
    from typer._completion_shared import _get_shell_name

    from . import shell_completion

    at = next(i for i, arg in enumerate(args) if arg.split("=", 1)[0] == flag)
    named = args[at].partition("=")[2] or (args[at + 1] if at + 1 < len(args) and not args[at + 1].startswith("-") else None)
    shell = named or _get_shell_name()
    if shell not in COMPLETION_SHELLS:
        what = f"shell {shell!r}" if named else f"this shell ({shell or 'not found'})"
        ui.error(f"no completion script for {what}; name one of {', '.join(COMPLETION_SHELLS)}: `aigc {flag} zsh`")
        raise typer.Exit(2)
    if flag == "--show-completion":
        ui.result(shell_completion.script(shell))
    else:
        try:
            path = shell_completion.install(shell)
        except OSError as exc:  # powershell not installed, a read-only home
            ui.error(f"could not install {shell} completion ({exc.strerror}: {exc.filename}); `aigc --show-completion {shell}` prints the script to install yourself")
            raise typer.Exit(1) from None
        ui.result(f"{shell} completion installed in {path}; it takes effect once you restart the shell")
    raise typer.Exit(0)


def _debug_traceback() -> None:
    """With AIGC_DEBUG=1, the traceback of the exception being handled on stderr (its exit code stays)."""
    if config.debug():
        traceback.print_exc(file=sys.stderr)


def _say_why_a_plugin_command_exited(exc: BaseException, names: list[str]) -> None:
    """A plugin's command that exits non-zero with no message (`sys.exit(3)`, `typer.Exit(3)`) is
    named with its exit code on stderr, so the failure is not silent; a code the shell cannot hold
    (`sys.exit(256)` would read as 0) becomes 1."""
    from .. import plugins

    code = exc.exit_code if isinstance(exc, typer.Exit) else exc.code
    owner = plugins.command_owner(names[0]) if names else None
    if owner is None or not isinstance(code, int) or code == 0:  # a text code is printed by Python itself
        return
    if isinstance(exc.__context__, BrokenPipeError):  # rich's exit when a reader went away (`aigc adcopy --help | head`): no failure
        return
    where = f"`{' '.join(['aigc', *names])}` (a command of plugin {owner!r})"
    if not 0 < code < 256:
        ui.error(f"{where} exited with code {code}, which is no exit status (1-255); exiting with 1")
        raise typer.Exit(1) from None
    ui.error(f"{where} exited with code {code}")


def _terminate(signum, frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM (Ctrl-Break) ends the process at once
    raise Terminated()


app = typer.Typer(
    cls=AigcGroup,
    name="aigc",
    help="Local-first content generation: chat, summarize, headlines and more, on a local model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"aigc {__version__}")
        raise typer.Exit()


def _quiet_libraries() -> None:
    """Keep transformers' and the hub's own bars and advisory warnings off stderr unless -v."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers converts GGUF under a bare tqdm bar
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help="More detail on stderr; -vv for more.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr; only warnings and errors.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", show_default=False, help="CPU threads a local model computes with (default: AIGC_THREADS, else threads in config.toml, else one per core); 1 or 2 when other jobs share the CPU.")] = None,
) -> None:
    if quiet and verbose:
        raise BadInputError("give -q (less on stderr) or -v (more), not both")
    if threads is not None and threads < 1:
        raise BadInputError(f"--threads must be {config.THREADS_HINT}, got {threads}")
    config.given_threads = threads
    if threads is None and ctx.invoked_subcommand not in ("doctor", "config"):  # which report it among the rest
        config.env_threads()  # a bad AIGC_THREADS is an error before any work
    ui.settings.verbosity = -1 if quiet else verbose
    if NOTE in ctx.meta:
        ui.info(ctx.meta[NOTE])
    if verbose == 0:
        _quiet_libraries()


def _register_commands() -> None:
    """Every plugin's commands; a plugin that fails (on import, in a hook, or with a command name
    another plugin already took) is reported once on stderr and the rest of the CLI keeps working."""
    from .. import plugins

    completing = "_AIGC_COMPLETE" in os.environ  # the shell asks for completions: nothing may reach the terminal
    plugins.set_reporter((lambda failure: None) if completing else lambda failure: ui.warn(failure.message()))
    try:
        plugins.register_commands(app)
    except KeyboardInterrupt:  # Ctrl-C while plugins import: no traceback, as for a command
        _debug_traceback()
        ui.error("interrupted")
        raise SystemExit(130) from None


_register_commands()


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGBREAK"):  # Windows' Ctrl-Break, its console's way to stop a program: a SIGTERM
        signal.signal(signal.SIGBREAK, _terminate)
    started()  # Ctrl-C is KeyboardInterrupt again, which the group handles
    ui.windows_stdio()
    ui.closed_stdout()
    try:
        app(prog_name="aigc", windows_expand_args=False)  # on Windows, typer would expand ~, $VAR, %VAR% and globs in every argument, prompts too
    finally:  # the process ends: its last garbage collection need not walk torch's and transformers' objects (1.1 of 6 s after loading a model)
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
