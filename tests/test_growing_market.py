"""Market data that grows: candles appended as they close, indicators extended on a tail, cycles from the clock,
progress saved as the last processed candle time, and the same trades as a backtest over the same candles."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from daemon_configs import daemon_config
from executor_process import Executor
from tradeexecutor.backtest import run_backtest
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.config import EngineConfig
from tradeexecutor.daemon import CommandQueue, FakeClock, InMemoryTicker, build_daemon
from tradeexecutor.daemon.runner import Daemon
from tradeexecutor.data.bundled import load_bundled
from tradeexecutor.data.follow import CandleFileTail
from tradeexecutor.data.market import CloseColumns, MarketData
from tradeexecutor.data.source import load_market
from tradeexecutor.engine.engine import Engine
from tradeexecutor.errors import ConfigError, DataError, StateError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger, load_state
from tradeexecutor.settings import FeedConfig
from tradeexecutor.state import State
from tradeexecutor.stats import compute_summary
from tradeexecutor.store.journal import Journal
from tradeexecutor.strategy.indicators import compute_indicators
from tradeexecutor.strategy.loader import load_strategy

STRATEGIES = Path(__file__).parent / "strategies"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
#: Cycles at noon: no daily bar closes on a boundary, so every cycle is decided when the next bar shows it ended.
NOON = 12 * 3600


def goog_lines(start: str = "2005-01-01", end: str = "2006-06-30") -> list[str]:
    """GOOG daily candles as CSV lines (header first), from the bundled data."""
    frame = load_bundled("stocks-daily")
    frame = frame[(frame["symbol"] == "GOOG") & (frame.index >= start) & (frame.index <= end)]
    lines = ["timestamp,open,high,low,close,volume"]
    for at, row in frame.iterrows():
        lines.append(f"{at.isoformat()},{row.open!r},{row.high!r},{row.low!r},{row.close!r},{row.volume!r}")
    return lines


def write(path: Path, lines: list[str], mode: str = "w") -> None:
    with path.open(mode) as handle:
        handle.write("".join(line + "\n" for line in lines))


def make(tmp_path: Path, data: Path, **options: object) -> tuple[Daemon, InMemoryTicker]:
    settings: dict[str, object] = {
        "strategy_file": STRATEGIES / "daemon_sma.py", "state_dir": tmp_path / "state", "data": (str(data),),
        "follow": True, "replay_seconds": 1.0, "replay_start": "first", "trigger_seconds": 0,
        "revaluation_seconds": 0, "chart_seconds": 0, "watchdog_seconds": 0,
        "engine": EngineConfig(cycle_offset_seconds=NOON),
    }
    settings.update(options)
    clock = FakeClock(T0)
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[0]

    daemon = build_daemon(daemon_config(**settings), clock=clock, ticker_factory=factory,
                          environ={})
    daemon.start_jobs()
    return daemon, tickers[0]


def tick(daemon: Daemon, ticker: InMemoryTicker, seconds: int) -> None:
    for _ in range(seconds):
        ticker.advance(1.0)
        assert daemon.loop.run_pending() is None, daemon.loop.outcome


def trades(state) -> list[tuple]:
    portfolio = state.portfolio
    positions = portfolio.closed_positions + portfolio.open_positions + portfolio.failed_positions
    return sorted((o.id, o.purpose, o.status, str(o.created_at), o.filled_quantity,
                   o.average_fill_price) for p in positions for o in p.orders)


def published_summary_is_the_whole_runs(daemon: Daemon) -> None:
    """/summary's figures, kept by a RunningSummary, are compute_summary's over the whole state and prices so far."""
    market, step = daemon.feed.market, daemon.feed.cursor
    prices = {symbol: market.close_series(symbol).iloc[: int(market.last_closed[symbol][step]) + 1]
              for symbol in market.symbols}
    want = compute_summary(daemon.engine.state, benchmark_prices=prices).to_dict()
    got = daemon.runstate.snapshot().summary_statistics
    assert got is not None and got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


def backtest_of(path: Path):
    strategy = load_strategy(STRATEGIES / "daemon_sma.py")
    market, _ = load_market([str(path)], strategy.instruments)
    return run_backtest(strategy, market, EngineConfig(cycle_offset_seconds=NOON)).state


# -- MarketData.append ------------------------------------------------------------------------


def test_appended_candles_read_like_candles_loaded_at_once() -> None:
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"].isin(["GOOG", "IBM"])]
    whole = MarketData.from_long_frame(frame, timedelta(days=1))
    cut = whole.timeline_ns[len(whole) // 2]
    grown = MarketData.from_long_frame(frame[frame.index + pd.Timedelta(days=1) <= pd.Timestamp(cut, tz="UTC")],
                                       timedelta(days=1))
    kept, start = grown.bars["GOOG"].close, len(grown)
    for step in range(len(grown), len(whole)):
        time_ns = int(whole.timeline_ns[step])
        candles = {}
        for symbol in whole.symbols:
            index = int(whole.closing_at[symbol][step])
            if index >= 0:
                bars = whole.bars[symbol]
                candles[symbol] = (bars.open[index], bars.high[index], bars.low[index], bars.close[index],
                                   bars.volume[index])
        assert grown.append(time_ns, candles) == step
    assert grown.generation == len(whole) - start
    np.testing.assert_array_equal(grown.timeline_ns, whole.timeline_ns)
    for symbol in whole.symbols:
        np.testing.assert_array_equal(grown.last_closed[symbol], whole.last_closed[symbol])
        np.testing.assert_array_equal(grown.closing_at[symbol], whole.closing_at[symbol])
        pd.testing.assert_frame_equal(grown.bars[symbol].frame, whole.bars[symbol].frame, check_freq=False)
    assert not grown.bars["GOOG"].close.flags.writeable
    np.testing.assert_array_equal(kept, whole.bars["GOOG"].close[: len(kept)])  # old views still hold their rows


def test_a_candle_at_or_before_the_newest_time_is_refused() -> None:
    market = MarketData({"A": pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0],
                                            "volume": [0.0]}, index=pd.DatetimeIndex(["2024-01-01"], tz="UTC"))},
                        timedelta(days=1))
    with pytest.raises(DataError, match="must arrive in time order"):
        market.append(int(market.timeline_ns[-1]), {"A": (1.0, 1.0, 1.0, 1.0, 0.0)})
    with pytest.raises(DataError, match="does not hold"):
        market.append(int(market.timeline_ns[-1]) + 1, {"B": (1.0, 1.0, 1.0, 1.0, 0.0)})


# -- indicators on a tail ---------------------------------------------------------------------


def _extend_one_by_one(function, frame: pd.DataFrame, first: int):
    whole = MarketData({"X": frame}, timedelta(days=1))
    market = MarketData({"X": frame.iloc[:first]}, timedelta(days=1))
    store = compute_indicators(function, market, None, check_causality=False)
    for step in range(first, len(frame)):
        bars = whole.bars["X"]
        market.append(int(bars.close_time_ns[step]), {"X": (bars.open[step], bars.high[step], bars.low[step],
                                                            bars.close[step], bars.volume[step])})
        store.extend(function, market, None)
    return store, compute_indicators(function, whole, None, check_causality=False)


def random_walk(bars: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
    index = pd.date_range("2020-01-01", periods=bars, freq="1D", tz="UTC")
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": 1.0}, index=index)


def test_a_rolling_indicator_is_extended_on_a_bounded_tail_with_the_full_runs_values() -> None:
    def sma(candles, _):
        return {"sma": candles["close"].rolling(200).mean(), "ema": candles["close"].ewm(span=20).mean()}

    store, full = _extend_one_by_one(sma, random_walk(3000), 2000)
    assert store.tails["X"] is not None and 200 <= store.tails["X"] <= 1024  # found, and far below the history
    for name in ("sma", "ema"):
        np.testing.assert_allclose(store.values["X"][name], full.values["X"][name], rtol=1e-9, equal_nan=True)
        assert not store.values["X"][name].flags.writeable


def test_an_expanding_indicator_is_recomputed_on_the_whole_history() -> None:
    def expanding(candles, _):
        return {"mean": candles["close"].expanding().mean()}

    store, full = _extend_one_by_one(expanding, random_walk(600), 500)
    assert store.tails["X"] is None
    np.testing.assert_allclose(store.values["X"]["mean"], full.values["X"]["mean"], rtol=1e-12)


# -- the file tail ------------------------------------------------------------------------------


def test_the_tail_reads_only_complete_new_lines_and_names_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "goog.csv"
    lines = goog_lines(end="2005-01-31")
    write(path, lines[:5])
    tail = CandleFileTail(path, symbol="GOOG")
    first = tail.read()
    assert first is not None and len(first) == 4
    assert tail.read() is None
    with path.open("a") as handle:
        handle.write(lines[5] + "\n" + lines[6][:10])  # the second line is still being written
    second = tail.read()
    assert second is not None and len(second) == 1
    with path.open("a") as handle:
        handle.write(lines[6][10:] + "\n" + lines[7].replace(",", ",-", 1) + "\n")
    with pytest.raises(DataError, match=rf"{path.name}, line 8: open is -"):
        tail.read()


# -- the daemon on a growing file -------------------------------------------------------------


def test_a_growing_file_trades_like_a_backtest_over_the_same_candles_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "goog.csv"
    lines = goog_lines()
    write(path, lines[:60])  # about three months to start with
    daemon, ticker = make(tmp_path, path)
    try:
        tick(daemon, ticker, 80)  # the loaded bars, then nothing new: the feed waits
        assert daemon.feed.cursor == 58 and not daemon.feed.finished
        for chunk in range(60, 200, 7):
            write(path, lines[chunk:chunk + 7], "a")
            tick(daemon, ticker, 9)
            published_summary_is_the_whole_runs(daemon)
        assert daemon.feed.cursor == 198
    finally:
        daemon.close()  # no stop: like a crash between two jobs
    saved = load_state(tmp_path / "state")
    assert saved is not None and saved.last_bar_at == daemon.feed.market.step_time(198).to_pydatetime()
    write(path, lines[200:], "a")  # more candles closed while the executor was down
    daemon, ticker = make(tmp_path, path)
    try:
        assert daemon.feed.cursor == 198  # resumed after the last processed candle's time
        tick(daemon, ticker, len(lines))
        assert daemon.feed.cursor == len(lines) - 2
        final = daemon.engine.state
    finally:
        daemon.close()
    expected = backtest_of(path)
    assert expected.portfolio.closed_positions, "the candles should make the strategy trade"
    assert trades(final) == trades(expected)
    assert final.valuations.timestamp == expected.valuations.timestamp
    assert final.valuations.equity == pytest.approx(expected.valuations.equity)
    assert final.last_completed_cycle == expected.last_completed_cycle
    assert final.cycles_completed == expected.cycles_completed


def test_a_followed_feed_exports_the_strategys_cycle_duration_as_its_cycle_interval(tmp_path: Path) -> None:
    """Alert thresholds scale with tradeexecutor_cycle_interval_seconds (MarketDataStale: twice it plus a minute).

    A replay's cycles are its pace apart (a daily strategy on daily bars at 1 s a bar: 1 s); a followed
    file grows a bar a day, so its newest bar is rightly up to a day old and the interval is the day.
    """
    path = tmp_path / "goog.csv"
    write(path, goog_lines(end="2005-06-30"))
    daemon, ticker = make(tmp_path, path, follow=False)
    try:
        assert daemon.runstate.snapshot().cycle_interval_seconds == 1.0
    finally:
        daemon.close()
    daemon, ticker = make(tmp_path, path)
    try:
        tick(daemon, ticker, 150)  # every loaded bar replayed: now bars come as they are appended
        snapshot = daemon.runstate.snapshot()
        assert daemon.feed.cursor == len(daemon.feed.market) - 1
        assert snapshot.cycle_interval_seconds == 86400.0
    finally:
        daemon.close()


def test_a_state_from_before_last_bar_at_resumes_by_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "goog.csv"
    write(path, goog_lines(end="2005-06-30"))
    daemon, ticker = make(tmp_path, path, follow=False)
    try:
        tick(daemon, ticker, 30)
        cursor = daemon.feed.cursor
    finally:
        daemon.close()
    store = Ledger(RunFiles(tmp_path / "state").ledger)
    state = store.load()
    assert state is not None and state.last_bar_at is not None
    state.last_bar_at = None  # what today's code wrote before this field existed
    store.save(state)
    store.close()
    daemon, ticker = make(tmp_path, path, follow=False)
    try:
        assert daemon.feed.cursor == cursor
    finally:
        daemon.close()


def test_a_last_bar_time_the_data_does_not_hold_is_refused_naming_the_state(tmp_path: Path) -> None:
    path = tmp_path / "goog.csv"
    write(path, goog_lines(end="2005-06-30"))
    daemon, ticker = make(tmp_path, path)
    try:
        tick(daemon, ticker, 10)
    finally:
        daemon.close()
    store = Ledger(RunFiles(tmp_path / "state").ledger)
    state = store.load()
    assert state is not None and state.last_bar_at is not None
    state.last_bar_at += timedelta(hours=1)
    store.save(state)
    store.close()
    with pytest.raises(StateError, match=r"state.*has no bar closing then"):
        make(tmp_path, path)


@pytest.mark.parametrize("options, message", [
    ({"data": ()}, "--follow needs --data"),
    ({"data": ("goog.csv",), "end": "2005-12-31"}, "drop --end"),
])
def test_follow_options_that_cannot_work_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeedConfig(follow=True, **options)


def cursor_at(step: int) -> Callable[[dict[str, Any]], bool]:
    """A /status predicate: the replay cursor is at ``step`` (a function, so each loop turn keeps its own step)."""
    return lambda status: bool(status["extra"].get("replay_cursor") == step)


def test_only_plain_csv_files_can_be_followed(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"only plain \.csv candle files can be followed"):
        CandleFileTail(tmp_path / "goog.csv.gz")


# -- the daemon subprocess on a growing file ----------------------------------------------------


@pytest.mark.slow
def test_a_replay_daemon_following_a_growing_file_trades_like_the_backtest(tmp_path: Path) -> None:
    """A real executor process follows a file the test appends to, is stopped and started again while candles keep
    coming, and ends with the trades of a backtest over the whole file; the restart resumes after the last bar's time."""
    path = tmp_path / "goog.csv"
    lines = goog_lines()
    write(path, lines[:60])
    args = ("--data", str(path), "--follow", "--replay-seconds", "0.02", "--cycle-offset", "12h")
    executors: list[Executor] = []
    try:
        first = Executor(tmp_path, *args, window=False)
        executors.append(first)
        first.wait_status(lambda s: s["extra"].get("replay_cursor") == 58)  # the loaded candles, then it waits
        for chunk in range(60, 180, 15):
            write(path, lines[chunk:chunk + 15], "a")
            first.wait_status(cursor_at(chunk + 13))
        first.process.send_signal(signal.SIGTERM)
        assert first.wait(120) == 0, first.output()
        stopped_at = load_state(first.state_dir)
        assert stopped_at is not None and stopped_at.last_bar_at is not None
        write(path, lines[180:260], "a")  # candles closed while it was down
        second = Executor(tmp_path, *args, window=False)
        executors.append(second)
        second.wait_status(lambda s: s["extra"].get("replay_cursor") == 258)
        write(path, lines[260:], "a")
        second.wait_status(lambda s: s["extra"].get("replay_cursor") == len(lines) - 2, timeout=240)
        second.process.send_signal(signal.SIGTERM)
        assert second.wait(120) == 0, second.output()
    finally:
        for executor in executors:
            executor.kill()
    started = [e for e in Journal(tmp_path / "state" / "journal.jsonl").read(limit=100_000) if e["event"] == "started"]
    assert [e["fields"]["last_bar_at"] for e in started] == [None, stopped_at.last_bar_at.isoformat()]
    state = load_state(tmp_path / "state")
    assert state is not None
    expected = backtest_of(path)
    assert expected.portfolio.closed_positions, "the candles should make the strategy trade"
    assert trades(state) == trades(expected)
    assert state.valuations.timestamp == expected.valuations.timestamp  # each bar once, none lost at the restart
    assert state.cycles_completed == expected.cycles_completed


def test_chart_feeds_take_the_bars_appended_to_the_market() -> None:
    frame = random_walk(40)
    market = MarketData({"X": frame.iloc[:30]}, timedelta(days=1))
    closes = CloseColumns(market)
    feed = ChartFeed(closes)
    state = State(name="t")
    state.valuations.append(int(market.timeline_ns[0]) // 1_000_000, 1.0, 1.0, 0.0)
    feed.update(state, {"X": 29})
    whole = MarketData({"X": frame}, timedelta(days=1))
    bars = whole.bars["X"]
    for index in range(30, 40):
        market.append(int(bars.close_time_ns[index]), {"X": (bars.open[index], bars.high[index], bars.low[index],
                                                             bars.close[index], bars.volume[index])})
    feed.update(state, {"X": 39})
    times, values = feed.closes["X"].points()
    assert times[-1] == int(bars.close_time_ns[39]) // 1_000_000 and values[-1] == bars.close[39]
    np.testing.assert_array_equal(closes["X"][0], whole.bars["X"].close_time_ns // 1_000_000)


def test_the_context_reads_appended_candles_and_their_indicators() -> None:
    frame = load_bundled("stocks-daily")
    frame = frame[frame["symbol"] == "GOOG"].drop(columns="symbol").iloc[:120]
    whole = MarketData({"GOOG": frame}, timedelta(days=1))
    market = MarketData({"GOOG": frame.iloc[:100]}, timedelta(days=1))
    strategy = load_strategy(STRATEGIES / "daemon_sma.py")
    engine = Engine(strategy, market, State(name=strategy.name), config=EngineConfig())
    reference = Engine(strategy, whole, State(name=strategy.name), config=EngineConfig())
    bars = whole.bars["GOOG"]
    for index in range(100, 120):
        step = market.append(int(bars.close_time_ns[index]), {"GOOG": (
            bars.open[index], bars.high[index], bars.low[index], bars.close[index], bars.volume[index])})
        engine.follow_market()
        engine.context._move_to(step, int(market.timeline_ns[step]))
        reference.context._move_to(step, int(whole.timeline_ns[step]))
        ctx, expected = engine.context, reference.context
        assert ctx.close() == expected.close() and ctx.bars_available() == index + 1
        assert ctx.indicator("slow") == pytest.approx(expected.indicator("slow"), rel=1e-12)
        pd.testing.assert_frame_equal(ctx.candles(bars=5), expected.candles(bars=5), check_freq=False)
