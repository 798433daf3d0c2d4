"""`aigc doctor [--json]`: aigc's setup, each fact marked ok, note, warning or problem, to check
when something is off and to paste into a bug report; exit 1 when a problem was found."""

import json
from typing import Annotated

import typer

from .. import diagnostics, ui
from ..textio import readable_json

STYLES = {"ok": "green", "note": "cyan", "warning": "yellow", "problem": "bold red"}
MARK = max(len(status) for status in diagnostics.STATUSES)


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON (keys: README, `aigc doctor`).")] = False) -> None:
    """Check aigc's setup: versions, torch and the device it picks, packages, settings, directories,
    the default models and plugins (loading no model, without the network).

    Each line is marked ok, note, warning or problem, with what to do under it; exit code 1 when a
    problem was found. Paste it into a bug report."""
    report = diagnostics.collect()
    if as_json:
        ui.result(json.dumps(readable_json(report.to_json()), indent=2))
    else:
        _show(report)
    if report.status == "problem":
        raise typer.Exit(1)


def _lines(report: diagnostics.Report) -> list[tuple[str, str | None]]:
    """The report as (text, status) lines: a section's name (status None), then its checks, each fix under its check."""
    lines: list[tuple[str, str | None]] = []
    section = None
    for check in report.checks:
        if check.section != section:
            section = check.section
            lines.append((section, None))
        lines.append((f"  {check.status:<{MARK}}  {check.summary}", check.status))
        if check.fix:
            lines.append((f"  {'':<{MARK}}  -> {check.fix}", None))
    counts = report.counts()
    found = [f"{counts[status]} {status}{'s' if counts[status] != 1 else ''}" for status in ("problem", "warning", "note") if counts[status]]
    lines.append((f"aigc doctor: {', '.join(found) if found else 'all ok'}" + (" (exit code 1)" if counts["problem"] else ""), None))
    return lines


def _show(report: diagnostics.Report) -> None:
    """Coloured marks on a terminal; plain text, each line whole, elsewhere (a pipe, a file, a bug report)."""
    lines = _lines(report)
    if not ui.stdout().isatty():
        ui.result("\n".join(text for text, _ in lines))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=ui.stdout(), highlight=False)
    for text, status in lines:
        if status is None:
            console.print(Text(text, style="bold" if not text.startswith(" ") else "dim"))
        else:
            mark = 2 + len(status)
            console.print(Text.assemble(text[:2], (text[2:mark], STYLES[status]), text[mark:]))


def register(app: typer.Typer) -> None:
    app.command()(doctor)
