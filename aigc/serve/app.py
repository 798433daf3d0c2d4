"""The FastAPI application: OpenAI-compatible endpoints, task endpoints, auth and error bodies.

Every generation goes through a model's `Scheduler`, so concurrent requests share one decode.
Chat messages are tokenized by the engine with control tokens only in the template's markup (a
message cannot open a turn); a text completion's prompt is raw model input, control tokens read.
Chat and text completions differ only in the shape of their answers, which `Reply` writes
(`replies.py`; whole or streamed, with log-probabilities in the endpoint's shape); the Responses API is chat
with its own request fields and answer shape (`responses.py`); a chat request with tools may be
answered with calls (`tools.py`); ollama's native API (`/api/*`) is chat and text completions with
its own request fields and answer shapes (`ollama_api.py`). Errors are OpenAI-style bodies (`{"error": {"message", "type", "param", "code"}}`), never a
traceback: bad JSON and bad parameters 400 (as OpenAI and vLLM, so the openai SDK raises
`BadRequestError`), bad key 401 (a wrong Bearer key on the routes that need none too: `/health`, `/version`,
`/metrics`, ollama's `/` and `/api/version`; an empty one or another scheme passes there, as no header), unknown model 404, body too large 413, queue full 429. Every
response carries `x-request-id`; CORS headers only for local pages (`LOCAL_ORIGINS`, ollama's default) and the
origins `--cors-origin` names, and a request from any other web page is a 403 (`OriginCheck`), as is one addressed to a name other than localhost's
while the server listens on a loopback address (`HostCheck`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, AsyncIterator, Callable

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from ..engine.base import Completion
from ..engine.sampling import MAX_N, PROMPT_CHUNK, SamplingParams
from ..engine.scoring import length_batches
from ..errors import AigcError, BadInputError, UnknownGeneratorError
from ..hosts import loopback
from ..textio import parse_json
from .api_errors import ApiError, error_body, from_aigc, internal
from .logprobs import prompt_entries
from .metrics import CONTENT_TYPE, Metrics
from .ollama_api import ollama_error, ollama_path, register_ollama, served_as
from .replies import NoJob, Reply, base64_floats, checked_dimensions, event_stream, shortened
from .request_bodies import (
    CHAT_TAKES, INSTEAD, SURROGATE_ESCAPE, UNSUPPORTED, ChatRequest, CompletionRequest, EmbeddingRequest, Message, Sampling, TaskRequest, TokenizeRequest,
    body_int, check_stops, input_at, input_field, known_ids, lone_surrogate, no_files, response_schema, union_tag,
)
from .scheduler import BatchedEngine, Job, RequestCancelled, Scheduler

log = logging.getLogger("aigc.serve")
requests_log = logging.getLogger("aigc.serve.requests")  # one line a request (`request_line`); `aigc -q serve` silences it
DISCONNECT_POLL = 0.25  # seconds between checks that a task endpoint's client is still there
ENDPOINTS = "GET /v1/models, /v1/models/ID, /health, /metrics and /version, POST /v1/chat/completions, /v1/responses, /v1/completions, /v1/embeddings, /tokenize and /v1/aigc/TASK; ollama's GET /api/tags, /api/ps and /api/version, POST /api/generate, /api/chat, /api/show, /api/embed, /api/embeddings and /api/pull (a served model)"
COMPLETION_DEFAULT_TOKENS = 16  # what /v1/completions generates when max_tokens is not given (OpenAI's and vLLM's default)
OPENAI_TEMPERATURE = 1.0  # what a request for n > 1 answers without a temperature samples at (OpenAI's default)
LOCAL_ORIGINS = (  # web pages that may call the server unless --cors-origin says more: ollama's default OLLAMA_ORIGINS (not file://, whose pages send `null`, as any site's sandboxed frame does)
    *(f"{scheme}://{host}{port}" for scheme in ("http", "https") for host in ("localhost", "127.0.0.1", "[::1]", "0.0.0.0") for port in ("", ":*")),
    "app://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)
MAX_ORIGIN = 2048  # characters of an `Origin` header matched against the allowed ones: a real one (scheme, a host of at most 253, a port) is far shorter
DEFAULTED = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty")


def chat_defaults() -> dict[str, Any]:
    """The settings in `DEFAULTED` that `aigc chat` decodes with where none are given (the chat
    generator's defaults, then its template's): what a request that leaves them out gets, as ollama
    and vLLM apply a model's defaults, not OpenAI's (temperature 1, which makes a small model ramble).
    A user's `chat` template that cannot be read is a warning: the generator's own defaults then."""
    from .. import ui
    from ..generators.base import get_generator
    from ..templates import get_template

    try:
        chosen = get_template("chat").defaults
    except BadInputError as exc:
        ui.warn(f"{exc}; the server goes on with the chat generator's own defaults")
        chosen = {}
    params = get_generator("chat").sampling(None, chosen)
    return {name: getattr(params, name) for name in DEFAULTED}


@dataclass
class ServeSettings:
    """Limits and switches of one server."""

    api_key: str | None = None
    max_tokens_cap: int = 4096
    max_request_bytes: int = 1_000_000
    max_embed_bytes: int = 64_000_000  # the embedding routes' (`parsed(..., embedding=True)`): a document set in one request, as ollama's /api/embed takes it
    max_n: int = 16
    max_batch: int = 32
    batch_window: float = 0.01
    max_queue: int = 256
    retry_after: int = 1
    body_timeout: float = 30.0  # seconds a request's whole body may take to arrive (408 after): a client that trickles it holds no connection longer
    metrics_need_key: bool = False  # /metrics asks for the API key too (by default it needs none, as vLLM's and /health)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call (CORS) besides LOCAL_ORIGINS; "*" is any, `*` in one any run of characters
    bind_host: str = "127.0.0.1"  # the address listened on: a loopback one answers loopback names only (`HostCheck`)
    allowed_hosts: tuple[str, ...] = ()  # more names a request may be addressed to then; "*" is any

    def __post_init__(self) -> None:
        self.max_n = min(self.max_n, self.max_batch, MAX_N)  # a request's n rows decode in one batch, and no more than the library takes


@dataclass
class Backend:
    """One served model: its engine, its scheduler, and the blocking engine generators use."""

    name: str
    engine: Any
    scheduler: Scheduler
    batched: BatchedEngine
    created: int = field(default_factory=lambda: int(time.time()))
    given: str | None = None  # the path it was served by (`-m ./models/qwen`), which requests may name too

    @classmethod
    def start(cls, name: str, engine, settings: ServeSettings) -> "Backend":
        scheduler = Scheduler(engine, settings.max_batch, settings.batch_window, settings.max_queue).start()
        return cls(name, engine, scheduler, BatchedEngine(scheduler))

    @property
    def fingerprint(self) -> str:
        """OpenAI's `system_fingerprint`: the same while the model, how it is loaded and aigc's version are."""
        from .. import __version__

        key = f"{self.name}\0{getattr(self.engine, 'variant', '')}\0{__version__}"
        return "fp_aigc_" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _unwarned(generator, inputs: Any, sampling: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A task's result for a request, warning nothing on the server's stderr: the client reads its
    fields (`unchanged`, `missing`)."""
    from ..generators.base import quiet_notes

    with quiet_notes():
        return generator(inputs, sampling=sampling, **options)


def schedulers(backends: dict[str, Backend]) -> list[Scheduler]:
    """Each scheduler once: names for the same weights (an alias and its model) share one."""
    return list({id(b.scheduler): b.scheduler for b in backends.values()}.values())


def request_line(scope: dict, status: int | None, seconds: float) -> str:
    """A request's log line: client, method and path, status (499: the client went away first), time
    taken, its x-request-id, for a generation or embedding its model and token counts (prompt + generated), and
    `cut` where the answer was begun but not ended (a stream whose client went away)."""
    state = scope.get("state", {})
    client = scope.get("client")
    path = urllib.parse.quote(scope["path"], safe="/:@!$&'()*+,;=~")  # as sent: a %0a in it starts no line of its own
    line = f'{client[0] if client else "-"} "{scope["method"]} {path}" {status or 499} {seconds:.3f}s id={state.get("request_id")}'
    if "metered" in state:
        line += f" model={state['model']} tokens={state['prompt_tokens']}+{sum(job.generated for job in state.get('jobs', ()))}"
    return line + (" cut" if status is not None and state.get("ended") is False else "")


SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # an incoming X-Request-Id kept as it is: nothing a log line or header could be forged with


def error_for(path: str, message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    """An error body in the shape the path's clients read: ollama's `{"error": "..."}` on `/api/*`, else OpenAI's."""
    return ollama_error(message) if ollama_path(path) else error_body(message, type, param, code)


def endpoint_of(scope: dict) -> str:
    """The route a request was answered by, as `/metrics` labels it (`/v1/models/{name}`); "other"
    for a path that is no endpoint or a request refused before routing (a few names, whatever the paths)."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or "other"


class RequestIds:
    """ASGI middleware: every HTTP response carries `x-request-id`: the request's own `X-Request-Id`
    (a proxy's) when it is a short safe token (`SAFE_ID`), else a fresh id or, for a completion,
    its id (`completion_id`), and every request is one INFO line on the `aigc.serve.requests` log
    (`request_line`) once answered (an answered health check or metrics scrape a DEBUG line) and is
    counted in `metrics` (a generation with its tokens, time to first token and latency, an embedding with its tokens and latency). An unexpected error before the answer began is a JSON 500, logged once
    (Starlette's own handler would re-raise it to uvicorn, which logs it again). A request cancelled
    before its answer ended (the server quit) gets a 503, or a stream its last error event or JSON line,
    and stays cancelled."""

    def __init__(self, app, metrics: Metrics | None = None):
        self.app = app
        self.metrics = metrics if metrics is not None else Metrics()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        scope.setdefault("state", {})["began"] = began
        try:
            await self._answer(scope, receive, send)
        finally:
            state = scope.get("state", {})
            status, seconds = state.get("status"), time.perf_counter() - began
            level = logging.DEBUG if scope.get("path") in ("/health", "/metrics") and status is not None and status < 400 else logging.INFO  # a load balancer's polls, a scraper's
            if requests_log.isEnabledFor(level):
                requests_log.log(level, "%s", request_line(scope, status, seconds))
            jobs, first = state.get("jobs", ()), state.get("first_token")
            generation = {"model": state["metered"], "prompt": state["prompt_tokens"], "generated": sum(job.generated for job in jobs)} if "metered" in state else {}
            self.metrics.record(endpoint_of(scope), status or 499, seconds, first_token=first and first - began, **generation)

    async def _answer(self, scope, receive, send):
        state = scope.setdefault("state", {})
        given = Headers(scope=scope).get("x-request-id", "")
        state["own_id"] = uuid.uuid4().hex
        state["request_id"] = given if SAFE_ID.fullmatch(given) else state["own_id"]

        started: list[MutableHeaders] = []
        ended = False

        async def send_with_id(message):
            nonlocal ended
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-request-id", state["request_id"])
                started.append(headers)
                state["status"] = message["status"]
            ended = state["ended"] = message["type"] == "http.response.body" and not message.get("more_body")
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:  # the server quit at once (a second Ctrl-C): answer, not uvicorn's text 500
            if ended:
                raise
            message = "the server quit before this request was answered; retry it"
            error = json.dumps(error_for(scope.get("path", ""), message, "server_error", code="unavailable"))
            if not started:
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(error)).encode())]
                await send_with_id({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": error.encode()})
            else:  # a stream ends with the error as its last event (SSE) or JSON line (ollama's ndjson)
                kind = started[0].get("content-type", "")
                last = f"data: {error}\n\n" if "text/event-stream" in kind else f"{error}\n" if "application/x-ndjson" in kind else ""
                await send({"type": "http.response.body", "body": last.encode()})
            raise  # still cancelled: the task ends as asked (`quit_cancels` keeps uvicorn's report of it off stderr)
        except Exception as exc:
            if started:  # nothing to answer with any more: uvicorn closes the connection and logs it
                raise
            error = internal(exc)  # a bug (the handlers answered every error raised on purpose)
            body = error_for(scope.get("path", ""), error.message, error.type, error.param, error.code)
            await JSONResponse(body, status_code=error.status)(scope, receive, send_with_id)


def glob(pieces: list[str], text: str) -> bool:
    """Whether `text` is the literal `pieces` in order with any run of characters between them (the
    pieces of a pattern split on `*`): the first a prefix, the last a suffix, each other found at its
    leftmost place after the one before, which leaves the most for the rest (as gin-contrib/cors and
    fnmatch without a regex): one scan, not a backtracking search."""
    first, *middle = pieces
    if not middle:
        return text == first
    last = middle.pop()
    if len(text) < len(first) + len(last) or not (text.startswith(first) and text.endswith(last)):
        return False
    at, end = len(first), len(text) - len(last)
    for piece in middle:
        at = text.find(piece, at, end)
        if at < 0:
            return False
        at += len(piece)
    return True


class Origins:
    """The `Origin` headers allowed to call: one of `origins` or of `LOCAL_ORIGINS`, as ollama's
    OLLAMA_ORIGINS reads them (a `*` stands for any run of characters but `/`: `chrome-extension://*`,
    `http://localhost:*`; `*` alone for any origin); scheme and host in any case. Matched without a
    regex, in time linear in the header (a pattern with several `*` as a regex let one long `Origin`
    stall the server); a header over `MAX_ORIGIN` characters, longer than any real origin, matches no pattern."""

    def __init__(self, origins: tuple[str, ...]):
        self.any = "*" in origins
        self.patterns = [[part.split("*") for part in origin.lower().split("/")] for origin in (*LOCAL_ORIGINS, *origins)]

    def __call__(self, origin: str) -> bool:
        if self.any:
            return True
        if len(origin) > MAX_ORIGIN:
            return False
        parts = origin.lower().split("/")  # a `*` covers no `/`: the pattern's and the origin's parts pair up
        return any(len(pattern) == len(parts) and all(map(glob, pattern, parts)) for pattern in self.patterns)


class Cors(CORSMiddleware):
    """Starlette's CORS middleware answering the pages `Origins` allows, the same as `OriginCheck`."""

    def __init__(self, app, allowed: tuple[str, ...], **options):
        super().__init__(app, allow_origins=["*"] if "*" in allowed else [], **options)
        self.allowed = Origins(allowed)

    def is_allowed_origin(self, origin: str) -> bool:
        return self.allowed(origin)


class OriginCheck:
    """ASGI middleware: a request from a web page (its `Origin` header) that `--cors-origin` does not
    allow, nor `LOCAL_ORIGINS`, is a 403 before it runs. Without it any page a user opens could make a
    local server generate (a POST as text/plain needs no preflight), and one whose name resolves to 127.0.0.1
    (DNS rebinding) could read the answers too; clients other than browsers send no Origin."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.allowed = Origins(allowed)

    async def __call__(self, scope, receive, send):
        origin = dict(scope["headers"]).get(b"origin") if scope["type"] == "http" else None
        if origin is None or self.allowed(origin.decode("latin-1")):
            return await self.app(scope, receive, send)
        shown = origin.decode("latin-1")
        message = f"requests from web pages on {shown} are refused; start the server with --cors-origin {shown} to let them call it"
        if shown == "null":  # what a file:// page sends, and a sandboxed frame of any site
            message += " (a sandboxed frame of any website sends null too)"
        await JSONResponse(error_for(scope["path"], message, code="origin_not_allowed"), status_code=403)(scope, receive, send)


class HostCheck:
    """ASGI middleware: while the server listens on a loopback address, a request addressed (its
    `Host` header) to any name but a loopback one or `allowed` is a 403 before it runs. A web page
    whose name its owner points at 127.0.0.1 (DNS rebinding) is then same-origin with the server: it
    sends no `Origin` for a GET and could read /v1/models or /health; its Host is its own name. As
    ollama, Jupyter and Vite: a server listening on the network answers any name."""

    def __init__(self, app, bind_host: str, allowed: tuple[str, ...]):
        self.app = app
        self.on = loopback(bind_host) and "*" not in allowed
        self.allowed = {name.lower().rstrip(".") for name in allowed}

    async def __call__(self, scope, receive, send):
        host = dict(scope["headers"]).get(b"host") if self.on and scope["type"] == "http" else None
        if host is None:  # no check, or no Host (HTTP/1.0, which no browser sends)
            return await self.app(scope, receive, send)
        shown = host.decode("latin-1")
        try:
            name = urllib.parse.urlsplit("//" + shown).hostname or ""
        except ValueError:  # "[::1" and the like
            name = ""
        if loopback(name) or name.rstrip(".") in self.allowed:
            return await self.app(scope, receive, send)
        message = (
            f"requests addressed to {shown} are refused: this server listens on a loopback address and answers localhost names only "
            f"(a web page that points its own name at 127.0.0.1 would be another); start it with --allow-host {name or shown} "
            "to answer that name (a reverse proxy that passes it on), or with --host to listen on the network"
        )
        await JSONResponse(error_for(scope["path"], message, code="host_not_allowed"), status_code=403)(scope, receive, send)


def completion_id(request: Request, prefix: str) -> str:
    """The id of the request's completion, `prefix` then the request's own id (`chatcmpl-...`, and
    `resp_...` as OpenAI's), which its x-request-id header carries too unless the client sent one to keep."""
    own = f"{prefix}{request.state.own_id}"
    if request.state.request_id == request.state.own_id:
        request.state.request_id = own
    return own


async def parse_call(toolset, text: str) -> dict | None:
    """`toolset.parse(text)` in a worker thread: checking the arguments against their schema takes up
    to a second where a pattern backtracks (`json_schemas.schema_problem`), which the event loop does not wait out."""
    return await anyio.to_thread.run_sync(toolset.parse, text)


# -- the application -------------------------------------------------------------------------------


def create_app(backends: dict[str, Backend], settings: ServeSettings) -> FastAPI:
    """The app over already-started backends; stopping the app stops their schedulers."""
    if not backends:
        raise BadInputError("serve needs at least one model")
    default = next(iter(backends))
    defaults = chat_defaults()
    metered = {id(b.scheduler): name for name, b in reversed(backends.items())}  # /metrics' name for each model: its first

    async def lifespan(app):
        yield
        for scheduler in schedulers(backends):
            await anyio.to_thread.run_sync(scheduler.stop)

    app = FastAPI(title="aigc", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.backends = backends
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.add_middleware(  # answers browsers' preflight OPTIONS before any route or key check; a private network's too (Chrome's PNA)
        Cors, allowed=settings.cors_origins, allow_private_network=True, allow_methods=["*"], allow_headers=["*"], expose_headers=["x-request-id"],
    )
    app.add_middleware(OriginCheck, allowed=settings.cors_origins)  # before CORS: a refused page's preflight is the same 403
    app.add_middleware(HostCheck, bind_host=settings.bind_host, allowed=settings.allowed_hosts)  # before CORS: a rebound page's preflight too
    app.add_middleware(RequestIds, metrics=metrics)  # added last: outermost, so a preflight's answer has its id too

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(error_for(request.url.path, exc.message, exc.type, exc.param, exc.code), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(AigcError)
    async def _aigc_error(request: Request, exc: AigcError):
        return await _api_error(request, from_aigc(exc, settings.retry_after, input_field(request.url.path)))

    def meant_path(request: Request) -> str | None:
        """The endpoint a path with its /v1 left out (a base URL without it) or doubled (a client that
        adds /v1 to one that has it) stands for, else None."""
        path = request.url.path
        meant = path[3:] if path.startswith("/v1/v1/") else "/v1" + path if not path.startswith("/v1/") else None
        scope = {"type": "http", "path": meant, "method": request.method}
        return meant if meant and any(route.matches(scope)[0] != Match.NONE for route in app.routes) else None

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":  # no such route: say which there are
            meant = meant_path(request)
            message = f"{request.url.path} is not an endpoint of this server; " + (
                f"did you mean {meant}? An OpenAI client's base URL here is {str(request.base_url).rstrip('/')}/v1" if meant else f"it offers {ENDPOINTS}"
            )
        return JSONResponse(error_for(request.url.path, message, code=code), status_code=exc.status_code, headers=exc.headers)  # a 405's Allow

    def refuse_key() -> ApiError:
        return ApiError(401, "missing or wrong API key; send Authorization: Bearer KEY", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def keyed(request: Request) -> bool:
        """Whether the request may use the API: no key is set, or it sends it."""
        if not settings.api_key:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.api_key.encode())

    async def auth(request: Request) -> None:
        if not keyed(request):
            raise refuse_key()

    async def no_wrong_key(request: Request) -> None:
        """On the routes that need no key (health checks send none): a request that sends a wrong Bearer key
        is refused all the same, so that a client's check of its settings fails on it rather than passing
        (Open WebUI's "Verify connection" reads /api/version with the key it was given). An empty one
        (`Bearer `, a client set up with no key) is none, and another scheme (a proxy's `Basic`) no key of
        this server's: both pass, as no header does."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() and not keyed(request):
            raise refuse_key()

    async def body(request: Request, model: type[BaseModel], embedding: bool = False):
        return validated(model, await parsed(request, embedding))

    async def parsed(request: Request, embedding: bool = False) -> dict:
        """The request's JSON object, checked for size (an embedding route's against `max_embed_bytes`: a whole
        document set, as LangChain's `OllamaEmbeddings` sends one), encoding and lone surrogates."""
        limit, flag = (settings.max_embed_bytes, "--max-embed-bytes") if embedding else (settings.max_request_bytes, "--max-request-bytes")
        too_large = ApiError(413, f"the request body is larger than {limit} bytes; send less in one request, or start the server with {flag} N for more", code="request_too_large")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        with anyio.move_on_after(settings.body_timeout) as reading:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        if reading.cancelled_caught:
            raise ApiError(408, f"the request body did not arrive within {settings.body_timeout:g} s", code="request_timeout", headers={"Connection": "close"})
        raw = b"".join(chunks)
        try:
            data = parse_json(raw or b"null", parse_int=body_int)
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"the body is not valid {exc.encoding.upper()} (byte {exc.start}); send the JSON as UTF-8", code="invalid_json") from None
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        surrogate = lone_surrogate(data) if SURROGATE_ESCAPE.search(raw) else None
        if surrogate is not None:
            raise surrogate
        return data

    def validated(model: type[BaseModel], data: dict):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"] if not union_tag(p)) or None
            if first["type"] == "extra_forbidden":  # a task request: say what it takes
                streamed = " (a task answers whole; /v1/chat/completions streams)" if where == "stream" else ""
                raise ApiError(400, f"{where} is not a field of this request; it takes {', '.join(model.model_fields)}{streamed}", param=where, code="invalid_value") from None
            raise ApiError(400, f"{where}: {first['msg']}" if where else first["msg"], param=where, code="invalid_value") from None

    def backend_for(name: str | None) -> Backend:
        """The backend serving `name`; a request that names none gets the only model served (under its
        first name, where an alias of it is served too), and is a 400 where several are (as OpenAI and
        ollama: guessing would hide a client's missing setting). A name is also taken as ollama lists it
        (`/api/tags`): `NAME:latest` is NAME, and NAME is `NAME:latest`, on every route."""
        if name is None or name == "":
            if len(schedulers(backends)) > 1:
                raise ApiError(400, f"model is required: this server serves {', '.join(backends)}; name one", param="model", code="invalid_value")
            return backends[default]
        name = served_as(name, backends) or name
        if name not in backends:  # the path a model was served by, as clients named it before it was served under its own name
            name = next((n for n, b in backends.items() if b.given == name.removesuffix(":latest")), name)
        if name not in backends:
            raise ApiError(404, f"the model {name!r} is not served here; served: {', '.join(backends)}", param="model", code="model_not_found")
        return backends[name]

    async def sampling(request: Request, req: Sampling, prompt_tokens: int, backend: Backend) -> SamplingParams | None:
        """The request's sampling settings, `aigc chat`'s defaults (`chat_defaults`) for those it leaves
        out; None for `echo` with `max_tokens: 0` (nothing to generate). vLLM's `stop_token_ids` and
        `include_stop_str_in_output` are noted on the request for its jobs (`submit`). The JSON schema's
        parser is built in a worker thread: a slow schema slows its own request, not the event loop."""
        for name, neutral in UNSUPPORTED.items():
            if getattr(req, name, None) not in neutral and not (isinstance(req, ChatRequest) and name in CHAT_TAKES):
                raise ApiError(400, f"{name} is not supported by this server" + (f" ({INSTEAD[name]})" if name in INSTEAD else ""), param=name, code="unsupported")
        schema = await anyio.to_thread.run_sync(response_schema, req.response_format)
        if req.n > settings.max_n:
            raise ApiError(400, f"n must be at most {settings.max_n} on this server", param="n", code="invalid_value")
        asked = req.max_completion_tokens or req.max_tokens
        budget = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"  # named as the client named it
        sent = asked
        if asked is not None and asked > settings.max_tokens_cap:  # the cap, as /api's num_predict and as ollama's /v1 takes any: the answer ends there, finish_reason "length"
            asked = settings.max_tokens_cap
        room = backend.batched.context_length - prompt_tokens
        where = "messages" if isinstance(req, ChatRequest) else "prompt"
        if room < (0 if asked == 0 else 1):
            raise ApiError(400, f"the prompt takes {prompt_tokens} tokens but {backend.name} holds {backend.batched.context_length}", param=where, code="context_length_exceeded")
        if asked is not None and asked > room:
            raise ApiError(
                400, f"{backend.name} holds {backend.batched.context_length} tokens, but the {where} {'take' if where == 'messages' else 'takes'} {prompt_tokens} and {budget} asks for {asked}"
                     f"{f' (of the {sent} sent: at most --max-tokens-cap on this server)' if sent != asked else ''}; lower {budget} to {room} or less",
                param=budget, code="context_length_exceeded",
            )
        if asked == 0:
            if not req.echo:
                raise ApiError(400, "max_tokens: 0 is only for echo (the prompt's log-probabilities); ask for at least 1", param="max_tokens", code="invalid_value")
            return None
        unasked = COMPLETION_DEFAULT_TOKENS if isinstance(req, CompletionRequest) else settings.max_tokens_cap  # as OpenAI and vLLM
        max_tokens = asked or min(unasked, settings.max_tokens_cap, room)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        check_stops(stop)
        request.state.stop_ids = frozenset(known_ids(req.stop_token_ids or [], backend.batched.vocabulary, "stop_token_ids"))
        request.state.keep_stops = bool(req.include_stop_str_in_output)
        values = dict(defaults)
        values.update(
            {
                k: v for k, v in {
                    "temperature": req.temperature, "top_p": req.top_p, "top_k": None if req.top_k is None else max(req.top_k, 0), "min_p": req.min_p,
                    "repetition_penalty": req.repetition_penalty, "frequency_penalty": req.frequency_penalty, "presence_penalty": req.presence_penalty,
                    "logit_bias": req.logit_bias,
                }.items() if v is not None
            }
        )
        if req.n > 1 and req.temperature is None and not values["temperature"]:  # greedy would give n copies of one answer
            values["temperature"] = OPENAI_TEMPERATURE
        if req.top_p == 0:  # only the likeliest token is left: greedy
            values.update(temperature=0.0, top_p=1.0)
        try:
            params = SamplingParams(max_tokens=max_tokens, stop=tuple(stop), n=req.n, seed=req.seed, json_schema=schema, **values)
        except BadInputError as exc:
            raise ApiError(400, str(exc), param=getattr(exc, "option", None), code="invalid_value") from None
        return params

    async def encode(backend: Backend, prompt, tools: list[dict] | None = None, continue_final: bool = False) -> list[int]:
        return await anyio.to_thread.run_sync(backend.batched.encode, prompt, tools, continue_final)

    async def encode_chat(backend: Backend, messages: list[Message], toolset=None, continue_final: bool = False) -> list[int]:
        """Chat messages' token ids, with the tools offered and earlier calls as the model reads them
        (`tools.prompt`), and the answer's turn opened, or the last message left open (`continue_final`)."""
        from .tools import prompt

        return await encode(backend, *prompt([m.plain(i) for i, m in enumerate(messages)], toolset, backend.batched.template_lists_tools), continue_final)

    def taken(request: Request, backend: Backend) -> bool:
        """Whether the request was taken before a drain began (its first model call was), so that its
        later calls (a tool call decoded again, echo's decoding after its scoring) are served until
        the cut (`Job.ongoing`), as a task's are (`BatchedEngine.scoped`)."""
        state = request.state
        if getattr(state, "ongoing", None) is None:
            state.ongoing = not backend.scheduler.closing
        return state.ongoing

    def submit(request: Request, backend: Backend, reply, rows: list[list[int]], params: SamplingParams) -> tuple[Job, asyncio.Queue]:
        """Queue the rows for `backend`'s scheduler, noted on the request for its log line (`RequestIds`)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        state = request.state

        def emit(event: tuple) -> None:  # on the scheduler thread
            if event[0] == "piece" and state.first_token is None:
                state.first_token = time.perf_counter()  # for /metrics' time to first token
            loop.call_soon_threadsafe(events.put_nowait, event)

        state.first_token = getattr(state, "first_token", None)
        job = Job(
            rows, params, emit, logprobs=reply.top,
            stop_ids=getattr(state, "stop_ids", frozenset()), keep_stops=getattr(state, "keep_stops", False),
        )
        job.ongoing = taken(request, backend)
        backend.scheduler.submit(job)  # a full queue or a server shutting down refuses it: not counted as a generation
        state.model, state.prompt_tokens, state.jobs = backend.name, reply.prompt_tokens, [*getattr(state, "jobs", ()), job]
        state.metered = metered[id(backend.scheduler)]
        return job, events

    async def collect(job: Job, events: asyncio.Queue, request: Request):
        """(completions, log-probabilities per row or None) once the job is done; a client that goes
        away meanwhile cancels the job (starlette does not cancel a handler that is not streaming)."""
        loop = asyncio.get_running_loop()
        check_at = loop.time() + DISCONNECT_POLL
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout=DISCONNECT_POLL)
                except asyncio.TimeoutError:
                    event = ("waiting",)
                if loop.time() >= check_at:  # pieces keep coming, so check by the clock
                    if await request.is_disconnected():
                        log.info("a client went away; its rows stop")
                        return None
                    check_at = loop.time() + DISCONNECT_POLL
                if event[0] == "error":
                    raise from_aigc(event[1], settings.retry_after, input_field(request.url.path))
                if event[0] == "done":
                    return event[1], event[2]
        finally:
            job.cancel()

    async def stream_events(reply: "Reply", job: Job, events: asyncio.Queue) -> AsyncIterator[str]:
        """The stream's lines (SSE events, or ollama's JSON lines: `reply.sse`) from a job's events; a client that goes away cancels the job (its rows stop)."""
        try:
            for opening in reply.opening():
                yield reply.sse(opening)
            while True:
                event = await events.get()
                if event[0] == "piece":
                    yield reply.sse(reply.piece(event[1], event[2], event[3]))
                elif event[0] == "end":  # a row's finish_reason as it ends, as OpenAI sends it
                    for line in reply.ending(event[1], event[2]):
                        yield reply.sse(line)
                elif event[0] == "done":
                    for line in reply.closing(event[1]):
                        yield reply.sse(line)
                    if reply.done:
                        yield reply.sse(reply.done)
                    return
                else:
                    yield reply.sse(reply.error_event(from_aigc(event[1], settings.retry_after, reply.input_field)))
                    return
        finally:
            job.cancel()

    async def answer(request: Request, req: Sampling, reply: "Reply", backend: Backend, rows: list[list[int]], params: SamplingParams | None):
        """Decode the rows (or nothing, for echo alone) and answer as one body or as a stream."""
        if params is None:
            job, events = NoJob(), asyncio.Queue()
            for index in range(len(rows)):
                events.put_nowait(("end", index, "length"))
            events.put_nowait(("done", [Completion("", len(r), 0, "length") for r in rows], [[] for _ in rows]))
        else:
            job, events = submit(request, backend, reply, rows, params)
        if req.stream:
            return event_stream(stream_events(reply, job, events), reply.media_type)
        collected = await collect(job, events, request)
        if collected is None:
            return Response(status_code=499)  # nobody reads it: the client is gone
        return reply.whole(*collected)

    keyless = [Depends(no_wrong_key)]

    @app.api_route("/health", methods=["GET", "HEAD"], dependencies=keyless)  # HEAD: what some uptime checks send
    async def health(request: Request):
        """The status for anyone (a health check sends no key); the served models and their load only
        for a client with the key, where one is set (the model list is the API's, which asks for it)."""
        status = {"status": "stopping" if any(b.scheduler.closing for b in backends.values()) else "ok"}
        if not keyed(request):
            return status
        return status | {
            "models": {
                name: {"waiting": b.scheduler.waiting, "decoding_rows": b.scheduler.active_rows, "batches": b.scheduler.batches, "joined": b.scheduler.joined}
                for name, b in backends.items()
            },
        }

    @app.get("/version", dependencies=keyless)
    async def version():
        from .. import __version__

        return {"version": __version__}

    @app.get("/metrics", dependencies=[Depends(auth)] if settings.metrics_need_key else keyless)
    async def metrics_text():
        """Prometheus' text format: `Metrics`' counters and histograms, and each model's scheduler now
        (under its first name where an alias of it is served too)."""
        served = [(name, backends[name].scheduler) for name in metered.values()]
        gauges = {
            "aigc_requests_running": ("Requests decoding now.", {name: s.active_jobs for name, s in served}),
            "aigc_requests_waiting": ("Requests waiting for a place in the batch (queued or being prefilled).", {name: s.waiting for name, s in served}),
            "aigc_batch_rows": ("Rows decoding now (a request for n answers has n).", {name: s.active_rows for name, s in served}),
            "aigc_batch_rows_max": ("Most rows decoded together (--max-batch).", {name: s.max_batch for name, s in served}),
        }
        return Response(metrics.render(gauges), media_type=CONTENT_TYPE)

    def card(backend: Backend) -> dict:
        return {"id": backend.name, "object": "model", "created": backend.created, "owned_by": "aigc", "max_model_len": backend.batched.context_length}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models():
        return {"object": "list", "data": [card(b) for b in backends.values()]}

    @app.get("/v1/models/{name:path}", dependencies=[Depends(auth)])
    async def model(name: str):
        return card(backend_for(name.rstrip("/"))) if name.strip("/") else await models()  # /v1/models/ is the list

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat_completions(request: Request):
        from .tools import requested

        req: ChatRequest = await body(request, ChatRequest)
        if req.echo:
            raise ApiError(400, "echo is offered on /v1/completions only", param="echo", code="unsupported")
        backend = backend_for(req.model)
        toolset, legacy = await anyio.to_thread.run_sync(requested, req.tools, req.tool_choice, req.functions, req.function_call, req.response_format, req.parallel_tool_calls is not False)  # builds schemas' parsers
        ids = await encode_chat(backend, req.messages, toolset, req.continuing)
        params = await sampling(request, req, len(ids), backend)
        reply = Reply(True, req.model or backend.name, req.top, req.stream_options, len(ids), params.n, fingerprint=backend.fingerprint, id=completion_id(request, "chatcmpl-"), legacy=legacy)
        if toolset:
            return await answer_tools(request, req, reply, backend, ids, params, toolset)
        return await answer(request, req, reply, backend, [ids] * params.n, params)

    async def answer_tools(request: Request, req: ChatRequest, reply: Reply, backend: Backend, ids: list[int], params: SamplingParams, toolset):
        """A chat answer that may call a tool (`tools.py`): decoded under the call's schema where a call
        must be made, else freely, and again under it where an answer opens a call that is not valid.
        A free answer is streamed as it is decoded (`stream_tools`); any other is decoded whole, then
        sent as one body or as a stream's events (`reply.called`). An answer held to a format (ollama's
        `format` with tools: `params.json_schema`) is decoded once under it, and is a call only where it is one as it stands."""
        from .tools import starts_call

        held = dataclasses.replace(params, json_schema=toolset.call_schema())
        free = not toolset.forced and params.json_schema is None
        if req.stream and free:
            job, events = submit(request, backend, reply, [ids] * params.n, params)
            streamed = stream_tools(request, reply, backend, ids, held, toolset, job, events)
            return event_stream(streamed, reply.media_type)
        collected = await collect(*submit(request, backend, reply, [ids] * params.n, held if toolset.forced else params), request)
        if collected is None:
            return Response(status_code=499)
        completions, logprobs = list(collected[0]), collected[1] and list(collected[1])
        again = [i for i, c in enumerate(completions) if free and starts_call(c.text) and await parse_call(toolset, c.text) is None]
        if again:
            redone = await collect(*submit(request, backend, reply, [ids] * len(again), dataclasses.replace(held, n=len(again))), request)
            if redone is None:
                return Response(status_code=499)
            for i, completion, entries in zip(again, redone[0], redone[1] or [None] * len(again)):
                completions[i] = completion
                if logprobs:
                    logprobs[i] = entries
        body, sent = reply.called(completions, logprobs, [await parse_call(toolset, c.text) for c in completions])
        if not req.stream:
            return body

        async def events() -> AsyncIterator[str]:
            for event in sent:
                yield reply.sse(event)
            if reply.done:
                yield reply.sse(reply.done)

        return event_stream(events(), reply.media_type)

    async def stream_tools(request: Request, reply: Reply, backend: Backend, ids: list[int], held: SamplingParams, toolset, job: Job, events: asyncio.Queue) -> AsyncIterator[str]:
        """The stream's lines (`reply.sse`) of free answers that may call a tool ("auto"): their text as
        it is decoded, less what may be a call's (`tools.Holdback`); its calls once its row ends
        (`reply.calling`), or the text held back where it is none. A row that opens with a call that is not valid is decoded
        again under the calls' schema, as `answer_tools` does."""
        from .tools import Holdback, starts_call

        rows, redone = [Holdback() for _ in range(held.n)], {}
        try:
            while True:
                event, lines = await events.get(), []
                if event[0] == "piece":
                    sent = rows[event[1]].feed(event[2], event[3])
                    lines = ([] if reply.opened or not sent else reply.opening()) + ([reply.piece(event[1], *sent)] if sent else [])
                elif event[0] == "end":
                    (_, i, reason), row = event, rows[event[1]]
                    call = await parse_call(toolset, row.text) if row.opened else None
                    rest = row.rest() if call is None else None
                    if row.opened and call is None and starts_call(row.text):
                        try:
                            again = await collect(*submit(request, backend, reply, [ids], dataclasses.replace(held, n=1)), request)
                        except ApiError as exc:
                            yield reply.sse(reply.error_event(exc))
                            return
                        if again is None:
                            return
                        redone[i], reason = again[0][0], again[0][0].finish_reason
                        call = await parse_call(toolset, redone[i].text)
                        rest = (redone[i].text, again[1][0] if again[1] else None) if redone[i].text else None
                    if call:
                        lines = reply.calling(i, call)
                    else:
                        lines = ([] if reply.opened else reply.opening()) + ([reply.piece(i, *rest)] if rest else []) + reply.ending(i, reason)
                elif event[0] == "done":
                    lines = ([] if reply.opened else reply.opening()) + reply.closing([redone.get(i, c) for i, c in enumerate(event[1])])
                else:
                    lines = [reply.error_event(from_aigc(event[1], settings.retry_after, reply.input_field))]
                for line in lines:
                    yield reply.sse(line)
                if event[0] in ("done", "error"):
                    if event[0] == "done" and reply.done:
                        yield reply.sse(reply.done)
                    return
        finally:
            job.cancel()

    @app.post("/v1/responses", dependencies=[Depends(auth)])
    async def responses(request: Request):
        from .responses import ResponseReply, chat_body, echoed, renamed
        from .tools import Toolset

        data = await parsed(request)
        converted = chat_body(data)
        try:
            req: ChatRequest = validated(ChatRequest, converted)
            backend = backend_for(req.model)
            toolset = await anyio.to_thread.run_sync(functools.partial(Toolset.of, req.tools, req.tool_choice, req.response_format, parallel=False))  # one function_call item (ResponseReply)
            ids = await encode_chat(backend, req.messages, toolset, req.continuing)
            params = await sampling(request, req, len(ids), backend)
        except ApiError as exc:
            raise renamed(exc) from None
        reply = ResponseReply(req.model or backend.name, len(ids), completion_id(request, "resp_"), echoed(data, params))
        if toolset:
            return await answer_tools(request, req, reply, backend, ids, params, toolset)
        return await answer(request, req, reply, backend, [ids], params)

    @app.post("/v1/completions", dependencies=[Depends(auth)])
    async def completions(request: Request):
        req: CompletionRequest = await body(request, CompletionRequest)
        backend = backend_for(req.model)
        given = req.prompts()
        if len(given) * req.n > settings.max_batch:  # before any prompt is tokenized
            raise ApiError(400, f"prompts x n must be at most {settings.max_batch} (--max-batch) on this server; send fewer prompts a request", param="prompt", code="invalid_value")
        encoded = [await encode(backend, p) if isinstance(p, str) else known_ids(p, backend.batched.vocabulary) for p in given]
        prompts = [p if isinstance(p, str) else await anyio.to_thread.run_sync(backend.batched.decode, p) for p in given]  # the texts echo shows
        if not all(encoded):
            raise ApiError(400, "prompt: an empty prompt has nothing to continue or score", param="prompt", code="invalid_value")
        params = await sampling(request, req, max(len(ids) for ids in encoded), backend)
        n = params.n if params else req.n
        reply = Reply(False, req.model or backend.name, req.top, req.stream_options, sum(len(ids) for ids in encoded), n, fingerprint=backend.fingerprint, id=completion_id(request, "cmpl-"))
        if req.echo:
            entries: list = [None] * len(prompts)
            if req.top is not None:  # the prompts batched by length, a forward pass of at most PROMPT_CHUNK tokens a call between decode steps
                starts = [await anyio.to_thread.run_sync(backend.batched.offsets, text, ids) for text, ids in zip(prompts, encoded)]
                call = functools.partial(backend.scheduler.call, ongoing=taken(request, backend))
                for batch in length_batches([len(ids) for ids in encoded], PROMPT_CHUNK):
                    rows, at = [encoded[i] for i in batch], [starts[i] for i in batch]
                    found = await anyio.to_thread.run_sync(prompt_entries, call, backend.engine.model, rows, req.top, backend.scheduler.token_texts, at)
                    for i, each in zip(batch, found):
                        entries[i] = each
            reply.heads = [(text, each) for text, each in zip(prompts, entries) for _ in range(n)]
        return await answer(request, req, reply, backend, [ids for ids in encoded for _ in range(n)], params)

    def _no_exit(call: Callable[[], Any]) -> Any:
        """`call()`, a SystemExit or KeyboardInterrupt it raises (a plugin's bug: no signal reaches a
        worker thread) turned into an error, which asyncio would otherwise take as the server's end."""
        try:
            return call()
        except (SystemExit, KeyboardInterrupt) as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc

    async def watched(request: Request, engine: BatchedEngine, call: Callable[[], Any], what: str) -> Any:
        """`call()` in a worker thread, on a scoped `engine` that is cancelled when the client goes
        away (the call then raises `RequestCancelled`) or this handler is (the server stopping)."""
        work = asyncio.ensure_future(anyio.to_thread.run_sync(_no_exit, call))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=DISCONNECT_POLL)
                if not work.done() and await request.is_disconnected():
                    log.info("%s: the client went away; its rows stop", what)
                    engine.cancel()
                    break
            return await work
        finally:
            if not work.done():
                engine.cancel()

    async def fit(request: Request, backend: Backend, texts: list[str], listed: bool = True) -> list[str] | None:
        """Each text as `embed` reads it: one longer than the context cut to it (ollama's `/api/embed`). A
        text that cannot be read is its 400, naming it (`input.N`, where `listed`); None where the client went away."""
        engine = backend.batched.scoped()

        def run() -> list[str]:
            read = []
            for i, text in enumerate(texts):
                try:
                    read.append(engine.fitted(text))
                except BadInputError as exc:
                    exc.at = input_at(i, listed)
                    raise
            return read

        try:
            return await watched(request, engine, run, "embeddings")
        except RequestCancelled:
            return None

    async def embed(request: Request, backend: Backend, texts: list[str], first: int = 0, listed: bool = True) -> tuple[list[list[float]], int] | None:
        """(each text's embedding, the texts' token count); None where the client went away. A text longer
        than the context is a 400 naming it (`input.N`, N counted from `first`, where `listed`) and by how much
        (`fit` cuts it first where it is to be cut)."""
        engine = backend.batched.scoped()

        def run() -> tuple[list[list[float]], int]:
            try:
                return engine.embed(texts), sum(engine.count_tokens(t) for t in texts)
            except BadInputError as exc:
                if exc.index is not None:
                    exc.at = input_at(first + exc.index, listed)
                raise

        try:
            vectors, tokens = await watched(request, engine, run, "embeddings")
        except RequestCancelled:
            return None
        state = request.state  # for the log line and /metrics (`RequestIds`), as `submit` notes a generation
        state.model, state.prompt_tokens, state.metered = backend.name, tokens, metered[id(backend.scheduler)]
        return vectors, tokens

    @app.post("/v1/embeddings", dependencies=[Depends(auth)])
    async def embeddings(request: Request):
        req: EmbeddingRequest = await body(request, EmbeddingRequest, embedding=True)
        backend = backend_for(req.model)
        texts = req.texts()
        dimensions = checked_dimensions(req.dimensions, backend.engine.embedding_size)  # fewer: cut and scaled to length 1 again, as OpenAI's text-embedding-3
        embedded = await embed(request, backend, texts, listed=not isinstance(req.input, str))
        if embedded is None:
            return Response(status_code=499)
        vectors, tokens = embedded
        if dimensions is not None:
            vectors = shortened(vectors, dimensions)
        data = [
            {"object": "embedding", "index": i, "embedding": base64_floats(v) if req.encoding_format == "base64" else v}
            for i, v in enumerate(vectors)
        ]
        return {"object": "list", "data": data, "model": req.model or backend.name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/tokenize", dependencies=[Depends(auth)])
    async def tokenize(request: Request):
        req: TokenizeRequest = await body(request, TokenizeRequest)
        backend = backend_for(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise ApiError(400, "give either prompt or messages", param="prompt", code="invalid_value")
        ids = await encode(backend, req.prompt) if req.prompt is not None else await encode_chat(backend, req.messages)
        return {"count": len(ids), "max_model_len": backend.batched.context_length, "tokens": ids}

    @app.post("/v1/aigc/{task}", dependencies=[Depends(auth)])
    async def run_task(task: str, request: Request):
        """Any registered text generator, through the same code as the CLI: summarize, headline, ..."""
        from ..generators.base import get_generator, registered_generators

        req: TaskRequest = await body(request, TaskRequest)
        backend = backend_for(req.model)
        if task == "image":
            raise ApiError(400, "image generation is not served; use `aigc image`", code="unsupported")
        engine = backend.batched.scoped()  # cancel() stops this request's rows and its later calls
        try:
            generator = get_generator(task, engine=engine)
            no_files(generator.Options, req.options, req.sampling)
            options = generator.validate(req.options)  # typed values ("3" -> 3) before the caps
        except UnknownGeneratorError:
            served = ", ".join(name for name in sorted(registered_generators()) if name != "image")
            raise ApiError(404, f"no generator {task!r} is served here; served: {served}", code="not_found") from None
        except BadInputError as exc:  # an unknown option or template: about the options
            raise from_aigc(exc, settings.retry_after, "options") from None
        except SystemExit as exc:  # a plugin's sys.exit() in its options or constructor: not the server's end
            log.error("the %s task failed (its generator or options called sys.exit)", task, exc_info=exc)
            raise ApiError(500, f"the {task} task failed; the server log has the details", "server_error") from None
        given = {k: v for k, v in req.sampling.items() if v is not None}  # None: the default, as generators take it
        try:
            params = SamplingParams.from_settings(given)  # parsed ("9" -> 9) before the caps
        except BadInputError as exc:  # an unknown setting: about the sampling (a bad value names its setting)
            raise from_aigc(exc, settings.retry_after, "sampling") from None
        caps = (
            ("max_tokens", params.max_tokens if "max_tokens" in given else None, settings.max_tokens_cap),
            ("n", params.n if "n" in given else None, settings.max_n),
            ("n", getattr(options, "n", None), settings.max_n),
        )
        for name, value, cap in caps:
            if isinstance(value, (int, float)) and value > cap:
                flag = " (its --max-tokens-cap)" if name == "max_tokens" else ""
                raise ApiError(400, f"{name} must be at most {cap} on this server{flag}", param=name, code="invalid_value")
        check_stops(params.stop)
        if req.input is None:
            raise ApiError(400, "input: the task's input is required", param="input", code="invalid_value")
        try:
            result = await watched(request, engine, lambda: _unwarned(generator, req.input, req.sampling, req.options), task)
        except RequestCancelled:
            return Response(status_code=499)  # nobody reads it: the client is gone
        except AigcError:
            raise
        except Exception as exc:  # a bug in the generator (a plugin's, say): the log names it
            from ..generators.base import registered_generators

            plugin = registered_generators().get(task, ("an unknown plugin",))[0]
            log.error("the %s task failed (its generator is from plugin %s)", task, plugin, exc_info=exc)
            raise ApiError(500, f"the {task} task failed; the server log has the details", "server_error") from None
        try:
            return JSONResponse({**result, "model": req.model or backend.name})
        except (TypeError, ValueError):
            raise ApiError(500, f"the {task} generator returned something that is not JSON data", "server_error") from None

    register_ollama(app, SimpleNamespace(
        backends=backends, settings=settings, defaults=defaults, auth=auth, parsed=parsed, validated=validated, backend_for=backend_for,
        encode=encode, encode_chat=encode_chat, sampling=sampling, answer=answer, answer_tools=answer_tools, fit=fit, embed=embed,
        no_wrong_key=no_wrong_key,
    ))
    return app
