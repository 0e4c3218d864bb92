"""The health rule: is the executor alive and on time? One verdict from one RunState snapshot.

Both sides of the process apply the same rule: the webhook answers ``/healthz`` and the
``tradeexecutor_healthy`` metric with it, and the daemon's health watch turns its changes into
"health degraded" and "health recovered" notifications. It lives here, below both, so neither
has to import the other.

The rule fails when

- the executor crashed: status ``error``, or a crash recorded by *this* process (a ``crashed_at``
  at or after ``started_at``; a crash from before a restart, restored from crash.json, does not
  make the restarted executor unhealthy);
- the run is stopped or complete, or the loop is not running (yet) — except while start-up waits for
  an exchange that is down (``daemon/startup_wait.py``): that is an outage, and the outage rule below
  speaks for it, after its grace;
- the executor is in safe mode (a crash loop): it manages positions but its strategy is no
  longer called, which needs an operator — the reason says why and until when;
- live: an order the exchange says ended has had fewer trades listed than it says filled for longer than
  ``--exchange-fills-missing-seconds`` (``RunState.fills_missing``): it is followed until they come, but a
  person should know, as of a lost order (safe mode) — the reason names the order and both figures;
- a risk limit paused new entries (``--max-drawdown`` and the others): positions are still
  managed, but the strategy can open nothing until an operator looks and resumes
  (``POST /control/resume``), so the probe says so with the limit, its figure and the setting;
- the next cycle is late by more than ``limits.grace_seconds`` (not checked while an operator has
  paused cycles: a paused executor is idle on purpose);
- a temporary failure (the network, an exchange down or in maintenance, a rate limit) has been
  retried for longer than ``limits.outage_grace_seconds`` (``daemon/outage.py``); it is not a
  crash and the loop goes on retrying, but an operator should know;
- market data is older than ``limits.data_stale_seconds`` now (its age is taken at check time, so
  it grows while the loop hangs), when that is above zero.

Safe mode is a stable state, not a crash: the process keeps running and serving. Orchestrators
should probe liveness on ``/ping`` (deploy/ does) so that a 503 here never restarts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tradeexecutor.config import HealthLimits
from tradeexecutor.runstate.runstate import RunState, RunStatus

__all__ = ["HealthLimits", "HealthVerdict", "assess_health", "next_cycle_overdue"]


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


def _outage_seconds(snapshot: RunState, now: datetime) -> float | None:
    """How long the temporary failure being retried has lasted, None when there is none."""
    since = (snapshot.outage or {}).get("since")
    if not since:
        return None
    started = datetime.fromisoformat(str(since))
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return max(0.0, (now - started).total_seconds())


def _crashed(snapshot: RunState) -> bool:
    """Status error, or a crash recorded since this process started."""
    if snapshot.status == RunStatus.error:
        return True
    if snapshot.crashed_at is None:
        return False
    return snapshot.started_at is None or snapshot.crashed_at >= snapshot.started_at


def assess_health(snapshot: RunState, limits: HealthLimits, now: datetime | None = None) -> HealthVerdict:
    """Apply the health rule of the module docstring to one RunState snapshot."""
    now = now or datetime.now(UTC)
    reasons: list[str] = []
    crashed = _crashed(snapshot)
    if crashed:
        at = snapshot.crashed_at.isoformat() if snapshot.crashed_at else "unknown time"
        reasons.append(f"executor crashed at {at}")
    if snapshot.status in (RunStatus.stopped, RunStatus.complete):
        reasons.append(f"executor is {snapshot.status.value}")
    elif not snapshot.executor_running and not crashed and not (snapshot.status == RunStatus.starting
                                                                and snapshot.outage):
        reasons.append(f"loop is not running (status {snapshot.status.value})")
    if snapshot.safe_mode:
        reasons.append(f"safe mode: {snapshot.safe_mode_reason or 'the strategy is not called'}")
    reasons.extend(str(order.get("reason")) for order in snapshot.fills_missing)
    if snapshot.risk_paused:
        reasons.append(snapshot.risk_pause_reason or "risk limit hit: new entries are paused")
    overdue = next_cycle_overdue(snapshot, now)
    if not snapshot.paused and overdue > limits.grace_seconds:
        reasons.append(f"next cycle is {overdue:.0f} s overdue (grace {limits.grace_seconds:g} s)")
    outage = _outage_seconds(snapshot, now)
    if outage is not None and outage > limits.outage_grace_seconds:
        record = snapshot.outage or {}
        reasons.append(f"temporary failure for {outage:.0f} s (grace {limits.outage_grace_seconds:g} s): the "
                       f"{record.get('job')} job retried {record.get('retries')} time(s), last "
                       f"{record.get('error_class')}: {record.get('error')}")
    lag = snapshot.market_data_age(now)
    if limits.data_stale_seconds > 0 and lag is not None and lag > limits.data_stale_seconds:
        reasons.append(f"market data is {lag:.0f} s old (limit {limits.data_stale_seconds:g} s)")
    return HealthVerdict(healthy=not reasons, reasons=reasons, crashed=crashed, overdue_seconds=overdue)
