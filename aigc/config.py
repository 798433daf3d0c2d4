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


def cache_dir() -> Path:
    """Converted models and downloads: `AIGC_CACHE_DIR`, `$AIGC_HOME/cache` or `~/.cache/aigc`."""
    return _user_dir("AIGC_CACHE_DIR", "cache", "XDG_CACHE_HOME", ".cache")


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model() -> str:
    """The model used when `-m` is not given: `AIGC_DEFAULT_MODEL` or the embedded `smollm2`."""
    return os.environ.get("AIGC_DEFAULT_MODEL") or "smollm2"


def debug() -> bool:
    return os.environ.get("AIGC_DEBUG", "") not in ("", "0")
