"""aigc as a wheel installs it: a copy of the package in a site-packages directory of its own,
with no checkout around it, run by `python -m aigc` with that directory on PYTHONPATH."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import aigc


def site_copy(directory: Path) -> Path:
    """`directory`/site holding a copy of the aigc package without its built-in templates (`aigc/prompts`)."""
    site = directory / "site"
    shutil.copytree(Path(aigc.__file__).parent, site / "aigc", ignore=shutil.ignore_patterns("__pycache__", "prompts"))
    return site


def run_from(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m aigc ARGS` importing aigc from `site`, in `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(site), "AIGC_LOGS": "0"}
    return subprocess.run([sys.executable, "-m", "aigc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
