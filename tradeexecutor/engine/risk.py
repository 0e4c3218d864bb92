"""Risk limits: the arithmetic of drawdown, daily loss, losing streak and position value, in O(1) per check.

The daemon's loop calls :meth:`RiskLimits.observe` after each job that valued the portfolio
(with that valuation's time and equity), and the engine asks :func:`position_value_refusal`
before it plans an entry or increase. Definitions (docs/production.md#risk-limits):

- **drawdown** = ``(peak - equity) / peak``, where the peak is the highest equity valued since
  the start, or since an operator last lifted a risk pause;
- **daily loss** = ``(day start - equity) / day start``: the day is the UTC date of the
  valuation's bar time (the data's clock, which is the wall clock in live trading), and the day
  starts from the last equity valued before its first valuation — the previous day's close, so
  a gap down on the first bar of the day counts; on the very first day, from the first valuation;
- **losing streak** = positions closed in a row with a negative realised P&L (fees included);
  a position closed at zero or a gain ends the streak;
- **position value** = the position's quantity at its last price plus its entries still
  waiting to fill plus the new one's value.

A limit is hit when its figure *reaches* the setting (``>=``); 0 switches a limit off. Only the
first limit hit is recorded; while entries are risk-paused the figures keep running but nothing
is hit again. Lifting the pause re-bases the figures at the current equity (peak and day start
become it, the streak restarts), since otherwise the same breach would pause again at once: the
operator who resumes accepts the loss so far, and the limits count from there.

Each check reads the newest valuation and only the positions closed since the last check
(``RiskState.closed_counted``), so its cost never grows with the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tradeexecutor.config import RiskConfig
from tradeexecutor.state import Position, RiskState

__all__ = ["RiskHit", "RiskLimits", "daily_loss", "drawdown", "position_value_refusal", "utc_day"]


@dataclass(frozen=True)
class RiskHit:
    """A limit reached: which, by what figure, against what setting, at which bar time."""

    #: The setting's name: ``max_drawdown``, ``max_daily_loss`` or ``max_losing_streak``.
    limit: str
    #: The figure that reached it (a fraction, or a count of positions).
    value: float
    #: The setting.
    threshold: float
    #: The bar time of the valuation that broke it (ISO, UTC).
    at: str


def drawdown(peak: float, equity: float) -> float:
    """How far ``equity`` is below ``peak``, as a fraction of the peak (0 at or above it, or without a peak)."""
    return (peak - equity) / peak if peak > 0 and equity < peak else 0.0


def daily_loss(day_start: float, equity: float) -> float:
    """How far ``equity`` is below the day's starting equity, as a fraction of it (0 for a gain)."""
    return (day_start - equity) / day_start if day_start > 0 and equity < day_start else 0.0


def utc_day(timestamp_ms: int) -> str:
    """The UTC date (ISO) of an epoch-milliseconds time."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).date().isoformat()


def position_value_refusal(held: float, adding: float, limit: float) -> str | None:
    """Why an entry worth ``adding`` on a position now worth ``held`` is refused, or None (no limit, or within it)."""
    if limit <= 0 or held + adding <= limit:
        return None
    return (f"max_position_value: the position would be worth {held + adding:,.2f}, above the limit of "
            f"{limit:,.2f}")


class RiskLimits:
    """Applies a :class:`RiskConfig` to the :class:`RiskState` kept in the state (see the module docstring)."""

    def __init__(self, config: RiskConfig) -> None:
        self.config = config

    def observe(self, risk: RiskState, timestamp_ms: int, equity: float,
                closed: Sequence[Position]) -> RiskHit | None:
        """Fold in one valuation and the positions closed since the last call; the limit this hits, if any.

        ``closed`` is the portfolio's whole closed list: only its items from ``risk.closed_counted``
        on are read. A hit is recorded in ``risk`` (which pauses entries) and returned.
        """
        day = utc_day(timestamp_ms)
        if day != risk.day:
            risk.day_start_equity = risk.last_equity if risk.last_equity is not None else equity
            risk.day = day
        risk.last_equity = equity
        if risk.peak_equity is None or equity > risk.peak_equity:
            risk.peak_equity = equity
        for position in closed[risk.closed_counted:]:
            risk.losing_streak = risk.losing_streak + 1 if position.realised_pnl < 0 else 0
        risk.closed_counted = len(closed)
        if risk.paused:
            return None
        hit = self._first_hit(risk, equity, timestamp_ms)
        if hit is not None:
            risk.limit, risk.value, risk.threshold, risk.hit_at = hit.limit, hit.value, hit.threshold, hit.at
        return hit

    def _first_hit(self, risk: RiskState, equity: float, timestamp_ms: int) -> RiskHit | None:
        config = self.config
        figures = (
            ("max_drawdown", config.max_drawdown, drawdown(risk.peak_equity or 0.0, equity)),
            ("max_daily_loss", config.max_daily_loss, daily_loss(risk.day_start_equity or 0.0, equity)),
            ("max_losing_streak", float(config.max_losing_streak), float(risk.losing_streak)),
        )
        for limit, threshold, value in figures:
            if threshold > 0 and value >= threshold:
                at = datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat()
                return RiskHit(limit, value, threshold, at)
        return None

    @staticmethod
    def lift(risk: RiskState, equity: float | None) -> str | None:
        """An operator lifts the risk pause: the limit that was hit (None when none was), figures re-based."""
        limit = risk.limit
        if limit is None:
            return None
        risk.limit = risk.value = risk.threshold = risk.hit_at = None
        if equity is not None:
            risk.peak_equity = risk.day_start_equity = risk.last_equity = equity
        risk.losing_streak = 0
        return limit
