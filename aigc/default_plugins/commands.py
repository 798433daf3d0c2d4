"""Registers the built-in CLI commands."""

from ..hookspecs import hookimpl


@hookimpl
def register_commands(app):
    from ..cli import chat, headline, models, summarize, templates

    for module in (chat, summarize, headline, models, templates):
        module.register(app)
