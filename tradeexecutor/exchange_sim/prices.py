"""The simulated market's price path: candles laid on the exchange clock, replayed or random, pinned on demand.

A :class:`BarSeries` holds one symbol's bars, all ``bar_ms`` long, the first opening at
``start_ms``. Inside a bar the price walks a fixed path through four points: the open, then the
low and the high (the high first when the bar closes down), then the close, each a third of the
bar apart, linearly in between. So the last price at any millisecond, the high and low of any
window, and the first instant a limit price is touched are all defined, and the same questions
always get the same answers: klines, tickers and fills agree with each other.

Two sources fill a series:

- :func:`replay_series` lays recorded candles (bundled or a user's file) on the clock, one source
  bar per ``bar_ms``, so hourly EURUSD at ``bar_ms=1000`` becomes 1-second candles. ``history``
  bars lie before the start, so a client sees a warm-up history at once. After the data ends the
  price stays at the last close (bars with zero volume).
- :func:`random_walk_series` draws a seeded geometric random walk of 1-second bars with
  :func:`tradeexecutor.data.synthetic.generate_candles`, an hour at a time, without end.

Both grow as the clock moves (``extend_to``) and keep at most ``max_bars`` bars, dropping the
oldest, so a months-long run stays bounded. A :meth:`BarSeries.pin` holds the price flat for a
while, from the next bar on (the past never changes), for tests and drills that need the market
at a given price.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradeexecutor.data.synthetic import generate_candles
from tradeexecutor.errors import DataError
from tradeexecutor.exchange_sim.config import PriceConfig

#: Bars the random walk draws at a time.
_BLOCK = 3600

#: The price settings' defaults (exchange-simulator options), which the functions below default to.
_DEFAULTS = PriceConfig()

#: Where each of a bar's four path points sits, as a fraction of the bar.
_POINTS = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)

#: Makes new bars: ``(count, last_close) -> (open, high, low, close, volume)`` arrays of ``count``.
BarMaker = Callable[[int, float], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class Window:
    """Open, high, low, close and volume of the path over one time window."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    #: Bars that overlap the window and had volume (Binance's "number of trades" stand-in).
    active_bars: int


class BarSeries:
    """One symbol's bars on the exchange clock; not thread-safe (the simulator holds its lock)."""

    def __init__(self, start_ms: int, bar_ms: int, bars: tuple[np.ndarray, ...], maker: BarMaker, *,
                 max_bars: int = 400_000):
        if bar_ms < 1000 or bar_ms % 1000:
            raise DataError(f"a simulated bar must last a whole number of seconds, got {bar_ms} ms")
        if len(bars) != 5 or len(bars[3]) == 0:
            raise DataError("a price series needs open, high, low, close and volume of at least one bar")
        #: Open time of the first bar kept, ms since the epoch.
        self.start_ms = int(start_ms)
        #: Length of every bar, ms.
        self.bar_ms = int(bar_ms)
        self.max_bars = max(int(max_bars), 2 * _BLOCK)
        self._maker = maker
        self._set(*bars)

    def _set(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
             volume: np.ndarray) -> None:
        open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
        high = np.maximum.reduce([np.asarray(high, dtype=np.float64), open_, close])
        low = np.minimum.reduce([np.asarray(low, dtype=np.float64), open_, close])
        up = close >= open_
        #: The path's four points per bar: open, first extreme, second extreme, close.
        self.points = np.column_stack([open_, np.where(up, low, high), np.where(up, high, low), close])
        self.high = high
        self.low = low
        self.volume = np.asarray(volume, dtype=np.float64)

    # -- extent ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.high)

    @property
    def end_ms(self) -> int:
        """Close time of the last bar made so far (exclusive)."""
        return self.start_ms + len(self) * self.bar_ms

    def extend_to(self, time_ms: int) -> None:
        """Make bars until one covers ``time_ms``, then drop the oldest beyond ``max_bars``."""
        missing = (time_ms - self.end_ms) // self.bar_ms + 1
        if missing <= 0:
            return
        count = max(int(missing), _BLOCK)
        made = self._maker(count, float(self.points[-1, 3]))
        drop = max(0, len(self) + count - self.max_bars)
        columns = [self.points[:, 0], self.high, self.low, self.points[:, 3], self.volume]
        joined = [np.concatenate([old, new])[drop:] for old, new in zip(columns, made)]
        self.start_ms += drop * self.bar_ms
        self._set(*joined)

    def bar_at(self, time_ms: int) -> int:
        """Index of the bar holding ``time_ms`` (clamped to the bars kept; extend first)."""
        return min(max((int(time_ms) - self.start_ms) // self.bar_ms, 0), len(self) - 1)

    # -- the path --------------------------------------------------------------------------------

    def price_at(self, time_ms: int) -> float:
        """The last price at ``time_ms`` (the first open before the first bar)."""
        offset = int(time_ms) - self.start_ms
        if offset <= 0:
            return float(self.points[0, 0])
        index = offset // self.bar_ms
        if index >= len(self):
            return float(self.points[-1, 3])
        fraction = (offset - index * self.bar_ms) / self.bar_ms * 3.0
        segment = min(int(fraction), 2)
        start, end = self.points[index, segment], self.points[index, segment + 1]
        return float(start + (end - start) * (fraction - segment))

    def price_before(self, time_ms: int) -> float:
        """The price just before ``time_ms``: at a bar boundary, the close of the bar that ends there."""
        offset = int(time_ms) - self.start_ms
        if offset > 0 and offset % self.bar_ms == 0 and offset // self.bar_ms <= len(self):
            return float(self.points[offset // self.bar_ms - 1, 3])
        return self.price_at(time_ms)

    def _vertex_times(self, index: int) -> list[float]:
        start = self.start_ms + index * self.bar_ms
        return [start + point * self.bar_ms for point in _POINTS]

    def window(self, start_ms: int, end_ms: int) -> Window:
        """The path over ``[start_ms, end_ms)``, the close being the price at its last millisecond.

        Only the kept bars count: a window that starts before the first bar starts with it.
        """
        start_ms = max(int(start_ms), self.start_ms)
        end_ms = int(end_ms)
        if end_ms <= start_ms:
            price = self.price_at(start_ms)
            return Window(price, price, price, price, 0.0, 0)
        first, last = self.bar_at(start_ms), self.bar_at(end_ms - 1)
        on_boundary = (end_ms - self.start_ms) % self.bar_ms == 0
        opened = self.price_at(start_ms)
        closed = self.price_before(end_ms) if on_boundary else self.price_at(end_ms - 1)
        high, low = max(opened, closed), min(opened, closed)
        if last > first + 1:
            high = max(high, float(self.high[first + 1:last].max()))
            low = min(low, float(self.low[first + 1:last].min()))
        for index in {first, last}:
            for time, value in zip(self._vertex_times(index), self.points[index]):
                if start_ms < time < end_ms:
                    high, low = max(high, float(value)), min(low, float(value))
        volume = float(self.volume[first:last + 1].sum())
        # The edge bars count only for the part inside the window.
        bar_start = self.start_ms + first * self.bar_ms
        volume -= float(self.volume[first]) * min(1.0, (start_ms - bar_start) / self.bar_ms)
        last_end = self.start_ms + (last + 1) * self.bar_ms
        volume -= float(self.volume[last]) * max(0.0, (last_end - end_ms) / self.bar_ms)
        active = int(np.count_nonzero(self.volume[first:last + 1]))
        return Window(opened, high, low, closed, max(volume, 0.0), active)

    def whole_bars(self, first: int, windows: int, per_window: int) -> tuple[np.ndarray, ...]:
        """Open, high, low, close, volume, active-bar count of ``windows`` runs of ``per_window`` whole bars.

        The fast path of klines whose interval is a multiple of the bar: no path walking needed.
        """
        stop = first + windows * per_window
        shape = (windows, per_window)
        volume = self.volume[first:stop].reshape(shape)
        return (
            self.points[first:stop:per_window, 0],
            self.high[first:stop].reshape(shape).max(axis=1),
            self.low[first:stop].reshape(shape).min(axis=1),
            self.points[first + per_window - 1:stop:per_window, 3],
            volume.sum(axis=1),
            np.count_nonzero(volume, axis=1),
        )

    def first_touch(self, after_ms: int, until_ms: int, price: float, *, at_or_below: bool) -> int | None:
        """The first millisecond in ``(after_ms, until_ms]`` at which the path reaches ``price``, or None.

        ``at_or_below`` asks for the path at or under the price (what fills a resting buy);
        otherwise at or over it (a resting sell).
        """
        if until_ms <= after_ms:
            return None
        first, last = self.bar_at(after_ms), self.bar_at(until_ms)
        extremes = self.low if at_or_below else self.high
        hit = extremes[first:last + 1] <= price if at_or_below else extremes[first:last + 1] >= price
        for index in np.flatnonzero(hit) + first:
            times = self._vertex_times(int(index))
            values = self.points[int(index)]
            for k in range(3):
                t0, t1 = times[k], times[k + 1]
                v0, v1 = float(values[k]), float(values[k + 1])
                lo_t, hi_t = max(t0, float(after_ms)), min(t1, float(until_ms))
                if hi_t < lo_t or (hi_t == lo_t and lo_t == after_ms):
                    continue
                found = _crossing(t0, t1, v0, v1, lo_t, hi_t, price, at_or_below)
                if found is not None:
                    moment = max(math.ceil(found), after_ms + 1)
                    if moment <= until_ms:
                        return moment
        return None

    # -- changes ---------------------------------------------------------------------------------

    def pin(self, from_ms: int, until_ms: int, price: float) -> int:
        """Hold the price at ``price`` from the first bar opening at or after ``from_ms`` to ``until_ms``.

        Returns the open time of the first pinned bar. Volume is kept; the path is flat.
        """
        self.extend_to(until_ms)
        first = -(-(int(from_ms) - self.start_ms) // self.bar_ms)
        last = (int(until_ms) - self.start_ms - 1) // self.bar_ms
        if last >= first:
            points = self.points.copy()
            points[first:last + 1, :] = price
            high, low = self.high.copy(), self.low.copy()
            high[first:last + 1] = price
            low[first:last + 1] = price
            self.points, self.high, self.low = points, high, low
        return self.start_ms + first * self.bar_ms


def _crossing(t0: float, t1: float, v0: float, v1: float, lo_t: float, hi_t: float, price: float,
              below: bool) -> float | None:
    """Where the segment from (t0, v0) to (t1, v1), cut to [lo_t, hi_t], first reaches ``price``."""

    def value(t: float) -> float:
        return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def reached(v: float) -> bool:
        return v <= price if below else v >= price

    start_value = value(lo_t)
    if reached(start_value):
        return lo_t
    if not reached(value(hi_t)) or v1 == v0:
        return None
    return t0 + (price - v0) / (v1 - v0) * (t1 - t0)


def _flat(price: float) -> BarMaker:
    """Bars that stay at ``price`` with no volume: what a replay does after its data ends."""

    def make(count: int, last_close: float) -> tuple[np.ndarray, ...]:
        flat = np.full(count, last_close if math.isfinite(last_close) else price)
        return flat, flat, flat, flat, np.zeros(count)

    return make


def replay_series(frame: pd.DataFrame, *, bar_ms: int, now_ms: int, history: int = _DEFAULTS.history,
                  max_bars: int = 400_000) -> BarSeries:
    """Lay one symbol's candles (open, high, low, close, volume; sorted) on the clock, one per ``bar_ms``.

    The bar ``history`` rows into the data is the one forming at ``now_ms`` (fewer when the data
    is shorter), so ``history`` closed bars lie in the past for clients' warm-up.
    """
    if len(frame) < 2:
        raise DataError("replaying candles needs at least two bars")
    history = max(0, min(int(history), len(frame) - 1))
    start_ms = (int(now_ms) // bar_ms - history) * bar_ms
    columns = [frame[name].to_numpy(dtype=np.float64) for name in ("open", "high", "low", "close", "volume")]
    if not all(np.isfinite(column).all() for column in columns[:4]) or (columns[3] <= 0).any():
        raise DataError("replayed candles must have finite, positive prices")
    return BarSeries(start_ms, bar_ms, tuple(columns), _flat(float(columns[3][-1])), max_bars=max_bars)


def random_walk_series(*, seed: int, now_ms: int, start_price: float = _DEFAULTS.start_price,
                       volatility: float = _DEFAULTS.volatility, history: int = _DEFAULTS.history,
                       max_bars: int = 400_000) -> BarSeries:
    """A seeded random walk of 1-second bars, ``history`` of them before ``now_ms``, growing forever.

    Each hour of bars is drawn with its own seed (``seed``, block number), chained on the last
    close, so the same seed and clock always give the same prices.
    """
    if not (math.isfinite(start_price) and start_price > 0):
        raise DataError(f"random walk start price must be positive, got {start_price!r}")
    blocks = [0]

    def make(count: int, last_close: float) -> tuple[np.ndarray, ...]:
        block_seed = (seed * 1_000_003 + blocks[0]) % 2**32
        frame = generate_candles(count, frequency="1s", seed=block_seed, start_price=last_close,
                                 volatility=volatility)
        blocks[0] += 1
        return tuple(frame[name].to_numpy(dtype=np.float64) for name in ("open", "high", "low", "close", "volume"))

    first = make(max(int(history) + 1, _BLOCK), start_price)
    start_ms = (int(now_ms) // 1000 - int(history)) * 1000
    return BarSeries(start_ms, 1000, first, make, max_bars=max_bars)
