"""`aigc.agenerate` and `aigc.astream`: generate and stream for asyncio code, the model run in a
worker thread. Each test runs its coroutine with `asyncio.run` (no pytest plugin needed)."""

import asyncio
import threading

import pytest
import torch

import aigc
from aigc.aio import AsyncAnswerStream
from aigc.errors import BadInputError, ContextLengthError, UnknownModelError
from aigc.generators.chat import ChatGenerator
from aigc.testing import FakeEngine

GREEDY = {"temperature": 0, "max_tokens": 4}
SAMPLED = {"temperature": 1, "seed": 1, "max_tokens": 40}  # greedy, the tiny random model writes only line breaks: none streams before the end


def astream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aigc-astream")]


def freed(threads: list[threading.Thread]) -> bool:
    for thread in threads:
        thread.join(10)
    return not any(t.is_alive() for t in threads)


def test_astream_and_agenerate_give_what_stream_and_generate_give(tiny_model_dir):
    model = {"model": str(tiny_model_dir), "device": "cpu"}

    async def main():
        whole = await aigc.agenerate("chat", "Bees", sampling=GREEDY, **model)
        stream = aigc.astream("chat", "Bees", sampling=GREEDY, **model)
        assert isinstance(stream, aigc.AsyncAnswerStream)
        pieces = [piece async for piece in stream]
        awaited = await aigc.astream("template", {"input": "Bees"}, sampling=GREEDY, template="chat", **model)  # read whole, as llm's `await model.prompt(...)`
        return whole, stream, pieces, awaited

    whole, stream, pieces, awaited = asyncio.run(main())
    sync = aigc.stream("chat", "Bees", sampling=GREEDY, **model)
    assert pieces == list(sync) and whole == aigc.generate("chat", "Bees", sampling=GREEDY, **model)
    assert stream.text == "".join(pieces) == whole["text"] and stream.result == whole
    assert stream.finish_reason == "length" and stream.usage == whole["usage"] == sync.usage
    assert awaited.result == aigc.generate("template", {"input": "Bees"}, sampling=GREEDY, template="chat", **model)
    assert awaited.text == awaited.result["text"]


def test_pieces_reach_the_consumer_as_they_are_decoded_and_the_loop_runs_meanwhile():
    """The engine waits, between its pieces, for the consumer to have the first; and before its
    first piece, for another task of the event loop to run. Both happen only if the model runs in a
    worker thread and each piece is handed over at once."""
    started, consumed, waits = threading.Event(), threading.Event(), []

    class Waiting(FakeEngine):
        def stream(self, prompt, params):
            waits.append(started.wait(10))
            yield "one "
            waits.append(consumed.wait(10))
            yield "two"

    async def main():
        async def other_task():
            started.set()

        stream = AsyncAnswerStream(lambda: ChatGenerator(engine=Waiting()).stream("hi"))
        other = asyncio.create_task(other_task())
        pieces = []
        async for piece in stream:
            pieces.append(piece)
            consumed.set()
        await other
        return stream, pieces

    stream, pieces = asyncio.run(main())
    assert waits == [True, True] and pieces == ["one", " two"] and stream.text == "one two"
    assert stream.finish_reason == "stop" and stream.result["text"] == "one two"


def test_its_properties_before_the_end_say_to_read_it_first():
    engine = FakeEngine()
    engine.enqueue("one two")

    async def main():
        stream = AsyncAnswerStream(lambda: ChatGenerator(engine=engine).stream("hi"))
        assert await stream.__anext__() == "one"
        for name in ("text", "finish_reason", "usage", "result"):
            with pytest.raises(BadInputError, match=rf"still being written: read it to its end .* before reading its {name}"):
                getattr(stream, name)
        return await stream

    stream = asyncio.run(main())
    assert stream.text == "one two" and stream.finish_reason == "stop"


def test_a_loop_broken_out_of_stops_decoding_and_frees_the_thread(tiny_engine):
    gen = ChatGenerator(engine=tiny_engine)
    calls, tokens = tiny_engine.stats.calls, tiny_engine.stats.completion_tokens

    async def main():
        async for _ in AsyncAnswerStream(lambda: gen.stream("Bees", sampling=SAMPLED)):
            threads = astream_threads()
            break  # the stream, no longer held, is closed: by the worker thread where it drops the stream last, before it ends
        return threads

    threads = asyncio.run(main())
    assert threads and freed(threads)
    assert tiny_engine.stats.calls == calls + 1 and tiny_engine.stats.completion_tokens - tokens < 40  # the decode ended there


def test_aclose_and_an_async_with_blocks_end_stop_decoding(tiny_engine):
    gen = ChatGenerator(engine=tiny_engine)

    async def main():
        stream = AsyncAnswerStream(lambda: gen.stream("Bees", sampling=SAMPLED))
        first = await stream.__anext__()
        threads = astream_threads()
        await stream.aclose()
        assert tiny_engine.stats.calls == calls + 1 and tiny_engine.stats.completion_tokens - tokens < 40
        assert [piece async for piece in stream] == [] and freed(threads)
        async with AsyncAnswerStream(lambda: gen.stream("Bees", sampling=SAMPLED)) as held:
            await held.__anext__()
        assert tiny_engine.stats.calls == calls + 2 and tiny_engine.stats.completion_tokens - tokens < 80
        return stream, first

    calls, tokens = tiny_engine.stats.calls, tiny_engine.stats.completion_tokens
    stream, first = asyncio.run(main())
    unstarted = AsyncAnswerStream(lambda: pytest.fail("started"))
    asyncio.run(unstarted.aclose())  # before its first piece: nothing runs
    assert (unstarted.text, unstarted.finish_reason, unstarted.usage, unstarted.result) == ("", "cancelled", None, None)
    assert stream.text == first == stream.result["text"] and stream.finish_reason == "cancelled" == stream.result["finish_reason"]
    assert stream.usage == stream.result["usage"] and stream.usage["completion_tokens"] == tiny_engine.count_tokens(first)


def test_cancelling_the_reading_task_stops_decoding_after_the_piece_being_decoded():
    decoding, resume, stopped, decoded = threading.Event(), threading.Event(), threading.Event(), []

    class Slow(FakeEngine):
        def stream(self, prompt, params):
            try:
                yield "one "
                decoding.set()
                resume.wait(10)  # the task is cancelled while the worker thread is here
                yield "two "
                decoded.append("three")
                yield "three"
            finally:
                stopped.set()

    async def main():
        stream = AsyncAnswerStream(lambda: ChatGenerator(engine=Slow()).stream("hi"))

        async def read():
            async for _ in stream:
                pass

        reader = asyncio.create_task(read())
        assert await asyncio.to_thread(decoding.wait, 10)
        threads = astream_threads()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        resume.set()
        assert await asyncio.to_thread(stopped.wait, 10)
        await stream.aclose()  # waits for the closing the cancelled task asked for
        return stream, threads

    stream, threads = asyncio.run(main())
    assert decoded == [] and freed(threads)
    assert stream.text == "one" and stream.finish_reason == "cancelled" and stream.usage["completion_tokens"] > 0


def paused_writer(monkeypatch, token: int):
    """Have the model write `token` at every step; its first waits for `resume`. Returns (picks, writing, resume)."""
    from aigc.engine import sampling

    picks, writing, resume = [], threading.Event(), threading.Event()

    def pick(scores, params, gen):
        picks.append(token)
        writing.set()
        resume.wait(10)  # the task is cancelled while the worker thread is here
        return torch.full((scores.shape[0],), token)

    monkeypatch.setattr(sampling, "pick_tokens", pick)
    return picks, writing, resume


def test_cancelling_an_agenerate_stops_decoding_after_the_token_being_decoded(tiny_model_dir, tiny_engine, monkeypatch):
    picks, writing, resume = paused_writer(monkeypatch, tiny_engine.tokenizer.convert_tokens_to_ids("a"))

    async def main():
        call = asyncio.create_task(aigc.agenerate("chat", "Bees", model=str(tiny_model_dir), device="cpu", sampling={"temperature": 0, "max_tokens": 50}))
        assert await asyncio.to_thread(writing.wait, 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        resume.set()

    asyncio.run(main())  # its end waits for the default executor's threads
    assert len(picks) == 1  # decoding stopped after the token being decoded


def test_closing_a_stream_stops_decoding_after_the_token_even_within_a_piece(tiny_engine, monkeypatch):
    picks, writing, resume = paused_writer(monkeypatch, tiny_engine.tokenizer.convert_tokens_to_ids("\n"))  # a chat answer's leading line breaks make no piece
    gen = ChatGenerator(engine=tiny_engine)

    async def main():
        stream = AsyncAnswerStream(lambda: gen.stream("Bees", sampling={"temperature": 0, "max_tokens": 50}))
        reader = asyncio.create_task(stream.__anext__())
        assert await asyncio.to_thread(writing.wait, 10)
        threads = astream_threads()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        resume.set()
        return stream, threads

    stream, threads = asyncio.run(main())
    assert freed(threads) and len(picks) == 1 and stream.text == ""


def test_errors_reach_the_awaiting_coroutine_as_they_were_raised():
    error = ContextLengthError("the prompt is too long: shorten it")

    class Failing(FakeEngine):
        def stream(self, prompt, params):
            yield "one "
            yield "two "
            raise error

    async def main():
        stream = AsyncAnswerStream(lambda: ChatGenerator(engine=Failing()).stream("hi"))
        pieces = []
        with pytest.raises(ContextLengthError) as raised:
            async for piece in stream:
                pieces.append(piece)
        assert raised.value is error and pieces == ["one", " two"]
        assert [piece async for piece in stream] == [] and stream.text == "one two" and stream.finish_reason is None
        with pytest.raises(BadInputError) as unstreamed:
            async for _ in aigc.astream("headline", {"topic": "bees"}, model="echo"):
                pass
        with pytest.raises(UnknownModelError) as unknown:
            await aigc.agenerate("chat", "hi", model="no-such-model")
        return unstreamed.value, unknown.value

    unstreamed, unknown = asyncio.run(main())
    with pytest.raises(BadInputError) as sync_unstreamed:
        aigc.stream("headline", {"topic": "bees"}, model="echo")
    with pytest.raises(UnknownModelError) as sync_unknown:
        aigc.generate("chat", "hi", model="no-such-model")
    assert str(unstreamed) == str(sync_unstreamed.value) and str(unknown) == str(sync_unknown.value)


def test_calls_run_concurrently_each_in_its_own_thread(monkeypatch):
    """Two streams, and two agenerate calls, each wait in the model for the other to be there too."""
    streams_met, calls_met = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)

    class Meeting(FakeEngine):
        def stream(self, prompt, params):
            streams_met.wait()
            yield from super().stream(prompt, params)

    def generate(task, inputs, *args, **kwargs):
        calls_met.wait()
        return {"text": inputs}

    async def main():
        engines = [Meeting(), Meeting()]
        for engine, answer in zip(engines, ("first answer", "second answer")):
            engine.enqueue(answer)
        streams = [AsyncAnswerStream(lambda engine=engine: ChatGenerator(engine=engine).stream("hi")) for engine in engines]
        read = await asyncio.gather(*streams)
        with monkeypatch.context() as patched:
            patched.setattr(aigc, "generate", generate)
            results = await asyncio.gather(aigc.agenerate("chat", "a"), aigc.agenerate("chat", "b"))
        echoed = await asyncio.gather(*(aigc.agenerate("chat", f"echo {i}", model="echo") for i in range(3)), aigc.astream("chat", "echo 3", model="echo"))
        return read, results, echoed

    read, results, echoed = asyncio.run(main())
    assert [stream.text for stream in read] == ["first answer", "second answer"]
    assert results == [{"text": "a"}, {"text": "b"}]
    assert [result["text"] for result in echoed[:3]] == ["echo 0", "echo 1", "echo 2"] and echoed[3].result == aigc.generate("chat", "echo 3", model="echo")


def test_the_worker_thread_sees_the_callers_context_variables():
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def start():
        seen.append(var.get())
        return iter(["piece"])

    async def main():
        var.set("the caller's")
        stream = AsyncAnswerStream(start)
        var.set("changed later")
        return await stream

    assert asyncio.run(main()).text == "piece" and seen == ["the caller's"]


def test_a_chat_sessions_turn_read_asynchronously_is_recorded_as_send_records_it():
    from aigc.generators.chat import ChatSession

    engine = FakeEngine()
    engine.enqueue("Paris is big", "one two three", "again")
    session = ChatSession(ChatGenerator(engine=engine))

    async def main():
        whole = await AsyncAnswerStream(lambda: session.send("Capital?"))
        async with AsyncAnswerStream(lambda: session.send("Count")) as cut:
            assert await cut.__anext__() == "one"
        return whole, cut

    whole, cut = asyncio.run(main())
    assert whole.text == "Paris is big" and whole.result["text"] == "Paris is big" and whole.usage == whole.result["usage"]
    assert cut.text == "one" and session.messages[-1] == {"role": "assistant", "content": "one"}  # closed early: the partial reply kept
    assert [m["content"] for m in session.messages] == ["Capital?", "Paris is big", "Count", "one"] and session.ask("more") == "again"


def test_concurrent_streams_on_one_local_model_give_the_answers_they_give_alone(tiny_engine):
    """The local engine holds no lock: the streams decode at once in their threads, on one model."""
    gen = ChatGenerator(engine=tiny_engine)
    asked = [("Bees", {**SAMPLED, "seed": 1}), ("Rivers in the north", {**SAMPLED, "seed": 2}), ("Cats", {**SAMPLED, "seed": 3})]
    alone = [gen.stream(question, sampling=sampling).text for question, sampling in asked]

    async def main():
        return await asyncio.gather(*(AsyncAnswerStream(lambda question=question, sampling=sampling: gen.stream(question, sampling=sampling)) for question, sampling in asked))

    assert [stream.text for stream in asyncio.run(main())] == alone and len(set(alone)) == 3
