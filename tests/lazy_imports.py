"""Start-up checks: which heavy modules a CLI command imports and what a loader reports before
torch is, in a fresh interpreter."""

import os
import subprocess
import sys


def imports_after(argv, modules=("torch", "transformers")) -> str:
    """Run `aigc ARGV` in a subprocess (installed plugins loaded) and report, space-separated,
    whether each of `modules` ended up in `sys.modules`: e.g. "False False"."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = {['aigc', *argv]!r}\n"
        "try:\n    runpy.run_module('aigc', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print(*(m in sys.modules for m in {tuple(modules)!r}), file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "AIGC_LOAD_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    return done.stderr.strip().splitlines()[-1]


def first_stage(loader: str, name: str, env=None) -> str:
    """Call `loader` ("aigc.engine.loading.load_model") on `name` in a fresh interpreter and report
    the first progress stage it gives and whether torch was imported by then: "loading NAME: torch
    imported False" where a terminal shows the spinner before the seconds torch takes to import."""
    module, function = loader.rsplit(".", 1)
    code = (
        f"import sys\nfrom {module} import {function}\n"
        "def progress(stage, *rest):\n    raise SystemExit(f\"{stage}: torch imported {'torch' in sys.modules}\")\n"
        f"{function}({name!r}, device='cpu', progress=progress)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    return done.stderr.strip()


def two_loads(load, name: str) -> tuple[list[str], bool]:
    """The stages two calls of `load` on `name` report, and whether the second gave the first's engine."""
    stages: list[str] = []
    engine = load(name, device="cpu", progress=lambda stage, *rest: stages.append(stage))
    return stages, load(name, device="cpu", progress=lambda stage, *rest: stages.append(stage)) is engine
