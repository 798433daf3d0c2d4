"""config.toml's checks as the commands read it: a top-level setting written below a table, the
[aliases], [serve] and [remotes.NAME] tables' wrong keys and values (with their lines)."""

import re

import pytest

from aigc import config
from config_cli import invoke, write


def test_a_top_level_setting_below_a_table_is_a_warning_naming_it_the_table_and_its_line():
    path = write('[aliases]\nsmall = "smollm2"\ndefault_model = "small"\n')
    result = invoke("models", "default")
    assert result.exit_code == 0 and result.stdout == "smollm2\n"
    assert f"Warning: {path}: default_model is inside [aliases] (line 3); top-level settings go above the first [table]" in result.stderr
    assert result.stderr.count("default_model is inside") == 1


@pytest.mark.parametrize(("text", "table", "line"), [
    ('[serve]\nport = 8080\n\nthreads = 2\n', "serve", 4),
    ('[remotes.lab]\nurl = "http://lab:8000/v1"\nlogs = false\n', "remotes.lab", 3),
    ('[remotes]\n"default_image_model" = "sd-turbo"\n', "remotes", 2),
])
def test_a_top_level_setting_inside_serve_or_a_remote_is_the_same_warning(text, table, line):
    path = write(text)
    key = text.splitlines()[line - 1].split("=")[0].strip().strip('"')
    assert config.settings_warnings(path, config.parse_toml(text), text) == [
        (f"{table}.{key}", f"{path}: {key} is inside [{table}] (line {line}); top-level settings go above the first [table]"),
    ]


def test_a_wrong_alias_value_names_its_key_and_line_with_that_key_as_the_example():
    path = write('[aliases]\nsmall = "smollm2"\nthreads = 1\n')
    result = invoke("models", "list")
    assert result.exit_code == 0
    assert (
        f'Warning: threads in [aliases] of {path} (line 3) must name a model in quotes (threads = "smollm2"), got 1; '
        "it is a top-level setting: top-level settings go above the first [table]; fix it"
    ) in result.stderr


def test_an_alias_naming_an_unknown_model_is_an_error_saying_so_not_a_recursion_error():
    write('[aliases]\nsmall = "bogusmodel"\n')
    result = invoke("chat", "hi", "-m", "small")
    assert result.exit_code == 2 and "alias 'small' (in " in result.stderr and "points at 'bogusmodel', which is no known model" in result.stderr
    listed = invoke("models", "list")
    assert listed.exit_code == 0 and "Warning: alias 'small'" in listed.stderr and "Recursion" not in listed.output


def test_unknown_keys_of_serve_and_a_remote_say_which_key_is_meant_and_where():
    from aigc.cli.command_defaults import checked_table
    from aigc.engine.remote import named_remote
    from aigc.errors import AigcError

    write('[serve]\nprot = 1\n\n[remotes.x]\nurll = "http://x"\n')
    defaults, unknown = checked_table("serve")
    assert defaults == {} and len(unknown) == 1
    assert re.search(r"has unknown keys prot; prot \(line 2\): did you mean port\? it takes model, ", unknown[0])
    with pytest.raises(AigcError, match=r"has unknown keys urll; urll \(line 5\): did you mean url\? it takes url, model and api_key_env"):
        named_remote("x")


def test_remotes_that_is_no_table_is_a_warning_where_remotes_are_listed():
    path = write("remotes = 3\n")
    result = invoke("models", "list")
    assert result.exit_code == 0 and f'Warning: remotes in {path} must be tables, [remotes.NAME] with url = "http://HOST:PORT/v1", got 3; fix it' in result.stderr


def test_the_aliases_table_models_alias_adds_says_top_level_settings_go_above_it():
    path = write('threads = 1\n\n[remotes.gpu]\nurl = "http://gpu:8000/v1"\n')
    assert invoke("models", "alias", "small", "smollm2").exit_code == 0
    assert path.read_text().endswith(f'\n\n{config.ALIASES_COMMENT}\n[aliases]\nsmall = "smollm2"\n')
    assert "top-level settings go above the first [table]" in config.ALIASES_COMMENT
    assert invoke("logs", "off").exit_code == 0  # a top-level setting goes above the tables, not below the comment
    assert config.load_settings()["logs"] is False and config.model_aliases() == {"small": "smollm2"}
    assert invoke("models", "alias", "small", "--rm").exit_code == 0
    assert path.read_text() == 'threads = 1\nlogs = false\n\n[remotes.gpu]\nurl = "http://gpu:8000/v1"\n'  # its comment goes with it
