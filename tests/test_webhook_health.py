"""/healthz over real HTTP: 200 while the loop runs on time, 503 with a reason for every way it can fail."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tradeexecutor.runstate import HealthLimits, RunState, RunStatus, assess_health, next_cycle_overdue
from tradeexecutor.runstate.crash import CrashHistory
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions


def get(server: WebhookServer, path: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json")
        assert response.getheader("Cache-Control") == "no-store"
        return response.status, json.loads(body)
    finally:
        connection.close()


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def runstate() -> RunState:
    runstate = RunState.create("exec-health", mode="replay", version={"package": "0.1.0", "git_commit": None})
    runstate.update(status="running", executor_running=True, next_cycle_at=_now() + timedelta(minutes=5))
    return runstate


def _server(runstate: RunState, **options: Any) -> WebhookServer:
    return WebhookServer(create_app(runstate, options=WebhookOptions(**options)), port=0)


@pytest.fixture
def server(runstate: RunState) -> Iterator[WebhookServer]:
    with _server(runstate, health_limits=HealthLimits(grace_seconds=60, data_stale_seconds=300)) as running:
        yield running


def test_healthy_while_running_and_on_time(server: WebhookServer) -> None:
    status, body = get(server, "/healthz")
    assert status == 200
    assert body["healthy"] is True and body["reasons"] == []
    assert body["run_status"] == "running" and body["executor_running"] is True
    assert body["next_cycle_overdue_seconds"] == 0


def test_ping_is_unchanged(server: WebhookServer) -> None:
    assert get(server, "/ping") == (200, {"ping": "pong"})


def _assert_unhealthy(server: WebhookServer, fragment: str) -> dict[str, Any]:
    status, body = get(server, "/healthz")
    assert status == 503, body
    assert body["status"] == 503 and body["healthy"] is False
    assert fragment in body["error"], body
    assert any(fragment in reason for reason in body["reasons"])
    return body


def test_crash_is_503_with_reason(server: WebhookServer, runstate: RunState) -> None:
    try:
        raise RuntimeError("exchange exploded")
    except RuntimeError as exc:
        runstate.set_fail(exc)
    body = _assert_unhealthy(server, "crashed")
    assert body["run_status"] == "error" and body["executor_running"] is False
    assert "exchange exploded" not in json.dumps(body)  # the crash record lives in /status, not here


def test_a_crash_before_this_process_started_does_not_fail_a_running_executor(
    server: WebhookServer, runstate: RunState
) -> None:
    assert runstate.started_at is not None
    earlier = runstate.started_at - timedelta(hours=1)
    runstate.apply_crash_history(CrashHistory(crash_count=2, last_crashed_at=earlier, last_exception={"type": "X"}))
    status, body = get(server, "/healthz")
    assert status == 200 and body["healthy"] is True


def test_crashed_at_in_this_process_fails_even_if_status_was_not_updated(
    server: WebhookServer, runstate: RunState
) -> None:
    runstate.update(crashed_at=_now())
    _assert_unhealthy(server, "crashed")


@pytest.mark.parametrize("status", [RunStatus.stopped, RunStatus.complete])
def test_stopped_or_complete_is_503(server: WebhookServer, runstate: RunState, status: RunStatus) -> None:
    runstate.update(status=status, executor_running=False)
    _assert_unhealthy(server, f"executor is {status.value}")


def test_loop_not_running_yet_is_503(server: WebhookServer, runstate: RunState) -> None:
    runstate.update(status="starting", executor_running=False)
    _assert_unhealthy(server, "loop is not running")


def test_start_up_waiting_for_the_exchange_is_an_outage_healthy_until_its_grace(runstate: RunState) -> None:
    """daemon/startup_wait.py: status starting, the loop not running, an outage of the start-up job."""
    now = _now()
    outage = {"job": "start-up", "since": (now - timedelta(seconds=30)).isoformat(), "retries": 4,
              "error_class": "TemporaryError", "error": "binance: NetworkError: down",
              "next_retry_at": now.isoformat()}
    runstate.update(status="starting", executor_running=False, next_cycle_at=None, outage=outage)
    limits = HealthLimits(outage_grace_seconds=120)
    assert assess_health(runstate, limits, now).healthy
    verdict = assess_health(runstate, HealthLimits(outage_grace_seconds=10), now)
    assert verdict.reasons == ["temporary failure for 30 s (grace 10 s): the start-up job retried 4 time(s), last "
                               "TemporaryError: binance: NetworkError: down"]
    runstate.update(outage=None)  # starting without an outage: the loop simply is not running yet
    assert assess_health(runstate, limits, now).reasons == ["loop is not running (status starting)"]


def test_overdue_next_cycle_beyond_grace_is_503(server: WebhookServer, runstate: RunState) -> None:
    runstate.update(next_cycle_at=_now() - timedelta(seconds=30))  # late, but within 60 s grace
    status, body = get(server, "/healthz")
    assert status == 200 and 29 <= body["next_cycle_overdue_seconds"] < 60
    runstate.update(next_cycle_at=_now() - timedelta(seconds=600))
    body = _assert_unhealthy(server, "overdue")
    assert body["next_cycle_overdue_seconds"] >= 600


def test_paused_executor_is_not_failed_for_an_overdue_cycle(server: WebhookServer, runstate: RunState) -> None:
    runstate.update(paused=True, next_cycle_at=_now() - timedelta(seconds=600))
    status, body = get(server, "/healthz")
    assert status == 200 and body["paused"] is True


def test_safe_mode_is_503_with_its_reason(server: WebhookServer, runstate: RunState) -> None:
    """The strategy is not called in safe mode: running and serving, but it needs an operator."""
    runstate.update(safe_mode=True, safe_mode_reason="3 crashes within 10 minutes")
    body = _assert_unhealthy(server, "safe mode: 3 crashes within 10 minutes")
    assert body["safe_mode"] is True and body["run_status"] == "running"


def test_stale_market_data_is_503(server: WebhookServer, runstate: RunState) -> None:
    runstate.update(market_data_feed_lag=299.0)
    assert get(server, "/healthz")[0] == 200
    runstate.update(market_data_feed_lag=301.0)
    _assert_unhealthy(server, "market data")


def test_market_data_age_is_taken_at_check_time_not_after_the_last_job(
        server: WebhookServer, runstate: RunState) -> None:
    """A loop stuck in a job for 8 minutes wrote its last lag (0.002 s) before it hung."""
    runstate.update(market_data_feed_lag=0.002, market_data_at=_now() - timedelta(minutes=8))
    status, body = get(server, "/healthz")
    assert status == 503 and "market data is" in body["error"] and "old (limit 300 s)" in body["error"]
    assert body["market_data_feed_lag"] >= 480


def test_stale_check_is_off_when_limit_is_zero(runstate: RunState) -> None:
    runstate.update(market_data_feed_lag=1e9)
    with _server(runstate, health_limits=HealthLimits(data_stale_seconds=0)) as server:
        assert get(server, "/healthz")[0] == 200


def test_several_reasons_are_all_reported(server: WebhookServer, runstate: RunState) -> None:
    runstate.update(next_cycle_at=_now() - timedelta(hours=1), market_data_feed_lag=10_000.0)
    body = _assert_unhealthy(server, "overdue")
    assert len(body["reasons"]) == 2 and "market data" in body["error"]


def test_assess_health_with_injected_time() -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    snapshot = RunState(executor_running=True, status=RunStatus.running, next_cycle_at=t0, started_at=t0)
    assert WebhookOptions().health_limits == HealthLimits()  # the settings' own defaults, not a copy of them
    options = HealthLimits(grace_seconds=10)
    assert next_cycle_overdue(snapshot, t0 - timedelta(seconds=5)) == 0
    assert next_cycle_overdue(snapshot, t0 + timedelta(seconds=11)) == 11
    assert assess_health(snapshot, options, t0 + timedelta(seconds=10)).healthy
    verdict = assess_health(snapshot, options, t0 + timedelta(seconds=11))
    assert not verdict.healthy and verdict.overdue_seconds == 11 and not verdict.crashed
