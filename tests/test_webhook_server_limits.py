"""What clients cannot do to the webhook's server: starve the probes, flood the log, get plain-text errors.

Real waitress servers on loopback. Idle and half-open connections are real sockets held by the
test; slow pollers run in a process of their own (``tests/slow_pollers.py``), so their
interpreter lock never competes with the server's. No timing assertion is tight: a probe must
answer within a generous deadline, where before the fix it never answered at all.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from pyramid.config import Configurator
from pyramid.request import Request

from tradeexecutor.runstate import RunState, RunStatus
from tradeexecutor.runstate.logbuffer import RingBufferHandler
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.app import json_response
from tradeexecutor.webhook.channel import Tally
from tradeexecutor.webhook.openapi import openapi_document
from tradeexecutor.webhook.server import ServerLimits

HERE = Path(__file__).resolve().parent
#: Seconds a probe may take under load: generous, for a machine whose cores are busy with other work.
PROBE_DEADLINE = 20.0


def running_state() -> RunState:
    state = RunState.create("probes", mode="replay", version={"package": "0", "git_commit": None})
    state.update(status=RunStatus.running, executor_running=True,
                 next_cycle_at=datetime.now(UTC) + timedelta(hours=1))
    return state


def probe(server: WebhookServer, path: str) -> tuple[int, dict[str, Any]]:
    """One request on a fresh connection, within PROBE_DEADLINE (connect included)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=PROBE_DEADLINE)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def assert_probes_answer(server: WebhookServer, rounds: int = 5) -> None:
    for _ in range(rounds):
        assert probe(server, "/ping") == (200, {"ping": "pong"})
        status, body = probe(server, "/healthz")
        assert status == 200 and body["healthy"] is True, body


@contextlib.contextmanager
def idle_sockets(server: WebhookServer, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send nothing (every third sends half a request: half-open)."""
    sockets: list[socket.socket] = []
    try:
        for number in range(count):
            sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=10)
            if number % 3 == 0:
                sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # never finished
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


class Pollers:
    """What the slow pollers report: the 200 responses so far while they run, every status count at the end."""

    def __init__(self) -> None:
        self.ok = 0
        self.result: dict[str, int] = {}

    def read(self, stdout: Any) -> None:
        for line in stdout:
            if line.startswith("OK "):
                self.ok = int(line.split()[1])
            elif line.startswith("{"):
                self.result.update(json.loads(line))

    def wait_ok(self, count: int) -> None:
        """Wait until at least ``count`` responses were 200 (work done, not time spent)."""
        wait_until(lambda: self.ok >= count, timeout=PROBE_DEADLINE * 6)


@contextlib.contextmanager
def slow_pollers(url: str, count: int) -> Iterator[Pollers]:
    """``count`` slow pollers of ``url`` in another process; yields what they report (``Pollers``)."""
    process = subprocess.Popen([sys.executable, str(HERE / "slow_pollers.py"), url, str(count)],
                               stdout=subprocess.PIPE, text=True)
    pollers = Pollers()
    reader: threading.Thread | None = None
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        reader = threading.Thread(target=pollers.read, args=(process.stdout,), daemon=True)
        reader.start()
        yield pollers
    finally:
        process.terminate()
        process.wait(60)
        if reader is not None:
            reader.join(60)


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def is_closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed ``sock`` (EOF or reset), False while it is still open."""
    sock.settimeout(0.0)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# -- the probes always answer ----------------------------------------------------------------------


@pytest.mark.slow
def test_probes_answer_with_250_idle_connections_and_50_slow_pollers() -> None:
    """waitress stopped accepting at 100 connections: 98 idle ones made /ping and /healthz time out."""
    with WebhookServer(create_app(running_state()), port=0) as server:
        with slow_pollers(f"{server.url}/status", 50) as pollers:
            pollers.wait_ok(50)  # the pollers are connected and busy
            with idle_sockets(server, 250):
                assert_probes_answer(server)
                served = pollers.ok
                pollers.wait_ok(served + 50)  # the pollers are still served while the idle connections are held
        assert pollers.result.get("200", 0) >= served + 50, pollers.result
        assert server.evicted == 0  # 300 connections fit the default limit: nobody was cut off


def test_at_the_connection_limit_the_longest_idle_connections_make_room() -> None:
    with (WebhookServer(create_app(running_state()), port=0, limits=ServerLimits(max_connections=40)) as server,
          idle_sockets(server, 200) as sockets):
        assert_probes_answer(server, rounds=2)
        assert server.evicted >= 150
        wait_until(lambda: is_closed_by_server(sockets[0]))
        assert not is_closed_by_server(sockets[-1])  # the newest idle connection is still open


def _stuck_route(release: threading.Event, entered: threading.Semaphore) -> Any:
    def include(config: Configurator) -> None:
        def stuck(request: Request) -> Any:
            entered.release()
            release.wait(60)
            return json_response({"stuck": False})

        config.add_route("stuck", "/stuck")
        config.add_view(stuck, route_name="stuck")

    return include


def test_probes_answer_while_every_worker_is_stuck() -> None:
    """A probe never waits behind other requests: it has a worker of its own."""
    release, entered = threading.Event(), threading.Semaphore(0)
    app = create_app(running_state(), extra_includes=[_stuck_route(release, entered)])
    replies: list[int] = []
    with WebhookServer(app, port=0, threads=2) as server:

        def call_stuck() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=60)
            connection.request("GET", "/stuck")
            replies.append(connection.getresponse().status)
            connection.close()

        callers = [threading.Thread(target=call_stuck) for _ in range(5)]  # 2 stuck in workers, 3 queued
        for caller in callers:
            caller.start()
        for _ in range(2):
            assert entered.acquire(timeout=30)
        try:
            assert_probes_answer(server, rounds=3)
        finally:
            release.set()
            for caller in callers:
                caller.join(60)
    assert replies == [200] * 5


# -- errors waitress raises itself are JSON ------------------------------------------------------------


def _raw_exchange(server: WebhookServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the response until the server closes; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading it all
            sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


ERROR_SCHEMA = OAS30Validator({"$ref": "#/components/schemas/Error",
                               "components": yaml.safe_load(openapi_document())["components"]})


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GE\x00T /ping HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # bad request line
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),  # a header without a colon
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 << 10) + b"\r\n\r\n", 431),  # over 64 KiB
        (b"POST /control/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),  # over 1 MiB
        (b"POST /control/stop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
    ids=["request-line", "header-line", "header-size", "body-size", "transfer-encoding"],
)
def test_requests_the_server_refuses_get_the_json_error_shape(data: bytes, status: int) -> None:
    with WebhookServer(create_app(running_state()), port=0) as server:
        got, headers, body = _raw_exchange(server, data)
        assert got == status
        assert headers["content-type"].startswith("application/json")
        assert headers["cache-control"] == "no-store"
        payload = json.loads(body)
        ERROR_SCHEMA.validate(payload)
        assert payload["status"] == status and payload["error"]
        assert b"generated by" not in body and b"Traceback" not in body
        assert probe(server, "/ping")[0] == 200  # and the server carries on


# -- waitress's queue warnings are summed up ---------------------------------------------------------


def test_tally_logs_one_summary_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    tally = Tally("waited %(count)d times in %(seconds).0f s, deepest %(largest)d", interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tradeexecutor.webhook.load"):
        for depth in (1, 5, 2) * 1000:
            tally.note(depth)
            tally.flush()
        assert caplog.messages == []  # within the interval: nothing yet
        now[0] = 61.0
        tally.flush()
        tally.flush()
        now[0] = 200.0
        tally.flush()  # nothing happened in this interval: no line
        tally.note(3)
        tally.flush(force=True)
    assert caplog.messages == ["waited 3000 times in 61 s, deepest 5", "waited 1 times in 0 s, deepest 3"]


class _Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_logger: dict[str, int] = {}
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.by_logger[record.name] = self.by_logger.get(record.name, 0) + 1
        if record.name == "tradeexecutor.webhook.load":
            self.messages.append(record.getMessage())


@pytest.mark.slow
def test_queue_depth_under_50_pollers_is_one_line_per_interval_and_keeps_the_technical_log() -> None:
    """waitress logged "Task queue depth is N" per queued request (~9 MB/min), evicting /logs/technical."""
    root = logging.getLogger()
    buffer = RingBufferHandler(capacity=100)
    counting = _Counting()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(buffer)
    root.addHandler(counting)
    try:
        logging.getLogger("tradeexecutor.test").warning("the record an operator needs")
        limits = ServerLimits(queue_log_seconds=1.0)
        started = time.monotonic()  # before the server (and its summary's clock) starts
        with (WebhookServer(create_app(running_state()), port=0, threads=1, limits=limits) as server,
              slow_pollers(f"{server.url}/status", 50) as pollers):
            pollers.wait_ok(101)  # enough requests served (and queued behind the one worker) to have logged many
            wait_until(lambda: bool(counting.messages))
        lasted = time.monotonic() - started  # after the server stopped: the last summary is in
    finally:
        root.removeHandler(buffer)
        root.removeHandler(counting)
        root.setLevel(old_level)
    assert pollers.result.get("200", 0) > 100, pollers.result
    assert "waitress.queue" not in counting.by_logger, counting.by_logger
    # At most one summary a second while loaded, plus the last one at stop: however long the machine took,
    # never one per queued request.
    assert 1 <= len(counting.messages) <= lasted / limits.queue_log_seconds + 1, (lasted, counting.messages)
    assert "waited for a busy worker" in counting.messages[0] and "deepest queue" in counting.messages[0]
    assert "the record an operator needs" in [entry["message"] for entry in buffer.records()]
