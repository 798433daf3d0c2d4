"""Adds social-media templates to aigc: `aigc chat --template tweet "..."`."""

from pathlib import Path

from aigc import hookimpl


@hookimpl
def register_template_dirs(register):
    register(str(Path(__file__).parent / "templates"))
