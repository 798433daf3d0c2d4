"""Ctrl-C during `generator.many(...)` or `run_batch`: the rows in flight stop and no worker is left running."""

import asyncio
import itertools
import signal
import subprocess
import sys
import threading
import time

import pytest

from aigc.batch import WORKER, run_batch
from aigc.batch_inputs import read_rows
from aigc.engine.base import check_stopped
from aigc.generators.base import Generator, get_generator
from aigc.testing import FakeEngine
from decoding import Decoding, workers


@pytest.fixture
def ctrl_c():
    """Ctrl-C in the main thread (the caller's) once `event` is set, as a terminal's SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def press_when(event: threading.Event) -> None:
        def press() -> None:
            if event.wait(30):
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        threading.Thread(target=press, daemon=True).start()

    yield press_when
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_many_stops_the_inputs_in_flight_and_leaves_no_worker_running(ctrl_c):
    engine = Decoding()
    ctrl_c(engine.decoding)
    with pytest.raises(KeyboardInterrupt):
        get_generator("chat", engine=engine).many([f"text {i}" for i in range(8)], concurrency=4)
    assert (engine.begun, engine.stopped) == (1, 1)  # the one merged call, in flight
    assert workers() == []


def test_ctrl_c_while_imany_waits_for_a_result_stops_the_inputs_in_flight_and_leaves_no_worker_running(ctrl_c):
    engine = Decoding()
    ctrl_c(engine.decoding)
    with pytest.raises(KeyboardInterrupt):
        for _ in get_generator("chat", engine=engine).imany(f"text {i}" for i in itertools.count()):
            pass
    assert (engine.begun, engine.stopped) == (1, 1) and workers() == []


class Waits(Generator):
    """Answers "slow" once told to stop (asking between its steps, as the local engine does), any other input at once."""

    name = "waits"
    stopped: list = []

    def preprocess(self, inputs, opts):
        return inputs

    def forward(self, prepared, opts, sampling):
        for _ in range(3000 if prepared == "slow" else 0):
            try:
                check_stopped()
            except asyncio.CancelledError:
                self.stopped.append(prepared)
                raise
            time.sleep(0.01)
        return prepared

    def postprocess(self, raw, opts):
        return {"text": raw}


@pytest.mark.parametrize("leave", ["break", "close", "collect", "ctrl_c"])
def test_leaving_imany_stops_the_inputs_in_flight_and_leaves_no_worker_running(leave):
    read = []

    def texts():
        for text in ("quick", "slow", "never"):
            read.append(text)
            yield text

    Waits.stopped.clear()
    if leave == "break":
        for result in Waits(engine=FakeEngine()).imany(texts(), concurrency=2):
            break
    elif leave == "ctrl_c":  # in the loop's body, not while it waits: leaving the loop lets go of the iterator, which closes it
        with pytest.raises(KeyboardInterrupt):
            for result in Waits(engine=FakeEngine()).imany(texts(), concurrency=2):
                raise KeyboardInterrupt
    else:
        results = Waits(engine=FakeEngine()).imany(texts(), concurrency=2)
        result = next(results)
        if leave == "close":
            results.close()
        del results  # else its garbage collection closes it
    assert result == {"text": "quick"} and Waits.stopped == ["slow"] and workers() == [] and read == ["quick", "slow"]


class Ignores(Waits):
    """Answers "slow" once `release` is set, never asking whether to stop (a backend that cannot be stopped)."""

    name = "ignores"
    release = threading.Event()

    def forward(self, prepared, opts, sampling):
        if prepared == "slow":
            self.release.wait()
        return prepared


def test_ctrl_c_in_the_body_of_a_loop_over_imany_waits_for_an_input_that_does_not_stop_at_most_stop_wait(monkeypatch):
    import aigc.batch

    join, waits = aigc.batch._join, []

    def waited(threads, seconds):
        waits.append(seconds)
        Ignores.release.set()  # the test's own end: the input in flight ends
        join(threads, seconds)

    monkeypatch.setattr(aigc.batch, "_join", waited)
    Ignores.release.clear()
    with pytest.raises(KeyboardInterrupt):
        for result in Ignores(engine=FakeEngine()).imany(["quick", "slow"], concurrency=2):
            raise KeyboardInterrupt
    assert result == {"text": "quick"} and waits == [aigc.batch.STOP_WAIT] and workers() == []


def test_ctrl_c_as_the_workers_start_leaves_none_of_those_started_waiting_for_the_others(monkeypatch):
    start, begun = threading.Thread.start, []

    def starting(self):
        if self.name == WORKER:
            begun.append(self)
            if len(begun) == 3:  # two started: their model calls wait for four workers' to merge them
                raise KeyboardInterrupt
        start(self)

    monkeypatch.setattr(threading.Thread, "start", starting)
    engine = Decoding()
    with pytest.raises(KeyboardInterrupt):
        get_generator("chat", engine=engine).many([f"text {i}" for i in range(8)], concurrency=4)
    assert workers() == []
    assert engine.begun == 0  # the two started workers' merged call is not made: they are told to stop before the others retire


def test_ctrl_c_in_the_loop_over_a_batchs_rows_stops_the_rows_in_flight_and_leaves_no_worker_running(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": ""}\n{"text": "slow"}\n')  # the first row's error is handed on at once, as the second decodes
    engine = Decoding()

    def interrupted(done, total):
        if done and engine.decoding.wait(30):  # while the caller writes the first row, or reports it done
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(get_generator("chat", engine=engine), read_rows(source), tmp_path / "out.jsonl", {}, progress=interrupted, concurrency=2)
    assert (engine.begun, engine.stopped) == (1, 1) and workers() == []


RUN = (  # `generator.many(...)` of many topics on a model, saying in a file once its second model call has started
    "import sys\n"
    "import aigc\n"
    "from aigc.engine.local import LocalEngine\n"
    "generate, calls = LocalEngine.generate, []\n"
    "def generating(self, prompts, params):\n"
    "    calls.append(prompts)\n"
    "    if len(calls) == 2:\n"
    "        open(sys.argv[2], 'w').close()\n"
    "    return generate(self, prompts, params)\n"
    "LocalEngine.generate = generating\n"
    "aigc.get_generator('headline', model=sys.argv[1], device='cpu').many([{'topic': f't{i}'} for i in range(4000)], n=2, sampling={'max_tokens': 30})\n"
)


def test_a_script_stopped_with_ctrl_c_during_many_ends_as_interrupted_not_aborted(tiny_model_dir, tmp_path):
    """Its workers, inside torch, are stopped and joined before Python ends: none is torn down there
    (which aborted it: `terminate called without an active exception`, exit 134)."""
    started = tmp_path / "started"
    script = subprocess.Popen([sys.executable, "-c", RUN, str(tiny_model_dir), str(started)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not started.exists() and script.poll() is None:
            time.sleep(0.05)
        script.send_signal(signal.SIGINT)
        out, err = script.communicate(timeout=120)
    finally:
        script.kill()
    assert script.returncode == -signal.SIGINT, err  # a shell shows it as 130
    assert err.rstrip().endswith("KeyboardInterrupt") and "terminate called" not in err and out == ""
