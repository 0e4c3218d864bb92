"""The ledger of a live executor against the exchange simulator's own record: orders, trades, balances, journal.

Shared by the live end-to-end tests (tests/test_live_kill.py after 100+ kills, tests/test_examples_live_e2e.py
for the example strategies): whatever way a run ended, once it stopped the ledger must say what the exchange
says — for every intent exactly one order under its client order id, the same trades with the fees the
exchange charged, the same cash and holdings — and the journal must tell each fill and each cycle once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange_sim_helpers import http_json
from test_ledger_kill import journal_rows
from tradeexecutor.state import Order, OrderStatus, State

#: The instruments of the EURUSD simulator: the ledger's symbol → the base asset the exchange's balances hold.
EURUSD = {"EURUSD": "EUR"}


def exchange(url: str, what: str) -> Any:
    """The simulator's own record (``orders``, ``trades``, ``balances``) from its control API."""
    code, payload = http_json("GET", f"{url}/_sim/{what}")
    assert code == 200, payload
    return payload


def sent_orders(state: State) -> list[Order]:
    """Every order that may have reached the exchange (created ones are committed before any is sent)."""
    return [o for o in state.portfolio.all_orders() if o.status is not OrderStatus.created]


def journal(state_dir: Path) -> list[dict[str, Any]]:
    """The ledger's journal lines, as a restarted writer would read them."""
    return [orjson.loads(line) for _, line in journal_rows(state_dir / "ledger.sqlite")]


def check_ledger_equals_exchange(state: State, state_dir: Path, url: str, *,
                                 bases: Mapping[str, str] = EURUSD, quote: str = "USD") -> int:
    """Orders, fills, cash and holdings of the ledger against the exchange's own record; the journal against both.

    ``bases``: each traded symbol's base asset (its holdings are the exchange's balance of it), ``quote``: the
    cash's asset. Returns how many fills a reconciliation took from the exchange (not from an order's own reply).
    """
    orders = list(state.portfolio.all_orders())
    sent = sent_orders(state)
    # Every order sent has ended (market orders); one the stop left created (decided, not yet sent) is not on the
    # exchange, and the next start sends it (decision_resumed).
    assert all(o.is_terminal for o in sent), [(o.client_order_id, o.status) for o in sent if not o.is_terminal]
    theirs = exchange(url, "orders")
    # For every intent exactly one order on the exchange, and it is the ledger's.
    assert Counter(o["clientOrderId"] for o in theirs) == Counter(o.client_order_id for o in sent)
    by_cid = {o["clientOrderId"]: o for o in theirs}
    for order in sent:
        their = by_cid[order.client_order_id]
        assert their["type"] == "MARKET" and their["side"] == order.side.value.upper()
        assert order.venue_order_id == str(their["orderId"])
        if order.value is not None:  # a market buy of a quote value: the ledger holds the value sent, to the digit
            assert Decimal(str(order.value)) == Decimal(their["origQuoteOrderQty"]), (order.client_order_id, their)
        assert (order.status.value, their["status"]) in (("filled", "FILLED"), ("rejected", "REJECTED")), (
            order.client_order_id, order.status, their["status"])
        assert sum(f.quantity for f in order.fills) == pytest.approx(float(their["executedQty"]), rel=1e-12)
    trades = exchange(url, "trades")
    fills = {f.venue_trade_id: f for o in orders for f in o.fills}
    assert sorted(str(t) for t in fills) == sorted(str(t["id"]) for t in trades), "ledger fills ≠ exchange trades"
    for trade in trades:
        fill = fills[str(trade["id"])]
        assert (fill.quantity, fill.price, fill.fee) == pytest.approx(
            (float(trade["qty"]), float(trade["price"]), float(trade["commission"])), rel=1e-12)
        assert fill.fee_currency == trade["commissionAsset"]
    balances = exchange(url, "balances")
    assert float(balances[quote]["free"]) + float(balances[quote]["locked"]) == pytest.approx(state.portfolio.cash,
                                                                                              abs=1e-6)
    closed = state.portfolio.closed_positions
    for symbol, base in bases.items():
        instrument = state.instrument_by_symbol(symbol)
        assert instrument is not None, f"the ledger has no instrument {symbol}"
        held = (sum(p.quantity for p in state.portfolio.open_positions if p.instrument_id == instrument.id)
                + sum(p.dust_quantity for p in closed if p.instrument_id == instrument.id))
        assert float(balances.get(base, {"free": 0})["free"]) == pytest.approx(held, abs=1e-9), symbol
    # The journal: each fill once, journaled when it came back (order_filled; the close a stop or target sent is
    # journaled as its trigger_fired, with the exchange's fill price) or counted by the reconciliation that took
    # it from the exchange after a kill; each cycle once.
    entries = journal(state_dir)
    filled = Counter(e["fields"]["client_order_id"] for e in entries if e["event"] == "order_filled")
    assert max(filled.values(), default=1) == 1, "a fill was journaled twice"
    assert set(filled) <= {o.client_order_id for o in orders if o.fills and o.trigger is None}
    fired = Counter(e["fields"]["position_id"] for e in entries if e["event"] == "trigger_fired")
    by_trigger = Counter(p.id for p in state.portfolio.all_positions() for o in p.orders if o.trigger and o.fills)
    assert fired == by_trigger, "a stop or target's fill journaled other than once"
    reconciled = sum(e["fields"]["fills_applied"] for e in entries if e["event"] == "reconciled")
    assert len(filled) + fired.total() + reconciled == len(fills), (len(filled), fired, reconciled, len(fills))
    cycles = [e["fields"]["cycle_time"] for e in entries if e["event"] == "cycle_completed"]
    assert len(cycles) == len(set(cycles)) == state.cycles_completed
    return int(reconciled)
