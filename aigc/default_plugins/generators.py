"""Registers the built-in generators (text, and image through diffusers)."""

from ..hookspecs import hookimpl


@hookimpl
def register_generators(register):
    from ..generators.chat import ChatGenerator
    from ..generators.classify import ClassifyGenerator
    from ..generators.embed import EmbedGenerator
    from ..generators.headline import HeadlineGenerator
    from ..generators.image import ImageGenerator
    from ..generators.summarize import SummarizeGenerator
    from ..generators.template import TemplateGenerator
    from ..generators.translate import TranslateGenerator

    for generator in (ChatGenerator, SummarizeGenerator, HeadlineGenerator, TemplateGenerator, ImageGenerator, TranslateGenerator, ClassifyGenerator, EmbedGenerator):
        register(generator.name, generator)
