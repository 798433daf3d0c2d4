"""`aigc templates import`: an llm (Simon Willison's) YAML template made into an aigc template in the user's directory."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from .errors import BadInputError
from .template_files import Template, literal, parse, read_source
from .textio import STDIN

_READ = ("system", "prompt", "defaults", "options", "model", "schema_object", "name")  # llm's keys made into aigc's (name: llm's own, dropped)
_SETTINGS = ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "frequency_penalty", "presence_penalty", "logit_bias")  # llm options aigc samples with


def import_llm_template(source: Path, name: str | None = None, *, text: str | None = None) -> Template:
    """Write the llm template `source` as `NAME.j2` in the user template directory (NAME: its file
    name's stem, or `name`), never over a file; `text`: the template itself, read elsewhere (stdin),
    `source` naming it in messages. What cannot be converted is a `BadInputError`."""
    from .template_edits import user_template_path, write_new_template

    path = user_template_path(name or source.stem)
    text = convert(_load(source, text), source)
    write_new_template(path, text, f"give another name with --name, or remove it first (aigc templates rm {path.stem})")
    try:
        return parse(path, "user")
    except BadInputError:
        path.unlink()
        raise


def _load(source: Path, text: str | None = None) -> dict[str, Any]:
    import yaml

    try:
        meta = yaml.safe_load(read_source(source) if text is None else text)
    except yaml.YAMLError as exc:
        raise BadInputError(f"{source} is no YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(meta, dict) or not (meta.get("system") or meta.get("prompt")):
        raise BadInputError(f"{source} is no llm template: one is a YAML mapping with a system: or prompt: text")
    return meta


def convert(meta: dict[str, Any], source: Path) -> str:
    """The text of the aigc template an llm template's keys make: its `$input` and `$var`s as `{{ input }}`
    and `{{ var }}`, its other text as written."""
    import yaml

    left = sorted(set(map(str, meta)) - set(_READ))
    if left:
        raise BadInputError(f"{source}: llm's {', '.join(left)} cannot be converted (aigc templates have none); take {'them' if len(left) > 1 else 'it'} out of a copy of the file and import that")
    for key in ("system", "prompt"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise BadInputError(f"{source}: {key}: must be text, got {meta[key]!r}")
    system, names = _jinja(meta.get("system") or "", source)
    body, in_body = _jinja(meta.get("prompt") or "", source)
    names |= in_body
    if body and "input" not in names:  # llm puts the input after a prompt that has no $input
        body += "\n{{ input }}"
    front: dict[str, Any] = {"description": "imported from an llm template on standard input" if str(source) == STDIN else f"imported from the llm template {source.name}"}
    if system:
        front["system"] = system
    if meta.get("model"):
        front["model"] = str(meta["model"])
    defaults = _settings(meta.get("options") or {}, source)
    if meta.get("schema_object"):
        defaults["json_schema"] = meta["schema_object"]
    if defaults:
        front["defaults"] = defaults
    given = meta.get("defaults") or {}
    if not isinstance(given, dict):
        raise BadInputError(f"{source}: defaults: must be a mapping of variable names to values, got {given!r}")
    variables = [{"name": "input", "description": "the text", **({} if "input" in names else {"default": ""})}] if body else []
    variables += [{"name": n, **({"default": str(given[n])} if n in given else {"required": True})} for n in sorted(names - {"input"})]
    if variables:
        front["variables"] = variables
    return f"---\n{yaml.dump(front, Dumper=_make_dumper(), sort_keys=False, allow_unicode=True, width=1000)}---\n{body}\n"


def _jinja(text: str, source: Path) -> tuple[str, set[str]]:
    """llm's `string.Template` text as jinja text that renders the same, and the variables it reads."""
    out, names, at = [], set(), 0
    for match in string.Template.pattern.finditer(text):
        out.append(literal(text[at : match.start()]))
        at = match.end()
        name = match["named"] or match["braced"]
        if match["escaped"] is not None:
            out.append("$")
        elif name:
            names.add(name)
            out.append(f"{{{{ {name} }}}}")
        else:  # a `$` no name follows: llm refuses it too
            line = text[: match.start()].count("\n") + 1
            raise BadInputError(f"{source}: a '$' with no variable name after it (line {line} of its text); write $$ for a dollar sign")
    out.append(literal(text[at:]))
    return "".join(out).strip(), names


def _settings(options: Any, source: Path) -> dict[str, Any]:
    """llm's `options:` as aigc's sampling defaults, where the names are the same."""
    if not isinstance(options, dict):
        raise BadInputError(f"{source}: options: must be a mapping of model options, got {options!r}")
    unknown = sorted(set(map(str, options)) - set(_SETTINGS))
    if unknown:
        raise BadInputError(f"{source}: option {', '.join(unknown)} has no aigc sampling setting to go to (those that do: {', '.join(_SETTINGS)}); take it out of a copy of the file and import that")
    return dict(options)


def _block(dumper, text: str):
    """Text of several lines as a YAML block (`|`), as one writes a system prompt by hand."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


def _make_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _block)
    return Dumper
