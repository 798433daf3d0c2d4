"""The `Generator` base class: validate options -> preprocess -> forward -> postprocess.

Generators return plain data and never print. They reach the model only through an `Engine`
(generate, stream, score, count_tokens), so any backend can run them.
"""

from __future__ import annotations

import collections.abc
import contextlib
import contextvars
import copy
import dataclasses
import functools
import itertools
import os
import random
import shlex
import threading
import types
import typing
import warnings
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Literal, overload

from ..engine.base import Engine, StopSignal, calling, stopped_by, ticking, ticks
from ..engine.models import no_progress
from ..engine.sampling import DRAWING, GREEDY_BELOW, SamplingParams, number
from ..errors import AigcError, AigcNote, AigcWarning, BadInputError, OptionError, PluginError, UnknownGeneratorError, stop_event_set, close_names, did_you_mean, option
from ..plugins import name_problem, outside_aigc
from ..templates import get_template, is_path

if TYPE_CHECKING:  # for get_generator's overloads only: these modules import this one
    from .chat import ChatGenerator
    from .classify import ClassifyGenerator
    from .embed import EmbedGenerator
    from .headline import HeadlineGenerator
    from .image import ImageGenerator
    from .summarize import SummarizeGenerator
    from .template import TemplateGenerator
    from .translate import TranslateGenerator

ProgressFn = Callable[[int, int | None, str], None]  # (done, total, what); total None where it is not known (imany)
DECODING = "decoding"  # progress's `what` for the steps of one model call: (tokens decoded, max_tokens)
_quiet = contextvars.ContextVar("quiet_notes", default=False)


@contextlib.contextmanager
def quiet_notes():
    """While inside, a generator run warns of nothing (`warn_greedy`, `notes`): its caller warns once
    for many inputs (`aigc batch`), or passes the results on (`many`, the HTTP server), whose fields
    (`missing`, `unchanged`) say so."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def warn(message: str) -> None:
    """`message` as an `AigcWarning` pointing at the caller's own code (where it called aigc)."""
    warnings.warn(message, AigcWarning, stacklevel=outside_aigc())


def note(message: str) -> None:
    """`message` as an `AigcNote` (no problem, worth knowing), unless inside `quiet_notes`."""
    if not _quiet.get():
        warnings.warn(message, AigcNote, stacklevel=outside_aigc())


def check_stop(stop: Any) -> None:
    """An `OptionError` unless `stop` is None or has `is_set()` (a `threading.Event`)."""
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise OptionError("stop", f"must be a threading.Event (anything with is_set()) or None, got {type_name(stop)}")


@contextlib.contextmanager
def stoppable(stop: Any) -> collections.abc.Iterator[None]:
    """The engine calls of the block stop at their next step once `stop` (anything with `is_set()`;
    None: nothing) is set, which is then a `StoppedError`; one set already is one at once."""
    if stop is None:
        yield
        return
    import asyncio

    if stop.is_set():
        raise stop_event_set()
    with stopped_by(stop):
        try:
            yield
        except asyncio.CancelledError:
            if stop.is_set():
                raise stop_event_set() from None
            raise


def _no_progress(done: int, total: int, what: str) -> None:
    return None


def type_name(value: Any) -> str:
    """How an input of the wrong kind is named in an error: `None`, `bytes`, `an empty list`, ..."""
    if value is None:
        return "None"
    if isinstance(value, (list, dict, str)) and not value:
        return f"an empty {type(value).__name__}"
    return type(value).__name__


def iterated(values: Any, takes: str, one: str = "") -> collections.abc.Iterator:
    """An iterator over `values`, any iterable of items (a list, tuple, generator, numpy array, pandas
    Series), nothing read yet. A string, bytes or dict is one input, not many: a `BadInputError` saying
    `takes` ("NAME takes a list of texts") and then `one`; so is anything not iterable."""
    single = isinstance(values, (str, bytes, bytearray, collections.abc.Mapping))
    if single or not isinstance(values, collections.abc.Iterable):
        raise BadInputError(f"{takes}, got {type_name(values)}{one if single else ''}")
    return iter(values)


def listed(values: Any, takes: str, one: str = "") -> list:
    """`values` as `iterated` takes them, read once into a list."""
    return values if isinstance(values, list) else list(iterated(values, takes, one))


def same_every_time(engine: Any) -> bool:
    """Whether `engine` answers every sample the same whatever the sampling settings (its `samples`
    is False, as the model `echo`'s): more tries or a higher temperature give no other answer."""
    return getattr(engine, "samples", True) is False


def seed_to_draw(generator: Generator, options: dict[str, Any], sampling: dict[str, Any] | None) -> int | None:
    """The seed to draw for an answer a local model samples without one (temperature above 0: given,
    the template's or the task's), to be used and recorded, so that the same seed makes that answer
    again; None where a seed is given, the answer is greedy, or the model does not run here (its server
    draws). The generator's model must be loaded (its engine is asked where it runs)."""
    if (sampling or {}).get("seed") is not None or not generator.samples or not getattr(generator.engine, "variant", ""):
        return None
    if generator.sampling_in_effect(generator.validate(options), sampling).greedy:
        return None
    return random.SystemRandom().randrange(2**63)


def fewer_advice(engine: Any, cut_off: str | None = None) -> str:
    """What to do when fewer distinct answers came out than were asked for: raise --max-tokens where
    `cut_off` (which ones, "some") were cut at the token limit; for a model that answers every sample
    the same, ask for fewer; else raise the temperature or word limit."""
    if cut_off:
        return f"{cut_off} were cut off at the token limit; raise {option('max_tokens')}"
    if same_every_time(engine):
        return f"the model {engine.name} gives the same answer to every sample; ask for fewer ({option('n')})"
    return f"raise {option('temperature')} or {option('max_words')}, or ask for fewer ({option('n')})"


def check_varied(n: int, params: SamplingParams, what: str) -> None:
    """A `BadInputError` when `n` answers are asked for with settings that give the same one each time."""
    if n > 1 and (params.greedy or params.top_k == 1):
        tiny = f" (as is {option('temperature', params.temperature)}, below {GREEDY_BELOW})" if 0 < params.temperature < GREEDY_BELOW else ""
        raise BadInputError(
            f"{n} {what} need sampling, but {option('temperature', 0)}{tiny} or {option('top_k', 1)} always picks the same words; "
            f"raise them, or ask for one ({option('n', 1)})"
        )


@functools.lru_cache(maxsize=None)
def _option_types(options: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(options)
    except Exception:  # a plugin's annotations that do not resolve: values are taken as they are
        return {}


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_UNSET = object()


def coerce_value(subject: str, value: Any, hint: Any, error: Callable[[str, str], Exception] = lambda subject, problem: BadInputError(f"{subject} {problem}")) -> Any:
    """`value` as its declared type (bool, int, float, str or list[str]; "3" -> 3 and "a,b" -> ["a",
    "b"] for text from a command line or a form); anything that cannot be raises `error(subject, problem)`, by default a
    `BadInputError` about `subject` ("template 'x' variable n must be a number, got 'a'")."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    if len(kinds) == 1 and typing.get_origin(kinds[0]) is typing.Literal:  # Literal["a", "b"]: one of those
        choices = typing.get_args(kinds[0])
        chosen = next((c for c in choices if value == c or isinstance(value, str) and not isinstance(c, str) and value == str(c)), _UNSET)
        if chosen is _UNSET:
            raise error(subject, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return chosen
    if len(kinds) == 1 and typing.get_origin(kinds[0]) is list and typing.get_args(kinds[0]) == (str,):
        if isinstance(value, str):  # a,b from a command line or a form
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
            raise error(subject, f"must be a list of texts (or one text, comma-separated), got {value!r}")
        return list(value)
    if len(kinds) != 1 or kinds[0] not in (bool, int, float, str):
        return value
    kind = kinds[0]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise error(subject, f"must be true or false, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise error(subject, f"must be text, got {value!r}")
    if isinstance(value, bool):
        raise error(subject, f"must be a number, got {value!r}")
    parsed = number(value) if isinstance(value, str) else value  # text spells numbers as sampling settings read them ("4.0" is 4)
    try:
        if kind is float:
            return float(parsed)
        if not isinstance(parsed, float) or parsed.is_integer():
            return int(parsed)
    except (TypeError, ValueError):
        pass
    what = "a whole number" if kind is int else "a number"
    raise error(subject, f"must be {what}, got {value!r}")


def names_text(value: Any) -> bool:
    """Whether an option's value is text: a file's path, for an option marked `metadata={"file":
    names_text}` that takes its content inline too (a list, a dict)."""
    return isinstance(value, str)


def _template_file(value: Any) -> bool:
    return isinstance(value, str) and is_path(value)


def template_options(options: type) -> list[str]:
    """The options of the dataclass `options` that name a template: those whose name ends in
    `template`, but for one marked `metadata={"template": False}` (a plugin's `url_template`)."""
    fields = dataclasses.fields(options) if dataclasses.is_dataclass(options) else ()
    return [f.name for f in fields if f.init and f.name.endswith("template") and f.metadata.get("template", True)]


def named_files(options: type, values: dict[str, Any]) -> list[str]:
    """The names of those `values` (options for the dataclass `options`) that name a file: given to a
    field marked `metadata={"file": True}`, or `{"file": check}` when `check(value)` is true (an option
    that takes its content inline too), and a template file's path given to an option whose name ends in
    `template`. `aigc serve` refuses them, so a request never makes it read a file."""
    marks = {f.name: f.metadata.get("file") for f in dataclasses.fields(options) if f.init}
    templates = template_options(options)
    named = []
    for name, value in values.items():
        mark = marks.get(name) or (_template_file if name in templates else None)
        if value is not None and mark and (not callable(mark) or mark(value)):
            named.append(name)
    return named


def _options_doc(options: type) -> str:
    """The options a generator's calls take, as its help lists them: `name=default`, or the name of one the caller must give."""
    shown = []
    for f in dataclasses.fields(options):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        shown.append(f.name if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING else f"{f.name}={default!r}")
    return f"Options (keywords of a call, of `many` and of `imany`): {', '.join(shown)}." if shown else "Options: none."


@dataclasses.dataclass
class NoOptions:
    """The options of a generator that takes none."""


class Generator:
    """Base for one task. Subclasses set `name`, `Options` (a dataclass) and the four stages."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    sampling_defaults: ClassVar[dict[str, Any]] = {}
    line_options: ClassVar[dict[str, Any]] = {}  # defaults for an input of plain text (a .txt row, a .csv or .tsv cell)
    line_field: ClassVar[str] = "text"  # the column a line of plain text fills (a .txt row, a --lines line), for `batch_input`
    samples: ClassVar[bool] = True  # whether it generates text, so sampling settings apply (classify and embed score)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if callable(cls.__dict__.get("prepare")):
            cls.prepare = _blamed_prepare(cls.__dict__["prepare"])
        if dataclasses.is_dataclass(cls.Options):  # help(generator) lists its options, from the fields themselves
            cls.__doc__ = f"{(cls.__dict__.get('__doc__') or cls.description or cls.name).rstrip()}\n\n{_options_doc(cls.Options)}"
        call = cls.__dict__.get("__call__")
        if callable(call) and not call.__doc__:
            call.__doc__ = Generator.__call__.__doc__

    def __init__(
        self,
        engine: Engine | None = None,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        quantize: str | None = None,
        trust_remote_code: bool = False,
        progress: ProgressFn | None = None,
        load_progress: Callable[..., None] | None = None,
    ):
        self._engine = engine
        self.model = model
        self.device = device
        self.dtype = dtype
        self.quantize = quantize
        self.trust_remote_code = trust_remote_code
        self.progress = progress or _no_progress
        self.load_progress = load_progress or no_progress

    @property
    def engine(self) -> Engine:
        """The engine, loaded on first use (pulling the model if it is not installed); `model` then
        names the model loaded (the default one when it was None)."""
        if self._engine is None:
            from .. import config
            from ..engine.loading import load_model

            engine = load_model(  # None: the default model, and an error about it says where it was set
                self.model,
                self.device,
                self.dtype,
                progress=self.load_progress,
                quantize=self.quantize,
                trust_remote_code=self.trust_remote_code,
            )
            self.model, self._engine = self.model or config.default_model(), engine
        return self._engine

    @classmethod
    def check_model(cls, model: str | None, device: str = "auto", dtype: str = "auto", quantize: str | None = None) -> None:
        """Refuse, when a generator is made, a model it cannot run with these settings: an unknown
        name, a model of the wrong kind, settings it cannot take (names and files only: nothing
        loads; None, the default model, is checked when it loads)."""
        from ..engine.loading import check_text_model
        from ..engine.models import resolve

        check_text_model(None if model is None else resolve(model), device, dtype, quantize)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}, model {self.model_name or 'default'!r}>"

    @property
    def model_name(self) -> str | None:
        """The loaded engine's name, else the model asked for (None: the default); never loads it."""
        return self._engine.name if self._engine is not None else self.model

    def dtype_used(self) -> str | None:
        """The dtype its model runs in ("bfloat16" where `dtype="auto"` picks that), never loading it;
        None for a model that does not run here (a remote server, echo, a test engine)."""
        if self._engine is not None:
            return getattr(self._engine, "dtype", None)
        from ..engine.loading import dtype_used

        return dtype_used(self.model, self.device, self.dtype, self.quantize)

    @classmethod
    def option_names(cls) -> list[str]:
        """The names of its options: its `Options`' fields."""
        return [f.name for f in dataclasses.fields(cls.Options) if f.init]

    def validate(self, options: dict[str, Any]):
        """Build the `Options` dataclass; unknown or bad options are an `OptionError` (its `option`
        the first unknown one), a misspelt sampling setting's pointing to the sampling settings."""
        known = set(self.option_names())
        unknown = sorted(set(options) - known)
        if unknown:
            sampled = {f.name for f in dataclasses.fields(SamplingParams)}
            close = close_names([name for name in unknown if name not in sampled], known | sampled if self.samples else known)
            settings = sorted((set(unknown) | set(close)) & sampled)
            hint = f"; give {', '.join(map(option, settings))} as {'sampling settings' if len(settings) > 1 else 'a sampling setting'}" if settings else ""
            hint = f" ({self.name} generates no text, so it takes no sampling settings)" if settings and not self.samples else hint
            nor = f", nor {', '.join(unknown[1:])}" if len(unknown) > 1 else ""
            meant = f" (did you mean {', '.join(close)}?)" if close else ""
            raise OptionError(unknown[0], f": {self.name} has no such option{nor}{meant}; its options: {', '.join(sorted(known)) or 'none'}{hint}")
        given = {k: v for k, v in self.converted(options).items() if v is not None}
        for f in dataclasses.fields(self.Options):  # a field with no default is an option the caller must give
            if f.init and f.name not in given and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise OptionError(f.name, f"is required by {self.name}; give it")
        try:
            opts = self.Options(**given)
        except AigcError:
            raise
        except (ValueError, TypeError) as exc:  # a value the generator refuses: the caller's to change
            raise self._refused(given, exc) from exc
        except Exception as exc:  # noqa: BLE001 - a bug in a plugin's Options
            raise PluginError(f"the {self.name} generator{self.by_plugin()} failed checking its options: {type(exc).__name__}: {exc}") from exc
        for name in template_options(self.Options):
            get_template(getattr(opts, name))  # an unknown template fails before any model loads
        return opts

    def converted(self, options: dict[str, Any]) -> dict[str, Any]:
        """`options` with each value converted to its option's declared type ("3" -> 3, "a,b" -> ["a",
        "b"], a `Literal`'s choice checked); a value that cannot be is an `OptionError`."""
        hints = _option_types(self.Options)
        return {k: v if v is None else coerce_value(k, v, hints.get(k, Any), OptionError) for k, v in options.items()}

    def _refused(self, given: dict[str, Any], exc: Exception) -> BadInputError:
        """A `ValueError` or `TypeError` from `Options`, as the caller's bad option value: an
        `OptionError` naming the option when one was given, else naming all of them."""
        whose = f"the {self.name} generator{self.by_plugin()}"
        if len(given) == 1:
            return OptionError(next(iter(given)), f"is refused by {whose}: {exc}")
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "none given"
        return BadInputError(f"{whose} refused its options ({shown}): {exc}")

    @staticmethod
    def check_settings(sampling: Any) -> None:
        """Reject sampling settings that are not a dict of known settings with usable values, even
        for a task that samples nothing (a misspelt setting is never ignored)."""
        if sampling is None:
            return
        if not isinstance(sampling, dict):
            hint = " (it sets every setting, its defaults over the task's too); give only those to change" if isinstance(sampling, SamplingParams) else ""
            raise BadInputError(f"sampling must be a dict of settings such as {{'temperature': 0.7}}, got {type_name(sampling)}{hint}")
        SamplingParams.from_settings({k: v for k, v in sampling.items() if v is not None})

    def check_sampled(self, sampling: dict[str, Any] | None) -> None:
        """A `BadInputError` naming the sampling settings given to a task that generates no text
        (classify, embed, image): they would change nothing. Those that are its options too (image's
        seed and n) are named as such."""
        given = [key for key, value in (sampling or {}).items() if value is not None]
        if given and not self.samples:
            own = [key for key in given if key in self.option_names()]
            hint = f"; give {', '.join(map(option, own))} as {'options' if len(own) > 1 else 'an option'} of {self.name}" if own else ""
            raise BadInputError(f"{self.name} takes no sampling options (it generates no text): drop {', '.join(map(option, given))}{hint}")

    def sampling(self, overrides: dict[str, Any] | None, template_defaults: dict[str, Any] | None = None) -> SamplingParams:
        """Generator defaults < template front-matter defaults < the caller's settings."""
        merged: dict[str, Any] = dict(self.sampling_defaults)
        merged.update(template_defaults or {})
        merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return SamplingParams.from_settings(merged)

    def batch_input(self, fields: dict[str, Any], field: str) -> Any:
        """The input for one row of `aigc batch`: by default the text in column `field`."""
        if field not in fields:
            spelt = next((name for name in fields if name.casefold() == field.casefold()), None)  # `Text`, as spreadsheets head columns
            pick = option("field", shlex.quote(spelt)) if spelt else f"one with {option('field')}"
            raise BadInputError(f"the row has no {field!r} field (it has {', '.join(map(repr, fields)) or 'none'}); pick {pick}")
        value = fields[field]
        if not isinstance(value, str):
            from ..batch_inputs import json_kind

            raise BadInputError(f"field {field!r} must hold text, not {json_kind(value)}")
        return value

    def prepare(self, options: dict[str, Any]) -> None:
        """Load what every input needs (the model, fitted examples) before inputs run concurrently."""
        self.validate(options)
        self.engine  # noqa: B018 - loads the model

    def check_sampling(self, opts, sampling: dict[str, Any] | None) -> None:
        """Reject sampling settings these options cannot work with; raises `BadInputError`."""

    def warn_greedy(self, opts, sampling: dict[str, Any] | None) -> None:
        """An `AigcWarning` where top_p, top_k, min_p or seed is given but the answer is greedy
        (temperature 0: the task's, its template's or given), which never draws, so they change nothing."""
        given = [name for name in DRAWING if (sampling or {}).get(name) is not None]
        if not given or not self.samples or _quiet.get():
            return
        params = self.sampling_in_effect(opts, sampling)
        if params.greedy:
            why = f"temperature {params.temperature:g}, below {GREEDY_BELOW:g}" if params.temperature else "temperature 0"
            warn(f"{' and '.join(map(option, given))} change{'s' * (len(given) == 1)} nothing here: the answer is greedy ({why}); give {option('temperature', 0.7)} (or another above 0) to sample")

    def sampling_in_effect(self, opts, sampling: dict[str, Any] | None) -> SamplingParams:
        """The settings an answer with these options is made with: the task's defaults < its template's < `sampling`."""
        template = getattr(opts, "template", None)
        return self.sampling(sampling, get_template(template).defaults if template else None)

    def notes(self, result: dict[str, Any], opts) -> list[str]:
        """Warnings about the result of one input that a caller could miss (a text given back as it
        is, fewer answers than asked for); `__call__` warns of each, but not for one of many."""
        return []

    def check_batch(self, opts) -> None:
        """Reject options that need the inputs processed together: `aigc batch` runs each row alone."""

    def check_inputs(self, inputs: Any) -> None:
        """Reject unusable inputs before any model is loaded; raises `BadInputError`."""

    def list_hint(self, inputs: Any) -> str:
        """What to call instead when `inputs` is a list where one input belongs, else ''."""
        return f"; for a list of inputs, call many: aigc.get_generator({self.name!r}).many(inputs)" if isinstance(inputs, (list, tuple)) else ""

    def check_batch_input(self, inputs: Any, opts) -> None:
        """Reject a batch row's input (`batch_input`) these options cannot run, before any model is
        loaded (a template with nowhere to put the text, say); raises `BadInputError`."""

    def check_each(self, inputs: list, first: int = 0) -> None:
        """`check_inputs` on each of many inputs; an error names the input's position (counted from `first`)."""
        for number, item in enumerate(inputs, first):
            try:
                self.check_inputs(item)
            except AigcError as exc:
                exc.at, exc.index = f"input {number}", number
                raise

    @overload
    def many(
        self, inputs: Iterable[Any], sampling: dict[str, Any] | None = None, concurrency: int = 16, on_error: Literal["stop"] = "stop", *, stop: Any = None, **options: Any
    ) -> list[dict[str, Any]]: ...
    @overload
    def many(
        self, inputs: Iterable[Any], sampling: dict[str, Any] | None = None, concurrency: int = 16, *, on_error: str, stop: Any = None, **options: Any
    ) -> list[dict[str, Any] | Exception]: ...
    def many(
        self, inputs: Iterable[Any], sampling: dict[str, Any] | None = None, concurrency: int = 16, on_error: str = "stop", *, stop: Any = None, **options: Any
    ) -> list[dict[str, Any]] | list[dict[str, Any] | Exception]:
        """Run many inputs with one set of options, `concurrency` at a time with their model calls
        merged into batches (what `aigc batch` does, in memory); results in input order. When an
        input fails, its error (an `AigcError` of the class it was raised as, naming its position)
        is raised and no input after it is started; with `on_error="skip"`, as `run_batch` words it,
        the error is given in that input's place and the others' results are kept. A KeyboardInterrupt
        (Ctrl-C) stops the inputs in flight at their next decoding step (a local model's; a remote
        model's requests in flight have their connections shut) and is raised once their workers have ended
        (`aigc.batch.STOP_WAIT` seconds at most). The inputs are read, and with `on_error="stop"`
        checked, all before any runs; `imany` gives each result as it is ready. `stop`, a
        `threading.Event` (anything with `is_set()`) another thread sets, stops the inputs in flight
        as Ctrl-C does, from any thread, and raises `aigc.errors.StoppedError` once they have."""
        inputs = listed(inputs, "many takes a list of inputs", "; run one input with the generator itself")
        check_stop(stop)
        self._check_many(sampling, concurrency, on_error, options)
        if on_error == "stop":  # with "skip", an invalid input's error is given in its place, as a failed one's is
            self.check_each(inputs)
        if not inputs:
            return []
        results = list(self._each(iter(inputs), len(inputs), sampling, concurrency, on_error, options, size=len(inputs), stop=stop))
        failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, Exception)]
        if failed:  # a SystemExit or KeyboardInterrupt (a bug's, workers get no signals) is raised whatever on_error says, once all have run
            raise failed[0]
        return results

    @overload
    def imany(
        self, inputs: Iterable[Any], sampling: dict[str, Any] | None = None, concurrency: int = 16, on_error: Literal["stop"] = "stop", *, stop: Any = None, **options: Any
    ) -> Results[dict[str, Any]]: ...
    @overload
    def imany(
        self, inputs: Iterable[Any], sampling: dict[str, Any] | None = None, concurrency: int = 16, *, on_error: str, stop: Any = None, **options: Any
    ) -> Results[dict[str, Any] | Exception]: ...
    def imany(
        self, inputs: Iterable[Any], sampling: dict[str, Any] | None = None, concurrency: int = 16, on_error: str = "stop", *, stop: Any = None, **options: Any
    ) -> Results[Any]:
        """`many`, lazily, as `multiprocessing.Pool.imap` is `map`: an iterator of the results in input
        order, each given as soon as it and those before it are done, so they can be written as they
        come. `inputs` may be any iterable, an endless generator too: it is read `concurrency` inputs
        at a time (their model calls merged into batches), the next ones once those results are all
        taken. Options and sampling settings are checked when `imany` is called; each input is
        checked as it is read, so with `on_error="stop"` an invalid input's error is raised at its
        place, after the results before it (`many` checks them all before any runs); with "skip" it is
        given in its place. An error `inputs` raises as it is read is raised after the results of those read before it. A SystemExit or KeyboardInterrupt raised by the generator's code is raised at its place whatever `on_error` says.
        Closing the iterator (`.close()`, `contextlib.closing`, or its garbage collection: leaving a
        `for` loop over `imany(...)` by `break`, an error or Ctrl-C in its body lets go of it; one kept in a
        name stays open until the name goes: loop over `contextlib.closing(g.imany(...))`) or Ctrl-C
        while it waits for a result stops the inputs in flight as `many` does, waiting `STOP_WAIT` at most. `progress` is told `(done, total, "inputs")`, `total` None where `inputs` has no len().
        Another thread may close it too (a stop button's): the thread iterating it gets no further
        result (its loop ends) once the inputs in flight have stopped; `close()` returns at once. `stop`, a
        `threading.Event` (anything with `is_set()`), stops them so from any thread, and the iteration then raises `aigc.errors.StoppedError`."""
        items = iterated(inputs, "imany takes an iterable of inputs", "; run one input with the generator itself")
        check_stop(stop)
        self._check_many(sampling, concurrency, on_error, options)
        total = len(inputs) if isinstance(inputs, collections.abc.Sized) else None
        closed = StopSignal()
        return Results(self._each(items, total, sampling, concurrency, on_error, options, size=concurrency, lazy=True, stop=stop, closed=closed), closed)

    def _check_many(self, sampling: dict[str, Any] | None, concurrency: int, on_error: str, options: dict[str, Any]) -> None:
        """What `many` and `imany` check before any input is read: their settings and options."""
        from ..batch import check_concurrency, check_on_error

        check_concurrency(concurrency)
        check_on_error(on_error)
        self.check_settings(sampling)
        self.check_sampled(sampling)
        opts = self.validate(options)
        self.check_batch(opts)
        self.check_sampling(opts, sampling)
        self.warn_greedy(opts, sampling)

    def _each(
        self, items: collections.abc.Iterator, total: int | None, sampling: dict[str, Any] | None, concurrency: int, on_error: str,
        options: dict[str, Any], size: int, lazy: bool = False, stop: Any = None, closed: StopSignal | None = None,
    ) -> collections.abc.Generator[dict[str, Any] | BaseException, None, None]:
        """The results of `items` in order, read and run `size` at a time (`run_rows`); a failed input's
        error is raised at its place with `on_error="stop"`, else given there. `lazy` (`imany`): with
        "stop", each input is checked as it is read, none read after one that fails; a SystemExit or
        KeyboardInterrupt of the generator's code is raised at its place (else given there: `many`
        raises it once all have run). Once `stop` is set (anything with `is_set()`), the inputs in flight
        stop and a `StoppedError` is raised; once `closed` is, they stop and the results end."""
        cancel = StopSignal()  # set as `stop` or `closed` is: the inputs in flight stop
        with contextlib.ExitStack() as watching:
            for event in (stop, closed):
                if event is not None:
                    watching.enter_context(calling(event, cancel.set))
            yield from self._each_until(items, total, sampling, concurrency, on_error, options, size, lazy, cancel, stop)

    def _each_until(
        self, items: collections.abc.Iterator, total: int | None, sampling: dict[str, Any] | None, concurrency: int, on_error: str,
        options: dict[str, Any], size: int, lazy: bool, cancel: StopSignal, stop: Any,
    ) -> collections.abc.Generator[dict[str, Any] | BaseException, None, None]:
        from ..batch import run_rows, stopping
        from ..batch_inputs import Row

        quiet, done = None, 0
        while True:
            if cancel.is_set():
                if stop is not None and stop.is_set():
                    raise stop_event_set()
                return
            rows, invalid, source = [], None, itertools.islice(items, size)
            while True:
                try:
                    item = next(source)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - the inputs' own error, raised after the results of those read before it
                    invalid = exc
                    break
                number = done + len(rows)
                if lazy and on_error == "stop":
                    try:
                        self.check_each([item], first=number)
                    except AigcError as exc:
                        invalid = exc
                        break
                rows.append(Row(number, number, {}, input=item, given=True))
            if rows:
                if quiet is None:
                    self.prepare(options)
                    quiet = copy.copy(self)
                    quiet.progress = _no_progress  # an input's own steps (summarize's parts) would mix the inputs' counts
                    self.progress(0, total, "inputs")
                fatal = None
                with stopping(run_rows(quiet, rows, options, sampling, concurrency=concurrency, stop_at_error=on_error == "stop", cancel=cancel)) as outcomes:  # Ctrl-C stops the inputs in flight
                    for row, outcome in outcomes:
                        if cancel.is_set():  # an input in flight stopped: no result of it is given
                            break
                        if "error" not in outcome:
                            result = outcome["result"]
                        else:
                            result = outcome.get("exception") or BadInputError(outcome["error"])
                            if isinstance(result, AigcError):
                                result.at, result.index = f"input {row.number}", row.number
                        done += 1
                        self.progress(done, total, "inputs")
                        if isinstance(result, BaseException) and (on_error == "stop" or lazy and not isinstance(result, Exception)):
                            fatal = result
                            break
                        yield result
                if cancel.is_set():  # stopped or closed: the inputs in flight have stopped
                    if stop is not None and stop.is_set():
                        raise stop_event_set()
                    return
                if fatal is not None:  # raised once the inputs in flight beside it have stopped
                    raise fatal
            if invalid is not None:
                raise invalid
            if len(rows) < size:
                return

    def __call__(self, inputs: Any, sampling: dict[str, Any] | None = None, *, stop: Any = None, **options: Any) -> dict[str, Any]:
        """Run the task on one input; returns its result dict. `sampling`: sampling settings
        (`{"max_tokens": 60, "temperature": 0}`); the task's options are keywords, listed with
        their defaults by `help(type(generator))`. `stop`: a `threading.Event` (anything with
        `is_set()`) that another thread sets to stop the call at its next step (decoding step, part,
        engine request); the call then raises `aigc.errors.StoppedError`."""
        check_stop(stop)
        self.check_settings(sampling)
        self.check_sampled(sampling)
        opts = self.validate(options)
        self.check_sampling(opts, sampling)
        self.warn_greedy(opts, sampling)
        self.check_inputs(inputs)
        with stoppable(stop), self.decoding():
            prepared = self.preprocess(inputs, opts)
            raw = self.forward(prepared, opts, sampling or {})
            result = self.postprocess(raw, opts)
        if not isinstance(result, dict):  # a plugin's bug, named before a caller writes it as a result
            raise PluginError(f"generator {self.name!r}{self.by_plugin()} returned {type_name(result)} where a dict of results is due; its postprocess must return a dict")
        if not _quiet.get():
            for note in self.notes(result, opts):
                warn(note)
        return result

    def decoding(self) -> contextlib.AbstractContextManager:
        """While in the block, `progress` (where one is given) is told `(steps, max_tokens,
        "decoding")` after each decoding step of a local model's call: the tokens decoded so far in
        that call, of at most max_tokens (it may end sooner); each call counts from 1 again. Not
        where `progress.wants_decoding` is False (the CLI's bars): then no Python call per token."""
        if self.progress is _no_progress or not getattr(self.progress, "wants_decoding", True):
            return contextlib.nullcontext()
        progress = self.progress
        return ticking(lambda steps, most, finished, rows: progress(steps, most, DECODING))

    def rows_told(self, before: int, total: int, what: str) -> contextlib.AbstractContextManager:
        """While in the block, `progress` (where one is given) is also told `(before + rows ended,
        total, what)` as the rows of a local model's batched call end, one by one."""
        if self.progress is _no_progress:
            return contextlib.nullcontext()
        progress, outer, told = self.progress, ticks(), [0]

        def tick(steps: int, most: int, finished: int, rows: int) -> None:
            if outer is not None:
                outer(steps, most, finished, rows)
            if finished > told[0]:
                told[0] = finished
                progress(before + finished, total, what)

        return ticking(tick)

    def by_plugin(self) -> str:
        """` (plugin 'NAME')` when a plugin registered this generator's class, for errors that name it."""
        owner = next((plugin for plugin, cls in registered_generators().values() if cls is type(self)), None)
        return f" (plugin {owner!r})" if owner and not owner.startswith("aigc.") else ""

    def preprocess(self, inputs: Any, opts) -> Any:
        """Turn the caller's `inputs` (already past `check_inputs`) and the validated `opts` (an
        instance of the generator's `Options`) into what `forward` sends to the model: usually a
        rendered template (`templates.render(...)`, whose `.messages` are the prompt and `.defaults`
        its sampling defaults), or a list of them. No model call here beyond `self.engine.count_tokens`."""
        raise self._undefined("preprocess(self, inputs, opts)")

    def forward(self, prepared: Any, opts, sampling: dict[str, Any]) -> Any:
        """Run the model on what `preprocess` returned, through `self.engine` only (`generate`,
        `stream`, `score`, `embed`), and return its raw output (say, the list of `Completion`s).
        `sampling` is the caller's settings as given (a dict, maybe empty): `self.sampling(sampling,
        rendered.defaults)` merges them over the generator's and template's defaults into `SamplingParams`."""
        raise self._undefined("forward(self, prepared, opts, sampling)")

    def postprocess(self, raw: Any, opts) -> dict[str, Any]:
        """Turn `forward`'s raw output into the result: a plain dict of JSON-able data (what
        `aigc.generate` returns and `--json` prints), e.g. `{"text": ...}`; never print."""
        raise self._undefined("postprocess(self, raw, opts)")

    def _undefined(self, method: str) -> PluginError:
        return PluginError(
            f"the {self.name} generator{self.by_plugin()} does not define {method}; "
            "a generator defines preprocess, forward and postprocess (docs/plugins.md)"
        )


_Result = typing.TypeVar("_Result")


class Results(collections.abc.Iterator, typing.Generic[_Result]):
    """What `imany` returns: its results, in input order, as they are ready. `close()` stops the
    inputs in flight, from the thread iterating it or from another one (a stop button's): it
    returns at once, and the iterating thread's loop ends once they have stopped. A `with` block
    closes it at its end."""

    def __init__(self, results: collections.abc.Generator, closed: StopSignal):
        self._results = results
        self._closed = closed
        self._running = threading.Lock()  # held while a result is waited for: a close() from another thread then leaves the end to it

    def __iter__(self) -> Results[_Result]:
        return self

    def __next__(self) -> _Result:
        with self._running:
            return next(self._results)

    def close(self) -> None:
        """Stop the inputs in flight; no result is given after."""
        self._closed.set()
        if self._running.acquire(blocking=False):
            try:
                self._results.close()
            finally:
                self._running.release()

    def __enter__(self) -> Results[_Result]:
        return self

    def __exit__(self, *raised: object) -> None:
        self.close()


def _blamed_prepare(prepare: Callable) -> Callable:
    """A generator class's own `prepare`, given the options converted to their declared types; a
    plugin generator's failure in it (not an `AigcError`) is a `PluginError` naming the generator."""

    @functools.wraps(prepare)
    def call(self: Generator, options: dict[str, Any]) -> Any:
        converted = self.converted(options)
        try:
            return prepare(self, converted)
        except AigcError:
            raise
        except Exception as exc:
            plugin = self.by_plugin()
            if not plugin:
                raise
            raise PluginError(f"the {self.name} generator{plugin} failed in prepare: {type(exc).__name__}: {exc}") from exc

    return call


def registered_generators() -> dict[str, tuple[str, type[Generator]]]:
    """`{name: (plugin, class)}` from every plugin's `register_generators` hook."""
    from ..plugins import DEFAULT_PLUGINS, collect, record_problem

    found = collect("register_generators", key=lambda item: item[0], kind="generator", check=_generator_problem)
    for name, (plugin, item) in found.items():
        problem = None if plugin in DEFAULT_PLUGINS else _unconverted_options(name, item[1])
        if problem:
            record_problem(plugin, "register_generators", problem)
    return {name: (plugin, item[1]) for name, (plugin, item) in found.items()}


def _unconverted_options(name: str, cls: type[Generator]) -> str | None:
    """What is wrong with a plugin generator's option types that `coerce_value` does not convert to
    (a value from a command line or a form would reach the generator as text); None when nothing.
    `Any` says the generator takes values as given and converts them itself."""
    try:
        hints = typing.get_type_hints(cls.Options)
    except Exception as exc:  # noqa: BLE001 - a plugin's annotations that do not resolve
        return f"generator {name!r}: its Options' types do not resolve ({type(exc).__name__}: {exc}), so its options get values as given, text from a command line or a form"
    odd = [f"{f.name} ({_type_text(hints[f.name])})" for f in dataclasses.fields(cls.Options) if f.init and f.name in hints and not _converted(hints[f.name])]
    if not odd:
        return None
    return (
        f"generator {name!r}: aigc converts option values to bool, int, float, str or list[str] (or None), not the type of "
        f"{', '.join(odd)}, which would get text from a command line or a form as it is; declare one of those types, "
        f"or Any and convert the value in Options.__post_init__"
    )


def _converted(hint: Any) -> bool:
    """Whether `coerce_value` converts to `hint` (or `hint` is Any: taken as given, on purpose)."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    if len(kinds) != 1:
        return False
    kind = kinds[0]
    if typing.get_origin(kind) is typing.Literal:  # Literal["a", "b"]: the text is the value
        return all(isinstance(value, str) for value in typing.get_args(kind))
    return kind in (bool, int, float, str, Any) or (typing.get_origin(kind) is list and typing.get_args(kind) == (str,))


def _type_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _described(value: Any) -> str:
    """A registered value in a message, the same each time (an instance's repr holds its address)."""
    plain = isinstance(value, (type, str, int, float, bool, type(None))) or callable(value) and hasattr(value, "__qualname__")
    return repr(value) if plain else f"an instance of {type(value).__name__}"


def _generator_problem(item: Any) -> str | None:
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0]):
        shown = f"({', '.join(map(_described, item))})" if isinstance(item, tuple) else _described(item)
        return f"register(name, generator_class) takes a name and a class, got {shown}"
    name, cls = item
    problem = name_problem(name)  # it goes in commands (aigc batch NAME) and URLs (/v1/aigc/NAME)
    if problem:
        return f"generator name {name!r}: {problem}"
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        hint = "; register the class, not an instance" if isinstance(cls, Generator) else ""
        return f"generator {name!r} must be a subclass of aigc.Generator, got {_described(cls)}{hint}"
    if not (isinstance(cls.Options, type) and dataclasses.is_dataclass(cls.Options)):
        return f"generator {name!r}: Options must be a dataclass (put @dataclasses.dataclass above it), got {_described(cls.Options)}"
    try:
        Generator.check_settings(cls.sampling_defaults)
    except AigcError as exc:
        return f"generator {name!r}: its sampling_defaults: {exc}"
    unknown = sorted(set(cls.line_options) - set(cls.option_names())) if isinstance(cls.line_options, dict) else ["(not a dict)"]
    if unknown:
        return f"generator {name!r}: its line_options name no option of its Options: {', '.join(unknown)}"
    return None


def _template_hint(name: str) -> str:
    """Where `name` is a template's, not a generator's: how a template is run."""
    from ..errors import spelt
    from ..templates import scan

    if not isinstance(name, str) or name not in scan(name)[0]:
        return ""
    return "; " + spelt(f"{name!r} is a template: aigc run {name}", f"{name!r} is a template: generate(\"template\", text, template={name!r}, variables={{...}})")


@overload
def get_generator(name: Literal["chat"], **kwargs: Any) -> ChatGenerator: ...
@overload
def get_generator(name: Literal["summarize"], **kwargs: Any) -> SummarizeGenerator: ...
@overload
def get_generator(name: Literal["headline"], **kwargs: Any) -> HeadlineGenerator: ...
@overload
def get_generator(name: Literal["template"], **kwargs: Any) -> TemplateGenerator: ...
@overload
def get_generator(name: Literal["image"], **kwargs: Any) -> ImageGenerator: ...
@overload
def get_generator(name: Literal["translate"], **kwargs: Any) -> TranslateGenerator: ...
@overload
def get_generator(name: Literal["classify"], **kwargs: Any) -> ClassifyGenerator: ...
@overload
def get_generator(name: Literal["embed"], **kwargs: Any) -> EmbedGenerator: ...
@overload
def get_generator(name: str, **kwargs: Any) -> Generator: ...
def get_generator(name: str, **kwargs: Any) -> Generator:
    """An instance of the generator registered as `name` (its `name`, whatever its class says);
    keyword arguments go to its constructor. For type checkers, a built-in task's name gives its
    class (`get_generator("classify")` is a `ClassifyGenerator`, with `classify_many`), any other
    name a `Generator`."""
    import inspect

    generators = registered_generators()
    if name not in generators:
        raise UnknownGeneratorError(f"unknown generator {name!r}{did_you_mean([name], generators)}; known: {', '.join(sorted(generators))}{_template_hint(name)}")
    cls = generators[name][1]
    signature = inspect.signature(cls)
    known = [p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):  # passed on to Generator.__init__
        known += [n for n in inspect.signature(Generator).parameters if n not in known]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise BadInputError(f"{name} generators take {', '.join(known)}; not {', '.join(unknown)}{did_you_mean(unknown, known)}")
    try:
        signature.bind(**kwargs)
    except TypeError as exc:  # a required argument left out
        raise BadInputError(f"the {name} generator: {exc}") from None
    if not isinstance(kwargs.get("trust_remote_code", False), bool):  # "no" would be taken as yes
        raise OptionError("trust_remote_code", f"must be True or False, got {kwargs['trust_remote_code']!r}")
    for hook in ("progress", "load_progress"):
        if not callable(kwargs.get(hook) or _no_progress):
            raise OptionError(hook, f"must be a function (or None), got {type_name(kwargs[hook])}")
    engine = kwargs.get("engine")
    if engine is not None and not callable(getattr(engine, "generate", None)):
        hint = f"; to pick a model by name, give model={engine!r}" if isinstance(engine, str) else ""
        raise OptionError("engine", f"must be an aigc Engine, as aigc.load_model(NAME) gives, got {type_name(engine)}{hint}")
    if isinstance(kwargs.get("model"), os.PathLike):  # a pathlib.Path to a model, as open() takes one
        kwargs["model"] = os.fspath(kwargs["model"])
    model = kwargs.get("model")
    if engine is None and model is not None and not isinstance(model, str) and callable(getattr(model, "generate", None)):
        raise OptionError("model", f"must be a model name or path (text), got {type_name(model)}; to run a loaded engine, give engine=it: aigc.get_generator({name!r}, engine=...)")
    if engine is None:
        cls.check_model(kwargs.get("model"), kwargs.get("device", "auto"), kwargs.get("dtype", "auto"), kwargs.get("quantize"))
    generator = cls(**kwargs)
    generator.name = name  # errors and logs name it as it was asked for
    return generator

