"""Candles as numpy columns on one shared timeline, so that a cycle reads prices by index, not by pandas lookups.

A bar is labelled by its open time and closes ``frequency`` later; at a time T only bars whose
close time is at or before T are visible. The timeline is the sorted set of bar close times of
every instrument, and for each step of it every instrument knows its last closed bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from tradeexecutor.errors import DataError
from tradeexecutor.timeframe import to_pandas_frequency


class Growing:
    """A numpy column that grows by appends in amortised O(1): a buffer with spare room and a read-only view of its rows.

    The view is a new object after every append, so callers that keep a column must take it again
    (``MarketData.generation`` tells them when); the rows already in it never change.

    A windowed column (a live feed's: :meth:`reserve`, then :meth:`drop_front` now and then) takes
    its memory once: a buffer with room for the window's top and a second one the drops copy
    into, both written at once so that their pages are resident from the start. The two then take
    turns, a buffer being used again only when no view of it is left.
    """

    __slots__ = ("_buffer", "_spare", "size")

    def __init__(self, values: np.ndarray):
        self._buffer = np.ascontiguousarray(values)
        self.size = len(values)
        #: The buffer the next drop copies into, once no view of it is left (None: one is allocated then).
        self._spare: np.ndarray | None = None

    @property
    def capacity(self) -> int:
        """Rows the buffer holds before an append must allocate a bigger one."""
        return len(self._buffer)

    def reserve(self, rows: int) -> None:
        """Give the column room for ``rows`` rows and a spare buffer as big, both allocated and written now.

        For a column whose top is known (a windowed live feed's): its memory is taken once, at start,
        instead of by doublings and drops while it runs. The rows, and the views taken before, are unchanged.
        """
        if rows <= 0:
            return
        if rows > len(self._buffer):
            bigger = _resident(rows, self._buffer.dtype)
            bigger[: self.size] = self._buffer[: self.size]
            self._buffer = bigger
        if self._spare is None or len(self._spare) != len(self._buffer):
            self._spare = _resident(len(self._buffer), self._buffer.dtype)

    def view(self) -> np.ndarray:
        """The rows so far, read-only."""
        view = self._buffer[: self.size]
        view.flags.writeable = False
        return view

    def append(self, value: float | int) -> np.ndarray:
        """Add one row; returns the new view."""
        if self.size == len(self._buffer):
            bigger = np.empty(max(16, 2 * len(self._buffer)), dtype=self._buffer.dtype)
            bigger[: self.size] = self._buffer[: self.size]
            self._buffer = bigger
        self._buffer[self.size] = value
        self.size += 1
        return self.view()

    def drop_front(self, count: int, shift: int = 0) -> np.ndarray:
        """Forget the first ``count`` rows and subtract ``shift`` from each kept row that is not negative; returns the
        new view.

        ``shift`` is for columns of bar indices: -1 ("no bar") stays -1, and the caller makes sure no
        other kept row is below ``shift``. The kept rows are copied to another buffer of the old one's
        capacity (at least 16): views taken before keep the old buffer, so their rows never change,
        and the capacity stays what the column reached before its first drop (for a windowed feed,
        room for the window's top, which it never exceeds again): it neither shrinks nor grows. That
        buffer is the spare when no view of the spare is left (the collector's count of references
        to it is the column's own alone), else a new one; the old buffer becomes the spare.
        """
        capacity = max(16, len(self._buffer))
        if self._spare is not None and len(self._spare) == capacity and sys.getrefcount(self._spare) == _ONLY_OURS:
            buffer = self._spare
        else:
            buffer = _resident(capacity, self._buffer.dtype)
        kept = self._buffer[count: self.size]
        rows = buffer[: len(kept)]
        rows[:] = kept
        if shift:
            np.subtract(rows, shift, out=rows, where=rows >= 0)
        old = self._buffer
        # Only a buffer of the column's own may be written again: not the memory of the frame it started from.
        self._spare = old if old.flags.owndata and old.flags.writeable else None
        self._buffer = buffer
        self.size = len(kept)
        return self.view()


def _count_when_only_a_slot_holds() -> int:
    """``sys.getrefcount`` of an object held by one ``__slots__`` attribute alone, read as :meth:`Growing.drop_front`
    reads it.

    Measured, not written down: the count includes the call's own reference(s), which CPython has changed
    between versions (3.11–3.13 count 2; 3.14 may borrow the argument and count 1). A wrong constant would
    either never reuse the spare (more allocation, still correct) or, if too high, write a buffer a view still
    reads — so it is taken from the interpreter that runs.
    """
    probe = Growing(np.empty(1))
    probe._spare = np.empty(1)
    return sys.getrefcount(probe._spare)


#: ``sys.getrefcount(self._spare)`` when only the column holds its spare (no view of it is left).
_ONLY_OURS = _count_when_only_a_slot_holds()


def _resident(rows: int, dtype: np.dtype[Any]) -> np.ndarray:
    """A buffer of ``rows`` zeros, every page written: an allocator maps fresh pages lazily, so they would count in
    the resident set only as rows are appended, a little each cycle."""
    buffer = np.empty(rows, dtype=dtype)
    buffer.fill(0)
    return buffer


#: pandas >= 3 always copies on write: a column read from a frame is a read-only view that no later write to
#: the frame (or to a frame made from it) can change, so the columns can share the frame's memory.
_COPY_ON_WRITE = int(pd.__version__.split(".", 1)[0]) >= 3


def _float64_column(series: pd.Series) -> np.ndarray:
    """The series as a float64 column: the frame's own memory where it can be shared safely, else a copy."""
    values = series.to_numpy(dtype=np.float64, copy=False)
    if _COPY_ON_WRITE and not values.flags.writeable and values.flags.c_contiguous:
        return values
    return np.array(values, dtype=np.float64, copy=True)


def _int64_column(values: np.ndarray) -> np.ndarray:
    """An index's int64 nanoseconds as a column: an index never changes in place, so its memory is shared
    (read-only) under copy-on-write; a copy otherwise."""
    if _COPY_ON_WRITE and values.dtype == np.int64 and values.flags.c_contiguous:
        shared = values.view()
        shared.flags.writeable = False
        return shared
    return np.array(values, dtype=np.int64, copy=True)


#: The per-bar columns of SymbolBars, in the order ``append`` takes them.
BAR_COLUMNS = ("open_time_ns", "close_time_ns", "open", "high", "low", "close", "volume")


class SymbolBars:
    """One instrument's candles as read-only numpy columns, which grow as candles close (``MarketData.append``)."""

    __slots__ = (
        "_columns",
        "_frame",
        "_index_name",
        "asset_type",
        "close",
        "close_time_ns",
        "high",
        "low",
        "open",
        "open_time_ns",
        "symbol",
        "volume",
    )

    open_time_ns: np.ndarray
    close_time_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __init__(self, symbol: str, asset_type: str | None, frame: pd.DataFrame, frequency_ns: int):
        self.symbol = symbol
        #: Asset type when known (equity, fx, crypto, future).
        self.asset_type = asset_type
        if _COPY_ON_WRITE:
            # Our own frame object over the same data: what the caller later writes into theirs is copied first.
            frame = frame.copy(deep=False)
        self._frame: pd.DataFrame | None = frame
        self._index_name = frame.index.name
        open_ns = _int64_column(frame.index.asi8)
        columns = {
            "open_time_ns": open_ns,
            "close_time_ns": open_ns + frequency_ns,
            **{name: _float64_column(frame[name]) for name in BAR_COLUMNS[2:]},
        }
        self._columns = {name: Growing(values) for name, values in columns.items()}
        for name, column in self._columns.items():
            setattr(self, name, column.view())

    def __len__(self) -> int:
        return len(self.close)

    @property
    def frame(self) -> pd.DataFrame:
        """The candles as a frame (open, high, low, close, volume) indexed by UTC open time.

        Built from the columns again only when asked after candles were appended: the daemon's
        per-bar work never needs the whole frame.
        """
        if self._frame is None:
            self._frame = self.tail_frame(len(self))
        return self._frame

    def tail_frame(self, bars: int, end: int | None = None) -> pd.DataFrame:
        """The ``bars`` candles before index ``end`` (default: all) as a new frame, in O(bars)."""
        stop = len(self) if end is None else end
        start = max(0, stop - bars)
        if self._frame is not None:
            return self._frame.iloc[start:stop].copy()
        index = pd.DatetimeIndex(self.open_time_ns[start:stop].view("M8[ns]"), name=self._index_name).tz_localize("UTC")
        return pd.DataFrame({name: self.open_time_ns.dtype.type(0) + getattr(self, name)[start:stop]
                             for name in BAR_COLUMNS[2:]}, index=index)

    def append(self, open_ns: int, close_ns: int, values: tuple[float, float, float, float, float]) -> None:
        """Add one closed candle (open, high, low, close, volume)."""
        row = (open_ns, close_ns, *values)
        for name, value in zip(BAR_COLUMNS, row):
            setattr(self, name, self._columns[name].append(value))
        self._frame = None

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` candles in every column, allocated and written now (``MarketData.reserve``)."""
        for name in BAR_COLUMNS:
            self._columns[name].reserve(rows)
            setattr(self, name, self._columns[name].view())

    def drop_front(self, count: int) -> None:
        """Forget the first ``count`` candles (a windowed live feed, ``MarketData.drop_before``)."""
        for name in BAR_COLUMNS:
            setattr(self, name, self._columns[name].drop_front(count))
        self._frame = None


class MarketData:
    """Candles of one or many instruments, aligned on a timeline of bar close times.

    The timeline grows: :meth:`append` adds the candles that closed at a new, later time as one
    new step, so a feed of live candles extends the same object the engine reads. A step, once
    made, never changes; ``generation`` counts appends, so readers that keep columns know when
    to take them again.

    A live feed keeps a window (``drop_before``): the oldest steps and bars are forgotten and the
    rest move to the front, so every step and bar index anyone holds must be rebased by the
    counts ``dropped`` and ``dropped_bars`` grew by (see ``FollowFeed``'s window). A market
    nothing drops from (a replay, a backtest) keeps both at 0.
    """

    def __init__(self, frames: Mapping[str, pd.DataFrame], frequency: timedelta,
                 asset_types: Mapping[str, str | None] | None = None):
        if not frames:
            raise DataError("no market data: the data source holds no instruments")
        self.frequency = pd.Timedelta(frequency)
        self._frequency_ns = freq_ns = int(self.frequency.value)
        self.bars: dict[str, SymbolBars] = {}
        for symbol, frame in frames.items():
            if len(frame) == 0:
                raise DataError(f"no candles for {symbol} in the selected range")
            self.bars[symbol] = SymbolBars(symbol, (asset_types or {}).get(symbol), _utc_ns_index(frame), freq_ns)
        self.symbols: tuple[str, ...] = tuple(self.bars)
        #: Appends (and drops) since construction.
        self.generation = 0
        #: Timeline steps dropped from the front so far: step ``s`` now was step ``s + dropped`` when made.
        self.dropped = 0
        #: Each symbol's bars dropped from the front so far: its bar ``i`` now was bar ``i + dropped_bars[s]``.
        self.dropped_bars = dict.fromkeys(self.bars, 0)
        #: Rows reserved up front in each column (:meth:`reserve`, a windowed feed's top); 0: none.
        self.reserved = 0
        closes = [bars.close_time_ns for bars in self.bars.values()]
        # One instrument whose bars close in strictly increasing time is its own timeline, and its bar i
        # is both the last closed and the one closing at step i: the three columns share one array each
        # way (a Growing copies into a buffer of its own on its first append) instead of 40 MB apiece at
        # 5M bars, and the searches below, with their temporaries, are not needed.
        own_timeline = len(closes) == 1 and bool((closes[0][1:] > closes[0][:-1]).all())
        timeline = closes[0] if own_timeline else np.unique(np.concatenate(closes))
        self._timeline = Growing(timeline)
        self.timeline_ns: np.ndarray = self._timeline.view()
        #: For each symbol and timeline step, the index of its last bar closed by that step (-1: none yet).
        self.last_closed: dict[str, np.ndarray] = {}
        #: For each symbol and timeline step, the index of the bar that closes exactly at that step (-1: none).
        self.closing_at: dict[str, np.ndarray] = {}
        self._last_closed: dict[str, Growing] = {}
        self._closing_at: dict[str, Growing] = {}
        for symbol, bars in self.bars.items():
            if own_timeline:
                last = closing = np.arange(len(timeline), dtype=np.int64)
            else:
                last = np.searchsorted(bars.close_time_ns, timeline, side="right").astype(np.int64, copy=False)
                last -= 1
                closing = np.searchsorted(bars.close_time_ns, timeline, side="left").astype(np.int64, copy=False)
                np.minimum(closing, len(bars) - 1, out=closing)
                closing[bars.close_time_ns[closing] != timeline] = -1
            self._last_closed[symbol] = Growing(last)
            self._closing_at[symbol] = Growing(closing)
            self.last_closed[symbol] = self._last_closed[symbol].view()
            self.closing_at[symbol] = self._closing_at[symbol].view()

    def append(self, close_ns: int, candles: Mapping[str, tuple[float, float, float, float, float]]) -> int:
        """Add the candles (open, high, low, close, volume) of ``candles``' symbols that closed at ``close_ns``.

        The time must be after every step so far (a step never changes once made); symbols
        without a candle at that time keep their last one. Returns the new step.
        """
        newest = int(self.timeline_ns[-1])
        if close_ns <= newest:
            raise DataError(f"a candle closing {pd.Timestamp(close_ns, tz='UTC')} arrived after the one closing "
                            f"{pd.Timestamp(newest, tz='UTC')}: candles must arrive in time order, each once")
        unknown = [symbol for symbol in candles if symbol not in self.bars]
        if unknown:
            raise DataError(f"candles for {', '.join(unknown)}, which the market data does not hold "
                            f"({', '.join(self.symbols)})")
        for symbol, values in candles.items():
            self.bars[symbol].append(close_ns - self._frequency_ns, close_ns, values)
        self.timeline_ns = self._timeline.append(close_ns)
        for symbol, bars in self.bars.items():
            self.last_closed[symbol] = self._last_closed[symbol].append(len(bars) - 1)
            self.closing_at[symbol] = self._closing_at[symbol].append(len(bars) - 1 if symbol in candles else -1)
        self.generation += 1
        return len(self.timeline_ns) - 1

    def reserve(self, rows: int) -> None:
        """Give every column (the timeline, the per-step bar indices, the bars) room for ``rows`` rows now, written once.

        A windowed live feed knows its market's top (``FollowFeed``): its columns take that memory at
        start instead of growing into it while the executor runs, and whoever keeps columns per bar
        of this market (``CloseColumns``, ``IndicatorStore``) reserves as many (:attr:`reserved`).
        """
        self.reserved = max(self.reserved, rows)
        self._timeline.reserve(rows)
        self.timeline_ns = self._timeline.view()
        for symbol, bars in self.bars.items():
            for columns, views in ((self._last_closed, self.last_closed), (self._closing_at, self.closing_at)):
                columns[symbol].reserve(rows)
                views[symbol] = columns[symbol].view()
            bars.reserve(rows)

    def drop_before(self, step: int) -> int:
        """Forget the timeline steps before ``step`` and each symbol's bars before the one last closed at ``step``.

        Step ``step`` becomes step 0 and every symbol keeps its bar visible there, so what any kept
        step sees is unchanged; the per-step bar indices are rebased with the bars. Returns the steps
        dropped (``dropped`` and ``dropped_bars`` grow by what went). Only between jobs: whoever
        holds a step or bar index rebases it (``FollowFeed.advance`` and ``ExecutorLoop`` do).
        """
        if step <= 0:
            return 0
        if step >= len(self.timeline_ns):
            raise ValueError(f"cannot drop the steps before {step}: the market has {len(self.timeline_ns)}")
        for symbol, bars in self.bars.items():
            cut = max(0, int(self.last_closed[symbol][step]))
            # Every kept step's bar index is at least the one at ``step`` (they only grow) or -1 (none closed yet,
            # or none closing then), which stays -1.
            self.last_closed[symbol] = self._last_closed[symbol].drop_front(step, cut)
            self.closing_at[symbol] = self._closing_at[symbol].drop_front(step, cut)
            bars.drop_front(cut)
            self.dropped_bars[symbol] += cut
        self.timeline_ns = self._timeline.drop_front(step)
        self.dropped += step
        self.generation += 1
        return step

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_long_frame(
        cls,
        frame: pd.DataFrame,
        frequency: timedelta | None = None,
        asset_types: Mapping[str, str | None] | None = None,
        symbols: list[str] | tuple[str, ...] | None = None,
    ) -> MarketData:
        """Build from the loader's long frame (UTC index, a ``symbol`` column, OHLCV columns).

        ``frequency`` is the bar frequency the strategy reads; data of a finer frequency is
        resampled to it, a coarser one is an error.
        """
        frames: dict[str, pd.DataFrame] = {}
        names = frame["symbol"]
        if len(frame) and bool((names == names.iloc[0]).all()):
            # One symbol: its rows are the whole frame, shared as they are (a groupby would copy every column).
            frames[str(names.iloc[0])] = frame.drop(columns="symbol")
        else:
            for symbol, part in frame.groupby("symbol", sort=False):
                frames[str(symbol)] = part.drop(columns="symbol")
        if symbols is not None:
            frames = {s: frames[s] for s in symbols if s in frames}
        native = _native_frequency(frames)
        if frequency is None:
            frequency = native
        frequency = pd.Timedelta(frequency)
        if frequency < native:
            raise DataError(
                f"the strategy reads {_fmt(frequency)} bars but the data has {_fmt(native)} bars: "
                "give data of the same or a finer frequency"
            )
        if frequency > native:
            frames = {s: resample(f, frequency) for s, f in frames.items()}
        return cls(frames, frequency, asset_types)

    def between(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> MarketData:
        """Only bars that open at or after ``start`` and close at or before ``end``."""
        frames = {}
        for symbol, bars in self.bars.items():
            frame = bars.frame
            if start is not None:
                frame = frame[frame.index >= start]
            if end is not None:
                frame = frame[frame.index + self.frequency <= end]
            if len(frame):
                frames[symbol] = frame
        if not frames:
            raise DataError(f"no candles between {start} and {end}: choose a range inside the data")
        return MarketData(frames, self.frequency, {s: b.asset_type for s, b in self.bars.items()})

    # -- queries ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.timeline_ns)

    def step_time(self, step: int) -> pd.Timestamp:
        """The close time of timeline step ``step`` as a UTC Timestamp."""
        return pd.Timestamp(int(self.timeline_ns[step]), tz="UTC")

    def step_at_or_before(self, time_ns: int) -> int:
        """The last timeline step whose close time is at or before ``time_ns`` (-1: none)."""
        return int(np.searchsorted(self.timeline_ns, time_ns, side="right") - 1)

    def close_series(self, symbol: str) -> pd.Series:
        """Close prices indexed by bar close time, for charts and benchmarks."""
        bars = self.bars[symbol]
        return pd.Series(bars.close, index=pd.to_datetime(bars.close_time_ns, utc=True), name=symbol)


def _utc_ns_index(frame: pd.DataFrame) -> pd.DataFrame:
    """The same candles indexed by UTC nanoseconds (pandas 3 parses text at microsecond resolution)."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError("candles must be indexed by time")
    if index.tz is None:
        index = index.tz_localize("UTC")
    elif str(index.tz) != "UTC":
        index = index.tz_convert("UTC")
    if index.unit != "ns":
        index = index.as_unit("ns")
    if index is frame.index:
        return frame
    frame = frame.copy(deep=False)
    frame.index = index
    return frame


#: Bars whose gaps are counted at once by _native_frequency: its temporaries stay at a few MB.
_GAP_CHUNK = 1 << 20


def _native_frequency(frames: Mapping[str, pd.DataFrame]) -> pd.Timedelta:
    """The smallest of the instruments' most common positive gaps between bar times (ties: the smaller gap)."""
    gaps = []
    for frame in frames.values():
        if len(frame) >= 2:
            times = _utc_ns_index(frame).index.asi8
            counted: dict[int, int] = {}
            for start in range(0, len(times) - 1, _GAP_CHUNK):
                diffs = np.diff(times[start:start + _GAP_CHUNK + 1])
                values, counts = np.unique(diffs[diffs > 0], return_counts=True)
                for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                    counted[value] = counted.get(value, 0) + count
            if counted:
                gaps.append(min(counted, key=lambda gap: (-counted[gap], gap)))
    if not gaps:
        raise DataError("cannot tell the bar frequency: every instrument has fewer than two candles")
    return pd.Timedelta(min(gaps), unit="ns")


def _fmt(delta: pd.Timedelta) -> str:
    from tradeexecutor.timeframe import format_duration

    return format_duration(delta.to_pytimedelta())


def resample(frame: pd.DataFrame, frequency: timedelta) -> pd.DataFrame:
    """Aggregate OHLCV candles into coarser bars labelled by their open time; empty bins are dropped."""
    rule = to_pandas_frequency(pd.Timedelta(frequency).to_pytimedelta())
    grouped = frame.resample(rule, label="left", closed="left")
    result = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
        }
    )
    return result.dropna(subset=["open", "close"])


class CloseColumns(Mapping[str, tuple[np.ndarray, np.ndarray]]):
    """Each symbol's (bar close times in epoch ms, closes), for charts: kept up to date as the market grows.

    The millisecond column is extended by the appended bars only, so reading it after each job
    costs what was appended, not the history (and made again when a live feed's window moved).
    """

    def __init__(self, market: MarketData) -> None:
        self.market = market
        self._ms = {symbol: Growing(bars.close_time_ns // 1_000_000) for symbol, bars in market.bars.items()}
        for column in self._ms.values():
            column.reserve(market.reserved)
        self._generation = market.generation
        self._dropped_bars = dict(market.dropped_bars)

    def __getitem__(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        market = self.market
        if market.generation != self._generation:
            self._generation = market.generation
            for name, column in self._ms.items():
                gone = market.dropped_bars[name] - self._dropped_bars[name]
                if gone:  # a live feed's window moved: its oldest bars go, as from the market's own columns
                    self._dropped_bars[name] = market.dropped_bars[name]
                    column.drop_front(min(gone, column.size))
            for name, column in self._ms.items():
                for close_ns in market.bars[name].close_time_ns[column.size:].tolist():
                    column.append(close_ns // 1_000_000)
        return self._ms[symbol].view(), market.bars[symbol].close

    def __iter__(self) -> Iterator[str]:
        return iter(self.market.symbols)

    def __len__(self) -> int:
        return len(self.market.symbols)
