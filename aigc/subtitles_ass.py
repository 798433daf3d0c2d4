"""Advanced SubStation Alpha subtitle files (.ass, and SubStation Alpha's .ssa): the Dialogue lines
of their [Events] section read as prose (their visible words) or as blocks to translate, every
other line ([Script Info], styles, fonts, Comment lines) and each Dialogue line's fields before its
Text (layer, timings, style, name, margins, effect) kept as they are.

Read as libass reads them: sections start with a `[Name]` line, `;` starts a comment line, the
[Events] section's `Format:` line names the fields of its Dialogue lines, whose last, Text, may hold
commas. In the text, `{...}` is an override block (`{\\i1}`, `{\\pos(10,20)}`) or a comment, not
shown; `\\N` breaks the line (`\\n` too, where the style wraps so), `\\h` is a hard space; after
`{\\p1}` (up to `{\\p0}`) come drawing commands, not words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .markdown_blocks import Block
from .sentences import join_text
from .subtitles import SubtitleError, _cue_block, _CueBlock

SUFFIXES = (".ass", ".ssa")
_SECTION = re.compile(r"[ \t]*\[([^\]\n]+)\][ \t]*")
_BLOCK = re.compile(r"\{[^{}]*\}")  # an override block or a comment
_BREAK = re.compile(r"(\\[Nn])")
_DRAWING = re.compile(r"\\p(\d+)")  # \p1 starts drawing commands, \p0 ends them (not \pos, \pbo)
_UNESCAPED_BRACE = re.compile(r"(?<!\\)[{}]") # a brace in a translation, shown as `\\{` / `\\}`
_KARAOKE = re.compile(r"\\[kK][fo]?\d")
_TIME = re.compile(r"[ \t]*\d+:\d{1,2}:\d{1,2}(?:\.\d+)?[ \t]*")
_FORMAT = "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"


@dataclass
class Dialogue:
    line: int  # its index in the file's lines
    text_at: int  # where its Text field starts in the line
    start: float  # seconds
    end: float
    name: str  # the Name (Actor) field: who speaks


def is_ass(text: str, suffix: str | None = "") -> bool:
    """Whether to read `text` as an ASS file: by its `suffix` where it has one, else by its text."""
    return suffix.lower() in SUFFIXES if suffix else looks_like_ass(text)


def looks_like_ass(text: str) -> bool:
    """Whether `text` starts as an ASS file does: its first line (but blank and `;` ones) a section's
    (`[Script Info]`), and an [Events] section in it."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith(";")), "")
    return bool(_SECTION.fullmatch(first)) and any(line.strip().lower() == "[events]" for line in lines)


def _seconds(time: str) -> float:
    hours, minutes, seconds = time.strip().split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse(text: str, name: str = "the text") -> tuple[list[str], list[Dialogue]]:
    """The lines of an ASS file's text (no line ends) and its Dialogue lines; a `SubtitleError`
    naming the line where it is not one (text before the first section, a Dialogue line before
    the Format line or with fewer fields than it names), or none with a Dialogue line."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    what = f"{name} is not a valid Advanced SubStation Alpha (.ass/.ssa) file"
    section, fields, named, dialogues = None, None, "", []
    for k, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        if match := _SECTION.fullmatch(line):
            section = match.group(1).strip().lower()
            continue
        if section is None:
            raise SubtitleError(f"{what}: line {k + 1}: {line.strip()[:40]!r} comes before the first section (it starts with a [Script Info] line)")
        key, colon, value = line.partition(":")
        if section != "events" or not colon:
            continue
        if key.strip().lower() == "format":
            named = value.strip()
            fields = [f.strip().lower() for f in value.split(",")]
            if fields[-1] != "text" or not {"start", "end"} <= set(fields):
                raise SubtitleError(f"{what}: line {k + 1}: the Format line names no Start, End and (last) Text fields (it is `{_FORMAT}`)")
        elif key.strip().lower() == "dialogue":
            if fields is None:
                raise SubtitleError(f"{what}: line {k + 1}: a Dialogue line before the [Events] section's Format line (`{_FORMAT}`)")
            at = len(key) + 1 + len(value) - len(value.lstrip(" \t"))
            values = line[at:].split(",", len(fields) - 1)
            if len(values) < len(fields):
                raise SubtitleError(f"{what}: line {k + 1}: it has {len(values)} fields, the Format line names {len(fields)} ({named})")
            times = [values[fields.index(f)] for f in ("start", "end")]
            if bad := next((t.strip() for t in times if not _TIME.fullmatch(t)), None):
                raise SubtitleError(f"{what}: line {k + 1}: {bad!r} is not a time (H:MM:SS.cc)")
            speaker = values[fields.index("name")].strip() if "name" in fields else ""
            dialogues.append(Dialogue(k, len(line) - len(values[-1]), _seconds(times[0]), _seconds(times[1]), speaker))
    if not dialogues:
        raise SubtitleError(f"{what}: it has no Dialogue line (an [Events] section, a `{_FORMAT}` line, then `Dialogue: 0,0:00:01.00,0:00:04.00,Default,,0,0,0,,Its text` lines)")
    return lines, dialogues


# --- reading the text ------------------------------------------------------------------------


def visible_lines(text: str) -> list[str]:
    """A Dialogue's Text as its shown lines: override blocks, comments and drawing commands left
    out, `\\N` and `\\n` as line breaks, `\\h` as a space."""
    shown, drawing, start = [], False, 0
    for match in [*_BLOCK.finditer(text), None]:
        if not drawing:
            shown.append(text[start : match.start() if match else len(text)])
        if match:
            codes = _DRAWING.findall(match.group(0))
            drawing = int(codes[-1]) > 0 if codes else drawing
            start = match.end()
    return [" ".join(line.replace("\\h", " ").split()) for line in _BREAK.split("".join(shown))[0::2]]


def cue_texts(text: str, name: str = "the text") -> list[tuple[str | None, str, float, float]]:
    """Each Dialogue line with words, in the order they are shown, as (speaker, words, start, end);
    a line repeating the line before it (a sign drawn twice, on two layers) is left out."""
    lines, dialogues = parse(text, name)
    out = []
    last = ""
    for dialogue in sorted(dialogues, key=lambda d: d.start):
        parts = []
        for line in visible_lines(lines[dialogue.line][dialogue.text_at :]):
            if line and line != last:
                parts.append(line)
                last = line
        if words := join_text(parts):
            out.append((dialogue.name or None, words, dialogue.start, dialogue.end))
    return out


# --- translating -----------------------------------------------------------------------------


@dataclass
class _DialogueBlock(_CueBlock):
    """A Dialogue line: its fields before the text as they are, then the text's lines with its own
    breaks between, in order (`\\N` hard, `\\n` soft; for a line more, `\\N`, or `\\n` where it had
    only those), its hard spaces (sent as no-break spaces) as `\\h`, and the braces of its translations
    escaped (`\\{`, `\\}`), as libass shows them, lest they open an override block."""

    fields: str = ""
    line_breaks: list[str] = field(default_factory=list)

    def render(self, translations: list[str]) -> str:
        kept, more = iter(self.line_breaks), "\\n" if set(self.line_breaks) == {"\\n"} else "\\N"
        escaped = [_UNESCAPED_BRACE.sub(r"\\\g<0>", t) for t in translations]
        text = re.sub("\n", lambda _: next(kept, more), super().render(escaped))
        return self.fields + text.replace("\u00a0", "\\h")


def _dialogue_block(line: str, text_at: int) -> Block:
    """A Dialogue line as a block: the words of its text translated, line by line or wrapped lines
    together as `subtitles._cue_block` does, with override blocks and comments kept where they are
    (those inside a line cut it into pieces translated apart) and `\\h` sent as a no-break space; a line
    of drawing commands or karaoke timings (`{\\k20}`, syllable by syllable) kept as it is."""
    text = line[text_at:]
    blocks = [m.group(0) for m in _BLOCK.finditer(text)]
    if any(_KARAOKE.search(b) or any(int(p) for p in _DRAWING.findall(b)) for b in blocks):
        return Block("subtitle", [line])
    parts = _BREAK.split(text.replace("\\h", "\u00a0"))
    return _cue_block(parts[0::2], _BLOCK, _DialogueBlock("cue", [], fields=line[:text_at], line_breaks=parts[1::2]))


def translation_blocks(text: str, name: str = "the text") -> list[Block]:
    """An ASS file as blocks for `translate`: every line as it is but for its Dialogue lines' text
    (`render_blocks` gives the file back, `\\n` line ends)."""
    lines, dialogues = parse(text, name)
    at = {dialogue.line: dialogue.text_at for dialogue in dialogues}
    return [_dialogue_block(line, at[k]) if k in at else Block("subtitle", [line]) for k, line in enumerate(lines)]
