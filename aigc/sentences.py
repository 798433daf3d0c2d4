"""Splitting text into sentences, and sentences too long for a budget into runs of words, and runs
too long for it into pieces."""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from typing import Callable, Iterable

_ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "no", "fig", "approx", "cf", "jr", "sr"}
# Chinese and Japanese characters (ideographs, kana, bopomofo), not their punctuation; not hangul, as Korean puts spaces between words
_IDEOGRAPHIC = "\u2e80-\u2fff\u3040-\u312f\u3190-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
# two columns wide: those, their punctuation, hangul and the full-width forms; for a line's width and where a line
# without spaces may be cut, not for spacing (`unspaced` says where no space goes)
WIDE = re.compile(f"[{_IDEOGRAPHIC}\u1100-\u11ff\u3000-\u303f\u3130-\u318f\uac00-\ud7af\uff00-\uffef]")
_UNSPACED = re.compile(f"[{_IDEOGRAPHIC}\u3000-\u303f\ufe10-\ufe1f\ufe30-\ufe4f\uff01-\uff65]")  # and the punctuation set with them (full width)
_TOKEN = re.compile(rf"[{_IDEOGRAPHIC}]|[^\s{_IDEOGRAPHIC}]+")
_LETTER = re.compile(r"\w")
CLOSERS = "」』）〉》】〕〗〙〛〞｣”’»\"')]"  # may follow a sentence's end: 「はい。」, `He said "no."`
_OPENERS = "「『（〈《【〔〖〘〚〝｢“‘«\"'(["
_MARKS = "。！？｡!?‼⁇⁈⁉"  # a run of them ends a Chinese or Japanese sentence: 本当？！
_SENTENCE_END = re.compile(
    rf"(?<=[.!?…؟।۔])(?:[ \u00a0\u202f]?[{re.escape(CLOSERS)}])*\s+(?=\S)"  # Arabic ؟, Hindi ।, Urdu ۔; French « ... . »
    # Chinese and Japanese: after 。！？ or ｡ (each run tried once, from its start), or ． but in a number or
    # after a full-width letter (Ｕ．Ｓ．), with the rest of the run and the brackets or quotes closed after it,
    # unless what follows those goes on with the sentence (「はい。」と言った)
    rf"|(?:(?<=[。！？｡])(?<![{_MARKS}][{_MARKS}])|(?<=[^\d\uff21-\uff3a\uff41-\uff5a]．)(?!\d))[{_MARKS}]*(?![{_MARKS}])"
    rf"(?:[{re.escape(CLOSERS)}]+(?=\s|$|[{re.escape(_OPENERS)}]))?(?![{re.escape(CLOSERS)}])\s*"
)


def _words(text: str):
    """Word processors' words: each Chinese or Japanese character one, as those languages put no
    spaces between words, and each run between spaces and those that has a letter, a digit or an
    emoji (or other symbol: "👍" is a word, "—" is not). Korean, written with spaces between words,
    counts as Latin does; so do Thai, Lao, Khmer and Burmese, which put spaces between phrases, not
    words (a word processor splits those by dictionary: this counts fewer)."""
    return (m for m in _TOKEN.finditer(text) if _LETTER.search(m.group()) or any(unicodedata.category(c) == "So" for c in m.group()))


def count_words(text: str) -> int:
    """How many words the text has, as word processors count them (`_words`)."""
    return sum(1 for _ in _words(text))


def text_up_to_word(text: str, count: int) -> str:
    """The text up to the end of its `count`-th word (as `count_words` counts them)."""
    for n, match in enumerate(_words(text), 1):
        if n == count:
            return text[: match.end()]
    return text


def first_word(text: str) -> str:
    """Where `text` could first be wrapped: its first Chinese or Japanese character (those lines wrap
    between any two), or else the run of other characters up to a space or one of those; "" if none."""
    match = _TOKEN.search(text)
    return match.group() if match else ""


def unspaced(text: str) -> bool:
    """Whether `text` starts with a Chinese or Japanese character, or their (full-width) punctuation."""
    return bool(_UNSPACED.match(text))


def join_text(pieces: Iterable[str]) -> str:
    """Pieces of text (sentences, wrapped lines) joined as their script is written: with nothing
    between two Chinese or Japanese characters or after their punctuation (。, 」, ，), as those
    languages put no spaces between words or sentences, else with one space."""
    out: list[str] = []
    for piece in pieces:
        if out:
            last = out[-1][-1:] if unspaced(out[-1][-1:]) else out[-1].rstrip(CLOSERS)[-1:]  # a quote's: 他说：“你好。” ends in 。
            out += [] if unspaced(last) and (unicodedata.category(last).startswith("P") or unspaced(piece.lstrip(_OPENERS))) else [" "]
        out.append(piece)
    return "".join(out)


def split_sentences(text: str, unbroken: list[tuple[int, int]] = ()) -> list[str]:
    """Sentences of one block's text; common abbreviations and initials do not end a sentence, and
    nothing is cut inside the `(start, end)` spans of `unbroken` (inline code, say)."""
    sentences: list[str] = []
    start = 0
    starts = [a for a, _ in unbroken]  # sorted, not overlapping (as a pattern's matches are)
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        inside = bisect.bisect_left(starts, end) - 1
        if inside >= 0 and end < unbroken[inside][1]:
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


def _free(unbroken, starts: list[int], position: int) -> bool:
    """Whether `position` is outside the sorted `(start, end)` spans of `unbroken` (`starts` their starts)."""
    inside = bisect.bisect_left(starts, position) - 1
    return inside < 0 or position >= unbroken[inside][1]


def word_runs(sentence: str, size: int, budget: int, unbroken: list[tuple[int, int]] = ()) -> list[str]:
    """`sentence` (`size` tokens, over `budget`) cut into runs of words of about `budget` tokens,
    never inside the `(start, end)` spans of `unbroken`; a sentence with too few spaces for that
    (Chinese, Japanese) into runs of characters, after a comma where there is one, else between two
    wide characters. Runs are pieces of the sentence as it is (its spaces kept)."""
    starts = [a for a, _ in unbroken]

    free = functools.partial(_free, unbroken, starts)  # not inside a span
    words = [match.start() for match in re.finditer(r"\S+", sentence) if free(match.start())]  # where each word (or span) starts
    if len(words) > size // budget or not WIDE.search(sentence):  # a URL or data URI stays whole in its run
        step = max(1, len(words) * budget // (size + 1))
        cuts = words[::step][1:]
    else:
        step = max(1, len(sentence) * budget // (size + 1))
        cuts, start = [], 0

        def comma(p: int) -> bool:
            return sentence[p - 1] in "，、,;；" and free(p)

        def between(p: int) -> bool:  # two wide characters: so a URL or a Latin word stays whole
            return bool(WIDE.match(sentence, p - 1) and WIDE.match(sentence, p)) and free(p)

        while len(sentence) - start > step:
            near = range(start + step, start + step // 2, -1)
            cut = next((p for p in near if comma(p)), None) or next((p for p in near if between(p)), None)
            cut = cut or next((p for p in range(start + step, len(sentence)) if between(p) or comma(p)), len(sentence))
            cuts.append(cut)
            start = cut
    bounds = [0, *cuts, len(sentence)]
    return [piece for a, b in zip(bounds, bounds[1:]) if (piece := sentence[a:b].strip())]


def fitted(text: str, size: int, budget: int, count, unbroken: Callable[[str], list[tuple[int, int]]] = lambda text: []) -> list[tuple[str, int]]:
    """`text` (`size` tokens) in pieces of at most `budget` tokens, with their sizes: whole when it
    fits, else halved at the space nearest its middle, or where it has none (Thai, a data URI)
    between two characters, never before a mark that combines with the one before. No cut falls
    inside the `(start, end)` spans `unbroken(text)` gives (code, a URL) unless one alone is too long."""
    if size <= budget or len(text) < 2:
        return [(text, size)]
    spans = unbroken(text)
    starts = [a for a, _ in spans]

    def places():  # where to cut, best first: free spaces, free characters, then any
        spaces = [m.start() for m in re.finditer(r"\s", text)]
        yield [at for at in spaces if _free(spans, starts, at)]
        characters = [at for at in range(1, len(text)) if not unicodedata.category(text[at]).startswith("M")]
        yield [at for at in characters if _free(spans, starts, at)]
        yield spaces
        yield characters

    middle = len(text) // 2
    cut = next((min(found, key=lambda at: abs(at - middle)) for found in places() if found), middle)
    halves = [half for half in (text[:cut].strip(), text[cut:].strip()) if half]
    return [piece for half in halves for piece in fitted(half, count(half), budget, count, unbroken)]
