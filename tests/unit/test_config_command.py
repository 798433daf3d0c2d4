"""`aigc config path|show`: the settings file, and each setting in effect with where it is set."""

import json

from aigc import config
from config_cli import invoke, write


def test_config_path_prints_the_settings_file_and_whether_it_exists():
    result = invoke("config", "path")
    assert result.exit_code == 0 and result.stdout == f"{config.settings_file()}\n" and "does not exist yet" in result.stderr
    assert json.loads(invoke("config", "path", "--json").stdout) == {"path": str(config.settings_file()), "exists": False}
    write("threads = 1\n")
    assert json.loads(invoke("config", "path", "--json").stdout)["exists"] is True and invoke("config", "path").stderr == ""


def test_config_show_gives_each_setting_in_effect_and_where_it_is_set():
    write('default_model = "smollm2"\nthreads = 2\ntemplates_path = ["team"]\n\n[aliases]\nsmall = "smollm2"\n\n[serve]\nport = 8080\n\n[remotes.lab]\nurl = "http://lab:8000/v1"\n')
    result = invoke("--threads", "3", "config", "show", "--json", env={"AIGC_LOGS": "0"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(config.settings_file()) and data["exists"] is True
    assert {key: (row["value"], row["source"]) for key, row in data["settings"].items()} == {
        "default_model": ("smollm2", "config.toml"), "default_image_model": ("sd-turbo", "default"), "logs": (False, "AIGC_LOGS"),
        "threads": (3, "--threads"), "templates_path": ([str(config.settings_file().parent / "team")], "config.toml"), "remotes": ({"lab": {"url": "http://lab:8000/v1"}}, "config.toml"),
        "aliases": ({"small": "smollm2"}, "config.toml"), "serve": ({"port": 8080}, "config.toml"),
    }
    text = invoke("config", "show", env={"AIGC_DEFAULT_MODEL": "small"}).stdout.splitlines()
    assert invoke("config", env={"AIGC_DEFAULT_MODEL": "small"}).stdout.splitlines() == text  # `aigc config` alone shows them
    assert text[0].split() == ["default_model", "small", "AIGC_DEFAULT_MODEL"] and text[3].split() == ["threads", "2", "config.toml"]
    assert text[6].split() == ["aliases", "small", "=", "smollm2", "config.toml"] and [line.split()[0] for line in text] == list(config.SETTINGS)


def test_config_show_of_settings_that_cannot_be_used_warns_of_each_and_exits_2():
    path = write('logs = "no"\nthreads = "two"\n')
    result = invoke("config", "show")
    assert result.exit_code == 2
    assert "logs" in result.stdout and "(cannot be used)" in result.stdout and "default_model" in result.stdout
    assert f"Warning: threads in {path} must be a whole number of 1 or more (threads = 2), got 'two'" in result.stderr
    assert f"Warning: logs in {path} must be true or false" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: logs, threads in {path} cannot be used (above); `aigc doctor` says how to fix them"


def test_config_show_reports_a_bad_aigc_threads_on_its_line_instead_of_refusing_to_start():
    result = invoke("config", "show", env={"AIGC_THREADS": "two"})
    assert result.exit_code == 2 and "Warning: AIGC_THREADS must be a whole number of 1 or more, got 'two'" in result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()][3] == ["threads", "(cannot"]


def test_config_show_names_the_variable_that_cannot_be_used_not_the_settings_file():
    result = invoke("config", "show", "--json", env={"AIGC_THREADS": "abc", "AIGC_LOGS": "maybe"})
    settings = json.loads(result.stdout)["settings"]
    assert result.exit_code == 2 and (settings["threads"]["source"], settings["logs"]["source"]) == ("AIGC_THREADS", "AIGC_LOGS")
    result = invoke("config", "show", env={"AIGC_THREADS": "abc"})
    assert result.stderr.strip().splitlines()[-1] == "Error: threads (AIGC_THREADS) cannot be used (above); `aigc doctor` says how to fix it"
    path = write("threads = 0\n")  # the file's own bad line is still the file's
    result = invoke("config", "show", "--json", env={"AIGC_LOGS": "maybe"})
    settings = json.loads(result.stdout)["settings"]
    assert (settings["threads"]["source"], settings["logs"]["source"]) == ("config.toml", "AIGC_LOGS")
    said = invoke("config", "show", env={"AIGC_LOGS": "maybe"}).stderr.strip().splitlines()[-1]
    assert said == f"Error: logs (AIGC_LOGS), threads in {path} cannot be used (above); `aigc doctor` says how to fix them"


def test_config_show_refuses_a_default_model_the_commands_refuse():
    for env, key, said in (
        ({"AIGC_DEFAULT_MODEL": " "}, "default_model", "Warning: the default text model ' ' (set by AIGC_DEFAULT_MODEL) is blank, no model name; change or unset AIGC_DEFAULT_MODEL"),
        ({"AIGC_DEFAULT_MODEL": "nonexist-zzz"}, "default_model", "Warning: the default text model 'nonexist-zzz' (set by AIGC_DEFAULT_MODEL) cannot be used; change or unset AIGC_DEFAULT_MODEL. unknown model"),
        ({"AIGC_DEFAULT_IMAGE_MODEL": "nonexist-zzz"}, "default_image_model", "Warning: the default image model 'nonexist-zzz' (set by AIGC_DEFAULT_IMAGE_MODEL) cannot be used"),
    ):
        result = invoke("config", "show", "--json", env=env)
        row = json.loads(result.stdout)["settings"][key]
        assert result.exit_code == 2 and row["value"] is None and row["source"] == next(iter(env)) and said in result.stderr, result.stderr
        chat = invoke("chat", "hi", env=env) if key == "default_model" else None
        assert chat is None or (chat.exit_code == 2 and said.removeprefix("Warning: ") in chat.stderr)  # the same check as the command's


def test_an_empty_aigc_default_model_is_unset():
    result = invoke("config", "show", "--json", env={"AIGC_DEFAULT_MODEL": ""})
    assert result.exit_code == 0 and json.loads(result.stdout)["settings"]["default_model"] == {"value": "smollm2", "source": "default", "error": None, "warnings": []}
