"""What a request body may hold: the pydantic models of each endpoint's body (unknown fields are
ignored, as OpenAI clients send many; known ones must have their JSON type, a number sent as a JSON
string aside) and the checks a body gets beyond them (its integers' length, lone surrogates, files
it may not name, the `response_format` it asks for, prompt token ids). Each failure is a 400
`ApiError` naming the field.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, Iterator, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..engine.sampling import MAX_SEED, MIN_SEED, number
from ..errors import AigcError
from .api_errors import ApiError
from .logprobs import MAX_TOP

MAX_EMBED_INPUTS = 2048  # texts per /v1/embeddings request, as OpenAI allows


MAX_STOPS = 64  # stop strings a request may give: each is looked for in every row after every token (OpenAI takes 4)
MAX_STOP_CHARS = 256  # characters a stop string may have: its table is built on the scheduler's thread, which every row shares


def check_stops(stop: tuple[str, ...] | list[str]) -> None:
    """A 400 (`param` stop) for more stop strings than `MAX_STOPS`, or one longer than `MAX_STOP_CHARS`."""
    if len(stop) > MAX_STOPS:
        raise ApiError(400, f"stop: give at most {MAX_STOPS} stop strings", param="stop", code="invalid_value")
    longest = max(stop, key=len, default="")
    if len(longest) > MAX_STOP_CHARS:
        raise ApiError(
            400, f"stop: a stop string may be at most {MAX_STOP_CHARS} characters long; stop.{list(stop).index(longest)} has {len(longest)}",
            param="stop", code="invalid_value",
        )


def union_tag(part: Any) -> bool:
    """Whether a part of a validation error's location names one type of a union (`str`,
    `list[str]`) rather than a field or an index."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "list", "dict", "none") or "[" in part)


def body_int(digits: str) -> int:
    """A JSON integer of a request body; one longer than Python reads is a 400 that names it."""
    limit, length = getattr(sys, "get_int_max_str_digits", lambda: 0)(), len(digits.lstrip("-"))  # Python 3.10.0-3.10.6 have no limit
    if limit and length > limit:
        raise ApiError(400, f"the body's JSON has a number too long to read: {digits[:16]}... has {length} digits, at most {limit} are read", code="invalid_json")
    return int(digits)


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # in a body's bytes: JSON text may hold a lone surrogate
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # what json.loads leaves of one (a pair becomes one character)


def _texts(data: Any) -> Iterator[tuple[str, str | None, str]]:
    """(where, the top-level field it is in, text) for every string in a JSON value, keys too, in the
    order they come (`messages.0.content`, `messages`, ...)."""
    stack: list[tuple[str, str | None, Any]] = [("", None, data)]
    while stack:
        where, field, value = stack.pop()
        if isinstance(value, str):
            yield where, field, value
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):  # each key comes before what it names, whose place names it
                stack += [(f"{where}.{key}" if where else key, field or key, item), (f"a key in {where or 'the body'}", field, key)]
        elif isinstance(value, list):
            stack += [(f"{where}.{i}", field, item) for i, item in reversed(list(enumerate(value)))]


def lone_surrogate(data: Any) -> ApiError | None:
    """The 400 for the first text in a request body that holds a lone surrogate: a `\\ud800` escape
    without its other half, which is no character, so no tokenizer takes it."""
    for where, field, text in _texts(data):
        found = LONE_SURROGATE.search(text)
        if found:
            return ApiError(
                400, f"{where} holds the escape \\u{ord(found.group()):04x}, half of a surrogate pair without its other half, which is no character; "
                "send text as UTF-8, or a character beyond U+FFFF as both halves of its pair (\\ud83d\\udc1d)", param=field, code="invalid_value",
            )
    return None


def response_schema(response_format: dict | None) -> dict | None:
    """The JSON schema a `response_format` asks for: `json_schema` gives one, `json_object` is any
    JSON object, `text` (or none) is no schema."""
    from ..engine.structured import schema_parser, unheld_rules

    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    spec = response_format.get("json_schema")
    if kind == "json_object":
        schema = {"type": "object"}
    elif kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        schema = spec["schema"]
    elif kind == "json_schema":
        raise ApiError(400, 'response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}', param="response_format", code="invalid_value")
    else:
        raise ApiError(400, f"response_format {kind!r} is not supported; text, json_object or json_schema", param="response_format", code="unsupported")
    try:
        schema_parser(schema)  # a schema the decoder cannot follow fails here, not in the batch
    except AigcError as exc:
        raise ApiError(400, str(exc), param="response_format", code="invalid_value") from None
    unheld = unheld_rules(schema) if kind == "json_schema" and spec.get("strict") else []
    if unheld:
        raise ApiError(
            400, f"response_format json_schema is strict, but this server cannot hold answers to {', '.join(unheld)}; drop them, or set strict to false (answers may then break them)",
            param="response_format", code="unsupported",
        )
    return schema


def no_files(options_class: type, options: dict, sampling: dict) -> None:
    """A request never makes the server read a file: the options (of the dataclass `options_class`)
    and sampling settings that would name one (`generators.base.named_files`) are refused. Templates
    go by name; examples, glossaries, JSON schemas and the like inline."""
    from ..engine.sampling import SamplingParams
    from ..generators.base import named_files, template_options

    for key in named_files(SamplingParams, sampling) + named_files(options_class, options):
        if key in template_options(options_class):
            raise ApiError(400, f"{key}: give a template's name; the server reads no template files a request names", param=key, code="unsupported")
        raise ApiError(400, f"{key}: give its content inline, not a file; the server reads no files a request names", param=key, code="unsupported")


def input_at(index: int, listed: bool) -> str:
    """Where an embedding request's text is, as errors name it: `input.N` in a list of texts, `input` alone."""
    return f"input.{index}" if listed else "input"


INPUT_FIELDS = {"/v1/chat/completions": "messages", "/v1/responses": "input", "/v1/completions": "prompt", "/tokenize": "prompt", "/v1/embeddings": "input"}


def input_field(path: str) -> str | None:
    """The body field holding a request's input (what a bad input or a too long one is about)."""
    return "input" if path.startswith("/v1/aigc/") else INPUT_FIELDS.get(path)


SHAPED = ("guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs", "json_schema", "grammar")  # vLLM's and llama.cpp's ways to ask for a shape of answer
# Parameters this server does not apply, with the values that ask for nothing (those are accepted).
UNSUPPORTED = {
    "tools": (None, []), "functions": (None, []), "tool_choice": (None, "none", "auto"), "function_call": (None, "none", "auto"),
    "best_of": (None, 1), "suffix": (None, ""),
    **dict.fromkeys(SHAPED, (None, "", {}, [])), "ignore_eos": (None, False), "min_tokens": (None, 0),  # vLLM's: a benchmark fixing the answers' length
    "use_beam_search": (None, False), "prompt_logprobs": (None,), "truncate_prompt_tokens": (None,),  # vLLM's
    "continue_final_message": (None, False), "add_generation_prompt": (None, True),  # vLLM's: continue an assistant message
    "modalities": (None, [], ["text"]),  # OpenAI's: audio answers
}
INSTEAD = {  # what this server takes for an unsupported parameter
    **dict.fromkeys(SHAPED, 'response_format {"type": "json_schema", ...} is'),
    "best_of": "n with temperature above 0 samples several answers",
    "use_beam_search": "n with temperature above 0 samples several answers",
    "prompt_logprobs": "/v1/completions with echo and logprobs gives the prompt's",
    "modalities": "answers are text only",
}
CHAT_TAKES = ("tools", "tool_choice", "functions", "function_call", "continue_final_message", "add_generation_prompt")  # of UNSUPPORTED, what /v1/chat/completions applies


def _numeric(value: Any) -> Any:
    """A number sent as a JSON string ("16", "0.5") is that number, as OpenAI's API takes it; other
    text stays text, which the field refuses (a 400 naming it)."""
    return number(value) if isinstance(value, str) else value


Int = Annotated[int, BeforeValidator(_numeric)]
Float = Annotated[float, BeforeValidator(_numeric)]


def _null_is_the_default(cls, value, info):
    """Clients in other languages send `"n": null`; OpenAI takes a null as the parameter's default."""
    return cls.model_fields[info.field_name].get_default(call_default_factory=True) if value is None else value


class Sampling(BaseModel):
    """Fields shared by chat and completions (unknown fields are ignored, as OpenAI clients send many;
    known ones must have their JSON type: `"stream": "yes"` is an error, not true)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: Optional[str] = None
    temperature: Optional[Float] = Field(None, ge=0, le=2)
    top_p: Optional[Float] = Field(None, ge=0, le=1)  # 0 is greedy
    top_k: Optional[Int] = Field(None, ge=-1)  # extension (vLLM, llama.cpp); 0 or -1 (vLLM's way) is off
    repetition_penalty: Optional[Float] = Field(None, gt=0, le=3)  # extension (vLLM)
    min_p: Optional[Float] = Field(None, ge=0, lt=1)  # extension (vLLM, llama.cpp); 0 is off
    max_tokens: Optional[Int] = Field(None, ge=1)
    max_completion_tokens: Optional[Int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    n: Int = Field(1, ge=1)
    seed: Optional[Int] = Field(None, ge=MIN_SEED, le=MAX_SEED)  # int64, as OpenAI's
    stream: bool = False
    stream_options: Optional[dict] = None
    echo: Optional[bool] = None
    tools: Optional[list] = None
    functions: Optional[list] = None  # tools' older form
    tool_choice: Union[str, dict, None] = None
    parallel_tool_calls: Optional[bool] = None  # false: a free answer's first call only (`Toolset.parse`)
    function_call: Union[str, dict, None] = None
    logit_bias: Optional[dict] = None
    response_format: Optional[dict] = None
    frequency_penalty: Optional[Float] = Field(None, ge=-2, le=2)
    presence_penalty: Optional[Float] = Field(None, ge=-2, le=2)
    guided_json: Any = None  # SHAPED: refused, never ignored (the client would parse free text)
    guided_regex: Any = None
    guided_choice: Any = None
    guided_grammar: Any = None
    structured_outputs: Any = None
    json_schema: Any = None
    grammar: Any = None
    ignore_eos: Any = None
    min_tokens: Any = None
    best_of: Optional[Int] = None  # UNSUPPORTED's others: refused where they ask for something
    use_beam_search: Any = None
    prompt_logprobs: Any = None
    truncate_prompt_tokens: Any = None
    continue_final_message: Optional[bool] = None  # vLLM's: chat continues the last message, an assistant's
    add_generation_prompt: Optional[bool] = None  # vLLM's: false only with continue_final_message
    modalities: Any = None
    stop_token_ids: Optional[list[Int]] = None  # vLLM's: a row ends at any of these tokens, as at the model's end-of-sequence token
    include_stop_str_in_output: Optional[bool] = None  # vLLM's: the stop string that ended a row stays in its text

    _nulls = field_validator("n", "stream", mode="before")(_null_is_the_default)


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: str
    text: Optional[str] = None
    refusal: Optional[str] = None  # an assistant's "refusal" part

    def plain(self, role: str, where: str) -> str:
        """The part's text: a text part's, or an assistant's refusal."""
        kind = "refusal" if self.type == "refusal" and role == "assistant" else "text"
        if self.type != kind:
            raise ApiError(400, f"{where}: {self.type!r} content parts are not supported in a {role} message; only text parts (and an assistant's refusal)", param="messages", code="unsupported")
        value = self.refusal if kind == "refusal" else self.text
        if value is None:
            raise ApiError(400, f"{where}: a {kind} content part needs its {kind}", param="messages", code="invalid_value")
        return value


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[_Part], None] = None
    tool_calls: Optional[list] = None
    tool_call_id: Optional[str] = None  # what a tool message answers
    function_call: Optional[dict] = None  # tool_calls' older form
    name: Optional[str] = None  # a function message's function (tool messages' older form)

    def plain(self, index: int) -> dict:
        """The message as the engine takes it, its parts joined, an assistant's `tool_calls` checked
        (`tools.history_calls`); what OpenAI refuses, or this server cannot take, is a 400 naming the
        message (`messages.2`). Content may be null only where an assistant called tools, as OpenAI
        has it; an empty list of parts is refused, as OpenAI refuses it. A function message (the
        older form of a tool message) is read as a tool message that answers a call with no id."""
        from .tools import NAME, history_calls

        where = f"messages.{index}"
        if self.role == "function" and not (isinstance(self.name, str) and NAME.fullmatch(self.name)):
            raise ApiError(400, f"{where}: a function message needs the name of the function whose result it holds (1-64 letters, digits, _ or -), got {self.name!r}", param="messages", code="invalid_value")
        called = self.role == "assistant" and bool(self.tool_calls or self.function_call)
        if self.content is None and not called:
            whose = "an assistant message needs its content unless it has tool_calls" if self.role == "assistant" else f"a {self.role} message needs its content"
            raise ApiError(400, f"{where}: {whose}: a string, or a list of text parts", param="messages", code="invalid_value")
        if self.content == []:
            raise ApiError(400, f"{where}: content is an empty list of parts; give a string, or at least one text part", param="messages", code="invalid_value")
        content = self.content or ""
        if isinstance(content, list):  # parts joined by a newline, as vLLM joins them
            content = "\n".join(p.plain(self.role, f"{where}.content.{i}") for i, p in enumerate(content))
        message = {"role": {"developer": "system", "function": "tool"}.get(self.role, self.role), "content": content}
        if self.role in ("tool", "function"):
            message["tool_call_id"] = self.tool_call_id or ""
        if self.role == "function":
            message["name"] = self.name
        if self.role == "assistant" and (self.tool_calls or self.function_call):
            message["tool_calls"] = history_calls(self.tool_calls or [{"function": self.function_call}], where)
        return message


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[Int] = Field(None, ge=0, le=MAX_TOP)

    @property
    def continuing(self) -> bool:
        """Whether the answer continues the last message (vLLM's `continue_final_message`), an
        assistant's text, rather than opening a turn of its own."""
        if not self.continue_final_message:
            if self.add_generation_prompt is False:
                raise ApiError(400, "add_generation_prompt: false is taken with continue_final_message: true only (the answer continues the last message)", param="add_generation_prompt", code="unsupported")
            return False
        if self.add_generation_prompt:
            raise ApiError(400, "continue_final_message and add_generation_prompt cannot both be true; leave add_generation_prompt out or set it to false", param="add_generation_prompt", code="invalid_value")
        last = self.messages[-1]
        if last.role != "assistant" or last.tool_calls or last.function_call:
            raise ApiError(400, f"messages.{len(self.messages) - 1}: continue_final_message continues an assistant message with text; the last message is not one", param="messages", code="invalid_value")
        return True

    @property
    def top(self) -> int | None:
        """How many alternatives to report per token; None: no log-probabilities."""
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs", code="invalid_value")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Sampling):
    prompt: Union[str, list[str], list[int], list[list[int]]]  # token ids: the model's, as vLLM takes them
    max_tokens: Optional[Int] = Field(None, ge=0)  # 0 with echo: only the prompt's log-probabilities
    logprobs: Optional[Int] = Field(None, ge=0, le=MAX_TOP)
    suffix: Optional[str] = None

    @property
    def top(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text, or the model's token ids (a list of ints is one prompt)."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        if not self.prompt:
            raise ApiError(400, "prompt: give at least one prompt", param="prompt", code="invalid_value")
        return list(self.prompt)


def known_ids(ids: list[int], vocabulary: int, field: str = "prompt") -> list[int]:
    """Token ids (a prompt given as such, or `field`), each checked to be one of the model's."""
    unknown = next((i for i in ids if not 0 <= i < vocabulary), None)
    if unknown is not None:
        raise ApiError(400, f"{field}: token id {unknown} is not in the model's vocabulary (0-{vocabulary - 1})", param=field, code="invalid_value")
    return list(ids)


class TaskRequest(BaseModel):
    """A generator call: `input` as the generator takes it, its options, and sampling settings."""

    model_config = ConfigDict(extra="forbid")
    model: Optional[str] = None
    input: Any = None
    options: dict[str, Any] = Field(default_factory=dict)
    sampling: dict[str, Any] = Field(default_factory=dict)

    _nulls = field_validator("options", "sampling", mode="before")(_null_is_the_default)


class EmbeddingRequest(BaseModel):
    """OpenAI's `/v1/embeddings`: a text or a list of texts (token ids are refused with a reason)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: Optional[str] = None
    input: Union[str, list[str], list[int], list[list[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[Int] = None

    _nulls = field_validator("encoding_format", mode="before")(_null_is_the_default)

    def texts(self, most: int | None = MAX_EMBED_INPUTS) -> list[str]:
        """The texts to embed, checked; at most `most` of them (None: any number, as ollama's `/api/embed`)."""
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts:
            raise ApiError(400, "input must be a text or a non-empty list of texts", param="input", code="invalid_value")
        if not all(isinstance(t, str) for t in texts):
            raise ApiError(
                400, "input: token ids are not supported; send text, e.g. LangChain's OpenAIEmbeddings(check_embedding_ctx_length=False)", param="input", code="unsupported"
            )
        if most is not None and len(texts) > most:
            raise ApiError(400, f"input holds {len(texts)} texts; at most {most} per request", param="input", code="invalid_value")
        blank = next((i for i, text in enumerate(texts) if not text.strip()), None)
        if blank is not None:  # named, as a client sends a table's rows 100 at a time
            raise ApiError(400, f"{input_at(blank, not isinstance(self.input, str))}: a text to embed must be non-empty text, got {texts[blank]!r}", param="input", code="invalid_value")
        return texts


class TokenizeRequest(BaseModel):
    """vLLM's `/tokenize`: a prompt or chat messages -> token count (used by remote backends)."""

    model_config = ConfigDict(extra="ignore")
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[Message]] = None
