"""Tool calling's parts (`aigc.serve.tools`): what an answer's call is, and how tools and earlier
calls reach the prompt; the server's answers are tested in test_serve.py."""

import json

import pytest

pytest.importorskip("fastapi")

from aigc.engine.base import Completion  # noqa: E402
from aigc.serve.tools import Holdback, Toolset, prompt, requested, starts_call  # noqa: E402

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}, {"type": "function", "function": {"name": "now"}}]


def test_an_answers_call_is_found_in_the_forms_models_write_and_must_fit_its_schema():
    tools = Toolset.of(TOOLS, "auto")
    call = {"content": None, "calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    for text in ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', ' {"name": "get_weather", "arguments": {"city": "Oslo"}}', '{"name": "get_weather", "parameters": {"city": "Oslo"}}'):
        assert tools.parse(text) == call and starts_call(text), text
    assert tools.parse('{"name": "now"}') is None  # arguments are required, {} at least
    assert tools.parse('{"name": "now", "arguments": {}}') == {"content": None, "calls": [{"name": "now", "arguments": {}}]}
    for text in ('{"name": "get_news", "arguments": {}}', '{"name": "get_weather", "arguments": {"days": 2}}', '<tool_call>{"name": "get_weather", "arguments": {', "It is sunny."):
        assert tools.parse(text) is None, text
    assert not starts_call("It is sunny.") and starts_call('<tool_call>{"name": "get_weather", "arguments": {')
    named = Toolset.of(TOOLS, {"type": "function", "function": {"name": "now"}})
    assert named.forced and named.parse('{"name": "get_weather", "arguments": {"city": "Oslo"}}') is None


def test_text_before_a_call_is_the_answers_content_and_the_call_is_still_made():
    """As llama.cpp's Hermes parser: the text before a call is the message's content (null where
    it is blank), in a whole answer, a chat stream and a response."""
    from aigc.serve.replies import Reply
    from aigc.serve.responses import ResponseReply

    tools = Toolset.of(TOOLS, "auto")
    text = 'Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert tools.parse(text) == {"content": "Sure.", "calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}
    assert tools.parse(' \n<tool_call>{"name": "now", "arguments": {}}</tool_call>')["content"] is None
    assert tools.parse('I will call {"name": "now", "arguments": {}}')["content"] == "I will call"
    assert tools.parse('Sure. <tool_call>{"name": "now", "arguments": {}} and more') is None  # not a whole call: text
    completions = [Completion(text, 5, 20, "stop")]
    body, chunks = Reply(True, "m", None, None, 5, 1).called(completions, None, [tools.parse(text)])
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Sure."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[1] == {"content": "Sure."} and deltas[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    response, events = ResponseReply("m", 5, "resp_1", {}).called(completions, None, [tools.parse(text)])
    assert [item["type"] for item in response["output"]] == ["message", "function_call"] and response["output"][0]["content"][0]["text"] == "Sure."
    assert [e["sequence_number"] for e in events] == list(range(len(events))) and events[-1]["response"]["output"] == response["output"]
    assert {e["output_index"] for e in events if e["type"].startswith("response.function_call")} == {1}


PARALLEL = 'Both. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'


def test_an_answer_may_hold_several_calls_unless_parallel_tool_calls_is_false():
    """Hermes and Qwen's form: a <tool_call> block a call, as llama.cpp's parser reads them."""
    both = [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "now", "arguments": {}}]
    assert Toolset.of(TOOLS, "auto").parse(PARALLEL) == {"content": "Both.", "calls": both}
    assert Toolset.of(TOOLS, "auto").parse(PARALLEL.removesuffix("</tool_call>")) == {"content": "Both.", "calls": both}  # the last one unclosed, as a stop cut it
    assert Toolset.of(TOOLS, "auto", parallel=False).parse(PARALLEL) == {"content": "Both.", "calls": both[:1]}
    assert Toolset.of(TOOLS, "auto", parallel=False).parse(PARALLEL + "<tool_call>{") == {"content": "Both.", "calls": both[:1]}  # what follows the first is not read
    for wrong in (PARALLEL + "\n<tool_call>{\"name\": \"get_news\", \"arguments\": {}}</tool_call>", PARALLEL + " and more", PARALLEL.replace("<tool_call>\n{\"name\": \"now\"", "{\"name\": \"now\"")):
        assert Toolset.of(TOOLS, "auto").parse(wrong) is None, wrong  # a call not valid, or text between or after: no calls
    legacy, _ = requested(None, None, [t["function"] for t in TOOLS], "auto", None)
    assert len(legacy.parse(PARALLEL)["calls"]) == 1  # function_call is one call


def test_several_calls_are_answered_each_with_its_id_and_streamed_each_under_its_index():
    from aigc.serve.replies import Reply

    completions = [Completion(PARALLEL, 5, 40, "stop")]
    body, chunks = Reply(True, "m", None, None, 5, 1).called(completions, None, [Toolset.of(TOOLS, "auto").parse(PARALLEL)])
    (choice,) = body["choices"]
    calls = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Both."
    assert [c["function"] for c in calls] == [{"name": "get_weather", "arguments": '{"city": "Oslo"}'}, {"name": "now", "arguments": "{}"}]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    streamed: dict[int, dict] = {}
    for chunk in chunks:
        for piece in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            call = streamed.setdefault(piece["index"], {"id": piece.get("id"), "name": piece["function"].get("name"), "arguments": ""})
            call["arguments"] += piece["function"]["arguments"]
    assert [(c["name"], json.loads(c["arguments"])) for c in streamed.values()] == [("get_weather", {"city": "Oslo"}), ("now", {})] and list(streamed) == [0, 1]
    assert streamed[0]["id"] != streamed[1]["id"] and [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_a_streamed_answer_holds_back_only_what_may_open_a_call():
    """As llama.cpp's server holds back a partial stop word: an end that may yet become `<tool_call>`
    or `{"name":` waits, and is sent once it cannot; blank space at the start waits too."""
    call = Holdback()
    assert [call.feed(p, None) for p in ("  ", "Sure", ". <", "tool", "_call", '>{"name"')] == [None, ("  Sure", None), (". ", None), None, None, None]
    assert call.opened and call.text.endswith('<tool_call>{"name"')
    text = Holdback()
    assert [text.feed(p, None) for p in ("a <", "b", " {", ' "na', "x")] == [("a ", None), ("<b", None), (" ", None), None, ('{ "nax', None)]
    assert not text.opened and text.rest() is None
    held = Holdback()
    assert held.feed("Hi {", [1]) == ("Hi ", [1]) and held.feed("", [2]) is None and held.rest() == ("{", [2])  # log-probabilities go with their text


def test_a_calls_arguments_are_checked_within_the_time_an_answers_patterns_get(monkeypatch):
    """Arguments are checked by `json_schemas.schema_problem`: a pattern check still running once the
    answer's PATTERN_SECONDS are spent (here none) makes the call not valid."""
    from aigc import json_schemas

    spelled = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|aa)*$"}}, "required": ["s"]}
    tools = Toolset.of([{"type": "function", "function": {"name": "spell", "parameters": spelled}}], "auto")
    text = '{"name": "spell", "arguments": {"s": "aaaa"}}'
    assert tools.parse(text) == {"content": None, "calls": [{"name": "spell", "arguments": {"s": "aaaa"}}]}
    monkeypatch.setattr(json_schemas, "PATTERN_SECONDS", 0, raising=False)
    assert tools.parse(text) is None


def test_the_call_schema_names_each_tool_with_its_own_arguments():
    import jsonschema

    schema = Toolset.of(TOOLS, "required").call_schema()
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Oslo"}}, schema)
    for wrong in ({"name": "now", "arguments": {"city": 1}, "x": 1}, {"name": "get_weather", "arguments": {}}, {"name": "other", "arguments": {}}):
        assert not jsonschema.validators.validator_for(schema)(schema).is_valid(wrong), wrong
    only = Toolset.of(TOOLS, {"type": "function", "function": {"name": "now"}}).call_schema()
    assert only["properties"]["name"] == {"const": "now"} and only["properties"]["arguments"] == {"type": "object", "properties": {}}
    assert Toolset.of(TOOLS, "none") is None and Toolset.of(None, "auto") is None
    for empty in (None, {}):  # as if left out: arguments are an object
        assert Toolset.of([{"type": "function", "function": {"name": "f", "parameters": empty}}], "required").call_schema()["properties"]["arguments"] == {"type": "object", "properties": {}}


def test_a_template_without_tools_reads_them_in_the_system_message_and_calls_as_text():
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_call_id": "c", "content": "rain"},
    ]
    messages, tools = prompt(history, Toolset.of(TOOLS, "required"), native=False)
    assert tools is None and [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\nYou may call these functions:\n<tools>\n") and json.dumps(TOOLS[0]["function"]) in messages[0]["content"]
    assert "You must call one of them." in messages[0]["content"]
    assert messages[2]["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert messages[3]["content"] == "<tool_response>\nrain\n</tool_response>"
    assert prompt(history[1:2], None, native=False) == ([{"role": "user", "content": "Weather?"}], None)  # no tools: nothing added


def test_a_template_that_reads_tools_lists_them_and_earlier_calls_itself(tiny_engine, monkeypatch):
    template = (
        "{% for t in tools or [] %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}{% for c in m.tool_calls or [] %}{{ c.function.name }}({{ c.function.arguments.city }}){% endfor %}|{% endfor %}"
    )
    assert not tiny_engine.template_lists_tools
    monkeypatch.setattr(tiny_engine.tokenizer, "chat_template", template)
    assert tiny_engine.template_lists_tools
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_call_id": "c", "content": "rain"},
    ]
    messages, tools = prompt(history, Toolset.of(TOOLS, "auto"), native=True)
    assert tiny_engine.render(messages, tools) == "[get_weather][now]user:Weather?|assistant:get_weather(Oslo)|tool:rain|"


FUNCTIONS = [t["function"] for t in TOOLS]  # the older form: functions, not tools


def test_functions_and_function_call_are_the_tools_and_tool_choice_they_stand_for():
    from aigc.serve.api_errors import ApiError
    from aigc.serve.tools import requested

    for function_call, named, forced in ((None, None, False), ("auto", None, False), ({"name": "now"}, "now", True)):
        toolset, legacy = requested(None, None, FUNCTIONS, function_call, None)
        assert legacy and toolset.tools == TOOLS and (toolset.named, toolset.forced) == (named, forced)
    assert requested(None, None, FUNCTIONS, "none", None) == (None, True)
    assert requested(TOOLS, "required", None, "auto", None)[1] is False  # a neutral function_call beside tools is no older form
    for args, param, words in [
        ((TOOLS, None, FUNCTIONS, None), "functions", "functions is the older form of tools; send tools and tool_choice, or functions and function_call, not both"),
        ((None, "auto", None, {"name": "now"}), "function_call", "function_call is the older form of tool_choice"),
        ((None, None, FUNCTIONS, {"name": "get_news"}), "function_call", "function_call names 'get_news', which is not among the functions (get_weather, now)"),
        ((None, None, FUNCTIONS, "always"), "function_call", """function_call 'always' is not one of "none", "auto" or {"name": ...}"""),
        ((None, None, [], {"name": "now"}), "function_call", "function_call asks for a tool call, but the request gives no functions"),
        ((None, None, [{"name": "f", "parameters": {"type": "banana"}}], None), "functions", "functions.0.parameters (f): the JSON schema is not valid"),
        ((None, None, ["get_weather"], None), "functions", "functions.0 must be a function"),
    ]:
        with pytest.raises(ApiError) as caught:
            requested(*args, None)
        assert caught.value.status == 400 and caught.value.param == param and words in caught.value.message, caught.value.message


def test_a_call_in_the_older_form_is_answered_as_function_call_whole_and_streamed():
    """As OpenAI answered `functions`: `message.function_call` (name, arguments as JSON text; no id,
    no tool_calls) and finish_reason function_call; a stream's `delta.function_call`, name then arguments."""
    from aigc.serve.replies import Reply
    from aigc.serve.tools import requested

    toolset = requested(None, None, FUNCTIONS, {"name": "get_weather"}, None)[0]
    texts = ['{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}', "It rains."]
    completions = [Completion(text, 5, 20, "stop") for text in texts]
    body, chunks = Reply(True, "m", None, None, 5, 2, legacy=True).called(completions, None, [toolset.parse(t) for t in texts])
    called, free = body["choices"]
    assert called["finish_reason"] == "function_call" and called["message"] == {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}
    assert free["finish_reason"] == "stop" and free["message"] == {"role": "assistant", "content": "It rains."}
    deltas = [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]
    assert [d for d in deltas if d[0] == 0][1:] == [(0, {"function_call": {"name": "get_weather", "arguments": ""}}, None), (0, {"function_call": {"arguments": '{"city": "Paris", "days": 2}'}}, None), (0, {}, "function_call")]
    assert not any("tool_calls" in delta for _, delta, _ in deltas)


def test_function_messages_are_read_as_tool_messages():
    """The older form's history: an assistant's `function_call` and a `function` message (name,
    content) read as a call and its result, as a template without tools shows them."""
    from aigc.serve.api_errors import ApiError
    from aigc.serve.request_bodies import Message

    history = [
        Message(role="assistant", content=None, function_call={"name": "get_weather", "arguments": '{"city": "Oslo"}'}),
        Message(role="function", name="get_weather", content="rain"),
    ]
    plain = [m.plain(i + 1) for i, m in enumerate(history)]
    assert plain[1] == {"role": "tool", "content": "rain", "tool_call_id": "", "name": "get_weather"}
    messages, _ = prompt(plain, None, native=False)
    assert [m["content"] for m in messages] == ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', "<tool_response>\nrain\n</tool_response>"]
    for name in (None, "get weather"):
        with pytest.raises(ApiError) as caught:
            Message(role="function", name=name, content="rain").plain(2)
        assert caught.value.param == "messages" and caught.value.message.startswith("messages.2: a function message needs the name of the function")
