"""`aigc.stream` and the generators' `stream`: an `AnswerStream` of text pieces, then the whole result."""

import pytest

import aigc
from aigc import templates
from aigc.errors import BadInputError, ConversationDeletedError
from aigc.generators.chat import ChatGenerator, ChatSession
from aigc.testing import FakeEngine

GREEDY = {"temperature": 0, "max_tokens": 4}  # the tiny random model does not end an answer this soon: max_tokens does


def test_a_stream_yields_the_engines_pieces_then_holds_the_result_generate_gives(tiny_engine):
    gen = ChatGenerator(engine=tiny_engine)
    whole = gen("Bees", sampling=GREEDY)
    params = gen.reply_params(GREEDY, templates.get_template("chat").defaults)
    expected = list(tiny_engine.stream(whole["messages"][:-1], params))
    stream = gen.stream("Bees", sampling=GREEDY)
    pieces = list(stream)
    assert "".join(pieces) == "".join(expected).strip() == stream.text == whole["text"]
    assert stream.finish_reason == "length" and stream.usage == whole["usage"] and stream.result == whole
    assert stream.usage == {"prompt_tokens": tiny_engine.count_tokens(whole["messages"][:-1]), "completion_tokens": GREEDY["max_tokens"]}
    assert list(stream) == []  # read to its end once


def test_the_result_comes_without_a_second_model_call(tiny_engine, monkeypatch):
    gen = ChatGenerator(engine=tiny_engine)
    whole = gen("Bees", sampling=GREEDY)
    streams = []
    real = tiny_engine.stream
    monkeypatch.setattr(tiny_engine, "stream", lambda *args: streams.append(args) or real(*args))
    monkeypatch.setattr(tiny_engine, "generate", lambda *args: pytest.fail("a second model call"))
    stream = gen.stream("Bees", sampling=GREEDY)
    assert stream.result == whole and len(streams) == 1  # read on demand: the rest of the answer is read first
    assert stream.text == whole["text"] and list(stream) == []


def test_a_stream_closed_early_stops_decoding_and_holds_what_was_written(tiny_engine):
    gen = ChatGenerator(engine=tiny_engine)
    sampling = {"temperature": 1, "seed": 1, "max_tokens": 40}  # greedy, the tiny random model writes only line breaks: none streams before the end
    calls, tokens = tiny_engine.stats.calls, tiny_engine.stats.completion_tokens
    stream = gen.stream("Bees", sampling=sampling)
    first = next(stream)
    stream.close()
    assert tiny_engine.stats.calls == calls + 1 and tiny_engine.stats.completion_tokens - tokens < 40  # the decode ended there
    prompt = stream.result["messages"][:-1]
    assert stream.text == first == stream.result["text"] and stream.finish_reason == "cancelled" == stream.result["finish_reason"]
    assert stream.usage == stream.result["usage"] == {"prompt_tokens": tiny_engine.count_tokens(prompt), "completion_tokens": tiny_engine.count_tokens(first)}
    assert list(stream) == []
    calls, tokens = tiny_engine.stats.calls, tiny_engine.stats.completion_tokens
    for _ in gen.stream("Bees", sampling=sampling):
        break  # the stream, no longer held, is closed at once
    assert tiny_engine.stats.calls == calls + 1 and tiny_engine.stats.completion_tokens - tokens < 40


def test_aigc_stream_gives_generates_result_for_chat_and_template(tiny_model_dir):
    model = {"model": str(tiny_model_dir), "device": "cpu"}
    for task, inputs, options in (("chat", "Bees", {}), ("template", {"input": "Bees"}, {"template": "chat"})):
        whole = aigc.generate(task, inputs, sampling=GREEDY, **model, **options)
        stream = aigc.stream(task, inputs, sampling=GREEDY, **model, **options)
        assert isinstance(stream, aigc.AnswerStream)
        assert "".join(stream) == whole["text"] and stream.result == whole and stream.finish_reason == "length"


def test_a_streams_text_is_generates_without_the_blank_space_around_the_answer():
    for answer in ("1, 2, 3, 4, ", "  Paris\n\n is big.  \n", " \n "):
        engine = FakeEngine()
        engine.enqueue(answer, answer)
        gen = ChatGenerator(engine=engine)
        whole = gen("Count")
        stream = gen.stream("Count")
        pieces = list(stream)
        assert stream.text == "".join(pieces) == whole["text"] == answer.strip() == stream.result["text"]
        assert "" not in pieces  # blank space held back is written with the next piece that is not blank


def test_a_streamed_json_answer_has_its_data_and_a_stream_ends_with_its_finish_reason():
    engine = FakeEngine()
    engine.enqueue('{"a": 1}')
    stream = ChatGenerator(engine=engine).stream("hi", sampling={"json_schema": "a int"})
    pieces = []
    with pytest.raises(StopIteration) as end:
        while True:
            pieces.append(next(stream))
    assert "".join(pieces) == '{"a": 1}' and end.value.value == "stop" == stream.finish_reason  # as a generator returns it
    assert stream.result["data"] == {"a": 1} and stream.result["text"] == '{"a": 1}'


def test_an_engine_whose_stream_returns_only_its_finish_reason_has_its_tokens_counted():
    class Older(FakeEngine):
        def stream(self, prompt, params):
            yield "Paris is big"
            return "length"

    stream = ChatGenerator(engine=Older()).stream("Capital?")
    assert stream.text == "Paris is big" and stream.finish_reason == "length"
    assert stream.usage == {"prompt_tokens": Older().count_tokens([{"role": "user", "content": "Capital?"}]), "completion_tokens": 3}


def test_a_chat_session_makes_its_chat_generator(tiny_model_dir):
    session = ChatSession(model=str(tiny_model_dir), sampling=GREEDY)
    assert isinstance(session.generator, ChatGenerator) and session.generator.model == str(tiny_model_dir)
    assert session.ask("Bees") == session.messages[-1]["content"] and len(session.messages) == 2
    default = aigc.ChatSession()  # the default model, loaded at the first reply
    assert isinstance(default.generator, ChatGenerator) and default.generator.model is None
    with pytest.raises(BadInputError, match="its generator or a model, not both"):
        ChatSession(ChatGenerator(engine=FakeEngine()), model="smollm2")
    with pytest.raises(BadInputError, match=r"or model=NAME makes it; got str"):
        ChatSession("smollm2")


def test_aigc_stream_wraps_a_plugin_generators_own_stream(monkeypatch):
    """A plugin generator's `stream`, a plain generator of pieces, has `text` and `finish_reason` too
    (`usage` where it returns the engine's Completion); its `result` is None: only its call makes it."""
    from aigc import Generator, hookimpl, plugins
    from aigc.engine import loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: FakeEngine())

    class Shout(Generator):
        name = "shout"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            return prepared

        def postprocess(self, raw, opts):
            return {"text": raw.upper()}

        def stream(self, inputs, sampling=None, **options):
            if inputs == "engine":
                self.engine.enqueue("LOUD AND CLEAR")
                return (yield from self.engine.stream([{"role": "user", "content": inputs}], self.sampling(sampling)))
            yield from inputs.upper().split()
            return "length" if inputs == "cut" else None

    class Plugin:
        @staticmethod
        @hookimpl
        def register_generators(register):
            register("shout", Shout)

    pm = plugins.get_plugin_manager()
    pm.register(Plugin(), name="shout-plugin")
    try:
        stream = aigc.stream("shout", "cut off")
        assert isinstance(stream, aigc.AnswerStream) and list(stream) == ["CUT", "OFF"]
        assert stream.text == "CUTOFF" and stream.finish_reason is None and stream.usage is None and stream.result is None
        stream = aigc.stream("shout", "cut")
        assert stream.finish_reason == "length" and stream.text == "CUT"  # read on demand
        stream = aigc.stream("shout", "engine")
        assert stream.text == "LOUD AND CLEAR" and stream.finish_reason == "stop" and stream.result is None
        assert stream.usage == {"prompt_tokens": 5, "completion_tokens": 3}
    finally:
        pm.unregister(name="shout-plugin")


def test_a_result_that_fails_is_raised_on_its_own_not_during_the_streams_end(tmp_path):
    engine = FakeEngine()
    engine.enqueue("one", "two three")
    session = ChatSession(ChatGenerator(engine=engine), path=tmp_path / "s.json")
    session.ask("first")
    stream = session.send("second")
    next(stream)
    (tmp_path / "s.json").unlink()  # recording the reply, when it ends, fails
    with pytest.raises(ConversationDeletedError) as failed:
        list(stream)
    assert failed.value.__context__ is None  # no "During handling of the above exception (StopIteration)" in its traceback
    assert stream.text == "two three" and stream.finish_reason is None and list(stream) == []


def test_a_stream_closed_from_another_thread_stops_after_the_piece_being_decoded():
    """A stop button's thread closes the stream that another thread reads: no 'generator already
    executing' error; the reader gets the piece being decoded, then the end, and the decode (and a
    session's turn) is closed there, so the session takes the next turn with the partial reply kept."""
    import threading

    decoding, closed, stopped = threading.Event(), threading.Event(), []

    class Slow(FakeEngine):
        def stream(self, prompt, params):
            try:
                yield "one "
                decoding.set()
                closed.wait(10)  # the reader is inside next() when the other thread closes the stream
                yield "two "
                yield "three"
            finally:
                stopped.append(True)

    engine = Slow()
    session = ChatSession(ChatGenerator(engine=engine))
    stream = session.send("first")
    pieces: list[str] = []
    reader = threading.Thread(target=lambda: pieces.extend(stream))
    reader.start()
    assert decoding.wait(10)
    stream.close()
    closed.set()
    reader.join(10)
    assert not reader.is_alive() and pieces == ["one", " two"] and stopped == [True]
    assert stream.text == "one two" == stream.result["text"] and stream.finish_reason == "cancelled"  # its generator's stream's
    assert stream.usage == {"prompt_tokens": engine.count_tokens(stream.result["messages"][:-1]), "completion_tokens": engine.count_tokens("one two")}
    assert session.messages[-1] == {"role": "assistant", "content": "one two"}
    assert session.ask("second") == "one two three" and len(session.messages) == 4  # not "a reply is still being written"


def test_a_with_block_closes_the_stream_as_the_openai_sdks_streams_close():
    engine = FakeEngine()
    engine.enqueue("one two three", "again")
    session = ChatSession(ChatGenerator(engine=engine))
    with pytest.raises(KeyError):
        with session.send("first") as stream:
            assert next(stream) == "one"
            raise KeyError("the caller's own error")
    assert stream.text == "one" and stream.finish_reason == "cancelled"
    assert session.messages[-1] == {"role": "assistant", "content": "one"} and session.ask("second") == "again"
    with aigc.stream("chat", "read whole", model="echo") as whole:
        assert "".join(whole) == "read whole"
    assert whole.finish_reason == "stop"  # read to its end: closing it changed nothing


def test_reading_text_before_the_loop_keeps_the_pieces_for_it():
    engine = FakeEngine()
    engine.enqueue("one two three", "one two three")
    gen = ChatGenerator(engine=engine)
    whole = list(gen.stream("hi"))
    stream = gen.stream("hi")
    assert stream.text == "one two three"  # reads the whole answer first
    assert list(stream) == whole and stream.finish_reason == "stop"  # then the loop gets every piece
    assert list(stream) == []  # read to its end once
    paused = aigc.stream("chat", "one two three", model="echo")
    assert next(paused) == "one" and paused.result["text"] == "one two three"
    pieces = []
    while True:
        try:
            pieces.append(next(paused))
        except StopIteration as end:
            assert end.value == "stop"
            break
    assert "one" + "".join(pieces) == "one two three"  # the pieces the loop had not had yet


def test_a_closed_stream_holds_the_tokens_written_where_no_result_can_be_made_of_them():
    engine = FakeEngine()
    engine.enqueue('{"a": 1, "b": 2}')
    stream = ChatGenerator(engine=engine).stream("hi", sampling={"json_schema": "a int, b int"})
    first = next(stream)
    stream.close()
    assert stream.text == first and stream.finish_reason == "cancelled" and stream.result is None  # half a JSON answer is none
    assert stream.usage == {"prompt_tokens": engine.count_tokens(engine.calls[-1][0][0]), "completion_tokens": engine.count_tokens(first)}
    unread = ChatGenerator(engine=engine).stream("hi")
    unread.close()  # before its first piece
    assert unread.text == "" and unread.finish_reason == "cancelled" and unread.usage["completion_tokens"] == 0
    plugins = aigc.AnswerStream.wrapping(iter(["a ", "b"]))  # a plugin generator's own stream: nothing counts its tokens
    assert next(plugins) == "a "
    plugins.close()
    assert (plugins.text, plugins.finish_reason, plugins.usage, plugins.result) == ("a ", "cancelled", None, None)


def test_a_paused_stream_leaves_the_callers_thread_out_of_inference_mode(tiny_engine):
    import torch

    gen = ChatGenerator(engine=tiny_engine)
    sampling = {"temperature": 1, "seed": 1, "max_tokens": 12}
    whole = gen("Bees", sampling=sampling)
    stream = gen.stream("Bees", sampling=sampling)
    first = next(stream)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    layer = torch.nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()  # the caller's own torch code, between two pieces
    assert layer.weight.grad is not None
    assert first + "".join(stream) == stream.text == whole["text"]  # the rest read later, as without the pause
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()


def test_streams_sessions_generators_and_engines_show_what_they_are(tiny_engine, tmp_path):
    gen = ChatGenerator(engine=tiny_engine)
    assert repr(gen) == f"<ChatGenerator 'chat', model {tiny_engine.name!r}>"
    assert repr(aigc.get_generator("headline")) == "<HeadlineGenerator 'headline', model 'default'>"  # nothing loaded to say so
    from aigc.engine.diffusion import ImageEngine

    assert repr(ImageEngine("sd-turbo", object(), "cpu", "float32")) == "<ImageEngine 'sd-turbo' on cpu in float32>"  # not the whole pipeline
    assert repr(tiny_engine) == f"<LocalEngine {tiny_engine.name!r} on cpu in float32, {tiny_engine.context_length}-token context>"
    stream = gen.stream("Bees", sampling={"temperature": 1, "seed": 1, "max_tokens": 30})
    assert repr(stream) == "<AnswerStream so far: no text>"
    first = next(stream)
    assert repr(stream) == f"<AnswerStream so far: {len(first)} characters {first[:40]!r}{'...' * (len(first) > 40)}>"  # nothing read for it
    text = stream.text
    assert repr(stream) == f"<AnswerStream ended ({stream.finish_reason}): {len(text)} characters {text[:40]!r}{'...' * (len(text) > 40)}>"
    session = ChatSession(generator=gen, path=tmp_path / "trip.json", sampling=GREEDY)
    session.answer("Hi")
    assert repr(session) == f"<ChatSession model {tiny_engine.name!r}, 2 messages, {str(tmp_path / 'trip.json')!r}>"
    session.close()
    assert repr(session).endswith(", closed>")
