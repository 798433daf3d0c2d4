"""How this aigc is installed: a source checkout (an editable install, or the repository on
PYTHONPATH) or an installed copy (a wheel in site-packages), for paths and advice that differ."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

TESTED_TORCH = "2.13.0"  # the torch constraints.txt pins, which the install commands keep
_NAMED_AIGC = re.compile(r'^name\s*=\s*"aigc"\s*$', re.MULTILINE)


def checkout() -> Path | None:
    """The root of the source checkout aigc runs from (aigc's pyproject.toml and prompts/ beside the
    package); None for an installed copy, whose site-packages may hold other projects' such files."""
    root = Path(__file__).resolve().parent.parent
    try:
        named = _NAMED_AIGC.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return root if named and (root / "prompts").is_dir() else None


def pip_command(*arguments: str) -> str:
    """`PYTHON -m pip ARGUMENTS` for the Python running aigc, quoted for a shell."""
    return " ".join([shlex.quote(sys.executable), "-m", "pip", *(shlex.quote(a) for a in arguments)])


def torch_pin() -> str:
    """`torch==VERSION` for a pip command: the torch installed, else the one tested, so that pip, with
    the metadata's unbounded `torch>=`, does not fetch the newest (a multi-GB CUDA build, untested)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"torch=={version('torch')}"
    except PackageNotFoundError:
        return f"torch=={TESTED_TORCH}"
