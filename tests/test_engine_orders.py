"""The engine creates orders and applies fills: positions agree with their fills, and ids are deterministic.

A run with fees, slippage, partial reduces, increases, a rejection, a cancellation and a
stop-loss exit, so that every path that moves money is taken; then every position's running
figures must equal :func:`recompute_from_fills` exactly (the same float operations in the same
order) and cash must equal the initial cash replayed over every fill.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scripted import after, ohlc, run
from tradeexecutor.backtest.runner import BacktestResult
from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.state import OrderStatus, TriggerKind, run_key
from tradeexecutor.state.client_id import CLIENT_ORDER_ID_PATTERN
from tradeexecutor.strategy.api import close, increase, open_long, reduce

PRICES = [100, 101, 103, 99, 104, 108, 107, 111, (110, 111, 90, 95), 96, 97, 99, 102, 104, 103]


def busy_run(tmp_path: Path, fill_timing: str = "next_open") -> BacktestResult:
    frame = pd.concat([ohlc("AAA", PRICES), ohlc("BBB", [50 + i for i in range(len(PRICES))])])
    script = {
        after(0): [open_long("AAA", fraction=0.4), open_long("BBB", value=50)],     # BBB: below min notional
        after(1): [increase("AAA", value=1000), open_long("BBB", value=2000)],
        after(2): [reduce("AAA", fraction=0.3)],
        after(3): [reduce("BBB", quantity=7)],
        after(4): [close("BBB"), open_long("BBB", value=1500, stop_loss_pct=0.5)],
        after(5): [close("AAA")],
        after(6): [open_long("AAA", fraction=0.5, stop_loss=92)],                   # stopped out on bar 8
        after(10): [close("BBB")],
        after(11): [open_long("AAA", value=700)],
    }
    return run(tmp_path, frame, script, fee=0.0015, slippage_bps=7, min_notional=100, fill_timing=fill_timing)


@pytest.mark.parametrize("fill_timing", ["next_open", "close"])
def test_positions_and_cash_equal_their_fills_replayed(tmp_path: Path, fill_timing: str) -> None:
    result = busy_run(tmp_path, fill_timing)
    portfolio = result.state.portfolio
    positions = list(portfolio.all_positions())
    assert sum(len(o.fills) for p in positions for o in p.orders) >= 10
    assert any(o.status is OrderStatus.rejected for p in positions for o in p.orders)
    if fill_timing == "next_open":
        assert any(o.trigger is TriggerKind.stop_loss and o.fills for p in positions for o in p.orders)
    for position in positions:
        figures = recompute_from_fills(position)
        assert (figures.quantity, figures.cost_basis, figures.realised_pnl, figures.fees_paid) == (
            position.quantity, position.cost_basis, position.realised_pnl, position.fees_paid), position.id
        assert position.realised_pnl == pytest.approx(sum(f.realised_pnl for o in position.orders for f in o.fills))
    assert recompute_cash(result.state.initial_cash, portfolio) == portfolio.cash
    fill_ids = [f.id for o in portfolio.all_orders() for f in o.fills]
    assert sorted(fill_ids) == list(range(1, len(fill_ids) + 1)) and portfolio.next_fill_id == len(fill_ids) + 1
    for order in portfolio.all_orders():
        assert all(f.order_id == order.id for f in order.fills)
        if order.fills:
            assert order.status is OrderStatus.filled and order.submitted_at is not None
        assert order.is_terminal or order.status is OrderStatus.created


def test_the_same_decisions_give_the_same_client_order_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = busy_run(tmp_path / "a")
    second = busy_run(tmp_path / "b")
    ids = [o.client_order_id for o in sorted(first.state.portfolio.all_orders(), key=lambda o: o.id)]
    again = [o.client_order_id for o in sorted(second.state.portfolio.all_orders(), key=lambda o: o.id)]
    assert len(set(ids)) == len(ids), "two orders share a client order id"
    assert all(CLIENT_ORDER_ID_PATTERN.match(cid) for cid in ids)
    # A backtest's ids are keyed by the strategy alone (its orders never reach a venue), so the same
    # backtest run twice writes the same ids; a daemon's are keyed by its state's creation time too.
    assert ids == again
    assert ids[0].startswith("te" + run_key(first.state.name, None) + "-")
