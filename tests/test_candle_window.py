"""The live feed keeps a bounded window of candles (issue 13): ``MarketData.drop_before``, and every holder of a step
or bar index rebased — the feed's cursor, the loop's steps, the engine's and the context's columns, the indicators,
the chart feeds — so that a windowed feed trades exactly like the unbounded one while it holds a bounded number of
bars."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daemon_configs import daemon_config
from exchange_sim_helpers import Running, make_simulator, serve, wait_for
from tradeexecutor.backtest import run_backtest
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.config import CcxtVenueConfig, EngineConfig
from tradeexecutor.daemon import CommandQueue, FakeClock, InMemoryTicker, build_daemon
from tradeexecutor.daemon.paper import CANDLE_WINDOW, WARM_UP_CANDLES, ExchangeFeed, open_paper_session
from tradeexecutor.daemon.runner import Daemon
from tradeexecutor.data.bundled import load_bundled
from tradeexecutor.data.follow import WINDOW_SLACK, FollowFeed
from tradeexecutor.data.market import CloseColumns, Growing, MarketData
from tradeexecutor.data.source import load_market
from tradeexecutor.engine.engine import Engine
from tradeexecutor.errors import TemporaryError
from tradeexecutor.ledger import load_state
from tradeexecutor.runstate import RunState
from tradeexecutor.settings import DaemonConfig
from tradeexecutor.state import State
from tradeexecutor.stats.running import RunningSummary
from tradeexecutor.strategy.loader import load_strategy, with_parameters
from tradeexecutor.visual.series import DeltaFeed, SeriesBuilder

STRATEGIES = Path(__file__).parent / "strategies"
WINDOW_STOP = STRATEGIES / "window_stop.py"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOON = 12 * 3600
DAY = timedelta(days=1)


def candles_of(whole: MarketData, step: int) -> dict[str, tuple[float, float, float, float, float]]:
    """The candles of ``whole`` closing at ``step``, as MarketData.append takes them."""
    candles = {}
    for symbol in whole.symbols:
        index = int(whole.closing_at[symbol][step])
        if index >= 0:
            bars = whole.bars[symbol]
            candles[symbol] = (bars.open[index], bars.high[index], bars.low[index], bars.close[index],
                               bars.volume[index])
    return candles


def two_symbols_with_gaps() -> pd.DataFrame:
    """GOOG and IBM daily candles where IBM lacks every fifth day: steps where it has no bar closing (-1)."""
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"].isin(["GOOG", "IBM"]) & (frame.index >= "2004-07-01") & (frame.index < "2006-01-01")]
    keep = np.ones(len(frame), dtype=bool)
    keep[np.flatnonzero((frame["symbol"] == "IBM").to_numpy())[::5]] = False
    return frame[keep]


def expected_indices(column: np.ndarray, cut: int) -> np.ndarray:
    return np.where(column >= 0, column - cut, -1)


# -- MarketData.drop_before ----------------------------------------------------------------------


def test_dropping_the_oldest_steps_keeps_what_every_kept_step_sees() -> None:
    frame = two_symbols_with_gaps()
    whole = MarketData.from_long_frame(frame, DAY)
    assert (whole.closing_at["IBM"] == -1).any()  # the gaps are there
    first = 40
    grown = MarketData.from_long_frame(frame[frame.index + DAY <= whole.step_time(first - 1)], DAY)
    assert len(grown) == first
    old_close, old_last = grown.bars["GOOG"].close, grown.last_closed["IBM"]
    old_rows = (old_close.copy(), old_last.copy())
    drops, held = 0, []
    for step in range(first, len(whole)):
        grown.append(int(whole.timeline_ns[step]), candles_of(whole, step))
        if len(grown) >= 50:  # keep 25 steps, as a window of 25 does
            drops += 1
            generation = grown.generation
            assert grown.drop_before(len(grown) - 25) == 25 and grown.generation == generation + 1
        held.append(max(len(grown), *(len(bars) for bars in grown.bars.values())))
    assert drops > 10 and grown.dropped == len(whole) - len(grown)
    assert max(held) <= 50 + 1  # a symbol holds at most its bar at the window's first step more
    offset = grown.dropped
    np.testing.assert_array_equal(grown.timeline_ns, whole.timeline_ns[offset:])
    for symbol in whole.symbols:
        cut = grown.dropped_bars[symbol]
        assert cut > 0
        for name in ("open_time_ns", "close_time_ns", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(grown.bars[symbol], name), getattr(whole.bars[symbol], name)[cut:])
        for name in ("last_closed", "closing_at"):
            np.testing.assert_array_equal(getattr(grown, name)[symbol],
                                          expected_indices(getattr(whole, name)[symbol][offset:], cut))
        pd.testing.assert_frame_equal(grown.bars[symbol].frame, whole.bars[symbol].frame.iloc[cut:], check_freq=False)
    assert (grown.closing_at["IBM"] == -1).any()
    # Views taken before any drop still hold their rows; the buffers stay the size the window needs.
    np.testing.assert_array_equal(old_close, old_rows[0])
    np.testing.assert_array_equal(old_last, old_rows[1])
    assert len(grown._timeline._buffer) <= 128
    assert all(len(column._buffer) <= 128 for column in grown.bars["GOOG"]._columns.values())


def test_a_symbol_without_a_bar_yet_keeps_none_after_a_drop() -> None:
    index = pd.date_range("2024-01-01", periods=10, freq="1D", tz="UTC")
    early = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": np.arange(10.0), "volume": 0.0}, index=index)
    late = early.iloc[6:]
    market = MarketData({"A": early, "B": late}, DAY)
    market.drop_before(3)  # B has no bar closed at step 3: none of its bars may go
    assert market.dropped_bars == {"A": 3, "B": 0}
    assert market.last_closed["B"].tolist() == [-1, -1, -1, 0, 1, 2, 3]
    assert market.closing_at["B"].tolist() == [-1, -1, -1, 0, 1, 2, 3]
    assert market.last_closed["A"].tolist() == list(range(7)) and market.bars["A"].close[0] == 3.0


# -- the engine, the context and the indicators across drops ------------------------------------------


def test_the_context_and_indicators_read_the_same_values_after_the_window_moved() -> None:
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"] == "GOOG"].drop(columns="symbol").iloc[:300]
    whole = MarketData({"GOOG": frame}, DAY)
    market = MarketData({"GOOG": frame.iloc[:60]}, DAY)
    strategy = load_strategy(WINDOW_STOP)
    engine = Engine(strategy, market, State(name=strategy.name), config=EngineConfig())
    reference = Engine(strategy, whole, State(name=strategy.name), config=EngineConfig())
    drops = 0
    for index in range(60, 300):
        if len(market) >= 64:
            market.drop_before(len(market) - 32)
            drops += 1
        step = market.append(int(whole.timeline_ns[index]), candles_of(whole, index))
        engine.follow_market()
        engine.context._move_to(step, int(market.timeline_ns[step]))
        reference.context._move_to(index, int(whole.timeline_ns[index]))
        ctx, expected = engine.context, reference.context
        assert ctx.timestamp == expected.timestamp and ctx.close() == expected.close()
        assert ctx.bars_available() <= 64
        for name in ("fast", "slow"):
            assert ctx.indicator(name) == pytest.approx(expected.indicator(name), rel=1e-12)
            assert ctx.indicator(name, ago=5) == pytest.approx(expected.indicator(name, ago=5), rel=1e-12)
        assert ctx.bar(ago=7) == expected.bar(ago=7)
        pd.testing.assert_frame_equal(ctx.candles(bars=20), expected.candles(bars=20), check_freq=False)
        assert len(engine.indicators.values["GOOG"]["slow"]) == len(market.bars["GOOG"])
    assert drops > 5


# -- the chart feeds across drops ------------------------------------------------------------------


def test_chart_feeds_send_each_bar_once_in_its_place_after_drops() -> None:
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"] == "GOOG"].drop(columns="symbol").iloc[:200]
    whole = MarketData({"GOOG": frame}, DAY)
    market = MarketData({"GOOG": frame.iloc[:30]}, DAY)
    closes = CloseColumns(market)
    deltas, builder = DeltaFeed(closes), SeriesBuilder()
    cast, cast_whole = ChartFeed(closes), ChartFeed(CloseColumns(whole))
    state = State(name="t")
    state.valuations.append(int(market.timeline_ns[0]) // 1_000_000, 1.0, 1.0, 0.0)
    seen = dict(market.dropped_bars)
    for index in range(30, 200):
        if len(market) >= 40:
            market.drop_before(len(market) - 20)
        step = market.append(int(whole.timeline_ns[index]), candles_of(whole, index))
        deltas.prices.update(closes)  # what the publisher does when the market changed (Publisher._chart_prices)
        if market.dropped_bars["GOOG"] != seen["GOOG"]:
            deltas.drop_bars("GOOG", market.dropped_bars["GOOG"] - seen["GOOG"])
            seen = dict(market.dropped_bars)
        if index % 3 == 0:  # charts are cut now and then, not every bar
            builder.apply(deltas.delta(state, {"GOOG": int(market.last_closed["GOOG"][step])}))
            cast.update(state, {"GOOG": int(market.last_closed["GOOG"][step])})
            cast_whole.update(state, {"GOOG": index})
    assert market.dropped > 100
    times, values = builder.series().prices["GOOG"]
    last = 198  # the newest bar charted (index 198 is the last multiple of 3)
    np.testing.assert_array_equal(times, whole.bars["GOOG"].close_time_ns[: last + 1] // 1_000_000)
    np.testing.assert_array_equal(values, whole.bars["GOOG"].close[: last + 1])
    assert cast.closes["GOOG"].points() == cast_whole.closes["GOOG"].points()
    assert cast.key == cast_whole.key


# -- the daemon on a windowed feed ------------------------------------------------------------------


def goog_lines() -> list[str]:
    frame = load_bundled("stocks-daily")
    frame = frame[(frame["symbol"] == "GOOG") & (frame.index >= "2005-01-01") & (frame.index <= "2006-12-31")]
    lines = ["timestamp,open,high,low,close,volume"]
    for at, row in frame.iterrows():
        lines.append(f"{at.isoformat()},{row.open!r},{row.high!r},{row.low!r},{row.close!r},{row.volume!r}")
    return lines


def write(path: Path, lines: list[str], mode: str = "w") -> None:
    with path.open(mode) as handle:
        handle.write("".join(line + "\n" for line in lines))


def windowed_daemon(tmp_path: Path, data: Path, window: int | None) -> tuple[Daemon, InMemoryTicker]:
    clock = FakeClock(T0)
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[0]

    daemon = build_daemon(daemon_config(
        strategy_file=WINDOW_STOP, state_dir=tmp_path / "state", data=(str(data),), follow=True, replay_seconds=1.0,
        replay_start="first", trigger_seconds=0, revaluation_seconds=0, chart_seconds=0, watchdog_seconds=0,
        engine=EngineConfig(cycle_offset_seconds=NOON)), clock=clock, ticker_factory=factory, environ={})
    daemon.feed.window = window  # type: ignore[attr-defined]  # a FollowFeed: the exchange's feed sets its own
    daemon.start_jobs()
    return daemon, tickers[0]


def run_ticks(daemon: Daemon, ticker: InMemoryTicker, seconds: int, window: int, held: list[int]) -> None:
    for _ in range(seconds):
        ticker.advance(1.0)
        assert daemon.loop.run_pending() is None, daemon.loop.outcome
        market = daemon.feed.market
        if not market.dropped:  # the history loaded at start-up is delivered whole before the window applies
            continue
        held.append(max(len(market), *(len(bars) for bars in market.bars.values()),
                        *(len(v) for values in daemon.engine.indicators.values.values() for v in values.values())))


def orders(state: State) -> list[tuple]:
    portfolio = state.portfolio
    positions = portfolio.closed_positions + portfolio.open_positions + portfolio.failed_positions
    return sorted((o.id, o.purpose, o.status, str(o.created_at), o.filled_quantity, o.average_fill_price,
                   o.trigger.value if o.trigger else None) for p in positions for o in p.orders)


def test_a_windowed_feed_trades_like_the_whole_history_across_a_restart(tmp_path: Path) -> None:
    """Fills at the next bar's open and stop/trailing triggers at a bar's low are priced at the bars an unbounded
    feed (the backtest) prices them at, while the market holds at most twice the window; a restart after many drops
    resumes at the right bar. Without the loop's rebase the cycles are decided at the wrong steps; without the
    engine's columns taken again the prices are read from the wrong bars."""
    window = 20
    path = tmp_path / "goog.csv"
    lines = goog_lines()
    write(path, lines[:60])
    daemon, ticker = windowed_daemon(tmp_path, path, window)
    held: list[int] = []
    try:
        run_ticks(daemon, ticker, 70, window, held)
        for chunk in range(60, 303, 9):
            write(path, lines[chunk:chunk + 9], "a")
            run_ticks(daemon, ticker, 11, window, held)
        assert daemon.feed.market.dropped > 200  # many windows dropped before the restart
        newest = pd.Timestamp(lines[302].split(",")[0]) + DAY  # the last line written is bar 301
        assert daemon.feed.market.step_time(daemon.feed.cursor) == newest
        extra = daemon.runstate.snapshot().extra  # /status: the cursor counts the dropped steps; the bars held now
        assert extra["replay_dropped"] == daemon.feed.market.dropped
        assert extra["replay_cursor"] - extra["replay_dropped"] == daemon.feed.cursor
        assert extra["replay_bars"] == len(daemon.feed.market)
    finally:
        daemon.close()  # no stop: like a crash between two jobs
    saved = load_state(tmp_path / "state")
    assert saved is not None and saved.replay_cursor == 301  # counted from the loaded data's first step
    assert saved.last_bar_at == newest.to_pydatetime()
    write(path, lines[303:], "a")
    daemon, ticker = windowed_daemon(tmp_path, path, window)
    try:
        run_ticks(daemon, ticker, len(lines), window, held)
        market = daemon.feed.market
        assert market.step_time(daemon.feed.cursor) == pd.Timestamp(lines[-1].split(",")[0]) + DAY
        assert market.dropped > 0
        final = daemon.engine.state
    finally:
        daemon.close()
    # After every job: steps, bars and indicator values. The window drops before a read of new candles, which brings
    # up to 9 here (a chunk of lines; the exchange's feed: a poll's, one candle while it keeps up).
    assert len(held) > 400 and max(held) <= 2 * window - 1 + 9
    strategy = load_strategy(WINDOW_STOP)
    market, _ = load_market([str(path)], strategy.instruments)
    expected = run_backtest(strategy, market, EngineConfig(cycle_offset_seconds=NOON)).state
    triggers = [row[-1] for row in orders(expected) if row[-1]]
    assert "stop_loss" in triggers and "trailing_stop" in triggers, triggers  # both fire in this data
    assert orders(final) == orders(expected)
    assert final.valuations.timestamp == expected.valuations.timestamp
    assert final.valuations.equity == pytest.approx(expected.valuations.equity)
    assert final.cycles_completed == expected.cycles_completed


# -- the exchange's feed (paper and live mode) -------------------------------------------------------


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    pytest.importorskip("ccxt")
    with serve(make_simulator()) as running:
        yield running


def exchange_feed(running: Running) -> ExchangeFeed:
    config = DaemonConfig(strategy_file=STRATEGIES / "paper_flip.py", mode="paper",
                          exchange=CcxtVenueConfig(exchange="binance", url=running.url))
    market = open_paper_session(config, checkpoint=lambda _: None)
    return market.feed(RunState.create("window", mode="paper"), monotonic=lambda: 0.0)


def test_the_exchanges_feed_keeps_a_window_and_the_same_candles_as_an_unbounded_one(running: Running) -> None:
    running.control("POST", "reset")
    feed, unbounded = exchange_feed(running), exchange_feed(running)
    assert feed.window == CANDLE_WINDOW == WARM_UP_CANDLES  # what a restart loads
    unbounded.window = None
    feed.window = 8  # the default's 1,000 one-second bars would take 17 minutes to drop
    warm_up = len(feed.market)
    delivered: list[int] = []
    held = []

    def take() -> bool:
        while (step := feed.advance()) is not None:
            delivered.append(int(feed.market.timeline_ns[step]))
            held.append(len(feed.market))
        return feed.market.dropped >= warm_up + 3 * 8  # three windows past the warm-up's drop

    wait_for(take, timeout=90)
    while unbounded.advance() is not None:
        pass
    assert unbounded.market.dropped == 0 and len(unbounded.market) > warm_up + 3 * 8
    assert max(held[2:]) <= 2 * 8  # once the warm-up was dropped (at the second advance)
    assert all(b - a == 1_000_000_000 for a, b in pairwise(delivered))  # none lost, none twice
    kept = feed.market.bars["EURUSD"]
    whole = unbounded.market.bars["EURUSD"]
    at = np.searchsorted(whole.close_time_ns, kept.close_time_ns)
    shared = at < len(whole)
    assert shared.sum() >= 8
    np.testing.assert_array_equal(whole.close_time_ns[at[shared]], kept.close_time_ns[shared])
    np.testing.assert_array_equal(whole.close[at[shared]], kept.close[shared])


class FlakyTail:
    """A candle tail that fails (an exchange out of reach) until it is given candles."""

    path = "flaky"

    def __init__(self) -> None:
        self.frame: pd.DataFrame | None = None
        self.failing = True

    def read(self) -> pd.DataFrame | None:
        if self.failing:
            raise TemporaryError("the exchange cannot be reached")
        frame, self.frame = self.frame, None
        return frame


def test_a_read_that_fails_drops_nothing() -> None:
    """The window moves only once the new candles were read: a failed read leaves the market and the cursor as the
    loop's other jobs (revaluation, triggers, an operator's close) knew them, with the engine's columns of before."""
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"] == "GOOG"].iloc[:12]
    market = MarketData.from_long_frame(frame.iloc[:8], DAY)
    tail = FlakyTail()
    feed = FollowFeed(market, [tail], start=7, window=4)
    assert feed.advance() == 7  # the loaded bars first
    with pytest.raises(TemporaryError):
        feed.advance()
    assert market.dropped == 0 and feed.cursor == 7 and len(market) == 8
    tail.frame, tail.failing = frame.iloc[8:10], False
    assert feed.advance() == 4 and market.dropped == 4 and len(market) == 6  # 4 kept up to the cursor, 2 read
    assert market.step_time(4) == pd.Timestamp(frame.index[8]) + DAY
    assert feed.advance() == 5 and feed.advance() is None


# -- Review round: reloading parameters, expanding indicators and buy-and-hold across a drop ---------------------

WINDOW_OBV = STRATEGIES / "window_obv.py"


def goog(n: int) -> pd.DataFrame:
    """The first ``n`` daily GOOG candles of the bundled stocks."""
    frame = load_bundled("stocks-daily")
    return frame[frame["symbol"] == "GOOG"].drop(columns="symbol").iloc[:n]


def test_reload_params_after_a_drop_keeps_indicator_values_aligned_with_their_bars() -> None:
    """Engine.use_strategy (an operator's reload_params) computes the indicators again over the window: the store
    must know the bars the market had already dropped, or the next extend drops that many values again from the
    front of values computed over the window (a later bar's value at an earlier index: lookahead)."""
    frame = goog(300)
    whole = MarketData({"GOOG": frame}, DAY)
    market = MarketData({"GOOG": frame.iloc[:60]}, DAY)
    strategy = load_strategy(WINDOW_STOP)
    engine = Engine(strategy, market, State(name=strategy.name), config=EngineConfig())
    index = 60
    while market.dropped == 0 or len(market) < 50:  # one drop (64 -> 32), then grow past the dropped count
        if len(market) >= 64:
            market.drop_before(len(market) - 32)
        market.append(int(whole.timeline_ns[index]), candles_of(whole, index))
        engine.follow_market()
        index += 1
    assert 0 < market.dropped < len(market)
    engine.use_strategy(with_parameters(engine.strategy, {"slow": 9}))  # reload_params
    market.append(int(whole.timeline_ns[index]), candles_of(whole, index))
    engine.follow_market()
    # The new bar's values came from its tail (found on this extend), not from the whole window computed again as
    # after a drop the store did not know of.
    assert engine.indicators.tails["GOOG"] is not None
    reference = Engine(with_parameters(strategy, {"slow": 9}), whole, State(name="r"), config=EngineConfig())
    offset = market.dropped_bars["GOOG"]
    got = engine.indicators.values["GOOG"]["slow"]
    want = reference.indicators.values["GOOG"]["slow"][offset: offset + len(got)]
    assert len(got) == len(market.bars["GOOG"])
    # The first 8 values are the SMA's warm-up over the window (NaN, as after a restart): compare the rest.
    assert np.isnan(got[:8]).all()
    np.testing.assert_allclose(got[8:], want[8:])


def test_an_expanding_indicator_is_computed_over_the_window_after_a_drop_as_after_a_restart() -> None:
    """An indicator with no tail window (a cumulative sum) is computed over the whole history: after a drop the kept
    values were computed over the longer history, and new ones over the window only would make a jump between
    ctx.indicator(ago=1) and ctx.indicator() that neither the unbounded feed nor a restart shows (a crossing strategy
    would trade on a crossing that is not there). Every value is computed again over the window, as a restart does."""
    frame = goog(300)
    market = MarketData({"GOOG": frame.iloc[:60]}, DAY)
    whole = MarketData({"GOOG": frame}, DAY)
    strategy = load_strategy(WINDOW_OBV)
    engine = Engine(strategy, market, State(name=strategy.name), config=EngineConfig())
    drops = 0
    for index in range(60, 200):
        if len(market) >= 64:
            market.drop_before(len(market) - 32)
            drops += 1
        step = market.append(int(whole.timeline_ns[index]), candles_of(whole, index))
        engine.follow_market()
        assert engine.indicators.tails.get("GOOG") is None  # a cumulative sum has no tail window
        engine.context._move_to(step, int(market.timeline_ns[step]))
        # What a restart on this window computes: every value over the same bars.
        restart = Engine(strategy, MarketData({"GOOG": market.bars["GOOG"].frame}, DAY), State(name="r"),
                         config=EngineConfig())
        values = restart.indicators.values["GOOG"]["obv"]
        ctx = engine.context
        assert ctx.indicator("obv") == pytest.approx(values[-1])
        assert ctx.indicator("obv", ago=1) == pytest.approx(values[-2])
    assert drops >= 3


def test_buy_and_hold_in_the_summary_keeps_its_start_price_after_a_drop() -> None:
    """The publisher's running summary (/status summary_statistics, public files) finds buy-and-hold's start close
    at the first valuation's time among the market's bars: once the window dropped that bar, the search would land
    on the window's first bar and the figure would silently change its start price. Computed every cycle (as the
    publisher does), it keeps the start close it found and equals the unbounded feed's figure."""
    frame = goog(200)
    whole = MarketData({"GOOG": frame}, DAY)
    market = MarketData({"GOOG": frame.iloc[:10]}, DAY)
    state = State(name="t")
    windowed, unbounded = RunningSummary(), RunningSummary()

    def bench(m: MarketData, newest: int) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        bars = m.bars["GOOG"]
        return {"GOOG": (bars.close_time_ns, bars.close, newest)}

    for index in range(10, 200):
        if len(market) >= 64:
            market.drop_before(len(market) - 32)
        step = market.append(int(whole.timeline_ns[index]), candles_of(whole, index))
        state.valuations.append(int(market.timeline_ns[step]) // 1_000_000, 100.0, 100.0, 0.0)
        got = windowed.summary(state, bench(market, len(market.bars["GOOG"]) - 1)).buy_and_hold_return
        want = unbounded.summary(state, bench(whole, index)).buy_and_hold_return
        assert got == pytest.approx(want)
    assert market.dropped > 64
    start = frame["close"].iloc[10]
    assert want == pytest.approx(frame["close"].iloc[199] / start - 1.0)


def test_a_paper_daemon_on_the_exchange_crosses_drops_with_orders_in_flight(running: Running, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process daemon in paper mode against the simulator, with the window made small: paper_flip orders every
    one-second cycle and each fills at the next candle's open, so fills are pending whenever the window drops.
    Every fill is priced at the open of the candle after its decision (as the unbounded feed has it), the market
    holds a bounded number of bars, and no cycle is skipped or decided twice."""
    running.control("POST", "reset")
    monkeypatch.setattr("tradeexecutor.daemon.paper.CANDLE_WINDOW", 8)
    clock = FakeClock(datetime.now(UTC))
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[0]

    daemon = build_daemon(daemon_config(
        strategy_file=STRATEGIES / "paper_flip.py", state_dir=tmp_path / "state", mode="paper",
        exchange=CcxtVenueConfig(exchange="binance", url=running.url), trigger_seconds=0, revaluation_seconds=0,
        chart_seconds=0, watchdog_seconds=0), clock=clock, ticker_factory=factory, environ={})
    held: list[int] = []
    try:
        assert daemon.feed.window == 8  # type: ignore[attr-defined]
        daemon.start_jobs()
        ticker = tickers[0]
        market = daemon.feed.market

        def tick() -> bool:
            ticker.advance(0.25)
            assert daemon.loop.run_pending() is None, daemon.loop.outcome
            if market.dropped:
                held.append(max(len(market), *(len(bars) for bars in market.bars.values())))
            return market.dropped >= WARM_UP_CANDLES + 4 * 8 and len(filled(daemon.engine.state)) >= 20

        wait_for(tick, timeout=120, interval=0.25)
        state = daemon.engine.state
    finally:
        daemon.close()
    assert max(held) <= 2 * 8 + 1  # the window's top, and the candle read before the next drop
    unbounded = exchange_feed(running)
    unbounded.window = None
    while unbounded.advance() is not None:
        pass
    bars = unbounded.market.bars["EURUSD"]
    fills = filled(state)
    assert len(fills) >= 20
    for order in fills:
        # Decided at the close of the candle closing at created_at; filled at the next candle's open.
        at = int(np.searchsorted(bars.close_time_ns, pd.Timestamp(order.created_at).value))
        assert bars.close_time_ns[at] == pd.Timestamp(order.created_at).value
        assert float(order.average_fill_price) == pytest.approx(float(bars.open[at + 1]))
    cycles = [int(stamp) for stamp in state.valuations.timestamp]
    assert all(b - a == 1_000 for a, b in pairwise(cycles))  # one valuation a candle: none skipped, none twice


def filled(state: State) -> list:
    """The filled orders of every position."""
    portfolio = state.portfolio
    positions = portfolio.closed_positions + portfolio.open_positions + portfolio.failed_positions
    return [order for position in positions for order in position.orders if order.status == "filled"]


# -- A windowed market takes its columns' memory at start (issue 13, i13-flat3) ---------------------------------


def growing_columns(market: MarketData, engine: Engine, closes: CloseColumns) -> list[Growing]:
    """Every per-bar column kept for a windowed market: its own, the indicators', the chart feed's."""
    columns = [market._timeline, *market._last_closed.values(), *market._closing_at.values()]
    for bars in market.bars.values():
        columns += bars._columns.values()
    for values in engine.indicators._columns.values():
        columns += values.values()
    return columns + list(closes._ms.values())


def test_a_windowed_market_allocates_its_columns_once_at_start_however_many_drops() -> None:
    """A FollowFeed with a window reserves twice the window (and a read's slack) in every column of its market, of the
    indicators and of the chart feed, with a spare buffer each, all written at start: across six drops no column
    allocates another buffer, and the views a reader holds across a drop keep their rows."""
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"] == "GOOG"].iloc[:400]
    window = 32
    market = MarketData.from_long_frame(frame.iloc[:window], DAY)
    tail = FlakyTail()
    tail.failing = False
    feed = FollowFeed(market, [tail], start=window - 1, window=window)
    strategy = load_strategy(WINDOW_STOP)
    engine = Engine(strategy, market, State(name=strategy.name), config=EngineConfig())
    closes = CloseColumns(market)
    assert feed.advance() == window - 1
    tail.frame = frame.iloc[window:window + 1]
    feed.advance()
    engine.follow_market()
    closes["GOOG"]
    columns = growing_columns(market, engine, closes)
    assert len(columns) == 10 + 2 + 1  # ten of the market's, the strategy's two indicators, the chart feed's
    top = 2 * window + WINDOW_SLACK
    assert all(column.capacity == top for column in columns)
    allocated = {id(buffer) for column in columns for buffer in (column._buffer, column._spare)}
    assert len(allocated) == 2 * len(columns)
    held: np.ndarray | None = market.bars["GOOG"].close  # a reader's view across the first drop, then let go
    rows = market.bars["GOOG"].close.copy()
    for index in range(window + 1, 400):
        tail.frame = frame.iloc[index:index + 1]
        assert feed.advance() is not None
        engine.follow_market()
        closes["GOOG"]
        now = growing_columns(market, engine, closes)
        assert [column.capacity for column in now] == [top] * len(columns)
        assert {id(column._buffer) for column in now} <= allocated, f"a column allocated a buffer at bar {index}"
        if held is not None and market.dropped:
            np.testing.assert_array_equal(held, rows)
            held = None
    assert market.dropped >= 6 * window
    np.testing.assert_array_equal(market.bars["GOOG"].close, frame["close"].to_numpy()[market.dropped_bars["GOOG"]:])
    np.testing.assert_array_equal(closes["GOOG"][0], market.bars["GOOG"].close_time_ns // 1_000_000)


def test_a_column_takes_a_new_buffer_rather_than_write_one_a_view_still_reads() -> None:
    """The spare is used again only when no view of it is left; a view kept across two drops keeps its rows, and a
    buffer the column did not allocate (a frame's shared memory) is never written."""
    column = Growing(np.arange(10.0))
    column.reserve(40)
    first, spare = id(column._buffer), id(column._spare)  # ids: a reference of the test's would count as a view
    old = column.view()
    column.drop_front(5)  # into the spare; the first buffer becomes the spare, still viewed by ``old``
    assert (id(column._buffer), id(column._spare)) == (spare, first)
    column.append(99.0)
    column.drop_front(2)  # ``old`` still views the spare: a new buffer, never a write into ``old``'s rows
    assert old.tolist() == list(np.arange(10.0)) and id(column._buffer) not in (first, spare)
    assert id(column._spare) == spare
    assert column.view().tolist() == [7.0, 8.0, 9.0, 99.0]
    shared = np.arange(8.0)
    shared.flags.writeable = False
    unreserved = Growing(shared)
    unreserved.drop_front(2)
    unreserved.drop_front(2)
    assert shared.tolist() == list(np.arange(8.0)) and unreserved.view().tolist() == [4.0, 5.0, 6.0, 7.0]
