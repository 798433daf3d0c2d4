"""aigc: local-first, plugin-based content generation.

    import aigc
    print(aigc.generate("chat", "What is the capital of France?")["text"])
    gen = aigc.get_generator("summarize", model="smollm2")
    print(gen(open("article.txt").read(), length="short")["summary"])
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .engine.base import Completion, Engine
from .engine.models import ModelSpec, load_model
from .engine.sampling import SamplingParams
from .errors import AigcError, BadInputError
from .generators.base import Generator, get_generator
from .generators.chat import ChatSession
from .hookspecs import hookimpl

try:
    __version__ = version("aigc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"


def generate(task: str, inputs: Any, model: str | None = None, sampling: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Run one task: `generate("headline", {"topic": "..."}, n=3)`; returns the generator's result dict."""
    return get_generator(task, model=model)(inputs, sampling=sampling, **options)


__all__ = [
    "AigcError",
    "BadInputError",
    "ChatSession",
    "Completion",
    "Engine",
    "Generator",
    "ModelSpec",
    "SamplingParams",
    "__version__",
    "generate",
    "get_generator",
    "hookimpl",
    "load_model",
]
