"""The example plugins and a broken plugin, installed with pip, through the real CLI and the embedded model."""

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from conftest_integration import ROOT

pytestmark = pytest.mark.integration

PACKAGES = {
    "aigc-adcopy": ROOT / "plugins" / "aigc-adcopy",
    "aigc-social-templates": ROOT / "plugins" / "aigc-social-templates",
    "aigc-broken-plugin": ROOT / "tests" / "fixtures" / "aigc-broken-plugin",
}


def installed(name: str) -> bool:
    try:
        distribution(name)
        return True
    except PackageNotFoundError:
        return False


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module", autouse=True)
def plugin_packages():
    """Install the three packages (no dependencies, torch untouched); afterwards remove the broken one,
    and the example ones unless they were installed before (scripts/test.sh installs them)."""
    before = {name for name in PACKAGES if installed(name)}
    args = [arg for path in PACKAGES.values() for arg in ("-e", str(path))]
    pip("install", "-q", "--no-deps", "-c", str(ROOT / "constraints.txt"), *args)
    yield
    remove = [name for name in PACKAGES if name not in before or name == "aigc-broken-plugin"]
    pip("uninstall", "-q", "-y", *remove)


def aigc(*args: str, input: str | None = None, load: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AIGC_LOAD_PLUGINS"}
    env["HF_HUB_OFFLINE"] = "1"
    if load is not None:
        env["AIGC_LOAD_PLUGINS"] = load
    return subprocess.run(
        [sys.executable, "-m", "aigc", *args], input=input, capture_output=True, text=True, timeout=600, env=env
    )


def broken_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "'broken'" in line]


def test_help_works_with_a_broken_plugin_and_warns_once():
    done = aigc("--help")
    assert done.returncode == 0 and "adcopy" in done.stdout and " run " in done.stdout
    (warning,) = broken_warnings(done.stderr)
    assert warning.startswith("Warning: plugin 'broken' failed in import: RuntimeError") and "AIGC_TRACE_PLUGINS=1 shows where" in warning


def test_plugins_lists_both_examples_and_the_broken_one():
    done = aigc("plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["plugins"]}
    assert rows["adcopy"]["version"] == "0.1.0" and rows["adcopy"]["distribution"] == "aigc-adcopy"
    assert rows["adcopy"]["registered"]["commands"] == ["adcopy"] and rows["adcopy"]["registered"]["generators"] == ["adcopy"]
    assert {"tweet-thread", "product-description", "email-subjects"} <= set(rows["social-templates"]["registered"]["templates"])
    assert not rows["broken"]["loaded"] and "on purpose" in rows["broken"]["failures"][0]["error"]
    assert len(broken_warnings(done.stderr)) == 1
    text = aigc("plugins")
    assert text.returncode == 0 and "broken 0.0.1 (aigc-broken-plugin)  [not loaded]" in text.stdout


def test_chat_works_with_a_broken_plugin():
    done = aigc("chat", input="What is the capital of France?\n")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout and len(broken_warnings(done.stderr)) == 1


def test_allowlist_leaves_the_broken_plugin_out():
    done = aigc("templates", "list", load="social-templates")
    assert done.returncode == 0 and "email-subjects" in done.stdout and "adcopy-headline" not in done.stdout
    assert not broken_warnings(done.stderr)


def test_adcopy_writes_distinct_variants():
    done = aigc("adcopy", "--product", "a reusable bamboo water bottle", "--audience", "hikers", "-n", "3", "--seed", "1", "--json", load="adcopy")
    assert done.returncode == 0, done.stderr
    variants = json.loads(done.stdout)["variants"]
    assert len(variants) == 3 and len({v["headline"].lower() for v in variants}) == 3
    for variant in variants:
        assert 1 <= len(variant["headline"].split()) <= 8
        assert 5 <= len(variant["body"].split()) <= 35 and "\n" not in variant["body"]


def test_template_pack_with_run_and_chat_template():
    done = aigc("run", "email-subjects", "--var", "input=spring sale, 20% off all plants", "--var", "count=3", "--seed", "1", load="social-templates")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    chat = aigc("chat", "--template", "tweet", "our bakery opens a second shop on Main Street", load="social-templates")
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr


def test_run_refuses_a_sandbox_escape(tmp_path):
    (tmp_path / "evil.j2").write_text("{{ cycler.__init__.__globals__.os.system('touch " + str(tmp_path / "pwned") + "') }}")
    env_dir = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "aigc", "run", "evil"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "AIGC_TEMPLATES_PATH": env_dir, "AIGC_LOAD_PLUGINS": ""},
    )
    assert done.returncode == 2 and "unsafe" in done.stderr and not (tmp_path / "pwned").exists()
