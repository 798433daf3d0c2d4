"""Progress where stderr is no terminal (`2> log`, nohup, cron, CI): a plain line now and then."""

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from aigc import ui
from aigc.cli.app import app


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(monkeypatch):
    """stderr as a log file: no terminal, no bars; the clock under the test's control."""
    screen = io.StringIO()
    clock = Clock()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, width=100))
    monkeypatch.setattr(ui, "interactive", lambda: False)
    monkeypatch.setattr(ui.settings, "verbosity", 0)
    monkeypatch.setattr(ui, "clock", clock)
    return screen, clock


def test_rows_progress_is_a_line_every_30_seconds_and_none_in_a_short_run(log):
    screen, clock = log
    with ui.items_progress("summarize") as progress:
        progress(0, 120)  # the first row starts
        for clock.now, done in ((10, 10), (29.9, 30)):
            progress(done, 120)
        assert screen.getvalue() == ""  # under 30 s: silent, as before
        for clock.now, done in ((30, 60), (45, 70), (60, 90), (80, 100)):
            progress(done, 120)
    assert screen.getvalue().splitlines() == [
        "summarize: 60/120 rows, 2.0 rows/s, about 30 s left",
        "summarize: 90/120 rows, 1.5 rows/s, about 20 s left",  # 15 s and 20 s after a line: none
    ]


def test_slow_rows_show_their_rate_and_minutes_or_hours_left(log):
    screen, clock = log
    for total in (10, 100):
        clock.now = 0
        with ui.items_progress("classify") as progress:
            progress(0, total)
            clock.now = 400
            progress(4, total)
    assert screen.getvalue().splitlines() == [
        "classify: 4/10 rows, 0.01 rows/s, about 10 min left",
        "classify: 4/100 rows, 0.01 rows/s, about 2 h 40 min left",
    ]


def test_a_terminal_bar_of_stages_shows_the_time_left_at_the_whole_runs_rate(monkeypatch):
    from types import SimpleNamespace

    screen = io.StringIO()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(ui, "interactive", lambda: True)
    with ui.progress_bar() as progress:
        progress(0, 407, "translating")
    assert "0/407" in screen.getvalue() and "-:--:--" in screen.getvalue()  # no rate yet: time left unknown
    assert ui._time_left().render(SimpleNamespace(completed=8, total=24, elapsed=7.0, fields={})).plain == "0:00:14"  # 8 done in 7 s: 16 more in 14


def test_stage_progress_lines_name_the_stage_and_the_time_left_in_it(log):
    screen, clock = log
    with ui.progress_bar() as progress:
        progress(0, 7, "summarizing part (round 1)")
        clock.now = 31
        progress(3, 7, "summarizing part (round 1)")
        clock.now = 70
        progress(7, 7, "summarizing part (round 1)")
        progress(0, 1, "writing the summary")
        clock.now = 101
        progress(0, 1, "writing the summary")
    assert screen.getvalue().splitlines() == [
        "summarizing part (round 1): 3/7, about 41 s left",
        "summarizing part (round 1): 7/7",
        "writing the summary: 0/1",
    ]


def test_stage_progress_lines_of_no_known_total_say_how_many_are_done(log):
    screen, clock = log
    with ui.progress_bar() as progress:  # as imany tells it of an iterable without len()
        progress(0, None, "inputs")
        clock.now = 31
        progress(3, None, "inputs")
    assert screen.getvalue().splitlines() == ["inputs: 3"]


def test_quiet_writes_no_progress_lines(log, monkeypatch):
    screen, clock = log
    monkeypatch.setattr(ui.settings, "verbosity", -1)
    with ui.items_progress("summarize") as rows, ui.progress_bar() as stages:
        rows(0, 10)
        stages(0, 10, "translating")
        clock.now = 100
        rows(5, 10)
        stages(5, 10, "translating")
    assert screen.getvalue() == ""


def test_a_batch_whose_stderr_is_a_log_writes_progress_lines(tiny_model_dir, tmp_path, monkeypatch):
    ticks = iter(range(0, 10_000, 31))  # every look at the clock is 31 s later
    monkeypatch.setattr(ui, "clock", lambda: next(ticks))
    rows = tmp_path / "rows.txt"
    rows.write_text("Bees make honey.\nCities have rooftops.\nHives need water.\n")
    done = CliRunner().invoke(app, ["batch", "summarize", "-i", str(rows), "-o", str(tmp_path / "out.jsonl"), "-m", str(tiny_model_dir), "--max-tokens", "3"])
    assert done.exit_code == 0, done.output
    assert "summarize: 1/3 rows, " in done.stderr and "summarize: 3/3 rows, " in done.stderr
    quiet = CliRunner().invoke(app, ["-q", "batch", "summarize", "-i", str(rows), "-o", str(tmp_path / "quiet.jsonl"), "-m", str(tiny_model_dir), "--max-tokens", "3"])
    assert quiet.exit_code == 0 and "rows" not in quiet.stderr


def test_a_summary_in_parts_whose_stderr_is_a_log_names_each_part_done(tiny_model_dir, tmp_path, monkeypatch):
    ticks = iter(range(0, 10_000, 31))
    monkeypatch.setattr(ui, "clock", lambda: next(ticks))
    doc = tmp_path / "doc.md"
    doc.write_text("Bees make honey in the city. " * 40 + "\n\nCities have rooftops for hives. " * 40)
    done = CliRunner().invoke(app, ["summarize", str(doc), "-m", str(tiny_model_dir), "--max-tokens", "3", "--chunk-tokens", "64", "--no-log"])
    assert done.exit_code == 0, done.output
    assert re.search(r"^summarizing part \(round 1\): [1-9]\d*/\d+, about \d+ (s|min) left$", done.stderr, re.M), done.stderr
    assert "\nwriting the summary: 0/1\n" in done.stderr


def test_a_long_download_writes_its_bytes_now_and_then(log):
    screen, clock = log
    with ui.stage_status() as stage:
        stage("downloading sd-turbo (no dependencies)")
        stage("downloading sd-turbo (no dependencies)", 1_000_000, 500_000_000)
        clock.now = 30
        stage("downloading sd-turbo (no dependencies)", 120_000_000, 500_000_000)
        clock.now = 40
        stage("downloading sd-turbo (no dependencies)", 150_000_000, 500_000_000)
    assert screen.getvalue().splitlines() == ["downloading sd-turbo (no dependencies)", "downloading sd-turbo (no dependencies): 120.0 MB of 500.0 MB"]


def test_a_first_time_pull_in_a_log_says_each_step_and_then_that_the_model_loads(log):
    from aigc.engine.models import Note

    screen, _ = log
    with ui.stage_status() as stage:
        stage(Note("downloading and converting smollm2 into /cache/smollm2: the first time only"))
        stage("converting x.gguf (once)")
        stage(Note("smollm2 is ready at /cache/smollm2"))
        stage("loading smollm2")  # seconds more: said, as nothing else would be until the answer
    assert screen.getvalue().splitlines() == [
        "downloading and converting smollm2 into /cache/smollm2: the first time only", "converting x.gguf (once)", "smollm2 is ready at /cache/smollm2", "loading smollm2"
    ]
    with ui.stage_status() as stage:
        stage("loading smollm2")  # routine: only with -v
    assert screen.getvalue().count("loading smollm2") == 1


def test_a_note_on_a_terminal_stays_above_the_spinner(monkeypatch):
    from aigc.engine.models import Note

    screen = io.StringIO()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, width=100, force_terminal=True, color_system=None))
    monkeypatch.setattr(ui, "interactive", lambda: True)
    with ui.stage_status() as stage:
        stage("converting x.gguf (once)")
        stage(Note("smollm2 is ready at /cache/smollm2"))
        stage("loading smollm2")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "smollm2 is ready at /cache/smollm2\n" in shown  # a line of its own, kept when the spinner goes
    assert re.search(r"loading smollm2 .*0:00:0\d", shown)  # the time each step has taken


def test_under_half_a_second_left_is_not_shown_as_about_0_s(log):
    screen, clock = log
    with ui.items_progress("summarize") as progress:
        progress(0, 120)
        clock.now = 30
        progress(119, 120)
    assert screen.getvalue() == "summarize: 119/120 rows, 4.0 rows/s\n"


def test_stage_progress_bars_on_a_terminal_show_the_time_left_in_the_stage(monkeypatch):
    screen = io.StringIO()
    clock = Clock()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, force_terminal=True, width=120))
    monkeypatch.setattr(ui, "interactive", lambda: True)
    monkeypatch.setattr(ui, "clock", clock)
    with ui.progress_bar() as progress:
        progress(0, 7, "summarizing part (round 1)")
        clock.now = 31
        progress(3, 7, "summarizing part (round 1)")
        progress(0, 1, "writing the summary")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.search(r"summarizing part \(round 1\) .* 3/7 0:00:31 0:00:41", shown) and re.search(r"writing the summary .* 0/1 0:00:00 -:--:--", shown), shown


def _wait_for(condition, seconds=5.0):
    import time

    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)


@pytest.mark.parametrize(("start", "line"), [
    (lambda: ui.progress_bar(), "writing the summary: 0/1 (still running, {} in)"),
    (lambda: ui.items_progress("summarize"), "summarize: 0/3 rows (still running, {} in)"),
])
def test_a_long_step_in_a_log_repeats_its_line_every_30_seconds_while_it_runs(log, monkeypatch, start, line):
    import time

    screen, clock = log
    monkeypatch.setattr(ui, "HEARTBEAT_CHECK", 0.01)  # the heartbeat's looks at the (fake) clock: real time, made short
    with start() as progress:
        if "rows" in line:
            progress(0, 3)  # one row that takes long
        else:
            progress(0, 1, "writing the summary")  # one step that takes long
        clock.now = 29
        time.sleep(0.1)
        assert screen.getvalue() == ""  # under 30 s: silent, as before
        clock.now = 150
        _wait_for(lambda: screen.getvalue())
        clock.now = 170  # 20 s after that line: none
        time.sleep(0.1)
        clock.now = 181
        _wait_for(lambda: screen.getvalue().count("\n") == 2)
    clock.now = 1000  # the step done: no more lines
    time.sleep(0.1)
    assert screen.getvalue().splitlines() == [line.format("2 min 30 s"), line.format("3 min 1 s")]


def test_a_log_ends_at_the_last_step_done_even_right_after_a_heartbeat_line(log, monkeypatch):
    import time

    screen, clock = log
    monkeypatch.setattr(ui, "HEARTBEAT_CHECK", 0.01)
    with ui.progress_bar() as progress:
        progress(0, 1, "writing the summary")
        clock.now = 600
        _wait_for(lambda: screen.getvalue())
        clock.now = 610  # done 10 s after the heartbeat line: the 30 s between lines do not hold it back
        progress(1, 1, "writing the summary")
    time.sleep(0.05)
    assert screen.getvalue().splitlines() == ["writing the summary: 0/1 (still running, 10 min in)", "writing the summary: 1/1"]


def test_the_last_row_done_is_written_where_lines_were_and_a_short_run_stays_silent(log):
    screen, clock = log
    with ui.items_progress("summarize") as progress:
        progress(0, 3)
        clock.now = 5
        progress(3, 3)
    assert screen.getvalue() == ""  # no line before: none at the end either
    clock.now = 0
    with ui.items_progress("summarize") as progress:
        progress(0, 3)
        clock.now = 40
        progress(1, 3)
        clock.now = 45
        progress(3, 3)
    assert screen.getvalue().splitlines() == ["summarize: 1/3 rows, 0.025 rows/s, about 1 min left", "summarize: 3/3 rows, 0.067 rows/s"]


@pytest.mark.parametrize(("seconds", "shown"), [(45, "45 s"), (60, "60 s"), (90, "90 s"), (119.6, "2 min"), (150, "2 min 30 s"), (420, "7 min"), (3930, "1 h 5 min 30 s"), (3600, "1 h")])
def test_heartbeat_times_are_to_the_second_so_lines_30_s_apart_differ(seconds, shown):
    assert ui._taken(seconds) == shown


def test_headline_in_a_log_writes_progress_lines(monkeypatch):
    ticks = iter(range(0, 10_000, 31))  # every look at the clock is 31 s later
    monkeypatch.setattr(ui, "clock", lambda: next(ticks))
    done = CliRunner().invoke(app, ["headline", "--topic", "bees on city roofs", "-n", "1", "-m", "echo", "--no-log"])
    assert done.exit_code == 0, done.output
    assert "writing headlines: 0/1\n" in done.stderr and "writing headlines: 1/1\n" in done.stderr
