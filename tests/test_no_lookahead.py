"""No lookahead: decide() sees only bars closed by the cycle time, peeking raises LookaheadError,
history comes back as copies, indicators that use future rows are refused, and orders fill after
the decision (next bar's open) or at the decision bar's close."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import LookaheadError, LookaheadRefusedError
from tradeexecutor.state import OrderStatus
from tradeexecutor.strategy.indicators import _first_difference, causality_cuts, compute_indicators
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


def random_walk_bars(symbol: str, days: int, seed: int = 0) -> pd.DataFrame:
    """Daily candles on every day, a random walk of distinct closes."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, days)))
    opens = np.concatenate([[100.0], close[:-1]])
    times = pd.date_range("2020-01-01", periods=days, freq="D", tz=UTC)
    return pd.DataFrame({"symbol": symbol, "open": opens, "high": np.maximum(opens, close) * 1.01,
                         "low": np.minimum(opens, close) * 0.99, "close": close, "volume": 1000.0},
                        index=pd.DatetimeIndex(times, tz=UTC))


def refusal(loaded, frame: pd.DataFrame) -> str:
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity"})
    with pytest.raises(LookaheadRefusedError) as info:
        run_backtest(loaded, market)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{STRATEGIES / 'lookahead_peeking_indicators.py'}: indicator 'peek' for AAA looks ahead")
    return message


@pytest.mark.parametrize("mode", ["bfill", "interpolate"])
def test_a_warm_up_filled_from_later_values_is_refused(mode: str) -> None:
    # rolling(5).mean().bfill(): bars 0-3 take bar 4's average, known only when bar 4 closes.
    message = refusal(load("lookahead_peeking_indicators.py", {"mode": mode}), weekday_bars("AAA"))
    assert "its value at bar 0 (2024-01-01 00:00:00+00:00)" in message


def test_foresight_that_begins_late_in_the_data_is_refused() -> None:
    frame = random_walk_bars("AAA", 200)
    start = frame.index[180]  # the last tenth of the data peeks at the next close
    loaded = load("lookahead_peeking_indicators.py", {"mode": "late_shift", "leak_from": start.isoformat()})
    message = refusal(loaded, frame)
    assert f"its value at bar 180 ({start})" in message
    assert f"changes when the candles from {frame.index[181]} on are left out" in message


def test_the_cuts_are_early_middle_and_last_and_bounded_in_cost() -> None:
    assert causality_cuts(15) == [1, 7, 14]
    assert causality_cuts(1_000_000)[:4] == [1, 2, 4, 8]
    for bars in (2, 3, 10, 64, 1000, 12_345, 1_000_000, 2_000_001):
        cuts = causality_cuts(bars)
        assert cuts[0] == 1 and cuts[-1] == bars - 1 and bars // 2 in cuts
        assert sum(cuts) <= 1.75 * bars + 2  # rows recomputed, whatever the length


def test_a_prefix_is_compared_bit_for_bit_first_and_value_by_value_when_the_bits_differ() -> None:
    full = np.array([np.nan, 0.0, 1.5, 2.0, 3.0])
    assert _first_difference(full[:4], full[:4].copy()) is None  # the same bits
    other_nan = np.frombuffer(np.array([0x7FF8000000000001], dtype=np.int64).tobytes(), dtype=np.float64)[0]
    assert np.isnan(other_nan)
    assert _first_difference(full[:4], np.array([other_nan, -0.0, 1.5, 2.0 + 1e-15])) is None  # equal values
    assert _first_difference(full[:4], np.array([np.nan, 0.0, 1.5, 2.5])) == 3  # a real difference is found
    assert _first_difference(full[:4], np.array([1.0, 0.0, 1.5, 2.0])) == 0  # a NaN warm-up filled in


@pytest.mark.parametrize("seed", [0, 1])
def test_honest_indicators_of_every_kind_on_two_instruments_are_accepted(seed: int) -> None:
    frame = pd.concat([random_walk_bars("AAA", 300, seed), random_walk_bars("BBB", 280, seed + 10)]).sort_index()
    loaded = load("lookahead_honest.py")
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity", "BBB": "equity"})
    result = run_backtest(loaded, market)
    assert result.cycles >= 299
    # What the engine stored is the indicator step on the whole data, unchanged.
    for symbol in ("AAA", "BBB"):
        candles = market.bars[symbol].frame
        expected = loaded.indicators(candles, loaded.parameters)
        stored = compute_indicators(loaded.indicators, market, loaded.parameters, check_causality=False)
        assert set(stored.values[symbol]) == set(expected) and len(expected) == 12
        for name, series in expected.items():
            np.testing.assert_array_equal(stored.values[symbol][name], np.asarray(series, dtype=np.float64))


def test_an_indicator_step_that_scribbles_on_its_candles_changes_only_its_own_copy(tmp_path: Path) -> None:
    body = ("def indicators(candles, parameters):\n"
            "    candles['close'] *= 2.0\n"
            "    candles.iloc[0, 0] = -1.0\n"
            "    candles['extra'] = 1.0\n"
            "    try:\n"
            "        candles['high'].to_numpy()[0] = -1.0\n"
            "    except ValueError:\n"
            "        pass\n"
            "    return {'doubled': candles['close']}\n\n"
            "def decide(ctx):\n    return []\n")
    loaded = load_strategy(write_strategy(tmp_path, body))
    frame = weekday_bars("AAA")
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity"})
    before = market.bars["AAA"].frame.copy()
    run_backtest(loaded, market)
    pd.testing.assert_frame_equal(market.bars["AAA"].frame, before)
    assert list(market.bars["AAA"].frame.columns) == ["open", "high", "low", "close", "volume"]
    np.testing.assert_array_equal(market.bars["AAA"].close, frame["close"].to_numpy())


def _candle_csv(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.copy()
    out.index = out.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.index.name = "timestamp"
    out.to_csv(path)
    return path


@pytest.mark.parametrize(("overrides", "bar"), [(["mode=bfill"], 0), (["mode=shift"], 0),
                                                (["mode=late_shift", "leak_from=2020-06-29"], 180)],
                         ids=["bfill", "shift", "late_shift"])
def test_a_refused_indicator_exits_2_with_one_line(tmp_path: Path, overrides: list[str], bar: int) -> None:
    data = _candle_csv(random_walk_bars("AAA", 200), tmp_path / "candles.csv")
    strategy = STRATEGIES / "lookahead_peeking_indicators.py"
    params = [arg for override in overrides for arg in ("-p", override)]
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "backtest", str(strategy), *params,
                             "--data", str(data), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {strategy}: indicator 'peek' for AAA looks ahead: its value at bar {bar} ")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# (b2) strategy code that reaches past the cycle context is refused when it loads

STRATEGY_HEAD = '''"""A strategy probing the engine's internals."""
import math

import numpy as np

from tradeexecutor.strategy.api import CycleContext, Symbol

name = "Probe"
description = "Reaches for data it should not see."
cycle_duration = "1d"
parameters = {"symbol": Symbol("AAA", asset_type="equity")}
'''


def write_strategy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(STRATEGY_HEAD + body)
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


ESCAPES = {
    "ctx._market": "def decide(ctx):\n    future = ctx._market.bars['AAA'].close[-1]\n    return []\n",
    "ctx._indicators": "def decide(ctx):\n    later = ctx._indicators['AAA']\n    return []\n",
    "ctx._default_close": "def decide(ctx):\n    closes = ctx._default_close\n    return []\n",
    "ctx._set_paused": "def decide(ctx):\n    ctx._set_paused(False)\n    return []\n",
    "ctx._state": "def decide(ctx):\n    ctx._state.portfolio.cash = 1e9\n    return []\n",
    "class attribute": "def decide(ctx):\n    slot = CycleContext._market\n    return []\n",
    "ctx.__class__": "def decide(ctx):\n    kind = ctx.__class__\n    return []\n",
    "getattr literal": "def decide(ctx):\n    m = getattr(ctx, '_market')\n    return []\n",
    "getattr computed": "def decide(ctx):\n    m = getattr(ctx, '_' + 'market')\n    return []\n",
    "getattr alias": "peek = getattr\n\ndef decide(ctx):\n    return []\n",
    "vars": "def decide(ctx):\n    everything = vars(ctx)\n    return []\n",
    "eval": "def decide(ctx):\n    m = eval('ctx.' + chr(95) + 'market')\n    return []\n",
    "format field": "def decide(ctx):\n    text = '{0._market}'.format(ctx)\n    return []\n",
    "attrgetter": "import operator\n\ndef decide(ctx):\n    m = operator.attrgetter('market')\n    return []\n",
    "generator frame": ("def decide(ctx):\n    probe = (x for x in [1])\n    next(probe)\n"
                        "    engine = probe.gi_frame\n    return []\n"),
    "traceback frame": ("def decide(ctx):\n    try:\n        ctx.close(ago=-1)\n    except Exception as exc:\n"
                        "        frame = exc.__traceback__\n    return []\n"),
    "match keyword": ("def decide(ctx):\n    match ctx:\n        case CycleContext(_market=m):\n"
                      "            pass\n    return []\n"),
    "import inspect": "import inspect\n\ndef decide(ctx):\n    return []\n",
    "import sys": "import sys\n\ndef decide(ctx):\n    return []\n",
    "import gc": "from gc import get_referrers\n\ndef decide(ctx):\n    return []\n",
    "engine module": "from tradeexecutor.data.source import load_market\n\ndef decide(ctx):\n    return []\n",
    "builtins name": "def decide(ctx):\n    b = __builtins__\n    return []\n",
    "in indicators": ("def indicators(candles, parameters):\n    return {'x': candles._mgr}\n\n"
                      "def decide(ctx):\n    return []\n"),
}


@pytest.mark.parametrize("body", list(ESCAPES.values()), ids=list(ESCAPES))
def test_strategy_code_reaching_past_the_context_is_refused(tmp_path: Path, body: str) -> None:
    path = write_strategy(tmp_path, body)
    # The first line that reaches out: every probe's other lines are ordinary code.
    marks = ("._", ".__", "getattr", "vars(", "eval(", "attrgetter", "gi_frame", "import inspect", "import sys",
             "from gc", "from tradeexecutor", "__builtins__", "_market=")
    offending = STRATEGY_HEAD.count("\n") + next(
        i for i, line in enumerate(body.splitlines(), 1) if any(mark in line for mark in marks))
    with pytest.raises(LookaheadRefusedError) as info:
        load_strategy(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{offending}: refused: "), message
    assert "\n" not in message


def test_reading_ctx_market_exits_2_with_one_line_before_anything_runs(tmp_path: Path) -> None:
    path = write_strategy(tmp_path, ESCAPES["ctx._market"] + "\nopen('ran', 'w').close()\n")
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "backtest", str(path),
                             "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = line_of(path, "ctx._market")
    assert result.stderr.strip().splitlines() == [
        f"error: {path}:{line}: refused: `._market` reads a private or special attribute; the cycle context's "
        "private attributes hold every candle, later ones included: use ctx.close(), ctx.candles(), "
        "ctx.indicator() and the other public methods"]
    assert not (tmp_path / "ran").exists(), "the module was refused before any of it ran"
    assert not (tmp_path / "out").exists()


def test_ordinary_strategy_code_is_accepted(tmp_path: Path) -> None:
    body = (
        "import operator\n"
        "from collections import deque\n"
        "import pandas as pd\n\n"
        "RECENT = deque(maxlen=3)\n\n"
        "class Memory:\n"
        "    def __init__(self):\n"
        "        self.count = 0\n\n"
        "MEMORY = Memory()\n\n"
        "def indicators(candles, parameters):\n"
        "    close = candles['close']\n"
        "    return {'sma': close.rolling(3).mean(), 'gap': operator.sub(close, close.shift(1))}\n\n"
        "def decide(ctx):\n"
        "    \"\"\"Docstrings may mention ctx._market.\"\"\"\n"
        "    MEMORY.count += 1\n"
        "    RECENT.append(getattr(ctx.parameters, 'symbol'))\n"
        "    try:\n"
        "        ctx.close(ago=-1)\n"
        "    except Exception as exc:\n"
        "        RECENT.append(type(exc).__name__)\n"
        "    return [] if math.isnan(ctx.close()) or np.isnan(ctx.indicator('sma')) else []\n\n"
        "if __name__ == '__main__':\n"
        "    print(name)\n"
    )
    loaded = load_strategy(write_strategy(tmp_path, body))
    result = run_backtest(loaded, MarketData.from_long_frame(weekday_bars("AAA"), asset_types={"AAA": "equity"}))
    assert result.cycles == 15
    assert loaded.decide.__globals__["MEMORY"].count == 15


# ---------------------------------------------------------------------------------------------
# (c) when orders fill


def _trades(result):
    positions = list(result.state.portfolio.all_positions())
    assert len(positions) == 1
    return positions[0].orders


def test_next_open_fills_at_the_open_of_the_bar_after_the_decision() -> None:
    frame = weekday_bars("AAA")
    loaded = load("lookahead_fill_timing.py")  # opens at Sat 2024-01-06 00:00, closes at Thu 2024-01-11 00:00
    result = run_backtest(loaded, MarketData.from_long_frame(frame, asset_types={"AAA": "equity"}))
    buy, sell = _trades(result)
    assert buy.status == sell.status == OrderStatus.filled
    assert buy.created_at == pd.Timestamp("2024-01-06", tz=UTC)
    # Decision after Friday's bar: the next bar is Monday's, not Saturday's.
    assert buy.filled_at == pd.Timestamp("2024-01-08", tz=UTC)
    assert buy.average_fill_price == frame.loc["2024-01-08", "open"].item()
    assert buy.reference_price == frame.loc["2024-01-05", "close"].item()
    # 50 % of 10,000 at Monday's open 105.0: floor(5000 / 105) = 47 shares.
    assert buy.signed_filled_quantity == 47
    assert sell.created_at == pd.Timestamp("2024-01-11", tz=UTC)
    assert sell.filled_at == pd.Timestamp("2024-01-11", tz=UTC)
    assert sell.average_fill_price == frame.loc["2024-01-11", "open"].item()
    assert sell.signed_filled_quantity == -47


def test_close_timing_fills_at_the_decision_bars_close() -> None:
    frame = weekday_bars("AAA")
    loaded = load("lookahead_fill_timing.py")
    config = EngineConfig(execution=ExecutionConfig(fill_timing="close"))
    result = run_backtest(loaded, MarketData.from_long_frame(frame, asset_types={"AAA": "equity"}), config)
    buy, sell = _trades(result)
    # Friday's bar closes at Saturday 00:00 at 104.5.
    assert buy.filled_at == pd.Timestamp("2024-01-06", tz=UTC)
    assert buy.average_fill_price == frame.loc["2024-01-05", "close"].item() == 104.5
    assert buy.signed_filled_quantity == 47  # floor(5000 / 104.5) = 47
    # Wednesday's bar closes at Thursday 00:00.
    assert sell.filled_at == pd.Timestamp("2024-01-11", tz=UTC)
    assert sell.average_fill_price == frame.loc["2024-01-10", "close"].item()


def test_next_open_never_fills_at_a_bar_that_opened_before_the_decision() -> None:
    # Hourly bars, 1h cycle, 30 minute offset: the 10:30 decision must not fill at the 10:00 open.
    frame = hourly_bars("AAA", "2024-03-01 00:00", 24)
    loaded = load("lookahead_fill_timing.py", {"open_on": "2024-03-01T10:30", "close_on": "2024-03-01T15:30"},
                  cycle_duration=timedelta(hours=1))
    config = EngineConfig(cycle_offset_seconds=1800)
    result = run_backtest(loaded, MarketData.from_long_frame(frame, asset_types={"AAA": "equity"}), config)
    buy, sell = _trades(result)
    assert buy.created_at == pd.Timestamp("2024-03-01 10:30", tz=UTC)
    assert buy.reference_price == frame.loc["2024-03-01 09:00", "close"].item()
    assert buy.filled_at == pd.Timestamp("2024-03-01 11:00", tz=UTC)
    assert buy.average_fill_price == frame.loc["2024-03-01 11:00", "open"].item()
    assert sell.filled_at == pd.Timestamp("2024-03-01 16:00", tz=UTC)
    assert sell.average_fill_price == frame.loc["2024-03-01 16:00", "open"].item()
    for trade in (buy, sell):
        assert trade.filled_at >= trade.created_at


def test_prefix_comparison_is_bitwise_first_then_nan_aware_within_float_noise() -> None:
    """The causality check compares each prefix's values bit for bit first (the usual case, one integer
    comparison); anything else — a sign of zero, a last-bit difference, a real change — is judged as before."""
    full = np.array([np.nan, np.nan, 1.0, 2.5, 0.0, 3.0])
    assert _first_difference(full, full.copy()) is None  # NaNs included
    signed = full.copy()
    signed[4] = -0.0
    assert _first_difference(full, signed) is None  # equal values, other bits
    noisy = full.copy()
    noisy[3] = np.nextafter(2.5, 3.0)
    assert _first_difference(full, noisy) is None  # float noise
    changed = full.copy()
    changed[3] = 2.6
    assert _first_difference(full, changed) == 3
    appeared = full.copy()
    appeared[1] = 0.5
    assert _first_difference(full, appeared) == 1  # a value where the full run has NaN
