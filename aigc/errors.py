"""Every error aigc raises on purpose. Messages say what went wrong and what to do about it."""

from __future__ import annotations

import contextlib
import errno
import re
import signal
from typing import Callable, Iterator

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write that ran out of room
_OPTION = re.compile("\x1e([^\x1e\x1f]+)(?:\x1f([^\x1e]*))?\x1e")
_SPELT = re.compile("\x1d([^\x1d\x1c]*)\x1c([^\x1d]*)\x1d")


def option(name: str, value: object = None) -> str:
    """Option `name` (given `value`) marked in an error message: shown as the library and the HTTP
    API spell it (`max_tokens`, `method=probe`), and by the CLI as the command's flag when it has
    one (`--max-tokens`, `--method probe`)."""
    return f"\x1e{name}\x1e" if value is None else f"\x1e{name}\x1f{value}\x1e"


def spelt(command: str, library: str) -> str:
    """Text marked in an error message with its two spellings: `command` where a CLI command shows
    it (`-m 'openai:URL#NAME'`, `` `aigc templates list` ``), `library` elsewhere (`model='openai:URL#NAME'`,
    `aigc.list_templates()`)."""
    return f"\x1d{command}\x1c{library}\x1d"


def did_you_mean(names: list[str], known) -> str:
    """` (did you mean max_tokens?)` for misspelt `names` close to `known` ones (`max_new_tokens`,
    as transformers names it, too), else ''."""
    close = close_names(names, known)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def close_names(names: list[str], known) -> list[str]:
    """The `known` name closest to each of `names` that is close to one."""
    import difflib

    return [c for name in names for c in difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)]


Namer = Callable[[str, "str | None"], "str | None"]  # (option, value given or None) -> how to show it, None: as the library spells it
_namer: Namer | None = None
_commands = False  # whether messages are shown by a CLI command: `spelt` text in its command spelling


@contextlib.contextmanager
def options_named(namer: Namer, commands: bool = False) -> Iterator[None]:
    """While inside, every error message names its options with `namer` (the CLI: as the running
    command's flags), and with `commands` gives `spelt` text as a command spells it, wherever it is
    turned into text. Process-wide, for a program's main thread (the CLI); library code never sets it."""
    global _namer, _commands
    previous, _namer, _commands = (_namer, _commands), namer, commands
    try:
        yield
    finally:
        _namer, _commands = previous


def _named(match: re.Match, namer: Namer) -> str:
    name, value = match.groups()
    if named := namer(name, value):
        return named
    if name == "variables" and value and "=" in value:  # a template variable: variables={'topic': ...}, as Python passes it
        key, _, given = value.partition("=")
        return f"{name}={{{key!r}: {given}}}"
    return name if value is None else f"{name}={value}"


def named_options(text: str, namer: Namer | None = None) -> str:
    """`text` with each option marked by `option` as `namer` shows it (by default the one set by
    `options_named`), or else as the library spells it; and `spelt` text as `options_named` says."""
    namer = namer or _namer or (lambda name, value: None)
    text = _SPELT.sub(lambda match: match[1] if _commands else match[2], text)
    return _OPTION.sub(lambda match: _named(match, namer), text)


class AigcError(Exception):
    """Base class; `exit_code` is what the CLI exits with. `at` says which of many inputs it is
    about ("input 3"), and `index` its position among them, set by whoever ran them."""

    exit_code = 1
    at: str | None = None
    index: int | None = None
    public: str | None = None  # the message for an API client where it differs: without hints that name the server's files

    def for_clients(self, text: str) -> "AigcError":
        """This error, with `text` as what the server tells its clients (`public`)."""
        self.public = text
        return self

    def shown(self, namer: Namer | None = None) -> str:
        """The message, each option in it as `namer(name, value)` shows it (by default the one set
        by `options_named`), or else as the library spells it."""
        return self.located(named_options(self._text(), namer))

    def located(self, text: str) -> str:
        """`text` (this error's message, in some spelling) after where it happened (`at`), where that is known."""
        return f"{self.at}: {text}" if self.at else text

    def _text(self) -> str:
        return super().__str__()

    def __str__(self) -> str:
        return self.shown()

    def __reduce__(self):
        """Pickled (process pools, joblib) as its `args` and attributes, rebuilt without calling
        `__init__`, so a subclass whose constructor takes other arguments round-trips too."""
        return _rebuilt, (type(self), self.args), self.__dict__


def _rebuilt(cls: type[AigcError], args: tuple) -> AigcError:
    return cls.__new__(cls, *args)  # BaseException.__new__ sets `args`; pickle restores __dict__


class BadInputError(AigcError):
    """The user gave something aigc cannot use (file, option value, prompt)."""

    exit_code = 2


class OptionError(BadInputError):
    """An option given a value it cannot take. The message names the option as the library and the
    HTTP API spell it (`max_tokens`); the CLI names the command's flag instead (`--max-tokens`)."""

    def __init__(self, option: str, problem: str):
        super().__init__(option, problem)  # both kept in `args`, so it pickles (process pools)
        self.option, self.problem = option, problem

    def _text(self) -> str:
        return self.naming(option(self.option))

    def naming(self, name: str) -> str:
        """The message with the option shown as `name` (a problem starting ": unknown ..." follows it)."""
        return f"{name}{'' if self.problem.startswith(':') else ' '}{self.problem}"


class ContextLengthError(BadInputError):
    """A prompt or text longer than the model's context window (with the tokens asked for);
    `prompt_tokens` and `context_length` where the check that raised it knows them."""

    prompt_tokens: int | None = None
    context_length: int | None = None


class ContinuationLengthError(ContextLengthError):
    """A continuation to score (a classify label) that leaves no room in the context for any of
    its prompts: the continuation, number `continuation` of those given, is what to shorten."""

    def __init__(self, message: str, continuation: int, tokens: int):
        super().__init__(message)
        self.continuation = continuation
        self.tokens = tokens


class UnknownModelError(BadInputError):
    """A model name that is neither an alias, a local path nor a hub id."""


class ModelKindError(BadInputError):
    """A model of the wrong kind for the task: an image model for a text task, or a text model for images."""


class ModelSettingError(BadInputError):
    """A device, dtype or quantization a model cannot take (any, for a remote model; quantize, for an image model)."""


class UnknownTemplateError(BadInputError):
    """A template name that no template directory holds."""


class UnknownGeneratorError(BadInputError):
    """A generator name that no plugin registered."""


class UnknownRemoteError(UnknownModelError):
    """`-m remote:NAME` where the settings file defines no `[remotes.NAME]`."""


class RemoteConfigError(BadInputError):
    """A `[remotes.NAME]` entry that cannot be used (bad field, API key variable not set)."""


class BusyError(BadInputError):
    """What aigc needs is in use by another process right now (a chat session, a batch `-o` file,
    a port): the same command may work later. A BadInputError for callers that catch those."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): what cron wrappers and `flock -E` users retry on


class ConversationOpenError(BusyError):
    """A conversation is open in a running `aigc chat` (or a `ChatSession`): a second chat on it, or
    deleting it (nothing was deleted), must wait for that one to end."""


class ConversationDeletedError(BadInputError):
    """A conversation a chat goes on from was deleted by another process while it was open."""


class StoppedError(AigcError):
    """The call was stopped: the `stop` event given to it (`generate(..., stop=event)`, `many`, `imany`,
    `stream`) was set, by a stop button's thread, say. What was in flight stopped at its next step (a
    local model's decoding step, a remote model's request); the model is usable for the next call."""

    exit_code = 130


def stop_event_set() -> StoppedError:
    """What a call whose `stop` event was set raises."""
    return StoppedError("stopped: the stop event given to the call was set (clear it, stop.clear(), before giving it to another call)")


class ModelUnavailableError(AigcError):
    """A known model that cannot be fetched or loaded here (offline hub, failed pull)."""


class EngineError(AigcError):
    """An engine from outside aigc (a plugin's backend) failed, or lacks what a task needs; the message names it and its plugin."""


class MissingExtraError(AigcError):
    """An optional dependency group is not installed; `install_advice` says how to add it."""

    exit_code = 2


def install_advice(extra: str = "") -> str:
    """How to add aigc's optional `extra` (none: install its missing dependencies) as aigc was installed:
    in a source checkout as the README does, with torch kept pinned; an installed copy (a wheel) with
    pip, pinned to the aigc it has, so pip adds the dependencies only (a bare `aigc[...]` would fetch
    the unrelated PyPI project of that name, whose version is higher), and to the torch it has."""
    from . import __version__
    from .install import checkout, pip_command, torch_pin

    extras = f"[{extra}]" if extra else ""
    if checkout() is None:
        return f"run {pip_command('install', f'aigc{extras}=={__version__}', torch_pin())}"
    setup = f'AIGC_EXTRAS="{extras}" bash scripts/setup.sh' if extra else "bash scripts/setup.sh"
    return f'in the aigc checkout run {setup} (or .venv/bin/python -m pip install -c constraints.txt -e ".{extras}")'


def reinstall_advice() -> str:
    """How to restore aigc's own files: from git in a source checkout, else by reinstalling the same aigc."""
    from . import __version__
    from .install import checkout, pip_command

    if checkout() is None:
        return f"reinstall it: {pip_command('install', '--force-reinstall', '--no-deps', f'aigc=={__version__}')} (from the wheel or index you installed it from)"
    return f"restore them in the checkout: git -C {checkout()} checkout -- prompts"


class IncompleteInstallError(AigcError):
    """aigc's own files (its built-in templates) are missing: an install that lost them, not bad input."""


class NoHomeError(AigcError):
    """No home directory to put aigc's directories under, where no variable sets them; `fix` says which to set."""

    fix = "set HOME, AIGC_HOME (one directory for all), or AIGC_CONFIG_DIR, AIGC_DATA_DIR and AIGC_CACHE_DIR (or XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_CACHE_HOME)"

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why

    def _text(self) -> str:
        return f"{self.summary()}; {self.fix}"

    def summary(self) -> str:
        return f"aigc finds no home directory to keep its settings, data and cache under ({self.why})"


class AnswerJSONError(AigcError):
    """An answer held to a JSON schema that did not come out as JSON (a server that does not follow
    JSON schemas, a test engine's text) or that the decoder could not finish; the message says what to change."""


class PluginError(AigcError):
    """A plugin registered something that clashes or is malformed."""


class PluginClashError(PluginError):
    """Two plugins registered the same name; the first keeps it."""


class UnknownLabelError(BadInputError):
    """An example's label that is not among the labels asked for."""


class ItemsFailedError(AigcError):
    """Some items of a run over many (`aigc batch`, `--lines`) failed; the rest were done (exit 1)."""


class WriteError(AigcError):
    """A result that could not be written to a place checked writable before any work (a full disk, an I/O error)."""


class AigcMessage(UserWarning):
    """What aigc tells of as it goes (`AigcWarning`, `AigcNote`), its options named as an error's are."""

    def __str__(self) -> str:
        return named_options(super().__str__())


class AigcWarning(AigcMessage):
    """Something skipped so the rest keeps working (a broken user template); the CLI shows it as one line."""


class AigcNote(AigcMessage):
    """Something worth knowing that is no problem (how a file was read); the CLI shows it as a note, which -q
    hides. No `AigcWarning`: `warnings.simplefilter("error", AigcWarning)` stops on problems only."""


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread (the CLI sets it up) so that `finally` blocks and context
    managers clean up (a pull's downloads and partial copies) as they do for Ctrl-C; exit status 143."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def translated(exc: BaseException) -> BaseException | None:
    """The cause to chain to an `AigcError` that says what a library's error `exc` means (`raise ...
    from translated(exc)`): none, so a traceback in a notebook is aigc's few frames and the line that
    says what to do, not the hub's and httpx's; with AIGC_DEBUG=1, `exc` and its own traceback."""
    from .config import debug

    return exc if debug() else None
