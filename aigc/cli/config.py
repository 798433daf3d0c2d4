"""`aigc config path|show`: where the settings file is, and the settings in effect with where each is set."""

import json
from typing import Annotated, Any

import typer

from .. import config, ui
from ..errors import BadInputError
from ..textio import readable_json

config_app = typer.Typer(help="The settings file (config.toml): where it is, and the settings in effect (no command: show).", invoke_without_command=True)


@config_app.callback()
def config_group(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        show()


@config_app.command()
def path(as_json: Annotated[bool, typer.Option("--json", help='Print {"path", "exists"}.')] = False) -> None:
    """The settings file, config.toml (AIGC_CONFIG_DIR or AIGC_HOME move it); a note on stderr where it does not exist yet."""
    file = config.settings_file()
    if as_json:
        ui.result(json.dumps(readable_json({"path": str(file), "exists": file.is_file()}), ensure_ascii=False))
        return
    ui.result(str(file))
    if not file.is_file():
        ui.info("(it does not exist yet: aigc's defaults apply; `aigc models default`, `aigc models alias` and `aigc logs off` write it, or write it yourself)")


@config_app.command()
def show(as_json: Annotated[bool, typer.Option("--json", help='Print {"path", "exists", "settings": {KEY: {"value", "source", "error", "warnings"}}}.')] = False) -> None:
    """Each top-level setting in effect and where it is set: a flag (--threads), its AIGC_* variable,
    config.toml, or aigc's default (in that order, the first set winning); then each command's table
    of option defaults set there ([chat], [translate], ...), checked as the command checks it (an unknown
    key is a warning, as running it gives). A setting that cannot be used is a warning, and the exit code 2 (`aigc doctor` says how to fix it)."""
    from ..diagnostics import effective_settings

    file = config.settings_file()
    rows = effective_settings()
    if as_json:
        settings = {row["key"]: {key: row[key] for key in ("value", "source", "error", "warnings")} for row in rows}
        ui.result(json.dumps(readable_json({"path": str(file), "exists": file.is_file(), "settings": settings}), indent=2, ensure_ascii=False))
    else:
        shown = [(row["key"], _shown(row["key"], row["value"]) if row["error"] is None else "(cannot be used)", row["source"] or "") for row in rows]
        widths = [max(len(line[column]) for line in shown) for column in range(2)]
        ui.result("\n".join(f"{key:<{widths[0]}}  {value:<{widths[1]}}  {source}".rstrip() for key, value, source in shown))
    for warning in (warning for row in rows for warning in row["warnings"]):  # an unknown key in a table, as doctor says it
        ui.warn(warning)
    broken = [row for row in rows if row["error"]]
    for row in broken:
        ui.warn(row["error"])
    if broken:  # each named with where it is set: a variable's (AIGC_THREADS=abc) is not the file's to fix
        in_file = [row["key"] for row in broken if row["source"] == "config.toml"]
        named = [f"{row['key']} ({row['source']})" for row in broken if row["source"] != "config.toml"] + ([f"{', '.join(in_file)} in {file}"] if in_file else [])
        raise BadInputError(f"{', '.join(named)} cannot be used (above); `aigc doctor` says how to fix {'them' if len(broken) > 1 else 'it'}")


def _shown(key: str, value: Any) -> str:
    """A setting's value on one line: true/false, a table as its keys (remotes) or KEY = VALUE pairs."""
    if value is None:
        return "one per core (torch's default)" if key == "threads" else "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(value) or "none"
    if isinstance(value, dict):
        if not value:
            return "none"
        if key == "remotes":
            return ", ".join(sorted(value))
        return ", ".join(f"{name} = {json.dumps(item, ensure_ascii=False) if not isinstance(item, str) else item}" for name, item in sorted(value.items()))
    return str(value)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
