"""Unit tests run tiny models, which gain nothing from a second thread: one thread each (unless
OMP_NUM_THREADS says otherwise), for torch in this process and in the CLI processes tests start.
On a busy machine torch's threads wait on each other: a tiny model's step took 0.5 s instead of 0.03."""

import os
import sys

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = saved or "1"  # read by torch as it is imported
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    yield
    if saved is None:
        del os.environ["OMP_NUM_THREADS"]  # the integration tests' processes run the real model as users do
    if threads and "torch" in sys.modules:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_plain_progress_lines(monkeypatch):
    """Under pytest stderr is no terminal, so a command that ran 30 s (a busy machine) would write a
    progress line into the stderr a test checks: the clock stands still unless a test sets one."""
    from aigc import ui

    monkeypatch.setattr(ui, "clock", lambda: 0.0)


@pytest.fixture(autouse=True)
def cli_does_not_end_pytest(monkeypatch):
    """The CLI ends its process with os._exit where worker threads may still run (a Ctrl-C, a reader
    gone); in-process tests would end pytest with it, silently (exit 1, no report), so it raises."""
    from aigc.cli import app
    from cli_exit import leave

    monkeypatch.setattr(app, "_leave", leave)
