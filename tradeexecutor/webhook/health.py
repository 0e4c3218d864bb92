"""GET /healthz: 200 while the loop is alive and on time, 503 with the reasons when it is not.

The rule (:func:`assess_health`, shared with the ``tradeexecutor_healthy`` metric) fails when

- the executor crashed: status ``error``, or a crash recorded by *this* process (a ``crashed_at``
  at or after ``started_at``; a crash from before a restart, restored from crash.json, does not
  make the restarted executor unhealthy);
- the run is stopped or complete, or the loop is not running (yet);
- the executor is in safe mode (a crash loop): it manages positions but its strategy is no
  longer called, which needs an operator — the reason says why and until when;
- the next cycle is late by more than ``options.health_grace_seconds`` (not checked while an
  operator has paused cycles: a paused executor is idle on purpose);
- market data is older than ``options.data_stale_seconds`` now (its age is taken at check time, so
  it grows while the loop hangs), when that is above zero.

Safe mode is a stable state, not a crash: the process keeps running and serving. Orchestrators
should probe liveness on ``/ping`` (deploy/ does) so that a 503 here never restarts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.runstate import RunState, RunStatus
from tradeexecutor.webhook.app import add_json_route, get_options, get_runstate, json_error, json_response
from tradeexecutor.webhook.options import WebhookOptions

__all__ = ["HealthVerdict", "assess_health", "includeme", "next_cycle_overdue"]


@dataclass(frozen=True)
class HealthVerdict:
    """The outcome of one health check."""

    #: True when nothing below is wrong.
    healthy: bool
    #: Why it is not healthy, one short sentence each; empty when healthy.
    reasons: list[str] = field(default_factory=list)
    #: Whether this process recorded a crash (or the status is error).
    crashed: bool = False
    #: Seconds the next cycle is late, 0 when on time or unknown.
    overdue_seconds: float = 0.0


def next_cycle_overdue(snapshot: RunState, now: datetime) -> float:
    """``max(0, now - next_cycle_at)`` in seconds; 0 when no next cycle is known."""
    if snapshot.next_cycle_at is None:
        return 0.0
    due = snapshot.next_cycle_at
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return max(0.0, (now - due).total_seconds())


def _crashed(snapshot: RunState) -> bool:
    """Status error, or a crash recorded since this process started."""
    if snapshot.status == RunStatus.error:
        return True
    if snapshot.crashed_at is None:
        return False
    return snapshot.started_at is None or snapshot.crashed_at >= snapshot.started_at


def assess_health(snapshot: RunState, options: WebhookOptions, now: datetime | None = None) -> HealthVerdict:
    """Apply the health rule of the module docstring to one RunState snapshot."""
    now = now or datetime.now(UTC)
    reasons: list[str] = []
    crashed = _crashed(snapshot)
    if crashed:
        at = snapshot.crashed_at.isoformat() if snapshot.crashed_at else "unknown time"
        reasons.append(f"executor crashed at {at}")
    if snapshot.status in (RunStatus.stopped, RunStatus.complete):
        reasons.append(f"executor is {snapshot.status.value}")
    elif not snapshot.executor_running and not crashed:
        reasons.append(f"loop is not running (status {snapshot.status.value})")
    if snapshot.safe_mode:
        reasons.append(f"safe mode: {snapshot.safe_mode_reason or 'the strategy is not called'}")
    overdue = next_cycle_overdue(snapshot, now)
    if not snapshot.paused and overdue > options.health_grace_seconds:
        reasons.append(
            f"next cycle is {overdue:.0f} s overdue (grace {options.health_grace_seconds:g} s)"
        )
    lag = snapshot.market_data_age(now)
    if options.data_stale_seconds > 0 and lag is not None and lag > options.data_stale_seconds:
        reasons.append(f"market data is {lag:.0f} s old (limit {options.data_stale_seconds:g} s)")
    return HealthVerdict(healthy=not reasons, reasons=reasons, crashed=crashed, overdue_seconds=overdue)


def healthz(request: Request) -> Response:
    """200 ``{"healthy": true, ...}`` or 503 ``{"error": <first reason>, "healthy": false, "reasons": [...]}``."""
    snapshot = get_runstate(request).snapshot()
    now = datetime.now(UTC)
    verdict = assess_health(snapshot, get_options(request), now)
    details: dict[str, Any] = {
        "healthy": verdict.healthy,
        "reasons": verdict.reasons,
        "run_status": snapshot.status.value,
        "executor_running": snapshot.executor_running,
        "paused": snapshot.paused,
        "safe_mode": snapshot.safe_mode,
        "checked_at": now,
        "last_refreshed_at": snapshot.last_refreshed_at,
        "next_cycle_at": snapshot.next_cycle_at,
        "next_cycle_overdue_seconds": verdict.overdue_seconds,
        "market_data_feed_lag": snapshot.market_data_age(now),
    }
    if verdict.healthy:
        return json_response(details)
    return json_error(503, "; ".join(verdict.reasons), **details)


def includeme(config: Configurator) -> None:
    """Register /healthz."""
    add_json_route(config, "healthz", "/healthz", healthz)
