"""Tool calling's parts (`aigc.serve.tools`): what an answer's call is, and how tools and earlier
calls reach the prompt; the server's answers are tested in test_serve.py."""

import json

import pytest

pytest.importorskip("fastapi")

from aigc.engine.base import Completion  # noqa: E402
from aigc.serve.tools import Holdback, Toolset, prompt, starts_call  # noqa: E402

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}, {"type": "function", "function": {"name": "now"}}]


def test_an_answers_call_is_found_in_the_forms_models_write_and_must_fit_its_schema():
    tools = Toolset.of(TOOLS, "auto")
    call = {"name": "get_weather", "arguments": {"city": "Oslo"}, "content": None}
    for text in ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', ' {"name": "get_weather", "arguments": {"city": "Oslo"}}', '{"name": "get_weather", "parameters": {"city": "Oslo"}}'):
        assert tools.parse(text) == call and starts_call(text), text
    assert tools.parse('{"name": "now"}') is None  # arguments are required, {} at least
    assert tools.parse('{"name": "now", "arguments": {}}') == {"name": "now", "arguments": {}, "content": None}
    for text in ('{"name": "get_news", "arguments": {}}', '{"name": "get_weather", "arguments": {"days": 2}}', '<tool_call>{"name": "get_weather", "arguments": {', "It is sunny."):
        assert tools.parse(text) is None, text
    assert not starts_call("It is sunny.") and starts_call('<tool_call>{"name": "get_weather", "arguments": {')
    named = Toolset.of(TOOLS, {"type": "function", "function": {"name": "now"}})
    assert named.forced and named.parse('{"name": "get_weather", "arguments": {"city": "Oslo"}}') is None


def test_text_before_a_call_is_the_answers_content_and_the_call_is_still_made():
    """As llama.cpp's Hermes parser: the text before a call is the message's content (null where
    it is blank), in a whole answer, a chat stream and a response."""
    from aigc.serve.app import _Reply
    from aigc.serve.responses import ResponseReply

    tools = Toolset.of(TOOLS, "auto")
    text = 'Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert tools.parse(text) == {"name": "get_weather", "arguments": {"city": "Paris"}, "content": "Sure."}
    assert tools.parse(' \n<tool_call>{"name": "now", "arguments": {}}</tool_call>')["content"] is None
    assert tools.parse('I will call {"name": "now", "arguments": {}}')["content"] == "I will call"
    assert tools.parse('Sure. <tool_call>{"name": "now", "arguments": {}} and more') is None  # not a whole call: text
    completions = [Completion(text, 5, 20, "stop")]
    body, chunks = _Reply(True, "m", None, None, 5, 1).called(completions, None, [tools.parse(text)])
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Sure."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[1] == {"content": "Sure."} and deltas[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    response, events = ResponseReply("m", 5, "resp_1", {}).called(completions, None, [tools.parse(text)])
    assert [item["type"] for item in response["output"]] == ["message", "function_call"] and response["output"][0]["content"][0]["text"] == "Sure."
    assert [e["sequence_number"] for e in events] == list(range(len(events))) and events[-1]["response"]["output"] == response["output"]
    assert {e["output_index"] for e in events if e["type"].startswith("response.function_call")} == {1}


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
