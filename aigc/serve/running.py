"""Running the server as a process: load the models into an app (`build`), bind its port before
they load (`bind`), and serve it with uvicorn until SIGINT or SIGTERM (`run_server`, `Stopping`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys

from fastapi import FastAPI

from ..engine.models import no_progress
from ..errors import BadInputError
from .app import Backend, ServeSettings, create_app
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
    from ..engine.remote import OpenAIEngine

    backends: dict[str, Backend] = {}
    for name in dict.fromkeys(models or [None]):  # the same -m twice is one model
        engine = load_model(name, device, dtype, progress=progress, quantize=quantize, trust_remote_code=trust_remote_code)
        if isinstance(engine, OpenAIEngine):
            raise BadInputError(f"{engine.name} is a remote model; serve runs local models (point clients at that server directly)")
        if not isinstance(engine, LocalEngine):  # `echo`, a plugin's engine: nothing to decode in batches
            raise BadInputError(f"{engine.name} has no local weights to serve; serve runs local models (an alias such as smollm2, a model directory, a .gguf file or a hub id)")
        backends[engine.name] = Backend.start(engine.name, engine, settings)
    return create_app(backends, settings)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads so a port in use fails at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise BadInputError(f"cannot listen on {host}: {exc.strerror}; check --host") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BadInputError(f"port {port} on {host} is already in use; pick another with --port") from None
        raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror}; check --host and --port") from None
    return sock


class Stopping:
    """What SIGINT and SIGTERM do to a running uvicorn `server`. The first signal: it stops taking
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
            log.warning("stopping: requests already taken get up to %g s to finish (Ctrl-C again quits now)", self.grace)
            for scheduler in self.schedulers:
                scheduler.drain(self.grace)
        elif sig == signal.SIGINT:
            self.forced = self.server.force_exit = True
            for scheduler in self.schedulers:
                scheduler.drain(0)


FORCED_EXIT = 130  # the status after a second Ctrl-C, as for any program Ctrl-C stops


def run_server(app: FastAPI, sock: socket.socket, log_level: str = "warning", grace: float = 5.0) -> int:
    """Run uvicorn until SIGINT or SIGTERM (see `Stopping`), then return the exit status: 0 once
    stopped gracefully, `FORCED_EXIT` after a second Ctrl-C."""
    import uvicorn

    schedulers = [backend.scheduler for backend in app.state.backends.values()]

    class Server(uvicorn.Server):
        # Not uvicorn's own: it re-raises the signal once shut down, so SIGTERM would end the process
        # with status 143 instead of 0, and a second Ctrl-C would leave the decode threads running.
        def handle_exit(self, sig: int, frame) -> None:
            stopping(sig)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            if self.force_exit:  # uvicorn skips the app's shutdown then; it stops the decode threads (their rows were cut)
                await self.lifespan.shutdown()

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=grace + 5)
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
