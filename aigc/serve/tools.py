"""Tool calling on `/v1/chat/completions` (and `/v1/responses`, through chat), as OpenAI's API has
it, the way llama.cpp's server and vLLM do it: the tools go into the prompt, the answer is parsed
for a call, and a call that must be made is held to the JSON schema of `{"name": ..., "arguments":
...}` by the structured decoder.

A chat template that reads `tools` lists them itself (and renders earlier calls and their results
its own way); any other gets a system instruction that lists them as JSON and asks for a
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` answer (Hermes and Qwen's form), and sees
earlier calls in that form and their results as `<tool_response>` user turns. `tool_choice`
"required" or a named function decodes under the call's schema; "auto" decodes freely, and an
answer that starts a call (`<tool_call>` or `{"name"`) but is not a valid one is decoded again
under the schema. A free answer may hold several calls, one `<tool_call>` block each (parallel
calls, as llama.cpp's Hermes parser reads them), unless `parallel_tool_calls` is false: then the
first only; a call decoded under the schema is one, and so is one in the Responses API or the older
form. The text before the calls is the answer's content. A free answer is streamed as it is
decoded, less what may open a call (`Holdback`).
OpenAI's older form, `functions` and `function_call`, is mapped onto tools and answered in its own
shape (`message.function_call`, `finish_reason: "function_call"`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import AigcError
from .api_errors import ApiError

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for a function's name
OPENS = re.compile(r'<tool_call>|\{\s*"name"\s*:')  # where a call starts, in Hermes and Qwen's form or as bare JSON
STARTS_CALL = re.compile(r'\s*(<tool_call>|\{\s*"name"\s*:)')
CALL = re.compile(r"(?:<tool_call>)?\s*(\{.*\})\s*(?:</tool_call>)?\s*", re.S)
NO_PARAMETERS = {"type": "object", "properties": {}}
LEGACY_PARAMS = {"tools": "functions", "tool_choice": "function_call"}  # tools' older form, as errors name it


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass
class Toolset:
    """The functions a request offers and how one must be called: `forced` (tool_choice "required"
    or a named function: the answer is a call) or not ("auto": the model chooses)."""

    tools: list[dict]  # OpenAI's form, {"type": "function", "function": {...}}, as templates take them
    parameters: dict[str, dict]  # each function's arguments schema, by name
    forced: bool
    named: str | None = None
    parallel: bool = True  # whether a free answer's several calls are all made (else its first only)

    @classmethod
    def of(cls, tools: list | None, choice: Any, response_format: dict | None = None, parallel: bool = True) -> "Toolset | None":
        """The request's toolset; None where no tool is to be called (none given, or tool_choice "none")."""
        from ..engine.structured import schema_parser, unheld_rules

        named = None
        if isinstance(choice, dict):
            function = choice.get("function")
            named = function.get("name") if isinstance(function, dict) else None
            if choice.get("type") != "function" or not isinstance(named, str):
                raise _bad('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', "tool_choice")
        elif choice not in (None, "none", "auto", "required"):
            raise _bad(f'tool_choice {choice!r} is not one of "none", "auto", "required" or {{"type": "function", "function": {{"name": ...}}}}', "tool_choice")
        if not tools:
            if choice == "required" or named:
                raise _bad("tool_choice asks for a tool call, but the request gives no tools", "tool_choice")
            return None
        parameters: dict[str, dict] = {}
        for i, tool in enumerate(tools):
            where = f"tools.{i}"
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                raise _bad(f'{where}: only function tools are supported: {{"type": "function", "function": {{"name": ..., "parameters": {{...}}}}}}', "tools", "unsupported")
            name = function.get("name")
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise _bad(f"{where}: a function needs a name of 1-64 letters, digits, _ or -, got {name!r}", "tools")
            if name in parameters:
                raise _bad(f"{where}: a second function named {name!r}; names must differ", "tools")
            schema = function.get("parameters") or NO_PARAMETERS  # left out, null or {}: a call with no arguments
            if not isinstance(schema, dict):
                raise _bad(f"{where}.function.parameters must be a JSON schema (an object)", "tools")
            try:
                schema_parser(schema)
            except AigcError as exc:
                raise _bad(f"{where}.function.parameters ({name}): {exc}", "tools") from None
            unheld = unheld_rules(schema) if function.get("strict") else []
            if unheld:
                raise _bad(f"{where}.function ({name}) is strict, but this server cannot hold arguments to {', '.join(unheld)}; drop them, or set strict to false", "tools", "unsupported")
            parameters[name] = schema
        if named is not None and named not in parameters:
            raise _bad(f"tool_choice names {named!r}, which is not among the tools ({', '.join(parameters)})", "tool_choice")
        if choice == "none":
            return None
        if (response_format or {}).get("type", "text") != "text":
            raise _bad('response_format shapes an answer in text, and a tool call has its own; send one of them, or tool_choice "none"', "response_format", "unsupported")
        toolset = cls([{"type": "function", "function": t["function"]} for t in tools], parameters, forced=choice == "required" or named is not None, named=named, parallel=parallel)
        try:
            schema_parser(toolset.call_schema())  # one call to any of them: the schema is bounded as a whole too
        except AigcError as exc:
            raise _bad(f"tools: the schema of a call to {'it' if named else 'any of them'} cannot be used: {exc}; offer fewer or smaller functions", "tools") from None
        return toolset

    def call_schema(self) -> dict:
        """The JSON schema of one call: a function's name and its arguments (any function's, unless one is named)."""
        names = [self.named] if self.named else list(self.parameters)
        calls = [
            {"type": "object", "properties": {"name": {"const": name}, "arguments": self.parameters[name]}, "required": ["name", "arguments"], "additionalProperties": False}
            for name in names
        ]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def instruction(self) -> str:
        """What a model whose chat template lists no tools is told about them."""
        listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in self.tools)
        must = f"You must call {self.named}." if self.named else "You must call one of them." if self.forced else "Call one only if it helps; else answer directly."
        return f'You may call these functions:\n<tools>\n{listed}\n</tools>\n{must} To call one, answer only with <tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>'

    def parse(self, text: str) -> dict | None:
        """The calls an answer holds, `{"content", "calls": [{"name", "arguments"}, ...]}`, with the
        text before them as content (None where it is blank, as llama.cpp's Hermes parser has it)
        and arguments that fit each function's schema; None where it holds none, or a call that is
        not valid. Several calls are `<tool_call>` blocks one after another (the first only, unless
        `parallel`); a bare `{"name": ...}` is one."""
        opened = OPENS.search(text)
        if opened is None:
            return None
        blocks = text[opened.start() :].split("<tool_call>")[1:] if text.startswith("<tool_call>", opened.start()) else [text[opened.start() :]]
        calls = [self._call(block) for block in blocks[: None if self.parallel else 1]]
        if not all(calls):
            return None
        return {"content": text[: opened.start()].rstrip() or None, "calls": calls}

    def _call(self, block: str) -> dict | None:
        """One call, `{"name", "arguments"}`, from its JSON (with its closing tag, if any), or None."""
        from ..json_schemas import schema_problem

        found = CALL.fullmatch(block)
        try:
            data = json.loads(found.group(1)) if found else None
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("name") not in self.parameters or (self.named and data["name"] != self.named):
            return None
        arguments = data.get("arguments", data.get("parameters"))  # Llama 3.1 says "parameters"
        if not isinstance(arguments, dict) or schema_problem(arguments, self.parameters[data["name"]]) is not None:
            return None
        return {"name": data["name"], "arguments": arguments}


def requested(tools: list | None, choice: Any, functions: list | None, function_call: Any, response_format: dict | None, parallel: bool = True) -> tuple[Toolset | None, bool]:
    """A chat request's toolset (`Toolset.of`), and whether it came in OpenAI's older form, `functions`
    ({name, description, parameters}) and `function_call` ("none", "auto" or {"name": ...}), to be
    answered in it (as vLLM and llama.cpp-compatible servers that take it map it onto tools; one
    call). A neutral `function_call` without functions is no older form, and is left aside."""
    legacy = bool(functions) or function_call not in (None, "none", "auto")
    if not legacy:
        return Toolset.of(tools, choice, response_format, parallel), False
    if tools or choice is not None:
        given = "functions" if functions else "function_call"
        raise _bad(f"{given} is the older form of {'tools' if functions else 'tool_choice'}; send tools and tool_choice, or functions and function_call, not both", given)
    for i, function in enumerate(functions or []):
        if not isinstance(function, dict):
            raise _bad(f'functions.{i} must be a function: {{"name": ..., "description": ..., "parameters": {{...}}}}', "functions")
    if isinstance(function_call, dict):
        if not isinstance(function_call.get("name"), str):
            raise _bad('function_call must be "none", "auto" or {"name": ...}', "function_call")
        function_call = {"type": "function", "function": {"name": function_call["name"]}}
    elif function_call not in (None, "none", "auto"):
        raise _bad(f'function_call {function_call!r} is not one of "none", "auto" or {{"name": ...}}', "function_call")
    try:
        return Toolset.of([{"type": "function", "function": f} for f in functions or []], function_call, response_format, parallel=False), True
    except ApiError as exc:  # named as the request has them: functions.0 for tools.0.function, function_call for tool_choice
        message = re.sub(r"\btools\.(\d+)\.function\b", r"functions.\1", exc.message).replace("tool_choice", "function_call")
        raise ApiError(exc.status, re.sub(r"\btools\b", "functions", message), exc.type, LEGACY_PARAMS.get(exc.param, exc.param), exc.code) from None


def _may_open(tail: str) -> bool:
    """Whether an answer's end, `tail`, may yet become a call's opening."""
    return "<tool_call>".startswith(tail) or '{"name":'.startswith(re.sub(r"\s+", "", tail))


class Holdback:
    """One streamed answer's text, sent as it comes but for what may be a call's: blank space at its
    start, and an end that may yet become a call's opening (as llama.cpp's server holds back a
    partial stop word); once a call opens, nothing more is sent. Pieces' log-probabilities go with
    their text."""

    def __init__(self) -> None:
        self.text, self.sent, self.opened, self.entries = "", 0, False, None

    def feed(self, piece: str, entries: list | None) -> tuple[str, list | None] | None:
        """The (text, log-probabilities) that may be sent now, or None."""
        self.text += piece
        if entries is not None:
            self.entries = (self.entries or []) + entries
        if self.opened:
            return None
        found = OPENS.search(self.text, self.sent)
        self.opened = found is not None
        end = found.start() if found else next((k for k in range(self.sent, len(self.text)) if self.text[k] in "<{" and _may_open(self.text[k:])), len(self.text))
        return self._take(end) if self.text[:end].strip() else None

    def rest(self) -> tuple[str, list | None] | None:
        """What is held back, where the answer holds no call after all."""
        return self._take(len(self.text))

    def _take(self, end: int) -> tuple[str, list | None] | None:
        taken, entries = self.text[self.sent : end], self.entries
        if not taken:
            return None
        self.sent, self.entries = end, None
        return taken, entries


def starts_call(text: str) -> bool:
    """Whether an answer opens a call (so that one that is no valid call is decoded again under its schema)."""
    return STARTS_CALL.match(text) is not None


def history_calls(calls: list, where: str) -> list[dict]:
    """An assistant message's `tool_calls`, checked, with their arguments as JSON data (as chat templates take them)."""
    taken = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not isinstance(function.get("arguments", ""), str):
            raise _bad(f'{where}.tool_calls.{i}: a tool call is {{"id": ..., "type": "function", "function": {{"name": ..., "arguments": "<JSON text>"}}}}', "messages")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = function["arguments"]  # shown as it was sent
        taken.append({"id": str(call.get("id") or ""), "type": "function", "function": {"name": function["name"], "arguments": arguments}})
    return taken


def prompt(messages: list[dict], toolset: Toolset | None, native: bool) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) for the chat template: as they are where it reads tools (`native`); else the
    tools as a system instruction, earlier calls as `<tool_call>` text and their results as user turns."""
    if native:
        return messages, toolset.tools if toolset else None
    plain = []
    for message in messages:
        if message["role"] == "tool":
            plain.append({"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"})
        elif message.get("tool_calls"):
            calls = [f"<tool_call>\n{json.dumps({'name': c['function']['name'], 'arguments': c['function']['arguments']}, ensure_ascii=False)}\n</tool_call>" for c in message["tool_calls"]]
            plain.append({"role": "assistant", "content": "\n".join(filter(None, [message["content"], *calls]))})
        else:
            plain.append({"role": message["role"], "content": message["content"]})
    if toolset:
        if plain[0]["role"] == "system":
            plain[0] = {"role": "system", "content": f"{plain[0]['content']}\n\n{toolset.instruction()}"}
        else:
            plain.insert(0, {"role": "system", "content": toolset.instruction()})
    return plain, None


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def answered(body: dict, calls: list[dict | None], legacy: bool = False) -> dict:
    """A chat completion whose choices that hold calls (`Toolset.parse`) answer with them as
    `tool_calls`, or with the first as `function_call` (no id) where the request came in the older
    form (`legacy`)."""
    for choice, call in zip(body["choices"], calls):
        if call:
            functions = [{"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)} for c in call["calls"]]
            called = {"function_call": functions[0]} if legacy else {"tool_calls": [{"id": call_id(), "type": "function", "function": f} for f in functions]}
            choice["message"] = {"role": "assistant", "content": call["content"], **called}
            choice["finish_reason"] = "function_call" if legacy else "tool_calls"
    return body
