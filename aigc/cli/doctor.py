"""`aigc doctor [--json]`: aigc's setup, each fact marked ok, note, warning or problem, to check
when something is off and to paste into a bug report; exit 1 when a problem was found."""

import json
from typing import Annotated

import typer

from .. import diagnostics, ui
from ..textio import readable_json

STYLES = {"ok": "green", "note": "cyan", "warning": "yellow", "problem": "bold red"}
MARK = max(len(status) for status in diagnostics.STATUSES)


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object (its keys: README, `aigc doctor`).")] = False) -> None:
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


def _sections(report: diagnostics.Report) -> list[tuple[str, list[diagnostics.Check]]]:
    """The checks by section, in the report's order."""
    sections: list[tuple[str, list[diagnostics.Check]]] = []
    for check in report.checks:
        if not sections or sections[-1][0] != check.section:
            sections.append((check.section, []))
        sections[-1][1].append(check)
    return sections


def _summary(report: diagnostics.Report) -> str:
    counts = report.counts()
    found = [f"{counts[status]} {status}{'s' if counts[status] != 1 else ''}" for status in ("problem", "warning", "note") if counts[status]]
    return f"aigc doctor: {', '.join(found) if found else 'all ok'}" + (" (exit code 1)" if counts["problem"] else "")


def _show(report: diagnostics.Report) -> None:
    """Coloured marks on a terminal, a long line wrapped beside its mark; plain text, each line whole,
    elsewhere (a pipe, a file, a bug report)."""
    if not ui.stdout().isatty():
        lines = []
        for section, checks in _sections(report):
            lines.append(section)
            for check in checks:
                lines.append(f"  {check.status:<{MARK}}  {check.summary}")
                lines += [f"  {'':<{MARK}}  -> {check.fix}"] if check.fix else []
        ui.result("\n".join([*lines, _summary(report)]))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=ui.stdout(), highlight=False)
    for section, checks in _sections(report):
        console.print(Text(section, style="bold"))
        table = Table.grid(padding=(0, 2), pad_edge=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for check in checks:
            table.add_row(Text(f"{check.status:<{MARK}}", style=STYLES[check.status]), Text(check.summary))
            if check.fix:
                table.add_row("", Text(f"-> {check.fix}", style="dim"))
        console.print(table)
    console.print(Text(_summary(report), style="bold"))


def register(app: typer.Typer) -> None:
    app.command()(doctor)
