"""Portfolio value over time, kept column by column because a backtest appends a row per bar.

A backtest keeps every row in memory (plain typed arrays). A running executor appends a row a cycle
for months, and every row is in its ledger once committed, so it keeps only a tail: each column is
a :class:`TailColumn`, the newest rows in memory and the older ones read back from the ledger when
asked for (start-up, a follower that fell far behind). Readers index it by absolute row, as they
index an array, and see the same rows.
"""

from __future__ import annotations

import operator
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, SupportsIndex

from dataclasses_json import config, dataclass_json

if TYPE_CHECKING:
    from typing import TypeAlias

    FloatColumn: TypeAlias = "array[float] | TailColumn"
    IntColumn: TypeAlias = "array[int] | TailColumn"
else:  # array is not subscriptable at run time before Python 3.12, and dataclasses-json evaluates the hints
    FloatColumn = IntColumn = array

__all__ = ["ROWS_BLOCK", "TAIL_ROWS", "FixedRows", "Older", "TailColumn", "ValuationSeries"]

#: Rows of a column that make a block: state.json's column cache encodes (and spills) them together
#: (store/codec.py), and a running executor's tail drops them from memory together.
ROWS_BLOCK = 1024

#: Rows ``[start, stop)`` of the column named (``timestamp``, ``equity``, ``cash``, ``exposure``) as
#: committed to the ledger, checked (a damaged row raises, naming the file).
Older = Callable[[str, int, int], "array[Any]"]


#: Rows a tail's column has room for from the start: the at most two blocks :meth:`ValuationSeries.release` keeps,
#: and a quarter block more for a job's rows not committed yet (a job commits its rows when it ends: one a cycle).
TAIL_ROWS = 2 * ROWS_BLOCK + ROWS_BLOCK // 4


class FixedRows:
    """A tail column's rows in memory: one typed array of fixed capacity, allocated and written when made.

    A plain ``array`` grows by ``realloc`` as rows are appended and shrinks by it when the front rows are
    dropped (CPython gives memory back when an array loses more than a few rows), so a running executor's
    four columns moved about the heap for the first 2,048 cycles and again at each release, leaving holes
    behind (docs/benchmarks.md, "The first pack's step"). Here the buffer is made at its full room at once;
    appends write into it, dropping the front moves the kept rows down in place (``memmove``). More rows than
    the room (a job that appended a quarter block without committing) double it, once; it never shrinks.
    Answers what :class:`TailColumn` asks of its rows: ``len``, an index, a slice (a new ``array``), assigning
    one row, ``append``, ``extend``, ``frombytes``, :meth:`drop_front`.
    """

    __slots__ = ("_buffer", "_count")

    def __init__(self, rows: array[Any], capacity: int = TAIL_ROWS) -> None:
        count = len(rows)
        #: The room: ``capacity`` rows or more, zeros written through (resident from now on), the rows at its front.
        self._buffer = array(rows.typecode, bytes(max(capacity, count) * rows.itemsize))
        self._buffer[:count] = rows
        self._count = count

    @property
    def typecode(self) -> str:
        """The array type code of the rows."""
        return self._buffer.typecode

    @property
    def itemsize(self) -> int:
        """Bytes a row."""
        return self._buffer.itemsize

    @property
    def capacity(self) -> int:
        """Rows the buffer has room for."""
        return len(self._buffer)

    def address(self) -> int:
        """Where the buffer is in memory: the same for as long as it was never made bigger."""
        address: int = self._buffer.buffer_info()[0]
        return address

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        if isinstance(key, slice):
            return self._buffer[:self._count][key] if key.step not in (None, 1) else \
                self._buffer[slice(*key.indices(self._count))]
        index = operator.index(key)
        index = index + self._count if index < 0 else index
        if not 0 <= index < self._count:
            raise IndexError("row index out of range")
        return self._buffer[index]

    def __setitem__(self, key: SupportsIndex, value: Any) -> None:
        index = operator.index(key)
        index = index + self._count if index < 0 else index
        if not 0 <= index < self._count:
            raise IndexError("row index out of range")
        self._buffer[index] = value

    def _room(self, rows: int) -> None:
        """Room for ``rows`` more: the buffer doubled (once, as a rule) when it has not."""
        capacity = len(self._buffer)
        if self._count + rows > capacity:
            more = max(capacity, self._count + rows - capacity)
            self._buffer.frombytes(bytes(more * self._buffer.itemsize))

    def append(self, value: Any) -> None:
        """Add a row at the end."""
        self._room(1)
        self._buffer[self._count] = value
        self._count += 1

    def extend(self, values: Iterable[Any]) -> None:
        """Add rows at the end."""
        rows = values if isinstance(values, array) and values.typecode == self.typecode else \
            array(self.typecode, values)
        self.frombytes(memoryview(rows).cast("B"))

    def frombytes(self, data: Any) -> None:
        """Add rows at the end from a buffer of the column's type."""
        with memoryview(data) as given, given.cast("B") as raw:
            if len(raw) % self.itemsize:
                raise ValueError("bytes length not a multiple of item size")
            rows = len(raw) // self.itemsize
            self._room(rows)
            at = self._count * self.itemsize
            with memoryview(self._buffer) as buffer, buffer.cast("B") as target:
                target[at:at + len(raw)] = raw
        self._count += rows

    def drop_front(self, rows: int) -> None:
        """Forget the first ``rows`` rows: the others move to the buffer's front, in place."""
        rows = min(rows, self._count)
        kept = self._count - rows
        size = self.itemsize
        with memoryview(self._buffer) as buffer, buffer.cast("B") as raw:
            raw[:kept * size] = raw[rows * size:self._count * size]  # one memmove, no copy in between
        self._count = kept


class TailColumn:
    """A running executor's valuation column: rows from :attr:`start` on in memory, the older ones from the ledger.

    It answers what an ``array`` answers, by absolute row: ``len`` counts every row, ``c[i]``,
    ``c[-1]``, ``c[a:b]`` (an ``array``), iteration, ``tolist()``, ``np.asarray(c)`` (through
    ``__array__``: a copy, as a numpy array cannot view two places), ``==`` with an array or list.
    Only the rows in memory change: ``append``, ``extend`` and assigning to one of them (the newest
    row is replaced in place, see :meth:`ValuationSeries.append`). :meth:`drop_before` forgets the
    rows below a place the ledger holds; reading them afterwards costs a query, never a wrong row.

    It belongs to the loop thread, as the state does: the loop appends and releases rows between
    the readers' calls, so a reader on another thread would see rows move (the stats and charts
    read it on the loop thread, through the state). Reading older rows back is safe from any thread.
    """

    __slots__ = ("increasing_to", "name", "older", "rows", "start")

    def __init__(self, name: str, rows: array[Any], start: int, older: Older) -> None:
        #: Which column this is (the ledger's column name).
        self.name = name
        #: The rows in memory: rows ``start`` to the end, in a buffer of :data:`TAIL_ROWS` made now.
        self.rows = FixedRows(rows)
        #: Absolute index of ``rows[0]``: how many older rows are only in the ledger.
        self.start = start
        #: Reads older rows back from the ledger.
        self.older = older
        #: Rows from the first known to strictly increase (a timestamp column whose load checked them as it
        #: read them: the start-up check need not read them back again); 0 when not known.
        self.increasing_to = 0

    @property
    def typecode(self) -> str:
        """The array type code of the rows ('q' or 'd')."""
        return self.rows.typecode

    @property
    def itemsize(self) -> int:
        """Bytes a row (8)."""
        return self.rows.itemsize

    def __len__(self) -> int:
        return self.start + len(self.rows)

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[start:max(start, stop)][::step] if step > 0 else array(self.typecode, self.tolist()[key])
            stop = max(start, stop)
            if start >= self.start or start == stop:
                return self.rows[start - self.start:stop - self.start]
            older = self.older(self.name, start, min(stop, self.start))
            if stop > self.start:
                older.extend(self.rows[:stop - self.start])
            return older
        key = operator.index(key)  # a numpy integer too, as an array takes it
        index = key + len(self) if key < 0 else key
        if not 0 <= index < len(self):
            raise IndexError("valuation row index out of range")
        if index >= self.start:
            return self.rows[index - self.start]
        return self.older(self.name, index, index + 1)[0]

    def __setitem__(self, key: SupportsIndex, value: Any) -> None:
        key = operator.index(key)
        index = key + len(self) if key < 0 else key
        if not self.start <= index < len(self):
            raise IndexError(f"valuation row {key} is not in memory (rows before {self.start} are only in the ledger)")
        self.rows[index - self.start] = value

    def append(self, value: Any) -> None:
        """Add a row at the end."""
        self.rows.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        """Add rows at the end."""
        self.rows.extend(values)

    def frombytes(self, data: Any) -> None:
        """Add rows at the end from a buffer of the column's type."""
        self.rows.frombytes(data)

    def drop_before(self, index: int) -> None:
        """Forget the rows below ``index`` (the ledger holds them); a place at or below :attr:`start` changes nothing."""
        if index > self.start:
            self.rows.drop_front(index - self.start)
            self.start = index

    def __iter__(self) -> Iterator[Any]:
        for begin in range(0, self.start, ROWS_BLOCK):  # a block at a time: never all the older rows at once
            yield from self.older(self.name, begin, min(begin + ROWS_BLOCK, self.start))
        yield from self.rows[:]  # a copy: rows appended while iterating are not seen, as with an array's iter of a copy

    def tolist(self) -> list[Any]:
        """Every row as a list of Python numbers."""
        return self[:].tolist()  # type: ignore[no-any-return]

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np  # only the readers that take a whole column need it

        rows = self[:]
        whole = np.frombuffer(rows, dtype=np.int64 if self.typecode == "q" else np.float64) if rows else \
            np.empty(0, dtype=np.int64 if self.typecode == "q" else np.float64)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TailColumn):
            other = other[:]
        if isinstance(other, array):
            return self[:] == other
        if isinstance(other, list):
            return self.tolist() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TailColumn({self.name!r}, rows {self.start}..{len(self)} in memory)"


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

    @classmethod
    def tail(cls, older: Older, start: int = 0, rows: ValuationSeries | None = None) -> ValuationSeries:
        """A running executor's series: ``rows``' plain columns (default none) are rows ``start`` on; older ones via ``older``."""
        rows = rows if rows is not None else cls()
        columns = {name: getattr(rows, name) for name in ("timestamp", "equity", "cash", "exposure")}
        if any(isinstance(column, TailColumn) for column in columns.values()):
            raise TypeError("the rows of a tail are plain arrays")
        return cls(*(TailColumn(name, column, start, older) for name, column in columns.items()))

    def blocks(self, start: int, stop: int, names: tuple[str, ...]) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """Rows ``[start, stop)`` of the columns ``names``, a block at a time: ``(first row, (a slice of each))``.

        The blocks are whole :data:`ROWS_BLOCK` blocks (the first and last cut to the range), so a tail's
        older rows come back a block a query, the other columns of a block kept by the read for the
        next one asked (``OlderRows``), and a reader of the whole history never holds more than a block
        of it: what the start-up's readers take (the check, the summary's fold, the charts, state.json).
        """
        columns = tuple(getattr(self, name) for name in names)
        block = ROWS_BLOCK
        begin = start
        while begin < stop:
            end = min(stop, (begin // block + 1) * block)
            yield begin, tuple(column[begin:end] for column in columns)
            begin = end

    @property
    def in_memory(self) -> int:
        """Rows held in memory (all of them unless a tail)."""
        column = self.timestamp
        return len(column.rows) if isinstance(column, TailColumn) else len(column)

    def release(self, committed: int) -> None:
        """Forget rows in memory that the ledger holds (its first ``committed`` rows), whole blocks at a time.

        Kept: the rows from one block before the newest block boundary at or before the committed
        rows (state.json's column cache re-encodes the rows after its last complete block at each
        publication and keeps one block of slack for a publication that lags), and whatever is not
        committed yet; so at most ``2 * ROWS_BLOCK`` rows plus those of a job not committed. A plain
        series (a backtest's) keeps everything.
        """
        if not isinstance(self.timestamp, TailColumn):
            return
        held = min(committed, len(self))
        keep_from = ((held - 1) // ROWS_BLOCK - 1) * ROWS_BLOCK if held > 0 else 0
        if keep_from > self.timestamp.start:
            for column in (self.timestamp, self.equity, self.cash, self.exposure):
                assert isinstance(column, TailColumn)
                column.drop_before(keep_from)

