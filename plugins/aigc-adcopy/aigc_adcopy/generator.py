"""The `adcopy` generator: N distinct ad-copy variants (a short headline and a one-line body each).

Two steps per round, each one batched: sample headlines (as `aigc headline` does: clean, fit the
word limit, keep distinct ones), then write one body sentence per new headline and keep the best
usable one. Rounds repeat with the next seed until there are N variants or the tries run out; then the
variants found are returned, with how many are missing and whether max_tokens cut bodies off (a
body cut mid-sentence is left out, as `aigc headline` leaves out a cut headline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aigc import templates
from aigc.errors import BadInputError, OptionError, option
from aigc.generators.base import Generator, fewer_advice, same_every_time, type_name
from aigc.generators.headline import clean_headline, fit_headline

MAX_ROUNDS = 5
BODY_SAMPLES = 3  # body candidates per headline; the first usable one wins
BODY_WORDS = (5, 35)


@dataclass
class AdCopyOptions:
    n: int = 3
    tone: str = "friendly"
    max_words: int = 8
    template: str = "adcopy-headline"
    body_template: str = "adcopy-body"

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 20:
            raise OptionError("n", f"must be between 1 and 20, got {self.n}")
        if not self.tone.strip() or len(self.tone) > 40:
            raise OptionError("tone", "must be a few words, like friendly, playful or luxurious")
        if not 3 <= self.max_words <= 20:
            raise OptionError("max_words", f"must be between 3 and 20, got {self.max_words}")


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


_LABEL = re.compile(r"^\s*(?:[-*•]+|\d+[.)])?\s*(?:\*\*)?(?:body|copy|ad copy|sentence|text)\s*(?:\*\*)?\s*:\s*", re.I)
_ITEM = re.compile(r"^\s*(?:(?:[-*•]+|\d+[.)](?=\s))\s*)+")  # a list marker, as clean_headline drops it: 1. or 2) but not 1.5 Million


def clean_body(text: str, headline: str) -> str:
    """The body sentence in a model's answer: its first line without labels, list markers, quotes or markup, cut
    to its first sentence when long; "" when it is unusable (too short or long, or the headline again)."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip() and not ln.strip().startswith("```")), "")
    line = _ITEM.sub("", _LABEL.sub("", line.replace("**", "")))
    line = " ".join(line.split()).strip("\"'“”‘’ ")
    if len(line.split()) > BODY_WORDS[1]:
        first = re.split(r"(?<=[.!?])\s+", line)[0]
        line = first if len(first.split()) <= BODY_WORDS[1] else ""
    words = _key(line).split()
    if not BODY_WORDS[0] <= len(words) <= BODY_WORDS[1] or line.endswith(":"):
        return ""
    if ":" in line[: len(line) // 2]:
        return ""  # "Name: tagline" is a second headline, not a sentence
    head = set(_key(headline).split())
    if _key(line).startswith(_key(headline)) or (head and len(head & set(words)) / len(set(words)) > 0.7):
        return ""  # the headline again, not a body
    return line


def _cut_off(completion, body: str) -> bool:
    """Whether `body` is the end of an answer max_tokens stopped: its one line, unfinished."""
    return completion.finish_reason == "length" and "\n" not in completion.text.strip() and body[-1] not in ".!?"


_META = re.compile(r"\b(?:ad|ads|advert|advertisement|headline|tagline|slogan)\b", re.I)


def usable_headline(headline: str) -> bool:
    """Not a pile of fragments ("A: B: C") and not about the ad itself ("... Ad", "Headline ...")."""
    return bool(headline) and headline.count(":") <= 1 and not _META.search(headline)


class AdCopyGenerator(Generator):
    """Inputs: `{"product": ..., "audience": ...}`. Result: `{"variants": [{"headline", "body"}, ...]}`."""

    name = "adcopy"
    description = "Write ad-copy variants (headline + one-line body) for a product and an audience"
    Options = AdCopyOptions
    sampling_defaults = {"temperature": 0.8, "top_p": 0.9, "max_tokens": 40, "repetition_penalty": 1.05}

    def batch_input(self, fields: dict[str, Any], field: str) -> dict[str, Any]:
        """A row of `aigc batch`: the product in its `field` column (`--field product`), the audience
        in its `audience` column."""
        product = super().batch_input(fields, field)
        if "audience" not in fields:
            raise BadInputError(f"the row has no 'audience' column (it has {', '.join(map(repr, fields))}); adcopy reads the audience from it, the product from --field")
        return {"product": product, "audience": fields["audience"]}

    def check_inputs(self, inputs: dict[str, str]) -> None:
        if not isinstance(inputs, dict):
            raise BadInputError(f'adcopy takes {{"product": TEXT, "audience": TEXT}}, got {type_name(inputs)}')
        for name in ("product", "audience"):
            if not isinstance(inputs.get(name), str) or not inputs[name].strip():
                raise BadInputError(f"{option(name)} is required and must be text that is not empty")  # the CLI names its flag

    def preprocess(self, inputs: dict[str, str], opts: AdCopyOptions) -> dict[str, Any]:
        values = {"product": inputs["product"].strip(), "audience": inputs["audience"].strip(), "tone": opts.tone}
        return {"values": values, "headline": templates.render(opts.template, {**values, "max_words": opts.max_words})}

    def _bodies(self, values: dict[str, Any], headlines: list[str], opts: AdCopyOptions, sampling, seed) -> tuple[list[str], int]:
        """The best whole body for each headline ("" where none), and how many max_tokens cut off."""
        about = f"{values['audience']} will love {values['product']}"  # what a body is about: why they will love it (a headline: the product itself)
        rendered = [templates.render(opts.body_template, {**values, "headline": h}, subject=about) for h in headlines]
        base = self.sampling(sampling, rendered[0].defaults)
        given = (sampling or {}).get("max_tokens") is not None  # --max-tokens holds for bodies too
        params = base.replace(n=1 if base.greedy else BODY_SAMPLES, seed=seed, max_tokens=base.max_tokens if given else max(base.max_tokens, 50))
        groups = self.engine.generate([r.messages for r in rendered], params)
        chosen, cut = [], 0
        for headline, group in zip(headlines, groups):
            usable = []
            for completion in group:
                body = clean_body(completion.text, headline)
                if body and _cut_off(completion, body):
                    cut += 1  # it ends where max_tokens stopped it, mid-sentence
                elif body:
                    usable.append(body)
            sentences = [b for b in usable if b[-1] in ".!?"]  # a finished sentence beats a fragment
            chosen.append((sentences or usable or [""])[0])
        return chosen, cut

    def forward(self, prepared: dict[str, Any], opts: AdCopyOptions, sampling: dict[str, Any]) -> tuple[list[dict[str, str]], int]:
        rendered = prepared["headline"]
        base = self.sampling(sampling, rendered.defaults)
        variants: dict[str, dict[str, str]] = {}
        bodies_seen: set[str] = set()
        tried: set[str] = set()
        cut = 0  # headline samples that max_tokens ended, and bodies it cut off
        bodies_cut = 0
        for attempt in range(MAX_ROUNDS):
            missing = opts.n - len(variants)
            if missing <= 0:
                break
            seed = None if base.seed is None else base.seed + attempt
            params = base.replace(n=1 if base.greedy else max(4, missing * 2), seed=seed)
            fresh: list[str] = []
            for completion in self.engine.generate([rendered.messages], params)[0]:
                cut += completion.finish_reason == "length"
                headline = fit_headline(clean_headline(completion.text), opts.max_words)
                if usable_headline(headline) and _key(headline) not in tried:
                    tried.add(_key(headline))
                    fresh.append(headline)
            if not fresh:
                continue
            bodies, dropped = self._bodies(prepared["values"], fresh, opts, sampling, seed)
            cut, bodies_cut = cut + dropped, bodies_cut + dropped
            for headline, body in zip(fresh, bodies):
                if body and _key(body) not in bodies_seen and len(variants) < opts.n:
                    bodies_seen.add(_key(body))
                    variants[_key(headline)] = {"headline": headline, "body": body}
        if not variants:
            if cut:  # the caller's max_tokens, not the sampling: more tries would be cut off the same way
                raise BadInputError(f"no ad-copy variant came out of {MAX_ROUNDS} tries ({cut} cut off at {option('max_tokens', base.max_tokens)}); raise {option('max_tokens')}")
            same = same_every_time(self.engine)
            if tried:  # headlines came out, but no body (a longer --max-words changes headlines only)
                why = f"no body the model wrote was usable ({BODY_WORDS[0]} to {BODY_WORDS[1]} words, not the headline again)"
                raise BadInputError(f"no ad-copy variant came out of {MAX_ROUNDS} tries: {why}" + (f", and the model {self.engine.name} gives the same answer to every sample" if same else f"; raise {option('temperature')}"))
            more = option("max_words") if same else f"{option('temperature')} or {option('max_words')}"
            raise BadInputError(f"no ad-copy variant came out of {MAX_ROUNDS} tries; raise {more}")
        return list(variants.values()), bodies_cut

    def notes(self, result: dict[str, Any], opts: AdCopyOptions) -> list[str]:
        """Fewer variants than asked for, and what to raise (aigc warns of each, on the CLI and in Python)."""
        got, missing = len(result["variants"]), result["missing"]
        if not missing:
            return []
        return [f"only {got} of the {got + missing} variants asked for came out distinct; {fewer_advice(self.engine, 'some bodies' if result['cut_off'] else None)}"]

    def postprocess(self, found: tuple[list[dict[str, str]], int], opts: AdCopyOptions) -> dict[str, Any]:
        """`missing`: how many fewer than N distinct variants came out; `cut_off`: max_tokens cut
        bodies off (left out), so raising it may give the missing ones."""
        variants, bodies_cut = found
        missing = opts.n - len(variants)
        return {"variants": variants, "missing": missing, "cut_off": bool(missing and bodies_cut)}
