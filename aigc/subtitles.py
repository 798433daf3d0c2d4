"""Subtitle files, SubRip (.srt), WebVTT (.vtt) and YouTube's SBV (.sbv): their cues found, their
text read as prose (speakers named, cues of one speaker run together) or as blocks to translate,
every other line (the WEBVTT header, NOTE, STYLE and REGION blocks, cue numbers and ids, timing
lines) kept as it is. Advanced SubStation Alpha (.ass, .ssa) is read by `subtitles_ass`, through
the same functions.

Read as the `srt` and `webvtt-py` packages read them: a byte-order mark and CRLF line ends are
fine, the blank line after the last cue may be missing, a VTT cue's id is optional, hours are
optional and the milliseconds may follow a comma or a dot, and a blank line inside a cue's text
(which players take as its end) continues that cue. An SBV cue is a `0:00:01.000,0:00:04.000`
line and its text, without a number.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from .errors import BadInputError, option
from .markdown_blocks import Block, protected_ranges
from .sentences import join_text, unspaced

SUFFIXES = (".srt", ".vtt", ".sbv", ".ass", ".ssa")
_TIME = r"(?:\d+:)?\d{1,2}:\d{1,2}[,.]\d{1,3}"
_TIMING = re.compile(rf"[ \t]*({_TIME})[ \t]*-->[ \t]*({_TIME})(?:[ \t].*)?")  # then a VTT cue's settings or SRT's X1: coordinates
_SBV_TIME = r"(?:\d+:)?\d{1,2}:\d{1,2}\.\d{1,3}"
_SBV_TIMING = re.compile(rf"[ \t]*({_SBV_TIME}),({_SBV_TIME})[ \t]*")
_HEADER = re.compile(r"WEBVTT(?:[ \t].*)?")
_VTT_BLOCK = re.compile(r"(?:NOTE|STYLE|REGION)(?:[ \t].*)?")
_MARKUP = re.compile(r"<[^<>\n]*>|\{\\[^{}\n]*\}")  # a tag (<i>, <v Name>, <c.red>, <00:01.000>) or an ASS override ({\an8})
_VOICE = re.compile(r"<v(?:\.[^\s>]+)?[ \t]+([^>]+)>")
_SENTENCE_END = re.compile(r"[.!?…。！？:;\"'»”’)\]♪]$")
PAUSE = 2.0  # seconds between cues that start a new paragraph
LONG = 600  # characters after which a paragraph ends with its sentence


class SubtitleError(BadInputError):
    """Text that is not a well-formed subtitle file."""


@dataclass
class Cue:
    start: float  # seconds
    end: float
    text: list[list[int]] = field(default_factory=list)  # runs of consecutive text lines (their indexes in the file's lines)


@dataclass
class Subtitles:
    lines: list[str]  # the file's lines, without line ends
    cues: list[Cue]


def is_subtitle_source(suffix: str | None, text: str, lines: bool = False) -> bool:
    """Whether to read `text` as a subtitle file: a file by its suffix (`SUFFIXES`) where it has one;
    stdin, text itself or a file without a suffix (`suffix` None or "") when it starts as one
    (`looks_like_subtitles`), unless read as `lines`."""
    return suffix.lower() in SUFFIXES if suffix else not lines and looks_like_subtitles(text)


def looks_like_subtitles(text: str) -> bool:
    """Whether `text` starts as a subtitle file does: a `WEBVTT` line, a cue number and a timing line
    (`1` and `00:00:00,000 --> 00:00:02,500`), an SBV timing line (`0:00:00.000,0:00:02.500`), or
    an ASS file's sections (`subtitles_ass.looks_like_ass`)."""
    from . import subtitles_ass

    head = text.lstrip("\ufeff").replace("\r\n", "\n").lstrip("\n").split("\n", 2)
    return bool(_HEADER.fullmatch(head[0]) or _SBV_TIMING.fullmatch(head[0]) or (len(head) > 1 and head[0].strip().isdigit() and _TIMING.fullmatch(head[1])) or subtitles_ass.looks_like_ass(text))


def _seconds(time: str) -> float:
    *whole, fraction = re.split(r"[,.]", time)
    parts = [int(p) for p in whole[0].split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts))) + float(f"0.{fraction}")


def parse(text: str, name: str = "the text", suffix: str = "") -> Subtitles:
    """The cues of a SubRip, WebVTT or SBV file's text (SBV by its `suffix`, or text that starts with
    its timing line); a `SubtitleError` naming the line where it is not one (text before the first
    cue, a cue number without its timing line, no cue at all)."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    first = next((k for k, line in enumerate(lines) if line.strip()), 0)  # blank lines before it are kept, as they are
    vtt = bool(_HEADER.fullmatch(lines[first]))
    sbv = not vtt and (suffix.lower() == ".sbv" or bool(_SBV_TIMING.fullmatch(lines[first])))
    timing, ids = (_SBV_TIMING, 0) if sbv else (_TIMING, 1)  # the lines before a timing line that are a cue's number or id
    what = "WebVTT" if vtt else "YouTube SBV" if sbv else "subtitle (SubRip or WebVTT)"
    cue = "a `0:00:01.000,0:00:04.000` line, then its text" if sbv else "a number or id line, a `00:00:01,000 --> 00:00:04,000` line, then its text"
    cues: list[Cue] = []
    i = next((k for k in range(first, len(lines)) if not lines[k].strip()), len(lines)) if vtt else 0  # the header block: WEBVTT, Kind: captions, ...
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        end = next((k for k in range(i, len(lines)) if not lines[k].strip()), len(lines))
        timings = [k for k in range(i, end) if timing.fullmatch(lines[k])]
        if vtt and not timings and _VTT_BLOCK.fullmatch(lines[i]):
            i = end  # a NOTE, STYLE or REGION block, kept as it is
            continue
        stray = range(i, timings[0] - ids if timings else end)  # lines before a cue's id: more of the last cue's text, after a blank line
        if stray and (not cues or (not timings and lines[i].strip().isdigit())):
            problem = f"cue {lines[i].strip()} has no timing line" if lines[i].strip().isdigit() else f"{lines[i].strip()[:40]!r} is not a cue"
            raise SubtitleError(f"{name} is not a valid {what} file: line {i + 1}: {problem} (a cue is {cue})")
        if stray:
            cues[-1].text.append(list(stray))
        for n, k in enumerate(timings):
            after = timings[n + 1] if n + 1 < len(timings) else None  # a cue right after this one, with no blank line between
            stop = end if after is None else after - 1 if ids and after - 1 > k and lines[after - 1].strip().isdigit() else after
            match = timing.fullmatch(lines[k])
            cues.append(Cue(_seconds(match.group(1)), _seconds(match.group(2)), [list(range(k + 1, stop))] if stop > k + 1 else []))
        i = end
    if not cues:
        raise SubtitleError(f"{name} is not a valid {what} file: it has no cue ({cue})")
    return Subtitles(lines, cues)


# --- reading the text ------------------------------------------------------------------------


def _line_text(line: str) -> tuple[str | None, str]:
    """A cue line's speaker (its `<v Name>`), and its words without markup."""
    voice = _VOICE.search(line)
    words = html.unescape(_MARKUP.sub("", line)).replace("\u200e", "").replace("\u200f", "")
    return (voice.group(1).strip() if voice else None), " ".join(words.split())


def cue_texts(subtitles: Subtitles) -> list[tuple[str | None, str, float, float]]:
    """Each cue with words, as (speaker, words, start, end); a line repeating the line before it (as
    rolling captions, YouTube's, show each line twice) is left out."""
    out = []
    last = ""
    for cue in subtitles.cues:
        speaker, parts = None, []
        for index in (k for run in cue.text for k in run):
            who, line = _line_text(subtitles.lines[index])
            speaker = speaker or who
            if line and line != last:
                parts.append(line)
                last = line
        if words := join_text(parts):
            out.append((speaker, words, cue.start, cue.end))
    return out


def to_text(text: str, name: str = "the text", lines: bool = False, suffix: str = "") -> str:
    """A subtitle file's words as prose: cues run together into paragraphs, a new one where the
    speaker changes (`Name: ` before it, from a `<v Name>` tag or an ASS line's Name), after a pause
    of `PAUSE` seconds, or at a sentence's end once it is `LONG` characters long. `lines`: one line a
    cue, `Name: ` before each that names its speaker. An ASS file (by its `suffix`, or text that
    starts as one) by `subtitles_ass`."""
    from . import subtitles_ass

    cues = subtitles_ass.cue_texts(text, name) if subtitles_ass.is_ass(text, suffix) else cue_texts(parse(text, name, suffix))
    if lines:
        return "\n".join(f"{speaker}: {words}" if speaker else words for speaker, words, _, _ in cues)
    paragraphs: list[str] = []
    current, end = None, None
    for speaker, words, start, stop in cues:
        new = (speaker is not None and speaker != current) or (end is not None and start - end >= PAUSE)
        if paragraphs and not new and not (len(paragraphs[-1]) >= LONG and _SENTENCE_END.search(paragraphs[-1])):
            paragraphs[-1] = join_text([paragraphs[-1], words])
        else:
            paragraphs.append(f"{speaker}: {words}" if speaker else words)
        current, end = speaker or current, stop
    return "\n\n".join(paragraphs)


# --- translating -----------------------------------------------------------------------------


@dataclass
class _CueBlock(Block):
    """A cue's text lines: its texts put back into the file, each on one line, or (`breaks`) cut into
    as many lines as the source had."""

    breaks: dict[int, int] = field(default_factory=dict)  # text index -> lines to cut it into

    def render(self, translations: list[str]) -> str:
        return super().render([rebroken(_one_line(t), self.breaks.get(i, 1)) for i, t in enumerate(translations)])


def _one_line(text: str) -> str:
    """A translation fit for a cue line: no `-->`, which would make a timing line of it."""
    return text.replace("-->", "->")


def rebroken(text: str, lines: int) -> str:
    """`text` cut into `lines` lines of about equal length at spaces (between Chinese or Japanese
    characters where it has none), after punctuation where one is near, never inside markup; fewer
    where it has too few places to cut."""
    if lines < 2:
        return text
    kept = protected_ranges(text) + [m.span() for m in _MARKUP.finditer(text)]

    def inside(k: int) -> bool:
        return any(a < k < b for a, b in kept)

    spaces = [k for k, c in enumerate(text) if c == " " and not inside(k)]
    places = [(k, k + 1) for k in spaces] or [(k, k) for k in range(1, len(text)) if unspaced(text[k - 1]) and unspaced(text[k]) and not inside(k)]
    cuts: list[tuple[int, int]] = []
    for n in range(1, lines):
        target = len(text) * n / lines
        options = [p for p in places if not cuts or p[0] > cuts[-1][1]]
        if not options:
            break
        cuts.append(min(options, key=lambda p: abs(p[0] - target) - (len(text) / 8 if text[p[0] - 1] in ",.;:!?、，。" else 0)))
    out, start = [], 0
    for a, b in cuts:
        out.append(text[start:a])
        start = b
    return "\n".join([*out, text[start:]])


def _split_edges(line: str, markup: re.Pattern = _MARKUP) -> tuple[str, str, str]:
    """A cue line as (markup and dialogue dash before its words, its words, markup after them)."""
    lead = re.match(rf"(?:\s*(?:{markup.pattern}))*\s*(?:[-‐–—][ \t]*)?", line).group(0)  # the markup, spaces and dialogue dash it starts with
    rest = line[len(lead) :]
    trail = re.search(rf"(?:\s*(?:{markup.pattern}))*\s*\Z", rest).group(0)
    return lead, rest[: len(rest) - len(trail)], trail


def _loose_markup(text: str, markup: re.Pattern = _MARKUP) -> list[tuple[int, int]]:
    """Where `text` has subtitle markup that the translation checks do not keep (`<c.red>`,
    `<00:01.000>`, `{\\an8}`, which `protected_ranges` does not cover)."""
    kept = protected_ranges(text)
    return [m.span() for m in markup.finditer(text) if not any(a <= m.start() and m.end() <= b for a, b in kept)]


def _add_words(block: _CueBlock, words: str, markup: re.Pattern = _MARKUP) -> None:
    """`words` into `block`: their loose markup as literal pieces, the text between as texts."""
    start = 0
    for a, b in [*_loose_markup(words, markup), (len(words), len(words))]:
        part = words[start:a]
        lead = part[: len(part) - len(part.lstrip())]
        core = part.strip()
        block.pieces.append(lead)
        if any(c.isalpha() for c in core):
            block.pieces.append(len(block.texts))
            block.texts.append(core)
        else:
            block.pieces.append(core)
        block.pieces.append(part[len(lead) + len(core) :] + words[a:b])
        start = b


def _cue_block(lines: list[str], markup: re.Pattern = _MARKUP, block: _CueBlock | None = None) -> _CueBlock:
    """A run of a cue's text lines as a block (into `block`, else a new one): each line its own text
    where each ends a sentence, starts with a dialogue dash or a speaker, or holds `markup` the checks
    do not keep; else the lines as one text (a sentence wrapped), cut back into as many lines."""
    parts = [_split_edges(line, markup) for line in lines]
    lead, words, trail = _split_edges(join_text([line.strip() for line in lines if line.strip()]), markup)
    block = _CueBlock("cue", []) if block is None else block
    apart = (
        len(lines) == 1
        or not all(line.strip() for line in lines)  # an ASS line's text with an empty line (`\\N\\N`): the breaks stay where they are
        or any(re.search(r"[-‐–—]\s*$|<v[\s.]", start) for start, _, _ in parts[1:])
        or all(_SENTENCE_END.search(line) for _, line, _ in parts[:-1])
        or bool(_loose_markup(words, markup))
    )
    if apart:
        for n, (start, line, end) in enumerate(parts):
            block.pieces.append(("\n" if n else "") + start)
            _add_words(block, line, markup)
            block.pieces.append(end)
    elif any(c.isalpha() for c in words):
        block.pieces += [lead, 0, trail]
        block.texts.append(words)
        block.breaks[0] = len(lines)
    else:
        block.pieces.append("\n".join(lines))
    return block


def translation_blocks(text: str, name: str = "the text", suffix: str = "") -> list[Block]:
    """A subtitle file as blocks for `translate`: every line as it is but for the cues' text,
    whose words are translated (`render_blocks` gives the file back, `\\n` line ends). An ASS file
    (by its `suffix`, or text that starts as one) by `subtitles_ass`."""
    from . import subtitles_ass

    try:
        if subtitles_ass.is_ass(text, suffix):
            return subtitles_ass.translation_blocks(text, name)
        subtitles = parse(text, name, suffix)
    except SubtitleError as exc:
        raise SubtitleError(f"{exc}; fix it, or give {option('plain')} to translate it line by line as plain text") from None
    runs = {run[0]: run for cue in subtitles.cues for run in cue.text if run}
    blocks: list[Block] = []
    i = 0
    while i < len(subtitles.lines):
        run = runs.get(i)
        if run:
            blocks.append(_cue_block(subtitles.lines[run[0] : run[-1] + 1]))
            i = run[-1] + 1
        else:
            blocks.append(Block("subtitle", [subtitles.lines[i]]))
            i += 1
    return blocks
