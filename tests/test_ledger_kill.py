"""kill -9 at random instants over hundreds of restarts: the ledger holds each job entirely or not at all.

After every kill the ledger must open (integrity-checked), and across all restarts: no cycle
completes twice, no fill appears twice, cash and every position's quantity recomputed from the
fills equal the stored figures, and the journal agrees with the ledger line for line (one
``cycle_completed`` per completed cycle, one ``order_filled`` per fill, in order).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import OrderStatus, State

WRITER = Path(__file__).resolve().parent / "ledger_writer.py"


def journal_rows(path: Path) -> list[tuple[str, bytes]]:
    """The journal table as a restarted writer sees it: from a copy of the ledger and its WAL.

    (A read-only connection on the files themselves may trust a -shm that a kill left one
    transaction behind the WAL; the next writer rebuilds the index from the WAL, as this copy does.)
    """
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        if Path(f"{path}-wal").exists():
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        conn = sqlite3.connect(copy)
        try:
            return conn.execute("SELECT event, line FROM journal ORDER BY seq").fetchall()
        finally:
            conn.close()


def assert_money_from_fills(state: State) -> None:
    """Cash and every position's running figures equal what their fills replay to (engine/accounting.py)."""
    cash = recompute_cash(state.initial_cash, state.portfolio)
    assert abs(cash - state.portfolio.cash) < 1e-6 * state.initial_cash, (cash, state.portfolio.cash)
    for position in state.portfolio.all_positions():
        held = recompute_from_fills(position)
        assert abs(held.quantity - position.quantity) < 1e-9, (position.id, held, position.quantity)
        assert abs(held.cost_basis - position.cost_basis) < 1e-6 * state.initial_cash
        assert abs(held.realised_pnl - position.realised_pnl) < 1e-6 * state.initial_cash
        assert abs(held.fees_paid - position.fees_paid) < 1e-6 * state.initial_cash


def check_ledger(path: Path) -> State:
    """Open the ledger as a restarting executor would, and check every invariant against its journal."""
    state = Ledger(path).load()
    assert state is not None
    portfolio = state.portfolio
    fills = [f for o in portfolio.all_orders() for f in o.fills]
    ids = [f.id for f in fills]
    assert len(ids) == len(set(ids)) == portfolio.next_fill_id - 1, "a fill was lost or appears twice"
    orders = [o.id for o in portfolio.all_orders()]
    assert len(orders) == len(set(orders)) == portfolio.next_order_id - 1, "an order was lost or appears twice"
    assert_money_from_fills(state)
    assert len(state.valuations) == state.cycles_completed
    rows = journal_rows(path)
    entries = [orjson.loads(line) for _, line in rows]
    cycles = [e["fields"]["cycle"] for e in entries if e["event"] == "cycle_completed"]
    assert cycles == list(range(state.cycles_completed)), "a cycle completed twice, or its line is missing"
    journaled = [e["fields"]["order_id"] for e in entries if e["event"] == "order_filled"]
    assert journaled == sorted(orders), "the journal's fills differ from the ledger's"
    return state


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 210 restarts: minutes on a machine whose cores are busy with other work
def test_kill_9_at_random_instants_over_hundreds_of_restarts(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    rng = random.Random(2024)
    restarts, progress = 0, []
    # A count, not a time limit: a machine whose cores are busy with other work takes longer per restart,
    # and a test that asks for the 200+ kills within a fixed time would fail there for no fault.
    # The writer imports its helpers from tests/ and the package from wherever this process does (a
    # checkout on PYTHONPATH comes before an installed copy, as for every other subprocess of the suite).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(WRITER.parent), os.environ.get("PYTHONPATH")]))}
    while restarts < 210:
        process = subprocess.Popen([sys.executable, str(WRITER), str(path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env)
        try:
            if restarts % 2:  # half the kills land at a random instant from launch: import, check, load or a cycle
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                assert process.stdout is not None
                line = process.stdout.readline()
                assert line == b"ready\n", (line, process.stderr.read() if process.stderr else b"")
                time.sleep(rng.uniform(0.0, 0.05))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        restarts += 1
        state = check_ledger(path) if path.exists() else None
        progress.append(state.cycles_completed if state is not None else 0)
    assert progress[-1] > 200, progress[-10:]  # the writer did real work between kills
    assert progress == sorted(progress), "a committed cycle was lost across a restart"


def check_orders(state: State, entries: list[dict]) -> None:
    """Orders and fills after a kill: every intent has one order, every order one story, and the journal tells it.

    - one order per client order id (an intent re-derived after a restart is never a second order);
    - every order in the ledger was journaled once as planned (or, for a trigger exit, as fired), and every
      order journaled as planned is in the ledger: the journal claims no order the ledger lacks;
    - fills: unique ids, each fill's order is the order holding it, a filled order has fills and a rejected
      one has none; ``order_rejected`` lines are the rejected orders, once each.
    """
    orders = list(state.portfolio.all_orders())
    client_ids = [o.client_order_id for o in orders]
    assert len(client_ids) == len(set(client_ids)), "an order was created twice for the same intent"
    planned = [e["fields"]["client_order_id"] for e in entries if e["event"] == "order_planned"]
    assert len(planned) == len(set(planned)), "an order was journaled as planned twice"
    assert sorted(planned) == sorted(o.client_order_id for o in orders if o.trigger is None)
    fired = [e["fields"]["position_id"] for e in entries if e["event"] == "trigger_fired"]
    assert sorted(fired) == sorted(o.position_id for o in orders if o.trigger is not None)
    fill_ids = [f.id for o in orders for f in o.fills]
    assert len(fill_ids) == len(set(fill_ids)), "a fill appears twice"
    for order in orders:
        assert all(f.order_id == order.id for f in order.fills)
        if order.status is OrderStatus.filled:
            assert order.fills and order.filled_quantity > 0
        if order.status is OrderStatus.rejected:
            assert not order.fills
    rejected = [e["fields"]["order_id"] for e in entries if e["event"] == "order_rejected"]
    assert sorted(rejected) == sorted(o.id for o in orders if o.status is OrderStatus.rejected)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 30 executor start-ups: minutes on a machine whose cores are busy with other work
def test_kill_9_of_the_real_paper_executor_at_random_instants(tmp_path: Path) -> None:
    """The daemon itself (``tradeexecutor start``, a fast replay), killed at random instants and restarted."""
    from executor_process import Executor

    state_dir = tmp_path / "state"
    ledger = state_dir / "ledger.sqlite"
    rng = random.Random(7)
    done: list[int] = []
    restarts = 0
    # A count, not a time limit (a busy machine is slower, not wrong); the timeout above bounds a hang.
    while restarts < 30:
        executor = Executor(tmp_path / f"run{restarts}", "--replay-seconds", "0.02", "--revaluation-seconds", "0.05",
                            "--trigger-seconds", "0.03", "--start", "2000-01-01", "--end", "2013-12-31",
                            state_dir=state_dir)
        try:
            try:
                executor.wait_status(lambda status: status["status"] in ("running", "complete"))
            except AssertionError as error:
                if "cannot listen" in str(error):  # the free port was taken meanwhile: start again on another
                    continue
                raise
            time.sleep(rng.uniform(0.0, 1.0))
        finally:
            executor.process.send_signal(signal.SIGKILL)
            executor.process.wait(30)
        restarts += 1
        state = Ledger(ledger).load()
        assert state is not None
        filled = [o for o in state.portfolio.all_orders() if o.fills]
        assert_money_from_fills(state)
        entries = [orjson.loads(line) for _, line in journal_rows(ledger)]
        cycles = [e["fields"]["cycle_time"] for e in entries if e["event"] == "cycle_completed"]
        assert len(cycles) == len(set(cycles)) == state.cycles_completed, "a cycle completed twice or went unjournaled"
        assert cycles == sorted(cycles)
        fills = [e["fields"]["order_id"] for e in entries if e["event"] == "order_filled"]
        assert sorted(fills) == sorted(o.id for o in filled) and len(fills) == len(set(fills))
        check_orders(state, entries)
        done.append(state.cycles_completed)
    assert done == sorted(done) and done[-1] > 10, done
    assert sum(1 for _ in [e for _, e in journal_rows(ledger) if _ == "order_filled"]) > 0
