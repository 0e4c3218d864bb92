"""Reconciliation adopts an order of ours the ledger does not hold: the real ccxt client against the exchange simulator.

Every order is committed before it is sent, so an order on the exchange with this run's client-id prefix
(``te<run8>-``) that the ledger does not hold at all is one a restored backup never heard of. Such an order open on
the exchange is *adopted* (issue 13, item 4): recorded as the exchange reports it (type, quantity, limit price,
status; purpose from the id's last letter), placed in its position (the one its id names, a new one for an order
that opens exposure, the instrument's one open position for one that reduces or closes), its fills booked, and
followed from then on. One that cannot be placed, or that the ledger holds ended, stays a mismatch with the reason;
another client's order is listed and ignored. Adoption books the exchange's record of *our* orders and nothing
else: a ledger behind the account still differs from it in its ended orders' fills, a mismatch.

Each test fails before adoption: the order of ours was a mismatch (safe mode), whatever it was.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import Running, ccxt_client, wait_for
from test_engine_router import T0, decide_open, new_state
from test_reconcile import Life, _now, _reconcile_command, exchange_orders, limit_buy
from test_venue_ccxt import aaa_at_100, aaa_simulator, pin, running  # noqa: F401  (fixtures)
from test_venue_ccxt import aaa_venue as venue
from tradeexecutor.engine.reconcile import Reconciliation, reconcile
from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.state import Order, OrderPurpose, OrderSide, OrderStatus, OrderType, State
from tradeexecutor.state.client_id import client_order_id, run_key

pytest.importorskip("ccxt")


#: Each test starts from a fresh simulator account with AAA held at 100 (tests/test_venue_ccxt.py's fixtures).
pytestmark = pytest.mark.usefixtures("aaa_at_100")


def ours(state: State, purpose: OrderPurpose, *, hours: int = 0, seq: int = 0, position_id: int | None = None) -> str:
    """A client order id this run's executor would make, decided ``hours`` after T0."""
    return client_order_id(run_key(state.name, state.created_at), T0 + timedelta(hours=hours), seq, purpose,
                           position_id=position_id)


def place(running: Running, cid: str, side: str, quantity: float, price: float) -> dict[str, Any]:
    """A resting limit order on the simulator under ``cid``, as an earlier process would have left it."""
    placed: dict[str, Any] = ccxt_client(running.url).create_order("AAA/USD", "limit", side, quantity, price,
                                                                    {"clientOrderId": cid})
    return placed


class Recorder:
    """A journal that keeps its lines, and a commit that keeps which lines each commit carried."""

    def __init__(self, life: Life) -> None:
        self.life = life
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self.commits: list[list[str]] = []

    def journal(self, event: str, /, **fields: Any) -> None:
        self.lines.append((event, fields))

    def commit(self) -> None:
        self.commits.append([event for event, _ in self.lines])
        self.life.commit()

    def reconcile(self, *, at_start: bool = True) -> Reconciliation:
        return reconcile(self.life.state, self.life.venue, commit=self.commit, now=_now, at_start=at_start,
                         symbols=("AAA",), journal=self.journal)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.lines if event == name]


def balances(running: Running) -> dict[str, float]:
    _, held = running.control("GET", "balances")
    return {asset: float(b["free"]) + float(b["locked"]) for asset, b in held.items()}


def test_a_resting_limit_order_of_ours_is_adopted_and_its_fill_booked_when_the_price_crosses_it(
        tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    life.commit()
    cid = ours(life.state, OrderPurpose.open)
    placed = place(running, cid, "buy", 10, 95.0)
    recorder = Recorder(life)
    result = recorder.reconcile()
    assert result.clean, result.mismatches
    (found,) = result.exchange_orders
    (position,) = life.state.portfolio.open_positions  # a new position: the order opens one
    assert (found.client_order_id, found.action, found.position_id, found.fills_applied) == (cid, "adopted",
                                                                                            position.id, 0)
    (order,) = position.orders
    assert (order.client_order_id, order.venue_order_id, order.purpose, order.side.value, order.type,
            order.quantity, order.limit_price, order.status) == (cid, str(placed["id"]), OrderPurpose.open, "buy",
                                                                 OrderType.limit, 10.0, 95.0, OrderStatus.open)
    assert order.created_at == T0 == position.opened_at  # the decision's time, from the id
    (line,) = recorder.events("order_adopted")
    assert (line["client_order_id"], line["position_id"], line["symbol"], line["purpose"]) == (cid, position.id,
                                                                                                "AAA", "open")
    assert line["reason"] == "open on the exchange with this run's prefix, not in the ledger"
    without_stops = (f"position {position.id} (AAA) adopted without stops: the id of the order that opened it does "
                     "not carry its stop-loss or take-profit, and its decision is not taken again; close it by hand "
                     f"(tradeexecutor control URL close {position.id}) if it must not run without them")
    assert line["note"] == without_stops and without_stops in result.notes  # for a person: it runs without stops
    assert position.stop_loss is None and position.take_profit is None
    assert recorder.commits == [["order_adopted", "reconciled"]]  # one transaction: the adoption and its lines
    assert recorder.events("reconciled")[0]["exchange_orders_adopted"] == 1
    record = json.loads(json.dumps(result.to_dict(), default=str))
    assert record["exchange_orders"][0]["action"] == "adopted"
    assert record["exchange_orders"][0]["position_id"] == position.id
    assert without_stops in record["notes"]

    # Followed from then on, as any order the executor sent: the price crosses it, its fill is booked.
    pin(running, 90.0)
    wait_for(lambda: exchange_orders(running)[0]["status"] == "FILLED", timeout=30)
    router = OrderRouter(life.state, life.venue, life.commit, _now)
    wait_for(lambda: router.drain() and order.status is OrderStatus.filled, timeout=30)
    _, trades = running.control("GET", "trades")
    (trade,) = trades
    (fill,) = order.fills
    assert (fill.venue_trade_id, fill.quantity, fill.price, fill.fee) == (
        str(trade["id"]), float(trade["qty"]), float(trade["price"]), float(trade["commission"]))
    held = balances(running)
    assert position.quantity == 10 == held["AAA"]
    assert life.state.portfolio.cash == pytest.approx(held["USD"], abs=1e-9)
    again = life.reconcile()
    assert again.clean and again.exchange_orders == (), again.mismatches
    life.close()


def test_an_order_of_ours_filled_in_part_before_the_start_is_adopted_with_its_fills_and_the_balances_agree(
        tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    life.commit()
    running.control("POST", "faults", {"kind": "partial_fill", "parts": 2, "interval": 3600, "count": 1})
    cid = ours(life.state, OrderPurpose.open)
    place(running, cid, "buy", 10, 95.0)
    pin(running, 90.0)  # crosses it: one part of two fills, the next not before an hour
    wait_for(lambda: exchange_orders(running)[0]["status"] == "PARTIALLY_FILLED", timeout=30)
    pin(running, 100.0)
    recorder = Recorder(life)
    result = recorder.reconcile()
    assert result.clean, result.mismatches
    (found,) = result.exchange_orders
    assert (found.action, found.status, found.fills_applied) == ("adopted", "partially_filled", 1)
    (position,) = life.state.portfolio.open_positions
    (order,) = position.orders
    assert order.status is OrderStatus.partially_filled and order.filled_quantity == 5
    held = balances(running)
    assert position.quantity == 5 == held["AAA"]
    assert life.state.portfolio.cash == pytest.approx(held["USD"], abs=1e-9)  # free plus what the rest locks
    assert {b.asset: b.ok for b in result.balances} == {"AAA": True, "USD": True}
    assert recorder.events("reconciled")[0]["fills_applied"] == 1
    life.close()


def test_an_exit_naming_an_open_position_is_adopted_into_it_and_closes_it_when_filled(
        tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    entry = decide_open(life.state)  # a market buy of 1000 USD: 10 AAA
    life.router.send(entry)
    life.router.drain()
    (position,) = life.state.portfolio.open_positions
    assert position.quantity == 10
    cid = ours(life.state, OrderPurpose.close, hours=1, position_id=position.id)  # a trigger's or operator's exit
    place(running, cid, "sell", 10, 110.0)
    recorder = Recorder(life)
    result = recorder.reconcile()
    assert result.clean, result.mismatches
    assert [(o.client_order_id, o.action, o.position_id) for o in result.exchange_orders] == [(cid, "adopted",
                                                                                               position.id)]
    assert not [n for n in result.notes if "without stops" in n]  # no position opened by adoption
    assert "note" not in recorder.events("order_adopted")[0]
    assert life.state.portfolio.open_positions == [position]
    assert [o.client_order_id for o in position.orders] == [entry.client_order_id, cid]
    exit_ = position.orders[1]
    assert (exit_.purpose, exit_.side.value, exit_.status) == (OrderPurpose.close, "sell", OrderStatus.open)
    pin(running, 112.0)
    router = OrderRouter(life.state, life.venue, life.commit, _now)
    wait_for(lambda: router.drain() and exit_.status is OrderStatus.filled, timeout=30)
    assert life.state.portfolio.open_positions == [] and position.quantity == 0
    assert life.state.portfolio.cash == pytest.approx(balances(running)["USD"], abs=1e-9)
    life.close()


def test_a_reduce_goes_into_the_instrument_s_one_open_position(tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    life.router.send(decide_open(life.state))
    life.router.drain()
    (position,) = life.state.portfolio.open_positions
    cid = ours(life.state, OrderPurpose.reduce, hours=1)
    place(running, cid, "sell", 4, 130.0)
    result = life.reconcile()
    assert result.clean, result.mismatches
    assert [(o.action, o.position_id) for o in result.exchange_orders] == [("adopted", position.id)]
    assert position.orders[-1].client_order_id == cid and position.orders[-1].purpose is OrderPurpose.reduce
    life.close()


def test_a_ledger_behind_the_account_adopts_the_unknown_order_and_its_missing_ended_order_is_still_a_mismatch(
        tmp_path: Path, running: Running) -> None:
    """A restored backup: the copy knows neither the filled entry nor the resting increase sent after it. The increase
    is adopted (a new position: the copy holds none), and the account's 10 AAA and spent USD that the entry moved
    remain a difference: a mismatch, safe mode. Nothing fixes the money of an order the ledger ended or lost."""
    state_dir, backup = tmp_path / "state", tmp_path / "backup"
    life = Life(state_dir, venue(running), new_state())
    life.commit()
    life.close()
    shutil.copytree(state_dir, backup)  # the backup, taken before anything was traded
    life = Life(state_dir, venue(running))
    entry = decide_open(life.state)
    life.router.send(entry)
    life.router.drain()
    (position,) = life.state.portfolio.open_positions
    portfolio = life.state.portfolio
    increase = Order(id=portfolio.next_order_id, client_order_id=ours(life.state, OrderPurpose.increase, hours=1),
                     position_id=position.id, instrument_id=1, purpose=OrderPurpose.increase, side=OrderSide.buy,
                     created_at=T0 + timedelta(hours=1), type=OrderType.limit, quantity=5, limit_price=50.0)
    portfolio.next_order_id += 1
    position.orders.append(increase)  # an increase resting far below the price
    life.router.send(increase)
    life.router.drain()
    assert entry.status is OrderStatus.filled and increase.status is OrderStatus.open
    life.close()
    shutil.rmtree(state_dir)
    shutil.copytree(backup, state_dir)  # restored: the ledger is behind the account

    restored = Life(state_dir, venue(running))
    assert restored.state.portfolio.open_positions == []
    recorder = Recorder(restored)
    result = recorder.reconcile()
    assert [(o.client_order_id, o.action) for o in result.exchange_orders] == [(increase.client_order_id, "adopted")]
    (adopted,) = restored.state.portfolio.open_positions
    assert [o.client_order_id for o in adopted.orders] == [increase.client_order_id]
    assert sorted(m.symbol for m in result.mismatches) == ["AAA", "USD"], result.mismatches
    (aaa,) = [m for m in result.mismatches if m.symbol == "AAA"]
    assert (aaa.ours, aaa.venue) == (0.0, 10.0)
    assert adopted.quantity == 0 and restored.state.portfolio.cash == 10_000.0  # nothing "fixed"
    assert recorder.commits == [["order_adopted", "reconciled", "reconciliation_mismatch", "reconciliation_mismatch"]]
    restored.close()


def test_orders_of_ours_that_cannot_be_placed_stay_mismatches_with_the_reason_and_others_are_ignored(
        tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    entry = decide_open(life.state)
    life.router.send(entry)
    life.router.drain()
    (position,) = life.state.portfolio.open_positions
    second_open = ours(life.state, OrderPurpose.open, hours=1)
    place(running, second_open, "buy", 1, 50.0)  # opens a position, but one is open in AAA already
    exit_of_another = ours(life.state, OrderPurpose.close, hours=2, position_id=99)
    place(running, exit_of_another, "sell", 1, 200.0)  # names a position the ledger does not hold open
    wrong_side = ours(life.state, OrderPurpose.open, hours=3)
    place(running, wrong_side, "sell", 1, 201.0)  # a sell under an opening order's letter
    place(running, "manual-order-1", "buy", 1, 40.0)  # a person's: listed, ignored
    before = life.state.portfolio.next_order_id
    result = life.reconcile()
    found = {o.client_order_id: (o.action, o.reason) for o in result.exchange_orders}
    assert found == {
        second_open: ("mismatch", f"it could not be adopted: it opens a position and the ledger holds position "
                                  f"{position.id} open in AAA already"),
        exit_of_another: ("mismatch", "it could not be adopted: its id names position 99, which the ledger does not "
                                      "hold open in AAA"),
        wrong_side: ("mismatch", "it could not be adopted: a sell order cannot open a long position (its id's last "
                                 "letter)"),
        "manual-order-1": ("ignored", None)}
    assert sorted(m.client_order_id or "" for m in result.mismatches) == sorted([second_open, exit_of_another,
                                                                                 wrong_side])
    assert all("could not be adopted" in m.what for m in result.mismatches)
    assert life.state.portfolio.next_order_id == before and position.orders == [entry] and not result.changed


def test_an_exit_naming_a_position_the_ledger_lost_never_lands_in_a_position_adoption_opens(
        tmp_path: Path, running: Running) -> None:
    """A restored ledger whose next position id is 1, and two orders of the history it lost: an entry (older) that
    opens a position, and an exit of that history's position 1. The entry's new position takes id 1; the exit is
    placed first, finds no position 1 open, and stays a mismatch — it is not the new position's (fails before: the
    exit went into it)."""
    life = Life(tmp_path, venue(running), new_state())
    life.commit()
    entry = ours(life.state, OrderPurpose.open, hours=2)
    place(running, entry, "buy", 10, 95.0)
    running.control("POST", "balances", {"AAA": "10"})  # what the lost position 1 bought
    lost_exit = ours(life.state, OrderPurpose.close, hours=1, position_id=1)
    place(running, lost_exit, "sell", 10, 150.0)
    result = life.reconcile()
    found = {o.client_order_id: (o.action, o.position_id) for o in result.exchange_orders}
    assert found == {lost_exit: ("mismatch", None), entry: ("adopted", 1)}
    (position,) = life.state.portfolio.open_positions
    assert [o.client_order_id for o in position.orders] == [entry]
    assert {m.client_order_id or m.symbol for m in result.mismatches} == {lost_exit, "AAA"}
    life.close()


def test_an_order_the_ledger_holds_ended_but_the_exchange_shows_open_stays_a_mismatch(
        tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    order = limit_buy(life.state, 10, 95.0)
    life.router.send(order)
    life.router.drain()
    order.transition(OrderStatus.cancelled, _now(), "the ledger's word, against the exchange's")
    result = life.reconcile()
    assert [(o.action, o.reason) for o in result.exchange_orders] == [("mismatch", "the ledger has it cancelled")]
    assert [m.client_order_id for m in result.mismatches] == [order.client_order_id]
    assert [o.client_order_id for p in life.state.portfolio.all_positions() for o in p.orders] == [
        order.client_order_id]  # not adopted a second time
    life.close()


def test_the_reconcile_command_adopts_an_order_of_ours_by_hand(tmp_path: Path, running: Running) -> None:
    life = Life(tmp_path, venue(running), new_state())
    life.commit()
    cid = ours(life.state, OrderPurpose.open)
    life.close()
    place(running, cid, "buy", 10, 95.0)
    answer = _reconcile_command(tmp_path, running.url)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert f"adopted: open order {cid} (AAA, buy) into position 1" in answer.stdout
    record = json.loads((tmp_path / "reconciliation.json").read_text())
    assert record["exchange_orders"][0] | {"client_order_id": cid} == {
        "client_order_id": cid, "symbol": "AAA", "side": "buy", "status": "open", "action": "adopted",
        "position_id": 1, "fills_applied": 0, "reason": None}
    events = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    (adopted,) = [e["fields"] for e in events if e["event"] == "order_adopted"]
    assert (adopted["client_order_id"], adopted["position_id"]) == (cid, 1)
    assert adopted["note"].startswith("position 1 (AAA) adopted without stops")
    assert [n for n in record["notes"] if "adopted without stops" in n] == [adopted["note"]]
    again = Life(tmp_path, venue(running))  # committed: the next reconciliation finds it in the ledger, working
    (position,) = again.state.portfolio.open_positions
    assert [o.client_order_id for o in position.orders] == [cid]
    followed = again.reconcile()
    assert followed.clean and [c.action for c in followed.orders] == ["adopted"] and followed.exchange_orders == ()
    again.close()


def test_an_exit_resting_as_a_stop_order_is_adopted_with_its_stop_price_and_fills_once_the_stop_triggers(
        tmp_path: Path, running: Running) -> None:
    """A stop-loss-limit sell of ours (stop 90, limit 89) and a stop-loss (market) sell (stop 85), both open and not
    working on the exchange: adopted as the stop orders they are, each with its stop price (and the limit its limit)
    — before, the report carried no stop price and ccxt's unified type folds a spot stop-loss into ``limit`` or
    ``market``, so they were recorded as a plain limit sell at 89 and a market sell. When AAA falls through 90, the
    stop-loss-limit triggers and fills at its limit; the exchange simulator keeps the stop-loss waiting above 85."""
    life = Life(tmp_path, venue(running), new_state())
    life.router.send(decide_open(life.state))  # a market buy of 1000 USD: 10 AAA
    life.router.drain()
    (position,) = life.state.portfolio.open_positions
    client = ccxt_client(running.url)
    stop_limit = ours(life.state, OrderPurpose.close, hours=1, position_id=position.id)  # names its position
    stop_market = ours(life.state, OrderPurpose.reduce, hours=2)  # the instrument's one open position
    client.create_order("AAA/USD", "STOP_LOSS_LIMIT", "sell", 4, 89.0,
                        {"clientOrderId": stop_limit, "stopPrice": 90.0, "timeInForce": "GTC"})
    client.create_order("AAA/USD", "STOP_LOSS", "sell", 3, None, {"clientOrderId": stop_market, "stopPrice": 85.0})
    raw = {o["clientOrderId"]: o for o in client.fetch_open_orders("AAA/USD")}
    assert {cid: (o["info"]["type"], o["info"]["stopPrice"], o["info"]["isWorking"]) for cid, o in raw.items()} == {
        stop_limit: ("STOP_LOSS_LIMIT", "90.00000000", False), stop_market: ("STOP_LOSS", "85.00000000", False)}
    result = Recorder(life).reconcile()
    assert result.clean, result.mismatches
    assert sorted((o.client_order_id, o.action) for o in result.exchange_orders) == [(stop_limit, "adopted"),
                                                                                    (stop_market, "adopted")]
    adopted = {o.client_order_id: o for o in position.orders[1:]}
    assert {cid: (o.type, o.quantity, o.limit_price, o.stop_price, o.status) for cid, o in adopted.items()} == {
        stop_limit: (OrderType.stop_limit, 4.0, 89.0, 90.0, OrderStatus.open),
        stop_market: (OrderType.stop, 3.0, None, 85.0, OrderStatus.open)}
    # Through the stop of 90 to 88, not to that of 85: the stop-loss-limit works from then on, its limit of 89 above
    # the market (a gap through a stop-limit leaves it resting, as on Binance); back at 89.5 it fills at 89.
    pin(running, 88.0)
    working = {o["clientOrderId"]: o["info"]["isWorking"] for o in client.fetch_open_orders("AAA/USD")}
    assert working == {stop_limit: True, stop_market: False}, working
    pin(running, 89.5)
    router = OrderRouter(life.state, life.venue, life.commit, _now)
    wait_for(lambda: router.drain() and adopted[stop_limit].status is OrderStatus.filled, timeout=30)
    assert adopted[stop_limit].average_fill_price == pytest.approx(89.0)
    assert adopted[stop_market].status is OrderStatus.open and position.quantity == 6
    pin(running, 84.0)  # through 85: the stop-loss sells at the market
    wait_for(lambda: router.drain() and adopted[stop_market].status is OrderStatus.filled, timeout=30)
    sold_at = adopted[stop_market].average_fill_price
    assert sold_at is not None and sold_at <= 85.0
    assert position.quantity == 3
    assert life.state.portfolio.cash == pytest.approx(balances(running)["USD"], abs=1e-9)
    life.close()
