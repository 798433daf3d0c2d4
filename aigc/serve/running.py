"""Running the server as a process: load the models into an app (`build`), bind its port before
they load (`bind`), and serve it with uvicorn until SIGINT or SIGTERM (`run_server`, `Stopping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from fastapi import FastAPI

from .. import ui
from ..engine.models import no_progress
from ..errors import BadInputError, BusyError
from .app import Backend, ServeSettings, create_app
from .app import schedulers as served_by
from .scheduler import Scheduler

log = logging.getLogger("aigc.serve")


def quit_cancels(record: logging.LogRecord) -> bool:
    """A filter for uvicorn's error log: leaves out its traceback of a request cancelled because the
    server quit (`RequestIds` answered it), unless AIGC_DEBUG=1."""
    from ..config import debug

    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError)) or debug()


def build(
    models: list[str],
    settings: ServeSettings,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    progress=no_progress,
) -> FastAPI:
    """Load the models (`-m` references, local ones only) and return the app serving them."""
    from ..engine.local import LocalEngine
    from ..engine.loading import load_model
    from ..engine.models import resolve

    backends: dict[str, Backend] = {}
    started: dict[tuple, Backend] = {}  # the same weights -> one engine and scheduler, under every name given for them
    for name in dict.fromkeys(models or [None]):  # the same -m twice is one model
        ref = resolve(name)
        served, same = _served_name(ref), started.get(_weights(ref))
        if served in backends:
            if backends[served].scheduler is getattr(same, "scheduler", None):  # `./model` and its absolute path
                continue
            raise BadInputError(f"two models would be served as {served}; serve one of them under an alias (aigc models alias NAME PATH)")
        given = ref.name if served != ref.name else None
        if same is not None:  # an alias of a model already loaded
            backends[served] = dataclasses.replace(same, name=served, given=given)
            continue
        _refuse_unlocal(ref)  # before anything loads or any server is contacted
        engine = load_model(name, device, dtype, progress=progress, quantize=quantize, trust_remote_code=trust_remote_code)
        if not isinstance(engine, LocalEngine):  # `echo`, a plugin's engine: nothing to decode in batches
            raise BadInputError(f"{engine.name} has no local weights to serve; {LOCAL_ONLY}")
        if engine.name != served:  # its errors name the model as clients know it, not by its path (a copy: the loaded engine is shared)
            engine = copy.copy(engine)
            engine.name = served
        backends[served] = started[_weights(ref)] = dataclasses.replace(Backend.start(served, engine, settings), given=given)
    return create_app(backends, settings)


LOCAL_ONLY = "serve runs local models (an alias such as smollm2, a model directory, a .gguf file or a hub id)"


def _refuse_unlocal(ref) -> None:
    """A model with no local weights (a remote server's, a plugin engine's, `echo`) refused from its
    reference alone: nothing loaded, no server contacted (an openai: URL's HTTP error would hide why)."""
    from ..engine.schemes import engine_plugin

    if ref.kind == "echo":
        raise BadInputError(f"{ref.name} has no local weights to serve; {LOCAL_ONLY}")
    if ref.kind != "remote":
        return
    plugin = engine_plugin(ref.engine)
    if plugin:
        raise BadInputError(f"{ref.name} runs on the engine of plugin {plugin!r}, with no local weights to serve; {LOCAL_ONLY}")
    raise BadInputError(f"{ref.name} is a remote model; serve runs local models (point clients at that server directly)")


def _served_name(ref) -> str:
    """The name a model is served under: a model directory or .gguf file given as a path by its own
    name (`/home/me/models/qwen` as `qwen`), so that no client learns the server's file layout."""
    return Path(ref.name).name if ref.kind in ("dir", "gguf") else ref.name


def _weights(ref) -> tuple:
    """What a model reference loads: two names (an alias and its model) with the same key load the same weights."""
    local = ref.kind in ("dir", "gguf")  # `./model` and its absolute path are one model
    return (ref.kind, str(Path(ref.location).resolve()) if local else ref.location)


def bind(host: str, port: int, host_name: str = "--host", port_name: str = "--port") -> socket.socket:
    """The listening socket, bound before any model loads so a port in use fails at once (port 0:
    one the system picks); errors name the host and port as given (`--host`, or `AIGC_HOST`)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise BadInputError(f"cannot listen on {host}: {exc.strerror}; check {host_name}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows, whose SO_REUSEADDR would share a port another server listens on
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:  # a port a stopped server left in TIME_WAIT is taken again at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BusyError(f"port {port} on {host} is already in use; pick another with {port_name}") from None
        raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror}; check {host_name} and {port_name}") from None
    return sock


class Stopping:
    """What SIGINT, SIGTERM and SIGHUP do to a running uvicorn `server`. The first signal: it stops taking
    connections and every model's scheduler drains (requests already taken, running or waiting, are
    served for `grace` seconds; then running streams end with an error event and the rest get 503).
    A second Ctrl-C (`forced`): every running row is cut now and uvicorn waits for nothing; a
    request still running when it quits gets a 503 (`RequestIds`)."""

    def __init__(self, server, schedulers: list[Scheduler], grace: float):
        self.server, self.schedulers, self.grace = server, schedulers, grace
        self.forced = False

    def __call__(self, sig: int) -> None:
        if not self.server.should_exit:
            self.server.should_exit = True
            again = " (Ctrl-C again quits now)" if _at_a_terminal() else ""  # not under systemd, where it is a second signal
            log.warning("stopping: requests already taken get up to %g s to finish%s", self.grace, again)
            for scheduler in self.schedulers:
                scheduler.drain(self.grace)
        elif sig == signal.SIGINT:
            self.forced = self.server.force_exit = True
            for scheduler in self.schedulers:
                scheduler.drain(0)


def _at_a_terminal() -> bool:
    """Whether someone can press Ctrl-C: stdin and stderr are a terminal."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stderr))


FORCED_EXIT = 130  # the status after a second Ctrl-C, as for any program Ctrl-C stops


def log_config(verbosity: int) -> dict:
    """uvicorn's logging set up for serving (its `LOGGING_CONFIG`, changed): every line on stderr,
    timestamped; aigc's one line per request (`RequestIds`) in place of uvicorn's access log, which
    has no request id, time or tokens, and goes to stdout; uvicorn's own notes and aigc's details
    (a client that went away) and answered health checks only with -v; request lines not with -q (`verbosity` -1);
    level names coloured as aigc's own lines are (not with NO_COLOR, TERM=dumb or stderr in a file)."""
    from uvicorn.config import LOGGING_CONFIG

    formatter = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(asctime)s %(levelprefix)s %(message)s", "datefmt": "%Y-%m-%d %H:%M:%S", "use_colors": ui.colour()}  # not uvicorn's guess (stdout a terminal)
    detail = "INFO" if verbosity > 0 else "WARNING"
    return {
        **LOGGING_CONFIG,
        "formatters": {"default": formatter},
        "handlers": {"default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": detail, "propagate": False},
            "aigc.serve": {"handlers": ["default"], "level": detail, "propagate": False},
            "aigc.serve.requests": {"level": "DEBUG" if verbosity > 0 else "INFO" if verbosity == 0 else "WARNING"},
        },
    }


def connection_limit(settings: ServeSettings) -> int:
    """The most connections (and requests) uvicorn holds at once; it answers 503 to more. Room for
    every queued and decoding request, and as many idle keep-alive connections again, so clients
    that open connections and send nothing cannot hold all the process's file descriptors."""
    return 2 * (settings.max_queue + settings.max_batch) + 64


def run_server(app: FastAPI, sock: socket.socket, verbosity: int = 0, grace: float = 5.0) -> int:
    """Run uvicorn until SIGINT, SIGTERM or SIGHUP (see `Stopping`), logging as `log_config(verbosity)` says,
    then return the exit status: 0 once stopped gracefully, `FORCED_EXIT` after a second Ctrl-C."""
    import uvicorn

    schedulers = served_by(app.state.backends)

    class Server(uvicorn.Server):
        # Not uvicorn's own: it re-raises the signal once shut down, so SIGTERM would end the process
        # with status 143 instead of 0, and a second Ctrl-C would leave the decode threads running.
        def handle_exit(self, sig: int, frame) -> None:
            stopping(sig)

        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn's SIGINT and SIGTERM, and SIGHUP too (a closed ssh session, a supervisor's
            hang-up), which would otherwise end the process at once, cutting streams in flight."""
            with super().capture_signals():
                hangup = getattr(signal, "SIGHUP", None)  # none on Windows
                if hangup is None or threading.current_thread() is not threading.main_thread():
                    yield
                    return
                before = signal.signal(hangup, self.handle_exit)
                try:
                    yield
                finally:
                    signal.signal(hangup, before)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            if self.force_exit:  # uvicorn skips the app's shutdown then; it stops the decode threads (their rows were cut)
                await self.lifespan.shutdown()

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, host=host, port=port, log_config=log_config(verbosity), log_level=None, access_log=False, timeout_graceful_shutdown=grace + 5,
        limit_concurrency=connection_limit(app.state.settings),
    )
    logging.getLogger("uvicorn.error").addFilter(quit_cancels)  # after Config, which sets up uvicorn's logging
    server = Server(config)
    stopping = Stopping(server, schedulers, grace)
    server.run(sockets=[sock])
    if not stopping.forced:
        return 0
    if any(scheduler.running for scheduler in schedulers):  # a step that did not end: leave now, not abort in it at exit
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(FORCED_EXIT)
    return FORCED_EXIT
