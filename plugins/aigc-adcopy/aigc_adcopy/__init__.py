"""Ad copy for aigc: `aigc adcopy --product ... --audience ...` writes distinct headline + body variants.

Three hooks: a generator, a template directory and a command. Imports stay light (no torch), so
`aigc --help` stays fast with this plugin installed.
"""

from pathlib import Path

from aigc import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_generators(register):
    from .generator import AdCopyGenerator

    register(AdCopyGenerator.name, AdCopyGenerator)


@hookimpl
def register_template_dirs(register):
    register(str(Path(__file__).parent / "templates"))


@hookimpl
def register_commands(app):
    from .cli import EXAMPLES, adcopy

    app.command(epilog=EXAMPLES)(adcopy)
