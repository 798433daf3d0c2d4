"""Saved conversations: the JSON that `/save FILE.json` and `aigc chat --session` write, the
named sessions kept in aigc's data directory (`aigc sessions`), and the unnamed conversations
`aigc chat` keeps by id while answers are logged (`aigc chat -c`, `--cid ID`)."""

from __future__ import annotations

import json
import os
import secrets
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import regex

from . import config, locks
from .errors import BadInputError, ConversationDeletedError, ConversationOpenError
from .textio import MAX_NAME_BYTES, check_utf8, fits_file_name, name_of_ours, parse_json
from .writing import write_atomic

NAME = regex.compile(r"[\p{L}\p{N}][\p{L}\p{N}\p{M}_-]{0,99}")  # letters and digits of any script, their combining marks
ROLES = ("system", "user", "assistant")
RECENT_FILES = 10  # session files opened by their path that `latest` looks at
_held_here: ContextVar[tuple[Path, ...]] = ContextVar("aigc_conversations_in_use", default=())  # held by this caller's `in_use` blocks


@dataclass
class Conversation:
    """A system prompt (or None) and the turns after it."""

    system: str | None = None
    messages: list[dict] = field(default_factory=list)
    model: str | None = None
    extra: dict = field(default_factory=dict)  # other keys of the file, written back as they were

    def transcript(self) -> list[dict]:
        """The messages with the system prompt first, as chat APIs take them."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages

    def to_json(self) -> str:
        return json.dumps({**self.extra, "model": self.model, "messages": self.transcript()}, indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        template = [f"Template: `{self.extra['template']}`"] if isinstance(self.extra.get("template"), str) else []
        return "\n\n".join(template + [f"## {m['role'].capitalize()}\n\n{m['content']}" for m in self.transcript()])

    def save(self, path: str | os.PathLike, flag: str = "-o") -> Path:
        """Write it as JSON (`.json`) or Markdown (any other name), atomically; a new file is
        readable by its owner only (conversations are as private as the response log)."""
        text = self.to_json() if Path(path).suffix.lower() == ".json" else self.to_markdown()
        return write_atomic(path, text, flag, private=True)


def read(path: str | os.PathLike) -> Conversation:
    """A conversation file as `save` writes it (`{"model": ..., "messages": [...]}`, other keys kept;
    a bare list of messages is taken too, and an empty file is an empty conversation; several system
    messages become one system prompt). Anything else is a one-line error."""
    path = Path(path).expanduser()
    fix = f'{path} is not a saved conversation: expected JSON like {{"messages": [{{"role": "user", "content": "..."}}]}}, as /save FILE.json writes'
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (PowerShell's) is skipped
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{fix} (not UTF-8)") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = parse_json(text) if text.strip() else []
    except ValueError as exc:
        raise BadInputError(f"{fix} (not JSON: {exc})") from None
    try:
        check_utf8(data, "conversation")
    except BadInputError:
        raise BadInputError(f"{fix} (it holds an escaped lone surrogate, \\ud800 say, which is no text)") from None
    messages = data.get("messages") if isinstance(data, dict) else data
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages
    ):
        raise BadInputError(fix)
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
    extra = {k: v for k, v in data.items() if k not in ("model", "messages")} if isinstance(data, dict) else {}
    model = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), str) else None
    return Conversation("\n\n".join(system) if system else None, turns, model, extra)  # several: kept as one


def sessions_dir() -> Path:
    return config.data_dir() / "sessions"


def conversations_dir() -> Path:
    """Where the unnamed conversations are kept, one file per id."""
    return config.data_dir() / "conversations"


def input_history() -> Path:
    """The REPL's input lines, kept across chats (readline's history file)."""
    return config.data_dir() / "chat_history"


def _history_cleared() -> Path:
    return config.data_dir() / "chat_history.cleared"


def history_generation() -> str | None:
    """What `forget_input_history` changes: a chat that sees it change keeps none of the lines typed before."""
    try:
        return _history_cleared().read_text(encoding="utf-8")
    except (OSError, ValueError):  # never cleared
        return None


def forget_input_history() -> bool:
    """Delete the REPL's input history, telling chats open meanwhile (`history_generation`) not to
    write theirs back; returns whether there was one."""
    config.made_data_dir()
    with locks.held(input_history(), wait=True):  # a chat saving its lines finishes first, or sees this after
        write_atomic(_history_cleared(), secrets.token_hex(8), private=True)
        try:
            input_history().unlink()
            return True
        except FileNotFoundError:
            return False


def recent_files_record() -> Path:
    """Where the session files last opened by their path are noted, for `latest`."""
    return config.data_dir() / "recent_session_files.json"


def recent_files() -> list[Path]:
    """The session files last opened by their path, the latest first (gone ones included)."""
    try:
        noted = parse_json(recent_files_record().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or broken: noted again from the next one
        return []
    return [Path(p) for p in noted if isinstance(p, str)][:RECENT_FILES] if isinstance(noted, list) else []


def remember(path: str | os.PathLike) -> None:
    """Note a session file opened by its path (not one kept in aigc's data directory) for `latest`:
    the last RECENT_FILES, in an owner-only file written atomically, under a lock that two chats
    starting at once wait their turn for (else one's entry could be lost)."""
    path = Path(path).absolute()
    if path.parent in (sessions_dir().absolute(), conversations_dir().absolute()):
        return
    config.made_data_dir()
    with locks.held(recent_files_record(), wait=True):
        noted = [str(path)] + [str(p) for p in recent_files() if p != path]
        write_atomic(recent_files_record(), json.dumps(noted[:RECENT_FILES], indent=2), private=True)  # ASCII: a name in no UTF-8 comes back as it was


def unnamed(path: Path) -> bool:
    """Whether `path` is an unnamed conversation's file (not a session)."""
    return Path(path).absolute().parent == conversations_dir().absolute()


def new_conversation() -> Path:
    """The file for a new unnamed conversation, named by a new id: the UTC time and random digits."""
    cid = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    return config.data_subdir("conversations", config.LOG_HINT) / f"{cid}.json"  # made as answers are logged


def conversation_path(cid: str) -> Path:
    """The file of the conversation the log names `cid` (its `session`): an unnamed conversation's
    id, a session's name, or a session file's path."""
    if NAME.fullmatch(cid):
        candidates = [conversations_dir() / f"{cid}.json", sessions_dir() / f"{cid}.json"]
    else:
        candidates = [Path(cid).expanduser()] if cid.lower().endswith(".json") else []  # a session file, as -S takes it
    for path in candidates:
        if path.is_file():
            return path
    raise BadInputError(f"no conversation {cid!r}; `aigc logs --command chat` shows each chat's id (after 'session'), and `aigc chat -c` goes on from the latest")


def latest() -> Path:
    """The file of the most recently changed conversation that has turns: a named session, an unnamed
    one, or a session file opened by its path (`remember`); files that are gone, cannot be read or
    hold no turns (a chat that only ran slash commands, say) are passed over, as `llm -c` does."""
    kept = [path for folder in (sessions_dir(), conversations_dir()) for path in folder.glob("*.json") if NAME.fullmatch(path.stem)]
    found = []
    for path in kept + recent_files():
        try:
            found.append((path.stat().st_mtime_ns, path))
        except OSError:  # removed meanwhile, or a noted file gone since
            continue
    for _, path in sorted(found, reverse=True):
        try:
            if read(path).messages:
                return path
        except BadInputError:
            continue
    raise BadInputError('there is no conversation to continue; `aigc chat "..."` starts one (kept while answers are logged), `aigc chat --session NAME` a named one')


def unnamed_files(cids: set[str] | None = None) -> list[Path]:
    """The files of the unnamed conversations: all, or those of the ids in `cids` (session names
    and files among them are not unnamed ones)."""
    found = sorted(conversations_dir().glob("*.json"))
    return found if cids is None else [path for path in found if path.stem in cids]


def forget(paths: list[Path]) -> list[Path]:
    """Delete these conversations' files; returns those that went (not ones removed meanwhile)."""
    gone = []
    for path in paths:
        try:
            path.unlink()
            gone.append(path)
        except OSError:  # removed meanwhile
            continue
    return gone


def described(path: Path) -> str:
    """A conversation as messages name it: a session by its name or file, else by its id."""
    label = session_label(path)
    return f"conversation {label}" if unnamed(path) else f"session {label!r}"


def deleted(path: Path) -> ConversationDeletedError:
    """The error for a conversation deleted while a chat had it open: the chat does not make it again."""
    return ConversationDeletedError(f"{described(path)} was deleted meanwhile; this chat stops without writing it again (`aigc chat -c` goes on from the latest one left)")


@contextmanager
def in_use(path: Path, existing: bool = False, waiting=None, timeout: float | None = None):
    """Hold the conversation at `path` for this process, so that a second `aigc chat` (or a
    `ChatSession`, see `held_for_session`) on it fails at once instead of both rewriting the file
    (and `none_open` refuses to delete it); with `waiting`, it calls `waiting()` and waits its turn
    instead, for at most `timeout` seconds where given (then a `ConversationOpenError` too).
    `existing`: it was there when the chat picked it, so one deleted before the hold is a
    `ConversationDeletedError`."""
    busy = f"{path} is in use by another aigc chat; wait for it to end (--wait) or pick another --session"

    def still(waited: float) -> str:
        return f"{path} is still in use by another aigc chat after waiting {waited:g} s; wait longer (a higher --wait-timeout, or none) or pick another --session"

    with locks.held_or_waited(path, busy, still, ConversationOpenError, waiting, timeout):
        if existing and not Path(path).is_file():
            raise deleted(path)
        token = _held_here.set((*_held_here.get(), Path(path).resolve()))
        try:
            yield
        finally:
            _held_here.reset(token)


def held_for_session(path: Path) -> ExitStack:
    """Hold the conversation at `path` for a `ChatSession` until the stack returned is closed, as
    `in_use` holds it for an `aigc chat`: one open in another chat or session is a
    `ConversationOpenError`. Inside an `in_use` block on it (the CLI's chat), that block's hold is the session's."""
    stack = ExitStack()
    if Path(path).resolve() not in _held_here.get():
        busy = f"{path} is in use by another aigc chat or ChatSession; close that session (session.close(), or the end of its with block) or leave that chat, or give another path"
        stack.enter_context(locks.held(path, busy, ConversationOpenError))
    return stack


@contextmanager
def none_open(paths: list[Path]):
    """Hold all these conversations while the block deletes them (the lock files of those it
    deleted go too); where a running `aigc chat` has one open, a `ConversationOpenError` names the
    first such and the block does not run."""
    with ExitStack() as stack:
        for path in paths:
            busy = f"{described(path)} is open in another aigc chat; leave that chat, then run this again (nothing was deleted)"
            stack.enter_context(locks.held(path, busy, ConversationOpenError))
        yield


def session_path(name: str) -> Path:
    """Where session `name` is kept; a name with a slash or a dot is a file (`notes.json`, `~/chat.json`)."""
    if "/" in name or os.sep in name or "." in name:
        path = Path(name).expanduser()
        if path.suffix.lower() != ".json":
            raise BadInputError(f"session file {name} must end in .json (the conversation is kept as JSON)")
        return path
    name = name_of_ours(name)
    if not NAME.fullmatch(name) or not fits_file_name(name):
        raise BadInputError(f"session name {name!r}: start with a letter or digit, then up to 99 letters, digits (of any script), '-' and '_', at most {MAX_NAME_BYTES} bytes of UTF-8; or give a path to a .json file")
    return sessions_dir() / f"{name}.json"


def session_label(path: Path) -> str:
    """How records name a conversation: a session's name, an unnamed conversation's id, or a
    session file's real path (one file, one label, however its path was written: `..`, links)."""
    path = Path(path).resolve()
    return path.stem if path.parent in (sessions_dir().resolve(), conversations_dir().resolve()) else str(path)


def list_sessions() -> list[dict]:
    """The named sessions, most recently used first: name, messages, model, template (None for the
    plain chat template), updated (ISO time), path.
    A file that cannot be read is listed with `error` instead of its contents."""
    found = []
    for path in sessions_dir().glob("*.json"):
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:  # removed meanwhile
            continue
    rows = []
    for mtime, path in sorted(found, reverse=True):
        updated = datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds")
        row = {"name": path.stem, "updated": updated, "path": str(path)}
        try:
            if not NAME.fullmatch(path.stem):
                raise BadInputError(f"{path}: not a session name (letters, digits, '-' and '_'); rename it to use it")
            saved = read(path)
        except BadInputError as exc:
            row["error"] = str(exc)
        else:
            first = next((m["content"] for m in saved.messages if m["role"] == "user"), "")
            template = saved.extra.get("template")
            row.update(messages=len(saved.messages), model=saved.model, template=template if isinstance(template, str) else None, first=first)
        rows.append(row)
    return rows
