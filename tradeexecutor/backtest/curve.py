"""The per-bar equity curve of a backtest, built once at the end from the holdings recorded at fills.

Cash and quantities change only when something fills, while prices change every bar. So the
bar loop records ``(step, cash, quantity per instrument)`` only at steps where a fill happened
(a few per hundred bars) instead of valuing the portfolio in Python at every bar, and this
module forward-fills those holdings over the timeline and values them at each bar's last close
with numpy, a chunk of steps at a time, straight into the state's typed valuation columns. The result is the same row per bar the engine's ``valuation()`` gives: equity =
cash + Σ quantity × last close, exposure = positions' value / equity. With one instrument the
arithmetic is the same operations in the same order, so the curve is bit-identical; with
several, the positions' values are summed in instrument order (the engine sums them in the
order the positions opened), which may differ in the last bit.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

from tradeexecutor.data.market import MarketData
from tradeexecutor.state import ValuationSeries

__all__ = ["CHUNK", "Holdings", "append_curve"]


@dataclass
class Holdings:
    """Cash and each instrument's quantity after every step at which something filled.

    Typed columns (8 bytes a number) rather than lists of Python numbers: a 5M-bar run records
    about 190,000 steps, which as lists cost some 30 MB at the run's memory peak.
    """

    #: Cash before the first fill.
    initial_cash: float
    #: Instruments in engine slot order.
    symbols: tuple[str, ...]
    steps: array[int] = field(default_factory=lambda: array("q"))
    cash: array[float] = field(default_factory=lambda: array("d"))
    #: The quantity held of each instrument, ``len(symbols)`` numbers per recorded step, in ``symbols`` order.
    quantities: array[float] = field(default_factory=lambda: array("d"))

    def record(self, step: int, cash: float, quantities: list[float]) -> None:
        """What the portfolio holds after ``step`` (a later record for the same step replaces it)."""
        if self.steps and self.steps[-1] == step:
            self.cash[-1] = cash
            self.quantities[len(self.quantities) - len(quantities):] = array("d", quantities)
            return
        self.steps.append(step)
        self.cash.append(cash)
        self.quantities.extend(quantities)


#: Timeline steps valued at once: the temporaries stay at a few MB whatever the run's length (a 5M-bar curve
#: computed whole made about ten 40 MB arrays at the run's memory peak).
CHUNK = 1 << 16


def append_curve(holdings: Holdings, market: MarketData, valuations: ValuationSeries) -> None:
    """Append a row per timeline step of ``market`` to ``valuations``, computed CHUNK steps at a time.

    The rows are written in place into columns made at their final length (numpy views of the typed
    arrays), which become the series' columns when it is empty (a backtest's always is). Appending a
    chunk at a time instead grew each column 16 times, the array's growth copying what it held each
    time: 10 % of a 1M-bar signals() run, and twice the columns' memory at the moment of the copy.
    """
    rows = len(market)
    timestamps = array("q", [0]) * rows
    equity, cash, exposure = array("d", [0.0]) * rows, array("d", [0.0]) * rows, array("d", [0.0]) * rows
    if rows:  # numpy views of the arrays' own memory (frombuffer refuses an empty buffer)
        _value_rows(holdings, market, np.frombuffer(timestamps, dtype=np.int64), np.frombuffer(equity),
                    np.frombuffer(cash), np.frombuffer(exposure))
    if len(valuations):
        valuations.extend(timestamps, equity, cash, exposure)
    else:
        valuations.timestamp, valuations.equity, valuations.cash, valuations.exposure = timestamps, equity, cash, exposure


def _value_rows(holdings: Holdings, market: MarketData, timestamps: np.ndarray, equities: np.ndarray,
                cashes: np.ndarray, exposures: np.ndarray) -> None:
    """Write each step's time (ms), equity, cash and exposure into the given columns, CHUNK steps at a time."""
    chunk = CHUNK
    changes = np.asarray(holdings.steps, dtype=np.int64)  # the typed columns' own memory (buffer protocol)
    cash_rows = np.asarray(holdings.cash, dtype=np.float64)
    quantity_rows = np.asarray(holdings.quantities, dtype=np.float64).reshape(len(changes), len(holdings.symbols))
    # Instruments ever held: the others add nothing to any row.
    held_slots = [(slot, symbol) for slot, symbol in enumerate(holdings.symbols)
                  if len(changes) and quantity_rows[:, slot].any()]
    timeline = market.timeline_ns
    increasing = bool((changes[1:] > changes[:-1]).all())
    np.floor_divide(timeline, 1_000_000, out=timestamps)
    for start in range(0, len(market), chunk):
        stop = min(start + chunk, len(market))
        # For each step, the last record at or before it (-1: before the first fill): the records before the
        # chunk, plus a running count of those inside it (the recorded steps are increasing and distinct) —
        # linear, where a binary search per step cost 1 % of a 1M-bar run.
        if increasing:
            first, after = np.searchsorted(changes, (start, stop))
            which = np.zeros(stop - start, dtype=np.int64)
            which[changes[first:after] - start] = 1
            np.cumsum(which, out=which)
            which += first - 1
        else:  # steps recorded out of order or twice (not by Holdings.record): a search per step
            which = np.searchsorted(changes, np.arange(start, stop, dtype=np.int64), side="right") - 1
        before = which < 0
        row = np.maximum(which, 0)
        cash = np.where(before, holdings.initial_cash, cash_rows[row] if len(changes) else 0.0)
        value = np.zeros(stop - start, dtype=np.float64)
        for slot, symbol in held_slots:
            held = np.where(before, 0.0, quantity_rows[row, slot])
            last = market.last_closed[symbol][start:stop]
            closes = market.bars[symbol].close[np.maximum(last, 0)]
            # A position is only ever held after a bar of its symbol closed, so ``last`` >= 0 where held != 0.
            value = value + np.where(held != 0.0, held * closes, 0.0)
        equity = np.add(cash, value, out=equities[start:stop])
        cashes[start:stop] = cash
        with np.errstate(divide="ignore", invalid="ignore"):
            exposures[start:stop] = np.where(equity != 0.0, value / equity, 0.0)
