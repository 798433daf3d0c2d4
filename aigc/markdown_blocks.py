"""Markdown (or plain text) as blocks: headings, paragraphs, list items, quotes, table rows, code.

Each block holds literal Markdown pieces and the texts between them, so the texts can be rewritten
(translated) and the structure put back around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

Piece = Union[str, int]  # literal Markdown, or the index of a text to translate


@dataclass
class Block:
    """One block of the document: literal pieces and the indexes of translated texts between them."""

    kind: str
    pieces: list[Piece]
    texts: list[str] = field(default_factory=list)

    def render(self, translations: list[str]) -> str:
        return "".join(p if isinstance(p, str) else translations[p] for p in self.pieces)


# --- Markdown blocks -------------------------------------------------------------------------

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_RULE = re.compile(r"^ {0,3}(?:([-*_])(?:[ \t]*\1){2,}|=+)[ \t]*$")  # also a setext heading's underline
_HEADING = re.compile(r"^( {0,3}#{1,6}[ \t]+)(.*?)([ \t]+#+)?[ \t]*$")
_ITEM = re.compile(r"^([ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?)(\S.*)$")
_QUOTE = re.compile(r"^([ \t]*(?:>[ \t]?)+)(.*)$")
_TABLE = re.compile(r"^[ \t]*\|.*\|[ \t]*$")
_TABLE_RULE = re.compile(r"^[ \t|:-]+$")
_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$")  # --- | :--: (GFM)
_HTML = re.compile(r"^[ \t]*</?[A-Za-z!?]")
_HTML_UNTIL = (("<!--", "-->"), ("<pre", "</pre>"), ("<script", "</script>"), ("<style", "</style>"), ("<textarea", "</textarea>"))
_LETTER = re.compile(r"[^\W\d_]")
# Inline spans kept as they are: code, link and image brackets and destinations, autolinks, bare URLs.
_INLINE_LITERAL = re.compile(
    r"(`+).+?\1|!?\[|\]\([^)\s]*(?:[ \t]+\"[^\"]*\")?\)|\]\[[^\]]*\]|\]|<(?:https?://|mailto:)[^>\s]+>|(?:https?://|www\.)[^\s<>()\]]*[^\s<>()\].,;:!?'\"]"
)


def _starts_block(line: str) -> bool:
    return bool(
        not line.strip() or _FENCE.match(line) or _RULE.match(line) or _HEADING.match(line) or _ITEM.match(line)
        or _QUOTE.match(line) or _TABLE.match(line) or _HTML.match(line)
    )


def _inline(text: str, pieces: list[Piece], texts: list[str]) -> None:
    """Append `text` to a block: inline code, link syntax and URLs as literal pieces, the runs of
    words between them (those with letters) as texts to translate."""
    start = 0
    for match in [*_INLINE_LITERAL.finditer(text), None]:
        end = match.start() if match else len(text)
        run = text[start:end]
        core = run.strip()
        if core and _LETTER.search(core):
            lead, trail = run[: len(run) - len(run.lstrip())], run[len(run.rstrip()) :]
            pieces += [lead, len(texts), trail]
            texts.append(core)
        elif run:
            pieces.append(run)
        if match:
            pieces.append(match.group(0))
            start = match.end()


def _text_block(kind: str, before: str, text: str, after: str = "") -> Block:
    """A block whose words are translated; inline code, link destinations and URLs stay as they are."""
    block = Block(kind, [before])
    _inline(" ".join(text.split()), block.pieces, block.texts)
    block.pieces.append(after)
    return block


def _inner_marker(content: str) -> tuple[str, str]:
    """A heading or list marker at the start of a quoted line, and the text after it."""
    for pattern in (_HEADING, _ITEM):
        match = pattern.match(content)
        if match:
            return match.group(1), match.group(2)
    return "", content


def _table_row(line: str) -> Block:
    if _TABLE_RULE.match(line):
        return Block("table", [line])
    block = Block("table", [])
    for i, cell in enumerate(line.split("|")):
        if i:
            block.pieces.append("|")
        _inline(cell, block.pieces, block.texts)
    return block


def _html_end(lines: list[str], start: int) -> int:
    """Where an HTML block starting at `start` ends: after its closing marker for comments, <pre>,
    <script>, <style> and <textarea> (blank lines included), else at the next blank line."""
    opening = lines[start].lstrip().lower()
    pair = next(((open_, close) for open_, close in _HTML_UNTIL if opening.startswith(open_)), None)
    if pair:
        if pair[1] in opening[len(pair[0]) :]:
            return start + 1
        j = start + 1
        while j < len(lines) and pair[1] not in lines[j].lower():
            j += 1
        return min(j + 1, len(lines))
    j = start
    while j < len(lines) and lines[j].strip():
        j += 1
    return j


def parse_blocks(text: str) -> list[Block]:
    """Split Markdown (or plain text) into blocks; rendering them with their own texts gives the
    document back (paragraph and list-item lines re-joined on single spaces)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((j for j in range(1, len(lines)) if lines[j].strip() in ("---", "...")), None)
        if end is not None:
            blocks.append(Block("front matter", ["\n".join(lines[: end + 1])]))
            i = end + 1
    in_list = False
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            mark = fence.group(2)
            closing = re.compile(rf"^ {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
            j = i + 1
            while j < len(lines) and not closing.match(lines[j]):
                j += 1
            j = min(j, len(lines) - 1)
            blocks.append(Block("code", ["\n".join(lines[i : j + 1])]))
            i = j + 1
            in_list = False
            continue
        if not line.strip():
            blocks.append(Block("blank", [line]))
            i += 1
            continue
        if not line[:1].isspace() and not _ITEM.match(line):  # anything at the margin ends a list
            in_list = False
        after_blank = not blocks or blocks[-1].kind in ("blank", "front matter")
        if (line.startswith("    ") or line.startswith("\t")) and after_blank and not in_list and not _ITEM.match(line):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or lines[j].startswith("\t")):
                j += 1
            blocks.append(Block("code", ["\n".join(lines[i:j])]))
            i = j
            continue
        if _RULE.match(line):
            blocks.append(Block("rule", [line]))
            in_list = False
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            blocks.append(_text_block("heading", heading.group(1), heading.group(2), heading.group(3) or ""))
            in_list = False
            i += 1
            continue
        if _TABLE.match(line):
            blocks.append(_table_row(line))
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _TABLE_DELIMITER.match(lines[i + 1]):  # a table without outer pipes
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                blocks.append(_table_row(lines[i]))
                i += 1
            continue
        if _HTML.match(line):
            blocks.append(Block("html", ["\n".join(lines[i : (i := _html_end(lines, i))])]))
            continue
        kind, before, first = "paragraph", line[: len(line) - len(line.lstrip())], line.strip()
        item = _ITEM.match(line)
        quote = _QUOTE.match(line)
        if item:
            kind, before, first = "item", item.group(1), item.group(2)
            in_list = True
        elif quote:
            marker, first = _inner_marker(quote.group(2))
            kind, before = "quote", quote.group(1) + marker
        elif not in_list or after_blank:
            in_list = False
        parts = [first]
        i += 1
        while i < len(lines) and lines[i].strip():  # continuation lines of the same paragraph
            nxt = lines[i]
            if kind == "quote":
                inner = _QUOTE.match(nxt)
                if not inner or _starts_block(inner.group(2)):
                    break
                parts.append(inner.group(2))
            elif _starts_block(nxt) or (nxt.startswith("    ") and kind != "item"):
                break
            else:
                parts.append(nxt)
            i += 1
        blocks.append(_text_block(kind, before, " ".join(parts)))
    return blocks


def render_blocks(blocks: list[Block], translations: list[list[str]]) -> str:
    return "\n".join(block.render(texts) for block, texts in zip(blocks, translations))
