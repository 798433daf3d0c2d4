"""aigc: local-first, plugin-based content generation.

    import aigc
    print(aigc.generate("chat", "What is the capital of France?")["text"])
    gen = aigc.get_generator("summarize", model="smollm2")
    print(gen(open("article.txt").read(), length="short")["summary"])
    vectors = aigc.embed(["a cat", "a kitten"])  # length 1: the dot product is the cosine similarity
    text = (await aigc.agenerate("chat", "Hi"))["text"]  # in asyncio code; `async for piece in aigc.astream(...)`
"""

from __future__ import annotations

from .cli.starting import starting as _starting

_starting()  # Ctrl-C while the aigc command imports what follows: one line, not a traceback

import threading as _threading
from typing import Any, Iterable, overload

from .aio import AsyncAnswerStream, agenerate, astream
from .answer_stream import AnswerStream
from .engine.base import Completion, Engine
from .engine.plugged import EngineBase
from .engine.loading import load_model
from .engine.models import ModelSpec, registered_models
from .engine.sampling import SamplingParams
from . import errors
from .errors import AigcError, BadInputError, OptionError
from .generators.base import Generator, get_generator, registered_generators
from .generators.chat import ChatSession
from .hookspecs import hookimpl


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aigc")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"


__version__ = _installed_version()


_generators: dict[tuple, Generator] = {}
_generators_plugins: list = []  # the plugins registered when the generators in `_generators` were made
_generators_lock = _threading.Lock()


def generate(
    task: str,
    inputs: Any,
    model: str | None = None,
    sampling: dict[str, Any] | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    stop: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Run one task: `generate("headline", {"topic": "..."}, n=3)`; returns the generator's result
    dict, its answer in `text` (chat, template), `summary`, `headlines` (a list), `translation`,
    `label` and `scores` (classify; `labels` with multi_label) or `embedding` (README, "From Python",
    lists every key). Sampling settings go in `sampling` (`{"max_tokens": 60}`); the task's options
    are keywords.

    The generator is made once per task and model settings and reused by later calls, so what it
    worked out (classify's label prior, examples fitted) is kept; `get_generator` gives your own.

    `stop`: a `threading.Event` (anything with `is_set()`) that another thread (a Stop button's) sets
    to stop the call at its next step (a decoding step, a part of a long text, a remote request);
    the call then raises `aigc.errors.StoppedError`, and the model is ready for the next call."""
    generator = _generator(task, _model_for(model, options), device, dtype, quantize, trust_remote_code)
    if stop is not None:
        options["stop"] = stop
    return generator(inputs, sampling=sampling, **options)


def stream(
    task: str,
    inputs: Any,
    model: str | None = None,
    sampling: dict[str, Any] | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    stop: Any = None,
    **options: Any,
) -> AnswerStream:
    """`generate`'s answer as text pieces while it is written (`for piece in stream("chat", "Hi")`),
    for the tasks that write one answer: chat and template. Then the `AnswerStream` holds the whole
    answer: `text`, `finish_reason` ("length" where max_tokens cut it off), `usage`, and `result`
    (`generate`'s dict), with no second model call. A plugin generator's own `stream` is wrapped so
    (`AnswerStream.wrapping` says what it holds then).

    Bad inputs, options and settings are raised here; where the model is not loaded yet, `stream`
    returns at once and the model loads when the first piece is asked for (in the thread that reads
    it; a prompt too long for the model is raised then too), so a GUI may call it from its event
    loop and read it in a worker; `aigc.load_model(name)` in a worker at start-up loads it beforehand.
    `stop`: a `threading.Event` that stops the stream from any thread: the piece being read raises
    `aigc.errors.StoppedError` (`stream.close()` ends it with no error)."""
    from .generators.base import check_stop

    check_stop(stop)
    generator = _generator(task, _model_for(model, options), device, dtype, quantize, trust_remote_code)
    if not callable(getattr(generator, "stream", None)):
        raise BadInputError(f"{task} does not stream its answer; aigc.generate({task!r}, ...) returns its whole result")
    return AnswerStream.wrapping(generator.stream(inputs, sampling, **options)).stopping_on(stop)


@overload
def embed(  # type: ignore[overload-overlap]  # a str is an Iterable[str] too: it is one text, matched first
    texts: str, model: str | None = None, *, device: str = "auto", dtype: str = "auto", quantize: str | None = None, trust_remote_code: bool = False
) -> list[float]: ...
@overload
def embed(
    texts: Iterable[str], model: str | None = None, *, device: str = "auto", dtype: str = "auto", quantize: str | None = None, trust_remote_code: bool = False
) -> list[list[float]]: ...
def embed(
    texts: str | Iterable[str],
    model: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
) -> list[float] | list[list[float]]:
    """Unit-length embeddings, so the dot product of two is their cosine similarity: one vector for a
    text, a list of vectors for many texts (a list, tuple or any iterable of them; embedded in batches)."""
    generator = _generator("embed", model, device, dtype, quantize, trust_remote_code)
    return generator(texts)["embedding"] if isinstance(texts, str) else generator.embed_many(texts)


def unload(model: str | None = None) -> int:
    """Free the memory of a loaded model: each device, dtype and quantization of `model` (a name or
    path; None: every model) loaded so far, and the generators `generate`, `stream` and `embed` made
    for it, are let go of; the next call loads the model again. A generator or engine you hold still
    holds its model: `del` it too. Returns how many loaded models were let go of."""
    import gc
    import sys

    from .engine.loading import unload as drop

    dropped = drop(model)
    with _generators_lock:
        for key in [key for key, generator in _generators.items() if any(getattr(generator, "_engine", None) is engine for engine in dropped)]:
            del _generators[key]
    count = len(dropped)
    del dropped
    gc.collect()  # a loaded model's objects refer to each other
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()  # else the freed GPU memory stays reserved for torch
    return count


def list_templates() -> dict[str, Any]:
    """`{name: Template}` for every template a `template=` option can name (built-in, yours, your
    plugins'), as `aigc templates list` lists them; a template's `description`, `variables` and
    `defaults` say what it does and takes. A broken template file is an `aigc.errors.AigcWarning`."""
    from .templates import discover

    return discover()


def render_template(
    template: str, inputs: Any = None, *, variables: dict[str, Any] | None = None, system: str | None = None, no_variable_replacement: bool = False
) -> dict[str, Any]:
    """What `generate("template", inputs, template=..., variables=...)` would send, without a model
    (as `aigc run --dry-run --json`): `{"template", "messages": [{"role", "content"}, ...], "defaults"}`,
    `defaults` being the sampling settings it would run with (the template's over the task's). `inputs`
    is a text for its input variable, or a dict of variables (over `variables`); bad ones are errors, as
    in a run."""
    from .generators.template import TemplateGenerator, TemplateOptions, render_inputs

    opts = TemplateOptions(template=template, system=system, variables=variables, no_variable_replacement=no_variable_replacement)
    inputs = {} if inputs is None else inputs
    TemplateGenerator().check_inputs(inputs)  # no model is loaded until one is used
    rendered = render_inputs(inputs, opts)
    messages = [{"role": m["role"], "content": str(m["content"])} for m in rendered.messages]
    return {"template": template, "messages": messages, "defaults": {**TemplateGenerator.sampling_defaults, **rendered.defaults}}


def _model_for(model: str | None, options: dict[str, Any]) -> str | None:
    """`model`, else the model that the template in `options` names (`model:` in its front matter), as -m does on the CLI."""
    if model is None and isinstance(options.get("template"), str):
        from .templates import get_template

        return get_template(options["template"]).model_to_run()
    return model


def _generator(task: str, model: str | None, device: str, dtype: str, quantize: str | None, trust_remote_code: bool) -> Generator:
    """The generator `generate` and `embed` use for a task and model settings, made once, and again
    after the registered plugins change (a plugin registered or unregistered at run time) or, for
    the default model, the default does."""
    from .plugins import get_plugin_manager

    key = (task, model if model is not None else _defaults(), device, dtype, quantize, trust_remote_code)
    try:
        hash(key)
    except TypeError:  # a list or dict where a name belongs: get_generator says which and what to give
        return get_generator(task, model=model, device=device, dtype=dtype, quantize=quantize, trust_remote_code=trust_remote_code)
    plugins = [plugin for _, plugin in get_plugin_manager().list_name_plugin()]
    with _generators_lock:
        if len(plugins) != len(_generators_plugins) or any(a is not b for a, b in zip(plugins, _generators_plugins)):
            _generators.clear()  # loaded models stay loaded: the generators made anew share them
            _generators_plugins[:] = plugins
        if key not in _generators:
            _generators[key] = get_generator(task, model=model, device=device, dtype=dtype, quantize=quantize, trust_remote_code=trust_remote_code)
        return _generators[key]


def _defaults() -> tuple[str, ...] | None:
    """The default models now, so that a generator made for the default before it changed (`aigc
    models default NAME` or AIGC_DEFAULT_MODEL set in a running notebook) is not reused; None where
    the settings file is broken (loading the model says so)."""
    from . import config

    try:
        return tuple(config.default_source(kind)[0] for kind in config.DEFAULTS)
    except AigcError:
        return None


__all__ = [
    "AigcError",
    "AnswerStream",
    "AsyncAnswerStream",
    "BadInputError",
    "ChatSession",
    "Completion",
    "Engine",
    "EngineBase",
    "Generator",
    "ModelSpec",
    "OptionError",
    "SamplingParams",
    "__version__",
    "agenerate",
    "astream",
    "embed",
    "errors",
    "generate",
    "get_generator",
    "hookimpl",
    "list_templates",
    "load_model",
    "registered_generators",
    "registered_models",
    "render_template",
    "stream",
    "unload",
]
