"""Integration tests run the real embedded model (pulled on first use) through the installed CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTICLE = ROOT / "examples" / "article.md"


def aigc(*args: str, input: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aigc", *args], input=input, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="session", autouse=True)
def embedded_model():
    """Pull (download + convert) the embedded model once, before the tests that time nothing but use it."""
    done = aigc("models", "pull", "smollm2", timeout=900)
    assert done.returncode == 0, done.stderr
