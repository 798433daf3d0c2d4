"""Structured output: decoding held to a JSON Schema by lm-format-enforcer's parser.

At each step a row may only take the tokens that keep its answer a prefix of JSON the schema
allows, and once the JSON is whole, only end-of-sequence. The table of what each token spells is
built once per tokenizer (about 0.4 s for a 49k vocabulary). Fields come in the schema's order
(its `required` list first), and at most a few whitespace characters come in a row, so a small
model does not spend its tokens on indentation.
"""

from __future__ import annotations

import functools
from typing import Any

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
    """What each regular token spells, and whether it starts a word (as lm-format-enforcer's
    transformers integration builds it, which newer transformers no longer import)."""
    lmfe = _enforcer_module()
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for token in range(len(tokenizer)):
        if token in special:
            continue
        after_zero = tokenizer.decode([zero, token])[1:]  # keeps the leading space of a word start
        regular.append((token, after_zero, len(after_zero) > len(tokenizer.decode([token]))))

    def decode(tokens: list[int]) -> str:
        """The text so far, an unfinished UTF-8 sequence left out. A character no token starts with
        (one only byte tokens spell, as most CJK characters) is outside the parser's alphabet and
        would stop it: it stands as "x", which is valid wherever such a character could be."""
        text = tokenizer.decode(tokens).rstrip("\ufffd")
        return text if alphabet.issuperset(text) else "".join(c if c in alphabet else "x" for c in text)

    data = lmfe.TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, len(tokenizer))
    alphabet = set(data.tokenizer_alphabet)
    return data


def schema_parser(schema: dict[str, Any]):
    """lm-format-enforcer's parser for `schema`; a schema it cannot follow is a `BadInputError`."""
    lmfe = _enforcer_module()
    try:
        return lmfe.JsonSchemaParser(schema)
    except Exception as exc:  # noqa: BLE001 - pydantic and the parser raise many kinds
        raise BadInputError(f"the JSON schema cannot be used: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


class SchemaMask:
    """A logits processor: every token the schema does not allow next gets -inf.

    The first call's width is the prompt's (rows are left-padded to it); the enforcer sees only what
    each row generated after it, so one enforcer serves every row (its states are keyed by those
    tokens, and rows that wrote the same share them) and keeps no copy of the prompt per step. A row
    that ended (fed padding after end-of-sequence) is stopped by the parser, not failed."""

    def __init__(self, tokenizer, schema: dict[str, Any]):
        lmfe = _enforcer_module()
        self.enforcer = lmfe.TokenEnforcer(token_table(tokenizer), schema_parser(schema))
        config = self.enforcer.root_parser.config  # the enforcer's own, made for the tokenizer's alphabet
        config.max_consecutive_whitespaces = MAX_WHITESPACE
        config.force_json_field_order = True
        self.prompt_width: int | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1]
        mask = torch.full_like(scores, float("-inf"))
        for row, sequence in enumerate(input_ids[:, self.prompt_width :].tolist()):
            allowed = self.enforcer.get_allowed_tokens(sequence).allowed_tokens  # a list: no bitmask asked for
            mask[row, [t for t in allowed if t < scores.shape[1]]] = 0
        return scores + mask
