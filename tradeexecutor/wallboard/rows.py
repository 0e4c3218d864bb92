"""One wallboard row per executor, from what its /status, /summary and /healthz answered (or why they did not).

Every row has a ``status`` that is never blank: the executor's own (``running``, ``error``,
``complete``, ...), else ``unreachable`` (no answer: refused, timed out, not HTTP) or
``refused`` (it answered 401/403: the wallboard lacks its credentials), with ``problem``
saying why. A row of an executor that stopped answering keeps the figures it last showed,
marked ``stale`` with ``last_seen_at``, so the board shows what was known and since when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tradeexecutor.wallboard.settings import ExecutorTarget

__all__ = ["FIGURES", "Answers", "executor_row"]

#: Fields copied from the executor's answers; kept (stale) when it stops answering.
FIGURES = ("mode", "prices", "rate_share", "rate_share_used", "clock_offset_ms", "exchange_requests",
           "held_back_seconds", "strategy_name", "executor_id", "equity", "equity_change", "open_positions", "cycles",
           "last_cycle_at", "last_cycle", "next_cycle_at", "paused", "safe_mode", "healthy", "health_reasons",
           "crash_reason", "crashed_at")


@dataclass(frozen=True)
class Answers:
    """What one poll of one executor got."""

    #: /status, or None when it did not answer it.
    status: dict[str, Any] | None = None
    #: /summary, or None (404 before the first cycle, or no answer).
    summary: dict[str, Any] | None = None
    #: /healthz (200 or 503 both carry it), or None.
    health: dict[str, Any] | None = None
    #: Why the executor could not be read: "connection refused", "answered 401 ...", ...
    problem: str | None = None
    #: The status to show for that problem: unreachable or refused.
    problem_status: str = "unreachable"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _crash_reason(status: dict[str, Any]) -> tuple[str | None, str | None]:
    """``"StrategyBoom: cannot price ..."`` and when, when this executor's last crash is current."""
    record = status.get("exception")
    if not isinstance(record, dict):
        return None, None
    crashed_at, started_at = status.get("crashed_at"), status.get("started_at")
    current = status.get("status") == "error" or (crashed_at and (not started_at or str(crashed_at) >= str(started_at)))
    if not current:
        return None, None
    name = record.get("class_name") or record.get("class") or "Exception"
    message = str(record.get("message") or "").strip()
    return (f"{name}: {message}" if message else str(name)), crashed_at


def _figures(answers: Answers) -> dict[str, Any]:
    """The row's figures from the answers (status and summary may each be missing)."""
    status = answers.status or {}
    summary = answers.summary or {}
    portfolio: dict[str, Any] = status["portfolio"] if isinstance(status.get("portfolio"), dict) else {}
    extra: dict[str, Any] = status["extra"] if isinstance(status.get("extra"), dict) else {}
    filled = bool(portfolio.get("updated_at"))
    equity = _number(portfolio.get("portfolio_value")) if filled else None
    if equity is None:
        equity = _number(summary.get("final_equity"))
    positions = portfolio.get("open_positions") if filled else extra.get("open_positions")
    crash_reason, crashed_at = _crash_reason(status)
    health = answers.health or {}
    venue: dict[str, Any] = status["venue"] if isinstance(status.get("venue"), dict) else {}
    requests = venue.get("requests")
    return {
        "mode": status.get("mode") or None,
        "prices": status.get("prices") or None,
        # The exchange connection of a paper or live executor: its share of the address's rate budget and use.
        "rate_share": _number(venue.get("rate_share")),
        "rate_share_used": _number(venue.get("rate_share_used")),
        "clock_offset_ms": _number(venue.get("clock_offset_ms")),
        "exchange_requests": requests if isinstance(requests, int) and not isinstance(requests, bool) else None,
        "held_back_seconds": _number(venue.get("held_back_seconds")),
        "strategy_name": status.get("strategy_name") or None,
        "executor_id": status.get("executor_id") or None,
        "equity": equity,
        "equity_change": _number(summary.get("total_return")),
        "open_positions": positions if isinstance(positions, int) and not isinstance(positions, bool) else None,
        "cycles": status.get("cycles"),
        "last_cycle_at": status.get("completed_cycle_at"),
        "last_cycle": status.get("completed_cycle"),
        "next_cycle_at": status.get("next_cycle_at"),
        "paused": bool(status.get("paused")),
        "safe_mode": bool(status.get("safe_mode")),
        "healthy": health.get("healthy") if isinstance(health.get("healthy"), bool) else None,
        "health_reasons": [str(r) for r in health.get("reasons") or []],
        "crash_reason": crash_reason,
        "crashed_at": crashed_at,
    }


def executor_row(target: ExecutorTarget, answers: Answers, polled_at: datetime, *, auth: str | None = None,
                 previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON row of one executor (see the module docstring); ``previous`` is its row of the last poll."""
    row: dict[str, Any] = {
        "name": target.name,
        "url": target.url,
        "dashboard": target.url + "/",
        "source": target.source,
        "auth": auth,
        "polled_at": polled_at,
        "problem": answers.problem,
        "stale": False,
    }
    if answers.status is not None:
        row.update(_figures(answers), status=str(answers.status.get("status") or "unknown"), reachable=True,
                   last_seen_at=polled_at)
        return row
    # Not read: keep what was last shown, and say why not.
    kept = {key: (previous or {}).get(key) for key in FIGURES}
    kept["health_reasons"] = kept["health_reasons"] or []
    row.update(kept, reachable=answers.problem_status != "unreachable", stale=previous is not None
               and previous.get("last_seen_at") is not None, last_seen_at=(previous or {}).get("last_seen_at"))
    row["status"] = answers.problem_status
    if target.run_status is not None and answers.problem_status == "unreachable" and target.run_status != "running":
        # A run that ended (or crashed) is expected to be silent: its registry status says more.
        row["status"] = target.run_status
        row["crash_reason"] = row["crash_reason"] or target.run_error
    return row
