"""Reading one template file: its YAML front matter, the `Template` it makes, and the checks on its text."""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import AigcWarning, BadInputError, did_you_mean, option
from .hosts import loopback
from .template_environment import compile_text, environment, templates_named, variables_read

SUFFIX = ".j2"
PATTERN = "system.md"  # fabric's pattern: a directory NAME/ holding its system prompt, plain Markdown
PATTERN_USER = "user.md"  # beside it, optional: text put before the input
OVERRIDING = ("builtin", "user", "env", "config")  # sources whose templates override earlier ones of the same name
OWN = ("user", "env", "config")  # sources of the user's templates: their own directory, AIGC_TEMPLATES_PATH's and templates_path's (config.toml)


def foreign_host(model: str) -> str | None:
    """The host a model named by URL (`openai:URL#MODEL`) sends the text, and the API key, to where
    that is neither this machine nor OpenAI's, else None: a file someone shared (a template's
    `model:`, a saved session's) may not pick such a server on its own."""
    model = model.strip()
    try:
        host = urlsplit(model[len("openai:") :].partition("#")[0]).hostname if model.startswith("openai:") else None
    except ValueError:  # no URL (`[::1` unclosed): loading the model says so
        return None
    return None if host is None or host == "api.openai.com" or loopback(host) else host


_following: ContextVar[frozenset[str]] = ContextVar("aigc_following_includes", default=frozenset())  # templates whose includes are being read


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str  # plugin name, "builtin", "user", "env" (AIGC_TEMPLATES_PATH), "config" (templates_path in config.toml) or "file"
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
    unknown_variable_keys: tuple[str, ...] = ()  # what is said of each key of a `variables:` entry aigc does not read, warned of as unknown_keys
    fabric_calls: tuple[str, ...] = ()  # a pattern's `{{plugin:...}}`, `{{ext:...}}`: sent as written, warned of when it is used
    once: bool = False  # its message is the whole pattern, input in place: a conversation's first; later turns are the text alone
    late_front_matter: int = 0  # the line of a `---` block of front-matter keys after the text's start: sent as text, warned of when it is used

    @property
    def label(self) -> str:
        """How errors name the template: with its plugin when a plugin's directory holds it."""
        return f"template {self.name!r}" if self.source in (*OVERRIDING, "file") else f"template {self.name!r} (plugin {self.source!r})"

    def model_to_run(self) -> str | None:
        """Its `model:`, which may name a server by URL (`openai:URL`) only on this machine or OpenAI's:
        a template someone shared must not send your text, and your API key, to a server of theirs."""
        model = (self.model or "").strip()
        host = foreign_host(model)
        if host is None:
            return self.model
        raise BadInputError(
            f"model: in {self.label} ({self.path}) is a server on {host}; a template may not send your text and API key "
            f"elsewhere on its own: to use that server, give -m {shlex.quote(model)} yourself (or `aigc models alias NAME {shlex.quote(model)}` and model: NAME)"
        )

    @property
    def declared(self) -> set[str]:
        """The variables it declares (and `input`, for a system prompt alone: the input is the message)."""
        return {v["name"] for v in self.variables} | ({"input"} if not self.body.strip() else set())

    @property
    def names_used(self) -> set[str]:
        """The variables its text and system prompt read, and the templates they include (each once:
        a loop of includes, or a part read while its includer is, is followed no further)."""
        from .errors import AigcError
        from .templates import included

        texts = [self.body, self.system if isinstance(self.system, str) else ""]
        used = set().union(*map(variables_read, texts))
        seen = _following.get() | {self.name}
        for name in sorted(set().union(*map(templates_named, texts))):
            key = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
            if key in seen:
                continue
            token = _following.set(seen | {key})
            try:
                used |= included(name).names_used
            except AigcError:  # one that cannot be had: rendering says so
                continue
            finally:
                _following.reset(token)
        return used

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

    def check_filled(self, values: dict[str, Any], given_as: str = "the variable ") -> None:
        """A required variable given empty (`--var input=`, a row's empty cell) would make an empty
        prompt: an error. A template that declares no variables needs its input."""
        for name in self.required or ([] if self.variables else ["input"]):
            if name in values and (values[name] is None or isinstance(values[name], str) and not values[name].strip()):
                raise BadInputError(f"{given_as}{name} is empty; {self.label} needs it, so give it some text")


FRONT_MATTER = ("description", "system", "defaults", "variables", "generator", "model")
_LEAD = re.compile(r"(?:[ \t]*\n|[ \t]*\{#.*?#\}[ \t]*\n)*", re.S)  # blank lines and {# comments #} the front matter may follow
_OPEN = re.compile(r"---[ \t]*\n")  # the line opening the front matter (trailing blanks allowed, as by Jekyll)
_LATE = re.compile(rf"^---[ \t]*\n(?:(?!---[ \t]*$).*\n)*?(?:{'|'.join(FRONT_MATTER)})[ \t]*:.*\n(?:.*\n)*?---[ \t]*$", re.M)  # a front matter after other text
_CLOSE = re.compile(r"\n---[ \t]*(?:\n|\Z)")  # the line that closes the front matter, the file's last one too


def template_name(path: Path) -> str:
    """The name a template file gives: NAME of NAME.j2, or of a pattern's NAME/system.md."""
    return path.parent.name if path.name == PATTERN else path.name[: -len(SUFFIX)]


def template_files(directory: Path) -> list[Path]:
    """A directory's templates, by name: each NAME.j2, and each fabric pattern NAME/system.md with no NAME.j2 beside it."""
    files = list(directory.glob(f"*{SUFFIX}"))
    named = {template_name(path) for path in files}
    files += [path for path in directory.glob(f"*/{PATTERN}") if path.parent.name not in named]
    return sorted(files, key=template_name)


_DOCUMENTS = re.compile(r"(?:readme|licen[cs]e|copying|notice|authors|changelog|contributing)(?:[.-].*)?|.*\.md", re.I)  # a repository's own, fabric's pattern_explanations.md


def other_files(directory: Path) -> list[Path]:
    """What a directory holds that is neither a template nor a pattern (hidden files, editor backups
    and the documents a shared repository or fabric's patterns keep beside them aside)."""
    found = set(template_files(directory))
    return sorted(
        path
        for path in directory.iterdir()
        if path not in found and not path.name.startswith(".") and not path.name.endswith("~") and not (path / PATTERN).is_file()
        and not (path.is_file() and _DOCUMENTS.fullmatch(path.name))
        and (path.is_file() or any(path.glob(f"*/{PATTERN}")))  # a directory: only one of patterns, a level too deep
    )


def parse(path: Path, source: str) -> Template:
    """Read one template file; bad front matter is an error naming the file and line, an unknown
    front-matter key a warning."""
    template = _read(path, source)
    warn_unused(template)
    return template


def warn_unused(template: Template) -> None:
    """An `AigcWarning` for each front-matter key aigc does not read (a typo, `sytem:`, drops what it
    sets), for a front matter after the text's start (sent as text), and each of fabric's template
    plugin calls in a pattern, which is sent as written."""
    for key in template.unknown_keys:
        warnings.warn(f"{template.path}: unknown front-matter key {key!r} is ignored; {_key_hint(key)}", AigcWarning)
    for said in template.unknown_variable_keys:
        warnings.warn(f"{template.path}: {said}", AigcWarning)
    if template.late_front_matter:
        warnings.warn(
            f"{template.path}:{template.late_front_matter}: this --- block of front-matter keys comes after text, so it is sent to the model "
            f"as part of the prompt and its settings are not used; move it to the top of the file (only blank lines and {{# comments #}} "
            f"may come before it) and the text above it below it",
            AigcWarning,
        )
    if template.fabric_calls:
        warnings.warn(
            f"{template.path}: {', '.join(template.fabric_calls)} is sent to the model as written: aigc does not run fabric's "
            f"template plugins and extensions (a pattern someone shared could read your files, environment and network with them); "
            f"write the text it stands for in its place",
            AigcWarning,
        )


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

    if path.name == PATTERN:
        return _read_pattern(path, source)
    text = read_source(path)
    meta: dict[str, Any] = {}
    body, body_line, system_line = text, 1, 1
    lead = text[: _LEAD.match(text).end()].count("\n")  # lines before the front matter
    opening = _OPEN.match(text, _LEAD.match(text).end())
    if opening and lead and not _is_front_matter(text[opening.end() :]):  # a Markdown rule after blank lines or a comment: text
        opening = None
    if opening:
        closing = _CLOSE.search(text, opening.end() - 1)
        if closing is None:
            raise BadInputError(f"{path}:{lead + 1}: front matter opened with '---' is never closed")
        loader = yaml.SafeLoader(text[opening.end() : closing.start()])
        try:
            node = loader.get_single_node()  # as yaml.safe_load, keeping the node for where `system:` is
            meta = (loader.construct_document(node) if node is not None else None) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", 0) + lead + 2
            raise BadInputError(f"{path}:{line}: bad front matter: {getattr(exc, 'problem', exc)}") from exc
        finally:
            loader.dispose()
        if not isinstance(meta, dict):
            raise BadInputError(f"{path}:{lead + 2}: front matter must be a mapping of keys to values")
        body = text[closing.end() :]
        body_line = text[: closing.end()].count("\n") + 1
        system_line = _system_line(node) + lead
    late = 0 if opening else _check_no_late_front_matter(path, text)
    variables = meta.get("variables") or []
    if not isinstance(variables, list) or not all(isinstance(v, dict) and "name" in v for v in variables):
        raise BadInputError(f"{path}: 'variables' must be a list of {{name: ..., description: ...}} entries")
    unknown_variable_keys = tuple(said for variable in variables for said in _unknown_variable_keys(path, variable))
    variables = [{**v, "default": ""} if "default" in v and v["default"] is None else v for v in variables]  # `default:` left empty: no text, not "None"
    defaults = _read_defaults(path, meta.get("defaults") or {})
    description = meta.get("description")
    if isinstance(description, (list, dict)):  # listed as one line: a list or mapping (`description: [a, b]`) would show as Python's repr
        raise BadInputError(f"{path}: 'description' must be one line of text, got a {'list' if isinstance(description, list) else 'mapping'}; quote it if it holds [ ] {{ }} or a colon")
    model = meta.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise BadInputError(f"{path}: 'model' must be a model name, as -m takes (an alias such as smollm2, a hub id, a path), got {model!r}")
    template = Template(
        name=path.name[: -len(SUFFIX)],
        path=path,
        source=source,
        body=body,
        description="" if description is None else str(description),
        system=meta.get("system"),
        defaults=defaults,
        variables=variables,
        generator=meta.get("generator"),
        model=model,
        body_line=body_line,
        system_line=system_line,
        unknown_keys=tuple(sorted(map(str, set(meta) - set(FRONT_MATTER)))),
        unknown_variable_keys=unknown_variable_keys,
        late_front_matter=late,
    )
    _check_syntax(template)
    _check_declared(template)
    _check_generator(template)
    return template


VARIABLE_KEYS = ("name", "description", "default", "required")


def _unknown_variable_keys(path: Path, variable: dict) -> list[str]:
    """What to warn of each key of a `variables:` entry aigc does not read (`type:`, `example:`, a
    key another tool reads); one close to `default` or `required` is an error: a misspelt `default:`
    would make the variable required, a misspelt `required:` drop what it says."""
    said = []
    for key in sorted(set(map(str, variable)) - set(VARIABLE_KEYS)):
        close = difflib.get_close_matches(key.lower(), ("default", "required"), n=1)
        if close:
            raise BadInputError(f"{path}: variable {variable['name']!r} has an unknown key {key!r}; did you mean {close[0]}?")
        hint = "its type is its default:'s (a number, true or false, a list)" if key == "type" else f"known: {', '.join(VARIABLE_KEYS)}"
        said.append(f"variable {variable['name']!r} has an unknown key {key!r}, which is ignored; {hint}")
    return said


def _is_front_matter(rest: str) -> bool:
    """Whether `rest`, the text after a `---` that follows blank lines or {# comments #}, starts a
    front matter: it closes, and holds a mapping of front-matter keys, or YAML that fails to parse with
    a line setting one (`system:`); else the `---` is a Markdown rule in the text (as before the
    front matter could follow anything)."""
    import yaml

    closing = _CLOSE.search("\n" + rest)
    if closing is None:
        return False
    block = rest[: closing.start()]
    try:
        meta = yaml.safe_load(block)
    except yaml.YAMLError:
        return re.search(rf"^(?:{'|'.join(FRONT_MATTER)})[ \t]*:", block, re.M) is not None
    return isinstance(meta, dict) and bool(meta) and set(map(str, meta)) <= set(FRONT_MATTER)


_HEADER = re.compile(r"(?:[ \t]*\n|#[^\n]*\n|[ \t]*\{#.*?#\}[ \t]*\n)*\Z", re.S)  # blank lines, `# ...` lines and {# comments #}


def _check_no_late_front_matter(path: Path, text: str) -> int:
    """A front matter after `# ...` lines (`templates show`'s old header, an editor's first line)
    would be sent as the prompt, its settings lost: an error. After other text (prose, an example
    transcript between two rules) the dashed block is the text's own, sent as written; where it holds
    front-matter keys alone (a front matter put below a first line of prose) its line is returned,
    for a warning when the template is used (0: none)."""
    late = _LATE.search(text)
    before = text[: late.start()] if late else ""
    if late and re.search(r"^#", before, re.M) and _HEADER.match(before):
        line = before.count("\n") + 1
        raise BadInputError(
            f"{path}:{line}: the front matter must begin the file (blank lines and {{# comments #}} may come before it), "
            f"or it is sent as the prompt; move the {line - 1} line{'s' if line != 2 else ''} above it below it, or into a {{# comment #}}"
        )
    for rule in re.finditer(r"^---[ \t]*\n", text, re.M):
        if text[: rule.start()].strip() and _is_front_matter(text[rule.end() :]):
            return text[: rule.start()].count("\n") + 1
    return 0


def _read_pattern(path: Path, source: str) -> Template:
    """A fabric pattern as the template NAME. Its text is plain, not jinja: only fabric's placeholders
    are filled, `{{input}}` with the input and `{{name}}` with a variable given (`--var name=value`,
    fabric's `-v=name:value`); every other brace stays as written. Where it has no `{{input}}` its
    system.md is the system prompt and the input the message, after its user.md's text; where
    user.md has it, that is the message; where only system.md has it, the whole pattern, filled, is
    the one message (fabric sends the input once, inside the pattern: see `_pattern_parts`), and in a
    conversation the first: later turns are the text alone (`once`), not the pattern again."""
    user = path.with_name(PATTERN_USER)
    system, before = read_source(path), read_source(user).strip() if user.is_file() else ""
    system_text, body, where = _pattern_parts(system, before)
    names = [name for text in (system, before) for name in placeholders(text)]
    variables = [{"name": "input", "description": "the text the pattern works on", "required": True}] if body or names else []
    variables += [{"name": name, "description": f"fabric's {{{{{name}}}}}", "required": True} for name in dict.fromkeys(names) if name != "input"]
    return Template(
        name=template_name(path),
        path=path,
        source=source,
        body=body,
        description=f"fabric pattern ({where}){_variables_said(variables)}",
        system=system_text,
        variables=variables,
        fabric_calls=tuple(dict.fromkeys(FABRIC_CALL.findall(system + before))),
        once=system_text is None,
    )


def _pattern_parts(system: str, before: str) -> tuple[str | None, str, str]:
    """A pattern's (system prompt, message template, where the input goes). Fabric puts the input
    in place of each `{{input}}`, or after the text, and sends the pattern, input and all, as one
    message (the system one, or the user one with --raw); here the input stays a message of its own
    (user.md's text before it) unless the pattern places it: then the pattern is the user message,
    which every chat template takes, and the input is not sent twice."""
    if "input" in placeholders(before):
        return fabric_text(system), fabric_text(before), f"{PATTERN}, {PATTERN_USER} with {{{{input}}}}"
    if "input" in placeholders(system):
        lead = f"{fabric_text(before)}\n\n" if before else ""
        return None, fabric_text(system, input_lead=lead), f"{PATTERN} with {{{{input}}}}: one message"
    if before:
        return fabric_text(system), f"{fabric_text(before)}\n\n{{{{ input }}}}", f"{PATTERN}, {PATTERN_USER} before the input"
    return fabric_text(system), "", PATTERN


def _variables_said(variables: list[dict[str, Any]]) -> str:
    """The `--var`s a pattern needs, for its description."""
    names = [v["name"] for v in variables if v["name"] != "input"]
    return f"; --var {', '.join(names)}" if names else ""


PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")  # fabric's {{input}} and {{name}}: no spaces inside
FABRIC_CALL = re.compile(r"\{\{(?:plugin|ext):[^{}]*\}\}")  # fabric's template plugins and extensions: never run here


def _placeholders(text: str) -> list[re.Match]:
    """Where a pattern's text names a variable as fabric writes it (`{{input}}`, `{{lang_code}}`);
    a name jinja reads as no variable (`{{true}}`, `{{range}}`, a plugin's global) stays text."""
    env = environment()
    return [m for m in PLACEHOLDER.finditer(text) if _is_variable(env, m[1])]


@lru_cache(maxsize=1024)
def _is_variable(env: Any, name: str) -> bool:
    """Whether `env` reads `{{ name }}` as that variable: parsed once per name and environment (a
    pattern repeats its few names; an environment built for a plugin registered since, whose globals
    may take a name, asks anew)."""
    from jinja2 import TemplateSyntaxError, meta

    try:
        return meta.find_undeclared_variables(env.parse(f"{{{{ {name} }}}}")) == {name}
    except TemplateSyntaxError:  # {{not}}
        return False


def placeholders(text: str) -> list[str]:
    """The variables a pattern's text names, in order."""
    return [m[1] for m in _placeholders(text)]


def fabric_text(text: str, input_lead: str = "") -> str:
    """A pattern's text as template text: each placeholder reads its variable (`{{input}}` after
    `input_lead`), every other character renders as written."""
    pieces, start = [], 0
    for m in _placeholders(text):
        pieces += [literal(text[start : m.start()]), (input_lead if m[1] == "input" else "") + f"{{{{ {m[1]} }}}}"]
        start = m.end()
    return "".join(pieces) + literal(text[start:])


def literal(text: str) -> str:
    """Template text that renders as `text` itself: inside `{% raw %}` where it holds a `{`, or, where it
    would end that block itself, with each `{` written as a jinja expression, so none opens a tag."""
    if "{" not in text:
        return text
    if re.search(r"\{%[-+]?\s*endraw\b", text):
        return text.replace("{", "{{ '{' }}")
    return f"{{% raw %}}{text}{{% endraw %}}"


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
                compile_text(environment(), text)
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


_parsed: dict[tuple[Path, str], tuple[tuple[int, ...], Template]] = {}


def parse_cached(path: Path, source: str) -> Template:
    """`parse`, done again only when the file changes (YAML parsing dominates a lookup by name)."""
    try:
        stat = path.stat()
    except OSError:
        return _read(path, source)  # gone since the listing: _read says so
    stamp = (stat.st_mtime_ns, stat.st_size)
    if path.name == PATTERN:  # its user.md is read too
        user = path.with_name(PATTERN_USER)
        stamp += (user.stat().st_mtime_ns, user.stat().st_size) if user.is_file() else ()
    cached = _parsed.get((path, source))
    if cached is None or cached[0] != stamp:
        cached = _parsed[path, source] = (stamp, _read(path, source))
    return cached[1]
