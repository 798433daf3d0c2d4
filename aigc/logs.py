"""The response log: each answer a generating command prints, kept in a SQLite file (`aigc logs`).

On unless `aigc logs off` (a `logs = false` line in config.toml) or `AIGC_LOGS=0`; a command's
`--log` / `--no-log` decides for that run. The library itself never logs: the CLI calls `record`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from . import config
from .errors import BadInputError, spelt
from .textio import parse_json, readable_name

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY,
    datetime_utc TEXT NOT NULL,
    command TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    response TEXT NOT NULL,
    options TEXT NOT NULL,
    result TEXT,
    session TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    duration_ms INTEGER
)
"""
_ON, _OFF = {"1", "on", "true", "yes"}, {"0", "off", "false", "no"}
MAX_ID = 2**63 - 1  # SQLite's largest integer


@dataclass
class Entry:
    """One logged answer. `prompt` is the input as given (a dict of inputs as JSON), `response` the
    text printed, `options` the task options and sampling settings given, `result` the generator's
    whole result when it holds more than the text."""

    command: str
    model: str
    prompt: str
    response: str
    options: dict
    result: dict | None = None
    session: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: int | None = None
    id: int | None = None
    datetime_utc: str = ""

    def as_dict(self) -> dict:
        """The entry as `aigc logs --json` prints it: id and time first."""
        values = asdict(self)
        return {"id": values.pop("id"), "datetime_utc": values.pop("datetime_utc"), **values}

    def to_markdown(self, truncate: bool = False) -> str:
        """The entry under a `## ID` heading; `truncate`: the entry as one line, for a quick look (`aigc logs -t`):
        `## ID · time · command · model · prompt → response`, the prompt cut to `SHORT_PROMPT` columns and the
        response to `SHORT_RESPONSE`, with no options line; the template after the command where it is another
        (`run/recipe`)."""
        when = self.datetime_utc.replace("T", " ").replace("+00:00", " UTC")
        if truncate:
            template = self.options.get("template")
            what = f"{self.command}/{template}" if isinstance(template, str) and template and template != self.command else self.command
            short = when[:16] + " UTC" if when.endswith(" UTC") else when  # to the minute
            return f"## {self.id} · {short} · {what} · {self.model} · {_truncated(self.prompt, SHORT_PROMPT)} → {_truncated(self.response, SHORT_RESPONSE)}"
        head = f"## {self.id} · {when} · {self.command} · {self.model}"
        given = {k: v for k, v in self.options.items() if v is not None and v != ""}  # `aspect=` says nothing
        facts = [", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in given.items())] if given else []
        if self.session:
            facts.append(f"session {self.session}")
        if self.prompt_tokens is not None:
            facts.append(f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens")
        if self.duration_ms is not None:
            facts.append(f"{self.duration_ms / 1000:.1f} s")
        return "\n\n".join([head] + [" · ".join(facts)] * bool(facts) + ["### Prompt", self.prompt, "### Response", self.response])


SHORT_PROMPT, SHORT_RESPONSE = 40, 60  # terminal columns of the prompt and the response in `aigc logs -t`


def _truncated(text: str, columns: int) -> str:
    """`text` as one line of at most `columns` terminal columns (a CJK character takes two), cut
    between characters as shown (grapheme clusters: an emoji family, a letter and its accent)."""
    import regex
    from rich.cells import cell_len

    one_line = " ".join(text.split())
    if cell_len(one_line) <= columns:
        return one_line
    kept, width = [], 0
    for cluster in regex.finditer(r"\X", one_line):
        width += cell_len(cluster.group())
        if width > columns - 3:
            break
        kept.append(cluster.group())
    return "".join(kept) + "..."


def log_path() -> Path:
    """`logs.db` in aigc's data directory."""
    return config.data_dir() / "logs.db"


def logging_state() -> tuple[bool, str]:
    """Whether answers are logged, and what decides: `AIGC_LOGS` (on/off, 1/0), else `logs` in
    config.toml, else on."""
    named = env_logging()
    if named is not None:
        return named, "set by AIGC_LOGS"
    setting = config.load_settings().get("logs")
    if setting is None:
        return True, "aigc's default"
    if not isinstance(setting, bool):
        raise BadInputError(f"logs in {config.settings_file()} must be true or false; fix it or run `aigc logs on`")
    return setting, f"set in {config.settings_file()}"


def env_logging() -> bool | None:
    """`AIGC_LOGS` as on or off (None when unset or empty); another value is an error."""
    value = os.environ.get("AIGC_LOGS", "").strip().lower()
    if not value:
        return None
    if value not in _ON | _OFF:
        raise BadInputError(f"AIGC_LOGS must be on or off (1 or 0), got {value!r}")
    return value in _ON


def enabled() -> bool:
    return logging_state()[0]


def set_enabled(on: bool) -> Path:
    """Turn logging on (the default: the setting is removed) or off (`logs = false`); returns config.toml."""
    return config.set_setting("logs", None if on else False)


@contextmanager
def _connect() -> Iterator[sqlite3.Connection]:
    """A connection to the log, made (readable by its owner only) with its table when new; a file
    that is not aigc's log, or one it cannot use, is a one-line error."""
    path = log_path()
    config.made_data_dir(config.LOG_HINT)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o600))
        with closing(sqlite3.connect(path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            db.create_function("fold", 1, lambda text: text.casefold(), deterministic=True)
            db.execute("PRAGMA secure_delete = ON")  # deleted entries' text is overwritten, not left in the file
            if _schema(db) != (SCHEMA_VERSION, {"responses"}):
                with db:  # one transaction, so another aigc making the log at once never sees a table without its version
                    db.execute("BEGIN IMMEDIATE")
                    version, tables = _schema(db)  # as that other aigc left it
                    if (version, tables) != (SCHEMA_VERSION, {"responses"}):
                        if tables or version:
                            raise BadInputError(f"{path} is not aigc's response log (another program's database, or a newer aigc's); move it away or set AIGC_DATA_DIR")
                        db.execute(SCHEMA)
                        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            yield db
    except OSError as exc:
        raise BadInputError(f"cannot use the response log {path}: {exc.strerror or exc}") from None
    except sqlite3.DatabaseError as exc:
        broken = not isinstance(exc, sqlite3.OperationalError)  # not a database, or a damaged one
        fix = "move it away (aigc starts a new one)" if broken else "check the file and its directory"
        raise BadInputError(f"cannot use the response log {path}: {exc}; {fix}, or run `aigc logs off`") from None


def _schema(db: sqlite3.Connection) -> tuple[int, set[str]]:
    """The log's version and tables (0 and none: a new file)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return db.execute("PRAGMA user_version").fetchone()[0], tables


def record(entry: Entry) -> int:
    """Add an entry; returns its id."""
    row = asdict(entry)
    row.pop("id")
    row["datetime_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row["options"] = json.dumps(entry.options, ensure_ascii=False, default=str)
    row["result"] = None if entry.result is None else json.dumps(entry.result, ensure_ascii=False, default=str)
    row = {key: readable_name(value) if isinstance(value, str) else value for key, value in row.items()}  # a session file's name in no UTF-8: SQLite takes no lone surrogate
    with _connect() as db, db:
        cursor = db.execute(f"INSERT INTO responses ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        return int(cursor.lastrowid)


def _entry(row: sqlite3.Row) -> Entry:
    values: dict[str, Any] = dict(row)
    values["options"] = parse_json(values["options"])
    values["result"] = None if values["result"] is None else parse_json(values["result"])
    return Entry(**values)


_TEMPLATE_TEXT = "CAST(coalesce(CASE WHEN json_valid(options) THEN json_extract(options, '$.template') END, '') AS TEXT)"  # an entry's template name, '' for none


def entries(
    count: int | None = 3, query: str | None = None, model: str | None = None, command: str | None = None, session: str | None = None,
    *, min_id: int | None = None, since: datetime | None = None, until: datetime | None = None, template: str | None = None,
) -> list[Entry]:
    """The last `count` entries (None: all) that match every filter given, oldest first. `query`:
    each of its words (or "quoted phrases") is in the prompt, the response or the template's name,
    in any case and any order, as `llm logs -q` finds them; `min_id`: ids from it on; `since`: logged at that time or
    later; `until`: logged before that time (so `since=a, until=b` then `since=b` leave nothing out and show nothing twice);
    `template`: made with the template of that name (its `template` option). An `until` not after `since` is a `BadInputError`."""
    if since is not None and until is not None and until <= since:
        until_, since_ = spelt("--until", "until"), spelt("--since", "since")
        raise BadInputError(f"{until_} ({_shown(until)}) must be after {since_} ({_shown(since)}): the answers shown are those logged from {since_} up to {until_}")
    if not log_path().exists() or (min_id or 0) > MAX_ID:
        return []
    where, args = [], []
    if min_id is not None:
        where.append("id >= ?")
        args.append(max(min_id, 0))
    if since is not None:  # the times are logged as ISO text in UTC, which sorts as the times do
        where.append("datetime_utc >= ?")
        args.append(since.astimezone(timezone.utc).isoformat(timespec="seconds"))
    if until is not None:
        where.append("datetime_utc < ?")
        args.append(until.astimezone(timezone.utc).isoformat(timespec="seconds"))
    for term in query_terms(query or ""):
        where.append(f"(instr(fold(prompt), ?) > 0 OR instr(fold(response), ?) > 0 OR instr(fold({_TEMPLATE_TEXT}), ?) > 0)")
        args += [term.casefold()] * 3
    if model:  # a local model by the path typed or the absolute one logged; your alias by the answers made through it
        from .engine.models import recorded_name

        where.append("(model IN (?, ?) OR json_extract(options, '$.model_alias') = ?)")
        args += [model, recorded_name(model), model]
    if template:
        where.append("json_extract(options, '$.template') = ?")
        args.append(template)
    for column, value in (("command", command), ("session", session)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    sql = "SELECT * FROM responses" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
    if count is not None:
        sql += f" LIMIT {min(int(count), MAX_ID)}"
    with _connect() as db:
        rows = db.execute(sql, args).fetchall()
    try:
        return [_entry(row) for row in reversed(rows)]
    except (KeyError, TypeError, ValueError) as exc:  # a row aigc did not write
        raise BadInputError(f"{log_path()} holds an entry aigc cannot read ({type(exc).__name__}: {exc}); move the file away") from None


_AGO = re.compile(r"(\d{1,9})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _shown(moment: datetime) -> str:
    """A time as `aigc logs` shows one (in UTC)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def since_time(when: str, now: datetime | None = None, flag: str = "--since", end_of_day: bool = False) -> datetime:
    """The time `aigc logs --since WHEN` (or `--until WHEN`, named by `flag` in the error) names: an ISO
    date, or date and time (`2026-12-06`, `2026-12-06T08:00`), in local time unless it names its zone
    (`Z`, `+01:00`, or ` UTC` as `aigc logs` shows a time); or a time before `now`: `90s`, `30m`, `12h`, `7d`, `2w`.
    `end_of_day` (`--until`'s): a date alone is the end of that day, the next midnight, so `--since D --until D` is day D."""
    text = when.strip()
    utc = text.endswith(" UTC")
    try:
        if ago := _AGO.fullmatch(text):
            return (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
        zoned = re.sub(r"[Zz]$", "+00:00", text.removesuffix(" UTC"))  # fromisoformat takes Z from Python 3.11 on, z never
        moment = datetime.fromisoformat(zoned)
        if end_of_day and _date_only(zoned):
            moment += timedelta(days=1)
    except (ValueError, OverflowError):
        raise BadInputError(
            f"{flag} takes a date or time, as 2026-12-06 or 2026-12-06T08:00 (local time; Z or +01:00 names its zone), or a time ago, as 30m, 12h or 7d; not {when!r}"
        ) from None
    if utc and moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)  # a time naming no zone is local


def _date_only(text: str) -> bool:
    """Whether `text` is an ISO date with no time (`2026-12-06`)."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def query_terms(query: str) -> list[str]:
    """The words and "quoted phrases" of a search; a query of spaces alone is itself."""
    return [phrase or word for phrase, word in re.findall(r'"([^"]+)"|(\S+)', query)] or ([query] if query else [])


def values(column: str) -> list[str]:
    """The distinct values of `column` (`model`, `command`, `session` or `template`) the log holds, sorted."""
    if column not in ("model", "command", "session", "template") or not log_path().exists():
        return []
    held = "json_extract(options, '$.template')" if column == "template" else column
    with _connect() as db:
        return sorted(str(row[0]) for row in db.execute(f"SELECT DISTINCT {held} FROM responses WHERE {held} IS NOT NULL"))


def entry(entry_id: int) -> Entry:
    """The entry with this id; a `BadInputError` when there is none."""
    rows = []
    if 0 < entry_id <= MAX_ID and log_path().exists():
        with _connect() as db:
            rows = db.execute("SELECT * FROM responses WHERE id = ?", (entry_id,)).fetchall()
    if not rows:
        raise BadInputError(f"no logged response {entry_id}; `aigc logs -n 0` lists them all")
    try:
        return _entry(rows[0])
    except (KeyError, TypeError, ValueError) as exc:  # a row aigc did not write
        raise BadInputError(f"{log_path()} holds an entry aigc cannot read ({type(exc).__name__}: {exc}); move the file away") from None


def sessions_of(ids: list[int]) -> set[str]:
    """The chat sessions (names or conversation ids) the entries with these ids belong to."""
    valid = [i for i in ids if 0 < i <= MAX_ID]
    if not valid or not log_path().exists():
        return set()
    with _connect() as db:
        rows = db.execute(f"SELECT DISTINCT session FROM responses WHERE session IS NOT NULL AND id IN ({', '.join('?' * len(valid))})", valid)
        return {r[0] for r in rows}


def remove(ids: list[int]) -> int:
    """Delete the entries with these ids (every id checked first); returns how many went."""
    found: set[int] = set()
    valid = [i for i in ids if 0 < i <= MAX_ID]
    if valid and log_path().exists():
        with _connect() as db:
            found = {r[0] for r in db.execute(f"SELECT id FROM responses WHERE id IN ({', '.join('?' * len(valid))})", valid)}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise BadInputError(f"no logged response {', '.join(missing)}; `aigc logs -n 0` lists them all")
    with _connect() as db:
        with db:
            count = db.execute(f"DELETE FROM responses WHERE id IN ({', '.join('?' * len(ids))})", ids).rowcount
        _shrink(db)
    return count


def _pruned(until: datetime | None, keep: int | None) -> tuple[str, list]:
    """The SQL condition (and its arguments) of the entries `prune(until, keep)` deletes."""
    if until is None and keep is None:
        raise BadInputError(f"say which answers to prune: those logged before {spelt('--until WHEN', 'until')}, all but the latest {spelt('--keep N', 'keep')}, or both")
    if keep is not None and keep < 0:
        raise BadInputError(f"{spelt('--keep', 'keep')} must be 0 or more (how many of the latest answers to keep), got {keep}")
    where, args = [], []
    if until is not None:
        where.append("datetime_utc < ?")
        args.append(until.astimezone(timezone.utc).isoformat(timespec="seconds"))
    if keep is not None:
        where.append("id NOT IN (SELECT id FROM responses ORDER BY id DESC LIMIT ?)")
        args.append(min(keep, MAX_ID))
    return " AND ".join(where), args


def to_prune(until: datetime | None = None, keep: int | None = None) -> tuple[int, set[str]]:
    """How many entries `prune(until, keep)` would delete, and the chat sessions (names or conversation
    ids) all of whose entries it deletes: a conversation with an answer kept is one `chat -c` goes on
    from (its file holds the whole conversation; the log, its answers)."""
    where, args = _pruned(until, keep)
    if not log_path().exists():
        return 0, set()
    with _connect() as db:
        count = db.execute(f"SELECT count(*) FROM responses WHERE {where}", args).fetchone()[0]
        sessions = {r[0] for r in db.execute(f"SELECT session FROM responses WHERE session IS NOT NULL GROUP BY session HAVING sum(CASE WHEN {where} THEN 1 ELSE 0 END) = count(*)", args)}
    return count, sessions


def prune(until: datetime | None = None, keep: int | None = None) -> int:
    """Delete the entries logged before `until` that are not among the latest `keep` (either alone:
    all logged before `until`, all but the latest `keep`); returns how many went. The file shrinks
    when much of it is left empty."""
    where, args = _pruned(until, keep)
    if not log_path().exists():
        return 0
    with _connect() as db:
        with db:
            count = db.execute(f"DELETE FROM responses WHERE {where}", args).rowcount
        _shrink(db)
    return count


def _shrink(db: sqlite3.Connection) -> None:
    """VACUUM the log (the file gives back its empty pages) when a quarter of it or more is empty: the
    cost of rewriting what is left is then small beside what it frees."""
    free, pages = db.execute("PRAGMA freelist_count").fetchone()[0], db.execute("PRAGMA page_count").fetchone()[0]
    if free and free * 4 >= pages:
        db.execute("VACUUM")


def clear() -> int:
    """Delete every entry (the file stays, emptied and shrunk); returns how many went."""
    if not log_path().exists():
        return 0
    with _connect() as db:
        with db:
            count = db.execute("DELETE FROM responses").rowcount
        db.execute("VACUUM")
    return count


def status() -> dict:
    """Whether logging is on, where the log is, and how many entries it holds."""
    path = log_path()
    count = 0
    if path.exists():
        with _connect() as db:
            count = db.execute("SELECT count(*) FROM responses").fetchone()[0]
    on, decided = logging_state()
    return {"logging": on, "decided": decided, "path": str(path), "responses": count, "bytes": path.stat().st_size if path.exists() else 0}
