"""An order of ours that a restored ledger does not hold is adopted at a live executor's start-up and followed: the
daemon as a subprocess, the unmodified ccxt client, ``tradeexecutor exchange-sim`` (issue 13, item 4).

A first executor (tests/strategies/live_idle.py: it decides nothing) creates the run's ledger and stops. A limit buy
is then placed on the simulator under a client order id of that run (``te<run8>-…``), as a process whose ledger was
later replaced by an older backup would have left it. The restarted executor's reconciliation adopts it — clean, not
in safe mode, journaled ``order_adopted`` — and follows it: once the simulator's price crosses it, its fill is
booked into the position it opened and journaled ``order_filled``, and the ledger equals the simulator's record.
Before adoption the order was a mismatch: the executor started in safe mode and never booked the fill.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange_sim_helpers import ccxt_client, simulator_process
from executor_process import Executor
from test_live_faults_e2e import CLEAN, journaled, sim, until
from tradeexecutor.ledger import load_state
from tradeexecutor.state import Order, OrderPurpose, OrderStatus
from tradeexecutor.state.client_id import client_order_id, run_key

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "LiveAdoptKey0123456789"
SECRET = "live-adopt-secret-0123456789"


def executor(tmp_path: Path, url: str, state_dir: Path) -> Executor:
    return Executor(tmp_path, "--cpu", "off", "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                    "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                    strategy="live_idle.py", window=False, state_dir=state_dir,
                    env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET})


@pytest.mark.timeout(280)
def test_an_order_of_ours_the_ledger_does_not_hold_is_adopted_at_start_up_and_its_fill_booked(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with simulator_process("--random-walk", "7", "--volatility", "0", "--symbols", "EUR/USD", "--balance",
                           "USD=10000", "--fee-asset", "quote", "--api-key-env", "SIM_KEY", "--api-secret-env",
                           "SIM_SECRET", env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        first = executor(tmp_path / "first", url, state_dir)
        try:
            first.wait_status(lambda s: s.get("status") == "running")
            first.process.send_signal(signal.SIGTERM)
            assert first.wait() == 0, first.output()
        finally:
            first.kill()
        state = load_state(state_dir)
        assert state is not None and not list(state.portfolio.all_orders())
        cid = client_order_id(run_key(state.name, state.created_at), datetime.now(UTC), 0, OrderPurpose.open)
        client = ccxt_client(url, key=KEY, secret=SECRET)
        client.load_markets()
        price = float(sim(url, "GET", "status")["markets"]["EURUSD"]["price"])
        limit = float(client.price_to_precision("EUR/USD", price * 0.98))
        quantity = float(client.amount_to_precision("EUR/USD", 2000 / limit))  # a fifth of the account's USD
        placed = client.create_order("EUR/USD", "limit", "buy", quantity, limit, {"clientOrderId": cid})

        second = executor(tmp_path / "second", url, state_dir)
        try:
            status = second.wait_status(lambda s: s.get("status") == "running")
            assert status["reconciliation"]["outcome"] == "clean", status["reconciliation"]
            assert status["reconciliation"]["exchange_orders_adopted"] == 1 and not status["safe_mode"]
            (adopted,) = journaled(second, "order_adopted")
            assert adopted["fields"]["client_order_id"] == cid and adopted["fields"]["purpose"] == "open"
            position_id = adopted["fields"]["position_id"]

            sim(url, "POST", "price", {"symbol": "EURUSD", "price": repr(round(limit * 0.99, 5)), "seconds": 3600})
            (filled,) = journaled(second, "order_filled", lambda e: e["fields"]["client_order_id"] == cid)
            assert filled["fields"]["position_id"] == position_id and filled["fields"]["quantity"] == quantity
            until(second, lambda: _order(state_dir, cid).status is OrderStatus.filled, "the fill committed")
            second.process.send_signal(signal.SIGTERM)
            assert second.wait() == 0, second.output()
        finally:
            second.kill()
        state = load_state(state_dir)
        assert state is not None
        (position,) = state.portfolio.open_positions
        (order,) = position.orders
        assert (position.id, order.client_order_id, order.venue_order_id) == (position_id, cid, str(placed["id"]))
        (trade,) = sim(url, "GET", "trades")
        (fill,) = order.fills
        assert (fill.venue_trade_id, fill.quantity, fill.price, fill.fee, fill.fee_currency) == (
            str(trade["id"]), float(trade["qty"]), float(trade["price"]), float(trade["commission"]),
            trade["commissionAsset"])
        balances = sim(url, "GET", "balances")
        assert position.quantity == quantity == float(balances["EUR"]["free"]) + float(balances["EUR"]["locked"])
        usd = float(balances["USD"]["free"]) + float(balances["USD"]["locked"])
        assert state.portfolio.cash == pytest.approx(usd, abs=1e-6)


def _order(state_dir: Path, cid: str) -> Order:
    state = load_state(state_dir)
    assert state is not None
    (order,) = [o for o in state.portfolio.all_orders() if o.client_order_id == cid]
    return order
