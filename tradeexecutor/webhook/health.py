"""GET /healthz: 200 while the loop is alive and on time, 503 with the reasons when it is not.

The rule itself (``runstate.health.assess_health``, shared with the ``tradeexecutor_healthy``
metric and the daemon's health-change notifications) fails when the executor crashed, is stopped,
complete or not running, is in safe mode (its strategy is no longer called), a risk limit paused its
entries (until an operator resumes), its next cycle is
overdue past the grace, or its market data is stale. Liveness probes use ``/ping`` instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.runstate import assess_health
from tradeexecutor.webhook.app import add_json_route, get_options, get_runstate, json_error, json_response

__all__ = ["includeme"]


def healthz(request: Request) -> Response:
    """200 ``{"healthy": true, ...}`` or 503 ``{"error": <first reason>, "healthy": false, "reasons": [...]}``."""
    snapshot = get_runstate(request).snapshot()
    now = datetime.now(UTC)
    verdict = assess_health(snapshot, get_options(request).health_limits, now)
    details: dict[str, Any] = {
        "healthy": verdict.healthy,
        "reasons": verdict.reasons,
        "run_status": snapshot.status.value,
        "executor_running": snapshot.executor_running,
        "paused": snapshot.paused,
        "safe_mode": snapshot.safe_mode,
        "risk_paused": snapshot.risk_paused,
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
