"""Registers the built-in text generators."""

from ..hookspecs import hookimpl


@hookimpl
def register_generators(register):
    from ..generators.chat import ChatGenerator
    from ..generators.headline import HeadlineGenerator
    from ..generators.summarize import SummarizeGenerator

    for generator in (ChatGenerator, SummarizeGenerator, HeadlineGenerator):
        register(generator.name, generator)
