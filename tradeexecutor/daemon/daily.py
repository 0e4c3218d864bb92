"""DailySummary: once a UTC day, at the configured time, journal the day's equity, change, trades and positions.

Checked at every job boundary on the loop's thread (cycles, trigger checks and revaluations run
every few seconds to minutes), so the summary goes out at the first boundary after its time and
needs no job of its own. The figures come from RunState's portfolio figures, which the loop
replaces after every cycle; the change and the trade count are since the previous summary (or,
for the first one, since this process's first figures): a restart starts counting afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, time, timedelta

from tradeexecutor.engine.engine import EventSink
from tradeexecutor.runstate import RunState
from tradeexecutor.runstate.figures import PortfolioFigures

__all__ = ["DailySummary"]

logger = logging.getLogger("tradeexecutor.daemon")


class DailySummary:
    """Journals ``daily_summary`` once per UTC day at ``at``; call it after each job."""

    def __init__(self, at: time, runstate: RunState, journal: EventSink, now: Callable[[], datetime]) -> None:
        self.at = at
        self.runstate = runstate
        self.journal = journal
        self._now = now
        start = now()
        due = datetime.combine(start.date(), at, tzinfo=start.tzinfo)
        #: When the next summary is due.
        self.next_due = due if due > start else due + timedelta(days=1)
        self._baseline: tuple[datetime, PortfolioFigures] | None = None

    def __call__(self) -> None:
        """Journal the summary when it is due; remember the first figures as the baseline."""
        now = self._now()
        with self.runstate.lock:
            figures = self.runstate.portfolio  # frozen, replaced as a whole after each cycle
        if figures.updated_at is None:
            if now >= self.next_due:
                logger.info("no daily summary for %s: no portfolio figures yet", self.next_due.date())
                self._advance(now)
            return
        if self._baseline is None:
            self._baseline = (now, figures)
        if now < self.next_due:
            return
        since, base = self._baseline
        change = figures.portfolio_value - base.portfolio_value
        self.journal("daily_summary", date=self.next_due.date().isoformat(), equity=round(figures.portfolio_value, 2),
                     change=round(change, 2),
                     change_pct=round(100 * change / base.portfolio_value, 2) if base.portfolio_value else None,
                     trades=figures.orders_filled - base.orders_filled, open_positions=figures.open_positions,
                     since=since.isoformat(timespec="minutes"))
        self._baseline = (now, figures)
        self._advance(now)

    def _advance(self, now: datetime) -> None:
        """The next due time after ``now`` (a process asleep for days sends one summary, not a backlog)."""
        while self.next_due <= now:
            self.next_due += timedelta(days=1)
