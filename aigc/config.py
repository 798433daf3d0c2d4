"""User directories and AIGC_* environment settings."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from pathlib import Path

DEFAULTS = {"text": ("AIGC_DEFAULT_MODEL", "default_model", "smollm2"), "image": ("AIGC_DEFAULT_IMAGE_MODEL", "default_image_model", "sd-turbo")}
SETTINGS = ("default_model", "default_image_model", "logs", "threads", "templates_path", "remotes", "aliases", "serve")  # the top-level keys of config.toml
# Commands whose options take their defaults from a table of config.toml named after them ([chat] temperature = 0.7),
# as `serve` does from [serve]: a family of tables beside SETTINGS (an alias may be named `chat`).
COMMAND_TABLES = ("chat", "summarize", "headline", "translate", "classify", "embed", "similar", "image", "batch", "run", "serve")
_reported: set[tuple[str, str]] = set()  # (file, key) of unknown settings already warned about


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def home_dir() -> Path | None:
    """`AIGC_HOME` puts config, cache and data under one directory (used by tests)."""
    return _env_path("AIGC_HOME")


def _user_dir(explicit_var: str, home_part: str, xdg_var: str, fallback: str) -> Path:
    explicit = _env_path(explicit_var)
    if explicit:
        return explicit
    home = home_dir()
    if home:
        return home / home_part
    return (_env_path(xdg_var) or _home() / fallback) / "aigc"


def _home() -> Path:
    """The user's home directory; a `NoHomeError` where there is none (HOME unset, and a user id with
    no entry in the password database: `env -i`, some containers), which only the directories not set
    by a variable need."""
    home = os.path.expanduser("~")
    if home.startswith("~"):
        from .errors import NoHomeError

        raise NoHomeError(f"HOME is unset and user id {os.getuid()} has no entry" if hasattr(os, "getuid") else "HOME is unset")
    return Path(home)


def config_dir() -> Path:
    """User settings and templates: `AIGC_CONFIG_DIR`, `$AIGC_HOME/config` or `~/.config/aigc`."""
    return _user_dir("AIGC_CONFIG_DIR", "config", "XDG_CONFIG_HOME", ".config")


def settings_file() -> Path:
    """The settings file: `config.toml` in `config_dir()` (named remotes live there)."""
    return config_dir() / "config.toml"


def load_settings() -> dict:
    """The settings file's contents; {} when there is none. A file that is not TOML is a one-line error."""
    path = settings_file()
    text = _settings_text(path)
    if text is None:
        return {}
    settings = _parsed(path, text)
    _report_unknown(path, settings, text)
    return settings


def _settings_text(path: Path) -> str | None:
    """The settings file's text (None: there is none); one that cannot be read is a one-line error."""
    from .errors import BadInputError

    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # none there (an AIGC_CONFIG_DIR under a file: what writes there says so)
        return None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Notepad) is skipped
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path} is not valid TOML ({exc}); fix or remove it") from None


def _parsed(path: Path, text: str) -> dict:
    from .errors import BadInputError

    try:
        return parse_toml(text)
    except ValueError as exc:  # TOMLDecodeError is a ValueError
        raise BadInputError(f"{path} is not valid TOML ({exc}); fix or remove it") from None


TOP_LEVEL_HINT = "top-level settings go above the first [table]"


def unknown_settings(settings: dict) -> list[str]:
    """The top-level keys of the settings file aigc does not read (a misspelt `defualt_model`)."""
    return sorted(key for key in settings if key not in SETTINGS and key not in COMMAND_TABLES)


def misplaced_settings(settings: dict, text: str | None = None) -> list[tuple[str, str, int | None]]:
    """Top-level settings' names inside a table, as (table, key, line): `default_model = ...`
    written below `[aliases]`, where TOML makes it part of that table. `text`: the file's text,
    for line numbers (read when not given)."""
    tables = [("aliases",), *((name,) for name in COMMAND_TABLES), ("remotes",)]
    remotes = settings.get("remotes")
    tables += [("remotes", name) for name in sorted(remotes)] if isinstance(remotes, dict) else []
    found = []
    for table in tables:
        entries = settings.get(table[0]) if len(table) == 1 else remotes.get(table[1])
        if isinstance(entries, dict):
            found += [(".".join(table), key, key_line(table, key, text)) for key in sorted(set(entries) & set(SETTINGS))]
    return sorted(found, key=lambda item: (item[2] is None, item[2] or 0))  # in the file's order


def misplaced_message(path: Path, table: str, key: str, line: int | None) -> str:
    return f"{path}: {key} is inside [{table}]" + (f" (line {line})" if line else "") + f"; {TOP_LEVEL_HINT}"


def settings_warnings(path: Path, settings: dict, text: str | None = None) -> list[tuple[str, str]]:
    """What is likely wrong in the settings file though aigc can read it, as (key, message):
    `unknown_settings` and `misplaced_settings`. `load_settings` warns of each once; `aigc doctor` lists them."""
    found = [(key, f"{path}: aigc reads no setting {key!r}; {_meant(key, SETTINGS + COMMAND_TABLES)}it reads {', '.join(SETTINGS)}, and [COMMAND] tables of option defaults for {', '.join(COMMAND_TABLES)}") for key in unknown_settings(settings)]
    return found + [(f"{table}.{key}", misplaced_message(path, table, key, line)) for table, key, line in misplaced_settings(settings, text)]


def _meant(key: str, known) -> str:
    """"did you mean KNOWN? " for the known name `key` is likely a misspelling of (`errors.close_names`), else ""."""
    from .errors import close_names

    close = close_names([key], known)
    return f"did you mean {close[0]}? " if close else ""


def unknown_hint(unknown: list[str], known, table: tuple[str, ...]) -> str:
    """What to say of the unknown keys of a table: where each is (its line) with what it likely
    means (`prot` -> port), or that it is a top-level setting written below the table; "" for none."""
    said = []
    for key in unknown:
        line = key_line(table, key)
        at = f" (line {line})" if line else ""
        if key in SETTINGS:
            said.append(f"{key}{at} is a top-level setting: {TOP_LEVEL_HINT}; ")
        else:
            meant = _meant(key, known)
            said.append(f"{key}{at}: {meant}" if meant or at else "")
    return "".join(said)


def _report_unknown(path: Path, settings: dict, text: str | None = None) -> None:
    """Warn once about each of `settings_warnings`."""
    import warnings

    from .errors import AigcWarning

    for key, message in settings_warnings(path, settings, text):
        if (str(path), key) in _reported:
            continue
        _reported.add((str(path), key))
        warnings.warn(message, AigcWarning, stacklevel=3)


_TABLE_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _table_name(header: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in header.split("."))


def key_line(table: tuple[str, ...], key: str, text: str | None = None) -> int | None:
    """The line number (from 1) of `key = ...` in the settings file's `[table]` (`("remotes", "lab")`
    for `[remotes.lab]`), None where it is not written so (an inline table, a dotted key) or not there.
    `text`: the file's text, read when not given."""
    if text is None:
        try:
            text = _settings_text(settings_file())
        except Exception:  # noqa: BLE001 - only a line number is lost
            return None
        if text is None:
            return None
    entry = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    current: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _TABLE_HEADER.match(line)
        if header:
            current = _table_name(header.group(1))
        elif current == table and entry.match(line):
            return number
    return None


def parse_toml(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise ValueError("nested too deeply") from None


def _one_at_a_time(change):
    """`change`, a read-modify-write of the settings file, under the file's lock: two aigc changing
    settings at once each keep the other's change."""

    @functools.wraps(change)
    def locked(*args):
        from .errors import BadInputError
        from .locks import held
        from .writing import make_dir

        with contextlib.suppress(BadInputError):  # `change` says why where it cannot be made
            make_dir(settings_file().parent, "")  # first: the lock is beside the settings file
        with held(settings_file(), wait=True):
            return change(*args)

    return locked


_TRAILING_COMMENT = re.compile(r"""\s*[\w.-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|'[^']*'|true|false)(\s*#.*)$""")


@_one_at_a_time
def set_setting(key: str, value: str | bool | None) -> Path:
    """Set a top-level string or true/false setting in the settings file (None removes it) where it
    was, or after the other top-level settings, keeping the rest of the file as it is; returns the file."""
    from .errors import BadInputError
    from .writing import make_dir, write_atomic

    settings = load_settings()  # a broken file is an error before anything is changed
    path = settings_file()
    lines = path.read_text(encoding="utf-8-sig").splitlines() if path.exists() else []
    tables = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    assignment = re.compile(rf"\s*{re.escape(key)}\s*=")
    found = [i for i in range(tables) if assignment.match(lines[i])]
    if value is None and not found:
        return path  # nothing to remove
    kept = [line for i, line in enumerate(lines) if i not in found]
    if value is None and kept[found[0]:found[0] + 1] == [""] and (found[0] == 0 or not kept[found[0] - 1].strip()):
        del kept[found[0]]  # the blank line set_setting put after it, before a table
    if value is not None:
        top = [] if found else [i for i in range(tables) if kept[i].strip() and not kept[i].lstrip().startswith("#")]
        at = found[0] if found else top[-1] + 1 if top else tables
        while not found and not top and at > 0 and kept[at - 1].lstrip().startswith("#"):
            at -= 1  # above the comment that leads into the first table
        comment = _TRAILING_COMMENT.match(lines[found[0]]) if found else None  # `key = "x"  # why` keeps "# why"
        new = [f"{key} = {json.dumps(value, ensure_ascii=False)}" + (comment.group(1) if comment else "")]
        kept[at:at] = new + [""] if at < len(kept) and kept[at].lstrip().startswith(("[", "#")) else new
    text = "\n".join(kept) + "\n"
    expected = {k: v for k, v in settings.items() if k != key} | ({key: value} if value is not None else {})
    try:
        same = parse_toml(text) == expected
    except ValueError:
        same = False
    if not same:
        by_hand = f"write `{key} = {json.dumps(value)}` at its top" if value is not None else f"remove its `{key} = ...` line"
        raise BadInputError(f"cannot set {key} in {path} without changing something else there; {by_hand} by hand")
    make_dir(path.parent, "AIGC_CONFIG_DIR moves aigc's settings")
    return write_atomic(path, text)


def default_source(kind: str = "text") -> tuple[str, str]:
    """The default model of a kind (text or image) and where it is set: "set by VARIABLE", "set in
    FILE" or "aigc's own default"."""
    from .errors import BadInputError

    variable, key, builtin = DEFAULTS[kind]
    if os.environ.get(variable):
        return os.environ[variable], f"set by {variable}"
    value = load_settings().get(key)
    if value is not None:
        if not isinstance(value, str) or not value:
            raise BadInputError(f"{key} in {settings_file()} must be a model name in quotes; fix it or run `aigc models default{' --image' if kind == 'image' else ''} --unset`")
        return value, f"set in {settings_file()}"
    return builtin, "aigc's own default"


def cache_dir() -> Path:
    """Converted models and downloads: `AIGC_CACHE_DIR`, `$AIGC_HOME/cache` or `~/.cache/aigc`."""
    return _user_dir("AIGC_CACHE_DIR", "cache", "XDG_CACHE_HOME", ".cache")


PRIVATE = 0o700  # the mode of the directories aigc keeps your data in


def data_dir() -> Path:
    """What aigc keeps for the user (chat sessions): `AIGC_DATA_DIR`, `$AIGC_HOME/data` or `~/.local/share/aigc`."""
    from .errors import BadInputError

    path = _user_dir("AIGC_DATA_DIR", "data", "XDG_DATA_HOME", ".local/share")
    if path.exists() and not path.is_dir():  # nothing could be kept there, though the log would say it is on
        raise BadInputError(f"aigc's data directory {path} is a file; point AIGC_DATA_DIR at a directory (or move the file)")
    return path


DATA_HINT = "AIGC_DATA_DIR moves aigc's data"
LOG_HINT = f"{DATA_HINT}; AIGC_LOGS=0 or --no-log runs without writing it"  # for what is kept as answers are logged


def made_data_dir(hint: str = DATA_HINT) -> Path:
    """aigc's data directory, made if needed (readable by its owner only when new: conversations,
    the log and input history are kept there); `hint` ends the error where it cannot be."""
    from .writing import make_dir

    return make_dir(data_dir(), hint, PRIVATE)


def data_subdir(name: str, hint: str = DATA_HINT) -> Path:
    """A directory in aigc's data directory, made if needed (both owner-only when new)."""
    from .writing import make_dir

    return make_dir(made_data_dir(hint) / name, hint, PRIVATE)


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model() -> str:
    """The model used when `-m` is not given: `AIGC_DEFAULT_MODEL`, `default_model` in the settings
    file (`aigc models default NAME`), or the embedded `smollm2`."""
    return default_source("text")[0]


given_threads: int | None = None  # `aigc --threads N`, set by the CLI for the command it runs
THREADS_HINT = "a whole number of 1 or more"


def threads() -> int | None:
    """How many CPU threads torch computes with: `aigc --threads N`, else `AIGC_THREADS`, else
    `threads` in the settings file; None: torch's own choice (one per core)."""
    return threads_source()[0]


def threads_source() -> tuple[int | None, str]:
    """`threads()` and where it is set: "--threads", "AIGC_THREADS", "config" (the settings file), or "" (None: unset)."""
    from .errors import BadInputError

    if given_threads is not None:
        return given_threads, "--threads"
    named = env_threads()
    if named is not None:
        return named, "AIGC_THREADS"
    setting = load_settings().get("threads")
    if setting is not None and (isinstance(setting, bool) or not isinstance(setting, int) or setting < 1):
        raise BadInputError(f"threads in {settings_file()} must be {THREADS_HINT} (threads = 2), got {setting!r}; fix it or remove the line")
    return setting, "config" if setting is not None else ""


def env_threads() -> int | None:
    """`AIGC_THREADS` as a number (None when unset); a value that is no whole number of 1 or more is an error."""
    from .errors import BadInputError

    value = os.environ.get("AIGC_THREADS", "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise BadInputError(f"AIGC_THREADS must be {THREADS_HINT}, got {value!r}")
    return int(value)


FALSY = ("", "0", "false", "no", "off")  # what leaves an on/off AIGC_* variable off, in any case; any other value (1, true, 2, debug) turns it on


def flag(name: str) -> bool:
    """Whether the on/off environment variable `name` is on: set to anything but 0, false, no or off (any case) or empty."""
    return os.environ.get(name, "").strip().lower() not in FALSY


def debug() -> bool:
    """Whether AIGC_DEBUG asks for tracebacks."""
    return flag("AIGC_DEBUG")


def templates_path() -> list[Path]:
    """`templates_path` in the settings file: directories of templates, searched after `AIGC_TEMPLATES_PATH`'s
    (a TOML list of strings, the first winning; `~` is expanded, and a relative one is from the file's
    directory); [] when unset."""
    from .errors import BadInputError

    value = load_settings().get("templates_path")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(entry, str) and entry for entry in value):
        raise BadInputError(f"templates_path in {settings_file()} must be a list of directories in quotes (templates_path = [\"~/team-prompts\"]); fix it or remove the line")
    return [settings_file().parent / Path(entry).expanduser() for entry in value]


def model_aliases() -> dict[str, str]:
    """The `[aliases]` table of the settings file: your own model names (`aigc models alias`)."""
    from .errors import BadInputError

    aliases = load_settings().get("aliases", {})
    if not isinstance(aliases, dict):
        raise BadInputError(f"aliases in {settings_file()} must be a table, [aliases] with a name a line (small = \"smollm2\"); fix it")
    bad = next((key for key, value in aliases.items() if not isinstance(value, str) or not value), None)
    if bad is not None:
        line = key_line(("aliases",), bad)
        where = f"{bad} in [aliases] of {settings_file()}" + (f" (line {line})" if line else "")
        misplaced = f"; it is a top-level setting: {TOP_LEVEL_HINT}" if bad in SETTINGS else ""
        raise BadInputError(f"{where} must name a model in quotes ({bad} = \"smollm2\"), got {aliases[bad]!r}{misplaced}; fix it")
    return aliases


def command_table(command: str) -> dict:
    """The `[COMMAND]` table of the settings file: that command's option defaults ({} when there is none)."""
    from .errors import BadInputError

    table = load_settings().get(command, {})
    if not isinstance(table, dict):
        example = "port = 8080" if command == "serve" else "temperature = 0.7"
        raise BadInputError(f"{command} in {settings_file()} must be a table, [{command}] with an option a line ({example}); fix it")
    return table


ALIASES_COMMENT = f"# your model aliases (aigc models alias); {TOP_LEVEL_HINT}"  # set_alias writes it above the [aliases] it adds
_ALIASES_TABLE = re.compile(r"\s*\[\s*aliases\s*\]\s*(#.*)?$")


@_one_at_a_time
def set_alias(name: str, target: str | None) -> Path:
    """Set (None: remove) `name = "target"` in the settings file's `[aliases]` table, keeping the
    rest of the file as it is; returns the file."""
    from .errors import BadInputError
    from .writing import make_dir, write_atomic

    settings = load_settings()
    path = settings_file()
    lines = path.read_text(encoding="utf-8-sig").splitlines() if path.exists() else []
    header = next((i for i, line in enumerate(lines) if _ALIASES_TABLE.match(line)), None)
    if header is None:
        if target is None and name not in settings.get("aliases", {}):
            return path
        if target is None:  # written some other way (an inline table, `aliases.x = ...`)
            raise BadInputError(f"cannot find the [aliases] table in {path} to remove {name!r} from; remove it there by hand")
        lines += ([""] if lines and lines[-1].strip() else []) + [ALIASES_COMMENT, "[aliases]"]
        header = len(lines) - 1
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    entry = re.compile(rf"\s*(?:{re.escape(name)}|\"{re.escape(name)}\")\s*=")
    found = [i for i in range(header + 1, end) if entry.match(lines[i])]
    new = [] if target is None else [f"{json.dumps(name) if not re.fullmatch(r'[A-Za-z0-9_-]+', name) else name} = {json.dumps(target, ensure_ascii=False)}"]
    if found:
        lines[found[0]:found[0] + 1] = new
    else:
        last = max([i for i in range(header, end) if lines[i].strip()], default=header)
        lines[last + 1:last + 1] = new
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    emptied = target is None and not any(line.strip() for line in lines[header + 1:end])
    if emptied:  # the last alias removed: its table goes too, with the blank line set_alias put before it
        start = header - (header > 0 and lines[header - 1] == ALIASES_COMMENT)
        del lines[start - (start > 0 and not lines[start - 1].strip()):end]
    text = "\n".join(lines) + "\n" if lines else ""
    aliases = {k: v for k, v in settings.get("aliases", {}).items() if k != name} | ({name: target} if target else {})
    expected = {k: v for k, v in settings.items() if k != "aliases"} | ({"aliases": aliases} if aliases or "aliases" in settings and not emptied else {})
    try:
        same = parse_toml(text) == expected
    except ValueError:
        same = False
    if not same:
        raise BadInputError(f"cannot change [aliases] in {path} without changing something else there; edit it by hand")
    make_dir(path.parent, "AIGC_CONFIG_DIR moves aigc's settings")
    return write_atomic(path, text)
