"""Every example strategy trades in replay mode to the end of a short replay, with stops, take-profits and trailing stops firing.

Each strategy in strategies/ runs twice as a user would: ``tradeexecutor start`` as a subprocess,
and ``tradeexecutor runs create SPEC --start`` (a detached executor behind a supervisor). Both
must exit cleanly at the end of the replay, and then the journal and the saved state must tell
the same story as a backtest of the same window on the same engine: every position a trigger
closed is in the state with its trigger, in the journal as ``trigger_fired`` with the fill price
in ``price`` (never in the journal's own ``level``), and the cash is what the fills add up to.

The EURUSD window and trailing distance are chosen so that a stop-loss, a take-profit and a
trailing stop each fire within 240 hourly bars (checked against the backtest, which would make
a drifted window fail loudly rather than pass silently).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeexecutor.backtest import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.data.source import load_market
from tradeexecutor.ledger import load_state
from tradeexecutor.runs.registry import Registry
from tradeexecutor.state import State
from tradeexecutor.store.journal import ENTRY_KEYS, LEVELS, Journal
from tradeexecutor.strategy.loader import load_strategy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ROOT / "strategies"
TRIGGER_KINDS = {"stop_loss", "take_profit", "trailing_stop"}
#: Fast replays: two milliseconds a bar, no charts, no CPU pinning (the machine is shared).
FAST = {"TRADEEXECUTOR_REPLAY_SECONDS": "0.002", "TRADEEXECUTOR_CHART_SECONDS": "0",
        "TRADEEXECUTOR_CPU": "off", "TRADEEXECUTOR_REPLAY_START": "first"}


@dataclass(frozen=True)
class Example:
    """One example strategy, a short window of its bundled data and the parameters to run it with."""

    file: str
    start: str
    end: str
    params: dict[str, str] = field(default_factory=dict)
    #: Trigger kinds that must fire in this window (empty: the strategy sets no triggers).
    triggers: frozenset[str] = frozenset()


EXAMPLES = [
    Example("eurusd_breakout.py", "2017-01-02", "2017-01-14", {"trailing_stop_pct": "0.006"},
            frozenset(TRIGGER_KINDS)),
    Example("sma_crossover.py", "2010-01-01", "2010-05-31", {"fast": "5", "slow": "20"}),
    Example("momentum_rotation.py", "2010-01-01", "2010-05-31", {"lookback": "20"}),
]


def test_every_example_strategy_is_covered() -> None:
    assert sorted(example.file for example in EXAMPLES) == sorted(p.name for p in STRATEGIES.glob("*.py"))
    assert set().union(*(example.triggers for example in EXAMPLES)) == TRIGGER_KINDS


def _environment(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    return {**clean, "PYTHONUNBUFFERED": "1", **FAST, **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _backtest(example: Example) -> State:
    strategy = load_strategy(STRATEGIES / example.file, example.params)
    market, _ = load_market([], strategy.instruments, start=example.start, end=example.end)
    return run_backtest(strategy, market, EngineConfig()).state


def _trades(state: State) -> list[tuple[Any, ...]]:
    portfolio = state.portfolio
    return sorted((t.id, t.purpose, t.status, t.trigger, str(t.filled_at), t.signed_filled_quantity, t.average_fill_price)
                  for p in portfolio.closed_positions + portfolio.open_positions + portfolio.failed_positions
                  for t in p.orders)


def _check_run(example: Example, state_dir: Path) -> None:
    """The saved state and the journal of a finished replay, against a backtest of the same window."""
    state = load_state(state_dir)
    assert state is not None, f"no state saved in {state_dir}"
    expected = _backtest(example)
    assert _trades(state) == _trades(expected), "the replay traded differently from the backtest"
    assert len(state.portfolio.closed_positions) >= 2, "the window must hold a few round trips"

    # Positions closed by each trigger kind, and the cash those fills add up to.
    closing = {p.id: p.orders[-1] for p in state.portfolio.closed_positions}
    fired = Counter(trade.trigger for trade in closing.values() if trade.trigger)
    assert set(fired) == example.triggers, f"triggers fired: {dict(fired)}"
    for position in state.portfolio.closed_positions:
        assert position.quantity == 0 and position.closed_at is not None
    executed = [t for p in state.portfolio.closed_positions + state.portfolio.open_positions for t in p.orders
                if t.status == "filled"]
    assert all(t.average_fill_price is not None for t in executed)
    flows = sum(t.signed_filled_quantity * (t.average_fill_price or 0.0) + t.fees for t in executed)
    assert state.portfolio.cash == pytest.approx(EngineConfig().initial_cash - flows, abs=1e-6)
    assert state.portfolio.cash == pytest.approx(expected.portfolio.cash, abs=1e-6)
    assert state.valuations.cash[-1] == pytest.approx(state.portfolio.cash, abs=1e-6)

    # The journal: every entry has the journal's own keys only; each trigger is there with its prices.
    entries = list(Journal(state_dir / "journal.jsonl").entries())
    raw_lines = (state_dir / "journal.jsonl").read_bytes().splitlines()
    assert len(raw_lines) == len(entries) and all(list(json.loads(line)) == list(ENTRY_KEYS) for line in raw_lines)
    assert all(entry["level"] in LEVELS for entry in entries)
    triggers = [entry for entry in entries if entry["event"] == "trigger_fired"]
    assert len(triggers) == sum(fired.values())
    for entry in triggers:
        fields = entry["fields"]
        trade = closing[fields["position_id"]]
        assert entry["level"] == "info" and fields["trigger"] == trade.trigger
        assert fields["price"] == pytest.approx(trade.average_fill_price)
        assert fields["trigger_price"] == pytest.approx(trade.trigger_price)
    assert entries[-1]["event"] == "complete"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.file.removesuffix(".py"))
def test_start_replays_an_example_to_the_end(tmp_path: Path, example: Example) -> None:
    state_dir = tmp_path / "state"
    params = [arg for name, value in example.params.items() for arg in ("-p", f"{name}={value}")]
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / example.file),
               "--state-dir", str(state_dir), "--port", str(_free_port()), "--start", example.start,
               "--end", example.end, *params]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=_environment(), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    _check_run(example, state_dir)


def _runs(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "runs", *args], cwd=work,
                            capture_output=True, text=True, timeout=120,
                            env=_environment(TRADEEXECUTOR_RUNS_DIR=str(work / "runs")))
    assert result.returncode == 0, f"runs {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.file.removesuffix(".py"))
def test_runs_create_start_replays_an_example_to_the_end(tmp_path: Path, example: Example) -> None:
    spec = {
        "strategy_file": str(STRATEGIES / example.file), "mode": "replay",
        "environment": {"start": example.start, "end": example.end, "replay_seconds": 0.002, "replay_start": "first"},
        "strategy": dict(example.params),
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    _runs(tmp_path, "create", "spec.yaml", "--ref", "example", "--start")
    try:
        deadline = time.monotonic() + 120
        while True:
            with Registry(tmp_path / "runs") as registry:
                record = registry.find("example")
            assert record is not None
            if record.status not in ("new", "starting", "running"):
                break
            assert time.monotonic() < deadline, f"run still {record.status}"
            time.sleep(0.2)
        run_dir = tmp_path / "runs" / record.id
        assert record.status == "complete", (run_dir / "executor.log").read_text(errors="replace")
        _check_run(example, run_dir / "state")
        log = _runs(tmp_path, "logs", "example", "--limit", "1000").stdout
        fired = [line for line in log.splitlines() if " trigger_fired " in line]
        assert len(fired) == sum(1 for e in Journal(run_dir / "state" / "journal.jsonl").entries()
                                 if e["event"] == "trigger_fired")
        assert all(" info " in line and " price=" in line and " trigger_price=" in line for line in fired)
        if example.triggers:
            report = (run_dir / "report.md").read_text()
            assert "**trigger_fired**" in report and "trigger_price=" in report
            assert "info **trigger_fired**" in report  # the level column holds a level, not a price
    finally:  # never leave a detached executor behind
        with Registry(tmp_path / "runs") as registry:
            left = registry.find("example")
        if left is not None and left.pid:
            try:
                os.killpg(left.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
