"""Ctrl-C while the aigc command starts, before the CLI's own handling does (its modules take about
0.3 s to import): `Error: interrupted` and exit 130, not a traceback (AIGC_DEBUG=1 keeps it)."""

import os
import sys

_kept: list = []  # the excepthook there was before, which `started` puts back


def _the_command() -> bool:
    """Whether this process is the aigc command (its console script, or `python -m aigc`), not a
    program that imports aigc as a library."""
    argv = getattr(sys, "orig_argv", sys.argv)
    as_module = "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "aigc"
    return as_module or os.path.basename(sys.argv[0]) in ("aigc", "aigc.exe")


def _one_line(kind, exc, tb) -> None:
    """A KeyboardInterrupt no one caught: one line and exit 130; anything else as Python shows it.
    Typer keeps this hook (it saves the one in place when imported) and calls it after `started`,
    when `_kept` is empty: Python's own then."""
    if not issubclass(kind, KeyboardInterrupt):
        return (_kept[0] if _kept else sys.__excepthook__)(kind, exc, tb)
    sys.stderr.write("Error: interrupted\n")
    sys.stderr.flush()
    os._exit(130)  # what a KeyboardInterrupt left at the top would end with, less its traceback


def starting() -> None:
    """Called first thing when aigc is imported: in the aigc command, a Ctrl-C that reaches the top
    before `started` (while modules import) is one line."""
    from ..config import debug  # standard library imports only: cheap this early

    if not _kept and not debug() and _the_command():
        _kept.append(sys.excepthook)
        sys.excepthook = _one_line


def started() -> None:
    """The CLI handles Ctrl-C itself from here."""
    if _kept:
        sys.excepthook = _kept.pop()
