"""Registers the built-in generators (text, and image through diffusers)."""

from ..hookspecs import hookimpl


@hookimpl
def register_generators(register):
    from ..generators.chat import ChatGenerator
    from ..generators.headline import HeadlineGenerator
    from ..generators.image import ImageGenerator
    from ..generators.summarize import SummarizeGenerator
    from ..generators.template import TemplateGenerator

    for generator in (ChatGenerator, SummarizeGenerator, HeadlineGenerator, TemplateGenerator, ImageGenerator):
        register(generator.name, generator)
