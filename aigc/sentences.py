"""Splitting text into sentences, and sentences too long for a budget into runs of words."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "no", "fig", "approx", "cf", "jr", "sr"}
WIDE = re.compile(r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")  # CJK, kana, hangul, full-width
_SENTENCE_END = re.compile(r"(?<=[.!?…؟।۔])(?:[ \u00a0\u202f]?[»\"'”’)\]])*\s+(?=\S)|(?<=[。！？])")  # Arabic ؟, Hindi ।, Urdu ۔; French « ... . »


def split_sentences(text: str, unbroken: list[tuple[int, int]] = ()) -> list[str]:
    """Sentences of one block's text; common abbreviations and initials do not end a sentence, and
    nothing is cut inside the `(start, end)` spans of `unbroken` (inline code, say)."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if any(a < end < b for a, b in unbroken):
            continue
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
    """`sentence` (`size` tokens, over `budget`) cut into runs of words of about `budget` tokens; a
    sentence with too few spaces for that (Chinese, Japanese) into runs of characters, after a comma
    where there is one."""
    words = sentence.split()
    if len(words) > size // budget or not WIDE.search(sentence):  # a URL or data URI stays whole in its run
        step = max(1, len(words) * budget // (size + 1))
        return [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
    step = max(1, len(sentence) * budget // (size + 1))
    runs: list[str] = []
    rest = sentence
    while len(rest) > step:
        cut = max(rest.rfind(comma, step // 2, step) for comma in "，、,;；")
        cut = cut + 1 if cut > 0 else step
        runs.append(rest[:cut].strip())
        rest = rest[cut:]
    return [run for run in runs + [rest.strip()] if run]
