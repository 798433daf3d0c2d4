"""Structured output: decoding held to a JSON Schema by lm-format-enforcer's parser.

At each step a row may only take the tokens that keep its answer a prefix of JSON the schema
allows, and once the JSON is whole, only end-of-sequence (no blank space before or after it). The table of what each token spells is
built once per tokenizer (0.4-1.4 s for a 49k vocabulary). Fields come in the order of the
schema's `required` list, then the others, and at most a few whitespace characters come in a row
(a few more spaces inside a string), holding at most one line break, so a small model does not spend its
tokens on indentation, spaces or blank lines. A string holds no raw control character (JSON forbids them).

The schema is first rewritten into forms the parser holds (`decoder_schema`: an enum of mixed
kinds as an `anyOf`, a recursive root as a definition, ...) and the parser of its every part is
built before decoding, so what the parser cannot hold is refused then; a parser that still fails
while decoding is an `AnswerJSONError`, not an answer cut where it failed.
"""

from __future__ import annotations

import array
import codecs
import contextvars
import functools
import json
import math
import re
import threading
from typing import Any, Iterator

from ..errors import AnswerJSONError, BadInputError, MissingExtraError, install_advice

MAX_WHITESPACE = 4  # whitespace characters in a row between JSON's parts ("\n" and an indent of three)
MAX_BLANK_RUN = 16  # whitespace characters in a row inside a string, where the enforcer counts none
LINE_BREAK = re.compile(r"\r\n?|\n")  # a whitespace run holds one at most: pretty-printed JSON, but no blank line
_FIXING = threading.Lock()


def _line_breaks(text: str) -> int:
    return len(LINE_BREAK.findall(text))


def _enforcer_module():
    try:
        import lmformatenforcer
    except ImportError:
        raise MissingExtraError(f"a JSON schema needs lm-format-enforcer, one of aigc's own dependencies: {install_advice()}") from None
    with _FIXING:  # the server builds parsers in worker threads: the library is changed once, not twice at once
        _fix_enforcer()
    return lmformatenforcer


@functools.lru_cache(maxsize=4)
def token_table(tokenizer):
    """What each regular token spells (as lm-format-enforcer's transformers integration builds it,
    which newer transformers no longer import). Every token that decodes whole starts a new piece
    of text for the parser: only byte tokens of an unfinished UTF-8 character are read together, so
    the parser never decodes the whole answer again at each step."""
    from .token_bytes import TokenBytes

    lmfe = _enforcer_module()
    texts = TokenBytes(tokenizer)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for token in range(len(tokenizer)):
        if token in special:
            continue
        after_zero = tokenizer.decode([zero, token])[1:]  # keeps the leading space of a word start
        regular.append((token, after_zero, "\ufffd" not in tokenizer.decode([token])))

    alphabet = {c for _, text, _ in regular for c in text}

    def decode(tokens: list[int]) -> str:
        """The text of a run of byte tokens, an unfinished UTF-8 sequence left out. A character no
        token holds (most CJK characters) is outside the parser's alphabet and would stop it: it
        stands as "x" (free text takes it as it would the character; `SchemaMask` refuses enum and
        const values that hold such characters)."""
        text = tokenizer.decode(tokens).rstrip("\ufffd")
        return text if alphabet.issuperset(text) else "".join(c if c in alphabet else "x" for c in text)

    data = lmfe.TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, len(tokenizer))
    data.tokenizer_alphabet = "".join(sorted(alphabet))  # every character a token holds, not only those a token starts with
    data.blank_start = {token for token, text, _ in regular if text[:1].isspace()}  # " {" too, not only " "
    data.blank_end = {token for token, text, _ in regular if text[-1:].isspace()}
    data.blank_tails = {token: len(text) - len(text.rstrip()) for token, text, _ in regular if text[-1:].isspace()}  # whitespace it ends with
    data.all_blank = {token for token, text, _ in regular if text.isspace()}
    data.break_tails = {token: _line_breaks(text[len(text.rstrip()) :]) for token, text, _ in regular if text[-1:].isspace()}  # line breaks it ends with
    data.break_heads = [token for token, text, _ in regular if _line_breaks(text[: len(text) - len(text.lstrip())])]  # " \n" too
    data.blank_lines = [token for token, text, _ in regular if any(_line_breaks(run) > 1 for run in re.findall(r"\s+", text))]  # "\n\n", ",\n\n"
    data.byte_pieces = {token: _piece_bytes(texts, token) for token, _, whole in regular if not whole}  # part of a character: its bytes, None if unknown
    return data


def _piece_bytes(texts, token: int) -> bytes | None:
    raw = texts(token)[1]
    return None if "\ufffd".encode() in raw else raw  # bytes the tokenizer does not name


def _utf8_prefix(data: bytes) -> bool:
    """Whether `data` is UTF-8, or UTF-8 cut inside its last character."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return True


def _refs_resolve(schema: dict[str, Any]) -> None:
    """Every `$ref` names a part of the schema itself (`#/$defs/...`); anything else is a `BadInputError`."""
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                target: Any = schema
                path = str(ref).removeprefix("#").strip("/")
                for part in (path.split("/") if path else []) if str(ref).startswith("#") else [None]:
                    key = None if part is None else part.replace("~1", "/").replace("~0", "~")
                    if not isinstance(target, dict) or key not in target:
                        raise BadInputError(f"the JSON schema's $ref {ref!r} names nothing in the schema (only #/... references to its own parts are followed)")
                    target = target[key]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


MAX_SCHEMA_DEPTH = 64  # JSON nesting; far beyond any useful answer, well within Python's recursion limit


def _check_depth(schema: Any) -> None:
    """A `BadInputError` for a schema nested deeper than MAX_SCHEMA_DEPTH (walked without recursion)."""
    level = [schema]
    for depth in range(MAX_SCHEMA_DEPTH + 1):
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node if isinstance(node, list) else ())]
        if not level:
            return
    raise BadInputError(f"the JSON schema is nested more than {MAX_SCHEMA_DEPTH} levels deep; give a flatter one")


def _has_empty_enum(node: Any) -> bool:
    """Whether a (sub)schema has `"enum": []`; values given as data (const, default, examples) are not looked in."""
    if isinstance(node, dict):
        return node.get("enum") == [] or any(_has_empty_enum(v) for k, v in node.items() if k not in ("const", "default", "examples", "enum"))
    return isinstance(node, list) and any(_has_empty_enum(v) for v in node)


MAX_SCHEMA_OBJECTS = 10_000  # JSON objects in a schema, its subschemas among them (OpenAI takes 5,000 properties)
MAX_SCHEMA_BRANCHES = 256  # branches of one anyOf, oneOf or allOf
MAX_ENUM_VALUES = 1_000  # enum values in a whole schema (as OpenAI)
MAX_PATTERN_LENGTH = 1_000  # characters of one `pattern`
DATA_KEYS = ("const", "enum", "default", "examples")  # values given as data, not as schemas


def _check_size(schema: dict[str, Any]) -> None:
    """A `BadInputError` for a schema larger than the decoder builds in bounded time: more than
    MAX_SCHEMA_OBJECTS objects, an anyOf/oneOf/allOf of more than MAX_SCHEMA_BRANCHES branches, more
    than MAX_ENUM_VALUES enum values in all, or a `pattern` longer than MAX_PATTERN_LENGTH characters."""
    objects, values, parts = 0, 0, [("", schema, True)]
    while parts:
        where, node, rules = parts.pop()  # rules: whether `node` is read as a schema, not given as data
        if isinstance(node, list):
            parts += [(f"{where}/{i}", v, rules) for i, v in enumerate(node)]
            continue
        if not isinstance(node, dict):
            continue
        objects += 1
        if objects > MAX_SCHEMA_OBJECTS:
            raise BadInputError(f"the JSON schema holds more than {MAX_SCHEMA_OBJECTS} objects (subschemas and values), more than the decoder takes; give a smaller one")
        parts += [(f"{where}/{key}", value, rules and key not in DATA_KEYS) for key, value in node.items()]
        if not rules:
            continue
        for key in ("anyOf", "oneOf", "allOf"):
            if isinstance(node.get(key), list) and len(node[key]) > MAX_SCHEMA_BRANCHES:
                raise BadInputError(f"the JSON schema's {where}/{key} has {len(node[key])} branches, more than the {MAX_SCHEMA_BRANCHES} the decoder takes; use fewer (an enum for a choice of values)")
        if isinstance(node.get("enum"), list):
            values += len(node["enum"])
            if values > MAX_ENUM_VALUES:
                raise BadInputError(f"the JSON schema's enums hold more than {MAX_ENUM_VALUES} values in all (at {where}/enum), more than the decoder takes; use a plain string field for a longer list")
        pattern = node.get("pattern")
        if isinstance(pattern, str) and len(pattern) > MAX_PATTERN_LENGTH:
            raise BadInputError(f"the JSON schema's {where}/pattern is {len(pattern)} characters long, more than the {MAX_PATTERN_LENGTH} the decoder takes; give a shorter one")


def check_schema(schema: dict[str, Any]) -> None:
    """A `BadInputError` for a schema that breaks JSON Schema's own rules, nests too deep, is too large
    (`_check_size`), has a `$ref` that names nothing in it or an empty enum: what a model refuses,
    checked by the test engines too."""
    import jsonschema

    _check_depth(schema)
    _check_size(schema)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "".join(f"/{part}" for part in exc.path)  # a JSON pointer into the schema
        raise BadInputError(f"the JSON schema is not valid{f' at {where}' if where else ''}: {exc.message}") from None
    _refs_resolve(schema)
    if _has_empty_enum(schema):
        raise BadInputError("the JSON schema has an enum with no values, which no answer can match; list at least one value")


def schema_parser(schema: dict[str, Any]):
    """lm-format-enforcer's parser for `schema`, once `check_schema` passes it; a schema that fails is a `BadInputError`."""
    lmfe = _enforcer_module()
    check_schema(schema)
    _typed_parts(decoder_schema(schema))
    budget = PATTERN_BUDGET.set(_StateBudget())
    try:
        parser = lmfe.JsonSchemaParser(decoder_schema(schema))
        _build_every_part(parser)
    except BadInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydantic and the parser raise many kinds
        first = (str(exc).splitlines() or [repr(exc)])[0]
        raise BadInputError(f"the JSON schema cannot be used: the decoder cannot hold answers to a part of it ({type(exc).__name__}: {first}); simplify that part") from None
    finally:
        PATTERN_BUDGET.reset(budget)
    return parser


MAX_PATTERN_STATES = 1_000  # states of one automaton built for a `pattern` (a step of its construction too)
MAX_PATTERN_STATES_TOTAL = 10_000  # states of every automaton built for one schema's patterns
PATTERN_BUDGET: contextvars.ContextVar["_StateBudget | None"] = contextvars.ContextVar("aigc_pattern_budget", default=None)


class _StateBudget:
    """The states left to the automata of the schema whose parser is being built (`schema_parser`)."""

    def __init__(self) -> None:
        self.left = MAX_PATTERN_STATES_TOTAL


class _TooManyStates(Exception):
    """An automaton for a pattern outgrew MAX_PATTERN_STATES, or the schema's outgrew MAX_PATTERN_STATES_TOTAL."""


def _bounded_pattern_automata() -> None:
    """interegular (which lm-format-enforcer turns a `pattern` into an automaton with) crawls each
    automaton's states one by one, with no bound: `[ab]*a[ab]{13}` has 2^14 states, and a quadratic
    crawl takes 45 s to find them. While `schema_parser` builds a parser, a crawl counts the states
    it finds against MAX_PATTERN_STATES and the schema's `PATTERN_BUDGET`, and a pattern that outgrows
    them is a `BadInputError` naming it (other users of interegular are left as they were)."""
    from interegular import fsm
    from lmformatenforcer import jsonschemaparser

    crawl = fsm.crawl

    def bounded_crawl(alphabet, initial, final, follow):
        budget, found = PATTERN_BUDGET.get(), 0
        if budget is None:
            return crawl(alphabet, initial, final, follow)

        def counted(state) -> bool:  # called once for each state found
            nonlocal found
            found, budget.left = found + 1, budget.left - 1
            if found > MAX_PATTERN_STATES or budget.left < 0:
                raise _TooManyStates
            return final(state)

        return crawl(alphabet, initial, counted, follow)

    fsm.crawl = bounded_crawl

    class RegexParser(jsonschemaparser.RegexParser):
        def __init__(self, pattern, *args, **kwargs):
            try:
                super().__init__(pattern, *args, **kwargs)
            except _TooManyStates:
                raise BadInputError(
                    f"the JSON schema's pattern {str(pattern)[:80]!r} needs an automaton of more than {MAX_PATTERN_STATES} states, or the schema's "
                    f"patterns more than {MAX_PATTERN_STATES_TOTAL} together, more than the decoder builds; simplify it (fewer or smaller "
                    "counted repetitions such as {13} after a * or +), or use minLength/maxLength"
                ) from None

    jsonschemaparser.RegexParser = RegexParser


PARSED_MAPS = ("properties", "$defs", "definitions")  # name -> schema, of what the enforcer's parser reads
PARSED_KEYS = ("items", "additionalProperties", "anyOf", "allOf", "oneOf")
TYPED_BY = {"type", "$ref", "anyOf", "allOf", "oneOf", "enum", "const"}  # what the parser takes a part's kind from


def _typed_parts(schema: dict[str, Any]) -> None:
    """A `BadInputError` naming the first part of a decoder schema that the parser can take no kind
    of value from (`{"properties": ...}` with no type, `{"if": ..., "then": ...}`), and its keywords."""
    parts: list[tuple[str, Any]] = [("", schema)]
    while parts:
        where, node = parts.pop()
        if not isinstance(node, dict):
            continue
        if not TYPED_BY & set(node):
            keywords = ", ".join(sorted(set(node) - ANNOTATIONS))
            raise BadInputError(f"the JSON schema cannot be used: its part {where or '/'} has no type, only {keywords}, which the decoder cannot hold answers to alone; give it a type")
        parts += [(f"{where}/{key}/{name}", value) for key in PARSED_MAPS if isinstance(node.get(key), dict) for name, value in node[key].items()]
        parts += [(f"{where}/{key}", node[key]) for key in PARSED_KEYS if isinstance(node.get(key), dict)]
        parts += [(f"{where}/{key}/{i}", value) for key in PARSED_KEYS if isinstance(node.get(key), list) for i, value in enumerate(node[key])]


def _build_every_part(parser) -> None:
    """Build the enforcer's parser of every part of the schema now (it builds them as the answer
    reaches them), so a part it cannot hold fails here, before decoding, not in the middle of an answer."""
    from lmformatenforcer.external.jsonschemaobject import JsonSchemaObject
    from lmformatenforcer.jsonschemaparser import get_parser

    extras = parser.context.model_class.extras
    definitions = extras.get("definitions", extras.get("$defs", {}))  # the one the enforcer follows
    nodes, followed = [parser.context.model_class], set()
    while nodes:
        node = nodes.pop()
        if not isinstance(node, JsonSchemaObject):
            continue
        get_parser(parser, node)
        name = node.ref.split("/")[-1] if node.ref and node.type is None else None
        if name is not None and name not in followed:  # each definition once: a recursive schema ends
            followed.add(name)
            nodes.append(JsonSchemaObject(**definitions[name]))
        items = node.items if isinstance(node.items, list) else [node.items]
        nodes += [*node.anyOf, *node.allOf, *node.oneOf, *(node.properties or {}).values(), node.additionalProperties, *items]


def _fixed_strings(node: Any) -> Iterator[str]:
    """Every enum and const string and property name in a schema: text the decoder writes as it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "enum" and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            elif key == "const" and isinstance(value, str):
                yield value
            else:
                if key == "properties" and isinstance(value, dict):
                    yield from value
                yield from _fixed_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _fixed_strings(value)


SMALL_RANGE = 64  # integer ranges up to this many values are decoded as a choice among them
ANY = {"anyOf": [{"type": kind} for kind in ("string", "number", "boolean", "null", "object", "array")]}  # any JSON, as the enforcer spells it
ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}  # keys that allow anything


def decoder_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the decoder follows it: the same answers, in forms lm-format-enforcer's parser
    holds. A root that refers to itself (`"$ref": "#"`) becomes a definition; see `_decoder_node`."""
    if not _refers_to(schema, "#"):
        return _decoder_node(schema)
    key = "definitions" if "definitions" in schema else "$defs"
    definitions = dict(schema.get(key) or {})
    name = next(n for n in (f"root{i or ''}" for i in range(len(definitions) + 1)) if n not in definitions)
    definitions[name] = {k: v for k, v in schema.items() if k != key}
    moved = _renamed_refs({key: definitions}, "#", f"#/{key}/{name}")
    return _decoder_node({**moved, "$ref": f"#/{key}/{name}"})


def _refers_to(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers_to(v, ref) for k, v in node.items() if k not in DATA_KEYS)
    return isinstance(node, list) and any(_refers_to(v, ref) for v in node)


def _renamed_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, list):
        return [_renamed_refs(v, old, new) for v in node]
    if not isinstance(node, dict):
        return node
    return {k: new if k == "$ref" and v == old else v if k in DATA_KEYS else _renamed_refs(v, old, new) for k, v in node.items()}


def _decoder_node(node: Any) -> Any:
    """A (sub)schema as the decoder follows it: `true` and a schema of annotations alone are any JSON
    spelled out; an `allOf` whose branches do not clash is one schema; an `enum` (or `const`) of
    values of several kinds (`["a", null]`) is an `anyOf` of one choice per kind; an integer with a
    small `minimum`..`maximum` range is a choice among its values (the parser takes no bounds)."""
    if node is True or (isinstance(node, dict) and set(node) <= ANNOTATIONS):
        return ANY
    if not isinstance(node, dict):
        return node
    node = _merged_all_of(node)
    node = dict(node)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {name: _decoder_node(v) for name, v in node[key].items()}
    for key in _SCHEMA_KEYS:
        if isinstance(node.get(key), list):
            node[key] = [_decoder_node(v) for v in node[key]]
        elif key in node:
            node[key] = _decoder_node(node[key])
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("enum"), list) and "anyOf" not in node:
        node = _enum_choices(node)
    low, high = _bound(node, "minimum", "exclusiveMinimum", 1), _bound(node, "maximum", "exclusiveMaximum", -1)
    if node.get("type") == "integer" and "enum" not in node and low is not None and high is not None and 0 <= high - low < SMALL_RANGE:
        node["enum"] = list(range(math.ceil(low), math.floor(high) + 1))
    return node


def _merged_all_of(node: dict) -> dict:
    """`node` with its `allOf` branches merged into it where no two set a rule differently (the
    enforcer would keep only the last branch's rules and the others' `properties`)."""
    branches = node.get("allOf")
    if not isinstance(branches, list) or len(branches) < 2 or not all(isinstance(b, dict) and "$ref" not in b for b in branches):
        return node
    merged: dict[str, Any] = {}
    for part in [{k: v for k, v in node.items() if k != "allOf"}, *branches]:
        for key, value in part.items():
            if key == "required":
                merged[key] = list(dict.fromkeys([*merged.get(key, []), *value]))
            elif key == "properties" and isinstance(value, dict) and isinstance(merged.get(key), dict):
                if any(name in merged[key] and merged[key][name] != v for name, v in value.items()):
                    return node
                merged[key] = {**merged[key], **value}
            elif key in merged and merged[key] != value and key not in ANNOTATIONS:
                return node
            else:
                merged.setdefault(key, value)
    return merged


def _enum_choices(node: dict) -> dict:
    """An `enum` the enforcer cannot hold as it is (strings and numbers mixed, `null`, booleans) as
    an `anyOf` of choices it can; a lone `true` or `false`, an object or an array is a `BadInputError`."""
    values = node["enum"]
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(strings) == len(values) or len(numbers) == len(values):
        return node
    flags = {v for v in values if isinstance(v, bool)}
    odd = [v for v in values if not isinstance(v, (str, int, float)) and v is not None or isinstance(v, bool) and len(flags) == 1]
    if odd:
        raise BadInputError(
            f"the decoder cannot hold answers to the JSON schema's enum or const value {json.dumps(odd[0])} (it holds strings, numbers, "
            "null, and true and false together); use a field of that type instead"
        )
    choices = [{"enum": strings}] * bool(strings) + [{"enum": numbers}] * bool(numbers) + [{"type": "boolean"}] * bool(flags) + [{"type": "null"}] * (None in values)
    rest = {k: v for k, v in node.items() if k not in ("enum", "type")}
    return {**rest, **choices[0]} if len(choices) == 1 else {**rest, "anyOf": choices}


UNHELD = (  # rules lm-format-enforcer's parser does not hold an answer to
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "oneOf", "not", "if", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "dependencies", "uniqueItems", "contains",
    "prefixItems", "additionalItems", "unevaluatedProperties", "unevaluatedItems", "format", "allOf",
)
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")  # name -> schema
_SCHEMA_KEYS = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames", "anyOf", "allOf", "oneOf", "prefixItems",
    "additionalItems", "unevaluatedProperties", "unevaluatedItems",
)


def unheld_rules(schema: Any) -> list[str]:
    """The rules in `schema` that the decoder does not hold answers to, so an answer may break them
    (an integer's small `minimum`..`maximum` range is held: it is decoded as a choice)."""
    found: set[str] = set()
    level = [decoder_schema(schema)]
    while level:
        nodes, level = level, []
        for node in nodes:
            if isinstance(node, list):
                level += node
            elif isinstance(node, dict):
                found.update(key for key in UNHELD if key in node and not (key in BOUNDS and "enum" in node) and not (key == "allOf" and len(node[key]) < 2))  # a bounded enum is held, and an allOf of one
                level += [v for key in _SCHEMA_MAPS if isinstance(node.get(key), dict) for v in node[key].values()]
                level += [node[key] for key in _SCHEMA_KEYS if key in node]
    return sorted(found, key=UNHELD.index)


def _bound(node: dict, inclusive: str, exclusive: str, step: int) -> float | None:
    """A number bound as an inclusive one for integers (`exclusiveMinimum: 0` is `minimum: 1`)."""
    for key, shift in ((inclusive, 0), (exclusive, step)):
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value + shift
    return None


@functools.cache
def _enforcer_type():
    """lm-format-enforcer's `TokenEnforcer`, except that a parser that fails raises (an
    `LMFormatEnforcerException`) instead of logging it and ending the answer as if it were whole."""
    import logging

    lmfe = _enforcer_module()
    from lmformatenforcer import tokenenforcer
    from lmformatenforcer.exceptions import LMFormatEnforcerException

    logger = logging.getLogger("lmformatenforcer")
    logger.addFilter(_no_enforcer_tracebacks)  # SchemaMask raises that failure itself
    tokenenforcer.logging = _ModuleLogging(logger)

    class Enforcer(lmfe.TokenEnforcer):
        def _collect_allowed_tokens(self, *args):
            try:
                super()._collect_allowed_tokens(*args)
            except LMFormatEnforcerException:
                raise
            except Exception as exc:  # noqa: BLE001 - the parser's own bugs and limits, of any kind
                raise LMFormatEnforcerException(f"{type(exc).__name__}: {exc}") from exc

    return Enforcer


@functools.cache
def _fix_enforcer() -> None:
    """lm-format-enforcer's parser, changed once, before any token table or parser is built, so that
    what it lets through is JSON: no object ends right after a comma, no string holds a raw control
    character, and blank space a string starts with counts toward its length; and a pattern's automaton
    is built within bounds (`_bounded_pattern_automata`)."""
    _no_trailing_commas()
    _no_control_characters_in_strings()
    _leading_blank_space_in_strings_counts()
    _bounded_pattern_automata()


CONTROL_CHARACTERS = dict.fromkeys(range(0x20))  # U+0000-U+001F, which JSON allows in a string only escaped ("\n")


def _no_control_characters_in_strings() -> None:
    """lm-format-enforcer (0.11) lets a string hold any character a token has, a raw line break or
    tab too, which JSON forbids (`json.loads` refuses them): its table of tokens that free text may
    take leaves out every token that holds one, and inside a quoted string that follows a `pattern`
    its parser no longer offers them (other strings take the characters of the parser's alphabet,
    which `SchemaMask` leaves them out of). Escaped (`\\n`, `\\t`), they are written as before."""
    from lmformatenforcer.jsonschemaparser import StringParsingState
    from lmformatenforcer.tokenizerprefixtree import JsonFreetextTokenCache

    offered = StringParsingState.get_allowed_characters

    def get_allowed_characters(self) -> str:
        patterned = self.regex_parser and self.seen_opening_quote and not self.seen_closing_quote  # a pattern's \s or [\t] offers them
        return offered(self).translate(CONTROL_CHARACTERS) if patterned else offered(self)

    StringParsingState.get_allowed_characters = get_allowed_characters
    add_token = JsonFreetextTokenCache.add_token

    def add_free_text_token(self, token_str: str, token_int: int) -> None:
        if token_str == token_str.translate(CONTROL_CHARACTERS):
            add_token(self, token_str, token_int)

    JsonFreetextTokenCache.add_token = add_free_text_token


def _leading_blank_space_in_strings_counts() -> None:
    """lm-format-enforcer (0.11) takes blank space right after a string's opening quote for blank
    space before the string: it leaves it out of the text it counts, so `" abc"` passed a maxLength
    of 3 (and a pattern did not see it). Inside the quotes it is now read as any other character."""
    from lmformatenforcer.jsonschemaparser import WHITESPACE_CHARACTERS, PrimitiveParsingState, StringParsingState

    added = StringParsingState.add_character

    def add_character(self, new_character: str):
        quoted = self.require_opening_quote and self.seen_opening_quote and not self.seen_closing_quote
        if not (quoted and not self.parsed_string and new_character in WHITESPACE_CHARACTERS):
            return added(self, new_character)
        new = PrimitiveParsingState.add_character(self, new_character)  # what `added` does with a character that is no quote or backslash
        if new.regex_parser:
            new.regex_parser = new.regex_parser.add_character(new_character)
        return new

    StringParsingState.add_character = add_character


def _no_trailing_commas() -> None:
    """lm-format-enforcer (0.11) lets an object end right after a comma where another key could
    come (`{"a": 1,}`, invalid JSON): an object with optional fields left, or any object of a
    `json_object` answer. Its object parser no longer offers `}` there (after `{` it still does)."""
    from lmformatenforcer.jsonschemaparser import ObjectParsingStage, ObjectParsingState

    offered = ObjectParsingState.get_allowed_characters

    def get_allowed_characters(self) -> str:
        after_comma = self.current_stage == ObjectParsingStage.PARSING_KEY_OR_END and self.existing_keys
        return offered(self).replace("}", "") if after_comma else offered(self)

    ObjectParsingState.get_allowed_characters = get_allowed_characters


class _ModuleLogging:
    """The `logging` module as lm-format-enforcer's token enforcer calls it (`logging.exception`,
    `logging.basicConfig`), logging to its own `logger` in place of the root logger, and configuring
    none: the root logger and its handlers stay the program's."""

    def __init__(self, logger) -> None:
        self.logger = logger

    def __getattr__(self, name: str):
        import logging

        return getattr(self.logger, name, None) or getattr(logging, name)

    @staticmethod
    def basicConfig(**kwargs) -> None:  # noqa: N802 - logging's name
        pass


def _no_enforcer_tracebacks(record) -> bool:
    """A filter of lm-format-enforcer's logger: where the parser fails outside the part `Enforcer` wraps,
    the enforcer logs a traceback (and ends the answer, which `SchemaMask` turns into an error)."""
    return not record.getMessage().startswith("Unknown LMFormatEnforcer Problem")


def _can_end(parser) -> bool:
    try:
        return parser.can_end()
    except Exception:  # noqa: BLE001 - a parser that gave up may fail here too
        return False


def _index(ids: list[int], width: int):
    """The `ids` below `width` as an index tensor: torch reads a list index one element at a time,
    ~40 ms a row a step for the nearly whole vocabulary a string field allows, against ~2 ms this way."""
    import torch

    index = torch.frombuffer(array.array("q", ids), dtype=torch.long) if ids else torch.empty(0, dtype=torch.long)
    return index[index < width]


class SchemaMask:
    """A logits processor: every token the schema does not allow next gets -inf.

    The first call's width is the prompt's (rows are left-padded to it); the enforcer sees only what
    each row generated after it, so one enforcer serves every row (its states are keyed by those
    tokens, and rows that wrote the same share them). Only the states of the rows' latest tokens are
    kept. A row that ended (fed padding after end-of-sequence) is stopped by the parser, not failed."""

    def __init__(self, tokenizer, schema: dict[str, Any]):
        table = token_table(tokenizer)
        fixed = set(_fixed_strings(schema))
        unspellable = sorted(v for v in fixed if not set(table.tokenizer_alphabet).issuperset(v))
        if unspellable:
            raise BadInputError(
                f"the JSON schema's property name, enum or const value {unspellable[0]!r} holds characters that this model writes "
                "as several byte tokens, which the decoder cannot hold it to; use a plain string field instead"
            )
        unescaped = sorted(v for v in fixed if re.search(r'["\\\x00-\x1f]', v))
        if unescaped:
            raise BadInputError(
                f"the JSON schema's property name, enum or const value {unescaped[0]!r} holds a quote, backslash or control "
                "character, which the decoder cannot write escaped; use a plain string field instead"
            )
        self.enforcer = _enforcer_type()(table, schema_parser(schema))
        self.end, self.blank_start, self.blank_end = table.eos_token_id, table.blank_start, table.blank_end
        self.ends = frozenset(self.end if isinstance(self.end, list) else [self.end])
        self.blank_tails, self.all_blank, self.break_tails = table.blank_tails, table.all_blank, table.break_tails
        self.blank_lines, self.second_breaks = table.blank_lines, sorted(set(table.break_heads) | set(table.blank_lines))
        self.byte_pieces = table.byte_pieces
        self.bad_starts = [t for t, raw in table.byte_pieces.items() if raw is None or not _utf8_prefix(raw)]  # no character starts so
        self.blank_runs: dict[tuple[int, ...], tuple[int, int]] = {(): (0, 0)}  # whitespace characters and line breaks each row's answer ends with
        parser = self.enforcer.root_parser
        parser.config.max_consecutive_whitespaces = MAX_WHITESPACE  # the enforcer's own config, made for the tokenizer's alphabet
        parser.config.force_json_field_order = True
        parser.config.alphabet = parser.config.alphabet.translate(CONTROL_CHARACTERS)  # what a string takes: no raw control character
        parser.context.alphabet_without_quotes = parser.config.alphabet.replace('"', "")  # set from the default alphabet before
        self.prompt_width: int | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1]
        mask, width = torch.full_like(scores, float("-inf")), scores.shape[1]
        sequences = [tuple(s) for s in input_ids[:, self.prompt_width :].tolist()]
        for row, sequence in enumerate(sequences):
            allowed = self._allowed(sequence)
            pending = self._pending(sequence)
            if pending:  # inside a character: only the bytes that go on with it
                allowed = [t for t in allowed if self.byte_pieces.get(t) is not None and _utf8_prefix(pending + self.byte_pieces[t])]
            blanks, breaks = self._blank_run(sequence)
            if not sequence or blanks >= MAX_BLANK_RUN:  # no blank space before the JSON, nor more in a string
                allowed = [t for t in allowed if t not in self.blank_start]
            elif self.end in allowed:  # nor after it, where it may end
                allowed = [t for t in allowed if t not in self.blank_end]
            mask[row, _index(allowed, width)] = 0
            refused = self.second_breaks if breaks else self.blank_lines  # no second line break in a run (",\n\n" after "\n" neither)
            mask[row, _index(refused, width)] = float("-inf")
            if not pending:
                mask[row, _index(self.bad_starts, width)] = float("-inf")
        states, runs = self.enforcer.prefix_states, self.blank_runs
        self.enforcer.prefix_states = {s: states[s] for s in sequences}  # the next step needs only these
        self.blank_runs = {s: runs[s] for s in sequences}
        return scores + mask

    def _pending(self, sequence: tuple[int, ...]) -> bytes:
        """The bytes of the character that `sequence`'s answer ends inside of (b"" where it ends on a
        whole one). The parser reads a byte token as one unknown character, so without this a string
        could end, or reach its maxLength, on part of a character, which decodes as U+FFFD."""
        start = len(sequence)
        while start and sequence[start - 1] in self.byte_pieces:
            start -= 1
        if start == len(sequence):
            return b""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        decoder.decode(b"".join(self.byte_pieces[t] or b"" for t in sequence[start:]))
        return decoder.getstate()[0]

    def _blank_run(self, sequence: tuple[int, ...]) -> tuple[int, int]:
        """How many whitespace characters `sequence`'s text ends with, and how many line breaks they
        hold (the enforcer holds the characters between JSON's parts to MAX_WHITESPACE, but in a string,
        where it counts none, a small model may write spaces until its tokens run out; and within
        MAX_WHITESPACE it may write line breaks alone, "\n\n\n" again and again)."""
        if sequence not in self.blank_runs:
            token = sequence[-1]
            tail = (self.blank_tails.get(token, 0), self.break_tails.get(token, 0))
            if token in self.all_blank:
                blanks, breaks = self._blank_run(sequence[:-1])
                tail = (blanks + tail[0], breaks + tail[1])
            self.blank_runs[sequence] = tail
        return self.blank_runs[sequence]

    def _allowed(self, sequence: tuple[int, ...]) -> list[int]:
        """The tokens that may follow `sequence` (a list: no bitmask asked for); a parser that fails
        is an `AnswerJSONError`, never an answer cut where it was."""
        from lmformatenforcer.exceptions import LMFormatEnforcerException

        try:
            allowed = self.enforcer.get_allowed_tokens(list(sequence)).allowed_tokens
            state = self.enforcer.prefix_states.get(sequence)
            if state is not None and len(allowed) <= len(self.ends) and self.ends.issuperset(allowed) and not _can_end(state.parser):  # it gave up: an end it does not allow
                raise LMFormatEnforcerException("the parser gave up where the answer cannot end")
            return allowed
        except LMFormatEnforcerException as exc:
            raise AnswerJSONError(f"the JSON schema decoder failed in the middle of the answer ({exc}); simplify that part of the schema") from None
