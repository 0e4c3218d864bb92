"""MarketData built without copies of the candles: the columns are the loaded frame's own memory, safely.

At 5M bars every float64 column is 40 MB; building MarketData used to copy each column out of a
frame that a groupby had copied first, and keep both. Now a one-symbol long frame is taken as it
is, each column is a read-only view of the frame's memory (pandas >= 3 copies on write, so a
later write to the caller's frame cannot reach it), and one instrument's timeline, last-closed
and closing-at columns share one array each way. The peak itself is measured by
``bench/bench_backtest.py`` (docs/benchmarks.md), not here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeexecutor.data import generate_candles
from tradeexecutor.data.market import MarketData

pytestmark = pytest.mark.skipif(int(pd.__version__.split(".", 1)[0]) < 3, reason="shares memory under copy-on-write")

COLUMNS = ("open", "high", "low", "close", "volume")


def test_one_symbol_columns_are_the_frames_memory_and_stay_read_only() -> None:
    frame = generate_candles(5_000, frequency="1m", seed=4, symbol="SYN")
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    bars = market.bars["SYN"]
    for name in COLUMNS:
        column = getattr(bars, name)
        assert np.shares_memory(column, frame[name].to_numpy()), name
        assert not column.flags.writeable and column.dtype == np.float64 and column.flags.c_contiguous
        with pytest.raises(ValueError):
            column[0] = 1.0
    assert np.shares_memory(bars.open_time_ns, frame.index.asi8)
    # One instrument: the timeline is its close times, and bar i is both last closed and closing at step i.
    assert np.shares_memory(market.timeline_ns, bars.close_time_ns)
    assert np.shares_memory(market.last_closed["SYN"], market.closing_at["SYN"])
    np.testing.assert_array_equal(market.last_closed["SYN"], np.arange(5_000))


def test_a_later_write_to_the_callers_frame_does_not_reach_the_market() -> None:
    frame = generate_candles(1_000, frequency="1m", seed=4, symbol="SYN")
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    before = market.bars["SYN"].close.copy()
    frame.loc[frame.index[:10], "close"] = -1.0
    frame["open"] = 0.0
    np.testing.assert_array_equal(market.bars["SYN"].close, before)
    assert market.bars["SYN"].open[0] > 0
    assert (market.bars["SYN"].frame["close"].to_numpy() == before).all()


def test_appending_to_a_shared_column_leaves_the_frame_alone() -> None:
    frame = generate_candles(100, frequency="1m", seed=4, symbol="SYN")
    original = frame.copy()
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    last_close = int(market.timeline_ns[-1])
    market.append(last_close + 60_000_000_000, {"SYN": (1.0, 2.0, 0.5, 1.5, 10.0)})
    assert len(market) == 101 and market.bars["SYN"].close[-1] == 1.5
    assert market.last_closed["SYN"][-1] == 100 and market.closing_at["SYN"][-1] == 100
    pd.testing.assert_frame_equal(frame, original)


@pytest.mark.parametrize("gaps", [False, True])
def test_several_symbols_index_the_same_bars_as_a_search_of_the_timeline(gaps: bool) -> None:
    frames = [generate_candles(600, frequency="1m", seed=seed, symbol=f"S{seed}") for seed in range(3)]
    if gaps:
        frames[1] = frames[1].iloc[::4]
        frames[2] = frames[2].iloc[100:]
    market = MarketData.from_long_frame(pd.concat(frames))
    for symbol, bars in market.bars.items():
        closes = bars.close_time_ns
        last = np.searchsorted(closes, market.timeline_ns, side="right") - 1
        np.testing.assert_array_equal(market.last_closed[symbol], last)
        exact = (last >= 0) & (closes[np.maximum(last, 0)] == market.timeline_ns)
        np.testing.assert_array_equal(market.closing_at[symbol], np.where(exact, last, -1))


def test_the_native_frequency_is_the_most_common_gap_counted_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradeexecutor.data import market as market_module

    frame = generate_candles(5_000, frequency="1m", seed=4, symbol="SYN")
    frame = frame.drop(frame.index[1000:1400:2])  # some 2-minute gaps, fewer than the 1-minute ones
    monkeypatch.setattr(market_module, "_GAP_CHUNK", 333)
    assert MarketData.from_long_frame(frame).frequency == pd.Timedelta(minutes=1)
