"""User directories and AIGC_* environment settings."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

DEFAULTS = {"text": ("AIGC_DEFAULT_MODEL", "default_model", "smollm2"), "image": ("AIGC_DEFAULT_IMAGE_MODEL", "default_image_model", "sd-turbo")}


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def home_dir() -> Path | None:
    """`AIGC_HOME` puts config, cache and data under one directory (used by tests)."""
    return _env_path("AIGC_HOME")


def _user_dir(explicit_var: str, home_part: str, xdg_var: str, fallback: str) -> Path:
    explicit = _env_path(explicit_var)
    if explicit:
        return explicit
    home = home_dir()
    if home:
        return home / home_part
    return (_env_path(xdg_var) or Path.home() / fallback) / "aigc"


def config_dir() -> Path:
    """User settings and templates: `AIGC_CONFIG_DIR`, `$AIGC_HOME/config` or `~/.config/aigc`."""
    return _user_dir("AIGC_CONFIG_DIR", "config", "XDG_CONFIG_HOME", ".config")


def settings_file() -> Path:
    """The settings file: `config.toml` in `config_dir()` (named remotes live there)."""
    return config_dir() / "config.toml"


def load_settings() -> dict:
    """The settings file's contents; {} when there is none. A file that is not TOML is a one-line error."""
    from .errors import BadInputError

    path = settings_file()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _parse_toml(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise BadInputError(f"{path} is not valid TOML ({exc}); fix or remove it") from None


def _parse_toml(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def set_setting(key: str, value: str | None) -> Path:
    """Set a top-level string setting in the settings file (None removes it), keeping the rest of
    the file as it is; returns the file."""
    from .errors import BadInputError
    from .textio import write_atomic

    load_settings()  # a broken file is an error before anything is changed
    path = settings_file()
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    tables = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    assignment = re.compile(rf"\s*{re.escape(key)}\s*=")
    kept = [line for i, line in enumerate(lines) if i >= tables or not assignment.match(line)]
    if value is None and kept == lines:
        return path  # nothing to remove
    if value is not None:
        kept.insert(0, f"{key} = {json.dumps(value, ensure_ascii=False)}")
    text = "\n".join(kept) + "\n"
    try:
        _parse_toml(text)
    except ValueError as exc:
        raise BadInputError(f"cannot set {key} in {path}: the edited file would not be valid TOML ({exc}); edit it by hand") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot make directory {path.parent}: {exc.strerror or exc} (AIGC_CONFIG_DIR moves aigc's settings)") from None
    return write_atomic(path, text)


def default_source(kind: str = "text") -> tuple[str, str]:
    """The default model of a kind (text or image) and where it is set: the environment variable,
    the settings file, or built in."""
    from .errors import BadInputError

    variable, key, builtin = DEFAULTS[kind]
    if os.environ.get(variable):
        return os.environ[variable], variable
    value = load_settings().get(key)
    if value is not None:
        if not isinstance(value, str) or not value:
            raise BadInputError(f"{key} in {settings_file()} must be a model name in quotes; fix it or run `aigc models default --unset`")
        return value, str(settings_file())
    return builtin, "built in"


def cache_dir() -> Path:
    """Converted models and downloads: `AIGC_CACHE_DIR`, `$AIGC_HOME/cache` or `~/.cache/aigc`."""
    return _user_dir("AIGC_CACHE_DIR", "cache", "XDG_CACHE_HOME", ".cache")


def data_dir() -> Path:
    """What aigc keeps for the user (chat sessions): `AIGC_DATA_DIR`, `$AIGC_HOME/data` or `~/.local/share/aigc`."""
    return _user_dir("AIGC_DATA_DIR", "data", "XDG_DATA_HOME", ".local/share")


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model() -> str:
    """The model used when `-m` is not given: `AIGC_DEFAULT_MODEL`, `default_model` in the settings
    file (`aigc models default NAME`), or the embedded `smollm2`."""
    return default_source("text")[0]


def debug() -> bool:
    return os.environ.get("AIGC_DEBUG", "") not in ("", "0")
