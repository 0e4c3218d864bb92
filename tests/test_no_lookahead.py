"""No lookahead: decide() sees only bars closed by the cycle time, peeking raises LookaheadError,
history comes back as copies, indicators that use future rows are refused, and orders fill after
the decision (next bar's open) or at the decision bar's close."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import LookaheadError
from tradeexecutor.state import TradeStatus
from tradeexecutor.strategy.loader import load_strategy

STRATEGIES = Path(__file__).parent / "strategies"
UTC = "UTC"


def weekday_bars(symbol: str, start: str = "2024-01-01", end: str = "2024-01-19", skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Daily candles on weekdays only; every price distinct: open = 100 + i, close = open + 0.5."""
    days = [d for d in pd.date_range(start, end, freq="D", tz=UTC) if d.weekday() < 5 and str(d.date()) not in skip]
    opens = 100.0 + np.arange(len(days))
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "open": opens,
            "high": opens + 1.5,
            "low": opens - 1.0,
            "close": opens + 0.5,
            "volume": 1000.0,
        },
        index=pd.DatetimeIndex(days, tz=UTC),
    )
    return frame


def hourly_bars(symbol: str, start: str, hours: int) -> pd.DataFrame:
    times = pd.date_range(start, periods=hours, freq="h", tz=UTC)
    opens = 50.0 + np.arange(hours) * 0.25
    return pd.DataFrame(
        {"symbol": symbol, "open": opens, "high": opens + 1, "low": opens - 1, "close": opens + 0.1, "volume": 1.0},
        index=pd.DatetimeIndex(times, tz=UTC),
    )


def load(name: str, overrides: dict | None = None, **replace):
    loaded = load_strategy(STRATEGIES / name, overrides)
    if replace:
        loaded = dataclasses.replace(loaded, **replace)
    return loaded


def records(loaded) -> list[dict]:
    return loaded.decide.__globals__["RECORDS"]


# ---------------------------------------------------------------------------------------------
# (a) what decide() sees


@pytest.mark.parametrize(
    "frame, cycle, offset, freq",
    [
        (weekday_bars("AAA"), timedelta(days=1), 0, pd.Timedelta(days=1)),
        (hourly_bars("AAA", "2024-03-01 00:00", 30), timedelta(hours=4), 0, pd.Timedelta(hours=1)),
        # Cycle times that are not bar close times: 10:30 sees only bars closed by 10:00.
        (hourly_bars("AAA", "2024-03-01 00:00", 12), timedelta(hours=1), 1800, pd.Timedelta(hours=1)),
    ],
    ids=["daily-weekdays", "hourly-4h-cycle", "hourly-1h-cycle-30m-offset"],
)
def test_decide_sees_only_closed_bars(frame: pd.DataFrame, cycle: timedelta, offset: int, freq: pd.Timedelta) -> None:
    loaded = load("lookahead_recorder.py", cycle_duration=cycle)
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity"})
    assert market.frequency == freq
    result = run_backtest(loaded, market, EngineConfig(cycle_offset_seconds=offset))
    seen = records(loaded)
    assert len(seen) == result.cycles > 2

    data = frame.drop(columns="symbol")
    data.index = data.index.as_unit("ns")  # MarketData holds nanosecond times
    data_close_time = data.index + freq
    rolling = data["close"].rolling(2).mean().to_numpy()
    previous = None
    for record in seen:
        ts = record["timestamp"]
        candles = record["candles"]
        # Every visible bar closed at or before the cycle time ...
        assert (candles.index + freq <= ts).all(), ts
        # ... and every bar closed by then is visible (nothing is withheld either).
        visible = data[data_close_time <= ts]
        assert record["bars"] == len(visible) == len(candles)
        pd.testing.assert_frame_equal(candles[["open", "high", "low", "close", "volume"]], visible, check_freq=False)
        # The last visible bar is the one that just closed; with an offset it closed `offset` before.
        assert record["last_row"].name == ts - freq - pd.Timedelta(seconds=offset)
        assert record["close"] == visible["close"].iloc[-1] == record["last_row"]["close"]
        assert record["bar"]["time"] == record["last_row"].name
        assert record["bar"]["close"] == record["close"]
        assert record["close_ago_1"] == visible["close"].iloc[-2] if len(visible) > 1 else np.isnan(record["close_ago_1"])
        assert list(record["last_two"].index) == list(visible.index[-2:])
        # Indicators at the last closed bar, and their history up to it.
        n = len(visible)
        assert record["c"] == record["close"]
        np.testing.assert_array_equal(record["x_history"], rolling[:n])
        if n >= 2:
            assert record["x"] == pytest.approx(rolling[n - 1])
        else:
            assert np.isnan(record["x"])
        # Peeking ahead raises LookaheadError, every way.
        assert set(record["probes"].values()) == {"LookaheadError"}, record["probes"]
        # Scribbling on returned history changed the copies only.
        assert record["scribbled"]
        assert record["after_scribble_close"] == record["close"]
        pd.testing.assert_frame_equal(record["after_scribble_candles"], candles)
        if previous is not None:
            assert ts > previous["timestamp"]
            # The next cycle sees the original data again.
            assert (candles["close"] > 0).all()
            np.testing.assert_array_equal(candles["close"].to_numpy()[: previous["bars"]],
                                          previous["candles"]["close"].to_numpy())
        previous = record


def test_cycle_times_skip_the_weekend_and_see_fridays_bar() -> None:
    loaded = load("lookahead_recorder.py")
    run_backtest(loaded, MarketData.from_long_frame(weekday_bars("AAA"), asset_types={"AAA": "equity"}))
    stamps = [r["timestamp"] for r in records(loaded)]
    # Saturday 00:00 runs (Friday's bar closed); Sunday and Monday 00:00 have nothing new.
    assert pd.Timestamp("2024-01-06", tz=UTC) in stamps
    assert pd.Timestamp("2024-01-07", tz=UTC) not in stamps
    assert pd.Timestamp("2024-01-08", tz=UTC) not in stamps
    saturday = next(r for r in records(loaded) if r["timestamp"] == pd.Timestamp("2024-01-06", tz=UTC))
    assert saturday["last_row"].name == pd.Timestamp("2024-01-05", tz=UTC)
    assert saturday["bars"] == 5


def test_two_symbols_with_different_gaps() -> None:
    aaa = weekday_bars("AAA")
    bbb = weekday_bars("BBB", skip=("2024-01-03", "2024-01-04", "2024-01-10"))
    bbb[["open", "high", "low", "close"]] += 1000.0
    frame = pd.concat([aaa, bbb]).sort_index()
    loaded = load("lookahead_two_symbols.py")
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity", "BBB": "equity"})
    run_backtest(loaded, market)
    seen = records(loaded)
    assert len(seen) == 15  # one per AAA bar; BBB's gaps are days AAA still trades
    for record in seen:
        ts = record["timestamp"]
        assert set(record["probes"]) == {"LookaheadError"}
        assert record["default_symbol"] == "ValueError"
        for symbol, source in (("AAA", aaa), ("BBB", bbb)):
            data = source.drop(columns="symbol")
            visible = data[data.index + pd.Timedelta(days=1) <= ts]
            got = record[symbol]
            assert got["bars"] == len(visible) == len(got["candles"])
            assert (got["candles"].index + pd.Timedelta(days=1) <= ts).all()
            if len(visible):
                assert got["close"] == visible["close"].iloc[-1] == got["indicator"]
            else:
                assert np.isnan(got["close"]) and np.isnan(got["indicator"])
    # On Thursday 00:00 BBB's last bar is still Tuesday's (Wednesday is missing).
    thursday = next(r for r in seen if r["timestamp"] == pd.Timestamp("2024-01-04", tz=UTC))
    assert thursday["BBB"]["candles"].index[-1] == pd.Timestamp("2024-01-02", tz=UTC)
    assert thursday["AAA"]["candles"].index[-1] == pd.Timestamp("2024-01-03", tz=UTC)


# ---------------------------------------------------------------------------------------------
# (b) indicators that look ahead are refused


@pytest.mark.parametrize("mode", ["shift", "normalise", "centered"])
def test_peeking_indicator_refused_when_backtest_starts(mode: str) -> None:
    loaded = load("lookahead_peeking_indicators.py", {"mode": mode})
    market = MarketData.from_long_frame(weekday_bars("AAA"), asset_types={"AAA": "equity"})
    with pytest.raises(LookaheadError) as info:
        run_backtest(loaded, market)
    message = str(info.value)
    assert "'peek'" in message and "AAA" in message and "looks ahead" in message


def test_honest_indicator_is_accepted() -> None:
    loaded = load("lookahead_peeking_indicators.py", {"mode": "honest"})
    market = MarketData.from_long_frame(weekday_bars("AAA"), asset_types={"AAA": "equity"})
    result = run_backtest(loaded, market)
    assert result.cycles == 15


def test_lookahead_check_can_be_switched_off() -> None:
    loaded = load("lookahead_peeking_indicators.py", {"mode": "shift"})
    market = MarketData.from_long_frame(weekday_bars("AAA"), asset_types={"AAA": "equity"})
    result = run_backtest(loaded, market, EngineConfig(check_indicator_lookahead=False))
    assert result.cycles == 15


# ---------------------------------------------------------------------------------------------
# (c) when orders fill


def _trades(result):
    positions = list(result.state.portfolio.all_positions())
    assert len(positions) == 1
    return positions[0].trades


def test_next_open_fills_at_the_open_of_the_bar_after_the_decision() -> None:
    frame = weekday_bars("AAA")
    loaded = load("lookahead_fill_timing.py")  # opens at Sat 2024-01-06 00:00, closes at Thu 2024-01-11 00:00
    result = run_backtest(loaded, MarketData.from_long_frame(frame, asset_types={"AAA": "equity"}))
    buy, sell = _trades(result)
    assert buy.status == sell.status == TradeStatus.executed.value
    assert buy.planned_at == pd.Timestamp("2024-01-06", tz=UTC)
    # Decision after Friday's bar: the next bar is Monday's, not Saturday's.
    assert buy.executed_at == pd.Timestamp("2024-01-08", tz=UTC)
    assert buy.executed_price == frame.loc["2024-01-08", "open"].item()
    assert buy.planned_price == frame.loc["2024-01-05", "close"].item()
    # 50 % of 10,000 at Monday's open 105.0: floor(5000 / 105) = 47 shares.
    assert buy.executed_quantity == 47
    assert sell.planned_at == pd.Timestamp("2024-01-11", tz=UTC)
    assert sell.executed_at == pd.Timestamp("2024-01-11", tz=UTC)
    assert sell.executed_price == frame.loc["2024-01-11", "open"].item()
    assert sell.executed_quantity == -47


def test_close_timing_fills_at_the_decision_bars_close() -> None:
    frame = weekday_bars("AAA")
    loaded = load("lookahead_fill_timing.py")
    config = EngineConfig(execution=ExecutionConfig(fill_timing="close"))
    result = run_backtest(loaded, MarketData.from_long_frame(frame, asset_types={"AAA": "equity"}), config)
    buy, sell = _trades(result)
    # Friday's bar closes at Saturday 00:00 at 104.5.
    assert buy.executed_at == pd.Timestamp("2024-01-06", tz=UTC)
    assert buy.executed_price == frame.loc["2024-01-05", "close"].item() == 104.5
    assert buy.executed_quantity == 47  # floor(5000 / 104.5) = 47
    # Wednesday's bar closes at Thursday 00:00.
    assert sell.executed_at == pd.Timestamp("2024-01-11", tz=UTC)
    assert sell.executed_price == frame.loc["2024-01-10", "close"].item()


def test_next_open_never_fills_at_a_bar_that_opened_before_the_decision() -> None:
    # Hourly bars, 1h cycle, 30 minute offset: the 10:30 decision must not fill at the 10:00 open.
    frame = hourly_bars("AAA", "2024-03-01 00:00", 24)
    loaded = load("lookahead_fill_timing.py", {"open_on": "2024-03-01T10:30", "close_on": "2024-03-01T15:30"},
                  cycle_duration=timedelta(hours=1))
    config = EngineConfig(cycle_offset_seconds=1800)
    result = run_backtest(loaded, MarketData.from_long_frame(frame, asset_types={"AAA": "equity"}), config)
    buy, sell = _trades(result)
    assert buy.planned_at == pd.Timestamp("2024-03-01 10:30", tz=UTC)
    assert buy.planned_price == frame.loc["2024-03-01 09:00", "close"].item()
    assert buy.executed_at == pd.Timestamp("2024-03-01 11:00", tz=UTC)
    assert buy.executed_price == frame.loc["2024-03-01 11:00", "open"].item()
    assert sell.executed_at == pd.Timestamp("2024-03-01 16:00", tz=UTC)
    assert sell.executed_price == frame.loc["2024-03-01 16:00", "open"].item()
    for trade in (buy, sell):
        assert trade.executed_at >= trade.planned_at
