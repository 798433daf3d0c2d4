"""The FastAPI application: OpenAI-compatible endpoints, task endpoints, auth and error bodies.

Every generation goes through a model's `Scheduler`, so concurrent requests share one decode.
Errors are OpenAI-style bodies (`{"error": {"message", "type", "param", "code"}}`), never a
traceback: bad JSON 400, bad parameters 422 (or 400 for what only the model can tell, such as a
prompt that does not fit), bad key 401, unknown model 404, body too large 413, queue full 429.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Optional, Union

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.sampling import SamplingParams
from ..errors import AigcError, BadInputError, UnknownGeneratorError, UnknownModelError
from .scheduler import BatchedEngine, Job, QueueFullError, Scheduler, ShuttingDownError

log = logging.getLogger("aigc.serve")


@dataclass
class ServeSettings:
    """Limits and switches of one server."""

    api_key: str | None = None
    max_tokens_cap: int = 4096
    max_request_bytes: int = 1_000_000
    max_n: int = 16
    max_batch: int = 32
    batch_window: float = 0.01
    max_queue: int = 256
    retry_after: int = 1


@dataclass
class Backend:
    """One served model: its engine, its scheduler, and the blocking engine generators use."""

    name: str
    engine: Any
    scheduler: Scheduler
    batched: BatchedEngine
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def start(cls, name: str, engine, settings: ServeSettings) -> "Backend":
        scheduler = Scheduler(engine, settings.max_batch, settings.batch_window, settings.max_queue).start()
        return cls(name, engine, scheduler, BatchedEngine(scheduler))


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code, self.headers = status, message, type, param, code, headers


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _from_aigc(exc: Exception, retry_after: int) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, QueueFullError):
        return ApiError(429, str(exc), "rate_limit_error", code="queue_full", headers={"Retry-After": str(retry_after)})
    if isinstance(exc, ShuttingDownError):
        return ApiError(503, str(exc), "server_error", code="unavailable", headers={"Retry-After": str(retry_after)})
    if isinstance(exc, (UnknownModelError, UnknownGeneratorError)):
        return ApiError(404, str(exc), code="not_found")
    if isinstance(exc, BadInputError):
        return ApiError(400, str(exc))
    if isinstance(exc, AigcError):
        return ApiError(500, str(exc), "server_error")
    log.error("unexpected error", exc_info=exc)
    return ApiError(500, "internal error; the server log has the details", "server_error")


# -- request bodies --------------------------------------------------------------------------------


class _Sampling(BaseModel):
    """Fields shared by chat and completions (unknown fields are ignored, as OpenAI clients send many)."""

    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=0)  # extension (vLLM, llama.cpp)
    repetition_penalty: Optional[float] = Field(None, gt=0, le=3)  # extension (vLLM)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    n: int = Field(1, ge=1)
    seed: Optional[int] = Field(None, ge=0)
    stream: bool = False
    stream_options: Optional[dict] = None
    logprobs: Union[bool, int, None] = None
    echo: Optional[bool] = None
    tools: Optional[list] = None
    logit_bias: Optional[dict] = None


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: Optional[str] = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[_Part], None] = None

    def plain(self) -> dict:
        content = self.content or ""
        if isinstance(content, list):
            if any(p.type != "text" for p in content):
                raise ApiError(400, "only text content parts are supported", param="messages")
            content = "".join(p.text or "" for p in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatRequest(_Sampling):
    messages: list[_Message] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]]


class TaskRequest(BaseModel):
    """A generator call: `input` as the generator takes it, its options, and sampling settings."""

    model_config = ConfigDict(extra="forbid")
    model: Optional[str] = None
    input: Any = None
    options: dict[str, Any] = Field(default_factory=dict)
    sampling: dict[str, Any] = Field(default_factory=dict)


class TokenizeRequest(BaseModel):
    """vLLM's `/tokenize`: a prompt or chat messages -> token count (used by remote backends)."""

    model_config = ConfigDict(extra="ignore")
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[_Message]] = None


# -- the application -------------------------------------------------------------------------------


def create_app(backends: dict[str, Backend], settings: ServeSettings) -> FastAPI:
    """The app over already-started backends; stopping the app stops their schedulers."""
    if not backends:
        raise BadInputError("serve needs at least one model")
    default = next(iter(backends))

    async def lifespan(app):
        yield
        for backend in backends.values():
            await anyio.to_thread.run_sync(backend.scheduler.stop)

    app = FastAPI(title="aigc", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.backends = backends
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(AigcError)
    async def _aigc_error(request: Request, exc: AigcError):
        return await _api_error(request, _from_aigc(exc, settings.retry_after))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), code=code), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return await _api_error(request, _from_aigc(exc, settings.retry_after))

    async def auth(request: Request) -> None:
        if not settings.api_key:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "missing or wrong API key; send Authorization: Bearer KEY", code="invalid_api_key")

    async def body(request: Request, model: type[BaseModel]):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_request_bytes:
            raise ApiError(413, f"the request body is larger than {settings.max_request_bytes} bytes", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_request_bytes:
                raise ApiError(413, f"the request body is larger than {settings.max_request_bytes} bytes", code="request_too_large")
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks) or b"null")
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            raise ApiError(422, f"{where}: {first['msg']}" if where else first["msg"], param=where, code="invalid_value") from None

    def backend_for(name: str | None) -> Backend:
        if name is None or name == "":
            return backends[default]
        if name not in backends:
            raise ApiError(404, f"the model {name!r} is not served here; served: {', '.join(backends)}", param="model", code="model_not_found")
        return backends[name]

    def sampling(req: _Sampling, prompt_tokens: int, backend: Backend, defaults: dict) -> SamplingParams:
        for name in ("echo", "tools", "logit_bias"):
            if getattr(req, name):
                raise ApiError(400, f"{name} is not supported by this server", param=name, code="unsupported")
        if req.logprobs not in (None, False, 0) or getattr(req, "top_logprobs", None):
            raise ApiError(400, "logprobs are not supported by this server", param="logprobs", code="unsupported")
        if req.n > settings.max_n:
            raise ApiError(400, f"n must be at most {settings.max_n} on this server", param="n")
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > settings.max_tokens_cap:
            raise ApiError(400, f"max_tokens must be at most {settings.max_tokens_cap} on this server", param="max_tokens")
        room = backend.batched.context_length - prompt_tokens
        if room < 1:
            raise ApiError(400, f"the prompt takes {prompt_tokens} tokens but {backend.name} holds {backend.batched.context_length}", param="messages", code="context_length_exceeded")
        max_tokens = asked or min(settings.max_tokens_cap, room)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        values = dict(defaults)
        values.update(
            {k: v for k, v in {"temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k, "repetition_penalty": req.repetition_penalty, "seed": req.seed}.items() if v is not None}
        )
        try:
            return SamplingParams(max_tokens=max_tokens, stop=tuple(stop), n=req.n, **values)
        except BadInputError as exc:
            raise ApiError(422, str(exc), code="invalid_value") from None

    async def encode(backend: Backend, prompt) -> list[int]:
        return await anyio.to_thread.run_sync(backend.batched.encode, prompt)

    def submit(backend: Backend, rows: list[list[int]], params: SamplingParams) -> tuple[Job, asyncio.Queue]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = Job(rows, params, lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
        backend.scheduler.submit(job)
        return job, events

    async def collect(job: Job, events: asyncio.Queue):
        try:
            while True:
                event = await events.get()
                if event[0] == "error":
                    raise _from_aigc(event[1], settings.retry_after)
                if event[0] == "done":
                    return event[1]
        finally:
            job.cancel()

    def usage(prompt_tokens: int, completions) -> dict:
        generated = sum(c.completion_tokens for c in completions)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}

    def sse(data: dict | str) -> str:
        return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"

    async def stream_events(job: Job, events: asyncio.Queue, chunk, finish, final) -> AsyncIterator[str]:
        """SSE lines from a job's events; a client that goes away cancels the job (its rows stop)."""
        try:
            for line in chunk(None, None):
                yield sse(line)
            while True:
                event = await events.get()
                if event[0] == "piece":
                    yield sse(chunk(event[1], event[2]))
                elif event[0] == "done":
                    for line in finish(event[1]):
                        yield sse(line)
                    for line in final(event[1]):
                        yield sse(line)
                    yield sse("[DONE]")
                    return
                else:
                    error = _from_aigc(event[1], settings.retry_after)
                    yield sse(error_body(error.message, error.type, error.param, error.code))
                    return
        finally:
            job.cancel()

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "models": {
                name: {"waiting": b.scheduler.waiting, "decoding_rows": b.scheduler.active_rows, "batches": b.scheduler.batches}
                for name, b in backends.items()
            },
        }

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models():
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": b.created, "owned_by": "aigc", "max_model_len": b.batched.context_length}
                for name, b in backends.items()
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat_completions(request: Request):
        req: ChatRequest = await body(request, ChatRequest)
        backend = backend_for(req.model)
        messages = [m.plain() for m in req.messages]
        ids = await encode(backend, messages)
        params = sampling(req, len(ids), backend, {"temperature": 1.0, "top_p": 1.0})
        job, events = submit(backend, [ids] * params.n, params)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not req.stream:
            completions = await collect(job, events)
            return {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": backend.name,
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": _reason(c), "logprobs": None}
                    for i, c in enumerate(completions)
                ],
                "usage": usage(len(ids), completions),
            }

        def chunk_body(choices: list[dict], usage_value=None) -> dict:
            data = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": backend.name, "choices": choices}
            if usage_value is not None:
                data["usage"] = usage_value
            return data

        def chunk(index, piece):
            if index is None:  # the opening chunks: each choice's role
                return [chunk_body([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]) for i in range(params.n)]
            return chunk_body([{"index": index, "delta": {"content": piece}, "finish_reason": None}])

        def finish(completions):
            return [chunk_body([{"index": i, "delta": {}, "finish_reason": _reason(c)}]) for i, c in enumerate(completions)]

        def final(completions):
            if (req.stream_options or {}).get("include_usage"):
                return [chunk_body([], usage(len(ids), completions))]
            return []

        return StreamingResponse(stream_events(job, events, chunk, finish, final), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/completions", dependencies=[Depends(auth)])
    async def completions(request: Request):
        req: CompletionRequest = await body(request, CompletionRequest)
        backend = backend_for(req.model)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise ApiError(422, "prompt: give at least one prompt", param="prompt")
        if req.stream and len(prompts) > 1:
            raise ApiError(400, "streaming takes one prompt", param="prompt")
        encoded = [await encode(backend, p) for p in prompts]
        params = sampling(req, max(len(ids) for ids in encoded), backend, {"temperature": 1.0, "top_p": 1.0})
        rows = [ids for ids in encoded for _ in range(params.n)]
        job, events = submit(backend, rows, params)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        prompt_tokens = sum(len(ids) for ids in encoded)
        if not req.stream:
            done = await collect(job, events)
            return {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": backend.name,
                "choices": [{"index": i, "text": c.text, "finish_reason": _reason(c), "logprobs": None} for i, c in enumerate(done)],
                "usage": usage(prompt_tokens, done),
            }

        def chunk_body(choices, usage_value=None):
            data = {"id": rid, "object": "text_completion", "created": created, "model": backend.name, "choices": choices}
            if usage_value is not None:
                data["usage"] = usage_value
            return data

        def chunk(index, piece):
            if index is None:
                return []
            return chunk_body([{"index": index, "text": piece, "finish_reason": None, "logprobs": None}])

        def finish(done):
            return [chunk_body([{"index": i, "text": "", "finish_reason": _reason(c), "logprobs": None}]) for i, c in enumerate(done)]

        def final(done):
            if (req.stream_options or {}).get("include_usage"):
                return [chunk_body([], usage(prompt_tokens, done))]
            return []

        return StreamingResponse(stream_events(job, events, chunk, finish, final), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/tokenize", dependencies=[Depends(auth)])
    async def tokenize(request: Request):
        req: TokenizeRequest = await body(request, TokenizeRequest)
        backend = backend_for(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise ApiError(422, "give either prompt or messages", param="prompt")
        prompt = req.prompt if req.prompt is not None else [m.plain() for m in req.messages]
        ids = await encode(backend, prompt)
        return {"count": len(ids), "max_model_len": backend.batched.context_length, "tokens": ids}

    @app.post("/v1/aigc/{task}", dependencies=[Depends(auth)])
    async def run_task(task: str, request: Request):
        """Any registered text generator, through the same code as the CLI: summarize, headline, ..."""
        from ..generators.base import get_generator

        req: TaskRequest = await body(request, TaskRequest)
        backend = backend_for(req.model)
        if task == "image":
            raise ApiError(400, "image generation is not served; use `aigc image`", code="unsupported")
        try:
            generator = get_generator(task, engine=backend.batched)
        except UnknownGeneratorError as exc:
            raise ApiError(404, str(exc), code="not_found") from None
        cap = req.sampling.get("max_tokens")
        if isinstance(cap, int) and cap > settings.max_tokens_cap:
            raise ApiError(400, f"max_tokens must be at most {settings.max_tokens_cap} on this server", param="max_tokens")
        if req.input is None:
            raise ApiError(422, "input: the task's input is required", param="input")
        try:
            result = await anyio.to_thread.run_sync(lambda: generator(req.input, sampling=req.sampling, **req.options))
        except (AttributeError, TypeError, KeyError) as exc:  # input or options of the wrong shape
            log.info("%s rejected its input", task, exc_info=exc)
            raise ApiError(422, f"{task} cannot take this input or these options ({type(exc).__name__}: {exc})", param="input") from None
        try:
            return JSONResponse({"model": backend.name, **result})
        except (TypeError, ValueError):
            raise ApiError(400, f"{task} does not return JSON data", code="unsupported") from None

    return app


def _reason(completion) -> str:
    return "length" if completion.finish_reason == "length" else "stop"


def build(
    models: list[str],
    settings: ServeSettings,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    progress=lambda stage: None,
) -> FastAPI:
    """Load the models (`-m` references, local ones only) and return the app serving them."""
    from ..engine.local import LocalEngine
    from ..engine.models import load_model

    backends: dict[str, Backend] = {}
    for name in models or [None]:
        engine = load_model(name, device, dtype, progress=progress, quantize=quantize, trust_remote_code=trust_remote_code)
        if not isinstance(engine, LocalEngine):
            raise BadInputError(f"{engine.name} is a remote model; serve runs local models (point clients at that server directly)")
        backends[engine.name] = Backend.start(engine.name, engine, settings)
    return create_app(backends, settings)
