"""An order's fee is one figure in one currency (issue 13): a fill's fee in the quote currency, the base asset or a
third asset (Binance's BNB) is valued in the quote by one function (``state.fee_value``, ``Fill.quote_fee``), and
``Order.fees``, the trades/orders CSV, the journal's fill lines and the ledger's ``orders.fees`` column use it; the
raw amount stays on the fill with its currency.

The live tests trade through the real ccxt client against ``exchange-sim`` (its HTTP server, in this process) with
the fee taken in the base asset and in BNB, and check every figure against values worked out by hand from the
exchange's own trade record.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tradeexecutor.engine.accounting import apply_fill
from tradeexecutor.runstate.figures import figures_from_state
from tradeexecutor.state import Order, OrderPurpose, OrderSide, OrderStatus, Portfolio, Position, State, fee_value
from tradeexecutor.stats.summary import TRADE_COLUMNS, compute_summary, summary_table, trades_frame
from tradeexecutor.stats.trades_csv import trades_csv_bytes

if TYPE_CHECKING:
    from exchange_sim_helpers import Running
    from tradeexecutor.engine.engine import Engine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _order(side: OrderSide) -> Order:
    order = Order(id=1, client_order_id="c1", position_id=1, instrument_id=1, purpose=OrderPurpose.open, side=side,
                  created_at=T0, quantity=2.0)
    order.transition(OrderStatus.submitting, T0)
    return order


@pytest.mark.parametrize(("kwargs", "worth"), [
    ({"fee_currency": "USD"}, 0.5),  # in the quote: itself
    ({"fee_currency": "EUR", "base_asset": "EUR"}, 0.5 * 1.25),  # in the base: at the fill's price
    ({"fee_currency": "BNB", "fee_price": 250.0, "fee_price_source": "ticker"}, 0.5 * 250.0),  # a third asset
])
def test_an_order_s_fees_are_its_fills_fees_valued_in_the_quote(kwargs: dict[str, object], worth: float) -> None:
    portfolio, position = Portfolio(cash=1000.0), Position(id=1, instrument_id=1, opened_at=T0)
    order = _order(OrderSide.buy)
    fill = apply_fill(portfolio, position, order, 2.0, 1.25, 0.5, T0, **kwargs)  # type: ignore[arg-type]
    assert fill.fee == 0.5 and fill.fee_currency == kwargs["fee_currency"]  # the amount charged, as charged
    assert fill.quote_fee == worth and order.fees == worth
    assert portfolio.fees_paid == worth and position.fees_paid == worth  # the same valuation as the books
    assert fee_value(0.5, 1.25, None, False) == 0.5


# -- live, through ccxt against the exchange simulator ----------------------------------------------------------


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[Running]:
    """exchange-sim with AAA/USD (and BNB/USD at 250 with 1 BNB held, for ``bnb``), 0.1 % fees in
    ``request.param``'s asset, AAA held at 100."""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import API_KEY, API_SECRET, serve
    from test_venue_ccxt import pin
    from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig
    from tradeexecutor.exchange_sim.prices import random_walk_series
    from venue_contract import FEE

    now = int(time.time() * 1000)
    aaa = MarketSpec(base="AAA", quote="USD", tick_size=Decimal("0.01"), step_size=Decimal(1), min_notional=Decimal(10))
    bnb = MarketSpec(base="BNB", quote="USD", tick_size=Decimal("0.01"), step_size=Decimal("0.001"),
                     min_notional=Decimal(5))
    config = SimConfig(markets=(aaa, bnb), api_key=API_KEY, api_secret=API_SECRET, fee_rate=Decimal(str(FEE)),
                       fee_asset=request.param, spread_bps=Decimal(0),
                       balances={"USD": Decimal(10_000), "AAA": Decimal(0), "BNB": Decimal(1)})
    series = {"AAAUSD": random_walk_series(seed=5, now_ms=now, start_price=100.0),
              "BNBUSD": random_walk_series(seed=6, now_ms=now, start_price=250.0)}
    with serve(ExchangeSimulator(config, series), threads=4) as running:
        running.control("POST", "price", {"symbol": "BNBUSD", "price": "250", "seconds": 3600})
        pin(running, 100.0)
        yield running


def _live_buy(tmp_path: Path, running: Running) -> tuple[Engine, list[tuple[str, dict[str, Any]]], Order]:
    """A live engine's 1 000 USD buy of AAA filled by the simulator; the engine, its journal and the order."""
    from test_engine_writeahead import cycle_ns, orders
    from test_resting_entry import simulator_engine
    from tradeexecutor.strategy.api import open_long

    engine, journal = simulator_engine(tmp_path, running)
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    engine.manage(1)
    (order,) = orders(engine)
    deadline = time.monotonic() + 30
    while order.status is not OrderStatus.filled and time.monotonic() < deadline:  # counted by status, not timed
        engine.drain()
        time.sleep(0.05)
    assert order.status is OrderStatus.filled
    return engine, journal, order


def _csv_row(state: State) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(trades_csv_bytes(state).decode())))
    assert tuple(rows[0]) == TRADE_COLUMNS
    (row,) = rows
    return row


def _check_summary_and_status(state: State, fees: float) -> None:
    """The summary (whole run and a window), its table and the /status figures give ``fees`` and say it is USD."""
    whole = compute_summary(state)
    window = compute_summary(state, window=(0, 2**62))  # the fees of the fills inside
    assert (whole.fees_paid, whole.fee_currency) == (fees, "USD") == (window.fees_paid, window.fee_currency)
    table = dict(line.rsplit(None, 1) for line in summary_table(whole).splitlines() if line.startswith("Fee"))
    assert {label.strip(): text for label, text in table.items()} == {"Fees paid": f"{fees:,.2f}", "Fee currency": "USD"}
    figures = figures_from_state(state)
    assert (figures.fees_paid, figures.fee_currency) == (fees, "USD")


def _ledger_fees(tmp_path: Path, state: State) -> tuple[float, list[tuple[float, bytes]]]:
    """The ledger's ``orders.fees`` of the one order, and its fills' (fee, json), after a save."""
    from tradeexecutor.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.save(state)
    ledger.close()
    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        (fees,) = conn.execute("SELECT fees FROM orders").fetchone()
        fills = conn.execute("SELECT fee, json FROM fills ORDER BY id").fetchall()
    finally:
        conn.close()
    return fees, fills


@pytest.mark.parametrize("simulator", ["base"], indirect=True)
def test_a_live_buy_whose_fee_is_taken_in_the_base_asset_reports_its_value_in_the_quote(
        tmp_path: Path, simulator: Running) -> None:
    """The simulator takes the buy's 0.1 % fee in AAA: 10 AAA at 100 cost 0.01 AAA, worth 1 USD."""
    engine, journal, order = _live_buy(tmp_path, simulator)
    (fill,) = order.fills
    (trade,) = simulator.control("GET", "trades")[1]
    assert (trade["commissionAsset"], Decimal(trade["commission"]), Decimal(trade["qty"]),
            Decimal(trade["price"])) == ("AAA", Decimal("0.01"), Decimal(10), Decimal(100))
    assert (fill.fee, fill.fee_currency, fill.fee_in_base, fill.fee_price) == (0.01, "AAA", True, None)
    assert order.fees == 0.01 * 100.0  # not 0.01 "USD"
    assert engine.state.portfolio.fees_paid == order.fees
    (filled,) = [fields for event, fields in journal if event == "order_filled"]
    assert (filled["fee"], filled["fee_currency"]) == (0.01, "AAA")  # the amount charged, with its currency
    assert (filled["fee_value"], filled["fee_value_currency"]) == (order.fees, "USD")
    row = _csv_row(engine.state)
    assert (float(row["fee"]), row["fee_currency"]) == (order.fees, "USD")
    _check_summary_and_status(engine.state, order.fees)
    frame = trades_frame(engine.state)
    assert frame["fee"].tolist() == [order.fees] and frame["fee_currency"].tolist() == ["USD"]
    fees, [(fill_fee, fill_json)] = _ledger_fees(tmp_path, engine.state)
    assert fees == order.fees and fill_fee == 0.01  # the order's in the quote, the fill's as charged
    assert b'"fee_currency":"AAA"' in fill_json and b'"fee_in_base":true' in fill_json


@pytest.mark.parametrize("simulator", ["bnb"], indirect=True)
def test_a_live_buy_whose_fee_is_paid_in_bnb_reports_its_value_in_the_quote(tmp_path: Path, simulator: Running) -> None:
    """The simulator takes the buy's 0.1 % fee (1 USD on 10 AAA at 100) in BNB at 250: 0.004 BNB, worth 1 USD at the
    venue's BNB/USD ticker."""
    engine, journal, order = _live_buy(tmp_path, simulator)
    (fill,) = order.fills
    (trade,) = simulator.control("GET", "trades")[1]
    assert (trade["commissionAsset"], Decimal(trade["commission"])) == ("BNB", Decimal("0.004"))
    assert (fill.fee, fill.fee_currency, fill.fee_in_base, fill.fee_price) == (0.004, "BNB", False, 250.0)
    assert order.fees == 0.004 * 250.0  # not 0.004
    assert engine.state.portfolio.fees_paid == order.fees
    (filled,) = [fields for event, fields in journal if event == "order_filled"]
    assert (filled["fee"], filled["fee_currency"]) == (0.004, "BNB")
    assert (filled["fee_value"], filled["fee_value_currency"]) == (order.fees, "USD")
    row = _csv_row(engine.state)
    assert (float(row["fee"]), row["fee_currency"]) == (order.fees, "USD")
    _check_summary_and_status(engine.state, order.fees)
    fees, [(fill_fee, fill_json)] = _ledger_fees(tmp_path, engine.state)
    assert fees == order.fees and fill_fee == 0.004
    assert b'"fee_currency":"BNB"' in fill_json and b'"fee_price":250.0' in fill_json


# -- files written before fills recorded fee_in_base ------------------------------------------------------------


def _state_with_fees() -> State:
    """A state with one AAA/USD position bought twice: a 0.01 AAA fee at 100 (1 USD) and a 0.5 USD fee."""
    state = State(name="fees", initial_cash=10_000.0)
    state.portfolio.cash = 10_000.0
    instrument = state.add_instrument("AAA", "crypto", 0.001)
    position = Position(id=1, instrument_id=instrument.id, opened_at=T0)
    state.portfolio.open_positions.append(position)
    for number, (fee, currency) in enumerate([(0.01, "AAA"), (0.5, "USD")], start=1):
        order = Order(id=number, client_order_id=f"c{number}", position_id=1, instrument_id=instrument.id,
                      purpose=OrderPurpose.open, side=OrderSide.buy, created_at=T0, quantity=10.0)
        order.transition(OrderStatus.submitting, T0)
        position.orders.append(order)
        apply_fill(state.portfolio, position, order, 10.0, 100.0, fee, T0, fee_currency=currency, base_asset="AAA")
    return state


def test_a_state_file_written_before_fee_in_base_reads_a_base_asset_fee_as_one() -> None:
    from tradeexecutor.store.codec import state_from_dict, state_to_dict

    d = state_to_dict(_state_with_fees())
    fills = [f for o in d["portfolio"]["open_positions"][0]["orders"] for f in o["fills"]]
    assert [f.pop("fee_in_base") for f in fills] == [True, False]  # as an older tradeexecutor wrote them
    state = state_from_dict(d)
    (base_order, quote_order) = state.portfolio.open_positions[0].orders
    assert [f.fee_in_base for f in base_order.fills + quote_order.fills] == [True, False]
    assert (base_order.fees, quote_order.fees) == (1.0, 0.5)


def test_a_state_dict_mixing_new_and_old_fills_marks_every_old_fill() -> None:
    """A log replayed over an old snapshot: the open position's fills are new, the closed one's old (the review's
    case: one fill with ``fee_in_base`` used to end the marking, so the old base-asset fee read raw, 0.01)."""
    from tradeexecutor.store.codec import state_from_dict, state_to_dict

    state = _state_with_fees()
    state.portfolio.closed_positions.append(state.portfolio.open_positions.pop(0))
    state.portfolio.open_positions.append(_state_with_fees().portfolio.open_positions[0])
    d = state_to_dict(state)
    for order in d["portfolio"]["closed_positions"][0]["orders"]:
        for fill in order["fills"]:
            fill.pop("fee_in_base")
    loaded = state_from_dict(d)
    assert [o.fees for o in loaded.portfolio.closed_positions[0].orders] == [1.0, 0.5]
    assert [o.fees for o in loaded.portfolio.open_positions[0].orders] == [1.0, 0.5]


def test_a_ledger_written_before_fee_in_base_reads_a_base_asset_fee_as_one_and_keeps_its_rows(tmp_path: Path) -> None:
    import zlib

    from tradeexecutor.ledger import Ledger

    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.save(_state_with_fees())
    ledger.close()
    conn = sqlite3.connect(path)
    try:
        with conn:
            for fill_id, data in conn.execute("SELECT id, json FROM fills").fetchall():
                old = data.replace(b',"fee_in_base":true', b"").replace(b',"fee_in_base":false', b"")
                assert old != data
                conn.execute("UPDATE fills SET json = ?, crc = ? WHERE id = ?", (old, zlib.crc32(old), fill_id))
        rows = conn.execute("SELECT id, json FROM fills ORDER BY id").fetchall()
    finally:
        conn.close()
    again = Ledger(path)
    state = again.load()
    again.close()
    assert state is not None
    (base_order, quote_order) = state.portfolio.open_positions[0].orders
    assert [f.fee_in_base for f in base_order.fills + quote_order.fills] == [True, False]
    assert (base_order.fees, quote_order.fees) == (1.0, 0.5)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT id, json FROM fills ORDER BY id").fetchall() == rows  # read, never rewritten
    finally:
        conn.close()


@pytest.mark.parametrize("simulator", ["bnb"], indirect=True)
def test_a_fill_whose_fee_cannot_be_valued_yet_is_read_again_not_lost(simulator: Running) -> None:
    """A fee in BNB is valued at the BNB/USD ticker read as the fill is read. The ticker answering 503 makes that read
    a TemporaryError; the trade is read again at the next poll — it was marked seen before its fee was valued, and
    its fill never came (the order's later part then ended it short)."""
    from exchange_sim_helpers import wait_for
    from test_venue_ccxt import aaa_venue, fault
    from tradeexecutor.errors import TemporaryError
    from tradeexecutor.state import OrderType
    from tradeexecutor.venue import OrderFilled, OrderRequest

    venue = aaa_venue(simulator)
    venue.exchange.options["newOrderRespType"] = {"market": "RESULT", "limit": "RESULT"}
    fault(simulator, kind="partial_fill", parts=2, interval=1.0, count=1)
    fault(simulator, kind="error", status=503, path="/api/v3/ticker/24hr", count=1)
    with pytest.raises(TemporaryError):  # its first part filled at once; valuing its fee failed: an unknown outcome
        venue.submit(OrderRequest("bnb-fee-1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=10,
                                  limit_price=101.0))
    events = venue.poll()
    wait_for(lambda: len(simulator.control("GET", "trades")[1]) == 2, timeout=30)  # its second part
    for _ in range(3):
        events += venue.poll()
    fills = [e for e in events if isinstance(e, OrderFilled)]
    trades = simulator.control("GET", "trades")[1]
    assert sorted(f.fill.venue_trade_id for f in fills) == sorted(str(t["id"]) for t in trades)
    assert sum(f.fill.quantity for f in fills) == 10 and fills[-1].complete
    assert all(f.fill.fee_currency == "BNB" and f.fill.fee_price == 250.0 for f in fills)
