"""OpenAI's Responses API (`POST /v1/responses`) on the chat path: a request's `input` and
`instructions` become chat messages and its settings a chat request's; the answer is a `response`
object, or its stream of typed events (`response.created` ... `response.completed`).

Function tools are chat's (`tools.py`): a call is a `function_call` output item, and earlier calls
and their results come back as `function_call` and `function_call_output` input items. Nothing is
stored, so what needs a stored response (`previous_response_id`, `background`) is a 400, as are
other tools, non-text input and log-probabilities, which this server does not give here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .api_errors import ApiError
from .request_bodies import UNSUPPORTED

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")
PASSED = (
    "model", "temperature", "top_p", "stream", "top_k", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty", "logit_bias", "seed", "stop",
    "stop_token_ids", "include_stop_str_in_output",
    *(name for name in UNSUPPORTED if name not in ("tools", "tool_choice", "functions", "function_call")),  # chat applies continue_final_message, refuses the rest
)  # as chat takes them (all but the first four: extensions), so none is dropped unread
NEEDS_STORAGE = ("previous_response_id", "conversation", "prompt")
# The chat request's names for what a Responses request calls otherwise, as errors name them.
RENAMED = {"max_completion_tokens": "max_output_tokens", "response_format": "text.format", "messages": "input", ".function.parameters": ".parameters"}


def chat_body(data: dict) -> dict:
    """The chat completions body for a Responses request body (`data`)."""
    for name in NEEDS_STORAGE:
        if data.get(name):
            raise ApiError(400, f"{name} needs a stored response or prompt, and this server stores none; send the whole conversation as input", param=name, code="unsupported")
    if data.get("background"):
        raise ApiError(400, "background responses are not supported; this server answers while the request waits, or streams", param="background", code="unsupported")
    if data.get("top_logprobs") or any("logprobs" in str(item) for item in data.get("include") or []):
        raise ApiError(400, "log-probabilities are not offered on /v1/responses here; /v1/chat/completions gives them (logprobs: true)", param="top_logprobs", code="unsupported")
    body: dict[str, Any] = {name: data[name] for name in PASSED if name in data}
    if data.get("tools") is not None:
        body["tools"] = _tools(data["tools"])
    if data.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(data["tool_choice"])
    body["messages"] = _messages(data.get("input"), data.get("instructions"))
    if data.get("max_output_tokens") is not None:
        body["max_completion_tokens"] = data["max_output_tokens"]
    text = data.get("text")
    if text is not None:
        if not isinstance(text, dict) or not isinstance(text.get("format", {}), dict):
            raise ApiError(400, 'text must be an object such as {"format": {"type": "json_schema", "name": ..., "schema": {...}}}', param="text", code="invalid_value")
        body["response_format"] = _response_format(text.get("format"))
    return body


def _tools(given: Any) -> list:
    """Chat's tools for a Responses request's: a function's fields sit in the tool itself."""
    if not isinstance(given, list):
        raise ApiError(400, "tools must be a list of function tools", param="tools", code="invalid_value")
    for i, tool in enumerate(given):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise ApiError(400, f"tools.{i}: only function tools are supported, not {kind!r}: {{\"type\": \"function\", \"name\": ..., \"parameters\": {{...}}}}", param="tools", code="unsupported")
    return [{"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}} for tool in given]


def _tool_choice(given: Any) -> Any:
    """Chat's `tool_choice` for a Responses request's, which names a function in the tool choice itself."""
    shapes = '"none", "auto", "required" or {"type": "function", "name": ...}'
    if isinstance(given, dict):
        if given.get("type") != "function" or not isinstance(given.get("name"), str):
            raise ApiError(400, f"tool_choice must be {shapes}", param="tool_choice", code="invalid_value")
        return {"type": "function", "function": {"name": given["name"]}}
    if given not in ("none", "auto", "required"):
        raise ApiError(400, f"tool_choice {given!r} is not one of {shapes}", param="tool_choice", code="invalid_value")
    return given


def _response_format(given: dict | None) -> dict | None:
    """Chat's `response_format` for a Responses `text.format` (its schema sits in the format itself)."""
    if not given or given.get("type") != "json_schema":
        return given
    return {"type": "json_schema", "json_schema": {k: v for k, v in given.items() if k != "type"}}


def _messages(given: Any, instructions: Any) -> list[dict]:
    if instructions is not None and not isinstance(instructions, str):
        raise ApiError(400, "instructions must be a string", param="instructions", code="invalid_value")
    messages = [{"role": "system", "content": instructions}] if instructions else []
    if isinstance(given, str):
        return messages + [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise ApiError(400, "input must be a string, or a non-empty list of messages ({\"role\": \"user\", \"content\": ...})", param="input", code="invalid_value")
    return messages + [_message(item, f"input.{i}") for i, item in enumerate(given)]


def _message(item: Any, where: str) -> dict:
    kind = item.get("type", "message") if isinstance(item, dict) else None
    if kind == "function_call":  # an earlier call, and its result: as chat has them
        call = {"id": item.get("call_id"), "type": "function", "function": {"name": item.get("name"), "arguments": item.get("arguments")}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
    if kind != "message":
        what = f"{kind!r} items are" if isinstance(kind, str) else "an item that is no message is"
        raise ApiError(400, f"{where}: {what} not supported; give messages, {{\"role\": \"user\", \"content\": \"...\"}}", param="input", code="unsupported")
    if item.get("role") not in ROLES:
        raise ApiError(400, f"{where}: role must be one of {', '.join(ROLES)}", param="input", code="invalid_value")
    content = item.get("content")
    if isinstance(content, list) and content:
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
                shown = f"{kind!r} parts are" if isinstance(kind, str) else "a part that is no text part is"
                raise ApiError(400, f"{where}.content.{j}: {shown} not supported; only text ({', '.join(TEXT_PARTS[:2])})", param="input", code="unsupported")
            parts.append(part["text"])
        content = "\n".join(parts)  # as chat joins its parts
    if not isinstance(content, str):
        raise ApiError(400, f"{where}: content must be a string, or a non-empty list of text parts", param="input", code="invalid_value")
    return {"role": item["role"], "content": content}


def renamed(error: ApiError) -> ApiError:
    """`error` of the chat path, naming the Responses request's fields instead of chat's."""
    message, param = error.message, error.param
    for chat, ours in RENAMED.items():
        message = message.replace(chat, ours)
        param = ours if param == chat else param
    return ApiError(error.status, message, error.type, param, error.code, error.headers)


@dataclass
class ResponseReply:
    """One Responses request's answer, whole (`whole`) or as typed events (`opening`, `piece`,
    `ending`, `closing`), in the interface of the chat path's reply."""

    model: str
    prompt_tokens: int
    id: str
    echoed: dict  # the request's settings a response repeats (instructions, temperature, ...)
    top: None = None  # no log-probabilities
    done: str | None = None  # no `[DONE]` line: the stream ends with response.completed
    input_field: str = "input"
    media_type = "text/event-stream"
    created: int = field(default_factory=lambda: int(time.time()))
    item: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    text: str = ""
    sequence: int = 0
    call: dict | None = None  # the answer's output item where it is a function call
    opened: bool = False  # whether `opening` was sent (the message item of the answer's text)

    def sse(self, event: dict) -> str:
        return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"

    def _event(self, kind: str, **fields: Any) -> dict:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **fields}

    def _message(self, status: str) -> dict:
        content = [self._part()] if status != "in_progress" else []
        return {"id": self.item, "type": "message", "status": status, "role": "assistant", "content": content}

    def _part(self) -> dict:
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}

    def _response(self, status: str, completions=None) -> dict:
        usage = None
        if completions is not None:
            generated = sum(c.completion_tokens for c in completions)
            usage = {
                "input_tokens": self.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": generated, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": self.prompt_tokens + generated,
            }
        cut = status == "incomplete"
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None, "model": self.model,
            "output": self._output(status) if status != "in_progress" else [], "parallel_tool_calls": False,
            "tool_choice": "none", "tools": [], "store": False, "usage": usage, **self.echoed,
        }

    def _output(self, status: str) -> list[dict]:
        """The message, and the call after it where the answer is one (its message only where text came before the call)."""
        return ([self._message(status)] if self.text or not self.call else []) + ([self.call] if self.call else [])

    def whole(self, completions, logprobs) -> dict:
        (completion,) = completions
        self.text = completion.text
        return self._response("incomplete" if completion.finish_reason == "length" else "completed", completions)

    def called(self, completions, logprobs, calls: list[dict | None]) -> tuple[dict, list[dict]]:
        """The answer, whole and as its events, where it is a call (`calls`: the one choice's, or None):
        a `function_call` output item, its arguments streamed as OpenAI streams them, after a message
        of the text that came before the call, if any."""
        from .tools import call_id

        (call,) = calls
        if call is None:
            events = [*self.opening(), self.piece(0, completions[0].text, None), *self.ending(0, completions[0].finish_reason), *self.closing(completions)]
            return self.whole(completions, logprobs), events
        events = [*self.opening(), self.piece(0, call["content"], None)] if call["content"] else []
        events += self.calling(0, call) + self.closing(completions)
        return self._response("completed", completions), events

    def calling(self, index: int, call: dict) -> list[dict]:
        """A call's output item and its arguments, as OpenAI streams them: after the message of the
        text before it (ended first), or as the response's first output."""
        from .tools import call_id

        (call,) = call["calls"]  # the Responses API's tools make one call (parallel_tool_calls is false)
        arguments = json.dumps(call["arguments"], ensure_ascii=False)
        if self.opened:
            events = self.ending(0, "stop")
        else:
            events = [self._event("response.created", response=self._response("in_progress")), self._event("response.in_progress", response=self._response("in_progress"))]
        self.call = {"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "status": "completed", "arguments": arguments, "call_id": call_id(), "name": call["name"]}
        where = {"item_id": self.call["id"], "output_index": 1 if self.opened else 0}
        return events + [
            self._event("response.output_item.added", output_index=where["output_index"], item={**self.call, "status": "in_progress", "arguments": ""}),
            self._event("response.function_call_arguments.delta", **where, delta=arguments),
            self._event("response.function_call_arguments.done", **where, arguments=arguments),
            self._event("response.output_item.done", output_index=where["output_index"], item=self.call),
        ]

    def opening(self) -> list[dict]:
        where = {"item_id": self.item, "output_index": 0, "content_index": 0}
        self.opened = True
        return [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
            self._event("response.output_item.added", output_index=0, item=self._message("in_progress")),
            self._event("response.content_part.added", **where, part=self._part()),
        ]

    def piece(self, index: int, text: str, entries) -> dict:
        self.text += text
        return self._event("response.output_text.delta", item_id=self.item, output_index=0, content_index=0, delta=text, logprobs=[])

    def ending(self, index: int, finish_reason: str) -> list[dict]:
        where = {"item_id": self.item, "output_index": 0, "content_index": 0}
        status = "incomplete" if finish_reason == "length" else "completed"
        return [
            self._event("response.output_text.done", **where, text=self.text, logprobs=[]),
            self._event("response.content_part.done", **where, part=self._part()),
            self._event("response.output_item.done", output_index=0, item=self._message(status)),
        ]

    def closing(self, completions) -> list[dict]:
        status = "incomplete" if completions[0].finish_reason == "length" and not self.call else "completed"
        return [self._event(f"response.{status}", response=self._response(status, completions))]

    def error_event(self, error: ApiError) -> dict:
        return self._event("error", code=error.code, message=error.message, param=error.param)


def echoed(data: dict, params) -> dict:
    """What a response repeats of its request; temperature and top_p as `params` (the request's
    `SamplingParams`) sample, the request's or else `aigc chat`'s defaults."""
    text = data.get("text") if isinstance(data.get("text"), dict) else {}
    return {
        "instructions": data.get("instructions"), "max_output_tokens": data.get("max_output_tokens"), "metadata": data.get("metadata") or {},
        "temperature": params.temperature, "top_p": params.top_p, "text": {"format": text.get("format") or {"type": "text"}},
        "previous_response_id": None, "reasoning": None, "truncation": "disabled", "user": data.get("user"),
        **({"tools": data["tools"], "tool_choice": data.get("tool_choice") or "auto"} if data.get("tools") else {}),
    }
