"""The data a chart draws, as plain arrays: extracted from a State at once, or sent to the renderer as deltas.

A :class:`ChartSeries` is everything ``charts.py`` draws: the equity curve, the executed fills
per instrument and the close prices per symbol. Built from a State with
:meth:`ChartSeries.from_state` (reports, backtests), it can also be kept up to date in another
process: the loop's :class:`DeltaFeed` cuts a :class:`ChartDelta` of what changed since the
last one, and the renderer's :class:`SeriesBuilder` applies it. A delta costs what changed (new
valuation rows, new bars, new fills; the orders of open positions are looked at each time),
never the whole history, so the loop's share of a chart stays constant however long it runs::

    feed = DeltaFeed({"GOOG": (times_ms, closes)})        # the loop, once
    delta = feed.delta(state, {"GOOG": newest_bar})       # the loop, when charts are due
    builder.apply(delta); render_series(builder.series())  # the renderer process

Applying every delta in turn gives exactly ``ChartSeries.from_state`` of the same state and
prices (up to the order of fills within an instrument).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeexecutor.state import Order, Portfolio, Position, State, valuation
from tradeexecutor.state.growth import ListTail

if TYPE_CHECKING:  # imported where used: the renderer process never needs pandas
    import pandas as pd

__all__ = ["ChartDelta", "ChartSeries", "DeltaFeed", "Fill", "Fills", "SeriesBuilder", "price_columns"]

#: One executed fill: fill id, instrument id, symbol, time (epoch ms), price, is a buy.
Fill = tuple[int, int, str, int, float, bool]
#: A symbol's close prices: times (epoch ms, int64) and closes (float64), oldest first.
Prices = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Fills:
    """One instrument's executed fills, as arrays."""

    symbol: str
    #: Fill times, epoch milliseconds.
    times: np.ndarray
    prices: np.ndarray
    #: True for a buy.
    buys: np.ndarray

    @classmethod
    def of(cls, symbol: str, rows: list[tuple[int, float, bool]]) -> Fills:
        """From ``(time ms, price, is buy)`` rows."""
        return cls(symbol, np.array([r[0] for r in rows], dtype=np.int64),
                   np.array([r[1] for r in rows], dtype=np.float64), np.array([r[2] for r in rows], dtype=bool))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times, prices and is-buy."""
        return self.times, self.prices, self.buys


@dataclass(frozen=True)
class ChartSeries:
    """Everything the charts draw."""

    #: The strategy's name, or "".
    title: str
    #: Valuation times (epoch ms, int64) and equity (float64).
    stamps: np.ndarray
    equity: np.ndarray
    #: Executed fills by instrument id.
    fills: dict[int, Fills]
    #: Close prices by symbol.
    prices: dict[str, Prices]

    @classmethod
    def from_state(cls, state: State, prices: Mapping[str, pd.Series]) -> ChartSeries:
        """The whole series of ``state``; ``prices`` maps symbol to closes indexed by time (naive = UTC)."""
        symbols = _symbols(state)
        rows: dict[int, list[tuple[int, float, bool]]] = {}
        for order in state.portfolio.all_orders():
            for fill in _fills(order, symbols):
                rows.setdefault(fill[1], []).append(fill[3:])
        return cls(
            title=state.name or "",
            stamps=np.asarray(state.valuations.timestamp, dtype=np.int64),
            equity=np.asarray(state.valuations.equity, dtype=np.float64),
            fills={iid: Fills.of(symbols.get(iid, f"#{iid}"), found) for iid, found in rows.items()},
            prices=price_columns(prices),
        )


@dataclass(frozen=True)
class ChartDelta:
    """What changed since the previous delta; the first delta (or one after ``DeltaFeed.reset``) holds everything."""

    title: str
    #: The valuation rows below replace the receiver's rows from this index on (the newest row may
    #: have been rewritten in place, so it is sent again).
    rows_from: int
    stamps: np.ndarray
    equity: np.ndarray
    #: Fills executed since the previous delta.
    fills: tuple[Fill, ...]
    #: New closes per symbol: (index of the first one, times, closes).
    prices: dict[str, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Rows, fills and bars carried: what the loop paid to cut it."""
        return len(self.stamps) + len(self.fills) + sum(len(times) for _, times, _ in self.prices.values())


class DeltaFeed:
    """Cuts ChartDeltas from a live State and the full price columns; belongs to the loop thread.

    Not ``cast.feed.ChartFeed``, which keeps a downsampled copy of equity and closes for a
    wallboard: this one sends every row, bar and fill once, for a renderer that draws them.
    """

    def __init__(self, prices: Mapping[str, Prices]) -> None:
        #: Every symbol's whole price columns (the replay's data); only bars up to the newest visible one are sent.
        self.prices = dict(prices)
        #: Rows taken ahead for a first delta (:meth:`take`): the series, its stamps and equity (room for
        #: ``ROWS_BLOCK`` more rows), and how many are filled.
        self._early: tuple[object, np.ndarray, np.ndarray, int] | None = None
        self.reset()

    def take(self, state: State, upto: int) -> None:
        """Take the valuation rows before ``upto`` now, for the first delta (the one that holds every row).

        The start-up's pass over a long history (``daemon/publish.py``) hands them a block at a time,
        beside the other readers of the same block, so the ledger is read once; the first delta is cut
        from these arrays (kept until it, whatever :meth:`reset` says: rows once committed never change).
        """
        valuations = state.valuations
        early = self._early
        if early is None or early[0] is not valuations:
            size = len(valuations) + valuation.ROWS_BLOCK  # rows appended before the first delta fit
            early = (valuations, np.empty(size, dtype=np.int64), np.empty(size, dtype=np.float64), 0)
        series, stamps, equity, filled = early
        upto = min(upto, len(valuations) - 1, len(stamps))  # never the newest row: it may still change
        for first, (some_stamps, some_equity) in valuations.blocks(filled, upto, ("timestamp", "equity")):
            stamps[first:first + len(some_stamps)] = np.frombuffer(some_stamps, dtype=np.int64)
            equity[first:first + len(some_equity)] = np.frombuffer(some_equity, dtype=np.float64)
        self._early = (series, stamps, equity, max(filled, upto))

    @property
    def taken_ahead(self) -> int:
        """Rows taken ahead (:meth:`take`) and held for the first delta: 0 when none."""
        return self._early[3] if self._early is not None else 0

    def drop_outgrown(self, state: State) -> None:
        """Forget the rows taken ahead once the series has outgrown their room (no first delta came in time: a
        renderer that does not start), so they are not held for good; the first delta then reads them again."""
        if self._early is not None and (self._early[0] is not state.valuations
                                        or len(state.valuations) > len(self._early[1])):
            self._early = None

    def reset(self) -> None:
        """Forget what was sent: the next delta holds everything (for a renderer that lost its copy)."""
        self._rows = 0
        self._bars = dict.fromkeys(self.prices, 0)
        #: Bars dropped from the front of each symbol's columns since the renderer's copy began (a live feed's
        #: window): the renderer's index of column index ``i`` is ``i + _shift[symbol]``.
        self._shift = dict.fromkeys(self.prices, 0)
        self._sent_open: set[int] = set()  # ids of fills sent while their position was open
        self._closed: ListTail[Position] = ListTail()
        self._failed: ListTail[Position] = ListTail()

    def delta(self, state: State, newest: Mapping[str, int]) -> ChartDelta:
        """What changed since the last delta; ``newest[symbol]`` is the index of its newest visible bar (-1: none)."""
        valuations = state.valuations
        count = len(valuations)
        start = 0 if count < self._rows else max(0, self._rows - 1)
        early, self._early = self._early, None
        if start == 0 and early is not None and early[0] is valuations and count <= len(early[1]):
            _series, stamps, equity, taken = early  # the rows taken ahead, the rest after them
            stamps, equity = stamps[:count], equity[:count]
        else:
            stamps, equity = np.empty(count - start, dtype=np.int64), np.empty(count - start, dtype=np.float64)
            taken = start
        for first, (some_stamps, some_equity) in valuations.blocks(taken, count, ("timestamp", "equity")):
            # a block at a time into the delta's own arrays: the first delta's rows are held once, never twice
            stamps[first - start:first - start + len(some_stamps)] = np.frombuffer(some_stamps, dtype=np.int64)
            equity[first - start:first - start + len(some_equity)] = np.frombuffer(some_equity, dtype=np.float64)
        self._rows = count
        prices: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        for symbol, (times, closes) in self.prices.items():
            first, end = self._bars[symbol], newest.get(symbol, -1) + 1
            if end > first:
                prices[symbol] = (first + self._shift[symbol], times[first:end], closes[first:end])
                self._bars[symbol] = end
        return ChartDelta(state.name or "", start, stamps, equity, self._new_fills(state), prices)

    def drop_bars(self, symbol: str, count: int) -> None:
        """``count`` bars were dropped from the front of ``symbol``'s columns (a live feed's window moved).

        Bars sent keep their place in the renderer's copy; bars dropped before they were sent would
        leave a gap there, so then everything is sent again (``reset``).
        """
        if count > self._bars[symbol]:
            self.reset()
            return
        self._bars[symbol] -= count
        self._shift[symbol] += count

    def _new_fills(self, state: State) -> tuple[Fill, ...]:
        """Fills not sent yet: open positions are looked at whole, closed and failed ones once, when they move there."""
        portfolio: Portfolio = state.portfolio
        symbols = _symbols(state)
        found: list[Fill] = []
        for position in portfolio.open_positions:
            for order in position.orders:
                for fill in _fills(order, symbols):
                    if fill[0] not in self._sent_open:
                        self._sent_open.add(fill[0])
                        found.append(fill)
        for positions, tail in ((portfolio.closed_positions, self._closed), (portfolio.failed_positions, self._failed)):
            for position in tail.new_items(positions):
                for order in position.orders:
                    for fill in _fills(order, symbols):
                        if fill[0] in self._sent_open:
                            self._sent_open.discard(fill[0])  # sent while open; never looked at again
                            continue
                        found.append(fill)
        return tuple(found)


class SeriesBuilder:
    """The renderer's copy of a ChartSeries, kept up to date from deltas at a cost that grows with the delta.

    What it keeps is the data's own size: 16 bytes a valuation row and a bar (an epoch-ms stamp and
    a float; the columns grow by doubling, so up to twice that is reserved: 21 bytes measured at
    100k), and about 100 bytes a fill (17 in its columns, the rest its id in the set that keeps a
    fill from being taken twice; as tuples in lists it was 207). ``bench/bench_renderer.py``.
    """

    def __init__(self) -> None:
        self.title = ""
        self._stamps = _Column(np.int64)
        self._equity = _Column(np.float64)
        #: Fills by instrument: symbol and columns of times, prices and is-buy (17 bytes a fill).
        self._fills: dict[int, tuple[str, _Column, _Column, _Column]] = {}
        self._fill_ids: set[int] = set()
        self._prices: dict[str, tuple[_Column, _Column]] = {}

    def apply(self, delta: ChartDelta) -> None:
        """Take in one delta."""
        self.title = delta.title
        self._stamps.put(delta.rows_from, delta.stamps)
        self._equity.put(delta.rows_from, delta.equity)
        new: dict[int, tuple[str, list[tuple[int, float, bool]]]] = {}
        for fill_id, instrument_id, symbol, at, price, buy in delta.fills:
            if fill_id not in self._fill_ids:
                self._fill_ids.add(fill_id)
                new.setdefault(instrument_id, (symbol, []))[1].append((at, price, buy))
        for instrument_id, (symbol, rows) in new.items():
            kept = self._fills.setdefault(
                instrument_id, (symbol, _Column(np.int64), _Column(np.float64), _Column(np.bool_)))
            for column, values in zip(kept[1:], Fills.of(symbol, rows).columns(), strict=True):
                column.append(values)
        for symbol, (first, times, closes) in delta.prices.items():
            columns = self._prices.setdefault(symbol, (_Column(np.int64), _Column(np.float64)))
            columns[0].put(first, times)
            columns[1].put(first, closes)

    def series(self) -> ChartSeries:
        """The series as it stands (arrays are views: do not keep them past the next ``apply``)."""
        return ChartSeries(
            title=self.title,
            stamps=self._stamps.view(),
            equity=self._equity.view(),
            fills={iid: Fills(symbol, times.view(), prices.view(), buys.view())
                   for iid, (symbol, times, prices, buys) in self._fills.items()},
            prices={symbol: (times.view(), closes.view()) for symbol, (times, closes) in self._prices.items()},
        )


class _Column:
    """A numpy column that grows by doubling, so appending n values costs O(n) amortised."""

    def __init__(self, dtype: Any) -> None:
        self._data = np.empty(1024, dtype=dtype)
        self._length = 0

    def put(self, start: int, values: np.ndarray) -> None:
        """Replace everything from ``start`` on by ``values``."""
        end = start + len(values)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._length] = self._data[: self._length]
            self._data = grown
        self._data[start:end] = values
        self._length = end

    def append(self, values: np.ndarray) -> None:
        """Add ``values`` at the end."""
        self.put(self._length, values)

    def view(self) -> np.ndarray:
        return self._data[: self._length]


def price_columns(prices: Mapping[str, pd.Series]) -> dict[str, Prices]:
    """Close-price Series (DatetimeIndex, naive = UTC) as (times ms, closes) arrays."""
    import pandas as pd

    columns: dict[str, Prices] = {}
    for symbol, series in prices.items():
        times = pd.DatetimeIndex(series.index).as_unit("ms").asi8.astype(np.int64, copy=False)
        columns[symbol] = (times, series.to_numpy(dtype=np.float64, na_value=np.nan))
    return columns


def _symbols(state: State) -> dict[int, str]:
    return {instrument.id: instrument.symbol for instrument in state.instruments}


def _fills(order: Order, symbols: Mapping[int, str]) -> list[Fill]:
    """The fills of an order, as chart rows."""
    iid = order.instrument_id
    symbol = symbols.get(iid, f"#{iid}")
    buy = order.is_buy
    return [(f.id, iid, symbol, _ms(f.at), float(f.price), buy) for f in order.fills]


def _ms(value: datetime) -> int:
    """A datetime as epoch milliseconds; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)
