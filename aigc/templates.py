"""Prompt templates: jinja2 files with YAML front matter, rendered in a sandbox with StrictUndefined.

A template file looks like::

    ---
    description: One line on what it is for
    system: You are ...            # optional, itself a template
    defaults: {temperature: 0.3, max_tokens: 200}
    variables:
      - {name: text, description: The input, required: true}
    generator: summarize           # optional
    model: smollm2                 # optional: the model when no -m is given
    ---
    The prompt body, with {{ text }}.

Directories are searched in order (built-ins, plugins, the user's, then `AIGC_TEMPLATES_PATH`);
a later directory overrides a template of the same name from an earlier one, except that two
plugins' templates of one name clash (the first stays). A path to a `.j2` file names that file.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
import threading
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any, Callable

from . import config
from .errors import AigcError, AigcWarning, BadInputError, OptionError, PluginError, UnknownTemplateError, did_you_mean, option

SUFFIX = ".j2"


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str  # plugin name, "user" or "env"
    body: str
    description: str = ""
    system: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    variables: list[dict[str, Any]] = field(default_factory=list)
    generator: str | None = None
    model: str | None = None  # the model it runs on when the command names none (-m)
    body_line: int = 1  # line of the file where the body starts, for error messages
    system_line: int = 1  # line of the file where the system prompt starts, for error messages
    unknown_keys: tuple[str, ...] = ()  # front-matter keys aigc does not read (a typo), warned of when the template is used

    @property
    def label(self) -> str:
        """How errors name the template: with its plugin when a plugin's directory holds it."""
        return f"template {self.name!r}" if self.source in (*OVERRIDING, "file") else f"template {self.name!r} (plugin {self.source!r})"

    @property
    def declared(self) -> set[str]:
        """The variables it declares (and `input`, for a system prompt alone: the input is the message)."""
        return {v["name"] for v in self.variables} | ({"input"} if not self.body.strip() else set())

    @property
    def names_used(self) -> set[str]:
        """The variables its text and system prompt read."""
        return _names_used(self.body) | _names_used(self.system if isinstance(self.system, str) else "")

    def input_variable(self, given: dict[str, Any] | None = None) -> str:
        """The variable a message or `-i` fills: `input` if the template has it (or declares none),
        else its one required variable not in `given`. A template whose text never uses it is an
        error, unless its body is empty (a system prompt alone: the text is the message)."""
        name = self._input_name(given or {})
        if self.body.strip() and name not in self.names_used:
            raise BadInputError(
                f"{self.label} never uses {{{{ {name} }}}}, so the text given would be dropped; "
                f"put {{{{ {name} }}}} where it goes in {self.path}"
            )
        return name

    def _input_name(self, given: dict[str, Any]) -> str:
        names = [v["name"] for v in self.variables]
        if not names or "input" in names or not self.body.strip():  # a system prompt alone: the input is the message
            return "input"
        open_ = [name for name in self.required if name not in given]
        if len(open_) == 1:
            return open_[0]
        way = f"give all but one of them with {option('variables')}" if open_ else "use a template with an 'input' variable"
        raise BadInputError(
            f"{self.label} has no 'input' variable and not one required variable left to fill, so the text "
            f"has nowhere to go; {way} (its variables: {', '.join(names)})"
        )

    @property
    def required(self) -> list[str]:
        return [v["name"] for v in self.variables if v.get("required", "default" not in v)]


@dataclass
class Rendered:
    """A rendered template: the chat messages to send, and the template's sampling defaults."""

    messages: list[dict]
    defaults: dict[str, Any]


def builtin_dir() -> Path:
    """`prompts/`: inside the installed package (wheel), or at the repository root (editable)."""
    here = Path(__file__).resolve().parent
    packaged = here / "prompts"
    return packaged if packaged.is_dir() else here.parent / "prompts"


def user_dir() -> Path:
    return config.config_dir() / "templates"


DIR_HINT = "AIGC_CONFIG_DIR moves your templates' directory"


def _template_dir_problem(path: Any) -> str | None:
    if not isinstance(path, (str, os.PathLike)):
        return f"register(path) takes a directory of templates, got {type(path).__name__} {path!r}"
    if not Path(path).is_absolute():
        return f"register(path) takes an absolute path, such as Path(__file__).parent / 'templates', got {str(path)!r}"
    if Path(path).is_file():
        return f"register(path) takes a directory of templates; {path} is a file"
    return None  # a directory that does not exist (an optional one) is skipped when templates are found


def registered_template_dirs() -> dict[str, tuple[str, Any]]:
    """`{path: (plugin, path)}` from every plugin's `register_template_dirs` hook."""
    from .plugins import collect

    return collect("register_template_dirs", None, "template dir", _template_dir_problem)


def template_dirs() -> list[tuple[str, Path]]:
    """(source, directory) in increasing priority."""
    from .plugins import DEFAULT_PLUGINS

    registered = registered_template_dirs()
    dirs = [("builtin" if plugin in DEFAULT_PLUGINS else plugin, Path(path)) for path, (plugin, _) in registered.items()]
    dirs.append(("user", user_dir()))
    for entry in os.environ.get("AIGC_TEMPLATES_PATH", "").split(os.pathsep):
        if entry:
            dirs.append(("env", Path(entry).expanduser()))
            _warn_if_missing(dirs[-1][1])
    return dirs


_missing_warned: set[Path] = set()


def _warn_if_missing(directory: Path) -> None:
    """An `AigcWarning`, once, for an `AIGC_TEMPLATES_PATH` entry that is no directory (a typo, or one moved)."""
    if not directory.is_dir() and directory not in _missing_warned:
        _missing_warned.add(directory)
        what = "is a file, not a directory" if directory.exists() else "does not exist"
        warnings.warn(f"AIGC_TEMPLATES_PATH names {directory}, which {what}; its templates are not found", AigcWarning, stacklevel=3)


FRONT_MATTER = ("description", "system", "defaults", "variables", "generator", "model")
_OPEN = re.compile(r"---[ \t]*\n")  # the first line, opening the front matter (trailing blanks allowed, as by Jekyll)
_CLOSE = re.compile(r"\n---[ \t]*(?:\n|\Z)")  # the line that closes the front matter, the file's last one too


def parse(path: Path, source: str) -> Template:
    """Read one template file; bad front matter is an error naming the file and line, an unknown
    front-matter key a warning."""
    template = _read(path, source)
    _warn_unknown_keys(template)
    return template


def _warn_unknown_keys(template: Template) -> None:
    """An `AigcWarning` for each front-matter key aigc does not read: a typo (`sytem:`) drops what it sets."""
    for key in template.unknown_keys:
        warnings.warn(f"{template.path}: unknown front-matter key {key!r} is ignored; {_key_hint(key)}", AigcWarning)


def _key_hint(key: str) -> str:
    """What to write in place of an unknown front-matter key: where `llm`'s template keys go here, or the key meant."""
    if key in _sampling_settings() or key == "options":
        return f"sampling settings go under defaults: (defaults: {{{'temperature' if key == 'options' else key}: ...}})"
    if key == "prompt":
        return "the prompt is the text after the front matter's closing ---"
    close = difflib.get_close_matches(key, FRONT_MATTER, n=1)
    return f"did you mean {close[0]}?" if close else f"known: {', '.join(FRONT_MATTER)}"


def _sampling_settings() -> set[str]:
    from .engine.sampling import SamplingParams

    return {f.name for f in dataclasses.fields(SamplingParams)}


def _read(path: Path, source: str) -> Template:
    """`parse` without the warnings, which only a template in use gives (not every one a lookup reads)."""
    import yaml

    text = read_source(path)
    meta: dict[str, Any] = {}
    body, body_line, system_line = text, 1, 1
    if opening := _OPEN.match(text):
        closing = _CLOSE.search(text, opening.end() - 1)
        if closing is None:
            raise BadInputError(f"{path}:1: front matter opened with '---' is never closed")
        loader = yaml.SafeLoader(text[opening.end() : closing.start()])
        try:
            node = loader.get_single_node()  # as yaml.safe_load, keeping the node for where `system:` is
            meta = (loader.construct_document(node) if node is not None else None) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", 0) + 2
            raise BadInputError(f"{path}:{line}: bad front matter: {getattr(exc, 'problem', exc)}") from exc
        finally:
            loader.dispose()
        if not isinstance(meta, dict):
            raise BadInputError(f"{path}:2: front matter must be a mapping of keys to values")
        body = text[closing.end() :]
        body_line = text[: closing.end()].count("\n") + 1
        system_line = _system_line(node)
    variables = meta.get("variables") or []
    if not isinstance(variables, list) or not all(isinstance(v, dict) and "name" in v for v in variables):
        raise BadInputError(f"{path}: 'variables' must be a list of {{name: ..., description: ...}} entries")
    variables = [{**v, "default": ""} if "default" in v and v["default"] is None else v for v in variables]  # `default:` left empty: no text, not "None"
    defaults = _read_defaults(path, meta.get("defaults") or {})
    model = meta.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise BadInputError(f"{path}: 'model' must be a model name, as -m takes (an alias such as smollm2, a hub id, a path), got {model!r}")
    template = Template(
        name=path.name[: -len(SUFFIX)],
        path=path,
        source=source,
        body=body,
        description=str(meta.get("description", "")),
        system=meta.get("system"),
        defaults=defaults,
        variables=variables,
        generator=meta.get("generator"),
        model=model,
        body_line=body_line,
        system_line=system_line,
        unknown_keys=tuple(sorted(map(str, set(meta) - set(FRONT_MATTER)))),
    )
    _check_syntax(template)
    _check_declared(template)
    _check_generator(template)
    return template


def _system_line(front_matter) -> int:
    """The file line where the front matter's `system:` text starts: the line after `|` or `>` for a block."""
    import yaml

    if not isinstance(front_matter, yaml.MappingNode):  # empty front matter
        return 1
    system = [value for key, value in front_matter.value if key.value == "system"][-1:]  # the last one wins, as in safe_load
    if not system:
        return 1
    return system[0].start_mark.line + 2 + (getattr(system[0], "style", None) in ("|", ">"))  # the front matter starts at line 2


def read_source(path: Path) -> str:
    """A template file's text: UTF-8, or UTF-16 or UTF-32 with a byte-order mark (as Notepad writes),
    which is skipped, so the front matter is still read."""
    from .textio import decode_text

    try:
        return decode_text(path.read_bytes(), f"template {path}", "a text template", str(path))
    except OSError as exc:
        raise BadInputError(f"cannot read template {path}: {exc.strerror or exc}") from exc


def _read_defaults(path: Path, defaults: Any) -> dict[str, Any]:
    """Front-matter `defaults`: sampling settings with usable values; a `json_schema` may be written
    as `--schema`'s fields (`"name, age int"`), and comes back as the JSON schema they make."""
    from .engine.sampling import SamplingParams
    from .json_schemas import concise_schema

    if not isinstance(defaults, dict):
        raise BadInputError(f"{path}: 'defaults' must be a mapping of sampling settings, like {{temperature: 0.7}}")
    try:
        written = defaults.get("json_schema")
        if isinstance(written, str) and (written.lstrip().startswith(("{", "[")) or written.strip().lower().endswith(".json")):
            raise BadInputError("json_schema: write the JSON schema itself as a YAML mapping under json_schema:, or --schema's fields (\"name, age int\")")
        if isinstance(written, str):
            defaults = {**defaults, "json_schema": concise_schema(written)}
        SamplingParams.from_settings(defaults)
    except BadInputError as exc:
        raise BadInputError(f"{path}: defaults: {exc}{_unknown_setting_hint(defaults) if str(exc).startswith('unknown sampling setting') else ''}") from None
    return dict(defaults)


def _unknown_setting_hint(defaults: dict) -> str:
    """For `defaults:` with a key that is no sampling setting nor a misspelt one (the error names
    that): where the model or a variable's default goes."""
    key = sorted(set(map(str, defaults)) - _sampling_settings())[0]
    if key == "model":
        return "; the model goes at the top of the front matter (model: NAME), not under defaults:"
    meant = did_you_mean([key], _sampling_settings())  # as the error says it (not topic -> stop)
    return "" if meant else f"; a variable's default goes in its entry under variables: ({{name: {key}, default: ...}})"


def _check_syntax(template: Template) -> None:
    """Compile the template now, so a syntax error (or a filter no plugin adds) shows when it is looked
    up, before any model loads, not when the first input is rendered."""
    from jinja2 import TemplateSyntaxError

    for text, first_line in ((template.system, template.system_line), (template.body, template.body_line)):
        if isinstance(text, str):
            try:
                _compile(environment(), text)
            except TemplateSyntaxError as exc:
                raise BadInputError(f"{template.path}:{first_line + exc.lineno - 1}: {exc.message}") from exc


def _check_declared(template: Template) -> None:
    """A template that declares variables declares each one its text reads, since only those can be
    given (one that declares none takes any); jinja's and plugins' globals need no declaring."""
    if not template.variables:
        return
    undeclared = sorted(template.names_used - template.declared - set(environment().globals))
    if undeclared:
        them = "it" if len(undeclared) == 1 else "them"
        unused = sorted(template.declared - template.names_used)
        meant = " and ".join(f"{{{{ {close} }}}}" for name in undeclared for close in difflib.get_close_matches(name, unused, n=1))  # {{ inpt }}: {{ input }}
        raise BadInputError(
            f"{template.label} uses {' and '.join(f'{{{{ {name} }}}}' for name in undeclared)} but does not declare {them}"
            f"{f' (did you mean {meant}?)' if meant else ''}; "
            f"add {them} under variables: in its front matter, with a default: (or required: false) where optional ({template.path})"
        )


def _check_generator(template: Template) -> None:
    """`generator:` is a name, and not a typo of a registered generator's (`sumarize`); one like no
    registered name may be a plugin's that is not installed, so it passes."""
    from .generators.base import registered_generators

    name = template.generator
    if name is not None and not isinstance(name, str):
        raise BadInputError(f"{template.path}: generator: must be the name of the task it is for (such as summarize), got {name!r}")
    known = registered_generators()
    close = difflib.get_close_matches(name, list(known), n=1) if name is not None and name not in known else []
    if close:
        raise BadInputError(f"{template.path}: generator: {name!r} is no generator; did you mean {close[0]}?")


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
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def user_template_path(name: str) -> Path:
    """Where the user's template `name` (with or without .j2) is, or would be."""
    if name.endswith(SUFFIX):
        name = name[: -len(SUFFIX)]
    if not _NAME.match(name):
        raise BadInputError(f"template name {name!r} must be letters, digits, '-', '_' or '.', starting with a letter or digit")
    return user_dir() / f"{name}{SUFFIX}"


def new_template(name: str) -> tuple[Path, Template | None]:
    """Start `NAME.j2` in the user template directory, from a copy of the template it will override
    (so a built-in's variables and generator carry over) or else from a skeleton; never overwrites
    a file. Returns the new file and the template copied (None: the skeleton)."""
    path = user_template_path(name)
    name = path.name[: -len(SUFFIX)]
    existing = scan()[0].get(name)
    if existing is not None and existing.path == path:
        existing = None  # the file is there already: refused below
    from .textio import make_dir

    start = read_source(existing.path) if existing else SKELETON
    make_dir(path.parent, DIR_HINT)
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(start)
    except FileExistsError:
        raise BadInputError(f"{path} already exists; edit it with aigc templates edit {name}, or remove it first to start over") from None
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


def start_edit(name: str) -> tuple[Path, Path, str]:
    """Begin editing template `name`: the file the edit will be saved to (`AIGC_TEMPLATES_PATH`'s copy
    when that is the one in use, else the user's own), and a draft holding the text to edit (a draft
    kept from a failed edit, else the file's text, a copy of the template it will override, or a
    skeleton), with a note on where the text came from. A kept draft goes back to the file it was
    made for; if that file changed since (edited by hand), the draft is set aside, not saved over it."""
    import json

    own = user_template_path(name)
    name = own.name[: -len(SUFFIX)]
    found = scan()[0].get(name)
    target = found.path if found is not None and found.source == "env" else own
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
    from .textio import write_atomic

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
    from .textio import make_dir, write_atomic

    if drop_unedited(draft):
        return None
    name = target.name[: -len(SUFFIX)]
    text = _text_of(draft)
    if text is not None and not text.strip():
        _drop_draft(draft)
        raise BadInputError(f"the edit of template {name!r} is empty: nothing saved, {target} is as it was")
    try:
        template = parse(draft, "user")
        _check_tasks(replace(template, name=name))
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
        where = {"env": "it is in AIGC_TEMPLATES_PATH", "builtin": "it is built in"}.get(found.source, f"it comes with plugin {found.source!r}")
        raise BadInputError(f"no template {name!r} of yours to remove in {user_dir()}: {where} ({found.path}), with no override of yours; only your own templates can be removed")
    own.unlink()
    _drop_draft(draft)
    return own, scan()[0].get(name)


def shadowed() -> dict[str, list[str]]:
    """For each template name found in more than one directory, the sources of the ones it overrides,
    in increasing priority (`{"headline": ["builtin"]}` for a user override of the built-in)."""
    sources: dict[str, list[str]] = {}
    for source, directory in template_dirs():
        if directory.is_dir():
            for path in directory.glob(f"*{SUFFIX}"):
                found = sources.setdefault(path.name[: -len(SUFFIX)], [])
                if source in OVERRIDING or all(s in OVERRIDING for s in found) and _plugin_template_works(path, source):  # of two plugins' templates, the first stays
                    found.append(source)
    return {name: found[:-1] for name, found in sources.items() if len(found) > 1}


OVERRIDING = ("builtin", "user", "env")  # sources whose templates override earlier ones of the same name


def scan(only: str | None = None) -> tuple[dict[str, Template], dict[str, BadInputError]]:
    """All templates by name, and the ones that cannot be read with why; later directories override
    earlier ones (a broken override of yours hides the template it overrides; a plugin's broken template is
    recorded as that plugin's problem and skipped), except that two plugins'
    templates of one name clash (the first stays). `only`: the files of that name alone are read."""
    found: dict[str, Template] = {}
    broken: dict[str, BadInputError] = {}
    plugin_of: dict[str, str] = {}  # template name -> the plugin whose directory has it
    for source, directory in template_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob(f"*{SUFFIX}")):
                name = path.name[: -len(SUFFIX)]
                if only is not None and name != only:
                    continue
                if source not in OVERRIDING and plugin_of.setdefault(name, source) != source:
                    from .plugins import record_clash

                    record_clash("register_template_dirs", "template", name, plugin_of[name], source)
                    continue  # of two plugins' templates, the first stays
                hidden = found.pop(name, None)
                broken.pop(name, None)
                try:
                    found[name] = _parse_cached(path, source)
                except BadInputError as exc:
                    if source not in OVERRIDING:  # a plugin's broken template is the plugin's problem: the one it would hide stays
                        _record_broken(source, exc)
                        if hidden is not None:
                            found[name] = hidden
                        continue
                    broken[name] = _with_way_out(exc, name, hidden) if source == "user" and hidden is not None else exc
    return found, broken


def _record_broken(plugin: str, error: BadInputError) -> None:
    from .plugins import record_problem

    record_problem(plugin, "register_template_dirs", f"its template is skipped: {error}")


def _plugin_template_works(path: Path, source: str) -> bool:
    """Whether a plugin's template file can be read (a broken one is skipped, not an override)."""
    try:
        _parse_cached(path, source)
    except BadInputError as exc:
        _record_broken(source, exc)
        return False
    return True


def _with_way_out(error: BadInputError, name: str, hidden: Template) -> BadInputError:
    """A broken user override's error, saying how to fix it or remove it, going back to the template it hides."""
    return BadInputError(f"{str(error).rstrip('.')}; {_way_out(name, 'user', hidden.source)}")


def _way_out(name: str, source: str, hidden: str) -> str:
    """How to fix an override of template `name` from `source` of one from `hidden`, or go back to that one."""
    back = "the built-in one" if hidden == "builtin" else f"plugin {hidden!r}'s"
    if source == "user":
        return f"fix it with `aigc templates edit {name}`, or remove it with `aigc templates rm {name}`, going back to {back}"
    if source == "env":
        return f"fix it with `aigc templates edit {name}`, or take its directory out of AIGC_TEMPLATES_PATH, going back to {back}"
    return f"make your own fixed copy with `aigc templates edit {name}`, or uninstall plugin {source!r}, going back to {back}"


_parsed: dict[tuple[Path, str], tuple[tuple[int, int], Template]] = {}


def _parse_cached(path: Path, source: str) -> Template:
    """`parse`, done again only when the file changes (YAML parsing dominates a lookup by name)."""
    try:
        stat = path.stat()
    except OSError:
        return _read(path, source)  # gone since the listing: _read says so
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _parsed.get((path, source))
    if cached is None or cached[0] != stamp:
        cached = _parsed[path, source] = (stamp, _read(path, source))
    return cached[1]


def discover() -> dict[str, Template]:
    """All templates that can be read; each broken one is an `AigcWarning`, so one bad file never
    stops the others from working, as is each unknown front-matter key."""
    found, broken = scan()
    for error in broken.values():
        warnings.warn(f"skipping template: {error}", AigcWarning, stacklevel=2)
    for template in found.values():
        _warn_unknown_keys(template)
    return found


def is_path(name: str) -> bool:
    """Whether a template reference names a file (ends in `.j2` or holds a slash), not a template."""
    return name.endswith(SUFFIX) or "/" in name or os.sep in name


def get_template(name: str) -> Template:
    """The template called `name`, or the template file `name` when `is_path(name)`; an unknown
    front-matter key in it is a warning."""
    template = _find(name)
    _warn_unknown_keys(template)
    return template


def check_fills(name: str, given: set[str], task: str, flag: str = "template", carries: set[str] = frozenset({"text"}), reads: dict[str, str] | None = None) -> None:
    """An `OptionError` (for `flag`) now, not on every input, when the template `name` needs a
    variable the `task` does not fill with `given`, reads none of the variables that `carries`
    the input (its text would be dropped), or leaves out one of `reads` (variable: what it holds,
    e.g. translate's target language). An override (yours, in AIGC_TEMPLATES_PATH or a plugin's)
    is named with its file and the way to fix it, since it may be in use with no option given."""
    template = _find(name)
    missing = [v for v in template.required if v not in given]
    if missing:
        problem = f"needs {', '.join(missing)}, and {task} fills only {', '.join(sorted(given))}"
    elif not template.names_used & carries:
        problem = f"never reads {' or '.join(sorted(carries))}, where {task} puts its input"
    elif unread := [f"{variable} ({what})" for variable, what in (reads or {}).items() if variable not in template.names_used]:
        problem = f"never reads {', '.join(unread)}"
    else:
        return
    if _trying.get().get(template.name) is template:
        raise _Unfit(f"{template.label} {problem}, so `aigc {task}` could not use it")
    hidden = shadowed().get(template.name) if template.source not in ("builtin", "file") else None
    if hidden:
        raise BadInputError(f"{template.label}, in {template.path}, {problem}, so {task} cannot use it; {_way_out(template.name, template.source, hidden[-1])}")
    raise OptionError(flag, f"names {template.label}, which {problem}; give a template made for {task}")


class _Unfit(BadInputError):
    """A template being saved that a task it is for could not use."""


_trying: ContextVar[dict[str, Template]] = ContextVar("aigc_template_trying", default={})  # name -> a draft looked up by that name


def _check_tasks(template: Template) -> None:
    """Make each generator's options that would use `template` (by default, as an override of the
    template it uses, or as its front matter's `generator:`) with it in place: a task that could not
    use it is a `BadInputError`, as the command would give, but at once."""
    from .generators.base import registered_generators

    token = _trying.set({template.name: template})
    try:
        for task, (_, cls) in registered_generators().items():
            for f in dataclasses.fields(cls.Options):
                if f.init and f.name.endswith("template") and (f.default == template.name or (task == template.generator and f.name == "template")):
                    try:
                        cls.Options(**{f.name: template.name})
                    except _Unfit:
                        raise
                    except Exception:  # noqa: BLE001 - the generator's own options, not this template, are at fault
                        continue
    finally:
        _trying.reset(token)


def _find(name: str) -> Template:
    """`get_template` without the warning."""
    if not isinstance(name, str) or not name:
        raise BadInputError(f"a template is a name or a .j2 file, got {name!r}")
    if is_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            if path.stem in scan()[0] and path.name == name:  # `aigc templates new x.j2` made template x
                raise UnknownTemplateError(f"no template file {name} here; the template {path.stem!r} is named without .j2: {path.stem}")
            raise UnknownTemplateError(f"no template file {name}; give an existing .j2 file, or a template name (`aigc templates list`)")
        return _parse_cached(path.resolve(), "file")
    if name in _trying.get():
        return _trying.get()[name]
    found, broken = scan(name)  # a command reads the template it uses, not every one
    if name in found:
        return found[name]
    if name in broken:
        raise broken[name]
    if Path(name + SUFFIX).is_file():  # a template file someone shared, saved here
        raise UnknownTemplateError(f"unknown template {name!r}; to use the file {name}{SUFFIX} here, name it as a path: ./{name}{SUFFIX} (or copy it to {user_dir()} to use it by name)")
    close = difflib.get_close_matches(name, list(scan()[0]), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownTemplateError(f"unknown template {name!r}; {hint}see `aigc templates list` for all of them")


_built: dict[str, Any] = {}  # the environment, and the plugins it was built with
_building = threading.RLock()  # batch workers render at once: one builds it (a hook may render)


def environment():
    """The sandboxed jinja2 environment; plugins add filters and globals through `prepare_jinja_env`.
    Built again when the registered plugins change (one registered at run time adds its filters)."""
    from .plugins import get_plugin_manager

    plugins = [plugin for _, plugin in get_plugin_manager().list_name_plugin()]
    with _building:
        built = _built.get("plugins")
        if built is None or len(built) != len(plugins) or any(a is not b for a, b in zip(built, plugins)):
            _built.update(env=_environment(), plugins=plugins)
        return _built["env"]


def forget_environment() -> None:
    """Build the environment anew at its next use (the plugin manager was reset)."""
    _built.clear()


def _environment() -> Any:
    from jinja2 import FunctionLoader, StrictUndefined

    from .plugins import call_each

    env = _sandbox(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False, loader=FunctionLoader(_no_other_files))
    owner: dict[tuple[str, str], str] = {}  # (filter or global, name) -> the plugin that added it
    turn: dict[str, Any] = {"plugin": None}

    def settle() -> None:
        """A filter or global the plugin just run replaced, that an earlier plugin set, is put back
        (replacing one of jinja2's own makes it the plugin's)."""
        for kind, table in (("filter", env.filters), ("global", env.globals)):
            for name, value in list(table.items()):
                if not isinstance(name, str):  # no template can use it, and `aigc plugins` sorts the names
                    from .plugins import record_problem

                    del table[name]
                    record_problem(turn["plugin"], "prepare_jinja_env", f"jinja {kind} {name!r}: a {kind}'s name is text (a name templates can use); it is left out")
                    continue
                old = turn["before"][kind].get(name, _UNSET)
                if old is not _UNSET and value is old:
                    continue
                if (kind, name) in owner and old is not _UNSET:
                    from .plugins import record_clash

                    record_clash("prepare_jinja_env", f"jinja {kind}", name, owner[kind, name], turn["plugin"])
                    table[name] = old
                else:
                    owner[kind, name] = turn["plugin"]
                    if inspect.isroutine(value):  # not classes or callable objects: wrapping would change them
                        table[name] = _blamed(value, f"jinja {kind} {name!r} of plugin {turn['plugin']!r}")

    def before(plugin: str) -> None:
        if turn["plugin"] is not None:
            settle()
        turn.update(plugin=plugin, before={"filter": dict(env.filters), "global": dict(env.globals)})

    call_each("prepare_jinja_env", before=before, env=env)
    if turn["plugin"] is not None:
        settle()
    env.aigc_owners = owner  # for `aigc plugins`: which plugin added which filter or global
    return env


def _no_other_files(name: str) -> None:
    """The loader: a template is one file, so `{% include %}`, `{% import %}` and `{% extends %}` say so
    (without one, jinja2's error is "TypeError: no loader for this environment specified")."""
    raise BadInputError(f"a template cannot include, import or extend another file ({name!r}); put the text it needs in the template itself (a {{% macro %}} there for a part used twice)")


_UNSET = object()
MAX_SIZE = 100_000  # characters or items of a string or list, bits of an integer, made by `*` or `**` (as jinja2's MAX_RANGE)


def _sandbox(**options):
    """jinja2's sandbox, where a `*` or `**` that would make a huge result (`"x" * 10**10`) is refused
    before it runs, as a huge `range()` is."""
    from jinja2.sandbox import SandboxedEnvironment

    class Sandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})  # also keeps them from being folded when compiled

        def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
            size, unit = _result_size(operator, left, right)
            if size > MAX_SIZE:
                raise OverflowError(f"Result too big. {operator} would make {size} {unit}; the sandbox blocks more than MAX_SIZE ({MAX_SIZE}).")
            return super().call_binop(context, operator, left, right)

    return Sandbox(**options)


def _result_size(operator: str, left: Any, right: Any) -> tuple[int, str]:
    """How big `left operator right` would be: bits of an integer, characters or items of a repeated
    string or list (0 for anything else)."""
    if isinstance(left, int) and isinstance(right, int):
        if operator == "**":
            return (right * (abs(left) - 1).bit_length() if left else 0), "bits"
        return left.bit_length() + right.bit_length(), "bits"
    for sequence, count in ((left, right), (right, left)):
        if operator == "*" and isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
            return len(sequence) * count, "characters" if isinstance(sequence, str) else "items"
    return 0, ""


def _blamed(function: Callable, what: str) -> Callable:
    """`function` (a plugin's jinja filter or global) whose failures become a `PluginError` naming it."""
    from jinja2.exceptions import TemplateError

    @wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (AigcError, TemplateError):  # the template's own fault (an undefined variable) stays the template's
            raise
        except Exception as exc:
            raise PluginError(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    return call


@lru_cache(maxsize=256)
def _names_used(text: str) -> frozenset[str]:
    """The variables template text reads from its caller."""
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(environment().parse(text)))


@lru_cache(maxsize=256)
def _compile(env, text: str):
    """Each template text compiled once per environment (a new environment starts afresh)."""
    return env.from_string(text)


def _render_text(template: Template, text: str, values: dict[str, Any], first_line: int) -> str:
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError

    try:
        return _compile(environment(), text).render(**values).strip()
    except TemplateSyntaxError as exc:
        raise BadInputError(f"{template.path}:{first_line + exc.lineno - 1}: {exc.message}") from exc
    except UndefinedError as exc:
        names = ", ".join(v["name"] for v in template.variables) or "none declared"
        undefined = re.fullmatch(r"'(\w+)' is undefined", exc.message or "")
        if undefined and undefined[1] in {v["name"] for v in template.variables}:  # declared, not required, no default
            name = undefined[1]
            raise BadInputError(f"{template.label}: {name} is not given and has no default; give it ({option('variables', name + '=...')}) or add a `default:` to it in {template.path}") from exc
        if undefined and not template.variables:  # one that declares none takes any variable given
            raise BadInputError(f"{template.label}: {exc.message}; give it ({option('variables', undefined[1] + '=...')}), or declare it with a `default:` under variables: in {template.path}") from exc
        raise BadInputError(f"{template.label}: {exc.message}; its variables: {names}") from exc
    except SecurityError as exc:
        raise BadInputError(f"{template.label} tried something unsafe and was stopped: {exc}") from exc
    except AigcError:  # a plugin filter's failure, named as the plugin's
        raise
    except Exception as exc:  # the template's own expression failed: {{ 1 / 0 }}, range(10**9)
        raise BadInputError(f"{template.label} failed while rendering: {type(exc).__name__}: {exc}") from exc


def render(template: Template | str, variables: dict[str, Any] | None = None, system: str | None = None) -> Rendered:
    """Render a template into chat messages. `system` (taken as it is, not as a template) overrides
    the template's own system prompt."""
    if isinstance(template, str):
        template = get_template(template)
    values = _values(template, variables)
    missing = [name for name in template.required if name not in values]
    if missing:
        names = ", ".join(v["name"] for v in template.variables)
        raise BadInputError(f"{template.label} needs {', '.join(missing)}; its variables: {names}")
    messages = render_system(template, variables, system)
    if template.body.strip():
        user = _render_text(template, template.body, values, template.body_line)
    elif isinstance(values.get("input"), str):  # a system prompt alone (as fabric's patterns): the input is the message
        user = values["input"]
    else:
        raise BadInputError(f"{template.label} is a system prompt with no message: it answers the text given as its input")
    messages.append({"role": "user", "content": user})
    return Rendered(messages=messages, defaults=dict(template.defaults))


def render_system(template: Template, variables: dict[str, Any] | None = None, system: str | None = None) -> list[dict]:
    """The system message `render` starts with ([] for none), without rendering the template's text
    (which may need the message): the template's own, or `system` in its place ("" for none), which
    must not drop a variable given that only the template's own reads."""
    if system is None:
        return [{"role": "system", "content": _render_text(template, template.system, _values(template, variables), template.system_line)}] if template.system else []
    if isinstance(template.system, str):
        only_there = sorted(k for k, v in (variables or {}).items() if v is not None and k in _names_used(template.system) - _names_used(template.body))
        if only_there:
            raise BadInputError(
                f"{template.label} uses {', '.join(f'{{{{ {name} }}}}' for name in only_there)} only in its system prompt, which "
                f"the system prompt given replaces, so that text would be dropped; keep the template's system prompt"
            )
    return [{"role": "system", "content": system}] if system else []  # the caller's own words, as they are (they may show {{ }} themselves)


def _values(template: Template, variables: dict[str, Any] | None) -> dict[str, Any]:
    """The template's variables: their declared defaults, then those given (None: not given)."""
    values = {v["name"]: v["default"] for v in template.variables if "default" in v}
    values.update({k: v for k, v in (variables or {}).items() if v is not None})
    return values
