"""The per-bar equity curve of a backtest, built once at the end from the holdings recorded at fills.

Cash and quantities change only when something fills, while prices change every bar. So the
bar loop records ``(step, cash, quantity per instrument)`` only at steps where a fill happened
(a few per hundred bars) instead of valuing the portfolio in Python at every bar, and this
module forward-fills those holdings over the timeline and values them at each bar's last close
with numpy. The result is the same row per bar the engine's ``valuation()`` gives: equity =
cash + Σ quantity × last close, exposure = positions' value / equity. With one instrument the
arithmetic is the same operations in the same order, so the curve is bit-identical; with
several, the positions' values are summed in instrument order (the engine sums them in the
order the positions opened), which may differ in the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tradeexecutor.data.market import MarketData

__all__ = ["Holdings", "equity_curve"]


@dataclass
class Holdings:
    """Cash and each instrument's quantity after every step at which something filled."""

    #: Cash before the first fill.
    initial_cash: float
    #: Instruments in engine slot order.
    symbols: tuple[str, ...]
    steps: list[int] = field(default_factory=list)
    cash: list[float] = field(default_factory=list)
    #: One row per recorded step: the quantity held of each instrument, in ``symbols`` order.
    quantities: list[list[float]] = field(default_factory=list)

    def record(self, step: int, cash: float, quantities: list[float]) -> None:
        """What the portfolio holds after ``step`` (a later record for the same step replaces it)."""
        if self.steps and self.steps[-1] == step:
            self.cash[-1] = cash
            self.quantities[-1] = quantities
            return
        self.steps.append(step)
        self.cash.append(cash)
        self.quantities.append(quantities)


def equity_curve(holdings: Holdings, market: MarketData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equity, cash and exposure at every timeline step of ``market``."""
    count = len(market)
    changes = np.asarray(holdings.steps, dtype=np.int64)
    # For each step, the last record at or before it (-1: before the first fill).
    which = np.searchsorted(changes, np.arange(count, dtype=np.int64), side="right") - 1
    before = which < 0
    cash_rows = np.asarray(holdings.cash, dtype=np.float64)
    cash = np.where(before, holdings.initial_cash, cash_rows[np.maximum(which, 0)] if len(changes) else 0.0)
    value = np.zeros(count, dtype=np.float64)
    if len(changes):
        quantity_rows = np.asarray(holdings.quantities, dtype=np.float64).reshape(len(changes), -1)
        for slot, symbol in enumerate(holdings.symbols):
            held = np.where(before, 0.0, quantity_rows[np.maximum(which, 0), slot])
            if not held.any():
                continue
            last = market.last_closed[symbol]
            closes = market.bars[symbol].close[np.maximum(last, 0)]
            # A position is only ever held after a bar of its symbol closed, so ``last`` >= 0 where held != 0.
            value = value + np.where(held != 0.0, held * closes, 0.0)
    equity = cash + value
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.where(equity != 0.0, value / equity, 0.0)
    return equity, cash, exposure
