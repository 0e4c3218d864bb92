"""POST /control/*: commands reach the sink only with auth configured and right credentials."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tradeexecutor.control import ACTIONS, ActionReply, ActionRequest, ActionResult, Outcome
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


# -- job actions: close, close-all, reload-params -----------------------------------------------

JOBS = {"/control/close": ("close", b'{"position_id": 3}'), "/control/close-all": ("close_all", b""),
        "/control/reload-params": ("reload_params", b'{"parameters": {"fast": 10}}')}


class Answering:
    """An action sink that answers each job as told (or never, like a loop busy with a long job)."""

    def __init__(self, result: ActionResult | None) -> None:
        self.result = result
        self.jobs: list[ActionRequest] = []

    def __call__(self, request: ActionRequest) -> ActionReply:
        self.jobs.append(request)
        reply = ActionReply()
        if self.result is not None:
            reply.set(self.result)
        return reply


def serve_jobs(result: ActionResult | None, **options: Any) -> tuple[WebhookServer, Answering]:
    answering = Answering(result)
    settings: dict[str, Any] = {"auth_username": USER, "auth_password": PASSWORD, "action_sink": answering,
                                **options}
    return serve(**settings), answering


@pytest.mark.parametrize("path", JOBS)
def test_a_job_is_answered_with_what_the_loop_did(path: str) -> None:
    command, body = JOBS[path]
    server, answering = serve_jobs(ActionResult(Outcome.done, "closed position 3", {"cash": 1.5}))
    with server:
        status, _, payload = call(server, path, headers={**GOOD, "Content-Type": "application/json"}, body=body)
    assert status == 200
    assert payload == {"command": command, "outcome": "done", "message": "closed position 3",
                       "details": {"cash": 1.5}}
    [job] = answering.jobs
    assert job.command == command and job.by == "operator"  # the journal says an operator asked, never the username (half a credential)
    assert job.position_id == (3 if command == "close" else None)
    assert job.parameters == ({"fast": 10} if command == "reload_params" else None)


@pytest.mark.parametrize(("outcome", "status"), [(Outcome.not_found, 404), (Outcome.conflict, 409),
                                                 (Outcome.invalid, 400), (Outcome.failed, 503)])
def test_the_loops_refusal_becomes_a_4xx_with_its_reason(outcome: Outcome, status: int) -> None:
    server, _ = serve_jobs(ActionResult(outcome, "no position 3; open positions: 1, 2"))
    with server:
        code, _, payload = call(server, "/control/close", headers=GOOD, body=b'{"position_id": 3}')
    assert code == status
    assert payload == {"error": "no position 3; open positions: 1, 2", "status": status, "command": "close",
                       "outcome": outcome.value}


@pytest.mark.parametrize(("path", "body", "result", "status"), [
    ("/control/close", b'{"position_id": 3}',  # the loop's answer for an id no position has
     ActionResult(Outcome.not_found, "no position 3; open positions: 1, 2", {"position_id": 3}), 404),
    ("/control/close", b'{"position_id": 3}',  # live: its order in flight (daemon/loop.py _close)
     ActionResult(Outcome.conflict, "position 3 has order te-p3 unknown at the exchange; close again once it has "
                  "ended", {"position_id": 3, "client_order_id": "te-p3"}), 409),
    ("/control/reload-params", b'{"parameters": {"fast": 10}}',  # refused: the parameters kept, as they are
     ActionResult(Outcome.invalid, "'fast' must be below 'slow'", {"parameters": {"fast": 5, "slow": 8}}), 400),
])
def test_a_refusal_carries_the_loops_details(path: str, body: bytes, result: ActionResult, status: int) -> None:
    """A refusal's body names what the loop named (``details``), as a done answer's does: the position and its
    order in flight, the parameters in use — not only in the message."""
    server, _ = serve_jobs(result)
    with server:
        code, _, payload = call(server, path, headers=GOOD, body=body)
    assert code == status
    assert payload == {"error": result.message, "status": status, "command": JOBS[path][0],
                       "outcome": result.outcome.value, "details": result.details}


def test_a_failed_answer_has_no_details() -> None:
    """The loop's ``failed`` answers (a temporary failure, a crash, the loop ended) carry none: no empty
    ``details`` in the body either."""
    server, _ = serve_jobs(ActionResult(Outcome.failed, "close failed temporarily (timeout); nothing changed"))
    with server:
        code, _, payload = call(server, "/control/close", headers=GOOD, body=b'{"position_id": 3}')
    assert code == 503 and payload["outcome"] == "failed"
    assert "details" not in payload, payload


def test_a_busy_loop_gets_202_and_the_journal_tells() -> None:
    server, answering = serve_jobs(None, action_wait_seconds=0.2)
    with server:
        status, _, payload = call(server, "/control/close-all", headers=GOOD)
    assert status == 202 and payload["accepted"] is True and "journal" in payload["message"]
    assert len(answering.jobs) == 1


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/control/close", b"", "position_id must be a position id"),
    ("/control/close", b'{"position_id": 0}', "position_id must be a position id"),
    ("/control/close", b'{"position_id": "3"}', "position_id must be a position id"),
    ("/control/close", b'{"position_id": true}', "position_id must be a position id"),
    ("/control/close", b'{"position_id": 3, "all": true}', "unknown field 'all'"),
    ("/control/close", b"[3]", "must be a JSON object"),
    ("/control/close", b"{nope", "must be JSON"),
    ("/control/close-all", b'{"position_id": 3}', "unknown field 'position_id'"),
    ("/control/reload-params", b'{"fast": 10}', "unknown field 'fast'"),
    ("/control/reload-params", b'{"parameters": {}}', "at least one"),
    ("/control/reload-params", b'{"parameters": {"fast": [1, 2]}}', "'fast' must be a single value"),
    ("/control/reload-params", b'{"parameters": {"fast": null}}', "'fast' must be a single value"),
])
def test_a_bad_body_is_400_and_never_reaches_the_loop(path: str, body: bytes, message: str) -> None:
    server, answering = serve_jobs(ActionResult(Outcome.done, "done"))
    with server:
        status, _, payload = call(server, path, headers=GOOD, body=body)
    assert status == 400 and message in payload["error"], payload
    assert answering.jobs == []


@pytest.mark.parametrize("path", JOBS)
def test_jobs_need_credentials_and_configured_auth(path: str) -> None:
    server, answering = serve_jobs(ActionResult(Outcome.done, "done"))
    with server:
        assert call(server, path, body=JOBS[path][1])[0] == 401
    open_server, open_answering = serve_jobs(ActionResult(Outcome.done, "done"), auth_username=None, auth_password=None)
    with open_server:
        status, _, payload = call(open_server, path, headers=GOOD, body=JOBS[path][1])
    assert status == 403 and payload["error"] == AUTH_REQUIRED_MESSAGE
    assert answering.jobs == [] and open_answering.jobs == []


def test_the_routes_are_the_shared_list_of_actions() -> None:
    """Every action of tradeexecutor.control.ACTIONS is a route, and nothing else is under /control but cast."""
    with serve(auth_username=USER, auth_password=PASSWORD) as server:
        for action in ACTIONS:
            status, _, payload = call(server, f"/control/{action.name}", headers=GOOD,
                                      body=JOBS.get(f"/control/{action.name}", ("", b""))[1])
            assert status == 503 and payload["command"] == action.command, (action.name, payload)


def test_get_control_lists_the_actions_and_says_whether_they_are_taken() -> None:
    server, _ = serve_jobs(ActionResult(Outcome.done, "done"), command_sink=Recorder())
    with server:
        status, _, payload = call(server, "/control", method="GET", headers=GOOD)
    assert status == 200 and payload["enabled"] is True and payload["reason"] == ""
    assert [a["name"] for a in payload["actions"]] == [a.name for a in ACTIONS]
    with serve() as open_server:
        status, _, payload = call(open_server, "/control", method="GET")
    assert status == 200 and payload["enabled"] is False and payload["reason"] == AUTH_REQUIRED_MESSAGE
    with serve(auth_username=USER, auth_password=PASSWORD) as loopless:
        payload = call(loopless, "/control", method="GET", headers=GOOD)[2]
    assert payload["enabled"] is False and "no loop" in payload["reason"]


def test_the_cli_prints_a_refusals_details_and_exits_1() -> None:
    """``tradeexecutor control`` (a subprocess) against the real webhook: a 409 from close-all shows its message and
    then ``details.not_closed`` — each position left open, its order in flight and why — and exits 1 (fails before:
    only the message was printed)."""
    not_closed = [{"position_id": 4, "symbol": "GBPUSD", "client_order_id": "te-p4-open", "purpose": "open",
                   "status": "unknown", "reason": "its open order te-p4-open is unknown at the exchange"},
                  {"position_id": 7, "symbol": "EURUSD", "client_order_id": "te-p7-open", "purpose": "open",
                   "status": "submitted", "reason": "its open order te-p7-open is submitted at the exchange"}]
    server, answering = serve_jobs(ActionResult(Outcome.conflict, "no open position can be closed now",
                                                {"not_closed": not_closed}))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    environment.update(TRADEEXECUTOR_WEBHOOK_USERNAME=USER, TRADEEXECUTOR_WEBHOOK_PASSWORD=PASSWORD)
    with server:
        result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "control", server.url, "close-all"],
                                capture_output=True, text=True, env=environment, timeout=60, check=False)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: ") and first.endswith("answered 409: no open position can be closed now"), first
    assert rest == ["  not_closed:",
                    "    - position_id: 4", "      symbol: GBPUSD", "      client_order_id: te-p4-open",
                    "      purpose: open", "      status: unknown",
                    "      reason: its open order te-p4-open is unknown at the exchange",
                    "    - position_id: 7", "      symbol: EURUSD", "      client_order_id: te-p7-open",
                    "      purpose: open", "      status: submitted",
                    "      reason: its open order te-p7-open is submitted at the exchange"], rest
    assert len(answering.jobs) == 1
