"""A position whose order ended short at the exchange gets no exit until its trades are listed (issue 13, "never
double-counts a trade").

An exchange's trade list may lag its order status: the order reads filled (or cancelled with a part filled) while
``myTrades`` does not list every trade yet. The ccxt venue follows such an order until its trades add up and says so
at its first answer (``OrderEndedShort``; the router keeps it in ``ended_short``). Until the trades come the ledger
holds only part of what that order did, so an exit sized on the quantity booked would sell the wrong amount, and a
cancel would go to an order already ended. So, live: the position's exits wait (``Engine.exit_waits``) — its
stop-loss does not fire, the strategy's close or reduce is ignored with the reason, the risk pause's cancel of
entries leaves it alone — journaled ``exit_waiting`` once; the other positions' exits go as usual; no cancel is sent
for the order; and once the trades are listed they are booked, the order ends and the next exit sells exactly what
is left. A restart while the order waits brings it back into ``ended_short`` at start-up and sends nothing for it.

Through the real Engine and OrderRouter and the unmodified ccxt client against the exchange simulator (two markets,
AAA and BBB), with its ``trades_lag`` fault scoped to AAA. It used to fail the whole trigger check (the cancel of an
order the exchange had ended never confirmed), holding every other position's stop-loss with it, and sent that
cancel at every retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from exchange_sim_helpers import API_KEY, API_SECRET, Running, serve, wait_for
from scripted import SCRIPTED, ohlc
from test_engine_router import T0
from test_engine_writeahead import CONFIG, cycle_ns
from test_rotation_live import two_stock_simulator as two_markets
from tradeexecutor.backtest.runner import new_state
from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.accounting import recompute_cash
from tradeexecutor.engine.engine import Engine
from tradeexecutor.state import Order, OrderPurpose, OrderStatus, Position, State
from tradeexecutor.strategy.api import open_long, reduce
from tradeexecutor.strategy.intents import close
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy
from tradeexecutor.venue.ccxt_venue import CcxtVenue

pytest.importorskip("ccxt")

ENVIRON = {"TRADEEXECUTOR_EXCHANGE_API_KEY": API_KEY, "TRADEEXECUTOR_EXCHANGE_API_SECRET": API_SECRET}
Journal = list[tuple[str, dict[str, Any]]]
#: Daily bars of both markets: flat at 100, then a bar falling through a 10 % stop (90) and two opening below it.
BARS: list[Any] = [100.0, 100.0, 100.0, (100.0, 100.0, 80.0, 85.0), (85.0, 85.0, 80.0, 85.0), (85.0, 85.0, 80.0, 85.0)]


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(two_markets(), threads=6) as running:
        yield running


def pin(running: Running, symbol: str, price: float) -> None:
    """Hold ``symbol`` (the exchange's, AAAUSD) at ``price`` from the next 1-second bar, and wait until it shows."""
    running.control("POST", "price", {"symbol": symbol, "price": str(price), "seconds": 3600})
    wait_for(lambda: Decimal(running.control("GET", "status")[1]["markets"][symbol]["price"]) == Decimal(str(price)),
             timeout=60)


def scripted(tmp_path: Path) -> tuple[LoadedStrategy, MarketData]:
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA", "BBB"]))
    frame = pd.concat([ohlc("AAA", BARS), ohlc("BBB", BARS)])
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity", "BBB": "equity"})
    return load_strategy(path), market


def live_engine(strategy: LoadedStrategy, market: MarketData, state: State, running: Running,
                journal: Journal) -> Engine:
    """A live engine as a process makes it: a new ccxt venue on the simulator, write-ahead on."""
    engine = Engine(strategy, market, state, config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    config = CcxtVenueConfig(exchange="binance", url=running.url, quote="USD", symbols=("AAA", "BBB"))
    engine.live_venue = CcxtVenue(config, environ=ENVIRON)
    engine.start_write_ahead(lambda: None, lambda: T0)
    return engine


def fresh(tmp_path: Path, running: Running) -> tuple[Engine, Journal]:
    """A new account (10 000 USD, both markets at 100) and a live engine on it."""
    running.control("POST", "reset")
    pin(running, "AAAUSD", 100.0)
    pin(running, "BBBUSD", 100.0)
    strategy, market = scripted(tmp_path)
    journal: Journal = []
    return live_engine(strategy, market, new_state(strategy, CONFIG, T0), running, journal), journal


def position(engine: Engine, symbol: str) -> Position:
    return next(p for p in engine.state.portfolio.open_positions if engine.symbol_of[p.instrument_id] == symbol)


def cancels(running: Running) -> list[dict[str, Any]]:
    """Every cancel the exchange was sent."""
    return [r for r in running.requests() if r["method"] == "DELETE" and r["path"] == "/api/v3/order"]


def exchange_orders(running: Running, symbol: str) -> list[tuple[str, str, float]]:
    """The exchange's orders of ``symbol``: (client order id, side, quantity filled)."""
    return [(o["clientOrderId"], o["side"], float(o["executedQty"])) for o in running.control("GET", "orders")[1]
            if o["symbol"] == symbol]


def held(running: Running, asset: str) -> float:
    balance = running.control("GET", "balances")[1].get(asset) or {}
    return float(balance.get("free") or 0) + float(balance.get("locked") or 0)


def events(journal: Journal, name: str) -> list[dict[str, Any]]:
    return [fields for event, fields in journal if event == name]


def both_held_with_stops(engine: Engine) -> tuple[Position, Position]:
    """AAA and BBB bought (1 000 USD each at 100) with a 10 % stop-loss, filled on arrival."""
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=0.1), open_long("BBB", value=1000, stop_loss_pct=0.1)],
                0, cycle_ns(0))
    engine.manage(1)
    aaa, bbb = position(engine, "AAA"), position(engine, "BBB")
    assert aaa.quantity == bbb.quantity == 10.0 and aaa.stop_loss == pytest.approx(90.0)
    return aaa, bbb


def reduce_ended_short(engine: Engine, running: Running) -> tuple[Position, Order, str]:
    """AAA's trades hidden from now on (``trades_lag`` on AAAUSD), then a market reduce of 4 AAA: the exchange fills
    it, lists no trade. The position, the reduce and the fault's id."""
    aaa = position(engine, "AAA")
    _, lag = running.control("POST", "faults", {"kind": "trades_lag", "symbol": "AAAUSD"})
    engine.plan([reduce("AAA", quantity=4.0)], 1, cycle_ns(1))
    engine.manage(2)
    sell = aaa.orders[-1]
    assert sell.purpose is OrderPurpose.reduce and not sell.fills and not sell.is_terminal
    assert exchange_orders(running, "AAAUSD")[-1] == (sell.client_order_id, "SELL", 4.0)  # ended at the exchange
    assert held(running, "AAA") == 6.0 and aaa.quantity == 10.0  # the ledger has booked none of it
    return aaa, sell, str(lag["id"])


def test_a_stop_waits_for_the_trades_of_an_order_that_ended_short_while_another_positions_stop_sells(
        tmp_path: Path, running: Running) -> None:
    """Both positions' stops are crossed while AAA's reduce has ended short: BBB is sold, AAA waits (``exit_waiting``
    once, no cancel sent, nothing sold), the strategy's close of it is ignored with the reason. Once the trades are
    listed the reduce is booked and ended, and the next bar's stop sells exactly the 6 AAA left. Fails before: the
    trigger check sent a cancel to the ended reduce and failed temporarily on it — BBB's stop-loss with it — at every
    retry."""
    engine, journal = fresh(tmp_path, running)
    _, bbb = both_held_with_stops(engine)
    aaa, sell, lag = reduce_ended_short(engine, running)
    router = engine.router
    assert router is not None and set(router.ended_short) == {sell.client_order_id}
    assert engine.in_flight(aaa) is sell and engine.exit_waits(bbb) is None
    waits = engine.exit_waits(aaa)
    assert waits is not None and sell.client_order_id in waits and "filled 4 " in waits and "add up to 0 " in waits
    asked_to_cancel = len(cancels(running))

    engine.manage(3)  # the bar falls through both stops
    assert not bbb.is_open and exchange_orders(running, "BBBUSD")[-1][1:] == ("SELL", 10.0)
    assert aaa.is_open and [o.client_order_id for o in aaa.orders] == [aaa.orders[0].client_order_id,
                                                                       sell.client_order_id]
    (waiting,) = events(journal, "exit_waiting")
    assert (waiting["position_id"], waiting["exit"], waiting["client_order_id"], waiting["filled"],
            waiting["listed"]) == (aaa.id, "stop_loss", sell.client_order_id, 4.0, 0.0)
    assert [f["symbol"] for f in events(journal, "trigger_fired")] == ["BBB"]

    report = engine.plan([close("AAA")], 3, cycle_ns(3))  # the strategy's close: ignored with the reason
    assert report.planned == 0 and report.ignored == [f"close AAA: {waits}"]
    engine.manage(4)  # still through the stop: still waiting, said once
    assert len(events(journal, "exit_waiting")) == 1 and aaa.is_open
    assert len(cancels(running)) == asked_to_cancel  # never a cancel of an order the exchange said ended
    assert [side for _, side, _ in exchange_orders(running, "AAAUSD")] == ["BUY", "SELL"]

    assert running.control("DELETE", f"faults/{lag}")[0] == 200
    engine.drain()  # the trades listed: booked, the reduce ends, the wait with it
    assert sell.status is OrderStatus.filled and sell.filled_quantity == 4.0 and aaa.quantity == 6.0
    assert router.ended_short == {} and engine.exit_waits(aaa) is None
    engine.manage(5)  # the next bar opens below the stop: the stop sells what is left, once
    assert not aaa.is_open
    assert [(side, filled) for _, side, filled in exchange_orders(running, "AAAUSD")] == [
        ("BUY", 10.0), ("SELL", 4.0), ("SELL", 6.0)]
    assert held(running, "AAA") == 0.0 and held(running, "BBB") == 0.0
    assert len(cancels(running)) == asked_to_cancel
    assert engine.state.portfolio.cash == pytest.approx(held(running, "USD"), abs=1e-6)
    assert recompute_cash(engine.state.initial_cash, engine.state.portfolio) == pytest.approx(
        engine.state.portfolio.cash, abs=1e-9)


def test_an_entry_that_ended_short_is_never_cancelled_and_its_close_waits_for_its_trades(
        tmp_path: Path, running: Running) -> None:
    """AAA's market entry fills with its trade unlisted: the ledger holds it open, the position holding nothing. The
    strategy's close of it and a risk pause's cancel of the entries send nothing to the exchange (the close is
    ignored with the reason); once the trade is listed the entry is booked, its stop armed, and the close sells all
    of it. Fails before: the close sent a cancel to the filled entry and failed temporarily, at every retry."""
    engine, journal = fresh(tmp_path, running)
    _, lag = running.control("POST", "faults", {"kind": "trades_lag", "symbol": "AAAUSD"})
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=0.1)], 0, cycle_ns(0))
    engine.manage(1)
    aaa = position(engine, "AAA")
    (entry,) = aaa.orders
    assert not entry.is_terminal and aaa.quantity == 0 and held(running, "AAA") == 10.0
    assert engine.in_flight(aaa) is entry
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert report.planned == 0 and len(report.ignored) == 1 and entry.client_order_id in report.ignored[0]
    assert engine.cancel_entries(1, "risk limit: paused") == 0
    assert cancels(running) == [] and not entry.is_terminal and aaa.is_open
    (waiting,) = events(journal, "exit_waiting")
    assert (waiting["exit"], waiting["purpose"], waiting["filled"]) == ("close", "open", 10.0)
    assert not events(journal, "order_cancel_requested") and not events(journal, "order_cancelled")

    assert running.control("DELETE", f"faults/{lag['id']}")[0] == 200
    engine.drain()
    assert entry.status is OrderStatus.filled and aaa.quantity == 10.0 and aaa.stop_loss == pytest.approx(90.0)
    report = engine.plan([close("AAA")], 2, cycle_ns(2))
    assert report.planned == 1 and not report.ignored
    engine.manage(3)
    assert not aaa.is_open and held(running, "AAA") == 0.0 and cancels(running) == []
    assert [(side, filled) for _, side, filled in exchange_orders(running, "AAAUSD")] == [("BUY", 10.0),
                                                                                        ("SELL", 10.0)]


def test_a_restart_while_an_order_is_ended_short_keeps_it_followed_and_its_exits_waiting(
        tmp_path: Path, running: Running) -> None:
    """A new process (its ccxt venue knowing nothing) over a ledger whose reduce ended short: the start-up's
    resolution asks about it, does not end it (its trades not listed), and brings it back into ``ended_short`` — the
    stop crossed at the next bar waits, nothing is sent. Once listed, the trades are booked and the order ends."""
    engine, journal = fresh(tmp_path, running)
    both_held_with_stops(engine)
    aaa, sell, lag = reduce_ended_short(engine, running)
    restarted = live_engine(engine.strategy, engine.market, engine.state, running, journal)
    sent = len(exchange_orders(running, "AAAUSD"))
    restarted.resolve_orders(T0)
    router = restarted.router
    assert router is not None and set(router.ended_short) == {sell.client_order_id}
    assert not sell.is_terminal and not sell.fills and aaa.quantity == 10.0
    restarted.manage(3)
    assert aaa.is_open and restarted.exit_waits(aaa) is not None
    assert len(exchange_orders(running, "AAAUSD")) == sent and cancels(running) == []
    assert running.control("DELETE", f"faults/{lag}")[0] == 200
    restarted.drain()
    assert sell.status is OrderStatus.filled and aaa.quantity == 6.0 and router.ended_short == {}


def test_a_stop_losss_sale_that_ended_short_is_never_sold_again_nor_cancelled(tmp_path: Path, running: Running) -> None:
    """AAA's stop-loss sells it whole with the sale's trade unlisted: the ledger still holds the 10 AAA the account no
    longer has. The next bar through the stop, the strategy's close() and a risk limit's close send nothing (a
    second sale, or a cancel of the one the exchange ended); once the trade is listed the sale is booked and the
    position closed, one sale at the exchange. Fails before: the close() sent a cancel and failed temporarily."""
    engine, journal = fresh(tmp_path, running)
    aaa, _ = both_held_with_stops(engine)
    _, lag = running.control("POST", "faults", {"kind": "trades_lag", "symbol": "AAAUSD"})
    engine.manage(3)  # both stops fire; AAA's sale ends at the exchange with no trade listed
    sale = aaa.orders[-1]
    assert sale.purpose is OrderPurpose.close and not sale.is_terminal and not sale.fills
    assert aaa.is_open and aaa.quantity == 10.0 and held(running, "AAA") == 0.0
    engine.manage(4)
    report = engine.plan([close("AAA")], 4, cycle_ns(4))
    assert report.planned == 0 and len(report.ignored) == 1 and sale.client_order_id in report.ignored[0]
    assert engine.exit_all(4, "risk_limit") == 0
    assert [side for _, side, _ in exchange_orders(running, "AAAUSD")] == ["BUY", "SELL"] and cancels(running) == []
    assert [f["exit"] for f in events(journal, "exit_waiting")] == ["stop_loss"]  # the next bar's, then no more
    assert running.control("DELETE", f"faults/{lag['id']}")[0] == 200
    engine.drain()
    assert sale.status is OrderStatus.filled and sale.filled_quantity == 10.0 and not aaa.is_open
    assert engine.state.portfolio.open_positions == []
    assert engine.state.portfolio.cash == pytest.approx(held(running, "USD"), abs=1e-6)
