"""Write-ahead under kill -9: the executor kills itself at chosen instants of sending an order, then restarts.

The real daemon runs as a subprocess on a fast replay with ``TRADEEXECUTOR_TEST_KILL_AT=POINT:N``
(engine/crashpoint.py): at the Nth order of that process it sends itself SIGKILL either right
after the order was committed ``submitting`` (before the venue saw it) or right after the venue
took it (before its outcome was committed). After each kill the ledger must hold that order —
and only it — as ``submitting``: the commit came first. The next process resolves it by client
order id before deciding anything (journaled ``order_resolved``) and goes on. In the end, over
every kill: exactly one order per intent (the client order ids a backtest of the same run makes,
each once), each fill journaled once (ledger = journal), cash and quantities recomputed from
the fills equal to the stored figures, and every order and fill equal to the backtest's.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from executor_process import END, START, STRATEGIES, Executor
from tradeexecutor.backtest import run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.source import load_market
from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.engine.crashpoint import KILL_AT_ENV
from tradeexecutor.ledger import load_state
from tradeexecutor.state import Order, OrderStatus, State
from tradeexecutor.strategy.loader import load_strategy

pytestmark = pytest.mark.slow

#: name → (strategy, extra options, the same execution settings for the backtest, kills: (point, N) per process).
CASES: dict[str, tuple[str, tuple[str, ...], ExecutionConfig, list[tuple[str, int]]]] = {
    # 28 orders over the year, filled at the next bar's open.
    "next_open": ("daemon_sma.py", (), ExecutionConfig(),
                  [("submitting", 1), ("submitted", 2), ("submitting", 3), ("submitted", 1), ("submitting", 2)]),
    # 275 orders, half of them trailing-stop exits priced at the trigger (a gap: the open), fee and slippage.
    "trigger_exits": ("daemon_stop.py", ("--fee", "0.001", "--slippage-bps", "5"),
                      ExecutionConfig(fee=0.001, slippage_bps=5),
                      [("submitted", 2), ("submitting", 4), ("submitted", 31), ("submitting", 56),
                       ("submitted", 17), ("submitting", 1)]),
    # Filled at the deciding bar's close: the write-ahead commit lands inside the decision, which a restart
    # takes again and finds its committed orders by client order id.
    "fill_at_close": ("daemon_sma.py", ("--fill-timing", "close", "--fee", "0.001"),
                      ExecutionConfig(fill_timing="close", fee=0.001),
                      [("submitting", 1), ("submitted", 2), ("submitting", 2), ("submitted", 1)]),
}


@pytest.fixture
def executors() -> Iterator[list[Executor]]:
    started: list[Executor] = []
    yield started
    for executor in started:
        executor.kill()


def journal(state_dir: Path) -> list[dict[str, Any]]:
    """The ledger's journal table, read from a copy of the ledger and its WAL (as the next writer would see it)."""
    path = state_dir / "ledger.sqlite"
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        if Path(f"{path}-wal").exists():
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        conn = sqlite3.connect(copy)
        try:
            rows = conn.execute("SELECT line FROM journal ORDER BY seq").fetchall()
        finally:
            conn.close()
    return [orjson.loads(line) for (line,) in rows]


def orders(state: State) -> list[Order]:
    return sorted(state.portfolio.all_orders(), key=lambda o: o.id)


def check_ledger(state_dir: Path) -> State:
    """Every invariant a kill must not break: one order per intent, fills once, money from fills, journal = ledger."""
    state = load_state(state_dir)
    assert state is not None
    every = orders(state)
    ids = [o.client_order_id for o in every]
    assert len(ids) == len(set(ids)), "an intent has two orders"
    assert [o.id for o in every] == list(range(1, state.portfolio.next_order_id))
    fills = [f.id for o in every for f in o.fills]
    assert sorted(fills) == list(range(1, state.portfolio.next_fill_id)), "a fill was lost or applied twice"
    assert all(len(o.fills) <= 1 for o in every), "a market order filled twice"
    for position in state.portfolio.all_positions():
        figures = recompute_from_fills(position)
        assert (figures.quantity, figures.cost_basis, figures.realised_pnl, figures.fees_paid) == (
            position.quantity, position.cost_basis, position.realised_pnl, position.fees_paid)
    assert recompute_cash(state.initial_cash, state.portfolio) == state.portfolio.cash
    # The journal names each fill exactly once: order_filled by client order id, a trigger's exit by its position.
    entries = journal(state_dir)
    filled = Counter(e["fields"]["client_order_id"] for e in entries if e["event"] == "order_filled")
    triggered = Counter(e["fields"]["position_id"] for e in entries if e["event"] == "trigger_fired")
    assert filled == Counter({o.client_order_id: 1 for o in every if o.fills and o.trigger is None})
    assert triggered == Counter({o.position_id: 1 for o in every if o.fills and o.trigger is not None})
    rejected = Counter(e["fields"]["client_order_id"] for e in entries if e["event"] == "order_rejected")
    assert rejected == Counter({o.client_order_id: 1 for o in every if o.status is OrderStatus.rejected})
    return state


def intent_ids(state: State) -> list[str]:
    """Client order ids without the run key: what the decisions alone determine."""
    return [o.client_order_id.split("-", 1)[1] for o in orders(state)]


def order_rows(state: State) -> list[tuple[Any, ...]]:
    return [(o.id, o.purpose, o.status, o.created_at, o.trigger, o.reference_price,
             [(f.quantity, f.price, f.fee, f.at, f.slippage) for f in o.fills]) for o in orders(state)]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", list(CASES))
def test_killed_between_commit_and_submit_or_submit_and_outcome_never_sends_twice(
        tmp_path: Path, executors: list[Executor], case: str) -> None:
    strategy_file, options, execution, kills = CASES[case]
    killed: list[str] = []
    for point, count in kills:
        executor = Executor(tmp_path, "--replay-seconds", "0.01", "--crash-loop-count", "0", *options,
                            strategy=strategy_file, env={KILL_AT_ENV: f"{point}:{count}"})
        executors.append(executor)
        assert executor.wait(240) == -signal.SIGKILL, executor.output()
        state = check_ledger(executor.state_dir)
        sent = [o for o in orders(state) if o.status is OrderStatus.submitting]
        assert len(sent) == 1, f"killed at {point}:{count}, the ledger should hold one order submitting: {sent}"
        order = sent[0]
        assert not order.fills and order.submitted_at is not None
        killed.append(order.client_order_id)
    final = Executor(tmp_path, "--replay-seconds", "0.01", *options, strategy=strategy_file)
    executors.append(final)
    assert final.wait(240) == 0, final.output()
    assert "executor complete" in final.output()
    state = check_ledger(final.state_dir)
    assert not [o for o in orders(state) if not o.is_terminal]
    entries = journal(final.state_dir)
    resolved = " ".join(e["fields"]["detail"] for e in entries if e["event"] == "order_resolved")
    if execution.fill_timing == "close":  # every kill landed inside a decision, which the restart did not take again
        resumed = [c for e in entries if e["event"] == "decision_resumed" for c in e["fields"]["orders"]]
        assert set(killed) <= set(resumed)
    for client_order_id in killed:
        assert client_order_id in resolved, f"{client_order_id} was never resolved on restart"
        order = next(o for o in orders(state) if o.client_order_id == client_order_id)
        assert order.status in (OrderStatus.filled, OrderStatus.rejected)
    strategy = load_strategy(STRATEGIES / strategy_file)
    market, _ = load_market([], strategy.instruments, start=START, end=END)
    expected = run_backtest(strategy, market, EngineConfig(execution=execution)).state
    assert state.replay_cursor == len(market) - 1
    assert intent_ids(state) == intent_ids(expected)  # the same decisions made the same orders, each once
    assert order_rows(state) == order_rows(expected)
    assert state.portfolio.cash == expected.portfolio.cash
    assert state.cycles_completed == expected.cycles_completed
