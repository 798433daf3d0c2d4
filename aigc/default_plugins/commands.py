"""Registers the built-in CLI commands."""

from ..hookspecs import hookimpl


@hookimpl
def register_commands(app):
    from ..cli import chat, headline, image, models, sessions, summarize, templates
    from ..cli import plugins, run
    from ..cli import serve
    from ..cli import translate
    from ..cli import batch, classify, embed, logs
    from ..cli import config, doctor

    for module in (chat, summarize, headline, image, models, sessions, logs, templates, run, plugins, serve, translate, classify, embed, batch, config, doctor):
        module.register(app)
