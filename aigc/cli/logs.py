"""`aigc logs [list]`, `aigc logs show|on|off|status|path|rm`: the answers generating commands printed."""

import json
from typing import Annotated, Optional

import typer

from .. import conversations, logs, ui
from ..engine.models import recorded_name
from ..errors import BadInputError
from ..markdown_blocks import extract_code
from ..textio import check_utf8
from . import complete
from .options import Yes, check_extract, confirm_deletion, misplaced

logs_app = typer.Typer(help="Show, search and manage the response log: every answer a generating command printed.", invoke_without_command=True)

Count = Annotated[Optional[int], typer.Option("--count", "-n", help="How many of the latest answers; 0 for all (default: 3; all with --id-gt, --id-gte or --since).", show_default=False)]
Query = Annotated[Optional[str], typer.Option("--query", "-q", help='Only answers whose prompt, response or template name holds each word of this text (any case, any order; "a phrase" in quotes as it is).')]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Only answers of this model (as `aigc logs` names it), or made through your alias of this name.")]
Command = Annotated[Optional[str], typer.Option("--command", help="Only answers of this command: chat, summarize, headline, ...")]
Template = Annotated[Optional[str], typer.Option("--template", help="Only answers made with this template (aigc run NAME, --template NAME); each logs its template_digest too.")]
Session = Annotated[Optional[str], typer.Option("--session", "-S", help="Only answers in this conversation: a session's name or .json file, or a chat's id (shown after 'session').", autocompletion=complete.sessions)]
Current = Annotated[bool, typer.Option("--current", "-c", help="Only answers in the latest conversation, the one `aigc chat -c` goes on from.")]
Response = Annotated[bool, typer.Option("--response", "-r", help="Print only the last matching response's text.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the entries as a JSON list, oldest first.")]
Extract = Annotated[bool, typer.Option("--extract", "-x", help="Print only the first fenced code block of each answer (the whole answer where it has none).")]
ExtractLast = Annotated[bool, typer.Option("--extract-last", "--xl", help="Print only the last fenced code block of each answer (the whole answer where it has none).")]
Truncate = Annotated[bool, typer.Option("--truncate", "-t", "--short", "-s", help="Each answer as one line, for a quick look: ## ID · time · command · model · prompt → response, both cut short.")]
IdGt = Annotated[Optional[int], typer.Option("--id-gt", metavar="ID", help="Only answers logged after this one (ids grow as answers are logged): for an export of what is new since the last.", show_default=False)]
IdGte = Annotated[Optional[int], typer.Option("--id-gte", metavar="ID", help="Only this answer and those logged after it.", show_default=False)]
Since = Annotated[Optional[str], typer.Option("--since", metavar="WHEN", help="Only answers logged since WHEN: 2026-12-06, 2026-12-06T08:00 (local time; Z or +01:00 names the zone), or a time ago: 30m, 12h, 7d.", show_default=False)]
Until = Annotated[Optional[str], typer.Option("--until", metavar="WHEN", help="Only answers logged before WHEN, in --since's forms; a date alone means up to that day's end (the next midnight), so --since 2026-12-06 --until 2026-12-06 is that day; with --since, the answers in between.", show_default=False)]


@logs_app.callback()
def logs_callback(ctx: typer.Context, count: Count = None, query: Query = None, model: Model = None, command: Command = None, session: Session = None, current: Current = False, response: Response = False, as_json: AsJson = False, extract: Extract = False, extract_last: ExtractLast = False, truncate: Truncate = False, id_gt: IdGt = None, id_gte: IdGte = None, since: Since = None, template: Template = None, until: Until = None) -> None:
    """The latest logged answers, oldest first, as Markdown (the same as `aigc logs list`; -x, --xl: the code block of each)."""
    if ctx.invoked_subcommand is None:
        _show(count, query, model, command, session, response, as_json, current, extract, extract_last, truncate, id_gt, id_gte, since, template, until)
    else:
        values = {"--count": (count, None), "--id-gt": (id_gt, None), "--id-gte": (id_gte, None), "--since": (since, None), "--until": (until, None), "--query": (query, None), "--model": (model, None), "--command": (command, None), "--template": (template, None), "--session": (session, None), "--current": (current, False), "--response": (response, False), "--json": (as_json, False), "--extract": (extract, False), "--extract-last": (extract_last, False), "--truncate": (truncate, False)}
        given = [flag for flag, (value, default) in values.items() if value != default]
        if given:
            raise BadInputError(misplaced(ctx, "logs", given))


@logs_app.command("list")
def list_command(count: Count = None, query: Query = None, model: Model = None, command: Command = None, session: Session = None, current: Current = False, response: Response = False, as_json: AsJson = False, extract: Extract = False, extract_last: ExtractLast = False, truncate: Truncate = False, id_gt: IdGt = None, id_gte: IdGte = None, since: Since = None, template: Template = None, until: Until = None) -> None:
    """The latest logged answers, oldest first, as Markdown (-x, --xl: the code block of each)."""
    _show(count, query, model, command, session, response, as_json, current, extract, extract_last, truncate, id_gt, id_gte, since, template, until)


def _show(count, query, model, command, session, response, as_json, current, extract, extract_last, truncate, id_gt=None, id_gte=None, since=None, template=None, until=None) -> None:
    after = id_gt is not None or id_gte is not None or since is not None  # what is new, for an export: all of it unless -n says
    count = (0 if after else 3) if count is None else count
    if count < 0:
        raise BadInputError(f"--count must be 0 (all) or more, got {count}")
    if truncate and (response or as_json or extract or extract_last):
        raise BadInputError("--truncate shortens the Markdown listing; leave it out with --response, --json, --extract or --extract-last")
    if response and as_json:
        raise BadInputError("give --response or --json, not both")
    check_extract(extract, extract_last, as_json)
    if current and session:
        raise BadInputError("give --current or --session, not both")
    if current:  # as llm's `logs -c`
        session = str(conversations.latest())
    for flag, value in (("--query", query), ("--model", model), ("--command", command), ("--session", session), ("--template", template)):
        check_utf8(value, f"{flag} value")
    if session:
        session = conversations.session_label(conversations.session_path(session))
    firsts = [first for first in (None if id_gt is None else id_gt + 1, id_gte) if first is not None]
    window = {"since": None if since is None else logs.since_time(since), "until": None if until is None else logs.since_time(until, flag="--until", end_of_day=True)}
    found = logs.entries(1 if response else count or None, query, model, command, session, min_id=max(firsts, default=None), template=template, **window)
    if as_json:
        ui.result(json.dumps([e.as_dict() for e in found], indent=2, ensure_ascii=False))
    elif not found:
        filtered = any((query, model, command, session, template)) or after or until is not None
        ui.info(_no_match(model, command, session, template) if filtered else f"No answers logged yet in {logs.log_path()}.")
    elif response:
        ui.result(extract_code(found[-1].response, extract_last) if extract or extract_last else found[-1].response)
    elif extract or extract_last:  # as llm's `logs -x`: each answer's code block, for a script
        ui.result("\n\n".join(extract_code(e.response, extract_last) for e in found))
    else:
        ui.result(("\n" if truncate else "\n\n").join(e.to_markdown(truncate) for e in found))


def _no_match(model: str | None, command: str | None, session: str | None, template: str | None = None) -> str:
    """Why nothing matched, where a --model, --command, --session or --template names what the log never holds (a typo)."""
    for flag, value, column in (("--command", command, "command"), ("--model", model, "model"), ("--session", session, "session"), ("--template", template, "template")):
        known = logs.values(column)
        if value and value not in known and (column != "model" or recorded_name(value) not in known):
            return f"No logged answer matches: no answer was logged with {flag} {value} (the log has {', '.join(known) or 'none'})."
    return "No logged answer matches."


@logs_app.command()
def show(
    entry_id: Annotated[int, typer.Argument(metavar="ID", help="The entry's id, as `aigc logs` shows it (## ID ...).")],
    response: Annotated[bool, typer.Option("--response", "-r", help="Print only the response's text.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entry as a JSON object.")] = False,
) -> None:
    """One logged answer, whole, as Markdown."""
    if response and as_json:
        raise BadInputError("give --response or --json, not both")
    found = logs.entry(entry_id)
    ui.result(json.dumps(found.as_dict(), indent=2, ensure_ascii=False) if as_json else found.response if response else found.to_markdown())


@logs_app.command()
def on() -> None:
    """Log the answers of generating commands (the default)."""
    logs.logging_state()  # a bad AIGC_LOGS is an error before the setting changes
    logs.set_enabled(True)
    _say_state()


@logs_app.command()
def off() -> None:
    """Stop logging answers (what is logged stays: `aigc logs rm --all` deletes it)."""
    logs.logging_state()  # a bad AIGC_LOGS is an error before the setting changes
    logs.set_enabled(False)
    _say_state()


def _say_state() -> None:
    on, decided = logs.logging_state()
    ui.info(f"logging is {'on' if on else 'off'} ({decided})")


@logs_app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help='Print {"logging", "decided", "path", "responses", "bytes"} as JSON.')] = False) -> None:
    """Whether answers are logged, where, and how many there are."""
    facts = logs.status()
    if as_json:
        ui.result(json.dumps(facts, indent=2, ensure_ascii=False))
    else:
        ui.result(f"Logging is {'on' if facts['logging'] else 'off'} ({facts['decided']})\nFile: {facts['path']}\nResponses: {facts['responses']} ({facts['bytes'] / 1e6:.1f} MB)")


@logs_app.command()
def path() -> None:
    """The log's file."""
    ui.result(str(logs.log_path()))


@logs_app.command("rm")
def remove(
    ids: Annotated[Optional[list[int]], typer.Argument(metavar="ID", help="Entry ids, as `aigc logs` shows them (## ID ...).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Delete every logged answer.")] = False,
    until: Annotated[Optional[str], typer.Option("--until", metavar="WHEN", help="Delete the answers logged before WHEN: 30d (older than 30 days), 12h, 2026-12-06T08:00, or 2026-12-06 (up to that day's end: that day's answers too), as `aigc logs --until` takes it.", show_default=False)] = None,
    keep: Annotated[Optional[int], typer.Option("--keep", metavar="N", help="Keep the latest N answers and delete the rest; with --until, only those of the rest logged before WHEN. An unnamed conversation goes with its answers only when all of them go.", show_default=False)] = None,
    yes: Yes = False,
) -> None:
    """Delete logged answers; their text is overwritten in the file. The unnamed conversations
    (`aigc chat -c`) that hold them go too, with --all every one and the chat input history
    (named sessions stay: `aigc sessions rm`). --all, --until and --keep ask first [y/N] when
    the input is a terminal (-y: do not ask); ids never ask, nor does a script."""
    pruning = until is not None or keep is not None
    if sum((bool(ids), everything, pruning)) != 1:
        raise BadInputError("give ids, --all, or --until WHEN and/or --keep N: one of these, not two" if ids or everything or pruning else "give the ids of the answers to delete, --all, --until WHEN (older ones) or --keep N (all but the latest N)")
    if pruning:
        return _prune(None if until is None else logs.since_time(until, flag="--until", end_of_day=True), keep, yes)
    ids = list(dict.fromkeys(ids or []))
    doomed = conversations.unnamed_files(None if everything else logs.sessions_of(ids))  # their text is kept there too, for `aigc chat -c`
    if everything:
        held = logs.status()["responses"]
        history = conversations.input_history().exists()
        if held or doomed or history:
            parts = [f"all {_answers(held)}"] + [_conversations(doomed)] * bool(doomed) + ["the chat input history"] * history
            confirm_deletion(f"delete {', '.join(parts[:-1])}{' and ' * (len(parts) > 1)}{parts[-1]}?", yes)
    with conversations.none_open(doomed):  # not under a chat that would write one again: nothing is deleted then
        gone = logs.clear() if everything else logs.remove(ids)
        ui.info(f"deleted {_answers(gone)}")
        forgotten = conversations.forget(doomed)
        if everything:
            if forgotten:
                ui.info(f"deleted {_conversations(forgotten)}")
            if conversations.forget_input_history():  # what was typed in the REPL: the prompts again
                ui.info("deleted the chat input history")
        else:
            for path in forgotten:
                ui.info(f"deleted conversation {path.stem}, which held a deleted answer (`aigc chat --cid {path.stem}` cannot go on from it now)")


def _prune(until, keep: int | None, yes: bool) -> None:
    """`aigc logs rm --until WHEN --keep N`: the answers logged before WHEN that are not among the latest N,
    and the unnamed conversations all of whose answers those are."""
    count, sessions = logs.to_prune(until, keep)
    doomed = conversations.unnamed_files(sessions)
    which = " and ".join(part for part in (until is not None and f"logged before {until.astimezone().strftime('%Y-%m-%d %H:%M %Z')}", keep is not None and f"beyond the latest {keep}") if part)
    if not count:
        ui.info(f"nothing deleted: no logged answer is {which}")
        return
    held = logs.status()["responses"]
    confirm_deletion(f"delete {count} of the {_answers(held)} ({which}){_and_conversations(doomed)}?", yes)
    with conversations.none_open(doomed):  # not under a chat that would write one again: nothing is deleted then
        gone = logs.prune(until, keep)
        ui.info(f"deleted {_answers(gone)} ({which}); {held - gone} kept")
        forgotten = conversations.forget(doomed)
        if forgotten:
            ui.info(f"deleted {_conversations(forgotten)} all of whose answers were deleted (`aigc chat --cid` cannot go on from them now)")


def _answers(count: int) -> str:
    return f"{count} logged answer{'s' * (count != 1)}"


def _conversations(paths: list) -> str:
    return f"{len(paths)} unnamed conversation{'s' * (len(paths) != 1)}"


def _and_conversations(paths: list) -> str:
    return f", {_conversations(paths)} that hold only them" if paths else ""


def register(app: typer.Typer) -> None:
    app.add_typer(logs_app, name="logs")
