"""RiskState: the running figures the risk limits are checked against, and the risk pause, kept with the state.

They are part of the state (the ledger's head row) so that a restart neither forgets a risk
pause nor restarts the peak, the day or the losing streak from scratch; each job updates them
in O(1) (``engine/risk.py``) and commits them with its other changes. Every field is a plain
JSON value (the day and the time of the hit as ISO text), so the codec stores it as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["RiskState"]


@dataclass(slots=True)
class RiskState:
    """Running peak, the day's starting equity, the losing streak, and the limit that paused entries (if any)."""

    #: Highest equity valued since the start (or since an operator lifted the last risk pause).
    peak_equity: float | None = None
    #: Equity of the last valuation seen: the next UTC day starts from it.
    last_equity: float | None = None
    #: The UTC date (ISO) of the last valuation seen.
    day: str | None = None
    #: Equity when the current UTC day began: the last valuation before the day's first one.
    day_start_equity: float | None = None
    #: Positions closed in a row with a negative realised P&L.
    losing_streak: int = 0
    #: Closed positions already counted into the streak (the next check reads only those after them).
    closed_counted: int = 0
    #: The limit whose hit paused new entries (``max_drawdown``, ...); None while not risk-paused.
    limit: str | None = None
    #: The figure that broke the limit (a fraction, or a count for the streak).
    value: float | None = None
    #: The limit's setting at the time.
    threshold: float | None = None
    #: When the limit was hit: the time of the bar whose valuation broke it (ISO, UTC).
    hit_at: str | None = None

    @property
    def paused(self) -> bool:
        """True while a hit limit keeps new entries paused (until an operator resumes)."""
        return self.limit is not None

    @property
    def reason(self) -> str | None:
        """One sentence saying which limit paused entries, by how much and what lifts it; None when not paused."""
        if self.limit is None:
            return None
        value, threshold = self.value or 0.0, self.threshold or 0.0
        if self.limit == "max_losing_streak":
            figures = f"{value:g} losing positions in a row (limit {threshold:g})"
        else:
            # Percentages as every command prints them (stats/formatting.py, which this layer may not import).
            figures = f"{value * 100:,.2f} % (limit {threshold * 100:,.2f} %)"
        return (f"risk limit {self.limit} hit at {self.hit_at}: {figures}; new entries are paused until an "
                f"operator resumes (POST /control/resume)")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> RiskState:
        """From ``to_dict``'s output; unknown keys are refused (TypeError), missing ones take their defaults."""
        if type(d) is not dict:
            raise TypeError(f"risk is a {type(d).__name__}, not a JSON object")
        known = {item.name for item in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TypeError(f"risk has unknown fields {sorted(unknown)}")
        return cls(**d)
