"""Structured output: decoding held to a JSON Schema by lm-format-enforcer's parser.

At each step a row may only take the tokens that keep its answer a prefix of JSON the schema
allows, and once the JSON is whole, only end-of-sequence (no blank space before or after it). The table of what each token spells is
built once per tokenizer (0.4-1.4 s for a 49k vocabulary). Fields come in the order of the
schema's `required` list, then the others, and at most a few whitespace characters come in a row,
so a small model does not spend its tokens on indentation.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterator

from ..errors import BadInputError, MissingExtraError

MAX_WHITESPACE = 4  # whitespace characters in a row ("\n" and an indent of three)


def _enforcer_module():
    try:
        import lmformatenforcer
    except ImportError:
        raise MissingExtraError("a JSON schema needs lm-format-enforcer: pip install lm-format-enforcer") from None
    return lmformatenforcer


@functools.lru_cache(maxsize=4)
def token_table(tokenizer):
    """What each regular token spells (as lm-format-enforcer's transformers integration builds it,
    which newer transformers no longer import). Every token that decodes whole starts a new piece
    of text for the parser: only byte tokens of an unfinished UTF-8 character are read together, so
    the parser never decodes the whole answer again at each step."""
    lmfe = _enforcer_module()
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
    return data


def _refs_resolve(schema: dict[str, Any]) -> None:
    """Every `$ref` names a part of the schema itself (`#/$defs/...`); anything else is a `BadInputError`."""
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                target: Any = schema
                for part in str(ref).removeprefix("#").strip("/").split("/") if str(ref).startswith("#") else [None]:
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


def schema_parser(schema: dict[str, Any]):
    """lm-format-enforcer's parser for `schema`, once the schema is checked against JSON Schema's own
    rules and its references resolve; a schema that fails is a `BadInputError`."""
    import jsonschema

    _check_depth(schema)
    lmfe = _enforcer_module()
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadInputError(f"the JSON schema is not valid: {exc.message}") from None
    _refs_resolve(schema)
    if _has_empty_enum(schema):
        raise BadInputError("the JSON schema has an enum with no values, which no answer can match; list at least one value")
    try:
        return lmfe.JsonSchemaParser(schema)
    except Exception as exc:  # noqa: BLE001 - pydantic and the parser raise many kinds
        first = (str(exc).splitlines() or [repr(exc)])[0]
        raise BadInputError(f"the JSON schema cannot be used: {type(exc).__name__}: {first}") from None


def _fixed_strings(node: Any) -> Iterator[str]:
    """Every enum and const string in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "enum" and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            elif key == "const" and isinstance(value, str):
                yield value
            else:
                yield from _fixed_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _fixed_strings(value)


SMALL_RANGE = 64  # integer ranges up to this many values are decoded as a choice among them


def _decoder_schema(node: Any) -> Any:
    """The schema as the decoder follows it: an integer with a small `minimum`..`maximum` range becomes
    a choice among its values, which the parser can hold an answer to (it takes no bounds)."""
    if isinstance(node, list):
        return [_decoder_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _decoder_schema(v) for k, v in node.items()}
    low, high = _bound(node, "minimum", "exclusiveMinimum", 1), _bound(node, "maximum", "exclusiveMaximum", -1)
    if node.get("type") == "integer" and "enum" not in node and low is not None and high is not None and 0 <= high - low < SMALL_RANGE:
        node["enum"] = list(range(math.ceil(low), math.floor(high) + 1))
    return node


UNHELD = (  # rules lm-format-enforcer's parser does not hold an answer to
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "oneOf", "not", "if", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "dependencies", "uniqueItems", "contains",
    "prefixItems", "additionalItems", "unevaluatedProperties", "unevaluatedItems", "format",
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
    level = [_decoder_schema(schema)]
    while level:
        nodes, level = level, []
        for node in nodes:
            if isinstance(node, list):
                level += node
            elif isinstance(node, dict):
                found.update(key for key in UNHELD if key in node and not (key in BOUNDS and "enum" in node))  # a bounded enum is held
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


class SchemaMask:
    """A logits processor: every token the schema does not allow next gets -inf.

    The first call's width is the prompt's (rows are left-padded to it); the enforcer sees only what
    each row generated after it, so one enforcer serves every row (its states are keyed by those
    tokens, and rows that wrote the same share them). Only the states of the rows' latest tokens are
    kept. A row that ended (fed padding after end-of-sequence) is stopped by the parser, not failed."""

    def __init__(self, tokenizer, schema: dict[str, Any]):
        lmfe = _enforcer_module()
        table = token_table(tokenizer)
        unspellable = sorted({v for v in _fixed_strings(schema) if not set(table.tokenizer_alphabet).issuperset(v)})
        if unspellable:
            raise BadInputError(
                f"the JSON schema's enum or const value {unspellable[0]!r} holds characters that this model writes "
                "as several byte tokens, which the decoder cannot hold it to; use a plain string field instead"
            )
        self.enforcer = lmfe.TokenEnforcer(table, schema_parser(_decoder_schema(schema)))
        self.end, self.blank_start, self.blank_end = table.eos_token_id, table.blank_start, table.blank_end
        parser = self.enforcer.root_parser
        parser.config.max_consecutive_whitespaces = MAX_WHITESPACE  # the enforcer's own config, made for the tokenizer's alphabet
        parser.config.force_json_field_order = True
        parser.context.alphabet_without_quotes = parser.config.alphabet.replace('"', "")  # set from the default alphabet before
        self.prompt_width: int | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1]
        mask = torch.full_like(scores, float("-inf"))
        sequences = [tuple(s) for s in input_ids[:, self.prompt_width :].tolist()]
        for row, sequence in enumerate(sequences):
            allowed = self.enforcer.get_allowed_tokens(list(sequence)).allowed_tokens  # a list: no bitmask asked for
            if not sequence:  # no blank space before the JSON
                allowed = [t for t in allowed if t not in self.blank_start]
            elif self.end in allowed:  # nor after it, where it may end
                allowed = [t for t in allowed if t not in self.blank_end]
            mask[row, [t for t in allowed if t < scores.shape[1]]] = 0
        states = self.enforcer.prefix_states
        self.enforcer.prefix_states = {s: states[s] for s in sequences}  # the next step needs only these
        return scores + mask
