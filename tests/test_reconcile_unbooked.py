"""Reconciliation with an order the exchange filled while its trade list does not list the fill yet (``Unbooked``).

The real ccxt client against the exchange simulator, whose ``trades_lag`` fault hides every trade from the moment it
is added (``GET /api/v3/myTrades`` and a new order's reply alike): the exchange says the order filled, its balances
already hold what it bought, and the ledger has booked nothing. A restart's reconciliation compared the balances with
the ledger strictly: a false mismatch (safe mode). Now the assets of such an order are compared with the ledger's
figures moved by **exactly** the part not booked, one-sided by direction (a fee may be taken in the base, a buy's or
a sell's; the quote by the exchange's average price, or what the order's value, limit or last price allows without one); a real
difference beyond that is still a mismatch. The order is followed from there (``OrderRouter.resolve_report``): its
fill is booked once listed, and the strict re-check (``recheck_balances``) then passes — and a *later* order whose
trades lag bounds the re-check the same way instead of tripping it.

Each test fails before: the unbooked part made the balance comparison a mismatch (or, for the differences, the
reproducers of the review: a bound loosened instead of exact would have hidden them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import API_KEY, API_SECRET, Running, serve
from test_engine_router import T0, decide_open, new_state
from test_reconcile import Life, _now, _reconcile_command
from test_venue_ccxt import ENVIRON, aaa_at_100, aaa_simulator, pin, running  # noqa: F401  (fixtures)
from test_venue_ccxt import aaa_venue as venue
from tradeexecutor.engine.reconcile import Reconciliation, recheck_balances
from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig
from tradeexecutor.exchange_sim.prices import random_walk_series
from tradeexecutor.state import Order, OrderPurpose, OrderSide, OrderStatus, OrderType, State
from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.venue.ccxt_venue import CcxtVenue
from tradeexecutor.venue.model import OrderReport

pytest.importorskip("ccxt")

#: Each test starts from a fresh simulator account with AAA held at 100 (tests/test_venue_ccxt.py's fixtures).
pytestmark = pytest.mark.usefixtures("aaa_at_100")


def lag(running: Running) -> str:
    """Hide every trade from now on (``trades_lag``); the fault's id, to delete it."""
    code, fault = running.control("POST", "faults", {"kind": "trades_lag"})
    assert code == 200, fault
    return str(fault["id"])


def unlag(running: Running, fault: str) -> None:
    assert running.control("DELETE", f"faults/{fault}")[0] == 200


def held(running: Running) -> dict[str, float]:
    _, balances = running.control("GET", "balances")
    return {asset: float(b["free"]) + float(b["locked"]) for asset, b in balances.items()}


def sent_unbooked(life: Life, order: Order) -> None:
    """Send ``order`` and take what the exchange answers: it fills at once, its trade unlisted — nothing booked."""
    life.router.send(order)
    life.router.drain()
    assert not order.fills and not order.is_terminal, order


def exits(state: State, quantity: float, *, hours: int = 1) -> Order:
    """A market sell of ``quantity`` AAA reducing the one open position, decided ``hours`` after T0."""
    (position,) = state.portfolio.open_positions
    order = Order(id=state.portfolio.next_order_id, position_id=position.id, instrument_id=1,
                  client_order_id=client_order_id(run_key(state.name, state.created_at), T0 + timedelta(hours=hours),
                                                  0, OrderPurpose.reduce, position_id=position.id),
                  purpose=OrderPurpose.reduce, side=OrderSide.sell, created_at=T0 + timedelta(hours=hours),
                  type=OrderType.market, quantity=quantity, reference_price=100.0)
    state.portfolio.next_order_id += 1
    position.orders.append(order)
    return order


def restarted(tmp_path: Path, running: Running, first: Life, make: type[CcxtVenue] = CcxtVenue) -> Life:
    """The first life goes down; a new one on a new venue (it remembers nothing)."""
    first.close()
    fresh = venue(running)
    return Life(tmp_path, fresh if make is CcxtVenue else make(fresh.config, environ=ENVIRON))


def a_buy_unbooked(tmp_path: Path, running: Running) -> tuple[Life, Order, str]:
    """A first life's market buy of 1000 USD that the exchange filled while its trade stays unlisted; the first life
    goes down. The first life, its order (as it left it) and the fault's id."""
    first = Life(tmp_path, venue(running), new_state())
    fault = lag(running)
    order = decide_open(first.state)
    sent_unbooked(first, order)
    [taken] = running.control("GET", "orders")[1]
    assert taken["status"] == "FILLED" and float(taken["executedQty"]) == 10
    return first, order, fault


def check(result: Reconciliation, asset: str) -> Any:
    [found] = [b for b in result.balances if b.asset == asset]
    return found


def test_a_buy_filled_at_the_exchange_with_its_trade_unlisted_is_no_mismatch_and_is_booked_once_listed(
        tmp_path: Path, running: Running) -> None:
    first, order, fault = a_buy_unbooked(tmp_path, running)
    second = restarted(tmp_path, running, first)
    result = second.reconcile()
    assert result.clean, result.mismatches  # the account holds the 10 AAA the ledger has not booked yet
    (checked,) = result.orders
    assert (checked.client_order_id, checked.action, checked.fills_applied) == (order.client_order_id, "unbooked", 0)
    (unbooked,) = result.unbooked
    assert (unbooked.client_order_id, unbooked.side, unbooked.exchange_status) == (order.client_order_id, "buy",
                                                                                    "filled")
    assert (unbooked.filled, unbooked.booked, unbooked.missing) == (10, 0, 10)
    assert unbooked.average_price == 100 and unbooked.missing_value == pytest.approx(1000)
    assert result.bounded_by == (order.client_order_id,)
    aaa, usd = check(result, "AAA"), check(result, "USD")
    assert (aaa.ours, aaa.venue, aaa.ok) == (0, 10, True)
    assert aaa.low == pytest.approx(10 * 0.98 - aaa.tolerance) and aaa.high == pytest.approx(10 + aaa.tolerance)
    assert usd.ok and usd.low == pytest.approx(10_000 - 1000 * 1.02 - usd.tolerance)
    assert any("its trades are not all listed yet" in note for note in result.notes), result.notes
    assert result.to_dict()["unbooked"][0]["missing"] == 10 and result.summary()["unbooked"] == [
        order.client_order_id]
    # Followed from here, never ended short: working, nothing booked, the exchange's words its reason.
    (resolved,) = second.state.portfolio.open_positions[0].orders
    assert resolved.status is OrderStatus.partially_filled and not resolved.fills
    unlag(running, fault)
    second.router.drain()  # the venue that looked it up follows it: the fill is booked once it is listed
    assert resolved.status is OrderStatus.filled and [f.quantity for f in resolved.fills] == [10]
    second.router.drain()
    assert len(resolved.fills) == 1
    strict = recheck_balances(second.state, second.venue, now=_now, symbols=("AAA",))
    assert strict.clean and strict.bounded_by == () and strict.unbooked == (), strict
    second.close()


@pytest.mark.parametrize("aaa", ["0", "15"])
def test_a_real_difference_beyond_the_unbooked_part_is_still_a_mismatch(tmp_path: Path, running: Running,
                                                                       aaa: str) -> None:
    """The review's reproducer: the account's AAA set to 0 after the buy filled unlisted (the ledger, also at 0, would
    agree strictly by accident), or to 15 (more than the buy's 10): the balance must be the ledger's 0 plus exactly
    the 10 not booked — a mismatch either way, nothing changed."""
    first, order, _ = a_buy_unbooked(tmp_path, running)
    running.control("POST", "balances", {"AAA": aaa})
    second = restarted(tmp_path, running, first)
    result = second.reconcile()
    assert not result.clean
    (mismatch,) = result.mismatches
    assert (mismatch.symbol, mismatch.ours, mismatch.venue) == ("AAA", 0, float(aaa))
    assert mismatch.what.startswith(f"AAA: the venue holds {aaa}") and order.client_order_id in mismatch.what
    assert not check(result, "AAA").ok and check(result, "USD").ok
    assert second.state.portfolio.open_positions[0].quantity == 0  # nothing "fixed"
    second.close()


@pytest.mark.parametrize("aaa", [None, "10"])
def test_a_sell_filled_at_the_exchange_with_its_trade_unlisted_is_bounded_the_other_way(
        tmp_path: Path, running: Running, aaa: str | None) -> None:
    """A booked buy of 10 AAA, then a sell of 4 filled with its trade unlisted: the account holds 6, the ledger 10 —
    the 4 not booked (down to 4 and the slack: a fee may be taken in the base), clean; the USD at least the ledger's
    cash plus the sale less the slack. The account's AAA put back to 10 (as if the sell had not happened) is a
    mismatch."""
    first = Life(tmp_path, venue(running), new_state())
    bought = decide_open(first.state)
    first.router.send(bought)
    first.router.drain()
    assert bought.status is OrderStatus.filled and first.state.portfolio.open_positions[0].quantity == 10
    lag(running)
    sold = exits(first.state, 4)
    sent_unbooked(first, sold)
    cash = first.state.portfolio.cash
    if aaa is not None:
        running.control("POST", "balances", {"AAA": aaa})
    second = restarted(tmp_path, running, first)
    result = second.reconcile()
    (unbooked,) = result.unbooked
    assert (unbooked.client_order_id, unbooked.side, unbooked.missing) == (sold.client_order_id, "sell", 4)
    aaa_check, usd = check(result, "AAA"), check(result, "USD")
    assert aaa_check.low == pytest.approx(6 - 4 * 0.02 - aaa_check.tolerance)
    assert aaa_check.high == pytest.approx(6 + aaa_check.tolerance)
    assert usd.ok and usd.venue > cash and usd.low == pytest.approx(cash + 400 * 0.98 - usd.tolerance)
    if aaa is None:
        assert result.clean, result.mismatches
    else:
        (mismatch,) = result.mismatches
        assert (mismatch.symbol, mismatch.ours, mismatch.venue) == ("AAA", 10, 10)
    second.close()


@pytest.fixture(scope="module")
def fee_in_base() -> Iterator[Running]:
    """A second simulator like tests/test_venue_ccxt.py's, but a venue that takes every trade's fee in the base
    (``fee_asset="base"``: a sell pays it in AAA, on top of the quantity sold) in lots of 0.001 (a buy's fee leaves a
    fraction of one), AAA held at 100."""
    market = MarketSpec(base="AAA", quote="USD", tick_size=Decimal("0.01"), step_size=Decimal("0.001"),
                        min_notional=Decimal(10))
    config = SimConfig(markets=(market,), api_key=API_KEY, api_secret=API_SECRET, fee_rate=Decimal("0.001"),
                       fee_asset="base", spread_bps=Decimal(0), balances={"USD": Decimal(10_000), "AAA": Decimal(0)})
    prices = {"AAAUSD": random_walk_series(seed=5, now_ms=int(time.time() * 1000), start_price=100.0)}
    with serve(ExchangeSimulator(config, prices), threads=6) as running:
        pin(running, 100.0)
        yield running


def test_a_sell_whose_fee_the_venue_took_in_the_base_is_bounded_down_to_the_part_and_its_fee(
        tmp_path: Path, fee_in_base: Running) -> None:
    """The review's reproducer: a venue that takes a sell's fee in the base. A booked buy of 10 AAA (9.99 held, its
    fee taken in AAA), then a sell of 4 filled with its trade unlisted: the account gave 4.004 AAA (the 4 and its fee),
    more than the 4 not booked. The base is bounded down to the part plus the slack, as a pending sell's is: clean.
    Before, the sell's base had to be exactly ours − 4: a mismatch (safe mode) for the fee."""
    first = Life(tmp_path, venue(fee_in_base), new_state())
    bought = decide_open(first.state)
    first.router.send(bought)
    first.router.drain()
    assert bought.status is OrderStatus.filled
    ours = first.state.portfolio.open_positions[0].quantity
    assert ours == pytest.approx(9.99)
    lag(fee_in_base)
    sold = exits(first.state, 4)
    sent_unbooked(first, sold)
    assert held(fee_in_base)["AAA"] == pytest.approx(ours - 4.004)
    second = restarted(tmp_path, fee_in_base, first)
    result = second.reconcile()
    assert result.clean, result.mismatches
    aaa = check(result, "AAA")
    assert aaa.ok and aaa.venue == pytest.approx(ours - 4.004)
    assert aaa.low == pytest.approx(ours - 4 * 1.02 - aaa.tolerance)
    assert aaa.high == pytest.approx(ours - 4 + aaa.tolerance)
    second.close()


class NoAverage(CcxtVenue):
    """An exchange that gives no average fill price of an order (the simulator gives Binance's cumulative quote
    quantity, from which ccxt derives one): its reports carry none."""

    def _report(self, order: dict[str, Any]) -> OrderReport:
        return replace(super()._report(order), average_price=None)


@pytest.mark.parametrize("usd", [None, "8900"])
def test_a_buy_without_an_average_price_bounds_the_quote_by_what_its_value_allows_and_says_so(
        tmp_path: Path, running: Running, usd: str | None) -> None:
    """Without the exchange's average price, the quote the buy's unbooked part took is bounded by what its value left
    allows (1000 USD, plus the slack), and a note says so: clean as it is; the account's USD cut to 8900 (more gone
    than the buy could have taken) is a mismatch."""
    first, _, _ = a_buy_unbooked(tmp_path, running)
    if usd is not None:
        running.control("POST", "balances", {"USD": usd})
    second = restarted(tmp_path, running, first, NoAverage)
    result = second.reconcile()
    (unbooked,) = result.unbooked
    assert unbooked.average_price is None and unbooked.missing_value is None and unbooked.missing == 10
    [said] = [note for note in result.notes if "no average price" in note]
    assert said.startswith("USD: the exchange gives no average price") and "value left" in said, said
    quote = check(result, "USD")
    assert quote.low == pytest.approx(10_000 - 1000 * 1.02 - quote.tolerance)
    assert check(result, "AAA").ok
    if usd is None:
        assert result.clean, result.mismatches
    else:
        (mismatch,) = result.mismatches
        assert mismatch.symbol == "USD" and mismatch.venue == 8900 and not quote.ok
    second.close()


def test_a_later_order_whose_trades_lag_bounds_the_recheck_and_the_strict_one_runs_once_it_is_booked(
        tmp_path: Path, running: Running) -> None:
    """The review's second reproducer: start-up with an unbooked buy; its trade is listed and booked; the strategy
    then opens a new position whose buy fills with its trade unlisted (a second ``trades_lag``). The re-check must
    not find the account ahead of the ledger by that buy (it used to: an exchange id, so not among the unconfirmed
    orders it bounds): it bounds it as unbooked and names it; once it is booked the strict re-check passes."""
    first, _, fault = a_buy_unbooked(tmp_path, running)
    second = restarted(tmp_path, running, first)
    assert second.reconcile().clean
    later = lag(running)  # hides the trades made from now on: the next order's
    unlag(running, fault)
    second.router.drain()
    (booked,) = second.state.portfolio.open_positions[0].orders
    assert booked.status is OrderStatus.filled
    opened = decide_open(second.state, 500.0)
    opened.client_order_id = client_order_id(run_key(second.state.name, second.state.created_at),
                                              T0 + timedelta(hours=2), 0, OrderPurpose.open)
    sent_unbooked(second, opened)
    assert opened.venue_order_id and opened.status is OrderStatus.open
    bounded = recheck_balances(second.state, second.venue, now=_now, symbols=("AAA",))
    assert bounded.clean, bounded.mismatches
    assert bounded.bounded_by == (opened.client_order_id,)
    assert [(u.client_order_id, u.missing) for u in bounded.unbooked] == [(opened.client_order_id, 5)]
    assert opened.status is OrderStatus.open and not opened.fills  # asked about, nothing changed
    unlag(running, later)
    second.router.drain()
    assert opened.status is OrderStatus.filled and len(opened.fills) == 1
    strict = recheck_balances(second.state, second.venue, now=_now, symbols=("AAA",))
    assert strict.clean and strict.bounded_by == () and strict.unbooked == (), strict
    assert held(running)["AAA"] == 15 == sum(p.quantity for p in second.state.portfolio.open_positions)
    second.close()


def test_by_hand_the_reconcile_command_says_what_is_unbooked_and_the_range_it_compared_with(
        tmp_path: Path, running: Running) -> None:
    """``tradeexecutor reconcile`` while the executor is stopped: the order ``unbooked``, the note saying what the
    exchange says and what happens next, each balance with the range it had to be in; clean (exit 0)."""
    first, order, _ = a_buy_unbooked(tmp_path, running)
    first.close()
    done = _reconcile_command(tmp_path, running.url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"  order {order.client_order_id} (AAA): open -> partially_filled (unbooked, 0 fill(s) applied)" in lines
    [aaa] = [line for line in lines if line.startswith("  balance AAA:")]
    # 10 × 0.98 and 10, one lot either side.
    assert aaa == "  balance AAA: ours 0, venue 10, expected 8.8 to 11 (ok)", aaa
    assert any(line.startswith(f"  note: order {order.client_order_id} (AAA): the exchange says it filled 10 "
                               "(filled there), the ledger has booked 0") for line in lines), lines
    record = json.loads((tmp_path / "reconciliation.json").read_text())
    assert [u["client_order_id"] for u in record["unbooked"]] == [order.client_order_id]


def test_a_buy_cancelled_with_a_part_filled_and_unlisted_is_bounded_by_that_part_and_ends_cancelled_once_listed(
        tmp_path: Path, running: Running) -> None:
    """Half of a limit buy of 10 fills, it is cancelled, and the half's trade is not listed: the exchange ended it
    (cancelled) having filled 5. The restart bounds AAA by exactly those 5 (clean), leaves the order working, and
    once the trade is listed books the 5 once and ends it cancelled; the strict re-check then passes."""
    first = Life(tmp_path, venue(running), new_state())
    order = decide_open(first.state)
    order.type, order.quantity, order.value, order.limit_price = OrderType.limit, 10.0, None, 101.0
    running.control("POST", "faults", {"kind": "partial_fill", "parts": 2, "interval": 3600, "count": 1})
    fault = lag(running)
    sent_unbooked(first, order)
    first.venue.cancel(order.client_order_id)
    first.router.drain()
    assert running.control("GET", "orders")[1][0]["status"] == "CANCELED" and not order.fills
    second = restarted(tmp_path, running, first)
    result = second.reconcile()
    assert result.clean, result.mismatches
    (unbooked,) = result.unbooked
    assert (unbooked.exchange_status, unbooked.filled, unbooked.missing) == ("cancelled", 5, 5)
    assert check(result, "AAA").low == pytest.approx(5 * 0.98 - check(result, "AAA").tolerance)
    (resolved,) = second.state.portfolio.open_positions[0].orders
    assert resolved.status is OrderStatus.partially_filled and not resolved.fills  # not ended short
    unlag(running, fault)
    second.router.drain()
    assert resolved.status is OrderStatus.cancelled and [f.quantity for f in resolved.fills] == [5]
    strict = recheck_balances(second.state, second.venue, now=_now, symbols=("AAA",))
    assert strict.clean and strict.bounded_by == (), strict
    second.close()
