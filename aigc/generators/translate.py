"""Translate a Markdown or plain-text document, keeping its structure.

The document is split into blocks (headings, paragraphs, list items, quotes, table rows, code;
a subtitle file's cue text, see `subtitles`); only the text of each block is translated, and the structure (heading #'s, list markers, quote
marks, blank lines, code blocks untouched) is put back around the translations. Blocks are grouped
into chunks on block boundaries by token count; each engine call translates at most `ROWS`
sentences of similar length (and `batch_size` chunks' tokens), however the text falls in paragraphs.

By default every sentence is its own prompt, with a few example translations before it as earlier
chat turns: with the embedded 135M model that scored best of the formats tried against reference
translations (`python -m benchmarks.translate_prompts`). A glossary's terms are listed in the
system prompt of the sentences that contain them, source terms copied through untranslated are
replaced, and terms still missing are reported.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from .. import template_files, templates
from ..engine.scoring import length_batches
from ..errors import BadInputError, OptionError, option
from ..languages import Language, for_option, lookup, tag
from ..markdown_blocks import inline_parts, keeps_markup, parse_blocks, placeholders, protected_ranges, protected_spans, render_blocks, without_emphasis
from ..sentences import WIDE, fitted, join_text, split_sentences, word_runs
from ..subtitles import looks_like_subtitles, translation_blocks
from ..textio import decode_text, mostly_crlf, numbered_lines, unquote
from .base import Generator, names_text, type_name
from .translate_resume import Checkpoint


# --- chunks ----------------------------------------------------------------------------------

ROWS = 32  # sentences one engine call decodes together at most (the server's --max-batch default), however long a paragraph: memory and the wait for progress stay bounded
WINDOW = 4 * ROWS  # sentences sorted by length together, in document order


def segments(text: str, budget: int, count, by_sentence: bool) -> list[str]:
    """What is sent to the model for one block's text: each sentence (by_sentence), else the text
    whole, or runs of sentences when it is longer than `budget` tokens; sentences longer than the
    budget are cut into runs of words, and runs still longer (no spaces) between characters; code
    and URLs stay whole where they fit."""
    if not by_sentence and count(text) <= budget:
        return [text]
    units: list[str] = []
    for sentence in split_sentences(text, protected_ranges(text)):
        size = count(sentence)
        if size <= budget:
            units.append(sentence)
            continue
        for run in word_runs(sentence, size, budget, protected_ranges(sentence)):  # Thai or a data URI has no place to cut at
            units += [piece for piece, _ in fitted(run, count(run), budget, count, protected_ranges)]
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


def has_text(text: str, plain: bool = False) -> bool:
    """Whether a document has words to translate: not only code, front matter, markup or numbers."""
    return any(block.texts for block in parse_blocks(text.lstrip("\ufeff").replace("\r\n", "\n"), plain=plain))


# --- glossary --------------------------------------------------------------------------------


_COLUMN_WORDS = {
    "word", "words", "term", "terms", "source", "src", "target", "tgt", "translation", "translations", "translated",
    "original", "text", "phrase", "phrases", "definition", "language", "lang", "from", "to",
    # the same in German, French, Spanish, Italian, Portuguese and Dutch (as a glossary made there names them)
    "begriff", "begriffe", "wort", "wörter", "quelle", "ziel", "quellsprache", "zielsprache", "ausgangssprache", "ausgangstext", "zieltext",
    "übersetzung", "übersetzungen", "sprache", "terme", "termes", "mot", "mots", "cible", "traduction", "traductions", "texte", "langue",
    "término", "términos", "palabra", "palabras", "origen", "destino", "fuente", "traducción", "traducciones", "texto", "idioma",
    "termine", "termini", "parola", "parole", "origine", "destinazione", "traduzione", "traduzioni", "testo", "lingua",
    "termo", "termos", "palavra", "palavras", "origem", "tradução", "traduções", "língua",
    "woord", "woorden", "bron", "doel", "vertaling", "vertalingen", "tekst", "taal", "brontaal", "doeltaal",
}


def _column_name(cell: str) -> bool:
    """Whether `cell` is a column's name: words such as source, term or translation, alone or
    combined (`Source term`, `source_term`, `Target-Language`), in any case."""
    words = [word for word in re.split(r"[\s_\-./]+", cell.lower()) if word]
    return bool(words) and all(word in _COLUMN_WORDS for word in words)


def _language_code(cell: str) -> str | None:
    """The language `cell` names, without its region or script, column words aside: `en-US`, `en_US`,
    `English` and `English term` are `en`."""
    words = [word for word in re.split(r"[\s_]+", cell.strip()) if word and word.lower() not in _COLUMN_WORDS]
    for name in dict.fromkeys([" ".join(words), "-".join(words)] if words else []):  # en_US is en-US
        try:
            return lookup(name).code.split("-")[0]
        except BadInputError:
            continue
    return None


def _header(left: str, right: str, languages: tuple[str, str] | None) -> bool:
    """Whether a glossary's first row names its columns (two different column names: `Word<TAB>Translation`,
    `source_term<TAB>target_term`; two languages with column words: `English term<TAB>German term`)
    or this run's `languages` (source, or auto, and target: `en<TAB>de` or `English<TAB>German` for
    en to de) rather than giving a term (`it<TAB>es`)."""
    if left.lower() != right.lower() and _column_name(left) and _column_name(right):
        return True
    codes = _language_code(left), _language_code(right)
    if None not in codes and codes[0] != codes[1] and all(len(cell.split()) > 1 and any(_column_name(word) for word in cell.split()) for cell in (left, right)):
        return True
    if languages is None:
        return False
    source = None if str(languages[0]).strip().lower() in ("", "auto") else _language_code(languages[0])
    target, code = _language_code(languages[1]), codes[0]
    return target is not None and codes[1] == target and code is not None and (code == source if source else code != target)


_DELIMITERS = {"\t": ("<TAB>", "tab"), ",": (",", "comma"), ";": (";", "semicolon"), "|": ("|", "pipe")}  # as errors name them


def _glossary_rows(text: str, name: str, as_csv: bool) -> tuple[list[tuple[int, list[str], str]], str]:
    """Each non-blank row of a glossary as (its line, its cells, that line's text), and the delimiter:
    a tab, or for `as_csv` a .csv's, read as `aigc batch` reads a .csv (a `sep=;` line, a header split
    by semicolons, tabs or pipes, quoted cells over several lines) but for the spaces after a delimiter,
    left out as hand-written `term, translation` lines have them, its `# ` comment lines left out."""
    if not as_csv:
        return [(number, [unquote(cell.strip()) for cell in line.split("\t")], line) for number, line in numbered_lines(text)], "\t"  # "cat"<TAB>"chat", as spreadsheets write it
    from ..batch_inputs import table_body, table_records

    lines = text.split("\n")
    body, delimiter, skipped = table_body("\n".join("" if re.match(r"\s*#(\s|$)", line) else line for line in lines))  # a comment's quote opens no cell
    return [(number, cells, lines[number - 1]) for number, cells in table_records(body, delimiter, name, skipped, skipinitialspace=True) if any(cell.strip() for cell in cells)], delimiter


def parse_glossary(text: str, name: str = "glossary", languages: tuple[str, str] | None = None, as_csv: bool = False) -> list[tuple[str, str]]:
    """`source<TAB>target` lines (`as_csv`: rows of a .csv, `source,target`, as `_glossary_rows` reads them); blank lines and `#` comments are skipped (a `#term<TAB>target` line is a term,
    `# source<TAB>target` a comment), and so is a first row of column names (`source<TAB>target`,
    `Word<TAB>Translation`, `Begriff<TAB>Übersetzung`) or of the run's `languages` (source, or auto,
    and target: `en<TAB>de`; see `_header`); any other first row is a term. A malformed line is a `BadInputError` naming
    the file and line."""
    entries: list[tuple[str, str]] = []
    seen: dict[str, tuple[str, int]] = {}
    first = True
    rows, delimiter = _glossary_rows(text, name, as_csv)
    shown, between = _DELIMITERS.get(delimiter, (delimiter, repr(delimiter)))
    pair = f"source{shown}target"
    for number, columns, line in rows:
        if line.lstrip().startswith("#") and (len(columns) != 2 or re.match(r"\s*#(\s|$)", line)):  # not a term such as #include
            continue
        if len(columns) == 2 and bool(columns[0].strip()) != bool(columns[1].strip()):
            side, term = ("target", columns[0]) if columns[0].strip() else ("source", columns[1])
            raise BadInputError(f"{name}:{number}: the {side} for {term.strip()[:60]!r} is empty; give '{pair}'")
        if len(columns) != 2 or not columns[0].strip():
            found = f"no {between}" if len(columns) == 1 else f"{len(columns)} columns" if len(columns) > 2 else "empty terms"
            raise BadInputError(f"{name}:{number}: expected '{pair}', found {found}: {line.strip()[:60]!r}")
        source, target = _nfc(columns[0].strip()), _nfc(columns[1].strip())
        if first and _header(source, target, languages):
            first = False
            continue
        first = False
        key = source.lower()
        if key in seen and seen[key][0] != target:
            raise BadInputError(f"{name}:{number}: {source!r} is already translated as {seen[key][0]!r} on line {seen[key][1]}")
        if key not in seen:
            seen[key] = (target, number)
            entries.append((source, target))
    if not entries:
        raise BadInputError(f"{name} has no entries; write one '{pair}' pair per line")
    return entries


def _nfc(text: str) -> str:
    """`text` in NFC, as most text is: a term written on a Mac (NFD: `e` and a combining accent,
    Korean in jamo) then matches the text it is in, and the text a term is looked for in."""
    return unicodedata.normalize("NFC", text)


def load_glossary(path: str | Path, languages: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    """Read and parse a glossary file: TSV, or CSV for a .csv (`languages` as for `parse_glossary`)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"no such glossary file: {path}") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a directory; give a file") from None
    except OSError as exc:
        raise BadInputError(f"cannot read glossary {path}: {exc.strerror}") from None
    as_csv = path.suffix.lower() == ".csv"
    expected = "a source,target CSV file" if as_csv else "a source<TAB>target TSV file"
    return parse_glossary(decode_text(data, f"glossary {path}", expected, str(path)), str(path), languages, as_csv)


_SPACED = r"(?![\u0e00-\u0eff\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff])\w"  # a letter of a script that puts spaces between words


def _term(term: str, whole: bool = True) -> re.Pattern:
    """A glossary term as a case-insensitive match of whole words (`whole=False`: of words that
    start with it, so an inflected "Krankenhauses" counts as "Krankenhaus"); next to Chinese, Japanese
    or Thai (no spaces between words) or Korean (particles joined to a word), wherever it stands."""
    left = rf"(?<!{_SPACED})" if term[:1].isalnum() else ""
    right = rf"(?!{_SPACED})" if term[-1:].isalnum() and whole else ""
    return re.compile(left + re.escape(term) + right, re.I)


def _prose(text: str) -> str:
    """The words of `text` outside inline code, link targets and URLs: where glossary terms count."""
    return _nfc(" ".join(part for is_text, part in inline_parts(text) if is_text))


# Korean particles that alternate on the word before: after a final consonant, after a vowel
_PARTICLE_PAIRS = (("을", "를"), ("이", "가"), ("은", "는"), ("과", "와"), ("으로", "로"))
_PARTICLE = "(?:(" + "|".join(p for pair in _PARTICLE_PAIRS for p in pair) + ")(?![\uac00-\ud7a3]))?"  # joined to the word, ending it


def _particle_after(word: str, particle: str) -> str:
    """The Korean `particle` in the form that goes after `word` (꽃구경을, 사과를; 으로 after a final
    consonant other than ㄹ); as it is after a word that does not end in a Hangul syllable."""
    last = word[-1:]
    if not particle or not "\uac00" <= last <= "\ud7a3":
        return particle
    final = (ord(last) - 0xAC00) % 28  # 0: none, 8: ㄹ
    consonant, vowel = next(pair for pair in _PARTICLE_PAIRS if particle in pair)
    return consonant if final and not (consonant == "으로" and final == 8) else vowel


def _replace_in_prose(source: str, target: str, text: str) -> str:
    """`text` with the term `source` replaced by `target` in its words only (a URL or code keeps its
    letters); a lower-case term capitalised where it stands (a sentence's first word) gets a capital,
    and a Korean particle joined to it the form that goes after `target` (花見를 -> 꽃구경을)."""
    def replaced(match: re.Match) -> str:
        capital = source[:1].islower() and match.group(0)[:1].isupper() and target == target.lower()  # not iPhone -> IPhone
        return (target[:1].upper() + target[1:] if capital else target) + _particle_after(target, match.group(1) or "")

    term = re.compile(_term(source).pattern + _PARTICLE, re.I)
    return "".join(term.sub(replaced, _nfc(part)) if is_text else part for is_text, part in inline_parts(text))


# --- cleaning a model's answer ---------------------------------------------------------------

_INTERJECTION = re.compile(r"^(?:sure|certainly|of course|okay)\b[!,.]?\s*", re.I)
_PREAMBLE = re.compile(
    r"^(?:here(?:'s| is) (?:the|a|my|your) translation|the translation(?: is)?|translation|translated text)"
    r"(?: of (?:the|this|that|your|my) [^\s:：]+)?(?: (?:in|into|to|from) [^\s:：]+(?: [^\s:：]+)?){0,2}\s*(?:\([^)]*\))?\s*[:：]\s*",  # "Translation into French:", not "The translation team:"
    re.I,
)
_QUOTES = {'"': '"', "“": "”", "«": "»", "'": "'", "„": "“", "「": "」"}


_LABELLED = re.compile(r"^[^\s:：]{1,30}(?: [^\s:：]{1,30}){0,3}\s*[:：︓﹕]")  # "Note: ...", "Time: 10:30", "注意：...", "The translation is: ..."


def _width(text: str) -> int:
    """How much `text` says, in Latin letters: a Chinese, Japanese or Korean character counts three."""
    return len(text) + 2 * len(WIDE.findall(text))


def _without_label(text: str, source: str, target: Language) -> str:
    """`text` without a leading "Here is the translation:" or "French:", unless that is the
    translation of the source's own label ("Anglais : une langue." is "English: a language.")."""
    labels = "|".join(re.escape(x) for x in {target.name, target.native, "Translation"} if x)
    unlabelled = _PREAMBLE.sub("", text, count=1)
    unlabelled = re.sub(rf"^(?:{labels})\s*(?:\([^)]*\))?\s*[:：]\s*", "", unlabelled, count=1, flags=re.I).strip()
    if _LABELLED.match(source) and not re.search(r"[:：︓﹕]", unlabelled):  # the source's label, translated, is all it had
        return text
    return unlabelled


def clean_translation(raw: str, source: str, target: Language) -> str:
    """The translation in a model's answer: preambles ("Sure! Here is the translation:"), labels
    ("French:"), wrapping quotes, extra lines and rambling past the source's sentences removed.
    "" when nothing is left."""
    text = raw.strip()
    rest = _INTERJECTION.sub("", text, count=1)
    unlabelled = _without_label(rest, source, target)
    if unlabelled != rest:  # "Sure! Here is the translation: ..."
        text = unlabelled
    elif len(split_sentences(rest)) < len(split_sentences(text)) > len(split_sentences(source)):  # "Sure! Bonjour.", not "Certainly not!"
        text = rest
    else:
        text = _without_label(text, source, target)
    if "\n" not in source:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]] and source[:1] not in _QUOTES:
        text = text[1:-1].strip()
    wanted = len(split_sentences(source))
    found = split_sentences(text)
    if len(found) > wanted and _width(text) > 1.6 * _width(source) + 20:  # the model went on writing
        text = join_text(found[:wanted])
    return text


# where a clause ends: a comma, semicolon or colon, or before a dash or an opening bracket
_CLAUSE = re.compile(r"[,;:](?=\s|$)|[，；：、]|\s(?=[-–—(（])")


def without_rambling(text: str, source: str, cut_off: bool = False) -> tuple[str, bool]:
    """`text` without what the model went on writing after translating `source` in the same
    sentence ("Mai, erstellen wir eine kleine Eindruck" for "May"), and whether there was any: past
    twice the source's width, or, where max_tokens cut it off past one and a half times, past as many
    clauses as the source has."""
    room = 2 * _width(source) + 12
    ends = [m.start() for m in _CLAUSE.finditer(text) if m.start()]
    kept = len(_CLAUSE.findall(source))
    if _width(text) > (1.5 * _width(source) + 4 if cut_off else room) and len(ends) > kept and _width(text[: ends[kept]]) <= room:
        return text[: ends[kept]].rstrip(), True
    if _width(text) > room:
        words = [m.start() for m in re.finditer(r"\s+", text) if m.start() and _width(text[: m.start()]) <= room]
        return (text[: words[-1]] if words else text), True
    return text, False


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
    glossary: Any = field(default=None, metadata={"file": names_text})  # [(source, target), ...], {source: target}, or a TSV file's path
    template: str = "translate"
    by_sentence: bool = True
    examples: bool = True
    chunk_tokens: int = 256
    batch_size: int = 4  # chunks' worth of text one engine call translates at most (rows x longest row, in tokens)
    plain: bool = False  # plain text, not Markdown: indented lines and tags are words to translate
    subtitles: bool | None = None  # a SubRip, WebVTT, SBV or ASS file, only its cues' text translated; None: text that starts as one (not plain)

    def __post_init__(self) -> None:
        if not self.target_language:
            raise BadInputError(f"give the language to translate into: {option('target_language', 'French')} or {option('target_language', 'fr')}")
        self.target: Language = for_option("target_language", self.target_language)
        source = str(self.source_language).strip()
        self.source: Language | None = None if source.lower() in ("", "auto") else for_option("source_language", source)
        if self.source and self.source.code == self.target.code:
            raise BadInputError(f"{option('target_language')} and {option('source_language')} are both {self.target.name}; nothing to translate")
        self.target_language, self.source_language = tag(self.target_language, self.target), tag(source, self.source) if self.source else "auto"  # German is de
        if self.chunk_tokens < 16:
            raise OptionError("chunk_tokens", f"must be at least 16 tokens, got {self.chunk_tokens}")
        if self.batch_size < 1:
            raise OptionError("batch_size", f"must be at least 1, got {self.batch_size}")
        self.terms = _glossary_entries(self.glossary, (self.source_language, self.target_language))
        self.template = templates.check_fills(self.template, {"text", "target", "source", "glossary"}, "translate", reads={"target": "the language to translate into"})

    def settings(self) -> dict[str, Any]:
        """The options as they take effect, for `aigc batch`'s record: a glossary by its terms (an
        edited file is another run; one file by two paths is the same); `subtitles` only when given, so
        outputs made before it keep resuming."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.init and (f.name != "subtitles" or self.subtitles is not None)}, "glossary": self.terms or None}


def _glossary_entries(glossary: Any, languages: tuple[str, str]) -> list[tuple[str, str]]:
    if not glossary:
        return []
    if isinstance(glossary, (str, Path)):  # a TSV file's path (`-O glossary=terms.tsv` in aigc batch)
        return load_glossary(glossary, languages)
    if not isinstance(glossary, (dict, list, tuple)):
        raise OptionError("glossary", f"must be a TSV file's path, a {{source: target}} dict or a list of (source, target) pairs, got {type_name(glossary)}")
    items = list(glossary.items()) if isinstance(glossary, dict) else list(glossary)
    entries = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) and x.strip() for x in item)):
            raise BadInputError(f"a glossary entry must be a (source, target) pair of non-empty strings, got {item!r}")
        entries.append((_nfc(item[0].strip()), _nfc(item[1].strip())))
    return entries


@dataclass
class _Segment:
    block: int
    text: int
    source: str
    terms: list[tuple[str, str]]
    translation: str = ""
    cut_off: bool = False  # max_tokens ended its translation
    empty: bool = False  # the model gave no translation for a piece of it (kept in the source language)
    name: bool = False  # a word alone that the document writes as code or in a link target elsewhere


# one word that names something (an acronym, or a name with a capital inside): a badge's alt text, a heading
_NAME = re.compile(r"[A-Z]{2,5}|(?=\S*[a-z][A-Z])[A-Za-z][\w.+#-]{,23}")


def _code_words(texts: list[str]) -> set[str]:
    """The words of `texts`' inline code and link targets: names (`aigc` of `aigc translate`), so
    the same word alone elsewhere (a heading `# aigc`) is a name too, not a word to translate."""
    spans = [span for text in texts for span in protected_spans(text) if span.startswith(("`", "](", "<code", "<CODE"))]
    return {word for span in spans for word in re.split(r"[^\w-]+", re.sub(r"^\]\(|^<code[^>]*>|</code\s*>$", "", span, flags=re.I)) if word}


def _without_added_stop(source: str, translation: str) -> str:
    """A translation without the full stop (or exclamation mark) the model ended it with where its
    source ended in neither, nor in a question mark: a heading, a table cell or a term stays without
    one, and words before inline markup ("Configure" in "Configure `x`.") give no "Configurez. `x`."."""
    added = translation.endswith((".", "。", "!", "！")) and not translation.endswith(("..", "!!")) and "¡" not in translation  # Spanish's ¡...! is a pair
    if added and not source.rstrip().endswith((".", "。", "…", "!", "！", "?", "？")):
        return translation[:-1].rstrip()
    return translation


_SPAN = re.compile(r"(\*{1,3}|_{1,3})(?=\S)(.+?)(?<=\S)\1")  # a bold or italic span: its marker and its words


def _with_source_colons(source: str, translation: str) -> str:
    """`translation` with the colon ending its source, or ending one of its bold or italic spans
    (`**Tip:**`), put back where the model dropped it ("**Tipp**"), as a label keeps its colon."""
    def kept(words: str, text: str) -> str:
        end = words.rstrip()[-1:]
        return text + end if end in (":", "：") and text[-1:].isalnum() else text

    spans, found = _SPAN.findall(source), list(_SPAN.finditer(translation))
    if [mark for mark, _ in spans] == [match.group(1) for match in found]:  # the same spans, in order
        for (_, words), match in reversed(list(zip(spans, found))):
            if translation[match.end() : match.end() + 1] not in (".", ":", "：", ";"):  # "**Tipp**:" moved it, "**Tipp**." replaced it
                translation = translation[: match.start(2)] + kept(words, match.group(2)) + translation[match.end(2) :]
    return kept(source, translation)


class TranslateGenerator(Generator):
    """Translate a document into another language, keeping its Markdown structure."""

    name = "translate"
    description = "Translate a document, keeping its Markdown structure"
    Options = TranslateOptions
    sampling_defaults = {"temperature": 0.0, "repetition_penalty": 1.1}
    line_options = {"plain": True}  # a line of a .txt file is prose, even indented; a spreadsheet cell keeps its line breaks
    checkpoint: Checkpoint | None = None  # where each sentence's translation is kept as it is made, for an interrupted run to resume

    def check_inputs(self, inputs: str) -> None:
        if not isinstance(inputs, str):
            raise BadInputError(f"translate takes text (str), got {type_name(inputs)}{self.list_hint(inputs)}")
        if not inputs.strip():
            raise BadInputError("there is no text to translate")

    def preprocess(self, inputs: str, opts: TranslateOptions) -> dict[str, Any]:
        text = inputs.lstrip("\ufeff").replace("\r\n", "\n")
        cues = opts.subtitles or (opts.subtitles is None and not opts.plain and looks_like_subtitles(text))
        blocks = translation_blocks(text) if cues else parse_blocks(text, plain=opts.plain)
        count = self.engine.count_tokens
        movable = [i for i, block in enumerate(blocks) if block.texts]
        names = _code_words([text for block in blocks for text in block.texts])
        sizes = [sum(count(t) for t in blocks[i].texts) for i in movable]
        chunks: list[list[_Segment]] = []
        for group in group_chunks(sizes, opts.chunk_tokens):
            chunk = []
            for b in (movable[k] for k in group):
                for t, text in enumerate(blocks[b].texts):
                    for piece in segments(text, opts.chunk_tokens, count, opts.by_sentence):
                        terms = [(s, d) for s, d in opts.terms if _term(s).search(_prose(piece))]
                        chunk.append(_Segment(b, t, piece, terms, name=piece in names))
            chunks.append(chunk)
        return {"blocks": blocks, "chunks": chunks, "crlf": mostly_crlf(inputs)}

    def _prompt(self, segment: _Segment, opts: TranslateOptions, template: template_files.Template) -> list[dict]:
        glossary = "\n".join(f"- {s}: {d}" for s, d in segment.terms)
        source = opts.source.name if opts.source else ""
        messages = templates.render(
            template, {"text": segment.source, "target": opts.target.name, "source": source, "glossary": glossary}
        ).messages
        if opts.examples:
            messages = messages[:-1] + example_turns(opts.source, opts.target) + messages[-1:]
        return messages

    def forward(self, prepared: dict[str, Any], opts: TranslateOptions, sampling: dict[str, Any]) -> dict[str, Any]:
        segments = [segment for chunk in prepared["chunks"] for segment in chunk]
        template = templates.get_template(opts.template)  # found once, not for every sentence
        try:
            self._translate_all(segments, opts, sampling, template)
        finally:
            if self.checkpoint is not None:
                self.checkpoint.release()
        return prepared

    def _translate_all(self, segments: list[_Segment], opts: TranslateOptions, sampling: dict[str, Any], template: template_files.Template) -> None:
        """Translate `segments` in place (those an interrupted run kept taken up), keeping each group's translations."""
        done = self._resumed(segments, opts, sampling, template)
        places = {id(segment): at for at, segment in enumerate(segments)}
        self.progress(len(done), len(segments), "translating")
        for group in self._groups([segment for at, segment in enumerate(segments) if at not in done], opts):
            with self.rows_told(len(done), len(segments), "translating"):  # each sentence as its translation ends
                self._translate(group, opts, sampling, template)
            self._translate_in_parts([s for s in group if not keeps_markup(s.source, s.translation)], opts, sampling, template)
            done.update(places[id(segment)] for segment in group)
            if self.checkpoint is not None and len(done) < len(segments):  # none is needed after the last
                self.checkpoint.keep([{"at": places[id(s)], "translation": s.translation, "cut_off": s.cut_off, "empty": s.empty} for s in group])
            self.progress(len(done), len(segments), "translating")

    def _resumed(self, segments: list[_Segment], opts: TranslateOptions, sampling: dict[str, Any], template: template_files.Template) -> set[int]:
        """The places of the segments whose translations `checkpoint` kept from an interrupted run of
        the same model, options, template, sampling settings and sentences, put in place."""
        if self.checkpoint is None:
            return set()
        made = [template.system, template.body, template.defaults, sorted((sampling or {}).items())]
        key = [self.engine.name, getattr(self.engine, "variant", ""), opts.settings(), made, [(s.block, s.text, s.source) for s in segments]]
        kept = self.checkpoint.start(key, len(segments))
        for at, entry in kept.items():
            segment = segments[at]
            segment.translation, segment.cut_off, segment.empty = entry["translation"], bool(entry.get("cut_off")), bool(entry.get("empty"))
        return set(kept)

    def _groups(self, segments: list[_Segment], opts: TranslateOptions) -> Iterator[list[_Segment]]:
        """`segments` in the groups one engine call each translates: windows of `WINDOW` in document
        order (so progress moves evenly), each sorted by length into groups of at most `ROWS` rows and
        `batch_size` chunks' tokens (rows x longest), so rows pad little and memory and the wait
        between progress steps stay bounded however the text falls in paragraphs and chunks."""
        for start in range(0, len(segments), WINDOW):
            part = segments[start : start + WINDOW]
            lengths = [self.engine.count_tokens(segment.source) for segment in part]
            for group in length_batches(lengths, opts.batch_size * opts.chunk_tokens, rows=ROWS):
                yield [part[i] for i in sorted(group)]

    def _translate(self, batch: list[_Segment], opts: TranslateOptions, sampling: dict[str, Any], template: template_files.Template) -> None:
        """Each segment's translation, from one batched engine call; a name (CI, PyPI, macOS) as it is."""
        names = [not segment.terms and (segment.name or bool(_NAME.fullmatch(segment.source))) for segment in batch]
        for segment in (segment for segment, name in zip(batch, names) if name):
            segment.translation = segment.source
        batch = [segment for segment, name in zip(batch, names) if not name]
        if not batch:
            return
        longest = max(self.engine.count_tokens(s.source) for s in batch)
        params = self.sampling(sampling, {"max_tokens": 3 * longest + 8, **template.defaults})
        outputs = self.engine.generate([self._prompt(s, opts, template) for s in batch], params)
        for segment, group in zip(batch, outputs):
            cut_off = group[0].finish_reason == "length"
            text, rambled = without_rambling(clean_translation(group[0].text, segment.source, opts.target), segment.source, cut_off)
            segment.translation = _with_source_colons(segment.source, _without_added_stop(segment.source, text))
            segment.cut_off = cut_off and not rambled  # not where the limit cut off only what it wrote after the translation

    def _translate_in_parts(self, broken: list[_Segment], opts: TranslateOptions, sampling: dict[str, Any], template: template_files.Template) -> None:
        """Segments whose translation lost inline code, a link target, a URL or an emphasis marker
        (or added one): the words between them translated piece by piece, and the markup put back
        as it was (a piece's own stray `**`, and a full stop ending a piece whose words had none, dropped)."""
        layouts = [inline_parts(segment.source) for segment in broken]
        pieces = [
            _Segment(segment.block, segment.text, text, [(s, d) for s, d in segment.terms if _term(s).search(_prose(text))])
            for segment, parts in zip(broken, layouts) for is_text, text in parts if is_text
        ]
        for group in self._groups(pieces, opts):
            self._translate(group, opts, sampling, template)
        translated = iter(pieces)
        for segment, parts in zip(broken, layouts):
            done = [(next(translated), text) if is_text else (None, text) for is_text, text in parts]
            segment.translation = "".join(without_emphasis(piece.translation or text) if piece else text for piece, text in done)
            segment.cut_off = any(piece.cut_off for piece, _ in done if piece)
            segment.empty = any(not piece.translation for piece, _ in done if piece)

    def postprocess(self, raw: dict[str, Any], opts: TranslateOptions) -> dict[str, Any]:
        blocks = raw["blocks"]
        pieces: list[list[list[str]]] = [[[] for _ in block.texts] for block in blocks]
        misses: dict[tuple[str, str], int] = {}
        lost: dict[str, int] = {}  # placeholders ({name}, %s) missing from a translation, as often as they are
        for segment in (s for chunk in raw["chunks"] for s in chunk):
            text = segment.translation or segment.source  # nothing usable came back: keep the source (and say so)
            for source, target in sorted(segment.terms, key=lambda term: -len(term[0])):  # "New York City" before "New York"
                if not _term(target, whole=False).search(_prose(text)):
                    text = _replace_in_prose(source, target, text)  # a copied-through source term
                if not _term(target, whole=False).search(_prose(text)):
                    misses[(source, target)] = misses.get((source, target), 0) + 1
            for placeholder in dict.fromkeys(placeholders(segment.source)):
                short = placeholders(segment.source).count(placeholder) - placeholders(text).count(placeholder)
                if short > 0:
                    lost[placeholder] = lost.get(placeholder, 0) + short
            pieces[segment.block][segment.text].append(text)
        translations = [[join_text(parts) for parts in block] for block in pieces]
        order = {term: i for i, term in enumerate(opts.terms)}
        cut = [s.source for chunk in raw["chunks"] for s in chunk if s.cut_off]
        return {
            "translation": render_blocks(blocks, translations).replace("\n", "\r\n" if raw["crlf"] else "\n"),  # Windows text comes back as it came
            "source_language": opts.source_language,
            "target_language": opts.target_language,
            "glossary_misses": [
                {"source": s, "target": d, "count": n} for (s, d), n in sorted(misses.items(), key=lambda kv: order[kv[0]])
            ],
            "missing_placeholders": [{"placeholder": p, "count": n} for p, n in lost.items()],  # {name}, %s: the program filling them in would fail
            "cut_off": bool(cut),  # max_tokens ended a sentence's translation
            "cut_off_texts": cut,  # the source text of each, in order
            "untranslated_texts": [s.source for chunk in raw["chunks"] for s in chunk if s.empty or not s.translation],  # no translation came back: kept as they are
        }
