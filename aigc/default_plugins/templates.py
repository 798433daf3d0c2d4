"""Registers the built-in template directory, `prompts/`."""

from ..hookspecs import hookimpl


@hookimpl
def register_template_dirs(register):
    from ..templates import builtin_dir

    register(str(builtin_dir()))
