"""How `--help` is laid out: typer's rich panels on a terminal, with nothing in them cut with "…"
(a long option name or word folds onto the next line of its cell); click's plain help, wrapped and
without box lines for a screen reader to read out, where stdout is no terminal or TERM=dumb (a pipe,
Emacs' shell), each command's description whole there too. typer's TYPER_USE_RICH=0 gives the
plain help on a terminal too."""

from __future__ import annotations

import inspect
import os
import sys

HELP_FLAGS = {"-h", "--help"}


def choose(group, ctx, args: list[str]) -> None:
    """Lay out the help that `args` (the top group's, its own options first) may show: their
    `--help`, or a group named alone that shows its help."""
    if not sys.stdout.isatty() or os.environ.get("TERM") == "dumb":
        _plain(group)
    elif HELP_FLAGS.intersection(args) or _shows_its_help(group, ctx, args):
        _folded()  # typer's rich_utils only now: 45 ms to import, for a help alone


def _plain(command) -> None:
    """typer's own switch for click's help (rich_markup_mode None), on every command; a plugin's
    click command (no such attribute) has click's help already. An epilog (`examples()`) keeps its
    lines (click rewraps a paragraph whose first line is no \\b) and loses rich markup's escapes.
    A command's description in its group's list is its help's first paragraph, wrapped, as the panels
    show it (click's own cuts it with "..." at the line's end)."""
    if command.help and not command.short_help:
        command.short_help = " ".join(inspect.cleandoc(command.help).split("\n\n")[0].replace("\b", "").replace("\\[", "[").split())
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
        if command.epilog and not command.epilog.startswith("\b"):
            command.epilog = "\b\n" + command.epilog.lstrip("\n").replace("\\[", "[")
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)


def _shows_its_help(group, ctx, args: list[str]) -> bool:
    """Whether `args` name a group that shows its help alone (`aigc`, `aigc eval`)."""
    command = group
    for name in (arg for arg in args if not arg.startswith("-")):
        command = command.get_command(ctx, name) if hasattr(command, "get_command") else None
        if command is None:
            return False
    return bool(getattr(command, "no_args_is_help", False))


def _folded() -> None:
    """Have typer's rich help fold a word too long for its cell (an option name, a default, a help
    text's word) onto the next line, rather than end it in "…" (rich's default for a table cell)."""
    from typer import rich_utils

    make = getattr(rich_utils, "_get_rich_console", None)  # typer's, not public: a typer without it keeps its own layout
    if make is None or getattr(make, "folds", False):
        return

    def console(stderr: bool = False):
        made = make(stderr=stderr)
        render_lines = made.render_lines

        def folded(renderable, options=None, **kwargs):
            if options is not None and options.overflow == "ellipsis":
                options = options.update(overflow="fold")
            return render_lines(renderable, options, **kwargs)

        made.render_lines = folded
        return made

    console.folds = True
    rich_utils._get_rich_console = console
