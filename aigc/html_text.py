"""HTML pages as Markdown text: the visible words of a page, its headings, lists, quotes, tables,
definitions and code marked as Markdown marks them; and a page that is not UTF-8 read in the charset it declares."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser


_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "dl", "dt", "dd", "section", "article", "blockquote"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer"}  # not the page's words
_CODE_START, _CODE_END = object(), object()  # around a <pre>'s text among the extracted parts
_LINK_TARGET = re.compile(r"(?!javascript:)(?:[^()\s<>]|\([^()\s<>]*\))+", re.I)  # one Markdown keeps as a link's (see markdown_blocks)
_LETTER = re.compile(r"[^\W_]")


class _Break:
    """Where a block element starts or ends among the extracted parts: the text after it is a new
    paragraph, its lines starting with `prefix` (the quote markers and list indents it is inside);
    `tight`: no blank line before it (a definition under its term)."""

    def __init__(self, prefix: str, tight: bool = False) -> None:
        self.prefix, self.tight = prefix, tight


class _TextExtractor(HTMLParser):
    """A page's text as parts: paragraphs between block tags, headings, list items, quotes, table rows
    and inline code marked as in Markdown (nested lists indented, definitions under their terms),
    and each <pre> kept whole between code markers; with `links`, each link as `[text](href)`."""

    def __init__(self, links: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.links = links
        self.link: tuple[int, str] | None = None  # where the open link's text starts in `parts`, and its target
        self.parts: list = []
        self.skipping = 0
        self.pre = 0
        self.cell = 0  # inside a table cell: its text stays on its row
        self.lists: list[int | None] = []  # each open list's next item number; None: not numbered
        self.item = -1  # where the last list item's text starts in `parts`
        self.containers: list[tuple[str, str]] = []  # (tag, prefix) of each open list, item, quote and definition: "> ", an indent

    def _break(self, tight: bool = False) -> None:
        self.parts.append(_Break("".join(prefix for _, prefix in self.containers), tight))

    def _close(self, tag: str) -> None:
        """The innermost open `tag` closed, with anything opened inside it and left open (an item without its </li>)."""
        for k in range(len(self.containers) - 1, -1, -1):
            if self.containers[k][0] == tag:
                del self.containers[k:]
                return

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif self.skipping:
            return
        elif tag == "br" and self.pre:
            self.parts.append("\n")
        elif tag == "pre":
            self.pre += 1
            if self.pre == 1:
                self._break()
                self.parts.append(_CODE_START)
        elif tag in ("td", "th") and not self.pre:
            self.cell += 1
            self.parts.append(" | ")
        elif tag == "code" and not self.pre:
            self.parts.append("`")
        elif tag == "a" and self.links and not self.pre:
            href = re.sub(r"[\t\n\r]", "", dict(attrs).get("href") or "").strip().replace(" ", "%20")  # as a browser reads it: `my file.html` kept
            self.link = (len(self.parts), href) if _LINK_TARGET.fullmatch(href) else None
        elif tag in _BLOCK_TAGS and self.cell and tag not in ("tr", "table"):
            self.parts.append(" ")
        elif tag in ("p", "div") and not self.pre and self.item >= 0 and not _text(self.parts[self.item :]).strip():
            return  # an item's first paragraph (<li><p>) is the item's text, after its marker
        elif tag in _BLOCK_TAGS and not self.pre:
            if tag in ("li", "dd", "dt") and self.containers and self.containers[-1][0] in ("li", "dd"):
                self.containers.pop()  # an item never closed ends where the next begins
            if tag == "blockquote":
                self.containers.append((tag, "> "))
            self._break(tight=tag == "dd")
            marker = ""
            if tag in ("ol", "ul"):
                start = dict(attrs).get("start") or ""
                self.lists.append((int(start) if start.strip().isdigit() else 1) if tag == "ol" else None)
                self.containers.append((tag, ""))
            elif tag == "dl":
                self.containers.append((tag, ""))
            elif tag == "li" and self.lists and self.lists[-1] is not None:
                value = dict(attrs).get("value") or ""
                number = int(value) if value.strip().isdigit() else self.lists[-1]
                self.lists[-1] = number + 1
                marker = f"{number}. "
            elif tag == "li":
                marker = "- "
            elif tag == "dd":
                marker = ": "
            elif tag[0] == "h" and tag[1:].isdigit():
                self.parts.append("#" * int(tag[1:]) + " ")
            if marker:
                self.parts.append(marker)
                self.containers.append((tag, " " * (4 if tag == "dd" else len(marker))))  # its next paragraphs, under its text
            self.item = len(self.parts) if tag in ("li", "dd") else -1

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS and self.skipping:
            self.skipping -= 1
        elif self.skipping:
            return
        elif tag == "pre" and self.pre:
            self.pre -= 1
            if not self.pre:
                self.parts.append(_CODE_END)
        elif tag in ("td", "th") and self.cell:
            self.cell -= 1
        elif tag == "code" and not self.pre:
            self.parts.append("`")
        elif tag == "a" and self.link:
            start, href = self.link
            inside = self.parts[start:]
            text = _text(inside).strip()
            if all(isinstance(part, str) for part in inside) and _LETTER.search(text) and not re.search(r"[\[\]]", text):  # not a permalink's ¶
                self.parts.insert(start, "[")
                self.parts.append(f"]({href})")
            self.link = None
        elif tag in _BLOCK_TAGS and self.cell and tag not in ("tr", "table"):
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS and not self.pre:
            if tag == "tr":
                self.cell = 0  # a cell never closed ends with its row
                self.parts.append(" |")
            elif tag in ("ol", "ul") and self.lists:
                self.lists.pop()
            if tag in ("ol", "ul", "li", "dl", "dd", "blockquote"):
                self._close(tag)
            self._break()

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data.replace("|", "\\|") if self.cell and not self.pre else data)


def _text(parts: list) -> str:
    """The text among some extracted parts."""
    return "".join(part for part in parts if isinstance(part, str))


# a heading's permalink, as documentation sites add one: "## # Install", "## Install¶" (Sphinx, MkDocs)
_PERMALINK = re.compile(r"^(#{1,6} )(?:[#¶§🔗] +(.+)|(.*?\S) *[¶§🔗]|(.*?\S) +#)$")


def _without_permalink(paragraph: str) -> str:
    """`paragraph`, a heading without its permalink."""
    match = _PERMALINK.match(paragraph)
    return match.group(1) + "".join(match.groups("")[1:]) if match else paragraph


def html_to_text(html: str, links: bool = False) -> str:
    """Visible text of an HTML page as Markdown: one paragraph per block element, headings and list
    items marked (an <ol>'s numbered from its start, a nested list indented under its item), quotes
    marked with `>`, a <dd> as `: definition` under its <dt>, each <pre> a fenced code block as it is;
    scripts and styles dropped, and link targets unless `links` (then `[text](href)`, for translate)."""
    parser = _TextExtractor(links)
    parser.feed(html)
    parser.close()
    blocks: list[tuple[_Break, str]] = []  # each paragraph (or code block) with the break that opened it
    opened, words, code = _Break(""), [], None
    for part in [*parser.parts, _CODE_END]:
        if code is not None and part is not _CODE_END:
            code.append(part)
        elif code is not None:  # the <pre> ends
            text = "".join(code).strip("\n")
            if text.strip():
                fence = "`" * max([3] + [len(run) + 1 for run in re.findall(r"`{3,}", text)])
                blocks.append((opened, f"{fence}\n{text}\n{fence}"))
            code = None
        elif isinstance(part, str):
            words.append(part)
        else:  # a break, a <pre> or the end: the paragraph so far ends
            paragraph = _without_permalink(" ".join("".join(words).split()))
            if paragraph.strip("#-|: ") and not re.fullmatch(r"\d+\. ?", paragraph):  # an empty item, heading or table row is nothing
                blocks.append((opened, paragraph))
            words = []
            code = [] if part is _CODE_START else None
            opened = part if isinstance(part, _Break) else opened
    return _joined_blocks(_tables(blocks))


def _joined_blocks(blocks: list[tuple[_Break, str]]) -> str:
    """Paragraphs, each line after its prefix, between blank lines (quoted ones inside a quote: `>`),
    or on the next line for a tight one."""
    out: list[str] = []
    before = ""
    for opened, text in blocks:
        if out:
            shared = os.path.commonprefix([before, opened.prefix])
            out.append("\n" if opened.tight else "\n" + shared[: shared.rfind(">") + 1] + "\n")
        out.append("\n".join((opened.prefix + line).rstrip() if line else opened.prefix.rstrip() for line in text.split("\n")))
        before = opened.prefix
    return "".join(out)


def _tables(blocks: list[tuple[_Break, str]]) -> list[tuple[_Break, str]]:
    """`blocks` with each run of table rows (`| a | b |`) made one Markdown table: its rows on
    lines of their own, a delimiter row under the first."""
    out: list[tuple[_Break, str]] = []
    in_table = False
    for opened, paragraph in blocks:
        row = paragraph.startswith("| ") and paragraph.endswith(" |")
        if row and in_table:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + paragraph)
        elif row:
            cells = len(re.findall(r"(?<!\\)\|", paragraph)) - 1
            out.append((opened, paragraph + "\n|" + "---|" * cells))
        else:
            out.append((opened, paragraph))
        in_table = row
    return out


def looks_like_html(text: str) -> bool:
    """Whether `text` is an HTML page: it starts (after any comments) with a doctype or `<html>`."""
    head = re.sub(r"^(?:\s*<!--.*?-->)*\s*", "", text[:4000], flags=re.S)[:200].lower()  # comments may come first
    return head.startswith("<!doctype html") or head.startswith("<html")


def in_declared_charset(data: bytes, may_be_html: bool) -> str | None:
    """An HTML page that is not UTF-8 read in the charset its <meta> declares (ISO-8859-1 and ASCII
    as windows-1252, as browsers read them); None for anything else."""
    head = data[:4096].decode("latin-1")
    declared = re.search(r"<meta\b[^>]*?charset\s*=\s*[\"']?([\w.:-]+)", head, re.IGNORECASE)
    if not declared or not may_be_html or b"\x00" in data[:8192] or not re.match(r"\s*<", head):
        return None
    try:
        data.decode("utf-8")
        return None  # UTF-8, whatever it declares
    except UnicodeDecodeError:
        pass
    charset = declared.group(1).lower()
    charset = "cp1252" if charset in ("iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii") else charset
    try:
        return data.decode(charset).replace("\r\n", "\n")
    except (LookupError, UnicodeDecodeError):
        return None
