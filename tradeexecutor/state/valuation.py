"""Portfolio value over time, kept column by column because a backtest appends a row per bar."""

from __future__ import annotations

from dataclasses import dataclass, field

from dataclasses_json import dataclass_json


@dataclass_json
@dataclass(slots=True)
class ValuationSeries:
    """Equity, cash and exposure at each valuation, one list per column.

    Timestamps are epoch milliseconds (UTC) so that a million rows stay small in memory and in
    JSON; ``pandas.to_datetime(ms, unit="ms", utc=True)`` turns them back into times.
    """

    #: Valuation times, epoch milliseconds UTC, increasing.
    timestamp: list[int] = field(default_factory=list)
    #: Cash plus market value of open positions.
    equity: list[float] = field(default_factory=list)
    #: Cash alone.
    cash: list[float] = field(default_factory=list)
    #: Market value of open positions divided by equity (0 = flat, 1 = fully invested).
    exposure: list[float] = field(default_factory=list)

    def append(self, timestamp_ms: int, equity: float, cash: float, exposure: float) -> None:
        """Add one row; a second row for the same time replaces the first."""
        if self.timestamp and self.timestamp[-1] == timestamp_ms:
            self.equity[-1] = equity
            self.cash[-1] = cash
            self.exposure[-1] = exposure
            return
        self.timestamp.append(timestamp_ms)
        self.equity.append(equity)
        self.cash.append(cash)
        self.exposure.append(exposure)

    def extend(self, timestamps: list[int], equity: list[float], cash: list[float], exposure: list[float]) -> None:
        """Add many rows at once (the backtest's columns at the end of a run)."""
        self.timestamp.extend(timestamps)
        self.equity.extend(equity)
        self.cash.extend(cash)
        self.exposure.extend(exposure)

    def __len__(self) -> int:
        return len(self.timestamp)
