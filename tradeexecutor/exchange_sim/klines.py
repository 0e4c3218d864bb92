"""Klines as Binance serves them: fixed intervals aligned to the epoch, the current one partial, up to 1000 a request.

A kline is labelled by its open time and reports its scheduled close time (open + interval - 1
ms) even while it is still forming; the forming one's close is the last price. Intervals from
1 second to 1 week are served; weekly klines open on Mondays, as on Binance. The calendar month
(``1M``) is refused with -1120, the one interval the simulator does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.prices import BarSeries

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

#: Binance's interval names and their length in ms.
INTERVALS: dict[str, int] = {
    "1s": _SECOND,
    "1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE, "30m": 30 * _MINUTE,
    "1h": _HOUR, "2h": 2 * _HOUR, "4h": 4 * _HOUR, "6h": 6 * _HOUR, "8h": 8 * _HOUR, "12h": 12 * _HOUR,
    "1d": _DAY, "3d": 3 * _DAY, "1w": 7 * _DAY,
}

#: Where an interval's grid starts: weekly klines open on Mondays, four days after the epoch's Thursday.
_GRID_OFFSET = {"1w": 4 * _DAY}

#: Klines per request: Binance's default and maximum.
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Kline:
    """One kline's numbers before they are formatted for the wire."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int
    trades: int


def interval_ms(name: str) -> int:
    """The length of interval ``name``; -1120 for a name Binance or the simulator does not know."""
    try:
        return INTERVALS[name]
    except KeyError:
        raise errors.invalid_interval() from None


def _floor(time_ms: int, interval: str) -> int:
    length, offset = INTERVALS[interval], _GRID_OFFSET.get(interval, 0)
    return (time_ms - offset) // length * length + offset


def klines(series: BarSeries, interval: str, *, now_ms: int, start_ms: int | None = None,
           end_ms: int | None = None, limit: int = DEFAULT_LIMIT) -> list[Kline]:
    """The klines of ``series`` Binance would return for these parameters at ``now_ms``.

    With ``start_ms``: klines opening at or after it, oldest first, up to ``limit``. Without it:
    the latest ``limit`` klines opening at or before ``end_ms`` (default: now, the forming one
    included). Nothing before the series' first bar, nothing after now.
    """
    length = interval_ms(interval)
    limit = max(1, min(int(limit), MAX_LIMIT))
    earliest = _floor(series.start_ms, interval)
    latest = _floor(now_ms, interval)
    if end_ms is not None:
        latest = min(latest, _floor(int(end_ms), interval))
    if start_ms is not None:
        first = max(earliest, -(-(int(start_ms) - earliest) // length) * length + earliest)
        last = min(latest, first + (limit - 1) * length)
    else:
        last = latest
        first = max(earliest, last - (limit - 1) * length)
    if first > last:
        return []
    opens = list(range(first, last + 1, length))
    # Whole windows of whole bars take the fast path; the first (before the data) and the forming one walk the path.
    fast = [t for t in opens if _whole(series, t, length, now_ms)]
    result: dict[int, Kline] = {}
    if fast:
        per_window = length // series.bar_ms
        first_bar = (fast[0] - series.start_ms) // series.bar_ms
        columns = series.whole_bars(first_bar, len(fast), per_window)
        opens_, highs, lows, closes, volumes, active = columns
        for i, open_time in enumerate(fast):
            result[open_time] = Kline(open_time, float(opens_[i]), float(highs[i]), float(lows[i]),
                                      float(closes[i]), float(volumes[i]), open_time + length - 1, int(active[i]))
    for open_time in opens:
        if open_time not in result:
            window = series.window(open_time, min(open_time + length, now_ms + 1))
            result[open_time] = Kline(open_time, window.open, window.high, window.low, window.close,
                                      window.volume, open_time + length - 1, window.active_bars)
    return [result[t] for t in opens]


def _whole(series: BarSeries, open_time: int, length: int, now_ms: int) -> bool:
    """True when the kline at ``open_time`` is closed and made of whole bars the series still keeps."""
    return (
        length % series.bar_ms == 0
        and open_time >= series.start_ms
        and (open_time - series.start_ms) % series.bar_ms == 0
        and open_time + length <= min(now_ms + 1, series.end_ms)
    )


def quote_volume(kline: Kline) -> float:
    """Traded value in the quote asset, estimated at the kline's mean of high, low and close."""
    return kline.volume * (kline.high + kline.low + kline.close) / 3.0

