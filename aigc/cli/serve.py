"""`aigc serve`: an OpenAI-compatible HTTP server that speaks ollama's API too (the `serve` extra: FastAPI and uvicorn)."""

import ipaddress
import os
import re
from typing import Annotated, Optional

import typer

from .. import ui
from ..errors import BadInputError, MissingExtraError, install_advice, options_named
from . import complete, examples
from .command_defaults import DefaultsCommand
from .options import given_as, given_model

PANEL = "Limits"


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"aigc serve needs the serve extra (FastAPI and uvicorn): {install_advice('serve')}") from None


def _ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model to serve (repeatable); clients pick it by this name.", callback=given_model, autocompletion=complete.text_models)] = None,
    host: Annotated[str, typer.Option(envvar="AIGC_HOST", help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="AIGC_PORT", help="Port to listen on; 0 lets the system pick a free one (the banner says which).")] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="AIGC_API_KEY", help="Require Authorization: Bearer KEY on /v1 and ollama's /api requests (and /tokenize).")] = None,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", metavar="NAME", help="Read the API key from environment variable NAME (when --api-key and AIGC_API_KEY give none).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.", autocompletion=complete.devices)] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.", autocompletion=complete.dtypes)] = "auto",
    quantize: Annotated[str, typer.Option(help="none, int4 or int8 (CPU, float32).", autocompletion=complete.quantizations)] = "none",
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Let a hub model run its own Python code.")] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most rows decoded together.", rich_help_panel=PANEL)] = 32,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", help="How long to wait for more requests to batch.", rich_help_panel=PANEL)] = 10.0,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Waiting requests before 429 Too Many Requests.", rich_help_panel=PANEL)] = 256,
    max_tokens_cap: Annotated[int, typer.Option("--max-tokens-cap", help="Most tokens one answer may take: a larger max_tokens (num_predict) is taken as this, the answer ending with finish_reason \"length\".", rich_help_panel=PANEL)] = 4096,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", help="Largest request body (but the embedding routes').", rich_help_panel=PANEL)] = 1_000_000,
    max_embed_bytes: Annotated[
        int, typer.Option("--max-embed-bytes", help="Largest body of /api/embed, /api/embeddings and /v1/embeddings (a document set in one request); the server holds about 3 times it while reading one.", rich_help_panel=PANEL)
    ] = 64_000_000,
    cors_origin: Annotated[
        Optional[list[str]], typer.Option("--cors-origin", help="Let web pages from ORIGIN (https://app.example, chrome-extension://*, null, or * for any) call the API from a browser (repeatable); localhost pages and app://, tauri://, vscode-webview:// may by default.")
    ] = None,
    allow_host: Annotated[
        Optional[list[str]],
        typer.Option("--allow-host", help="Answer requests addressed to NAME too (a reverse proxy's public name, or *) while listening on a loopback address, which answers localhost names only (repeatable)."),
    ] = None,
    metrics_need_key: Annotated[bool, typer.Option("--metrics-need-key", help="Require the API key on GET /metrics too (by default it needs none, as vLLM's and /health).")] = False,
    shutdown_grace: Annotated[float, typer.Option("--shutdown-grace", help="Seconds the requests already taken (running or waiting) get to finish after SIGTERM/Ctrl-C.", rich_help_panel=PANEL)] = 5.0,
) -> None:
    """Serve models over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, ...) and ollama's API (/api/chat, /api/generate, /api/tags, /api/embed, ...).

    OpenAI clients take http://HOST:PORT/v1 as their base URL; ollama clients (Open WebUI, Continue, the ollama libraries) http://HOST:PORT, with no /v1; --port 11434 stands in for ollama at its clients' default address.

    Options default to the [serve] table of config.toml (a flag, then its AIGC_* variable, beat it). Each -m is served under the name given; a request that names no model gets the one served (a 400 when there are several). Logs go to stderr: one line per request (status, seconds, its x-request-id: the client's X-Request-Id when it is up to 128 of A-Z a-z 0-9 . _ -, else a fresh id; a generation's model and tokens); `aigc -q serve` leaves them out, `aigc -v serve` adds uvicorn's notes."""
    _require_extra()
    if not 0 <= port < 65536:
        raise BadInputError(f"{given_as(ctx, 'port')} must be between 0 and 65535, got {port}")
    for name, value in (("max_batch", max_batch), ("max_queue", max_queue), ("max_tokens_cap", max_tokens_cap), ("max_request_bytes", max_request_bytes), ("max_embed_bytes", max_embed_bytes)):
        if value < 1:
            raise BadInputError(f"{given_as(ctx, name)} must be at least 1, got {value}")
    for name, value in (("batch_window_ms", batch_window_ms), ("shutdown_grace", shutdown_grace)):
        if value < 0:
            raise BadInputError(f"{given_as(ctx, name)} must be 0 or more, got {value}")
    if api_key is None and api_key_env is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):  # not echoed: it may be the key itself
            raise BadInputError(f"{given_as(ctx, 'api_key_env')} takes the name of the environment variable that holds the API key (such as MY_SERVE_KEY), not the key; or give the key with --api-key")
        api_key = os.environ.get(api_key_env, "")
        if not api_key.strip():  # else a typo in the name would serve with no key at all
            raise BadInputError(f"{given_as(ctx, 'api_key_env')} names {api_key_env}, which is not set or empty; set {api_key_env} to the API key, or give --api-key")
    api_key = api_key.strip() if api_key is not None else None  # clients' tokens are read stripped, so " k " must be "k"
    if api_key == "":  # `--api-key "$KEY"` with KEY unset would serve with no key at all
        raise BadInputError("--api-key is empty (is the variable that holds it unset?); give the key, or leave --api-key out to serve without one")
    if metrics_need_key and api_key is None:  # else /metrics would be open to anyone, with no word
        raise BadInputError(f"{given_as(ctx, 'metrics_need_key')} asks for the API key on /metrics, but no key is set; give --api-key (or set AIGC_API_KEY, or name the variable that holds it with api_key_env), or drop it")
    for origin in cors_origin or ():
        if origin not in ("*", "null") and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+", origin):  # a browser's Origin header never has a path
            raise BadInputError(
                f"{given_as(ctx, 'cors_origin')} must be *, null or an origin, scheme://host[:port] with no path (https://app.example, chrome-extension://ID), "
                f"where * stands for any run of characters (chrome-extension://*, http://192.168.1.5:*), got {origin!r}"
            )
    for name in allow_host or ():
        if name != "*" and not re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not _ipv6(name.strip("[]")):  # a Host header's name, no scheme or port
            raise BadInputError(f"{given_as(ctx, 'allow_host')} must be * or a host name as a Host header gives it, with no scheme or port (app.example), got {name!r}")
    from ..hosts import loopback
    from ..serve.app import ServeSettings
    from ..serve.running import bind, build, run_server

    settings = ServeSettings(
        api_key=api_key,
        max_tokens_cap=max_tokens_cap,
        max_request_bytes=max_request_bytes,
        max_embed_bytes=max_embed_bytes,
        max_batch=max_batch,
        batch_window=batch_window_ms / 1000,
        max_queue=max_queue,
        cors_origins=tuple(cors_origin or ()),
        allowed_hosts=tuple(name.strip("[]") for name in allow_host or ()),
        metrics_need_key=metrics_need_key,
    )
    sock = bind(host, port, given_as(ctx, "host"), given_as(ctx, "port"))
    port = sock.getsockname()[1]  # the one the system picked for --port 0
    settings.bind_host = sock.getsockname()[0]  # the address a name such as localhost resolved to
    with ui.stage_status() as stage:
        app = build(model or [], settings, device, dtype, quantize, trust_remote_code, progress=stage)
    names = ", ".join(app.state.backends)
    if not loopback(settings.bind_host) and not api_key:
        ui.warn(f"listening on {host} without --api-key: anyone who can reach this port can use the server")
    sock.listen(2048)  # from here a client that connects waits for uvicorn instead of being refused
    shown = f"[{host}]" if _ipv6(host) else host  # a URL brackets an IPv6 address
    ui.info(f"serving {names} on http://{shown}:{port}/v1 for OpenAI clients and http://{shown}:{port} for ollama's (Ctrl-C stops)")
    with options_named(lambda name, value: None):  # clients send the library's names (max_tokens)
        code = run_server(app, sock, verbosity=ui.settings.verbosity, grace=shutdown_grace)
    if code:
        raise typer.Exit(code)


EXAMPLES = examples(
    "aigc serve                # the default model on http://127.0.0.1:8000/v1",
    "AIGC_API_KEY=secret AIGC_PORT=8080 aigc serve -m smollm2   # as --api-key, --port",
    "aigc serve --port 11434   # in ollama's place: its clients' default, http://127.0.0.1:11434",
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(serve)
