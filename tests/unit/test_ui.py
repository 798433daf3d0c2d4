"""Results written while a live progress display is on a terminal (a pseudo-terminal here)."""

import os
import pty
import re

import json

import pytest

from aigc import ui
from aigc.batch import run_batch
from aigc.batch_inputs import Row
from aigc.generators.base import get_generator
from aigc.testing import FakeEngine


@pytest.fixture
def terminal(monkeypatch):
    """A pseudo-terminal; yields its file, to patch in as stderr in the test (pytest puts its own
    back between setup and the test), and a reader of what it shows."""
    main, side = pty.openpty()
    tty = open(side, "w", encoding="utf-8")
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(ui, "_stderr", None)  # a console on the stderr patched in

    def shown() -> str:
        tty.flush()
        os.set_blocking(main, False)
        data = b""
        while True:
            try:
                data += os.read(main, 65536)
            except BlockingIOError:
                return data.decode()

    yield tty, shown
    tty.close()
    os.close(main)


def show_results_under_a_progress(lines: list[str]) -> None:
    with ui.prints_to_stderr(), ui.items_progress("headline", len(lines)) as progress:
        progress(0, len(lines))
        for done, line in enumerate(lines, 1):
            ui.result(line)
            progress(done, len(lines))


def test_a_result_on_the_terminal_of_a_live_progress_is_printed_above_it(terminal, monkeypatch):
    tty, shown = terminal
    monkeypatch.setattr(ui.sys, "stderr", tty)
    monkeypatch.setattr(ui.sys, "stdout", tty)
    show_results_under_a_progress(["topic 1", "topic 2"])
    screen = shown()
    assert "topic 1" in screen and "topic 2" in screen and "headline" in screen
    for line in ("topic 1", "topic 2"):  # each on a line of its own, the display's line erased first
        assert screen.split(line)[0].endswith(("\x1b[2K", "\n")), screen


def test_a_result_goes_to_stdout_a_file_while_the_progress_is_on_the_terminal(terminal, monkeypatch, tmp_path):
    tty, shown = terminal
    with open(tmp_path / "out.txt", "w", encoding="utf-8") as out:
        monkeypatch.setattr(ui.sys, "stderr", tty)
        monkeypatch.setattr(ui.sys, "stdout", out)
        show_results_under_a_progress(["topic 1", "topic 2"])
    screen = shown()
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "topic 1\ntopic 2\n"
    assert "headline" in screen and "topic" not in screen


def test_batch_rows_written_to_stdout_on_the_terminal_of_its_progress_are_printed_above_it(terminal, monkeypatch):
    tty, shown = terminal
    monkeypatch.setattr(ui.sys, "stderr", tty)
    monkeypatch.setattr(ui.sys, "stdout", tty)
    rows = [Row(number=i, id=f"r{i}", fields={"text": f"Bees make honey in hive {i}. " * 5}) for i in (1, 2)]
    with ui.prints_to_stderr(), ui.items_progress("summarize", len(rows)) as progress:  # as `aigc batch summarize -o -` runs
        run_batch(get_generator("summarize", engine=FakeEngine()), rows, f"/dev/fd/{tty.fileno()}", {}, progress=progress)
    screen = shown()
    assert "summarize" in screen
    for row_id in ("r1", "r2"):  # each row on a line of its own, the display's line erased first, and whole JSON
        start = screen.index(f'{{"id": "{row_id}"')
        assert screen[:start].endswith(("\x1b[2K", "\n")), screen
        assert json.loads(screen[start:].replace("\r", "\n").split("\n")[0])["id"] == row_id, screen


def long_names_table():
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("alias")
    table.add_column("first message", no_wrap=True, max_width=8)
    table.add_row("smollm2-360m-instruct-q4", "a preview cut short")
    return table


def test_a_table_on_a_narrow_terminal_wraps_a_long_name_instead_of_cutting_it(terminal, monkeypatch):
    tty, shown = terminal
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.setattr("sys.stdout", tty)
    ui.print_table(long_names_table())
    lines = shown().splitlines()[1:]  # below the header
    assert max(map(len, lines)) <= 20
    assert "".join(line.split()[0] for line in lines if line[:1].strip()) == "smollm2-360m-instruct-q4"
    assert [line for line in lines if "…" in line] == [lines[0]]  # the preview alone cut, on the first line


def test_a_piped_table_is_as_wide_as_its_cells_whatever_columns_says(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "20")
    ui.print_table(long_names_table())
    assert capsys.readouterr().out.splitlines()[1].split() == ["smollm2-360m-instruct-q4", "a", "previ…"]


def test_a_piped_tables_lines_end_in_no_padding(capsys):
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "note"):
        table.add_column(column)
    table.add_row("a-long-name", "x")
    table.add_row("b", "")  # its last cell empty: the row would end in the spaces of two columns
    ui.print_table(table)
    assert capsys.readouterr().out.splitlines() == ["name         note", "a-long-name  x", "b"]


@pytest.mark.parametrize("env", [{"TERM": "dumb"}, {"TTY_INTERACTIVE": "0"}])
def test_a_terminal_that_takes_no_cursor_moves_gets_plain_progress_lines(terminal, monkeypatch, env):
    tty, shown = terminal
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setattr(ui.settings, "verbosity", 0)
    now = [0.0]
    monkeypatch.setattr(ui, "clock", lambda: now[0])
    with ui.items_progress("summarize") as progress:
        progress(0, 4)
        now[0] = 31.0
        progress(2, 4)
    assert re.sub(r"\x1b\[[0-9;]*m", "", shown()) == "summarize: 2/4 rows, 0.065 rows/s, about 31 s left\r\n"  # as in a log (dim, TTY_INTERACTIVE=0 keeps colour): no bar, no blank line
