"""The simulator's matching engine and account, on a scripted price path and a hand-moved clock (no HTTP).

The path is hand-made candles replayed one per second, so every fill price and time is known in
advance: market orders at the bid or ask, resting limits at their price at the first instant
the path touches them, partial fills in parts, IOC/FOK/LIMIT_MAKER, the filters, the balance
locks, Binance's client-order-id reuse, and — with hypothesis — that no sequence of orders,
cancels and price moves ever creates or loses an asset.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeexecutor.errors import ConfigError
from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.accounts import Accounts
from tradeexecutor.exchange_sim.config import MarketSpec, SimConfig
from tradeexecutor.exchange_sim.matching import Engine, NewOrder, PartialPlan
from tradeexecutor.exchange_sim.orders import Order
from tradeexecutor.exchange_sim.prices import replay_series

T0 = 1_700_000_000_000
D = Decimal

#: One bar a second from T0: flat at 100 for 5 s, a dip to 95 (touched at T0 + 5333), back to 100, then up to 105.
BARS = [(100, 100, 100, 100)] * 5 + [(100, 100, 95, 98), (98, 100, 98, 100)] + [(100, 100, 100, 100)] * 3 + [
    (100, 105, 100, 105)] + [(105, 105, 105, 105)] * 5
MARKET = MarketSpec(base="XYZ", quote="USD", tick_size=D("0.01"), step_size=D("0.001"), min_notional=D("5"))


def bars(rows: Sequence[tuple[float, float, float, float]]) -> pd.DataFrame:
    data = np.array(rows, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(rows), freq="h", tz="UTC")
    return pd.DataFrame({"open": data[:, 0], "high": data[:, 1], "low": data[:, 2], "close": data[:, 3],
                         "volume": 1.0}, index=index)


def make_engine(*, fee_asset: str = "received", spread_bps: str = "0", fee: str = "0.001",
                balances: dict[str, Decimal] | None = None, max_closed_orders: int = 100_000,
                rows: Sequence[tuple[float, float, float, float]] = BARS) -> Engine:
    config = SimConfig(markets=(MARKET,), api_key="k", api_secret="s", fee_rate=D(fee), fee_asset=fee_asset,
                       spread_bps=D(spread_bps), balances=balances or {"USD": D(10_000), "XYZ": D(10)},
                       max_closed_orders=max_closed_orders)
    series = {"XYZUSD": replay_series(bars(rows), bar_ms=1000, now_ms=T0, history=0)}
    return Engine(config, series, Accounts(config.balances, config.assets))


def order(side: str, kind: str, qty: str | None, price: str | None = None, cid: str = "c1", tif: str | None = None,
          quote_qty: str | None = None) -> NewOrder:
    return NewOrder(symbol="XYZUSD", side=side, type=kind, client_order_id=cid,
                    time_in_force=tif if tif or kind != "LIMIT" else "GTC",
                    quantity=D(qty) if qty else None, price=D(price) if price else None,
                    quote_order_qty=D(quote_qty) if quote_qty else None)


def balance(engine: Engine, asset: str) -> tuple[Decimal, Decimal]:
    b = engine.accounts.get(asset)
    return b.free, b.locked


@contextmanager
def refused(code: int, msg: str | None = None) -> Iterator[None]:
    """The block must raise Binance's error ``code`` (with exactly ``msg``, when given)."""
    with pytest.raises(errors.BinanceError) as caught:
        yield
    assert caught.value.code == code
    assert msg is None or caught.value.msg == msg


# -- market orders ---------------------------------------------------------------------------------


def test_a_market_buy_pays_the_ask_and_the_fee_comes_out_of_the_base_received() -> None:
    engine = make_engine(spread_bps="20")
    placed, trades = engine.place(order("BUY", "MARKET", "2"), T0 + 100)
    assert engine.bid_ask("XYZUSD", T0 + 100) == (D("99.9"), D("100.1"))
    assert placed.status == "FILLED" and placed.executed_qty == D(2)
    [trade] = trades
    assert (trade.price, trade.qty, trade.commission, trade.commission_asset) == (D("100.1"), D(2), D("0.002"), "XYZ")
    assert not trade.is_maker and trade.time_ms == T0 + 100
    assert balance(engine, "USD") == (D("10000") - D("200.2"), 0)
    assert balance(engine, "XYZ") == (D("10") + D("1.998"), 0)


@pytest.mark.parametrize(("fee_asset", "side", "usd", "xyz", "fee", "fee_asset_name"), [
    ("quote", "BUY", D(10_000) - D(200) - D("0.2"), D(12), D("0.2"), "USD"),
    ("base", "SELL", D(10_000) + D(200), D(10) - D(2) - D("0.002"), D("0.002"), "XYZ"),
    ("received", "SELL", D(10_000) + D(200) - D("0.2"), D(8), D("0.2"), "USD"),
])
def test_commission_is_charged_in_the_configured_asset(fee_asset: str, side: str, usd: Decimal, xyz: Decimal,
                                                       fee: Decimal, fee_asset_name: str) -> None:
    engine = make_engine(fee_asset=fee_asset)
    _, [trade] = engine.place(order(side, "MARKET", "2"), T0)
    assert (trade.commission, trade.commission_asset) == (fee, fee_asset_name)
    assert balance(engine, "USD") == (usd, 0)
    assert balance(engine, "XYZ") == (xyz, 0)


def bnb_engine(bnb: str) -> Engine:
    """``--fee-asset bnb``: XYZ/USD on the scripted path, BNB/USD flat at 250, ``bnb`` BNB held."""
    bnb_market = MarketSpec(base="BNB", quote="USD", tick_size=D("0.01"), step_size=D("0.001"), min_notional=D("5"))
    config = SimConfig(markets=(MARKET, bnb_market), api_key="k", api_secret="s", fee_asset="bnb",
                       spread_bps=D(0), balances={"USD": D(10_000), "XYZ": D(10), "BNB": D(bnb)})
    series = {"XYZUSD": replay_series(bars(BARS), bar_ms=1000, now_ms=T0, history=0),
              "BNBUSD": replay_series(bars([(250, 250, 250, 250)] * len(BARS)), bar_ms=1000, now_ms=T0, history=0)}
    return Engine(config, series, Accounts(config.balances, config.assets))


def test_with_fee_asset_bnb_the_fee_is_paid_in_bnb_at_its_price_and_the_trade_moves_without_one() -> None:
    engine = bnb_engine("0.001")
    _, [trade] = engine.place(order("BUY", "MARKET", "2"), T0)  # 200 USD: a 0.2 USD fee is 0.0008 BNB at 250
    assert (trade.commission, trade.commission_asset) == (D("0.0008"), "BNB")
    assert balance(engine, "USD") == (D(10_000) - D(200), 0) and balance(engine, "XYZ") == (D(12), 0)
    assert balance(engine, "BNB") == (D("0.0002"), 0)
    _, [sell] = engine.place(order("SELL", "MARKET", "2", cid="c2"), T0)  # 0.0002 BNB cannot pay 0.0008
    assert (sell.commission, sell.commission_asset) == (D("0.2"), "USD")  # as without BNB: in the asset received
    assert balance(engine, "BNB") == (D("0.0002"), 0) and balance(engine, "USD") == (D(10_000) - D("0.2"), 0)


def test_fee_asset_bnb_needs_a_bnb_market_in_each_quote() -> None:
    with pytest.raises(ConfigError, match="add BNB/USD to --symbols"):
        SimConfig(markets=(MARKET,), api_key="k", api_secret="s", fee_asset="bnb")


def test_a_market_order_by_quote_amount_buys_whole_lots() -> None:
    engine = make_engine()
    placed, [trade] = engine.place(order("BUY", "MARKET", None, quote_qty="50.0005"), T0)
    assert placed.orig_qty == D("0.5") and placed.orig_quote_order_qty == D("50.0005")
    assert trade.qty == D("0.5")


def test_a_market_order_the_balance_cannot_pay_is_refused_and_changes_nothing() -> None:
    engine = make_engine(fee_asset="quote")
    with refused(-2010, errors.INSUFFICIENT_BALANCE):
        engine.place(order("BUY", "MARKET", "99.95"), T0)  # 9995 + 9.995 fee > 10000
    with refused(-2010, errors.INSUFFICIENT_BALANCE):
        engine.place(order("SELL", "MARKET", "10.001"), T0)
    assert balance(engine, "USD") == (D(10_000), 0) and engine.orders == {}
    engine.place(order("BUY", "MARKET", "99.9"), T0)  # 9990 + 9.99 fits


# -- limit orders ----------------------------------------------------------------------------------


def test_a_limit_buy_rests_locked_and_fills_at_its_price_when_the_path_first_touches_it() -> None:
    engine = make_engine()
    placed, trades = engine.place(order("BUY", "LIMIT", "1", "96"), T0 + 200)
    assert trades == [] and placed.status == "NEW"
    assert balance(engine, "USD") == (D(10_000) - D(96), D(96))
    assert engine.advance(T0 + 5000) == []  # still flat at 100
    [trade] = engine.advance(T0 + 9000)
    # Bar 5 closes down, so it walks open 100 → high 100 (333 ms) → low 95 (667 ms): it crosses 96 (and the
    # half tick that rounds to it) four fifths of the way down, at 600 ms.
    assert trade.time_ms == T0 + 5600 and trade.price == D(96) and trade.is_maker
    assert placed.status == "FILLED" and placed.update_time_ms == T0 + 5600
    assert balance(engine, "USD") == (D(10_000) - D(96), 0)
    assert balance(engine, "XYZ") == (D(10) + D("0.999"), 0)


def test_a_marketable_limit_trades_at_once_at_the_better_price_and_refunds_the_difference() -> None:
    engine = make_engine(spread_bps="20")
    placed, [trade] = engine.place(order("BUY", "LIMIT", "1", "101"), T0)
    assert trade.price == D("100.1") and not trade.is_maker and placed.status == "FILLED"
    assert balance(engine, "USD") == (D(10_000) - D("100.1"), 0)


def test_a_resting_sell_fills_when_the_path_rises_to_it() -> None:
    engine = make_engine()
    _placed, _ = engine.place(order("SELL", "LIMIT", "2", "104"), T0)
    assert balance(engine, "XYZ") == (D(8), D(2))
    [trade] = engine.advance(T0 + 16_000)
    assert trade.time_ms == T0 + 10_600  # bar 10 climbs 100 → 105 from 333 ms to 667 ms: 104 at 600 ms
    assert balance(engine, "USD") == (D(10_000) + D(208) - D("0.208"), 0)


def test_cancel_unlocks_what_is_left_and_a_cancelled_or_filled_order_cannot_be_cancelled() -> None:
    engine = make_engine()
    placed, _ = engine.place(order("BUY", "LIMIT", "1", "90"), T0)
    cancelled = engine.cancel("XYZUSD", placed.order_id, None, T0 + 1000)
    assert cancelled.status == "CANCELED" and balance(engine, "USD") == (D(10_000), 0)
    with refused(-2011, "Unknown order sent."):
        engine.cancel("XYZUSD", placed.order_id, None, T0 + 1000)
    with refused(-2011):
        engine.cancel("XYZUSD", 999, None, T0)
    _filled, _ = engine.place(order("BUY", "MARKET", "1", cid="m1"), T0 + 1000)
    with refused(-2011):
        engine.cancel("XYZUSD", None, "m1", T0 + 1000)


@pytest.mark.parametrize(("tif", "price", "status", "filled"), [
    ("IOC", "99", "EXPIRED", D(0)),  # not marketable: nothing, expired at once
    ("FOK", "99", "EXPIRED", D(0)),
    ("IOC", "100", "FILLED", D(1)),
    ("FOK", "100", "FILLED", D(1)),
])
def test_ioc_and_fok_never_rest(tif: str, price: str, status: str, filled: Decimal) -> None:
    engine = make_engine()
    placed, _ = engine.place(order("BUY", "LIMIT", "1", price, tif=tif), T0)
    assert (placed.status, placed.executed_qty) == (status, filled)
    assert balance(engine, "USD")[1] == 0


def test_a_limit_maker_that_would_trade_at_once_is_refused() -> None:
    engine = make_engine()
    with refused(-2010, "Order would immediately match and take."):
        engine.place(order("BUY", "LIMIT_MAKER", "1", "100"), T0)
    placed, _ = engine.place(order("BUY", "LIMIT_MAKER", "1", "99"), T0)
    assert placed.status == "NEW"


# -- stop orders -----------------------------------------------------------------------------------


def stop(side: str, kind: str, qty: str, stop_price: str, price: str | None = None, cid: str = "s1") -> NewOrder:
    return NewOrder(symbol="XYZUSD", side=side, type=kind, client_order_id=cid,
                    time_in_force="GTC" if price is not None else None, quantity=D(qty),
                    price=D(price) if price is not None else None, stop_price=D(stop_price))


def test_a_stop_that_would_trigger_at_once_is_refused() -> None:
    engine = make_engine()
    with refused(-2010, "Stop price would trigger immediately."):
        engine.place(stop("SELL", "STOP_LOSS", "1", "100"), T0)  # the price is 100: at its stop
    with refused(-2010, "Stop price would trigger immediately."):
        engine.place(stop("SELL", "TAKE_PROFIT", "1", "99"), T0)


def test_a_stop_loss_waits_locked_until_the_path_reaches_its_stop_then_sells_at_the_bid() -> None:
    engine = make_engine()
    placed, trades = engine.place(stop("SELL", "STOP_LOSS", "2", "96"), T0)
    assert (placed.status, placed.waiting, trades) == ("NEW", True, [])
    assert balance(engine, "XYZ") == (D(8), D(2))  # what it may sell is locked from the start
    assert engine.advance(T0 + 5000) == [] and placed.waiting  # flat at 100 so far
    [trade] = engine.advance(T0 + 6000)  # the dip to 95 reaches 96 during the sixth bar
    assert placed.status == "FILLED" and not placed.waiting and placed.working_ms == trade.time_ms
    assert T0 + 5000 < trade.time_ms < T0 + 6000 and not trade.is_maker
    assert trade.price == engine.bid_ask("XYZUSD", trade.time_ms)[0] == D(96)
    assert balance(engine, "XYZ") == (D(8), 0)


def test_a_triggered_stop_limit_trades_at_once_if_its_limit_is_reached_else_rests_at_its_limit() -> None:
    engine = make_engine()
    limit, _ = engine.place(stop("SELL", "STOP_LOSS_LIMIT", "1", "97", "99", cid="sl"), T0)
    profit, _ = engine.place(stop("BUY", "TAKE_PROFIT_LIMIT", "1", "96", "96.5", cid="tp"), T0)
    assert balance(engine, "USD") == (D(10_000) - D("96.5"), D("96.5"))
    trades = engine.advance(T0 + 9000)
    # The dip triggers both. The buy's limit (96.5) is above the ask at its trigger (96): it arrives marketable and
    # takes the ask at once, as Binance's book would; the sell's (99) is above the bid at its trigger (97): it rests
    # and fills as a maker at 99 on the way back up.
    assert [(t.order_id, t.price, t.is_maker) for t in trades] == [(profit.order_id, D(96), False),
                                                                   (limit.order_id, D(99), True)]
    bought = trades[0]
    assert bought.time_ms == profit.working_ms and bought.price == engine.bid_ask("XYZUSD", bought.time_ms)[1]
    assert limit.working_ms is not None and limit.working_ms < trades[1].time_ms  # triggered, then rested until the path came back to 99
    assert (limit.status, profit.status) == ("FILLED", "FILLED") and balance(engine, "USD")[1] == 0


# -- partial fills ---------------------------------------------------------------------------------


def test_a_partial_fill_plan_fills_a_resting_order_in_parts_an_interval_apart() -> None:
    engine = make_engine(rows=[(100, 100, 100, 100)] * 2 + [(95, 95, 95, 95)] * 10)
    placed, _ = engine.place(order("BUY", "LIMIT", "0.9", "96"), T0, partial=PartialPlan(parts=3, interval_ms=2000))
    first = engine.advance(T0 + 2500)
    assert [t.time_ms for t in first] == [T0 + 2000] and placed.status == "PARTIALLY_FILLED"
    assert engine.advance(T0 + 3999) == []  # the next part waits for its interval
    rest = engine.advance(T0 + 9000)
    assert [(t.time_ms, t.qty) for t in rest] == [(T0 + 4000, D("0.3")), (T0 + 6000, D("0.3"))]
    assert placed.status == "FILLED" and balance(engine, "USD") == (D(10_000) - D("86.4"), 0)


def test_cancelling_a_partly_filled_order_keeps_its_fills() -> None:
    engine = make_engine(rows=[(95, 95, 95, 95)] * 10)
    placed, [first] = engine.place(order("BUY", "LIMIT", "1", "96"), T0, partial=PartialPlan(2, 5000))
    assert first.price == D(95) and placed.status == "PARTIALLY_FILLED"  # marketable: a taker part at once
    cancelled = engine.cancel("XYZUSD", placed.order_id, None, T0 + 1000)
    assert (cancelled.status, cancelled.executed_qty) == ("CANCELED", D("0.5"))
    assert balance(engine, "USD") == (D(10_000) - D("47.5"), 0)


def test_a_market_order_with_a_partial_fill_fills_its_first_part_and_expires() -> None:
    engine = make_engine()
    placed, [trade] = engine.place(order("BUY", "MARKET", "1"), T0, partial=PartialPlan(4, 0))
    assert (placed.status, placed.executed_qty, trade.qty) == ("EXPIRED", D("0.25"), D("0.25"))
    assert balance(engine, "USD") == (D(10_000) - D(25), 0)


# -- filters and refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "failure"), [
    (order("BUY", "LIMIT", "1", "99.999"), "PRICE_FILTER"),
    (order("BUY", "LIMIT", "1.0005", "99"), "LOT_SIZE"),
    (order("BUY", "MARKET", "0.0001"), "LOT_SIZE"),
    (order("BUY", "LIMIT", "0.04", "99"), "NOTIONAL"),
    (order("SELL", "MARKET", "0.049"), "NOTIONAL"),
])
def test_filters_refuse_orders_with_minus_1013_naming_the_filter(request_: NewOrder, failure: str) -> None:
    engine = make_engine()
    with pytest.raises(errors.BinanceError) as refusal:
        engine.place(request_, T0)
    assert (refusal.value.code, refusal.value.msg) == (-1013, f"Filter failure: {failure}")


def test_a_rejection_fault_comes_after_the_filters() -> None:
    engine = make_engine()
    rejection = errors.new_order_rejected("Market is closed.")
    with pytest.raises(errors.BinanceError, match="NOTIONAL"):
        engine.place(order("BUY", "LIMIT", "0.04", "99"), T0, reject=rejection)
    with pytest.raises(errors.BinanceError) as refusal:
        engine.place(order("BUY", "LIMIT", "1", "99"), T0, reject=rejection)
    assert refusal.value is rejection and engine.orders == {}


def test_too_many_open_orders_is_a_max_num_orders_failure() -> None:
    engine = make_engine()
    limited = MarketSpec(base="XYZ", quote="USD", tick_size=D("0.01"), step_size=D("0.001"), max_open_orders=2)
    engine.config = SimConfig(markets=(limited,), api_key="k", api_secret="s")
    for number in range(2):
        engine.place(order("BUY", "LIMIT", "1", "90", cid=f"o{number}"), T0)
    with pytest.raises(errors.BinanceError, match="MAX_NUM_ORDERS"):
        engine.place(order("BUY", "LIMIT", "1", "90", cid="o3"), T0)


# -- client order ids --------------------------------------------------------------------------------


def test_a_client_order_id_is_unique_among_open_orders_only() -> None:
    engine = make_engine()
    first, _ = engine.place(order("BUY", "LIMIT", "1", "90", cid="same"), T0)
    with refused(-2010, "Duplicate order sent."):
        engine.place(order("BUY", "LIMIT", "1", "91", cid="same"), T0)
    engine.cancel("XYZUSD", None, "same", T0 + 1)
    second, _ = engine.place(order("BUY", "LIMIT", "1", "91", cid="same"), T0 + 2)
    assert engine.find("XYZUSD", None, "same") is second  # the newest answers to the id
    assert engine.find("XYZUSD", first.order_id, None) is first
    with refused(-2013, "Order does not exist."):
        engine.find("XYZUSD", first.order_id, "other")  # id and client id disagree
    with refused(-2013):
        engine.find("XYZUSD", None, "never")


def test_a_filled_market_order_does_not_stop_a_second_with_the_same_id() -> None:
    """Binance takes a reused id once the first order is closed: the exchange will not catch a resend."""
    engine = make_engine()
    one, _ = engine.place(order("BUY", "MARKET", "1", cid="intent-1"), T0)
    two, _ = engine.place(order("BUY", "MARKET", "1", cid="intent-1"), T0 + 1)
    assert one.order_id != two.order_id and one.status == two.status == "FILLED"
    assert balance(engine, "XYZ")[0] == D(10) + 2 * D("0.999")


def test_closed_orders_beyond_the_limit_are_forgotten_oldest_first_open_ones_never() -> None:
    engine = make_engine(max_closed_orders=2)
    resting, _ = engine.place(order("BUY", "LIMIT", "1", "50", cid="rest"), T0)
    ids = [engine.place(order("BUY", "MARKET", "0.1", cid=f"m{i}"), T0)[0].order_id for i in range(4)]
    assert sorted(engine.orders) == [resting.order_id, *ids[-2:]]
    with refused(-2013):
        engine.find("XYZUSD", None, "m0")


# -- nothing is created or lost -------------------------------------------------------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("market"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 3000)),
        st.tuples(st.just("limit"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 3000), st.integers(9000, 11000)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("wait"), st.integers(1, 4000)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, fee_asset=st.sampled_from(["received", "quote", "base"]), parts=st.integers(1, 3))
def test_no_sequence_of_orders_creates_or_loses_an_asset(actions: list[tuple], fee_asset: str, parts: int) -> None:
    rng = np.random.default_rng(len(actions))
    walk = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    rows = [(o, max(o, c) * 1.003, min(o, c) * 0.997, c) for o, c in zip(np.r_[100, walk[:-1]], walk)]
    engine = make_engine(fee_asset=fee_asset, spread_bps="10", rows=rows)
    plan = PartialPlan(parts, 700) if parts > 1 else None
    now = T0
    for number, action in enumerate(actions):
        try:
            if action[0] == "market":
                engine.place(order(action[1], "MARKET", str(D(action[2]) / 1000), cid=f"c{number}"), now,
                             partial=plan)
            elif action[0] == "limit":
                engine.place(order(action[1], "LIMIT", str(D(action[2]) / 1000), str(D(action[3]) / 100),
                                   cid=f"c{number}"), now, partial=plan)
            elif action[0] == "cancel":
                engine.cancel("XYZUSD", action[1], None, now)
            else:
                now += action[1]
                engine.advance(now)
        except errors.BinanceError as exc:
            assert exc.code in (-2010, -2011, -1013), exc
    engine.advance(now + 60_000)
    bought = sum((t.qty for t in engine.trades if t.is_buyer), D(0))
    sold = sum((t.qty for t in engine.trades if not t.is_buyer), D(0))
    paid = sum((t.quote_qty for t in engine.trades if t.is_buyer), D(0))
    earned = sum((t.quote_qty for t in engine.trades if not t.is_buyer), D(0))
    fees = {asset: sum((t.commission for t in engine.trades if t.commission_asset == asset), D(0))
            for asset in ("USD", "XYZ")}
    usd, xyz = engine.accounts.get("USD"), engine.accounts.get("XYZ")
    assert usd.free + usd.locked == D(10_000) - paid + earned - fees["USD"]
    assert xyz.free + xyz.locked == D(10) + bought - sold - fees["XYZ"]
    for asset in ("USD", "XYZ"):
        held = sum((o.locked for o in engine.open_orders() if o.locked_asset == asset), D(0))
        assert engine.accounts.get(asset).locked == held
        assert engine.accounts.get(asset).free >= 0
    for placed in engine.orders.values():
        assert placed.executed_qty == sum((t.qty for t in placed.trades), D(0)) <= placed.orig_qty


def test_each_request_s_work_grows_with_the_open_orders_not_the_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """advance() and open_orders() look at open orders only; they used to walk every order ever kept."""
    engine = make_engine(balances={"USD": D(1_000_000), "XYZ": D(1000)})
    for number in range(300):
        engine.place(order("BUY" if number % 2 else "SELL", "MARKET", "0.1", cid=f"h{number}"), T0)
    resting, _ = engine.place(order("BUY", "LIMIT", "1", "50", cid="rest"), T0)
    looked_at: list[int] = []
    original: property = vars(Order)["is_open"]
    assert original.fget is not None
    is_open = original.fget

    def counting(self: Order) -> bool:
        looked_at.append(self.order_id)
        return bool(is_open(self))

    monkeypatch.setattr(Order, "is_open", property(counting))
    engine.advance(T0 + 1000)
    assert engine.open_orders("XYZUSD") == [resting]
    engine.place(order("BUY", "MARKET", "0.1", cid="one-more"), T0 + 1000)
    assert len(looked_at) < 20, f"{len(looked_at)} order state checks for one open order"
