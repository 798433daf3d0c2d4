"""The remote engine's HTTP: where its API key goes when a server redirects."""

import http.server
import json
import threading

import pytest

from aigc.engine.remote import OpenAIEngine, keeps_key
from aigc.errors import BadInputError

KEY = "sk-REMOTEKEY-123"


@pytest.fixture
def serving():
    """Starts `server_class` on a free port of this machine, in a thread; each is shut after the test."""
    started = []

    def serve(server_class, handler):
        server = server_class(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield serve
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def servers(serving):
    """A maker of servers on this machine, each in a thread: a path in its `to` is a 302 to the URL
    given there, one in its `refused` a 401, any other the model list; each records (path, Authorization)."""

    def start():
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                server.seen.append((self.path, self.headers.get("Authorization")))
                if self.path in server.to:
                    self.send_response(302)
                    self.send_header("Location", server.to[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                refused = self.path in server.refused
                body = json.dumps({"error": {"message": "no key"}} if refused else {"data": [{"id": "m", "max_model_len": 512}]}).encode()
                self.send_response(401 if refused else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = serving(http.server.HTTPServer, Handler)
        server.seen, server.to, server.refused = [], {}, set()
        return server

    return start


def test_the_api_key_follows_a_redirect_only_within_its_origin(servers):
    origin, other = servers(), servers()
    here, there = f"http://127.0.0.1:{origin.server_port}", f"http://localhost:{other.server_port}"  # another host, another port
    origin.to = {"/v1/models": f"{there}/v1/models"}
    assert OpenAIEngine(f"{here}/v1", "m", KEY).context_length == 512  # followed, as the OpenAI SDK follows it
    assert origin.seen == [("/v1/models", f"Bearer {KEY}")] and other.seen == [("/v1/models", None)]
    origin.to = {"/v1/models": f"{here}/v2/models"}  # the same origin: the key goes on
    OpenAIEngine(f"{here}/v1", "m", KEY)
    assert origin.seen[1:] == [("/v1/models", f"Bearer {KEY}"), ("/v2/models", f"Bearer {KEY}")]
    origin.to, other.refused = {"/v1/models": f"{there}/v1/models"}, {"/v1/models"}  # a target that wants a key says where it is
    with pytest.raises(BadInputError, match=f"answered 401 from {there}/v1/models, another origin it redirected to, which the API key is not sent to"):
        OpenAIEngine(f"{here}/v1", "m", KEY)
    assert other.seen[-1] == ("/v1/models", None)


def test_the_key_keeps_to_the_scheme_host_and_port_or_their_https():
    assert keeps_key("http://h:8000/v1/models", "http://H:8000/v2")
    assert keeps_key("http://h/v1", "https://h/v1") and keeps_key("https://h/v1", "https://h:443/v1")  # an upgrade, default ports
    for other in ("https://h:8000/v1", "http://h:8001/v1", "http://h.evil/v1", "http://h@evil/v1"):
        assert not keeps_key("http://h:8000/v1", other), other
    assert not keeps_key("https://h/v1", "http://h/v1")  # to plain http


@pytest.fixture
def service(serving):
    """A server on this machine that answers a request with `answers[path]`'s (status, body), else lists
    the model `m` on /v1/models and answers 404 as FastAPI's {"detail": "Not Found"};
    `methods` the verbs it implements at all (http.server's 501 for the others)."""

    def start(answers=None, methods=("GET", "POST")):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                server.seen.append((self.command, self.path))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = {"/v1/models": (200, {"data": [{"id": "m"}]}), **(answers or {})}
                status, answer = found.get(self.path, (404, {"detail": "Not Found"}))
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        for method in methods:
            setattr(Handler, f"do_{method}", Handler._answer)
        server = serving(http.server.ThreadingHTTPServer, Handler)
        server.seen = []
        return server

    return start


def test_embedding_on_a_server_without_embeddings_says_it_serves_none_as_classify_says_it_cannot_score(service, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from aigc.cli.app import app
    from aigc.errors import AigcError

    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path))
    server = service()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    with pytest.raises(AigcError) as caught:
        OpenAIEngine(url, "m").embed(["hello"])
    assert not isinstance(caught.value, BadInputError)  # the server's lack, not the input's: exit 1, as classify's
    assert str(caught.value) == (
        f"{url} does not serve embeddings (POST /v1/embeddings answered 404: Not Found); "
        "use a local model, or a server that serves them on /v1/embeddings, such as vLLM with an embedding model, ollama or aigc serve"
    )
    result = CliRunner().invoke(app, ["embed", "hello", "-m", f"openai:{url}#m"])
    assert result.exit_code == 1 and "does not serve embeddings (POST /v1/embeddings answered 404: Not Found)" in result.stderr
    assert ("POST", "/v1/embeddings") in server.seen


def test_a_server_that_is_no_openai_api_is_named_so_with_the_url_form_expected(service):
    other = service(methods=())  # http.server's 501 "Unsupported method ('GET')"
    with pytest.raises(BadInputError) as caught:
        OpenAIEngine(f"http://127.0.0.1:{other.server_port}/v1", "m")
    assert str(caught.value) == (
        f"http://127.0.0.1:{other.server_port}/v1 answered 501 to GET /v1/models: Unsupported method ('GET'); "
        "it does not look like an OpenAI-compatible API, which answers GET /v1/models and POST /v1/chat/completions. "
        "Give the API's base URL, such as openai:http://HOST:PORT/v1#MODEL"
    )
    posts_only = service(answers={"/infer/models": (405, {"detail": "Method Not Allowed"})})
    with pytest.raises(BadInputError, match=r"answered 405 to GET /infer/models: Method Not Allowed; it does not look like an OpenAI-compatible API"):
        OpenAIEngine(f"http://127.0.0.1:{posts_only.server_port}/infer", "m")
