"""Chart data as deltas: what the loop sends the renderer rebuilds exactly the series of the state, at a cost of what changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from test_daemon_loop import make
from tradeexecutor.daemon import InMemoryTicker
from tradeexecutor.daemon.runner import Daemon
from tradeexecutor.state import State
from tradeexecutor.state.growth import ListTail
from tradeexecutor.visual.series import ChartSeries, DeltaFeed, SeriesBuilder, price_columns


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, InMemoryTicker]]:
    """The real loop over daemon_sma.py (it trades every few weeks) with revaluations rewriting the newest row."""
    built, ticker, _ = make(tmp_path, end="2006-12-31", revaluation_seconds=3)
    try:
        yield built, ticker
    finally:
        built.close()


def advance(daemon: Daemon, ticker: InMemoryTicker, seconds: int) -> None:
    for _ in range(seconds):
        ticker.advance(1.0)
        daemon.loop.run_pending()


def expected(daemon: Daemon) -> ChartSeries:
    """The series of the state now, with prices up to the newest bar delivered."""
    market, step = daemon.feed.market, daemon.feed.cursor
    prices = {}
    for symbol in market.symbols:
        last = int(market.last_closed[symbol][step])
        prices[symbol] = market.close_series(symbol).iloc[: last + 1]
    return ChartSeries.from_state(daemon.engine.state, prices)


def newest(daemon: Daemon) -> dict[str, int]:
    market, step = daemon.feed.market, daemon.feed.cursor
    return {symbol: int(market.last_closed[symbol][step]) for symbol in market.symbols}


def assert_same(built: ChartSeries, want: ChartSeries) -> None:
    assert built.title == want.title
    np.testing.assert_array_equal(built.stamps, want.stamps)
    np.testing.assert_array_equal(built.equity, want.equity)
    assert set(built.fills) == set(want.fills)
    for iid, fills in want.fills.items():
        got = built.fills[iid]
        assert got.symbol == fills.symbol
        assert sorted(zip(got.times, got.prices, got.buys)) == sorted(zip(fills.times, fills.prices, fills.buys))
    assert set(built.prices) == set(want.prices)
    for symbol, (times, closes) in want.prices.items():
        np.testing.assert_array_equal(built.prices[symbol][0], times)
        np.testing.assert_array_equal(built.prices[symbol][1], closes)


def test_deltas_rebuild_the_series_of_a_running_state_and_stay_as_small_as_what_changed(daemon) -> None:
    loop, ticker = daemon
    market = loop.feed.market
    feed = DeltaFeed(price_columns({symbol: market.close_series(symbol) for symbol in market.symbols}))
    builder = SeriesBuilder()
    sizes = []
    for _ in range(40):  # 400 bars, about 30 fills, and every third second a revaluation rewrites the newest row
        advance(loop, ticker, 10)
        delta = feed.delta(loop.engine.state, newest(loop))
        builder.apply(delta)
        sizes.append(delta.size)
        assert_same(builder.series(), expected(loop))
    state = loop.engine.state
    assert len(state.valuations) > 350 and sum(len(f.times) for f in expected(loop).fills.values()) >= 6
    # Ten more bars cost ten bars (+1 row resent, + any new fills), however long the history already is.
    assert sizes[0] > 10 and max(sizes[5:]) <= 2 * (10 + 1) + 4, sizes


def test_a_reset_feed_sends_everything_again_for_a_new_renderer(daemon) -> None:
    loop, ticker = daemon
    market = loop.feed.market
    feed = DeltaFeed(price_columns({symbol: market.close_series(symbol) for symbol in market.symbols}))
    advance(loop, ticker, 150)
    SeriesBuilder().apply(feed.delta(loop.engine.state, newest(loop)))
    advance(loop, ticker, 20)
    feed.reset()  # the renderer that held the first delta is gone
    fresh = SeriesBuilder()
    fresh.apply(feed.delta(loop.engine.state, newest(loop)))
    assert_same(fresh.series(), expected(loop))


def test_an_empty_state_is_an_empty_series() -> None:
    feed = DeltaFeed({})
    builder = SeriesBuilder()
    builder.apply(feed.delta(State(), {}))
    series = builder.series()
    assert len(series.stamps) == 0 and series.fills == {} and series.prices == {}


def test_list_tail_hands_out_each_new_item_once_and_restarts_on_another_list() -> None:
    tail: ListTail[int] = ListTail()
    items = [1, 2]
    assert tail.new_items(items) == [1, 2] and tail.restarted
    items += [3]
    assert tail.new_items(items) == [3] and not tail.restarted
    assert tail.new_items(items) == []
    assert tail.new_items([7, 8]) == [7, 8] and tail.restarted  # a new list (another state loaded)
