"""ollama's native API (`/api/*`, as docs/api.md of ollama has it) on the OpenAI routes' code: a
request body becomes a chat or text completion request (`options` their sampling fields,
`num_predict` their `max_tokens`, `format` their `response_format`), decoded by the same scheduler,
and `OllamaReply` writes the answer as ollama does: one JSON object, or a stream of JSON lines
(`application/x-ndjson`) that ends with a `"done": true` line holding the token counts and durations
(nanoseconds). Errors are ollama's `{"error": "message"}`, an unknown model's in ollama's words. `/api/tags` and `/api/ps` list a model as ollama does,
`NAME:latest` (a name with a tag as it is), and a request may name it either way; the answer names it as the request did. A `seed` below 0 is none (ollama's -1: random);
whole-number options may come as `8.0`, a numeric one as text (`"0.7"`) is a 400, as ollama's Go types refuse it (a 500 there); a value
out of the range the `/v1` routes take is used as ollama's sampler uses it (`repeat_penalty` 0: off), or the nearest this server applies (`_as_ollama`), logged once. A chat that leaves its answer less room than it asks for in the context (or `num_ctx`)
has its oldest turns dropped (`longest_fit`, as `aigc chat`, `reserved` the room), and a prompt still too long (a chat's last message, a generate prompt)
is cut as ollama's runner cuts it (`cut`: its first `num_keep` tokens and its end kept, a warning logged); `truncate: false` keeps it whole, a 400
where it is longer than the context (or `num_ctx`), as ollama's. One whose last message is the assistant's text continues it (vLLM's
`continue_final_message`), as ollama does. `tools` with a `format` are listed in the prompt and the answer is held to
the format, as ollama does it: a call only where the formatted text is one. `logprobs`/`top_logprobs` answer each token's as `/v1/chat/completions`
does, in ollama's place for them. Options ollama has and this server does
not apply (`mirostat`, ...) are ignored, as ollama ignores the ones it does not know;
what the served models cannot read (images) and the generate fields with no counterpart here
(`template`, `suffix`, `context`) are 400s. A served model stays loaded while the server runs:
`keep_alive` only makes an empty request's `done_reason` "unload" (0) rather than "load" (one Go's `time.ParseDuration` cannot read is ollama's 400 all the same). `think` is
ignored (no model here thinks apart from its answer). `/api/embed` cuts a text longer than the
context to the tokens that fit, keeping its start, as ollama does; with `truncate: false` it is a 400 naming it (`input.N`)
(as on `/v1/embeddings` and the older `/api/embeddings`). It takes any number of texts, as ollama's does (in a body of up to `max_embed_bytes`), written out a slice
(`EMBED_SLICE`) at a time so that the server holds one slice's vectors. `GET /` answers "Ollama is running", which
ollama's own CLI checks; `/api/version` the ollama release emulated (`OLLAMA_VERSION`), which clients gate on; these two need no key, but refuse a wrong Bearer one (a client checking its settings).
`/api/embed`'s `dimensions` cuts the vectors and scales them to length 1 again, as ollama's (`shortened`, as `/v1/embeddings`'). The served models are fixed while the server runs: `/api/pull` of one answers
ollama's `{"status": "success"}`, of any other a 404, and the other model-management routes (`push`,
`create`, `copy`, `delete`, `blobs`) a 501, each saying what to do in aigc instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Collection, Optional, Union

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ..errors import AigcError
from .api_errors import ApiError, from_aigc
from .logprobs import MAX_TOP, chat_shape
from .replies import checked_dimensions, event_stream, shortened
from .request_bodies import MAX_EMBED_INPUTS, ChatRequest, CompletionRequest, EmbeddingRequest

log = logging.getLogger("aigc.serve")

OPTIONS = {  # ollama's option -> the OpenAI request field that applies it
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "seed": "seed", "stop": "stop",
    "num_predict": "max_tokens", "repeat_penalty": "repetition_penalty", "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
}
WHOLE = ("num_predict", "seed", "top_k", "num_ctx", "num_keep", "repeat_last_n", "num_batch", "num_gpu", "main_gpu", "num_thread", "mirostat")  # ollama's whole-number options: 8.0 is 8, as ollama reads JSON numbers into them
NUMBERS = ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "tfs_z", "mirostat_tau", "mirostat_eta")  # its other numeric ones
APPLIED = {"temperature": (0.0, 2.0), "repeat_penalty": (0.0, 3.0), "frequency_penalty": (-2.0, 2.0), "presence_penalty": (-2.0, 2.0)}  # the ranges these apply in here (the /v1 routes' 400s past them)
NUM_KEEP = 4  # the prompt's first tokens ollama keeps when it cuts one too long (its `num_keep` default; -1: all)
RENAMED = {openai: ours for ours, openai in OPTIONS.items() if ours != openai} | {"response_format": "format"}  # as errors name them
OLLAMA_VERSION = "0.9.0"  # /api/version: the ollama release whose API this emulates (tools, format schemas, /api/embed, think), which clients that gate on ollama's version read (VS Code Copilot's wants 0.6.4); aigc's own is /version
EMBED_SLICE = 256  # /api/embed texts embedded, then written out, at a time: a request may hold any number (ollama's take no limit), the server one slice's vectors
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}  # Go's time.ParseDuration's
NEVER = "9999-12-31T23:59:59Z"  # a served model's `expires_at`: it is never unloaded while the server runs


def ollama_path(path: str) -> bool:
    """Whether `path` is one of ollama's routes, whose errors are ollama's `{"error": "message"}`: `/api/...`, and `/`."""
    return path == "/" or path.startswith("/api/")


def ollama_error(message: str) -> dict:
    """ollama's error body, naming the request's fields as ollama does (`num_predict`, not `max_tokens`)."""
    return {"error": re.sub(r"\b(" + "|".join(RENAMED) + r")\b", lambda m: RENAMED[m.group()], message)}


def _number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _as_ollama(name: str, value: Any) -> tuple[Any, str] | None:
    """An option's value outside the range the `/v1` routes take (their 400) as ollama uses it, whose sampler and
    scheduler take any number (sample/samplers.go `NewSampler`, server/sched.go `GetRunner`): (the value used, why),
    or None where it is in range. Where ollama would use a value this server cannot (a temperature of 5), the nearest it can."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if name == "repeat_penalty" and value <= 0:
        return 1.0, "1.0 (off), as ollama takes a repeat_penalty of 0 or less"
    if name == "temperature" and value < 0:
        return 0.0, "0 (greedy), as ollama takes a temperature below 0"
    if name in ("top_p", "min_p") and value < 0:
        return 0.0, f"0, as ollama takes a {name} below 0"
    if name == "top_p" and value > 1:
        return 1.0, "1 (off), as ollama takes a top_p above 1"
    if name == "num_ctx" and value < 4:
        return 4, "4, as ollama takes a num_ctx below 4"
    low, high = APPLIED.get(name, (-math.inf, math.inf))
    if not low <= value <= high:
        nearest = min(max(value, low), high)
        return nearest, f"{nearest:g}, the nearest this server applies (ollama takes any)"
    return None


def _now() -> str:
    return _time(time.time())


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Body(BaseModel):
    """What ollama's generate and chat bodies share (unknown fields ignored, as ollama does)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: Optional[str] = None
    stream: Optional[bool] = None  # ollama's default: streamed
    options: Optional[dict[str, Any]] = None
    format: Union[str, dict, None] = None
    keep_alive: Any = None  # 0 with nothing to answer: "unload" as ollama answers it (a served model stays loaded all the same)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    truncate: Optional[bool] = None  # false: a prompt longer than the context (or `num_ctx`) is a 400 rather than cut (ollama's)
    _taken: dict = PrivateAttr(default_factory=dict)  # `taken`

    @property
    def top(self) -> int | None:
        """How many alternatives each token's log-probability comes with; None: no log-probabilities
        (`top_logprobs` alone asks for them too)."""
        if self.top_logprobs is not None and not 0 <= self.top_logprobs <= MAX_TOP:
            raise ApiError(400, f"top_logprobs must be between 0 and {MAX_TOP}, got {self.top_logprobs}")
        return (self.top_logprobs or 0) if self.logprobs or self.top_logprobs else None

    def option(self, name: str) -> Any:
        """An option's value, a whole number's as an int where it is one (8.0); a numeric option's that is no
        JSON number (`"0.7"`) is a 400: ollama's Go types refuse it too (`option "temperature" must be of type float32`, a 500 there)."""
        value = (self.options or {}).get(name)
        if value is not None and name in WHOLE + NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            kind = "a whole number" if name in WHOLE else "a number"
            unquoted = f', without quotes: "{name}": {value.strip()}' if isinstance(value, str) and _number(value) else ""
            raise ApiError(400, f'option "{name}" must be {kind}, got {json.dumps(value, ensure_ascii=False)}; send it as a JSON number{unquoted}')
        if name in WHOLE and isinstance(value, float) and value.is_integer():
            value = int(value)
        used = _as_ollama(name, value)
        if used is not None:
            self._taken[name] = (value, used[1])
            return used[0]
        return value

    @property
    def taken(self) -> dict[str, tuple[Any, str]]:
        """The options whose values were taken as ollama takes them (`_as_ollama`): name -> (the value given, what it was taken as)."""
        return self._taken

    def window(self, context_length: int) -> int:
        """The tokens prompt and answer may take: `num_ctx` where it is fewer than the model holds."""
        num_ctx = self.option("num_ctx")
        if num_ctx is None:
            return context_length
        if not isinstance(num_ctx, int):
            raise ApiError(400, f"num_ctx must be a whole number of tokens, got {num_ctx!r}")
        return min(num_ctx, context_length)  # 4 or more (`_as_ollama`)

    def kept(self) -> int | None:
        """`num_keep`: the prompt's first tokens kept when it is cut (None: all of them, ollama's -1)."""
        num_keep = self.option("num_keep")
        if num_keep is None:
            return NUM_KEEP
        if not isinstance(num_keep, int):
            raise ApiError(400, f"num_keep must be a whole number of tokens, got {num_keep!r}")
        return None if num_keep < 0 else num_keep

    def openai(self) -> dict:
        """The OpenAI request fields of the body's settings."""
        body: dict[str, Any] = {"stream": self.stream is not False}
        for name in self.options or {}:  # each checked (`option`), applied or not, as ollama checks each it knows
            value = self.option(name)
            if name in ("num_predict", "seed") and isinstance(value, int) and value < 0:  # num_predict -1, -2: as long as it fits; seed -1: unseeded (ollama's default)
                continue
            if name in OPTIONS and value is not None and not (name == "num_predict" and value == 0):  # 0 too: ollama's runners stop at num_predict > 0 only
                body[OPTIONS[name]] = value
        if self.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(self.format, dict):
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": self.format}}
        elif self.format:
            raise ApiError(400, f'format must be "json" or a JSON schema, got {self.format!r}')
        return body


class GenerateBody(_Body):
    prompt: Optional[str] = None
    system: Optional[str] = None
    raw: Optional[bool] = None  # the prompt as the model's input, with no chat template
    suffix: Any = None
    template: Any = None
    context: Any = None
    images: Any = None

    def openai(self) -> dict:
        for name, instead in (("images", "the models served here take text only"), ("suffix", "fill-in-the-middle is not offered"),
                              ("template", "the model's own chat template is used, or none with raw: true"), ("context", "send the conversation to /api/chat")):
            if getattr(self, name):
                raise ApiError(400, f"{name} is not supported by this server ({instead})")
        if self.raw:
            return {**super().openai(), "prompt": self.prompt}
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": self.prompt}]
        return {**super().openai(), "messages": messages}


class ChatBody(_Body):
    messages: Optional[list] = None
    tools: Optional[list] = None

    def openai(self) -> dict:
        """The chat request; a last message of the assistant's, with text and no calls, is continued (as ollama continues
        it: a reply edited or cut, then sent back), as vLLM's `continue_final_message` asks."""
        body = {**super().openai(), "messages": [_message(m, i) for i, m in enumerate(self.messages or [])], "tools": self.tools or None}
        last = body["messages"][-1] if body["messages"] else None
        if isinstance(last, dict) and last["role"] == "assistant" and last["content"] and not last.get("tool_calls"):
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body


def _message(given: Any, index: int) -> Any:
    """The OpenAI chat message for an ollama one: its calls' arguments as JSON text, its images a 400."""
    if not isinstance(given, dict):
        return given  # the chat request's check says what a message is
    if given.get("images"):
        raise ApiError(400, f"messages.{index}: images cannot be read: the models served here take text only")
    message = {"role": given.get("role"), "content": given.get("content") or ""}
    if given.get("tool_calls"):
        message["tool_calls"] = [_history_call(call) for call in given["tool_calls"]]
    return message


def _history_call(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or isinstance(function.get("arguments", ""), str):
        return call
    return {"type": "function", "function": {**function, "arguments": json.dumps(function["arguments"], ensure_ascii=False)}}


class EmbedBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: Optional[str] = None
    input: Union[str, list, None] = None  # /api/embed
    truncate: Optional[bool] = None  # /api/embed: a text longer than the context is cut to it unless false
    dimensions: Optional[int] = None  # /api/embed: fewer than the model's: the vectors cut to that many, scaled to length 1 again (ollama's)
    prompt: Optional[str] = None  # /api/embeddings, the older form (options: ignored; over-long: a 400, as ollama's)
    keep_alive: Any = None  # checked as ollama checks it (`_keep_alive`); a served model stays loaded all the same


def _tagged(name: str) -> str:
    """A served model's name as ollama lists one, with its tag: `NAME:latest` where it has none (clients
    match their model against the list as `NAME` or `NAME:TAG`, langchain-ollama's `validate_model_on_init`)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def served_as(name: str, served: Collection[str]) -> str | None:
    """The name among `served` that a request's `name` means, as ollama names models (`_tagged`):
    itself, or NAME for `NAME:latest` and `NAME:latest` for NAME; None where none is served."""
    return next((n for n in (name, name.removesuffix(":latest"), f"{name}:latest") if n in served), None)


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _numbers(data: Any) -> str:
    """`data` (vectors) as JSON, which has no NaN nor infinity: a model's that holds one is a 500, as the
    whole answers' JSON refuses it."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise ApiError(500, "the model made an embedding that is not a number (NaN or infinity), as float16 overflowing does; serve it with --dtype float32", "server_error") from None


def _pullable(name: str) -> bool:
    """Whether `aigc models pull NAME` takes `name` (an aigc alias, a Hugging Face id, a path), as ollama's
    names (llama3.2, llama3.2:3b) mostly are not."""
    from ..engine import models

    if ":" in name:  # an ollama tag: no alias nor Hugging Face id has one
        return False
    try:
        return models.resolve(name, None).kind not in ("remote", "echo")
    except AigcError:
        return False


def _go_duration(text: str) -> float:
    """Seconds in a duration as Go's `time.ParseDuration` reads one ("5m", "1h30m", "-1.5s", "0"), which ollama's
    `keep_alive` takes; a ValueError with Go's message for any other text ("5 minutes": `time: unknown unit " minutes" ...`)."""
    quoted, rest = json.dumps(text, ensure_ascii=False), text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    seconds = 0.0
    while rest:
        number = re.match(r"\d*(?:\.\d*)?", rest).group()
        if not number.strip("."):  # no digit before or after the point
            raise ValueError(f"time: invalid duration {quoted}")
        unit = re.match(r"[^\d.]*", rest[len(number) :]).group()
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in DURATION_UNITS:
            raise ValueError(f"time: unknown unit {json.dumps(unit, ensure_ascii=False)} in duration {quoted}")
        seconds += float(number) * DURATION_UNITS[unit]
        rest = rest[len(number) + len(unit) :]
    return sign * seconds


def _keep_alive(keep_alive: Any) -> float | None:
    """`keep_alive` in seconds (None: not given), as ollama reads it: a number of seconds or a Go duration; anything
    else is ollama's 400 (`time: invalid duration "bogus"`), though a served model stays loaded whatever it says."""
    if keep_alive is None:
        return None
    if isinstance(keep_alive, (int, float)) and not isinstance(keep_alive, bool):
        return float(keep_alive)
    if isinstance(keep_alive, str):
        try:
            return _go_duration(keep_alive)
        except ValueError as exc:
            raise ApiError(400, f"keep_alive: {exc}; give a duration such as \"5m\" or \"1h30m\", or a number of seconds") from None
    raise ApiError(400, f'keep_alive must be a duration such as "5m" or a number of seconds, got {json.dumps(keep_alive, ensure_ascii=False)}')


def _parameters(model) -> int:
    """The model's parameters, a tied output layer's once: as its files hold them (ollama's `general.parameter_count`),
    not with the float32 copy of it that a half-precision model gets on the CPU (`loading.float32_output_layer`)."""
    if model is None:
        return 0
    count = sum(p.numel() for p in model.parameters())  # a layer shared by two modules once
    head, embedding = (getattr(layer, "weight", None) for layer in (model.get_output_embeddings(), model.get_input_embeddings()))
    if getattr(model.config, "tie_word_embeddings", False) and head is not None and embedding is not None and head is not embedding:
        count -= head.numel()
    return count


def _human(count: int) -> str:
    """A parameter count as ollama's `format.HumanNumber` writes `parameter_size`: 134.52M, 125M, 2.8B, 8B."""
    for size, unit, places in ((1e9, "B", 1), (1e6, "M", 2)):
        if count >= size:
            number = count / size
            return f"{number:.0f}{unit}" if number.is_integer() else f"{number:.{places}f}{unit}"
    return f"{count / 1e3:.0f}K" if count >= 1e3 else str(count)


def capabilities(name: str) -> list[str]:
    """What `/api/show` says a served model does. Every model here chats and embeds, but ollama lists one or the other
    (`embedding` for a model that only embeds), and clients read `embedding` as "cannot chat": ollama's own `ollama run`
    embeds its prompt instead, some pickers hide the model. So a model is listed as embedding where it is served under a
    name that says so (`embed` in it, an alias: `aigc models alias smollm2-embed smollm2`), as ollama's nomic-embed-text
    is, which llm-ollama registers for `llm embed`; under any other name as chatting."""
    return ["embedding"] if "embed" in name.lower() else ["completion", "tools"]


def _calls(call: dict) -> list[dict]:
    """An answer's calls (`Toolset.parse`) as ollama has them: arguments as JSON data."""
    return [{"function": {"index": j, "name": c["name"], "arguments": c["arguments"]}} for j, c in enumerate(call["calls"])]


@dataclass
class OllamaReply:
    """One generate (`key` "response") or chat (`key` "message") answer as ollama writes it, whole
    (`whole`) or as JSON lines (`piece` ... `closing`), in the interface of the chat path's reply."""

    model: str
    prompt_tokens: int
    key: str
    began: int  # when the request came, perf_counter_ns
    state: Any = None  # the request's state, whose jobs say when their first token came (`Job.started` + `Job.first`)
    top: int | None = None  # log-probabilities with this many alternatives, or none
    done: None = None  # the stream ends with its done line
    media_type = "application/x-ndjson"
    opened: bool = False

    @property
    def input_field(self) -> str:
        return "messages" if self.key == "message" else "prompt"

    def _line(self, text: str, calls: list | None = None, entries: list | None = None, **fields: Any) -> dict:
        if self.key == "response":
            content = {"response": text}
        else:
            content = {"message": {"role": "assistant", "content": text, **({"tool_calls": calls} if calls else {})}}
        if self.top is not None and entries is not None:  # the /v1 chat shape's tokens, as ollama has them
            content["logprobs"] = chat_shape(entries)["content"]
        return {"model": self.model, "created_at": _now(), **content, **fields}

    def _final(self, completion, text: str, calls: list | None = None, entries: list | None = None) -> dict:
        end = time.perf_counter_ns()
        # The prompt's evaluation ends at the first token (text or not); from the request's arrival, so queueing and tokenizing too.
        firsts = [job.started + job.first for job in getattr(self.state, "jobs", ()) if getattr(job, "first", None) is not None]
        first = round(min(firsts) * 1e9) if firsts else end  # perf_counter seconds -> perf_counter_ns
        return self._line(
            text, calls, entries, done=True, done_reason="length" if completion.finish_reason == "length" else "stop", total_duration=end - self.began, load_duration=0,
            prompt_eval_count=self.prompt_tokens, prompt_eval_duration=first - self.began, eval_count=completion.completion_tokens, eval_duration=end - first,
        )

    def sse(self, event: dict) -> str:
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"

    def opening(self) -> list[dict]:
        self.opened = True
        return []

    def piece(self, index: int, text: str, entries) -> dict:
        return self._line(text, entries=entries, done=False)

    def ending(self, index: int, finish_reason: str) -> list[dict]:
        return []

    def closing(self, completions) -> list[dict]:
        return [self._final(completions[0], "")]

    def whole(self, completions, logprobs) -> dict:
        return self._final(completions[0], completions[0].text, entries=logprobs[0] if logprobs else None)

    def called(self, completions, logprobs, calls: list[dict | None]) -> tuple[dict, list[dict]]:
        """The answer, whole and as its lines, where it may be a call: the text before the call, then the call."""
        (call,) = calls
        if call is None:
            return self.whole(completions, logprobs), [self.piece(0, completions[0].text, None), *self.closing(completions)]
        events = ([self.piece(0, call["content"], None)] if call["content"] else []) + self.calling(0, call)
        return self._final(completions[0], call["content"] or "", _calls(call)), events + self.closing(completions)

    def calling(self, index: int, call: dict) -> list[dict]:
        return [self._line("", _calls(call), done=False)]

    def error_event(self, error: ApiError) -> dict:
        return ollama_error(error.message)


MANAGED = {  # ollama's model-management routes but pull: (methods, what to do in aigc instead); a served model is fixed while the server runs
    "/api/push": (["POST"], "aigc serve cannot push models to a registry; it serves the models it was started with (-m)"),
    "/api/create": (["POST"], "aigc serve cannot create models; give a model directory or .gguf file a name with `aigc models alias NAME PATH`, then serve it: `aigc serve -m NAME`"),
    "/api/copy": (["POST"], "aigc serve cannot copy models; give a model another name with `aigc models alias NEW MODEL`, then serve both names (`aigc serve -m MODEL -m NEW`: one loaded copy)"),
    "/api/delete": (["DELETE"], "aigc serve cannot delete models; stop it, then `aigc models rm NAME` deletes a download"),
    "/api/blobs/{digest}": (["HEAD", "POST"], "aigc serve takes no model files; name a model directory or .gguf file with `aigc models alias NAME PATH`, then serve it: `aigc serve -m NAME`"),
}


def register_ollama(app: FastAPI, served) -> None:
    """Add ollama's routes to `app`; `served` holds the OpenAI routes' helpers (`create_app`'s)."""
    auth, keyless = [Depends(served.auth)], [Depends(served.no_wrong_key)]


    def backend_for(name: str | None):
        """`served.backend_for` (`NAME:latest` is NAME, and NAME is `NAME:latest`, as ollama names models); an unknown
        model's 404 in ollama's words first, which clients match to offer a pull, then the models served here."""
        try:
            return served.backend_for(name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise ApiError(404, f"model {json.dumps(name, ensure_ascii=False)} not found, try pulling it first (served here: {', '.join(served.backends)})") from None

    logged: set[tuple[str, str]] = set()  # (option, what it was taken as) in the log already: each said once while the server runs

    def say_taken(given: _Body, route: str) -> None:
        """Log an option value taken as ollama takes it (`_as_ollama`), the first time each is."""
        for name, (value, how) in given.taken.items():
            if (name, how) not in logged:
                logged.add((name, how))
                log.warning("%s: option %s %s taken as %s; the /v1 routes refuse it (said once)", route, name, json.dumps(value), how)

    def listed(backend) -> dict:
        engine = backend.engine
        model = getattr(engine, "model", None)
        count = _parameters(model)
        words = getattr(engine, "variant", "").split()
        family = getattr(getattr(model, "config", None), "model_type", "") or ""
        details = {
            "parent_model": "", "format": "gguf" if backend.name.endswith(".gguf") else "safetensors", "family": family, "families": [family] if family else None,
            "parameter_size": _human(count), "quantization_level": next((w for w in words if w in ("int4", "int8")), words[1] if len(words) > 1 else ""),
        }
        size = model.get_memory_footprint() if hasattr(model, "get_memory_footprint") else 0
        digest = hashlib.sha256(f"{backend.name}\0{getattr(engine, 'variant', '')}".encode()).hexdigest()
        return {"name": _tagged(backend.name), "model": _tagged(backend.name), "modified_at": _time(getattr(engine, "modified", None) or backend.created), "size": size, "digest": digest, "details": details}

    def shown(backend) -> dict:
        item = listed(backend)
        count = _parameters(getattr(backend.engine, "model", None))
        family = item["details"]["family"] or "unknown"
        names = {"repetition_penalty": "repeat_penalty"}
        parameters = "\n".join(f"{names.get(k, k):<30} {v}" for k, v in served.defaults.items() if v is not None)
        template = getattr(getattr(backend.engine, "tokenizer", None), "chat_template", None) or ""
        info = {"general.architecture": family, "general.basename": backend.name, "general.parameter_count": count, f"{family}.context_length": backend.batched.context_length}
        return {
            "modelfile": "", "parameters": parameters, "template": template if isinstance(template, str) else json.dumps(template), "details": item["details"],
            "model_info": info, "capabilities": capabilities(backend.name), "modified_at": item["modified_at"],
        }

    def reserved(req, window: int) -> int:
        """The tokens a prompt leaves its answer in `window` (`num_ctx`, or the model's context): `num_predict`
        at most what the server allows (a quarter of the window without it), at most half the window."""
        return max(1, min(req.max_tokens or window // 4, served.settings.max_tokens_cap, window // 2))

    def fitted(req, prompt_tokens: int, window: int) -> None:
        """`num_predict` as ollama takes it: at most what the server allows and what the window leaves (one token
        where it leaves none: a prompt kept whole with `truncate: false`, as ollama's fills its context)."""
        cap = served.settings.max_tokens_cap
        req.max_tokens = min(req.max_tokens or cap, cap, max(window - prompt_tokens, 1))  # no room in the model's context: its 400

    def cut(given: _Body, req, backend, ids: list[int], window: int, route: str) -> list[int]:
        """`ids` where they leave the answer `reserved` tokens of `window`; else cut to that as ollama's runner
        cuts a prompt longer than its context: the first `num_keep` tokens (and a BOS token) kept, the ones
        after them dropped, with its warning in the log. With `truncate: false` a prompt longer than the window
        is ollama's 400 instead (one that fits it is kept whole, its answer given what is left)."""
        budget = window - reserved(req, window)
        if len(ids) <= budget or (given.truncate is False and len(ids) <= window):
            return ids
        if given.truncate is False:
            smaller = window < backend.batched.context_length
            holder = "num_ctx" if smaller else f"{backend.name}'s context"
            raise ApiError(400, f"the input length exceeds the context length: the {'messages take' if route == '/api/chat' else 'prompt takes'} {len(ids)} tokens, "
                                f"{len(ids) - window} more than the {window} of {holder}; shorten it{', raise num_ctx' if smaller else ''} or leave truncate out to have it cut")
        keep = given.kept()
        bos = getattr(getattr(backend.engine, "tokenizer", None), "bos_token_id", None)
        keep = min(len(ids) if keep is None else keep + (bos is not None and ids[0] == bos), budget - 1)  # ollama's count leaves the BOS token out
        kept = ids[:keep] + ids[len(ids) - (budget - keep) :]
        log.warning("%s: truncating input prompt (limit=%d prompt=%d keep=%d new=%d): its first %d tokens and last %d kept, as ollama cuts one", route, budget, len(ids), keep, len(kept), keep, budget - keep)
        return kept

    async def chat_prompt(backend, given: ChatBody, req: ChatRequest, toolset, window: int) -> list[int]:
        """The conversation's token ids; where it leaves its answer less than `reserved` in `window` tokens,
        with its oldest turns dropped as ollama and `aigc chat` drop them (`longest_fit`: the system messages
        and the last message kept), then `cut` where those are still too long. `truncate: false` drops nothing."""
        from ..generators.chat import longest_fit
        from .tools import prompt

        ids = await served.encode_chat(backend, req.messages, toolset, req.continuing)
        budget = window - reserved(req, window)
        if len(ids) > budget and given.truncate is not False:
            lists = backend.batched.template_lists_tools

            def count(messages: list[dict]) -> int:
                return len(backend.batched.encode(*prompt(messages, toolset, lists), req.continuing))

            kept, _ = await anyio.to_thread.run_sync(longest_fit, [m.plain(i) for i, m in enumerate(req.messages)], budget, count)
            ids = await served.encode(backend, *prompt(kept, toolset, lists), req.continuing)
        return cut(given, req, backend, ids, window, "/api/chat")

    def loaded(name: str, key: str, keep_alive: float | None) -> dict:
        """ollama's answer to a request with nothing to answer: the model is loaded (here, always), or
        "unload" for `keep_alive: 0` (what a client sends to unload it)."""
        content = {"response": ""} if key == "response" else {"message": {"role": "assistant", "content": ""}}
        return {"model": name, "created_at": _now(), **content, "done": True, "done_reason": "unload" if keep_alive == 0 else "load"}

    @app.api_route("/", methods=["GET", "HEAD"], dependencies=keyless)
    async def running():
        return PlainTextResponse("Ollama is running")

    @app.api_route("/api/version", methods=["GET", "HEAD"], dependencies=keyless)
    async def version():
        return {"version": OLLAMA_VERSION}

    @app.api_route("/api/tags", methods=["GET", "HEAD"], dependencies=auth)  # HEAD: an ollama healthcheck's
    async def tags():
        return {"models": [listed(b) for b in served.backends.values()]}

    @app.get("/api/ps", dependencies=auth)
    async def ps():
        models = []
        for backend in served.backends.values():
            item = {k: v for k, v in listed(backend).items() if k != "modified_at"}
            on_gpu = str(getattr(backend.engine, "device", "cpu")).split(":")[0] in ("cuda", "mps")
            models.append({**item, "expires_at": NEVER, "size_vram": item["size"] if on_gpu else 0, "context_length": backend.batched.context_length})
        return {"models": models}

    @app.post("/api/show", dependencies=auth)
    async def show(request: Request):
        data = await served.parsed(request)
        name = data.get("model", data.get("name"))  # `name`: ollama's older field
        if not isinstance(name, str) or not name:
            raise ApiError(400, "model is required")
        return shown(backend_for(name))

    @app.post("/api/generate", dependencies=auth)
    async def generate(request: Request):
        began = time.perf_counter_ns()
        given: GenerateBody = served.validated(GenerateBody, await served.parsed(request))
        keep_alive = _keep_alive(given.keep_alive)  # checked, as ollama checks it; a served model stays loaded whatever it says
        backend = backend_for(given.model)
        named = given.model or backend.name  # ollama answers with the name the request used (`NAME:latest`)
        if not given.prompt and not given.suffix:
            return loaded(named, "response", keep_alive)
        if given.raw:
            req = served.validated(CompletionRequest, given.openai())
            ids = await served.encode(backend, req.prompt)
        else:
            req = served.validated(ChatRequest, given.openai())
            ids = await served.encode_chat(backend, req.messages)
        window = given.window(backend.batched.context_length)
        say_taken(given, "/api/generate")
        ids = cut(given, req, backend, ids, window, "/api/generate")
        fitted(req, len(ids), window)
        params = await served.sampling(request, req, len(ids), backend)
        return await served.answer(request, req, OllamaReply(named, len(ids), "response", began, request.state, given.top), backend, [ids], params)

    @app.post("/api/chat", dependencies=auth)
    async def chat(request: Request):
        from .tools import Toolset

        began = time.perf_counter_ns()
        given: ChatBody = served.validated(ChatBody, await served.parsed(request))
        keep_alive = _keep_alive(given.keep_alive)
        backend = backend_for(given.model)
        named = given.model or backend.name
        if not given.messages:
            return loaded(named, "message", keep_alive)
        req: ChatRequest = served.validated(ChatRequest, given.openai())
        toolset = await anyio.to_thread.run_sync(Toolset.of, req.tools, None)  # in a worker thread, as schemas are (`sampling`); with a format too: the answer is held to it (`answer_tools`), as ollama holds it
        window = given.window(backend.batched.context_length)
        say_taken(given, "/api/chat")
        ids = await chat_prompt(backend, given, req, toolset, window)
        fitted(req, len(ids), window)
        params = await served.sampling(request, req, len(ids), backend)
        reply = OllamaReply(named, len(ids), "message", began, request.state, given.top)
        if toolset:
            return await served.answer_tools(request, req, reply, backend, ids, params, toolset)
        return await served.answer(request, req, reply, backend, [ids], params)

    async def embedded(request: Request, texts: Any, model: str | None):
        """(the backend, the texts' embeddings and token count), as /v1/embeddings makes them."""
        backend = backend_for(model)
        req: EmbeddingRequest = served.validated(EmbeddingRequest, {"input": texts})
        found = await served.embed(request, backend, req.texts())
        if found is None:
            raise ApiError(499, "the client went away")
        return backend, *found

    @app.post("/api/embed", dependencies=auth)
    async def embed(request: Request):
        """ollama's embeddings: any number of texts, as ollama takes them. Every text is read (cut to the
        context) before the answer starts, so that a text's error is a 400 naming it; more than `EMBED_SLICE`
        are then embedded a slice at a time and written out as they come, so that the server holds one slice's
        vectors. A failure after the answer started (queue full, server stopping) ends it with ollama's
        `"error"`, the vectors so far before it, as the JSON-lines routes end a cut stream. With `truncate: false`
        (an over-long text a 400, which must come before the answer) at most `/v1/embeddings`' number, in one go."""
        began = time.perf_counter_ns()
        given: EmbedBody = served.validated(EmbedBody, await served.parsed(request, embedding=True))
        _keep_alive(given.keep_alive)
        backend, truncate = backend_for(given.model), given.truncate is not False
        if not given.input:  # none, "" or []: as ollama, nothing embedded (a client's way to load the model)
            return {"model": given.model or backend.name, "embeddings": []}
        texts = served.validated(EmbeddingRequest, {"input": given.input}).texts(None)
        if not truncate and len(texts) > MAX_EMBED_INPUTS:
            raise ApiError(400, f"input holds {len(texts)} texts; at most {MAX_EMBED_INPUTS} with truncate: false, which embeds them in one go "
                                f"so that an over-long one is a 400 before the answer (leave truncate out to send any number, or send {MAX_EMBED_INPUTS} at a time)")
        if truncate:
            texts = await served.fit(request, backend, texts, not isinstance(given.input, str))
            if texts is None:
                raise ApiError(499, "the client went away")
        size = EMBED_SLICE if truncate else len(texts)
        dimensions = checked_dimensions(given.dimensions, backend.engine.embedding_size)

        async def sliced(start: int) -> tuple[list[list[float]], int] | None:
            found = await served.embed(request, backend, texts[start : start + size], start, not isinstance(given.input, str))
            if found is None or dimensions is None:
                return found
            return shortened(found[0], dimensions), found[1]

        first = await sliced(0)
        if first is None:
            raise ApiError(499, "the client went away")
        head = {"model": given.model or backend.name, "embeddings": first[0]}
        if len(texts) <= size:
            return {**head, "total_duration": time.perf_counter_ns() - began, "load_duration": 0, "prompt_eval_count": first[1]}
        opening = _numbers(head)[:-2]  # up to the vectors' closing "]}"

        async def written():
            tokens = first[1]
            yield opening
            for start in range(size, len(texts), size):
                try:
                    found = await sliced(start)
                    if found is None:  # the client went away: nothing more to write
                        return
                    more = _numbers(found[0])[1:-1]
                except (AigcError, ApiError) as exc:
                    failed = from_aigc(exc, served.settings.retry_after, "input")
                    log.warning("/api/embed: texts %d on were not embedded: %s", start, failed.message)
                    yield "]," + _json(ollama_error(failed.message))[1:]
                    return
                yield "," + more
                tokens += found[1]
            request.state.prompt_tokens = tokens  # the request's, for its log line and /metrics
            yield "]," + _json({"total_duration": time.perf_counter_ns() - began, "load_duration": 0, "prompt_eval_count": tokens})[1:]

        return event_stream(written(), "application/json")

    @app.post("/api/embeddings", dependencies=auth)
    async def embeddings(request: Request):
        given: EmbedBody = served.validated(EmbedBody, await served.parsed(request, embedding=True))
        _keep_alive(given.keep_alive)
        if not given.prompt:
            backend_for(given.model)  # an unknown model is still a 404
            return {"embedding": []}
        _, vectors, _ = await embedded(request, given.prompt, given.model)
        return {"embedding": vectors[0]}

    @app.post("/api/pull", dependencies=auth)
    async def pull(request: Request):
        """A served model is there already: ollama's last line for a pull (all of it, with `stream: false`);
        any other is a 404 saying how aigc adds a model (a server's models are fixed while it runs)."""
        data = await served.parsed(request)
        name = data.get("model") or data.get("name")  # `name`: ollama's older field
        if not isinstance(name, str) or not name:
            raise ApiError(400, "model is required")
        if served_as(name, served.backends) is None:
            named = name if _pullable(name) else "MODEL"
            what = "" if named == name else " (MODEL: an aigc alias, `aigc models list`, or a Hugging Face id ORG/NAME)"
            raise ApiError(404, f"{name!r} is not served here and aigc serve cannot pull models while it runs (served: {', '.join(served.backends)}); "
                                f"download it with `aigc models pull {named}`{what} and add `-m {named}` to the server's models when it starts again")
        if data.get("stream") is False:
            return {"status": "success"}
        return event_stream(iter([json.dumps({"status": "success"}) + "\n"]), OllamaReply.media_type)

    def refuse(message: str):
        async def refused():
            raise ApiError(501, message)

        return refused

    for path, (methods, message) in MANAGED.items():
        app.add_api_route(path, refuse(message), methods=methods, dependencies=auth)
