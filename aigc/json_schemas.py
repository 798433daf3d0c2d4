"""JSON schemas for structured answers: reading `--schema` values, and checking what came back.

The engine holds the answer to the schema while it is generated (`SamplingParams.json_schema`);
an answer can still be cut off by `max_tokens` or a stop string before its JSON is whole, which
`parse_answers` reports. Every answer (a tool call's arguments too) is checked against its schema
by `schema_problem`, whose `pattern` checks are bounded in time.
"""

from __future__ import annotations

import functools
import json
import math
import re
import reprlib
import time
import types
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

from .errors import AnswerJSONError, BadInputError, option
from .textio import parse_json

CONCISE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_FIELD = re.compile(r"^([A-Za-z_][\w-]*)(?:\s+(\w+))?\s*(?::\s*(.*))?$")


def concise_schema(text: str) -> dict[str, Any]:
    """An object schema from `llm`'s concise syntax: fields split by commas or new lines, each
    `name [type][: description]` with type str (the default), int, float or bool; all required.
    `"name, age int, bio: a short biography"`."""
    lines = [part.strip() for part in re.split(r"\n" if "\n" in text else r",", text) if part.strip()]
    properties: dict[str, Any] = {}
    for line in lines:
        match = _FIELD.match(line)
        if not match or (match.group(2) and match.group(2) not in CONCISE_TYPES):
            raise BadInputError(
                f"cannot read schema field {line!r}: write `name`, `name TYPE` or `name TYPE: description` "
                f"(TYPE: {', '.join(CONCISE_TYPES)}), or give a JSON schema"
            )
        name, kind, description = match.groups()
        if name in properties:
            raise BadInputError(f"the schema names the field {name!r} twice; give each field once")
        properties[name] = {"type": CONCISE_TYPES[kind or "str"], **({"description": description} if description else {})}
    if not properties:
        raise BadInputError("the schema names no fields; give `name, age int` or a JSON schema")
    return {"type": "object", "properties": properties, "required": list(properties)}


def names_file(value: Any) -> bool:
    """Whether a `--schema` value names a .json file (rather than holding JSON or the concise syntax)."""
    text = value.strip() if isinstance(value, str) else ""
    return not text.startswith(("{", "[")) and text.lower().endswith(".json")


def read_schema(value: str) -> dict[str, Any]:
    """A `--schema` value (the library's `json_schema` as text): JSON schema text, a .json file
    holding one, or the concise syntax."""
    text = value.strip()
    source = option("json_schema")
    literal = text.startswith(("{", "["))
    if names_file(text):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(f"cannot read the schema file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        source = str(path)
    elif not literal:
        return concise_schema(text)
    try:
        schema = parse_json(text)
    except ValueError as exc:
        raise BadInputError(f"{source} is not valid JSON: {exc}; give a JSON schema object, or the fields in short form, like 'title, year int'") from None
    if not isinstance(schema, dict):
        raise BadInputError(f"{source} must hold a JSON object (a JSON schema), not {type(schema).__name__}")
    return schema


def _whole_numbers(value: Any, schema: Any) -> Any:
    """`value` with each number the schema types as an integer written as one (the decoder's number
    grammar lets `1e3` through where an integer goes)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, float) and schema.get("type") == "integer" and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        return {k: _whole_numbers(v, properties.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v, schema.get("items")) for v in value]
    return value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    if isinstance(value, list):
        return all(map(_finite, value))
    return True


def parse_answers(completions, schema: dict[str, Any], max_tokens: int, stops: tuple[str, ...] = (), engine: Any = None) -> list[Any]:
    """The JSON value of each completion held to `schema`; never JSON that the schema does not allow.
    One that is not is a `BadInputError` naming the setting to change: cut off by `max_tokens`, or by
    one of the `stops` strings, or breaking a rule the decoder does not hold answers to (`minimum`,
    `maxLength` in a union, ...); one that is not JSON where no setting cut it is an `AnswerJSONError`
    saying why in the words of the `engine` that wrote it (its `schemas_unheld`: a test engine's),
    else as a model's server that does not follow JSON schemas."""
    values = []
    for completion in completions:
        text = completion.text.strip()
        cut = completion.finish_reason == "length" and not text.endswith(("}", "]", '"'))  # "12" of "123" parses too
        try:
            value = None if cut else _whole_numbers(parse_json(text, strict=False), schema)  # strict=False: a server's raw tab in a string
        except ValueError:
            value, cut = None, completion.finish_reason == "length"
            if not cut and stops:
                raise BadInputError(f"a {option('stop')} string ended the answer before its JSON was complete; leave {option('stop')} out with a JSON schema (its answer ends where its JSON does)") from None
            if not cut:
                why = getattr(engine, "schemas_unheld", None) or "the model's server does not follow JSON schemas; use one that takes them (response_format), or a local model"
                raise AnswerJSONError(f"the answer is not complete JSON: {why}") from None
        if cut:
            raise BadInputError(f"the answer was cut off at {option('max_tokens', max_tokens)} before its JSON was complete; raise {option('max_tokens')}")
        if not _finite(value):
            raise BadInputError(f"the answer holds a number too large for JSON (such as 1e999); try again with another {option('seed')}")
        problem = schema_problem(value, schema)
        if problem is not None:
            raise _unmatched(problem, schema)
        values.append(value)
    return values


PATTERN_SECONDS = 1.0  # what the `pattern` and `patternProperties` checks of one answer may take in all
_deadline: ContextVar[float | None] = ContextVar("aigc_pattern_deadline", default=None)


class _PatternUnchecked(Exception):
    """A pattern check that ran past the answer's deadline (or a pattern the `regex` module cannot read)."""

    def __init__(self, pattern: str, text: str) -> None:
        super().__init__(pattern, text)
        self.pattern, self.text = pattern, text


def _bounded_search(pattern, string, flags=0):
    """`re.search` as jsonschema calls it; while `schema_problem` checks an answer, the `regex`
    module's, given the time left to the answer's checks."""
    import regex

    deadline = _deadline.get()
    if deadline is None:
        return re.search(pattern, string, flags)
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return regex.search(pattern, string, flags, timeout=left, concurrent=True)  # concurrent: other threads run meanwhile
    except (TimeoutError, regex.error):
        raise _PatternUnchecked(str(pattern), str(string)) from None


@functools.cache
def _bounded_patterns() -> None:
    """jsonschema checks `pattern` and `patternProperties` (and `additionalProperties` beside them)
    with Python's `re`, which backtracks without bound: `^(a|aa)*$` against 400 characters that do
    not match takes longer than anyone waits. Its modules get a `re` whose `search` is
    `_bounded_search`; other users of jsonschema are left as they were."""
    import sys

    import jsonschema.validators  # noqa: F401 - imports the modules that use `re`

    bounded = types.ModuleType("re")
    bounded.__dict__.update(vars(re))
    bounded.search = _bounded_search
    for name, module in list(sys.modules.items()):
        if name.startswith("jsonschema.") and getattr(module, "re", None) is re:
            module.re = bounded


def schema_problem(value: Any, schema: dict[str, Any]):
    """The `jsonschema.ValidationError` that best says where `value` breaks `schema`, or None where
    it matches. Its pattern checks take at most PATTERN_SECONDS in all: a check still running then
    counts as not matching, and the error says so."""
    import jsonschema

    _bounded_patterns()
    token = _deadline.set(time.monotonic() + PATTERN_SECONDS)
    try:
        return jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    except _PatternUnchecked as exc:
        return jsonschema.ValidationError(
            f"checking {reprlib.repr(exc.text)} against the pattern {reprlib.repr(exc.pattern)} took more than {PATTERN_SECONDS:g} s, "
            "so it counts as not matching (a pattern with nested repetition, such as (a|aa)*, backtracks without end)"
        )
    finally:
        _deadline.reset(token)


def _unmatched(problem, schema: dict[str, Any]) -> BadInputError:
    """The error for an answer that breaks `schema` where `problem` says, naming the rules the decoder
    does not hold answers to."""
    from .engine.structured import unheld_rules

    where = "/".join(map(str, problem.absolute_path)) or "the answer"
    unheld = unheld_rules(schema)
    change = f"drop {'it' if len(unheld) == 1 else 'them'} from {option('json_schema')}" if unheld else f"simplify that part of {option('json_schema')}"
    held = f"does not hold answers to {', '.join(unheld)}" if unheld else "holds answers to the schema's shape, not to every rule"
    return BadInputError(f"the answer does not match the schema at {where}: {problem.message}; the decoder {held}: {change}, or try again with another {option('seed')}")


def answer_texts(completions, params, engine: Any = None) -> tuple[list[str], dict[str, Any]]:
    """Each completion's text, and the first one's `finish_reason` ("stop", or "length" where
    max_tokens ended it; with several, each one's as `finish_reasons`); held to the sampling
    `params`' JSON schema, each answer's JSON as one line and `data`, the first answer's value
    (`parse_answers` says what the `engine` that wrote them did wrong)."""
    finished = {"finish_reason": completions[0].finish_reason}
    if len(completions) > 1:
        finished["finish_reasons"] = [c.finish_reason for c in completions]
    if params.json_schema is None:
        return [c.text.strip() for c in completions], finished
    values = parse_answers(completions, params.json_schema, params.max_tokens, params.stop, engine)
    return [json.dumps(v, ensure_ascii=False) for v in values], {**finished, "data": values[0]}


def shown(result: dict[str, Any], each: Callable[[str], str] | None = None) -> str:
    """What a command prints of a chat or template result: its text, or its JSON with an indent of 2;
    several answers (a template's `n` default) one after another, parted by a `---` line. `each`
    picks what to print of every answer (-x: its code block)."""
    texts = result.get("choices") or [result["text"]]
    if "data" in result:
        texts = [json.dumps(json.loads(text), indent=2, ensure_ascii=False) for text in texts]
    return "\n\n---\n\n".join(map(each, texts) if each else texts)


def several(result: dict[str, Any]) -> dict[str, Any]:
    """`{"choices": [...], "finish_reasons": [...]}` for `--json` where a result holds more than one
    answer, else nothing."""
    return {key: result[key] for key in ("choices", "finish_reasons") if key in result} if len(result.get("choices") or ()) > 1 else {}
