"""WebhookServer start → concurrent requests → stop, 200 times in one process, without a single error.

Each cycle starts a real waitress server on a free port, has several client threads hammer it
(some reusing one keep-alive connection, some opening a connection per request; slow handlers
and bodies large enough that the worker threads flush output themselves) and calls ``stop()``
while requests are still in flight. Every error anywhere is captured, not just test failures:

- log records at WARNING or above from any logger, and waitress's own INFO records about
  exceptions in trigger thunks or clients cut off mid-request (both are how a premature close
  shows up), except the benign summary of requests that waited for a worker;
- exceptions escaping any thread (``threading.excepthook``);
- unraisable exceptions (``sys.unraisablehook``), e.g. from a ``__del__`` closing a descriptor;
- ResourceWarnings for sockets or pipes left open.

Requests answered before ``stop()`` must all succeed; a request racing with ``stop()`` may be
refused or find its idle keep-alive connection closed, but any response that does arrive must be
complete and correct. After the run no server thread is left and no descriptor leaked.
"""

from __future__ import annotations

import gc
import http.client
import logging
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.app import add_json_route, json_response

CYCLES = 200
KEEPALIVE_CLIENTS = 2
CLOSING_CLIENTS = 2
#: Requests each client completes before stop() is called (all must succeed).
WARMUP_REQUESTS = 2
#: Most requests one client sends per cycle.
MAX_REQUESTS = 12
#: Seconds any one wait of the test may take (a client's reply, the warm-up, a stop's drain): generous, for a
#: machine whose cores are busy with other work; each ends as soon as what it waits for happens.
PATIENCE = 60.0
#: Larger than waitress's send_bytes (18000), so worker threads flush to the socket themselves.
BIG = b"0123456789abcdef" * 4096  # 64 KiB
#: Paths the clients pick from, with the exact body each must return.
PATHS = ("/ping", "/slow", "/big")


def _stress_routes(config: Configurator) -> None:
    """Test-only routes: a handler slow enough to be in flight at stop(), and a large body."""

    def slow(request: Request) -> Response:
        time.sleep(random.uniform(0.002, 0.015))
        return json_response({"slow": True})

    def big(request: Request) -> Response:
        response = Response(body=BIG, content_type="application/octet-stream")
        response.headers["Cache-Control"] = "no-store"
        return response

    add_json_route(config, "stress_slow", "/slow", slow)
    add_json_route(config, "stress_big", "/big", big)


EXPECTED = {"/ping": b'{"ping": "pong"}', "/slow": b'{"slow": true}', "/big": BIG}


# ---------------------------------------------------------------------------------------------
# Capturing every error of the process


@dataclass
class Problems:
    """Everything that went wrong anywhere in the process while the test ran."""

    records: list[str] = field(default_factory=list)
    thread_exceptions: list[str] = field(default_factory=list)
    unraisable: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, bucket: list[str], text: str) -> None:
        with self.lock:
            bucket.append(text)

    def all(self) -> list[str]:
        with self.lock:
            return [*self.records, *self.thread_exceptions, *self.unraisable]


class _Capture(logging.Handler):
    """Keeps every record that signals a problem (see the module docstring)."""

    def __init__(self, problems: Problems) -> None:
        super().__init__(level=logging.DEBUG)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name in ("waitress.queue", "tradeexecutor.webhook.load"):  # queue depth: load, not an error
            return
        suspicious_info = record.name.startswith("waitress") and (
            "exception" in message.lower() or "disconnected" in message.lower() or record.exc_info
        )
        if record.levelno >= logging.WARNING or suspicious_info:
            text = f"{record.name} {record.levelname}: {message}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            self.problems.add(self.problems.records, text)


@pytest.fixture
def problems() -> Iterator[Problems]:
    found = Problems()
    handler = _Capture(found)
    root = logging.getLogger()
    watched = [logging.getLogger(name) for name in ("waitress", "tradeexecutor.webhook")]
    old_levels = [logger.level for logger in watched]
    root.addHandler(handler)
    for logger in watched:
        logger.setLevel(logging.INFO)  # waitress reports trigger-thunk exceptions at INFO
    old_excepthook, old_unraisablehook = threading.excepthook, sys.unraisablehook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        found.add(found.thread_exceptions, f"thread {name}: {args.exc_type.__name__}: {args.exc_value}")

    def unraisablehook(args: Any) -> None:
        found.add(
            found.unraisable, f"unraisable in {args.object!r}: {args.exc_type.__name__}: {args.exc_value}"
        )

    threading.excepthook = excepthook
    sys.unraisablehook = unraisablehook
    try:
        yield found
    finally:
        threading.excepthook, sys.unraisablehook = old_excepthook, old_unraisablehook
        root.removeHandler(handler)
        for logger, level in zip(watched, old_levels):
            logger.setLevel(level)


# ---------------------------------------------------------------------------------------------
# Clients


@dataclass
class Cycle:
    """What the clients of one cycle share with the test."""

    port: int
    warm: threading.Barrier
    stopping: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)
    completed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)

    def done(self) -> None:
        with self.lock:
            self.completed += 1


def _exchange(connection: http.client.HTTPConnection, path: str, keep_alive: bool) -> tuple[int, bytes]:
    headers = {} if keep_alive else {"Connection": "close"}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def _client(cycle: Cycle, keep_alive: bool, seed: int) -> None:
    """Send requests until stop() is under way (or MAX_REQUESTS); check every answer."""
    rng = random.Random(seed)
    connection: http.client.HTTPConnection | None = None
    warmed = False
    try:
        for number in range(MAX_REQUESTS):
            if number == WARMUP_REQUESTS:
                cycle.warm.wait(timeout=PATIENCE)
                warmed = True
            if warmed and cycle.stopping.is_set() and rng.random() < 0.5:
                break
            path = rng.choice(PATHS)
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", cycle.port, timeout=PATIENCE)
            try:
                status, body = _exchange(connection, path, keep_alive)
            except http.client.IncompleteRead as exc:  # a response cut short is never acceptable
                cycle.fail(f"{path}: truncated response ({len(exc.partial)} bytes)")
                return
            except (OSError, http.client.HTTPException) as exc:
                if not cycle.stopping.is_set():
                    cycle.fail(f"{path} before stop(): {type(exc).__name__}: {exc}")
                return
            if status != 200 or body != EXPECTED[path]:
                cycle.fail(f"{path}: status {status}, {len(body)} bytes")
                return
            cycle.done()
            if not keep_alive:
                connection.close()
                connection = None
    except threading.BrokenBarrierError:
        cycle.fail("warm-up barrier broken")
    finally:
        if not warmed:
            cycle.warm.abort()
        if connection is not None:
            connection.close()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _server_threads() -> list[str]:
    return sorted(
        t.name for t in threading.enumerate() if t.name.startswith(("webhook-", "waitress-")) and t.is_alive()
    )


# ---------------------------------------------------------------------------------------------
# The test


def test_start_requests_stop_cycles_leave_no_error(problems: Problems) -> None:
    runstate = RunState.create("stress", version={"package": "0", "git_commit": None})
    app = create_app(runstate, extra_includes=[_stress_routes])
    clients = KEEPALIVE_CLIENTS + CLOSING_CLIENTS
    threads_before = _server_threads()
    # One warm-up cycle so lazily opened descriptors (logging, imports) do not count as leaks.
    WebhookServer(app, port=0).start().stop()
    descriptors_before = _open_descriptors()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        completed = _run_cycles(app, clients)
        gc.collect()
    for warning in caught:
        if issubclass(warning.category, ResourceWarning):
            problems.add(problems.unraisable, f"ResourceWarning: {warning.message}")

    assert completed >= CYCLES * clients * WARMUP_REQUESTS
    # Every stop() drained its requests in flight before its deadline: one that ran it out logs "still busy"
    # (a WARNING, so a problem above), whatever the machine's speed.
    assert _server_threads() == threads_before, "server threads left running"
    leaked = _open_descriptors() - descriptors_before
    assert leaked <= 2, f"{leaked} file descriptors leaked"
    assert not problems.all(), "\n".join(problems.all()[:20])


def _run_cycles(app: Any, clients: int) -> int:
    """CYCLES start → requests → stop cycles; returns how many requests completed."""
    rng = random.Random(20240501)
    completed = 0
    for number in range(CYCLES):
        server = WebhookServer(app, port=0, threads=4, stop_timeout=PATIENCE).start()
        cycle = Cycle(port=server.effective_port, warm=threading.Barrier(clients + 1))
        workers = [
            threading.Thread(
                target=_client,
                args=(cycle, index < KEEPALIVE_CLIENTS, rng.random()),
                name=f"stress-client-{index}",
            )
            for index in range(clients)
        ]
        for worker in workers:
            worker.start()
        try:
            cycle.warm.wait(timeout=PATIENCE)  # every client has had WARMUP_REQUESTS answered
        except threading.BrokenBarrierError:
            pass
        time.sleep(rng.uniform(0, 0.004))  # let requests get into flight
        cycle.stopping.set()
        server.stop()
        for worker in workers:
            worker.join(timeout=PATIENCE)
        assert not any(worker.is_alive() for worker in workers), f"cycle {number}: a client hung"
        assert not server.running
        assert not cycle.failures, f"cycle {number}: {cycle.failures}"
        with pytest.raises(OSError):  # the port is released at once
            socket.create_connection(("127.0.0.1", cycle.port), timeout=2).close()
        completed += cycle.completed
    return completed


def test_stop_is_bounded_when_a_handler_hangs(problems: Problems) -> None:
    """A handler stuck past the timeout: stop() still returns promptly, says so, and nothing breaks later.

    Promptly is shown by what happened, not by a stopwatch: stop() returned while the handler was still
    stuck (it stays stuck until the test releases it, or for two minutes), so it did not wait for it."""
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def hang_routes(config: Configurator) -> None:
        def hang(request: Request) -> Response:
            entered.set()
            release.wait(120)
            returned.set()
            return json_response({"hung": True})

        add_json_route(config, "stress_hang", "/hang", hang)

    runstate = RunState.create("stress-hang", version={"package": "0", "git_commit": None})
    app = create_app(runstate, extra_includes=[hang_routes])
    descriptors_before, threads_before = _open_descriptors(), _server_threads()
    server = WebhookServer(app, port=0, threads=2).start()
    outcome: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
        try:
            connection.request("GET", "/hang")
            outcome.append(str(connection.getresponse().status))
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(type(exc).__name__)
        finally:
            connection.close()

    requester = threading.Thread(target=client, name="stress-hang-client")
    requester.start()
    assert entered.wait(60)
    server.stop(timeout=0.2)
    assert not returned.is_set(), "stop() waited for the stuck handler"
    requester.join(60)
    assert not server.running
    assert outcome and outcome[0] != "200", outcome  # its connection was closed, not answered

    release.set()  # the stuck worker returns now, after the server is gone
    for thread in threading.enumerate():
        if thread.name.startswith("webhook-"):  # the worker, then the thread closing the wake-up pipe
            thread.join(60)
    assert _server_threads() == threads_before
    assert _open_descriptors() <= descriptors_before, (
        "the wake-up pipe was not closed after the worker returned"
    )
    expected = ("still busy", "still running", "Client disconnected while serving /hang")
    unexpected = [text for text in problems.all() if not any(part in text for part in expected)]
    assert not unexpected, "\n".join(unexpected)
    assert any("still busy" in text for text in problems.records), problems.records
