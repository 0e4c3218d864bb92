"""The simulator's price path and klines: candles laid on the clock, one path answering every question alike.

Hand-made candles check the path itself (open → low → high → close within an up bar), then the
bundled EURUSD replay and the random walk check klines against Binance's rules: epoch-aligned
windows, the forming kline partial, paging by start and end time, weekly klines on Mondays, and
the fast path for whole bars agreeing with a walk along the path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradeexecutor.data import load_bundled
from tradeexecutor.errors import DataError
from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.klines import INTERVALS, klines
from tradeexecutor.exchange_sim.prices import BarSeries, random_walk_series, replay_series

T0 = 1_700_000_000_000  # a whole second (20 s past a minute)
#: A multiple of the hand-made series' 3-second bars.
T3 = 1_700_000_001_000


def frame(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(rows), freq="h", tz="UTC")
    data = np.array(rows, dtype=float)
    return pd.DataFrame({"open": data[:, 0], "high": data[:, 1], "low": data[:, 2], "close": data[:, 3],
                         "volume": np.full(len(rows), 30.0)}, index=index)


#: An up bar, a down bar, an up bar, a down bar.
ROWS = [(10.0, 13.0, 9.0, 12.0), (12.0, 12.5, 8.0, 8.5), (8.5, 11.0, 8.0, 10.0), (10.0, 10.0, 7.0, 7.0)]


@pytest.fixture
def series() -> BarSeries:
    return replay_series(frame(ROWS), bar_ms=3000, now_ms=T3 + 2 * 3000, history=2)


def test_bars_are_laid_so_that_history_bars_lie_before_now(series: BarSeries) -> None:
    assert series.start_ms == T3 and series.bar_ms == 3000
    assert series.price_at(T3) == 10.0


def test_an_up_bar_walks_open_low_high_close_and_a_down_bar_open_high_low_close(series: BarSeries) -> None:
    assert series.price_at(T3 + 1000) == pytest.approx(9.0)  # a third of the way: the low
    assert series.price_at(T3 + 2000) == pytest.approx(13.0)  # two thirds: the high
    assert series.price_before(T3 + 3000) == 12.0  # just before the end: the close
    assert series.price_at(T3 + 3000) == 12.0  # the next bar opens
    assert series.price_at(T3 + 4000) == pytest.approx(12.5)  # down bar: the high first
    assert series.price_at(T3 + 5000) == pytest.approx(8.0)
    assert series.price_at(T3 + 500) == pytest.approx(9.5)  # halfway from open 10 to low 9


def test_a_window_of_whole_bars_has_their_open_high_low_close_and_volume(series: BarSeries) -> None:
    window = series.window(T3, T3 + 6000)
    assert (window.open, window.high, window.low, window.close) == (10.0, 13.0, 8.0, 8.5)
    assert window.volume == pytest.approx(60.0)
    part = series.window(T3, T3 + 1500)  # down to the low, then half way up towards the high
    assert (part.open, part.low) == (10.0, 9.0)
    assert part.high == part.close == pytest.approx(9.0 + 4.0 * 499 / 1000)  # its last millisecond, 1499
    assert part.volume == pytest.approx(15.0)


def test_first_touch_finds_the_first_instant_the_path_reaches_a_level(series: BarSeries) -> None:
    # From open 10 down to the low 9 over the first second: 9.5 is reached at 500 ms.
    assert series.first_touch(T3, T3 + 6000, 9.5, at_or_below=True) == T3 + 500
    # 12.4 is first reached going up from the low 9 to the high 13 (at 1850 ms).
    assert series.first_touch(T3, T3 + 6000, 12.4, at_or_below=False) == T3 + 1850
    # The second bar's high 12.5 touches 12.5 after the first bar's 13 did; nothing before `after`.
    assert series.first_touch(T3 + 2500, T3 + 6000, 12.5, at_or_below=False) == T3 + 2501
    assert series.first_touch(T3, T3 + 6000, 7.9, at_or_below=True) is None
    assert series.first_touch(T3, T3 + 900, 9.0, at_or_below=True) is None  # the low comes at 1000 ms


def test_after_the_data_ends_the_price_stays_at_the_last_close_without_volume(series: BarSeries) -> None:
    series.extend_to(T3 + 100_000)
    assert series.price_at(T3 + 50_000) == 7.0
    assert series.window(T3 + 12_000, T3 + 90_000).volume == 0.0


def test_a_pin_holds_the_price_from_the_next_bar_and_leaves_the_past_alone(series: BarSeries) -> None:
    before = series.window(T3, T3 + 3000)
    start = series.pin(T3 + 1000, T3 + 9000, 11.0)
    assert start == T3 + 3000  # the bar in progress is not rewritten
    assert series.window(T3, T3 + 3000) == before
    assert series.price_at(T3 + 4500) == 11.0 and series.price_before(T3 + 9000) == 11.0
    assert series.price_at(T3 + 9000) == 10.0  # then the market returns to its course


def test_replay_needs_two_bars_and_positive_prices() -> None:
    with pytest.raises(DataError, match="two bars"):
        replay_series(frame(ROWS[:1]), bar_ms=1000, now_ms=T3)
    with pytest.raises(DataError, match="positive"):
        replay_series(frame([(1, 1, 1, 1), (1, 1, 1, 0)]), bar_ms=1000, now_ms=T3)
    with pytest.raises(DataError, match="whole number of seconds"):
        replay_series(frame(ROWS), bar_ms=1500, now_ms=T3)


# -- klines --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    return load_bundled("eurusd-hourly").drop(columns="symbol")


def test_hourly_eurusd_replayed_as_1s_candles_serves_the_recorded_bars(eurusd: pd.DataFrame) -> None:
    now = T0 + 500  # half a second into the bar that is row 100
    path = replay_series(eurusd, bar_ms=1000, now_ms=now, history=100)
    rows = klines(path, "1s", now_ms=now, limit=5)
    assert [row.open_time for row in rows] == [T0 - 4000, T0 - 3000, T0 - 2000, T0 - 1000, T0]
    for row, source in zip(rows[:4], eurusd.iloc[96:100].itertuples()):
        assert (row.open, row.high, row.low, row.close) == pytest.approx(
            (source.open, source.high, source.low, source.close))
        assert row.close_time == row.open_time + 999
    forming = rows[-1]
    assert forming.close == pytest.approx(path.price_at(now))  # the forming kline ends at the last price
    assert forming.open == pytest.approx(eurusd.iloc[100].open)
    assert forming.volume == pytest.approx(eurusd.iloc[100].volume * 0.501)  # its first 501 ms


def test_whole_bar_klines_agree_with_a_walk_along_the_path() -> None:
    now = T0 + 7_777
    path = random_walk_series(seed=7, now_ms=now, start_price=50.0, volatility=0.002, history=7200)
    for interval in ("1s", "1m", "5m", "1h"):
        rows = klines(path, interval, now_ms=now, limit=100)
        assert rows, interval
        for row in rows:
            window = path.window(row.open_time, min(row.open_time + INTERVALS[interval], now + 1))
            assert (row.open, row.high, row.low, row.close) == pytest.approx(
                (window.open, window.high, window.low, window.close)), (interval, row.open_time)
            assert row.volume == pytest.approx(window.volume), (interval, row.open_time)


def test_klines_page_by_start_and_end_time_and_never_pass_now_or_the_first_bar() -> None:
    now = T0 + 30_500
    path = random_walk_series(seed=1, now_ms=now, history=600)
    first_minute = (path.start_ms // 60_000) * 60_000
    assert klines(path, "1m", now_ms=now, limit=1000)[0].open_time == first_minute
    since = klines(path, "1s", now_ms=now, start_ms=T0 + 1, limit=3)
    assert [row.open_time for row in since] == [T0 + 1000, T0 + 2000, T0 + 3000]  # opening at or after start
    until = klines(path, "1s", now_ms=now, end_ms=T0 + 10_000, limit=2)
    assert [row.open_time for row in until] == [T0 + 9000, T0 + 10_000]
    assert klines(path, "1s", now_ms=now, start_ms=now + 5000) == []
    assert klines(path, "1s", now_ms=now)[-1].open_time == T0 + 30_000
    assert len(klines(path, "1s", now_ms=now, limit=5000)) == 601  # capped at 1000, bounded by the history


def test_weekly_klines_open_on_mondays_and_the_calendar_month_is_refused() -> None:
    now = T0
    path = random_walk_series(seed=2, now_ms=now, history=1000)
    week = klines(path, "1w", now_ms=now, limit=1)[0]
    assert pd.Timestamp(week.open_time, unit="ms").day_name() == "Monday"
    assert week.close_time == week.open_time + 7 * 86_400_000 - 1
    with pytest.raises(errors.BinanceError) as refused:
        klines(path, "1M", now_ms=now)
    assert refused.value.code == -1120


def test_the_random_walk_is_the_same_for_the_same_seed_and_grows_and_stays_bounded() -> None:
    one = random_walk_series(seed=5, now_ms=T0, history=10, max_bars=8000)
    two = random_walk_series(seed=5, now_ms=T0, history=10, max_bars=8000)
    other = random_walk_series(seed=6, now_ms=T0, history=10, max_bars=8000)
    for series in (one, two, other):
        series.extend_to(T0 + 20_000_000)  # ~5.5 hours of 1-second bars
    assert one.price_at(T0 + 19_999_999) == two.price_at(T0 + 19_999_999)
    assert one.price_at(T0 + 19_999_999) != other.price_at(T0 + 19_999_999)
    assert len(one) <= 8000 and one.end_ms > T0 + 20_000_000
    assert one.start_ms > T0  # the oldest bars were dropped
    assert np.isfinite(one.points).all() and (one.low > 0).all()
