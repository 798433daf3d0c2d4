"""`aigc doctor`: its text and JSON, and the problems, warnings and notes it finds (aigc.diagnostics)."""

import json
import os
import re
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from aigc import __version__, config, diagnostics, plugins
from aigc.cli.app import app
from aigc.errors import install_advice
from lazy_imports import imports_after

runner = CliRunner()
SECTIONS = ["aigc", "settings", "torch", "packages", "directories", "models", "plugins"]
IDS = {
    "aigc", "python", "platform", "config", "environment", "torch", "device", "threads", "package:transformers", "package:accelerate", "package:gguf",
    "package:diffusers", "package:pillow", "package:fastapi", "package:uvicorn", "dir:config", "dir:data", "dir:cache", "dir:hub",
    "model:text", "model:image", "plugins",
}
CHECK = re.compile(r"  (ok|note|warning|problem) +\S")


def doctor(*args, env=None):
    return runner.invoke(app, ["doctor", *args], env=env)


def report(*args, env=None) -> tuple[int, dict]:
    result = doctor("--json", *args, env=env)
    return result.exit_code, json.loads(result.stdout)


def line_of(stdout: str, start: str) -> tuple[str, str | None]:
    """The check line of `stdout` whose summary starts with `start`, and the fix line under it (None: none)."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if CHECK.match(line) and line.split(None, 1)[1].startswith(start))
    below = lines[at + 1] if at + 1 < len(lines) else ""
    return lines[at], below.strip()[3:] if below.strip().startswith("-> ") else None


def test_the_text_report_is_sections_of_marked_lines_then_a_summary():
    result = doctor()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines[:-1] if not line.startswith(" ")] == SECTIONS
    for line in lines[:-1]:
        assert line in SECTIONS or CHECK.match(line) or line.startswith(" " * 11 + "-> "), line
    assert lines[-1].startswith("aigc doctor: ") and "problem" not in lines[-1]
    assert line_of(result.stdout, "aigc ")[0] == f"  ok       aigc {__version__} in {Path(diagnostics.__file__).parent}"
    assert line_of(result.stdout, "torch ")[0].startswith("  ok       torch ")


def test_json_has_a_status_counts_and_every_check_by_id():
    code, data = report()
    assert code == 0
    assert set(data) == {"status", "counts", "checks"} and data["status"] != "problem"
    assert set(data["counts"]) == set(diagnostics.STATUSES) and sum(data["counts"].values()) == len(data["checks"])
    assert IDS <= set(data["checks"])
    for check in data["checks"].values():
        assert set(check) == {"section", "status", "summary", "fix", "facts"} and check["section"] in SECTIONS
        assert check["status"] in diagnostics.STATUSES and (check["fix"] or check["status"] != "problem")
    import torch

    from aigc.engine.loading import pick_device, pick_dtype

    facts = data["checks"]["torch"]["facts"]
    assert facts["version"] == torch.__version__ and facts["build"].split()[0] in ("CPU", "CUDA", "ROCm", "MPS")
    assert facts["accelerator"] == bool(facts["devices"]) and torch.cuda.is_available() == any(device != "mps" for device in facts["devices"])

    device = pick_device("auto")
    assert data["checks"]["device"]["facts"] == {"device": device, "dtype": str(pick_dtype("auto", device)).removeprefix("torch."), "model": "smollm2"}
    assert data["checks"]["config"]["facts"] == {"path": str(config.settings_file()), "exists": False, "unknown_keys": []}
    assert data["checks"]["model:text"]["facts"]["set_by"] == "aigc's own default"
    assert data["checks"]["package:transformers"]["facts"]["version"] == version("transformers")


@pytest.mark.parametrize(
    ("argv", "env", "source"),
    [(["--threads", "1", "doctor"], {}, "--threads"), (["doctor", "--threads", "1"], {}, "--threads"), (["doctor"], {"AIGC_THREADS": "1"}, "AIGC_THREADS")],
)
def test_threads_in_effect_and_where_they_are_set(argv, env, source):
    result = runner.invoke(app, [*argv, "--json"], env=env)
    assert json.loads(result.stdout)["checks"]["threads"]["facts"] == {"threads": 1, "source": source, "cores": diagnostics._cores()}


def test_threads_unset_are_torchs_own_choice():
    import torch

    facts = json.loads(doctor("--json", env={"OMP_NUM_THREADS": "1"}).stdout)["checks"]["threads"]["facts"]
    assert facts == {"threads": torch.get_num_threads(), "source": "OMP_NUM_THREADS", "cores": diagnostics._cores()}


def test_threads_set_in_the_settings_file_say_so(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    config.settings_file().parent.mkdir(parents=True)
    config.settings_file().write_text("threads = 1\n")
    result = doctor()
    assert line_of(result.stdout, "1 CPU thread")[0].startswith(f"  ok       1 CPU thread, set in {config.settings_file()}; ")
    assert json.loads(doctor("--json").stdout)["checks"]["threads"]["facts"]["source"] == "config"


def test_more_threads_than_cores_is_a_warning_saying_how_many_to_give():
    cores = diagnostics._cores()
    result = doctor(env={"AIGC_THREADS": str(cores + 1)})
    assert result.exit_code == 0
    line, fix = line_of(result.stdout, f"{cores + 1} CPU threads")
    assert line.startswith("  warning  ") and fix == f"give at most {cores}: `aigc --threads {cores}` or AIGC_THREADS={cores}"


def test_a_bad_aigc_threads_is_a_problem_line_not_an_error_before_the_report():
    result = doctor(env={"AIGC_THREADS": "all"})
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, "AIGC_THREADS must be")
    assert line == "  problem  AIGC_THREADS must be a whole number of 1 or more, got 'all'"
    assert fix == "unset AIGC_THREADS, or set it to a whole number (AIGC_THREADS=2)"
    assert runner.invoke(app, ["templates", "list"], env={"AIGC_THREADS": "all"}).exit_code == 2  # every other command stops first, as before


def test_a_broken_plugin_is_a_problem_line_and_exit_code_1(tmp_path, monkeypatch):
    (tmp_path / "doctor_broken_plugin.py").write_text("raise RuntimeError('kaput')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIGC_PLUGINS", "doctor_broken_plugin")
    plugins.reset()
    result = doctor()
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, "plugin 'doctor_broken_plugin'")
    assert line == "  problem  plugin 'doctor_broken_plugin' failed in import: RuntimeError: kaput"
    assert fix == "AIGC_TRACE_PLUGINS=1 shows where; take it out of AIGC_PLUGINS to stop loading it"
    assert result.stdout.splitlines()[-1].startswith("aigc doctor: 1 problem, ") and result.stdout.endswith(" (exit code 1)\n")
    code, data = report()
    assert code == 1 and data["status"] == "problem"
    assert data["checks"]["plugin:doctor_broken_plugin"]["facts"] == {"plugin": "doctor_broken_plugin", "stage": "import", "error": "RuntimeError: kaput"}
    assert data["checks"]["plugins"]["facts"]["failed"] == ["doctor_broken_plugin"]


def test_a_plugin_whose_hook_is_never_called_is_a_warning_not_a_problem(tmp_path, monkeypatch):
    (tmp_path / "doctor_misspelt_plugin.py").write_text("from aigc import hookimpl\n\n@hookimpl\ndef register_generator(register):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIGC_PLUGINS", "doctor_misspelt_plugin")
    plugins.reset()
    code, data = report()
    check = data["checks"]["plugin:doctor_misspelt_plugin"]
    assert code == 0 and check["status"] == "warning" and check["section"] == "plugins"
    assert check["summary"].startswith("plugin 'doctor_misspelt_plugin' is loaded, but 'register_generator' is not an aigc hook, so it is never called")


def test_a_missing_optional_extra_is_a_note_with_how_to_add_it_and_exit_code_0(monkeypatch):
    from aigc.engine import diffusion

    real = diagnostics.version

    def fake_version(name):
        if name in ("diffusers", "pillow"):
            raise PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(diagnostics, "version", fake_version)
    monkeypatch.setattr(diffusion, "available", lambda: False)
    result = doctor()
    assert result.exit_code == 0, result.output
    line, fix = line_of(result.stdout, "diffusers")
    assert line == "  note     diffusers is not installed (optional: aigc image needs the image extra)"
    assert fix == f"to add it, {install_advice('image')}"
    line, fix = line_of(result.stdout, "default image model")
    assert line.startswith("  note     ") and line.endswith("the image extra is not installed, so `aigc image` cannot run")
    assert "problem" not in result.stdout


def test_advice_on_extras_fits_how_aigc_is_installed_a_checkout_or_a_wheel(tmp_path):
    import shlex
    import subprocess

    from installed_copy import site_copy

    assert install_advice("image").startswith('in the aigc checkout run AIGC_EXTRAS="[image]" bash scripts/setup.sh')  # these tests run in one
    site = site_copy(tmp_path)
    code = "from aigc.errors import install_advice as a; print(a('image')); print(a())"
    said = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True).stdout
    python = shlex.quote(sys.executable)
    torch = f"torch=={version('torch')}"  # kept: pip would fetch the newest for the metadata's torch>=
    assert said.splitlines() == [f"run {python} -m pip install 'aigc[image]=={__version__}' {torch}", f"run {python} -m pip install aigc=={__version__} {torch}"]  # no checkout, scripts or -e there


def test_a_missing_required_package_is_a_problem(monkeypatch):
    real = diagnostics.version
    monkeypatch.setattr(diagnostics, "version", lambda name: real(name) if name != "gguf" else (_ for _ in ()).throw(PackageNotFoundError(name)))
    result = doctor()
    assert result.exit_code == 1
    assert line_of(result.stdout, "gguf") == ("  problem  gguf is not installed; aigc needs it", f"to install it, {install_advice()}")


def test_every_package_aigcs_metadata_requires_is_checked_with_its_extra_torch_by_its_own_check(monkeypatch):
    requires = ["torch>=2.4", "pluggy>=1.5", "jsonschema>=4", "tomli>=1.1; python_version < '3'", "pillow>=10; extra == 'image'", "pytest>=8; extra == 'test'"]
    monkeypatch.setattr(diagnostics, "distribution", lambda name: SimpleNamespace(requires=requires))
    real = diagnostics.version
    monkeypatch.setattr(diagnostics, "version", lambda name: real(name) if name != "jsonschema" else (_ for _ in ()).throw(PackageNotFoundError(name)))
    checks = {check.id: check for check in diagnostics.collect().checks if check.id.startswith("package:")}
    assert list(checks) == ["package:pluggy", "package:jsonschema", "package:pillow"]  # not torch (its own line), tomli (not for this Python) nor the test extra
    assert checks["package:jsonschema"].status == "problem" and checks["package:jsonschema"].summary == "jsonschema is not installed; aigc needs it"
    assert checks["package:pluggy"].facts == {"version": version("pluggy"), "extra": None, "required": ">=1.5"}
    assert checks["package:pillow"].facts["extra"] == "image"


def test_a_package_outside_aigcs_range_is_a_problem(monkeypatch):
    monkeypatch.setattr(diagnostics, "_aigc_requirements", lambda: {"transformers": (None, ">=99")})
    monkeypatch.setattr(diagnostics, "version", lambda name: "4.0" if name == "transformers" else "1.0")
    result = doctor()
    assert result.exit_code == 1
    assert line_of(result.stdout, "transformers")[0] == "  problem  transformers 4.0 is installed; aigc needs transformers>=99"


@pytest.mark.parametrize(("content", "said"), [("default_model = [\n", "{path} is not valid TOML"), (None, "cannot read {path}: ")])
def test_a_settings_file_that_cannot_be_read_is_one_problem_the_lines_that_need_it_point_at(content, said):
    path = config.settings_file()
    path.parent.mkdir(parents=True)
    if content is None:
        path.mkdir()  # unreadable as a file, also for root
    else:
        path.write_text(content)
    result = doctor()
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, said.format(path=path))
    assert line.startswith("  problem  ")
    assert fix == f"fix {path} or move it away (`aigc models default`, `aigc models alias` write it again)"
    code, data = report()
    assert data["counts"]["problem"] == 1
    assert data["checks"]["model:text"]["summary"] == "default text model unknown: the settings file cannot be used (see its line)"
    assert data["checks"]["device"]["status"] == "note"


def test_an_unknown_setting_is_a_warning():
    config.settings_file().parent.mkdir(parents=True)
    config.settings_file().write_text('defualt_model = "x"\n')
    result = doctor()
    assert result.exit_code == 0
    line, fix = line_of(result.stdout, str(config.settings_file()))
    assert line == f"  warning  {config.settings_file()}: aigc reads no setting 'defualt_model'"
    assert fix.startswith("rename or remove it; aigc reads default_model, ")


def test_an_unusable_torch_is_a_problem_and_the_rest_is_still_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    result = doctor()
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, "torch cannot be imported")
    assert line == "  problem  torch cannot be imported: ModuleNotFoundError: import of torch halted; None in sys.modules" and fix == f"reinstall it: {install_advice()}"
    assert line_of(result.stdout, "no device picked")[0] == "  note     no device picked: torch cannot be imported (above)"
    assert [line for line in result.stdout.splitlines() if not line.startswith(" ")][:-1] == SECTIONS


def test_secrets_in_aigc_variables_are_hidden():
    result = doctor("--json", env={"AIGC_API_KEY": "sk-secret", "AIGC_PORT": "8001"})
    variables = json.loads(result.stdout)["checks"]["environment"]["facts"]["variables"]
    assert variables["AIGC_API_KEY"] == "(set, hidden)" and variables["AIGC_PORT"] == "8001"
    assert "sk-secret" not in doctor(env={"AIGC_API_KEY": "sk-secret"}).stdout


def test_a_local_default_model_is_here_with_its_size(tiny_model_dir):
    code, data = report(env={"AIGC_DEFAULT_MODEL": str(tiny_model_dir)})
    facts = data["checks"]["model:text"]["facts"]
    assert data["checks"]["model:text"]["status"] == "ok" and facts["set_by"] == "set by AIGC_DEFAULT_MODEL"
    assert facts["installed"] is True and facts["path"] == str(tiny_model_dir)
    assert facts["size_mb"] == round(sum(f.stat().st_size for f in tiny_model_dir.iterdir() if f.is_file()) / 1e6, 1)


def test_a_model_directorys_size_counts_its_subfolders_in_models_info_as_in_doctor(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "extra").mkdir()
    (model / "extra" / "weights.bin").write_bytes(b"0" * 3_000_000)
    info = json.loads(runner.invoke(app, ["models", "info", str(model), "--json"]).stdout)
    facts = report(env={"AIGC_DEFAULT_MODEL": str(model)})[1]["checks"]["model:text"]["facts"]
    assert info["size_mb"] == facts["size_mb"] == round(sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 1e6, 1)


def test_a_default_model_not_pulled_yet_is_a_note_saying_what_its_first_use_does(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "empty-cache"))
    result = doctor()
    line, fix = line_of(result.stdout, "default text model smollm2")
    assert line.startswith("  note     default text model smollm2 (aigc's own default): not pulled yet; its first use ")
    assert "converts" in line and fix == "`aigc models pull smollm2` does it now"


def test_a_hub_default_model_not_cached_while_offline_is_a_problem(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = doctor(env={"AIGC_DEFAULT_MODEL": "qwen2.5-0.5b"})
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, "default text model qwen2.5-0.5b")
    assert line.endswith("not in the hub cache, and HF_HUB_OFFLINE is set, so it cannot be fetched")
    assert fix == "unset HF_HUB_OFFLINE and run `aigc models pull qwen2.5-0.5b`, or change or unset AIGC_DEFAULT_MODEL"  # it overrides `aigc models default`
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    line, fix = line_of(doctor(env={"AIGC_DEFAULT_MODEL": "qwen2.5-0.5b"}).stdout, "default text model qwen2.5-0.5b")
    assert line.startswith("  note     ") and "its first use downloads it from the Hugging Face hub" in line


def test_a_missing_default_model_set_by_the_environment_says_to_change_the_variable(tmp_path):
    missing = str(tmp_path / "missing.gguf")
    line, fix = line_of(doctor(env={"AIGC_DEFAULT_MODEL": missing}).stdout, "the default text model")
    assert fix == "change or unset AIGC_DEFAULT_MODEL (`aigc models list` lists the models)"  # `aigc models default` could not help: the variable wins
    config.set_setting("default_model", missing)
    line, fix = line_of(doctor().stdout, "the default text model")
    assert fix == "pick another with `aigc models default NAME` (`aigc models list` lists the models)"


def test_a_check_that_fails_is_a_problem_of_its_own_and_the_others_still_run(monkeypatch):
    def broken(context):
        raise KeyError("oops")

    monkeypatch.setattr(diagnostics, "SECTIONS", [("aigc", diagnostics._aigc), ("packages", broken), ("plugins", diagnostics._plugins)])
    checks = {check.id: check for check in diagnostics.collect().checks}
    assert checks["doctor:packages"].status == "problem" and checks["doctor:packages"].summary == "could not check packages: KeyError: 'oops'"
    assert "aigc" in checks and "plugins" in checks


def test_doctor_loads_no_model_and_imports_neither_transformers_nor_diffusers():
    assert imports_after(["doctor"], modules=("transformers", "diffusers", "torch")) == "False False True"


def test_a_visible_gpu_is_the_device_the_engine_picks_for_the_default_model(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # pick_dtype's choice: float16 on such a GPU
    result = doctor()
    assert line_of(result.stdout, "torch ")[0] == f"  ok       torch {torch.__version__}, CUDA 12.8 build; accelerator: NVIDIA H100 80GB HBM3"
    assert line_of(result.stdout, "the default model")[0] == "  ok       the default model smollm2 would run on cuda in float16 (--device, --dtype change it)"


def test_a_cuda_build_that_sees_no_gpu_is_a_note_on_what_to_check(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = doctor()
    assert result.exit_code == 0
    line, fix = line_of(result.stdout, "torch ")
    assert line == f"  note     torch {torch.__version__}, CUDA 12.8 build; no accelerator visible: models run on the CPU"
    assert fix == "for the GPU, check its driver (nvidia-smi, rocm-smi) and CUDA_VISIBLE_DEVICES"


@pytest.mark.parametrize(
    ("model", "device", "model_line"),
    [
        ("echo", "runs without weights (aigc's test model)", "default text model echo (set by AIGC_DEFAULT_MODEL)"),
        ("openai:http://127.0.0.1:9/v1#m", "runs on its remote server", "default text model openai:http://127.0.0.1:9/v1#m (set by AIGC_DEFAULT_MODEL): a remote server's, at http://127.0.0.1:9/v1#m (not contacted)"),
    ],
)
def test_a_default_model_that_runs_nowhere_here_picks_no_device(model, device, model_line):
    result = doctor(env={"AIGC_DEFAULT_MODEL": model})
    assert result.exit_code == 0, result.output
    assert line_of(result.stdout, "the default model")[0] == f"  ok       the default model {model} {device}"
    assert line_of(result.stdout, "default text model")[0] == f"  ok       {model_line}"


def test_a_data_directory_that_is_a_file_is_a_problem(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = doctor(env={"AIGC_DATA_DIR": str(tmp_path / "a-file")})
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, "aigc's data directory")
    assert line == f"  problem  aigc's data directory {tmp_path / 'a-file'} is a file; point AIGC_DATA_DIR at a directory (or move the file)"
    assert fix == "point AIGC_DATA_DIR at a directory"


def test_a_cache_directory_under_a_file_is_a_problem_and_little_free_space_a_warning(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    result = doctor(env={"AIGC_CACHE_DIR": str(tmp_path / "a-file" / "cache")})
    assert result.exit_code == 1
    line, fix = line_of(result.stdout, "cache directory")
    assert line == f"  problem  cache directory {tmp_path / 'a-file' / 'cache'} (made on first use): {tmp_path / 'a-file'} is no directory"
    assert fix == "make it writable, or point AIGC_CACHE_DIR at a directory you can write"
    monkeypatch.setattr(diagnostics.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**10, used=10**10 - 10**8, free=10**8))
    line, fix = line_of(doctor().stdout, "cache directory")
    assert line.startswith("  warning  cache directory ") and line.endswith(", 0.1 GB free: a model's download or converted copy may not fit")
    assert fix == "free some space there, or point AIGC_CACHE_DIR elsewhere"


def test_no_home_directory_is_one_problem_saying_what_to_set_and_no_bug_to_report(monkeypatch):
    import pwd

    for name in ("HOME", "AIGC_HOME", "AIGC_CONFIG_DIR", "AIGC_DATA_DIR", "AIGC_CACHE_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))  # a user id with no entry (env -i, containers)
    result = doctor()
    problems = [line for line in result.stdout.splitlines() if line.startswith("  problem")]
    assert result.exit_code == 1 and problems == [f"  problem  aigc finds no home directory to keep its settings, data and cache under (HOME is unset and user id {os.getuid()} has no entry)"]
    assert line_of(result.stdout, "aigc finds no home")[1].startswith("set HOME, AIGC_HOME (one directory for all), or AIGC_CONFIG_DIR, AIGC_DATA_DIR and AIGC_CACHE_DIR")
    assert "please report it" not in result.stdout and "cache directory unknown: no home directory (see the config line)" in result.stdout


def test_a_read_only_cache_holding_the_default_model_is_a_note_and_an_empty_one_a_problem(tmp_path, monkeypatch):
    cache = tmp_path / "baked"
    (cache / "models" / "smollm2").mkdir(parents=True)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (mode & os.W_OK and Path(path) == cache) and access(path, mode, **kw))  # read-only (root writes all)
    monkeypatch.setenv("AIGC_CACHE_DIR", str(cache))
    result = doctor()
    assert result.exit_code == 1 and line_of(result.stdout, "cache directory")[0] == f"  problem  cache directory {cache}: {cache} is not writable"  # the model's first use cannot convert it there
    (cache / "models" / "smollm2" / "config.json").write_text("{}")  # converted at the image's build
    result = doctor()
    assert result.exit_code == 0, result.output
    assert line_of(result.stdout, "cache directory")[0] == f"  note     cache directory {cache}: {cache} is not writable; it holds the default model smollm2, so only pulling others into it fails"


@pytest.mark.parametrize(("text", "id", "status", "said"), [
    ('logs = "no"\n', "logs", "problem", "logs in {path} must be true or false"),
    ("[aliases]\nsmall = 3\n", "aliases", "problem", "small in [aliases] of {path} (line 2) must name a model in quotes (small = \"smollm2\"), got 3"),
    ('[aliases]\nsmall = "bogusmodel"\n', "alias:small", "problem", "alias 'small' (in {path}) points at 'bogusmodel', which is no known model; fix or remove it: aigc models alias --rm small"),
    ("[serve]\nprot = 1\n", "table:serve", "warning", "[serve] in {path} has unknown keys prot; prot (line 2): did you mean port?"),
    ('[serve]\nport = "80"\n', "table:serve", "problem", "[serve] in {path}: port must be a whole number, got '80' (line 2)"),
    ('[summarize]\noutput = "x.md"\n', "table:summarize", "problem", "[summarize] in {path}: -o names the file one run writes"),
    ('[remotes.x]\nurll = "http://x"\n', "remote:x", "problem", "[remotes.x] in {path} has unknown keys urll; urll (line 2): did you mean url?"),
    ("remotes = 3\n", "remotes", "problem", "remotes in {path} must be tables"),
    ('threads = "two"\n', "threads", "problem", "threads in {path} must be a whole number of 1 or more (threads = 2), got 'two'"),
    ('[aliases]\nsmall = "smollm2"\ndefault_model = "smollm2"\n', "config:misplaced", "warning", "{path}: default_model is inside [aliases] (line 3); top-level settings go above the first [table]"),
])
def test_doctor_reports_what_the_commands_reading_a_setting_reject_or_warn_of(text, id, status, said):
    path = config.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    code, data = report()
    check = data["checks"][id]
    assert check["status"] == status and check["summary"].startswith(said.format(path=path)) and check["fix"], check
    assert code == (1 if status == "problem" else 0)


def test_the_logging_setting_in_effect_is_an_ok_line_saying_what_decides():
    code, data = report(env={"AIGC_LOGS": "0"})
    assert data["checks"]["logs"]["status"] == "ok" and data["checks"]["logs"]["summary"] == "answers are not logged (set by AIGC_LOGS)"


def test_doctor_reports_a_templates_path_the_commands_refuse_on_its_own_line_not_as_a_plugins_crash():
    path = config.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text('templates_path = "/somewhere"\n')
    code, data = report()
    check = data["checks"]["templates_path"]
    assert check["section"] == "settings" and check["status"] == "problem" and check["summary"] == f'templates_path in {path} must be a list of directories in quotes (templates_path = ["~/team-prompts"]); fix it or remove the line' and check["fix"]
    assert code == 1 and data["checks"]["doctor:plugins"]["status"] == "note" and "templates_path cannot be used (see its line)" in data["checks"]["doctor:plugins"]["summary"]


def test_doctor_warns_of_template_directories_that_are_not_there(tmp_path):
    path = config.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text(f'templates_path = ["{tmp_path / "gone"}"]\n')
    code, data = report(env={"AIGC_TEMPLATES_PATH": str(tmp_path / "gone2")})
    assert data["checks"]["templates_path"]["summary"] == f"templates_path in {path} names {tmp_path / 'gone'}, which does not exist; its templates are not found"
    assert data["checks"]["env:templates_path"]["summary"] == f"AIGC_TEMPLATES_PATH names {tmp_path / 'gone2'}, which does not exist; its templates are not found"
    assert {data["checks"][id]["status"] for id in ("templates_path", "env:templates_path")} == {"warning"} and code == 0


def test_doctor_lists_misplaced_settings_in_the_files_order():
    path = config.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text('[aliases]\nsmall = "smollm2"\ndefault_model = "smollm2"\nthreads = 2\ntemplates_path = ["x"]\n')
    _, data = report()
    assert [check["facts"]["key"] for id, check in data["checks"].items() if id.startswith("config:misplaced")] == ["default_model", "threads", "templates_path"]
