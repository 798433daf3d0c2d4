"""`OpenAIEngine`: the `Engine` interface against any OpenAI-compatible server.

Selected with `-m openai:http://host:port/v1#model` (vLLM, ollama, llama.cpp's server, TGI,
another `aigc serve`), or by name with `-m remote:NAME` for a `[remotes.NAME]` table in the
settings file (`config.toml` in the config directory):

    [remotes.gpu]
    url = "http://gpu-box:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"   # optional: else the server's first model
    api_key_env = "VLLM_KEY"             # optional: the variable holding its key

The API key comes from that variable, else `AIGC_OPENAI_API_KEY` (else `OPENAI_API_KEY`).
Only the standard library talks HTTP here, so no extra is needed. A redirect is followed, but
the key goes on only to the same origin (or its https), as the OpenAI SDK's httpx does it.

- chat messages go to `/chat/completions`, raw text to `/completions`; `top_k`, `min_p` and
  `repetition_penalty` are sent only when they are not neutral (vLLM and aigc take them), and
  not again to a server that refused them (OpenAI's own API). OpenAI's reasoning models (o1, o3,
  o4-mini, gpt-5) get `max_completion_tokens` for `max_tokens`, and no `temperature` or `top_p`
  once they refuse it (with a warning: the server samples as it does by default).
- `count_tokens` asks the server's `/tokenize` (vLLM, aigc) and otherwise estimates (3 bytes a
  token, on the high side so prompts are trimmed rather than rejected).
- `score` needs prompt log-probabilities (`echo` with `logprobs` and `max_tokens: 0` on
  `/completions`, as vLLM and aigc offer them); a server without them gives a clear `AigcError`.
- Calls told to stop (`base.stop_when`: Ctrl-C in `generator.many` or `aigc batch`, a cancelled
  `agenerate`, a closed `astream`) shut their connections in flight, so the server sees the client
  go away (vLLM, llama.cpp, ollama and `aigc serve` stop generating then), and raise
  `asyncio.CancelledError` at once, as a local engine's do; a connect under way (to a host that does
  not answer) or a TLS handshake is cut so too (a DNS lookup is not: it ends within its own timeout).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import http.client
import json
import math
import os
import re
import selectors
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator

from .. import config
from ..errors import AigcError, AigcWarning, BadInputError, ModelUnavailableError, RemoteConfigError, UnknownModelError, UnknownRemoteError
from ..textio import parse_json
from .base import Completion, EngineStats, Prompt, Scored, check_continuations, check_prompts, check_stopped, check_texts, on_stop, pause, stopped
from .sampling import SamplingParams, derived_seed

DEFAULT_CONTEXT = 8192  # when the server does not say (vLLM and aigc report max_model_len)
REMOTE_SEED_BOUND = 2**31  # derived seeds for a server (some hold a seed in a signed 32-bit int)
RETRIES = 3  # on 429/503, waiting Retry-After (at most 5 s) between tries
SCORE_REQUEST_TEXTS = 16  # continuations scored per /completions request: within `aigc serve`'s default --max-batch (32)
PROMPTS_CAPPED = re.compile(r"\bprompts\b.*\bat most (\d+)")  # aigc serve: "prompts x n must be at most 8 (--max-batch)"
OPTIONAL = ("top_k", "repetition_penalty", "min_p", "stream_options")  # what OpenAI's own API refuses ("Unrecognized request argument supplied: top_k"), and Azure's older versions stream_options
SAMPLING_REFUSED = re.compile(r"Unsupported (?:value|parameter): '(temperature|top_p)'")  # OpenAI's reasoning models: "Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value is supported."
N_REFUSED = re.compile(r"\bchoices?\b|\bn must\b", re.IGNORECASE)  # llama.cpp: "only one completion choice is allowed"; aigc: "n must be at most 16"


KEY_HINT = "set AIGC_OPENAI_API_KEY (or OPENAI_API_KEY) to the server's key"
DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(parts.scheme.lower())


def keeps_key(url: str, redirected: str) -> bool:
    """Whether a request to `url` redirected to `redirected` may carry the API key on: to the same
    origin (scheme, host, port), or from http to https on the same host at the default ports, as
    httpx (the OpenAI SDK's client) and requests decide it; to another host, port or to plain http, not."""
    old, new = _origin(url), _origin(redirected)
    return new == old or (old == ("http", new[1], 80) and new == ("https", old[1], 443))


class _KeyedRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, less the Authorization header where the redirect leaves its origin
    (`keeps_key`); urllib's own handler copies it to any URL the server names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not keeps_key(req.full_url, new.full_url):
            new.remove_header("Authorization")
        return new


class _Connections:
    """The connections one request opens (a redirect's too). `shut()` shuts them down, which ends a
    read under way in any thread at once, and the server sees the client go away (vLLM, llama.cpp,
    ollama and `aigc serve` then stop generating). Each is held as a duplicate of its socket, which
    `close()` closes: the socket itself is closed by http.client in the reading thread, and its
    number may belong to another connection by the time `shut()` runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._shut = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(socket.fromfd(sock.fileno(), sock.family, sock.type))
            if self._shut:
                _shut_down(self._sockets[-1])

    def shut(self) -> None:
        with self._lock:
            self._shut = True
            for sock in self._sockets:
                _shut_down(sock)

    def connect(self, sock: socket.socket, where: Any) -> None:
        """`sock.connect(where)` (`sock` added), begun under the lock `shut()` takes: a shut comes
        before the connect begins, which is then refused, or after, which cuts it (a shutdown ends a
        connect under way); never between, where it would find the socket not connecting yet and
        the connect would wait out its whole timeout."""
        timeout = sock.gettimeout()
        with self._lock:
            if self._shut:
                raise ConnectionAbortedError("the request was stopped")
            sock.setblocking(False)
            code = sock.connect_ex(where)
        try:
            if code in _CONNECTING:
                with selectors.DefaultSelector() as waiting:  # (on Windows a failed connect counts as writable there too)
                    waiting.register(sock, selectors.EVENT_WRITE)
                    if not waiting.select(timeout):
                        raise TimeoutError("timed out")  # as socket.connect says it
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
        finally:
            sock.settimeout(timeout)

    @property
    def is_shut(self) -> bool:
        return self._shut

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


_CONNECTING = {code for code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, getattr(errno, "WSAEWOULDBLOCK", None)) if code is not None}  # a non-blocking connect begun


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the server has closed it already
        sock.shutdown(socket.SHUT_RDWR)


_watching: ContextVar[_Connections | None] = ContextVar("aigc_remote_connections", default=None)  # the request being opened in this context


def _connect(connections: _Connections, address: tuple[str, int], timeout: Any, source_address: Any = None) -> socket.socket:
    """`socket.create_connection`, each socket joining `connections` before it connects, so that
    `shut()` cuts a connect under way (to a host that does not answer) and, for https, the TLS
    handshake after it, at once rather than after the timeout; once shut, no other address is tried."""
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, where in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            connections.add(sock)
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined] - http.client's default, as create_connection takes it
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            connections.connect(sock, where)
            if connections.is_shut:  # shut as it ended
                raise ConnectionAbortedError("the request was stopped")
            return sock
        except OSError as exc:
            sock.close()
            if connections.is_shut:
                raise
            error = exc
    raise error or OSError(f"getaddrinfo found no address for {host}")


class _Watched:
    """An http.client connection whose sockets join the `_Connections` of the request being opened in
    this context as they are made (`_connect`): shutting them cuts the connect, the TLS handshake
    and the wait for the answer alike."""

    def connect(self) -> None:
        if (connections := _watching.get()) is not None:
            self._create_connection = lambda address, timeout, source_address=None: _connect(connections, address, timeout, source_address)
        super().connect()  # type: ignore[misc]


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_WatchedHTTP, req, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_WatchedHTTPS, req, **kwargs)


_OPENER = urllib.request.build_opener(_KeyedRedirects, _HTTPHandler, _HTTPSHandler)


def _together(call: Callable[[Any], Any], items: list) -> list:
    """`call` on each item, at most 8 at once in threads of their own, each in a copy of the
    caller's context: told to stop (`base.stop_when`), their requests stop too."""
    contexts = [contextvars.copy_context() for _ in items]  # a context is entered by one thread at a time
    with ThreadPoolExecutor(max_workers=min(8, len(items)), thread_name_prefix="aigc remote request") as pool:
        return list(pool.map(lambda context, item: context.run(call, item), contexts, items))


def api_key() -> str | None:
    return os.environ.get("AIGC_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def sent_key(url: str) -> bool:
    """Whether a plugin's model alias naming `openai:URL` gets your API key (`AIGC_OPENAI_API_KEY`,
    else `OPENAI_API_KEY`): only for OpenAI's own API (https://api.openai.com) or a server one of your
    `[remotes.NAME]` tables names without an `api_key_env` of its own."""
    remotes = config.load_settings().get("remotes", {})
    entries = remotes.values() if isinstance(remotes, dict) else ()
    yours = [e["url"] for e in entries if isinstance(e, dict) and isinstance(e.get("url"), str) and not e.get("api_key_env") and not url_problem(e["url"])]
    return not url_problem(url) and any(_origin(theirs) == _origin(url) for theirs in ["https://api.openai.com/v1", *yours])


def _estimate(prompt: Prompt) -> int:
    """A token count without asking the server: 3 bytes a token, 8 more per chat message."""
    text = prompt if isinstance(prompt, str) else "".join(m.get("content") or "" for m in prompt)
    turns = 0 if isinstance(prompt, str) else len(prompt)
    return len(text.encode("utf-8")) // 3 + 1 + 8 * turns


def url_problem(url: str) -> str | None:
    """What keeps `url` from being a server's http(s) URL (`http://[::1/v1`: "Invalid IPv6 URL";
    a port that is no number; no host), else None."""
    if not url.startswith(("http://", "https://")):
        return "not http or https"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number, or out of range
    except ValueError as exc:
        return str(exc)
    return None if parts.hostname else "no host"


def _api_root(url: str) -> str:
    """Where the API a 404ing URL meant likely is: the URL up to its /v1 (an endpoint's URL,
    `.../v1/chat/completions`, given for the API's), else the URL with /v1 added."""
    head, v1, _ = url.partition("/v1/")
    return head + "/v1" if v1 else url + "/v1"


@dataclass(frozen=True)
class NamedRemote:
    """A `[remotes.NAME]` table of the settings file."""

    name: str
    url: str
    model: str | None = None
    api_key_env: str | None = None

    @property
    def location(self) -> str:
        return f"{self.url}#{self.model}" if self.model else self.url

    def key(self) -> str | None:
        """Its API key: from `api_key_env` when set (which must then be set), else the usual variables."""
        if not self.api_key_env:
            return api_key()
        value = os.environ.get(self.api_key_env)
        if not value:
            raise RemoteConfigError(
                f"remote {self.name!r} takes its API key from ${self.api_key_env}, which is not set; "
                f"export {self.api_key_env}=KEY, or drop api_key_env from [remotes.{self.name}] in {config.settings_file()}"
            )
        return value

    def key_hint(self) -> str:
        return f"set {self.api_key_env} to the server's key" if self.api_key_env else KEY_HINT


REMOTE_KEYS = ("url", "model", "api_key_env")


def remote_names() -> list[str]:
    """The names of the `[remotes.NAME]` tables in the settings file; `remotes` that is no table
    (`remotes = 3`) is a RemoteConfigError."""
    remotes = config.load_settings().get("remotes", {})
    if not isinstance(remotes, dict):
        raise RemoteConfigError(f"remotes in {config.settings_file()} must be tables, [remotes.NAME] with url = \"http://HOST:PORT/v1\", got {remotes!r}; fix it")
    return sorted(remotes)


def named_remote(name: str) -> NamedRemote:
    """The `[remotes.NAME]` table of the settings file, checked."""
    path = config.settings_file()
    remotes = config.load_settings().get("remotes", {})
    if not isinstance(remotes, dict):
        raise RemoteConfigError(f"remotes in {path} must be tables, like [remotes.{name}]")
    if name not in remotes:
        defined = f"defined there: {', '.join(sorted(remotes))}" if remotes else "it defines none" if path.exists() else "there is no such file yet"
        raise UnknownRemoteError(f"no remote named {name!r} in {path} ({defined}); add [remotes.{name}] with url = \"http://HOST:PORT/v1\"")
    entry = remotes[name]
    where = f"[remotes.{name}] in {path}"
    if not isinstance(entry, dict):
        raise RemoteConfigError(f"{where} must be a table with url (and optionally model, api_key_env)")
    unknown = sorted(set(entry) - set(REMOTE_KEYS))
    if unknown:
        raise RemoteConfigError(f"{where} has unknown keys {', '.join(unknown)}; {config.unknown_hint(unknown, REMOTE_KEYS, ('remotes', name))}it takes url, model and api_key_env")
    url = entry.get("url")
    if url is None:
        raise RemoteConfigError(f"{where} has no url: add url = \"http://HOST:PORT/v1\" (an http or https URL)")
    if not isinstance(url, str):
        raise RemoteConfigError(f"{where} needs url = \"http://HOST:PORT/v1\" (an http or https URL, in quotes; got {url!r})")
    problem = url_problem(url)
    if problem:
        raise RemoteConfigError(f"{where} needs url = \"http://HOST:PORT/v1\" (an http or https URL; got {url!r}: {problem})")
    for field in ("model", "api_key_env"):
        if field in entry and (not isinstance(entry[field], str) or not entry[field]):
            raise RemoteConfigError(f"{where}: {field} must be a non-empty string")
    return NamedRemote(name, url.rstrip("/"), entry.get("model"), entry.get("api_key_env"))


class OpenAIEngine:
    """Generates on a remote OpenAI-compatible server."""

    can_embed = False  # the OpenAI API gives no hidden states
    can_score_chat = False  # it would have to apply the server's chat template

    def __repr__(self) -> str:
        return f"<OpenAIEngine {self.name!r} at {self.base_url}>"

    def __init__(self, base_url: str, model: str | None = None, key: str | None = None, timeout: float = 600.0, name: str | None = None, key_hint: str = KEY_HINT):
        problem = url_problem(base_url)
        if problem:
            raise BadInputError(f"a remote model needs an http(s) URL, like openai:http://127.0.0.1:8000/v1#MODEL; got {base_url!r} ({problem})")
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.key_hint = key_hint
        self._score_tokens = 0  # max_tokens of a scoring request: 0, or 1 where the server wants a new token
        self._score_texts = SCORE_REQUEST_TEXTS  # continuations a scoring request sends: fewer where the server takes fewer prompts
        self._refused: set[str] = set()  # OPTIONAL settings (and temperature, top_p) the server refused, left out from then on
        self._budget = "max_tokens"  # or max_completion_tokens, where the server wants that (OpenAI's reasoning models)
        self._n_choices = True  # whether the server answers n choices at once (ollama ignores n, llama.cpp refuses it, aigc caps it)
        self.timeout = timeout
        started = time.perf_counter()
        listing = self._request("GET", "/models").get("data") or []
        served = [m.get("id") for m in listing if isinstance(m, dict)]
        if model is None:
            if not served:
                raise ModelUnavailableError(f"{self.base_url} lists no models; name one: openai:{self.base_url}#MODEL")
            model = served[0]
        listed = f"{model}:latest" if model not in served and f"{model}:latest" in served else model  # ollama lists llama3.2 as llama3.2:latest
        if served and listed not in served:
            raise UnknownModelError(f"{self.base_url} does not serve {model!r}; it serves: {', '.join(map(str, served))}")
        entry = next((m for m in listing if isinstance(m, dict) and m.get("id") == listed), {})
        self.model = model
        self.name = name or f"openai:{self.base_url}#{model}"
        self.context_length = int(entry.get("max_model_len") or entry.get("context_length") or entry.get("context_window") or DEFAULT_CONTEXT)
        self.stats = EngineStats(load_seconds=time.perf_counter() - started)
        self._tokenize: bool | None = None

    @classmethod
    def from_location(cls, location: str, keyed: bool = True) -> "OpenAIEngine":
        """`http://host:port/v1#model` (the part of `-m openai:...` after the prefix); `keyed=False`: sends no API key."""
        url, _, model = location.partition("#")
        return cls(url, model or None, api_key() if keyed else None)

    @classmethod
    def from_remote(cls, remote: NamedRemote) -> "OpenAIEngine":
        """A `[remotes.NAME]` of the settings file; the engine is called `remote:NAME`."""
        return cls(remote.url, remote.model, remote.key(), name=f"remote:{remote.name}", key_hint=remote.key_hint())

    # -- HTTP ------------------------------------------------------------------------------------

    def _open(self, method: str, url: str, body: dict | None):
        """The server's answer to a request; a setting of OPTIONAL that it refuses is left out (a
        server that does not take it would have ignored it), and the request sent again. So is a
        `temperature` or `top_p` that it refuses (OpenAI's reasoning models sample only their own
        way), with a warning; `max_tokens` goes as `max_completion_tokens` where the server asks so."""
        try:
            return self._send(method, url, body)
        except BadInputError as exc:
            if not body:
                raise
            message = str(exc)
            if "max_tokens" in body and "'max_completion_tokens'" in message:  # "Use 'max_completion_tokens' instead."
                self._budget = "max_completion_tokens"
                return self._open(method, url, {("max_completion_tokens" if key == "max_tokens" else key): value for key, value in body.items()})
            sampling = {key for key in SAMPLING_REFUSED.findall(message) if key in body}
            refused = {key for key in OPTIONAL if key in body and key in message} | sampling
            if not refused:
                raise
            if sampling and not self._refused & {"temperature", "top_p"}:
                key = sorted(sampling)[0]
                warnings.warn(
                    f"{self.base_url} takes no {key} of {body[key]:g} for {self.model}; it is left out, so the server samples with its own settings and answers may differ from run to run",
                    AigcWarning,
                    stacklevel=2,
                )
            self._refused |= refused
            return self._open(method, url, {key: value for key, value in body.items() if key not in refused})

    def _send(self, method: str, url: str, body: dict | None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        busy = None  # the last 429/503, which says more than a server gone since (one shutting down)
        for attempt in range(RETRIES):
            check_stopped()  # no request is sent once told to stop
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                return _OPENER.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code in (429, 503) and attempt < RETRIES - 1:
                    wait = exc.headers.get("Retry-After", "1")
                    busy = self._http_error(exc)
                    pause(min(5.0, float(wait) if wait.replace(".", "", 1).isdigit() else 1.0))
                    continue
                raise self._http_error(exc) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if busy is not None:
                    raise ModelUnavailableError(f"{busy}; then it could not be reached ({reason})") from None
                raise ModelUnavailableError(f"cannot reach {self.base_url}: {reason}; is the server running?") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _http_error(self, exc: urllib.error.HTTPError) -> AigcError:
        try:
            detail = parse_json(exc.read() or b"{}")
            message = detail.get("error", {}).get("message") if isinstance(detail.get("error"), dict) else detail.get("error") or detail.get("detail")
        except (ValueError, AttributeError):
            message = None
        message = message or exc.reason
        where = f"{self.base_url} answered {exc.code}"
        path = urllib.parse.urlsplit(exc.geturl()).path
        if exc.code in (404, 405, 501) and path.endswith("/embeddings"):  # as scoring without prompt log-probabilities: the server's, not the input's
            return AigcError(
                f"{self.base_url} does not serve embeddings (POST {path} answered {exc.code}: {message}); "
                "use a local model, or a server that serves them on /v1/embeddings, such as vLLM with an embedding model, ollama or aigc serve"
            )
        if exc.code in (405, 501) and path.endswith("/models"):  # every OpenAI-compatible server lists its models
            return BadInputError(
                f"{where} to GET {path}: {message}; it does not look like an OpenAI-compatible API, which answers GET /v1/models and POST /v1/chat/completions. "
                "Give the API's base URL, such as openai:http://HOST:PORT/v1#MODEL"
            )
        if exc.code in (401, 403) and self.key and not keeps_key(self.base_url, exc.geturl()):
            return BadInputError(f"{where} from {exc.geturl()}, another origin it redirected to, which the API key is not sent to; if that is the server, give its URL")
        if exc.code in (401, 403):
            hint = f"{self.key_hint} (the key sent was refused)" if self.key else self.key_hint
            return BadInputError(f"{where}: {message}; {hint}")
        if exc.code == 404 and not self.base_url.endswith("/v1") and _api_root(self.base_url) not in message:  # aigc serve names it itself
            return BadInputError(f"{where}: {message}; OpenAI-compatible servers answer under /v1: did you mean {_api_root(self.base_url)}?")
        if exc.code in (400, 404, 413, 422):
            return BadInputError(f"{where}: {message}")
        return ModelUnavailableError(f"{where}: {message}")

    @contextlib.contextmanager
    def _answer(self, method: str, url: str, body: dict | None) -> Iterator[http.client.HTTPResponse]:
        """`_open`'s response, for a `with` around reading it. Once the calls are told to stop
        (`base.stop_when`: Ctrl-C in `generator.many` or `aigc batch`, a cancelled `agenerate`, a
        closed `astream`), its connection is shut down, ending the wait for the server's answer; what
        fails then raises `asyncio.CancelledError`, as a local engine's call told to stop does."""
        connections = _Connections()
        try:
            with on_stop(connections.shut):
                opening = _watching.set(connections)
                try:
                    response = self._open(method, url, body)
                finally:
                    _watching.reset(opening)
                with response:
                    yield response
        except Exception:  # re-raised, unless the stop broke the request off
            check_stopped()
            raise
        finally:
            connections.close()

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        with self._answer(method, self.base_url + path, body) as response:
            try:
                answer = parse_json(response.read())
            except (OSError, http.client.HTTPException) as exc:  # cut off or timed out mid-answer
                raise ModelUnavailableError(f"{self.base_url}{path}: the answer broke off ({type(exc).__name__}: {exc})") from None
            except ValueError:
                raise ModelUnavailableError(f"{self.base_url}{path} did not answer with JSON; is it an OpenAI-compatible /v1 URL?") from None
        if not isinstance(answer, dict):
            raise ModelUnavailableError(f"{self.base_url}{path} answered JSON that is not an object; is it an OpenAI-compatible /v1 URL?")
        return answer

    def _events(self, path: str, body: dict) -> Iterator[dict]:
        """The JSON objects of a server-sent event stream, until `[DONE]`; a stream that ends without
        it was cut off, which is an error, not a shorter answer. Told to stop, it stops between events."""
        with self._answer("POST", self.base_url + path, body) as response:
            try:
                for raw in response:
                    line = raw.decode("utf-8").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    event = parse_json(data)
                    if not isinstance(event, dict):
                        raise ModelUnavailableError(f"{self.base_url} sent a stream event that is not a JSON object: {data[:80]}")
                    if event.get("error"):
                        error = event["error"]
                        raise ModelUnavailableError(f"{self.base_url} stopped the stream: {error.get('message') if isinstance(error, dict) else error}")
                    check_stopped()  # events already received are not handed on
                    yield event
            except (OSError, http.client.HTTPException, ValueError) as exc:  # timeout, reset, bad JSON or UTF-8
                raise ModelUnavailableError(f"{self.base_url}: the stream broke off ({type(exc).__name__}: {exc})") from None
            raise ModelUnavailableError(f"{self.base_url}: the stream ended without [DONE]; the server or a proxy cut it off")  # or the stop shut it

    # -- the Engine interface --------------------------------------------------------------------

    def _body(self, prompt: Prompt, params: SamplingParams, n: int, stream: bool) -> tuple[str, dict]:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            self._budget: params.max_tokens,
            "n": n,
            "stream": stream,
        }
        for key in self._refused & {"temperature", "top_p"}:
            del body[key]
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.top_k and "top_k" not in self._refused:
            body["top_k"] = params.top_k
        if params.repetition_penalty != 1.0 and "repetition_penalty" not in self._refused:
            body["repetition_penalty"] = params.repetition_penalty
        if params.min_p and "min_p" not in self._refused:
            body["min_p"] = params.min_p
        for key in ("frequency_penalty", "presence_penalty"):  # OpenAI's own
            if getattr(params, key):
                body[key] = getattr(params, key)
        if params.logit_bias:  # token ids of that server's model
            body["logit_bias"] = {str(token): bias for token, bias in params.logit_bias.items()}
        if params.json_schema is not None:  # OpenAI's structured outputs, which vLLM, llama.cpp and ollama take too
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": params.json_schema}}
        if stream and "stream_options" not in self._refused:  # usage is counted here without it
            body["stream_options"] = {"include_usage": True}
        if isinstance(prompt, str):
            return "/completions", {**body, "prompt": prompt}
        return "/chat/completions", {**body, "messages": list(prompt)}

    def _usage(self, usage: Any, prompt: Prompt, texts: list[str], ask: bool = True) -> tuple[int, int]:
        """(prompt tokens, completion tokens in all) from the server's usage; where it sent none,
        counted (`count_tokens`), or with `ask=False` (a request that failed) estimated."""
        count = self.count_tokens if ask else _estimate
        usage = usage if isinstance(usage, dict) else {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = count(prompt)
        if not isinstance(completion_tokens, int):
            completion_tokens = sum(count(text) for text in texts if text)
        return prompt_tokens, completion_tokens

    def _one(self, prompt: Prompt, params: SamplingParams) -> list[Completion]:
        if params.n > 1 and not self._n_choices:
            return self._each(prompt, params)
        path, body = self._body(prompt, params, params.n, stream=False)
        started = time.perf_counter()
        try:
            answer = self._request("POST", path, body)
        except AigcError as exc:
            if params.n == 1 or not N_REFUSED.search(str(exc)):
                raise
            self._n_choices = False
            return self._each(prompt, params)
        elapsed = time.perf_counter() - started
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        texts = [(choice.get("text") if path == "/completions" else (choice.get("message") or {}).get("content")) or "" for choice in choices]
        prompt_tokens, completion_tokens = self._usage(answer.get("usage"), prompt, texts)
        self.stats.record(prompt_tokens, completion_tokens, None, elapsed)
        each = completion_tokens // max(1, len(choices))  # servers report the total only
        results = [
            Completion(text, prompt_tokens, each, "length" if choice.get("finish_reason") == "length" else "stop")
            for text, choice in zip(texts, choices)
        ]
        if len(results) == 1 < params.n:  # n ignored: the rest one request each
            self._n_choices = False
            return results + self._each(prompt, params.replace(n=params.n - 1), first=1)
        if len(results) != params.n:
            raise AigcError(f"{self.base_url} returned {len(results)} choices for n={params.n}")
        return results

    def _each(self, prompt: Prompt, params: SamplingParams, first: int = 0) -> list[Completion]:
        """`params.n` choices as one-choice requests sent together, for a server that gives one a
        request. With a seed, choice i has its own, drawn from the seed and i (not seed + i, which
        a caller's next round may be)."""
        seeds = [derived_seed(params.seed, i, REMOTE_SEED_BOUND) for i in range(first, first + params.n)]
        return [c for answer in _together(lambda seed: self._one(prompt, params.replace(n=1, seed=seed)), seeds) for c in answer]

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """Each prompt is one request; several go out together (the server batches them)."""
        check_prompts(prompts, params)
        if len(prompts) == 1:
            return [self._one(prompts[0], params)]
        return _together(lambda p: self._one(p, params), prompts)

    def stream(self, prompt: Prompt, params: SamplingParams) -> Generator[str, None, Completion]:
        check_prompts(prompt, params, one=True)
        path, body = self._body(prompt, params, 1, stream=True)
        started = time.perf_counter()
        first = None
        usage = None
        pieces: list[str] = []
        finished = False
        reason = None
        try:
            for event in self._events(path, body):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    reason = choice.get("finish_reason") or reason
                    piece = choice.get("text") if path == "/completions" else (choice.get("delta") or {}).get("content")
                    if piece:
                        first = first if first is not None else time.perf_counter() - started
                        pieces.append(piece)
                        yield piece
            finished = True
        finally:
            elapsed = time.perf_counter() - started
            counts = self._usage(usage, prompt, ["".join(pieces)], ask=finished)
            self.stats.record(*counts, first, elapsed)
        return Completion("".join(pieces), *counts, "length" if reason == "length" else "stop")

    def count_tokens(self, prompt: Prompt) -> int:
        """The server's count (`/tokenize`), else an estimate; told to stop (the tokens of a stream
        cut short), an estimate, without asking the server."""
        if self._tokenize is not False and not stopped():
            root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
            body = {"model": self.model, **({"prompt": prompt} if isinstance(prompt, str) else {"messages": list(prompt)})}
            try:
                with self._answer("POST", root + "/tokenize", body) as response:
                    count = parse_json(response.read()).get("count")
                if isinstance(count, int):
                    self._tokenize = True
                    return count
            except (AigcError, ValueError, AttributeError, OSError, http.client.HTTPException):  # no, or a broken, answer
                pass
            self._tokenize = False  # no usable /tokenize here: estimate from now on
        return _estimate(prompt)

    def score(self, prompt: Prompt, continuations: list[str]) -> list[float]:
        """Sum of each continuation's token log-probabilities, from the server's prompt logprobs.

        One `/completions` request per `SCORE_REQUEST_TEXTS` continuations, or as many as a server
        says it takes (`aigc serve` caps the prompts of one request at its `--max-batch`): `echo` with `logprobs: 1` and
        `max_tokens: 0` (vLLM, aigc), or `max_tokens: 1` where the server wants at least one new
        token. The tokens whose text starts inside the continuation count, so a continuation should
        start at a token boundary (a leading space, as labels usually do).
        """
        return self._score(prompt, continuations)[0]

    def _score(self, prompt: Prompt, continuations: list[str]) -> tuple[list[float], int]:
        """`score`'s scores, and the prompt tokens the server counted (counted here if it sent none)."""
        if not isinstance(prompt, str):
            raise AigcError(
                f"scoring chat messages on a remote server is not supported ({self.base_url} would have to apply "
                "its chat template); use a local model for this task"
            )
        check_continuations(continuations)
        scores, tokens = [], 0
        while len(scores) < len(continuations):
            part = continuations[len(scores) : len(scores) + self._score_texts]
            try:
                found, counted = self._score_request(prompt, part)
            except AigcError as exc:
                capped = PROMPTS_CAPPED.search(str(exc))
                if not capped or not 1 <= int(capped[1]) < len(part):
                    raise
                self._score_texts = int(capped[1])
                continue
            scores += found
            tokens += counted
        return scores, tokens

    def _score_request(self, prompt: str, continuations: list[str]) -> tuple[list[float], int]:
        missing = f"{self.base_url} does not return prompt log-probabilities (echo with logprobs on /completions), which scoring needs; use a local model or a server that offers them, such as vLLM"
        texts = [prompt + c for c in continuations]
        body = {"model": self.model, "prompt": texts, "temperature": 0, "echo": True, "logprobs": 1}
        try:
            try:
                answer = self._request("POST", "/completions", {**body, "max_tokens": self._score_tokens})
            except BadInputError as exc:
                if "max_tokens" not in str(exc) or self._score_tokens:
                    raise
                self._score_tokens = 1  # the server wants at least one new token: from now on, ask for one
                answer = self._request("POST", "/completions", {**body, "max_tokens": 1})
        except BadInputError as exc:
            if any(f" answered {code}" in str(exc) for code in (401, 403, 404)):  # a key or a model, not scoring
                raise
            raise AigcError(f"{self.base_url} refused a scoring request ({exc}); scoring needs prompt log-probabilities (echo with logprobs on /completions), as vLLM and aigc serve give them") from None
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(texts):
            raise AigcError(missing)
        scores = []
        for text, choice in zip(texts, choices):
            logprobs = choice.get("logprobs") or {}
            offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
            if not offsets or not values or len(offsets) != len(values) or not str(choice.get("text", "")).startswith(text):
                raise AigcError(missing)
            picked = [v for at, v in zip(offsets, values) if len(prompt) <= at < len(text) and v is not None]
            if not picked:  # e.g. llama.cpp's server: log-probabilities of the new token only
                raise AigcError(missing)
            scores.append(float(sum(picked)))
        return scores, self._usage(answer.get("usage"), texts[0], [])[0]

    def score_many(self, prompts: list[Prompt], continuations: list[str], embed: bool = False) -> list[Scored]:
        """`score` for each prompt. Embeddings would need the server's hidden states, which the
        OpenAI API does not expose for generative models, so `embed` is refused."""
        check_prompts(prompts)
        if embed:
            raise BadInputError(f"{self.base_url} cannot give this model's hidden-state embeddings (the OpenAI API has none); use a local model")
        started = time.perf_counter()
        answers = _together(lambda prompt: self._score(prompt, continuations), prompts)  # sent together, as generate's: the server batches them
        self.stats.record_scoring(len(prompts), sum(tokens for _, tokens in answers), time.perf_counter() - started)
        return [Scored(scores) for scores, _ in answers]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """The server's `/embeddings` for the texts, each scaled to length 1."""
        check_texts(texts)
        started = time.perf_counter()
        answer = self._request("POST", "/embeddings", {"model": self.model, "input": list(texts)})
        rows = answer.get("data")
        try:
            vectors = [[float(x) for x in row["embedding"]] for row in sorted(rows, key=lambda row: row["index"])]
        except (TypeError, KeyError, ValueError):
            vectors = []
        if len(vectors) != len(texts) or not all(vectors):
            raise ModelUnavailableError(f"{self.base_url}/embeddings did not answer with one embedding per text")
        norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
        if not all(norm > 0 and math.isfinite(norm) for norm in norms):
            raise ModelUnavailableError(f"{self.base_url}/embeddings answered an embedding of zeros or not finite numbers, which has no direction to compare")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        self.stats.record_embedding(len(texts), int(usage.get("prompt_tokens") or 0), time.perf_counter() - started)
        return [[x / norm for x in v] for v, norm in zip(vectors, norms)]
