"""The README's Python blocks run as written, on the model echo (which loads no weights): the
default model is echo, and the blocks' `"smollm2"` is read as `"echo"`. (docs/plugins.md's blocks
are run by test_example_plugins, test_plugins and test_engine_plugins.)"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = {"Serving: an OpenAI-compatible API": "a running `aigc serve`"}  # README sections whose Python needs what a unit test has not: and why


def python_blocks() -> dict[str, list[str]]:
    """`{section title: [its python blocks]}` for each `## ` section of the README with any."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    found = {title: re.findall(r"^```python\n(.*?)^```", body, re.M | re.S) for title, body in sections}
    return {title: blocks for title, blocks in found.items() if blocks}


def run(code: str, directory: Path, image_model: str = "sd-turbo") -> subprocess.CompletedProcess:
    (directory / "snippet.py").write_text(code.replace('"smollm2"', '"echo"').replace('"sd-turbo"', repr(image_model)), encoding="utf-8")
    env = {**os.environ, "AIGC_DEFAULT_MODEL": "echo", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "snippet.py"], cwd=directory, env=env, capture_output=True, text=True, timeout=300)


def test_every_python_block_of_the_readme_is_run_here_or_says_why_not():
    blocks = python_blocks()
    assert set(blocks) - set(NOT_RUN) == {"From Python", "Async", "Images"}
    assert set(NOT_RUN) <= set(blocks)


def test_the_from_python_blocks_run(tmp_path):
    code, stopping = python_blocks()["From Python"]
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "article.md").write_text((ROOT / "examples" / "article.md").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "topics.txt").write_text("bees\nsolar\n", encoding="utf-8")  # the files it reads, as yours would be
    (tmp_path / "labelled.tsv").write_text("a late goal\tsports\na new chip\ttechnology\n", encoding="utf-8")
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "Bees make honey. They live in hives on city roofs."}\n', encoding="utf-8")
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "What is the capital of France?"  # echo answers with the prompt
    assert "Bees make honey in city hives." in lines  # the template's run
    assert (tmp_path / "headlines.jsonl").read_text(encoding="utf-8").count("\n") == 2 and (tmp_path / "out.jsonl").exists()
    stopped = run(stopping, tmp_path)  # the Stop button's block: never set here, so the summary comes back
    assert stopped.returncode == 0 and stopped.stdout.strip() and stopped.stdout.strip() != "stopped", stopped.stderr


def test_the_async_block_runs(tmp_path):
    (code,) = python_blocks()["Async"]
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "['urban bees']" and "Tell me about bees." in done.stdout


def test_the_images_block_runs_on_a_tiny_random_pipeline(tmp_path):
    from test_image import build_tiny_pipeline

    (code,) = python_blocks()["Images"]
    pipeline = build_tiny_pipeline(tmp_path / "model")  # in sd-turbo's place, which comes from the hub
    done = run(code + '\nprint(read_settings("b.jpg")["seed"])\n', tmp_path, str(pipeline))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "2" and (tmp_path / "a.png").stat().st_size > 0  # the block's "# 2"
