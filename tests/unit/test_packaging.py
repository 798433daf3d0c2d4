"""What pyproject.toml publishes in a wheel's metadata: the licence text it ships, and torch with no
upper bound, as every install command pins it through constraints.txt (or installs no dependencies)."""

import re
from pathlib import Path

from packaging.requirements import Requirement

from aigc.config import parse_toml
from aigc.install import TESTED_TORCH

ROOT = Path(__file__).resolve().parents[2]
PROJECT = parse_toml((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_apache_licence_the_metadata_names_is_in_the_checkout_and_shipped_as_a_licence_file():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License to your work." in text  # the whole text


def test_torch_has_no_upper_bound_in_the_metadata_as_every_install_command_pins_it_through_constraints():
    torch = next(Requirement(line) for line in PROJECT["dependencies"] if Requirement(line).name == "torch")
    assert {spec.operator for spec in torch.specifier} == {">="}  # a newer torch where the wheel is installed is kept
    sources = [*(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run", ROOT / "README.md", ROOT / "examples" / "library.py"]
    installs = [line for path in sources for line in path.read_text(encoding="utf-8").splitlines() if re.search(r"pip install (?!-q --upgrade pip|into)", line)]
    assert len(installs) >= 5 and all("-c constraints.txt" in line or "--no-deps" in line for line in installs), installs  # else pip may pick a newer (multi-GB CUDA) torch
    assert (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()[-1] == f"torch=={TESTED_TORCH}"


def test_the_install_commands_aigc_advises_and_the_docs_show_pin_torch_too():
    code = [line for path in (ROOT / "aigc").rglob("*.py") for line in path.read_text(encoding="utf-8").splitlines() if re.search(r"pip install |pip_command\('install'", line)]
    fenced = [line for path in (ROOT / "docs").glob("*.md") for block in path.read_text(encoding="utf-8").split("```")[1::2] for line in block.splitlines()]
    installs = code + [line for line in fenced if re.search(r"pip install (?!into)", line)]
    assert len(code) >= 3 and all(re.search(r"-c constraints.txt|--no-deps|torch_pin\(\)", line) for line in installs), installs
