"""RiskGuard: the risk limits inside the loop's jobs — check after each valuation, act on a hit, lift on resume.

The arithmetic is ``engine/risk.py``'s; this module is what the loop does with it. Its methods
run on the loop's thread inside a job, before the job's commit, so the running figures, the
pause and the journal lines commit with the job's other changes (and a restart finds them in
the ledger). On a hit it journals ``risk_limit_hit``, cancels entries still waiting to fill and,
with ``--risk-close-positions``, sells every position through the engine's trigger exit — and, while
paused, at every later check any position that holds something again (live: an entry the exchange
filled before its cancel reached it); the loop then pauses entries (``ExecutorLoop._apply_pause``
reads ``state.risk``).
"""

from __future__ import annotations

import dataclasses
import logging

from tradeexecutor.engine.engine import Engine, EventSink
from tradeexecutor.engine.risk import RiskLimits, daily_loss, drawdown
from tradeexecutor.runstate import RunState
from tradeexecutor.state import RiskState, TriggerKind

__all__ = ["RiskGuard"]

logger = logging.getLogger("tradeexecutor.daemon")


class RiskGuard:
    """Applies :class:`RiskLimits` to the engine's state after each valuation (see the module docstring)."""

    def __init__(self, limits: RiskLimits, engine: Engine, runstate: RunState, journal: EventSink) -> None:
        self.limits = limits
        self.engine = engine
        self.state = engine.state
        self.runstate = runstate
        self.journal = journal

    def check(self, step: int) -> bool:
        """Fold the newest valuation and the positions closed since the last check in; True when a limit was hit.

        A hit is observed on a copy of the figures and recorded (the pause, its ``risk_limit_hit`` line) only once
        its cancels and exits exist: they commit as they are made (live: a cancel request before the exchange sees
        it, an exit before it is sent), and a commit that already said "paused" with no exit made would, after a
        kill -9, leave the positions unsold for good (a paused guard sees no hit again). Live, an entry's cancel
        the exchange has not confirmed is a TemporaryError: nothing is recorded, the retried job sees the hit again
        and journals it once, when it is done.
        """
        state = self.state
        valuations, risk = state.valuations, state.risk
        if not valuations.timestamp:
            return False
        if risk.paused and self.limits.config.risk_close_positions:
            self._sell_what_filled_since(step)
        observed = dataclasses.replace(risk)
        hit = self.limits.observe(observed, valuations.timestamp[-1], valuations.equity[-1],
                                  state.portfolio.closed_positions)
        if hit is None:
            _take(risk, observed)
            self.publish()
            return False
        close = self.limits.config.risk_close_positions
        equity = valuations.equity[-1]
        self.engine.cancel_entries(step, f"cancelled: risk limit {hit.limit} hit")
        if close and self.engine.exit_all(step, TriggerKind.risk_limit.value):
            self.engine.mark_to_market(step)
            self.engine.record_valuation(step)
        _take(risk, observed)
        logger.warning("%s", risk.reason)
        self.journal("risk_limit_hit", limit=hit.limit, value=round(hit.value, 6), threshold=hit.threshold,
                     bar_time=hit.at, equity=round(equity, 2),
                     action="entries paused, positions closed" if close else "entries paused")
        return True

    def _sell_what_filled_since(self, step: int) -> None:
        """Paused with --risk-close-positions: sell every position that holds something again — live, an entry the
        exchange filled after the pause was recorded (before its cancel reached it, or while the cancel was
        unconfirmed: the pause does not wait for it). Through the same trigger exit as the hit's (``exit_all``:
        its resting orders ended first, none with an exit in flight); nothing new is ever bought."""
        if any(p.quantity > 0 for p in self.state.portfolio.open_positions) and self.engine.exit_all(
                step, TriggerKind.risk_limit.value):
            self.engine.mark_to_market(step)
            self.engine.record_valuation(step)

    def lift(self, by: str) -> bool:
        """An operator resumed: lift the risk pause, re-basing the figures at the current equity; False when
        there was none. The caller saves the state."""
        state = self.state
        equity = self.engine.valuation()[0] if state.valuations.timestamp else None
        limit = RiskLimits.lift(state.risk, equity)
        if limit is None:
            return False
        self.journal("risk_pause_lifted", limit=limit, by=by, equity=None if equity is None else round(equity, 2))
        return True

    def publish(self) -> None:
        """The pause and the running figures in RunState (/status, /healthz, /metrics): O(1), only when changed."""
        risk = self.state.risk
        peak, start, equity = risk.peak_equity or 0.0, risk.day_start_equity or 0.0, risk.last_equity or 0.0
        figures = {"drawdown": round(drawdown(peak, equity), 6), "daily_loss": round(daily_loss(start, equity), 6),
                   "losing_streak": risk.losing_streak, "peak_equity": risk.peak_equity, "day": risk.day,
                   "day_start_equity": risk.day_start_equity}
        snapshot = self.runstate  # the loop's thread is its writer: reading the live fields is safe here
        if (figures, risk.paused, risk.reason) != (snapshot.risk, snapshot.risk_paused, snapshot.risk_pause_reason):
            self.runstate.update(risk=figures, risk_paused=risk.paused, risk_pause_reason=risk.reason)


def _take(risk: RiskState, observed: RiskState) -> None:
    """Make ``risk`` (the state's own object, which others hold) what ``observed`` says."""
    for name in (f.name for f in dataclasses.fields(risk)):
        setattr(risk, name, getattr(observed, name))
