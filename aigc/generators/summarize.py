"""Summarize: one pass for short documents, map-reduce over token-sized chunks for long ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Iterator

from .. import templates
from ..errors import BadInputError, ContextLengthError, OptionError, option
from ..languages import Language, asked_language, for_option, tag
from ..markdown_blocks import without_comments, without_front_matter
from ..sentences import CLOSERS, count_words, fitted, join_text, split_sentences, word_runs
from ..engine.base import Completion, check_fits
from .base import Generator, type_name

SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？", "｡", "．")

LENGTH_WORDS = {"short": 40, "medium": 100, "long": 200}
FORMATS = ("paragraph", "bullets")
INTRO = re.compile(  # a first line that only introduces what follows ("Sure! Here's a revised version ...:")
    r"^(?:(?:sure|certainly|okay|of course)[,.!]?\s+)?(?:here is|here's|here are|below is)[^\n]{0,300}:[ \t]*\n+(?=\s*\S)", re.I
)
_CHARACTER_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")  # Han and kana: each a word to count_words
CHARACTER_LANGUAGES = ("zh", "ja")  # whose summaries are counted in characters (see length_unit)
MAX_ROUNDS = 4  # each round shrinks the text about tenfold
CHUNK_TOKENS = 1500  # the part size where the model's context holds it with its answer
MIN_CHUNK_TOKENS = 64


@dataclass
class SummarizeOptions:
    length: str = "medium"
    words: int | None = None
    format: str = "paragraph"
    template: str = "summarize"
    chunk_template: str = "summarize-chunk"
    chunk_tokens: int | None = None  # None: the largest part the model's context holds with its answer, at most CHUNK_TOKENS
    batch_size: int = 4
    language: str | None = None  # a name or code (French, fr, 日本語): the summary's language, whatever the text's; None: the text's

    def __post_init__(self) -> None:
        if self.length not in LENGTH_WORDS:
            raise OptionError("length", f"must be one of {', '.join(LENGTH_WORDS)}, got {self.length!r}")
        if self.format not in FORMATS:
            raise OptionError("format", f"must be paragraph or bullets, got {self.format!r}")
        if self.words is not None and not 5 <= self.words <= 2000:
            raise OptionError("words", f"must be between 5 and 2000, got {self.words}")
        if self.chunk_tokens is not None and self.chunk_tokens < MIN_CHUNK_TOKENS:
            raise OptionError("chunk_tokens", f"must be at least {MIN_CHUNK_TOKENS} tokens, got {self.chunk_tokens}")
        if self.batch_size < 1:
            raise OptionError("batch_size", f"must be at least 1, got {self.batch_size}")
        self.target: Language | None = None if self.language is None else for_option("language", self.language)
        if self.target is not None:
            self.language = tag(self.language, self.target)  # French is fr, as translate records it
        reads = {"language": "the language to write the summary in"} if self.target else None  # an override made before language need not read it
        for name in ("template", "chunk_template"):
            setattr(self, name, templates.check_fills(getattr(self, name), {"text", "words", "format", "unit", "same_language", "language"}, "summarize", name, reads=reads))
        given = {"words": ("words", self.words) if self.words is not None else ("length", self.length), "format": ("format", self.format)}
        templates.warn_unread(self.template, {k: v for k, v in given.items() if v[1] != getattr(SummarizeOptions, v[0])}, "summarize")

    @property
    def target_words(self) -> int:
        return self.words or LENGTH_WORDS[self.length]

    @property
    def part_words(self) -> int:
        """The length in words of a part's summary."""
        return max(40, min(120, self.target_words))

    def settings(self) -> dict[str, Any]:
        """The options as they take effect, for `aigc batch`'s record: a part size fitted to the model
        as CHUNK_TOKENS, the default it took the place of (what it is wherever that default fit the
        context), so outputs made before keep resuming; a language only when given, for the same reason."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.init and (f.name != "language" or self.language)}
        return {**given, "chunk_tokens": self.chunk_tokens or CHUNK_TOKENS}


def length_unit(text: str) -> str:
    """What a summary's length counts, as the prompt names it: "characters" for Chinese and Japanese
    text (count_words counts each of their characters, so a model asked for words would write more
    than is kept), else "words"."""
    characters = len(_CHARACTER_WORDS.findall(text))
    return "characters" if characters and 2 * characters > count_words(text) else "words"


def wording(text: str, language: Language | None = None) -> dict[str, Any]:
    """The template values that word a summary of `text`: the unit of its length (for a `language`
    asked for, that language's) and the language to write it in (`asked_language`)."""
    unit = length_unit(text) if language is None else "characters" if language.base in CHARACTER_LANGUAGES else "words"
    return {"unit": unit, **asked_language(text, language)}


def summary_tokens(words: int) -> int:
    """The tokens a summary of `words` words may take (its default max_tokens)."""
    return int(words * 2.2) + 40


def _pieces(text: str) -> Iterator[str]:
    """Paragraphs, in order."""
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block:
            yield block


def split_by_tokens(text: str, budget: int, count) -> list[str]:
    """Pack paragraphs into chunks of at most `budget` tokens; split paragraphs into sentences,
    sentences into word runs, and runs with no space to cut at (Thai, a data URI) between
    characters, each only when one alone is too long."""
    units: list[tuple[str, int]] = []
    for paragraph in _pieces(text):
        size = count(paragraph)
        if size <= budget:
            units.append((paragraph, size))
            continue
        for sentence in split_sentences(paragraph):
            size = count(sentence)
            if size <= budget:
                units.append((sentence, size))
                continue
            for run in word_runs(sentence, size, budget):
                units += fitted(run, count(run), budget, count)
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for unit, size in units:
        if current and used + size + 1 > budget:
            chunks.append("\n\n".join(current))
            current, used = [], 0
        current.append(unit)
        used += size + 1
    if current:
        chunks.append("\n\n".join(current))
    return chunks


class SummarizeGenerator(Generator):
    """Summaries of a given length and format; long documents are summarized chunk by chunk."""

    name = "summarize"
    description = "Summarize a document"
    Options = SummarizeOptions
    sampling_defaults = {"temperature": 0.0, "repetition_penalty": 1.1}

    def check_inputs(self, inputs: str) -> None:
        if not isinstance(inputs, str):
            raise BadInputError(f"summarize takes text (str), got {type_name(inputs)}{self.list_hint(inputs)}")
        if not inputs.strip():
            raise BadInputError("there is no text to summarize")
        if not without_front_matter(inputs):
            raise BadInputError("the document holds only front matter (its metadata), no text to summarize")
        if not without_comments(without_front_matter(inputs)).strip():
            raise BadInputError("the document holds only front matter or comments (<!-- notes -->), no text to summarize")

    def preprocess(self, inputs: str, opts: SummarizeOptions) -> str:
        return without_comments(without_front_matter(inputs))  # its words, not its metadata or the notes in its comments

    def summary_max_tokens(self, options: dict[str, Any], sampling: dict[str, Any] | None = None) -> int:
        """The max_tokens the (final) summary is written within: `sampling`'s, else its template's
        default, else `summary_tokens` of the words asked for."""
        opts = self.validate(options)
        return self._params(opts.template, opts.target_words, sampling or {}).max_tokens

    def _params(self, template: str, words: int, sampling: dict[str, Any]):
        defaults = templates.get_template(template).defaults
        return self.sampling(sampling, {"max_tokens": summary_tokens(words), **defaults})

    def _part_sampling(self, sampling: dict[str, Any]) -> dict[str, Any]:
        """A part's settings: the caller's, but for max_tokens, which bounds the final summary; a part's
        summary takes what its length needs (its template's default, else `summary_tokens` of `part_words`)."""
        return {name: value for name, value in sampling.items() if name != "max_tokens"}

    def _call_sizes(self, opts: SummarizeOptions, sampling: dict[str, Any], written: dict[str, Any]) -> list[tuple[int, int]]:
        """(the prompt's tokens besides its text's, the answer's max_tokens) of a part's call and of the final one,
        worded as `written` (`wording`) says."""
        calls = []
        for template, words, settings in ((opts.chunk_template, opts.part_words, self._part_sampling(sampling)), (opts.template, opts.target_words, sampling)):
            one = templates.render(template, {"text": "x", "words": words, "format": opts.format, **written}).messages  # where the text joins the template counts too
            calls.append((self.engine.count_tokens(one) - self.engine.count_tokens("x"), self._params(template, words, settings).max_tokens))
        return calls

    def _part_size(self, opts: SummarizeOptions, sampling: dict[str, Any], written: dict[str, Any]) -> int:
        """`chunk_tokens` as given, else the largest part that every call holds with its answer, at
        most CHUNK_TOKENS (and at least MIN_CHUNK_TOKENS: a context too short for that fails, naming `max_tokens`)."""
        if opts.chunk_tokens is not None:
            return opts.chunk_tokens
        room = min(self.engine.context_length - overhead - answer for overhead, answer in self._call_sizes(opts, sampling, written))
        return max(MIN_CHUNK_TOKENS, min(CHUNK_TOKENS, room))

    def _split(self, text: str, size: int, opts: SummarizeOptions) -> list[str]:
        """`text` in parts of `size` tokens; with a size fitted to the model, parts are made smaller
        until none counts more (a part counts a few tokens more than its pieces counted alone)."""
        count = self.engine.count_tokens
        chunks = split_by_tokens(text, size, count)
        budget = size
        while opts.chunk_tokens is None and budget > MIN_CHUNK_TOKENS and (over := max(map(count, chunks), default=0) - size) > 0:
            budget = max(MIN_CHUNK_TOKENS, budget - over)
            chunks = split_by_tokens(text, budget, count)
        return chunks

    def _summarize_all(self, texts: list[str], final: bool, opts, sampling, stage: str, size: int, written: dict[str, Any]) -> list[Completion]:
        """The summaries of `texts`, worded as `written` says: the final one's (`final`), else the parts'."""
        template, words = (opts.template, opts.target_words) if final else (opts.chunk_template, opts.part_words)
        params = self._params(template, words, sampling if final else self._part_sampling(sampling))
        outputs: list[Completion] = []
        for start in range(0, len(texts), opts.batch_size):
            self.progress(start, len(texts), stage)
            batch = texts[start : start + opts.batch_size]
            prompts = [
                templates.render(template, {"text": t, "words": words, "format": opts.format, **written}).messages for t in batch
            ]
            self._check_fits(max(map(self.engine.count_tokens, prompts)), params.max_tokens, size, opts, sampling, final, written)
            with self.rows_told(start, len(texts), stage):  # each part as its summary ends
                outputs += [group[0] for group in self.engine.generate(prompts, params)]
        self.progress(len(texts), len(texts), stage)
        return outputs

    def _check_fits(self, longest: int, max_tokens: int, size: int, opts: SummarizeOptions, sampling: dict[str, Any], final: bool, written: dict[str, Any]) -> None:
        """A prompt of `longest` tokens that does not fit the context with its answer (of `max_tokens`)
        is a `ContextLengthError` that names the fix, every setting it takes with the value that fits:
        the size of the parts (`size`), or, for the `final` summary, max_tokens, not the length of the text."""
        context = self.engine.context_length
        if longest + max_tokens <= context:
            return
        calls = self._call_sizes(opts, sampling, written)
        (part_overhead, part_answer), (final_overhead, _) = calls
        if part_overhead + part_answer + MIN_CHUNK_TOKENS > context:
            raise ContextLengthError(f"{self.engine.name} holds {context} tokens, too few for the summarize templates with a part of {MIN_CHUNK_TOKENS} tokens and its summary of {part_answer}; use a model with a longer context")
        part = min(min(context - overhead - answer for overhead, answer in calls), size - (longest + max_tokens - context))
        if part >= MIN_CHUNK_TOKENS:
            fix = f"lower {option('chunk_tokens')} to {part} or less (now {size})"
            answer = min(context - longest, context - final_overhead - size)
            fix += f", or {option('max_tokens')} to {answer} or less (now {max_tokens})" if final and answer >= 1 else ""
        else:  # the final summary's max_tokens leaves no room for a part
            answer = context - final_overhead - MIN_CHUNK_TOKENS
            if answer < 1:
                raise ContextLengthError(f"{self.engine.name} holds {context} tokens, too few for the summarize templates with a part of {MIN_CHUNK_TOKENS} tokens and an answer; use a model with a longer context")
            final_tokens = calls[1][1]
            fix = f"lower {option('max_tokens')} to {answer} or less (now {final_tokens})"
            fix += f" and {option('chunk_tokens')} to {MIN_CHUNK_TOKENS} (now {size})" if opts.chunk_tokens not in (None, MIN_CHUNK_TOKENS) else ""
        check_fits(self.engine, longest, max_tokens, fix, fix)

    def forward(self, text: str, opts: SummarizeOptions, sampling: dict[str, Any]) -> dict[str, Any]:
        written = wording(text, opts.target)
        size = self._part_size(opts, sampling, written)
        chunks = self._split(text, size, opts)
        plain = templates.get_template(opts.template).source == "builtin" and opts.target is None  # a template of your own, or another language, always runs
        # no longer than its summary would be, in words and in tokens (Thai has no spaces between words)
        if plain and len(chunks) == 1 and count_words(chunks[0]) <= opts.target_words and self.engine.count_tokens(chunks[0]) <= summary_tokens(opts.target_words):
            return {"summary": chunks[0].strip(), "rounds": 0, "cut_off": False, "unchanged": True}
        rounds, parts = 0, len(chunks)
        if parts > 1:  # the final summary's prompt holds a part's text: refused before any part is summarized
            overhead, answer = self._call_sizes(opts, sampling, written)[1]
            self._check_fits(overhead + size, answer, size, opts, sampling, True, written)
        while len(chunks) > 1 and rounds < MAX_ROUNDS:
            rounds += 1
            partial = self._summarize_all(chunks, False, opts, sampling, f"summarizing part (round {rounds})", size, written)
            chunks = self._split("\n\n".join(p.text.strip() for p in partial), size, opts)
        final = self._summarize_all(["\n\n".join(chunks)], True, opts, sampling, "writing the summary", size, written)[0]
        return {"summary": final.text.strip(), "rounds": rounds, "parts": parts, "cut_off": final.finish_reason == "length"}

    def notes(self, result: dict[str, Any], opts: SummarizeOptions) -> list[str]:
        """A text given back as it is."""
        if not result.get("unchanged"):
            return []
        return [f"the text ({result['words']} word{'s' * (result['words'] != 1)}) is no longer than the summary asked for, so it is given back as it is"]

    def postprocess(self, raw: dict[str, Any], opts: SummarizeOptions) -> dict[str, Any]:
        """`summary` and its `words`; `unchanged`: the text was no longer than the summary asked for,
        so it is the summary as it is (a short text is not padded out with made-up sentences)."""
        if raw.get("unchanged"):
            text = raw["summary"] if opts.format != "bullets" else "\n".join(f"- {s}" for s in points(raw["summary"]) or [re.sub(r"^\s*#+\s*", "", raw["summary"])])
            return {"summary": text, "words": count_words(text), "map_reduce_rounds": 0, "parts": 1, "cut_off": False, "unchanged": True}
        text = raw["summary"]
        text = re.sub(r"^(here is|here's) (a|the) summary[^\n]*:\s*", "", text, flags=re.I).strip()
        text = INTRO.sub("", text)
        text = unmatched_quote_dropped(text)
        if opts.format == "bullets":
            lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip() for line in text.splitlines()]
            lines = [line for line in lines if line]
            # prose, or a point longer than the whole summary should be: one point per sentence
            lines = [s for line in lines for s in (split_sentences(line) if len(lines) == 1 or count_words(line) > opts.target_words else [line])]
        else:
            lines = split_sentences(join_text(line.strip() for line in text.splitlines() if line.strip() and not _HEADING.match(line)))  # a heading is no sentence's start
        lines = [line for line in lines if line]
        if raw["cut_off"] and len(lines) > 1 and not lines[-1].rstrip(CLOSERS).endswith(SENTENCE_ENDS):  # max_tokens ended it mid-sentence: the unfinished one goes
            lines = lines[:-1]
        lines = fit_length(lines, opts.target_words)
        text = "\n".join(f"- {line}" for line in lines) if opts.format == "bullets" else join_text(lines)
        return {"summary": text, "words": count_words(text), "map_reduce_rounds": raw["rounds"], "parts": raw["parts"], "cut_off": raw["cut_off"], "unchanged": False}


_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_FENCE = re.compile(r"^\s*(?:```|~~~)")
_NOT_PROSE = re.compile(r"^\s*(?:#{1,6}(?:\s|$)|[-*_=]{3,}\s*$|\|)")  # headings, rules, table rows
_UNDERLINE = re.compile(r"^\s*(?:=+|-+)\s*$")  # under a setext heading's line
# a line that heads a paragraph answer rather than being part of it: a Markdown heading, a rule, a "Summary:" or "**Summary**" label
_HEADING = re.compile(r"^\s*(?:#{1,6}(?:\s.*)?|[-*_=]{3,}|(?:\*\*|__)?\s*(?:summary|tl;?dr)\s*:?\s*(?:\*\*|__)?\s*:?)\s*$", re.I)


def points(text: str) -> list[str]:
    """A short document's sentences as bullet points: each list item and paragraph apart, headings,
    code and rules left out (a document given back as its own summary)."""
    found: list[str] = []
    paragraph: list[str] = []
    code = False
    for line in text.splitlines() + [""]:
        line = re.sub(r"^\s*(?:>\s?)+", "", line)
        fence = bool(_FENCE.match(line))
        code ^= fence
        prose = bool(line.strip()) and not (code or fence or _NOT_PROSE.match(line) or _UNDERLINE.match(line))
        if _UNDERLINE.match(line) and paragraph and not code:
            paragraph.pop()  # its line was a heading
        if not prose or _ITEM.match(line):
            found += split_sentences(join_text(paragraph)) if paragraph else []
            paragraph = []
        if prose:
            paragraph.append(_ITEM.sub("", line).strip())
    return found


def unmatched_quote_dropped(text: str) -> str:
    """The text without a quote the model opened at its start and never closed ("Hello! I'm ...)."""
    if (text[:1] == '"' and text.count('"') % 2) or (text[:1] == "“" and "”" not in text):
        return text[1:].lstrip()
    return text


def fit_length(pieces: list[str], target: int) -> list[str]:
    """Whole sentences (or bullets) up to about the target length: small models overshoot it.

    Pieces are kept while the total stays within 1.3x the target; the first is always kept."""
    kept: list[str] = []
    total = 0
    for piece in pieces:
        size = count_words(piece)
        if kept and total + size > target * 1.3:
            break
        kept.append(piece)
        total += size
    return kept
