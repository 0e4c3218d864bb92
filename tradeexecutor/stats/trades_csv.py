"""The trades/orders CSV written row by row, with the rows of finished positions kept between writes.

A running executor publishes ``orders.csv`` again and again; building a pandas frame of every
order each time made that cost grow with the run's history (about 100 ms a publication at
10,000 cycles). :class:`TradesCsv` formats each order's line once its position is closed or
failed (such orders never change again) and only the open positions' orders afresh, so a
publication formats what changed and joins bytes for the rest.

The bytes are exactly those of ``trades_frame(state).to_csv(index=False, lineterminator="\\n")``
with the times as ISO text (``tests/test_trades_csv.py`` compares them on random states): floats
as Python's shortest ``repr`` (the text numpy's ``astype(str)`` gives), missing values as empty
cells, quoting by the ``csv`` module's minimal rule, as pandas does.

>>> writer = TradesCsv()  # doctest: +SKIP
>>> writer(state, "public/orders.csv")  # after each change  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from tradeexecutor.atomic import atomic_write_bytes
from tradeexecutor.kept_rows import Appended, KeptRows
from tradeexecutor.spill import Piece, Spill, joined, unless_damaged
from tradeexecutor.state import Order, Position, State
from tradeexecutor.stats.summary import TRADE_COLUMNS, instrument_labels, trade_record

__all__ = ["TradesCsv", "trades_csv_bytes"]

#: Columns whose values pandas writes as float64 (NaN, hence None, as an empty cell).
_FLOATS = frozenset({"planned_quantity", "executed_quantity", "executed_price", "value", "fee", "slippage",
                     "realised_pnl", "trigger_price"})
#: Columns written as datetimes (ISO text, empty without one).
_TIMES = frozenset({"planned_at", "executed_at"})


def _cell(column: str, value: Any) -> str:
    """One value as the text pandas writes for its column."""
    if value is None:
        return ""
    if column in _FLOATS:
        number = float(value)
        return "" if math.isnan(number) else repr(number)
    if column in _TIMES:
        return str(value.isoformat())
    return str(value)


class _Rows:
    """Formats order lines with the csv module's minimal quoting, as pandas does."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)

    def line(self, cells: list[str]) -> bytes:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.writerow(cells)
        return buffer.getvalue().encode("utf-8")

    def order(self, order: Order, symbols: dict[int, tuple[str, str]]) -> bytes:
        record = trade_record(order, symbols)
        return self.line([_cell(column, record[column]) for column in TRADE_COLUMNS])


class TradesCsv:
    """Writes a state's trades CSV, formatting only orders that may have changed since the last write.

    Lines of closed and failed positions are kept (positions are appended to those lists and
    never change once there); the lists are followed by identity, length and last item, and the
    kept lines start over when one is replaced or cut (a reloaded state) or a symbol or quote currency changes.
    One writer per state owner. With a ``spill`` (a running executor's) the kept lines live in its
    file, not in memory (:mod:`tradeexecutor.spill`), and the pieces name ranges of it.
    """

    def __init__(self, spill: Spill | None = None) -> None:
        self._rows = _Rows()
        self._header = self._rows.line(list(TRADE_COLUMNS))
        self._spill = spill
        self._kept = KeptRows(spill)
        self._finished: tuple[Appended[Position], Appended[Position]] = (Appended(), Appended())
        self._symbols: dict[int, tuple[str, str]] = {}

    def __call__(self, state: State, path: str | os.PathLike[str]) -> Path:
        """Write the CSV of ``state`` to ``path`` atomically; returns the path (the OrdersCsvWriter shape)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, self.data(state))
        return target

    def data(self, state: State) -> bytes:
        """The CSV bytes of ``state``."""
        return joined(self.parts(state))

    def parts(self, state: State) -> list[Piece]:
        """The CSV bytes of ``state`` as pieces (kept chunks are the same objects from call to call); a damaged
        spill is given up and the lines encoded afresh, in memory (:func:`~tradeexecutor.spill.unless_damaged`)."""
        return unless_damaged(self._spill, lambda: self._parts(state), self._forget_spill)

    def _forget_spill(self) -> None:
        self._spill = None
        self._finished = (Appended(), Appended())  # start over

    def _parts(self, state: State) -> list[Piece]:
        symbols = instrument_labels(state)
        portfolio = state.portfolio
        changes = [follower.appended(positions) for follower, positions in
                   zip(self._finished, (portfolio.closed_positions, portfolio.failed_positions), strict=True)]
        if symbols != self._symbols or not all(followed for followed, _ in changes):
            self._symbols, self._kept = symbols, KeptRows(self._spill)
            changes = [(False, positions) for positions in (portfolio.closed_positions, portfolio.failed_positions)]
        for _, positions in changes:
            for position in positions:
                for order in position.orders:
                    self._kept.add(order.id, self._rows.order(order, symbols))
        live = sorted((order.id, self._rows.order(order, symbols))
                      for position in portfolio.open_positions for order in position.orders)
        return [self._header, *self._kept.parts(live)]


def trades_csv_bytes(state: State) -> bytes:
    """The trades CSV of ``state`` in one go (a fresh :class:`TradesCsv`)."""
    return TradesCsv().data(state)
