"""Classification: each label is scored as a continuation of the prompt under the model.

Scores become probabilities that sum to 1 (one label); with `multi_label`, each label's score is
its likelihood next to the likeliest label's, or with examples its own probability from a probe. Calibration divides out a label prior: the one the model shows
on content-free inputs, on the examples, or on the texts classified together (batch calibration). Labelled examples (`examples`) help through `classify_examples`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import unicodedata
import dataclasses
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

from .. import templates
from ..errors import AigcWarning, BadInputError, ContextLengthError, ContinuationLengthError, OptionError, UnknownLabelError, option
from .base import Generator, _no_progress, check_stop, listed, names_text, note, quiet_notes, stoppable, type_name
from .classify_examples import METHODS, ExampleModel, cache_path, cached_prior, demonstrations, fit_examples, label_name, prior_path, read_examples

CONTENT_FREE = ("N/A", "?", "Lorem ipsum")  # picked on the tuning parts (README)
CALIBRATE = ("auto", "content-free", "examples", "batch", "off")
FITS_IN_MEMORY = 8  # example fits kept loaded (a server gets a new set with each client)
LABEL_SETS_IN_MEMORY = 64  # label sets whose forms are kept (`_forms`)
PRIORS_IN_MEMORY = 256  # label priors kept (with demonstrations, one for each set shown, so one for nearly every text)
PROGRESS_EVERY = 32  # texts scored per engine call while `progress` is told how many are done
CHANNEL_WEIGHT = 0.8  # `channel`: the weight of the text's log-likelihood per token under each label, against the calibrated label log-probability's 1 - CHANNEL_WEIGHT (picked on the sentiment tuning part, README)
CHANNEL_STAGE = "scoring under each label"  # `progress`'s name for channel's pass, after "classifying"


@dataclass(frozen=True)
class Label:
    """A label's name and the texts scored for it: the name, its aliases, and the parts of a name
    like "Sci/Tech" (the label's score is the likelihood of any of them)."""

    name: str
    verbalizers: tuple[str, ...]

    @property
    def spec(self) -> str:
        """The label as `labels` writes it: `name`, or `name=alias|alias`."""
        aliases = [word for word in self.verbalizers if word != self.name and word not in _parts(self.name)]
        return f"{self.name}={'|'.join(aliases)}" if aliases else self.name


def _parts(name: str) -> list[str]:
    """The parts of a name like "Sci/Tech" or "Arts & Culture", each scored for the label too; not a
    part of one ASCII character ("N/A", "R&D"): " A" is an article, likely after any text."""
    parts = [part.strip() for separator in ("/", "&") if separator in name for part in name.split(separator)]
    return [part for part in parts if len(part) > 1 or (part and not part.isascii())]


def parse_label(spec: str, aliases: bool = True) -> Label:
    """`name` or `name=alias|alias` (`aliases=False`: the name as it is written, `=` and all, as
    labels taken from data are)."""
    name, equals, alias_text = spec.partition("=") if aliases else (spec, "", "")
    name = label_name(name)
    if not name:
        raise BadInputError(f"empty label in {spec!r}; write labels as name or name=alias|alias")
    if equals and not all(alias.strip() for alias in alias_text.split("|")):
        raise BadInputError(f"label {spec.strip()!r} has an empty alias; write labels as name or name=alias|alias")
    if any(unicodedata.category(c) == "Cc" for c in spec.strip()):  # a line break or tab would break the one-line-per-result output
        raise BadInputError(f"label {spec.strip()!r} holds a line break, tab or other control character; a label is one line of text")
    words = [name] + [label_name(a) for a in alias_text.split("|") if a.strip()] + _parts(name)
    return Label(name, tuple(dict.fromkeys(words)))


def parse_labels(specs: list[str] | str | None) -> list[Label]:
    """Labels given as `a,b,c` (the full-width and ideographic commas a Chinese or Japanese input
    method types, `，` and `、`, separate them too) or as a list of specs (`parse_label`) or `Label`s."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = re.split(r"[,，、]", specs)
    if not isinstance(specs, (list, tuple)) or not all(isinstance(spec, (str, Label)) for spec in specs):
        raise OptionError("labels", f"must be names, as a,b,c or a list of strings, got {specs!r}")
    given = [spec for spec in specs if isinstance(spec, Label) or spec.strip()]
    labels = [spec if isinstance(spec, Label) else parse_label(spec) for spec in given]
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadInputError(f"label {', '.join(duplicates)} is given twice")
    _refuse_case_twins([label.name for spec, label in zip(given, labels) if isinstance(spec, str)])
    taken, labels_with = _lowered(labels)
    return [_apart(label, own, labels_with) for label, own in zip(labels, taken)]


def _refuse_case_twins(names: list[str]) -> None:
    """Names given that differ only in case (`Billing,billing`) are one label given twice: a label's
    likelihood is spread over its case forms (`_forms`), which these would split between them.
    (Labels taken from data are names as written, warned of as they are read: `classify_examples.checked`.)"""
    spellings: dict[str, list[str]] = {}
    for name in names:
        spellings.setdefault(name.casefold(), []).append(name)
    twins = next((found for found in spellings.values() if len(found) > 1), None)
    if twins:
        raise BadInputError(f"label {twins[-1]} is given twice, as {' and '.join(map(repr, twins))}, which differ only in case and would split its probability; give it once")


def case_hint(unknown: list[str], known: Collection[str]) -> str:
    """`; 'World' and 'world' differ only in case, ...` for `unknown` labels that are `known` ones but for case; else ""."""
    lowered = {name.casefold(): name for name in known}
    pairs = [f"{name!r} and {lowered[name.casefold()]!r}" for name in unknown if name.casefold() in lowered]
    return f"; {', '.join(pairs)} differ only in case, and labels are matched as written" if pairs else ""


def _apart(label: Label, own: set[str], labels_with: Counter) -> Label:
    """`label` without the parts or aliases another label also scores: with Sci/Tech and Tech, the
    text " Tech" is Tech's alone (Sci/Tech scoring it too would always score at least as high).
    `own`: its words in lower case; `labels_with`: how many labels have each (`_lowered`)."""
    kept = tuple(word for word in label.verbalizers if word == label.name or not _elsewhere(word.lower(), own, labels_with))
    return label if kept == label.verbalizers else Label(label.name, kept)


def _lowered(labels: Sequence[Label]) -> tuple[list[set[str]], Counter]:
    """Each label's words in lower case, and for each such word how many labels have it: one pass
    over the labels, where asking every other label for each label's words took labels^2."""
    taken = [{word.lower() for word in label.verbalizers} for label in labels]
    return taken, Counter(word for words in taken for word in words)


def _elsewhere(word: str, own: set[str], labels_with: Counter) -> bool:
    """Whether a label other than the one whose lower-cased words are `own` has `word`."""
    return labels_with[word] > (word in own)


@functools.lru_cache(maxsize=LABEL_SETS_IN_MEMORY)
def _forms(labels: tuple[Label, ...]) -> tuple[tuple[str, ...], ...]:
    """Per label, its words as written, in lower case and with a capital first letter (" World",
    " world"): the model's likelihood is spread over them. A form another label scores is left out.
    Kept per label set: every text scored reads them."""
    taken, labels_with = _lowered(labels)
    forms = []
    for label, own in zip(labels, taken):
        cased = (form for word in label.verbalizers for form in (word, word.lower(), word[:1].upper() + word[1:]))
        forms.append(tuple(form for form in dict.fromkeys(cased) if form in label.verbalizers or not _elsewhere(form.lower(), own, labels_with)))
    return tuple(forms)


def _clipped(text: str, keep: int = 40) -> str:
    """`text` quoted, its middle left out when longer than `keep` characters."""
    return repr(text if len(text) <= keep else f"{text[: keep // 2]}...{text[-keep // 2 :]}")


def _nested(owned: list[tuple[int, str]]) -> bool:
    """Whether a word of one label begins (or is) a word of another, of (label index, word) pairs.
    Sorted, the words that begin with a word follow it; the scan of them stops at another label's."""
    ordered = sorted(owned, key=lambda pair: pair[1])
    for at, (label, word) in enumerate(ordered):
        for other_label, other in ordered[at + 1 :]:
            if not other.startswith(word):
                break
            if other_label != label:
                return True
    return False


def logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def log_softmax(values: list[float]) -> list[float]:
    total = logsumexp(values)
    return [v - total for v in values]


def mean_prior(scores: list[list[float]]) -> list[float]:
    """The mean label distribution over many texts' label scores, as log-probabilities."""
    probs = [[math.exp(v) for v in log_softmax(row)] for row in scores]
    return [math.log(sum(column) / len(column)) for column in zip(*probs)]


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value)) if value >= 0 else math.exp(value) / (1 + math.exp(value))


@dataclass
class ClassifyOptions:
    labels: Any = None  # ["name", "name=alias|alias", ...] or "a,b,c"; optional with examples
    multi_label: bool = False
    threshold: float = 0.5
    examples: Any = field(default=None, metadata={"file": names_text})  # a TSV file (text<TAB>label) or [(text, label), ...]
    aspect: str = ""  # what the labels describe ("sentiment", "topic"); named in the prompt
    kind: str = ""  # what the texts are ("movie review", "news article"); names each text in the prompt
    method: str = "auto"
    calibrate: str = "auto"
    template: str = "classify"
    truncate: bool = False  # a text too long for the model's context is classified by its start that fits (a note says how much), not refused
    channel: bool = True  # zero-shot, one label per text: add each text's likelihood after a line that names each label (noisy channel; scores each text once per label)
    parsed: list[Label] = field(default_factory=list, init=False, repr=False)
    examples_json: str | None = field(default=None, init=False, repr=False, compare=False)  # a file's examples as JSON, made once (`read_examples`)

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise OptionError("threshold", f"must be from 0 to 1, got {self.threshold}")
        if self.threshold != 0.5 and not self.multi_label:
            raise BadInputError(f"{option('threshold')} picks labels with {option('multi_label')}; one label per text is always the likeliest")
        if self.method not in METHODS:
            raise OptionError("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.calibrate not in CALIBRATE:
            raise OptionError("calibrate", f"must be one of {', '.join(CALIBRATE)}, got {self.calibrate!r}")
        self.parsed = parse_labels(self.labels)
        if self.examples is not None:  # the labels tell an examples file's header
            one_label = "" if self.multi_label else f"give one label per example, or use {option('multi_label')}"
            self.examples, self.examples_json = read_examples(self.examples, one_label=one_label, labels=[label.name for label in self.parsed])
        if self.examples:
            self._check_example_labels()
        if len(self.parsed) < 2:  # a label is scored against the others, multi-label too: alone it would always apply
            if self.examples and not self.labels:
                raise BadInputError(f"the examples use only the label {self.parsed[0].name!r}; give examples of two labels or more, or list them with {option('labels')}")
            also = f"; to ask whether one label applies, give it and its opposite ({self.parsed[0].name},other)" if self.parsed else ""
            raise OptionError("labels", f"must name at least two labels, e.g. a,b (or give examples to take them from){also}")
        if self.method in ("probe", "demos") and not self.examples:
            raise BadInputError(f"{option('method', self.method)} needs {option('examples')}")
        if self.calibrate == "examples" and not self.examples:
            raise BadInputError(f"{option('calibrate', 'examples')} needs {option('examples')}")
        if self.calibrate == "batch" and self.multi_label:
            raise BadInputError(f"{option('calibrate', 'batch')} is for one label per text; with {option('multi_label')} use content-free or off")
        if self.calibrate == "batch" and self.examples:
            raise BadInputError(f"{option('calibrate', 'batch')} is for zero-shot classification; with {option('examples')} use auto or examples")
        if self.multi_label and self.calibrate == "examples":
            raise BadInputError(f"{option('multi_label')} calibrates with content-free (the default) or off, not examples")
        if self.method == "demos" and self.calibrate == "examples":
            raise BadInputError(f"{option('method', 'demos')} calibrates with content-free (measured with the same demonstrations) or off, not examples")
        if self.multi_label and self.method == "demos":
            raise BadInputError(f"{option('method', 'demos')} works for one label per text; drop {option('multi_label')} or pick probe")
        self.template = templates.check_fills(self.template, {"text", "labels", "aspect", "kind", "demonstrations"}, "classify")

    def settings(self) -> dict[str, Any]:
        """The options as they take effect, for `aigc batch`'s fingerprint: the labels parsed, as
        `labels` writes them, in any order (`a, b`, `["a","b"]` and `b,a` are the same run)."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and (f.name not in ("truncate", "channel") or getattr(self, f.name))}  # outputs made before truncate keep resuming
        if self.multi_label or self.method in ("probe", "demos"):  # channel changes nothing there: outputs made before it keep resuming
            settings.pop("channel", None)
        return {**settings, "labels": sorted(label.spec for label in self.parsed)}

    def _check_example_labels(self) -> None:
        seen = list(dict.fromkeys(name for _, names in self.examples for name in names))
        if not self.parsed:
            self.parsed = parse_labels([parse_label(name, aliases=False) for name in seen])  # a part another label scores left to it, as for `labels`
            return
        known = {label.name for label in self.parsed}
        unknown = [name for name in seen if name not in known]
        if unknown:
            raise UnknownLabelError(
                f"the examples use label{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}, which {option('labels')} does not list "
                f"({', '.join(sorted(known))}); add {'them' if len(unknown) > 1 else 'it'} or fix the examples{case_hint(unknown, known)}"
            )
        untaught = [label.name for label in self.parsed if label.name not in seen]
        if untaught:  # scored as zero-shot would score it, and the probe, which needs every label's examples, is not fitted
            warnings.warn(
                f"the examples have no text labelled {', '.join(map(repr, untaught))}, so they cannot teach {'those labels' if len(untaught) > 1 else 'it'}; "
                f"add examples of {'them' if len(untaught) > 1 else 'it'}, or leave {'them' if len(untaught) > 1 else 'it'} out of {option('labels')}",
                AigcWarning, stacklevel=2,
            )


class ClassifyGenerator(Generator):
    """Label scoring, calibrated, with an optional example model (probe or demonstrations)."""

    name = "classify"
    description = "Pick the label(s) that fit a text, with probabilities."
    Options = ClassifyOptions
    samples = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._content_free: dict[tuple, list[float]] = {}
        self._fitted: dict[Path, ExampleModel] = {}

    def check_inputs(self, inputs: str) -> None:
        if not isinstance(inputs, str):
            raise BadInputError(f"classify takes text (str), got {type_name(inputs)}{self.list_hint(inputs)}")
        if not inputs.strip():
            raise BadInputError("there is no text to classify")

    def check_batch(self, opts: ClassifyOptions) -> None:
        if opts.calibrate == "batch":
            raise BadInputError("calibrate=batch needs the texts classified together, and aigc batch classifies each row alone; use `aigc classify --lines`, or content-free")

    def prepare(self, options: dict[str, Any]) -> None:
        """Load the model and fit the examples once, before texts are classified concurrently."""
        opts = self.validate(options)
        if opts.examples:
            self.example_model(opts)
        self.engine  # noqa: B018 - loads the model

    def __call__(self, inputs: str, sampling: dict[str, Any] | None = None, *, stop: Any = None, **options: Any) -> dict[str, Any]:
        """Classify one text; returns `{"label": ..., "scores": {label: p}, "method": ..., "calibration": ...}`
        (`labels`, a list, with `multi_label`). Nothing is sampled, so `sampling` must be empty; the
        options are keywords, listed with their defaults by `help(type(generator))`. `stop`: a
        `threading.Event`, as `Generator.__call__` takes."""
        check_stop(stop)
        self.check_settings(sampling)
        self.check_sampled(sampling)  # nothing is sampled: a setting given would change nothing
        self.check_inputs(inputs)  # one text: its error names no position
        return self.classify_many([inputs], stop=stop, **options)[0]

    def classify_many(self, texts: Iterable[str], *, stop: Any = None, **options: Any) -> list[dict[str, Any]]:
        """Classify many texts with one set of options; they are scored together in batches. `stop`:
        a `threading.Event` that, set from another thread, stops the scoring at its next batch
        (raising `aigc.errors.StoppedError`)."""
        check_stop(stop)
        opts = self.validate(options)
        texts = listed(texts, "classify_many takes a list of texts", "; classify one text with the generator itself")
        if not texts:
            return []
        self.check_each(texts)
        with stoppable(stop):
            return self._classified(texts, opts)

    def _classified(self, texts: list[str], opts: ClassifyOptions) -> list[dict[str, Any]]:
        prepared = self.preprocess(texts, opts)
        try:
            raws = self.forward(prepared, opts, {})
        except ContinuationLengthError:  # a label: no text to blame
            raise
        except ContextLengthError as exc:  # say which text: the one whose prompt is longest, and by how much
            sizes = [self.engine.count_tokens(self.prompt(text, opts)) for text in prepared["texts"]]
            index = max(range(len(texts)), key=sizes.__getitem__)
            label = max(map(self.engine.count_tokens, self.verbalizers(opts)))
            if opts.truncate or sizes[index] + label <= self.engine.context_length:  # the cut's own error; or demonstrations made the prompt too long
                raise
            error = ContextLengthError(f"the prompt takes {sizes[index]} tokens with the text and its longest label {label} more, but {self.engine.name}'s context holds {self.engine.context_length}; give {option('truncate')} to classify the text's start, or shorten it")
            error.index, error.at = index, f"input {index}" if len(texts) > 1 else None
            raise error from exc
        return [self.postprocess(raw, opts) for raw in raws]

    def preprocess(self, texts: list[str], opts: ClassifyOptions) -> dict[str, Any]:
        names = [label.name for label in opts.parsed]
        examples = self.example_model(opts) if opts.examples else None
        texts = [t.strip() for t in texts]
        given = texts
        if opts.truncate:
            demos = examples is not None and examples.method == "demos"
            with quiet_notes() if demos else contextlib.nullcontext():  # cut again with the demonstrations in `forward`, and noted then
                texts = [self.start_that_fits(t, opts) for t in texts]
        return {"texts": texts, "given": given, "names": names, "examples": examples}

    def start_that_fits(self, text: str, opts: ClassifyOptions, shown: list[dict] | None = None, room: int | None = None, render=None) -> str:
        """`text`, or where its prompt (with the demonstrations `shown`) does not fit the model's
        context with the longest label, its start that does (cut in proportion, again where its
        start is denser), with a note of how much. `render` and `room`: another prompt of the text
        (`channel`'s) and the tokens it may take."""
        count = self.engine.count_tokens
        render = render or (lambda t: self.prompt(t, opts, shown))
        room = room if room is not None else self.engine.context_length - max(map(count, self.verbalizers(opts)))
        tokens = count(render(text))
        if tokens <= room:
            return text
        whole, kept = count(text), text
        while tokens > room and kept:
            size = count(kept)
            cut = min(len(kept) - 1, len(kept) * max(size - (tokens - room), 0) // size)
            while cut > 0 and unicodedata.category(kept[cut]).startswith("M"):  # never before a mark that combines with the letter before
                cut -= 1
            kept = kept[:cut].rstrip()
            tokens = count(render(kept))
        if not kept:
            raise ContextLengthError(f"the classify prompt and the longest label leave no room for the text in {self.engine.name}'s {self.engine.context_length}-token context; use a model with a longer context, or shorter labels")
        note(f"classified the text's start, its first {count(kept)} of {whole} tokens: what {self.engine.name}'s {self.engine.context_length}-token context holds with the prompt and labels")
        return kept

    def example_model(self, opts: ClassifyOptions) -> ExampleModel:
        """The fit for these options; the last `FITS_IN_MEMORY` used stay loaded."""
        path = cache_path(self, opts)
        model = self._fitted.get(path) or fit_examples(self, opts, path)
        self._fitted.pop(path, None)
        self._fitted[path] = model  # now the last used
        for old in list(self._fitted)[:-FITS_IN_MEMORY]:
            self._fitted.pop(old, None)
        return model

    def prompt(self, text: str, opts: ClassifyOptions, shown: list[dict] | None = None) -> str:
        """The label-scoring prompt; labels are listed sorted, so their order never matters."""
        names = sorted(label.name for label in opts.parsed)
        return templates.render(opts.template, {"text": text, "labels": names, "aspect": opts.aspect.strip(), "kind": opts.kind.strip(), "demonstrations": shown or []}).messages[-1]["content"]

    def verbalizers(self, opts: ClassifyOptions) -> list[str]:
        """The continuations scored, each label's words in turn. When a word of one label begins one
        of another ("apple", "apple pie"), each ends with the line break that ends a label in the
        prompt: else the shorter one is always at least as likely."""
        owned = [(i, word) for i, forms in enumerate(_forms(tuple(opts.parsed))) for word in forms]
        nested = _nested(owned)
        return [f" {word}\n" if nested else f" {word}" for _, word in owned]

    def label_scores(self, logprobs: list[float], opts: ClassifyOptions) -> list[float]:
        """Per label: the log-likelihood of any of its verbalizers."""
        scores, at = [], 0
        for forms in _forms(tuple(opts.parsed)):
            scores.append(logsumexp(logprobs[at : at + len(forms)]))
            at += len(forms)
        return scores

    def score_texts(self, texts: list[str], opts: ClassifyOptions, embed: bool = False, shown=None, told: bool = False):
        """Label scores (uncalibrated) and embeddings for each text under the classify prompt, in one
        engine call (packed by length there); `told`, with a `progress` callback: `PROGRESS_EVERY`
        texts at a time, `progress` told of none done and then of each part."""
        prompts = [self.prompt(t, opts, shown(i) if shown else None) for i, t in enumerate(texts)]
        told = told and self.progress is not _no_progress
        step = PROGRESS_EVERY if told else max(len(prompts), 1)
        if told:
            self.progress(0, len(prompts), "classifying")
        scored = []
        for start in range(0, len(prompts), step):
            scored += self._score_many(prompts[start : start + step], opts, embed)
            if told:
                self.progress(len(scored), len(prompts), "classifying")
        return [self.label_scores(s.logprobs, opts) for s in scored], [s.embedding for s in scored]

    def _score_many(self, prompts: list[str], opts: ClassifyOptions, embed: bool = False):
        """The engine's `score_many` of the verbalizers; one too long for the context is named as its label."""
        try:
            return self.engine.score_many(prompts, self.verbalizers(opts), embed=embed)
        except ContinuationLengthError as exc:
            label, word = [(label, word) for label, forms in zip(opts.parsed, _forms(tuple(opts.parsed))) for word in forms][exc.continuation]
            named = f"the label {_clipped(label.name)}" + (f" (as {_clipped(word)})" if word != label.name else "")
            raise ContinuationLengthError(
                f"{named} takes {exc.tokens} tokens, too many for {self.engine.name}'s {self.engine.context_length}-token context with the prompt; shorten it", exc.continuation, exc.tokens
            ) from None

    def content_free(self, opts: ClassifyOptions, shown: list[dict] | None = None) -> list[float]:
        """The label prior: the label scores on content-free inputs and on the prompt without its
        text's line, the domain premise (averaged probabilities, as log-probabilities). Without
        demonstrations, a local model's is kept on disk for the next process (`prior_path`)."""
        key = (templates.get_template(opts.template).body, opts.aspect, opts.kind, tuple(opts.parsed), repr(shown))  # an edited template is measured again
        prior = self._content_free.get(key)
        if prior is None:
            path = None if shown else prior_path(self, opts, CONTENT_FREE)  # with demonstrations, one for nearly every text: not kept
            prior = self._content_free[key] = cached_prior(path, len(opts.parsed), lambda: self._measure_prior(opts, shown))
            for old in list(self._content_free)[:-PRIORS_IN_MEMORY]:  # with demonstrations, one for each text: the last ones kept
                self._content_free.pop(old, None)
        return prior

    def _measure_prior(self, opts: ClassifyOptions, shown: list[dict] | None) -> list[float]:
        scores, _ = self.score_texts(list(CONTENT_FREE), opts, shown=(lambda i: shown) if shown else None)
        premise = self.premise(opts, shown)
        if premise:
            scores.append(self.label_scores(self._score_many([premise], opts)[0].logprobs, opts))
        return mean_prior(scores)

    def premise(self, opts: ClassifyOptions, shown: list[dict] | None = None) -> str:
        """The prompt without the line that holds the text ("The sentiment of this movie review is"):
        what the labels are likely after on their own (domain-conditional PMI, Holtzman et al. 2021)."""
        marker = "\x00"
        lines = self.prompt(marker, opts, shown).split("\n")
        return "\n".join(line for line in lines if marker not in line).strip()

    def forward(self, prepared: dict[str, Any], opts: ClassifyOptions, sampling: dict[str, Any]) -> list[dict]:
        if opts.multi_label:
            return self._forward_multi(prepared["texts"], opts, prepared["examples"])
        texts, model = prepared["texts"], prepared["examples"]
        method = model.method if model else "zero-shot"
        calibration = opts.calibrate if opts.calibrate != "auto" else model.calibration if model else "content-free"
        if calibration == "batch" and len(texts) < 2:
            raise BadInputError(f"{option('calibrate', 'batch')} divides out the mean over the texts classified together, so it needs several texts ({len(texts)} given); use content-free for one text")
        scores, embeddings = self.score_texts(texts, opts, embed=method in ("probe", "demos"), told=True)
        if method == "demos":
            chosen = [demonstrations(model, embedding) for embedding in embeddings]
            if opts.truncate:  # the prompt is longer with them
                texts = [self.start_that_fits(text, opts, chosen[i]) for i, text in enumerate(prepared["given"])]
            scores, _ = self.score_texts(texts, opts, shown=lambda i: chosen[i])
            offsets = [self.content_free(opts, shown) if calibration != "off" else None for shown in chosen]
        else:
            prior = {
                "content-free": lambda: self.content_free(opts),
                "examples": lambda: model.prior,
                "batch": lambda: mean_prior(scores),
                "off": lambda: None,
            }[calibration]()
            offsets = [prior] * len(texts)
        logits = [
            log_softmax([s - c for s, c in zip(row, offset)] if offset else row) for row, offset in zip(scores, offsets)
        ]
        if method == "probe":
            logits = model.predict(embeddings, logits)
        elif method == "zero-shot" and opts.channel:
            logits = self.with_channel(texts, logits, opts)
        return [{"logits": row, "method": method, "calibration": calibration} for row in logits]

    def with_channel(self, texts: list[str], logits: list[list[float]], opts: ClassifyOptions) -> list[list[float]]:
        """Calibrated label log-probabilities with each text's own log-likelihood under each label
        added (noisy channel, Min et al. 2022): `p(text | "The sentiment of this movie review is
        positive.\nMovie review:")`, one prompt per label and the texts as its continuations."""
        channel = self.channel_scores(texts, opts)
        scale = CHANNEL_WEIGHT / (1 - CHANNEL_WEIGHT)  # (1 - w) * direct + w * channel, divided by 1 - w: the same ranking, the direct scores' own scale
        return [log_softmax([d + scale * c for d, c in zip(row, extra)]) for row, extra in zip(logits, channel)]

    def channel_prefix(self, label: str, opts: ClassifyOptions) -> str:
        """The line before the text that names the label, its question as a statement, and the
        text's kind: "The sentiment of this movie review is positive.\nMovie review:"."""
        kind, aspect = opts.kind.strip() or "text", opts.aspect.strip() or "category"
        return f"The {aspect} of this {kind} is {label}.\n{kind[:1].upper() + kind[1:]}:"

    def channel_scores(self, texts: list[str], opts: ClassifyOptions) -> list[list[float]]:
        """Per text, per label: the log-likelihood of " " + the text after the label's `channel_prefix`,
        per token of it (its sum did a little worse on the tuning parts). A text too long for the context with a prefix: a `ContextLengthError` as for the label
        prompt (naming the text), or with `truncate` its start that fits."""
        prefixes = [self.channel_prefix(label.name, opts) for label in opts.parsed]
        count, longest = self.engine.count_tokens, max(map(self.engine.count_tokens, prefixes))
        fitted, sizes = [], []
        for index, text in enumerate(texts):
            size = count(" " + text)
            if longest + size > self.engine.context_length:
                if not opts.truncate:
                    error = ContextLengthError(f"the text takes {size} tokens, and with the line naming its label {longest} more, but {self.engine.name}'s context holds {self.engine.context_length}; give {option('truncate')} to classify the text's start, or shorten it")
                    error.index, error.at = index, f"input {index}" if len(texts) > 1 else None
                    raise error
                text = self.start_that_fits(text, opts, room=self.engine.context_length - longest, render=lambda t: " " + t)
                size = count(" " + text)
            fitted.append(text)
            sizes.append(max(size, 1))
        told = self.progress is not _no_progress
        step = PROGRESS_EVERY if told else max(len(fitted), 1)  # untold, one call: the engine packs the texts under each line's cache
        rows: list[list[float]] = []
        for start in range(0, len(fitted), step):
            if told:
                self.progress(start, len(fitted), CHANNEL_STAGE)
            scored = self.engine.score_many(prefixes, [" " + text for text in fitted[start : start + step]])
            rows += [[s.logprobs[i] / sizes[start + i] for s in scored] for i in range(len(scored[0].logprobs))]
        if told:
            self.progress(len(fitted), len(fitted), CHANNEL_STAGE)
        return rows

    def _forward_multi(self, texts: list[str], opts: ClassifyOptions, model: ExampleModel | None) -> list[dict]:
        """Label scoring as for one label (a yes/no question per label was no better than chance on
        this model); with examples, one probe per label gives each label its own probability."""
        calibration = "off" if opts.calibrate == "off" else "content-free"
        probe = model is not None and model.method == "probe"
        scores, embeddings = self.score_texts(texts, opts, embed=probe, told=True)
        prior = self.content_free(opts) if calibration == "content-free" else None
        logits = [log_softmax([s - c for s, c in zip(row, prior)] if prior else row) for row in scores]
        if probe:
            logits = model.predict_multi(embeddings, logits)
        return [{"logits": row, "method": "probe" if probe else "zero-shot", "calibration": calibration} for row in logits]

    def postprocess(self, raw: dict[str, Any], opts: ClassifyOptions) -> dict[str, Any]:
        names = [label.name for label in opts.parsed]
        if opts.multi_label:
            if raw["method"] == "probe":  # each label's own probability
                values = [sigmoid(v) for v in raw["logits"]]
            else:  # how likely each label is next to the likeliest one
                top = max(raw["logits"])
                values = [math.exp(v - top) for v in raw["logits"]]
            scores = dict(zip(names, values))
            chosen = sorted((name for name in names if scores[name] >= opts.threshold), key=lambda name: -scores[name])  # likeliest first, as the scores are shown
            return {"labels": chosen, "scores": scores, "method": raw["method"], "calibration": raw["calibration"]}
        probs = [math.exp(v) for v in log_softmax(raw["logits"])]
        best = max(range(len(names)), key=lambda i: probs[i])
        return {
            "label": names[best],
            "scores": {name: p for name, p in zip(names, probs)},
            "method": raw["method"],
            "calibration": raw["calibration"],
        }
