"""Registers the built-in engine schemes: `openai:URL#MODEL` and `remote:NAME` (a `[remotes.NAME]` table)."""

from ..hookspecs import hookimpl


def _remote(name: str):
    """The engine of the settings file's `[remotes.NAME]`, called `remote:NAME`."""
    from ..engine.remote import OpenAIEngine, named_remote

    return OpenAIEngine.from_remote(named_remote(name))


def _openai(location: str):
    """The engine of an OpenAI-compatible server at `URL#MODEL`."""
    from ..engine.remote import OpenAIEngine

    return OpenAIEngine.from_location(location)


@hookimpl
def register_engines(register):
    register("openai", _openai)
    register("remote", _remote)
