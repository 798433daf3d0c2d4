"""How answers look: chat and text completions' bodies, whole or as server-sent events (`Reply`),
and what goes with them (an event-stream response, base64 and shortened embeddings).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from .api_errors import ApiError, error_body
from .logprobs import TokenLogprob, chat_shape, completion_shape


def event_stream(lines, media_type: str = "text/event-stream") -> StreamingResponse:
    """Server-sent events (or ollama's JSON lines, `media_type`), unbuffered by proxies (`lines`: an
    async iterator of `data: ...` events or JSON lines, as `Reply.sse` writes them)."""
    return StreamingResponse(lines, media_type=media_type, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def base64_floats(vector: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: the vector as little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def checked_dimensions(dimensions: int | None, size: int) -> int | None:
    """A request's `dimensions` for a model whose embeddings have `size`: None where it leaves them whole; more
    than the model makes, or fewer than 1, is a 400 naming the most (before anything is embedded)."""
    if dimensions is not None and not 1 <= dimensions <= size:
        raise ApiError(400, f"dimensions must be between 1 and {size} (this model's embeddings), got {dimensions}", param="dimensions", code="invalid_value")
    return None if dimensions == size else dimensions


def shortened(vectors: list[list[float]], dimensions: int) -> list[list[float]]:
    """The vectors cut to their first `dimensions` numbers and scaled to length 1 again, as OpenAI's
    text-embedding-3 and ollama's `dimensions` give them (Matryoshka embeddings)."""
    cut = [vector[:dimensions] for vector in vectors]
    return [[x / norm for x in vector] if (norm := math.sqrt(sum(x * x for x in vector))) else vector for vector in cut]


def _reason(finish_reason: str) -> str:
    return "length" if finish_reason == "length" else "stop"


class NoJob:
    """Stands in for a job when there is nothing to decode (echo with max_tokens 0)."""

    def cancel(self) -> None:
        pass


@dataclass
class Reply:
    """How one request's answer looks: chat (`message`, `delta`) or text completions (`text`), whole or
    streamed, with log-probabilities in the endpoint's shape when `top` is not None. `heads` holds,
    per choice, the echoed prompt and its token log-probabilities (completions with `echo`)."""

    chat: bool
    model: str
    top: int | None
    stream_options: dict | None
    prompt_tokens: int
    n: int
    heads: list[tuple[str, list[TokenLogprob] | None]] | None = None
    id: str = ""
    fingerprint: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    opened: bool = False  # whether `opening` was sent
    legacy: bool = False  # a call is answered in tools' older form, `function_call`

    def body(self, choices: list[dict], usage: dict | None = None, chunk: bool = False) -> dict:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        data = {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": self.fingerprint, "choices": choices}
        if usage is not None or (chunk and (self.stream_options or {}).get("include_usage")):
            data["usage"] = usage  # a stream that will end with usage says `null` before it, as OpenAI's does
        return data

    def usage(self, completions) -> dict:
        generated = sum(c.completion_tokens for c in completions)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": generated, "total_tokens": self.prompt_tokens + generated}

    def choice(self, index: int, text: str | None, finish: str | None, entries: list[TokenLogprob] | None, stream: bool) -> dict:
        item: dict[str, Any] = {"index": index}
        if not self.chat:
            item["text"] = text or ""
        elif stream:
            item["delta"] = {} if text is None else {"content": text}
        else:
            item["message"] = {"role": "assistant", "content": text}
        shape = chat_shape if self.chat else completion_shape
        item["logprobs"] = shape(entries) if self.top is not None and entries is not None else None
        item["finish_reason"] = finish
        return item

    def called(self, completions, logprobs, calls: list[dict | None]) -> tuple[dict, list[dict]]:
        """The answer, whole and as a stream's chunks, where the choices that hold a call (`calls`)
        answer with it (`tools.answered`): the text before it, then the call (`calling`)."""
        from .tools import answered

        body = answered(self.whole(completions, logprobs), calls, self.legacy)
        events = self.opening()
        for i, (completion, call) in enumerate(zip(completions, calls)):
            if call is None:
                events += [self.piece(i, completion.text, logprobs[i] if logprobs else None), *self.ending(i, completion.finish_reason)]
            else:
                events += ([self.piece(i, call["content"], None)] if call["content"] else []) + self.calling(i, call)
        return body, events + self.closing(completions)

    def calling(self, index: int, call: dict) -> list[dict]:
        """A choice's calls (`Toolset.parse`) as OpenAI streams them, `delta.tool_calls`: each call's
        id, type and name, then its arguments, under the call's own `index`, then finish_reason
        tool_calls; in the older form, `delta.function_call`: the first call's name, then its
        arguments, then finish_reason function_call."""
        from .tools import call_id

        arguments = [json.dumps(c["arguments"], ensure_ascii=False) for c in call["calls"]]
        if self.legacy:
            deltas = [{"function_call": {"name": call["calls"][0]["name"], "arguments": ""}}, {"function_call": {"arguments": arguments[0]}}]
        else:
            deltas = []
            for j, (one, given) in enumerate(zip(call["calls"], arguments)):
                head = {"index": j, "id": call_id(), "type": "function", "function": {"name": one["name"], "arguments": ""}}
                deltas += [{"tool_calls": [head]}, {"tool_calls": [{"index": j, "function": {"arguments": given}}]}]
        events = [] if self.opened else self.opening()
        for delta, finish in [*((delta, None) for delta in deltas), ({}, "function_call" if self.legacy else "tool_calls")]:
            events.append(self.body([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}], chunk=True))
        return events

    def _head(self, index: int) -> tuple[str, list[TokenLogprob]]:
        head, entries = self.heads[index] if self.heads else ("", None)
        return head, entries or []

    def whole(self, completions, logprobs) -> dict:
        choices = []
        for i, c in enumerate(completions):
            head, entries = self._head(i)
            tokens = entries + [e.shifted(len(head)) for e in logprobs[i]] if logprobs else entries
            choices.append(self.choice(i, head + c.text, _reason(c.finish_reason), tokens, stream=False))
        return self.body(choices, self.usage(completions))

    def opening(self) -> list[dict]:
        """Chat: each choice's role; completions with echo: each choice's prompt."""
        self.opened = True
        if self.chat:
            return [self.body([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}], chunk=True) for i in range(self.n)]
        return [self.body([self.choice(i, head, None, entries, stream=True)], chunk=True) for i, (head, entries) in enumerate(self.heads or [])]

    def piece(self, index: int, text: str, entries: list[TokenLogprob] | None) -> dict:
        base = len(self._head(index)[0])
        entries = None if entries is None else [e.shifted(base) for e in entries]
        return self.body([self.choice(index, text, None, entries, stream=True)], chunk=True)

    def ending(self, index: int, finish_reason: str) -> list[dict]:
        return [self.body([self.choice(index, None, _reason(finish_reason), None, stream=True)], chunk=True)]

    def closing(self, completions) -> list[dict]:
        """After every choice has ended: the usage, when the request asked for it."""
        return [self.body([], self.usage(completions), chunk=True)] if (self.stream_options or {}).get("include_usage") else []

    done = "[DONE]"  # the stream's last line
    media_type = "text/event-stream"

    @property
    def input_field(self) -> str:
        return "messages" if self.chat else "prompt"

    def sse(self, data: dict | str) -> str:
        """One server-sent event of data (a JSON object, or `[DONE]`)."""
        return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"

    def error_event(self, error: ApiError) -> dict:
        return error_body(error.message, error.type, error.param, error.code)
