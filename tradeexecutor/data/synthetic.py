"""Generate seeded synthetic OHLCV candles, for scale tests and benchmarks without data files.

The candles are a geometric random walk in the long-frame shape of
:func:`tradeexecutor.data.candles.load_candles`. Generation is vectorised numpy: a million bars
take a few tens of milliseconds, ten million fit in memory comfortably.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tradeexecutor.errors import ConfigError, DataError
from tradeexecutor.timeframe import parse_duration, utc_timestamp

__all__ = ["generate_candles"]


def generate_candles(
    bars: int,
    *,
    frequency: str = "1m",
    start: str = "2020-01-01",
    seed: int = 0,
    symbol: str = "SYN",
    start_price: float = 100.0,
    volatility: float = 0.001,
    drift: float = 0.0,
) -> pd.DataFrame:
    """A reproducible random-walk candle frame, so tests and benchmarks need no data files.

    Each bar's log return is ``drift + volatility * N(0, 1)``; the open of bar ``i + 1`` is the
    close of bar ``i``; high and low add wicks beyond the body, so ``low <= min(open, close)``
    and ``high >= max(open, close)``. Volume is log-normal and positive. The same arguments
    always give the same frame.

    >>> generate_candles(3, frequency="1h").index[1]
    Timestamp('2020-01-01 01:00:00+0000', tz='UTC')
    """
    _check_arguments(bars, symbol, start_price, volatility, drift)
    try:
        step = pd.Timedelta(parse_duration(frequency))
    except ConfigError as exc:
        raise DataError(f"generate_candles: {exc}") from exc
    try:
        first = utc_timestamp(start)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"generate_candles: cannot parse start={start!r}; use ISO 8601 such as 2020-01-01"
        ) from exc

    rng = np.random.default_rng(seed)
    close = np.exp(np.cumsum(rng.standard_normal(bars) * volatility + drift))
    close *= start_price
    open_ = np.empty(bars)
    open_[0] = start_price
    open_[1:] = close[:-1]
    # Wicks of up to a few volatilities, in log space, so they scale with the price.
    wick_scale = volatility * 0.5
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(bars)) * wick_scale)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(bars)) * wick_scale)
    volume = np.exp(rng.standard_normal(bars) * 0.5 + math.log(1000.0))

    index = pd.DatetimeIndex(
        (first.as_unit("ns").value + np.arange(bars, dtype=np.int64) * step.value).view("M8[ns]"),
        name="timestamp",
    ).tz_localize("UTC")
    columns = {
        "symbol": pd.Series(symbol, index=index, dtype="str"),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
    }
    frame = pd.DataFrame(columns, index=index, copy=False)
    return frame


def _check_arguments(bars: int, symbol: str, start_price: float, volatility: float, drift: float) -> None:
    """DataError for arguments that cannot give a valid frame."""
    if isinstance(bars, bool) or not isinstance(bars, (int, np.integer)) or bars < 1:
        raise DataError(f"generate_candles: bars must be a positive integer, got {bars!r}")
    if not isinstance(symbol, str) or not symbol.strip():
        raise DataError(f"generate_candles: symbol must be a non-empty string, got {symbol!r}")
    if not (math.isfinite(start_price) and start_price > 0):
        raise DataError(f"generate_candles: start_price must be positive, got {start_price!r}")
    if not (math.isfinite(volatility) and volatility >= 0):
        raise DataError(f"generate_candles: volatility must be zero or positive, got {volatility!r}")
    if not math.isfinite(drift):
        raise DataError(f"generate_candles: drift must be a finite number, got {drift!r}")
