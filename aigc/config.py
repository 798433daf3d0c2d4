"""User directories and AIGC_* environment settings."""

from __future__ import annotations

import os
from pathlib import Path


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
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise BadInputError(f"{path} is not valid TOML ({exc}); fix or remove it") from None


def cache_dir() -> Path:
    """Converted models and downloads: `AIGC_CACHE_DIR`, `$AIGC_HOME/cache` or `~/.cache/aigc`."""
    return _user_dir("AIGC_CACHE_DIR", "cache", "XDG_CACHE_HOME", ".cache")


def data_dir() -> Path:
    """What aigc keeps for the user (chat sessions): `AIGC_DATA_DIR`, `$AIGC_HOME/data` or `~/.local/share/aigc`."""
    return _user_dir("AIGC_DATA_DIR", "data", "XDG_DATA_HOME", ".local/share")


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model() -> str:
    """The model used when `-m` is not given: `AIGC_DEFAULT_MODEL` or the embedded `smollm2`."""
    return os.environ.get("AIGC_DEFAULT_MODEL") or "smollm2"


def debug() -> bool:
    return os.environ.get("AIGC_DEBUG", "") not in ("", "0")
