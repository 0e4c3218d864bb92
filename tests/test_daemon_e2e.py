"""The real daemon as a subprocess, watched over HTTP: cycles, crashes, kill -9 with restarts, SIGTERM, bad input."""

from __future__ import annotations

import itertools
import json
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from executor_process import END, START, STRATEGIES, Executor, free_port
from tradeexecutor.backtest import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.data.source import load_market
from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.ledger import load_state
from tradeexecutor.state import State
from tradeexecutor.store.journal import Journal
from tradeexecutor.strategy.loader import load_strategy

pytestmark = pytest.mark.slow


@pytest.fixture
def executors() -> Iterator[list[Executor]]:
    started: list[Executor] = []
    yield started
    for executor in started:
        executor.kill()


def all_trades(state: State) -> list[Any]:
    portfolio = state.portfolio
    return [t for p in portfolio.closed_positions + portfolio.open_positions + portfolio.failed_positions
            for t in p.orders]


def trade_rows(state: State) -> list[tuple[Any, ...]]:
    return sorted((t.id, t.purpose, t.status, str(t.created_at), t.signed_filled_quantity, t.average_fill_price)
                  for t in all_trades(state))


def check_state_invariants(state: State) -> None:
    stamps = state.valuations.timestamp
    assert all(a < b for a, b in itertools.pairwise(stamps)), "valuation times must strictly increase"
    assert len(stamps) == state.replay_cursor + 1, "one valuation row per replayed bar: none repeated or lost"
    trades = all_trades(state)
    ids = [t.id for t in trades]
    assert len(ids) == len(set(ids)), "trade ids are unique"
    assert not ids or max(ids) < state.portfolio.next_order_id
    decisions = [(t.position_id, t.purpose, t.created_at) for t in trades if t.status == "filled"]
    assert len(decisions) == len(set(decisions)), "no planned decision executed twice"
    client_ids = [t.client_order_id for t in trades]
    assert len(client_ids) == len(set(client_ids)), "no order created twice for the same intent"
    fill_ids = [f.id for t in trades for f in t.fills]
    assert len(fill_ids) == len(set(fill_ids)), "no fill applied twice"
    for position in state.portfolio.all_positions():
        figures = recompute_from_fills(position)
        assert (figures.quantity, figures.cost_basis, figures.realised_pnl, figures.fees_paid) == (
            position.quantity, position.cost_basis, position.realised_pnl, position.fees_paid)
    assert recompute_cash(state.initial_cash, state.portfolio) == state.portfolio.cash


def intent_ids(state: State) -> list[str]:
    """Client order ids without the run key: what the decision alone determines (time, place, purpose)."""
    return [t.client_order_id.split("-", 1)[1] for t in sorted(all_trades(state), key=lambda t: t.id)]


# -- a healthy run --------------------------------------------------------------------------


def test_paper_mode_trades_over_http_and_stops_gracefully_on_sigterm(tmp_path: Path, executors: list) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.05")
    executors.append(executor)
    status = executor.wait_status(lambda s: s["cycles"] >= 10 and s["summary_statistics"].get("trade_count", 0) >= 1)
    assert status["status"] == "running" and status["mode"] == "replay" and status["prices"].startswith("historical candles") and status["executor_running"]
    assert status["strategy_name"] == "Daemon SMA" and status["extra"]["next_order_id"] > 1
    assert status["market_data_feed_lag"] is not None and status["next_cycle_at"] is not None
    executor.process.send_signal(signal.SIGTERM)
    assert executor.wait() == 0
    assert "executor stopped: SIGTERM" in executor.output()
    state = load_state(executor.state_dir)
    assert state is not None and state.replay_cursor >= status["extra"]["replay_cursor"]
    check_state_invariants(state)


# -- crashes --------------------------------------------------------------------------------


def test_crash_under_serve_policy_is_visible_over_http_then_exits_non_zero(tmp_path: Path, executors: list) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.05", "--crash-policy", "serve",
                        "--crash-serve-seconds", "2.5", strategy="daemon_crash.py")
    executors.append(executor)
    status = executor.wait_status(lambda s: s["status"] == "error")  # served after the crash
    crashed = datetime.fromisoformat(status["crashed_at"])
    record = status["exception"]
    assert record["class_name"] == "StrategyBoom" and record["module"].startswith("tradeexecutor_strategy_")
    assert record["message"] == "cannot price GOOG-price: the lookup table has no entry"
    names = [frame["name"] for frame in record["frames"]]
    assert "decide" in names and "_lookup" in names
    cause = record["chain"][0]
    assert cause["relation"] == "cause" and cause["class"] == "builtins.KeyError" and "GOOG-price" in cause["message"]
    assert status["crash_count"] == 1 and not status["executor_running"]
    # Served for the window, then left by itself. The window is measured from the crash the status
    # records, not from when this test saw it: a busy machine delays the seeing, not the daemon's timer.
    assert executor.wait() == 1
    assert (datetime.now(UTC) - crashed).total_seconds() >= 2.5 - 0.01
    assert "daemon_crash.py" in executor.output() and "StrategyBoom" in executor.output()
    crash = json.loads((executor.state_dir / "crash.json").read_text())
    assert crash["crash_count"] == 1 and crash["last_exception"]["class_name"] == "StrategyBoom"


def test_crash_under_exit_policy_exits_at_once(tmp_path: Path, executors: list) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.05", "--crash-policy", "exit", strategy="daemon_crash.py")
    executors.append(executor)
    assert executor.wait() == 1
    crash = json.loads((executor.state_dir / "crash.json").read_text())
    assert crash["crash_count"] == 1
    state = load_state(executor.state_dir)
    assert state is not None and state.cycles_completed == 2  # the failed third cycle was not saved


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_strategy_that_keeps_crashing_ends_in_safe_mode_still_managing_its_stop(tmp_path: Path,
                                                                                   executors: list) -> None:
    """decide() raises every cycle from 2005-01-19 while a position's 5 % stop waits for the 2005-01-25 bar.

    The test restarts the executor when it exits, as a container runtime would. The default crash
    policy exits on the first two crashes; the third makes a crash loop, and that process stays up
    in safe mode: serving, /healthz 503 with the reason, the strategy never called again, and the
    stop still fires, journaled and saved.
    """
    calls = tmp_path / "calls.txt"
    args = ("--replay-seconds", "0.05", "-p", "fail_from=2005-01-19", "-p", f"calls_file={calls}")
    exits: list[int] = []
    while True:
        assert len(exits) < 4, f"still restarting after {exits}"
        executor = Executor(tmp_path, *args, strategy="daemon_decide_fails.py")
        executors.append(executor)
        deadline = time.monotonic() + 120  # a crash or safe mode: either ends the wait long before on any machine
        while executor.process.poll() is None and time.monotonic() < deadline:
            status = executor.status()
            if status is not None and status["safe_mode"]:
                break
            time.sleep(0.05)
        else:
            exits.append(executor.wait())
            continue
        break
    assert exits == [1, 1], executor.output()
    status = executor.wait_status(lambda s: s["safe_mode"] and s["status"] == "running")
    assert "the strategy keeps crashing: 3 crashes within 10 minutes" in status["safe_mode_reason"]
    assert status["exception"]["class_name"] == "StrategyBoom" and status["crash_count"] == 3

    journal = Journal(executor.state_dir / "journal.jsonl")
    deadline = time.monotonic() + 30
    while not [e for e in journal.read(limit=1000) if e["event"] == "trigger_fired"]:
        assert time.monotonic() < deadline and executor.process.poll() is None, executor.output()
        time.sleep(0.1)
    cursor = executor.wait_status(lambda s: s["extra"]["replay_cursor"] > 0)["extra"]["replay_cursor"]
    executor.wait_status(lambda s: s["extra"]["replay_cursor"] >= cursor + 10)  # serving on, not restarting
    code, body = healthz(executor.port)
    assert code == 503 and body["healthy"] is False and body["safe_mode"] is True
    assert any(reason.startswith("safe mode: the strategy keeps crashing") for reason in body["reasons"])
    assert "safe mode" in body["error"]
    assert executor.status()["cycles"] == 0  # type: ignore[index]  # no decision in this process
    executor.process.send_signal(signal.SIGTERM)
    assert executor.wait() == 0

    days = calls.read_text().split()
    assert days.count("2005-01-19") == 3 and days[-1] == "2005-01-19"  # once per process, never after safe mode
    fired = [e for e in journal.read(limit=1000) if e["event"] == "trigger_fired"]
    assert [(e["level"], e["fields"]["trigger"], e["fields"]["position_id"]) for e in fired] == [
        ("info", "stop_loss", 1)]
    events = [e["event"] for e in journal.read(limit=1000)]
    assert events.index("safe_mode") < events.index("trigger_fired")
    state = load_state(executor.state_dir)
    assert state is not None and not state.portfolio.open_positions
    closed = state.portfolio.closed_positions[0]
    assert closed.orders[-1].trigger == "stop_loss"
    assert closed.orders[-1].average_fill_price == pytest.approx(fired[0]["fields"]["price"])
    assert str(closed.closed_at.date()) == "2005-01-25"  # type: ignore[union-attr]
    check_state_invariants(state)


# -- kill -9 ----------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_kill_9_at_random_moments_never_repeats_a_cycle_or_a_trade(tmp_path: Path, executors: list) -> None:
    rng = random.Random(20240521)
    previous_cursor, previous_cycles, kills = -1, 0, 0
    # At least 8 kills, and as many more as it takes for them to land across many cycles: how many
    # cycles a run gets through before its kill depends on how busy the machine is.
    while kills < 8 or previous_cursor <= 20:
        assert kills < 60, f"the kills should land across many cycles; after {kills} the cursor is {previous_cursor}"
        executor = Executor(tmp_path, "--replay-seconds", "0.02", "--crash-loop-count", "0")
        executors.append(executor)
        executor.wait_status(lambda s: s["status"] in ("running", "complete"))
        time.sleep(rng.uniform(0.0, 0.6))
        executor.kill()
        kills += 1
        state = load_state(executor.state_dir)
        if state is None:
            continue
        check_state_invariants(state)
        assert state.replay_cursor >= previous_cursor and state.cycles_completed >= previous_cycles
        previous_cursor, previous_cycles = state.replay_cursor, state.cycles_completed
    final = Executor(tmp_path, "--replay-seconds", "0.01")
    executors.append(final)
    assert final.wait(300) == 0, final.output()
    assert "executor complete" in final.output()
    state = load_state(final.state_dir)
    assert state is not None
    check_state_invariants(state)
    strategy = load_strategy(STRATEGIES / "daemon_sma.py")
    market, _ = load_market([], strategy.instruments, start=START, end=END)
    expected = run_backtest(strategy, market, EngineConfig()).state
    assert state.replay_cursor == len(market) - 1
    assert trade_rows(state) == trade_rows(expected)
    assert intent_ids(state) == intent_ids(expected)  # the same decisions made the same orders, once
    assert state.cycles_completed == expected.cycles_completed


# -- refusals ---------------------------------------------------------------------------------


def test_live_mode_without_an_exchange_is_refused_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_sma.py"),
                             "--mode", "live", "--state-dir", str(tmp_path / "state")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert "--mode live sends real orders to an exchange and needs --exchange NAME" in result.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("mode", ["replay", "backtest"])
def test_a_port_in_use_is_refused_with_exit_2_and_nothing_written(tmp_path: Path, mode: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start",
                                 str(STRATEGIES / "daemon_sma.py"), "--mode", mode, "--port", str(port),
                                 "--state-dir", str(tmp_path / "state"), "--start", START, "--end", END],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"webhook cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists(), "a refused start leaves no state directory or lock behind"


def test_corrupt_state_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    garbage = b'{"schema_version": 1, "name": "Daemon SMA", "portfolio": {"cash": 1'
    (state_dir / "ledger.sqlite").write_bytes(garbage)
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_sma.py"),
                             "--state-dir", str(state_dir), "--port", str(free_port()), "--start", START,
                             "--end", END], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert str(state_dir / "ledger.sqlite") in result.stderr
    assert "Traceback" not in result.stderr
    assert (state_dir / "ledger.sqlite").read_bytes() == garbage


def test_backtest_mode_saves_state_and_exits_0(tmp_path: Path, executors: list) -> None:
    executor = Executor(tmp_path, "--mode", "backtest")
    executors.append(executor)
    assert executor.wait(300) == 0, executor.output()
    state = load_state(executor.state_dir)
    assert state is not None and state.cycles_completed > 200 and all_trades(state)


def test_watchdog_exits_non_zero_with_every_thread_stack_in_the_crash_file(tmp_path: Path, executors: list) -> None:
    executor = Executor(tmp_path, "--watchdog-seconds", "0.5", "-p", "hang_seconds=60", "--trade-immediately",
                        strategy="daemon_hang.py")
    executors.append(executor)
    assert executor.wait(300) == 1
    crash = json.loads((executor.state_dir / "crash.json").read_text())
    record = crash["last_exception"]
    assert record["class_name"] == "JobHangError" and "watchdog" in record["message"]
    stacks = {thread["name"]: thread["stack"] for thread in record["thread_stacks"]["threads"]}
    assert "time.sleep" in stacks["executor-loop"]
