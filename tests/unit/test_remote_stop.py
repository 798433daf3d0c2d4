"""Stopping a remote model's requests: Ctrl-C in `generator.many`, a cancelled `agenerate`, an `astream`
whose task is cancelled shut their connections, so the server sees the client go away and no thread
is left waiting for its answer."""

import asyncio
import http.server
import json
import select
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import aigc
from aigc.batch import WORKER
from aigc.generators.base import get_generator

PATIENCE = 15.0  # seconds the server waits for a client to go away before it answers after all


class SlowServer(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible server on this machine whose generation takes `PATIENCE` seconds, unless
    the client goes away first: it counts the requests that came (`asked`) and those whose client
    went away (`gone`). A stream sends one piece at once, the rest after that wait. With `busy`, it
    answers 429 with `Retry-After: 5` instead."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.changed = threading.Condition()
        self.asked = self.gone = 0
        self.busy = False
        self.model = f"openai:http://127.0.0.1:{self.server_port}/v1#m"

    def count(self, field: str) -> None:
        with self.changed:
            setattr(self, field, getattr(self, field) + 1)
            self.changed.notify_all()

    def reached(self, field: str, count: int, seconds: float = 30) -> bool:
        """Whether `field` reached `count` within `seconds`."""
        with self.changed:
            return self.changed.wait_for(lambda: getattr(self, field) >= count, seconds)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SlowServer

    def log_message(self, *args):
        pass

    def answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        self.answer(200, {"data": [{"id": "m", "max_model_len": 4096}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.startswith("/v1/"):  # /tokenize: token counts are estimated
            self.answer(404, {"error": {"message": "no such route"}})
            return
        self.server.count("asked")
        if self.server.busy:
            self.send_response(429)
            self.send_header("Retry-After", "5")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.event({"choices": [{"index": 0, "delta": {"content": "Bees"}, "text": "Bees"}]})
        if self.client_left():
            self.server.count("gone")
            return
        choice = {"index": 0, "message": {"content": " hum"}, "delta": {"content": " hum"}, "text": " hum", "finish_reason": "stop"}
        if body.get("stream"):
            self.event({"choices": [choice]})
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            self.answer(200, {"choices": [choice] * body.get("n", 1)})

    def event(self, event: dict) -> None:
        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()

    def client_left(self) -> bool:
        """Whether the client closed the connection (an end of stream, or a reset) within `PATIENCE`."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if select.select([self.connection], [], [], 0.05)[0]:
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except ConnectionError:
                    return True
        return False


@pytest.fixture
def server():
    slow = SlowServer()
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    yield slow
    slow.shutdown()
    slow.server_close()


def running(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(name)]


def test_ctrl_c_during_many_on_a_remote_model_cuts_the_requests_in_flight_and_leaves_no_thread_waiting(server):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def press() -> None:  # Ctrl-C in the caller's thread once the four merged inputs' requests are at the server
        if server.reached("asked", 4):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=press, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            get_generator("chat", model=server.model).many([f"text {i}" for i in range(8)], concurrency=4)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert server.asked == 4  # no input after them was started
    assert server.reached("gone", 4, PATIENCE / 2)  # each request's connection was closed: the server stops generating
    assert running(WORKER) == [] and running("aigc remote request") == []


def cancel_agenerate(server) -> list[threading.Thread]:
    """Cancel an `agenerate` on the server once its request has come; the threads it ran in."""
    executor = ThreadPoolExecutor(thread_name_prefix="agenerate")

    async def main():
        asyncio.get_running_loop().set_default_executor(executor)  # agenerate's call runs in one of its threads
        call = asyncio.ensure_future(aigc.agenerate("chat", "Bees", model=server.model))
        assert await asyncio.to_thread(server.reached, "asked", 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(main())
    executor.shutdown(wait=False)
    return running("agenerate")


def ended(threads: list[threading.Thread]) -> bool:
    for thread in threads:
        thread.join(PATIENCE / 2)
    return not any(thread.is_alive() for thread in threads)


def test_cancelling_agenerate_on_a_remote_model_closes_its_request_and_frees_its_thread(server):
    threads = cancel_agenerate(server)
    assert server.reached("gone", 1, PATIENCE / 2)
    assert ended(threads)  # none waits for the server's answer


def test_cancelling_agenerate_while_it_waits_to_try_a_busy_server_again_sends_no_more_requests(server):
    server.busy = True
    threads = cancel_agenerate(server)
    assert ended(threads)
    assert server.asked == 1


def test_cancelling_the_task_reading_an_astream_of_a_remote_model_closes_its_request(server):
    async def main():
        stream = aigc.astream("chat", "Bees", model=server.model)
        first = await stream.__anext__()
        with pytest.raises(asyncio.TimeoutError):  # the next piece does not come: the reading task is cancelled
            await asyncio.wait_for(stream.__anext__(), 0.2)
        assert server.reached("gone", 1, PATIENCE / 2)
        await stream.aclose()  # the stream's thread has stopped reading
        return first, stream

    first, stream = asyncio.run(main())
    assert (first, stream.text, stream.finish_reason) == ("Bees", "Bees", "cancelled")


@pytest.mark.parametrize("busy", [False, True])
def test_a_stop_event_set_from_another_thread_cuts_a_remote_call_and_a_retry_wait(server, busy):
    from aigc.errors import StoppedError

    server.busy = busy  # a 429 with Retry-After: 5, waited out before trying again, is cut short too
    stop = threading.Event()  # a plain Event (not aigc's own): looked at while the request is in flight
    threading.Thread(target=lambda: server.reached("asked", 1) and stop.set(), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(StoppedError):
        aigc.generate("chat", "Bees", model=server.model, stop=stop)
    assert time.monotonic() - started < 3 and server.asked == 1
    assert busy or server.reached("gone", 1, PATIENCE / 2)  # the connection was shut: the server stops generating
    assert running("aigc remote request") == [] and running("aigc stop watcher") == []


def test_a_stop_event_stops_a_remote_stream_after_its_first_piece(server):
    from aigc.errors import StoppedError

    stop = threading.Event()
    stream = aigc.stream("chat", "Bees", model=server.model, stop=stop)
    assert next(stream) == "Bees"
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(StoppedError):
        next(stream)
    assert time.monotonic() - started < 3 and server.reached("gone", 1, PATIENCE / 2)
    assert (stream.text, stream.finish_reason) == ("Bees", "cancelled")
def stopped_after(url: str, seconds: float = 0.3) -> tuple[BaseException | None, float]:
    """Open a remote model at `url` (its GET /models) in a thread whose calls are told to stop after
    `seconds`; what it raised and how long after the stop it ended (its timeout is 10 s)."""
    from aigc.engine.base import stoppable_context
    from aigc.engine.remote import OpenAIEngine

    context, stop = stoppable_context()
    raised: list[BaseException] = []

    def open_it() -> None:
        try:
            context.run(OpenAIEngine, url, "m", None, 10.0)
        except BaseException as exc:  # noqa: BLE001 - what it raised is the result
            raised.append(exc)

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    time.sleep(seconds)
    stopped_at = time.monotonic()
    stop.set()
    thread.join(15)
    return (raised[0] if raised else None), time.monotonic() - stopped_at


@pytest.fixture
def full_listener():
    """A listening socket on this machine whose backlog is full (it never accepts): a connection to it
    waits in its SYN, as one to a host that does not answer does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    waiting = []
    for _ in range(8):  # until a connection does not get through
        client = socket.socket()
        client.settimeout(0.2)
        waiting.append(client)
        try:
            client.connect(listener.getsockname())
        except TimeoutError:
            break
    else:
        pytest.fail("the listener's backlog did not fill")
    yield listener.getsockname()[1]
    for sock in [*waiting, listener]:
        sock.close()


def test_a_stop_cuts_a_tcp_connect_in_progress_to_a_remote_model_at_once(full_listener):
    raised, took = stopped_after(f"http://127.0.0.1:{full_listener}/v1")
    assert isinstance(raised, asyncio.CancelledError)
    assert took < 1.0  # not the 10 s timeout


def test_a_stop_cuts_a_tls_handshake_in_progress_to_a_remote_model_at_once():
    with socket.socket() as listener:  # connections complete in its backlog, but nothing answers the TLS hello
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        raised, took = stopped_after(f"https://127.0.0.1:{listener.getsockname()[1]}/v1")
    assert isinstance(raised, asyncio.CancelledError)
    assert took < 1.0


def test_a_stop_that_lands_just_before_the_connect_begins_still_cuts_it(full_listener, monkeypatch):
    from aigc.engine import remote

    connections = remote._Connections()
    shutting: list[threading.Thread] = []
    real_shut_down = remote._shut_down

    def as_on_macos(sock):  # BSD's shutdown of a socket not yet connecting fails (ENOTCONN) and changes nothing
        if sock.getsockname()[1] != 0:  # (Linux's makes its later connect return at once, unconnected)
            real_shut_down(sock)

    def stop_first(connect):  # the stop comes from another thread between the check and the connect
        def connecting(self, where):
            if not shutting:
                shutting.append(threading.Thread(target=connections.shut))
                shutting[0].start()
                shutting[0].join(0.3)  # done at once, or waiting until the connect has begun
            return connect(self, where)

        return connecting

    monkeypatch.setattr(remote, "_shut_down", as_on_macos)
    monkeypatch.setattr(socket.socket, "connect", stop_first(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", stop_first(socket.socket.connect_ex))
    started = time.monotonic()
    with pytest.raises(OSError):
        remote._connect(connections, ("127.0.0.1", full_listener), 5.0)
    assert time.monotonic() - started < 2.0  # not the 5 s timeout
    shutting[0].join(5)
    assert connections.is_shut and not shutting[0].is_alive()
