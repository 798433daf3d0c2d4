"""ollama's native API (`/api/*`) on `aigc serve`, with the tiny random model: its answers are the
OpenAI routes' for the same settings, in ollama's shapes (JSON lines, `done`, counts)."""

import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from aigc.engine.base import Completion  # noqa: E402

KEY = "test-key"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """The app `aigc serve -m TINY --api-key KEY` builds, run by uvicorn in a background thread."""
    import socket

    from aigc.serve.app import ServeSettings
    from aigc.serve.running import build

    settings = ServeSettings(api_key=KEY, max_tokens_cap=40, max_request_bytes=20_000, max_embed_bytes=60_000, max_batch=8, batch_window=0.02)
    app = build([str(tiny_model_dir)], settings, device="cpu", dtype="float32")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "server did not start"
    backend = next(iter(app.state.backends.values()))
    yield {"url": f"http://127.0.0.1:{port}", "model": backend.name, "backend": backend}
    srv.should_exit = True
    thread.join(10)


def call(server, path, body=None, key=KEY, method=None):
    """(status, content type, body text) of one request."""
    request = urllib.request.Request(server["url"] + path, data=None if body is None else json.dumps(body).encode(), method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("content-type"), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type"), exc.read().decode()


def ok(server, path, body=None, **kwargs):
    status, _, text = call(server, path, body, **kwargs)
    assert status == 200, text
    return json.loads(text)


def lines(server, path, body):
    """A streamed answer's JSON lines, checked for ollama's media type."""
    status, kind, text = call(server, path, body)
    assert status == 200 and kind == "application/x-ndjson", text
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def openai_chat(server, content, **fields):
    body = ok(server, "/v1/chat/completions", {"model": server["model"], "messages": [{"role": "user", "content": content}], **fields})
    return body["choices"][0]


def error(server, path, body, status, key=KEY):
    got, _, text = call(server, path, body, key=key)
    assert got == status, text
    data = json.loads(text)
    assert list(data) == ["error"] and isinstance(data["error"], str)
    return data["error"]


def test_show_lists_a_model_served_under_an_embedding_name_as_embedding_and_any_other_as_chatting(tiny_model_dir):
    """ollama lists a model as "embedding" or "completion", and clients take "embedding" for "cannot chat" (`ollama run`
    embeds its prompt): a model is listed as embedding under a name with "embed" in it (an alias), which llm-ollama
    registers for `llm embed`, and as chatting under its own; both names embed and chat, with one loaded copy."""
    from starlette.testclient import TestClient
    from typer.testing import CliRunner

    from aigc.cli.app import app as cli
    from aigc.serve.app import ServeSettings
    from aigc.serve.running import build

    assert CliRunner().invoke(cli, ["models", "alias", "tiny-embed", str(tiny_model_dir)]).exit_code == 0
    app = build([str(tiny_model_dir), "tiny-embed"], ServeSettings(), device="cpu", dtype="float32")
    with TestClient(app, base_url="http://127.0.0.1:8000") as web:
        assert web.post("/api/show", json={"model": str(tiny_model_dir)}).json()["capabilities"] == ["completion", "tools"]
        assert web.post("/api/show", json={"model": "tiny-embed:latest"}).json()["capabilities"] == ["embedding"]
        assert len(web.post("/api/embed", json={"model": "tiny-embed", "input": ["a", "b"]}).json()["embeddings"]) == 2


@pytest.mark.parametrize(  # ollama's format_test.go, and SmolLM2-135M's count as ollama lists it
    "count, shown",
    [(0, "0"), (999, "999"), (1000, "1K"), (1001, "1K"), (1_000_000, "1M"), (125_000_000, "125M"), (500_500_000, "500.50M"), (500_550_000, "500.55M"),
     (1_000_000_000, "1B"), (2_800_000_000, "2.8B"), (2_850_000_000, "2.9B"), (1_000_000_000_000, "1000B"), (134_515_008, "134.52M")],
)
def test_parameter_size_is_written_as_ollamas_human_number(count, shown):
    from aigc.serve.ollama_api import _human

    assert _human(count) == shown


def test_tags_and_show_count_a_tied_output_layer_once_and_date_a_model_by_its_files_as_ollama(tiny_model_dir, tmp_path):
    """A half-precision model on the CPU gets a float32 copy of its tied output layer: its parameters are still counted
    as its files hold them (ollama's 134.52M for SmolLM2-135M, not 163M), and modified_at is when its files were written,
    not when the server started."""
    import os
    import shutil

    from starlette.testclient import TestClient
    from transformers import AutoModelForCausalLM

    from aigc.serve.app import ServeSettings
    from aigc.serve.ollama_api import _human
    from aigc.serve.running import build

    model_dir = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model_dir)
    written = 1_600_000_000.5  # 2020-09-13T12:26:40.5Z
    for entry in model_dir.iterdir():
        os.utime(entry, (written, written - 60 if entry.name == "config.json" else written))
    count = AutoModelForCausalLM.from_pretrained(model_dir).num_parameters()  # float32: the tied layer once
    app = build([str(model_dir)], ServeSettings(), device="cpu", dtype="bfloat16")
    backend = next(iter(app.state.backends.values()))
    assert backend.engine.model.get_output_embeddings().weight is not backend.engine.model.get_input_embeddings().weight  # the float32 copy
    with TestClient(app, base_url="http://127.0.0.1:8000") as web:
        shown = web.post("/api/show", json={"model": str(model_dir)}).json()
        (tag,) = web.get("/api/tags").json()["models"]
    assert shown["model_info"]["general.parameter_count"] == count
    assert tag["details"]["parameter_size"] == shown["details"]["parameter_size"] == _human(count)
    assert tag["modified_at"] == shown["modified_at"] == "2020-09-13T12:26:40.500000Z"  # its newest file's time


def test_version_tags_ps_and_show_describe_the_served_model(server):
    from aigc import __version__
    from aigc.serve.ollama_api import OLLAMA_VERSION

    assert ok(server, "/api/version", key=None) == {"version": OLLAMA_VERSION}  # no key, as /health
    assert OLLAMA_VERSION != __version__ and ok(server, "/version", key=None) == {"version": __version__}  # aigc's own
    assert tuple(map(int, OLLAMA_VERSION.split("."))) >= (0, 6, 4)  # what VS Code Copilot's ollama provider asks of a server
    served = [m["id"] for m in ok(server, "/v1/models")["data"]]
    tags = ok(server, "/api/tags")["models"]
    assert [m["name"] for m in tags] == [m["model"] for m in tags] == [f"{name}:latest" for name in served]  # ollama's form: NAME:TAG
    (tag,) = tags
    assert tag["size"] > 0 and len(tag["digest"]) == 64 and tag["modified_at"].endswith("Z")
    assert tag["details"]["family"] == server["backend"].engine.model.config.model_type
    (loaded,) = ok(server, "/api/ps")["models"]
    assert loaded["name"] == loaded["model"] == tag["name"] and loaded["digest"] == tag["digest"] and loaded["context_length"] == server["backend"].batched.context_length
    shown = ok(server, "/api/show", {"model": server["model"]})
    assert shown["details"] == tag["details"] and shown["template"] == server["backend"].engine.tokenizer.chat_template
    assert "temperature" in shown["parameters"] and "completion" in shown["capabilities"]
    assert ok(server, "/api/show", {"model": server["model"] + ":latest"})["details"] == tag["details"]  # ollama's default tag
    assert 'model "nope" not found, try pulling it first (served here: ' in error(server, "/api/show", {"model": "nope"}, 404)
    assert shown["model_info"]["general.basename"] == server["model"]  # VS Code Copilot's name for the model
    for path, key in (("/", None), ("/api/version", None), ("/api/tags", KEY)):  # ollama's CLI checks the server is up with HEAD /, healthchecks with the others
        status, kind, text = call(server, path, method="HEAD", key=key)
        assert status == 200 and text == "", path


def test_a_model_listed_as_name_latest_answers_to_both_spellings(server):
    """ollama lists NAME:latest, and clients check names against the list as langchain-ollama does
    (`validate_model_on_init`: equal, or the listed one starts with "NAME:"): both spellings pass, and both are served."""
    listed = [m["model"] for m in ok(server, "/api/tags")["models"]]
    for asked in (server["model"], server["model"] + ":latest"):
        assert any(asked == m or m.startswith(f"{asked}:") for m in listed), asked
        assert ok(server, "/api/generate", {"model": asked, "prompt": "x", "stream": False, "options": {"num_predict": 1}})["done"] is True


def test_the_openai_routes_take_the_name_as_ollama_lists_it(server):
    """Clients that list /api/tags and then call /v1 (VS Code Copilot's ollama provider) send `NAME:latest` there too."""
    asked = server["model"] + ":latest"
    body = ok(server, "/v1/chat/completions", {"model": asked, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    assert body["model"] == asked  # the request's name, as ollama's /v1 and its /api answer (Open WebUI's ollama connection asks for NAME:latest)
    assert ok(server, "/v1/completions", {"model": asked, "prompt": "x", "max_tokens": 1})["model"] == asked
    assert ok(server, "/v1/embeddings", {"model": asked, "input": "x"})["model"] == asked
    assert ok(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1})["model"] == server["model"]  # none asked: the served name
    status, _, text = call(server, "/v1/chat/completions", {"model": "nope:latest", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404 and "'nope:latest' is not served" in json.loads(text)["error"]["message"]


def test_answers_name_the_model_as_the_request_did(server):
    """ollama echoes the request's name: `NAME:latest` asked, `NAME:latest` answered, in every line."""
    asked = server["model"] + ":latest"
    short = {"num_predict": 2}
    answers = [
        ok(server, "/api/generate", {"model": asked, "prompt": "x", "stream": False, "options": short}),
        *lines(server, "/api/generate", {"model": asked, "prompt": "x", "options": short}),
        ok(server, "/api/generate", {"model": asked}),  # loaded
        ok(server, "/api/chat", {"model": asked, "messages": [{"role": "user", "content": "x"}], "stream": False, "options": short}),
        *lines(server, "/api/chat", {"model": asked, "messages": [{"role": "user", "content": "x"}], "options": short}),
        ok(server, "/api/chat", {"model": asked, "messages": []}),  # loaded
        ok(server, "/api/embed", {"model": asked, "input": "x"}),
        ok(server, "/api/embed", {"model": asked}),  # loaded
    ]
    assert [answer["model"] for answer in answers] == [asked] * len(answers)
    assert ok(server, "/api/generate", {"prompt": "x", "stream": False, "options": short})["model"] == server["model"]  # none named: the served one's


def test_a_name_served_with_its_tag_answers_to_the_bare_name_too(server):
    import dataclasses

    from fastapi.testclient import TestClient

    from aigc.serve.app import ServeSettings, create_app

    tagged = dataclasses.replace(server["backend"], name="tiny:latest")
    web = TestClient(create_app({"tiny:latest": tagged}, ServeSettings()), base_url="http://127.0.0.1:8000")  # no lifespan: the schedulers stay
    assert [m["name"] for m in web.get("/api/tags").json()["models"]] == ["tiny:latest"]  # tagged already: as it is
    assert web.post("/api/show", json={"model": "tiny"}).status_code == 200  # ollama's bare name is NAME:latest


def test_generate_streams_json_lines_that_end_with_the_counts_and_the_openai_routes_text(server):
    streamed = lines(server, "/api/generate", {"model": server["model"], "prompt": "Paris is", "options": {**GREEDY, "num_predict": 6}})  # stream: ollama's default
    *pieces, last = streamed
    assert pieces and all(p["done"] is False and p["model"] == server["model"] and p["created_at"] for p in pieces)
    assert last["done"] is True and last["response"] == "" and last["done_reason"] == "length" and last["eval_count"] == 6
    same = openai_chat(server, "Paris is", temperature=0, repetition_penalty=1.0, max_tokens=6)
    assert "".join(p["response"] for p in pieces) == same["message"]["content"]
    assert last["prompt_eval_count"] > 0 and last["total_duration"] >= last["eval_duration"] >= 0
    whole = ok(server, "/api/generate", {"model": server["model"], "prompt": "Paris is", "stream": False, "options": {**GREEDY, "num_predict": 6}})
    assert whole["response"] == same["message"]["content"] and whole["done"] is True and whole["eval_count"] == 6
    assert whole["prompt_eval_count"] == last["prompt_eval_count"]
    assert 0 < whole["eval_duration"] <= whole["total_duration"] - whole["prompt_eval_duration"]  # split where the first text came, whole or streamed


def test_generate_takes_a_system_prompt_raw_prompts_and_stops(server):
    options = {**GREEDY, "num_predict": 8}
    system = ok(server, "/api/generate", {"prompt": "Hi", "system": "Be brief", "stream": False, "options": options})
    chat = ok(server, "/v1/chat/completions", {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}], "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 8})
    assert system["response"] == chat["choices"][0]["message"]["content"]
    raw = ok(server, "/api/generate", {"prompt": "Paris is", "raw": True, "stream": False, "options": options})
    completion = ok(server, "/v1/completions", {"prompt": "Paris is", "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 8})
    assert raw["response"] == completion["choices"][0]["text"] and raw["prompt_eval_count"] == completion["usage"]["prompt_tokens"]
    text = raw["response"]
    stop = text[len(text) // 2 :][:2]
    cut = ok(server, "/api/generate", {"prompt": "Paris is", "raw": True, "stream": False, "options": {**options, "stop": [stop]}})
    assert cut["response"] == text[: text.index(stop)] and cut["done_reason"] == "stop"


def test_an_empty_prompt_or_no_messages_loads_the_model_and_is_done(server):
    for path, body, key in (("/api/generate", {"model": server["model"]}, "response"), ("/api/chat", {"model": server["model"], "messages": []}, "message")):
        answer = ok(server, path, body)
        assert answer["done"] is True and answer["done_reason"] == "load" and key in answer
        for keep_alive in (0, "0", "0s"):  # what a client sends to unload the model: answered as ollama answers it
            assert ok(server, path, {**body, "keep_alive": keep_alive})["done_reason"] == "unload"
        for keep_alive in ("5m", "1h30m", "-1s", ".5h", 1800, -1, None):  # Continue's seconds, Zed's -1: as ollama takes them
            assert ok(server, path, {**body, "keep_alive": keep_alive})["done_reason"] == "load", keep_alive


def test_chat_streams_message_pieces_and_answers_whole_as_the_openai_route(server):
    messages = [{"role": "user", "content": "Hello"}]
    same = openai_chat(server, "Hello", temperature=0, repetition_penalty=1.0, max_tokens=5)
    *pieces, last = lines(server, "/api/chat", {"model": server["model"], "messages": messages, "options": {**GREEDY, "num_predict": 5}})
    assert all(p["done"] is False and p["message"]["role"] == "assistant" for p in pieces)
    assert "".join(p["message"]["content"] for p in pieces) == same["message"]["content"]
    assert last["done"] is True and last["message"] == {"role": "assistant", "content": ""} and last["eval_count"] == 5
    whole = ok(server, "/api/chat", {"model": server["model"], "messages": messages, "stream": False, "options": {**GREEDY, "num_predict": 5}})
    assert whole["message"] == {"role": "assistant", "content": same["message"]["content"]} and whole["done_reason"] == "length"


def test_num_predict_is_held_to_what_the_server_allows_as_ollama_runs_to_the_context(server):
    for num_predict in (-1, 0, 10_000):  # unlimited (0 too, as ollama's runners take it); more than --max-tokens allows (40 here)
        whole = ok(server, "/api/generate", {"prompt": "a", "stream": False, "options": {**GREEDY, "num_predict": num_predict, "stop": []}})
        assert whole["eval_count"] <= 40


def test_format_holds_the_answer_to_a_json_schema(server):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    whole = ok(server, "/api/chat", {"messages": [{"role": "user", "content": "JSON"}], "stream": False, "format": schema, "options": {"num_predict": 30, "seed": 1}})
    assert whole["done_reason"] == "stop" and list(json.loads(whole["message"]["content"])) == ["ok"]
    assert "format must be" in error(server, "/api/chat", {"messages": [{"role": "user", "content": "x"}], "format": "yaml"}, 400)


def test_tool_calls_are_answered_in_ollamas_shape_and_go_back_in_it(server, monkeypatch):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'

    def submit(job):  # the model answers with the call, a few characters a piece
        pieces = [text[k : k + 7] for k in range(0, len(text), 7)]
        for piece in pieces:
            job.send(("piece", 0, piece, None))
        job.send(("end", 0, "stop"))
        job.send(("done", [Completion(text, len(job.rows[0]), len(pieces), "stop")], None))

    monkeypatch.setattr(server["backend"].scheduler, "submit", submit)
    body = {"messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": tools}
    call = {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}
    whole = ok(server, "/api/chat", {**body, "stream": False})
    assert whole["message"] == {"role": "assistant", "content": "", "tool_calls": [call]} and whole["done"] is True
    streamed = lines(server, "/api/chat", body)
    assert [line["message"].get("tool_calls") for line in streamed] == [[call], None] and streamed[-1]["done"] is True
    history = [*body["messages"], {"role": "assistant", "content": "", "tool_calls": [call]}, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    assert ok(server, "/api/chat", {**body, "messages": history, "stream": False})["done"] is True


def test_tools_with_a_format_answer_in_the_format_as_ollama_does(server, monkeypatch):
    """ollama lists the tools in the prompt and holds the answer to `format`; the answer is a call
    only where the formatted text is one, and is never decoded again under the calls' schema."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    body = {"messages": [{"role": "user", "content": "JSON"}], "tools": tools, "format": schema, "options": {"num_predict": 30, "seed": 1}}
    whole = ok(server, "/api/chat", {**body, "stream": False})
    assert whole["done_reason"] == "stop" and list(json.loads(whole["message"]["content"])) == ["ok"] and "tool_calls" not in whole["message"]
    streamed = lines(server, "/api/chat", body)
    assert "".join(line["message"]["content"] for line in streamed) == whole["message"]["content"] and streamed[-1]["done"] is True
    plain = ok(server, "/api/chat", {**body, "tools": None, "stream": False})  # the tools are in the prompt: another prompt
    assert whole["prompt_eval_count"] > plain["prompt_eval_count"]

    held = []

    def submit(job):  # the model's answer under the format: a call, or JSON that starts as one (a "name" field) but is none
        held.append(job.params.json_schema)
        text = answers.pop(0)
        job.send(("piece", 0, text, None))
        job.send(("end", 0, "stop"))
        job.send(("done", [Completion(text, len(job.rows[0]), 1, "stop")], None))

    monkeypatch.setattr(server["backend"].scheduler, "submit", submit)
    no_call = '{"name": "Oslo", "ok": true}'
    answers = ['{"name": "get_weather", "arguments": {"city": "Oslo"}}', no_call, no_call]
    called = ok(server, "/api/chat", {**body, "format": "json", "stream": False})
    assert called["message"]["tool_calls"] == [{"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]
    named = {"type": "object", "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}}}
    assert ok(server, "/api/chat", {**body, "format": named, "stream": False})["message"] == {"role": "assistant", "content": no_call}
    assert "".join(line["message"]["content"] for line in lines(server, "/api/chat", {**body, "format": named})) == no_call
    assert held == [{"type": "object"}, named, named]  # each held to its format, once (never to the calls' schema)


def test_embed_and_the_older_embeddings_give_the_openai_routes_vectors(server):
    vectors = [d["embedding"] for d in ok(server, "/v1/embeddings", {"input": ["a cat", "a dog"]})["data"]]
    embedded = ok(server, "/api/embed", {"model": server["model"], "input": ["a cat", "a dog"]})
    assert embedded["embeddings"] == vectors and embedded["model"] == server["model"] and embedded["prompt_eval_count"] > 0
    alone = ok(server, "/v1/embeddings", {"input": "a dog"})["data"][0]["embedding"]  # batched with no other text
    assert ok(server, "/api/embed", {"input": "a dog"})["embeddings"] == [alone]
    assert ok(server, "/api/embeddings", {"model": server["model"], "prompt": "a dog"}) == {"embedding": alone}
    for nothing in ({}, {"input": []}, {"input": ""}):  # as ollama: nothing embedded (a client's way to load the model)
        assert ok(server, "/api/embed", {"model": server["model"], **nothing}) == {"model": server["model"], "embeddings": []}
    assert 'model "nope" not found, try pulling it first (served here: ' in error(server, "/api/embed", {"model": "nope", "input": []}, 404)


def test_embed_takes_any_number_of_texts_as_ollama_and_writes_them_out_a_slice_at_a_time(server, monkeypatch):
    """OpenAI's 2048 texts a request are no limit on /api/embed (ollama has none): more are embedded a slice
    at a time and written out as they come, the same vectors as in one go."""
    from aigc.serve import ollama_api

    texts = [str(i % 5) for i in range(2049)]
    many = ok(server, "/api/embed", {"input": texts, "dimensions": 8})
    (alone,) = ok(server, "/api/embed", {"input": "3", "dimensions": 8})["embeddings"]
    assert len(many["embeddings"]) == 2049 and many["embeddings"][3] == many["embeddings"][2048] == pytest.approx(alone, abs=1e-4)
    assert many["prompt_eval_count"] == 2049 * ok(server, "/api/embed", {"input": "3"})["prompt_eval_count"]
    status, _, text = call(server, "/v1/embeddings", {"input": texts})
    assert status == 400 and "at most 2048" in text  # OpenAI's rule stays OpenAI's
    monkeypatch.setattr(ollama_api, "EMBED_SLICE", 2)
    few = ["a cat", "a dog", "a bird", "a fish", "a cow"]
    sliced = ok(server, "/api/embed", {"model": server["model"], "input": few})
    whole = ok(server, "/v1/embeddings", {"input": few})
    assert len(sliced["embeddings"]) == 5 and sliced["model"] == server["model"]
    for got, expected in zip(sliced["embeddings"], whole["data"]):
        assert got == pytest.approx(expected["embedding"], abs=1e-4)
    assert sliced["prompt_eval_count"] == whole["usage"]["prompt_tokens"] and sliced["total_duration"] > 0 and sliced["load_duration"] == 0
    assert "at most 2048" in error(server, "/api/embed", {"input": texts, "truncate": False}, 400)  # an over-long text's 400 must come before the answer
    assert 'model "nope" not found, try pulling it first (served here: ' in error(server, "/api/embed", {"model": "nope", "input": few}, 404)
    long = "the cat sat on the mat and " * 150  # far more than the tiny model's 512 tokens
    assert "512" in error(server, "/api/embed", {"input": [*few, long], "truncate": False}, 400)  # in one go: its 400 before the answer


def test_the_embedding_routes_take_bodies_up_to_max_embed_bytes_and_a_413_names_the_flag_to_raise(server):
    """A document set in one /api/embed request (LangChain's `OllamaEmbeddings`) is bounded by `--max-embed-bytes`,
    not by `--max-request-bytes`; each route's 413 names the flag that raises its limit."""
    texts = [f"paragraph {i} about bees and their hives" for i in range(800)]  # about 33 KB: over --max-request-bytes (20,000)
    assert len(ok(server, "/api/embed", {"input": texts, "dimensions": 4})["embeddings"]) == 800
    assert len(ok(server, "/v1/embeddings", {"input": texts, "dimensions": 4})["data"]) == 800
    assert "holds 512" in error(server, "/api/embeddings", {"prompt": " ".join(texts)[:30_000]}, 400)  # read, and too long for the model: not a 413
    for path in ("/api/embed", "/v1/embeddings"):
        status, _, text = call(server, path, {"input": texts * 2})  # about 66 KB: over --max-embed-bytes (60,000)
        assert status == 413 and "larger than 60000 bytes" in text and "--max-embed-bytes N" in text, text
    status, _, text = call(server, "/api/chat", {"messages": [{"role": "user", "content": "x" * 30_000}]})
    assert status == 413 and json.loads(text)["error"].endswith("start the server with --max-request-bytes N for more")


def test_embed_reads_every_text_before_answering_so_a_later_texts_error_is_a_400_naming_it(server, monkeypatch):
    from aigc.serve import ollama_api

    monkeypatch.setattr(ollama_api, "EMBED_SLICE", 2)
    blank_start = " " * 4096 + "x"  # what the context holds of it is white space only
    words = error(server, "/api/embed", {"input": ["a cat", "a dog", "a bird", "a fish", blank_start]}, 400)
    assert words.startswith("input.4: ") and "white space only" in words
    assert error(server, "/api/embed", {"input": blank_start}, 400).startswith("input: ")
    assert "at most 2048 with truncate: false" in error(server, "/api/embed", {"input": ["a"] * 2049, "truncate": False}, 400)


def test_embed_ends_an_answer_cut_after_it_started_with_ollamas_error(server, monkeypatch):
    """Queue full (or the server stopping) in a later slice: the answer is still JSON, with `"error"`."""
    from aigc.serve import ollama_api
    from aigc.serve.scheduler import BatchedEngine, QueueFullError

    embed = BatchedEngine.embed

    def full_at_a_stop(self, texts):
        if "stop" in texts:
            raise QueueFullError("the queue is full; retry shortly")
        return embed(self, texts)

    monkeypatch.setattr(ollama_api, "EMBED_SLICE", 2)
    monkeypatch.setattr(BatchedEngine, "embed", full_at_a_stop)
    status, _, text = call(server, "/api/embed", {"input": ["a cat", "a dog", "a bird", "a fish", "stop", "a cow"]})
    answer = json.loads(text)
    assert status == 200 and len(answer["embeddings"]) == 4 and answer["error"] == "the queue is full; retry shortly" and "prompt_eval_count" not in answer


def test_embed_truncates_a_text_longer_than_the_context_unless_truncate_is_false(server):
    long = "the cat sat on the mat and " * 150  # far more than the tiny model's 512 tokens
    dog = ok(server, "/api/embed", {"input": "a dog"})
    cut = ok(server, "/api/embed", {"input": [long, "a dog"]})
    assert len(cut["embeddings"]) == 2 and cut["embeddings"][1] == pytest.approx(dog["embeddings"][0], abs=1e-4)  # batched with the long one
    assert dog["prompt_eval_count"] < cut["prompt_eval_count"] - dog["prompt_eval_count"] < 512  # the long text's tokens: what the context holds
    alone = ok(server, "/api/embed", {"input": long, "truncate": True})["embeddings"]
    assert alone[0] == pytest.approx(cut["embeddings"][0], abs=1e-4)
    start = long[: len(long) // 2]  # the start is kept, so a text already cut there is cut the same
    assert ok(server, "/api/embed", {"input": start})["embeddings"] == alone
    assert "input.1: a text takes" in error(server, "/api/embed", {"input": ["a dog", long], "truncate": False}, 400)
    assert ok(server, "/api/embed", {"input": "a dog", "truncate": False})["embeddings"] == dog["embeddings"]
    assert "truncate" in error(server, "/api/embed", {"input": "a dog", "truncate": "no"}, 400)
    status, _, text = call(server, "/v1/embeddings", {"input": long})  # OpenAI's route: over-long input is a 400, as OpenAI's
    assert status == 400 and json.loads(text)["error"]["code"] == "context_length_exceeded"


def test_pull_of_a_served_model_succeeds_as_ollamas_and_of_another_says_how_aigc_adds_models(server):
    assert lines(server, "/api/pull", {"model": server["model"]}) == [{"status": "success"}]  # streamed by default
    assert ok(server, "/api/pull", {"name": server["model"] + ":latest", "stream": False}) == {"status": "success"}
    words = error(server, "/api/pull", {"model": "HuggingFaceTB/SmolLM2-360M-Instruct"}, 404)  # a hub id: what `aigc models pull` takes
    assert "is not served" in words and "`aigc models pull HuggingFaceTB/SmolLM2-360M-Instruct` and add `-m HuggingFaceTB/SmolLM2-360M-Instruct` to the server's models" in words  # not `aigc serve -m`, which drops the others
    for ollamas in ("llama3.2", "llama3.2:3b", "echo"):  # no aigc alias nor hub id (echo: nothing to pull)
        words = error(server, "/api/pull", {"model": ollamas}, 404)
        assert f"{ollamas!r} is not served" in words and "`aigc models pull MODEL` (MODEL: an aigc alias, `aigc models list`, or a Hugging Face id ORG/NAME)" in words
    assert "model is required" in error(server, "/api/pull", {}, 400)


@pytest.mark.parametrize(
    "path, method, words",
    [
        ("/api/push", "POST", "cannot push"), ("/api/create", "POST", "aigc models alias"), ("/api/copy", "POST", "aigc models alias"),
        ("/api/delete", "DELETE", "aigc models rm"), ("/api/blobs/sha256:abc", "POST", "aigc models alias"),
    ],
)
def test_ollamas_other_model_routes_say_what_to_do_in_aigc_instead(server, path, method, words):
    status, kind, text = call(server, path, {"model": server["model"]}, method=method)
    assert status == 501 and kind == "application/json" and words in json.loads(text)["error"]
    assert call(server, path, {"model": "x"}, key=None, method=method)[0] == 401


def test_head_of_a_blob_is_answered_without_a_body(server):
    status, _, text = call(server, "/api/blobs/sha256:abc", method="HEAD")
    assert status == 501 and text == ""


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, 'model "nope" not found, try pulling it first (served here: '),
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, 'model "nope" not found, try pulling it first (served here: '),
        ("/api/embed", {"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first (served here: '),
        ("/api/generate", {"prompt": "x", "options": {"num_predict": "many"}}, 400, "num_predict"),
        ("/api/generate", {"prompt": "x", "options": {"temperature": "9"}}, 400, "temperature"),
        ("/api/generate", {"prompt": "x", "stream": "yes"}, 400, "stream"),
        ("/api/generate", {"prompt": "x", "images": ["aGk="]}, 400, "text only"),
        ("/api/generate", {"prompt": "x", "context": [1, 2]}, 400, "/api/chat"),
        ("/api/chat", {"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400, "images cannot be read"),
        ("/api/chat", {"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        ("/api/nothing", {}, 404, "not an endpoint"),
    ],
)
def test_errors_are_ollamas_shape_with_the_right_status(server, path, body, status, words):
    assert words in error(server, path, body, status)


@pytest.mark.parametrize(
    "keep_alive, words",
    [
        ("bogus", 'keep_alive: time: invalid duration "bogus"'),
        ("5 minutes", 'keep_alive: time: unknown unit " minutes" in duration "5 minutes"'),
        ("5", 'keep_alive: time: missing unit in duration "5"'),
        ("", 'keep_alive: time: invalid duration ""'),
        ([1], 'keep_alive must be a duration such as "5m" or a number of seconds, got [1]'),
        (True, 'keep_alive must be a duration such as "5m" or a number of seconds, got true'),
    ],
)
def test_a_keep_alive_ollama_cannot_read_is_its_400_with_gos_words(server, keep_alive, words):
    """ollama reads `keep_alive` with Go's time.ParseDuration (or as seconds) and answers 400 for anything else:
    a typo in a client's setting is said, on every route that takes it, with nothing to answer or not."""
    for path, body in (("/api/generate", {"prompt": "x"}), ("/api/generate", {}), ("/api/chat", {"messages": [{"role": "user", "content": "x"}]}), ("/api/embed", {"input": "x"}), ("/api/embeddings", {"prompt": "x"})):
        assert error(server, path, {**body, "keep_alive": keep_alive, "options": {"num_predict": 1}}, 400).startswith(words), path


def test_unknown_options_are_ignored_as_ollama_ignores_them(server):
    plain = ok(server, "/api/generate", {"prompt": "x", "stream": False, "options": {**GREEDY, "num_predict": 4}})
    more = ok(server, "/api/generate", {"prompt": "x", "stream": False, "keep_alive": "5m", "options": {**GREEDY, "num_predict": 4, "num_ctx": 8192, "mirostat": 0}})
    assert more["response"] == plain["response"]


@pytest.mark.parametrize("path, method", [("/api/tags", "GET"), ("/api/ps", "GET"), ("/api/show", "POST"), ("/api/generate", "POST"), ("/api/chat", "POST"), ("/api/embed", "POST"), ("/api/embeddings", "POST")])
def test_the_api_key_is_still_required(server, path, method):
    status, _, text = call(server, path, {"prompt": "x"} if method == "POST" else None, key=None, method=method)
    assert status == 401 and "API key" in json.loads(text)["error"]


def test_a_wrong_key_is_refused_even_where_no_key_is_needed(server):
    """Open WebUI's "Verify connection" reads /api/version with the key it was given: a wrong one fails
    there, as it would on /api/tags next; none at all still gets the version (health checks send none)."""
    for path in ("/", "/api/version", "/version", "/health", "/metrics"):
        assert call(server, path, key="wrong")[0] == 401, path
        assert call(server, path, key=None)[0] == call(server, path)[0] == 200, path
    for path in ("/api/version", "/"):  # ollama's liveness route too: its clients read `error` as a string
        status, _, text = call(server, path, key="wrong")
        assert json.loads(text) == {"error": "missing or wrong API key; send Authorization: Bearer KEY"}, path
    assert isinstance(json.loads(call(server, "/version", key="wrong")[2])["error"], dict)  # aigc's own: OpenAI's shape
    for sent in ("Bearer ", "Bearer", "Basic dXNlcjpwYXNz"):  # a client set up with no key; a proxy's own credentials: no key of this server's
        request = urllib.request.Request(server["url"] + "/health", headers={"Authorization": sent})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200, sent
    assert call(server, "/api/version", key="wrong", method="HEAD")[0] == 401


def _quit(path, streamed):
    """What `RequestIds` sends for a request on `path` the server quits on (an ndjson stream begun, or not)."""
    import asyncio

    from aigc.serve.app import RequestIds

    async def app(scope, receive, send):
        if streamed:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]})
            await send({"type": "http.response.body", "body": b'{"response":"Hel","done":false}\n', "more_body": True})
        raise asyncio.CancelledError  # what asyncio.run does to a task still running when uvicorn quits

    sent = []

    async def send(message):
        sent.append(message)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(RequestIds(app)({"type": "http", "path": path, "headers": []}, None, send))
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body")
    return sent


def test_a_stream_the_server_quits_on_ends_with_an_error_line():
    last = _quit("/api/generate", streamed=True)[-1]["body"]
    assert last.endswith(b"\n") and "server quit" in json.loads(last)["error"]


@pytest.mark.parametrize("header, value, code", [("Origin", "http://evil.example", "origin_not_allowed"), ("Host", "evil.example:8000", "host_not_allowed")])
def test_requests_refused_before_they_run_are_answered_in_ollamas_shape_on_its_paths(server, header, value, code):
    def refused(path):
        request = urllib.request.Request(server["url"] + path, headers={header: value})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=60)
        assert caught.value.code == 403
        return json.loads(caught.value.read())

    assert "refused" in refused("/api/version")["error"]
    assert refused("/v1/models")["error"]["code"] == code  # the OpenAI routes keep OpenAI's shape


def test_a_request_the_server_quits_on_before_answering_is_a_503_in_ollamas_shape():
    start, body = _quit("/api/generate", streamed=False)
    assert start["status"] == 503 and "server quit" in json.loads(body["body"])["error"]
    assert json.loads(_quit("/v1/completions", streamed=False)[-1]["body"])["error"]["code"] == "unavailable"


def test_eval_duration_counts_a_first_token_that_makes_no_text(server):
    options = {**GREEDY, "num_predict": 1}
    token = ok(server, "/api/generate", {"prompt": "Hi", "stream": False, "options": options})["response"]
    assert token  # the tiny model's first token, made a stop string: decoded, yet no text is sent
    stopped = ok(server, "/api/generate", {"prompt": "Hi", "stream": False, "options": {**options, "num_predict": 5, "stop": [token]}})
    assert stopped["response"] == "" and stopped["eval_count"] == 1
    assert 0 < stopped["eval_duration"] and stopped["prompt_eval_duration"] < stopped["total_duration"]


def test_an_error_mid_stream_is_the_streams_last_json_line(server, monkeypatch):
    from aigc.errors import BadInputError

    def submit(job):  # a piece, then the job fails
        job.send(("piece", 0, "Hel", None))
        job.send(("error", BadInputError("max_tokens is too large for what is left")))

    monkeypatch.setattr(server["backend"].scheduler, "submit", submit)
    *pieces, last = lines(server, "/api/generate", {"prompt": "Hi"})
    assert [p["response"] for p in pieces] == ["Hel"] and list(last) == ["error"] and "num_predict" in last["error"]


def test_an_unexpected_error_on_an_ollama_path_is_a_500_in_ollamas_shape():
    import asyncio

    from aigc.serve.app import RequestIds

    async def app(scope, receive, send):
        raise ZeroDivisionError("a bug")

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(RequestIds(app)({"type": "http", "path": "/api/chat", "headers": [], "method": "POST", "query_string": b""}, None, send))
    assert sent[0]["status"] == 500 and isinstance(json.loads(sent[-1]["body"])["error"], str)


def _long_chat(turns: int) -> list[dict]:
    """A system message, `turns` questions and answers, then a last question."""
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"Question {i}: " + "tell me more " * 6}, {"role": "assistant", "content": f"Answer {i}: " + "there is more " * 6}]
    return messages + [{"role": "user", "content": "Say hi."}]


def _tokens(server, messages) -> int:
    return ok(server, "/tokenize", {"messages": messages})["count"]


@pytest.mark.parametrize("num_ctx", [None, 300, 300.0])
def test_chat_longer_than_the_context_drops_its_oldest_turns_keeping_the_system_message_and_the_last(server, num_ctx):
    messages = _long_chat(8)
    holds = server["backend"].batched.context_length
    assert _tokens(server, messages) > holds
    options = {**GREEDY, "num_predict": 5, **({"num_ctx": num_ctx} if num_ctx else {})}
    whole = ok(server, "/api/chat", {"messages": messages, "stream": False, "options": options})
    budget = int(num_ctx or holds) - 5
    # the longest tail of whole turns (from a user message) that fits, after the system message
    tails = [messages[:1] + messages[k:] for k in range(1, len(messages), 2)]
    kept = next(tail for tail in tails if _tokens(server, tail) <= budget)
    assert whole["prompt_eval_count"] == _tokens(server, kept) and whole["eval_count"] == 5
    same = ok(server, "/v1/chat/completions", {"messages": kept, "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 5})
    assert whole["message"]["content"] == same["choices"][0]["message"]["content"]
    streamed = lines(server, "/api/chat", {"messages": messages, "options": options})
    assert streamed[-1]["prompt_eval_count"] == whole["prompt_eval_count"]
    status, _, text = call(server, "/v1/chat/completions", {"messages": messages, "max_tokens": 5})  # OpenAI's API keeps its 400
    assert status == 400 and json.loads(text)["error"]["code"] == "context_length_exceeded"



def _short_chat(turns: int) -> list[dict]:
    messages = [m for i in range(turns) for m in ({"role": "user", "content": f"question {i} is here"}, {"role": "assistant", "content": f"answer {i} is here"})]
    return messages + [{"role": "user", "content": "Say hi"}]


def test_a_chat_is_trimmed_whenever_it_would_leave_its_answer_less_than_the_capped_num_predict(server, monkeypatch):
    backend = server["backend"]
    holds, cap = backend.batched.context_length, 40  # the server's --max-tokens-cap
    asked, original = [], backend.scheduler.submit
    monkeypatch.setattr(backend.scheduler, "submit", lambda job: asked.append(job.params.max_tokens) or original(job))
    for turns in range(9, 15):  # from a chat that leaves room to spare to one longer than the context
        messages = _short_chat(turns)
        whole = _tokens(server, messages)
        for num_predict in (None, cap, 4096):  # 4096: more than the server allows, which it caps first, so it drops no more history
            options = {**GREEDY, **({"num_predict": num_predict} if num_predict else {})}
            answer = ok(server, "/api/chat", {"messages": messages, "stream": False, "options": options})
            assert asked.pop() == cap  # never the few tokens a nearly full context leaves
            kept = answer["prompt_eval_count"]
            assert kept == whole if whole + cap <= holds else kept + cap <= holds
    for words in (50, 56, 57):  # num_ctx 300: a last message that leaves it 34, 4 and no tokens is cut to leave the answer its 40, as ollama cuts one
        messages = [{"role": "user", "content": "word " * words}]
        answer = ok(server, "/api/chat", {"messages": messages, "stream": False, "options": {**GREEDY, "num_ctx": 300}})
        assert asked.pop() == cap and answer["prompt_eval_count"] == min(_tokens(server, messages), 300 - cap)


def test_num_ctx_holds_a_generated_answer_too_and_must_be_a_whole_number_of_tokens(server):
    body = {"prompt": "Paris is", "raw": True, "stream": False}
    prompt = ok(server, "/api/generate", {**body, "options": {**GREEDY, "num_predict": 1}})["prompt_eval_count"]
    short = ok(server, "/api/generate", {**body, "options": {**GREEDY, "num_predict": -1, "stop": [], "num_ctx": prompt + 3}})
    assert short["eval_count"] == 3 and short["done_reason"] == "length"
    assert "num_ctx must be a whole number" in error(server, "/api/chat", {"messages": [{"role": "user", "content": "hi"}], "options": {"num_ctx": 8.5}}, 400)


@pytest.mark.parametrize(
    "options, used, said",
    [
        ({"repeat_penalty": 0}, {"repetition_penalty": 1.0}, "option repeat_penalty 0 taken as 1.0 (off), as ollama takes a repeat_penalty of 0 or less"),  # Open WebUI's frequency_penalty 0
        ({"temperature": -1}, {"temperature": 0.0}, "option temperature -1 taken as 0 (greedy), as ollama takes a temperature below 0"),
        ({"top_p": 1.5}, {"top_p": 1.0}, "option top_p 1.5 taken as 1 (off), as ollama takes a top_p above 1"),
        ({"temperature": 5, "frequency_penalty": -3}, {"temperature": 2.0, "frequency_penalty": -2.0}, "option frequency_penalty -3 taken as -2, the nearest this server applies (ollama takes any)"),
        ({"num_ctx": 0, "num_predict": 1}, {"max_tokens": 1}, "option num_ctx 0 taken as 4, as ollama takes a num_ctx below 4"),
    ],
)
def test_option_values_the_v1_routes_refuse_are_taken_as_ollama_takes_them_and_said_once_in_the_log(server, monkeypatch, caplog, options, used, said):
    """ollama's sampler and scheduler take any number (Open WebUI maps OpenAI's frequency_penalty 0 onto repeat_penalty):
    the ollama routes use such a value as ollama does, or the nearest this server applies, and log it the first time only;
    OpenAI's routes keep OpenAI's 400."""
    backend = server["backend"]
    params, original = [], backend.scheduler.submit
    monkeypatch.setattr(backend.scheduler, "submit", lambda job: params.append(job.params) or original(job))
    with caplog.at_level(logging.WARNING, logger="aigc.serve"):
        for path, body in (("/api/generate", {"prompt": "Hi"}), ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]}), ("/api/generate", {"prompt": "Hi"})):
            ok(server, path, {**body, "stream": False, "options": {"num_predict": 2, **options}})
            last = params.pop()
            assert {name: getattr(last, name) for name in used} == used
    assert sum(said in r.getMessage() for r in caplog.records) == 1, caplog.text
    if "num_ctx" in options:
        return
    refused = {"repeat_penalty": "repetition_penalty", "temperature": "temperature", "top_p": "top_p", "frequency_penalty": "frequency_penalty"}
    status, _, text = call(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], **{refused[k]: v for k, v in options.items()}})
    assert status == 400, text


def _cut(ids: list[int], budget: int, keep: int) -> list[int]:
    """ollama's runner's cut: the first `keep` tokens, then the last that fit `budget`."""
    return ids[:keep] + ids[len(ids) - (budget - keep) :]


def test_generate_cuts_a_prompt_longer_than_the_context_keeping_num_keep_tokens_and_its_end_as_ollama(server, caplog):
    backend = server["backend"]
    holds, bos = backend.batched.context_length, backend.engine.tokenizer.bos_token_id
    prompt = " ".join(f"w{i}" for i in range(400))
    ids = ok(server, "/tokenize", {"prompt": prompt})["tokens"]
    bos = int(ids[0] == bos)  # ollama's num_keep leaves a BOS token out of its count
    assert len(ids) > holds
    for options, window, keep in (({}, holds, 4 + bos), ({"num_ctx": 300, "num_keep": 10}, 300, 10 + bos), ({"num_keep": 0}, holds, bos), ({"num_keep": -1}, holds, holds - 5 - 1)):
        with caplog.at_level(logging.WARNING, logger="aigc.serve"):
            answer = ok(server, "/api/generate", {"prompt": prompt, "raw": True, "stream": False, "options": {**GREEDY, "num_predict": 5, **options}})
        kept = _cut(ids, window - 5, keep)  # num_predict's 5 tokens left for the answer
        same = ok(server, "/v1/completions", {"prompt": kept, "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 5})
        assert answer["prompt_eval_count"] == window - 5 and answer["response"] == same["choices"][0]["text"], options
        assert f"truncating input prompt (limit={window - 5} prompt={len(ids)} keep={keep} new={window - 5})" in caplog.text
        caplog.clear()
    templated = ok(server, "/api/generate", {"prompt": prompt, "stream": False, "options": {**GREEDY, "num_predict": 5}})
    chat_ids = ok(server, "/tokenize", {"messages": [{"role": "user", "content": prompt}]})["tokens"]
    same = ok(server, "/v1/completions", {"prompt": _cut(chat_ids, holds - 5, 4 + (chat_ids[0] == backend.engine.tokenizer.bos_token_id)), "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 5})
    assert templated["prompt_eval_count"] == holds - 5 and templated["response"] == same["choices"][0]["text"]  # the chat template's end kept
    status, _, text = call(server, "/v1/completions", {"prompt": prompt, "max_tokens": 5})  # OpenAI's API keeps its 400
    assert status == 400 and json.loads(text)["error"]["code"] == "context_length_exceeded"


def test_truncate_false_keeps_a_prompt_longer_than_num_ctx_whole_and_refuses_it_as_ollama(server):
    prompt = " ".join(f"w{i}" for i in range(100))
    tokens = ok(server, "/api/generate", {"prompt": prompt, "raw": True, "stream": False, "options": {"num_predict": 1}})["prompt_eval_count"]
    refused = error(server, "/api/generate", {"prompt": prompt, "raw": True, "truncate": False, "options": {"num_ctx": tokens - 10}}, 400)
    assert refused.startswith("the input length exceeds the context length") and f"takes {tokens} tokens, 10 more than the {tokens - 10} of num_ctx" in refused
    long_chat = _long_chat(8)
    assert "the messages take" in error(server, "/api/chat", {"messages": long_chat, "truncate": False}, 400)  # no turn dropped either
    whole = ok(server, "/api/generate", {"prompt": prompt, "raw": True, "truncate": False, "stream": False, "options": {**GREEDY, "num_predict": 5, "num_ctx": tokens + 2}})
    assert whole["prompt_eval_count"] == tokens and whole["eval_count"] <= 2  # kept whole: its answer has what num_ctx leaves
    assert "truncate" in error(server, "/api/generate", {"prompt": prompt, "truncate": "no"}, 400)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"temperature": "0.7"}, 'option "temperature" must be a number, got "0.7"; send it as a JSON number, without quotes: "temperature": 0.7'),
        ({"num_predict": "5"}, 'option "num_predict" must be a whole number, got "5"'),
        ({"top_k": True}, 'option "top_k" must be a whole number, got true'),
        ({"mirostat_eta": "fast"}, 'option "mirostat_eta" must be a number, got "fast"; send it as a JSON number'),  # not applied here, but checked, as ollama checks each it knows
    ],
)
def test_numeric_options_given_as_text_are_400s_naming_the_option_as_ollamas_typed_options(server, options, words):
    for path, body in (("/api/generate", {"prompt": "Hi"}), ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]})):
        assert words in error(server, path, {**body, "options": options}, 400)


def test_embed_with_truncate_false_names_the_over_long_text_among_many_and_by_how_much(server):
    long = "the cat sat on the mat and " * 150
    texts = ["a dog"] * 100
    texts[57] = long  # past the first of the engine's calls (8 texts each): its place among all of them
    refused = error(server, "/api/embed", {"input": texts, "truncate": False}, 400)
    takes, over = re.fullmatch(r"input\.57: a text takes (\d+) tokens but .* holds 512 \((\d+) too many\); shorten it or split it", refused).groups()
    assert int(takes) - int(over) == 512
    assert error(server, "/api/embed", {"input": long, "truncate": False}, 400).startswith("input: a text takes ")


def test_chat_whose_last_message_is_the_assistants_continues_it(server):
    messages = [{"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "The color of the sky is"}]
    whole = ok(server, "/api/chat", {"messages": messages, "stream": False, "options": {**GREEDY, "num_predict": 6}})
    same = ok(server, "/v1/chat/completions", {"messages": messages, "continue_final_message": True, "add_generation_prompt": False, "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 6})
    assert whole["message"]["content"] == same["choices"][0]["message"]["content"] and whole["prompt_eval_count"] == same["usage"]["prompt_tokens"]
    turn = ok(server, "/v1/chat/completions", {"messages": messages, "max_tokens": 1})  # a new turn takes more tokens: the closed one and the opened one
    assert turn["usage"]["prompt_tokens"] > whole["prompt_eval_count"]
    streamed = lines(server, "/api/chat", {"messages": messages, "options": {**GREEDY, "num_predict": 6}})
    assert "".join(line["message"]["content"] for line in streamed) == whole["message"]["content"]


def test_seed_minus_one_is_unseeded_and_whole_options_may_be_sent_as_floats(server, monkeypatch):
    backend = server["backend"]
    seeds, original = [], backend.scheduler.submit
    monkeypatch.setattr(backend.scheduler, "submit", lambda job: seeds.append(job.params.seed) or original(job))
    for path, body in (("/api/generate", {"prompt": "Hi"}), ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]})):
        for seed, used in ((-1, None), (-1.0, None), (-7, None), (5, 5), (5.0, 5)):
            answer = ok(server, path, {**body, "stream": False, "options": {"num_predict": 3.0, "seed": seed, "top_k": 4.0, "temperature": 1.0}})
            assert seeds.pop() == used and answer["eval_count"] <= 3
    assert "num_predict" in error(server, "/api/generate", {"prompt": "Hi", "options": {"num_predict": 3.5}}, 400)


def test_embed_dimensions_cuts_the_vectors_to_length_one_again_as_ollama(server):
    (full,) = ok(server, "/api/embed", {"input": "a dog"})["embeddings"]
    (cut,) = ok(server, "/api/embed", {"input": "a dog", "dimensions": 8})["embeddings"]
    norm = math.sqrt(sum(x * x for x in full[:8]))
    assert cut == pytest.approx([x / norm for x in full[:8]]) and sum(x * x for x in cut) == pytest.approx(1.0)
    assert ok(server, "/api/embed", {"input": "a dog", "dimensions": len(full)})["embeddings"] == [full]
    for wrong in (0, len(full) + 1):
        assert f"dimensions must be between 1 and {len(full)}" in error(server, "/api/embed", {"input": "a dog", "dimensions": wrong}, 400)


def test_logprobs_are_answered_per_token_in_the_v1_chat_shape_as_ollama_has_them(server):
    messages = [{"role": "user", "content": "Hi"}]
    options = {**GREEDY, "num_predict": 3}
    same = ok(server, "/v1/chat/completions", {"messages": messages, "temperature": 0, "repetition_penalty": 1.0, "max_tokens": 3, "logprobs": True, "top_logprobs": 2})
    want = same["choices"][0]["logprobs"]["content"]
    assert len(want) == 3 and all(len(token["top_logprobs"]) == 2 for token in want)
    whole = ok(server, "/api/chat", {"messages": messages, "stream": False, "logprobs": True, "top_logprobs": 2, "options": options})
    assert whole["logprobs"] == want
    streamed = lines(server, "/api/chat", {"messages": messages, "logprobs": True, "top_logprobs": 2, "options": options})
    assert [token for line in streamed for token in line.get("logprobs", [])] == want
    generated = ok(server, "/api/generate", {"prompt": "Hi", "stream": False, "logprobs": True, "options": options})
    assert [t["token"] for t in generated["logprobs"]] == [t["token"] for t in want] and all(t["top_logprobs"] == [] for t in generated["logprobs"])
    assert "logprobs" not in ok(server, "/api/chat", {"messages": messages, "stream": False, "options": options})
    assert "top_logprobs must be between 0 and 20" in error(server, "/api/chat", {"messages": messages, "logprobs": True, "top_logprobs": 21}, 400)
