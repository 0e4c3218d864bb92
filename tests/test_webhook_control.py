"""POST /control/*: commands reach the sink only with auth configured and right credentials."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.control import AUTH_REQUIRED_MESSAGE
from tradeexecutor.webhook.options import WebhookOptions

USER, PASSWORD = "ops", "control-pw-123"
GOOD = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
ROUTES = {"/control/stop": "stop", "/control/pause": "pause", "/control/resume": "resume",
          "/control/cycle-now": "cycle_now"}


def call(server: WebhookServer, path: str, method: str = "POST",
         headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        payload = json.loads(raw) if raw and headers_out.get("content-type", "").startswith("application/json") else raw
        return response.status, headers_out, payload
    finally:
        connection.close()


class Recorder:
    """A command sink that records what it was given and answers as told."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.calls: list[str] = []

    def __call__(self, command: str) -> bool:
        self.calls.append(command)
        return self.answer


def serve(**options: Any) -> WebhookServer:
    """An unstarted server (use it as a context manager) over a fresh RunState."""
    runstate = RunState.create("control", version={"package": "0", "git_commit": None})
    return WebhookServer(create_app(runstate, options=WebhookOptions(**options)), port=0)


@pytest.fixture
def sink() -> Recorder:
    return Recorder()


@pytest.fixture
def secured(sink: Recorder) -> Iterator[WebhookServer]:
    with serve(auth_username=USER, auth_password=PASSWORD, command_sink=sink) as running:
        yield running


@pytest.mark.parametrize("path", ROUTES)
def test_command_is_accepted_and_reaches_the_sink(secured: WebhookServer, sink: Recorder, path: str) -> None:
    status, headers, payload = call(secured, path, headers=GOOD)
    assert status == 202
    assert payload == {"accepted": True, "command": ROUTES[path]}
    assert headers["cache-control"] == "no-store"
    assert sink.calls == [ROUTES[path]]


def test_a_body_is_ignored(secured: WebhookServer, sink: Recorder) -> None:
    status, _, _ = call(secured, "/control/pause", headers={**GOOD, "Content-Type": "application/json"},
                        body=b'{"command": "stop"}')
    assert status == 202
    assert sink.calls == ["pause"]


@pytest.mark.parametrize("path", ROUTES)
def test_get_is_405(secured: WebhookServer, sink: Recorder, path: str) -> None:
    status, headers, payload = call(secured, path, method="GET", headers=GOOD)
    assert status == 405
    assert headers["allow"] == "POST"
    assert payload["status"] == 405 and payload["allowed"] == ["POST"]
    assert sink.calls == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic " + base64.b64encode(b"ops:nope").decode()}])
def test_missing_or_wrong_credentials_are_401(secured: WebhookServer, sink: Recorder,
                                               headers: dict[str, str]) -> None:
    status, reply_headers, payload = call(secured, "/control/stop", headers=headers)
    assert status == 401
    assert reply_headers["www-authenticate"] == 'Basic realm="tradeexecutor"'
    assert payload["status"] == 401
    assert sink.calls == []


@pytest.mark.parametrize("options", [{}, {"auth_username": USER}, {"auth_password": PASSWORD}])
def test_control_without_auth_configured_is_403(options: dict[str, Any]) -> None:
    sink = Recorder()
    with serve(command_sink=sink, **options) as server:
        for path in ROUTES:
            status, _, payload = call(server, path, headers=GOOD)
            assert status == 403
            assert payload["error"] == AUTH_REQUIRED_MESSAGE
            assert payload["status"] == 403
    assert sink.calls == []


def test_no_sink_is_503() -> None:
    with serve(auth_username=USER, auth_password=PASSWORD) as server:
        status, _, payload = call(server, "/control/stop", headers=GOOD)
    assert status == 503
    assert payload["status"] == 503 and payload["command"] == "stop"


def test_refusing_sink_is_503() -> None:
    sink = Recorder(answer=False)
    with serve(auth_username=USER, auth_password=PASSWORD, command_sink=sink) as server:
        status, _, payload = call(server, "/control/cycle-now", headers=GOOD)
    assert status == 503
    assert payload["command"] == "cycle_now"
    assert sink.calls == ["cycle_now"]


def test_failing_sink_is_503_without_details() -> None:
    def broken(command: str) -> bool:
        raise RuntimeError("queue exploded: internal detail")

    with serve(auth_username=USER, auth_password=PASSWORD, command_sink=broken) as server:
        status, _, payload = call(server, "/control/resume", headers=GOOD)
    assert status == 503
    assert "internal detail" not in json.dumps(payload)


def test_unknown_control_path_is_404(secured: WebhookServer) -> None:
    status, _, payload = call(secured, "/control/explode", headers=GOOD)
    assert status == 404 and payload["status"] == 404
