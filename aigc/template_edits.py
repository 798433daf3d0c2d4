"""The user's own templates: starting one, editing one through a draft that keeps a failed edit, removing one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import regex

from . import config
from .errors import BadInputError, UnknownTemplateError
from .template_files import SUFFIX, Template, parse, read_source
from .templates import DIR_HINT, check_tasks, scan, user_dir
from .textio import MAX_NAME_BYTES, fits_file_name, name_of_ours

SKELETON = """---
description: What this template is for, in one line
system: You are a helpful assistant.
defaults:
  temperature: 0.7
  max_tokens: 200
variables:
  - name: input
    description: The text to work on
    required: true
  - name: tone
    description: How it should sound
    default: friendly
---
Write a {{ tone }} answer to this:

{{ input }}
"""
_NAME = regex.compile(r"[\p{L}\p{N}][\p{L}\p{N}\p{M}_.-]*")  # letters and digits of any script, their combining marks


def user_template_path(name: str) -> Path:
    """Where the user's template `name` (with or without .j2) is, or would be."""
    if name.endswith(SUFFIX):
        name = name[: -len(SUFFIX)]
    name = name_of_ours(name)
    if not _NAME.fullmatch(name) or not fits_file_name(name):
        raise BadInputError(f"template name {name!r} must be letters, digits (of any script), '-', '_' or '.', starting with a letter or digit, at most {MAX_NAME_BYTES} bytes of UTF-8")
    return user_dir() / f"{name}{SUFFIX}"


def write_new_template(path: Path, text: str, exists: str) -> None:
    """Write `text` as the user template `path`, never over a file: one there already is a
    `BadInputError` saying `{path} already exists; ` and then `exists` (what to do)."""
    from .writing import make_dir

    make_dir(path.parent, DIR_HINT)
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise BadInputError(f"{path} already exists; {exists}") from None


def new_template(name: str) -> tuple[Path, Template | None]:
    """Start `NAME.j2` in the user template directory, from a copy of the template it will override
    (so a built-in's variables and generator carry over) or else from a skeleton; never overwrites
    a file. Returns the new file and the template copied (None: the skeleton)."""
    path = user_template_path(name)
    name = path.name[: -len(SUFFIX)]
    existing = scan()[0].get(name)
    if existing is not None and existing.path == path:
        existing = None  # the file is there already: refused below
    start = read_source(existing.path) if existing else SKELETON
    write_new_template(path, start, f"edit it with aigc templates edit {name}, or remove it first to start over")
    return path, existing


def draft_path(name: str) -> Path:
    """Where `aigc templates edit` keeps an edit that failed its checks, so the work is not lost."""
    return config.data_dir() / "template-drafts" / user_template_path(name).name


def _record_path(draft: Path) -> Path:
    """Beside a draft: the file it is for, that file's text when the edit began (None: not there
    yet) and the text first opened, so an unedited draft is dropped and a stale one never saved."""
    return draft.with_name(draft.name + ".json")


def _record(draft: Path) -> dict[str, Any]:
    from .textio import parse_json

    try:
        record = parse_json(_record_path(draft).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _text_of(path: Path) -> str | None:
    try:
        return read_source(path)
    except BadInputError:
        return None


def _drop_draft(draft: Path) -> None:
    draft.unlink(missing_ok=True)
    _record_path(draft).unlink(missing_ok=True)


def _set_aside(draft: Path) -> Path:
    """Move a draft that can no longer be saved safely to a free name beside it; returns that name."""
    stem = draft.name[: -len(SUFFIX)]
    number = 1
    while (aside := draft.with_name(f"{stem}.old{number}{SUFFIX}")).exists():
        number += 1
    draft.rename(aside)
    _record_path(draft).unlink(missing_ok=True)
    return aside


def copy_pattern(pattern: Template) -> Path:
    """Copy a fabric pattern that is not the user's (in AIGC_TEMPLATES_PATH, a plugin's) into the user
    template directory, which then overrides it: its `system.md` (and `user.md`); never over a file.
    Returns the copy's `system.md`."""
    from .template_files import PATTERN, PATTERN_USER

    own = user_template_path(pattern.name).with_suffix("") / PATTERN
    exists = f"edit it with aigc templates edit {pattern.name}, or remove {own.parent} first to start over"
    if own.parent.exists():
        raise BadInputError(f"{own.parent} already exists; {exists}")
    for part in (PATTERN, PATTERN_USER):
        if (pattern.path.parent / part).is_file():
            write_new_template(own.with_name(part), read_source(pattern.path.parent / part), exists)
    return own


def edit_target(name: str) -> tuple[Path, Template | None]:
    """The file an edit of template `name` is saved to, the user's own (a copy of a template that is not,
    which then overrides it), and the template of that name now in use, if any."""
    own = user_template_path(name)
    return own, scan()[0].get(own.name[: -len(SUFFIX)])


def start_edit(name: str) -> tuple[Path, Path, str]:
    """Begin editing template `name`: the file the edit will be saved to (the user's own), and a draft holding the text to edit (a draft
    kept from a failed edit, else the file's text, a copy of the template it will override, or a
    skeleton), with a note on where the text came from. A kept draft goes back to the file it was
    made for; if that file changed since (edited by hand), the draft is set aside, not saved over it."""
    import json

    target, found = edit_target(name)
    name = user_template_path(name).name[: -len(SUFFIX)]
    draft = draft_path(name)
    aside = ""
    if draft.is_file():
        record = _record(draft)
        kept_for = Path(record["target"]) if isinstance(record.get("target"), str) else None
        if kept_for is not None and "was" in record and _text_of(kept_for) == record["was"]:
            return kept_for, draft, f"resuming your edit kept in {draft}" + (f", for {kept_for}" if kept_for != target else "")
        changed = f"{kept_for} changed since" if kept_for is not None else "it does not say which file it is for"
        aside = f"your earlier edit, kept in {draft}, is not opened, as {changed}: it is set aside as {_set_aside(draft)}; "
    was = read_source(target) if target.is_file() else None
    if was is not None:
        start, note = was, ""
    elif found is not None:
        start, note = read_source(found.path), f"copied from {found.path}; yours overrides it"
    else:
        start, note = SKELETON, f"starting {target} from a skeleton"
    from .writing import write_atomic

    config.data_subdir(draft.parent.name)  # owner-only, as all of aigc's data
    write_atomic(draft, start)
    write_atomic(_record_path(draft), json.dumps({"target": str(target), "was": was, "opened": _text_of(draft)}))
    if aside:
        note = f"{aside}opening the current template" + (f"; {note}" if note else "")
    return target, draft, note


def drop_unedited(draft: Path) -> bool:
    """Remove `draft` (and say True) when it holds the text first opened: nothing was edited."""
    if _text_of(draft) == _record(draft).get("opened", None):
        _drop_draft(draft)
        return True
    return False


def save_edit(target: Path, draft: Path) -> Template | None:
    """Check the edited draft as a template and, if it passes, put it in place of `target` and remove
    the draft; if not, a `BadInputError` says why, `target` is left as it was and the draft is kept
    (dropped when emptied: an empty file aborts the edit). A draft not edited is dropped and nothing
    saved (None): a look at a built-in leaves no copy of it that would hide its updates."""
    from .writing import make_dir, write_atomic

    if drop_unedited(draft):
        return None
    name = target.name[: -len(SUFFIX)]
    text = _text_of(draft)
    if text is not None and not text.strip():
        _drop_draft(draft)
        raise BadInputError(f"the edit of template {name!r} is empty: nothing saved, {target} is as it was")
    try:
        template = parse(draft, "user")
        check_tasks(replace(template, name=name))
    except BadInputError as exc:
        if drop_unedited(draft):
            raise BadInputError(f"{str(exc).rstrip('.')}; nothing was edited, so nothing is saved") from None
        raise BadInputError(f"{str(exc).rstrip('.')}; not saved: your edit is kept in {draft}, and `aigc templates edit {name}` opens it again") from None
    record = _record(draft)
    if "was" in record and _text_of(target) != record["was"]:  # changed by hand, or by another edit, meanwhile
        raise BadInputError(f"{target} changed while you edited it: not saved over it; your edit is kept as {_set_aside(draft)}")
    make_dir(target.parent, DIR_HINT)
    write_atomic(target, text)
    _drop_draft(draft)
    return replace(template, path=target, source="env" if target.parent != user_dir() else "user")


def remove_template(name: str) -> tuple[Path, Template | None]:
    """Remove the user's template `name` (and any edit of it kept as a draft, or that draft alone).
    Returns the file removed and the template now used under that name (the one it overrode), if
    any; a template that is not the user's is refused, saying where it comes from."""
    own = user_template_path(name)
    name = own.name[: -len(SUFFIX)]
    draft = draft_path(name)
    if not own.is_file() and draft.is_file():
        own = draft
    elif not own.is_file():
        found = scan()[0].get(name)
        if found is None:
            raise UnknownTemplateError(f"no template {name!r} of yours to remove in {user_dir()}; see `aigc templates list`")
        where = {"env": "it is in AIGC_TEMPLATES_PATH", "config": "it is in templates_path (config.toml)", "builtin": "it is built in"}.get(found.source, f"it comes with plugin {found.source!r}")
        raise BadInputError(f"no template {name!r} of yours to remove in {user_dir()}: {where} ({found.path}), with no override of yours; only your own templates can be removed")
    own.unlink()
    _drop_draft(draft)
    return own, scan()[0].get(name)
