"""What each token spells, as text and as bytes: a token that is part of a UTF-8 character (byte-level
BPE or SentencePiece byte fallback) keeps its own bytes. Read by the structured decoder and the
server's log-probabilities."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet back to bytes (the reverse of `bytes_to_unicode`)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


class TokenBytes:
    """Token id -> (text, bytes), cached; a token that is part of a UTF-8 character keeps its own bytes."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, bytes]] = {}

    def __call__(self, token: int) -> tuple[str, bytes]:
        found = self._cache.get(token)
        if found is None:
            found = self._cache[token] = self._look_up(token)
        return found

    def _look_up(self, token: int) -> tuple[str, bytes]:
        text = self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if "\ufffd" not in text:
            return text, text.encode("utf-8")
        piece = self.tokenizer.convert_ids_to_tokens(token) or ""
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):  # SentencePiece byte fallback
            return text, bytes([int(piece[3:5], 16)])
        table = byte_decoder()
        if piece and all(ch in table for ch in piece):  # byte-level BPE
            return text, bytes(table[ch] for ch in piece)
        return text, text.encode("utf-8")
