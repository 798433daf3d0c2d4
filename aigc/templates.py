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

A directory `NAME/` holding `system.md` (a fabric pattern) is the template NAME too: that file is
its system prompt and the input its message (after the text of its `user.md`, if any), plain text
but for fabric's `{{input}}` (where the input goes: a `system.md` holding it is then the one message)
and `{{name}}` (a variable), as `template_files` reads them.

Directories are searched in order (built-ins, plugins, `templates_path`'s in config.toml and then
`AIGC_TEMPLATES_PATH`'s, each from its last to its first, then the user's); a later directory overrides
a template of the same name from an earlier one, so your own come first, then AIGC_TEMPLATES_PATH's
in the order given, as PATH's, then templates_path's, except that two plugins' templates of one name
clash (the first stays). A path to a `.j2` file names that file.
A file is read in `template_files` and rendered in `template_environment`'s sandbox;
`template_edits` starts, edits and removes the user's own.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .errors import AigcError, AigcNote, AigcWarning, BadInputError, IncompleteInstallError, OptionError, UnknownTemplateError, option, reinstall_advice, spelt
from .template_environment import compile_text, environment, render_bounded, variables_read
from .template_files import OVERRIDING, OWN, PATTERN, SUFFIX, Template, other_files, parse_cached, template_files, template_name, warn_unused


@dataclass
class Rendered:
    """A rendered template: the chat messages to send, and the template's sampling defaults."""

    messages: list[dict]
    defaults: dict[str, Any]


def builtin_dir() -> Path:
    """`prompts/`: at the root of the source checkout aigc runs from, else inside the installed package
    (the wheel maps it there), never a `prompts/` that another project put beside it in site-packages."""
    from .install import checkout

    root = checkout()
    return root / "prompts" if root else Path(__file__).resolve().parent / "prompts"


BUILTIN_MISSING = "aigc's built-in templates are missing: {} is not there (an incomplete install)"


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
    env = env_template_dirs()
    configured = config.templates_path()
    for directory in configured:
        _warn_if_missing(directory, f"templates_path in {config.settings_file()}")
    for directory in env:
        _warn_if_missing(directory, "AIGC_TEMPLATES_PATH")
    dirs += [("config", directory) for directory in reversed(configured)]  # the first wins, as in PATH
    dirs += [("env", directory) for directory in reversed(env)]  # before config.toml's, as a variable overrides a setting
    dirs.append(("user", user_dir()))
    return dirs


def env_template_dirs() -> list[Path]:
    """`AIGC_TEMPLATES_PATH`'s directories, in its order (`~` expanded; empty entries left out)."""
    return [Path(entry).expanduser() for entry in os.environ.get("AIGC_TEMPLATES_PATH", "").split(os.pathsep) if entry]


def missing_dir(directory: Path, where: str) -> str | None:
    """Why an entry of `where` (AIGC_TEMPLATES_PATH, templates_path) is of no use, where it is no
    directory (a typo, or one moved): the warning commands give and `aigc doctor` lists; else None."""
    if directory.is_dir():
        return None
    what = "is a file, not a directory" if directory.exists() else "does not exist"
    return f"{where} names {directory}, which {what}; its templates are not found"


_missing_warned: set[tuple[Path, str]] = set()


def _warn_if_missing(directory: Path, where: str) -> None:
    """An `AigcWarning`, once, for an entry of `where` that is no directory (`missing_dir`)."""
    if (said := missing_dir(directory, where)) and (directory, where) not in _missing_warned:
        _missing_warned.add((directory, where))
        warnings.warn(said, AigcWarning, stacklevel=3)


def shadowed() -> dict[str, list[str]]:
    """For each template name found in more than one directory, the sources of the ones it overrides,
    in increasing priority (`{"headline": ["builtin"]}` for a user override of the built-in)."""
    sources: dict[str, list[str]] = {}
    for source, directory in template_dirs():
        if directory.is_dir():
            for path in template_files(directory):
                found = sources.setdefault(template_name(path), [])
                if source in OVERRIDING or all(s in OVERRIDING for s in found) and _plugin_template_works(path, source):  # of two plugins' templates, the first stays
                    found.append(source)
    return {name: found[:-1] for name, found in sources.items() if len(found) > 1}


def scan(only: str | None = None, passing: Path | None = None) -> tuple[dict[str, Template], dict[str, BadInputError]]:
    """All templates by name, and the ones that cannot be read with why; later directories override
    earlier ones (a broken override of yours hides the template it overrides; a plugin's broken template is
    recorded as that plugin's problem and skipped), except that two plugins'
    templates of one name clash (the first stays). `only`: the files of that name alone are read;
    `passing`: a file left out (what a template hides)."""
    found: dict[str, Template] = {}
    broken: dict[str, BadInputError] = {}
    plugin_of: dict[str, str] = {}  # template name -> the plugin whose directory has it
    for source, directory in template_dirs():
        if directory.is_dir():
            if source in OWN:
                _warn_of_others(directory)
            for path in template_files(directory):
                name = template_name(path)
                if only is not None and name != only or path == passing:
                    continue
                if source not in OVERRIDING and plugin_of.setdefault(name, source) != source:
                    from .plugins import record_clash

                    record_clash("register_template_dirs", "template", name, plugin_of[name], source)
                    continue  # of two plugins' templates, the first stays
                hidden = found.pop(name, None)
                broken.pop(name, None)
                try:
                    found[name] = parse_cached(path, source)
                except BadInputError as exc:
                    if source not in OVERRIDING:  # a plugin's broken template is the plugin's problem: the one it would hide stays
                        _record_broken(source, exc)
                        if hidden is not None:
                            found[name] = hidden
                        continue
                    broken[name] = _with_way_out(exc, name, hidden) if source == "user" and hidden is not None else exc
    return found, broken


def plugin_templates() -> dict[Path, dict[str, bool]]:
    """The templates in use from each plugin's directory (aigc's own too), as `scan` takes them: a
    plugin's broken one is skipped (and recorded as its problem), and of two plugins' templates of
    one name the first stays. `{directory: {name: whether it replaces the built-in one of that name}}`;
    yours, AIGC_TEMPLATES_PATH's and templates_path's are left out."""
    found: dict[Path, dict[str, bool]] = {}
    builtin: set[str] = set()
    plugin_of: dict[str, str] = {}  # template name -> the first plugin that has one (a broken one too, as in `scan`)
    for source, directory in template_dirs():
        if source in OWN or not directory.is_dir():
            continue
        for path in template_files(directory):
            name = template_name(path)
            if source == "builtin":
                builtin.add(name)
                found.setdefault(directory, {})[name] = False
            elif plugin_of.setdefault(name, source) == source and _plugin_template_works(path, source):
                found.setdefault(directory, {})[name] = name in builtin
    return found


_others_warned: set[Path] = set()


def _warn_of_others(directory: Path) -> None:
    """An `AigcWarning`, once, for each file in your template directories that is no template, so it is not ignored unseen."""
    for path in other_files(directory):
        if path not in _others_warned:
            _others_warned.add(path)
            warnings.warn(f"{path} is ignored: {_what_instead(path)}", AigcWarning, stacklevel=4)


def _what_instead(path: Path) -> str:
    if path.is_dir():
        return f"it holds fabric patterns a level too deep; put {path} itself on AIGC_TEMPLATES_PATH (or move its pattern directories up)"
    known = f"templates are NAME{SUFFIX} files and fabric patterns NAME/{PATTERN}"
    if path.suffix.lower() in (".yaml", ".yml"):
        return f"{known}; if it is an llm template, `aigc templates import {path}` makes an aigc template of it"
    return f"{known}; rename it NAME{SUFFIX} if it is a template, or move it out"


def _record_broken(plugin: str, error: BadInputError) -> None:
    from .plugins import record_problem

    record_problem(plugin, "register_template_dirs", f"its template is skipped: {error}")


def _plugin_template_works(path: Path, source: str) -> bool:
    """Whether a plugin's template file can be read (a broken one is skipped, not an override)."""
    try:
        parse_cached(path, source)
    except BadInputError as exc:
        _record_broken(source, exc)
        return False
    return True


def _with_way_out(error: BadInputError, name: str, hidden: Template) -> BadInputError:
    """A broken user override's error, saying how to fix it or remove it, going back to the template it hides."""
    return BadInputError(f"{str(error).rstrip('.')}; {_way_out(name, 'user', hidden.source)}")


def whose(source: str, path: Path | None = None) -> str:
    """A template's `source` in words ("the built-in one", "yours", ...), as one names the template
    another hides or goes back to; with its `path` where it is a file of yours, in AIGC_TEMPLATES_PATH or templates_path."""
    words = {"builtin": "the built-in one", "user": "yours", "env": "the one in AIGC_TEMPLATES_PATH", "config": "the one in templates_path (config.toml)"}.get(source, f"the one of plugin {source!r}")
    return f"{words} ({path})" if path is not None and source in OWN else words


def _way_out(name: str, source: str, hidden: str, pattern: bool = False) -> str:
    """How to fix an override of template `name` from `source` of one from `hidden`, or go back to that
    one; a fabric `pattern` is not yours to edit, but `aigc run` runs it."""
    back = whose(hidden)
    if pattern:
        return f"it is a fabric pattern, for `aigc run {name}`, and {back} beneath it does not fit either: fix that one"
    if source == "user":
        return f"fix it with `aigc templates edit {name}`, or remove it with `aigc templates rm {name}`, going back to {back}"
    if source == "env":
        return f"make your own fixed copy with `aigc templates edit {name}`, or take its directory out of AIGC_TEMPLATES_PATH, going back to {back}"
    if source == "config":
        return f"make your own fixed copy with `aigc templates edit {name}`, or take its directory out of templates_path in {config.settings_file()}, going back to {back}"
    return f"make your own fixed copy with `aigc templates edit {name}`, or uninstall plugin {source!r}, going back to {back}"


TEMPLATES_LISTED = spelt("`aigc templates list`", "aigc.list_templates()")  # where an error points for the templates there are


def discover() -> dict[str, Template]:
    """All templates that can be read; each broken one is an `AigcWarning`, so one bad file never
    stops the others from working, as is each unknown front-matter key."""
    found, broken = scan()
    for error in broken.values():
        warnings.warn(f"skipping template: {error}", AigcWarning, stacklevel=2)
    for template in found.values():
        warn_unused(template)
    return found


def is_path(name: str) -> bool:
    """Whether a template reference names a file (ends in `.j2` or holds a slash), not a template."""
    return name.endswith(SUFFIX) or "/" in name or os.sep in name


def get_template(name: str) -> Template:
    """The template called `name`, or the template file `name` when `is_path(name)`; an unknown
    front-matter key in it is a warning, as is a fabric plugin call in a pattern."""
    template = _find(name)
    warn_unused(template)
    return template


BUILTIN = "builtin:"  # `{% extends "builtin:summarize" %}`: aigc's own template, which an override of that name builds on


def included(name: str) -> Template:
    """The template `{% include %}`, `{% import %}` or `{% extends %}` names: another template by its
    name (`_macros` or `_macros.j2`) as `aigc run` looks it up, or aigc's own as `builtin:NAME`;
    never a file by path."""
    base = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    own = base.startswith(BUILTIN)
    base = base[len(BUILTIN) :] if own else base
    if is_path(base) or "\\" in base or base in ("", ".", ".."):  # `x.j2.j2` too: no file of the working directory
        raise BadInputError(f"{{% include %}}, {{% import %}} and {{% extends %}} name another template, not a file: {name!r} is a path; put that file in your template directory and name it")
    if own:
        path = builtin_dir() / f"{base}{SUFFIX}"
        if not path.is_file():
            raise BadInputError(f"{{% include %}}, {{% import %}} or {{% extends %}} of {name!r}: aigc has no built-in template {base!r}; see {TEMPLATES_LISTED}")
        return parse_cached(path, "builtin")
    try:
        return get_template(base)
    except UnknownTemplateError as exc:
        raise BadInputError(f"{{% include %}}, {{% import %}} or {{% extends %}} of {name!r}: {exc}") from None


def path_of(name: str) -> Path | None:
    """The file an include of `name` reads now (your directory's over AIGC_TEMPLATES_PATH's), or None."""
    try:
        return included(name).path
    except AigcError:
        return None


def include_cycle(template: Template, path: tuple[str, ...] = ()) -> list[str] | None:
    """The names of a loop of includes, imports or extends from `template` back to one on the way (`a -> b -> a`), or None."""
    from .template_environment import templates_named

    path = path or (template.name,)
    texts = (template.body, template.system if isinstance(template.system, str) else "")
    for name in sorted(templates_named(texts[0]) | templates_named(texts[1])):
        key = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
        if key in path:
            return [*path, key]
        try:
            cycle = include_cycle(included(name), (*path, key))
        except AigcError:
            continue
        if cycle is not None:
            return cycle
    return None


def digest(name: str) -> str:
    """A short digest of template `name` as it is now (its text, system prompt, defaults and
    variables): what tells a record made with one revision of it from one made with another."""
    import hashlib
    import json

    found = _find(name)
    parts: dict[str, str] = {}
    _add_parts(found, parts)
    parts.pop(found.name, None)
    made_of = json.dumps([found.system, found.body, found.defaults, found.variables] + ([parts] if parts else []), sort_keys=True, default=str)
    return hashlib.sha256(made_of.encode()).hexdigest()[:12]


def _add_parts(template: Template, parts: dict[str, str]) -> None:
    """Put in `parts` the text of each template `template` includes, imports or extends, and theirs (by name)."""
    from .template_environment import templates_named

    texts = (template.body, template.system if isinstance(template.system, str) else "")
    for name in sorted(templates_named(texts[0]) | templates_named(texts[1])):
        key = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
        if key not in parts and key != template.name:
            try:
                part = included(name)
            except AigcError:  # rendering says so
                continue
            parts[key] = part.body
            _add_parts(part, parts)


def check_fills(name: str, given: set[str], task: str, flag: str = "template", carries: set[str] = frozenset({"text"}), reads: dict[str, str] | None = None) -> str:
    """`name`, the template the `task` uses, or an `OptionError` (for `flag`) now, not on every input,
    when that template needs a variable the `task` does not fill with `given`, reads none of the
    variables that `carries` the input (its text would be dropped), or leaves out one of `reads`
    (variable: what it holds, e.g. translate's target language). A fabric pattern of yours or in
    AIGC_TEMPLATES_PATH that the task cannot use leaves it the template it hides (an `AigcNote` says
    so): `name` bound to that one (`TaskTemplate`). An override (yours, in AIGC_TEMPLATES_PATH or a
    plugin's) is named with its file and the way to fix it, since it may be in use with no option given."""
    template = _find(name)
    problem = _unfilled(template, given, task, carries, reads)
    if problem is None:
        return name
    if _trying.get().get(template.name) is template:
        raise _Unfit(f"{template.label} {problem}, so `aigc {task}` could not use it")
    pattern = _own_pattern(template) and not is_path(name)
    beneath = _beneath(template) if pattern else None
    if beneath is not None and _unfilled(beneath, given, task, carries, reads) is None:
        where = {"env": "AIGC_TEMPLATES_PATH's", "config": "templates_path's"}.get(template.source, "your")
        warnings.warn(f"{where} fabric pattern {name!r} is for `aigc run {name}`; `aigc {task}` keeps {whose(beneath.source, beneath.path)}", AigcNote, stacklevel=2)
        return TaskTemplate(name, beneath)
    hidden = shadowed().get(template.name) if template.source not in ("builtin", "file") else None
    if pattern and not (beneath is not None and beneath.source in OWN and beneath.generator in (None, task)):
        hidden = None  # beneath it, another task's template or one not yours to fix: the flag named a template not made for this task
    if hidden:
        raise BadInputError(f"{template.label}, in {template.path}, {problem}, so {task} cannot use it; {_way_out(template.name, template.source, hidden[-1], pattern)}")
    raise OptionError(flag, f"names {template.label}, which {problem}; give a template made for {task}")


def _unfilled(template: Template, given: set[str], task: str, carries: set[str], reads: dict[str, str] | None) -> str | None:
    """Why the `task` cannot use `template` (as `check_fills` says), or None."""
    missing = [v for v in template.required if v not in given]
    if missing:
        return f"needs {', '.join(missing)}, and {task} fills only {', '.join(sorted(given))}"
    if not template.names_used & carries:
        return f"never reads {' or '.join(sorted(carries))}, where {task} puts its input"
    if unread := [f"{variable} ({what})" for variable, what in (reads or {}).items() if variable not in template.names_used]:
        return f"never reads {', '.join(unread)}"
    return None


def warn_unread(name: str, given: dict[str, tuple[str, Any]], task: str) -> None:
    """An `AigcWarning` for each option given a value of its own (not its default) that the template
    `name` a `task` uses never reads: `{variable: (option, value)}`. An override that leaves out
    a variable the built-in reads (`max_words`) would drop that option without a word."""
    template = _find(name)
    for variable, (flag, value) in given.items():
        if variable not in template.names_used:
            warnings.warn(
                f"{template.label} ({template.path}) never reads {{{{ {variable} }}}}, so `{task}` does not tell the model {option(flag, value)}; "
                f"add {{{{ {variable} }}}} where it goes in the template, or leave the option out",
                AigcWarning,
                stacklevel=3,
            )


CHECKED = {"classify": "classify", "headline": "headline", "summarize": "summarize", "summarize-chunk": "summarize", "translate": "translate"}
"""The templates the built-in tasks use by default, which they take through `check_fills`: template name -> task."""


def kept_by_task(template: Template) -> tuple[str, Template] | None:
    """(the task, the template it keeps) where `template` is a fabric pattern of yours or in
    AIGC_TEMPLATES_PATH named as a template a built-in task uses (`CHECKED`), which leaves that task the
    template beneath it as `check_fills` does, else None. Other tasks (`aigc chat`, a plugin's) use the pattern."""
    task = CHECKED.get(template.name)
    if task is None or not _own_pattern(template):
        return None
    beneath = _beneath(template)
    return (task, beneath) if beneath is not None else None


def _own_pattern(template: Template) -> bool:
    """Whether `template` is a fabric pattern of yours or in AIGC_TEMPLATES_PATH (`NAME/system.md`)."""
    return template.path.name == PATTERN and template.source in OWN


def _beneath(template: Template) -> Template | None:
    """The template of the same name that `template` hides, if any."""
    return scan(template.name, passing=template.path)[0].get(template.name)


class TaskTemplate(str):
    """A template name as a task uses it: bound to the template a fabric pattern of that name hides
    (`check_fills`), which `get_template` then gives; it is the name still, in JSON and records."""

    template: Template

    def __new__(cls, name: str, template: Template) -> TaskTemplate:
        bound = super().__new__(cls, name)
        bound.template = template
        return bound

    def __reduce__(self):
        """Copied and pickled (options deep-copied, sent to a process pool) with its template."""
        return TaskTemplate, (str(self), self.template)


class _Unfit(BadInputError):
    """A template being saved that a task it is for could not use."""


_trying: ContextVar[dict[str, Template]] = ContextVar("aigc_template_trying", default={})  # name -> a draft looked up by that name


def check_tasks(template: Template) -> None:
    """Make each generator's options that would use `template` (by default, as an override of the
    template it uses, or as its front matter's `generator:`) with it in place: a task that could not
    use it is a `BadInputError`, as the command would give, but at once."""
    from .generators.base import registered_generators, template_options

    token = _trying.set({template.name: template})
    try:
        for task, (_, cls) in registered_generators().items():
            for f in dataclasses.fields(cls.Options):
                if f.name in template_options(cls.Options) and (f.default == template.name or (task == template.generator and f.name == "template")):
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
    if isinstance(name, TaskTemplate):
        return name.template
    if is_path(name):
        path = Path(name).expanduser()
        if not os.path.isfile(path):  # os.path: False (not an OSError) for a name too long
            if path.stem in scan()[0] and path.name == name:  # `aigc templates new x.j2` made template x
                raise UnknownTemplateError(f"no template file {name} here; the template {path.stem!r} is named without .j2: {path.stem}")
            raise UnknownTemplateError(f"no template file {name}; give an existing .j2 file, or a template name ({TEMPLATES_LISTED})")
        return parse_cached(path.resolve(), "file")
    if name in _trying.get():
        return _trying.get()[name]
    found, broken = scan(name)  # a command reads the template it uses, not every one
    if name in found:
        return found[name]
    if name in broken:
        raise broken[name]
    skipped = _skipped(name)
    if skipped is not None:
        raise skipped
    if not builtin_dir().is_dir():
        raise IncompleteInstallError(f"{BUILTIN_MISSING.format(builtin_dir())}; {reinstall_advice()}")
    public = f"unknown template {name!r}"  # what a server's client is told: no names of the operator's templates, nor of files
    if os.path.isfile(name + SUFFIX):  # a template file someone shared, saved here
        raise UnknownTemplateError(f"{public}; to use the file {name}{SUFFIX} here, name it as a path: ./{name}{SUFFIX} (or copy it to {user_dir()} to use it by name)").for_clients(public)
    close = difflib.get_close_matches(name, list(scan()[0]), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownTemplateError(f"{public}; {hint}see {TEMPLATES_LISTED} for all of them").for_clients(public)


def _skipped(name: str) -> UnknownTemplateError | None:
    """Why there is no template `name` where a plugin has one that is skipped (it cannot be read), else None."""
    for source, directory in template_dirs():
        if source in OVERRIDING or not directory.is_dir():
            continue
        for path in template_files(directory):
            if template_name(path) == name:
                try:
                    parse_cached(path, source)
                except BadInputError as exc:
                    return UnknownTemplateError(f"template {name!r} of plugin {source!r} is skipped: {exc}")
                return None  # of two plugins' templates of one name, the first is the one
    return None


def _render_text(template: Template, text: str, values: dict[str, Any], first_line: int) -> str:
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError

    try:
        return render_bounded(compile_text(environment(), text), values).strip()
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
    except RecursionError as exc:
        cycle = include_cycle(template)
        if cycle is None:
            raise BadInputError(f"{template.label} failed while rendering: {type(exc).__name__}: {exc}") from None
        own = len(cycle) == 2 and (builtin_dir() / f"{cycle[0]}{SUFFIX}").is_file()  # an override of a built-in naming itself
        way = f'to build on aigc\'s own {cycle[0]!r}, name it {BUILTIN}{cycle[0]}: {{% extends "{BUILTIN}{cycle[0]}" %}}' if own else "take one include, import or extends out of the loop"
        raise BadInputError(f"{template.label} includes itself ({' -> '.join(cycle)}), which never ends; {way} ({template.path})") from None
    except Exception as exc:  # the template's own expression failed: {{ 1 / 0 }}, range(10**9)
        raise BadInputError(f"{template.label} failed while rendering: {type(exc).__name__}: {exc}") from exc


class Message(str):
    """A rendered user message: the text it is, and the text it was filled with (`subject`, what the
    prompt is about): its template's `input`, else the first declared variable its text reads that
    holds text (summarize's `text`, headline's `topic` or `article`). The model `echo` answers with
    it; kept on the message itself, so nothing is kept for other engines, and its text changed or
    made anew (`str(message)`, JSON read back) is plain text again."""

    subject: str | None

    def __new__(cls, text: str, subject: str | None = None) -> Message:
        message = super().__new__(cls, text)
        message.subject = subject
        return message


def _subject(template: Template, values: dict[str, Any]) -> str | None:
    names = ["input"] + [v["name"] for v in template.variables]
    found = next((values[n] for n in names if isinstance(values.get(n), str) and values[n].strip() and n in template.names_used), None)
    return None if found is None else found.strip()


def render(template: Template | str, variables: dict[str, Any] | None = None, system: str | None = None, subject: str | None = None) -> Rendered:
    """Render a template into chat messages. `system` (taken as it is, not as a template) overrides
    the template's own system prompt; `subject` says what the message is about (`Message.subject`,
    what the model `echo` answers with) where that is not the text it was filled with."""
    if isinstance(template, str):
        template = get_template(template)
    values = _values(template, variables)
    missing = [name for name in template.required if name not in values]
    if missing:
        names = ", ".join(v["name"] for v in template.variables)
        give = " ".join(option("variables", f"{name}=...") for name in missing)
        literal = [name for name in missing if name != "input"] if template.path.name == PATTERN else []
        as_text = f"; or, where {' '.join(f'{{{{{name}}}}}' for name in literal)} is text to send as written, give {option('no_variable_replacement')}" if literal else ""
        raise BadInputError(f"{template.label} needs {', '.join(missing)}: give {'it' if len(missing) == 1 else 'them'} with {give} (its variables: {names}){as_text}")
    messages = render_system(template, variables, system)
    if template.body.strip():
        user, about = _render_text(template, template.body, values, template.body_line), subject or _subject(template, values)
        if not user:
            _refuse_empty(template, variables)
    elif isinstance(values.get("input"), str):  # a system prompt alone (as fabric's patterns): the input is the message, and what it is about
        user, about = values["input"], subject
    else:
        raise BadInputError(f"{template.label} is a system prompt with no message: it answers the text given as its input{_pattern_over(template)}")
    messages.append({"role": "user", "content": Message(user, about)})
    return Rendered(messages=messages, defaults=dict(template.defaults))


def _refuse_empty(template: Template, variables: dict[str, Any] | None) -> None:
    """A message rendered empty (a branch that left the input out) is not sent, as an empty prompt is not."""
    given = ", ".join(f"{k}={v if len(str(v)) <= 30 else str(v)[:27] + '...'!r}" for k, v in (variables or {}).items() if v is not None)
    raise BadInputError(
        f"{template.label} renders an empty message with {given or 'no variables given'}, so there is nothing to send; "
        f"give the variables its text needs there, or fix its conditions ({template.path}:{template.body_line})"
    )


def _pattern_over(template: Template) -> str:
    """Where `template` is a fabric pattern of yours or in AIGC_TEMPLATES_PATH hiding a template of its name
    (a plugin task's, rendered with its variables and no input), how to use either; else ""."""
    hidden = shadowed().get(template.name) if _own_pattern(template) else None
    if not hidden:
        return ""
    return f"; it is a fabric pattern, over {whose(hidden[-1])}: run it with `aigc run {template.name}`, or move {template.path.parent} away to use {whose(hidden[-1])}"


def literal_values(template: Template, given: dict[str, Any]) -> dict[str, Any]:
    """The values that send each of a fabric pattern's placeholders but `{{input}}` as written
    (`{{Hostname}}` as `{{Hostname}}`), as fabric's --no-variable-replacement does: the input is
    still put in place. A template that is no pattern, or a value `given` for one of them, is an
    `OptionError`: neither has a placeholder to keep."""
    if template.path.name != PATTERN:
        raise OptionError("no_variable_replacement", f"is for fabric patterns (NAME/{PATTERN}); {template.label} is a jinja template, whose variables are its own: give them with {option('variables', 'name=...')}")
    values = {v["name"]: f"{{{{{v['name']}}}}}" for v in template.variables if v["name"] != "input"}
    given_too = sorted(name for name in values if name in given and given[name] != values[name])
    if given_too:
        raise OptionError("no_variable_replacement", f"sends {', '.join(values[name] for name in given_too)} as written, so {' '.join(option('variables', name + '=...') for name in given_too)} would be dropped; give one or the other")
    return values


def render_system(template: Template, variables: dict[str, Any] | None = None, system: str | None = None) -> list[dict]:
    """The system message `render` starts with ([] for none), without rendering the template's text
    (which may need the message): the template's own, or `system` in its place ("" for none), which
    must not drop a variable given that only the template's own reads."""
    if system is None:
        return [{"role": "system", "content": _render_text(template, template.system, _values(template, variables), template.system_line)}] if template.system else []
    if isinstance(template.system, str):
        only_there = sorted(k for k, v in (variables or {}).items() if v is not None and k in variables_read(template.system) - variables_read(template.body))
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
