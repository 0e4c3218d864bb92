"""An order adopted at start-up, through the real Engine in live mode (the in-memory exchange twin): the restarted
engine follows it — its fill journaled ``order_filled`` — and the decision that made it, taken again after the
restore, finds it instead of sending a second order.

A backup of the state is taken before a decision; the decision's entry rests on the exchange; the backup is then
what the restarted executor loads. Reconciliation adopts the entry (its ``created_at`` the decision time its id
carries), and the engine built over the restored state before reconciliation ran (as the daemon builds it) follows it
from ``resolve_orders`` on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from scripted import SCRIPTED, ohlc
from test_engine_router import T0
from test_engine_writeahead import CONFIG, cycle_ns, orders
from tradeexecutor.backtest.runner import new_state as new_run_state
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.engine import Engine
from tradeexecutor.engine.reconcile import reconcile
from tradeexecutor.state import OrderStatus
from tradeexecutor.strategy.api import open_long
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.venue import InMemoryVenue
from venue_contract import AAA

Journal = list[tuple[str, dict[str, Any]]]


def test_the_restarted_engine_follows_the_adopted_order_and_the_same_decision_never_sends_a_second(
        tmp_path: Path) -> None:
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", [100.0, 101.0, 102.0]), asset_types={"AAA": "equity"})
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True  # accepted; it rests on the book
    first = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG)
    first.live_venue = venue
    first.start_write_ahead(lambda: None, lambda: T0)
    backup = copy.deepcopy(first.state)  # taken before the decision
    first.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    first.manage(1)
    (sent,) = orders(first)
    assert sent.status is OrderStatus.open

    journal: Journal = []

    def sink(event: str, /, **fields: Any) -> None:
        journal.append((event, fields))

    # As the daemon does (daemon/runner.py): the engine is built over the loaded state, then reconciliation runs.
    second = Engine(strategy, market, backup, config=CONFIG, events=sink)
    result = reconcile(backup, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",), journal=sink)
    assert result.clean, result.mismatches
    assert [(o.client_order_id, o.action) for o in result.exchange_orders] == [(sent.client_order_id, "adopted")]
    (adopted,) = backup.portfolio.all_orders()
    assert adopted.created_at == sent.created_at  # the decision's time, read from its id

    second.live_venue = venue
    second.start_write_ahead(lambda: None, lambda: T0)
    second.resolve_orders(T0)
    venue.hold = False
    venue.advance({"AAA": 100.0}, T0)  # the exchange fills it
    second.drain()
    assert adopted.status is OrderStatus.filled
    (filled,) = [f for e, f in journal if e == "order_filled"]
    assert (filled["client_order_id"], filled["position_id"]) == (sent.client_order_id, adopted.position_id)
    (position,) = backup.portfolio.open_positions
    assert position.quantity == venue.balances()["AAA"].free > 0
    assert backup.portfolio.cash == venue.balances()["USD"].free

    second.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))  # the same decision, taken again after the restore
    assert orders(second) == [adopted]
    assert [cid for method, cid in venue.calls if method == "submit"] == [sent.client_order_id]  # no second order
