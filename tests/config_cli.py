"""The CLI and the settings file, for the tests of config.toml as the commands read it."""

from typer.testing import CliRunner

from aigc import config
from aigc.cli.app import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def write(text: str):
    path = config.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
