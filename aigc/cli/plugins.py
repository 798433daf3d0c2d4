"""`aigc plugins [--json] [--all]`, `aigc plugins install NAME|PATH ...`, `aigc plugins uninstall NAME ...`."""

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Annotated

import typer

from .. import plugins, ui
from ..errors import AigcError, BadInputError
from ..textio import readable_json
from .options import misplaced

plugins_app = typer.Typer(
    help="List installed plugins; install or uninstall them in the environment aigc runs in.",
    invoke_without_command=True,
)
PROTECTED = ("aigc", "torch", "pip", "setuptools", "wheel")  # aigc runs pip (plugins install, the embedded model's wheel)


@plugins_app.callback()
def list_plugins(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Include aigc's built-in plugins.")] = False,
) -> None:
    """Installed plugins: version, hooks, what each registered, and failures."""
    if ctx.invoked_subcommand is None:
        _show(as_json, show_all)
    elif as_json or show_all:
        raise BadInputError(misplaced(ctx, "plugins", [flag for flag, given in (("--json", as_json), ("--all", show_all)) if given]))


@plugins_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Include aigc's built-in plugins.")] = False,
) -> None:
    """Installed plugins (the same as `aigc plugins`)."""
    _show(as_json, show_all)


def _show(as_json: bool, show_all: bool) -> None:
    allow = os.environ.get("AIGC_LOAD_PLUGINS")
    if allow is not None and not allow.strip(" ,"):
        modules = " (AIGC_PLUGINS's modules are)" if os.environ.get("AIGC_PLUGINS", "").strip(" ,") else ""
        ui.info(f"AIGC_LOAD_PLUGINS is empty: no installed plugin is loaded{modules} (unset it to load all)")
    elif allow is not None:
        ui.info(f"AIGC_LOAD_PLUGINS={allow!r}: only the plugins it names are loaded (unset it to load all)")
    info = plugins.describe(include_builtins=show_all)
    if as_json:
        ui.result(json.dumps(readable_json(info), indent=2))  # a path in no UTF-8 with U+FFFD
        return
    if not info["plugins"]:
        none = "No plugins loaded" if allow is not None else "No plugins installed. `aigc plugins install NAME` adds one"
        ui.info(f"{none}; `aigc plugins --all` shows the built-ins.")
        return
    ui.result("\n".join(_lines(info)))


def _lines(info: dict) -> list[str]:
    lines: list[str] = []
    for row in info["plugins"]:
        where = f" ({row['distribution']})" if row["distribution"] and row["distribution"] != row["name"] else " (AIGC_PLUGINS)" if row["aigc_plugins"] else ""
        state = "" if row["loaded"] else "  [not loaded]"
        lines.append(f"{row['name']} {row['version'] or '?'}{where}{state}")
        if row["hooks"]:
            lines.append(f"  hooks: {', '.join(row['hooks'])}")
        for kind, items in row["registered"].items():
            if kind == "template_dirs":  # an optional directory may not be there
                items = [item if Path(item).is_dir() else f"{item} (not there)" for item in items]
            if kind == "templates":  # one of its templates in place of aigc's own of that name
                items = [f"{item} (replaces the built-in one)" if item in row["replaces_builtin_templates"] else item for item in items]
            lines.append(f"  {kind.replace('_', ' ')}: {', '.join(items)}")
        for failure in row["failures"]:
            if failure["stage"] == plugins.HOOKS_STAGE:
                lines.append(f"  loaded, but {failure['error'].removeprefix('PluginError: ')}")
            else:
                lines.append(f"  failed in {failure['stage']}: {failure['error']}")
    return lines


def _constraints() -> Path:
    """A constraints file pinning the installed torch and aigc, so a plugin never swaps them."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    handle = tempfile.NamedTemporaryFile("w", prefix="aigc-constraints-", suffix=".txt", delete=False)
    with handle:
        handle.write("\n".join(pins) + "\n")
    return Path(handle.name)


def _pip(args: list[str]) -> int:
    """Run pip in the environment aigc runs in; its output goes to stderr (stdout is for results)."""
    command = [sys.executable, "-m", "pip", *args]
    ui.debug(" ".join(command))
    try:
        out = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        out = None
    return subprocess.run(command, stdout=out).returncode


@plugins_app.command()
def install(
    targets: Annotated[list[str], typer.Argument(metavar="NAME|PATH", help="Package names (PyPI), or paths to plugin packages.")],
    editable: Annotated[bool, typer.Option("--editable", "-e", help="Install local paths in editable mode.")] = False,
    upgrade: Annotated[bool, typer.Option("--upgrade", "-U", help="Upgrade if already installed.")] = False,
) -> None:
    """Install plugins into aigc's environment, keeping the installed torch and aigc as they are."""
    args, names = ["install"], []
    if upgrade:
        args.append("--upgrade")
    for target in targets:
        path = Path(target).expanduser()
        names.append(_package_name(target, path))
        if path.exists():
            if not (path / "pyproject.toml").is_file() and not (path / "setup.py").is_file() and path.is_dir():
                raise BadInputError(f"{target} is a directory without pyproject.toml or setup.py; give a plugin package")
            args += ["-e", str(path.resolve())] if editable else [str(path.resolve())]
        elif "://" not in target and (target.startswith(("/", "./", "../", "~")) or target.endswith((".whl", ".tar.gz", ".zip"))):
            raise BadInputError(f"no such file or directory: {target}; give a plugin package's path or a package name")
        elif target.lower() in PROTECTED:
            raise BadInputError(f"{target} is not a plugin; aigc keeps the installed {target} as it is")
        else:
            args.append(target)
    constraints = _constraints()
    try:
        code = _pip([*args, "-c", str(constraints)])
    finally:
        os.unlink(constraints)
    if code:
        raise AigcError(f"pip could not install {', '.join(targets)} (exit {code}); its messages above say why")
    importlib.invalidate_caches()  # pip installed in another process: find its new distributions
    for name in filter(None, names):
        if not plugins.plugins_of(name):
            ui.warn(f"{name} has no `aigc` entry point, so aigc loads nothing from it; a plugin declares one under [project.entry-points.aigc] (see docs/plugins.md)")


def _package_name(target: str, path: Path) -> str | None:
    """The distribution a target installs, where it can be told without building it: a
    requirement's name, a wheel's, or a package directory's pyproject.toml name."""
    if path.is_dir():
        from ..config import parse_toml

        try:
            return parse_toml((path / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
        except (OSError, ValueError, KeyError, TypeError):  # setup.py only, or a dynamic name
            return None
    if path.suffix == ".whl":
        return path.name.split("-")[0]
    if path.exists() or "://" in target:
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", target)
    return match.group(0) if match else None


@plugins_app.command()
def uninstall(
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Distribution names, or plugin names as `aigc plugins` lists them.")],
) -> None:
    """Uninstall plugins from aigc's environment."""
    dists = []
    for name in names:
        if not name.strip():
            raise BadInputError("give a plugin or distribution name, as `aigc plugins` lists them")
        dist = plugins.distribution_of(name) or name
        if dist.lower() in PROTECTED:
            raise BadInputError(f"{dist} is not a plugin; uninstall it with pip if you really mean to")
        if not _installed(dist) and name in plugins.modules():
            raise BadInputError(f"plugin {name!r} is not installed: AIGC_PLUGINS loads it from PYTHONPATH; take it out of AIGC_PLUGINS to stop loading it")
        if not _installed(dist):
            raise BadInputError(f"no plugin or distribution called {name!r} is installed; `aigc plugins` lists the plugins")
        needing = _needed_by(dist)
        if not plugins.plugins_of(dist) and needing:  # typer, pip, transformers...: aigc itself may need them
            more = f" and {len(needing) - 3} more" if len(needing) > 3 else ""
            raise BadInputError(f"{dist} is not an aigc plugin, and {', '.join(needing[:3])}{more} need{'s' if len(needing) == 1 else ''} it; uninstall it with pip if you really mean to")
        dists.append(dist)
    for dist in dists:
        shipped = plugins.plugins_of(dist)
        if shipped:
            ui.info(f"removing {dist} with its plugin{'s' if len(shipped) > 1 else ''} {', '.join(shipped)}")
    code = _pip(["uninstall", "-y", *dists])
    if code:
        raise AigcError(f"pip could not uninstall {', '.join(dists)} (exit {code}); its messages above say why")
    left = [f"{dist} (in {distribution(dist).locate_file('')})" for dist in dists if _installed(dist)]
    if left:  # pip leaves what lies outside its environment (a --target directory on PYTHONPATH, say)
        raise AigcError(f"pip did not remove {', '.join(left)}: it is outside aigc's environment; delete it there, or take it off PYTHONPATH")


def _needed_by(dist: str) -> list[str]:
    """The installed distributions that require `dist`, extras left out (a package installed by
    mistake is needed by none)."""
    from importlib.metadata import distributions

    from packaging.requirements import InvalidRequirement, Requirement

    wanted = _normal(dist)
    needing = set()
    for other in distributions():
        name = other.metadata["Name"] or ""
        if _normal(name) == wanted:
            continue
        for line in other.requires or ():
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if _normal(requirement.name) == wanted and (requirement.marker is None or requirement.marker.evaluate({"extra": ""})):
                needing.add(name)
    return sorted(needing)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(dist: str) -> bool:
    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def register(app: typer.Typer) -> None:
    app.add_typer(plugins_app, name="plugins")
