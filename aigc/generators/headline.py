"""Headlines: N distinct headlines for a topic or an article, in a style, within a word limit."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, fields
from typing import Any

from .. import templates
from ..engine.sampling import MAX_N, MIN_SEED
from ..errors import BadInputError, OptionError, option
from ..languages import Language, asked_language, for_option, tag
from ..markdown_blocks import without_comments, without_front_matter
from ..sentences import CLOSERS, count_words, join_text, text_up_to_word, unspaced
from .base import Generator, check_varied, fewer_advice, note, same_every_time, type_name

STYLES = ("news", "seo", "question", "catchy")
MAX_ROUNDS = 5
ARTICLE_WORDS = 250  # headlines come from an article's lead; more only confuses a small model
ARTICLE_TOKENS = 600  # and at most so many tokens of it, for scripts without spaces between words (Thai), whose lead is one word


@dataclass
class HeadlineOptions:
    n: int = 3
    style: str = "news"
    max_words: int = 12
    template: str = "headline"
    tone: str = ""  # how it should sound (playful, urgent, ...), as adcopy's --tone; "" adds nothing to the style's prompt
    language: str | None = None  # a name or code (French, fr, 日本語): the headlines' language, whatever the topic's or article's; None: theirs

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 50:
            raise OptionError("n", f"must be between 1 and 50, got {self.n}")
        if self.style not in STYLES:
            raise OptionError("style", f"must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.tone and (not self.tone.strip() or len(self.tone) > 40):
            raise OptionError("tone", "must be a few words, like playful, urgent or luxurious")
        if not 3 <= self.max_words <= 40:
            raise OptionError("max_words", f"must be between 3 and 40, got {self.max_words}")
        self.target: Language | None = None if self.language is None else for_option("language", self.language)
        if self.target is not None:
            self.language = tag(self.language, self.target)  # French is fr, as translate records it
        reads = {  # an override made before tone or language need not read it
            **({"tone": "how the headlines should sound"} if self.tone else {}),
            **({"language": "the language to write the headlines in"} if self.target else {}),
        }
        self.template = templates.check_fills(self.template, {"topic", "article", "style", "tone", "max_words", "same_language", "language"}, "headline", carries={"topic", "article"}, reads=reads)
        given = {"style": ("style", self.style), "max_words": ("max_words", self.max_words)}
        templates.warn_unread(self.template, {k: v for k, v in given.items() if v[1] != getattr(HeadlineOptions, k)}, "headline")

    def settings(self) -> dict[str, Any]:
        """The options as they take effect, for `aigc batch`'s fingerprint: a tone and a language only
        when given (none adds nothing to the prompt), so outputs made before them keep resuming."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and (f.name not in ("tone", "language") or getattr(self, f.name))}


_QUOTED = re.compile(r"[\"“]([^\"”]{8,})[\"”]")
_META = re.compile(r"\b(?:headlines?|answer)\b", re.I)  # talk about the task, not a headline
_HASHTAG = re.compile(r"#\w+")  # extended over combining marks by _without_hashtags
_KEPT_SYMBOLS = "+°№"  # symbols that say something: C++, 40°C, № 5 (and currency signs)
_CLAUSE_ENDS = (":", " - ", " – ", " — ", ",", "：", "，", "、", "；", "——")  # where a headline's main clause ends, best first


def clean_headline(text: str) -> str:
    """The headline in a model's answer: its first line, or the quoted headline in a sentence about
    it, without numbering, labels, hashtags, emoji, quotes or markup; "" when there is none."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    quoted = _QUOTED.search(line)
    if quoted and len(quoted.group(1).split()) >= 3:
        line = quoted.group(1)
    line = re.sub(r"^\s*(?:(?:[-*•#]+|\d+[.)](?=\s))\s*)+", "", line.replace("**", ""))  # bold markup first: **1. Title**; not 1.5 Million
    line = re.sub(r"^(?:headline|title)\s*\d*\s*:\s*", "", line, flags=re.I)
    line = _without_symbols(_without_hashtags(line))
    line = " ".join(line.split()).strip("\"'“”‘’ ").lstrip(":;,.–—- ")
    if line.endswith(":") or not re.search(r"[^\W\d_]", line) or _META.search(line):
        return ""
    return line if line.endswith("...") else line.rstrip(".。").strip()


def _without_hashtags(text: str) -> str:
    """`text` without hashtags, each to its word's end: `re`'s word characters leave out the marks
    that combine with a letter, which would split a Hindi or Thai hashtag ("#भारत" is "#भ" to `\\w+`)."""
    for match in reversed(list(_HASHTAG.finditer(text))):
        end = match.end()
        while end < len(text) and (text[end].isalnum() or text[end] == "_" or unicodedata.category(text[end]).startswith("M")):
            end += 1
        text = text[: match.start()] + text[end:]
    return text


def _symbol(char: str) -> bool:
    """An emoji or other symbol (not a currency sign or one of `_KEPT_SYMBOLS`), or markup (`*`, `#`,
    `\\`): what a headline goes without; punctuation of any script stays (「」, 《》, ؟, —, Hebrew's ־)."""
    category = unicodedata.category(char)
    return (category.startswith("S") and category != "Sc" and char not in _KEPT_SYMBOLS) or char in "*#\\"


def _without_symbols(text: str) -> str:
    """`text` without emoji and other symbols (`_symbol`), and without what joins one to the character
    before when that goes (an emoji's variation selector, zero-width joiner or tag characters); the
    marks that combine with a letter (Hindi's vowel signs, Thai's tone marks) stay with it."""
    kept: list[str] = []
    previous = False  # whether the character before was kept
    for char in text:
        joins = unicodedata.category(char).startswith("M") or char == "\u200d" or "\U000e0020" <= char <= "\U000e007f"
        previous = previous if joins else not _symbol(char)
        if previous:
            kept.append(char)
    return "".join(kept)


def fit_headline(headline: str, max_words: int) -> str:
    """The headline if it fits `max_words` (as `count_words` counts them: a Chinese or Japanese
    character is a word), else its main clause (before a colon, dash or comma) if that fits and has
    at least 3 words; else, in Chinese or Japanese, its words up to the last punctuation mark within
    `max_words` (a comma or colon left out; all `max_words` where none follows the third); else ""."""
    if count_words(headline) <= max_words:
        return headline
    for separator in _CLAUSE_ENDS:
        head = headline.split(separator)[0].strip()
        if 3 <= count_words(head) <= max_words:
            return head
    head = text_up_to_word(headline, max_words)
    rest = headline[len(head) :]
    if not (unspaced(head[-1:]) and unspaced(rest)):  # a cut between two words of a language with spaces
        return ""
    head += rest[: len(rest) - len(rest.lstrip(CLOSERS))]  # with the brackets it closes: 《蜜蜂的秘密》
    ends = [at + 1 for at, char in enumerate(head) if unicodedata.category(char) in ("Pd", "Pe", "Pf", "Po") and count_words(head[:at]) >= 3]  # not after an opening 《
    return head[: ends[-1]].rstrip("".join(_CLAUSE_ENDS)) if ends else head


def _key(headline: str) -> str:
    return re.sub(r"\W+", " ", headline.lower()).strip()


def _near_duplicate(key: str, found: dict[str, str]) -> bool:
    """The same headline up to a word or a few letters ("Rooftown" vs "Rooftop")."""
    return any(difflib.SequenceMatcher(None, key, other).ratio() >= 0.9 for other in found)


class HeadlineGenerator(Generator):
    """Samples up to MAX_ROUNDS rounds for N distinct headlines that respect the word limit, and
    keeps the N the model scores likeliest."""

    name = "headline"
    description = "Write headlines for a topic or an article"
    Options = HeadlineOptions
    sampling_defaults = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 40, "repetition_penalty": 1.05}
    line_field = "topic"  # a line is a topic (`aigc headline --lines`, a .txt row of `aigc batch`)

    def batch_input(self, fields: dict[str, Any], field: str) -> dict[str, str]:
        """A row's `topic` column is a topic; any other column holds an article."""
        return {"topic" if field == "topic" else "article": super().batch_input(fields, field)}

    def check_sampling(self, opts: HeadlineOptions, sampling: dict[str, Any] | None) -> None:
        params = self.sampling(sampling, templates.get_template(opts.template).defaults)
        check_varied(opts.n, params, "headlines")

    def check_inputs(self, inputs: dict[str, str]) -> None:
        if not isinstance(inputs, dict):
            raise BadInputError(f"headline takes {{'topic': TEXT}} or {{'article': TEXT}}, got {type_name(inputs)}{self.list_hint(inputs)}")
        for name in ("topic", "article"):
            if not isinstance(inputs.get(name), (str, type(None))):
                raise BadInputError(f"headline takes {{'topic': TEXT}} or {{'article': TEXT}}, got {{{name!r}: {type_name(inputs[name])}}}")
        if set(inputs) - {"topic", "article"}:
            raise BadInputError(f"headline takes {{'topic': TEXT}} or {{'article': TEXT}}, got the key(s) {', '.join(map(repr, sorted(set(inputs) - {'topic', 'article'})))}")
        topic, article = inputs.get("topic"), inputs.get("article")
        for name, value in (("topic", topic), ("article", article)):
            if value is not None and not value.strip():
                raise BadInputError(f"the {name} is empty; give some text")
        if article is not None and not without_front_matter(article):
            raise BadInputError("the article holds only front matter (its metadata), no text to write headlines for")
        if article is not None and not without_comments(without_front_matter(article)).strip():
            raise BadInputError("the article holds only front matter or comments (<!-- notes -->), no text to write headlines for")
        if (topic is None) == (article is None):
            raise BadInputError("give a topic or an article to write headlines for, not both" if topic is not None else "give a topic or an article to write headlines for")

    def preprocess(self, inputs: dict[str, str], opts: HeadlineOptions):
        topic = (inputs.get("topic") or "").strip()
        article = (inputs.get("article") or "").strip()
        whole = " ".join(join_text(without_comments(without_front_matter(article)).splitlines()).split())  # its words, not its metadata or the notes in its comments
        article = " ".join(text_up_to_word(whole, ARTICLE_WORDS).split())  # its lead's
        tokens = self.engine.count_tokens(article) if article else 0
        while tokens > ARTICLE_TOKENS:  # cut in proportion (again where its start is denser), never before a mark that combines with the letter before
            cut = len(article) * ARTICLE_TOKENS // tokens
            while cut > 1 and unicodedata.category(article[cut]).startswith("M"):
                cut -= 1
            article = article[:cut]
            tokens = self.engine.count_tokens(article)
        if len(article) < len(whole):  # said only where the article was cut
            kept, words = count_words(article), count_words(whole)
            note(f"the headlines are written from the article's lead, its first {f'{kept} of {words} words' if kept < words else f'{tokens} tokens'} (at most {ARTICLE_WORDS} words or {ARTICLE_TOKENS} tokens are read)")
        values = {"topic": topic, "article": article, "style": opts.style, "tone": opts.tone.strip(), "max_words": opts.max_words, **asked_language(topic or article, opts.target)}
        return templates.render(opts.template, values)

    def forward(self, rendered, opts: HeadlineOptions, sampling: dict[str, Any]) -> tuple[list[str], int]:
        """Up to N headlines (fewer when the rounds gave no more that were distinct, within the word
        limit and whole, but at least one), and how many sampled ones max_tokens cut off."""
        base = self.sampling(sampling, rendered.defaults)
        found: dict[str, str] = {}
        cut = 0  # headlines that max_tokens cut off
        for attempt in range(MAX_ROUNDS):
            missing = opts.n - len(found)
            if missing <= 0:
                break
            self.progress(len(found), opts.n, "writing headlines")  # a round samples them all at once: one step
            seed = None if base.seed is None else (base.seed + attempt - MIN_SEED) % 2**64 + MIN_SEED  # stays an int64
            params = base.replace(n=min(MAX_N, max(4, missing * 3)), seed=seed)
            for completion in self.engine.generate([rendered.messages], params)[0]:
                line = clean_headline(completion.text)
                headline = fit_headline(line, opts.max_words)
                if headline and headline == line and completion.finish_reason == "length" and "\n" not in completion.text.strip():
                    cut += 1  # its last words are where max_tokens cut it, not where it ended
                    continue
                if headline and not _near_duplicate(_key(headline), found):
                    found[_key(headline)] = headline
        self.progress(min(len(found), opts.n), opts.n, "writing headlines")
        headlines = self._best(rendered, list(found.values()), opts.n)
        if not headlines:
            if cut:  # the caller's max_tokens, not a failure: a cut-off headline is no headline to return
                raise BadInputError(f"no headline came out whole ({cut} cut off at {option('max_tokens', base.max_tokens)}); raise {option('max_tokens')}")
            more = option("max_words") if same_every_time(self.engine) else f"{option('temperature')} or {option('max_words')}"
            raise BadInputError(f"no headline of at most {opts.max_words} words came out of {MAX_ROUNDS} tries; raise {more}")
        return headlines, cut

    def _best(self, rendered, headlines: list[str], n: int) -> list[str]:
        """The `n` headlines the model finds likeliest after the prompt, per token (best first): a
        sampled pool holds slips (a made-up name, a cut phrase) that score low next to the article's
        plain headlines. An engine that cannot score chat messages (a remote API) keeps them as sampled."""
        if len(headlines) <= 1 or not getattr(self.engine, "can_score_chat", True):
            return headlines[:n]
        scores = self.engine.score(rendered.messages, headlines)
        mean = {h: score / max(1, self.engine.count_tokens(h)) for h, score in zip(headlines, scores)}
        return sorted(headlines, key=mean.__getitem__, reverse=True)[:n]

    def notes(self, result: dict[str, Any], opts: HeadlineOptions) -> list[str]:
        """Fewer headlines than asked for, and what to raise (for a model that answers every sample the same, nothing: ask for fewer)."""
        got, missing = len(result["headlines"]), result["missing"]
        if not missing:
            return []
        why = fewer_advice(self.engine, "some" if result["cut_off"] else None)
        return [f"only {got} of the {got + missing} headlines asked for came out distinct and within the word limit; {why}"]

    def postprocess(self, found: tuple[list[str], int], opts: HeadlineOptions) -> dict[str, Any]:
        """`missing`: how many fewer than N came out; `cut_off`: max_tokens cut some of those off."""
        headlines, cut = found
        missing = opts.n - len(headlines)
        return {"headlines": headlines, "missing": missing, "cut_off": bool(missing and cut)}
