"""Hook markers and hook specifications. Built-in plugins implement the same hooks as third parties."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("aigc")
hookimpl = pluggy.HookimplMarker("aigc")


@hookspec
def register_generators(register):
    """Register task generators: ``register(name, generator_class)``."""


@hookspec
def register_models(register):
    """Register model aliases: ``register(ModelSpec(alias=..., source=..., ...))``."""


@hookspec
def register_engines(register):
    """Register engine schemes: ``register(scheme, factory)``; ``-m SCHEME:LOCATION`` runs on
    ``factory("LOCATION")``, an object with the `aigc.Engine` methods. Two plugins' schemes of one name clash (the first stays)."""


@hookspec
def register_template_dirs(register):
    """Register directories of prompt templates: ``register(path)``. A plugin's template overrides a
    built-in one of the same name; two plugins' templates of one name clash (the first stays)."""


@hookspec
def register_commands(app):
    """Add commands to the CLI: ``app`` is the root ``typer.Typer``."""


@hookspec
def prepare_jinja_env(env):
    """Add filters or globals to the sandboxed jinja2 environment templates render in."""
