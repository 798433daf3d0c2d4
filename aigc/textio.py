"""Reading text: user documents (txt, md, html, srt, vtt, sbv, ass and ssa subtitles; files or stdin) decoded and checked, JSON, TSV
cells, and names and text made fit for a prompt, a message or JSON output."""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
import shlex
import sys
import unicodedata
import warnings
from pathlib import Path
from typing import Any

from . import email_text, subtitles
from .errors import AigcWarning, BadInputError
from .html_text import html_to_text, in_declared_charset, looks_like_html

STDIN = "standard input"
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_BINARY_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x7fELF", b"\x1f\x8b")


DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", *subtitles.SUFFIXES, *email_text.SUFFIXES)  # the files a folder's documents are
DOCUMENT_FILES = f"{', '.join(DOCUMENT_SUFFIXES[:-1])} and {DOCUMENT_SUFFIXES[-1]} files"  # them in words, for help and messages
DOCUMENT_KINDS = f".txt, .md or .html, {'/'.join(subtitles.SUFFIXES)} subtitles or {'/'.join(email_text.SUFFIXES)} e-mail"  # what a document may be, shorter
DOCUMENT = f"a document ({DOCUMENT_KINDS})"  # what a command reading a document takes, as errors ask for it
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
    if data.startswith(_BINARY_SIGNATURES):
        raise _binary(data, name, expected, path)
    if data.lstrip().startswith(b"{\\rtf"):  # text, but markup the model would read as words
        source = "FILE" if path == STDIN else shlex.quote(path)
        raise BadInputError(f"{name} is an RTF document, which aigc does not read; take its text out first, e.g. `pandoc -t plain {source}`, and pipe that in")
    nuls = data.count(b"\x00")
    if nuls:  # a few stray ones in text (a word processor's export, a NUL-padded log) are dropped, wherever they are
        kept = data.replace(b"\x00", b"")
        if nuls > max(1, len(data) // 100) or len(kept) - len(kept.translate(None, _CONTROLS)) > len(kept) // 100:  # mostly binary, or UTF-16 without a byte-order mark
            raise _binary(data, name, expected, path)
        first, data = data.index(b"\x00"), kept
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if _controls(data):
            raise _binary(data, name, expected, path) from None
        line = exc.object.count(b"\n", 0, exc.start) + 1  # counted in what was decoded (a byte-order mark left out)
        raise BadInputError(f"{name} is not valid UTF-8 (at line {line}); {_conversion(data, path)}") from None
    if nuls:
        where = f"at byte {first}" if nuls == 1 else f"the first at byte {first}"
        warnings.warn(f"{name} holds {nuls} NUL byte{'s' if nuls > 1 else ''} ({where}), which no text holds; read without {'them' if nuls > 1 else 'it'}", AigcWarning, stacklevel=3)
    return text


# Python's codec names that iconv (glibc's and libiconv) spells otherwise
_ICONV_NAMES = {"SHIFT-JIS-2004": "SHIFT_JISX0213", "EUC-JIS-2004": "EUC-JISX0213", "MAC-ROMAN": "MACINTOSH", "ISO2022-JP": "ISO-2022-JP", "ISO2022-KR": "ISO-2022-KR"}


def likely_encoding(data: bytes) -> str | None:
    """The encoding bytes that are not UTF-8 are most likely in, as iconv names it (`GB18030`,
    `CP932`, `KOI8-R`): charset_normalizer's guess, where it is installed (requests needs it) and
    sure enough (it found the text's language, or few encodings fit); else None. A few odd bytes
    fit a score of encodings (`caf\\xe9`: UTF-16-BE first), so no guess is named for them."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None
    found = from_bytes(data[:65536])
    best = found.best()
    if best is None or not (best.coherence > 0 or (len(found) <= 2 and best.language != "Unknown")):
        return None
    encoding = best.encoding
    if _latin(str(best)):  # cp1250 and cp1252 often score the same there: which one's letters the text's words are made of says
        encoding = _latin_encoding(data[:65536]) or encoding
    name = codecs.lookup(encoding).name.upper().replace("_", "-")
    return _ICONV_NAMES.get(name, name)


# The letters other than a-z that languages written in Latin script use, for telling apart the
# code pages that put different letters at the same bytes (\xe8: è in CP1252, č in CP1250)
_ALPHABETS = (
    "àâæçéèêëîïôœùûüÿ",  # French
    "äöüß",  # German
    "áéíñóúü",  # Spanish
    "àáâãçéêíóôõú",  # Portuguese
    "àèéìíîòóù",  # Italian
    "àçèéíïòóúü",  # Catalan
    "áéèëïóöü",  # Dutch
    "æøåéó",  # Danish, Norwegian
    "åäöé",  # Swedish, Finnish
    "áðéíóúýþæö",  # Icelandic
    "çë",  # Albanian
    "áčďéěíňóřšťúůýž",  # Czech
    "áäčďéíĺľňóôŕšťúýž",  # Slovak
    "ąćęłńóśźż",  # Polish
    "áéíóöőúüű",  # Hungarian
    "čćđšž",  # Croatian, Slovenian, Bosnian
    "ăâîșțşţ",  # Romanian
    "çğıöşüâîi\u0307",  # Turkish (İ lower-cased: i and a combining dot)
    "ąčęėįšųūž",  # Lithuanian
    "āčēģīķļņšūž",  # Latvian
    "äõöüšž",  # Estonian
)
# Code pages of Latin-script text, most used first (a tie goes to the first: the text reads the same in both)
_LATIN_ENCODINGS = ("cp1252", "cp1250", "iso8859_2", "cp1257", "cp1254", "iso8859_16")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _latin(text: str) -> bool:
    """Whether most letters outside ASCII in `text` are Latin ones."""
    letters = [c for c in _NON_ASCII.findall(text) if c.isalpha()]
    return sum(unicodedata.name(c, "").startswith("LATIN") for c in letters) > len(letters) / 2


def _latin_encoding(data: bytes) -> str | None:
    """Which of the Latin-script code pages bytes are most likely in: the one whose text's letters
    outside ASCII best fit one language's alphabet, with fewest controls, unassigned bytes and
    symbols inside words (CP1250's `crème` read as CP1252 is `crčme`: no language has both è and č)."""
    best, best_score = None, None
    for encoding in _LATIN_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue  # a byte the code page has no character for
        letters: dict[str, int] = {}
        odd = 0
        for match in _NON_ASCII.finditer(text):
            c, at = match.group(), match.start()
            if c.isalpha():
                letters[c.lower()] = letters.get(c.lower(), 0) + 1
            elif unicodedata.category(c)[0] == "C" or (text[at - 1 : at].isalpha() and text[at + 1 : at + 2].isalpha()):
                odd += 1  # a control byte, or a symbol inside a word (CP1250's ł read as CP1252: mi³y)
        total = sum(letters.values())
        fit = max(sum(n for c, n in letters.items() if c in alphabet) for alphabet in _ALPHABETS) if letters else 0
        score = fit - (total - fit) - odd
        if best_score is None or score > best_score:
            best, best_score = encoding, score
    return best


def _conversion(data: bytes, path: str) -> str:
    """How to convert bytes that are not UTF-8: an iconv command from the likely encoding (a
    placeholder for it where none is found; never latin1 by default, which makes mojibake of GBK,
    Shift-JIS or KOI8-R text)."""
    encoding = likely_encoding(data)
    command = f"iconv -f {encoding or 'ENCODING'} -t utf-8"
    example = f"pipe it through `{command}`" if path == STDIN else f"`{command} {shlex.quote(path)} > converted{Path(path).suffix or '.txt'}`"
    if encoding:
        return f"it looks like {encoding}: convert it first, e.g. {example}"
    return f"convert it first, e.g. {example}, ENCODING being the one it was saved in (CP1252, GB18030, SHIFT_JIS, ...)"


MAX_NAME_BYTES = 200  # a file name of ours (NAME.json, NAME.j2) within the 255 bytes file systems take


def name_of_ours(name: str) -> str:
    """A name the user gives a file of ours (a template, a session) or an alias, in NFC: the form
    Linux tools type, so a name typed on a Mac (NFD) is the same name, file and all."""
    return unicodedata.normalize("NFC", name)


def fits_file_name(name: str) -> bool:
    """Whether a name of ours (`name_of_ours`) is short enough, in UTF-8 bytes, to be a file's name."""
    return len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES


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
            try:
                encoding = likely_encoding(value.encode("utf-8", "surrogateescape"))  # the bytes Python kept as lone surrogates
            except UnicodeEncodeError:
                encoding = None
            raise BadInputError(f"the {what} is not valid UTF-8 (it holds a lone surrogate); give UTF-8 text (from a file or a terminal in another encoding, convert with `iconv -f {encoding or 'ENCODING'} -t utf-8`)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_utf8(key, what)
            check_utf8(item, what)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_utf8(item, what)


def decode_document(data: bytes, name: str, suffix: str = "", expected: str = DOCUMENT, lines: bool = False, links: bool = False, cues: bool = True) -> str:
    """Text of a document's bytes; binary, non-UTF-8 and empty input are errors that say so. With
    `lines`, text is read as lines: HTML and subtitles only by their suffix (a line may start with `<html`) and
    nothing stripped, so line numbers count from the first line; `links`: HTML's links as Markdown ones;
    `cues`: a subtitle file's words only (`subtitle_text`), else the file as it is."""
    if not lines and not data.startswith(_BINARY_SIGNATURES) and email_text.is_mail(data, suffix):
        data = email_text.mail_text(data, name).encode("utf-8", "replace")
    raw = in_declared_charset(data, suffix.lower() in HTML_SUFFIXES or not lines) or decode_text(data, name, expected)
    html = suffix.lower() in HTML_SUFFIXES or (not lines and looks_like_html(raw))
    text = html_to_text(raw, links) if html else subtitle_text(raw, name, suffix, lines) if cues else raw
    text = text if lines else re.sub(r"\A(?:[ \t]*\n)+", "", text).rstrip()  # the first line keeps its indent (code, in Markdown)
    if not text.strip():
        empty = "has no text outside its markup, <nav> and <footer>" if html and raw.strip() else "has no text in its cues" if raw.strip() else "is empty"
        raise BadInputError(f"{name} {empty}; {_give_text(expected)}")
    return text


def subtitle_text(text: str, name: str, suffix: str = "", lines: bool = False) -> str:
    """`text` as it is, or, for a subtitle file (a .srt, .vtt, .sbv, .ass or .ssa suffix; without a suffix,
    text that starts as one, unless read as `lines`), its cues' words (`subtitles.to_text`: no numbers,
    timings or tags); one that is not well-formed is read as it is, with a warning that says where."""
    if not subtitles.is_subtitle_source(suffix, text, lines):
        return text
    try:
        return subtitles.to_text(text, name, lines, suffix)
    except subtitles.SubtitleError as exc:
        warnings.warn(f"{exc}; read as it is, cue numbers and timings too", AigcWarning, stacklevel=2)
        return text


def read_document(
    source: str, as_is: bool = False, text_hint: str | None = None, expected: str = DOCUMENT, lines: bool = False, kind: str = "file", links: bool = False, cues: bool = True
) -> str:
    """Read a document from a path, or from stdin when `source` is '-'. `as_is`: the text as it is
    (markup kept, not stripped, but for a subtitle file's, read as its words), only checked to be text
    and not empty; `lines`: read as lines (see `decode_document`), `links` and `cues` too. `text_hint` says how to give text itself, for a `source` that is no file and
    looks like words rather than a path; `expected` what to give instead of a binary file; `kind`
    what a missing one is called ("no such examples file")."""
    decode = functools.partial(_as_is, cues=cues) if as_is else functools.partial(decode_document, lines=lines, links=links, cues=cues)
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


URL = re.compile(r"https?://\S+\Z", re.IGNORECASE)


def _missing(source: str, kind: str = "file", text_hint: str | None = None) -> BadInputError:
    """The error for a file `source` that does not exist: a URL says how to fetch it (`llm -f URL`
    fetches one), and words, with `text_hint`, how to give text itself."""
    if URL.match(source):
        return BadInputError(f"no such {kind}: {source} (aigc reads local files, not URLs; download it first: curl -sL {shlex.quote(source)} -o FILE)")
    words = any(c.isspace() for c in source.strip()) or not any(c in source for c in "./\\")
    return BadInputError(f"no such {kind}: {source}" + (f" ({text_hint})" if text_hint and words else ""))


FILE_SUFFIXES = (*DOCUMENT_SUFFIXES, ".csv", ".tsv", ".jsonl", ".ndjson", ".json")  # a word ending so names a file, not text
OTHER_FILE_SUFFIXES = (".pdf", ".docx", ".doc", ".odt", ".rtf", ".rst", ".epub", ".xlsx", ".xls", ".ods", ".parquet", ".xml", ".yaml", ".yml")  # files aigc reads not, named as text by mistake
PATH_LIKE = re.compile(r"(?:~|\.\.?)/|/[^/]+/|.*/[^/]*\.[A-Za-z][A-Za-z0-9]{0,7}\Z|[\w.~-]*\w/\Z")  # ./x, ../x, ~/x, /a/b, dir/name.ext, dir/: a path (and/or, 24/7, TCP/IP, :/, /start: words)
DOMAIN = re.compile(r"(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/")  # a link without its scheme: text
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mkdn")


def read_input(source: str, lines: bool = False, links: bool = False, urls_as_text: bool = True, cues: bool = True) -> str:
    """The text itself, a document's text (FILE), or stdin (-); `lines`, `links` and `cues` as for `read_document`.
    A lone URL is text (a link to classify), but with `urls_as_text=False` a page not downloaded (translate's).
    One word that names no file here but reads as a file name (`looks_like_a_path`) is "no such file", not the text."""
    path = Path(source).expanduser()
    if source == "-" or (source.strip() and os.path.exists(path)):  # os.path: False for names too long
        return read_document(source, lines=lines, links=links, cues=cues)
    if looks_like_a_path(source) or (not urls_as_text and URL.match(source)):
        raise _missing(source)  # a file name, not words to take as the text
    return source


def looks_like_a_path(source: str) -> bool:
    """Whether `source` is one word that reads as a file name, not text: a data or document suffix
    (`data.csv`, `report.pdf`), or a folder part (`/a/b`, `./x`, `~/x`, `docs/notes.docx`, `drafts/`); a link,
    with or without its scheme, reads as a file name by a data suffix only (`https://x.org/a.json`), words
    with a slash (`and/or`, `:/`, `/start`) as words."""
    if any(c.isspace() for c in source):
        return False
    suffix = Path(source).suffix.lower()
    if suffix in FILE_SUFFIXES:
        return True
    if URL.match(source) or DOMAIN.match(source):
        return False
    return suffix in OTHER_FILE_SUFFIXES or bool(PATH_LIKE.match(source))


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


def _as_is(data: bytes, name: str, suffix: str = "", expected: str = DOCUMENT, cues: bool = True) -> str:
    text = decode_text(data, name, expected)
    text = subtitle_text(text, name, suffix) if cues else text
    if not text.strip():
        raise BadInputError(f"{name} is empty; {_give_text(expected)}")
    return text


def _give_text(expected: str) -> str:
    """What to give instead of an empty input: a document with text, or the `expected` file (a TSV)."""
    return "give a document with some text in it" if expected == DOCUMENT else f"give {expected}"


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
