"""`aigc templates list|show|new|edit|rm|import|path`."""

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import template_edits, template_files, templates, ui
from ..errors import BadInputError
from ..textio import readable_json
from . import complete
from .options import listing_app, stdin_text

templates_app = listing_app("templates", "List, inspect, create, edit and remove prompt templates.", lambda as_json: list_templates(as_json))


@templates_app.command("list")
def list_templates(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Every template: name, where it comes from (and what it overrides), and what it is for."""
    shadowed = templates.shadowed()
    found = sorted(templates.discover().values(), key=lambda t: t.name)
    rows = [{"name": t.name, "source": t.source, "path": str(t.path), "description": t.description, "overrides": shadowed.get(t.name, [])} for t in found]
    if as_json:  # a name's bytes in no UTF-8 as U+FFFD: the JSON stays UTF-8
        ui.result(json.dumps(readable_json(rows), indent=2, ensure_ascii=False))
        return
    for row, template in zip(rows, found):
        if row["overrides"]:
            kept = templates.kept_by_task(template)
            keeps = f"; `aigc {kept[0]}` keeps {templates.whose(kept[1].source, kept[1].path)}" if kept else ""
            row["source"] += f" (overrides {templates.whose(row['overrides'][-1])}{keeps})"
    width = max((len(r["name"]) for r in rows), default=0)
    sources = max((len(r["source"]) for r in rows), default=0)
    ui.result("\n".join(f"{r['name']:<{width}}  {r['source']:<{sources}}  {r['description']}" for r in rows))


@templates_app.command()
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Template name.", autocompletion=complete.templates)],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name", "source", "path", "description", "generator", "model", "system", "defaults", "variables", "text"} as JSON.')] = False,
) -> None:
    """A template's variables and its source text."""
    template = templates.get_template(name)
    if as_json:
        fields = {key: getattr(template, key) for key in ("name", "source", "description", "generator", "model", "system", "defaults", "variables")}
        variables = [{**var, "required": var["name"] in template.required} for var in template.variables]
        shown = {**fields, "path": str(template.path), "variables": variables, "text": template_files.read_source(template.path)}
        if template.path.name == template_files.PATTERN:  # plain text, as written
            shown["system"] = shown["text"]
        ui.result(json.dumps(readable_json(shown), indent=2, ensure_ascii=False, default=str))  # a name's bytes in no UTF-8 as U+FFFD
        return
    pattern = template.path.name == template_files.PATTERN
    lines = [f"{template.path} ({template.source})"] + ([f"model: {template.model} (unless -m names another)"] if template.model else [])
    lines += [template.description] if pattern else []  # no front matter says it
    for var in template.variables:
        flag = "required" if var["name"] in template.required else f"default: {var.get('default')!r}"
        lines.append(f"{var['name']}: " + " ".join(filter(None, (str(var.get("description") or ""), f"({flag})"))))
    # as jinja comments, which may come before the front matter: `show NAME > copy.j2` is a working template
    lines = [f"# {line}" if pattern else "{# " + line.replace("#}", "# }") + " #}" for line in lines]
    user = template.path.with_name(template_files.PATTERN_USER)
    after = f"\n# {user}:\n{template_files.read_source(user)}" if template.path.name == template_files.PATTERN and user.is_file() and template_files.read_source(user).strip() else ""
    ui.result("\n".join(lines) + "\n" + template_files.read_source(template.path) + after)


@templates_app.command()
def new(name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new template (without .j2).")]) -> None:
    """Start a template in the user directory and print its path (never overwrites): a copy of the template of that name if there is one (yours then overrides it), else a skeleton."""
    if (pattern := _pattern(name)) is not None:  # a copy of its directory: still a pattern
        if pattern.source == "user":
            raise BadInputError(f"{name!r} is the fabric pattern {pattern.path.parent}; a template of that name would hide it: give another name, or edit the pattern (aigc templates edit {name})")
        copy = template_edits.copy_pattern(pattern)
        ui.info(f"copied from {pattern.path.parent}; yours overrides it")
        ui.result(str(copy))
        return
    path, existing = template_edits.new_template(name)
    if existing is not None:
        ui.info(f"copied from {existing.path}; yours overrides {name!r} from {existing.source}")
    ui.result(str(path))


@templates_app.command()
def edit(name: Annotated[str, typer.Argument(metavar="NAME", help="Template name.", autocompletion=complete.templates)]) -> None:
    """Open a template in your editor ($VISUAL, else $EDITOR, else vi; notepad on Windows) and print its path.

    Yours is opened as it is; one from AIGC_TEMPLATES_PATH, templates_path, a plugin or the built-ins as your copy
    (yours then overrides it); a new name from a skeleton. The edit is saved only if it passes the
    template checks: if not, on a terminal you may edit it again; otherwise it is kept aside and the
    template stays as it was."""
    if (pattern := _pattern(name)) is not None:  # plain text: nothing to check
        _edit_pattern(name, pattern)
        return
    editor = _editor(name, template_edits.edit_target(name)[0])  # before a copy or draft is made
    target, draft, note = template_edits.start_edit(name)
    if note:
        ui.info(note)
    while True:
        problem = _run_editor(editor, draft)
        if problem:
            kept = "" if template_edits.drop_unedited(draft) else f"; your edit is kept in {draft}, and `aigc templates edit {name}` opens it again"
            raise BadInputError(f"{problem}; nothing saved{kept}")
        try:
            if template_edits.save_edit(target, draft) is None:
                ui.info(f"nothing was edited, so nothing is saved{'' if target.exists() else f' (no {target} is made)'}")
                if not target.exists():
                    return
            break
        except BadInputError as exc:
            if not _on_terminal() or not draft.is_file():  # an edit dropped (emptied, unedited): nothing to edit again
                raise
            ui.error(str(exc))
            if not typer.confirm("Edit it again?", default=True, err=True):
                raise typer.Exit(2) from None
    ui.result(str(target))


def _edit_pattern(name: str, pattern: "template_files.Template") -> None:
    """Edit a fabric pattern's system.md: yours in place, another's (a team's, fabric's own) as your
    copy, which is removed again when the edit changes nothing or fails."""
    path = pattern.path
    editor = _editor(name, path)
    if pattern.source != "user":
        path = template_edits.copy_pattern(pattern)
        ui.info(f"copied from {pattern.path.parent}; yours overrides it")
    was = template_files.read_source(path)
    problem = _run_editor(editor, path)
    if pattern.source != "user" and (problem or template_files.read_source(path) == was):
        import shutil

        shutil.rmtree(path.parent)
        if not problem:
            ui.info(f"nothing was edited, so nothing is saved (no {path.parent} is made)")
            return
    if problem:
        raise BadInputError(problem)
    ui.result(str(path))


def _pattern(name: str) -> "template_files.Template | None":
    """The fabric pattern that template `name` is, if it is one."""
    found = None if templates.is_path(name) else templates.scan(name)[0].get(name)
    return found if found is not None and found.path.name == template_files.PATTERN else None


def _editor(name: str, path: Path) -> str:
    """$VISUAL, else $EDITOR, else notepad on Windows (as click.edit), else vi where there is a
    terminal for it; with none of them, an error saying how to edit `path`, the file the edit of
    template `name` goes to."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if editor:
        return editor
    if os.name == "nt":
        return "notepad"
    if sys.stdin is not None and sys.stdin.isatty():
        return "vi"
    way = f"edit {path}" if path.is_file() else f"copy the template with `aigc templates new {name}` and edit {path}"
    raise BadInputError(f"no editor to open: $VISUAL and $EDITOR are unset, and with no terminal here vi cannot run; set one (EDITOR=nano aigc templates edit {name}), or {way}")


def _editor_words(editor: str) -> list[str]:
    """`editor` (a command line, as $EDITOR) split as its shell would, the program as PATH finds it
    (PATHEXT too: `code` is code.cmd on Windows, which CreateProcess alone does not find). On Windows a
    backslash is a path's separator, and an editor's path with spaces may be given unquoted."""
    import shlex
    import shutil

    if os.name != "nt":
        words = shlex.split(editor)
    elif os.path.isfile(editor.strip('"')):  # C:\Program Files\Notepad++\notepad++.exe
        words = [editor.strip('"')]
    else:
        words = [word[1:-1] if len(word) > 1 and word[0] == word[-1] == '"' else word for word in shlex.split(editor, posix=False)]
    return [shutil.which(words[0]) or words[0], *words[1:]] if words else words


def _run_editor(editor: str, path: Path) -> str | None:
    """Open `path` in `editor` (a command line, as $EDITOR); what went wrong, or None."""
    import subprocess

    try:
        code = subprocess.call([*_editor_words(editor), str(path)])
    except (OSError, ValueError) as exc:
        return f"cannot start the editor {editor!r} ({getattr(exc, 'strerror', None) or exc}); set $VISUAL or $EDITOR to an editor you have"
    return f"the editor {editor!r} exited with code {code}" if code else None


def _on_terminal() -> bool:
    """Whether someone is there to ask whether to edit again."""
    return sys.stdin.isatty() and sys.stderr.isatty()


@templates_app.command()
def rm(name: Annotated[str, typer.Argument(metavar="NAME", help="Your template's name.", autocompletion=complete.templates)]) -> None:
    """Remove your template NAME; one that overrides a built-in or plugin template gives it back."""
    if (pattern := _pattern(name)) is not None and not template_edits.user_template_path(name).is_file():
        raise BadInputError(f"{name!r} is the fabric pattern {pattern.path.parent}; remove that directory yourself to drop it")
    removed, now = template_edits.remove_template(name)
    back = f"; {now.name!r} is now {templates.whose(now.source)} ({now.path})" if now is not None else ""
    ui.info(f"removed {removed}{back}")


@templates_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE|-", help="An llm YAML template (system:, prompt: with $input and $variables, defaults:, options:, model:); - for stdin, with --name.")],
    name: Annotated[Optional[str], typer.Option("--name", help="The new template's name (default: the file's name, without .yaml; needed with -).", show_default=False)] = None,
) -> None:
    """Make an llm (Simon Willison's) YAML template an aigc template in the user directory, and print its path (never overwrites).

    system: is its system prompt, prompt: its text ($input and $var as {{ input }} and {{ var }}; the
    input after it where it has no $input), defaults: its variables' defaults, options: its sampling
    defaults, model: its model. What has no aigc equivalent (fragments, tools, ...) is refused."""
    from .. import template_imports
    from ..textio import STDIN

    text = None
    if str(file) == "-":  # `llm templates show x | aigc templates import - --name x`
        if not name:
            raise BadInputError("- reads the llm template from stdin, which gives it no name: name the new template with --name NAME")
        text = stdin_text()
        if text is None:
            raise BadInputError("- reads the llm template from stdin, but nothing was piped in: `cat t.yaml | aigc templates import - --name NAME`, or give the file")
        file = Path(STDIN)
    if (pattern := _pattern(name or file.stem)) is not None:
        raise BadInputError(f"{name or file.stem!r} is the fabric pattern {pattern.path.parent}; a template of that name would hide it: give another name with --name")
    template = template_imports.import_llm_template(file, name, text=text)
    if template.model:
        ui.info(f"model: {template.model} is used when no -m is given; if aigc has no model of that name, change it with `aigc templates edit {template.name}`")
    ui.result(str(template.path))


@templates_app.command()
def path(
    every: Annotated[bool, typer.Option("--all", help="Every directory searched, the first found winning: PATH, a tab, and whose (yours, AIGC_TEMPLATES_PATH, templates_path in config.toml, plugin NAME, built-in), with ', missing' where it does not exist.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help='Print every directory searched, in that order, as a JSON list of {"path", "whose", "exists"} (as --all).')] = False,
) -> None:
    """The user template directory (templates there override built-ins of the same name); --all: the whole search order.

    More directories come from AIGC_TEMPLATES_PATH (separated by `:`, `;` on Windows) and, after them,
    `templates_path = ["~/team-prompts", "prompts"]` in config.toml (a relative one is from that file's
    directory); in each the first directory wins."""
    if not (every or as_json):
        ui.result(str(templates.user_dir()))
        return
    names = {"user": "yours", "env": "AIGC_TEMPLATES_PATH", "config": "templates_path in config.toml", "builtin": "built-in"}
    rows = [{"path": str(directory), "whose": names.get(source, f"plugin {source}"), "exists": directory.is_dir()} for source, directory in reversed(templates.template_dirs())]
    if as_json:
        ui.result(json.dumps(readable_json(rows), indent=2, ensure_ascii=False))
        return
    ui.result("\n".join(f"{row['path']}\t{row['whose']}{'' if row['exists'] else ', missing'}" for row in rows))


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")
