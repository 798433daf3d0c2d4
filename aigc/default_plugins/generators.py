"""Registers the built-in text generators."""

from ..hookspecs import hookimpl


@hookimpl
def register_generators(register):
    from ..generators.chat import ChatGenerator
    from ..generators.headline import HeadlineGenerator
    from ..generators.summarize import SummarizeGenerator
    from ..generators.template import TemplateGenerator

    for generator in (ChatGenerator, SummarizeGenerator, HeadlineGenerator, TemplateGenerator):
        register(generator.name, generator)
