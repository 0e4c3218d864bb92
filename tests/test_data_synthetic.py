"""Tests for tradeexecutor.data.synthetic: shape, OHLC invariants, determinism, speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeexecutor.data import generate_candles, infer_frequency
from tradeexecutor.errors import DataError


def test_shape_columns_and_index() -> None:
    frame = generate_candles(1000, symbol="ABC")
    assert list(frame.columns) == ["symbol", "open", "high", "low", "close", "volume"]
    assert len(frame) == 1000
    assert frame.index.name == "timestamp"
    assert frame.index.dtype == "datetime64[ns, UTC]"
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert set(frame["symbol"]) == {"ABC"}
    assert pd.api.types.is_string_dtype(frame["symbol"])
    for name in ("open", "high", "low", "close", "volume"):
        assert frame[name].dtype == np.float64
    assert frame["open"].iloc[0] == 100.0


def test_ohlc_invariants_on_100k_bars() -> None:
    frame = generate_candles(100_000, seed=7, volatility=0.01, drift=0.0001)
    o, h, low, c, v = (frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))
    assert np.all(h >= np.maximum(o, c))
    assert np.all(low <= np.minimum(o, c))
    assert np.all(low > 0) and np.all(np.isfinite(h))
    assert np.all(v > 0)
    np.testing.assert_array_equal(o[1:], c[:-1])


def test_same_seed_same_frame_other_seed_differs() -> None:
    pd.testing.assert_frame_equal(generate_candles(5000, seed=3), generate_candles(5000, seed=3))
    assert not generate_candles(5000, seed=3)["close"].equals(generate_candles(5000, seed=4)["close"])


@pytest.mark.parametrize(
    ("frequency", "delta"),
    [
        ("1s", pd.Timedelta(seconds=1)),
        ("1m", pd.Timedelta(minutes=1)),
        ("15m", pd.Timedelta(minutes=15)),
        ("4h", pd.Timedelta(hours=4)),
        ("1d", pd.Timedelta(days=1)),
    ],
)
def test_frequency_and_start_honoured(frequency: str, delta: pd.Timedelta) -> None:
    frame = generate_candles(50, frequency=frequency, start="2021-06-01 12:00")
    assert frame.index[0] == pd.Timestamp("2021-06-01 12:00", tz="UTC")
    assert (np.diff(frame.index.asi8) == delta.value).all()
    assert infer_frequency(frame) == delta


def test_zero_volatility_is_flat() -> None:
    frame = generate_candles(10, volatility=0.0, start_price=5.0)
    assert (frame[["open", "high", "low", "close"]] == 5.0).all().all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bars": 0},
        {"bars": -1},
        {"bars": 1.5},
        {"bars": 10, "frequency": "1x"},
        {"bars": 10, "start": "not a date"},
        {"bars": 10, "start_price": 0.0},
        {"bars": 10, "volatility": -0.1},
        {"bars": 10, "drift": float("nan")},
        {"bars": 10, "symbol": ""},
    ],
)
def test_bad_arguments_raise_data_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(DataError):
        generate_candles(**kwargs)  # type: ignore[arg-type]


def test_one_million_bars_hold_the_candle_invariants() -> None:
    """Scale, not speed: generation time is measured in bench/, never asserted here."""
    frame = generate_candles(1_000_000, seed=3)
    assert len(frame) == 1_000_000
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["low"] > 0).all()
