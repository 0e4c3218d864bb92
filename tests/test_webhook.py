"""The webhook over real HTTP: a waitress server on 127.0.0.1:0 serving a RunState, every route and error shape."""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.request import Request

from tradeexecutor.errors import ConfigError
from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, check_port_free, create_app

T0 = datetime(2024, 5, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'


@dataclass
class Reply:
    """One HTTP response as the client saw it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def request(server: WebhookServer, path: str, method: str = "GET") -> Reply:
    """Send one real HTTP request to the server on loopback."""
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


def _failing_view(config: Configurator) -> None:
    """Test-only route whose view raises, to exercise the 500 path."""

    def explode(request: Request) -> Any:
        raise ZeroDivisionError("secret internal detail")

    config.add_route("explode", "/explode")
    config.add_view(explode, route_name="explode")


@pytest.fixture
def runstate() -> RunState:
    return RunState.create(
        "exec-web",
        mode="replay",
        strategy_name="ema_cross",
        source_code="def decide():\n    return []\n",
        version={"package": "0.1.0", "git_commit": None},
        now=T0,
    )


@pytest.fixture
def server(runstate: RunState) -> Iterator[WebhookServer]:
    with WebhookServer(create_app(runstate, extra_includes=[_failing_view]), port=0) as running:
        yield running


def _assert_clean_error(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status
    data = reply.json()
    assert data["status"] == status
    assert isinstance(data["error"], str) and data["error"]
    assert b"Traceback" not in reply.body
    assert reply.headers["cache-control"] == "no-store"
    return data


def test_ping(server: WebhookServer) -> None:
    reply = request(server, "/ping")
    assert reply.status == 200
    assert reply.json() == {"ping": "pong"}
    assert reply.headers["cache-control"] == "no-store"


def test_status_shows_snapshot(server: WebhookServer, runstate: RunState) -> None:
    runstate.update(status="running", executor_running=True)
    runstate.update_complete_cycle(T0, now=T0)
    data = request(server, "/status").json()
    assert data["executor_id"] == "exec-web"
    assert data["status"] == "running"
    assert data["cycles"] == 1
    assert data["completed_cycle"] == "2024-05-01T00:00:00+00:00"
    assert data["source_code"] is None
    assert "visualisation" not in data
    assert data["exception"] is None


def _fail_in_helper() -> None:
    try:
        int("not a number")
    except ValueError as exc:
        raise RuntimeError("cycle failed") from exc


def test_status_shows_crash_after_set_fail(server: WebhookServer, runstate: RunState) -> None:
    try:
        _fail_in_helper()
    except RuntimeError as exc:
        runstate.set_fail(exc)
    data = request(server, "/status").json()
    assert data["status"] == "error"
    assert data["executor_running"] is False
    assert data["crashed_at"] is not None
    record = data["exception"]
    assert record["class"] == "builtins.RuntimeError"
    assert record["message"] == "cycle failed"
    assert [frame["name"] for frame in record["frames"]] == [
        "test_status_shows_crash_after_set_fail",
        "_fail_in_helper",
    ]
    (cause,) = record["chain"]
    assert cause["relation"] == "cause"
    assert cause["class"] == "builtins.ValueError"
    assert "not a number" in cause["message"]


def test_source(server: WebhookServer) -> None:
    reply = request(server, "/source")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.body == b"def decide():\n    return []\n"


def test_source_disabled(runstate: RunState) -> None:
    with WebhookServer(create_app(runstate, source_enabled=False), port=0) as server:
        data = _assert_clean_error(request(server, "/source"), 404)
    assert data["error"] == "source is disabled for this executor"


def test_visualisation_before_first_cycle(server: WebhookServer) -> None:
    data = _assert_clean_error(request(server, "/visualisation"), 404)
    assert data["error"] == "no chart yet: the first cycle has not completed"


def test_visualisation_serves_images(server: WebhookServer, runstate: RunState) -> None:
    runstate.set_images({"large/light/png": PNG, "small/dark/svg": SVG})
    reply = request(server, "/visualisation")
    assert reply.status == 200
    assert reply.headers["content-type"] == "image/png"
    assert reply.body == PNG
    reply = request(server, "/visualisation?type=small&theme=dark&format=svg")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("image/svg+xml")
    assert reply.body == SVG
    data = _assert_clean_error(request(server, "/visualisation?type=small&theme=light&format=png"), 404)
    assert data["available"] == ["large/light/png", "small/dark/svg"]


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [
        ("type=huge", "type", ["small", "large"]),
        ("theme=neon", "theme", ["light", "dark"]),
        ("format=gif", "format", ["svg", "png"]),
    ],
)
def test_visualisation_bad_query(
    server: WebhookServer, query: str, parameter: str, allowed: list[str]
) -> None:
    data = _assert_clean_error(request(server, f"/visualisation?{query}"), 400)
    assert data["parameter"] == parameter
    assert data["allowed"] == allowed
    assert parameter in data["error"]


def test_summary(server: WebhookServer, runstate: RunState) -> None:
    data = _assert_clean_error(request(server, "/summary"), 404)
    assert "first cycle" in data["error"]
    runstate.update(summary_statistics={"equity": 1010.5, "trades": 3})
    reply = request(server, "/summary")
    assert reply.status == 200
    assert reply.json() == {"equity": 1010.5, "trades": 3}


def test_unknown_path_is_json_404(server: WebhookServer) -> None:
    data = _assert_clean_error(request(server, "/no/such/thing"), 404)
    assert "/no/such/thing" in data["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_wrong_method_is_json_405(server: WebhookServer, method: str) -> None:
    reply = request(server, "/status", method=method)
    data = _assert_clean_error(reply, 405)
    assert data["allowed"] == ["GET", "HEAD"]
    assert reply.headers["allow"] == "GET, HEAD"


def test_unhandled_error_is_json_500_with_id_and_logged(
    server: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="tradeexecutor.webhook"):
        reply = request(server, "/explode")
    data = _assert_clean_error(reply, 500)
    assert data["error"] == "internal server error"
    assert b"secret internal detail" not in reply.body
    assert b"ZeroDivisionError" not in reply.body
    error_id = data["id"]
    assert error_id and len(error_id) <= 16
    logged = [r for r in caplog.records if r.name == "tradeexecutor.webhook" and error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert logged[0].exc_info[0] is ZeroDivisionError


def test_shipped_app_has_no_failing_route(runstate: RunState) -> None:
    with WebhookServer(create_app(runstate), port=0) as server:
        _assert_clean_error(request(server, "/explode"), 404)


def test_port_in_use_is_config_error(server: WebhookServer, runstate: RunState) -> None:
    with pytest.raises(ConfigError, match=f"127.0.0.1:{server.effective_port}"):
        WebhookServer(create_app(runstate), port=server.effective_port).start()


def test_port_check_matches_start(server: WebhookServer) -> None:
    """check_port_free gives start()'s error without binding for real; port 0 and a free port pass."""
    with pytest.raises(ConfigError, match=f"webhook cannot listen on 127.0.0.1:{server.effective_port}"):
        check_port_free("127.0.0.1", server.effective_port)
    with pytest.raises(ConfigError, match=re.escape("webhook cannot listen on no-such-host.invalid:80")):
        check_port_free("no-such-host.invalid", 80)
    check_port_free("127.0.0.1", 0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port_free("127.0.0.1", free)
    WebhookServer(create_app(RunState.create("again")), port=free).start().stop()  # and start() agrees


def test_stop_releases_the_port(runstate: RunState) -> None:
    server = WebhookServer(create_app(runstate), port=0).start()
    port = server.effective_port
    # Leave a keep-alive connection open: stop must still return promptly.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/ping")
    assert connection.getresponse().read() == b'{"ping": "pong"}'
    server.stop(timeout=5)
    assert not server.running
    connection.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with WebhookServer(create_app(runstate), port=port) as again:
        assert request(again, "/ping").status == 200
    server.stop()  # a second stop is harmless


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/visualisation?type=%ff", "query string is not valid UTF-8"),
        ("/%ff", "path is not valid UTF-8"),
    ],
)
def test_undecodable_request_is_json_400(server: WebhookServer, path: str, message: str) -> None:
    data = _assert_clean_error(request(server, path), 400)
    assert data["error"] == message
