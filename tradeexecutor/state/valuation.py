"""Portfolio value over time, kept column by column because a backtest appends a row per bar."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dataclasses_json import config, dataclass_json

if TYPE_CHECKING:
    FloatColumn = array[float]
    IntColumn = array[int]
else:  # array is not subscriptable at run time before Python 3.12, and dataclasses-json evaluates the hints
    FloatColumn = IntColumn = array


def _floats(values: Iterable[float] = ()) -> FloatColumn:
    """A typed column of doubles (8 bytes a row; a list of Python floats costs 32)."""
    return array("d", values)


def _ints(values: Iterable[int] = ()) -> IntColumn:
    """A typed column of 64-bit integers (epoch milliseconds)."""
    return array("q", values)


def _column(kind: str) -> Any:
    """A typed column field that dataclasses-json writes as a JSON list and reads back as an array."""
    make = _ints if kind == "q" else _floats
    return field(default_factory=make, metadata=config(encoder=list, decoder=make))


@dataclass_json
@dataclass(slots=True)
class ValuationSeries:
    """Equity, cash and exposure at each valuation, one typed array per column.

    The columns are ``array.array`` ('q' for timestamps, 'd' for the rest), not lists: a 5M-bar
    backtest keeps a row per bar, and four lists of Python numbers cost about 680 MB where the
    arrays cost 160 MB. They index, slice, append and iterate like lists (items are Python ints
    and floats), refuse anything but numbers, and numpy reads them without a copy (``np.asarray``
    through the buffer protocol). JSON (dataclasses-json, store/codec.py) writes them as lists.

    Timestamps are epoch milliseconds (UTC) so that a million rows stay small in memory and in
    JSON; ``pandas.to_datetime(ms, unit="ms", utc=True)`` turns them back into times.
    """

    #: Valuation times, epoch milliseconds UTC, increasing.
    timestamp: IntColumn = _column("q")
    #: Cash plus market value of open positions.
    equity: FloatColumn = _column("d")
    #: Cash alone.
    cash: FloatColumn = _column("d")
    #: Market value of open positions divided by equity (0 = flat, 1 = fully invested).
    exposure: FloatColumn = _column("d")

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

    def extend(self, timestamps: Any, equity: Any, cash: Any, exposure: Any) -> None:
        """Add many rows at once (the backtest's columns at the end of a run).

        Each argument is an iterable of numbers or a buffer of the column's type (a contiguous
        numpy array of int64 or float64), which is copied in without a Python object per row.
        """
        for column, values in ((self.timestamp, timestamps), (self.equity, equity), (self.cash, cash),
                               (self.exposure, exposure)):
            if isinstance(values, (list, tuple, array)):
                column.extend(values)
            else:
                view = memoryview(values)
                if view.itemsize != column.itemsize or view.format not in (("q", "l") if column.typecode == "q" else ("d",)):
                    raise TypeError(f"a {view.format!r} buffer cannot extend a {column.typecode!r} column")
                column.frombytes(view.cast("B"))

    def __len__(self) -> int:
        return len(self.timestamp)
