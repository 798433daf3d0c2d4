"""The benchmarks' helpers (not their figures: no test here times anything)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_oneshot_times_the_first_output_apart_from_the_exit_and_names_known_baselines():
    code = (
        "from pathlib import Path\n"
        "from benchmarks.oneshot import COMMANDS, timed\n"
        "assert all(base is None or base in COMMANDS for _, base in COMMANDS.values())\n"
        "wall, first = timed(['-c', 'import time; print(1, flush=True); time.sleep(0.5)'], Path('.'))\n"
        "silent, none = timed(['-c', 'pass'], Path('.'))\n"
        "print(first < wall, none == silent)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # as `python -m benchmarks.oneshot` runs: no conftest on sys.path
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "True True\n"), done.stderr


def test_oneshot_python_commands_import_names_that_exist():
    code = (
        "from benchmarks.oneshot import COMMANDS\n"
        "for argv, _ in COMMANDS.values():\n"
        "    if argv[0] == '-c':\n"
        "        for statement in argv[1].split(';'):\n"
        "            if statement.split()[0] in ('import', 'from'):\n"
        "                exec(statement, {})\n"
        "print('imported')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "imported\n"), done.stderr
