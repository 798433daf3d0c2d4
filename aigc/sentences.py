"""Splitting text into sentences, and sentences too long for a budget into runs of words."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "no", "fig", "approx", "cf", "jr", "sr"}
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=\S)|(?<=[。！？])")


def split_sentences(text: str) -> list[str]:
    """Sentences of one block's text; common abbreviations and initials do not end a sentence."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        tail = text[max(start, end - 64) : end]  # the last word is all that counts: never the whole run since `start`
        word = tail.rsplit(None, 1)[-1].rstrip(".").lower() if tail.strip() else ""
        if text[end - 1 : end] == "." and (word in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha())):
            continue
        piece = text[start : match.end()].strip()
        if piece:
            sentences.append(piece)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def word_runs(sentence: str, size: int, budget: int) -> list[str]:
    """`sentence` (`size` tokens, over `budget`) cut into runs of words of about `budget` tokens."""
    words = sentence.split()
    step = max(1, len(words) * budget // (size + 1))
    return [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
