"""Reading user documents (txt, md, html; files or stdin) and JSON, and writing results atomically."""

from __future__ import annotations

import codecs
import contextlib
import errno
import functools
import json
import os
import re
import shlex
import stat
import sys
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .errors import DISK_FULL, BadInputError, WriteError

STDIN = "standard input"
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
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


def _looks_like_html(text: str) -> bool:
    head = re.sub(r"^(?:\s*<!--.*?-->)*\s*", "", text[:4000], flags=re.S)[:200].lower()  # comments may come first
    return head.startswith("<!doctype html") or head.startswith("<html")


_BINARY_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x7fELF", b"\x1f\x8b")


DOCUMENT = "a .txt, .md or .html document"
# UTF-32's marks first: UTF-16's little-endian one begins UTF-32's
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode_text(data: bytes, name: str, expected: str = DOCUMENT, path: str | None = None, keep_crlf: bool = False) -> str:
    """Text of some bytes (UTF-8, or UTF-16 or UTF-32 with a byte-order mark), with `\n` line ends
    (`keep_crlf`: CRLF ones as they are, as csv reads a file opened with `newline=""`, so a quoted
    cell keeps its own); binary and other encodings are errors that say so and ask for `expected`.
    `name` says where the bytes came from in errors ("glossary x.tsv"); `path`, the file to convert, when it is not `name`."""
    text = _decoded(data, name, expected, name if path is None else path)
    return text if keep_crlf else text.replace("\r\n", "\n")


# bytes that text in no encoding holds (a tab, line and page breaks, backspace, DOS's end of file and escape it may)
_CONTROLS = bytes(sorted(set(range(32)) - set(b"\t\n\v\f\r\b\x1a\x1b"))) + b"\x7f"


def _controls(data: bytes) -> bool:
    """Whether bytes that are not UTF-8 hold control bytes no text holds, as a binary file does
    (else they are likely text in another encoding)."""
    head = data[:8192]
    return len(head) - len(head.translate(None, _CONTROLS)) > max(2, len(head) // 100)


def _binary(data: bytes, name: str, expected: str, path: str) -> BadInputError:
    """The error for a binary file; UTF-16 without a byte-order mark and a PDF or Word document
    (a zip holding `word/`) are named as such, with a command that makes text of them."""
    head = data[:400]
    odd, even = head[1::2].count(0), head[0::2].count(0)  # ASCII in UTF-16: a NUL after each letter (LE) or before it (BE)
    source = "FILE" if path == STDIN else shlex.quote(path)
    hint = ""
    if len(head) >= 4 and not data.startswith(_BINARY_SIGNATURES) and odd != even and max(odd, even) > len(head) // 3:
        hint = f" (it looks like UTF-16 without a byte-order mark: convert it with `iconv -f {'utf-16le' if odd > even else 'utf-16be'} -t utf-8`)"
    elif data.startswith(b"%PDF"):
        hint = f" (a PDF: take its text out first, e.g. `pdftotext {source} -`, and pipe that in)"
    elif data.startswith(b"PK\x03\x04") and b"word/" in data[:65536]:
        hint = f" (a Word document: take its text out first, e.g. `pandoc -t plain {source}`, and pipe that in)"
    return BadInputError(f"{name} looks like a binary file; give {expected}{hint}")


def _decoded(data: bytes, name: str, expected: str, path: str) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            encoding = encoding[:6]  # utf-32 or utf-16: the codec reads the byte-order mark
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise BadInputError(f"{name} starts like {encoding.upper()} but is not valid {encoding.upper()}; give {expected} in UTF-8") from None
    if b"\x00" in data[:8192] or data.startswith(_BINARY_SIGNATURES):
        raise _binary(data, name, expected, path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if _controls(data):
            raise _binary(data, name, expected, path) from None
        line = exc.object.count(b"\n", 0, exc.start) + 1  # counted in what was decoded (a byte-order mark left out)
        example = "pipe it through `iconv -f latin1 -t utf-8`" if path == STDIN else f"`iconv -f latin1 -t utf-8 {shlex.quote(path)} > converted{Path(path).suffix or '.txt'}`"
        raise BadInputError(f"{name} is not valid UTF-8 (at line {line}); convert it first, e.g. {example}") from None


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for each non-blank line. Lines end at a line feed (or a carriage return and
    line feed); a lone carriage return (a progress line's) and U+2028 and the other Unicode line
    breaks stay inside a line, as JSON Lines, CSV and `wc -l` have it."""
    return [(number, line) for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1) if line.strip()]


def check_utf8(value: Any, what: str) -> None:
    """A `BadInputError` when text that came from the command line holds bytes that are not UTF-8
    (Python keeps them as lone surrogates, which no tokenizer takes)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInputError(f"the {what} is not valid UTF-8 (it holds a lone surrogate); give UTF-8 text (from a file or a terminal in another encoding, convert with `iconv -f latin1 -t utf-8`)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_utf8(key, what)
            check_utf8(item, what)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_utf8(item, what)


def _in_declared_charset(data: bytes, may_be_html: bool) -> str | None:
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


def decode_document(data: bytes, name: str, suffix: str = "", expected: str = DOCUMENT, lines: bool = False, links: bool = False) -> str:
    """Text of a document's bytes; binary, non-UTF-8 and empty input are errors that say so. With
    `lines`, text is read as lines: HTML only by its suffix (a line may start with `<html`) and
    nothing stripped, so line numbers count from the first line; `links`: HTML's links as Markdown ones."""
    raw = _in_declared_charset(data, suffix.lower() in HTML_SUFFIXES or not lines) or decode_text(data, name, expected)
    html = suffix.lower() in HTML_SUFFIXES or (not lines and _looks_like_html(raw))
    text = html_to_text(raw, links) if html else raw
    text = text if lines else re.sub(r"\A(?:[ \t]*\n)+", "", text).rstrip()  # the first line keeps its indent (code, in Markdown)
    if not text.strip():
        empty = "has no text outside its markup, <nav> and <footer>" if html and raw.strip() else "is empty"
        raise BadInputError(f"{name} {empty}; {_give_text(expected)}")
    return text


def read_document(
    source: str, as_is: bool = False, text_hint: str | None = None, expected: str = DOCUMENT, lines: bool = False, kind: str = "file", links: bool = False
) -> str:
    """Read a document from a path, or from stdin when `source` is '-'. `as_is`: the text as it is
    (markup kept, not stripped), only checked to be text and not empty; `lines`: read as lines (see
    `decode_document`), `links` too. `text_hint` says how to give text itself, for a `source` that is no file and
    looks like words rather than a path; `expected` what to give instead of a binary file; `kind`
    what a missing one is called ("no such examples file")."""
    decode = _as_is if as_is else functools.partial(decode_document, lines=lines, links=links)
    if source == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError("reading from stdin, but nothing was piped in; pipe a document or give a file path")
        return decode(sys.stdin.buffer.read(), STDIN, expected=expected)
    if not source.strip():
        raise BadInputError("the file name is empty; give a file path, or - for stdin")
    path = Path(source).expanduser()
    if not os.path.exists(path):  # os.path: False (not an OSError) for a name too long
        raise _missing(source, kind, text_hint)
    if path.is_dir():
        raise BadInputError(f"{source} is a directory; give a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {source}: {exc.strerror}") from None
    return decode(data, source, path.suffix, expected)


def _missing(source: str, kind: str = "file", text_hint: str | None = None) -> BadInputError:
    """The error for a file `source` that does not exist: a URL says how to fetch it (`llm -f URL`
    fetches one), and words, with `text_hint`, how to give text itself."""
    if re.match(r"https?://\S+\Z", source, re.IGNORECASE):
        return BadInputError(f"no such {kind}: {source} (aigc reads local files, not URLs; download it first: curl -sL {shlex.quote(source)} -o FILE)")
    words = any(c.isspace() for c in source.strip()) or not any(c in source for c in "./\\")
    return BadInputError(f"no such {kind}: {source}" + (f" ({text_hint})" if text_hint and words else ""))


DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
FILE_SUFFIXES = (*DOCUMENT_SUFFIXES, ".csv", ".tsv", ".jsonl", ".ndjson", ".json")  # a word ending so names a file, not text
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mkdn")


def read_input(source: str, lines: bool = False, links: bool = False) -> str:
    """The text itself, a document's text (FILE), or stdin (-); `lines` and `links` as for `read_document`."""
    path = Path(source).expanduser()
    if source == "-" or (source.strip() and os.path.exists(path)):  # os.path: False for names too long
        return read_document(source, lines=lines, links=links)
    if not any(c.isspace() for c in source) and path.suffix.lower() in FILE_SUFFIXES:
        raise _missing(source)  # a file name, not words to take as the text
    return source


def mostly_crlf(text: str) -> bool:
    """Whether most of `text`'s line breaks are CRLF (Windows)."""
    return text.count("\r\n") > text.count("\n") // 2


def file_style(source: str) -> tuple[bool, str]:
    """How `source`, if a file, is written: whether most of its lines end in CRLF (Windows), counted
    in its decoded text (UTF-16 too), and its encoding, a BOM's UTF-16 or UTF-32 (`utf-16-le`, ...),
    `utf-8-sig` for UTF-8 with a BOM (as Windows Notepad saves it), else `utf-8`; text is read with LF."""
    try:
        data = Path(source).expanduser().read_bytes() if source != "-" and os.path.isfile(os.path.expanduser(source)) else b""
    except OSError:
        return False, "utf-8"
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return mostly_crlf(data[len(bom):].decode(encoding, "replace")), encoding
    return mostly_crlf(data.decode("latin-1")), "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"  # any bytes decode: only line breaks are counted


def _as_is(data: bytes, name: str, suffix: str = "", expected: str = DOCUMENT) -> str:
    text = decode_text(data, name, expected)
    if not text.strip():
        raise BadInputError(f"{name} is empty; {_give_text(expected)}")
    return text


def _give_text(expected: str) -> str:
    """What to give instead of an empty input: a document with text, or the `expected` file (a TSV)."""
    return "give a document with some text in it" if expected == DOCUMENT else f"give {expected}"


def make_dir(path: Path, hint: str, mode: int = 0o777) -> Path:
    """`path` as a directory, made if needed (with `mode`, under the umask; its parents as usual); a
    one-line error (ending with `hint`) when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=mode, exist_ok=True)
    except OSError as exc:
        blocker = next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)
        why = f"{blocker} is a file" if blocker else exc.strerror or exc  # not "File exists"
        raise BadInputError(f"cannot make directory {path}: {why} ({hint})") from None
    return path


_SURROGATES = re.compile("[\ud800-\udfff]")


def readable_name(name: Any) -> str:
    """A file name as text: its bytes that are no UTF-8 (lone surrogates, as Python reads them from
    argv) as U+FFFD, so it can be put in a prompt or in JSON."""
    return _SURROGATES.sub("\ufffd", str(name))


def readable_json(value: Any) -> Any:
    """`value` with `readable_name` applied to every string in it (keys too), for JSON output."""
    if isinstance(value, str):
        return readable_name(value)
    if isinstance(value, dict):
        return {readable_json(key): readable_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [readable_json(item) for item in value]
    return value


def parse_json(text: str | bytes, **options: Any) -> Any:
    """`json.loads(text, **options)`, with JSON nested too deeply for Python's parser (`[` 100000
    times, say) a `ValueError` like other bad JSON instead of a `RecursionError`."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("nested too deeply") from None


_FD_PATH = re.compile(r"/dev/std(?P<std>in|out|err)|/dev/fd/(?P<dev>\d+)|/proc/(?P<pid>self|\d+)/fd/(?P<proc>\d+)")


def inherited_fd(target: str | os.PathLike) -> int | None:
    """The file descriptor of this process that `target` names (/dev/stdout, /dev/stderr, /dev/fd/3,
    /proc/self/fd/1, or a symlink to one), else None. Such a path is written through that
    descriptor, as the shell opened it (appending, or after what came before), never replaced."""
    path = os.path.abspath(os.path.expanduser(target))
    for _ in range(40):  # symlinks followed one at a time: /proc/self/fd/1 itself links to the file
        match = _FD_PATH.fullmatch(path)
        if match and match["pid"] not in ("self", str(os.getpid()), None):
            return None  # another process's descriptor
        if match:
            std, number = match["std"], match["dev"] or match["proc"]
            return ("in", "out", "err").index(std) if std else int(number)
        if not os.path.islink(path):
            return None
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.readlink(path))
        path = os.path.abspath(path)
    return None


def _check_fd(target: str | os.PathLike, fd: int) -> None:
    """A `BadInputError` unless descriptor `fd` (that `target` names) is open."""
    try:
        os.fstat(fd)
    except OSError:
        raise BadInputError(f"cannot write {target}: it is not open (the shell closed it)") from None


def check_writable(target: str | os.PathLike, flag: str = "-o") -> Path:
    """Fail before any work is done if `target` cannot be written; returns the file that will be
    written (a symlink's target; a path naming an inherited descriptor, such as /dev/stdout, as it is)."""
    fd = inherited_fd(target)
    if fd is not None:
        _check_fd(target, fd)
        return Path(target).expanduser()
    path = Path(target).expanduser()
    if path.is_dir():
        raise BadInputError(f"{target} is a directory; give a file name for {flag}")
    if str(target).endswith(("/", os.sep)):  # meant as a directory, which is not there
        raise BadInputError(f"cannot write {target}: there is no such directory; give a file name for {flag}")
    if path.exists() and not path.is_file():  # a device or pipe is written in place
        if not os.access(path, os.W_OK):
            raise BadInputError(f"cannot write {target}: permission denied")
        return path
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:  # a new file, or a symlink to one
        real = Path(os.path.realpath(path))
    except OSError as exc:  # a symlink loop
        raise BadInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not real.parent.is_dir():
        raise BadInputError(f"cannot write {target}: directory {real.parent} does not exist")
    try:  # a real try: access() says yes to root on read-only and virtual file systems
        fd, probe = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInputError(f"cannot write {target}: {_unwritable(real, exc)}") from exc
    return real


def _unwritable(path: Path, exc: OSError) -> str:
    """Why no file can be made beside `path` to replace it (`exc`): a read-only `path` says so, and so
    does a directory that takes no new files (a virtual file system's answer is "no such file")."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not os.access(path.parent, os.W_OK):
        return f"directory {path.parent} is not writable"  # the file is written beside itself, then renamed
    if path.is_file() and (not os.access(path, os.W_OK) or not file_mode(path) & 0o222):
        return "the file is read-only"
    if exc.errno == errno.ENOENT:
        return f"directory {path.parent} takes no new files"
    return exc.strerror or str(exc)


def _write_failed(target: str | os.PathLike, exc: OSError) -> WriteError:
    """A write that failed part-way (exit 1): the place was checked writable, so this is no bad input."""
    hint = " (free some space, or write elsewhere)" if exc.errno in DISK_FULL else ""
    return WriteError(f"cannot write {target}: {exc.strerror or exc}{hint}")


def output_target(output: str | None, flag: str = "-o", source: str | None = None) -> str | None:
    """Where a command's `-o` writes: None for stdout (not given, -, or a path naming it such as
    /dev/stdout); a file is checked writable before any work, and an empty name (an unset shell
    variable) or the `source` file itself (the result would replace what it was made from) is an error."""
    if output is None or output == "-":
        return None
    if not output.strip():
        raise BadInputError(f"{flag} was given an empty file name; give a file, or - for stdout")
    if inherited_fd(output) == 1:  # written as stdout is, never replacing the file it may point to
        return None
    if source is not None and os.path.exists(output) and _reads(source, output):
        raise BadInputError(f"{flag} {output} is the input file{' (standard input reads it)' if source == '-' else ''}; write the result to another file")
    check_writable(output, flag)
    return output


def _reads(source: str, output: str) -> bool:
    """Whether `output` is the file that `source` reads: that file, or for "-" the file standard
    input is redirected from (`< FILE`)."""
    if source != "-":
        return os.path.isfile(source) and os.path.samefile(source, output)
    try:
        given, there = os.fstat(sys.stdin.fileno()), os.stat(output)
    except (AttributeError, OSError, ValueError):  # no stdin, or one with no file descriptor
        return False
    return stat.S_ISREG(given.st_mode) and (given.st_dev, given.st_ino) == (there.st_dev, there.st_ino)


def file_mode(path: Path) -> int:
    """The permissions a written file gets: those of the file it replaces, else what the umask allows."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


_PROC_STATUS = "/proc/self/status"
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux's `Umask:` line
    in /proc/self/status); else set for a moment, under a lock, to a stricter mask than most (0o077,
    so a file another thread makes meanwhile is private, never open to all) and put back."""
    with contextlib.suppress(OSError, ValueError):
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def open_stream(target: str | os.PathLike, mode: str = "a", encoding: str = "utf-8"):
    """`target`, a device, pipe or inherited descriptor (see `inherited_fd`), opened to write in
    place: a descriptor is written through as it is, not opened anew (which could start at its
    beginning and write over what others wrote there)."""
    fd = inherited_fd(target)
    if fd is None:
        return open(target, mode, encoding=encoding)
    for stream in (sys.stdout, sys.stderr):  # what Python holds for the descriptor goes first
        with contextlib.suppress(AttributeError, OSError, ValueError):  # replaced (captured) or closed
            if stream.fileno() == fd:
                stream.flush()
    return open(fd, mode, encoding=encoding, closefd=False)


def write_atomic(target: str | os.PathLike, text: str, flag: str = "-o", private: bool = False, encoding: str = "utf-8") -> Path:
    """Write text to a temp file beside `target` (a symlink's target), then rename it into place,
    keeping the replaced file's permissions (a new `private` file is readable by its owner only); a
    device or pipe is written directly. `flag` names the option the path came from in errors; an
    `encoding` other than UTF-8 (`utf-16-le`, `utf-8-sig`, ...) is written with a byte-order mark."""
    real = check_writable(target, flag)
    body = text if text.endswith("\n") else text + "\n"
    body = body if encoding in ("utf-8", "utf-8-sig") else "\ufeff" + body  # utf-8-sig writes its own
    fd = inherited_fd(target)
    if fd is not None or (real.exists() and not real.is_file()):
        try:
            with open_stream(target, "w", encoding) as handle:
                handle.write(body)
        except OSError as exc:
            raise _write_failed(target, exc) from exc
        return Path(target).expanduser()
    mode = file_mode(real) if real.exists() or not private else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_failed(target, exc) from exc
        raise
    return Path(target).expanduser()


def unquote(cell: str) -> str:
    """A TSV cell as written by CSV writers (pandas, R, Excel): one wrapped in double quotes loses
    them and its doubled inner quotes become single; any other cell is raw text, quotes and all."""
    stripped = cell.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"' and '"' not in stripped[1:-1].replace('""', ""):
        return stripped[1:-1].replace('""', '"')
    return cell


def first_words(text: str, most: int = 6) -> str:
    """The start of `text`: its first `most` words, with "..." when there are more (to point at a text in a message)."""
    words = text.split()
    return " ".join(words[:most]) + (" ..." if len(words) > most else "")
