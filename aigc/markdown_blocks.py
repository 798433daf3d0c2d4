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
_HTML = re.compile(r"^[ \t]*</?[A-Za-z!?]")
_LETTER = re.compile(r"[^\W\d_]")


def _starts_block(line: str) -> bool:
    return bool(
        not line.strip() or _FENCE.match(line) or _RULE.match(line) or _HEADING.match(line) or _ITEM.match(line)
        or _QUOTE.match(line) or _TABLE.match(line) or _HTML.match(line)
    )


def _text_block(kind: str, before: str, text: str, after: str = "") -> Block:
    """A block whose text is translated, unless it has no letters (numbers, symbols, a bare URL)."""
    text = " ".join(text.split())
    if not _LETTER.search(text) or re.fullmatch(r"(?:https?://|www\.)\S+|`[^`]*`", text):
        return Block(kind, [before + text + after])
    return Block(kind, [before, 0, after], [text])


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
    pieces: list[Piece] = []
    texts: list[str] = []
    cells = line.split("|")
    for i, cell in enumerate(cells):
        if i:
            pieces.append("|")
        inner = cell.strip()
        if 0 < i < len(cells) - 1 and _LETTER.search(inner):
            lead = cell[: len(cell) - len(cell.lstrip())]
            trail = cell[len(cell.rstrip()) :]
            pieces += [lead, len(texts), trail]
            texts.append(inner)
        else:
            pieces.append(cell)
    return Block("table", pieces, texts)


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
        if _HTML.match(line):
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            blocks.append(Block("html", ["\n".join(lines[i:j])]))
            i = j
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
