"""scripts/setup.sh and scripts/test.sh, run in a copy of scripts/ whose .venv's python only records what it is asked."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def checkout(tmp_path):
    """A directory with the scripts and a .venv whose python writes its arguments to stderr."""
    shutil.copytree(SCRIPTS, tmp_path / "scripts")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "python $*" >&2\n')
    python.chmod(0o755)
    return tmp_path


def run(checkout: Path, script: str) -> list[str]:
    done = subprocess.run(["bash", str(checkout / "scripts" / script)], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout == "", done.stderr
    return done.stderr.splitlines()


def test_setup_says_each_step_on_stderr_before_pip_runs_it_quietly(checkout):
    lines = run(checkout, "setup.sh")
    assert lines == [
        "setup: upgrading pip in .venv ...",
        "python -m pip install -q --upgrade pip",
        "setup: installing torch 2.13.0 (CPU, a 192 MB wheel when not installed yet) into .venv ...",
        "python -m pip install -q -c constraints.txt torch==2.13.0",
        "setup: installing aigc (editable) and its dependencies into .venv ...",
        "python -m pip install -q -c constraints.txt -e .",
        "setup: done: .venv/bin/aigc is ready",
    ]


def test_the_test_script_says_it_installs_the_example_plugins_into_the_venv(checkout):
    lines = run(checkout, "test.sh")
    said = lines.index("setup: installing the example plugins aigc-adcopy and aigc-social-templates (editable) into .venv ...")
    assert lines[said + 1].startswith("python -m pip install -q -c constraints.txt --no-deps -e plugins/aigc-adcopy -e plugins/aigc-social-templates")
    assert "setup: installing aigc[test,image,serve] (editable) and its dependencies into .venv ..." in lines
