"""A `stop` event (a GUI's Stop button, set from another thread) stops sync calls at their next step:
`generate`, a generator's call, `many`, `imany`, `stream`; `imany(...).close()` from another thread;
and the progress a generator's `progress` callback is told within one model call."""

import asyncio
import threading
import time

import pytest

import aigc
from aigc.engine.base import check_stopped, ticks
from aigc.errors import OptionError, StoppedError
from aigc.generators.base import get_generator
from aigc.testing import FakeEngine
import decoding
from decoding import workers


class Decoding(decoding.Decoding):
    """`decoding.Decoding`, streaming too: a word each 10 ms step, for up to 30 s."""

    def stream(self, prompt, params):
        for _ in range(3000):
            try:
                check_stopped()
            except asyncio.CancelledError:
                self.stopped += 1
                raise
            self.decoding.set()
            time.sleep(0.01)
            yield "word "


def press(event: threading.Event, when: threading.Event) -> None:
    """Set `event` from another thread once `when` is set: a Stop button."""
    threading.Thread(target=lambda: when.wait(30) and event.set(), daemon=True).start()


def test_a_stop_event_set_from_another_thread_stops_a_call_at_its_next_step_and_the_next_call_works():
    engine = Decoding()
    generator = get_generator("chat", engine=engine)
    stop = threading.Event()
    press(stop, engine.decoding)
    started = time.monotonic()
    with pytest.raises(StoppedError, match="stop event given to the call was set"):
        generator("Bees", stop=stop)
    assert time.monotonic() - started < 5 and engine.stopped == 1
    stop.clear()
    engine.enqueue("fine")
    engine.steps = lambda: None  # the next call decodes at once
    assert generator("Bees", stop=stop)["text"] == "fine"


def test_a_stop_event_set_already_stops_the_call_before_any_model_call():
    engine = FakeEngine()
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedError):
        get_generator("summarize", engine=engine)("A long text. " * 40, stop=stop)
    assert engine.calls == []


def test_generate_and_stream_take_a_stop_event_and_refuse_anything_else(monkeypatch):
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedError):
        aigc.generate("chat", "Bees", model="echo", stop=stop)
    with pytest.raises(OptionError, match="stop must be a threading.Event"):
        aigc.generate("chat", "Bees", model="echo", stop=True)
    with pytest.raises(OptionError, match="stop must be a threading.Event"):
        aigc.stream("chat", "Bees", model="echo", stop="now")
    assert aigc.generate("chat", "Bees", model="echo", stop=threading.Event())["text"]


def test_a_stop_event_stops_many_and_leaves_no_worker_running():
    engine = Decoding()
    stop = threading.Event()
    press(stop, engine.decoding)
    started = time.monotonic()
    with pytest.raises(StoppedError):
        get_generator("chat", engine=engine).many([f"text {i}" for i in range(8)], concurrency=4, stop=stop)
    assert time.monotonic() - started < 5 and engine.stopped == 1 and workers() == []


def test_a_stop_event_stops_imany_in_another_thread_which_then_raises_stopped_error():
    engine = Decoding()
    stop = threading.Event()
    results = get_generator("chat", engine=engine).imany((f"text {i}" for i in range(100)), concurrency=2, stop=stop)
    raised = []

    def read() -> None:
        try:
            list(results)
        except StoppedError as exc:
            raised.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert engine.decoding.wait(30)
    stop.set()
    reader.join(5)
    assert not reader.is_alive() and len(raised) == 1 and workers() == []


def test_imany_closed_from_another_thread_while_one_iterates_it_ends_that_loop_and_its_workers():
    engine = Decoding()
    results = get_generator("chat", engine=engine).imany((f"text {i}" for i in range(100)), concurrency=2)
    got, failed = [], []

    def read() -> None:
        try:
            for result in results:
                got.append(result)
        except BaseException as exc:  # noqa: BLE001 - what the loop raised, if anything
            failed.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert engine.decoding.wait(30)
    started = time.monotonic()
    results.close()  # the Stop button's thread: no "generator already executing"
    assert time.monotonic() - started < 1
    reader.join(5)
    assert not reader.is_alive() and (got, failed) == ([], []) and engine.stopped == 1 and workers() == []
    assert list(results) == []  # closed: nothing more


def test_a_stop_event_stops_a_stream_whose_reader_then_gets_stopped_error():
    engine = Decoding()
    stop = threading.Event()
    stream = get_generator("chat", engine=engine).stream("Bees", stop=stop)
    pieces = []
    with pytest.raises(StoppedError):
        for piece in stream:
            pieces.append(piece)
            if len(pieces) == 3:
                threading.Thread(target=stop.set).start()
    assert stream.finish_reason == "cancelled" and stream.text in ("word word word", "word word word word")  # stopped at the next step
    with pytest.raises(StoppedError):  # aigc.stream's too
        next(aigc.stream("chat", "Bees", model="echo", stop=stop))


def test_a_stop_event_stops_a_tiny_local_model_between_its_decoding_steps(tiny_engine):
    stop = threading.Event()
    steps = []

    def progress(done, total, what):
        if what == "decoding":
            steps.append(done)
            if done == 2:
                threading.Thread(target=stop.set).start()  # a Stop button, pressed mid-answer
                time.sleep(0.2)

    generator = aigc.get_generator("chat", engine=tiny_engine, progress=progress)
    sampling = {"max_tokens": 200, "temperature": 0, "stop": []}
    with pytest.raises(StoppedError):
        generator("Bees", sampling=sampling, stop=stop)
    assert 2 <= len(steps) <= 4  # it stopped after the step decoding when the event was set
    steps.clear()
    answer = generator("Bees", sampling={"max_tokens": 5, "temperature": 0})  # the model is usable at once
    assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= 5 and answer["usage"]["completion_tokens"] == len(steps)


def test_the_clis_progress_bars_are_not_called_per_decoded_token_a_callers_callback_is():
    from aigc import ui

    class Watching(FakeEngine):
        def generate(self, prompts, params):
            self.tick = ticks()  # what a local engine calls after each decoding step (None: nothing)
            return super().generate(prompts, params)

    engine = Watching()
    told = []
    get_generator("chat", engine=engine, progress=lambda done, total, what: told.append(what))("Bees")
    assert engine.tick is not None  # a caller's callback is told "decoding" steps, as documented
    with ui.progress_bar() as bar:  # the plain lines under pytest; the rich bar on a terminal yields the same mark
        get_generator("chat", engine=engine, progress=bar)("Bees")
    assert engine.tick is None and bar.wants_decoding is False  # it ignores them: no Python call per token


def test_translate_tells_progress_of_each_sentence_as_its_translation_ends_within_one_batched_call():
    class Rows(FakeEngine):
        """Ends the rows of a call one by one, telling the decoding progress as the local engine does."""

        def generate(self, prompts, params):
            tick = ticks()
            for finished in range(len(prompts) + 1):
                if tick is not None:
                    tick(finished + 1, params.max_tokens, finished, len(prompts))
            return super().generate(prompts, params)

    told = []
    engine = Rows()
    engine.enqueue("Le chat dort.", "Il fait chaud.", "Le chien aboie.", "Les oiseaux chantent.")
    translator = get_generator("translate", engine=engine, progress=lambda done, total, what: told.append((done, total, what)))
    translator("The cat sleeps. It is warm.\n\nThe dog barks. Birds sing.", target_language="fr")
    assert [t for t in told if t[2] == "translating"] == [(n, 4, "translating") for n in range(5)] + [(4, 4, "translating")]
    decoding = [t for t in told if t[2] == "decoding"]  # the steps within the call, counted apart
    assert decoding and all(1 <= done <= total for done, total, _ in decoding)


def test_stream_returns_before_the_model_loads_which_loads_at_the_first_piece(monkeypatch):
    from aigc.engine import loading

    loads = []
    real = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: loads.append(args) or real(*args, **kwargs))
    stream = aigc.get_generator("chat", model="echo").stream("one two")
    assert loads == []  # returned at once: a GUI's event loop is not held while the model loads
    assert next(stream) == "one" and len(loads) == 1 and stream.text == "one two"
    with pytest.raises(aigc.BadInputError, match="prompt is empty"):  # bad input is still raised at the call
        aigc.get_generator("chat", model="echo").stream(" ")


def test_a_local_model_told_to_stop_before_its_call_starts_runs_not_even_its_prompts_forward_pass(tiny_engine):
    from aigc.engine.base import stopped_by
    from aigc.engine.sampling import SamplingParams

    stop = threading.Event()
    stop.set()  # set while the generator prepared its prompts (translate's, summarize's)
    before = tiny_engine.stats.completion_tokens
    with stopped_by(stop), pytest.raises(asyncio.CancelledError):
        tiny_engine.generate(["Bees"], SamplingParams(max_tokens=50, temperature=0))
    assert tiny_engine.stats.completion_tokens == before  # no token decoded
