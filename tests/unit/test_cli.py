"""The CLI on a tiny random model: options, errors, exit codes, output files, lazy imports."""

import gc
import json
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from aigc import hookimpl, plugins
from aigc.cli.app import AigcGroup, app
from aigc.errors import BadInputError
from lazy_imports import imports_after

runner = CliRunner()


def invoke(*args, input=None, env=None):
    return runner.invoke(app, list(args), input=input, env=env)


@pytest.mark.parametrize(
    "argv", [["--help"], ["models", "list"], ["models"], ["templates"], ["chat", "--help"], ["similar", "--help"], ["templates", "list"], ["plugins"], ["plugins", "--all", "--json"], ["sessions", "--json"], ["logs", "--json"], ["config", "show"]]
)
def test_help_and_models_list_never_import_torch(argv):
    assert imports_after(argv) == "False False"


def test_help_does_not_import_the_email_policy_that_only_reading_mail_needs():
    assert imports_after(["--help"], modules=("email.policy",)) == "False"  # about 12 ms of every start


def test_models_list_reads_the_hub_cache_without_importing_huggingface_hubs_downloader():
    assert imports_after(["models", "list"], modules=("huggingface_hub.file_download",)) == "False"


@pytest.mark.parametrize("argv", [["models", "list"], ["--help"], ["--version"], [], ["chat", "--help"], ["--show-completion", "bash"]])
def test_a_full_disk_under_stdout_is_a_one_line_error(argv):
    import pty

    terminal, _ = pty.openpty()  # `aigc` alone shows its help where stdin is a terminal
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "aigc", *argv], stdout=full, stderr=subprocess.PIPE, stdin=terminal, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr == "Error: cannot write the output: No space left on device (free some space, or write elsewhere)\n"


@pytest.mark.parametrize("argv", [["models", "list"], ["--help"], ["--show-completion", "bash"], ["chat", "-m", "echo", "hello"]])
def test_a_closed_stdout_is_a_one_line_error(argv):
    command = [sys.executable, "-m", "aigc", *argv]
    done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *command], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)  # `aigc ... >&-`
    assert done.returncode == 1 and done.stderr == "Error: cannot write the output: standard output is closed\n"


def test_a_command_that_writes_no_result_runs_with_stdout_closed():
    done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "aigc", "logs", "on"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "logging is on (aigc's default)\n")


def test_no_command_with_piped_stdin_is_a_one_line_hint_not_the_help_into_the_result():
    done = subprocess.run([sys.executable, "-m", "aigc"], input="notes to summarize\n", capture_output=True, text=True, timeout=60)  # `cat notes.md | aigc > out.md`
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "Error: no command given (to ask the model about the piped text: `... | aigc chat`; `aigc --help` lists the commands)\n"
    shown = subprocess.run([sys.executable, "-m", "aigc", "--help"], input="", capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "Commands" in shown.stdout


def test_no_command_with_stdin_from_dev_null_shows_the_help_as_in_a_terminal():
    done = subprocess.run([sys.executable, "-m", "aigc"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # cron, CI, `ssh host aigc`
    assert "Commands" in done.stdout and "no command given" not in done.stderr


def on_a_terminal(*args: str, **env: str) -> str:
    """What `aigc ARGS` shows with stdout and stderr on a pseudo-terminal, `env` added."""
    import pty

    main, side = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "aigc", *args], stdout=side, stderr=side, stdin=subprocess.DEVNULL, env={**os.environ, **env})
    os.close(side)
    shown = b""
    while True:  # read as it comes: a terminal holds only a few KB unread
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(main)
    process.wait(timeout=60)
    return shown.decode()


def test_help_off_a_terminal_is_clicks_plain_help_with_every_option_name_whole():
    shown = invoke("batch", "--help").stdout
    assert not set("╭│╰…") & set(shown)  # no box lines for a screen reader to read out, nothing cut
    assert any("--escape-formulas / --no-escape-formulas" in line for line in shown.splitlines())
    assert re.search(r"^  Examples:\n    aigc batch ", shown, re.M)  # the examples a line each
    alone = invoke("eval")  # a group alone shows its help, on stdout
    assert alone.exit_code == 2 and "Commands:" in alone.stdout and "classify" in alone.stdout


def test_help_off_a_terminal_wraps_each_commands_description_instead_of_cutting_it():
    shown = invoke("--help").stdout  # `aigc --help | less`
    assert not re.search(r"\.\.\.$", shown.split("Commands:")[1], re.M)  # no description cut short
    described = re.search(r"^  summarize +(.*?)\n  headline ", shown, re.M | re.S).group(1)
    assert " ".join(described.split()) == "Summarize a document; long ones are summarized in parts, then the parts together."


@pytest.mark.parametrize("command", [["summarize"], ["batch"], []])
def test_help_on_a_narrow_terminal_wraps_option_names_instead_of_cutting_them(command):
    shown = on_a_terminal(*command, "--help", COLUMNS="40", TERM="xterm", NO_COLOR="1")
    assert "╭" in shown and "…" not in shown  # typer's panels, nothing cut
    if command == ["summarize"]:
        assert re.search(r"│ --chunk-to .*\r?\n│ kens ", re.sub(r"\x1b\[[0-9;]*m", "", shown))  # --chunk-tokens, folded onto the next line


def test_help_keeps_typers_layout_where_typer_has_no_console_maker_to_wrap(monkeypatch):
    from typer import rich_utils

    from aigc.cli import help_layout

    monkeypatch.delattr(rich_utils, "_get_rich_console")  # private in typer: a release may rename it
    help_layout._folded()  # no AttributeError: --help on a terminal still shows
    assert not hasattr(rich_utils, "_get_rich_console")


def test_help_on_a_dumb_terminal_is_plain():
    shown = on_a_terminal("summarize", "--help", TERM="dumb")
    assert "--chunk-tokens" in shown and not set("╭│…") & set(shown)


def completions(words: str) -> list[str]:
    """What bash completion offers for the last of `words` (`aigc chat -m `), asked as the shell asks."""
    env = {**os.environ, "_AIGC_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(words.count(" "))}
    done = subprocess.run([sys.executable, "-m", "aigc"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    return done.stdout.split()


@pytest.mark.parametrize(
    "words, offered",
    [
        ("aigc summarize x --length ", ["short", "medium", "long"]),
        ("aigc summarize x --format b", ["bullets"]),
        ("aigc headline --style q", ["question"]),
        ("aigc classify x --calibrate ", ["auto", "content-free", "examples", "batch", "off"]),
        ("aigc chat --device c", ["cpu", "cuda"]),
        ("aigc batch summarize --on-error ", ["skip", "stop"]),
        ("aigc run summ", ["summarize", "summarize-chunk"]),
        ("aigc translate x --to fr -t tr", ["translate"]),
        ("aigc image -m ", ["sd-turbo"]),
        ("aigc chat -m ./", []),  # a path: the shell offers file names
    ],
)
def test_shell_completion_offers_choices_templates_and_models(words, offered):
    assert completions(words) == offered


def test_shell_completion_of_models_lists_the_text_aliases_without_importing_torch(monkeypatch):
    text = completions("aigc chat -m ")
    assert "smollm2" in text and "sd-turbo" not in text and text == sorted(text)
    for name, value in {"_AIGC_COMPLETE": "complete_bash", "COMP_WORDS": "aigc chat -m ", "COMP_CWORD": "3"}.items():
        monkeypatch.setenv(name, value)
    assert imports_after([]) == "False False"


def test_shell_completion_offers_named_remotes_sessions_and_languages(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('[remotes.lab]\nurl = "http://lab:8000/v1"\n')
    (tmp_path / "data" / "sessions").mkdir(parents=True)
    for name in ("trip", "work"):
        (tmp_path / "data" / "sessions" / f"{name}.json").write_text("{}")
    assert "remote:lab" in completions("aigc chat -m ") and completions("aigc serve -m rem") == ["remote:lab"]
    assert "remote:lab" not in completions("aigc image -m ")  # a remote is no image model
    for words in ("aigc chat -S ", "aigc chat --session ", "aigc sessions show ", "aigc sessions rm ", "aigc logs -S "):
        assert completions(words) == ["trip", "work"], words
    assert completions("aigc translate x --to pt") == ["pt", "pt-BR", "pt-PT"]
    assert completions("aigc translate x --to Fr") == ["French"] and completions("aigc translate x --from au") == ["auto"]
    assert completions("aigc summarize x -L j") == ["ja"] and completions("aigc headline --language Ger") == ["German"]


def test_bash_completes_a_name_with_a_colon_as_one_word(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('[remotes.lab]\nurl = "http://lab:8000/v1"\n')
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "aigc").write_text(f'#!/bin/sh\nexec {sys.executable} -m aigc "$@"\n')
    (tmp_path / "bin" / "aigc").chmod(0o755)
    script = subprocess.run([sys.executable, "-m", "aigc", "--show-completion", "bash"], capture_output=True, text=True, timeout=60).stdout
    asked = (  # as bash asks with its default COMP_WORDBREAKS, which breaks `remote:l` into remote, :, l
        'COMP_LINE="aigc chat -m remote:l"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(aigc chat -m remote : l); COMP_CWORD=5\n'
        '_aigc_completion aigc; echo "${COMPREPLY[*]}"\n'
        'COMP_LINE="aigc chat -m "; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(aigc chat -m ""); COMP_CWORD=3\n'
        '_aigc_completion aigc; echo "${COMPREPLY[*]}"\n'
    )
    done = subprocess.run(["bash", "-c", script + asked], env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}, capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0] == "lab", done  # what replaces the `l` after the colon
    assert "remote:lab" in lines[1].split() and "smollm2" in lines[1].split(), done


def test_shell_completion_with_a_broken_settings_file_offers_nothing_and_prints_nothing(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('aliases = "not a table"\n')
    assert completions("aigc chat -m ") == []
    (tmp_path / "config" / "config.toml").write_text("[[broken\n")
    assert completions("aigc chat -m ") == []


@pytest.mark.parametrize("argv, starts", [(["--show-completion", "zsh"], "#compdef aigc"), (["--show-completion=zsh"], "#compdef aigc"), (["--show-completion", "fish"], "complete --command aigc"), (["--show-completion", "bash"], "_aigc_completion()")])
def test_show_completion_prints_the_script_of_the_shell_named(argv, starts):
    done = subprocess.run([sys.executable, "-m", "aigc", *argv], capture_output=True, text=True, timeout=60)  # named from any shell: a dotfiles installer's
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.startswith(starts)


def test_show_completion_after_double_dash_is_text_not_the_option():
    done = subprocess.run([sys.executable, "-m", "aigc", "chat", "-m", "echo", "--no-log", "--", "--show-completion"], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "--show-completion\n")


def test_show_completion_after_the_command_is_the_commands_unknown_option():
    done = subprocess.run([sys.executable, "-m", "aigc", "chat", "-m", "echo", "--show-completion"], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "") and "No such option: --show-completion" in done.stderr


def test_completing_after_show_completion_offers_commands_not_the_script():
    assert "chat" in completions("aigc --show-completion ")


def test_show_completion_of_a_shell_with_none_is_a_one_line_error():
    done = subprocess.run([sys.executable, "-m", "aigc", "--show-completion", "sh"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "Error: no completion script for shell 'sh'; name one of bash, zsh, fish, powershell, pwsh: `aigc --show-completion zsh`\n"


@pytest.mark.parametrize("argv, script, starts", [(["--install-completion", "fish"], ".config/fish/completions/aigc.fish", "complete --command aigc"), (["--install-completion=zsh"], ".zfunc/_aigc", "#compdef aigc")])
def test_install_completion_installs_the_script_of_the_shell_named(tmp_path, argv, script, starts):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}  # named from another shell: a dotfiles installer's
    done = subprocess.run([sys.executable, "-m", "aigc", *argv], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "") and str(tmp_path / script) in done.stdout
    assert (tmp_path / script).read_text().startswith(starts) and not (tmp_path / ".bashrc").exists()


def test_install_completion_for_zsh_adds_one_line_to_zshrc_and_no_zstyle(tmp_path):
    (tmp_path / ".zshrc").write_text("source $ZSH/oh-my-zsh.sh")  # compinit runs in there already
    env = {**os.environ, "HOME": str(tmp_path)}
    for _ in range(2):  # installed twice: the line once
        done = subprocess.run([sys.executable, "-m", "aigc", "--install-completion", "zsh"], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (0, ""), done
    zshrc = (tmp_path / ".zshrc").read_text()
    assert zshrc.startswith("source $ZSH/oh-my-zsh.sh\n") and len(zshrc.splitlines()) == 2 and "zstyle" not in zshrc, zshrc
    assert "source ~/.zfunc/_aigc" in zshrc and zshrc.count("compinit") == 2  # sourced where compinit ran; else run once: `autoload -Uz compinit && compinit`


def test_install_completion_for_bash_sources_the_script_from_bashrc_once(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "aigc", "--install-completion", "bash"], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (0, ""), done
    script = tmp_path / ".bash_completions" / "aigc.sh"
    assert (tmp_path / ".bashrc").read_text() == f"source '{script}'\n" and "_aigc_completion()" in script.read_text()


def test_install_completion_of_a_shell_with_none_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "aigc", "--install-completion", "sh"], env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, list(tmp_path.iterdir())) == (2, "", [])
    assert done.stderr == "Error: no completion script for shell 'sh'; name one of bash, zsh, fish, powershell, pwsh: `aigc --install-completion zsh`\n"


def test_install_completion_for_a_shell_not_installed_is_a_one_line_error(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "PATH": str(tmp_path)}  # no powershell on it
    done = subprocess.run([sys.executable, "-m", "aigc", "--install-completion", "powershell"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "Error: could not install powershell completion (No such file or directory: powershell); `aigc --show-completion powershell` prints the script to install yourself\n"


def test_install_completion_after_the_command_is_the_commands_unknown_option(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "aigc", "chat", "-m", "echo", "--install-completion", "fish"], env=env, capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "") and "No such option: --install-completion" in done.stderr
    assert not (tmp_path / ".config" / "fish").exists()


def test_completing_after_install_completion_installs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert "chat" in completions("aigc --install-completion fish ")
    assert not (tmp_path / ".config" / "fish").exists()


def test_ctrl_c_while_plugins_load_is_one_line(monkeypatch, capsys):
    from aigc.cli import app as app_module

    def interrupted(app):
        raise KeyboardInterrupt

    monkeypatch.setattr(plugins, "register_commands", interrupted)
    monkeypatch.delenv("AIGC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        app_module._register_commands()
    assert stopped.value.code == 130 and capsys.readouterr().err == "Error: interrupted\n"
    monkeypatch.setenv("AIGC_DEBUG", "1")
    with pytest.raises(SystemExit) as stopped:
        app_module._register_commands()
    assert stopped.value.code == 130 and "KeyboardInterrupt" in capsys.readouterr().err  # the traceback, and the same exit code


@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("YES", True), (" On ", True), ("2", True), ("debug", True), ("0", False), ("false", False), ("FALSE", False), ("no", False), (" Off ", False), ("", False), (None, False)])
def test_aigc_debug_is_on_for_any_value_but_an_off_one(monkeypatch, capsys, value, on):
    from aigc import config, errors
    from aigc.cli import app as app_module

    for name in ("AIGC_DEBUG", "AIGC_TRACE_PLUGINS"):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    cause = ValueError("the library's own error")
    assert config.debug() is on and config.flag("AIGC_TRACE_PLUGINS") is on
    assert (errors.translated(cause) is cause) is on  # the cause a notebook's traceback shows

    def interrupted(app):
        raise KeyboardInterrupt

    monkeypatch.setattr(plugins, "register_commands", interrupted)
    with pytest.raises(SystemExit) as stopped:
        app_module._register_commands()
    err = capsys.readouterr().err
    assert stopped.value.code == 130 and ("Traceback" in err) is on and err.endswith("Error: interrupted\n")


STARTING = (  # Ctrl-C once aigc is imported and before the CLI runs: while it starts, as far as SIGINT goes
    "import os, signal, sys, time\n"
    "sys.argv[0] = {argv0!r}\n"
    "{before}"
    "import aigc\n"
    "os.kill(os.getpid(), signal.SIGINT)\n"
    "time.sleep(30)\n"
    "print('went on')\n"
)


@pytest.mark.parametrize("debug", [None, "1"])
def test_ctrl_c_while_the_aigc_command_imports_is_one_line(monkeypatch, debug):
    if debug:
        monkeypatch.setenv("AIGC_DEBUG", debug)
    else:
        monkeypatch.delenv("AIGC_DEBUG", raising=False)
    done = subprocess.run([sys.executable, "-c", STARTING.format(argv0="/usr/local/bin/aigc", before="")], capture_output=True, text=True, timeout=60)
    assert done.returncode in (130, -2) and done.stdout == ""  # -2: Python ends itself with SIGINT after a KeyboardInterrupt's traceback
    if debug:
        assert "KeyboardInterrupt" in done.stderr
    else:
        assert (done.returncode, done.stderr) == (130, "Error: interrupted\n")


@pytest.mark.parametrize("argv0, before, went_on", [("my_script.py", "", False), ("/usr/local/bin/aigc", "signal.signal(signal.SIGINT, signal.SIG_IGN)\n", True)])
def test_importing_aigc_leaves_sigint_to_a_library_user_and_an_ignored_one_ignored(argv0, before, went_on):
    done = subprocess.run([sys.executable, "-c", STARTING.format(argv0=argv0, before=before).replace("time.sleep(30)", "time.sleep(0.5)")], capture_output=True, text=True, timeout=60)
    if went_on:  # `nohup aigc ...`, a background job: SIGINT stays ignored
        assert (done.returncode, done.stdout) == (0, "went on\n")
    else:  # the program's own KeyboardInterrupt, as without aigc
        assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr


def test_an_error_at_the_top_after_the_cli_started_is_shown_by_the_hook_typer_kept():
    script = "import sys; sys.argv[0] = '/usr/local/bin/aigc'\nimport aigc.cli.app, typer.main\nfrom aigc.cli import starting\nstarting.started()\ntyper.main.except_hook(RuntimeError, RuntimeError('boom'), None)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "AIGC_DEBUG"})
    assert done.returncode == 0 and done.stderr == "RuntimeError: boom\n"


def test_the_aigc_command_is_told_from_a_program_that_imports_aigc(monkeypatch):
    from aigc.cli import starting

    for orig, argv0, command in ((["python", "-m", "aigc", "chat"], "-m", True), (["python", "-X", "importtime", "-m", "aigc"], "-m", True), (["/v/bin/python", "/v/bin/aigc", "logs"], "/v/bin/aigc", True), (["python", "app.py"], "app.py", False), (["python", "-m", "aigc_helper"], "-m", False)):
        monkeypatch.setattr(sys, "orig_argv", orig)
        monkeypatch.setattr(sys, "argv", [argv0])
        assert starting._the_command() is command, orig


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("aigc ")


@pytest.mark.parametrize("name", ["chat", "summarize", "headline", "translate", "classify", "eval classify", "embed", "similar", "batch", "run", "image", "serve"])
def test_help_ends_with_examples_that_the_command_parses(name):
    import shlex

    import typer.main

    path = name.split()
    shown = invoke(*path, "--help", env={"COLUMNS": "100"}).stdout
    assert re.search(r"^( *)Examples:\n\1  +aigc ", shown, re.M)  # indented under the heading
    command = typer.main.get_command(app)
    for part in path:
        command = command.get_command(None, part)
    examples = [line.strip() for line in command.epilog.splitlines()[2:]]
    assert 2 <= len(examples) <= 3
    for line in examples:
        assert line.replace("\\[", "[") in shown  # shown whole, brackets and all
        words = shlex.split(line.partition("#")[0].split("|")[-1].partition("<")[0])
        words = words[words.index("aigc") + 1 + len(path):]
        command.make_context(path[-1], words)  # options and arguments as the command takes them


def test_one_shot_chat_json_on_a_local_model_directory(tiny_model_dir):
    from aigc.engine.loading import dtype_used

    result = invoke("chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "5", "--seed", "1", "--json", "--stats")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"model", "model_digest", "text", "finish_reason", "usage", "conversation"} and data["usage"]["prompt_tokens"] > 0
    assert data["finish_reason"] == ("length" if data["usage"]["completion_tokens"] == 5 else "stop")
    again = invoke("chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "5", "--seed", "1", "--json")
    assert json.loads(again.stdout) == {**data, "conversation": json.loads(again.stdout)["conversation"]}  # this answer's tokens, not the process's so far
    assert json.loads(again.stdout)["conversation"] != data["conversation"]  # a new conversation each time
    assert "tokens/s:" in result.stderr
    assert f"dtype: {dtype_used(str(tiny_model_dir))}" in " ".join(result.stderr.split())  # what auto picked here
    verbose = invoke("-v", "chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "2", "--dtype", "float32", "--no-log")
    assert "runs on cpu in float32" in verbose.stderr


def test_classify_stats_count_the_prompts_scored(tiny_model_dir, tmp_path):
    import shutil

    fresh = shutil.copytree(tiny_model_dir, tmp_path / "model")  # an engine no other test counted on
    result = invoke("classify", "Bees make honey", "--labels", "a,b", "-m", str(fresh), "--stats")
    assert result.exit_code == 0, result.output
    stats = dict(line.split(":", 1) for line in result.stderr.splitlines() if ":" in line)
    assert int(stats["prompt tokens"]) > 0 and int(stats["prompts scored"]) >= 1 and "tokens/s" not in stats
    assert float(stats["scoring time"].strip().rstrip("s")) > 0


def test_same_seed_same_output(tiny_model_dir):
    args = ("chat", "Bees", "-m", str(tiny_model_dir), "--max-tokens", "12", "--temperature", "1", "--seed", "5")
    assert invoke(*args).stdout == invoke(*args).stdout


def test_top_p_top_k_and_seed_with_greedy_decoding_are_a_warning(tiny_model_dir, tmp_path):
    model = ("-m", str(tiny_model_dir), "--max-tokens", "3")
    greedy = invoke("chat", "Bees", *model, "--seed", "5", "--top-k", "3", "--min-p", "0.1")  # chat is greedy by default
    assert greedy.exit_code == 0 and greedy.stderr.startswith("Warning: --top-k and --min-p and --seed change nothing here: the answer is greedy (temperature 0); give --temperature")
    assert invoke("chat", "Bees", *model, "--seed", "5", "--temperature", "1").stderr.count("Warning") == greedy.stderr.count("Warning") - 1
    tiny = invoke("chat", "Bees", *model, "--seed", "5", "--temperature", "1e-6")  # greedy too
    assert tiny.exit_code == 0 and tiny.stderr.startswith("Warning: --seed changes nothing here: the answer is greedy (temperature 1e-06, below 1e-05); give --temperature")
    template = invoke("run", "summarize", "-i", "-", *model, "--top-p", "0.5", "--dry-run", input="Bees make honey.")  # greedy by its front matter
    assert "Warning: --top-p changes nothing here" in template.stderr and "Warning" not in invoke("run", "chat", "-i", "-", *model, "--seed", "1", "--dry-run", input="Bees").stderr
    rows = tmp_path / "rows.txt"
    rows.write_text("Bees make honey in the city and the country and everywhere else too.\n")
    batch = invoke("batch", "summarize", "-i", str(rows), "-o", str(tmp_path / "out.jsonl"), *model, "--seed", "1")
    assert batch.exit_code == 0 and "Warning: --seed changes nothing here" in batch.stderr


def test_summarize_writes_the_output_file(tiny_model_dir, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Bees make honey.\n\nCities have rooftops.")
    out = tmp_path / "summary.txt"
    result = invoke("summarize", str(doc), "-m", str(tiny_model_dir), "--max-tokens", "8", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().endswith("\n")
    assert result.stdout == ""


def test_a_summary_cut_off_names_the_token_limit_in_force_and_one_to_give(tmp_path):
    from aigc.generators.summarize import summary_tokens

    (tmp_path / "notes.txt").write_text(" ".join(f"Bees number {i} make honey." for i in range(60)))
    default = summary_tokens(20)
    cases = (([], f"max_tokens {default}, the default for a summary of 20 words", 2 * default), (["--max-tokens", "50"], "--max-tokens 50", 100), (["--max-tokens", "1"], "--max-tokens 1", default))
    for given, limit, more in cases:  # twice the limit, but no less than the length's default (not 2 for 1)
        for lines in ([], ["--lines"]):
            code, warned = bad("summarize", str(tmp_path / "notes.txt"), "--words", "20", "-m", "echo", *given, *lines)
            where = "line 1: " if lines else ""
            assert code == 0 and warned == [f"Warning: {where}the summary was cut off at {limit} (its unfinished last sentence is left out where it has others); raise --max-tokens (to {more}, say) for a whole one"]


def test_a_summary_cut_off_at_its_templates_default_says_so(tmp_path, monkeypatch):
    from aigc.generators.summarize import summary_tokens
    from aigc.templates import get_template

    built_in = get_template("summarize").path.read_text()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "summarize.j2").write_text(built_in.replace("defaults:\n  temperature: 0\n", "defaults:\n  temperature: 0\n  max_tokens: 9\n", 1))
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path / "mine"))
    (tmp_path / "notes.txt").write_text(" ".join(f"Bees number {i} make honey." for i in range(60)))
    code, warned = bad("summarize", str(tmp_path / "notes.txt"), "--words", "20", "-m", "echo")
    assert code == 0 and warned == [f"Warning: the summary was cut off at max_tokens 9, the summary template's default (its unfinished last sentence is left out where it has others); raise --max-tokens (to {summary_tokens(20)}, say) for a whole one"], warned


@pytest.mark.parametrize("command", [("summarize", "-"), ("summarize", "-", "--lines"), ("headline", "-"), ("headline", "--topic", "Bienen auf dem Dach", "--lines")])
def test_language_reaches_the_template_and_the_log(tmp_path, command):
    template = tmp_path / "lang.j2"  # its first variable is what the model echo answers with: the language the prompt asks for
    template.write_text("---\nvariables:\n  - name: language\n" + "".join(f"  - name: {name}\n    default: ''\n" for name in ("text", "topic", "article")) + "---\nIn {{ language }}: {{ text }}{{ topic }}{{ article }}\n")
    given = ("-t", str(template), "--chunk-tokens", "64") if command[0] == "summarize" else ("-t", str(template), "-n", "1")
    result = invoke(*command, "-m", "echo", "-L", "Français", *given, "--log", input="Bienen machen Honig auf den Dächern der Stadt.\n")
    assert result.exit_code == 0 and result.stdout == "French\n", result.output
    entry = json.loads(invoke("logs", "--json").stdout)[0]
    assert entry["command"] == command[0] and entry["options"]["language"] == "Français"


def test_summarize_help_shows_the_chunk_tokens_default():
    result = invoke("summarize", "--help")
    assert result.exit_code == 0 and "(default: the largest the model's context holds" in " ".join(result.stdout.split())
    from aigc.generators.summarize import LENGTH_WORDS

    shown = " ".join(invoke("summarize", "--help").stdout.split())
    assert f"short (about {LENGTH_WORDS['short']} words), medium ({LENGTH_WORDS['medium']}, the default) or long ({LENGTH_WORDS['long']})" in shown


def test_chat_help_says_that_file_still_reads_piped_stdin():
    shown = " ".join(invoke("chat", "--help").stdout.split())  # `while read f; do aigc chat -f "$f" ...`: each call would take the loop's input
    assert "Piped stdin is still read and added: in a `while read` loop give `< /dev/null`." in shown


def test_summarize_chunk_tokens_sets_the_part_size_and_is_named_when_a_part_does_not_fit(tiny_model_dir, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Bees make honey in the city. " * 40 + "\n\nCities have rooftops for hives. " * 40)
    model = ("-m", str(tiny_model_dir), "--no-log")
    small = invoke("summarize", str(doc), *model, "--chunk-tokens", "10")
    assert small.exit_code == 2 and small.stderr == "Error: --chunk-tokens must be at least 64 tokens, got 10\n"
    context = invoke("models", "info", str(tiny_model_dir), "--json")
    over = invoke("summarize", str(doc), *model, "--chunk-tokens", "64", "--max-tokens", str(json.loads(context.stdout)["context_length"] - 5))
    assert over.exit_code == 2 and re.search(r"; lower --max-tokens to \d+ or less \(now \d+\)\n$", over.stderr)


def test_an_output_file_that_fails_while_written_is_exit_1_not_bad_input(tiny_model_dir, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Bees make honey.\n\nCities have rooftops.")
    result = invoke("-q", "summarize", str(doc), "-m", str(tiny_model_dir), "--max-tokens", "8", "-o", "/dev/full")
    assert result.exit_code == 1 and result.stderr.splitlines()[-1] == "Error: cannot write /dev/full: No space left on device (free some space, or write elsewhere)"


def test_output_to_dev_stdout_is_written_as_stdout_never_replacing_the_file_it_points_to(tiny_model_dir, tmp_path):
    """`( echo BEFORE; aigc classify x -o /dev/stdout; echo AFTER ) > f` keeps all three lines."""
    target = tmp_path / "all.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"BEFORE\n")
    done = subprocess.run([sys.executable, "-m", "aigc", "-q", "classify", "x", "-l", "a,b", "-m", str(tiny_model_dir), "-o", "/dev/stdout"], stdout=fd, stderr=subprocess.PIPE, text=True, timeout=120)
    os.write(fd, b"AFTER\n")
    os.close(fd)
    before, result, after = target.read_text().splitlines()
    assert done.returncode == 0 and done.stderr == "" and (before, after) == ("BEFORE", "AFTER") and result.split("\t")[0] in ("a", "b")


@pytest.mark.parametrize(
    "command",
    [("summarize", "-"), ("translate", "-", "--to", "fr"), ("headline", "-n", "1", "--topic", "\n\nbees\n\n<html> city rooftops"), ("classify", "-", "-l", "a,b"), ("embed", "-")],
)
def test_lines_gives_one_result_per_non_empty_line_in_order(tiny_model_dir, command):
    text = "\n\nBees make honey.\n\n<html> Cities have rooftops.\n"  # numbered from the first line; a line is text, not markup
    sampling = ("--max-tokens", "6", "--temperature", "1", "--seed", "1") if command[0] in ("summarize", "translate", "headline") else ()
    result = invoke(*command, "--lines", "--json", "-m", str(tiny_model_dir), *sampling, input=text)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0, result.output
    assert len(rows) == 2 and not any("error" in row for row in rows)
    assert [row["line"] for row in rows] == [3, 5]
    plain = invoke(*command, "--lines", "-m", str(tiny_model_dir), *sampling, input=text).stdout.split("\n")
    assert len(plain) == 6 and plain[0] == plain[1] == plain[3] == "" and plain[2] and plain[4]  # blank for blank: it lines up with the input


@pytest.mark.parametrize("command", [("summarize",), ("translate", "--to", "fr"), ("headline",), ("classify", "-l", "a,b"), ("embed",)])
def test_piped_text_is_read_when_no_input_is_given(tiny_model_dir, command):
    if command[0] != "headline":  # a headline from a tiny random model seldom comes out whole
        sampling = ("--max-tokens", "4") if command[0] in ("summarize", "translate") else ()
        result = invoke(*command, "--json", "-m", str(tiny_model_dir), *sampling, input="Bees make honey in the city.\n")
        assert result.exit_code == 0 and json.loads(result.stdout), result.output
    code, lines = bad(*command, "-m", "no-such-model", input="Bees make honey in the city.\n")
    assert code == 2 and lines[-1].startswith("Error: unknown model 'no-such-model'"), lines  # the text was taken: the model is next
    give = "an article with some text in it (.txt, .md or .html, .srt/.vtt/.sbv/.ass/.ssa subtitles or .eml/.mbox e-mail), or a topic with --topic TEXT" if command[0] == "headline" else "a document with some text in it"
    assert bad(*command, "-m", "no-such-model", input="") == (2, [f"Error: standard input is empty; give {give}"])  # stdin was read


@pytest.mark.parametrize(
    "command, words",
    [(("summarize",), "give a document to summarize (FILE, or - for stdin), or pipe it in"), (("translate", "--to", "fr"), "give the text or a document to translate"), (("headline",), "give a topic (--topic TEXT) or an article"),
     (("classify", "-l", "a,b"), "give the text or a document to classify (TEXT, FILE, or - for stdin), or pipe it in"), (("embed",), "give the text or a document to embed")],
)
def test_no_input_from_a_terminal_says_what_to_give(monkeypatch, command, words):
    import types

    import aigc.cli.options

    monkeypatch.setattr(aigc.cli.options, "sys", types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True)))
    code, lines = bad(*command, "-m", "no-such-model")
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_classify_writes_its_result_to_the_output_file_checked_before_any_work(tiny_model_dir, tmp_path):
    model = ("-l", "a,b", "-m", str(tiny_model_dir))
    out = tmp_path / "label.json"
    result = invoke("classify", "one", *model, "--json", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == f"wrote {out}\n"
    assert out.read_text() == invoke("classify", "one", *model, "--json").stdout
    code, lines = bad("classify", "one", "-l", "a,b", "-o", str(tmp_path / "no" / "x.txt"))  # no model named: none is loaded
    assert code == 2 and lines == [f"Error: cannot write {tmp_path / 'no' / 'x.txt'}: directory {tmp_path / 'no'} does not exist"]


@pytest.mark.parametrize(
    "command",
    [("classify", "-", "-l", "a,b"), ("classify", "-", "-l", "a,b", "--calibrate", "batch"), ("embed", "-"), ("translate", "-", "--to", "fr", "--max-tokens", "4", "--temperature", "0"), ("summarize", "-", "--max-tokens", "4", "--temperature", "0")],
)
def test_lines_with_an_output_file_write_what_stdout_would_get_at_the_end(tiny_model_dir, tmp_path, command):
    text = "\nBees make honey.\n\nCities have rooftops.\n\n"
    model = ("-m", str(tiny_model_dir))
    for as_json in ((), ("--json",)):
        out = tmp_path / "results.txt"
        printed = invoke(*command, "--lines", *as_json, *model, input=text)
        result = invoke(*command, "--lines", *as_json, *model, "-o", str(out), input=text)
        assert result.exit_code == 0 and result.stdout == "" and result.stderr.endswith(f"wrote {out}\n"), result.output
        assert out.read_text() == printed.stdout and printed.stdout.count("\n") == (2 if as_json else 5)  # blank for blank, to the input's end


def test_lines_with_an_output_file_keep_failed_lines_on_stderr(tiny_model_dir, tmp_path):
    out = tmp_path / "labels.jsonl"
    text = "Bees make honey.\n" + "word " * 700 + "\nCities have rooftops.\n"  # line 2 is past the 512-token context
    result = invoke("classify", "-", "-l", "a,b", "--lines", "--json", "-m", str(tiny_model_dir), "-o", str(out), input=text)
    assert result.exit_code == 1 and result.stdout == "" and "line 2: " in result.stderr
    assert f"1 of 3 lines failed (warned above); the others' results are in {out}" in result.stderr
    assert [json.loads(line).get("error") is not None for line in out.read_text().splitlines()] == [False, True, False]


def test_classify_json_has_the_same_keys_whichever_way_it_runs(tiny_model_dir):
    model = ("-l", "a,b", "-m", str(tiny_model_dir))
    single = json.loads(invoke("classify", "one", *model, "--json").stdout)
    for extra in ((), ("--calibrate", "batch")):
        for row in map(json.loads, invoke("classify", "-", "--lines", *model, "--json", *extra, input="one\ntwo\n").stdout.splitlines()):
            assert set(row) == {"line", *single} == {"line", "label", "scores", "method", "calibration", "model", "model_digest"}
    assert single["method"] == "zero-shot" and single["calibration"] == "content-free"  # as batch classify and the library give them


@pytest.mark.parametrize("command", [("classify", "-", "-l", "a,b"), ("embed", "-"), ("headline", "-", "-n", "1", "--max-tokens", "30", "--seed", "1")])
def test_lines_too_long_for_the_model_is_skipped_and_said_as_the_command_names_it(tiny_model_dir, command):
    # line 2 is past the 512-token context; headline's (about 490 tokens) leaves too little room for its 30 tokens
    text = "Bees make honey.\n" + "word " * (80 if command[0] == "headline" else 700) + "\nCities have rooftops.\n"
    result = invoke(*command, "--lines", "--json", "-m", str(tiny_model_dir), input=text)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1, result.output
    assert [row["line"] for row in rows] == [1, 2, 3] and "error" in rows[1] and "error" not in rows[0] and "error" not in rows[2]
    assert "line 2: " in result.stderr and "1 of 3 lines failed" in result.stderr
    if command[0] == "headline":
        assert "lower --max-tokens" in result.stderr  # the flag, as the command takes it


def test_labels_that_differ_only_in_case_are_refused_as_given_twice_by_classify_eval_and_batch(tmp_path, unloadable):
    (tmp_path / "data.tsv").write_text("refund please\tbilling\napp crashes\tbug\n")
    (tmp_path / "in.txt").write_text("refund please\n")
    error = "Error: label billing is given twice, as 'Billing' and 'billing', which differ only in case and would split its probability; give it once"
    assert bad("classify", "refund please", "-l", "Billing,bug,billing", "-m", unloadable) == (2, [error])
    assert bad("classify", "refund please", "-l", "Billing", "-l", "bug,billing", "--json", "-m", unloadable) == (2, [error])
    assert bad("eval", "classify", str(tmp_path / "data.tsv"), "-l", "Billing,bug,billing", "-m", unloadable) == (2, [error])
    code, lines = bad("batch", "classify", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"), "-O", "labels=Billing,bug,billing", "-m", unloadable)
    assert code == 2 and lines == [error], lines
    assert not (tmp_path / "out.jsonl").exists()


def test_eval_refuses_several_labels_a_text_and_one_label_data_and_warns_of_examples_it_is_tested_on(tmp_path):
    (tmp_path / "multi.tsv").write_text("goal scored\tsports,politics\nvote held\tpolitics\n")
    (tmp_path / "one.tsv").write_text("good\tpositive\ngreat\tpositive\n")
    assert bad("eval", "classify", str(tmp_path / "multi.tsv"), "-m", "no-such-model") == (2, [f"Error: {tmp_path / 'multi.tsv'}:1: the text has several labels (sports, politics); eval classify measures one label per text, or a set with --multi-label (a comma in a label cell separates labels)"])
    code, lines = bad("eval", "classify", str(tmp_path / "one.tsv"), "-m", "no-such-model")
    assert code == 2 and "holds texts of the label 'positive' only; list every label with --labels" in lines[0]
    (tmp_path / "two.tsv").write_text("good\tpositive\nawful\tnegative\n")
    code, lines = bad("eval", "classify", str(tmp_path / "two.tsv"), "--examples", str(tmp_path / "two.tsv"), "-m", "no-such-model")
    assert lines[0] == f"Warning: 2 of the 2 texts are also in --examples {tmp_path / 'two.tsv'}, so the figures are not on held-out data"
    (tmp_path / "near.tsv").write_text("GOOD  \tpositive\nan  Awful   day\tnegative\n")
    (tmp_path / "data.tsv").write_text("good\tpositive\nan awful day\tnegative\nfine\tpositive\n")
    code, lines = bad("eval", "classify", str(tmp_path / "data.tsv"), "--examples", str(tmp_path / "near.tsv"), "-m", "no-such-model")
    assert lines[0] == f"Warning: 2 of the 3 texts are also in --examples {tmp_path / 'near.tsv'}, so the figures are not on held-out data"  # but for case and spaces
    code, lines = bad("eval", "classify", str(tmp_path / "data.tsv"), "--examples", str(tmp_path / "near.tsv"), "--method", "zero-shot", "-m", "no-such-model")
    assert code != 0 and not any("held-out" in line for line in lines), lines  # the examples' labels are not used


@pytest.mark.parametrize("command", ["classify", "embed"])
@pytest.mark.parametrize("text", ["", "  "])
def test_lines_of_empty_text_itself_say_there_is_no_text(command, text):
    labels = ["-l", "a,b"] if command == "classify" else []
    assert bad(command, text, "--lines", *labels, "-m", "no-such-model") == (2, [f"Error: there is no text to {command}"])


@pytest.mark.parametrize("command", [("classify", "-l", "a,b"), ("embed",), ("headline",), ("summarize",), ("translate", "--to", "fr")])
def test_lines_on_a_file_of_rows_is_refused_and_classifying_it_whole_warned_of_naming_the_batch_command(tmp_path, command):
    (tmp_path / "reviews.csv").write_text("id,review\n1,\"Great, would buy again\"\n")
    (tmp_path / "reviews.jsonl").write_text('{"id": 1, "review": "Great"}\n')
    for name in ("reviews.csv", "reviews.jsonl"):
        code, lines = bad(command[0], str(tmp_path / name), *command[1:], "--lines", "-m", "no-such-model")
        assert code == 2 and "is a file of rows: --lines would take each raw line" in lines[0], lines
        assert f"`aigc batch {command[0]} -i {tmp_path / name} --field COLUMN -o OUT.jsonl`" in lines[0]
        if command[0] in ("classify", "embed"):  # one text of the whole file: warned of
            code, lines = bad(command[0], str(tmp_path / name), *command[1:], "-m", "no-such-model")
            assert lines[0].startswith(f"Warning: {tmp_path / name} is a file of rows, taken whole (") and "`aigc batch" in lines[0], lines


def test_eval_names_its_data_as_data_not_examples(tmp_path):
    assert bad("eval", "classify", str(tmp_path / "missing.tsv"), "-m", "no-such-model") == (2, [f"Error: no such data file: {tmp_path / 'missing.tsv'}"])
    (tmp_path / "header.tsv").write_text("text\tlabel\n")
    assert bad("eval", "classify", str(tmp_path / "header.tsv"), "-m", "no-such-model") == (2, [f"Error: {tmp_path / 'header.tsv'} holds no texts; write one text<TAB>label per line"])


def test_eval_tables_piped_keep_long_labels_whole(tiny_model_dir, tmp_path):
    labels = ["customer_very_positive", "customer_very_negative", "customer_slightly_positive", "customer_slightly_negative", "customer_neutral_or_mixed"]
    (tmp_path / "long.tsv").write_text("".join(f"text {index}\t{label}\n" for index, label in enumerate(labels)))
    result = invoke("eval", "classify", str(tmp_path / "long.tsv"), "-m", str(tiny_model_dir), env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    header = next(line for line in result.stdout.splitlines() if "true \\ predicted" in line)
    assert [label for label in labels if label in header] == labels  # the matrix's columns, on one line
    assert all(any(line.split()[1] == label for line in result.stdout.splitlines() if len(line.split()) > 1) for label in labels)  # each row's label


def test_eval_takes_the_datas_labels_as_written(tiny_model_dir, tmp_path, unloadable):
    (tmp_path / "odd.tsv").write_text("I love it\tgood=yes\nI hate it\tbad|no\nAwesome stuff\tgood=yes\n")
    result = invoke("eval", "classify", str(tmp_path / "odd.tsv"), "-m", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)["labels"]) == ["bad|no", "good=yes"]
    (tmp_path / "two.tsv").write_text("great\tpositive\nawful\tnegative\n")
    listed = invoke("eval", "classify", str(tmp_path / "two.tsv"), "-l", "positive,negative,neutral", "-m", unloadable)
    assert "has no texts of the label 'neutral'; macro-F1 counts it as 0" in listed.stderr  # said, like an unknown label, before any model loads
    assert bad("eval", "classify", str(tmp_path / "odd.tsv"), "-l", "good,ugly", "-m", unloadable) == (2, ["Error: the data uses labels 'bad|no', 'good=yes', not among good, ugly"])
    assert bad("eval", "classify", str(tmp_path / "two.tsv"), "-l", "positive,neutral", "-m", unloadable) == (2, ["Error: the data uses label 'negative', not among positive, neutral"])
    assert bad("eval", "classify", str(tmp_path / "two.tsv"), "-l", "Positive,negative", "-m", unloadable) == (2, [
        "Error: the data uses label 'positive', not among Positive, negative; 'positive' and 'Positive' differ only in case, and labels are matched as written"
    ])
    (tmp_path / "examples.tsv").write_text("lovely\tPositive\nawful\tnegative\n")
    code, lines = bad("eval", "classify", str(tmp_path / "two.tsv"), "-l", "positive,negative", "--examples", str(tmp_path / "examples.tsv"), "-m", unloadable)
    assert code == 2 and lines[-1].endswith("add it or fix the examples; 'Positive' and 'positive' differ only in case, and labels are matched as written"), lines
    (tmp_path / "numbers.jsonl").write_text('{"text": "great", "label": 1}\n{"text": "awful", "label": 0}\n')  # as HF datasets write a ClassLabel
    assert bad("eval", "classify", str(tmp_path / "numbers.jsonl"), "-l", "negative,positive", "-m", unloadable) == (2, [
        """Error: the data uses labels '0', '1', not among negative, positive; its labels are numbers: give each its name, as --labels "0=negative,1=positive" does, """
        """or put the names in the data, for a .jsonl as `jq -c '.label |= ["negative", "positive"][.]'` does (the names in the order of the numbers)"""
    ])
    (tmp_path / "sets.jsonl").write_text('{"text": "goal", "label": ["0", "1"]}\n{"text": "vote", "label": ["1"]}\n{"text": "rain", "label": []}\n')
    assert bad("eval", "classify", str(tmp_path / "sets.jsonl"), "--multi-label", "-l", "sports,politics", "-m", unloadable) == (2, [
        """Error: the data uses labels '0', '1', not among sports, politics; its labels are numbers: give each its name, as --labels "0=sports,1=politics" does, """
        """or put the names in the data, for a .jsonl as `jq -c '.label |= map(["sports", "politics"][tonumber])'` does (the names in the order of the numbers)"""
    ])  # a list's numbers are strings: `["sports", "politics"][.]` made every list empty
    warned = f"""Warning: the labels of {tmp_path / 'numbers.jsonl'} are numbers (0, 1), so they are scored as the words '0', '1'; give each its name, as -l "0=negative,1=positive" does"""
    code, lines = bad("eval", "classify", str(tmp_path / "numbers.jsonl"), "-m", unloadable)
    assert lines[0] == warned and code != 0  # said before the model loads
    code, lines = bad("eval", "classify", str(tmp_path / "numbers.jsonl"), "-l", "0=negative,1=positive", "-m", unloadable)
    assert not any(line.startswith("Warning") for line in lines), lines  # named: scored as the names
    (tmp_path / "three.jsonl").write_text('{"text": "great", "label": 2}\n{"text": "awful", "label": 0}\n{"text": "fine", "label": 10}\n')
    assert bad("eval", "classify", str(tmp_path / "three.jsonl"), "-m", unloadable)[1][0].endswith('(0, 2, 10), so they are scored as the words \'0\', \'2\', \'10\'; give each its name, as -l "0=NAME,2=NAME,10=NAME" does')


def test_eval_reads_jsonl_csv_and_tsv_columns_as_batch_does(tiny_model_dir, tmp_path, unloadable):
    rows = [("I love it", "good"), ("I hate it", "bad"), ("Awesome stuff", "good")]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"id": n, "review": text, "sentiment": label}) + "\n" for n, (text, label) in enumerate(rows)))
    (tmp_path / "data.csv").write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    (tmp_path / "data.tsv").write_text("id\tsentiment\treview\n" + "".join(f"{n}\t{label}\t{text}\n" for n, (text, label) in enumerate(rows)))
    for data, columns in [("data.jsonl", ["--field", "review", "--label-field", "sentiment"]), ("data.jsonl", []), ("data.csv", []), ("data.tsv", ["--field", "review", "--label-field", "sentiment"])]:
        result = invoke("eval", "classify", str(tmp_path / data), *columns, "-m", str(tiny_model_dir), "--json")
        assert result.exit_code == 0, (data, result.output)
        assert json.loads(result.stdout)["examples"] == 3 and json.loads(result.stdout)["labels"] == ["good", "bad"]
    assert bad("eval", "classify", str(tmp_path / "data.jsonl"), "--field", "review", "--label-field", "sentiment", "-l", "good,ugly", "-m", unloadable) == (2, ["Error: the data uses label 'bad', not among good, ugly"])
    assert bad("eval", "classify", "-", "-l", "good,ugly", "-m", unloadable, input="I love it\tgood\nI hate it\tbad\n") == (2, ["Error: the data uses label 'bad', not among good, ugly"])  # stdin: TSV
    (tmp_path / "data").write_text((tmp_path / "data.jsonl").read_text())  # as <(jq ...) names it: no suffix
    for data, columns, piped in [("-", ["--field", "review", "--label-field", "sentiment"], "data.tsv"), ("-", ["--format", "csv"], "data.csv"), (str(tmp_path / "data"), ["--format", "jsonl"], None)]:
        result = invoke("eval", "classify", data, *columns, "-m", str(tiny_model_dir), "--json", input=piped and (tmp_path / piped).read_text())
        assert result.exit_code == 0, (data, columns, result.output)
        assert json.loads(result.stdout)["examples"] == 3 and json.loads(result.stdout)["labels"] == ["good", "bad"]


def test_eval_writes_each_texts_prediction_as_the_report_counts_it(tiny_model_dir, tmp_path, unloadable):
    rows = [("I love it", "good"), ("I hate it", "bad"), ("Awesome stuff", "good"), ("Dreadful", "bad")]
    (tmp_path / "data.tsv").write_text("".join(f"{text}\t{label}\n" for text, label in rows))
    result = invoke("eval", "classify", str(tmp_path / "data.tsv"), "-m", str(tiny_model_dir), "--json", "-o", str(tmp_path / "pred.jsonl"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout: the report only
    predicted = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [(p["number"], p["text"], p["label"]) for p in predicted] == [(n, text, label) for n, (text, label) in enumerate(rows, 1)]
    assert all(p["correct"] == (p["predicted"] == p["label"]) and set(p["scores"]) == {"good", "bad"} for p in predicted)
    labels = report["labels"]
    confusion = [[sum(p["label"] == true and p["predicted"] == guess for p in predicted) for guess in labels] for true in labels]
    assert confusion == report["confusion"] and report["accuracy"] == sum(p["correct"] for p in predicted) / len(rows)
    code, lines = bad("eval", "classify", str(tmp_path / "data.tsv"), "-m", unloadable, "-o", str(tmp_path / "no" / "such" / "pred.jsonl"))
    assert code == 2 and "no" not in {p.name for p in tmp_path.iterdir()}, lines  # refused before the model loads
    code, lines = bad("eval", "classify", str(tmp_path / "data.tsv"), "-m", unloadable, "-o", str(tmp_path / "failed.jsonl"))
    assert code != 0 and not (tmp_path / "failed.jsonl").exists()  # written only once the evaluation ends
    data_before = (tmp_path / "data.tsv").read_text()
    for output in ("-", str(tmp_path / "data.tsv")):  # stdout holds the report; the data must not be replaced
        code, lines = bad("eval", "classify", str(tmp_path / "data.tsv"), "-m", unloadable, "-o", output)
        assert code == 2 and lines[0].startswith(f"Error: -o {'names standard output' if output == '-' else output + ' is the data file'}"), lines
    assert (tmp_path / "data.tsv").read_text() == data_before and not (tmp_path / "-").exists()


def test_eval_multi_label_reports_each_texts_label_set_as_scikit_learn_does(tiny_model_dir, tmp_path, unloadable):
    rows = [("goals and votes", "sports,politics"), ("a vote", "politics"), ("a recipe", ""), ("a match", "sports"), ("soup", "cooking")]
    (tmp_path / "multi.tsv").write_text("".join(f"{text}\t{labels}\n" for text, labels in rows))  # an empty cell: no label applies
    model = ["-m", str(tiny_model_dir)]
    result = invoke("eval", "classify", str(tmp_path / "multi.tsv"), "--multi-label", "--threshold", "0", *model, "--json", "-o", str(tmp_path / "pred.jsonl"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["labels"] == ["sports", "politics", "cooking"] and report["examples"] == 5 and report["threshold"] == 0 and report["multi_label"] is True
    assert report["per_label_recall"] == {"sports": 1, "politics": 1, "cooking": 1} and report["per_label_support"] == {"sports": 2, "politics": 2, "cooking": 1}
    assert report["subset_accuracy"] == 0 and report["micro_precision"] == 5 / 15  # threshold 0: every label chosen for every text
    assert {"hamming_loss", "micro_f1", "macro_f1", "weighted_f1", "samples_f1", "per_label_precision", "per_label_f1", "per_label_confusion", "method", "calibration"} <= set(report)
    predicted = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [(p["number"], p["text"], p["labels"]) for p in predicted] == [(n, text, [name for name in labels.split(",") if name]) for n, (text, labels) in enumerate(rows, 1)]
    assert all(sorted(p["predicted"]) == sorted(report["labels"]) and p["correct"] is False for p in predicted)
    shown = invoke("eval", "classify", str(tmp_path / "multi.tsv"), "--multi-label", *model)
    assert shown.exit_code == 0, shown.output
    assert all(words in shown.stdout for words in ("5 texts  subset accuracy", "Hamming loss", "micro-F1", "samples-F1", "threshold 0.5", "precision", "support", "micro avg", "samples avg"))
    (tmp_path / "one.tsv").write_text("great\tgood\nawful\tbad\n")
    single = invoke("eval", "classify", str(tmp_path / "one.tsv"), *model, "--json")
    assert list(json.loads(single.stdout)) == [
        "examples", "accuracy", "macro_f1", "labels", "confusion", "per_label_f1", "examples_per_second", "method", "calibration", "weighted_f1",
        "per_label_precision", "per_label_recall", "per_label_support", "examples_read", "method_reason", "model", "model_digest", "data", "examples_file", "dtype", "aigc_version",
    ]  # one label per text: the keys as before, then what was evaluated
    assert bad("eval", "classify", str(tmp_path / "one.tsv"), "--threshold", "0.3", "-m", unloadable) == (2, ["Error: --threshold picks labels with --multi-label; one label per text is always the likeliest"])
    (tmp_path / "none.tsv").write_text("great\t\nawful\t\n")
    assert bad("eval", "classify", str(tmp_path / "none.tsv"), "--multi-label", "-m", unloadable) == (2, [f"Error: {tmp_path / 'none.tsv'} gives no text a label; list the labels with --labels"])
    assert bad("eval", "classify", str(tmp_path / "none.tsv"), "-m", unloadable)[1] == [f"Error: {tmp_path / 'none.tsv'}:1: the label is empty; give text<TAB>label"]
    (tmp_path / "spam.tsv").write_text("buy now\tspam\nhello mum\t\n")
    assert bad("eval", "classify", str(tmp_path / "spam.tsv"), "--multi-label", "-m", unloadable) == (2, [
        f"Error: {tmp_path / 'spam.tsv'}: texts carry only the label 'spam'; a multi-label evaluation needs two labels or more: list them with --labels "
        "(to measure whether 'spam' applies, write other on the texts without it and evaluate without --multi-label, -l spam,other: "
        "then every text has a label, and 'spam''s F1 is one of the report's)"
    ])  # it said the file held texts of 'spam' only, and to list it with --labels, which one label cannot be
    (tmp_path / "spam.tsv").write_text("buy now\tspam\nhello mum\tother\n")  # the advice taken: both labels in the data, no warning that one counts as 0
    code, lines = bad("eval", "classify", str(tmp_path / "spam.tsv"), "-l", "spam,other", "-m", unloadable)
    assert not any(line.startswith("Warning") for line in lines) and "macro-F1 counts it as 0" not in " ".join(lines), lines


def test_eval_refuses_other_files_and_missing_columns(tmp_path, unloadable):
    (tmp_path / "data.txt").write_text("I love it\tgood\n")
    assert bad("eval", "classify", str(tmp_path / "data.txt"), "-m", unloadable) == (2, [f"Error: {tmp_path / 'data.txt'}: labelled texts are read from .tsv, .csv or .jsonl (.ndjson) files, not a .txt file; rename it so, or give its format with --format tsv (or csv, jsonl)"])
    assert bad("eval", "classify", str(tmp_path / "data.txt"), "--format", "txt", "-m", unloadable) == (2, ["Error: --format names the format of the labelled texts: tsv, csv, jsonl, not 'txt'"])
    (tmp_path / "data.jsonl").write_text('{"blurb": "I love it", "label": "good"}\n{"blurb": "awful", "label": "bad"}\n')
    assert bad("eval", "classify", str(tmp_path / "data.jsonl"), "-m", unloadable) == (2, [f"Error: {tmp_path / 'data.jsonl'}: no row has the column 'text'; its columns: 'blurb', 'label'; choose one with --field"])
    assert bad("eval", "classify", str(tmp_path / "data.jsonl"), "--format", "tsv", "-m", unloadable) == (2, [f"Error: {tmp_path / 'data.jsonl'} is named as a .jsonl file: give it a name that ends in .tsv to read it as text<TAB>label lines"])
    assert bad("eval", "classify", str(tmp_path / "data.jsonl"), "--field", "blurb", "--label-field", "gold", "-m", unloadable) == (2, [f"Error: {tmp_path / 'data.jsonl'}: no row has the column 'gold'; its columns: 'blurb', 'label'; choose one with --label-field"])
    (tmp_path / "two.csv").write_text("title,review,label\nGood,I love it,good\n")
    assert bad("eval", "classify", str(tmp_path / "two.csv"), "-m", unloadable) == (2, [f"Error: {tmp_path / 'two.csv'}: no row has the column 'text'; 'title' and 'review' could each be it; choose one with --field"])
    (tmp_path / "holes.jsonl").write_text('{"text": "I love it", "label": "good"}\n{"text": "awful"}\n{"text": "fine", "label": ["good", "bad"]}\n')
    assert bad("eval", "classify", str(tmp_path / "holes.jsonl"), "-m", unloadable) == (2, [f"Error: {tmp_path / 'holes.jsonl'}: row 2 has no 'label'; give every row its text and label"])
    (tmp_path / "several.csv").write_text('text,label\nI love it,good\nfine,"good,bad"\n')
    assert bad("eval", "classify", str(tmp_path / "several.csv"), "-m", unloadable) == (2, [f"Error: {tmp_path / 'several.csv'}: row 2: the text has several labels (good, bad); eval classify measures one label per text, or a set with --multi-label (a comma in a label cell separates labels)"])


def test_words_where_a_file_is_expected_say_how_to_give_text_and_translate_takes_text_itself(tiny_model_dir):
    assert bad("headline", "rooftop bees") == (2, ["Error: no such file: rooftop bees (for headlines about a topic, give it with --topic TEXT)"])
    assert bad("summarize", "some text") == (2, ["Error: no such file: some text (to summarize text itself, pipe it: echo TEXT | aigc summarize)"])
    assert bad("summarize", "missing.txt") == (2, ["Error: no such file: missing.txt"])
    assert bad("translate", "missing.md", "--to", "fr") == (2, ["Error: no such file: missing.md"])  # a file name: no hint to quote words
    assert bad("translate", "https://example.com/blog/launch", "--to", "fr", "-m", "echo") == (2, ["Error: no such file: https://example.com/blog/launch (aigc reads local files, not URLs; download it first: curl -sL https://example.com/blog/launch -o FILE)"])
    assert bad("summarize", "-", "--length", "short", "--words", "10", input="text") == (2, ["Error: give --length or --words, not both"])
    result = invoke("translate", "Where is the station?", "--to", "es", "--json", "-m", str(tiny_model_dir), "--max-tokens", "4")
    assert result.exit_code == 0 and json.loads(result.stdout)["target_language"] == "es", result.output


def test_lines_with_a_failing_line_prints_the_others_and_exits_1(tiny_model_dir, monkeypatch):
    from aigc.generators.summarize import SummarizeGenerator

    def check_inputs(self, text):
        if text == "bad":
            raise BadInputError("this line is bad")

    monkeypatch.setattr(SummarizeGenerator, "check_inputs", check_inputs)
    text = "Bees make honey.\nbad\nCities have rooftops.\n"
    result = invoke("summarize", "-", "--lines", "--json", "-m", str(tiny_model_dir), "--max-tokens", "4", "--temperature", "1", "--seed", "1", input=text)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1, result.output
    assert [row["line"] for row in rows] == [1, 2, 3] and rows[1]["error"] == "this line is bad"
    assert "summary" in rows[0] and "summary" in rows[2]
    assert "1 of 3 lines failed (warned above); the others' results are printed" in result.stderr

    def fails(self, prepared, opts, sampling):
        raise BadInputError("no summary today")

    monkeypatch.setattr(SummarizeGenerator, "forward", fails)
    every = invoke("summarize", "-", "--lines", "-m", str(tiny_model_dir), "--max-tokens", "4", input="one\ntwo\n")
    assert every.exit_code == 1 and every.stderr.strip().endswith("Error: 2 of 2 lines failed (warned above)")


def test_short_lines_given_back_as_they_are_get_one_warning_at_the_end_not_one_each():
    text = "".join(f"short text {n}\n" + "\n" * (n == 1) for n in range(1, 9))  # line 2 blank
    result = invoke("summarize", "-", "--lines", "-m", "echo", "--no-log", input=text)
    assert result.exit_code == 0 and result.stdout == text, result.output
    assert result.stderr == 'Warning: 8 of 8 texts were no longer than the summary asked for and are given back as they are (lines 1, 3, 4, 5, 6 and 3 more)\n'
    one = invoke("summarize", "-", "--lines", "-m", "echo", "--no-log", input="\nshort text\n")
    assert one.stderr == "Warning: 1 of 1 text was no longer than the summary asked for and is given back as it is (line 2)\n"
    single = invoke("summarize", "-", "-m", "echo", "--no-log", input="short text\n")
    assert single.stderr == "Warning: the text (2 words) is no longer than the summary asked for, so it is given back as it is\n"


@pytest.mark.parametrize("command", [("summarize",), ("headline", "-n", "1"), ("translate", "--to", "fr")])
def test_lines_json_has_the_keys_of_a_single_texts_json_model_too(command):
    single = json.loads(invoke(*command, "-", "-m", "echo", "--no-log", "--json", input="one two three. four five.\n").stdout)
    rows = [json.loads(line) for line in invoke(*command, "-", "--lines", "-m", "echo", "--no-log", "--json", input="one two.\n\nthree four.\n").stdout.splitlines()]
    assert [row["line"] for row in rows] == [1, 3]
    assert all(set(row) == {"line", *single} for row in rows) and single["model"] == rows[0]["model"] == "echo"


def test_greedy_decoding_with_several_headlines_fails_before_any_work(tiny_model_dir, tmp_path, unloadable):
    (tmp_path / "topics.txt").write_text("bees\ncities\n")
    commands = [
        ("headline", "--topic", "bees", "-n", "3", "--temperature", "0"),
        ("headline", "--lines", "--topic", "bees\ncities", "-n", "3", "--temperature", "0"),
        ("batch", "headline", "-i", str(tmp_path / "topics.txt"), "--field", "topic", "-o", str(tmp_path / "out.jsonl"), "-O", "n=2", "--temperature", "0"),
        ("headline", "--topic", "bees", "-n", "2", "--top-k", "1"),
    ]
    for command in commands:
        result = invoke(*command, "-m", unloadable)  # checked before the model would load
        assert result.exit_code == 2 and "headlines need sampling, but --temperature 0 or --top-k 1" in result.stderr, result.output
        assert ("ask for one (-O n=1)" if command[0] == "batch" else "ask for one (-n 1)") in result.stderr  # as each command takes it
    assert not (tmp_path / "out.jsonl").exists()


def test_batch_o_value_nested_too_deeply_is_kept_as_text():
    from aigc.cli.batch import parse_options

    deep = "[" * 100000 + "]" * 100000
    assert parse_options([f"labels={deep}", "examples=[1]"]) == {"labels": deep, "examples": [1]}  # as other text that is not JSON
    assert parse_options([f"labels=[{'1' * 5000}]"]) == {"labels": f"[{'1' * 5000}]"}  # as is a number too long for Python to read


def test_models_info_on_a_config_json_nested_too_deeply_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("[" * 100000 + "]" * 100000)
    result = invoke("models", "info", str(tmp_path))
    assert result.exit_code == 2 and result.stderr == f"Error: {tmp_path / 'config.json'} is not a valid JSON file (nested too deeply); is this a complete model directory?\n"
    (tmp_path / "config.json").write_text(f'{{"vocab_size": {"1" * 5000}}}')  # a number too long for Python to read
    result = invoke("models", "info", str(tmp_path))
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {tmp_path / 'config.json'} is not a valid JSON file (Exceeds the limit (4300 digits)"), result.output


def test_a_settings_file_nested_too_deeply_is_not_valid_toml(tmp_path):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir()
    for value in ("[" * 100000 + "]" * 100000, "{a = " * 100000 + "1" + "}" * 100000):  # an array, an inline table
        settings.write_text(f"logs = {value}\n")
        gc.collect()  # an earlier test's unfinished generator, finalized this deep, prints "Exception ignored" to stderr
        result = invoke("logs", "status")
        assert result.exit_code == 2 and result.stderr == f"Error: {settings} is not valid TOML (nested too deeply); fix or remove it\n", result.output


def test_options_in_library_errors_are_named_as_each_command_takes_them(tmp_path, unloadable):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "two.tsv").write_text("good\tpositive\nawful\tnegative\n")
    batch = ("batch", "classify", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"))
    for args, expected in [
        (("classify", "hi", "--labels", "a,b", "--method", "probe"), "Error: --method probe needs --examples"),
        ((*batch, "-O", "labels=a,b", "-O", "method=probe"), "Error: -O method=probe needs -O examples"),
        (("batch", "translate", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl")), "translate into: -O target_language=French or -O target_language=fr"),
        (("translate", "-", "--to", "de", "--from", "German"), "Error: --to and --from are both German"),
        (("translate", "-", "--to", "Klingon"), "Error: --to: unknown language 'Klingon'"),
        (("batch", "translate", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"), "-O", "target_language=Klingon"), "Error: -O target_language: unknown language 'Klingon'"),
        (("summarize", "-", "--language", "Klingon"), "Error: --language: unknown language 'Klingon'; give a name or ISO code such as French, fr, zh or pt-BR"),
        (("headline", "--topic", "bees", "-L", "Germn"), "Error: --language: unknown language 'Germn'; did you mean German (de)? give a name"),
        (("summarize", "-", "--lines", "-L", "Klingon"), "Error: --language: unknown language 'Klingon'"),
        (("batch", "summarize", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"), "-O", "language=Klingon"), "Error: -O language: unknown language 'Klingon'"),
        (("eval", "classify", str(tmp_path / "two.tsv"), "--method", "probe"), "Error: --method probe needs --examples"),  # a command in a group
    ]:
        result = invoke(*args, "-m", unloadable, input="hi\n")  # checked before the model would load (and fail)
        assert result.exit_code == 2 and expected in result.stderr, result.output


def test_batch_command_writes_rows_and_resumes(tiny_model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "Bees."}\n{"id": "b", "text": ""}\n')
    out = tmp_path / "out.jsonl"
    args = ("batch", "classify", "-i", str(source), "-o", str(out), "-O", "labels=a,b", "-m", str(tiny_model_dir))
    result = invoke(*args)
    assert result.exit_code == 1, result.output  # the others are done, and a script learns one failed
    assert "1 of 2 rows failed; their errors are in" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and "result" in rows[0] and "error" in rows[1]
    again = invoke(*args)  # the failed row is run again
    assert f"1 row written to {out} (1 with errors; 1 had failed in an earlier run), 1 already done; " in again.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    source.write_text('{"id": "a", "text": "Wasps."}\n{"id": "b", "text": ""}\n')  # row a edited since its result
    edited = invoke(*args)
    assert f"2 rows written to {out} (1 with errors; 1 had failed in an earlier run; 1 had another input in an earlier run), 0 already done; " in edited.stderr
    assert invoke(*args[:-2], "-O", "bogus=1", "-o", str(tmp_path / "x.jsonl")).exit_code == 2
    streamed = subprocess.run([sys.executable, "-m", "aigc", *args[:5], "-", *args[6:]], capture_output=True, text=True, timeout=120)
    assert [json.loads(line)["id"] for line in streamed.stdout.splitlines()] == ["a", "b"]  # -o - is stdout
    assert streamed.returncode == 1 and "their errors are recorded in the output" in streamed.stderr
    assert "2 rows written to stdout (1 with errors); " in streamed.stderr and "/dev/stdout" not in streamed.stderr  # never resumed: no "already done"


def test_batch_task_options_may_be_given_by_the_task_commands_flag_names():
    from aigc.cli.batch import parse_options
    from aigc.generators.base import get_generator

    known = get_generator("translate").option_names()
    assert parse_options(["to=fr", "from=de", "plain=true"], known) == {"target_language": "fr", "source_language": "de", "plain": "true"}
    assert parse_options(["multi-label=true", "to=x"], ["multi_label", "to"]) == {"multi_label": "true", "to": "x"}  # an option named so keeps its name


@pytest.fixture
def unloadable(tmp_path) -> str:
    """A model directory that resolves (it has a config.json) but could not load (no weights, no
    tokenizer): checks made before the load pass it, and a command that reached the load would fail there."""
    path = tmp_path / "unloadable-model"
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    return str(path)


def bad(*args, input=None):
    result = invoke(*args, input=input)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines


@pytest.mark.parametrize(
    "content, words", [(b"", "empty"), (b"\x00\x01\x02", "binary"), (b"caf\xe9 ol\xe9", "not valid UTF-8"), (b"\xff\xfe caf\xe9", "not valid UTF-16")]
)
def test_bad_files_are_one_line_errors_with_exit_2(tmp_path, content, words):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    out = tmp_path / "out.txt"
    code, lines = bad("summarize", str(path), "-o", str(out))
    assert code == 2 and len(lines) == 1 and words in lines[0] and lines[0].startswith("Error:")
    assert not out.exists()


def test_an_html_file_with_nothing_but_markup_and_navigation_says_so(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><nav>Home About</nav><footer>(c) 2024</footer></html>\n")
    assert bad("summarize", str(page)) == (2, [f"Error: {page} has no text outside its markup, <nav> and <footer>; give a document with some text in it"])  # not "is empty"


def test_missing_file(tmp_path):
    code, lines = bad("headline", str(tmp_path / "missing.txt"))
    assert code == 2 and lines == [f"Error: no such file: {tmp_path / 'missing.txt'}"]


def test_unknown_model_lists_aliases():
    code, lines = bad("chat", "hi", "-m", "no-such-model")
    assert code == 2 and len(lines) == 1 and "smollm2" in lines[0]
    code, lines = bad("chat", "hi", "-m", "./missing/model.gguf")
    assert code == 2 and lines == ["Error: no such file or directory: ./missing/model.gguf; give a local model directory or .gguf file that exists, or a model alias"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["chat", "hi", "--temperature", "5"], "temperature must be between 0 and 2"),
        (["headline", "--topic", "x", "-n", "0"], "-n must be between"),
        (["chat", "hi", "--template", "nope"], "unknown template"),
        (["summarize", "-", "--length", "huge"], "--length must be"),
        (["chat", "hi", "--device", "tpu"], "--device must be auto, cpu, cuda or mps, got 'tpu'"),
        (["chat"], "prompt is empty"),
        (["classify", "hi", "-l", "a,b", "--threshold", "0.7"], "--threshold picks labels with --multi-label"),
        (["classify", "hi", "-l", "a,b", "--calibrate", "batch"], "needs several texts (1 given)"),
        (["classify", "-", "--lines", "-l", "a,b", "--calibrate", "batch"], "Error: --calibrate batch divides out the mean over the texts classified together, so it needs several texts (1 given); use content-free for one text"),
        (["classify", "-", "--lines", "-l", "a,b", "--multi-label", "--calibrate", "batch"], "Error: --calibrate batch is for one label per text; with --multi-label use content-free or off"),
        (["headline", "--topic", " "], "the topic is empty"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(tiny_model_dir, args, words):
    code, lines = bad(*args, "-m", str(tiny_model_dir), input="some text" if "-" in args else "")
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_option_errors_name_the_flag_or_the_option_as_it_was_given(tmp_path, unloadable):
    (tmp_path / "in.txt").write_text("some text\n")
    batch = ["batch", "summarize", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"), "-m", unloadable]
    assert bad(*batch, "-O", "length=huge") == (2, ["Error: -O length must be one of short, medium, long, got 'huge'"])  # as given
    headline = ["batch", "headline", *batch[2:]]
    assert bad(*headline, "-O", "n=0") == (2, ["Error: -O n must be between 1 and 50, got 0"])  # not the command's -n (it has none)
    assert bad(*batch, "--max-tokens", "0") == (2, ["Error: --max-tokens must be at least 1, got 0"])
    classify = ["batch", "classify", *batch[2:], "-O", "labels=a,b"]
    assert bad(*classify, "-O", "labels=c,d") == (2, ["Error: -O labels is given twice; keep one"])
    assert bad(*classify, "-O", "labels") == (2, ["Error: -O labels must look like key=value"])  # named as the other -O errors name it
    assert bad(*batch, "-O", "") == (2, ["Error: -O '' must look like key=value"])
    translate = ["batch", "translate", *batch[2:]]
    assert bad(*translate, "-O", "to=fr", "-O", "target-language=de") == (2, ["Error: -O to and -O target-language both set target_language; keep one"])
    assert bad(*translate, "-O", "to=Klingon") == (2, ["Error: -O target_language: unknown language 'Klingon'; give a name or ISO code such as French, fr, zh or pt-BR"])  # -O to is --to's option
    code, lines = bad("batch", "bogus", *batch[2:])
    assert code == 2 and lines[0].startswith("Error: unknown task 'bogus'; tasks: ") and "summarize, template, translate" in lines[0]
    code, lines = bad("batch", "summarise", *batch[2:])
    assert code == 2 and lines[0].startswith("Error: unknown task 'summarise' (did you mean summarize?); tasks: ")
    assert bad(*classify, "--temperature", "0.7", "--max-tokens", "5") == (2, ["Error: classify takes no sampling options (it generates no text): drop --temperature, --max-tokens"])
    assert bad(*batch, "-O", "format=3") == (2, ["Error: -O format must be paragraph or bullets, got '3'"])  # a text option takes "3" as text
    assert bad(*batch, "-O", "words=forty") == (2, ["Error: -O words must be a whole number, got 'forty'"])
    assert bad("summarize", "-", "--length", "huge", input="some text") == (2, ["Error: --length must be one of short, medium, long, got 'huge'"])


@pytest.mark.parametrize(
    "args, words",
    [
        (["chat", "--colour", "red"], "No such option: --colour"),
        (["translate", "-"], "Missing option '--to'"),
        (["batch", "summarize", "-i", "rows.jsonl"], "Missing option '--output' / '-o' (-o OUT.jsonl, .csv or .tsv writes the results, -o - prints them; see"),  # llm users expect stdout
        (["chat", "hi", "--max-tokens", "many"], "--max-tokens must be a whole number, got 'many'"),  # not typer's "Input should be a valid integer"
        (["chat", "hi", "--temperature", "hot"], "--temperature must be a number, got 'hot'"),
        (["logs", "-n", "1.5"], "--count must be a whole number, got '1.5'"),
        (["logs", "rm", "12", "abc"], "ID must be a whole number, got 'abc'"),
        (["--colour"], "No such option: --colour"),
        (["models", "nosuch"], "No such command 'nosuch'"),
        (["translate", "--to"], "requires an argument (see `aigc translate --help`)"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, words):
    code, lines = bad(*args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0] and "--help`)" in lines[0], lines


@pytest.mark.parametrize(
    "args, stdin, words",
    [
        (["chat", "hi"], b"caf\xe9", "standard input is not valid UTF-8 (at line 1); convert it first, e.g. pipe it through `iconv"),
        (["chat"], b"\x00\x01binary", "standard input looks like a binary file"),
        (["chat", "caf\udce9"], None, "the input is not valid UTF-8"),
        (["chat", "--system", "caf\udce9", "hi"], None, "the --system value is not valid UTF-8"),
        (["headline", "--topic", "caf\udce9"], None, "the input is not valid UTF-8"),
        (["chat", "hi", "--max-tokens", "0"], None, "--max-tokens must be at least 1"),
        (["chat", "hi", "--top-p", "0"], None, "--top-p must be in (0, 1]"),
        (["chat", "hi", "--repetition-penalty", "5"], None, "--repetition-penalty must be in (0, 3] (1 = off), got 5.0"),
        (["chat", "hi", "--stop", ""], None, '--stop "" would stop nowhere'),
        (["chat", "hi", "--seed", "9223372036854775808"], None, "--seed must be an int64, from -9223372036854775808 to 9223372036854775807, got 9223372036854775808"),
        (["chat", "hi", "--seed", "-9223372036854775809"], None, "--seed must be an int64"),
        (["classify", "hi", "-l", "\udcff,b"], None, "the --labels value is not valid UTF-8"),
        (["chat", "hi", "-t", "headline"], None, "template 'headline' has no 'input' variable"),
        (["chat", "hi", "--device", "tpu"], None, "--device must be auto, cpu, cuda or mps, got 'tpu'"),
        (["summarize", "-", "--dtype", "int4"], b"Bees.", "--dtype must be auto, float32, bfloat16 or float16, got 'int4'"),
        (["chat", "hi", "--quantize", "int2"], None, "--quantize must be none, int4 or int8, got 'int2'"),
    ],
)
def test_bad_text_and_sampling_values_fail_before_the_model_loads(args, stdin, words, unloadable):
    code, lines = bad(*args, "-m", unloadable, input=stdin)  # the model is never loaded
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_json_in_the_chat_repl_is_refused(monkeypatch):
    import types

    import aigc.cli.chat as chat_cli

    monkeypatch.setattr(chat_cli, "stdin_text", lambda: None)
    monkeypatch.setattr(chat_cli, "sys", types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True)))
    code, lines = bad("chat", "--json", "-m", "no-such-model")
    assert code == 2 and lines == ["Error: --json is for one-shot answers; give a prompt as an argument or pipe one in"]
    assert bad("chat", "-n", "2", "--no-log", "-m", "no-such-model") == (2, ["Error: -n 2 is for one-shot answers; give a prompt as an argument or pipe one in"])


@pytest.mark.parametrize(
    "args, verbosity, threads",
    [
        (["chat", "-m", "echo", "hi", "-v"], 1, None),
        (["chat", "-v", "-m", "echo", "-vv", "hi"], 3, None),  # counted wherever given
        (["summarize", "{doc}", "-m", "echo", "-q"], -1, None),
        (["classify", "x", "--labels", "a,b", "-m", "echo", "--quiet"], -1, None),
        (["chat", "-m", "echo", "--threads", "2", "hi", "--verbose"], 1, 2),
        (["chat", "-m", "echo", "--threads=2", "hi"], 0, 2),
        (["chat", "-m", "echo", "--no-log", "-v", "Question: what is 2+2?"], 1, None),  # a prompt with a colon, not fabric's -v NAME:VALUE
        (["chat", "-m", "echo", "--no-log", "-v", "tell me about this: a test"], 1, None),
        (["chat", "-m", "echo", "--no-log", "-v", "http://example.com"], 1, None),
        (["models", "list", "-v"], 1, None),
        (["eval", "classify", "{data}", "-m", "echo", "-q"], -1, None),
        (["batch", "summarize", "-m", "echo", "-i", "{doc}", "-o", "{tmp}/out.jsonl", "-q"], -1, None),
    ],
)
def test_a_global_option_after_the_command_works_as_before_it(args, verbosity, threads, tmp_path):
    from aigc import config, ui

    (tmp_path / "doc.txt").write_text("Bees make honey from nectar.\n")
    (tmp_path / "data.tsv").write_text("text\tlabel\ngreat film\tpos\nawful\tneg\n")
    args = [arg.format(doc=tmp_path / "doc.txt", data=tmp_path / "data.tsv", tmp=tmp_path) for arg in args]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert (ui.settings.verbosity, config.given_threads) == (verbosity, threads)


def test_ollamas_verbose_after_the_command_is_aigcs_with_a_note_on_stats():
    note = "--verbose is aigc's -v here (more detail on stderr); --stats prints token counts and tokens/s, as ollama's --verbose"
    result = invoke("chat", "-m", "echo", "--no-log", "hi", "--verbose")  # as `ollama run MODEL --verbose`
    assert result.exit_code == 0 and result.stdout.strip() and note in result.stderr.splitlines(), result.stderr
    for args in (["chat", "-m", "echo", "--no-log", "hi", "--verbose", "--stats"], ["chat", "-m", "echo", "--no-log", "hi", "-v"], ["--verbose", "chat", "-m", "echo", "--no-log", "hi"], ["models", "list", "--verbose"]):
        result = invoke(*args)
        assert result.exit_code == 0 and note not in result.stderr, args


def test_a_global_option_after_the_command_is_refused_with_its_opposite_as_before_it():
    from aigc import config

    for args in (["chat", "hi", "-q", "-v", "-m", "no-such-model"], ["chat", "-qv", "hi"], ["-q", "chat", "--verbose", "hi"]):
        assert bad(*args) == (2, ["Error: give -q (less on stderr) or -v (more), not both"]), args
    assert bad("chat", "hi", "--threads", "0") == (2, [f"Error: --threads must be {config.THREADS_HINT}, got 0"])
    assert bad("chat", "hi", "--threads") == (2, ["Error: Option '--threads' requires an argument (--threads N: the CPU threads a local model computes with, before or after the command)"])  # not the command's name taken for its number


def test_a_command_option_of_a_global_name_and_text_after_double_dash_stay_the_commands():
    from aigc import ui

    result = invoke("logs", "-q", "no such words")  # logs' own -q, its --query
    assert result.exit_code == 0 and "No logged answer matches" in result.stdout + result.stderr and ui.settings.verbosity == 0
    result = invoke("chat", "-m", "echo", "--no-log", "--", "-q")  # the prompt -q
    assert result.exit_code == 0 and result.stdout.strip() and ui.settings.verbosity == 0
    result = invoke("chat", "-m", "echo", "--no-log", "--system", "-q", "hi")  # the value of chat's --system
    assert result.exit_code == 0 and ui.settings.verbosity == 0


@pytest.mark.parametrize(
    "args, hint",
    [
        (["-m", "smollm2", "What is up?"], "-m is an option of a command, given after it: `aigc chat -m smollm2 'What is up?'`"),  # llm -m MODEL 'PROMPT'
        (["-m", "smollm2", "summarize", "notes.md"], "-m is an option of a command, given after it: `aigc summarize -m smollm2 notes.md`"),
        (["--json", "models", "list"], "--json is an option of a command, given after it: `aigc models list --json`"),
        (["--temperature", "0.5", "chat"], "--temperature is an option of a command, given after it: `aigc chat --temperature 0.5`"),
    ],
)
def test_a_command_option_before_the_command_says_where_it_goes(args, hint):
    code, lines = bad(*args)
    assert code == 2 and lines == [f"Error: No such option: {args[0]} ({hint})"]


@pytest.mark.parametrize(
    "args",
    [["--version", "--json"], ["--json"], ["--seed", "1", "--version"], ["--help", "--json"], ["--version", "-m", "smollm2", "hi"]],
)
def test_a_command_option_with_no_command_named_says_it_is_a_commands(args):
    name = next(arg for arg in args if arg not in ("--version", "--help"))  # the first unknown to aigc itself
    code, lines = bad(*args)
    assert code == 2 and lines == [f"Error: No such option: {name} ({name} is an option of a command: `aigc COMMAND {name}`; see `aigc --help`)"]


def test_a_command_option_is_moved_after_the_command_only_where_it_reads_the_same():
    assert bad("-t", "x", "logs") == (2, ["Error: No such option: -t (see `aigc --help`)"])  # logs' -t is a flag: `aigc logs -t x` would take x for text
    assert bad("--temperature", "0.5", "--json", "models", "list") == (2, ["Error: No such option: --temperature (see `aigc --help`)"])  # models list has no --temperature
    code, lines = bad("--max-tokens", "5", "--json", "chat", "hi")
    assert code == 2 and lines == ["Error: No such option: --max-tokens (--max-tokens is an option of a command, given after it: `aigc chat --max-tokens 5 --json hi`)"]


def test_an_option_the_command_does_not_have_gets_no_such_hint():
    for args in (["--bogus", "chat", "hi"], ["--schema", "x", "models", "list"]):  # models list has no --schema
        code, lines = bad(*args)
        assert code == 2 and len(lines) == 1 and "given after it" not in lines[0] and lines[0].endswith("(see `aigc --help`)"), lines


def test_an_option_value_that_names_a_command_is_not_taken_for_the_command():
    code, lines = bad("-t", "chat", "hi")  # the template chat
    assert code == 2 and lines == ["Error: No such option: -t (-t is an option of a command, given after it: `aigc chat -t chat hi`)"]


@pytest.mark.parametrize(
    "args, hint",
    [
        (["chat", "-o", "temperature", "0.5", "hi"], "No such option: -o (each setting is an option of its own: --temperature 0.7"),
        (["chat", "hi", "-o", "answer.md"], "No such option: -o (the answer goes to stdout: `> answer.md` writes it to a file;"),  # -o FILE, as summarize takes
        (["chat", "hi", "--output", "answer.md"], "No such option: --output (the answer goes to stdout: `> answer.md` writes it to a file;"),
        (["similar", "--output=out.txt", "a", "b"], "No such option: --output (the answer goes to stdout: `> out.txt` writes it to a file;"),
        (["run", "chat", "-p", "topic", "bees"], "No such option: -p (a template's variables are given as --var key=value;"),
        (["chat", "-n", "hi"], "-n must be a whole number, got 'hi' (-n N asks for N answers; --no-log keeps the answer out of the log;"),  # llm's -n: a count here
        (["run", "chat", "-n", "-m", "echo"], "-n must be a whole number, got '-m' (-n N asks for N answers; --no-log keeps the answer out of the log;"),
        (["headline", "--usage"], "No such option: --usage (--stats prints the token counts;"),
        (["chat", "--no-stream", "hi"], "No such option: --no-stream (an answer streams only to a terminal"),  # not click's guess, --system
        (["chat", "--format", "json", "hi"], "No such option: --format (--schema holds the answer to JSON"),
        (["logs", "--cid", "abc"], "No such option: --cid (-S ID shows a conversation's answers"),
    ],
)
def test_an_option_of_llm_or_ollama_says_what_aigc_calls_it(args, hint):
    code, lines = bad(*args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {hint}") and "Possible options" not in lines[0], lines


@pytest.mark.parametrize(
    "args, hint",
    [
        (["run", "greet", "-v=audience:founders"], "No such option: -v (fabric's -v=NAME:VALUE is --var NAME=VALUE here: `--var audience=founders`; see `aigc run --help`)"),
        (["run", "greet", "-v=#role:expert", "-v=#points:30"], "No such option: -v (fabric's -v=NAME:VALUE is --var NAME=VALUE here: `--var role=expert --var points=30`;"),
        (["run", "greet", "-v", "audience:founders"], "No such option: -v (fabric's -v=NAME:VALUE is --var NAME=VALUE here: `--var audience=founders`;"),
        (["run", "greet", "-v", "#topic:climate change"], "No such option: -v (fabric's -v=NAME:VALUE is --var NAME=VALUE here: `--var 'topic=climate change'`;"),
        (["run", "greet", "--variable=audience:founders"], "No such option: --variable (fabric's -v=NAME:VALUE is --var NAME=VALUE here: `--var audience=founders`;"),
        (["chat", "-t", "greet", "-v=audience:founders", "hi"], "No such option: -v (fabric's -v=NAME:VALUE is --var NAME=VALUE here: `--var audience=founders`; see `aigc chat --help`)"),
        (["--pattern", "greet"], "No such option: --pattern (fabric's -p NAME is `aigc run NAME` here: `aigc run greet`; see `aigc --help`)"),
        (["-p", "greet"], "No such option: -p (fabric's -p NAME is `aigc run NAME` here: `aigc run greet`;"),
        (["-sp", "greet"], "No such option: -s (fabric's -p NAME is `aigc run NAME` here: `aigc run greet`;"),
        (["--pattern=greet"], "No such option: --pattern (fabric's -p NAME is `aigc run NAME` here: `aigc run greet`;"),
        (["run", "chat", "--pattern", "greet"], "No such option: --pattern (fabric's -p NAME is `aigc run NAME` here: `aigc run greet`; see `aigc run --help`)"),
        (["run", "chat", "-p", "greet"], "No such option: -p (fabric's -p NAME is `aigc run NAME` here: `aigc run greet`;"),
        (["chat", "--pattern", "greet", "hi"], "No such option: --pattern (fabric's -p NAME is `aigc chat -t NAME` here: `aigc chat -t greet`;"),
        (["run", "chat", "--pattern"], "No such option: --pattern (fabric's -p NAME is `aigc run NAME` here;"),
        (["run", "chat", "-u", "https://example.com/post"], "No such option: -u (fabric's -u URL is not fetched here: download the page first, `curl -sL https://example.com/post -o page.html`, and give the file;"),
    ],
)
def test_a_fabric_option_says_what_aigc_calls_it(args, hint):
    user_template("greet", GREET)
    code, lines = bad(*args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {hint}"), lines


def test_an_option_without_a_fabric_value_gets_no_fabric_hint():
    user_template("greet", GREET)
    for args in (["run", "chat", "-p", "topic", "bees"], ["headline", "-u"]):  # -v x: no NAME:VALUE; -p topic: llm's -p NAME VALUE
        code, lines = bad(*args)
        assert code == 2 and len(lines) == 1 and "fabric" not in lines[0], lines


def test_text_that_starts_with_a_dash_says_to_give_it_after_double_dash():
    code, lines = bad("classify", "-1 stars, awful", "-l", "a,b")  # click reads it as option -1
    hint = "text that starts with - goes after --, the options before it: `aigc classify -l a,b -- '-1 stars, awful'`"
    assert code == 2 and lines == [f"Error: No such option: -1 ({hint}; see `aigc classify --help`)"]
    assert bad("chat", "-z") == (2, ["Error: No such option: -z (see `aigc chat --help`)"])  # an option mistyped: no such hint
    code, lines = bad("-q", "-5 degrees is cold")  # llm's way to ask: chat's
    assert code == 2 and "`aigc -q chat -- '-5 degrees is cold'`" in lines[0], lines
    code, lines = bad("chat", "-q is quiet?")  # text, not the global option -q given after the command
    assert code == 2 and "`aigc chat -- '-q is quiet?'`" in lines[0], lines


@pytest.mark.parametrize(
    "args, hint",
    [
        (["What is 2+2?"], "No such command 'What is 2+2?'. To ask the model: `aigc chat 'What is 2+2?'`"),  # llm 'PROMPT'
        (["prompt", "hi"], "No such command 'prompt'. Did you mean `aigc chat`?"),
        (["list"], "No such command 'list'. Did you mean `aigc models list`?"),  # ollama list, pull, show
        (["pull", "smollm2"], "No such command 'pull'. Did you mean `aigc models pull`?"),
        (["show", "smollm2"], "No such command 'show'. Did you mean `aigc models info`?"),
        (["version"], "No such command 'version'. Did you mean `aigc --version`?"),  # llm's, ollama's: not click's guess, sessions
        (["summarise"], "No such command 'summarise'. Did you mean 'summarize'?"),  # typer's own guess stays
    ],
)
def test_a_command_of_llm_or_ollama_says_what_aigc_calls_it(args, hint):
    code, lines = bad(*args)
    assert code == 2 and lines == [f"Error: {hint} (see `aigc --help`)"]


def test_run_with_a_model_for_a_template_says_how_to_ask_the_model():
    code, lines = bad("run", "smollm2", "hi")  # ollama run MODEL PROMPT
    assert code == 2 and len(lines) == 1 and "unknown template 'smollm2'" in lines[0] and '`aigc chat -m smollm2 "PROMPT"`' in lines[0]
    code, lines = bad("run", "no-such-thing")
    assert code == 2 and "unknown template 'no-such-thing'" in lines[0] and "aigc chat -m" not in lines[0]


def test_an_option_of_llm_gets_no_hint_where_the_command_has_nothing_like_it():
    assert bad("models", "list", "-n") == (2, ["Error: No such option: -n (see `aigc models list --help`)"])
    code, lines = bad("chat", "--cid")  # chat's own --cid, missing its value: not the hint for `aigc logs --cid`
    assert code == 2 and lines == ["Error: Option '--cid' requires an argument (see `aigc chat --help`)"]


@pytest.mark.parametrize("flags", [["-q", "-v"], ["-vv", "--quiet"]])
def test_quiet_and_verbose_together_are_refused_before_any_work(flags):
    assert bad(*flags, "chat", "hi", "-m", "no-such-model") == (2, ["Error: give -q (less on stderr) or -v (more), not both"])


def test_unwritable_output_fails_before_any_work(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("text")
    code, lines = bad("summarize", str(doc), "-o", str(tmp_path / "missing-dir" / "out.txt"))
    assert code == 2 and "does not exist" in lines[0]
    code, lines = bad("summarize", str(doc), "-o", "/proc/version")
    assert code == 2 and lines == ["Error: cannot write /proc/version: the file is read-only"]
    for command in (("summarize", str(doc)), ("translate", str(doc), "--to", "fr"), ("headline", "--topic", "bees"), ("batch", "summarize", "-i", str(doc))):
        code, lines = bad(*command, "-o", "")  # `-o "$OUT"` with OUT unset
        assert code == 2 and lines == ["Error: -o was given an empty file name; give a file, or - for stdout"]


def test_debug_shows_the_exception(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_DEBUG", "1")
    result = invoke("summarize", str(tmp_path / "none.txt"))
    assert result.exit_code == 2  # bad input's exit code, as without AIGC_DEBUG
    assert "Traceback (most recent call last)" in result.stderr and "BadInputError" in result.stderr and "Error:" in result.stderr


def test_models_info_and_list_json(tiny_model_dir):
    listed = json.loads(invoke("models", "list", "--json").stdout)
    assert any(row["alias"] == "smollm2" and row["default"] for row in listed)
    info = json.loads(invoke("models", "info", str(tiny_model_dir), "--json").stdout)
    assert info["kind"] == "text" and info["format"] == "dir" and info["layers"] == 2 and info["installed"]


@pytest.mark.parametrize("argv", [["models", "info"], ["models", "pull"], ["models", "rm"], ["models", "default"], ["models", "alias", "mine"]])
def test_models_commands_take_either_kind_so_a_misspelt_name_is_matched_against_every_alias(argv):
    result = invoke(*argv, "sd-trubo")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown model 'sd-trubo'; did you mean sd-turbo? known aliases: ")
    assert "smollm2" in result.stderr and "a diffusers directory" in result.stderr


def test_a_model_directory_without_weights_or_tokenizer_says_what_it_lacks(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    info = json.loads(invoke("models", "info", str(half), "--json").stdout)
    assert info["missing"].startswith("weights (") and "tokenizer (" in info["missing"]
    odd = tmp_path / "caf\udce9"  # as Python reads the bytes caf\xe9 from a path
    odd.mkdir()
    (odd / "config.json").write_text((half / "config.json").read_text())
    shown = invoke("models", "info", str(odd), "--json").stdout
    assert "\\ud" not in shown and "caf\ufffd" in json.loads(shown)["path"]  # no lone surrogate, even escaped
    result = invoke("chat", "hi", "-m", str(half))
    assert result.exit_code == 2 and ": it has no weights" in result.stderr and "and no tokenizer" in result.stderr and "copy the whole model directory" in result.stderr


def test_models_list_shows_a_default_that_is_a_path_and_warns_on_one_that_cannot_be_used(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", str(tiny_model_dir))
    rows = [row for row in json.loads(invoke("models", "list", "--json").stdout) if row["default"]]
    assert [(row["alias"], row["kind"], row["installed"]) for row in rows if row["kind"] == "text"] == [(str(tiny_model_dir), "text", True)]
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", "nosuch")
    result = invoke("models", "list")
    assert result.exit_code == 0 and "AIGC_DEFAULT_MODEL" in result.stderr and "(default)" not in result.stdout


def test_register_commands_hook_adds_a_plugin_command():
    class CommandPlugin:
        @hookimpl
        def register_commands(self, app):
            @app.command()
            def hello(name: str):
                typer.echo(f"hello {name}")

    plugins.reset()
    plugins.get_plugin_manager().register(CommandPlugin(), name="hello-plugin")
    fresh = typer.Typer()
    fresh.callback()(lambda: None)
    try:
        plugins.call_each("register_commands", app=fresh)
    finally:
        plugins.reset()
    assert runner.invoke(fresh, ["hello", "x"]).stdout == "hello x\n"


class Printing:
    """A plugin whose generator and jinja filter print, as a stray print() or a dependency's progress would."""

    @hookimpl
    def register_generators(self, register):
        from aigc.generators.base import Generator

        class Chatty(Generator):
            name = "chatty"

            def preprocess(self, inputs, opts):
                return inputs

            def forward(self, prepared, opts, sampling):
                print("PRINTED in forward")
                return prepared

            def postprocess(self, raw, opts):
                return {"text": raw}

        register("chatty", Chatty)

    @hookimpl
    def prepare_jinja_env(self, env):
        env.filters["noisy"] = lambda text: print("PRINTED in a filter") or text


@pytest.fixture
def printing_plugin():
    plugins.reset()
    plugins.get_plugin_manager().register(Printing(), name="printing")
    yield
    plugins.reset()


@pytest.mark.parametrize("argv", [
    ["run", "noisy", "-m", "echo", "--no-log"],  # streamed, written whole as stdout is no terminal
    ["run", "noisy", "-m", "echo", "--no-log", "--json"],
    ["chat", "-t", "noisy", "-m", "echo", "--no-log"],
    ["chat", "-t", "noisy", "-m", "echo", "--no-log", "--json"],
    ["summarize", "-t", "noisy", "-m", "echo", "--no-log", "--lines", "-"],
])
def test_what_generator_code_prints_goes_to_stderr_and_stdout_keeps_the_result(printing_plugin, argv):
    user_template("noisy", "---\nvariables: [{name: text, default: ""}, {name: input, default: ""}]\n---\n{{ (input or text) | noisy }}")
    result = invoke(*argv, input="hello there\n")
    assert result.exit_code == 0, result.output
    assert "PRINTED" not in result.stdout and "PRINTED in a filter" in result.stderr
    answer = json.loads(result.stdout)["text"] if "--json" in argv else result.stdout
    assert answer.strip() == "hello there"


def test_what_a_plugin_generator_prints_in_aigc_batch_goes_to_stderr(printing_plugin, tmp_path):
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    result = invoke("batch", "chatty", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl"))  # its workers print
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr.count("PRINTED in forward") == 2
    assert [json.loads(line)["result"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [{"text": "one"}, {"text": "two"}]


def test_a_streamed_result_goes_to_stdout_while_what_code_prints_goes_to_stderr(capsys):
    from aigc import ui

    def pieces():
        print("progress 1/2")
        yield "The ocean"
        print("progress 2/2")
        yield " is vast"

    with ui.prints_to_stderr():
        assert ui.stream_result(pieces()) == ("The ocean is vast", None)
        ui.result("done")
    captured = capsys.readouterr()
    assert captured.out == "The ocean is vast\ndone\n" and captured.err == "progress 1/2\nprogress 2/2\n"
    print("after")  # stdout is stdout again
    assert capsys.readouterr().out == "after\n"


def test_templates_list_show_and_path():
    from aigc.templates import user_dir

    user_template("cafe", "---\ndescription: Café menus\n---\n{{ input }}")
    listed_text = invoke("templates", "list", "--json").stdout
    listed = json.loads(listed_text)
    assert {"chat", "summarize", "headline", "cafe"} <= {row["name"] for row in listed}
    assert '"description": "Café menus"' in listed_text  # as written, like the other --json outputs
    shown = invoke("templates", "show", "headline").stdout
    assert "max_words" in shown and "{{" in shown
    data = json.loads(invoke("templates", "show", "headline", "--json").stdout)
    assert data["name"] == "headline" and data["text"] in shown and {v["name"]: v["required"] for v in data["variables"]}["max_words"] is False
    assert invoke("templates", "path").stdout.strip().endswith("templates")
    assert invoke("templates", "show", "headlin").exit_code == 2
    user_template("bare", "---\nvariables:\n  - {name: input, required: true}\n  - {name: count, default: 3}\n  - {name: tone, description: }\n---\n{{ input }}{{ count }}{{ tone }}")
    shown = invoke("templates", "show", "bare").stdout
    assert shown.startswith(f"{{# {user_dir()}/bare.j2 (user) #}}\n{{# input: (required) #}}\n{{# count: (default: 3) #}}\n{{# tone: (required) #}}\n---")
    (user_dir() / "copy.j2").write_text(shown)  # `show NAME > copy.j2` is a working template, its header comments aside
    assert json.loads(invoke("run", "copy", "--var", "input=x", "--var", "tone=t", "--dry-run", "--json").stdout)["messages"][-1]["content"] == "x3t"


def test_offline_hub_id_fails_fast_and_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, lines = bad("chat", "hi", "-m", "some-org/some-model-that-is-not-cached")
    assert code == 1 and lines[-1].startswith("Error: cannot fetch")
    assert "HF_HUB_OFFLINE is set" in lines[-1] and "hf download" in lines[-1] and "pass `--model DIR`" in lines[-1]
    assert not any(line.startswith("downloading") for line in lines)


def test_templates_path_all_lists_every_directory_in_lookup_order(monkeypatch, tmp_path):
    from aigc import templates

    class Team:
        @hookimpl
        def register_template_dirs(self, register):
            register(str(tmp_path / "plugin"))

    (tmp_path / "first").mkdir()
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", os.pathsep.join([str(tmp_path / "first"), str(tmp_path / "gone")]))
    plugins.reset()
    plugins.get_plugin_manager().register(Team(), name="team")
    try:
        listed = invoke("templates", "path", "--all")
        alone = invoke("templates", "path").stdout
        as_json = json.loads(invoke("templates", "path", "--all", "--json").stdout)
    finally:
        plugins.reset()
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert alone == f"{templates.user_dir()}\n"  # one line, for $(aigc templates path)
    assert rows[:4] == [
        [str(templates.user_dir()), "yours" if templates.user_dir().is_dir() else "yours, missing"],
        [str(tmp_path / "first"), "AIGC_TEMPLATES_PATH"],
        [str(tmp_path / "gone"), "AIGC_TEMPLATES_PATH, missing"],
        [str(tmp_path / "plugin"), "plugin team, missing"],
    ]
    assert [str(templates.builtin_dir()), "built-in"] in rows[4:]
    assert as_json[1:4] == [
        {"path": str(tmp_path / "first"), "whose": "AIGC_TEMPLATES_PATH", "exists": True},
        {"path": str(tmp_path / "gone"), "whose": "AIGC_TEMPLATES_PATH", "exists": False},
        {"path": str(tmp_path / "plugin"), "whose": "plugin team", "exists": False},
    ]
    assert [[row["path"], row["whose"] + ("" if row["exists"] else ", missing")] for row in as_json] == rows  # the same order as --all


def test_templates_path_all_shows_config_tomls_directories_after_aigc_templates_paths(monkeypatch, tmp_path):
    from aigc import config, templates

    (tmp_path / "team").mkdir()
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path / "env"))
    config.settings_file().parent.mkdir(parents=True, exist_ok=True)
    config.settings_file().write_text(f"templates_path = [{json.dumps(str(tmp_path / 'team'))}, {json.dumps(str(tmp_path / 'gone'))}]\n")
    monkeypatch.setattr(templates, "_missing_warned", set())
    listed = invoke("templates", "path", "--all")
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[1:4] == [
        [str(tmp_path / "env"), "AIGC_TEMPLATES_PATH, missing"],
        [str(tmp_path / "team"), "templates_path in config.toml"],
        [str(tmp_path / "gone"), "templates_path in config.toml, missing"],
    ]
    assert f"templates_path in {config.settings_file()} names {tmp_path / 'gone'}, which does not exist" in listed.stderr
    assert "templates_path in config.toml" in " ".join(invoke("templates", "path", "--help").stdout.split())


def user_template(name, text):
    from aigc import templates

    directory = templates.user_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.j2").write_text(text)


GREET = """---
description: Greets someone.
system: You are kind.
defaults: {max_tokens: 3, temperature: 0}
variables:
  - {name: input, description: A note, required: true}
  - {name: who, description: Who, default: Paris}
  - {name: times, description: How often, default: 1}
---
{% for _ in range(times) %}Hello {{ who }}! {% endfor %}{{ input }}
"""


def test_run_renders_a_template_with_vars_and_input_and_applies_front_matter_defaults(tiny_model_dir, tmp_path):
    user_template("greet", GREET)
    note = tmp_path / "note.txt"
    note.write_text("Bees make honey.")
    args = ("run", "greet", "--var", "who=Berlin", "--var", "times=2", "-i", str(note), "-m", str(tiny_model_dir), "--json")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["template"] == "greet" and data["usage"]["completion_tokens"] <= 3  # max_tokens from front matter
    longer = json.loads(invoke(*args, "--max-tokens", "6", "--temperature", "1", "--seed", "3").stdout)
    assert 3 < longer["usage"]["completion_tokens"] <= 6  # options override front matter
    piped = invoke("run", "greet", "-i", "-", "-m", str(tiny_model_dir), "--json", input="from stdin")
    assert piped.exit_code == 0 and json.loads(piped.stdout)["usage"]["prompt_tokens"] > 0


def test_a_templates_model_runs_it_unless_m_names_another(tiny_model_dir, unloadable, monkeypatch, tmp_path):
    import aigc
    from aigc.templates import user_dir

    monkeypatch.setenv("AIGC_DEFAULT_MODEL", unloadable)  # the template's model comes before the default one
    user_template("tiny", f"---\nmodel: {tiny_model_dir}\ndefaults: {{max_tokens: 2}}\n---\n{{{{ input }}}}\n")
    result = invoke("run", "tiny", "--var", "input=bees", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == json.loads(invoke("run", "tiny", "--var", "input=bees", "--json", "-m", str(tiny_model_dir)).stdout)["model"]
    assert invoke("chat", "-t", "tiny", "bees").exit_code == 0
    rows = tmp_path / "rows.txt"
    rows.write_text("bees\n")
    batched = invoke("batch", "template", "-O", "template=tiny", "-i", str(rows), "-o", str(tmp_path / "out.jsonl"))
    assert batched.exit_code == 0, batched.output
    assert json.loads((tmp_path / "out.jsonl").read_text())["model"] == json.loads(result.stdout)["model"]
    assert aigc.generate("template", {"input": "bees"}, template="tiny")["usage"]["completion_tokens"] <= 2  # the default model cannot load
    assert aigc.generate("chat", "bees", template="tiny")["usage"]["completion_tokens"] <= 2
    user_template("tiny-text", f"---\nmodel: {tiny_model_dir}\ndefaults: {{max_tokens: 2}}\n---\n{{{{ text }}}}\n")
    summarized = invoke("batch", "summarize", "-O", "template=tiny-text", "-i", str(rows), "-o", str(tmp_path / "summaries.jsonl"))
    assert summarized.exit_code == 0, summarized.output
    code, lines = bad("run", "tiny", "--var", "input=bees", "-m", "no-such-model")  # -m wins
    assert code == 2 and "unknown model 'no-such-model'" in lines[-1] and "template" not in lines[-1]
    user_template("typo", "---\nmodel: smolm2\n---\n{{ input }}\n")
    for args in (["run", "typo", "--var", "input=bees", "--dry-run"], ["chat", "-t", "typo", "bees"], ["summarize", "-t", "typo", "-"], ["headline", "-t", "typo", "--topic", "bees"], ["translate", "-t", "typo", "--to", "fr", "-", "--lines"]):
        code, lines = bad(*args, input="Bees make honey.")
        assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: model: in template 'typo' (") and "unknown model 'smolm2'" in lines[0]
    user_template("image-model", "---\nmodel: sd-turbo\n---\n{{ input }}\n")
    code, lines = bad("run", "image-model", "--var", "input=bees")
    assert code == 2 and lines == [f"Error: model: in template 'image-model' ({user_dir()}/image-model.j2): sd-turbo is an image model, for the image task (`aigc image -m sd-turbo`); pick a text model"]
    shown = invoke("templates", "show", "typo")
    assert "{# model: smolm2 (unless -m names another) #}\n" in shown.stdout and json.loads(invoke("templates", "show", "typo", "--json").stdout)["model"] == "smolm2"


def test_a_templates_model_sends_text_and_key_only_to_a_server_on_this_machine_or_openais(tiny_model_dir, monkeypatch):
    import urllib.error

    import aigc
    from aigc.engine import remote
    from aigc.errors import BadInputError

    reached = []

    def urlopen(request, timeout=None):
        reached.append((request.full_url, request.get_header("Authorization")))
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(remote._OPENER, "open", urlopen)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mine")
    for url in ("http://attacker.example/v1", "https://127.0.0.1@attacker.example/v1", "http://127.0.0.1.attacker.example:8000/v1"):
        user_template("shared", f"---\nmodel: openai:{url}#x\n---\n{{{{ input }}}}\n")
        code, lines = bad("run", "shared", "--var", "input=my notes")
        assert code == 2 and len(lines) == 1 and "a template may not send your text and API key elsewhere" in lines[0] and f"-m 'openai:{url}#x'" in lines[0]
        with pytest.raises(BadInputError, match="attacker.example"):
            aigc.generate("template", {"input": "my notes"}, template="shared")
        assert not reached
    assert invoke("run", "shared", "--var", "input=bees", "-m", str(tiny_model_dir), "--max-tokens", "1").exit_code == 0  # -m: the user's choice
    for url in ("http://127.0.0.1:11434/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1", "https://api.openai.com/v1"):
        user_template("local", f"---\nmodel: openai:{url}#x\n---\n{{{{ input }}}}\n")
        assert invoke("run", "local", "--var", "input=bees").exit_code != 0 and reached.pop() == (f"{url}/models", "Bearer sk-mine")  # tried: no server there


def test_run_prints_every_answer_a_template_asks_for(tiny_model_dir):
    from aigc.json_schemas import shown

    user_template("twice", "---\ndefaults: {n: 2, max_tokens: 3, temperature: 1}\n---\n{{ input }}\n")
    data = json.loads(invoke("run", "twice", "-i", "-", "-m", str(tiny_model_dir), "--json", "--seed", "1", input="bees").stdout)
    assert len(data["choices"]) == 2 and data["text"] == data["choices"][0]
    plain = invoke("run", "twice", "-i", "-", "-m", str(tiny_model_dir), "--seed", "1", input="bees").stdout
    assert plain.rstrip("\n") == "\n\n---\n\n".join(data["choices"]).rstrip("\n")
    assert shown({"text": '{"a": 1}', "choices": ['{"a": 1}', '{"a": 2}'], "data": {"a": 1}}) == '{\n  "a": 1\n}\n\n---\n\n{\n  "a": 2\n}'


def test_run_chat_and_batch_n_ask_for_several_answers(tmp_path):
    user_template("once", "---\ndefaults: {max_tokens: 3, temperature: 1}\n---\n{{ input }}\n")
    data = json.loads(invoke("run", "once", "--var", "input=bees", "-n", "3", "-m", "echo", "--json").stdout)
    assert data["choices"] == ["bees"] * 3 and data["finish_reasons"] == ["stop"] * 3
    assert invoke("run", "once", "--var", "input=bees", "--n", "2", "-m", "echo").stdout == "bees\n\n---\n\nbees\n"
    assert json.loads(invoke("run", "once", "--var", "input=bees", "-n", "2", "--dry-run", "--json").stdout)["defaults"]["n"] == 2
    assert bad("run", "once", "--var", "input=bees", "-n", "2", "--temperature", "0", "--dry-run") == (2, ["Error: 2 answers need sampling, but --temperature 0 or --top-k 1 always picks the same words; raise them, or ask for one (-n 1)"])
    (tmp_path / "one.csv").write_text("id,text\n1,bees\n")
    for logged in ([], ["--no-log"]):  # one-shot chat: several answers keep no conversation to go on from, said where -c would expect one
        chatted = invoke("chat", "-t", "once", "bees", "-n", "2", "-m", "echo", "--json", *logged)
        assert json.loads(chatted.stdout)["choices"] == ["bees"] * 2, logged
        assert ("start no conversation; aigc chat -c goes on from the one before" in chatted.stderr) == (not logged), chatted.stderr
    assert bad("chat", "-t", "once", "bees", "-n", "2", "-m", "echo", "-S", "talk") == (2, ["Error: -n 2 gives several answers to one prompt, and a conversation goes on from one reply a turn: leave out -n, or --session, --continue and --cid"])
    assert invoke("chat", "-t", "once", "bees", "-n", "2", "-m", "echo", "--no-log").stdout == "bees\n\n---\n\nbees\n"
    assert invoke("chat", "bees", "-n", "2", "-m", "echo", "--no-log").stdout == "bees\n\n---\n\nbees\n"  # chat's greedy default samples for several, as run's
    for logged in ([], ["--no-log"]):  # refused alone: no note on how the answers would have been logged
        assert bad("chat", "bees", "-n", "2", "--temperature", "0", "-m", "echo", *logged) == (2, ["Error: 2 answers need sampling, but --temperature 0 or --top-k 1 always picks the same words; raise them, or ask for one (-n 1)"])
    code, lines = bad("chat", "bees", "-n", "two", "-m", "echo")
    assert code == 2 and lines[0].startswith("Error: -n must be a whole number, got 'two' ("), lines
    for task in (["template", "-O", "template=once"], ["chat"]):
        done = invoke("batch", *task, "-O", "n=2", "-i", str(tmp_path / "one.csv"), "-o", str(tmp_path / f"{task[0]}.jsonl"), "-m", "echo", "--temperature", "1")
        assert done.exit_code == 0 and json.loads((tmp_path / f"{task[0]}.jsonl").read_text())["result"]["choices"] == ["bees"] * 2, done.output
    assert bad("batch", "template", "-O", "template=once", "-O", "n=two", "-i", str(tmp_path / "one.csv"), "-o", "-") == (2, ["Error: -O n must be a whole number, got 'two'"])


def test_chat_takes_a_templates_other_variables_with_var_and_logs_them(tiny_model_dir, unloadable):
    user_template("greet", GREET)
    result = invoke("chat", "bees", "-t", "greet", "--var", "who=Rome", "--var", "times=2", "-m", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(invoke("logs", "--json", "-n", "0").stdout)
    assert row["options"]["variables"] == {"who": "Rome", "times": 2} and row["prompt"] == "bees"
    assert row["completion_tokens"] <= 3  # the template's front matter applies
    for args, words in [(("--var", "input=x"), "--var cannot give input: each message fills it"), (("--var", "where=x"), "has no variable where")]:
        code, lines = bad("chat", "hi", "-t", "greet", *args, "-m", unloadable)
        assert code == 2 and words in lines[0], lines


def test_chat_streams_one_plain_answer_only(monkeypatch):
    import types

    from aigc.cli import chat as chat_cli
    from aigc.generators.chat import ChatGenerator
    from aigc.testing import FakeEngine

    user_template("extract", '---\ndefaults: {json_schema: {"type": "object"}}\n---\n{{ input }}\n')
    user_template("twice", "---\ndefaults: {n: 2}\n---\n{{ input }}\n")
    monkeypatch.setattr(chat_cli, "sys", types.SimpleNamespace(stdout=types.SimpleNamespace(isatty=lambda: True)))
    run, generator = types.SimpleNamespace(json_schema=None, n=None), ChatGenerator(engine=FakeEngine())
    assert chat_cli._streamed(generator, {"template": "chat"}, run, held=False)
    for template in ("extract", "twice"):  # JSON is printed again with an indent; several answers are not streamed
        assert not chat_cli._streamed(generator, {"template": template}, run, held=False)
    assert not chat_cli._streamed(generator, {"template": "chat"}, types.SimpleNamespace(json_schema=None, n=2), held=False)  # -n 2


def test_the_repl_streams_one_reply_a_turn_with_a_template_that_asks_for_several(monkeypatch):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    user_template("twice", "---\ndefaults: {n: 2}\n---\n{{ input }}\n")
    engine = FakeEngine()
    engine.enqueue("one reply")
    session = ChatSession(ChatGenerator(engine=engine), template="twice")
    repl_lines(monkeypatch, "bees")
    _turn(session, RunOptions(log=False), [])
    assert [m["content"] for m in session.messages] == ["bees", "one reply"] and engine.calls[-1][1].n == 1


def test_run_renders_what_it_promises(tiny_model_dir, monkeypatch):
    from aigc.generators.template import TemplateGenerator
    from aigc.testing import FakeEngine

    user_template("greet", GREET)
    engine = FakeEngine()
    engine.enqueue("Hi!")
    result = TemplateGenerator(engine=engine)({"input": "x", "who": "Rome", "times": "2"}, template="greet")
    assert result["text"] == "Hi!"
    assert result["messages"] == [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Hello Rome! Hello Rome! x"}]
    assert engine.calls[0][1].max_tokens == 3


def test_run_dry_run_prints_the_messages_without_a_model(unloadable):
    user_template("greet", GREET)
    result = invoke("run", "greet", "--var", "who=Rome", "--dry-run", "-m", unloadable, input="a note\n")
    assert result.exit_code == 0 and result.stdout == "## System\n\nYou are kind.\n\n## User\n\nHello Rome! a note\n"
    data = json.loads(invoke("run", "greet", "--var", "input=x", "--dry-run", "--json").stdout)
    assert data == {"template": "greet", "messages": [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Hello Paris! x"}],
                    "defaults": {"max_tokens": 3, "temperature": 0, "top_p": 0.9, "repetition_penalty": 1.1}}  # the template's over aigc run's own


def test_run_takes_its_input_as_an_argument_and_writes_o_atomically(tiny_model_dir, tmp_path):
    user_template("greet", GREET)
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    (tmp_path / "note.md").write_text("bees on roofs\n")
    assert invoke("run", "greet", str(tmp_path / "note.md"), "--dry-run").stdout.endswith("Hello Paris! bees on roofs\n")
    assert invoke("run", "greet", "-", "--dry-run", input="PIPED\n").stdout.endswith("Hello Paris! PIPED\n")
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    result = invoke("run", "greet", str(tmp_path / "note.md"), "-o", str(out), "-m", str(tiny_model_dir), "--seed", "1")
    printed = invoke("run", "greet", str(tmp_path / "note.md"), "-m", str(tiny_model_dir), "--seed", "1").stdout
    assert result.exit_code == 0 and result.stdout == "" and f"wrote {out}" in result.stderr and out.read_text() == printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.md", "out.txt"]  # no temp file left
    checked = invoke("run", "greet", "--var", "input=x", "--dry-run", "--json", "-o", str(out))  # a check of a script leaves its output alone
    assert checked.exit_code == 0 and json.loads(checked.stdout)["template"] == "greet" and out.read_text() == printed and "is left as it is" in checked.stderr
    for args, words in [([str(tmp_path / "note.md"), "-i", "-"], "not both"), (["nope words"], "no such file: nope words (give text itself with --var input=TEXT"),
                        ([str(tmp_path / "note.md"), "-o", str(tmp_path / "note.md")], "is the input file"), (["-o", str(tmp_path / "no" / "x.txt"), "--var", "input=x"], "does not exist")]:
        code, lines = bad("run", "greet", *args, "-m", "no-such-model")
        assert code == 2 and len(lines) == 1 and words in lines[0], (args, lines)
    assert out.read_text() == printed  # a failed run leaves the file as it was


def test_run_dry_run_checks_the_options_and_shows_the_settings_it_would_run_with():
    user_template("greet", GREET)
    data = json.loads(invoke("run", "greet", "--var", "input=x", "--dry-run", "--json", "--max-tokens", "9", "--top-k", "5", "--stop", "END").stdout)
    assert data["defaults"] == {"max_tokens": 9, "temperature": 0, "top_p": 0.9, "repetition_penalty": 1.1, "top_k": 5, "stop": ["END"]}
    for args, words in [(["--max-tokens", "0"], "--max-tokens must be at least 1, got 0"), (["--temperature", "3"], "--temperature must be between 0 and 2"), (["--device", "gpu"], "--device must be auto, cpu, cuda or mps, got 'gpu'")]:
        for shown in ([], ["--json"]):
            code, lines = bad("run", "greet", "--var", "input=x", "--dry-run", *shown, *args)
            assert code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {words}"), (args, lines)


def test_a_required_variable_given_empty_is_an_error():
    user_template("greet", GREET)
    for given in ("input=", "input=  "):
        code, lines = bad("run", "greet", "--var", given, "--dry-run")
        assert code == 2 and lines == ["Error: --var input is empty; template 'greet' needs it, so give it some text"]
    emptied = invoke("run", "greet", "--var", "input=x", "--var", "who=", "--dry-run")
    assert emptied.stdout.endswith("Hello ! x\n")  # an optional one may be empty, said (a --var "$UNSET")
    assert emptied.stderr == "Warning: --var who is empty, so template 'greet' gets it empty, not its default 'Paris'; leave --var who out for the default\n"
    assert "Warning" not in invoke("run", "greet", "--var", "input=x", "--var", "who=Ann", "--dry-run").stderr
    user_template("bare", "Summarize: {{ input }}")  # no variables declared: its input is needed all the same
    user_template("fab", "---\nsystem: You summarize text in one line.\n---\n")
    for name in ("bare", "fab"):
        code, lines = bad("run", name, "--var", "input=", "--dry-run")
        assert code == 2 and lines == [f"Error: --var input is empty; template {name!r} needs it, so give it some text"]


def test_a_front_matter_typo_is_one_warning_where_its_template_is_used_and_none_elsewhere(tiny_model_dir):
    user_template("typo", "---\nsytem: be brief\n---\n{{ input }}\n")
    warning = "unknown front-matter key 'sytem' is ignored; did you mean system?"
    assert invoke("run", "chat", "--var", "input=x", "--dry-run").stderr == ""
    ran = subprocess.run([sys.executable, "-m", "aigc", "run", "typo", "--var", "input=x", "-m", str(tiny_model_dir), "--max-tokens", "3"], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stderr.count(warning) == 1, ran.stderr  # loading the model resets Python's record of warnings shown
    for args in (["run", "typo", "--var", "input=x", "--dry-run"], ["templates", "list"], ["templates", "show", "typo"]):
        lines = invoke(*args).stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Warning: ") and lines[0].endswith(warning), (args, lines)


def test_run_fills_the_templates_input_from_piped_text_when_it_is_not_given(tiny_model_dir):
    user_template("greet", GREET)
    result = invoke("run", "greet", "--var", "who=Rome", "-m", str(tiny_model_dir), input="piped bees\n")
    assert result.exit_code == 0, result.output
    assert json.loads(json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"]) == {"input": "piped bees", "who": "Rome"}
    user_template("bare", "Say {{ input }}")  # no front matter: as -i - would, piped text fills input
    bare = invoke("run", "bare", "-m", str(tiny_model_dir), "--max-tokens", "3", input="piped bees\n")
    assert bare.exit_code == 0, bare.output
    assert json.loads(json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"]) == {"input": "piped bees"}


def test_run_leaves_stdin_alone_where_the_input_is_given_so_it_works_in_a_while_read_loop(tmp_path):
    user_template("greet", GREET)
    (tmp_path / "list.txt").write_text("bees\nants\nwasps\n")
    loop = f'while read -r w; do {sys.executable} -m aigc run greet --var "input=$w" --dry-run; done < {tmp_path / "list.txt"}'
    done = subprocess.run(["bash", "-c", loop], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and [line for line in done.stdout.splitlines() if line.startswith("Hello")] == [f"Hello Paris! {w}" for w in ("bees", "ants", "wasps")]
    assert invoke("run", "greet", "-i", "-", "--dry-run", input="PIPED\n").stdout.endswith("Hello Paris! PIPED\n")
    assert invoke("run", "greet", "--dry-run", input="PIPED\n").stdout.endswith("Hello Paris! PIPED\n")  # piped text fills what is still to fill


def test_run_never_waits_on_a_pipe_nobody_writes_to():
    user_template("greet", GREET)
    with subprocess.Popen([sys.executable, "-m", "aigc", "run", "greet", "--var", "input=x", "--dry-run"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as quiet:
        quiet.wait(timeout=60)  # its stdin is still open: run must not read it
        out = quiet.stdout.read()
    assert quiet.returncode == 0 and out.endswith("Hello Paris! x\n")


def test_a_system_prompt_alone_answers_the_input_and_piped_text_with_no_place_is_an_error(tiny_model_dir):
    from aigc.generators.template import TemplateGenerator
    from aigc.testing import FakeEngine

    user_template("fab", "---\ndescription: As fabric's patterns\nsystem: You summarize text in one line.\n---\n")
    engine = FakeEngine()
    engine.enqueue("A cat sat.")
    result = TemplateGenerator(engine=engine)({"input": "The cat sat on the mat."}, template="fab")
    assert result["messages"] == [{"role": "system", "content": "You summarize text in one line."}, {"role": "user", "content": "The cat sat on the mat."}]
    assert invoke("run", "fab", "-m", str(tiny_model_dir), "--max-tokens", "3", input="The cat sat.\n").exit_code == 0
    code, lines = bad("run", "fab", "-m", str(tiny_model_dir))
    assert code == 2 and lines == ["Error: template 'fab' needs input: give it as FILE (or -i FILE), with --var input=TEXT, or pipe it in"]
    result = invoke("run", "headline", "-m", "no-such-model", input="urban rooftop bees\n")
    assert result.exit_code == 2 and "template 'headline' has no 'input' variable" in result.stderr and "has nowhere to go" in result.stderr


def test_piped_text_a_template_has_no_place_for_is_found_however_late_the_command_before_writes_it(monkeypatch):
    import socket

    from aigc.cli.options import stdin_ready

    read_end, write_end = os.pipe()  # `aigc run summarize x | aigc run headline`: the first has written nothing yet
    with open(read_end) as piped:
        monkeypatch.setattr(sys, "stdin", piped)
        assert stdin_ready()  # so run reads it, and says the text has nowhere to go, rather than drop it
        os.close(write_end)
    ours, theirs = socket.socketpair()  # an idle stream a parent process holds open: not waited on
    with ours, theirs, theirs.makefile("r") as held:
        monkeypatch.setattr(sys, "stdin", held)
        assert not stdin_ready()
        ours.sendall(b"text\n")
        assert stdin_ready()


def test_a_template_that_never_uses_the_text_is_an_error_for_run_and_chat(tmp_path, unloadable):
    plain = tmp_path / "plain.j2"
    plain.write_text("Tell me a joke.\n")
    note = tmp_path / "note.txt"
    note.write_text("Translate hello")
    words = "template 'plain' never uses {{ input }}, so the text given would be dropped"
    for args, piped in [(("run", str(plain), "-i", str(note), "--dry-run"), None), (("run", str(plain), "--dry-run"), "Translate hello\n"), (("chat", "-t", str(plain), "Translate hello", "-m", unloadable), None)]:
        code, lines = bad(*args, input=piped)
        assert code == 2 and len(lines) == 1 and words in lines[0], (args, lines)
    assert invoke("run", str(plain), "--dry-run").stdout == "## User\n\nTell me a joke.\n"  # with no text given it runs as it is


@pytest.mark.parametrize(
    "template, args, words",
    [
        ("fab", ["--var", "input=my notes"], "template 'fab' never uses {{ input }}, so the text given would be dropped; put {{ input }} where it goes in"),  # as piped text
        ("fab", ["--var", "foo=my notes"], "template 'fab' never uses {{ foo }}, so --var foo would be dropped; its text uses no variables"),
        ("topic", ["--var", "topc=bees"], "template 'topic' never uses {{ topc }}, so --var topc would be dropped (did you mean topic?); its text uses input, topic"),
        ("system", ["--var", "input=hi", "--var", "mood=calm"], "template 'system' never uses {{ mood }}, so --var mood would be dropped; its text uses input, topic"),
        ("declared", ["--var", "input=x", "--var", "tone=calm"], "template 'declared' never uses {{ tone }}, so --var tone would be dropped; its text uses input"),
    ],
)
def test_run_refuses_a_var_the_template_never_uses(template, args, words, unloadable):
    user_template("fab", "You are a summarizer. Summarize:\n")  # a fabric-style pattern: no variables declared
    user_template("topic", "Write about {{ topic }} for {{ input }}.\n")
    user_template("system", "---\nsystem: You write about {{ topic }}.\n---\n")  # a system prompt alone: the input is the message
    user_template("declared", "---\nvariables:\n  - {name: input}\n  - {name: tone, default: plain}\n---\n{{ input }}\n")
    code, lines = bad("run", template, *args, "--dry-run", "-m", unloadable)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert invoke("run", "topic", "--var", "topic=bees", "--var", "input=kids", "--dry-run").stdout == "## User\n\nWrite about bees for kids.\n"


@pytest.mark.parametrize("session", [[], ["-S", "talk"]])
def test_chat_refuses_a_var_its_template_never_uses(session):
    user_template("topic", "Write about {{ topic }} for {{ input }}.\n")  # no variables declared: any name is taken
    from aigc import templates

    code, lines = bad("chat", "-t", "topic", "--var", "topc=bees", *session, "kids", "-m", "echo")
    assert code == 2 and lines == [f"Error: template 'topic' never uses {{{{ topc }}}}, so --var topc would be dropped (did you mean topic?); its text uses input, topic ({templates.user_dir() / 'topic.j2'})"]
    done = invoke("chat", "-t", "topic", "--var", "topic=bees", *session, "kids", "-m", "echo")
    assert done.exit_code == 0 and done.stdout == "kids\n", done.output


@pytest.mark.parametrize(
    "template, args, words",
    [
        ("greet", ["--var", "who"], "--var takes key=value"),
        ("greet", ["--var", "who:Ann"], "--var takes key=value, got 'who:Ann' (did you mean --var who=Ann?)"),  # fabric's -v=who:Ann
        ("greet", ["--var", "#who:Ann"], "--var takes key=value, got '#who:Ann' (did you mean --var who=Ann?)"),
        ("greet", ["--var", "who=a", "--var", "who=b"], "--var who is given twice"),
        ("greet", ["--var", "input=x", "--var", "colour=red"], "has no variable colour; its variables: input, times, who"),
        ("greet", ["--var", "inpt=x"], "template 'greet' has no variable inpt (did you mean input?); its variables: input, times, who"),  # not: needs input
        ("greet", ["--var", "who=x"], "needs input: give it as FILE (or -i FILE), with --var input=TEXT, or pipe it in (its variables: input, who, times)"),
        ("greet", ["--var", "input=x", "--var", "times=many"], "times must be a whole number"),
        ("gret", [], "did you mean greet"),
        ("greet.j2", [], "the template 'greet' is named without .j2: greet"),
        ("evil", [], "unsafe"),
        ("evil2", [], "unsafe"),
        ("huge", [], "template 'huge' failed while rendering: OverflowError: Range too big"),
        ("zero", [], "failed while rendering: ZeroDivisionError"),
    ],
)
def test_run_errors_are_one_line_with_exit_2_before_any_model_loads(template, args, words, unloadable):
    user_template("greet", GREET)
    user_template("evil", "{{ cycler.__init__.__globals__ }}")
    user_template("evil2", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    user_template("huge", "{% for i in range(100000000) %}x{% endfor %}")
    user_template("zero", "{{ 1 / 0 }}")
    code, lines = bad("run", template, *args, "-m", unloadable)  # an unknown model would fail later
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_templates_new_starts_a_skeleton_and_refuses_to_overwrite():
    from aigc import templates

    user_template("broken", "---\nvariables: [\n---\n{{ input }}")
    result = invoke("templates", "new", "my-post")
    assert result.exit_code == 0, result.output
    assert "skipping" not in result.stderr  # other templates' problems are not this command's
    path = result.stdout.strip()
    assert path == str(templates.user_dir() / "my-post.j2")
    rendered = templates.render("my-post", {"input": "sample text"})
    assert "sample text" in rendered.messages[-1]["content"] and templates.get_template("my-post").description
    code, lines = bad("templates", "new", "my-post")
    assert code == 2 and "already exists" in lines[0]
    assert bad("templates", "new", "../escape")[0] == 2


def test_templates_edit_opens_yours_or_a_copy_in_the_editor_and_checks_it(monkeypatch):
    from aigc import template_edits
    from aigc import templates

    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "sed -i s/Summarize/Condense/")
    result = invoke("templates", "edit", "summarize")  # a built-in: your copy is made, then edited
    assert result.exit_code == 0, result.output
    own = templates.user_dir() / "summarize.j2"
    assert result.stdout.strip() == str(own) and "Condense" in own.read_text() and "copied from" in result.stderr
    assert templates.get_template("summarize").source == "user"
    monkeypatch.setenv("EDITOR", "sed -i s/Condense/Shorten/")
    assert invoke("templates", "edit", "summarize.j2").exit_code == 0 and "Shorten" in own.read_text()  # yours, in place
    monkeypatch.setenv("EDITOR", "sed -i 1a\\variables:[")  # a broken front matter is named with its line, and not saved
    code, lines = bad("templates", "edit", "summarize")
    draft = template_edits.draft_path("summarize")
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {draft}:") and f"your edit is kept in {draft}" in lines[0]
    assert "Shorten" in own.read_text() and "variables:[" not in own.read_text() and templates.get_template("summarize").source == "user"
    monkeypatch.setenv("EDITOR", "sed -i 2d")  # the next edit starts from the kept one
    result = invoke("templates", "edit", "summarize")
    assert result.exit_code == 0 and f"resuming your edit kept in {draft}" in result.stderr and not draft.exists()
    assert bad("templates", "edit", "../escape")[0] == 2
    monkeypatch.setenv("EDITOR", "no-such-editor-here")
    code, lines = bad("templates", "edit", "summarize")
    assert code == 2 and "no-such-editor-here" in lines[0] and "set $VISUAL or $EDITOR to an editor you have" in lines[0]
    assert lines[0].endswith("; nothing saved") and not draft.exists()  # nothing edited: no draft kept
    monkeypatch.setenv("EDITOR", "false")  # an editor that exists but fails
    code, lines = bad("templates", "edit", "summarize")
    assert code == 2 and lines == ["Error: the editor 'false' exited with code 1; nothing saved"]
    assert not draft.exists() and "Shorten" in own.read_text()
    monkeypatch.setenv("EDITOR", "sh -c 'echo more >> \"$0\"; exit 3'")  # edited, then failed: the edit is kept
    code, lines = bad("templates", "edit", "summarize")
    assert lines == [f"Error: the editor {os.environ['EDITOR']!r} exited with code 3; nothing saved; your edit is kept in {draft}, and `aigc templates edit summarize` opens it again"]
    assert draft.read_text().endswith("more\n") and "more" not in own.read_text()


def test_templates_edit_of_a_template_in_aigc_templates_path_edits_your_copy(tmp_path, monkeypatch):
    from aigc import templates

    team = tmp_path / "tagline.j2"
    team.write_text("---\ndescription: the team's\n---\nTagline for {{ input }}\n")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "sed -i s/for/about/")
    result = invoke("templates", "edit", "tagline")
    own = templates.user_dir() / "tagline.j2"
    assert result.exit_code == 0 and result.stdout.strip() == str(own) and f"copied from {team}; yours overrides it" in result.stderr
    assert "Tagline for" in team.read_text() and "Tagline about" in own.read_text() and templates.get_template("tagline").path == own


def test_templates_edit_keeps_a_front_matter_after_a_blank_line_and_refuses_one_after_a_header_line(monkeypatch):
    from aigc import templates

    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "sed -i 1s/^/\\\\n/")  # a blank first line: the front matter still counts
    assert invoke("templates", "edit", "summarize").exit_code == 0
    own = templates.user_dir() / "summarize.j2"
    assert own.read_text().startswith("\n---") and templates.get_template("summarize").system == templates.scan("summarize", passing=own)[0]["summarize"].system
    monkeypatch.setenv("EDITOR", "sed -i '1i# Notes'")  # a `# ...` line before it (an old copy's header): not saved, and said why
    code, lines = bad("templates", "edit", "summarize")
    assert code == 2 and "summarize.j2:3: the front matter must begin the file" in lines[0] and "not saved" in lines[0]
    assert not own.read_text().startswith("# Notes")


def test_templates_edit_without_an_editor_set_and_no_terminal_starts_none(monkeypatch):
    import subprocess

    from aigc import template_edits
    from aigc import templates

    for name in ("VISUAL", "EDITOR"):
        monkeypatch.delenv(name, raising=False)
    started = []
    monkeypatch.setattr(subprocess, "call", lambda *args, **kwargs: started.append(args) or 0)
    code, lines = bad("templates", "edit", "summarize")  # stdin is no terminal here: vi would not work
    assert code == 2 and lines == [f"Error: no editor to open: $VISUAL and $EDITOR are unset, and with no terminal here vi cannot run; set one (EDITOR=nano aigc templates edit summarize), or copy the template with `aigc templates new summarize` and edit {templates.user_dir() / 'summarize.j2'}"]
    assert started == [] and not (templates.user_dir() / "summarize.j2").exists() and not template_edits.draft_path("summarize").exists()


def test_a_failed_edit_of_a_builtin_leaves_it_working_and_on_a_terminal_may_be_edited_again(monkeypatch, tmp_path):
    from aigc import template_edits
    from aigc import templates
    from aigc.cli import templates as templates_cli

    toggle = tmp_path / "toggle.py"  # an editor that breaks the template, and mends it the next time
    toggle.write_text("import sys, pathlib\np = pathlib.Path(sys.argv[1]); t = p.read_text()\np.write_text(t.replace('{{ broken\\n', '{# mended #}\\n') if '{{ broken' in t else t + '{{ broken\\n')\n")
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {toggle}")
    own, draft = templates.user_dir() / "headline.j2", template_edits.draft_path("headline")
    monkeypatch.setattr(templates_cli, "_on_terminal", lambda: True)
    result = invoke("templates", "edit", "headline", input="y\n")  # broken, edited again, mended
    assert result.exit_code == 0 and "Edit it again?" in result.stderr and result.stdout.endswith(f"{own}\n")  # (the runner echoes the answer)
    assert templates.get_template("headline").source == "user" and not draft.exists()
    assert invoke("templates", "rm", "headline").exit_code == 0
    result = invoke("templates", "edit", "headline", input="n\n")  # declined: the built-in stays in use, the edit is kept
    assert result.exit_code == 2 and not own.exists() and "{{ broken" in draft.read_text()
    assert templates.get_template("headline").source == "builtin"
    assert invoke("templates", "rm", "headline").exit_code == 0 and not draft.exists()  # a kept edit alone is dropped
    monkeypatch.setattr(templates_cli, "_on_terminal", lambda: False)
    code, lines = bad("templates", "edit", "headline")
    assert code == 2 and len(lines) == 2 and lines[0].startswith("copied from")
    assert lines[1].startswith(f"Error: {draft}:") and lines[1].endswith(f"not saved: your edit is kept in {draft}, and `aigc templates edit headline` opens it again")
    assert not own.exists() and templates.get_template("headline").source == "builtin"


def test_templates_rm_removes_yours_and_gives_back_the_builtin_it_overrode(unloadable):
    from aigc import templates

    user_template("headline", "---\ndescription: [unclosed\n---\nx")  # a broken override: one line, with the way out
    code, lines = bad("headline", "--topic", "bees", "-m", unloadable)
    assert code == 2 and len(lines) == 1 and "headline.j2:2: bad front matter" in lines[0]
    assert lines[0].endswith("fix it with `aigc templates edit headline`, or remove it with `aigc templates rm headline`, going back to the built-in one")
    result = invoke("templates", "rm", "headline")
    assert result.exit_code == 0 and "'headline' is now the built-in one" in result.stderr
    assert templates.get_template("headline").source == "builtin"
    code, lines = bad("templates", "rm", "headline")
    assert code == 2 and lines == [f"Error: no template 'headline' of yours to remove in {templates.user_dir()}: it is built in ({templates.builtin_dir() / 'headline.j2'}), with no override of yours; only your own templates can be removed"]
    assert bad("templates", "rm", "no-such")[0] == 2
    user_template("mine", "{{ input }}")
    assert invoke("templates", "rm", "mine.j2").exit_code == 0 and "mine" not in templates.discover()


def test_templates_list_shows_what_a_user_template_overrides():
    user_template("chat", "---\ndescription: mine\n---\n{{ input }}")
    rows = {row["name"]: row for row in json.loads(invoke("templates", "list", "--json").stdout)}
    assert (rows["chat"]["source"], rows["chat"]["overrides"], rows["summarize"]["overrides"]) == ("user", ["builtin"], [])
    line = next(line for line in invoke("templates", "list").stdout.splitlines() if line.startswith("chat "))
    assert "user (overrides the built-in one)" in line and "mine" in line
    from aigc.templates import whose

    assert whose("social-templates") == "the one of plugin 'social-templates'"  # not plugin 'social-templates''s


def test_templates_new_of_an_aigc_templates_path_template_makes_your_copy_which_is_used(tmp_path, monkeypatch):
    from aigc import templates

    (tmp_path / "pb.j2").write_text("---\ndescription: from the path\n---\n{{ input }}\n")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    result = invoke("templates", "new", "pb")
    assert result.exit_code == 0 and "yours overrides 'pb' from env" in result.stderr
    assert templates.get_template("pb").path == templates.user_dir() / "pb.j2"


def test_a_utf16_template_aigc_runs_is_shown_copied_and_edited_too(tmp_path, monkeypatch):
    from aigc import templates

    (tmp_path / "notes.j2").write_text("---\ndescription: Café notes\n---\n{{ input }}\n", encoding="utf-16")  # Notepad's "Unicode"
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(tmp_path))
    assert invoke("run", "notes", "--var", "input=x", "--dry-run").exit_code == 0
    shown = invoke("templates", "show", "notes")
    assert shown.exit_code == 0 and shown.stdout.endswith("description: Café notes\n---\n{{ input }}\n")
    assert json.loads(invoke("templates", "show", "notes", "--json").stdout)["text"] == "---\ndescription: Café notes\n---\n{{ input }}\n"
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c \"import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.write_text(p.read_text().replace('notes', 'jottings'))\"")
    own = templates.user_dir() / "notes.j2"
    assert invoke("templates", "edit", "notes").exit_code == 0 and "Café jottings" in own.read_text(encoding="utf-8")  # your copy
    own.unlink()
    copied = invoke("templates", "new", "notes")
    assert copied.exit_code == 0 and Path(copied.stdout.strip()).read_text(encoding="utf-8") == "---\ndescription: Café notes\n---\n{{ input }}\n"


def test_plugins_lists_a_plugin_and_a_broken_one(monkeypatch):
    import importlib.metadata

    class Good:
        @hookimpl
        def register_template_dirs(self, register):
            register("/nowhere")

    class Broken:
        name, value, dist = "broken", "aigc_broken_plugin", None

        def load(self):
            raise RuntimeError("boom on import")

    class GoodPoint:
        name, value = "good", "good_module"
        dist = type("Dist", (), {"name": "aigc-good", "version": "1.2.3"})()

        def load(self):
            return Good()

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [Broken(), GoodPoint()] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    assert "good 1.2.3 (aigc-good)" in result.stdout and "hooks: register_template_dirs" in result.stdout
    assert "broken ? (" not in result.stdout and "failed in import: RuntimeError: boom on import" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "boom on import" in line]
    assert len(warnings) == 1 and "AIGC_TRACE_PLUGINS=1 shows where" in warnings[0]
    rows = json.loads(invoke("plugins", "--json").stdout)["plugins"]
    assert [r["name"] for r in rows] == ["good", "broken"]
    assert invoke("plugins", "--all").stdout.count("aigc.default_plugins") == 5
    assert invoke("plugins", "list", "--all").stdout == invoke("plugins", "--all").stdout


def test_chat_works_with_a_broken_plugin(tiny_model_dir, monkeypatch):
    import importlib.metadata

    class Broken:
        name, value, dist = "broken", "aigc_broken_plugin", None

        def load(self):
            raise RuntimeError("boom on import")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [Broken()] if group == "aigc" else [])
    monkeypatch.delenv("AIGC_LOAD_PLUGINS")
    plugins.reset()
    result = invoke("chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "3", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["usage"]["prompt_tokens"] > 0
    assert sum("boom on import" in line for line in result.stderr.splitlines()) == 1


@pytest.fixture
def pip_calls(monkeypatch):
    import aigc.cli.plugins as cli_plugins

    calls = []

    def fake_run(command, **kwargs):
        constraints = command[command.index("-c") + 1] if "-c" in command else None
        calls.append((command, open(constraints).read() if constraints else None))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(cli_plugins.subprocess, "run", fake_run)
    return calls


def test_plugins_install_pins_the_installed_torch_and_aigc_and_warns_of_no_plugin(pip_calls, tmp_path, monkeypatch):
    from importlib.metadata import version

    monkeypatch.setattr(plugins, "plugins_of", lambda dist: ["something"] if dist == "aigc-something" else [])

    package = tmp_path / "my-plugin"
    package.mkdir()
    (package / "pyproject.toml").write_text("[project]\nname='my-plugin'\n")
    result = invoke("plugins", "install", "aigc-something", str(package), "-e")
    assert result.exit_code == 0, result.output
    ((command, constraints),) = pip_calls
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert "aigc-something" in command and command[command.index("-e") + 1] == str(package.resolve())
    assert f"torch=={version('torch')}" in constraints.splitlines()
    assert "Warning: my-plugin has no `aigc` entry point" in result.stderr  # nothing was really installed
    assert "aigc-something" not in result.stderr  # it ships a plugin
    assert invoke("plugins", "install", "torch").exit_code == 2
    assert invoke("plugins", "install", str(tmp_path)).exit_code == 2  # a directory that is no package
    assert len(pip_calls) == 1


def test_plugins_uninstall_takes_a_plugin_or_distribution_name_and_refuses_unknown_ones(pip_calls, monkeypatch):
    import importlib.metadata

    import aigc.cli.plugins as cli_plugins

    def version(dist):
        removed = {name for command, _ in pip_calls for name in command[5:]} - {"aigc-stuck"}  # pip cannot remove that one
        if dist not in ("aigc-shout", "aigc-something", "aigc-stuck", "typer") or dist in removed:
            raise importlib.metadata.PackageNotFoundError(dist)
        return "1.0"

    monkeypatch.setattr(cli_plugins, "version", version)
    monkeypatch.setattr(cli_plugins, "distribution", lambda dist: importlib.metadata.PathDistribution(Path("/elsewhere/site/aigc_stuck-1.0.dist-info")))
    monkeypatch.setattr(plugins, "distribution_of", lambda name: {"shout": "aigc-shout"}.get(name))
    monkeypatch.setattr(plugins, "plugins_of", lambda dist: {"aigc-shout": ["shout", "whisper"], "aigc-something": ["something"], "aigc-stuck": ["stuck"]}.get(dist, []))
    not_a_plugin = invoke("plugins", "uninstall", "typer")
    assert not_a_plugin.exit_code == 2 and "typer is not an aigc plugin, and aigc, transformers need it" in not_a_plugin.stderr
    result = invoke("plugins", "uninstall", "aigc-something", "shout", env={"AIGC_LOAD_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    assert "removing aigc-shout with its plugins shout, whisper" in result.stderr  # all it ships go with it
    assert pip_calls[0][0][3:] == ["uninstall", "-y", "aigc-something", "aigc-shout"]
    missing = invoke("plugins", "uninstall", "nosuch")
    assert missing.exit_code == 2 and "no plugin or distribution called 'nosuch' is installed" in missing.stderr
    assert invoke("plugins", "uninstall", "aigc").exit_code == 2
    assert invoke("plugins", "uninstall", "pip").exit_code == 2  # aigc runs pip, whatever requires it
    assert invoke("plugins", "uninstall", "").exit_code == 2
    assert len(pip_calls) == 1
    stuck = invoke("plugins", "uninstall", "aigc-stuck")
    assert stuck.exit_code == 1 and "Error: pip did not remove aigc-stuck (in /elsewhere/site): it is outside aigc's environment" in stuck.stderr


def test_what_needs_a_package_leaves_out_extras_and_the_package_itself():
    from aigc.cli.plugins import _needed_by

    assert "transformers" in _needed_by("tokenizers") and "tokenizers" not in _needed_by("tokenizers")
    assert "aigc" not in _needed_by("pexpect")  # only aigc's test extra asks for it


def test_plugins_uninstall_removes_a_package_installed_by_mistake_and_pip_failures_are_errors(pip_calls, monkeypatch):
    import aigc.cli.plugins as cli_plugins

    def version(dist):
        if dist != "not-a-plugin" or pip_calls:  # gone once pip ran
            raise cli_plugins.PackageNotFoundError(dist)
        return "1.0"

    monkeypatch.setattr(cli_plugins, "version", version)
    monkeypatch.setattr(cli_plugins, "_needed_by", lambda dist: [])  # nothing installed requires it
    result = invoke("plugins", "uninstall", "not-a-plugin")
    assert result.exit_code == 0, result.output
    assert pip_calls[-1][0][3:] == ["uninstall", "-y", "not-a-plugin"]
    monkeypatch.setattr(cli_plugins.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(command, 1))
    failed = invoke("plugins", "install", "aigc-doesnotexist-zz")
    assert failed.exit_code == 1 and failed.stderr.startswith("Error: pip could not install aigc-doesnotexist-zz (exit 1)")


def test_a_plugin_command_that_raises_is_one_line_naming_the_plugin(monkeypatch):
    class Crash:
        @hookimpl
        def register_commands(self, app):
            @app.command("crash")
            def crash(kind: str = "runtime"):
                raise {"runtime": RuntimeError("boom\nsecond line"), "bare": AssertionError(), "pipe": BrokenPipeError(), "denied": PermissionError(13, "Permission denied")}[kind]

            group = typer.Typer()

            @group.command("boom")
            def boom():
                raise RuntimeError("inner")

            app.add_typer(group, name="tools")

    plugins.reset()
    plugins.get_plugin_manager().register(Crash(), name="crasher")
    local = typer.Typer(cls=AigcGroup)
    local.callback()(lambda: None)
    plugins.register_commands(local)
    try:
        result = runner.invoke(local, ["crash"])
        assert result.exit_code == 1 and result.stderr == "Error: `aigc crash` (a command of plugin 'crasher') failed: RuntimeError: boom second line (AIGC_DEBUG=1 shows the traceback)\n"
        inner = runner.invoke(local, ["tools", "boom"])
        assert inner.stderr == "Error: `aigc tools boom` (a command of plugin 'crasher') failed: RuntimeError: inner (AIGC_DEBUG=1 shows the traceback)\n"
        result = runner.invoke(local, ["crash", "--kind", "bare"])
        assert result.stderr == "Error: `aigc crash` (a command of plugin 'crasher') failed: AssertionError (AIGC_DEBUG=1 shows the traceback)\n"
        result = runner.invoke(local, ["crash", "--kind", "denied"])  # an OS error other than a full disk: as any other
        assert result.exit_code == 1 and result.stderr == "Error: `aigc crash` (a command of plugin 'crasher') failed: PermissionError: [Errno 13] Permission denied (AIGC_DEBUG=1 shows the traceback)\n"
        result = runner.invoke(local, ["crash", "--kind", "pipe"])
        assert result.exit_code == 1 and result.stderr == ""  # a reader that went away (`| head`) is no error
        monkeypatch.setenv("AIGC_DEBUG", "1")
        assert type(runner.invoke(local, ["crash"]).exception) is RuntimeError
    finally:
        plugins.reset()


def test_a_plugin_command_that_exits_keeps_its_code_and_a_silent_failure_is_named():
    class Exits:
        @hookimpl
        def register_commands(self, app):
            @app.command("leave")
            def leave(code: str = "3", how: str = "sys"):
                value = int(code) if code.lstrip("-").isdigit() else code
                if how == "typer":
                    raise typer.Exit(value)
                if how == "pipe":  # as rich's console exits when stdout's reader went away (help or a result piped to `head`)
                    try:
                        raise BrokenPipeError(32, "Broken pipe")
                    except BrokenPipeError:
                        raise SystemExit(1) from None
                sys.exit(value)

    plugins.reset()
    plugins.get_plugin_manager().register(Exits(), name="exiter")
    local = typer.Typer(cls=AigcGroup)
    local.callback()(lambda: None)
    plugins.register_commands(local)
    try:
        for how in ("sys", "typer"):
            result = runner.invoke(local, ["leave", "--how", how])
            assert (result.exit_code, result.stderr) == (3, "Error: `aigc leave` (a command of plugin 'exiter') exited with code 3\n")
            assert (runner.invoke(local, ["leave", "--code", "0", "--how", how]).exit_code, result.stdout) == (0, "")
        result = runner.invoke(local, ["leave", "--code", "256"])  # the shell would read it as 0
        assert result.exit_code == 1 and "exited with code 256, which is no exit status (1-255); exiting with 1" in result.stderr
        result = runner.invoke(local, ["leave", "--code", "missing tool"])  # Python prints the message itself
        assert result.exit_code == 1 and result.stderr == ""
        result = runner.invoke(local, ["leave", "--how", "pipe"])  # `aigc leave --help | head`: no failure to name
        assert result.exit_code == 1 and result.stderr == ""
    finally:
        plugins.reset()


@pytest.mark.parametrize("flag, expected", [([], False), (["--trust-remote-code"], True)])
def test_remote_code_is_trusted_only_when_asked(monkeypatch, tiny_model_dir, flag, expected):
    from aigc.engine import loading

    seen = {}
    real = loading.load_model

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "load_model", spy)
    result = invoke("chat", "hi", "-m", str(tiny_model_dir), "--max-tokens", "2", *flag)
    assert result.exit_code == 0, result.output
    assert seen["trust_remote_code"] is expected


def test_a_broken_user_template_is_one_warning_and_the_cli_keeps_working():
    user_template("broken", "---\ndescription: [unclosed\n---\nx")
    result = invoke("templates", "list")
    assert result.exit_code == 0 and "chat" in result.stdout and "broken" not in result.stdout
    assert "Warning: skipping template:" in result.stderr and "broken.j2:2: bad front matter" in result.stderr


def test_no_command_writes_its_result_over_its_input(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": 1, "text": "a"}\n')
    (tmp_path / "link.txt").symlink_to(rows)
    for args in (["batch", "summarize", "-i", str(rows)], ["summarize", str(rows)], ["translate", str(rows), "--to", "fr"], ["headline", str(rows)]):
        code, lines = bad(*args, "-o", str(tmp_path / "link.txt"), "-m", "no-such-model")
        assert code == 2 and "is the input file; write the result to another file" in lines[0], lines
    assert rows.read_text() == '{"id": 1, "text": "a"}\n'
    code, lines = bad("summarize", str(rows), "-o", str(tmp_path / "missing") + "/", "-m", "no-such-model")
    assert code == 2 and "there is no such directory" in lines[0] and not (tmp_path / "missing").exists()
    for args in (["classify", "-", "-l", "a,b", "--lines"], ["run", "chat"]):  # `[-] < FILE -o FILE`: standard input reads the file -o would replace
        with open(rows) as stdin:
            done = subprocess.run([sys.executable, "-m", "aigc", *args, "-o", str(rows), "-m", "no-such-model"], stdin=stdin, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr == f"Error: -o {rows} is the input file (standard input reads it); write the result to another file\n", args
    with open(rows) as stdin:  # the input given another way: standard input is not read, so -o may name its file
        done = subprocess.run([sys.executable, "-m", "aigc", "run", "chat", "--var", "input=hi", "-o", str(rows), "-m", "no-such-model"], stdin=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown model 'no-such-model'" in done.stderr
    assert rows.read_text() == '{"id": 1, "text": "a"}\n'


def test_no_command_writes_its_result_over_another_file_it_reads(tmp_path):
    files = {name: tmp_path / name for name in ("ex.tsv", "ex.csv", "g.tsv", "mine.j2", "s.json", "rows.txt")}
    kept = {"mine.j2": "Say {{ input }}\n", "s.json": '{"type": "object"}\n'}
    for name, path in files.items():
        path.write_text(kept.get(name, "kept\n"))
    link = tmp_path / "link.tsv"
    link.symlink_to(files["ex.tsv"])
    for args, output, what in (
        (["classify", "what a film", "-l", "pos,neg", "--examples", str(files["ex.tsv"])], link, "--examples"),
        (["translate", "the cat", "--to", "fr", "--glossary", str(files["g.tsv"])], files["g.tsv"], "--glossary"),
        (["translate", "the cat", "--to", "fr", "-t", str(files["mine.j2"])], files["mine.j2"], "--template"),
        (["summarize", str(files["rows.txt"]), "-t", str(files["mine.j2"])], files["mine.j2"], "--template"),
        (["headline", "--topic", "bees", "-t", str(files["mine.j2"])], files["mine.j2"], "--template"),
        (["run", str(files["mine.j2"]), "--var", "input=hi"], files["mine.j2"], "template"),
        (["run", "chat", "--var", "input=hi", "--schema", str(files["s.json"])], files["s.json"], "--schema"),
        (["batch", "classify", "-i", str(files["rows.txt"]), "-O", f"examples={files['ex.csv']}"], files["ex.csv"], "-O examples"),
        (["batch", "classify", "-i", str(files["rows.txt"]), "-O", f"examples={files['ex.csv']}"], files["ex.csv"].with_name("ex.csv.jsonl"), None),
    ):
        if what is None:  # a table's JSON Lines beside it named as the examples
            output.write_text("kept\n")
            args[-1] = f"examples={output}"
            what = "-O examples"
            output = output.with_suffix("")
        code, lines = bad(*args, "-o", str(output), "-m", "no-such-model")
        assert code == 2 and lines[0].endswith(f"is the {what} file, which the command reads; write the result to another file"), (args, lines)
    assert all(path.read_text() == kept.get(name, "kept\n") for name, path in files.items())
    code, lines = bad("translate", "the cat", "--to", "fr", "-t", "translate", "-o", str(tmp_path / "out.txt"), "-m", "no-such-model")  # a template by name reads no file here
    assert code == 2 and "unknown model" in lines[0], lines


def test_help_shows_no_value_type_for_flags():
    shown = invoke("chat", "--help", env={"COLUMNS": "200"}).stdout
    assert "<bool>" not in shown and "<list[" not in shown
    assert any("--stop" in line and "<str>" in line for line in shown.splitlines())
    assert "<int>" not in next(line for line in invoke("--help", env={"COLUMNS": "200"}).stdout.splitlines() if "--verbose" in line)


def test_help_shows_the_element_type_of_an_argument_given_many_times():
    shown = invoke("models", "rm", "--help", env={"COLUMNS": "200"}).stdout
    assert "<list[" not in shown and any("MODEL" in line and "<str>" in line for line in shown.splitlines()), shown


def test_aigc_plugins_tries_a_plugin_module_from_pythonpath_in_the_cli_without_installing_it(tmp_path):
    (tmp_path / "aigc_cli_tried.py").write_text(
        "import typer\nfrom aigc import hookimpl\n\n__version__ = '0.2'\n\n\n@hookimpl\ndef register_commands(app):\n"
        "    @app.command()\n    def tried(word: str):\n        typer.echo(word.upper())\n"
    )
    (tmp_path / "aigc_cli_broken.py").write_text("import nosuchmodule\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), "AIGC_PLUGINS": "aigc_cli_tried,aigc_cli_broken"}
    ran = subprocess.run([sys.executable, "-m", "aigc", "tried", "gpu"], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout == "GPU\n", ran.stderr
    assert ran.stderr.count("Warning:") == 1 and "plugin 'aigc_cli_broken' failed in import: ModuleNotFoundError" in ran.stderr and "take it out of AIGC_PLUGINS" in ran.stderr
    listed = subprocess.run([sys.executable, "-m", "aigc", "plugins"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "aigc_cli_tried 0.2 (AIGC_PLUGINS)\n  hooks: register_commands\n  commands: tried\n" in listed.stdout
    assert "aigc_cli_broken ? (AIGC_PLUGINS)  [not loaded]" in listed.stdout


def test_plugins_uninstall_says_how_to_stop_loading_an_aigc_plugins_module(tmp_path, monkeypatch, pip_calls):
    (tmp_path / "aigc_cli_loose.py").write_text("raise ImportError('half written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AIGC_PLUGINS", "aigc_cli_loose")
    plugins.reset()
    try:
        result = invoke("plugins", "uninstall", "aigc_cli_loose")
        assert result.exit_code == 2 and "plugin 'aigc_cli_loose' is not installed: AIGC_PLUGINS loads it from PYTHONPATH; take it out of AIGC_PLUGINS" in result.stderr
        assert pip_calls == []
    finally:
        plugins.reset()


def test_plugins_says_when_aigc_load_plugins_filters_them():
    result = invoke("plugins")  # the test setup sets AIGC_LOAD_PLUGINS to empty
    assert result.exit_code == 0 and result.stdout == ""
    assert "AIGC_LOAD_PLUGINS is empty: no installed plugin is loaded (unset" in result.stderr and "No plugins loaded; " in result.stderr
    named = invoke("plugins", env={"AIGC_LOAD_PLUGINS": "nosuch"})
    assert "AIGC_LOAD_PLUGINS='nosuch': only the plugins it names are loaded" in named.stderr


def test_a_plugin_model_whose_files_are_gone_is_listed_with_a_warning(tmp_path):
    from aigc import ModelSpec

    class GoneModel:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(alias="gone", source=str(tmp_path / "deleted-model")))

    plugins.reset()
    plugins.get_plugin_manager().register(GoneModel(), name="gone-plugin")
    try:
        result = invoke("models", "list", "--json")
    finally:
        plugins.reset()
    assert result.exit_code == 0, result.output
    rows = {row["alias"]: row for row in json.loads(result.stdout)}
    assert rows["gone"]["installed"] is False and "smollm2" in rows
    assert any("'gone'" in line for line in result.stderr.splitlines())


def test_classify_takes_text_longer_than_a_file_name_can_be(tiny_model_dir):
    text = "I loved this film and would watch it again. " * 10  # over 255 bytes: no file has such a name
    result = invoke("classify", text, "-l", "negative,positive", "-m", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["scores"]) == {"negative", "positive"}


def test_chat_with_stdin_closed_is_one_line_error():
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m aigc chat <&-"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == ["Error: no prompt given; pass one as an argument or pipe it in"]


def test_chat_repl_goes_on_after_the_model_fails_a_turn(monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.errors import ModelUnavailableError
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    class DownEngine(FakeEngine):
        def stream(self, prompt, params):
            raise ModelUnavailableError("the server at http://gpu-box went away")
            yield  # a generator, like a real stream

    session = ChatSession(ChatGenerator(engine=DownEngine()))
    monkeypatch.setattr("builtins.input", lambda prompt="": "hello")
    assert _turn(session, RunOptions(), []) is None
    assert "went away" in capsys.readouterr().err and session.messages == []

    class BreakingEngine(FakeEngine):
        def stream(self, prompt, params):
            yield "Hi from"
            raise ModelUnavailableError("the stream ended without [DONE]")

    session = ChatSession(ChatGenerator(engine=BreakingEngine()))
    assert _turn(session, RunOptions(), []) is None
    out = capsys.readouterr().out
    assert out == "Hi from\n" and session.messages == []  # the error is on a line of its own

    session = ChatSession(ChatGenerator(engine=FakeEngine(context_length=100)), sampling={"max_tokens": 99})
    assert _turn(session, RunOptions(), []) is None
    assert "lower max_tokens (/set max_tokens N)" in capsys.readouterr().err  # the REPL's way, not --max-tokens


def repl_lines(monkeypatch, *lines):
    """Feed the REPL these lines as if typed."""
    typed = iter(lines)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))


def test_chat_repl_goes_on_after_a_message_its_template_cannot_take(monkeypatch, capsys, tmp_path):
    from aigc import templates
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    templates.user_dir().mkdir(parents=True)
    (templates.user_dir() / "calm.j2").write_text("{{ input }}{{ 1 // 0 if input.endswith('!') else '' }}")
    (tmp_path / "notes.md").write_text("Bees make honey.")
    engine = FakeEngine()
    engine.enqueue("a reply")
    session, pending = ChatSession(ChatGenerator(engine=engine), template="calm"), [(str(tmp_path / "notes.md"), "Bees make honey.")]
    repl_lines(monkeypatch, "now!", "why?")
    assert _turn(session, RunOptions(log=False), pending) is None  # the template divides by zero: said, and the chat goes on
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "still added to your next message" in err and session.messages == [] and len(pending) == 1
    assert _turn(session, RunOptions(log=False), pending) is None
    assert [m["role"] for m in session.messages] == ["user", "assistant"] and pending == []


@pytest.mark.parametrize("line, leaves", [("exit", True), (" QUIT ", True), ("/quit", True), ("/bye", True), ('"""exit"""', False), ("exit now", False)])
def test_exit_or_quit_alone_on_a_line_leaves_the_repl_and_is_not_sent(monkeypatch, line, leaves):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("a reply")
    session = ChatSession(ChatGenerator(engine=engine))
    repl_lines(monkeypatch, line)
    assert (_turn(session, RunOptions(log=False), []) == "exit") is leaves
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ([] if leaves else [line.strip('"')])


@pytest.mark.parametrize("line, said", [
    ("/sett temperature 0.5", "unknown command /sett (did you mean /set?); /help lists them, and // sends a line that starts with /"),
    ("/etc/hosts: what is it?", "unknown command /etc/hosts:; /help lists them, and // sends a line that starts with /"),
])
def test_chat_repl_unknown_command_says_what_was_meant(monkeypatch, capsys, line, said):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    session = ChatSession(ChatGenerator(engine=FakeEngine()))
    repl_lines(monkeypatch, line)
    _turn(session, RunOptions(log=False), [])
    assert capsys.readouterr().err.strip().endswith(f">>> Error: {said}") and session.messages == []


def test_chat_repl_retry_at_temperature_0_says_the_reply_comes_out_the_same(monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("a reply", "a reply", "another reply")
    session, run = ChatSession(ChatGenerator(engine=engine)), RunOptions(log=False)
    for line in ("hi", "/retry"):
        repl_lines(monkeypatch, line)
        _turn(session, run, [])
    assert "the reply is greedy: /retry gives the same one; /set temperature 0.7 first for another" in " ".join(capsys.readouterr().err.split())
    for line in ("/set temperature 0.7", "/retry"):
        repl_lines(monkeypatch, line)
        _turn(session, run, [])
    assert "greedy" not in capsys.readouterr().err and session.messages[-1]["content"] == "another reply"


def test_chat_repl_files_retry_undo_set_and_multiline_messages(monkeypatch, capsys, tmp_path):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.errors import ModelUnavailableError
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    (tmp_path / "notes.md").write_text("Bees make honey.\n")
    engine = FakeEngine()
    engine.enqueue("first reply", "second reply", "third reply")
    session, pending, run = ChatSession(ChatGenerator(engine=engine)), [], RunOptions()
    for line in (f"/file {tmp_path / 'notes.md'}", f"/file {tmp_path / 'missing.md'}"):
        repl_lines(monkeypatch, line)
        _turn(session, run, pending)
    assert "no such file" in capsys.readouterr().err and len(pending) == 1
    repl_lines(monkeypatch, '"""What do', "they make?", 'Say it."""')
    _turn(session, run, pending)
    asked = session.messages[0]["content"]
    assert asked == f"File {tmp_path / 'notes.md'}:\n\nBees make honey.\n\nWhat do\nthey make?\nSay it." and pending == []
    repl_lines(monkeypatch, "/retry")
    _turn(session, run, pending)
    assert [m["content"] for m in session.messages] == [asked, "second reply"]
    repl_lines(monkeypatch, "/set seed 3")  # chat is greedy by default: a seed draws nothing until the temperature is raised
    _turn(session, run, pending)
    assert "top_p, top_k, min_p and seed change nothing until it is raised" in " ".join(capsys.readouterr().err.split())
    repl_lines(monkeypatch, "/set seed none")  # unsetting it is no setting that changes nothing
    _turn(session, run, pending)
    assert "greedy" not in capsys.readouterr().err
    repl_lines(monkeypatch, "/set frequency_penalty 0.5")  # a penalty applies at temperature 0 too
    _turn(session, run, pending)
    shown = " ".join(capsys.readouterr().err.split())
    assert "frequency_penalty 0.5" in shown and "greedy" not in shown and session.settings()["frequency_penalty"] == 0.5
    repl_lines(monkeypatch, "/set temperature 0.5")
    _turn(session, run, pending)
    shown = capsys.readouterr().err
    assert "temperature 0.5" in shown and "greedy" not in shown
    repl_lines(monkeypatch, "again")
    _turn(session, run, pending)
    assert engine.calls[-1][1].temperature == 0.5 and len(session.messages) == 4
    from aigc import logs

    assert logs.entries(1)[0].options["temperature"] == 0.5  # logged with the settings the reply was made with
    for line in ("/undo", "/set temperature hot", "/set temperature"):
        repl_lines(monkeypatch, line)
        _turn(session, run, pending)
    err = capsys.readouterr().err
    assert len(session.messages) == 2 and "temperature must be a number" in err and "/set temperature needs a value" in err
    assert "--temperature" not in err  # named as /set takes it, not as the command's flag
    (tmp_path / "my notes.md").write_text("  indented\n<b>kept</b>\n")
    repl_lines(monkeypatch, f"/file '{tmp_path / 'my notes.md'}'")  # quoted, as a dragged-in path comes
    _turn(session, run, pending)
    assert pending == [(str(tmp_path / "my notes.md"), "  indented\n<b>kept</b>\n")]

    def down(prompt, params):
        raise ModelUnavailableError("the server went away")
        yield

    engine.stream = down  # a turn that fails is not kept...
    repl_lines(monkeypatch, "and now?")
    _turn(session, run, pending)
    assert len(session.messages) == 2 and len(pending) == 1  # ...and its files wait for the next one
    assert "still added to your next message" in capsys.readouterr().err


def test_repl_reset_drops_a_file_that_makes_every_turn_fail(monkeypatch, capsys, tmp_path):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    (tmp_path / "big.txt").write_text("word " * 400)
    engine = FakeEngine(context_length=100)
    engine.enqueue("a reply")
    session, pending, run = ChatSession(ChatGenerator(engine=engine)), [], RunOptions(log=False)
    repl_lines(monkeypatch, f"/file {tmp_path / 'big.txt'}", "summarize it", "/reset", "hi")
    for _ in range(2):
        _turn(session, run, pending)
    err = capsys.readouterr().err
    assert "holds 100" in err and len(pending) == 1 and "/reset drops it" in err  # the file waits, and the way out is named
    _turn(session, run, pending)
    assert pending == [] and f"{tmp_path / 'big.txt'} dropped" in capsys.readouterr().err
    _turn(session, run, pending)
    assert [m["content"] for m in session.messages] == ["hi", "a reply"]


def test_chat_file_puts_files_before_the_prompt_and_a_bad_one_fails_first(tiny_model_dir, tmp_path):
    (tmp_path / "a.txt").write_text("Bees make honey.")
    (tmp_path / "b.md").write_text("Cities have rooftops.")
    result = invoke("chat", "-f", str(tmp_path / "a.txt"), "--file", str(tmp_path / "b.md"), "Compare them.", "-m", str(tiny_model_dir), "--max-tokens", "3")
    assert result.exit_code == 0, result.output
    logged = json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"]
    assert logged == f"File {tmp_path / 'a.txt'}:\n\nBees make honey.\n\nFile {tmp_path / 'b.md'}:\n\nCities have rooftops.\n\nCompare them."
    only = invoke("chat", "-f", str(tmp_path / "a.txt"), "-m", str(tiny_model_dir), "--max-tokens", "3")  # no prompt: the file is the message
    assert only.exit_code == 0 and json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"].endswith("Bees make honey.")
    (tmp_path / "page.html").write_text("<p>Hello</p>\n")
    assert invoke("chat", "-f", str(tmp_path / "page.html"), "Fix it.", "-m", str(tiny_model_dir), "--max-tokens", "3").exit_code == 0
    assert json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"] == f"File {tmp_path / 'page.html'}:\n\n<p>Hello</p>\n\nFix it."  # markup kept
    assert invoke("chat", "-f", "-", "Sum up.", "-m", str(tiny_model_dir), "--max-tokens", "3", input="Piped notes.\n").exit_code == 0
    assert json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"] == "File standard input:\n\nPiped notes.\n\nSum up."
    odd = tmp_path / os.fsdecode(b"caf\xe9.txt")  # a name in no UTF-8, as Python reads it from argv: its text is fine
    odd.write_text("Bees make honey.")
    assert invoke("chat", "-f", str(odd), "Sum up.", "-m", str(tiny_model_dir), "--max-tokens", "3").exit_code == 0
    assert json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["prompt"] == f"File {tmp_path}/caf\ufffd.txt:\n\nBees make honey.\n\nSum up."
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01")
    bad = invoke("chat", "-f", str(tmp_path / "bin.txt"), "hi", "-m", str(tmp_path / "no-model"))
    assert bad.exit_code == 2 and "looks like a binary file" in bad.stderr
    twice = invoke("chat", "-f", "-", "-f", "-", "hi", "-m", str(tmp_path / "no-model"), input="Piped notes.\n")
    assert twice.exit_code == 2 and "-f - is given twice" in twice.stderr  # not "standard input is empty", from the second read


def test_fake_engine_streams_exactly_the_text_it_generates():
    from aigc.engine.sampling import SamplingParams
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("Paris is  the capital.\n")
    assert "".join(engine.stream("hi", SamplingParams())) == "Paris is  the capital.\n"


def test_chat_session_goes_on_across_runs_and_sessions_lists_shows_and_removes_it(tiny_model_dir):
    args = ("-m", str(tiny_model_dir), "--max-tokens", "4", "--json")
    assert invoke("chat", "--continue", "hi", *args).stderr.startswith("Error: there is no conversation to continue")
    first = invoke("chat", "-S", "work", "Bees make honey.", *args)
    assert first.exit_code == 0, first.output
    second = invoke("chat", "-c", "Where?", *args)
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert "(continuing session 'work', the latest" in second.stderr
    assert two["session"].endswith("work.json") and two["usage"]["prompt_tokens"] > one["usage"]["prompt_tokens"] + 5
    rows = json.loads(invoke("sessions", "--json").stdout)
    assert [(r["name"], r["messages"], r["first"]) for r in rows] == [("work", 4, "Bees make honey.")]
    assert ["work", "4"] in [line.split()[:2] for line in invoke("sessions", "list").stdout.splitlines()]
    shown = invoke("sessions", "show", "work").stdout
    assert shown.count("## User") == 2 and two["text"] in shown
    assert json.loads(invoke("sessions", "show", "work", "--json").stdout)["messages"][-1]["content"] == two["text"]
    missing = invoke("sessions", "rm", "work", "nope")
    assert missing.exit_code == 2 and "no session 'nope'; there are: work" in missing.stderr
    assert "give only one of" in invoke("chat", "-c", "-S", "work", "hi", *args).stderr
    assert "did you mean `work`?" in invoke("sessions", "rm", "work.json").stderr
    assert invoke("sessions", "rm", "work", "work").exit_code == 0 and json.loads(invoke("sessions", "--json").stdout) == []


def test_sessions_rm_of_a_file_of_ones_own_points_at_no_session_of_another_conversation(tmp_path, monkeypatch):
    from aigc import conversations

    monkeypatch.chdir(tmp_path)
    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    (conversations.sessions_dir() / "s1.json").write_text("{}")  # a named session s1, another conversation
    code, lines = bad("sessions", "rm", "s1.json")  # no file here: the session it may mean
    assert code == 2 and lines[0].endswith("did you mean `s1`?"), lines
    (tmp_path / "s1.json").write_text("{}")  # the conversation `sessions show s1.json` shows
    code, lines = bad("sessions", "rm", "s1.json")
    assert code == 2 and lines == ["Error: s1.json is a file of yours, not a session; rm deletes only the sessions `aigc sessions` lists (delete the file yourself)"]
    assert (tmp_path / "s1.json").is_file() and (conversations.sessions_dir() / "s1.json").is_file()
    monkeypatch.chdir(conversations.sessions_dir())  # here s1.json is the session s1's own file
    for name in ("s1.json", f"../{conversations.sessions_dir().name}/s1.json"):
        code, lines = bad("sessions", "rm", name)
        assert code == 2 and lines[0].endswith("did you mean `s1`?"), lines
    assert (conversations.sessions_dir() / "s1.json").is_file()


def test_sessions_rm_of_a_session_another_process_removes_meanwhile_says_it_is_gone(monkeypatch):
    from contextlib import contextmanager

    from aigc import conversations

    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    for name in ("work", "home"):
        (conversations.sessions_dir() / f"{name}.json").write_text('{"messages": []}')
    holding = conversations.none_open

    @contextmanager
    def racing(paths):  # another process deletes work.json after rm checked it is there
        (conversations.sessions_dir() / "work.json").unlink()
        with holding(paths):
            yield

    monkeypatch.setattr(conversations, "none_open", racing)
    removed = invoke("sessions", "rm", "work", "home")
    assert removed.exit_code == 0, removed.stderr
    assert removed.stderr.splitlines() == [f"{conversations.sessions_dir() / 'work.json'} was already removed", f"removed {conversations.sessions_dir() / 'home.json'}"]
    assert not list(conversations.sessions_dir().glob("*.json"))


def test_sessions_show_takes_an_unnamed_chats_id_as_logs_shows_it():
    from aigc import conversations

    conversations.conversations_dir().mkdir(parents=True, exist_ok=True)
    cid = "20261205-045044-586cd3"
    (conversations.conversations_dir() / f"{cid}.json").write_text('{"messages": [{"role": "user", "content": "Name three colors."}]}')
    shown = invoke("sessions", "show", cid)
    assert shown.exit_code == 0 and "Name three colors." in shown.stdout
    removed = invoke("sessions", "rm", cid)  # rm stays for named sessions: an unnamed chat goes with `aigc logs rm`
    assert removed.exit_code == 2 and (conversations.conversations_dir() / f"{cid}.json").is_file()
    assert removed.stderr.startswith(f"Error: {cid} is an unnamed chat, not a session; `aigc logs rm ID`, given one of its answers")  # not "no session"


def test_sessions_with_only_unreadable_files_says_there_are_no_readable_sessions():
    from aigc import conversations

    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    (conversations.sessions_dir() / "broken.json").write_text("{not json")
    listed = invoke("sessions")
    assert listed.exit_code == 0 and listed.stdout == ""
    assert "broken.json" in listed.stderr and "No readable sessions in" in listed.stderr


def test_chat_c_goes_on_from_an_unnamed_chat_and_cid_from_any_logged_one(tiny_model_dir, tmp_path, monkeypatch):
    from aigc import conversations

    args = ("-m", str(tiny_model_dir), "--max-tokens", "4", "--json")
    first = json.loads(invoke("chat", "Bees make honey.", *args).stdout)
    cid = first["conversation"]
    assert json.loads(invoke("logs", "-n", "1", "--json").stdout)[0]["session"] == cid  # the log names it
    second = invoke("chat", "-c", "Where?", *args)
    assert second.exit_code == 0 and f"(continuing conversation {cid}, the latest" in second.stderr
    assert json.loads(second.stdout)["conversation"] == cid and json.loads(second.stdout)["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + 5
    assert invoke("chat", "-S", "work", "Cities have rooftops.", *args).exit_code == 0
    assert "(continuing session 'work', the latest" in invoke("chat", "-c", "And?", *args).stderr  # the latest of any kind
    third = invoke("chat", "--cid", cid, "Why?", *args)
    assert f"(continuing conversation {cid})" in third.stderr and len(conversations.read(conversations.conversation_path(cid)).messages) == 6
    assert [e["prompt"] for e in json.loads(invoke("logs", "-S", cid, "--json", "-n", "0").stdout)] == ["Bees make honey.", "Where?", "Why?"]
    assert len(conversations.read(conversations.conversation_path("work")).messages) == 4  # --cid takes a session's name too
    monkeypatch.chdir(tmp_path)  # a session file by a relative path, as -S takes it
    assert invoke("chat", "-S", "s1.json", "Hi.", *args).exit_code == 0
    assert "(continuing session" in invoke("chat", "--cid", "s1.json", "Again.", *args).stderr
    assert len(conversations.read("s1.json").messages) == 4
    missing = invoke("chat", "--cid", "nope", "hi", *args)
    assert missing.exit_code == 2 and "no conversation 'nope'" in missing.stderr
    assert "give only one of" in invoke("chat", "-c", "--cid", cid, "hi", *args).stderr
    unlogged = json.loads(invoke("chat", "--no-log", "Not kept.", *args).stdout)
    assert "conversation" not in unlogged and len(list(conversations.conversations_dir().glob("*.json"))) == 1
    kept = json.loads(invoke("chat", "--json", "Kept, then deleted.", *args).stdout)["conversation"]
    entry = json.loads(invoke("logs", "-S", kept, "--json").stdout)[0]["id"]
    removed = invoke("logs", "rm", str(entry))  # the conversation holds the answer's text too: it goes with it
    assert removed.exit_code == 0 and f"deleted conversation {kept}" in removed.stderr
    assert sorted(p.stem for p in conversations.conversations_dir().glob("*.json")) == [cid]
    before = conversations.read(conversations.conversation_path(cid)).messages
    unkept = invoke("chat", "--cid", cid, "--no-log", "Off the record.", *args)  # goes on from it, keeps nothing
    assert unkept.exit_code == 0 and "this turn is not kept in it either" in unkept.stderr and json.loads(unkept.stdout)["usage"]["prompt_tokens"] > 20
    assert conversations.read(conversations.conversation_path(cid)).messages == before
    from aigc import config

    (config.data_dir() / "chat_history").write_text("typed in the REPL\n")
    wiped = invoke("logs", "rm", "--all").stderr
    assert "deleted 1 unnamed conversation" in wiped and "deleted the chat input history" in wiped and not (config.data_dir() / "chat_history").exists()
    assert f"(continuing session '{tmp_path / 's1.json'}'" in invoke("chat", "-c", "Last.", *args).stderr  # the latest, opened by its path


def test_chat_c_goes_on_from_a_session_file_given_by_its_path(tiny_model_dir, tmp_path, monkeypatch):
    from aigc import conversations

    args = ("-m", str(tiny_model_dir), "--max-tokens", "3", "--json")
    assert invoke("chat", "-S", "work", "Hi.", *args).exit_code == 0
    monkeypatch.chdir(tmp_path)
    assert invoke("chat", "-S", "./mine.json", "Bees make honey.", *args).exit_code == 0
    went_on = invoke("chat", "-c", "Where?", *args)
    assert f"(continuing session '{tmp_path / 'mine.json'}', the latest)" in went_on.stderr
    assert len(conversations.read(tmp_path / "mine.json").messages) == 4
    (tmp_path / "mine.json").unlink()
    assert "(continuing session 'work', the latest)" in invoke("chat", "-c", "And?", *args).stderr  # one gone since is passed over


def test_rm_refuses_a_conversation_open_in_another_chat_and_deletes_nothing(tiny_model_dir):
    from aigc import config, conversations, locks, logs

    args = ("-m", str(tiny_model_dir), "--max-tokens", "3", "--json")
    cid = json.loads(invoke("chat", "Bees make honey.", *args).stdout)["conversation"]
    other = json.loads(invoke("chat", "Cities have rooftops.", *args).stdout)["conversation"]
    for name in ("free", "work"):
        assert invoke("chat", "-S", name, "Hi.", *args).exit_code == 0
    history = conversations.input_history()
    history.write_text("typed in the REPL\n")
    entry = json.loads(invoke("logs", "-S", cid, "--json").stdout)[0]["id"]
    everything = {p.name for p in conversations.conversations_dir().iterdir()} | {p.name for p in conversations.sessions_dir().iterdir()}
    with conversations.in_use(conversations.conversation_path(cid)):  # an aigc chat open on it
        for argv in (("logs", "rm", str(entry)), ("logs", "rm", "--all")):
            refused = invoke(*argv)
            assert (refused.exit_code, refused.stderr) == (75, f"Error: conversation {cid} is open in another aigc chat; leave that chat, then run this again (nothing was deleted)\n")
    with conversations.in_use(conversations.conversation_path("work")):
        refused = invoke("sessions", "rm", "free", "work")
        assert (refused.exit_code, refused.stderr) == (75, "Error: session 'work' is open in another aigc chat; leave that chat, then run this again (nothing was deleted)\n")
    assert len(logs.entries(None)) == 4 and history.read_text() == "typed in the REPL\n"
    assert {p.name for p in conversations.conversations_dir().iterdir()} | {p.name for p in conversations.sessions_dir().iterdir()} == everything
    assert "deleted conversation" in invoke("logs", "rm", str(entry)).stderr and "removed" in invoke("sessions", "rm", "free", "work").stderr
    assert [p.stem for p in conversations.unnamed_files()] == [other] and json.loads(invoke("sessions", "--json").stdout) == []
    kept = conversations.conversation_path(other)
    assert not locks.lock_file(kept).exists() and not list(config.data_dir().rglob("*.lock"))  # lock files go once let go of


def test_a_new_unnamed_chat_holds_its_conversation_while_it_runs(tiny_model_dir, monkeypatch):
    from aigc import conversations
    from aigc.cli import chat

    held, answer = [], chat._session_turn

    def turn(session, *rest):
        try:
            with conversations.in_use(session.path):
                held.append(False)
        except BadInputError:
            held.append(True)
        return answer(session, *rest)

    monkeypatch.setattr(chat, "_session_turn", turn)
    result = invoke("chat", "Hi.", "-m", str(tiny_model_dir), "--max-tokens", "3", "--json")
    assert result.exit_code == 0 and held == [True]
    assert [p.stem for p in conversations.unnamed_files()] == [json.loads(result.stdout)["conversation"]]


def test_a_conversation_deleted_before_the_chat_holds_it_is_not_made_again(tiny_model_dir, monkeypatch):
    from aigc import conversations, logs

    args = ("-m", str(tiny_model_dir), "--max-tokens", "3", "--json")
    cid = json.loads(invoke("chat", "Bees make honey.", *args).stdout)["conversation"]
    latest = conversations.latest

    def deleted_meanwhile():  # `aigc logs rm` in another terminal, just after -c picked it
        path = latest()
        path.unlink()
        return path

    monkeypatch.setattr(conversations, "latest", deleted_meanwhile)
    result = invoke("chat", "-c", "Where?", *args)
    assert result.exit_code == 2 and result.stderr.endswith(f"Error: conversation {cid} was deleted meanwhile; this chat stops without writing it again (`aigc chat -c` goes on from the latest one left)\n")
    assert conversations.unnamed_files() == [] and len(logs.entries(None)) == 1


def test_a_repl_that_only_ran_slash_commands_leaves_nothing_for_c_or_logs(monkeypatch, tmp_path):
    from aigc import conversations, logs
    from aigc.cli import chat
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator
    from aigc.testing import FakeEngine

    earlier = conversations.new_conversation()
    conversations.Conversation(None, [{"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Four."}], "fake").save(earlier)
    (tmp_path / "notes.md").write_text("Bees.")
    run = RunOptions(log=True)
    run.generator = lambda name, **kwargs: ChatGenerator(engine=FakeEngine())
    repl_lines(monkeypatch, "/set temperature 0.5", f"/file {tmp_path / 'notes.md'}", "/reset", "/system default", "/system Be brief.", "exit")
    chat._repl(run, None, None, None, conversations.new_conversation())
    assert conversations.unnamed_files() == [earlier] and conversations.latest() == earlier and logs.entries(None) == []


def test_errors_in_the_chat_repl_spell_commands_as_the_cli_does(monkeypatch):
    import types

    import aigc.cli.chat as chat_cli
    from aigc import conversations

    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    conversations.session_path("trip").write_text(json.dumps({"template": "gone", "messages": [{"role": "user", "content": "Rome?"}, {"role": "assistant", "content": "Yes."}]}))
    monkeypatch.setattr(chat_cli, "stdin_text", lambda: None)
    monkeypatch.setattr(chat_cli, "sys", types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True), stdout=sys.stdout, stderr=sys.stderr))
    repl_lines(monkeypatch, "/load trip", "exit")
    err = invoke("chat", "-m", "echo", "--no-log").stderr
    assert "unknown template 'gone'; see `aigc templates list`" in err and "aigc.list_templates()" not in err


def test_a_repl_open_while_logs_rm_all_runs_writes_back_none_of_the_deleted_history(monkeypatch, capsys):
    import readline

    from aigc import config, conversations, logs
    from aigc.cli import chat
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator
    from aigc.testing import FakeEngine

    history = conversations.input_history()
    history.parent.mkdir(parents=True)
    history.write_text("older\n")
    session = config.data_subdir("sessions") / "work.json"
    engine = FakeEngine()
    engine.enqueue("one", "two")
    run = RunOptions()
    run.generator = lambda name, **kwargs: ChatGenerator(engine=engine)
    typed = iter(["before", None, "/show", "after"])

    def line(prompt=""):  # as readline keeps what is typed
        text = next(typed, "exit")
        if text is None:  # meanwhile, in another terminal
            assert invoke("logs", "rm", "--all").exit_code == 0 and not history.exists()
            text = next(typed)
        readline.add_history(text)
        return text

    monkeypatch.setattr("builtins.input", line)
    readline.clear_history()
    try:
        chat._repl(run, None, None, None, session)
        assert history.read_text().split() == ["after", "exit"]  # the lines typed before (and as it ran) are not written back
        assert [readline.get_history_item(i) for i in range(1, readline.get_current_history_length() + 1)] == ["after", "exit"]
        assert [e.prompt for e in logs.entries(None)] == ["after"] and len(conversations.read(session).messages) == 4  # a named session stays
        readline.clear_history()
        keeper = chat._History(True)
        readline.add_history("opened before")
        assert invoke("logs", "rm", "--all").exit_code == 0
        keeper.save()  # left without another message: it sees the deletion all the same
        assert not history.exists()
    finally:
        readline.clear_history()


def test_a_conversation_the_data_directory_cannot_take_is_one_warning_and_the_answer_is_given():
    from aigc import config

    config.made_data_dir()
    (config.data_dir() / "conversations").write_text("not a directory")  # as a read-only data directory: nothing can be made there
    result = invoke("chat", "-m", "echo", "hello")
    assert (result.exit_code, result.stdout) == (0, "hello\n")
    said = [line for line in result.stderr.splitlines() if "conversations" in line]
    assert len(said) == 1 and said[0].startswith(f"Warning: this chat is not kept for -c or --cid: cannot make directory {config.data_dir() / 'conversations'}: ")


def test_a_session_in_use_is_refused_and_another_model_is_named(tiny_model_dir, tmp_path):
    from aigc import conversations

    path = tmp_path / "talk.json"
    conversations.Conversation(None, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "other-model").save(path)
    args = ("chat", "-S", str(path), "again", "-m", str(tiny_model_dir), "--max-tokens", "3")
    with conversations.in_use(path):
        busy = invoke(*args)
    assert busy.exit_code == 75 and "is in use by another aigc chat" in busy.stderr  # busy: it may work later, or the user picks another session
    done = invoke(*args)
    assert done.exit_code == 0 and "this session was with other-model; it goes on with" in done.stderr and "(without -m it goes on with other-model)" in done.stderr
    assert len(conversations.read(path).messages) == 4 and conversations.read(path).model != "other-model"
    (tmp_path / "empty.json").write_text("")
    assert invoke("chat", "-S", str(tmp_path / "empty.json"), "hi", "-m", str(tiny_model_dir), "--max-tokens", "3").exit_code == 0


def test_a_session_goes_on_with_its_saved_model_unless_m_names_another(tmp_path, monkeypatch, unloadable):
    from aigc import conversations

    monkeypatch.setenv("AIGC_DEFAULT_MODEL", unloadable)  # a chat that reached the default model would fail
    first = invoke("chat", "-m", "echo", "-S", "e1", "hi")
    assert first.exit_code == 0, first.output
    again = invoke("chat", "-S", "e1", "hello again")  # as llm -c: the conversation's model
    assert (again.exit_code, again.stdout, again.stderr) == (0, "hello again\n", ""), again.output
    assert invoke("chat", "-c", "and again").stdout == "and again\n"
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", "echo")
    other = invoke("chat", "-S", "e1", "-m", unloadable, "more")
    assert other.exit_code == 2 and f"could not load {unloadable}" in other.stderr  # -m picks the model: here one that cannot load
    path = conversations.session_path("e1")
    for saved, words in [
        ("openai:http://evil.example:8000/v1#m", "this session was with openai:http://evil.example:8000/v1#m, a server on evil.example; a session file does not send your messages elsewhere on its own, so it goes on without it (-m 'openai:http://evil.example:8000/v1#m' goes on with it)"),
        ("no-such-model-here", "this session was with no-such-model-here, which cannot be used here (unknown model 'no-such-model-here'"),
        ("org/notdownloaded-model", "this session was with org/notdownloaded-model, which is not downloaded here; a session file does not start a download on its own"),
    ]:
        for offline in ("1", "0"):  # offline, a hub model not in the cache cannot load; online, a session file does not download it
            monkeypatch.setenv("HF_HUB_OFFLINE", offline)
            conversations.Conversation(None, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi"}], saved).save(path)
            done = invoke("chat", "-S", "e1", "go on")
            assert done.exit_code == 0 and done.stdout == "go on\n" and words in " ".join(done.stderr.split()), done.output  # the default model, echo


def test_an_empty_model_option_is_an_error_never_the_default_model(tiny_model_dir, tmp_path, monkeypatch):
    from types import SimpleNamespace

    pytest.importorskip("fastapi")
    from aigc.serve import running as serve_running

    monkeypatch.setenv("AIGC_DEFAULT_MODEL", str(tiny_model_dir))  # the default works: only the empty -m fails
    served = []
    monkeypatch.setattr(serve_running, "bind", lambda host, port, *names: SimpleNamespace(listen=lambda backlog: None, getsockname=lambda: (host, port)))
    monkeypatch.setattr(serve_running, "build", lambda models, *args, **kwargs: served.append(models) or SimpleNamespace(state=SimpleNamespace(backends={"tiny": None})))
    monkeypatch.setattr(serve_running, "run_server", lambda *args, **kwargs: None)
    (tmp_path / "in.txt").write_text("a fox\n")
    said = 'Error: {} model name (-m {}); leave -m out for the default model, or give an alias from `aigc models list`, a path or a hub id'
    for command in (
        ["chat", "hi"], ["summarize", str(tmp_path / "in.txt")], ["run", "summarize", "-"], ["embed", "hi"],
        ["batch", "summarize", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl")], ["serve"], ["serve", "-m", "small"],
    ):
        for empty, quoted in (("", '""'), ("  ", '"  "')):  # `-m "$MODEL"` with MODEL unset; a blank one quoted as given
            code, lines = bad(*command, "-m", empty)
            assert (code, lines) == (2, [said.format("empty" if not empty else "blank", quoted)]), (command, lines)
    assert served == [] and not (tmp_path / "out.jsonl").exists()
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text('[serve]\nmodel = [""]\n')
    code, lines = bad("serve")
    assert (code, lines) == (2, [f"Error: empty model name (model in [serve] of {settings}); leave it out for the default model, or give an alias from `aigc models list`, a path or a hub id"])
    assert served == []
    settings.unlink()
    chat = invoke("chat", "hi", "--max-tokens", "2", "--json", "--no-log")  # no -m: the default model
    assert chat.exit_code == 0 and json.loads(chat.stdout)["model"] == str(tiny_model_dir)
    assert invoke("serve").exit_code == 0 and invoke("serve", "-m", "small").exit_code == 0 and served == [[], ["small"]]


def test_a_local_model_is_recorded_by_its_absolute_path(tiny_model_dir, tmp_path, monkeypatch):
    from aigc import conversations, logs

    monkeypatch.chdir(tiny_model_dir.parent)
    relative, absolute, path = f"./{tiny_model_dir.name}", str(tiny_model_dir.resolve()), tmp_path / "talk.json"
    assert invoke("chat", "-S", str(path), "hi", "-m", relative, "--max-tokens", "2").exit_code == 0
    assert conversations.read(path).model == absolute  # its advice (-m PATH keeps the first) works from anywhere
    again = invoke("chat", "-S", str(path), "again", "-m", absolute, "--max-tokens", "2")
    assert again.exit_code == 0 and "this session was with" not in again.stderr  # one model, however it is named
    assert [e.model for e in logs.entries(None)] == [absolute, absolute]
    assert len(logs.entries(None, model=relative)) == len(logs.entries(None, model=absolute)) == 2
    assert "no answer was logged" not in invoke("logs", "-m", relative, "-q", "nothing such").stderr


@pytest.mark.parametrize(
    "session, content, words",
    [("notes.md", None, "must end in .json"), ("talk.json", "{oops", "not a saved conversation"), ("bad name", None, "letters, digits")],
)
def test_a_bad_chat_session_fails_before_the_model_loads(tmp_path, monkeypatch, session, content, words, unloadable):
    monkeypatch.chdir(tmp_path)
    if content:
        (tmp_path / session).write_text(content)
    result = invoke("chat", "-S", session, "hi", "-m", unloadable)
    assert result.exit_code == 2 and words in result.stderr


def test_a_directory_that_is_not_a_whole_model_is_a_one_line_error(tmp_path):
    (tmp_path / "notmodel").mkdir()
    for name, text in (("config.json", "{}"), ("model.safetensors", "not weights"), ("tokenizer.json", "{}")):  # all there, none right
        (tmp_path / "notmodel" / name).write_text(text)
    result = invoke("chat", "hi", "-m", str(tmp_path / "notmodel"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: could not load {tmp_path / 'notmodel'}: ")
    assert "is it a whole model" in lines[0]


def test_a_model_with_a_file_this_user_cannot_read_says_which_and_how_to_fix_it_and_doctor_too(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    model = tmp_path / "shared"
    shutil.copytree(tiny_model_dir, model)
    weights = next(model.glob("*.safetensors"))
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != weights and access(path, mode, **kw))  # as another user's 0600 file (root reads all)
    result = invoke("chat", "hi", "-m", str(model))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: could not load {model}: permission denied reading {weights} (mode -rw-")
    assert lines[0].endswith(f"its owner or root can make it readable: chmod -R a+rX {model}")
    doctor = invoke("doctor", env={"AIGC_DEFAULT_MODEL": str(model)})
    assert doctor.exit_code == 1 and f"permission denied reading {weights}" in doctor.stdout


def test_no_home_directory_is_a_one_line_error_naming_the_variables_and_none_is_needed_where_they_are_set(tmp_path, monkeypatch):
    import pwd

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))  # a user id with no entry (env -i, containers)
    assert invoke("chat", "-m", "echo", "hi", env={"AIGC_LOGS": "0"}).stdout == "hi\n"  # the directories set by variables (as the tests do)
    monkeypatch.delenv("AIGC_CONFIG_DIR")
    result = invoke("chat", "-m", "echo", "hi", env={"AIGC_LOGS": "0"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines == [
        f"Error: aigc finds no home directory to keep its settings, data and cache under (HOME is unset and user id {os.getuid()} has no entry); "
        "set HOME, AIGC_HOME (one directory for all), or AIGC_CONFIG_DIR, AIGC_DATA_DIR and AIGC_CACHE_DIR (or XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_CACHE_HOME)"
    ]
    assert invoke("chat", "-m", "echo", "hi", env={"AIGC_LOGS": "0", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}).stdout == "hi\n"


def test_your_own_model_aliases_are_kept_in_the_settings_file_and_work_with_m(tiny_model_dir, tmp_path, monkeypatch):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir()
    settings.write_text('default_model = "smollm2"  # ours\n\n[remotes.gpu]\nurl = "http://gpu:8000/v1"\n')
    monkeypatch.chdir(tiny_model_dir.parent)
    assert invoke("models", "alias", "tiny", tiny_model_dir.name).exit_code == 0  # a relative path is kept absolute
    assert invoke("models", "alias", "small.v2", "smollm2").exit_code == 0
    assert settings.read_text().endswith(f'[aliases]\ntiny = "{tiny_model_dir}"\n"small.v2" = "smollm2"\n') and "# ours" in settings.read_text()
    assert invoke("models", "alias").stdout == f"small.v2 = smollm2\ntiny = {tiny_model_dir}\n"
    assert invoke("models", "alias", "tiny").stdout == f"{tiny_model_dir}\n"
    from aigc.engine.models import model_key

    assert model_key("tiny") == model_key(str(tiny_model_dir)) and model_key("small.v2") == "smollm2"  # a batch file goes on by either name
    monkeypatch.chdir(tmp_path)
    by_alias = invoke("chat", "Paris is", "-m", "tiny", "--max-tokens", "3", "--seed", "1", "--json")
    by_path = invoke("chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "3", "--seed", "1", "--json")
    assert by_alias.exit_code == 0 and json.loads(by_alias.stdout)["text"] == json.loads(by_path.stdout)["text"]
    rows = {row["alias"]: row for row in json.loads(invoke("models", "list", "--json").stdout)}
    assert rows["tiny"]["source"] == str(tiny_model_dir) and rows["tiny"]["installed"] and rows["small.v2"]["plugin"] == "config"
    for args, words in ((["smollm2", "tiny"], "cannot be an alias: aigc has a model called 'smollm2'"), (["x/y", "smollm2"], "cannot be an alias: it must be letters, digits"),
                        (["x.gguf", "smollm2"], "'x.gguf' cannot be an alias: it ends in .gguf, so `-m x.gguf` is read as the path of a weights file, never as an alias; drop .gguf"), (["other", "tiny"], "is an alias itself"),
                        (["other", "nope-model"], "unknown model 'nope-model'"), (["gone", "--rm"], "there is no alias 'gone'"), (["nothing"], "there is no alias")):
        result = invoke("models", "alias", *args)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
    assert completions("aigc chat -m ").count("tiny") == 1 and "tiny" not in completions("aigc image -m ")  # offered by the kind it names
    assert invoke("models", "alias", "小模型", "smollm2").exit_code == 0 and invoke("models", "alias", "cafe\u0301", "smollm2").exit_code == 0
    from aigc import config

    assert config.model_aliases()["小模型"] == "smollm2" and "caf\u00e9" in config.model_aliases()  # any script; NFC, as typed on Linux
    assert invoke("models", "default", "tiny").exit_code == 0
    removed = invoke("models", "alias", "tiny", "--rm")
    assert removed.exit_code == 0 and "tiny was the default text model; pick another" in removed.stderr
    assert invoke("models", "default", "--unset").exit_code == 0
    assert "tiny" not in settings.read_text() and invoke("chat", "hi", "-m", "tiny").exit_code == 2
    settings.write_text(settings.read_text() + 'broken = "/no/such/dir"\n')
    result = invoke("chat", "hi", "-m", "broken")
    assert result.exit_code == 2 and "alias 'broken' (in " in result.stderr and "cannot be used" in result.stderr


def test_models_rm_of_your_alias_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    from aigc.engine import pulling

    removed = []
    monkeypatch.setattr(pulling, "removable", lambda ref: ref.name)
    monkeypatch.setattr(pulling, "remove", lambda ref: removed.append(ref.name) or ("/nowhere", 0))  # never the shared cache's model
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('[aliases]\nsmall = "smollm2"\n')
    for names in (["small"], ["smollm2", "small"]):  # every name checked before anything is deleted
        code, lines = bad("models", "rm", *names)
        assert (code, lines, removed) == (2, ["Error: small is your alias of smollm2; `aigc models alias --rm small` removes the alias, `aigc models rm smollm2` deletes the model's files"], [])
    offered = completions("aigc models rm ")
    assert "small" not in offered and set(offered) <= {"smollm2", "smollm2-360m", "qwen2.5-0.5b", "sd-turbo"}  # models with files here, never your aliases
    assert completions("aigc models alias --rm ") == ["small"] and completions("aigc models alias s") == ["small"]
    assert invoke("models", "alias", "--rm", "small").exit_code == 0 and removed == []
    assert invoke("models", "rm", "smollm2").exit_code == 0 and removed == ["smollm2"]  # the model's own name deletes its files


def test_an_alias_naming_no_known_model_is_a_one_line_error_and_listed_as_dangling(tmp_path):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir()
    settings.write_text('[aliases]\nold = "model-of-an-uninstalled-plugin"\nsmall = "smollm2"\n')
    said = f"alias 'old' (in {settings}) points at 'model-of-an-uninstalled-plugin', which is no known model; fix or remove it: aigc models alias --rm old"
    for argv in (["chat", "hi", "-m", "old"], ["models", "info", "old"], ["models", "pull", "old"]):
        assert bad(*argv) == (2, [f"Error: {said}"])
    code, lines = bad("chat", "hi", "-m", "smolm2")  # any mistyped -m: the known aliases, listed without resolving each again
    assert code == 2 and len(lines) == 1 and "did you mean smollm2? known aliases: qwen2.5-0.5b, small, smollm2, smollm2-360m " in lines[0]
    listed = invoke("models", "list", "--json")
    rows = {row["alias"]: row for row in json.loads(listed.stdout)}
    assert listed.exit_code == 0 and listed.stderr == f"Warning: {said}\n"
    assert (rows["old"]["kind"], rows["old"]["source"], rows["old"]["installed"], rows["small"]["kind"]) == ("dangling", "model-of-an-uninstalled-plugin", False, "text")
    assert "old" not in completions("aigc chat -m ") and "small" in completions("aigc chat -m ")
    assert invoke("models", "alias", "--rm", "old").exit_code == 0 and invoke("models", "list").stderr == ""


def test_removing_the_last_alias_removes_the_aliases_table_it_leaves_empty(tmp_path):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir()
    before = '[remotes.gpu]\nurl = "http://gpu:8000/v1"\n'
    settings.write_text(before)
    assert invoke("models", "alias", "small", "smollm2").exit_code == 0 and "[aliases]" in settings.read_text()
    assert invoke("models", "alias", "small", "--rm").exit_code == 0
    assert settings.read_text() == before
    assert invoke("models", "alias", "small", "smollm2").exit_code == 0
    settings.write_text(settings.read_text().replace("[aliases]\n", "[aliases]  # mine\n# keep this\n"))
    assert invoke("models", "alias", "small", "--rm").exit_code == 0
    assert settings.read_text().endswith("[aliases]  # mine\n# keep this\n")  # a table with a comment of yours stays


def test_settings_changed_at_once_by_several_aigc_each_keep_the_others_change():
    import threading

    from aigc import config

    changes = [lambda n=n: config.set_alias(f"small{n}", "smollm2") for n in range(6)] + [lambda: config.set_setting("logs", False)]
    start = threading.Barrier(len(changes))

    def change(make):
        start.wait()
        make()

    threads = [threading.Thread(target=change, args=(make,)) for make in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(config.model_aliases()) == [f"small{n}" for n in range(6)] and config.load_settings()["logs"] is False


def test_models_default_is_kept_in_the_settings_file_next_to_what_is_there(tiny_model_dir, tmp_path, monkeypatch):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir()
    remotes = '[remotes.gpu]\nurl = "http://gpu:8000/v1"\n'
    settings.write_text(remotes)
    shown = invoke("models", "default")
    assert shown.stdout == "smollm2\n" and "aigc's own default" in shown.stderr
    monkeypatch.chdir(tiny_model_dir.parent)
    assert invoke("models", "default", tiny_model_dir.name).exit_code == 0  # a relative path is kept absolute
    assert settings.read_text() == f'default_model = "{tiny_model_dir}"\n\n' + remotes
    assert invoke("models", "default").stdout == f"{tiny_model_dir}\n"
    monkeypatch.chdir(tmp_path)
    chat = invoke("chat", "Paris is", "--max-tokens", "2", "--json")
    assert chat.exit_code == 0 and json.loads(chat.stdout)["model"] == json.loads(invoke("chat", "Paris is", "-m", str(tiny_model_dir), "--max-tokens", "2", "--json").stdout)["model"]
    for args, words in ((["sd-turbo"], "is an image model"), (["--image", "smollm2"], "is a text model"), (["nope-model"], "unknown model"), (["x", "--unset"], "not both"), ([""], "the model name is empty")):
        result = invoke("models", "default", *args)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
    monkeypatch.setattr("aigc.engine.models._hub_cached", lambda *args: False)  # whatever this machine's hub cache holds
    monkeypatch.setattr("aigc.engine.pulling.hub_offline", lambda: False)  # whatever HF_HUB_OFFLINE says
    image = invoke("models", "default", "--image", "sd-turbo")
    assert image.exit_code == 0 and "(sd-turbo is not installed yet: the first command to use it fetches it" in image.stderr
    assert "not installed" not in invoke("models", "default", str(tiny_model_dir)).stderr
    for command in (["info", " "], ["pull", ""], ["rm", ""], ["rm", str(tiny_model_dir), ""]):  # an unset $MODEL is never the default
        result = invoke("models", *command)
        assert result.exit_code == 2 and "the model name is empty" in result.stderr and "removed" not in result.stderr
    assert invoke("models", "default", "--image").stdout == "sd-turbo\n"
    assert "AIGC_DEFAULT_MODEL=smollm2 is set" in invoke("models", "default", "--unset", env={"AIGC_DEFAULT_MODEL": "smollm2"}).stderr
    assert settings.read_text() == 'default_image_model = "sd-turbo"\n\n' + remotes
    assert invoke("models", "default", "--image", "--unset").exit_code == 0
    assert settings.read_text() == remotes  # no blank line left where the setting was
    settings.write_text('default_model = "smollm2"  # what I use\n')
    assert invoke("models", "default", str(tiny_model_dir)).exit_code == 0
    assert settings.read_text() == f'default_model = "{tiny_model_dir}"  # what I use\n'  # the comment stays
    settings.write_text('notes = """\ndefault_model = "in a string"\n"""\n')
    assert "without changing something else" in invoke("models", "default", "smollm2").stderr
    settings.write_text(f'default_model = "{tmp_path / "gone"}"\n')
    gone = invoke("chat", "hi")
    assert gone.exit_code == 2 and f"the default text model '{tmp_path / 'gone'}' (set in {settings}) cannot be used; pick another with `aigc models default NAME`" in gone.stderr
    assert "change or unset AIGC_DEFAULT_MODEL. unknown model 'nope'" in invoke("chat", "hi", env={"AIGC_DEFAULT_MODEL": "nope"}).stderr
    assert "(set by AIGC_DEFAULT_IMAGE_MODEL) cannot be used" in invoke("image", "a fox", "-o", str(tmp_path / "fox.png"), env={"AIGC_DEFAULT_IMAGE_MODEL": "smollm2"}).stderr
    settings.write_text("default_model = 3\n")
    assert "must be a model name in quotes; fix it or run `aigc models default --unset`" in invoke("chat", "hi").stderr
    for text, words in (("default_model = 3\n", f"default_model in {settings} must"), ("[aliases]\nsmall = 3\n", f'small in [aliases] of {settings} (line 2) must name a model in quotes (small = "smollm2"), got 3')):  # a wrong type, as a wrong name: `aigc models` warns
        settings.write_text(text)
        listed = invoke("models", "--json")
        assert listed.exit_code == 0 and any(row["alias"] == "smollm2" for row in json.loads(listed.stdout)), listed.output
        assert f"Warning: {words}" in listed.stderr
    settings.write_text("default_image_model = []\n")
    assert "fix it or run `aigc models default --image --unset`" in invoke("models", "default", "--image").stderr
    settings.write_text("default_model = \n")
    assert "is not valid TOML" in invoke("models", "default", "smollm2").stderr
    listed = invoke("models", "list")  # one error, not first a warning for each setting it reads
    assert listed.exit_code == 2 and listed.stderr.startswith("Error: ") and listed.stderr.count("\n") == 1 and "is not valid TOML" in listed.stderr


def test_models_default_warns_of_a_default_that_cannot_be_used_and_offers_text_models_only(tmp_path, monkeypatch):
    from aigc.engine import pulling

    shown = invoke("models", "default", env={"AIGC_DEFAULT_MODEL": "nonexist"})
    assert shown.exit_code == 0 and shown.stdout == "nonexist\n"
    assert "Warning: the default text model 'nonexist' (set by AIGC_DEFAULT_MODEL) cannot be used; change or unset AIGC_DEFAULT_MODEL." in shown.stderr, shown.output
    assert "Warning" not in invoke("models", "default").stderr  # aigc's own, which can be used
    unknown = invoke("models", "default", "bogus")
    assert unknown.exit_code == 2 and "known aliases: " in unknown.stderr and "smollm2" in unknown.stderr and "sd-turbo" not in unknown.stderr, unknown.output  # no image model to pick
    monkeypatch.setattr("aigc.engine.models._hub_cached", lambda *args: False)  # whatever this machine's hub cache holds
    monkeypatch.setattr(pulling, "hub_offline", lambda: True)
    offline = invoke("models", "default", "qwen2.5-0.5b")
    assert offline.exit_code == 0 and "the first command to use it fetches it" not in offline.stderr, offline.output
    assert "Warning: qwen2.5-0.5b is not in the hub cache, and HF_HUB_OFFLINE is set, so it cannot be fetched" in offline.stderr
    monkeypatch.setattr(pulling, "hub_offline", lambda: False)
    assert "the first command to use it fetches it" in invoke("models", "default", "qwen2.5-0.5b").stderr


def test_models_info_of_your_alias_says_which_model_it_names_and_whether_that_is_the_default(tiny_model_dir):
    assert invoke("models", "alias", "small", "smollm2").exit_code == 0
    info = json.loads(invoke("models", "info", "small", "--json").stdout)
    assert (info["name"], info["alias_of"], info["default"]) == ("small", "smollm2", True)  # smollm2, aigc's own default
    assert "alias_of:" in invoke("models", "info", "small").stdout
    assert "alias_of" not in json.loads(invoke("models", "info", "smollm2", "--json").stdout)
    assert invoke("models", "alias", "tiny", str(tiny_model_dir)).exit_code == 0
    assert json.loads(invoke("models", "info", "tiny", "--json").stdout)["default"] is False
    assert invoke("models", "default", "small").exit_code == 0  # the default named by the alias: the model it names is the default
    assert json.loads(invoke("models", "info", "smollm2", "--json").stdout)["default"] is True


def test_models_rm_deletes_only_what_aigc_downloaded_or_converted(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read once, at import
    converted = tmp_path / "cache" / "models" / "smollm2"
    shutil.copytree(tiny_model_dir, converted)
    repo = tmp_path / "hub" / "models--Org--tiny"  # a hub download, laid out as huggingface_hub does
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    (repo / "snapshots" / ("1" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("1" * 40) / "model_index.json").symlink_to(repo / "blobs" / "abc")  # a diffusers repo
    listed = {row["alias"]: row["installed"] for row in json.loads(invoke("models", "list", "--json").stdout)}
    assert listed["smollm2"] is True
    refused = invoke("models", "rm", "smollm2", str(tiny_model_dir))
    assert refused.exit_code == 2 and "your own directory" in refused.stderr and converted.is_dir()  # nothing removed
    assert "Org/other is not in the Hugging Face cache" in invoke("models", "rm", "Org/other").stderr
    done = invoke("models", "rm", "smollm2", "Org/tiny", "smollm2")
    assert done.exit_code == 0, done.output
    assert done.stderr.count("removed smollm2") == 1 and "removed Org/tiny" in done.stderr
    assert not converted.exists() and not repo.exists() and tiny_model_dir.is_dir()
    assert {row["alias"]: row["installed"] for row in json.loads(invoke("models", "list", "--json").stdout)}["smollm2"] is False
    assert invoke("models", "rm", "smollm2").exit_code == 2


def test_models_rm_asks_first_on_a_terminal_and_a_no_or_ctrl_d_keeps_the_model(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from aigc.cli import options

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    converted = tmp_path / "cache" / "models" / "smollm2"
    shutil.copytree(tiny_model_dir, converted)
    monkeypatch.setattr(options, "stdin_is_terminal", lambda: True)
    for answer in ("n\n", ""):  # "": Ctrl-D
        kept = invoke("models", "rm", "smollm2", input=answer)
        assert kept.exit_code == 1 and "nothing deleted" in kept.stderr and converted.is_dir(), kept.output
        assert f"delete smollm2 ({converted}, " in kept.stderr and " MB)? [y/N]" in kept.stderr  # what goes, and how big it is
    done = invoke("models", "rm", "smollm2", input="y\n")
    assert done.exit_code == 0 and "removed smollm2" in done.stderr and not converted.exists()
    shutil.copytree(tiny_model_dir, converted)
    sure = invoke("models", "rm", "-y", "smollm2")
    assert sure.exit_code == 0 and "[y/N]" not in sure.stderr and not converted.exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["plugins", "install", "./no-such-plugin"], "no such file or directory: ./no-such-plugin"),
        (["headline", "--lines", "--topic", "bees", "notes.txt"], "give either --topic or an input"),
        (["serve", "--max-batch", "0"], "--max-batch must be at least 1, got 0"),
        (["serve", "--shutdown-grace", "-1"], "--shutdown-grace must be 0 or more"),
        (["logs", "rm", "--all", "3"], "give ids, --all, or --until WHEN and/or --keep N: one of these, not two"),
        (["logs", "-q", "caf\udce9"], "the --query value is not valid UTF-8"),
        (["chat", "hi", "--version"], "(`aigc --version` prints the version)"),
        (["batch", "classify", "-i", "in.txt", "-o", "out.jsonl", "-O", "labels=\udcff,b"], "the -O value is not valid UTF-8"),
    ],
)
def test_more_bad_input_is_one_line_with_exit_2(args, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("bees\n")
    code, lines = bad(*args)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_translate_lines_warn_about_glossary_misses(tiny_model_dir, tmp_path, monkeypatch):
    from aigc.generators.translate import TranslateGenerator

    original = TranslateGenerator.postprocess
    missed = [{"source": "bees", "target": "Bienen", "count": 1}]  # the tiny model's answers are mended; say they were not
    monkeypatch.setattr(TranslateGenerator, "postprocess", lambda self, raw, opts: {**original(self, raw, opts), "glossary_misses": missed})
    glossary = tmp_path / "terms.tsv"
    glossary.write_text("bees\tBienen\n")
    result = invoke("translate", "-", "--to", "de", "--lines", "--glossary", str(glossary), "-m", str(tiny_model_dir), "--max-tokens", "4", input="bees fly\n\nbees sting\n")
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "glossary term" in line] == [
        *(f"Warning: line {n}: glossary term 'bees' is not translated as 'Bienen' (once)" for n in (1, 3)),
        "Warning: glossary terms were missed in 2 of 2 lines (lines 1, 3): 'bees' as 'Bienen' in 2; each line's warning is above",  # at the end, as aigc batch ends
    ]


def test_translate_lines_end_with_one_warning_for_the_lines_that_missed_placeholders(tiny_model_dir, monkeypatch):
    from aigc.generators.translate import TranslateGenerator

    original = TranslateGenerator.postprocess
    lost = [{"placeholder": "{name}", "count": 1}]
    monkeypatch.setattr(TranslateGenerator, "postprocess", lambda self, raw, opts: {**original(self, raw, opts), "missing_placeholders": lost})  # the tiny model's answers are mended; say they were not
    result = invoke("translate", "-", "--to", "de", "--lines", "-m", str(tiny_model_dir), "--max-tokens", "4", input="Hi {name}\n\nBye {name}\n")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == "Warning: placeholders are missing in 2 of 2 lines (lines 1, 3): '{name}' in 2; each line's warning is above, and the program that fills them in will fail"


def test_examples_read_label_first_are_said_so_in_a_note_that_q_hides(tmp_path):
    examples = tmp_path / "ex.tsv"
    examples.write_text("pos\tI loved this film so much\nneg\tawful boring plot and acting\npos\twonderful cast, great story\nneg\tterrible waste of my time\n")
    result = invoke("classify", "great film", "--examples", str(examples), "-m", "echo")
    assert result.exit_code == 0 and result.stdout.split("\t")[0] in ("pos", "neg"), result.output
    assert result.stderr.splitlines()[0] == f"read {examples} as label<TAB>text (its first column holds the labels)"
    quiet = invoke("classify", "great film", "--examples", str(examples), "-m", "echo", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


@pytest.mark.parametrize("lines", [(), ("--lines",)])
def test_classify_says_why_auto_kept_zero_shot_on_few_examples_in_a_note_and_in_json(tmp_path, lines):
    examples = tmp_path / "ex.tsv"
    examples.write_text("I loved this film so much\tpos\nawful boring plot and acting\tneg\nwonderful cast, great story\tpos\nterrible waste of my time\tneg\n")
    why = "fewer than 8 examples, too few to show a probe does better"
    result = invoke("classify", "-", "--examples", str(examples), "-m", "echo", "--json", *lines, input="great film\n")
    assert result.exit_code == 0 and result.stderr.splitlines() == [f"--method auto kept zero-shot: {why}"], result.output
    record = json.loads(result.stdout)
    assert record["method"] == "zero-shot" and record["method_reason"] == why
    assert invoke("classify", "great film", "--examples", str(examples), "-m", "echo", "-q").stderr == ""
    plain = invoke("classify", "great film", "-l", "pos,neg", "-m", "echo", "--json", *lines)
    assert plain.stderr == "" and "method_reason" not in json.loads(plain.stdout)  # no examples: nothing was picked


def test_an_unknown_setting_in_config_toml_is_one_warning(tmp_path):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text('defualt_model = "x"\n[remotes.gpu]\nurl = "http://gpu:8000/v1"\n')
    result = invoke("models", "default")
    assert result.exit_code == 0 and result.stdout == "smollm2\n"
    assert result.stderr.count("Warning:") == 1 and "aigc reads no setting 'defualt_model'; did you mean default_model?" in result.stderr


def test_a_settings_file_with_a_byte_order_mark_is_read_and_changed_in_place(tmp_path):
    settings = tmp_path / "config" / "config.toml"
    settings.parent.mkdir(exist_ok=True)
    settings.write_bytes('\ufeff[aliases]\nsmall = "smollm2"\n'.encode("utf-8"))  # as Notepad saves it
    assert invoke("models", "alias").stdout == "small = smollm2\n"
    assert invoke("models", "alias", "tiny", "smollm2").exit_code == 0
    assert settings.read_text(encoding="utf-8") == '[aliases]\nsmall = "smollm2"\ntiny = "smollm2"\n'  # one [aliases] table, not a second


def test_repl_save_of_an_empty_conversation_writes_nothing(monkeypatch, capsys, tmp_path):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    session, run = ChatSession(ChatGenerator(engine=FakeEngine())), RunOptions(log=False)
    target = tmp_path / "chat.md"
    repl_lines(monkeypatch, "/save " + str(target))
    assert _turn(session, run, []) is None
    assert not target.exists() and "nothing to save yet" in capsys.readouterr().err


def test_the_repl_says_to_raise_the_temperature_with_set_as_the_repl_takes_it(monkeypatch):
    import types

    import aigc.cli.chat as chat_cli

    monkeypatch.setattr(chat_cli, "stdin_text", lambda: None)
    monkeypatch.setattr(chat_cli, "sys", types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True), stdout=sys.stdout, stderr=sys.stderr))
    repl_lines(monkeypatch, "/set top_k 5", "hi", "exit")
    err = invoke("chat", "-m", "echo", "--no-log").stderr
    assert "Warning: top_k changes nothing here: the answer is greedy (temperature 0); give /set temperature 0.7 (or another above 0) to sample" in err, err


def test_repl_save_asks_before_it_replaces_a_file(monkeypatch, capsys, tmp_path):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("a reply")
    session, run = ChatSession(ChatGenerator(engine=engine)), RunOptions(log=False)
    repl_lines(monkeypatch, "hi")
    _turn(session, run, [])
    target = tmp_path / "chat.md"
    target.write_text("mine\n")
    for answers in (["/save " + str(target), "n"], ["/save " + str(target), ""]):
        repl_lines(monkeypatch, *answers)
        assert _turn(session, run, []) is None
        assert target.read_text() == "mine\n" and "exists; replace it? [y/N]" in capsys.readouterr().err

    def ctrl_d_at_the_question(prompt=""):
        if ctrl_d_at_the_question.asked:
            raise EOFError
        ctrl_d_at_the_question.asked = True
        return "/save " + str(target)

    ctrl_d_at_the_question.asked = False
    monkeypatch.setattr("builtins.input", ctrl_d_at_the_question)
    assert _turn(session, run, []) is None and target.read_text() == "mine\n"  # a no; the chat goes on
    assert "(not saved: " in capsys.readouterr().err
    repl_lines(monkeypatch, "/save " + str(target), "y")
    _turn(session, run, [])
    assert "## Assistant\n\na reply" in target.read_text() and list(tmp_path.iterdir()) == [target]
    repl_lines(monkeypatch, "/save " + str(tmp_path / "new.json"))  # a new file: no question
    _turn(session, run, [])
    assert json.loads((tmp_path / "new.json").read_text())["messages"][-1]["content"] == "a reply"


def test_repl_input_history_is_kept_across_chats_bounded_and_owner_only(monkeypatch):
    import readline
    import stat

    from aigc import config
    from aigc.cli import chat

    monkeypatch.setattr(chat, "HISTORY_LINES", 3)
    path = config.data_dir() / "chat_history"
    readline.clear_history()
    try:
        history = chat._History(True)
        for line in ("one", "two", "three", "four"):
            readline.add_history(line)
        history.save()
        assert path.read_text().split() == ["two", "three", "four"] and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".chat_history")] == []  # no temp file left
        readline.clear_history()
        history = chat._History(True)
        readline.add_history("mine")
        path.write_text("three\nfour\ntheirs\n")  # a chat open at the same time left first: its line stays
        history.save()
        assert path.read_text().split() == ["four", "theirs", "mine"]
        readline.clear_history()
        history = chat._History(False)  # read back; with answers not logged, not written
        assert [readline.get_history_item(i) for i in range(1, 4)] == ["four", "theirs", "mine"]
        readline.add_history("secret")
        history.save()
        assert "secret" not in path.read_text()
        readline.add_history("y")
        chat._forget_answer("y")  # /save's question is not kept
        chat._forget_answer("")  # an empty answer never went in: nothing else goes
        assert readline.get_history_item(readline.get_current_history_length()) == "secret"
    finally:
        readline.clear_history()


def test_the_repl_stops_when_its_conversation_is_deleted_meanwhile(monkeypatch, tmp_path):
    from aigc import logs
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.errors import ConversationDeletedError
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    path = tmp_path / "talk.json"
    engine = FakeEngine()
    engine.enqueue("one", "two")
    session, run = ChatSession(ChatGenerator(engine=engine), path=path), RunOptions()
    repl_lines(monkeypatch, "hi")
    _turn(session, run, [])
    path.unlink()  # by hand, or `aigc sessions rm` where no lock could be taken
    for line in ("again", "/reset"):  # not said and gone on from, as a failed turn is
        repl_lines(monkeypatch, line)
        with pytest.raises(ConversationDeletedError, match="was deleted meanwhile"):
            _turn(session, run, [])
    assert not path.exists() and [e.prompt for e in logs.entries(None)] == ["hi"]  # the reply it could not keep is not logged


def test_repl_blocks_and_double_slash_send_slashes_and_ollama_commands_work(monkeypatch, capsys, tmp_path):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("one", "two")
    session, run = ChatSession(ChatGenerator(engine=engine), system="Be terse."), RunOptions()
    for lines in (['"""/etc/hosts: what', 'is it?"""'], ["//usr/bin is a directory?"]):
        repl_lines(monkeypatch, *lines)
        _turn(session, run, [])
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["/etc/hosts: what\nis it?", "/usr/bin is a directory?"]
    assert ">>> " in capsys.readouterr().err  # stdout is not the terminal: the prompt is not mixed into the answers
    for line in ("/system", "/?", "/show", f'/save "{tmp_path / "my chat.md"}"'):
        repl_lines(monkeypatch, line)
        _turn(session, run, [])
    err = capsys.readouterr().err
    assert "system prompt: Be terse." in err and "/show" in err and "model: fake" in err and "2 earlier turns" in err
    assert (tmp_path / "my chat.md").is_file()  # quotes read as a shell reads them
    repl_lines(monkeypatch, "/save /dev/full")
    assert _turn(session, run, []) is None  # a write that fails part-way: said, and the session goes on
    assert "Error: cannot write /dev/full: No space left on device" in capsys.readouterr().err
    for line in ("/set system Be kind.", "/clear"):
        repl_lines(monkeypatch, line)
        _turn(session, run, [])
    assert session.system == "Be kind." and session.messages == []
    repl_lines(monkeypatch, "/system default")
    _turn(session, run, [])
    assert session.system is None
    for line, hint in (("/set verbose", "/set verbose is ollama's; here --stats on the command line prints"), ("/set format json", "/set format is ollama's; here --schema '{}'")):
        repl_lines(monkeypatch, line)
        _turn(session, run, [])
        assert hint in " ".join(capsys.readouterr().err.split())

    def typed_then_ctrl_d(prompt=""):
        if prompt == "... " or not prompt and typed_then_ctrl_d.started:
            raise EOFError
        typed_then_ctrl_d.started = True
        return '"""first line'

    typed_then_ctrl_d.started = False
    monkeypatch.setattr("builtins.input", typed_then_ctrl_d)
    assert _turn(session, run, []) is None and session.messages == []  # Ctrl-D in a block drops it; the REPL goes on
    out, err = capsys.readouterr()
    assert "unfinished" in err and out == ""  # stdout is not the terminal: it gets replies only


def test_repl_takes_llms_multi_line_messages(monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("one", "two")
    session = ChatSession(ChatGenerator(engine=engine))
    for lines in (["!multi", "Fix this:", "/etc/hosts", "exit", "!end"], ["!multi EOF", "a", "!end", "b", " !end EOF "]):
        repl_lines(monkeypatch, *lines)
        _turn(session, RunOptions(), [])
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["Fix this:\n/etc/hosts\nexit", "a\n!end\nb"]
    def multi_then_ctrl_d():
        yield "!multi"
        raise EOFError

    typed = multi_then_ctrl_d()
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    assert _turn(session, RunOptions(), []) is None and len(session.messages) == 4  # Ctrl-D inside drops it
    assert "unfinished !multi message dropped; end one with !end to send it" in capsys.readouterr().err


def test_repl_says_what_to_give_for_llms_edit_and_fragment_rather_than_send_them(monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("a reply")
    session = ChatSession(ChatGenerator(engine=engine))
    repl_lines(monkeypatch, "!edit", "!fragment notes", '"""!edit"""')
    _turn(session, RunOptions(log=False), [])
    _turn(session, RunOptions(log=False), [])
    err = capsys.readouterr().err
    assert session.messages == [] and engine.calls == []
    assert "!edit is llm's: it writes a message in your editor, which this chat does not; write one over several lines between \"\"\" and \"\"\"" in err
    assert "!fragment is llm's: it adds a fragment to your message; /file PATH adds a file to your next one (\"\"\"!fragment\"\"\" sends it as a message)" in err
    _turn(session, RunOptions(log=False), [])
    assert session.messages[0]["content"] == "!edit"  # a quoted one is a message


def test_repl_set_takes_ollamas_set_parameter_and_its_names(monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    session = ChatSession(ChatGenerator(engine=FakeEngine()))
    for line in ("/set parameter temperature 0.5", "/set parameter num_predict 7", "/set repeat_penalty 1.3"):
        repl_lines(monkeypatch, line)
        _turn(session, RunOptions(), [])
    assert session.sampling == {"temperature": 0.5, "max_tokens": 7, "repetition_penalty": 1.3}
    capsys.readouterr()
    repl_lines(monkeypatch, "/set verbose")  # ollama's flag: said what aigc has instead, not a setting that lacks a value
    _turn(session, RunOptions(), [])
    err = " ".join(capsys.readouterr().err.split())
    assert "/set verbose is ollama's; here --stats" in err and "needs a value" not in err


def test_a_streamed_answer_stopped_with_ctrl_c_ends_its_line_and_is_logged(monkeypatch, capsys):
    from aigc import logs, ui
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator
    from aigc.testing import FakeEngine

    def pieces():
        yield "The ocean"
        yield " is vast"
        raise KeyboardInterrupt

    generator = ChatGenerator(engine=FakeEngine())
    with pytest.raises(KeyboardInterrupt):
        ui.stream_result(pieces(), on_stop=RunOptions().keeps_stopped(generator, "chat", "Write an essay.", {"template": "chat"}, "ocean"))
    assert capsys.readouterr().out == "The ocean is vast\n"  # "Error: interrupted" comes on a line of its own
    entry = logs.entries(1)[0]
    assert (entry.prompt, entry.response, entry.session) == ("Write an essay.", "The ocean is vast", "ocean")


STOPPED_ECHO = (  # `aigc ARGV` with the model echo's answer stopped by Ctrl-C: streamed, after its first two words
    "import os, signal, sys\n"
    "from aigc import testing\n"
    "from aigc.cli.app import main\n"
    "def generate(self, prompts, params):\n"
    "    raise KeyboardInterrupt\n"
    "def stream(self, prompt, params):\n"
    "    first, second = testing._echoed(prompt).split()[:2]\n"
    "    yield first\n"
    "    yield ' ' + second\n"
    "    raise KeyboardInterrupt\n"
    "testing.EchoEngine.generate = generate\n"
    "testing.EchoEngine.stream = stream\n"
    "sys.argv = ['aigc', *sys.argv[1:]]\n"
    "main()\n"
)
TERMINATED_ECHO = STOPPED_ECHO.replace("raise KeyboardInterrupt", "os.kill(os.getpid(), signal.SIGTERM)")  # stopped by SIGTERM (timeout's, systemd's, CI's) instead
STOPS = [(STOPPED_ECHO, 130, "interrupted"), (TERMINATED_ECHO, 143, "terminated")]


@pytest.mark.parametrize(
    "argv, session",
    [
        (["chat", "-m", "echo", "--log", "Write a long story about a cat"], None),
        (["chat", "-m", "echo", "--log", "-S", "story", "Write a long story about a cat"], "story"),
        (["run", "chat", "-m", "echo", "--log", "--var", "input=Write a long story about a cat"], None),
    ],
)
@pytest.mark.parametrize("script, code, said", STOPS)
def test_an_answer_to_a_redirected_stdout_stopped_with_ctrl_c_or_sigterm_is_written_logged_and_kept(tmp_path, argv, session, script, code, said):
    from aigc import conversations, logs

    with open(tmp_path / "draft.md", "w") as draft:  # `aigc chat "..." > draft.md`: stdout is no terminal
        done = subprocess.run([sys.executable, "-c", script, *argv], stdout=draft, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (code, f"Error: {said}\n")
    assert (tmp_path / "draft.md").read_text() == "Write a\n"
    entry = logs.entries(1)[0]
    assert entry.response == "Write a" and (entry.session == session if session else True)
    if session:
        assert conversations.read(conversations.session_path(session)).messages[-1] == {"role": "assistant", "content": "Write a"}


@pytest.mark.parametrize("script, code, last", [(STOPPED_ECHO, 0, "(reply stopped)"), (TERMINATED_ECHO, 143, "Error: terminated")])
def test_a_chat_reply_stopped_with_ctrl_c_or_sigterm_is_logged_and_kept(tmp_path, script, code, last):
    import pty

    from aigc import conversations, logs

    terminal, typing = pty.openpty()  # the chat reads its messages from a terminal
    os.write(terminal, b"Write a long story about a cat\nexit\n")  # Ctrl-C goes on to the next message, exit; SIGTERM ends the chat
    try:
        with open(tmp_path / "shown.md", "w") as shown:
            done = subprocess.run([sys.executable, "-c", script, "chat", "-m", "echo", "--log", "-S", "story"], stdin=typing, stdout=shown, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(typing)
    assert done.returncode == code and last in done.stderr, done.stderr
    assert (tmp_path / "shown.md").read_text() == "Write a\n"
    entry = logs.entries(1)[0]
    assert (entry.prompt, entry.response, entry.session) == ("Write a long story about a cat", "Write a", "story")
    assert conversations.read(conversations.session_path("story")).messages[-1] == {"role": "assistant", "content": "Write a"}


@pytest.mark.parametrize("script, code, said", STOPS)
def test_run_o_stopped_with_ctrl_c_or_sigterm_leaves_its_file_and_writes_the_answer_so_far_to_stdout(tmp_path, script, code, said):
    from aigc import logs

    draft = tmp_path / "draft.md"
    draft.write_text("the previous draft\n")  # a half answer must not replace a whole one
    done = subprocess.run([sys.executable, "-c", script, "run", "chat", "-m", "echo", "--log", "--var", "input=Write a long story", "-o", str(draft)], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (code, "Write a\n") and done.stderr.endswith(f"(interrupted: {draft} is left as it was)\nError: {said}\n"), done.stderr
    assert draft.read_text() == "the previous draft\n" and logs.entries(1)[0].response == "Write a"
    new = tmp_path / "new.md"
    assert subprocess.run([sys.executable, "-c", script, "run", "chat", "-m", "echo", "--var", "input=Write a long story", "-o", str(new)], capture_output=True, stdin=subprocess.DEVNULL, timeout=60).returncode == code
    assert not new.exists()  # no half-written -o file


@pytest.mark.parametrize(
    "argv, extra",
    [
        (["chat", "-m", "echo", "--log", "--json", "Write a long story about a cat"], {"model", "conversation"}),
        (["chat", "-m", "echo", "--log", "--json", "-S", "story", "Write a long story about a cat"], {"model", "session"}),
        (["run", "chat", "-m", "echo", "--log", "--json", "--var", "input=Write a long story about a cat"], {"template", "model"}),
    ],
)
@pytest.mark.parametrize("script, code, said", STOPS)
def test_a_json_answer_stopped_with_ctrl_c_or_sigterm_is_printed_as_json_so_far_and_logged(argv, extra, script, code, said):
    from aigc import logs

    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (code, f"Error: {said}\n")
    shown = json.loads(done.stdout)  # the keys of a whole answer's JSON
    assert (shown["text"], shown["finish_reason"], shown["usage"], set(shown)) == ("Write a", "interrupted", None, {"text", "finish_reason", "usage", *extra})
    assert logs.entries(1)[0].response == "Write a"


def test_a_whole_json_answer_read_as_a_stream_is_the_generators_result():
    done = invoke("chat", "-m", "echo", "--no-log", "--json", "Say hello")
    whole = json.loads(done.stdout)
    assert done.exit_code == 0 and whole["text"] == "Say hello" and whole["finish_reason"] == "stop" and set(whole["usage"]) == {"prompt_tokens", "completion_tokens"}


@pytest.mark.parametrize(
    "model, words",
    [
        ("openai:http://[::1/v1#x", "'openai:http://[::1/v1#x': a remote model needs an http(s) URL, like openai:http://127.0.0.1:8000/v1#MODEL (Invalid IPv6 URL)"),
        ("remote:gpu", '[remotes.gpu] in CONFIG needs url = "http://HOST:PORT/v1" (an http or https URL; got \'http://[::1:8000/v1\': Invalid IPv6 URL)'),
    ],
)
def test_a_malformed_remote_url_is_a_one_line_error_naming_the_form(model, words):
    from aigc import config
    from aigc.engine.remote import OpenAIEngine
    from aigc.errors import BadInputError

    config.settings_file().parent.mkdir(parents=True, exist_ok=True)
    config.settings_file().write_text('[remotes.gpu]\nurl = "http://[::1:8000/v1"\n')
    code, lines = bad("chat", "hi", "-m", model)
    assert code == 2 and lines == ["Error: " + words.replace("CONFIG", str(config.settings_file()))]
    with pytest.raises(BadInputError, match=r"needs an http\(s\) URL, like openai:http://127.0.0.1:8000/v1#MODEL; got 'http://\[::1/v1' \(Invalid IPv6 URL\)"):
        OpenAIEngine("http://[::1/v1")  # the engine made by the library, not through a model's name


@pytest.mark.parametrize("table, words", [
    ('[remotes.gpu]\nmodel = "llama"\n', 'has no url: add url = "http://HOST:PORT/v1" (an http or https URL)'),
    ('[remotes.gpu]\nurl = 8000\n', 'needs url = "http://HOST:PORT/v1" (an http or https URL, in quotes; got 8000)'),
])
def test_a_remote_with_no_url_or_one_not_text_says_so_without_pythons_words(table, words):
    from aigc import config

    config.settings_file().parent.mkdir(parents=True, exist_ok=True)
    config.settings_file().write_text(table)
    code, lines = bad("chat", "hi", "-m", "remote:gpu")
    assert code == 2 and lines == [f"Error: [remotes.gpu] in {config.settings_file()} {words}"], lines


def test_repl_commands_answer_even_with_quiet(monkeypatch, capsys):
    from aigc import ui
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    monkeypatch.setattr(ui.settings, "verbosity", -1)  # aigc -q chat
    session = ChatSession(ChatGenerator(engine=FakeEngine()), sampling={"temperature": 0.3})
    for line in ("/set", "/file"):
        repl_lines(monkeypatch, line)
        _turn(session, RunOptions(), [])
    err = capsys.readouterr().err
    assert "temperature 0.3" in err and "no files added" in err


def test_repl_help_fits_an_80_column_terminal_unwrapped():
    from aigc.cli.chat import REPL_HELP

    assert "/reset, /clear" in REPL_HELP and max(len(line) for line in REPL_HELP.splitlines()) <= 80  # a terminal broke longer ones mid-phrase


def test_a_system_prompt_alone_goes_on_in_a_conversation(monkeypatch):
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    user_template("fab", "---\nsystem: You summarize text in one line.\n---\n")
    engine = FakeEngine()
    engine.enqueue("One.", "Two.")
    session = ChatSession(ChatGenerator(engine=engine), template="fab")
    assert session.answer("First text.")["text"] == "One." and session.answer("Second text.")["text"] == "Two."
    assert engine.calls[-1][0][0][0] == {"role": "system", "content": "You summarize text in one line."}


@pytest.mark.parametrize("finished, note", [
    (0, "none of the 2 rows to run finished; the same command runs them again"),
    (1, "1 of the 2 rows to run finished and is kept in {out}; the same command goes on from there"),
])
def test_a_batch_stopped_with_ctrl_c_says_how_many_rows_are_kept_and_how_to_go_on(tiny_model_dir, tmp_path, monkeypatch, finished, note):
    import aigc.batch

    def stopped(*args, **kwargs):
        progress = args[8]
        for done in range(finished + 1):
            progress(done, 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(aigc.batch, "run_batch", stopped)
    monkeypatch.setattr("aigc.cli.app.threading.active_count", lambda: 1)  # else the CLI ends the process at once (os._exit)
    (tmp_path / "in.txt").write_text("good\nbad\n")
    out = tmp_path / "out.jsonl"
    result = invoke("batch", "classify", "-i", str(tmp_path / "in.txt"), "-o", str(out), "-O", "labels=a,b", "-m", str(tiny_model_dir))
    assert result.exit_code == 130 and note.format(out=out) in result.stderr
    assert result.stderr.rstrip().endswith("Error: interrupted")


def test_an_override_the_task_cannot_use_is_named_with_its_file_not_blamed_on_template(unloadable):
    from aigc import templates

    user_template("headline", "---\ndescription: mine\n---\nWrite a headline.")
    code, lines = bad("headline", "--topic", "bees", "-m", unloadable)
    own = templates.user_dir() / "headline.j2"
    assert code == 2 and lines == [
        f"Error: template 'headline', in {own}, never reads article or topic, where headline puts its input, so headline cannot use it; "
        "fix it with `aigc templates edit headline`, or remove it with `aigc templates rm headline`, going back to the built-in one"
    ]


def test_repl_history_deleted_while_a_chat_saves_it_stays_deleted(monkeypatch):
    import readline
    import threading

    from aigc import config, conversations
    from aigc.cli import chat

    path = config.data_dir() / "chat_history"
    deleting = []
    real_read = readline.read_history_file

    def read_then_delete(file):  # `logs rm --all` runs while the chat is saving its lines
        deleting.append(threading.Thread(target=conversations.forget_input_history))
        deleting[0].start()
        deleting[0].join(0.3)
        real_read(file)

    readline.clear_history()
    try:
        history = chat._History(True)
        readline.add_history("typed")
        monkeypatch.setattr(readline, "read_history_file", read_then_delete)
        history.save()
        deleting[0].join()
        assert not path.exists() and conversations.history_generation() != history.generation
    finally:
        readline.clear_history()


def test_a_text_too_long_for_the_context_is_named_by_its_line_or_data_row(tiny_model_dir, tmp_path):
    model = ("-m", str(tiny_model_dir))
    long = "word " * 600  # past the tiny model's 512 tokens
    code, lines = bad("classify", "-", "-l", "a,b", "--lines", "--calibrate", "batch", *model, input=f"short\n\n{long}\nshort\n")
    assert code == 2 and lines[-1].startswith("Error: line 3: ") and "context" in lines[-1]
    data = tmp_path / "data.tsv"
    data.write_text(f"text\tlabel\nshort\ta\n{long}\tb\nshort too\tb\n")
    code, lines = bad("eval", "classify", str(data), *model)
    assert code == 2 and lines[-1].startswith(f"Error: {data}: text 2 ('word word word word word word ...'): ") and "context" in lines[-1]


def test_chat_json_names_a_session_file_in_no_utf8_as_valid_utf8(tiny_model_dir, tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.json")  # as Python reads such a name from argv: a lone surrogate
    result = invoke("chat", "-S", str(odd), "hi", "--json", "-m", str(tiny_model_dir), "--max-tokens", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout_bytes.decode("utf-8"))["session"] == f"{tmp_path}/caf\ufffd.json"
    assert odd.is_file()  # the file itself is the one named


@pytest.mark.parametrize("command", [("chat", "Plan two days in Rome."), ("chat", "-S", "trip", "Plan two days in Rome."), ("run", "chat", "--var", "input=Plan two days in Rome.")])
@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_cut_off_by_max_tokens_is_noted_on_stderr(tiny_model_dir, monkeypatch, command, streamed):
    import types

    from aigc.cli import chat as chat_cli, run as run_cli
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator
    from aigc.generators.template import TemplateGenerator
    from aigc.testing import FakeEngine

    if streamed:  # as on a terminal
        monkeypatch.setattr(chat_cli, "_streamed", lambda *args: True)
        monkeypatch.setattr(run_cli, "sys", types.SimpleNamespace(stdout=types.SimpleNamespace(isatty=lambda: True)))
    note = "the answer was cut off at --max-tokens 2; raise --max-tokens for the whole answer"
    result = invoke(*command, "-m", str(tiny_model_dir), "--max-tokens", "2", "--temperature", "0", "--no-log")  # the tiny random model's greedy answer does not end in 2 tokens
    assert result.exit_code == 0 and note in result.stderr and f"Warning: {note}" not in result.stderr, result.output  # a note: the limit given cut it
    quiet = invoke("-q", *command, "-m", str(tiny_model_dir), "--max-tokens", "2", "--temperature", "0", "--no-log")
    assert quiet.exit_code == 0 and "cut off" not in quiet.stderr, quiet.output  # -q hides it
    if not streamed:
        shown = json.loads(invoke(*command, "-m", str(tiny_model_dir), "--max-tokens", "2", "--temperature", "0", "--no-log", "--json").stdout)
        assert shown["finish_reason"] == "length"
    engine = FakeEngine()  # its answers end before max_tokens
    engine.enqueue("Rome.")
    monkeypatch.setattr(RunOptions, "generator", lambda self, name, **kwargs: (ChatGenerator if name == "chat" else TemplateGenerator)(engine=engine))
    whole = invoke(*command, "--max-tokens", "2", "--no-log")
    assert whole.exit_code == 0 and whole.stdout == "Rome.\n" and "cut off" not in whole.stderr, whole.output


def test_the_cut_off_warning_names_a_templates_own_max_tokens(tiny_model_dir):
    user_template("short", "---\ndefaults: {max_tokens: 2, temperature: 0}\n---\n{{ input }}\n")  # greedy: sampled, a random model may end at once
    note = "Warning: the answer was cut off at max_tokens 2 (from the defaults: of template 'short'); raise --max-tokens for the whole answer"
    for command in (["run", "short", "--var", "input=Plan two days in Rome."], ["chat", "-t", "short", "Plan two days in Rome."]):
        result = invoke(*command, "-m", str(tiny_model_dir), "--no-log")  # the tiny random model's greedy answer does not end in 2 tokens
        assert result.exit_code == 0 and note in result.stderr, result.output
        quiet = invoke("-q", *command, "-m", str(tiny_model_dir), "--no-log")
        assert note in quiet.stderr, quiet.output  # a limit the user never gave stays a warning, which -q keeps
        given = invoke(*command, "-m", str(tiny_model_dir), "--no-log", "--max-tokens", "2")
        assert "cut off at --max-tokens 2;" in given.stderr, given.output


def test_a_repl_reply_cut_off_by_max_tokens_is_noted(tiny_engine, monkeypatch, capsys):
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession

    session = ChatSession(ChatGenerator(engine=tiny_engine), sampling={"max_tokens": 2})
    repl_lines(monkeypatch, "Plan two days in Rome.")
    _turn(session, RunOptions(log=False), [])
    assert "(reply cut off at the token limit; /set max_tokens N raises it)" in capsys.readouterr().err


def test_a_repl_note_after_a_reply_piped_to_the_same_terminal_starts_a_line_of_its_own(tiny_engine, monkeypatch, capsys):
    import sys

    from aigc import ui
    from aigc.cli.chat import _turn
    from aigc.cli.options import RunOptions
    from aigc.generators.chat import ChatGenerator, ChatSession

    session = ChatSession(ChatGenerator(engine=tiny_engine), sampling={"max_tokens": 2})
    repl_lines(monkeypatch, "Plan two days in Rome.")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # `aigc chat | tee log`: stdout a pipe, stderr the terminal
    monkeypatch.setattr(ui, "_stderr", None)
    _turn(session, RunOptions(log=False), [])
    assert ">>> \n(reply cut off at the token limit" in re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().err)  # the reply's line on stdout: the note below it


def test_too_few_distinct_headlines_are_printed_with_a_warning(monkeypatch, tmp_path):
    from aigc.cli.options import RunOptions
    from aigc.generators.headline import HeadlineGenerator
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue(*["Bees on the roof"] * 600)
    monkeypatch.setattr(RunOptions, "generator", lambda self, name, **kwargs: HeadlineGenerator(engine=engine))
    monkeypatch.chdir(tmp_path)
    result = invoke("headline", "--topic", "bees", "-n", "3", "--no-log")
    assert result.exit_code == 0 and result.stdout == "Bees on the roof\n"
    assert result.stderr == "Warning: only 1 of the 3 headlines asked for came out distinct and within the word limit; raise --temperature or --max-words, or ask for fewer (-n)\n"
    result = invoke("headline", "--topic", "bees", "-n", "2", "--no-log", "--json")
    assert json.loads(result.stdout) == {"headlines": ["Bees on the roof"], "missing": 1, "cut_off": False, "model": "fake"} and "only 1 of the 2" in result.stderr
    (Path("topics.txt")).write_text("bees\nwasps\n")
    result = invoke("batch", "headline", "-i", "topics.txt", "-o", "out.jsonl", "-O", "n=2", "--temperature", "0.8")
    assert result.exit_code == 0 and "2 rows came out with fewer results than asked for" in result.stderr, result.output


def test_headline_tone_reaches_the_prompt_as_adcopys_tone_does(monkeypatch, tmp_path):
    from aigc.cli.options import RunOptions
    from aigc.generators.headline import HeadlineGenerator
    from aigc.testing import FakeEngine

    engine = FakeEngine()
    engine.enqueue("Bees on the roof")
    monkeypatch.setattr(RunOptions, "generator", lambda self, name, **kwargs: HeadlineGenerator(engine=engine))
    monkeypatch.chdir(tmp_path)
    result = invoke("headline", "--topic", "bees", "-n", "1", "--tone", "urgent", "--no-log")
    assert result.exit_code == 0 and result.stdout == "Bees on the roof\n", result.output
    assert "Write a clear, factual news headline, urgent in tone, about: bees." in engine.calls[0][0][0][-1]["content"]
    assert "--tone" in invoke("headline", "--help").stdout


@pytest.mark.parametrize(
    "argv, error",
    [
        (["plugins", "--all", "list"], "put --all after the command: aigc plugins list ... --all"),
        (["plugins", "--json", "--all", "list"], "put --json --all after the command: aigc plugins list ... --json --all"),
        (["plugins", "--all", "uninstall", "x"], "aigc plugins uninstall takes no --all; it goes with the listing: aigc plugins --all"),
        (["models", "--json", "info", "smollm2"], "put --json after the command: aigc models info ... --json"),
        (["models", "--json", "pull", "smollm2"], "aigc models pull takes no --json; it goes with the listing: aigc models --json"),
        (["logs", "--json", "status"], "put --json after the command: aigc logs status ... --json"),
        (["logs", "-n", "2", "-r", "show", "5"], "aigc logs show takes no --count; it goes with the listing: aigc logs --count"),
        (["plugins", "--json", "--all", "uninstall", "x"], "aigc plugins uninstall takes no --json or --all; they go with the listing: aigc plugins --json --all"),
    ],
)
def test_listing_options_before_a_subcommand_are_refused_saying_where_they_go(argv, error):
    result = invoke(*argv)
    assert result.exit_code == 2 and result.stdout == "" and result.stderr == f"Error: {error}\n"


def test_listings_show_a_file_name_in_no_utf8_as_its_bytes_and_in_json_as_replacement_characters(tmp_path, monkeypatch):
    from aigc import conversations

    shared = tmp_path / "caf\udce9"  # as Python reads the bytes caf\xe9 from a path
    shared.mkdir()
    (shared / "b\udce9e.j2").write_text("---\ndescription: bees\n---\nHi {{ input }}\n")
    monkeypatch.setenv("AIGC_TEMPLATES_PATH", str(shared))
    listed = invoke("templates", "list", "--json")
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.stdout_bytes.decode("utf-8")) if r["source"] == "env")
    assert row["name"] == "b\ufffde" and row["path"] == str(tmp_path / "caf\ufffd" / "b\ufffde.j2")
    plain = invoke("templates", "list")  # a name as its bytes, also on a stdout that takes only proper UTF-8
    assert plain.exit_code == 0 and any(line.startswith(b"b\xe9e ") for line in plain.stdout_bytes.splitlines()), plain.output
    assert invoke("templates", "show", "b\udce9e").stdout_bytes.startswith(b"{# " + os.fsencode(tmp_path / "caf\udce9" / "b\udce9e.j2"))
    shown = invoke("templates", "show", "b\udce9e", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout_bytes.decode("utf-8"))["path"] == str(tmp_path / "caf\ufffd" / "b\ufffde.j2")
    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    (conversations.sessions_dir() / "caf\udce9.json").write_text("{}")
    sessions = invoke("sessions", "--json")
    assert sessions.exit_code == 0 and [row["name"] for row in json.loads(sessions.stdout_bytes.decode("utf-8"))] == ["caf\ufffd"]


def test_repl_load_asks_before_it_replaces_a_named_sessions_turns_as_save_asks_before_it_replaces_a_file(tmp_path, monkeypatch, capsys):
    from aigc import conversations
    from aigc.cli.chat import _command
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    saved = tmp_path / "conv.json"
    saved.write_text(json.dumps({"messages": [{"role": "user", "content": "Paris?"}, {"role": "assistant", "content": "No."}]}))
    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    trip = conversations.session_path("trip")
    trip.write_text(json.dumps({"messages": [{"role": "user", "content": "Rome?"}, {"role": "assistant", "content": "Yes."}]}))
    session = ChatSession(ChatGenerator(engine=FakeEngine()), path=trip)
    for answer in ("n", ""):
        repl_lines(monkeypatch, answer)
        _command("/load", str(saved), session, [])
        assert [m["content"] for m in session.messages] == ["Rome?", "Yes."] and "Rome?" in trip.read_text()
        err = capsys.readouterr().err
        assert f"session trip holds 1 earlier turn; replace it with {saved}? [y/N]" in err and f"(not loaded: session trip is kept as it was)" in err, err
    repl_lines(monkeypatch, "y")
    _command("/load", str(saved), session, [])
    assert [m["content"] for m in session.messages] == ["Paris?", "No."] and "Paris?" in trip.read_text()
    session.close()


def test_repl_load_takes_a_session_name_and_says_what_it_takes_when_nothing_is_there(tmp_path, monkeypatch):
    from aigc import conversations
    from aigc.cli.chat import _command
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    monkeypatch.chdir(tmp_path)
    conversations.sessions_dir().mkdir(parents=True, exist_ok=True)
    conversations.session_path("trip").write_text(json.dumps({"messages": [{"role": "user", "content": "Rome?"}, {"role": "assistant", "content": "Yes."}]}))
    session = ChatSession(ChatGenerator(engine=FakeEngine()))
    _command("/load", "trip", session, [])
    assert [m["content"] for m in session.messages] == ["Rome?", "Yes."]
    hint = ": /load takes a file /save wrote (/load chat.json) or a session's name (`aigc sessions` lists them)"
    with pytest.raises(BadInputError, match=re.escape(f"no file or session paris{hint}")):
        _command("/load", "paris", session, [])
    with pytest.raises(BadInputError, match=re.escape(f"no file gone.json{hint}")):
        _command("/load", "gone.json", session, [])
    assert [m["content"] for m in session.messages] == ["Rome?", "Yes."]


def test_repl_load_of_a_model_name_says_how_to_chat_with_that_model(monkeypatch):
    """ollama's `/load MODEL` switches models; here it names the command that goes on with the model."""
    from aigc import conversations
    from aigc.cli.chat import _command
    from aigc.generators.chat import ChatGenerator, ChatSession
    from aigc.testing import FakeEngine

    session = ChatSession(ChatGenerator(engine=FakeEngine()))
    with pytest.raises(BadInputError, match=re.escape("smollm2 is a model; a chat keeps the model it started with (ollama's /load MODEL switches): /exit, then `aigc chat -m smollm2`")):
        _command("/load", "smollm2", session, [])
    path = conversations.new_conversation()
    session = ChatSession(ChatGenerator(engine=FakeEngine()), path=path)
    session.messages[:] = [{"role": "user", "content": "Rome?"}, {"role": "assistant", "content": "Yes."}]
    with pytest.raises(BadInputError, match=re.escape(f"/exit, then `aigc chat -m smollm2 --cid {path.stem}` goes on from this conversation with it")):
        _command("/load", "smollm2", session, [])


@pytest.mark.parametrize("command", [("translate", "--to", "fr", "--no-log"), ("classify", "-l", "spam,ham", "--no-log"), ("embed",)])
def test_a_bare_word_read_as_the_file_of_that_name_is_said_so(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello").write_text("I am the file\n")
    (tmp_path / "notes.md").write_text("Some notes\n")
    words = f"Warning: hello is read as the file of that name here, not as the text 'hello'; to {command[0]} the text itself, pipe it in: echo hello | aigc {command[0]} ..."
    read = invoke(command[0], "hello", *command[1:], "-m", "echo")
    assert read.exit_code == 0 and words in read.stderr.splitlines(), read.output
    for source in ("notes.md", "goodbye"):  # a file named as one, and a word that names no file
        plain = invoke(command[0], source, *command[1:], "-m", "echo")
        assert plain.exit_code == 0 and "is read as the file" not in plain.stderr, plain.output


def test_an_unknown_model_gets_the_m_hint_for_a_server_only_where_m_takes_it(unloadable):
    hint = "a model ollama serves is -m 'openai:http://127.0.0.1:11434/v1#nosuch'"
    code, lines = bad("chat", "-m", "nosuch", "hi")
    assert code == 2 and hint in lines[0]
    for args in (("models", "rm", "nosuch"), ("models", "info", "nosuch"), ("models", "default", "nosuch")):  # none of them runs a model
        code, lines = bad(*args)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: unknown model 'nosuch'; known aliases: ") and "-m" not in lines[0], (args, lines)


def test_an_unknown_option_is_offered_only_options_close_to_it():
    assert bad("chat", "--bogus", "hi") == (2, ["Error: No such option: --bogus (see `aigc chat --help`)"])  # not click's nearest, --log
    code, lines = bad("chat", "--temprature", "1", "hi")
    assert code == 2 and lines[0].startswith("Error: No such option: --temprature (Possible options: --temperature")


def test_a_task_option_given_to_batch_as_a_flag_says_it_goes_in_O():
    for flag, shown in (("--labels", "labels"), ("--to", "to"), ("--multi-label", "multi_label")):
        assert bad("batch", "classify", "-i", "in.txt", "-o", "-", flag, "x") == (2, [f"Error: No such option: {flag} (a task's options go in -O, as -O {shown}=VALUE; see `aigc batch --help`)"])
    code, lines = bad("batch", "classify", "-i", "in.txt", "-o", "-", "--feild", "x")  # no task's option: click's guesses
    assert code == 2 and "Possible options: --field" in lines[0] and "-O" not in lines[0]


def test_the_entry_point_freezes_the_garbage_collector_as_the_process_ends(monkeypatch):
    from aigc.cli import app as app_module

    frozen = []
    monkeypatch.setattr(app_module.gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(app_module.signal, "signal", lambda *args: None)  # no SIGTERM handler left in pytest
    monkeypatch.setattr(sys, "argv", ["aigc", "--version"])
    with pytest.raises(SystemExit) as exit_:
        app_module.main()
    assert exit_.value.code in (0, None) and frozen == [True]


@pytest.mark.parametrize(
    "args, words",
    [
        (["chat", "-m", "x" * 300, "hi"], "Error: unknown model 'xxx"),
        (["models", "info", "x" * 300], "Error: unknown model 'xxx"),
        (["chat", "-m", "./" + "x" * 300, "hi"], "Error: no such file or directory: ./xxx"),
        (["chat", "-t", "x" * 300, "hi"], "Error: unknown template 'xxx"),
        (["chat", "-t", "./" + "x" * 300 + ".j2", "hi"], "Error: no template file ./xxx"),
    ],
)
def test_a_model_or_template_name_longer_than_a_file_name_can_be_is_unknown(args, words):
    result = invoke(*args)
    assert result.exit_code == 2 and result.stderr.startswith(words), result.stderr


def test_chat_about_a_file_too_long_for_the_context_points_to_summarize(tiny_model_dir, tmp_path):
    doc = tmp_path / "long doc.txt"
    doc.write_text("Bees make honey in the city. " * 200)  # past the 512-token context
    model = ("-m", str(tiny_model_dir), "--no-log", "--max-tokens", "5")
    attached = invoke("chat", "-f", str(doc), "Summarize this", *model)
    assert attached.exit_code == 2 and "but " in attached.stderr and attached.stderr.endswith(f"; to summarize a long document, `aigc summarize '{doc}'` reads it in parts\n")
    piped = invoke("chat", "Summarize this", *model, input=doc.read_text())
    assert piped.exit_code == 2 and piped.stderr.endswith("`aigc summarize -` reads it in parts\n")
    alone = invoke("chat", "word " * 600, *model)
    assert alone.exit_code == 2 and "aigc summarize" not in alone.stderr
    (tmp_path / "notes.txt").write_text("Bees make honey.\nAnts dig.\n")
    asked_too_much = invoke("chat", "-f", str(tmp_path / "notes.txt"), "Summarize this", *model[:3], "--max-tokens", "100000")  # the file is not what is too long
    assert asked_too_much.exit_code == 2 and "lower --max-tokens" in asked_too_much.stderr and "aigc summarize" not in asked_too_much.stderr


def test_the_pointer_to_summarize_keeps_where_the_error_happened():
    from aigc.cli.chat import _summarize_pointed_to
    from aigc.errors import ContextLengthError

    error = ContextLengthError("the prompt takes 600 tokens, but tiny holds 512 with the answer; shorten it")
    error.prompt_tokens, error.context_length, error.at, error.index = 600, 512, "input 2", 1
    with pytest.raises(ContextLengthError) as raised:
        with _summarize_pointed_to([("doc.txt", "text")], None):
            raise error
    assert "`aigc summarize doc.txt`" in str(raised.value) and (raised.value.at, raised.value.index) == ("input 2", 1)


def test_a_map_reduced_summary_cut_off_names_the_final_summary_and_its_parts_are_counted(tmp_path):
    (tmp_path / "long.txt").write_text("\n\n".join(" ".join(f"Bees number {i} make honey." for i in range(40)) for _ in range(4)))
    result = invoke("summarize", str(tmp_path / "long.txt"), "-m", "echo", "--chunk-tokens", "200", "--max-tokens", "30", "--json", "--stats")
    shown = json.loads(result.stdout)
    assert result.exit_code == 0 and shown["parts"] > 1 and shown["map_reduce_rounds"] >= 1, result.output
    assert f"Warning: the final summary (of the {shown['parts']} parts' summaries) was cut off at --max-tokens 30 (" in result.stderr
    assert re.search(rf"^parts: +{shown['parts']}$", result.stderr, re.M) and re.search(rf"^map-reduce rounds: +{shown['map_reduce_rounds']}$", result.stderr, re.M)


def test_classify_truncate_classifies_a_long_documents_start_here_and_in_batch(tiny_model_dir, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text("Bees make honey in the city. " * 200)  # past the 512-token context
    model = ("-l", "bees,solar", "-m", str(tiny_model_dir), "--no-log")
    refused = invoke("classify", str(doc), *model)
    assert refused.exit_code == 2 and refused.stderr.endswith("; give --truncate to classify the text's start, or shorten it\n"), refused.stderr
    cut = invoke("classify", str(doc), *model, "--truncate", "--json")
    assert cut.exit_code == 0 and json.loads(cut.stdout)["label"] in ("bees", "solar") and "classified the text's start, its first " in cut.stderr
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": doc.read_text()}) + "\n")
    batch = invoke("batch", "classify", "-i", str(rows), "-o", str(tmp_path / "out.jsonl"), "-O", "labels=bees,solar", "-O", "truncate=true", "-m", str(tiny_model_dir))
    assert batch.exit_code == 0 and json.loads((tmp_path / "out.jsonl").read_text())["result"]["label"] in ("bees", "solar"), batch.output
    (tmp_path / "ev.tsv").write_text(f"Solar panels on the roof.\tsolar\n{doc.read_text()}\tbees\n")
    model = model[:4]  # eval keeps no log
    refused = invoke("eval", "classify", str(tmp_path / "ev.tsv"), *model)
    assert refused.exit_code == 2 and refused.stderr.endswith("; give --truncate to classify the text's start, or shorten it\n"), refused.stderr  # a flag eval has
    evaluated = invoke("eval", "classify", str(tmp_path / "ev.tsv"), *model, "--truncate", "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["examples"] == 2 and "classified the text's start, its first " in evaluated.stderr, evaluated.output


@pytest.mark.parametrize(
    "args, said",
    [
        (("summarize", "-", "--words", "１００"), "--words must be a whole number, got '１００' (full-width characters: type them in ASCII; see"),
        (("summarize", "-", "--length", "ｓｈｏｒｔ"), "--length must be one of short, medium, long, got 'ｓｈｏｒｔ' (full-width characters: type them in ASCII)"),
        (("run", "chat", "--var", "产品＝智能手表"), "--var takes key=value, got '产品＝智能手表' (full-width characters: type them in ASCII)"),
    ],
)
def test_a_value_typed_in_full_width_is_named_as_the_cause(args, said):
    result = invoke(*args, "-m", "echo", input="Bees make honey.")
    assert result.exit_code == 2 and said in " ".join(result.stderr.split()), result.stderr
    assert "full-width" not in invoke("summarize", "-", "--length", "shrt", "-m", "echo", input="Bees.").stderr  # ASCII typos: no such word


def test_batch_help_says_how_to_get_answers_that_do_not_depend_on_batching():
    shown = runner.invoke(app, ["batch", "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0
    assert "--dtype float32 for answers that do not depend on batching" in " ".join(shown.output.split())


def test_headline_summarize_and_translate_json_name_the_model(tmp_path):
    (tmp_path / "en.json").write_text('{"hi": "Hello there"}')
    for args, keys in (
        (["headline", "--topic", "bees", "-n", "1"], {"headlines", "missing", "cut_off"}),
        (["summarize", "-"], {"summary", "words", "map_reduce_rounds", "parts", "cut_off", "unchanged"}),
        (["translate", "-", "--to", "fr"], {"translation", "source_language", "target_language"}),
        (["translate", str(tmp_path / "en.json"), "--to", "fr"], {"translation", "source_language", "target_language"}),
    ):
        result = invoke(*args, "-m", "echo", "--json", "--no-log", input="Bees make honey in cities. They thrive on rooftops.")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["model"] == "echo" and keys <= set(data), args  # the keys it had stay


def test_eval_json_records_what_was_evaluated(tiny_model_dir, tmp_path, monkeypatch):
    import aigc

    (tmp_path / "data.tsv").write_text("I love it\tgood\nI hate it\tbad\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("eval", "classify", "data.tsv", "-m", str(tiny_model_dir), "--dtype", "float32", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["model"], report["data"], report["examples_file"], report["dtype"], report["aigc_version"]) == (str(tiny_model_dir), str(tmp_path / "data.tsv"), None, "float32", aigc.__version__)
    assert report["examples"] == 2  # the keys it had stay
    piped = invoke("eval", "classify", "-", "-m", "echo", "--json", input="I love it\tgood\nI hate it\tbad\n")
    assert piped.exit_code == 0, piped.output
    assert (json.loads(piped.stdout)["data"], json.loads(piped.stdout)["dtype"]) == ("-", None)


def test_a_file_name_that_starts_with_a_dash_is_told_how_to_give_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-dash.txt").write_text("Bees make honey in the city.")
    for command in ("summarize", "headline"):
        code, lines = bad(command, "-dash.txt", "-m", "echo")
        assert code == 2 and lines == [f"Error: No such option: -d (-dash.txt is a file here: use ./-dash.txt or put -- before it; see `aigc {command} --help`)"]
    code, lines = bad("summarize", "-xdash.txt", "-m", "echo")  # no such file: no hint of one
    assert code == 2 and lines == ["Error: No such option: -x (see `aigc summarize --help`)"]


@pytest.mark.parametrize("command", ["summarize", "headline"])
def test_several_files_or_a_folder_given_a_one_document_command_name_the_batch_way(tmp_path, command):
    for name in ("a.txt", "b.md"):
        (tmp_path / name).write_text("Bees make honey.\n")
    code, lines = bad(command, str(tmp_path / "a.txt"), str(tmp_path / "b.md"), "-m", "echo")
    assert code == 2 and len(lines) == 1 and f"aigc {command} reads one document; `aigc batch {command} FILE... -o OUT.jsonl` runs it on each of several" in lines[0]
    code, lines = bad(command, str(tmp_path), "-m", "echo")
    assert (code, lines) == (2, [f"Error: {tmp_path} is a folder; `aigc batch {command} {tmp_path} -o OUT.jsonl` runs {command} on each document in it (.txt, .md, .markdown, .html, .htm, .srt, .vtt, .sbv, .ass, .ssa, .eml and .mbox files), one JSON line each"])
    code, lines = bad(command, "some", "words", "-m", "echo")  # no files: click's own message
    assert code == 2 and "batch" not in lines[0]


def test_chat_wait_timeout_gives_up_busy_after_it(tmp_path):
    import time

    from aigc import conversations

    path = tmp_path / "talk.json"
    with conversations.in_use(path):  # another aigc chat has it open
        started = time.monotonic()
        busy = invoke("chat", "-S", str(path), "-m", "echo", "--wait-timeout", "0.3", "hi")
        waited = time.monotonic() - started
    assert busy.exit_code == 75 and 0.3 <= waited < 10
    assert busy.stderr.splitlines()[-1] == f"Error: {path} is still in use by another aigc chat after waiting 0.3 s; wait longer (a higher --wait-timeout, or none) or pick another --session"
    assert "(waiting for another aigc chat to finish with" in busy.stderr  # --wait-timeout implies --wait
    assert invoke("chat", "-S", str(path), "-m", "echo", "--wait-timeout", "-1", "hi").exit_code == 2


def test_batch_wait_takes_its_turn_at_an_output_another_run_writes_and_wait_timeout_gives_up_busy(tmp_path, monkeypatch):
    import threading

    from aigc import locks
    from aigc.cli import batch

    (tmp_path / "in.txt").write_text("one\ntwo\n")
    out = tmp_path / "out.jsonl"
    args = ("batch", "chat", "-i", str(tmp_path / "in.txt"), "-o", str(out), "-m", "echo")
    with locks.held(out, "busy"):  # another aigc batch writing it
        assert invoke(*args).exit_code == 75
        busy = invoke(*args, "--wait-timeout", "0.2")
    assert busy.exit_code == 75 and busy.stderr.splitlines()[-1] == f"Error: {out} is still being written by another aigc batch after waiting 0.2 s; wait longer (a higher --wait-timeout, or none), or give another -o"
    holding, free = threading.Event(), threading.Event()

    def other() -> None:
        with locks.held(out, "busy"):
            holding.set()
            free.wait(30)

    info = batch.ui.info

    def said(message):  # the waiting run says so, then the other one ends
        info(message)
        if message.startswith("(waiting for another aigc batch"):
            free.set()

    monkeypatch.setattr(batch.ui, "info", said)
    thread = threading.Thread(target=other)
    thread.start()
    holding.wait(30)
    done = invoke(*args, "--wait")
    thread.join()
    assert done.exit_code == 0 and f"(waiting for another aigc batch to finish writing {out})" in done.stderr
    assert [json.loads(line)["result"]["text"] for line in out.read_text().splitlines()] == ["one", "two"]


def test_classify_no_channel_scores_labels_alone_here_in_eval_and_in_batch(tiny_model_dir, tmp_path):
    text, model = "Shares rose after the earnings report.", ("-l", "business,sports", "-m", str(tiny_model_dir))
    scores = lambda *flags: json.loads(invoke("classify", text, *model, "--no-log", "--json", *flags).stdout)["scores"]  # noqa: E731
    both, alone = scores(), scores("--no-channel")
    assert scores("--channel") == both and alone != pytest.approx(both, abs=1e-9)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": text}) + "\n")
    for value, expected in (("false", alone), ("true", both)):
        out = tmp_path / f"out-{value}.jsonl"
        batch = invoke("batch", "classify", "-i", str(rows), "-o", str(out), "-O", "labels=business,sports", "-O", f"channel={value}", "-m", str(tiny_model_dir))
        assert batch.exit_code == 0 and json.loads(out.read_text())["result"]["scores"] == pytest.approx(expected, abs=1e-6), batch.output
    (tmp_path / "ev.tsv").write_text(f"{text}\tbusiness\nThe match ended in a draw.\tsports\n")
    evaluated = invoke("eval", "classify", str(tmp_path / "ev.tsv"), *model[2:], "--no-channel", "-o", str(tmp_path / "pred.jsonl"))
    assert evaluated.exit_code == 0 and json.loads((tmp_path / "pred.jsonl").read_text().splitlines()[0])["scores"] == pytest.approx(alone, abs=1e-6), evaluated.output
