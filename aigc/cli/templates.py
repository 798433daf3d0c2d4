"""`aigc templates list|show|path`."""

import json
import os
from typing import Annotated

import typer

from .. import templates, ui
from ..errors import BadInputError
from . import complete
from .options import listing_app

templates_app = listing_app("templates", "List, inspect and create prompt templates.", lambda as_json: list_templates(as_json))


@templates_app.command("list")
def list_templates(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Every template: name, where it comes from, and what it is for."""
    rows = [
        {"name": t.name, "source": t.source, "path": str(t.path), "description": t.description}
        for t in sorted(templates.discover().values(), key=lambda t: t.name)
    ]
    if as_json:
        ui.result(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    width = max((len(r["name"]) for r in rows), default=0)
    ui.result("\n".join(f"{r['name']:<{width}}  {r['source']:<32}  {r['description']}" for r in rows))


@templates_app.command()
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Template name.", autocompletion=complete.templates)],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name", "source", "path", "description", "generator", "system", "defaults", "variables", "text"} as JSON.')] = False,
) -> None:
    """A template's variables and its source text."""
    template = templates.get_template(name)
    if as_json:
        fields = {key: getattr(template, key) for key in ("name", "source", "description", "generator", "system", "defaults", "variables")}
        variables = [{**var, "required": var["name"] in template.required} for var in template.variables]
        ui.result(json.dumps({**fields, "path": str(template.path), "variables": variables, "text": template.path.read_text(encoding="utf-8")}, indent=2, ensure_ascii=False, default=str))
        return
    lines = [f"# {template.path} ({template.source})"]
    for var in template.variables:
        flag = "required" if var["name"] in template.required else f"default: {var.get('default')!r}"
        lines.append(f"# {var['name']}: {var.get('description', '')} ({flag})")
    ui.result("\n".join(lines) + "\n" + template.path.read_text(encoding="utf-8"))


@templates_app.command()
def new(name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new template (without .j2).")]) -> None:
    """Start a template in the user directory and print its path (never overwrites): a copy of the template of that name if there is one (yours then overrides it), else a skeleton."""
    path, existing = templates.new_template(name)
    if existing is not None and existing.source == "env":  # AIGC_TEMPLATES_PATH comes before the user directory
        ui.info(f"copied from {existing.path}; that one, in AIGC_TEMPLATES_PATH, is still used before yours")
    elif existing is not None:
        ui.info(f"copied from {existing.path}; yours overrides {name!r} from {existing.source}")
    ui.result(str(path))


@templates_app.command()
def edit(name: Annotated[str, typer.Argument(metavar="NAME", help="Template name.", autocompletion=complete.templates)]) -> None:
    """Open a template in your editor ($VISUAL, else $EDITOR, else vi) and print its path.

    Yours is opened as it is; a built-in or plugin one as your copy first (yours then overrides it);
    a new name from a skeleton. The template is checked when the editor closes."""
    import click

    own = templates.user_template_path(name)
    found = templates.scan()[0].get(own.name[: -len(templates.SUFFIX)])
    if found is not None and found.source == "env":  # AIGC_TEMPLATES_PATH's copy is the one in use
        target = found.path
    elif own.is_file():
        target = own
    else:
        target, existing = templates.new_template(name)
        ui.info(f"copied from {existing.path}; yours overrides it" if existing else f"started {target} from a skeleton")
    try:
        click.edit(filename=str(target), editor=os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    except click.ClickException as exc:  # no such editor, or it failed
        raise BadInputError(f"{exc.format_message()}; set $VISUAL or $EDITOR to an editor you have ({target} is kept)") from None
    templates.parse(target, "user")  # a front-matter mistake is named with its line
    ui.result(str(target))


@templates_app.command()
def path() -> None:
    """The user template directory (templates there override built-ins of the same name)."""
    ui.result(str(templates.user_dir()))


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")
