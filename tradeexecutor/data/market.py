"""Candles as numpy columns on one shared timeline, so that a cycle reads prices by index, not by pandas lookups.

A bar is labelled by its open time and closes ``frequency`` later; at a time T only bars whose
close time is at or before T are visible. The timeline is the sorted set of bar close times of
every instrument, and for each step of it every instrument knows its last closed bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from tradeexecutor.errors import DataError
from tradeexecutor.timeframe import to_pandas_frequency


@dataclass(slots=True)
class SymbolBars:
    """One instrument's candles as read-only numpy columns."""

    symbol: str
    #: Asset type when known (equity, fx, crypto, future).
    asset_type: str | None
    #: The candles as a frame (open, high, low, close, volume) indexed by UTC open time.
    frame: pd.DataFrame
    open_time_ns: np.ndarray
    close_time_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


class MarketData:
    """Candles of one or many instruments, aligned on a timeline of bar close times."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], frequency: timedelta, asset_types: Mapping[str, str | None] | None = None):
        if not frames:
            raise DataError("no market data: the data source holds no instruments")
        self.frequency = pd.Timedelta(frequency)
        freq_ns = int(self.frequency.value)
        self.bars: dict[str, SymbolBars] = {}
        for symbol, frame in frames.items():
            if len(frame) == 0:
                raise DataError(f"no candles for {symbol} in the selected range")
            frame = _utc_ns_index(frame)
            open_ns = frame.index.asi8.copy()
            self.bars[symbol] = SymbolBars(
                symbol=symbol,
                asset_type=(asset_types or {}).get(symbol),
                frame=frame,
                open_time_ns=_readonly(open_ns),
                close_time_ns=_readonly(open_ns + freq_ns),
                open=_readonly(frame["open"].to_numpy(dtype=np.float64)),
                high=_readonly(frame["high"].to_numpy(dtype=np.float64)),
                low=_readonly(frame["low"].to_numpy(dtype=np.float64)),
                close=_readonly(frame["close"].to_numpy(dtype=np.float64)),
                volume=_readonly(frame["volume"].to_numpy(dtype=np.float64)),
            )
        self.symbols: tuple[str, ...] = tuple(self.bars)
        closes = [bars.close_time_ns for bars in self.bars.values()]
        self.timeline_ns: np.ndarray = _readonly(np.unique(np.concatenate(closes)) if len(closes) > 1 else closes[0])
        #: For each symbol and timeline step, the index of its last bar closed by that step (-1: none yet).
        self.last_closed: dict[str, np.ndarray] = {}
        #: For each symbol and timeline step, the index of the bar that closes exactly at that step (-1: none).
        self.closing_at: dict[str, np.ndarray] = {}
        for symbol, bars in self.bars.items():
            last = np.searchsorted(bars.close_time_ns, self.timeline_ns, side="right") - 1
            self.last_closed[symbol] = _readonly(last.astype(np.int64))
            position = np.searchsorted(bars.close_time_ns, self.timeline_ns, side="left")
            position_clipped = np.minimum(position, len(bars) - 1)
            exact = bars.close_time_ns[position_clipped] == self.timeline_ns
            self.closing_at[symbol] = _readonly(np.where(exact, position_clipped, -1).astype(np.int64))

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


def _native_frequency(frames: Mapping[str, pd.DataFrame]) -> pd.Timedelta:
    gaps = []
    for frame in frames.values():
        if len(frame) >= 2:
            diffs = np.diff(_utc_ns_index(frame).index.asi8)
            values, counts = np.unique(diffs[diffs > 0], return_counts=True)
            if len(values):
                gaps.append(int(values[np.argmax(counts)]))
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
