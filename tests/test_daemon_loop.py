"""The executor loop in-process: fake clock, in-memory scheduler twin, real engine and state store."""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from daemon_configs import daemon_config
from tradeexecutor.backtest import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.daemon import (
    ApschedulerTicker,
    Command,
    CommandKind,
    CommandQueue,
    FakeClock,
    InMemoryTicker,
    JobKind,
    JobSpec,
    build_daemon,
)
from tradeexecutor.daemon.runner import Daemon, replay_cycle_interval
from tradeexecutor.data.feed import PriceFeed, ReplayFeed
from tradeexecutor.data.source import load_market
from tradeexecutor.engine.schedule import cycle_times
from tradeexecutor.errors import ConfigError, StateCorruptError, StateLockedError
from tradeexecutor.ledger import load_state
from tradeexecutor.runstate import CrashFile, RunState, RunStatus
from tradeexecutor.settings import DaemonConfig
from tradeexecutor.state import Order, State
from tradeexecutor.store.journal import Journal
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy
from tradeexecutor.visual.series import ChartDelta

STRATEGIES = Path(__file__).parent / "strategies"
START, END = "2005-01-01", "2005-12-31"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make(tmp_path: Path, strategy: str = "daemon_sma.py", *, clock: FakeClock | None = None,
         environ: dict[str, str] | None = None, **options: object) -> tuple[Daemon, InMemoryTicker, FakeClock]:
    """A daemon on the in-memory ticker; replay cycle 1 s, no trigger/revaluation jobs unless asked.

    ``environ`` stands for the process environment (notification URLs); default: none set.
    """
    settings: dict[str, object] = {
        "strategy_file": STRATEGIES / strategy, "state_dir": tmp_path / "state", "start": START, "end": END,
        "replay_seconds": 1.0, "replay_start": "first", "trigger_seconds": 0, "revaluation_seconds": 0,
        "chart_seconds": 0, "watchdog_seconds": 0,
    }
    settings.update(options)
    config = daemon_config(**settings)
    clock = clock or FakeClock(T0)
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[0]

    daemon = build_daemon(config, clock=clock, ticker_factory=factory, environ=environ or {})
    daemon.start_jobs()
    return daemon, tickers[0], clock


def run_ticks(daemon: Daemon, ticker: InMemoryTicker, seconds: int, step: float = 1.0) -> None:
    """Move time ``seconds`` in steps, letting the loop handle what fired after each step."""
    for _ in range(int(seconds / step)):
        ticker.advance(step)
        if daemon.loop.run_pending() is not None:
            return


def trades(state) -> list[tuple[int, str, str, float | None, float | None]]:
    positions = state.portfolio.closed_positions + state.portfolio.open_positions + state.portfolio.failed_positions
    rows = [(t.id, t.purpose, str(t.created_at), t.signed_filled_quantity, t.average_fill_price)
            for p in positions for t in p.orders]
    return sorted(rows)


# -- scheduling -------------------------------------------------------------------------------


def test_cycle_boundary_with_offset_fires_at_hh08(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, replay_seconds=3600,
                                 engine=EngineConfig(cycle_offset_seconds=480))
    try:
        assert ticker.next_run_time(JobKind.cycle) == T0 + timedelta(minutes=8)
        assert ticker.advance(timedelta(minutes=7, seconds=59)) == []
        assert ticker.advance(timedelta(seconds=1)) == [JobKind.cycle]
        daemon.loop.run_pending()
        assert daemon.runstate.cycles == 1
        assert ticker.next_run_time(JobKind.cycle) == T0 + timedelta(hours=1, minutes=8)
        assert daemon.runstate.snapshot().next_cycle_at == T0 + timedelta(hours=1, minutes=8)
    finally:
        daemon.close()


@pytest.mark.parametrize("backend", ["memory", "apscheduler"])
def test_both_tickers_align_jobs_on_boundaries_plus_offset(backend: str) -> None:
    """The twin and APScheduler compute the same next run times from the same JobSpecs."""
    commands = CommandQueue()
    specs = [JobSpec(JobKind.cycle, timedelta(hours=1), timedelta(minutes=8)),
             JobSpec(JobKind.triggers, timedelta(seconds=10))]
    if backend == "memory":
        clock = FakeClock(datetime(2024, 5, 5, 13, 37, 21, tzinfo=UTC))
        ticker = InMemoryTicker(commands, clock)
        now = clock.now()
    else:
        ticker = ApschedulerTicker(commands)  # type: ignore[assignment]
        now = datetime.now(UTC)
    ticker.start(specs)
    try:
        cycle_at = ticker.next_run_time(JobKind.cycle)
        trigger_at = ticker.next_run_time(JobKind.triggers)
        assert cycle_at is not None and trigger_at is not None
        assert (cycle_at.minute, cycle_at.second, cycle_at.microsecond) == (8, 0, 0)
        assert now < cycle_at <= now + timedelta(hours=1)
        assert trigger_at.second % 10 == 0 and trigger_at.microsecond == 0
        assert ticker.next_run_time(JobKind.revaluation) is None
    finally:
        ticker.shutdown()


def test_apscheduler_ticker_only_queues_ticks_and_coalesces_while_the_loop_is_busy() -> None:
    commands = CommandQueue()
    ticker = ApschedulerTicker(commands)
    ticker.start([JobSpec(JobKind.cycle, timedelta(seconds=0.05))])
    try:  # nobody consumes: a busy loop. Wait for the firings, not 0.5 s (a busy machine delays the scheduler's thread)
        deadline = time.monotonic() + 120
        while commands.counters.coalesced.get(JobKind.cycle, 0) < 3:
            assert time.monotonic() < deadline, commands.counters
            time.sleep(0.05)
    finally:
        ticker.shutdown()
    first = commands.get_nowait()
    assert first is not None and first.kind is CommandKind.tick and first.job is JobKind.cycle
    assert commands.get_nowait() is None  # one waiting tick, however many firings
    assert commands.counters.coalesced.get(JobKind.cycle, 0) >= 3


def test_trigger_and_revaluation_intervals_and_zero_disables(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, replay_seconds=5, trigger_seconds=2, revaluation_seconds=0)
    try:
        assert ticker.next_run_time(JobKind.revaluation) is None
        run_ticks(daemon, ticker, 20)
        snapshot = daemon.runstate.snapshot()
        assert snapshot.position_trigger_checks == 10
        assert snapshot.position_revaluations == 0
        assert snapshot.cycles == 4
    finally:
        daemon.close()
    daemon, ticker, _ = make(tmp_path / "b", replay_seconds=5, trigger_seconds=0, revaluation_seconds=3)
    try:
        assert ticker.next_run_time(JobKind.triggers) is None
        run_ticks(daemon, ticker, 30)
        snapshot = daemon.runstate.snapshot()
        assert snapshot.position_trigger_checks == 0 and snapshot.position_revaluations == 10
        rows = daemon.engine.state.valuations.timestamp
        assert all(a < b for a, b in itertools.pairwise(rows))  # revaluations replace, never duplicate, a row
    finally:
        daemon.close()
    assert load_state(tmp_path / "b" / "state").valuations.timestamp == rows  # type: ignore[union-attr]


def test_missed_and_late_ticks_coalesce_into_one_run(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path)
    try:
        # The process slept through ten boundaries: the job fires once, late, not ten times.
        assert ticker.advance(10.5) == [JobKind.cycle]
        assert ticker.next_run_time(JobKind.cycle) == T0 + timedelta(seconds=11)
        # The loop is busy: the next firings find a tick still queued and are dropped.
        ticker.advance(1)
        ticker.advance(1)
        assert daemon.commands.counters.coalesced[JobKind.cycle] == 2
        daemon.loop.run_pending()
        assert daemon.feed.cursor == 0  # one bar replayed: a late replay slows down, it does not burst
        assert daemon.runstate.cycles == 1
    finally:
        daemon.close()


# -- commands ---------------------------------------------------------------------------------


def test_commands_cycle_now_pause_resume_stop(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path)
    loop, commands = daemon.loop, daemon.commands
    try:
        commands.put(Command(CommandKind.tick, job=JobKind.cycle))  # run a cycle now, no time passes
        loop.run_pending()
        assert daemon.feed.cursor == 0 and daemon.runstate.cycles == 1
        commands.put(Command(CommandKind.pause))
        loop.run_pending()
        assert daemon.engine.context.paused and daemon.runstate.snapshot().paused
        run_ticks(daemon, ticker, 120)
        assert daemon.engine.state.portfolio.next_position_id == 1  # paused: nothing opened
        assert commands.submit("resume") and not commands.submit("reboot")  # the webhook's command sink
        loop.run_pending()
        assert not daemon.engine.context.paused
        run_ticks(daemon, ticker, 60)
        assert daemon.engine.state.portfolio.next_position_id > 1
        cursor = daemon.feed.cursor
        commands.put_tick(JobKind.cycle)
        commands.stop("test")  # stops jump the queue: the waiting tick never runs
        outcome = loop.run_pending()
        assert outcome is not None and outcome.status is RunStatus.stopped
        assert daemon.runstate.snapshot().status is RunStatus.stopped
        assert not daemon.runstate.snapshot().executor_running
    finally:
        daemon.close()
    saved = load_state(tmp_path / "state")
    assert saved is not None and saved.replay_cursor == cursor


def test_max_cycles_stops_the_loop(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, max_cycles=5)
    try:
        run_ticks(daemon, ticker, 60)
        assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.stopped
        assert daemon.runstate.cycles == 5
    finally:
        daemon.close()


# -- state safety -----------------------------------------------------------------------------


def test_restarts_never_repeat_a_cycle_and_match_a_backtest(tmp_path: Path) -> None:
    """Stopping and restarting on the same state directory replays each bar exactly once."""
    seen: list[int] = []
    for _ in range(3):
        daemon, ticker, _ = make(tmp_path, clock=FakeClock(T0 + timedelta(days=len(seen))))
        try:
            start = daemon.feed.cursor
            assert start == (seen[-1] if seen else -1)
            run_ticks(daemon, ticker, 60)
            seen.append(daemon.feed.cursor)
            assert daemon.engine.state.replay_cursor == seen[-1]
        finally:
            daemon.close()  # no stop command: like a crash between two jobs
    daemon, ticker, _ = make(tmp_path)
    try:
        run_ticks(daemon, ticker, 400)
        assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.complete
        assert daemon.runstate.snapshot().status is RunStatus.complete
        final = daemon.engine.state
    finally:
        daemon.close()
    strategy = load_strategy(STRATEGIES / "daemon_sma.py")
    market, _ = load_market([], strategy.instruments, start=START, end=END)
    expected = run_backtest(strategy, market, EngineConfig()).state
    assert trades(final) == trades(expected)
    assert final.valuations.timestamp == expected.valuations.timestamp
    assert final.valuations.equity == pytest.approx(expected.valuations.equity)
    assert final.cycles_completed == expected.cycles_completed
    assert final.last_completed_cycle == expected.last_completed_cycle


def test_a_completed_replay_is_complete_at_once_after_a_restart(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, end="2005-02-01")
    run_ticks(daemon, ticker, 100)
    assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.complete
    daemon.close()
    daemon, ticker, _ = make(tmp_path, end="2005-02-01")
    try:
        outcome = daemon.loop.run_pending()
        assert outcome is not None and outcome.status is RunStatus.complete
        assert daemon.runstate.cycles == 0
    finally:
        daemon.close()


def test_corrupt_state_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "ledger.sqlite").write_bytes(b'{"schema_version": 1, "portfol')
    with pytest.raises(StateCorruptError, match=re.escape("ledger.sqlite")):
        make(tmp_path)
    assert (state_dir / "ledger.sqlite").read_bytes() == b'{"schema_version": 1, "portfol'
    daemon, _, _ = make(tmp_path / "other")  # the lock was released on the error path
    daemon.close()


def test_a_second_executor_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    daemon, _, _ = make(tmp_path)
    try:
        with pytest.raises(StateLockedError, match="in use"):
            make(tmp_path)
    finally:
        daemon.close()


def test_live_mode_without_an_exchange_is_refused() -> None:
    with pytest.raises(ConfigError, match="--mode live sends real orders"):
        DaemonConfig(strategy_file=STRATEGIES / "daemon_sma.py", mode="live")


# -- crashes ----------------------------------------------------------------------------------


def test_a_strategy_crash_fills_runstate_and_the_crash_file_and_its_decision_is_not_saved(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, "daemon_crash.py")
    try:
        run_ticks(daemon, ticker, 10)
        outcome = daemon.loop.outcome
        assert outcome is not None and outcome.status is RunStatus.error
        snapshot = daemon.runstate.snapshot()
        assert snapshot.status is RunStatus.error and not snapshot.executor_running
        record = snapshot.exception
        assert record is not None and record["class_name"] == "StrategyBoom"
        assert "cannot price GOOG-price" in record["message"]
        assert any(frame["name"] == "decide" for frame in record["frames"])
        assert record["chain"][0]["relation"] == "cause" and record["chain"][0]["class"] == "builtins.KeyError"
        assert snapshot.crash_count == 1
    finally:
        daemon.close()
    crash = json.loads((tmp_path / "state" / "crash.json").read_text())
    assert crash["crash_count"] == 1 and crash["last_exception"]["class_name"] == "StrategyBoom"
    saved = load_state(tmp_path / "state")
    # The failed cycle's bar was managed and saved before the strategy ran; its decision died.
    assert saved is not None and saved.replay_cursor == 2 and saved.cycles_completed == 2
    assert len(saved.valuations) == 3


def test_a_crash_loop_starts_in_safe_mode(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    crash_file = CrashFile.for_state_dir(tmp_path / "state")
    for minutes in (1, 2, 3):
        crash_file.record(RuntimeError("boom"), T0 - timedelta(minutes=minutes))
    daemon, ticker, _ = make(tmp_path, clock=clock, crash_loop_count=3, crash_loop_minutes=10)
    try:
        snapshot = daemon.runstate.snapshot()
        assert snapshot.safe_mode and "3 crashes within 10 minutes" in (snapshot.safe_mode_reason or "")
        assert snapshot.crash_count == 3 and snapshot.exception is not None  # the last crash stays visible
        run_ticks(daemon, ticker, 120)
        assert daemon.engine.context.paused
        assert daemon.engine.state.portfolio.next_position_id == 1
    finally:
        daemon.close()
    daemon, _, _ = make(tmp_path, clock=FakeClock(T0 + timedelta(minutes=20)))
    try:
        assert not daemon.runstate.snapshot().safe_mode  # the crashes are old now
    finally:
        daemon.close()


def test_runstate_tells_wall_time_bar_time_and_data_age_apart(tmp_path: Path) -> None:
    """What /metrics exports for alerts: wall and bar time of the last cycle, the cycle
    interval, and when the newest bar came, so its age grows while no job runs."""
    daemon, ticker, clock = make(tmp_path)
    try:
        run_ticks(daemon, ticker, 5)
        snapshot = daemon.runstate.snapshot()
        assert snapshot.cycle_interval_seconds == 1.0  # a daily strategy on daily bars, replayed at 1 s a bar
        assert snapshot.completed_cycle is not None and snapshot.completed_cycle.year == 2005  # bar time
        assert snapshot.completed_cycle_at is not None
        assert T0 < snapshot.completed_cycle_at <= clock.now()  # wall time
        assert snapshot.market_data_at is not None and snapshot.market_data_at <= clock.now()
        assert snapshot.market_data_age(clock.now()) == pytest.approx(snapshot.market_data_feed_lag or 0.0)
        clock.advance(480)  # the loop is stuck: no job writes anything
        age = daemon.runstate.snapshot().market_data_age(clock.now())
        assert age is not None and age >= 480
    finally:
        daemon.close()


def test_replay_cycle_interval_is_bars_per_cycle_times_the_replay_pace() -> None:
    hourly = pd.date_range("2024-01-01 01:00", periods=24 * 10, freq="h", tz="UTC").as_unit("ns").asi8
    assert replay_cycle_interval(cycle_times(hourly, timedelta(days=1)), 0.5) == 12.0  # 24 bars a cycle
    assert replay_cycle_interval(cycle_times(hourly, timedelta(hours=1)), 0.5) == 0.5
    assert replay_cycle_interval(np.zeros(5, dtype=np.int64), 0.5) is None
    # Following growing files: after the replay, bars come at the pace they are written.
    assert replay_cycle_interval(cycle_times(hourly, timedelta(days=1)), 0.5, real_pace=timedelta(days=1)) == 86400
    assert replay_cycle_interval(np.zeros(5, dtype=np.int64), 0.5, real_pace=timedelta(hours=1)) == 3600


def test_crashes_are_remembered_with_their_times_across_restarts(tmp_path: Path) -> None:
    crash_file = CrashFile.for_state_dir(tmp_path / "state")
    for minutes in (90, 20, 5):
        crash_file.record(RuntimeError("boom"), T0 - timedelta(minutes=minutes))
    daemon, ticker, _clock = make(tmp_path, "daemon_crash.py", clock=FakeClock(T0), crash_loop_count=0)
    try:
        snapshot = daemon.runstate.snapshot()
        assert snapshot.crashes_since(T0 - timedelta(minutes=30)) == 2
        assert snapshot.crashes_since(T0 - timedelta(hours=24)) == 3
        run_ticks(daemon, ticker, 10)  # crashes on its third cycle
        snapshot = daemon.runstate.snapshot()
        assert snapshot.crash_count == 4 and snapshot.crashes_since(T0 - timedelta(minutes=30)) == 3
        assert snapshot.crashed_at == snapshot.recent_crashes[-1] and snapshot.crashed_at > T0
    finally:
        daemon.close()


def test_watchdog_turns_a_hung_job_into_a_crash_with_every_thread_stack(tmp_path: Path) -> None:
    # The job stays hung until the test releases it (two minutes at most): the watchdog fires however late
    # a busy machine runs its thread, where a fixed 1.5 s sleep could end before it looked.
    release = tmp_path / "release"
    daemon, _, _ = make(tmp_path, "daemon_hang.py", params={"hang_seconds": "120", "release_file": str(release)},
                        watchdog_seconds=0.3)
    try:
        daemon.watchdog.start()
        daemon.commands.put_tick(JobKind.cycle)
        worker = threading.Thread(target=daemon.loop.run_pending, name="executor-loop", daemon=True)
        worker.start()
        assert daemon.watchdog.fired.wait(60)
        record = daemon.runstate.snapshot().exception
        assert record is not None and record["class_name"] == "JobHangError"
        stacks = {t["name"]: t["stack"] for t in record["thread_stacks"]["threads"]}
        assert "time.sleep" in stacks["executor-loop"]
        release.touch()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        daemon.close()
    crash = json.loads((tmp_path / "state" / "crash.json").read_text())
    assert crash["last_exception"]["class_name"] == "JobHangError"


# -- a failing strategy: positions stay managed ---------------------------------------------

#: daemon_decide_fails.py opens on the 2005-01-12 cycle with a 5 % stop that the bar closing on
#: 2005-01-25 crosses (checked against a backtest below).
STOP_BAR_CYCLE = "2005-01-25"


def _stop_trade(state: State) -> Order | None:
    """The trade a stop-loss closed position 1 with, or None."""
    for position in state.portfolio.closed_positions:
        if position.id == 1 and position.orders[-1].trigger == "stop_loss":
            return position.orders[-1]
    return None


def _journal(tmp_path: Path) -> list[dict[str, Any]]:
    return list(Journal(tmp_path / "state" / "journal.jsonl").entries())


def test_the_stop_window_of_the_failing_strategy_holds() -> None:
    """The premise of the tests below: without failures, the stop fires on the STOP_BAR_CYCLE bar."""
    strategy = load_strategy(STRATEGIES / "daemon_decide_fails.py", {"fail_from": "2099-01-01"})
    market, _ = load_market([], strategy.instruments, start=START, end=END)
    trade = _stop_trade(run_backtest(strategy, market, EngineConfig()).state)
    assert trade is not None and trade.filled_at is not None
    assert trade.filled_at.date().isoformat() == STOP_BAR_CYCLE


def test_a_decide_that_raises_never_undoes_the_bars_fills_and_triggers(tmp_path: Path) -> None:
    """The bar is committed before the strategy runs: its stop-loss is saved although that cycle's decide raised."""
    daemon, ticker, _ = make(tmp_path, "daemon_decide_fails.py", params={"fail_from": STOP_BAR_CYCLE},
                             crash_loop_count=0)
    try:
        run_ticks(daemon, ticker, 60)
        outcome = daemon.loop.outcome
        assert outcome is not None and outcome.status is RunStatus.error and "StrategyBoom" in outcome.reason
    finally:
        daemon.close()
    saved = load_state(tmp_path / "state")
    assert saved is not None
    trade = _stop_trade(saved)
    assert trade is not None, "the stop-loss of the bar whose decide raised was lost"
    assert saved.replay_cursor == daemon.feed.cursor and not saved.portfolio.open_positions
    assert saved.last_completed_cycle is not None and saved.last_completed_cycle.date().isoformat() < STOP_BAR_CYCLE
    assert saved.valuations.cash[-1] == pytest.approx(saved.portfolio.cash)
    fired = [e for e in _journal(tmp_path) if e["event"] == "trigger_fired"]
    assert [(e["fields"]["trigger"], e["fields"]["price"]) for e in fired] == [
        ("stop_loss", pytest.approx(trade.average_fill_price))]


def test_a_crash_loop_of_the_strategy_ends_in_safe_mode_and_positions_stay_managed(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    daemon, ticker, _ = make(tmp_path, "daemon_decide_fails.py", crash_loop_count=1, trigger_seconds=0.5,
                             revaluation_seconds=0.7, params={"fail_from": "2005-01-19", "calls_file": str(calls)})
    try:
        run_ticks(daemon, ticker, 40, step=0.25)
        loop = daemon.loop
        assert loop.outcome is None and loop.safe_mode  # still running: no crash exit, no restart
        snapshot = daemon.runstate.snapshot()
        assert snapshot.status is RunStatus.running and snapshot.executor_running and snapshot.safe_mode
        assert "the strategy keeps crashing: 1 crashes within 10 minutes" in (snapshot.safe_mode_reason or "")
        assert snapshot.exception is not None and snapshot.exception["class_name"] == "StrategyBoom"
        assert daemon.engine.paused and daemon.engine.context.paused
        days = calls.read_text().split()
        assert days[-1] == "2005-01-19" and days.count("2005-01-19") == 1  # never called again
        assert snapshot.position_trigger_checks > 0 and snapshot.position_revaluations > 0
        cursor = daemon.feed.cursor
        assert cursor > 30
    finally:
        daemon.close()
    saved = load_state(tmp_path / "state")
    assert saved is not None and saved.replay_cursor == cursor and len(saved.valuations) == cursor + 1
    assert _stop_trade(saved) is not None and not saved.portfolio.open_positions
    assert saved.last_completed_cycle is not None and saved.last_completed_cycle.date().isoformat() == "2005-01-15"
    events = [e["event"] for e in _journal(tmp_path)]
    assert events.index("crashed") < events.index("safe_mode") < events.index("trigger_fired")
    crash = json.loads((tmp_path / "state" / "crash.json").read_text())
    assert crash["crash_count"] == 1


def test_a_restart_decides_the_cycle_its_crash_left_pending(tmp_path: Path) -> None:
    """Between the two commits the decision may die; the next process decides that cycle, exactly once."""
    daemon, ticker, _ = make(tmp_path, "daemon_decide_fails.py", params={"fail_from": "2005-01-12"},
                             crash_loop_count=0)
    try:
        run_ticks(daemon, ticker, 30)
        assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.error
    finally:
        daemon.close()
    crashed = load_state(tmp_path / "state")
    assert crashed is not None and not crashed.portfolio.open_positions
    assert crashed.last_completed_cycle is not None and crashed.last_completed_cycle.date().isoformat() == "2005-01-11"
    cursor = crashed.replay_cursor
    fixed = {"fail_from": "2099-01-01"}  # the operator fixed the strategy (here: its parameter)
    daemon, ticker, _ = make(tmp_path, "daemon_decide_fails.py", params=fixed, end="2005-03-01")
    try:
        run_ticks(daemon, ticker, 200)
        assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.complete
        final = daemon.engine.state
    finally:
        daemon.close()
    strategy = load_strategy(STRATEGIES / "daemon_decide_fails.py", fixed)
    market, _ = load_market([], strategy.instruments, start=START, end="2005-03-01")
    expected = run_backtest(strategy, market, EngineConfig()).state
    assert trades(final) == trades(expected) and final.cycles_completed == expected.cycles_completed
    assert final.portfolio.closed_positions[0].opened_at.date().isoformat() == "2005-01-12"
    assert final.valuations.timestamp == expected.valuations.timestamp
    assert final.valuations.equity == pytest.approx(expected.valuations.equity)
    assert cursor == 6  # the 2005-01-12 cycle's bar had been committed before its decide raised


def test_intents_are_checked_before_any_is_planned(tmp_path: Path) -> None:
    """A bad intent after a good one is the strategy's error and leaves nothing half-planned to be saved."""
    daemon, ticker, _ = make(tmp_path, "daemon_bad_intents.py", crash_loop_count=1)
    try:
        run_ticks(daemon, ticker, 10)
        assert daemon.loop.outcome is None and daemon.loop.safe_mode
        record = daemon.runstate.snapshot().exception
        assert record is not None and record["class_name"] == "KeyError" and "NOPE" in record["message"]
        portfolio = daemon.engine.state.portfolio
        assert portfolio.next_position_id == 1 and not portfolio.open_positions and not daemon.engine.pending
    finally:
        daemon.close()
    saved = load_state(tmp_path / "state")
    assert saved is not None and saved.portfolio.next_position_id == 1 and saved.replay_cursor == daemon.feed.cursor


def test_a_strategy_cannot_lift_a_pause_or_touch_its_position(tmp_path: Path) -> None:
    log = tmp_path / "attempts.txt"
    daemon, ticker, _ = make(tmp_path, "daemon_meddler.py", params={"log_file": str(log)})
    loop, commands = daemon.loop, daemon.commands
    try:
        commands.put(Command(CommandKind.pause))
        loop.run_pending()
        run_ticks(daemon, ticker, 20)
        attempts = log.read_text().split()
        assert attempts and set(attempts) == {"paused:refused"}, attempts
        assert daemon.engine.paused and daemon.runstate.snapshot().paused  # the pause held ...
        assert daemon.engine.state.portfolio.next_position_id == 1  # ... and nothing was opened
        commands.put(Command(CommandKind.resume))
        loop.run_pending()
        run_ticks(daemon, ticker, 20)
        attempts = log.read_text().split()
        assert {"stop_loss:refused", "quantity:refused", "trades:refused"} <= set(attempts), attempts
        assert not {a for a in attempts if a.endswith(":changed")}, attempts
        position = daemon.engine.state.portfolio.open_positions[0]
        entry = position.entry_price()
        assert entry is not None and position.quantity > 0
        assert position.stop_loss == pytest.approx(entry * 0.9)  # as the engine armed it, untouched
    finally:
        daemon.close()


# -- the replay feed --------------------------------------------------------------------------


def test_replay_feed_plays_each_bar_once_and_restores_its_cursor() -> None:
    market, _ = load_market([], ["GOOG"], start=START, end="2005-01-20")
    now = [100.0]
    feed = ReplayFeed(market, start=2, monotonic=lambda: now[0])
    assert isinstance(feed, PriceFeed)
    assert feed.cursor == 1 and feed.lag_seconds(now[0]) is None
    steps = []
    while (step := feed.advance()) is not None:
        steps.append(step)
    assert steps == list(range(2, len(market))) and feed.finished
    assert feed.lag_seconds(103.0) == 3.0
    again = ReplayFeed(market, start=2)
    again.restore(5)
    assert again.advance() == 6
    fresh = ReplayFeed(market, start=2)
    fresh.restore(-1)
    assert fresh.advance() == 2


def test_publication_interval_stretches_with_the_cost_of_publishing() -> None:
    from tradeexecutor.daemon.publish import publication_due

    assert publication_due(None, 0.0, 2.0, 0.0)  # the first publication happens at once
    assert not publication_due(10.0, 11.0, 2.0, 0.01)  # cheap: every 2 s
    assert publication_due(10.0, 12.0, 2.0, 0.01)
    # A 1.4 s publication (a 10,000-position state) waits 14 s, so it takes at most a tenth of the time.
    assert not publication_due(10.0, 23.9, 2.0, 1.4)
    assert publication_due(10.0, 24.0, 2.0, 1.4)


def _chart_setting() -> tuple[LoadedStrategy, FakeClock, RunState, ReplayFeed]:
    """What the chart tests publish from: the SMA strategy, two months of bars with the first delivered."""
    strategy = load_strategy(Path(__file__).parent / "strategies" / "daemon_sma.py")
    market, _ = load_market([], strategy.instruments, start="2005-01-01", end="2005-03-01")
    clock = FakeClock(T0)
    feed = ReplayFeed(market, monotonic=clock.monotonic)
    feed.advance()
    return strategy, clock, RunState.create("charts", mode="replay", now=T0), feed


def test_charts_are_sent_after_the_first_cycle_then_at_the_interval_stretched_by_their_cost() -> None:
    """The first cycle sends the whole series; later ones wait for the interval, and for the renderer.

    With a 0.1 s interval a render of c CPU seconds stretches it to c / CHART_TIME_SHARE, so the
    renderer's process keeps at most that share of a CPU busy however long the history grows.
    """
    from tradeexecutor.daemon.publish import CHART_TIME_SHARE, Publisher

    strategy, clock, runstate, feed = _chart_setting()
    publisher = Publisher(runstate, feed, clock, chart_seconds=0.1, chart_timeout=120.0, publish_seconds=2.0)
    renderer = publisher.renderer
    assert renderer is not None
    sent: list[float] = []  # fake time of each delta sent
    costs: list[float] = []  # the last render's cost when it was sent: what the interval was stretched by
    submit = renderer.submit

    def counted(delta: ChartDelta) -> bool:
        cost = renderer.last_cost
        accepted = submit(delta)
        if accepted:
            sent.append(clock.monotonic())
            costs.append(cost)
        return accepted

    renderer.submit = counted  # type: ignore[method-assign]
    state = new_state_for(strategy)
    publisher.start()
    try:
        assert renderer.wait_idle(120)
        state.valuations.append(0, 10_000.0, 10_000.0, 0.0)
        publisher.cycle_done(state, 0, None)  # the first cycle: sent at once
        assert sent == [0.0]
        assert renderer.wait_idle(120) and runstate.image_keys()
        assert renderer.last_cost > 0
        n = 0
        while n < 200 or len(sent) < 4:  # 20 s of fake time in 0.1 s steps, and at least three stretched intervals
            n += 1
            assert n <= 2_000, (sent, costs)  # 200 s of fake time: renders of 50 CPU seconds
            clock.advance(timedelta(seconds=0.1))
            state.valuations.append(n * 86_400_000, 10_000.0 + n, 10_000.0, 0.0)  # a day more to draw each time
            publisher.cycle_done(state, 0, None)
            assert renderer.wait_idle(120)  # the renderer is idle between cycles
        count = len(sent)
        # One more cycle at the same fake time is never due, whether or not the last one sent (that
        # depended on the renders' costs: when it had, the trigger check below had nothing new to send).
        state.valuations.append((n + 1) * 86_400_000, 10_001.0 + n, 10_000.0, 0.0)
        publisher.cycle_done(state, 0, None)
        assert len(sent) == count
        clock.advance(timedelta(seconds=60))
        publisher.trigger_check_done(state)  # what changed since the last delta is sent by any job
        assert sent[-1] == clock.monotonic() and renderer.wait_idle(120)
        count = len(sent)
        clock.advance(timedelta(seconds=60))
        publisher.trigger_check_done(state)  # nothing changed since: nothing to draw
        publisher.revaluation_done(state)
        assert len(sent) == count
        sent, costs = sent[:-1], costs[:-1]
        assert len(sent) >= 4
        for k in range(1, len(sent)):  # a cycle every 0.1 s: the first one at or after the stretched interval sends
            wanted = max(0.1, costs[k] / CHART_TIME_SHARE)
            assert wanted - 1e-9 <= sent[k] - sent[k - 1] < wanted + 0.1 + 1e-9, (sent, costs)
    finally:
        publisher.close()


def test_charts_drawn_by_a_renderer_that_was_still_starting_name_it_in_status() -> None:
    """The first cycle ends while the renderer's process is still importing matplotlib: the charts wait
    and are drawn when it is ready (the loop's charts job, which runs no ``progress``). /status must then
    name the renderer that drew them; it said ``chart_renderer_pid: None`` until another job ran, which a
    busy machine (slow renderer start) made visible to test_daemon_charts."""
    from tradeexecutor.daemon.publish import Publisher

    strategy, clock, runstate, feed = _chart_setting()
    woken = threading.Event()
    publisher = Publisher(runstate, feed, clock, chart_seconds=1, chart_timeout=120.0, publish_seconds=2.0,
                          wake=woken.set)
    renderer = publisher.renderer
    assert renderer is not None
    state = new_state_for(strategy)
    state.valuations.append(0, 10_000.0, 10_000.0, 0.0)
    publisher.start()
    try:
        publisher.cycle_done(state, 0, None)  # the renderer's process cannot be ready yet (it imports matplotlib)
        assert runstate.snapshot().extra["chart_renderer_pid"] is None and not runstate.image_keys()
        assert woken.wait(120)  # the renderer became idle and asks the loop for the waiting charts
        publisher.send_charts(state)  # what the loop's charts job does
        assert renderer.wait_idle(120) and runstate.image_keys()
        status = runstate.snapshot()
        assert status.visualisation_updated_at is not None
        assert status.extra["chart_renderer_pid"] == renderer.pid is not None
        assert status.extra["chart_render_seconds"] == round(renderer.last_cost, 3) > 0
    finally:
        publisher.close()


def new_state_for(strategy: LoadedStrategy) -> State:
    from tradeexecutor.backtest.runner import new_state

    return new_state(strategy, EngineConfig(), T0)

def test_a_replay_with_a_cycle_offset_restarts_after_its_cycles(tmp_path: Path) -> None:
    """A noon cycle runs after the bar closing at midnight, so it is later than that bar: not an inconsistency."""
    daemon, ticker, _ = make(tmp_path, engine=EngineConfig(cycle_offset_seconds=12 * 3600))
    try:
        run_ticks(daemon, ticker, 30)
        done, cursor = daemon.engine.state.last_completed_cycle, daemon.feed.cursor
        assert done is not None and done > daemon.feed.market.step_time(cursor)
    finally:
        daemon.close()
    daemon, ticker, _ = make(tmp_path, engine=EngineConfig(cycle_offset_seconds=12 * 3600))
    try:
        assert daemon.feed.cursor == cursor
    finally:
        daemon.close()


# -- jobs and transactions --------------------------------------------------------------------


def _journal_jobs(tmp_path: Path) -> list[tuple[int, str]]:
    """(job number, event) of every committed journal line, in order, from the ledger itself."""
    conn = sqlite3.connect(tmp_path / "state" / "ledger.sqlite")
    try:
        return [(int(job), str(event)) for job, event in conn.execute("SELECT job, event FROM journal ORDER BY seq")]
    finally:
        conn.close()


def test_each_command_is_one_ledger_job_and_a_cycle_commits_its_lines_with_its_state(tmp_path: Path) -> None:
    """Start-up, a pause, a resume and the cycles each commit in jobs of their own; a cycle's lines carry the job
    numbers of its state commits, and nothing is committed outside a job (no flush after a command)."""
    daemon, ticker, _ = make(tmp_path)
    try:
        run_ticks(daemon, ticker, 3)
        daemon.commands.put(Command(CommandKind.pause, reason="operator"))
        daemon.commands.put(Command(CommandKind.resume, reason="operator"))
        daemon.loop.run_pending()
        run_ticks(daemon, ticker, 40)
        head_job = daemon.store.job
    finally:
        daemon.close()
    rows = _journal_jobs(tmp_path)
    jobs: dict[int, list[str]] = {}
    for job, event in rows:
        jobs.setdefault(job, []).append(event)
    assert rows[0][1] == "started"
    # Lines committed before the first state carry the number the first state commit gets (docs/ledger.md).
    first_state_job = rows[0][0]
    assert ["paused"] in jobs.values() and ["resumed"] in jobs.values()  # each command its own job
    cycle_jobs = [job for job, events in jobs.items() if "cycle_completed" in events]
    assert len(cycle_jobs) == daemon.engine.state.cycles_completed > 5
    for job in cycle_jobs:  # the decision's lines commit with the decision, not with another job
        events = [event for event in jobs[job] if not (job == first_state_job and event == "started")]
        assert set(events) <= {"cycle_completed", "order_planned", "order_filled", "order_rejected",
                               "intent_ignored", "trigger_fired"}, jobs[job]
    assert max(jobs) <= head_job
    assert [job for job, _ in rows] == sorted(job for job, _ in rows)


def test_a_crashed_job_keeps_its_commits_drops_its_later_lines_and_commits_the_crash_alone(tmp_path: Path) -> None:
    """A job that raises after journaling: its uncommitted line is never claimed; the crashed line is committed
    in a job of its own (and reaches the mirror the webhook reads)."""
    daemon, ticker, _ = make(tmp_path)
    loop = daemon.loop

    def failing_after_job() -> None:
        loop.journal("paused", reason="journaled by a job that then fails")
        raise RuntimeError("after-job boom")

    try:
        run_ticks(daemon, ticker, 3)
        cycles = daemon.engine.state.cycles_completed
        loop.after_job = failing_after_job
        run_ticks(daemon, ticker, 1)
        assert loop.outcome is not None and loop.outcome.status is RunStatus.error
    finally:
        daemon.close()
    rows = _journal_jobs(tmp_path)
    assert "paused" not in [event for _, event in rows]  # the failed job's line died with it
    crash_job = next(job for job, event in rows if event == "crashed")
    assert [event for job, event in rows if job == crash_job] == ["crashed"]
    state = load_state(tmp_path / "state")
    assert state is not None and state.cycles_completed == cycles + 1  # the cycle job before it stands
    mirrored = [entry["event"] for entry in Journal(tmp_path / "state" / "journal.jsonl").entries()]
    assert mirrored == [event for _, event in rows]


def test_a_state_commit_outside_a_job_is_a_bug(tmp_path: Path) -> None:
    daemon, _, _ = make(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="outside a job"):
            daemon.loop._commit()
    finally:
        daemon.close()
