"""Translate a Markdown or plain-text document, keeping its structure.

The document is split into blocks (headings, paragraphs, list items, quotes, table rows, code);
only the text of each block is translated, and the structure (heading #'s, list markers, quote
marks, blank lines, code blocks untouched) is put back around the translations. Blocks are grouped
into chunks on block boundaries by token count; each engine call translates a batch of chunks.

By default every sentence is its own prompt, with a few example translations before it as earlier
chat turns: with the embedded 135M model that scored best of the formats tried against reference
translations (`python -m benchmarks.translate_prompts`). A glossary's terms are listed in the
system prompt of the sentences that contain them, source terms copied through untranslated are
replaced, and terms still missing are reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .. import templates
from ..errors import BadInputError
from ..languages import Language, lookup
from .base import Generator, type_name

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


# --- sentences and chunks --------------------------------------------------------------------

_ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "no", "fig", "approx", "cf", "jr", "sr"}
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=\S)|(?<=[。！？])")


def split_sentences(text: str) -> list[str]:
    """Sentences of one block's text; common abbreviations and initials do not end a sentence."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        word = text[start:end].rsplit(None, 1)[-1].rstrip(".").lower() if text[start:end].strip() else ""
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


def segments(text: str, budget: int, count, by_sentence: bool) -> list[str]:
    """What is sent to the model for one block's text: each sentence (by_sentence), else the text
    whole, or runs of sentences when it is longer than `budget` tokens; sentences longer than the
    budget are cut into runs of words."""
    if not by_sentence and count(text) <= budget:
        return [text]
    units: list[str] = []
    for sentence in split_sentences(text):
        size = count(sentence)
        if size <= budget:
            units.append(sentence)
            continue
        words = sentence.split()
        step = max(1, len(words) * budget // (size + 1))
        units += [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
    if by_sentence:
        return units
    runs: list[str] = []
    for unit in units:
        if runs and count(runs[-1] + " " + unit) <= budget:
            runs[-1] += " " + unit
        else:
            runs.append(unit)
    return runs


def group_chunks(sizes: list[int], budget: int) -> list[list[int]]:
    """Indexes of consecutive blocks packed into chunks of at most `budget` tokens; a chunk always
    ends on a block boundary, and a block larger than the budget is a chunk of its own."""
    chunks: list[list[int]] = []
    used = 0
    for index, size in enumerate(sizes):
        if not chunks or used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(index)
        used += size
    return chunks


# --- glossary --------------------------------------------------------------------------------


def parse_glossary(text: str, name: str = "glossary") -> list[tuple[str, str]]:
    """`source<TAB>target` lines; blank lines and `#` comments are skipped. A malformed line is a
    `BadInputError` naming the file and line."""
    entries: list[tuple[str, str]] = []
    seen: dict[str, tuple[str, int]] = {}
    first = True
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 2 or not columns[0].strip() or not columns[1].strip():
            found = "no tab" if len(columns) == 1 else f"{len(columns)} columns" if len(columns) > 2 else "an empty term"
            raise BadInputError(f"{name}:{number}: expected 'source<TAB>target', found {found}: {line.strip()[:60]!r}")
        source, target = columns[0].strip(), columns[1].strip()
        if first and (source.lower(), target.lower()) == ("source", "target"):
            first = False
            continue  # a header row
        first = False
        key = source.lower()
        if key in seen and seen[key][0] != target:
            raise BadInputError(f"{name}:{number}: {source!r} is already translated as {seen[key][0]!r} on line {seen[key][1]}")
        if key not in seen:
            seen[key] = (target, number)
            entries.append((source, target))
    if not entries:
        raise BadInputError(f"{name} has no entries; write one 'source<TAB>target' pair per line")
    return entries


def load_glossary(path: str | Path) -> list[tuple[str, str]]:
    """Read and parse a glossary TSV file."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"no such glossary file: {path}") from None
    except OSError as exc:
        raise BadInputError(f"cannot read glossary {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"glossary {path} is not valid UTF-8 (at byte offset {exc.start})") from None
    return parse_glossary(text, str(path))


def _term(term: str, whole: bool = True) -> re.Pattern:
    """A glossary term as a case-insensitive match of whole words (`whole=False`: of words that
    start with it, so an inflected "Krankenhauses" counts as "Krankenhaus")."""
    left = r"(?<!\w)" if term[:1].isalnum() else ""
    right = r"(?!\w)" if term[-1:].isalnum() and whole else ""
    return re.compile(left + re.escape(term) + right, re.I)


# --- cleaning a model's answer ---------------------------------------------------------------

_PREAMBLE = re.compile(
    r"^(?:(?:sure|certainly|of course|okay)\b[!,.]?\s*|"
    r"(?:here(?:'s| is) (?:the|a|my|your) translation|the translation(?: is)?|translation|translated text)\b[^:\n]*:\s*)",
    re.I,
)
_QUOTES = {'"': '"', "“": "”", "«": "»", "'": "'", "„": "“", "「": "」"}


def clean_translation(raw: str, source: str, target: Language) -> str:
    """The translation in a model's answer: preambles ("Here is the translation:"), labels
    ("French:"), wrapping quotes, extra lines and rambling past the source's sentences removed.
    "" when nothing is left."""
    text = raw.strip()
    for _ in range(2):
        text = _PREAMBLE.sub("", text, count=1).strip()
    labels = "|".join(re.escape(x) for x in {target.name, target.native, "Translation"} if x)
    text = re.sub(rf"^(?:{labels})\s*(?:\([^)]*\))?\s*:\s*", "", text, flags=re.I).strip()
    if "\n" not in source:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]] and source[:1] not in _QUOTES:
        text = text[1:-1].strip()
    wanted = len(split_sentences(source))
    found = split_sentences(text)
    if len(found) > wanted and len(text) > 1.6 * len(source) + 20:  # the model went on writing
        text = (" " if target.spaces else "").join(found[:wanted])
    return text


# --- examples --------------------------------------------------------------------------------

# The same short sentences in a few languages: as chat turns before each sentence they brought the
# embedded model's translations closer to reference ones than instructions alone
# (`python -m benchmarks.translate_prompts`).
EXAMPLES: dict[str, list[str]] = {
    "en": ["Good morning.", "I have a dog.", "The house is big.", "She drinks water every day.", "Where is my book?", "We live in a small town."],
    "fr": ["Bonjour.", "J'ai un chien.", "La maison est grande.", "Elle boit de l'eau tous les jours.", "Où est mon livre ?", "Nous habitons dans une petite ville."],
    "es": ["Buenos días.", "Tengo un perro.", "La casa es grande.", "Ella bebe agua todos los días.", "¿Dónde está mi libro?", "Vivimos en un pueblo pequeño."],
    "de": ["Guten Morgen.", "Ich habe einen Hund.", "Das Haus ist groß.", "Sie trinkt jeden Tag Wasser.", "Wo ist mein Buch?", "Wir wohnen in einer kleinen Stadt."],
    "it": ["Buongiorno.", "Ho un cane.", "La casa è grande.", "Lei beve acqua ogni giorno.", "Dov'è il mio libro?", "Viviamo in una piccola città."],
    "pt": ["Bom dia.", "Eu tenho um cachorro.", "A casa é grande.", "Ela bebe água todos os dias.", "Onde está o meu livro?", "Nós moramos em uma cidade pequena."],
    "nl": ["Goedemorgen.", "Ik heb een hond.", "Het huis is groot.", "Ze drinkt elke dag water.", "Waar is mijn boek?", "We wonen in een klein stadje."],
}


def example_turns(source: Language | None, target: Language) -> list[dict]:
    """Example user/assistant turns for this pair; English sources stand in for `auto`. None when
    the table lacks either language or they are the same."""
    src = source.base if source else "en"
    if src == target.base or src not in EXAMPLES or target.base not in EXAMPLES:
        return []
    turns: list[dict] = []
    for a, b in zip(EXAMPLES[src], EXAMPLES[target.base]):
        turns += [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
    return turns


# --- the generator ---------------------------------------------------------------------------


@dataclass
class TranslateOptions:
    target_language: str | None = None
    source_language: str = "auto"
    glossary: Any = None  # [(source, target), ...] or {source: target}
    template: str = "translate"
    by_sentence: bool = True
    examples: bool = True
    chunk_tokens: int = 256
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not self.target_language:
            raise BadInputError("give the language to translate into: --to French or --to fr (-O target_language=fr in aigc batch)")
        self.target: Language = lookup(self.target_language)
        source = str(self.source_language).strip()
        self.source: Language | None = None if source.lower() in ("", "auto") else lookup(source)
        if self.source and self.source.code == self.target.code:
            raise BadInputError(f"--to and --from are both {self.target.name}; nothing to translate")
        if self.chunk_tokens < 16:
            raise BadInputError(f"chunk size must be at least 16 tokens, got {self.chunk_tokens}")
        if self.batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {self.batch_size}")
        self.terms = _glossary_entries(self.glossary)


def _glossary_entries(glossary: Any) -> list[tuple[str, str]]:
    if not glossary:
        return []
    items = list(glossary.items()) if isinstance(glossary, dict) else list(glossary)
    entries = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) and x.strip() for x in item)):
            raise BadInputError(f"a glossary entry must be a (source, target) pair of non-empty strings, got {item!r}")
        entries.append((item[0].strip(), item[1].strip()))
    return entries


@dataclass
class _Segment:
    block: int
    text: int
    source: str
    terms: list[tuple[str, str]]
    translation: str = ""


class TranslateGenerator(Generator):
    """Translate a document into another language, keeping its Markdown structure."""

    name = "translate"
    description = "Translate a document, keeping its Markdown structure"
    Options = TranslateOptions
    sampling_defaults = {"temperature": 0.0, "repetition_penalty": 1.1}

    def check_inputs(self, inputs: str) -> None:
        if not isinstance(inputs, str):
            raise BadInputError(f"translate takes text (str), got {type_name(inputs)}")
        if not inputs.strip():
            raise BadInputError("there is no text to translate")

    def preprocess(self, inputs: str, opts: TranslateOptions) -> dict[str, Any]:
        blocks = parse_blocks(inputs.replace("\r\n", "\n"))
        count = self.engine.count_tokens
        movable = [i for i, block in enumerate(blocks) if block.texts]
        sizes = [sum(count(t) for t in blocks[i].texts) for i in movable]
        chunks: list[list[_Segment]] = []
        for group in group_chunks(sizes, opts.chunk_tokens):
            chunk = []
            for b in (movable[k] for k in group):
                for t, text in enumerate(blocks[b].texts):
                    for piece in segments(text, opts.chunk_tokens, count, opts.by_sentence):
                        terms = [(s, d) for s, d in opts.terms if _term(s).search(piece)]
                        chunk.append(_Segment(b, t, piece, terms))
            chunks.append(chunk)
        return {"blocks": blocks, "chunks": chunks}

    def _prompt(self, segment: _Segment, opts: TranslateOptions) -> list[dict]:
        glossary = "\n".join(f"- {s}: {d}" for s, d in segment.terms)
        source = opts.source.name if opts.source else ""
        messages = templates.render(
            opts.template, {"text": segment.source, "target": opts.target.name, "source": source, "glossary": glossary}
        ).messages
        if opts.examples:
            messages = messages[:-1] + example_turns(opts.source, opts.target) + messages[-1:]
        return messages

    def forward(self, prepared: dict[str, Any], opts: TranslateOptions, sampling: dict[str, Any]) -> dict[str, Any]:
        chunks = prepared["chunks"]
        defaults = templates.get_template(opts.template).defaults
        for start in range(0, len(chunks), opts.batch_size):
            self.progress(start, len(chunks), "translating")
            batch = [segment for chunk in chunks[start : start + opts.batch_size] for segment in chunk]
            if not batch:
                continue
            longest = max(self.engine.count_tokens(s.source) for s in batch)
            params = self.sampling(sampling, {"max_tokens": 3 * longest + 16, **defaults})
            outputs = self.engine.generate([self._prompt(s, opts) for s in batch], params)
            for segment, group in zip(batch, outputs):
                segment.translation = clean_translation(group[0].text, segment.source, opts.target)
        self.progress(len(chunks), len(chunks), "translating")
        return prepared

    def postprocess(self, raw: dict[str, Any], opts: TranslateOptions) -> dict[str, Any]:
        blocks = raw["blocks"]
        pieces: list[list[list[str]]] = [[[] for _ in block.texts] for block in blocks]
        misses: dict[tuple[str, str], int] = {}
        joiner = " " if opts.target.spaces else ""
        for segment in (s for chunk in raw["chunks"] for s in chunk):
            text = segment.translation or segment.source  # nothing usable came back: keep the source
            for source, target in segment.terms:
                if not _term(target, whole=False).search(text):
                    text = _term(source).sub(lambda m: target, text)  # a copied-through source term
                if not _term(target, whole=False).search(text):
                    misses[(source, target)] = misses.get((source, target), 0) + 1
            pieces[segment.block][segment.text].append(text)
        translations = [[joiner.join(parts) for parts in block] for block in pieces]
        order = {term: i for i, term in enumerate(opts.terms)}
        return {
            "translation": render_blocks(blocks, translations),
            "source_language": opts.source.code if opts.source else "auto",
            "target_language": opts.target.code,
            "glossary_misses": [
                {"source": s, "target": d, "count": n} for (s, d), n in sorted(misses.items(), key=lambda kv: order[kv[0]])
            ],
        }
