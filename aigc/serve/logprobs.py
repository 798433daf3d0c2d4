"""Token log-probabilities for the server: what the scheduler records, and OpenAI's two shapes.

`/v1/completions` takes `logprobs: K` and answers the legacy shape (`tokens`, `token_logprobs`,
`top_logprobs` as `{token: logprob}` with the chosen token added, `text_offset`; part of a UTF-8
character is named by its bytes, `bytes:\\xf0\\x9f`); `echo` puts the
prompt's tokens first, the very first one without a log-probability. `/v1/chat/completions`
takes `logprobs: true` and `top_logprobs: K` and answers `{"content": [{token, logprob, bytes,
top_logprobs}]}`. Values are the model's own distribution, before temperature, top-p and
penalties (what vLLM reports by default). Needs torch only through the engine it is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ..engine.token_bytes import TokenBytes

MAX_TOP = 20  # the most alternatives a request may ask for (OpenAI's and vLLM's default limit)


@dataclass(frozen=True)
class TokenLogprob:
    """One token: its text and bytes, its log-probability (None for a prompt's first token), the
    likeliest alternatives as `(text, bytes, logprob)`, and where its text starts (characters)."""

    token: str
    bytes: bytes
    logprob: float | None
    top: tuple[tuple[str, bytes, float], ...] | None
    offset: int

    def shifted(self, by: int) -> "TokenLogprob":
        return dataclasses.replace(self, offset=self.offset + by) if by else self


class TokenTexts(TokenBytes):
    """`TokenBytes` that also makes the log-probability entries of its tokens."""

    def entry(self, token: int, logprob: float | None, top, offset: int) -> TokenLogprob:
        text, raw = self(token)
        alternatives = None if top is None else tuple((*self(i), lp) for i, lp in top)
        return TokenLogprob(text, raw, logprob, alternatives, offset)


def prompt_offsets(tokenizer, text: str, ids: list[int], texts: TokenTexts) -> list[int]:
    """Where each prompt token's text starts in `text`: the fast tokenizer's offsets when it
    reproduces `ids`, else the running length of the decoded tokens."""
    try:
        encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        if list(encoded["input_ids"]) == list(ids):
            return [start for start, _ in encoded["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        pass
    special, starts, at = set(getattr(tokenizer, "all_special_ids", ())), [], 0
    for token in ids:
        starts.append(at)
        if token not in special:
            at += len(texts(token)[0])
    return starts


def prompt_entries(call: Callable[..., Any], model, rows: list[list[int]], top: int, texts: TokenTexts, starts: list[list[int]]) -> list[list[TokenLogprob]]:
    """Each echoed prompt's tokens with their log-probabilities; `starts` are their offsets in each
    prompt's text (`prompt_offsets`). `call(fn, *args)` runs the model's work (the server: on its
    scheduler thread): the prompts in one forward pass (`prompt_logprobs_many`; the caller keeps
    rows x longest row within `PROMPT_CHUNK`), a single prompt a `PROMPT_CHUNK` piece a call
    (`PromptScorer`); the entries are made here, in the caller's thread."""
    from ..engine.sampling import prompt_logprobs_many

    scored = prompt_logprobs_many(model, rows, top, run=call)
    entries = []
    for ids, at, (chosen, best) in zip(rows, starts, scored):
        entries.append([texts.entry(ids[0], None, None, at[0])] + [texts.entry(token, chosen[k], best[k], at[k + 1]) for k, token in enumerate(ids[1:])])
    return entries


def legacy_name(text: str, raw: bytes) -> str:
    """A token as the legacy shape names it: its text, or for part of a UTF-8 character its bytes
    (`bytes:\\xf0\\x9f`, as OpenAI writes them), so that such tokens stay apart as `top_logprobs` keys."""
    return text if "\ufffd" not in text else "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def completion_shape(entries: list[TokenLogprob]) -> dict:
    """The legacy `/v1/completions` shape; `top_logprobs` holds the alternatives plus the chosen token."""
    tops = []
    for e in entries:
        if e.top is None:
            tops.append(None)
            continue
        top = {legacy_name(text, raw): lp for text, raw, lp in e.top}
        top.setdefault(legacy_name(e.token, e.bytes), e.logprob)
        tops.append(top)
    return {
        "tokens": [legacy_name(e.token, e.bytes) for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": tops,
        "text_offset": [e.offset for e in entries],
    }


def chat_shape(entries: list[TokenLogprob]) -> dict:
    """The `/v1/chat/completions` shape."""
    return {
        "content": [
            {
                "token": e.token,
                "logprob": e.logprob,
                "bytes": list(e.bytes),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(b)} for t, b, lp in (e.top or ())],
            }
            for e in entries
        ],
        "refusal": None,
    }
