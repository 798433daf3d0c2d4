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


def config_dir() -> Path:
    """User settings and templates: `AIGC_CONFIG_DIR`, `$AIGC_HOME/config` or `~/.config/aigc`."""
    explicit = _env_path("AIGC_CONFIG_DIR")
    if explicit:
        return explicit
    home = home_dir()
    if home:
        return home / "config"
    base = _env_path("XDG_CONFIG_HOME") or Path.home() / ".config"
    return base / "aigc"


def cache_dir() -> Path:
    """Converted models and downloads: `AIGC_CACHE_DIR`, `$AIGC_HOME/cache` or `~/.cache/aigc`."""
    explicit = _env_path("AIGC_CACHE_DIR")
    if explicit:
        return explicit
    home = home_dir()
    if home:
        return home / "cache"
    base = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return base / "aigc"


def models_dir() -> Path:
    return cache_dir() / "models"


def default_model() -> str:
    """The model used when `-m` is not given: `AIGC_DEFAULT_MODEL` or the embedded `smollm2`."""
    return os.environ.get("AIGC_DEFAULT_MODEL") or "smollm2"


def debug() -> bool:
    return os.environ.get("AIGC_DEBUG", "") not in ("", "0")
