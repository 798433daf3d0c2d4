"""`aigc sessions [list] [--json]`, `aigc sessions show NAME`, `aigc sessions rm NAME ...`: the
conversations `aigc chat --session NAME` keeps."""

import json
from pathlib import Path
from typing import Annotated

import typer

from .. import conversations, ui
from ..errors import BadInputError
from ..textio import readable_json
from . import complete
from .options import listing_app

sessions_app = listing_app("sessions", "List, show and remove the chat sessions kept by `aigc chat --session NAME`.", lambda as_json: _show(as_json))


@sessions_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Chat sessions, most recently used first (the same as `aigc sessions`)."""
    _show(as_json)


def _show(as_json: bool) -> None:
    rows = conversations.list_sessions()
    if as_json:  # a file name's bytes in no UTF-8 as U+FFFD: the JSON stays UTF-8
        ui.result(json.dumps(readable_json(rows), indent=2, ensure_ascii=False))
        return
    broken = [row for row in rows if "error" in row]
    for row in broken:
        ui.warn(row["error"])
    rows = [row for row in rows if "error" not in row]
    if not rows:
        readable = "readable " if broken else ""
        ui.info(f"No {readable}sessions in {conversations.sessions_dir()}. `aigc chat --session NAME` starts one.")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "messages", "updated", "first message"):
        table.add_column(column, no_wrap=column == "first message", max_width=60 if column == "first message" else None)  # the first message a preview, cut with "…"
    for row in rows:
        first = " ".join(row["first"].split())
        table.add_row(row["name"], str(row["messages"]), row["updated"].replace("T", " ").replace("+00:00", " UTC"), first)
    ui.print_table(table)


@sessions_app.command()
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Session name, .json file, or a chat's id as `aigc logs` shows it (after 'session').", autocompletion=complete.sessions)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the saved JSON instead of Markdown.")] = False,
) -> None:
    """The conversation of a session, as Markdown (or JSON)."""
    saved = conversations.read(_existing(name))
    ui.result(saved.to_json() if as_json else saved.to_markdown())


@sessions_app.command("rm")
def remove(names: Annotated[list[str], typer.Argument(metavar="NAME", help="Session names, as `aigc sessions` lists them.", autocompletion=complete.sessions)]) -> None:
    """Delete named sessions (a conversation kept in a file of your own is yours to delete)."""
    paths = list(dict.fromkeys(_existing(name, named_only=True) for name in names))  # all checked before any is removed
    with conversations.none_open(paths):  # not under a chat that would write one again: nothing is removed then
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:  # another process removed it after the check
                ui.info(f"{path} was already removed")
                continue
            ui.info(f"removed {path}")


def _existing(name: str, named_only: bool = False):
    """The file of session `name`: a named session, or (unless `named_only`) a .json file or an unnamed chat's id."""
    path = conversations.session_path(name)
    if named_only and path.parent != conversations.sessions_dir():
        if path.is_file() and path.resolve().parent != conversations.sessions_dir().resolve():  # the conversation `aigc sessions show NAME` shows: a hint at a session would name another one
            raise BadInputError(f"{name} is a file of yours, not a session; rm deletes only the sessions `aigc sessions` lists (delete the file yourself)")
        raise BadInputError(f"{name} is not a session name; rm deletes only the sessions `aigc sessions` lists{_hint(name)}")
    if path.is_file():
        return path
    if path.exists():
        raise BadInputError(f"{path} is not a file; remove or rename it")
    unnamed = conversations.conversations_dir() / f"{name}.json"
    if conversations.NAME.fullmatch(name) and unnamed.is_file():  # a chat's id, as `aigc chat --cid` takes it
        if named_only:
            raise BadInputError(f"{name} is an unnamed chat, not a session; `aigc logs rm ID`, given one of its answers' ids, deletes it (`aigc logs -S {name} -n 0` shows them)")
        return unnamed
    known = [row["name"] for row in conversations.list_sessions()]
    others = f"; there are: {', '.join(known[:10])}" if known else "; `aigc chat --session NAME` starts one"
    raise BadInputError(f"no session {name!r}{_hint(name) or others}")


def _hint(name: str) -> str:
    """For a file name that is a session's name plus .json (or a path to it)."""
    stem = Path(name).stem
    return f"; did you mean `{stem}`?" if stem != name and (conversations.sessions_dir() / f"{stem}.json").is_file() else ""


def register(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")
