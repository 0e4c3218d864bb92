"""The unmodified ccxt ``binance`` client against the simulator on a real waitress server.

What the ccxt venue will rely on, each checked through ccxt itself: spot-only
configuration, markets with their filters as precision and limits, tickers and klines, balances,
market and limit orders with client order ids, lookups by client id, cancels, trades — and every
injected fault surfacing as the exception class the venue will have to classify. The exact
classes are asserted (``type(exc) is X``), because ccxt's own hierarchy is the venue's input:
a 429 is DDoSProtection here, not RateLimitExceeded, and a -1008 against a loopback URL is a bare
ExchangeError unless the venue restores Binance's spot error table.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from exchange_sim_helpers import Running, ccxt_client, make_simulator, serve, wait_for

ccxt = pytest.importorskip("ccxt")


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(make_simulator(), threads=6) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(running: Running) -> Iterator[None]:
    """Every test starts from the starting balances, with no orders, faults or bans."""
    running.control("POST", "reset")
    yield
    running.control("POST", "reset")


@pytest.fixture
def exchange(running: Running) -> Any:
    client = ccxt_client(running.url)
    client.load_markets()
    return client


def paths(running: Running) -> set[str]:
    return {entry["path"] for entry in running.requests()}


# -- reading ------------------------------------------------------------------------------------------


def test_markets_carry_the_filters_and_only_spot_endpoints_are_called(running: Running) -> None:
    client = ccxt_client(running.url)
    markets = client.load_markets()
    assert sorted(markets) == ["BTC/USDT", "EUR/USD"]
    eur = markets["EUR/USD"]
    assert (eur["id"], eur["spot"], eur["active"]) == ("EURUSD", True, True)
    assert {k: eur["precision"][k] for k in ("amount", "price")} == {"amount": 0.1, "price": 0.00001}
    assert eur["limits"]["amount"]["min"] == 0.1 and eur["limits"]["cost"]["min"] == 5.0
    client.fetch_ticker("EUR/USD")
    client.fetch_tickers()
    client.fetch_ohlcv("EUR/USD", "1s", limit=5)
    client.fetch_order_book("BTC/USDT", limit=5)
    client.fetch_time()
    client.fetch_balance()
    client.fetch_open_orders("EUR/USD")
    client.fetch_my_trades("EUR/USD")
    client.fetch_orders("EUR/USD")
    assert paths(running) == {"/api/v3/exchangeInfo", "/api/v3/ticker/24hr", "/api/v3/klines", "/api/v3/depth",
                              "/api/v3/time", "/api/v3/account", "/api/v3/openOrders", "/api/v3/myTrades",
                              "/api/v3/allOrders"}


def test_ticker_and_klines_follow_the_replayed_eurusd(running: Running, exchange: Any) -> None:
    ticker = exchange.fetch_ticker("EUR/USD")
    assert ticker["bid"] < ticker["ask"] and ticker["low"] <= ticker["last"] <= ticker["high"]
    candles = exchange.fetch_ohlcv("EUR/USD", "1s", limit=10)
    assert len(candles) == 10
    assert [b[0] - a[0] for a, b in itertools.pairwise(candles)] == [1000] * 9
    assert all(low <= min(o, c) and high >= max(o, c) for _, o, high, low, c, _ in candles)
    assert abs(candles[-1][0] - time.time() * 1000) < 5000  # the last one is the kline forming now
    minutes = exchange.fetch_ohlcv("EUR/USD", "1m", limit=3)
    assert minutes[-1][0] % 60_000 == 0
    since = exchange.fetch_ohlcv("EUR/USD", "1s", since=candles[2][0], limit=3)
    assert [row[0] for row in since] == [row[0] for row in candles[2:5]]
    assert since[:2] == candles[2:4]  # closed klines do not change


# -- orders ---------------------------------------------------------------------------------------------


def test_market_order_round_trip_agrees_with_the_simulator_s_record(running: Running, exchange: Any) -> None:
    bought = exchange.create_order("EUR/USD", "market", "buy", 100, None, {"clientOrderId": "te-intent-1"})
    assert (bought["status"], bought["filled"], bought["clientOrderId"]) == ("closed", 100.0, "te-intent-1")
    assert bought["fee"] == {"currency": "EUR", "cost": 0.1} and bought["trades"][0]["fee"]["cost"] == 0.1
    again = exchange.fetch_order(None, "EUR/USD", {"clientOrderId": "te-intent-1"})
    assert (again["id"], again["status"], again["average"]) == (bought["id"], "closed", bought["average"])
    sold = exchange.create_order("EUR/USD", "market", "sell", 50, None, {"clientOrderId": "te-intent-2"})
    trades = exchange.fetch_my_trades("EUR/USD")
    _, record = running.control("GET", "trades")
    assert [(t["order"], t["price"], t["amount"], t["fee"]["cost"], t["fee"]["currency"]) for t in trades] == [
        (str(r["orderId"]), float(r["price"]), float(r["qty"]), float(r["commission"]), r["commissionAsset"])
        for r in record]
    assert [t["order"] for t in trades] == [bought["id"], sold["id"]]
    balance = exchange.fetch_balance()
    _, balances = running.control("GET", "balances")
    for asset in ("EUR", "USD"):
        assert balance[asset]["free"] == float(balances[asset]["free"])
    assert balance["EUR"]["total"] == pytest.approx(100 - 0.1 - 50)


def test_a_limit_order_rests_is_found_by_client_id_and_cancelled(running: Running, exchange: Any) -> None:
    price = exchange.fetch_ticker("BTC/USDT")["bid"] * 0.5
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"clientOrderId": "te-limit-1"})
    assert placed["status"] == "open" and placed["filled"] == 0
    assert exchange.fetch_balance()["USDT"]["used"] == pytest.approx(0.01 * float(exchange.price_to_precision(
        "BTC/USDT", price)), rel=1e-9)
    assert [o["clientOrderId"] for o in exchange.fetch_open_orders("BTC/USDT")] == ["te-limit-1"]
    cancelled = exchange.cancel_order(placed["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    # Binance's cancel reply names the cancel request's own id; the order's id is origClientOrderId.
    assert cancelled["info"]["origClientOrderId"] == "te-limit-1" and cancelled["clientOrderId"] != "te-limit-1"
    assert exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "te-limit-1"})["status"] == "canceled"
    assert exchange.fetch_open_orders("BTC/USDT") == [] and exchange.fetch_balance()["USDT"]["used"] == 0


def test_a_resting_limit_fills_when_the_market_reaches_it(running: Running, exchange: Any) -> None:
    price = round(exchange.fetch_ticker("BTC/USDT")["bid"] * 0.9, 1)
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"clientOrderId": "te-dip-1"})
    running.control("POST", "price", {"symbol": "BTCUSDT", "price": str(round(price * 0.99, 1)), "seconds": 30})
    filled = wait_for(lambda: (o := exchange.fetch_order(placed["id"], "BTC/USDT"))["status"] == "closed" and o,
                      timeout=60)
    assert filled["average"] == price and filled["filled"] == 0.01
    [trade] = exchange.fetch_my_trades("BTC/USDT")
    assert trade["takerOrMaker"] == "maker" and trade["price"] == price


def test_partial_fills_show_as_an_open_order_with_a_filled_part(running: Running, exchange: Any) -> None:
    running.control("POST", "faults", {"kind": "partial_fill", "parts": 2, "interval": 0.5, "count": 1})
    ask = exchange.fetch_ticker("EUR/USD")["ask"]
    placed = exchange.create_order("EUR/USD", "limit", "buy", 100, ask * 1.01, {"clientOrderId": "te-part-1"})
    assert (placed["status"], placed["filled"], placed["remaining"]) == ("open", 50.0, 50.0)
    done = wait_for(lambda: (o := exchange.fetch_order(placed["id"], "EUR/USD"))["status"] == "closed" and o,
                    timeout=60)
    assert done["filled"] == 100 and len(exchange.fetch_my_trades("EUR/USD")) == 2
    running.control("POST", "faults", {"kind": "partial_fill", "parts": 4, "count": 1})
    expired = exchange.create_order("EUR/USD", "market", "buy", 100, None, {"clientOrderId": "te-part-2"})
    assert (expired["status"], expired["filled"]) == ("expired", 25.0)


def test_a_client_order_id_is_refused_while_open_and_accepted_again_once_closed(running: Running,
                                                                              exchange: Any) -> None:
    bid = exchange.fetch_ticker("EUR/USD")["bid"]
    exchange.create_order("EUR/USD", "limit", "buy", 10, bid * 0.9, {"clientOrderId": "te-same"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        exchange.create_order("EUR/USD", "limit", "buy", 10, bid * 0.9, {"clientOrderId": "te-same"})
    exchange.cancel_order(None, "EUR/USD", {"clientOrderId": "te-same"})
    # A market order reusing a closed order's id goes through: the exchange does not catch duplicates.
    first = exchange.create_order("EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-same"})
    second = exchange.create_order("EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-same"})
    assert first["id"] != second["id"]
    assert exchange.fetch_order(None, "EUR/USD", {"clientOrderId": "te-same"})["id"] == second["id"]
    assert [o["clientOrderId"] for o in running.control("GET", "orders")[1]] == ["te-same"] * 3


def test_orders_from_many_threads_at_once_are_all_kept_and_balances_add_up(running: Running) -> None:
    errors: list[BaseException] = []
    running.control("POST", "balances", {"EUR": "1000"})

    def trade(worker: int) -> None:
        client = ccxt_client(running.url)
        try:
            client.load_markets()
            for number in range(12):
                side = "buy" if number % 2 == 0 else "sell"
                client.create_order("EUR/USD", "market", side, 10, None, {"clientOrderId": f"t{worker}-{number}"})
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=trade, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    _, orders = running.control("GET", "orders")
    _, trades = running.control("GET", "trades")
    assert len(orders) == len({o["orderId"] for o in orders}) == 72 and {o["status"] for o in orders} == {"FILLED"}
    assert len(trades) == 72
    usd = Decimal(10_000)
    eur = Decimal(1000)
    for t in trades:
        sign = 1 if t["isBuyer"] else -1
        usd -= sign * Decimal(t["quoteQty"])
        eur += sign * Decimal(t["qty"])
        if t["commissionAsset"] == "USD":
            usd -= Decimal(t["commission"])
        else:
            eur -= Decimal(t["commission"])
    _, balances = running.control("GET", "balances")
    assert (Decimal(balances["USD"]["free"]), Decimal(balances["EUR"]["free"])) == (usd, eur)


# -- refusals and faults, as ccxt classifies them ---------------------------------------------------------


def raises_exactly(kind: type[BaseException], call: Any) -> BaseException:
    with pytest.raises(kind) as caught:
        call()
    assert type(caught.value) is kind, f"{type(caught.value).__name__}: {caught.value}"
    return caught.value


@pytest.mark.parametrize(("fault", "expected"), [
    ({"kind": "rate_limit", "retry_after": 7}, "DDoSProtection"),  # ccxt's binance checks 429 before -1003
    ({"kind": "ban", "seconds": 5}, "DDoSProtection"),
    ({"kind": "maintenance"}, "OnMaintenance"),
    ({"kind": "error", "status": 503}, "ExchangeNotAvailable"),  # a proxy's HTML page
    ({"kind": "error", "status": 502}, "ExchangeNotAvailable"),
    ({"kind": "error", "status": 504}, "RequestTimeout"),
    ({"kind": "error", "status": 503, "code": -1001,
      "msg": "Internal error; unable to process your request. Please try again."}, "OperationFailed"),
    ({"kind": "latency", "seconds_delay": 3}, "RequestTimeout"),
])
def test_a_fault_on_every_request_surfaces_as_its_ccxt_exception(running: Running, exchange: Any,
                                                                 fault: dict[str, Any], expected: str) -> None:
    exchange.timeout = 1500
    assert running.control("POST", "faults", {**fault, "count": 1} if fault["kind"] != "ban" else fault)[0] == 200
    raised = raises_exactly(getattr(ccxt, expected), lambda: exchange.fetch_ticker("EUR/USD"))
    if fault["kind"] in ("rate_limit", "ban"):
        assert int(exchange.last_response_headers["Retry-After"]) >= 1
        assert "-1003" in str(raised)


@pytest.mark.parametrize(("code", "degraded", "restored"), [
    (-1008, "ExchangeError", "OperationFailed"),  # server overloaded: temporary, or a "bug"
    (-1131, "ExchangeError", "BadRequest"),  # recvWindow above 60000
])
def test_spot_only_codes_degrade_on_a_loopback_url_until_the_spot_table_is_merged(
        running: Running, code: int, degraded: str, restored: str) -> None:
    """ccxt picks Binance's spot table by host name; a venue on a custom URL must add it back itself."""

    def fail(client: Any) -> None:
        if code == -1008:
            running.control("POST", "faults", {"kind": "error", "status": 503, "code": -1008,
                                               "msg": "Server is currently overloaded with other requests.",
                                               "count": 1})
            client.fetch_ticker("EUR/USD")
        else:
            client.fetch_balance({"recvWindow": 70_000})

    plain = ccxt_client(running.url)
    plain.load_markets()
    raises_exactly(getattr(ccxt, degraded), lambda: fail(plain))
    merged = ccxt_client(running.url)
    merged.load_markets()
    # What ccxt does on api.binance.com: the spot table first, then the generic one.
    merged.exceptions["exact"] = {**merged.exceptions["exact"], **merged.exceptions["spot"]["exact"]}
    raises_exactly(getattr(ccxt, restored), lambda: fail(merged))


def test_a_timeout_after_accept_leaves_the_order_on_the_exchange(running: Running, exchange: Any) -> None:
    exchange.timeout = 1000
    running.control("POST", "faults", {"kind": "timeout", "hang_seconds": 3, "count": 1})
    raises_exactly(ccxt.RequestTimeout, lambda: exchange.create_order(
        "EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-lost-1"}))
    running.control("POST", "faults", {"kind": "timeout", "mode": "drop", "count": 1})
    raises_exactly(ccxt.NetworkError, lambda: exchange.create_order(
        "EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-lost-2"}))
    for client_id in ("te-lost-1", "te-lost-2"):  # asking by client id resolves the unknown outcome
        assert exchange.fetch_order(None, "EUR/USD", {"clientOrderId": client_id})["status"] == "closed"


def test_a_lag_fault_answers_order_does_not_exist_for_an_order_it_accepted_then_shows_it(running: Running,
                                                                                         exchange: Any) -> None:
    """Binance's query lag: an order accepted moments ago is answered -2013 (ccxt's OrderNotFound) by a lookup, by
    client order id or by id, for ``count`` lookups (or while younger than ``lag_seconds``); then it is there. The
    order itself was accepted and filled; placing it is not affected."""
    running.control("POST", "faults", {"kind": "lag", "lag_seconds": 600, "count": 2})
    placed = exchange.create_order("EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-lag-1"})
    assert placed["status"] == "closed"  # accepted and filled
    raises_exactly(ccxt.OrderNotFound, lambda: exchange.fetch_order(None, "EUR/USD", {"clientOrderId": "te-lag-1"}))
    raises_exactly(ccxt.OrderNotFound, lambda: exchange.fetch_order(placed["id"], "EUR/USD"))
    assert exchange.fetch_order(None, "EUR/USD", {"clientOrderId": "te-lag-1"})["status"] == "closed"  # count used
    assert [r.get("fault") for r in running.control("GET", "requests")[1] if r["method"] == "GET"
            and r["path"] == "/api/v3/order"] == ["lag", "lag", None]


def test_a_trades_lag_fault_hides_the_trades_made_since_it_began_while_the_order_reads_filled(
        running: Running, exchange: Any) -> None:
    """The trade list lagging the order status: ``myTrades`` (by market, and by order — ccxt's
    ``fetch_order_trades``) omits every trade made after the fault was added, for ``count`` answers that omit one,
    while the order lookup already says it filled; a trade made before stays listed, and the simulator's own
    record has them all."""
    before = exchange.create_order("EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-tl-0"})
    status, fault = running.control("POST", "faults", {"kind": "trades_lag", "count": 2})
    assert status == 200 and fault["from_trade_id"] == 2 and fault["path"] == "/api/v3/myTrades"
    placed = exchange.create_order("EUR/USD", "market", "buy", 10, None, {"clientOrderId": "te-tl-1"})
    assert exchange.fetch_order(placed["id"], "EUR/USD")["filled"] == 10  # the order says filled
    assert exchange.fetch_order_trades(placed["id"], "EUR/USD") == []  # its trade is not listed yet
    assert [t["order"] for t in exchange.fetch_my_trades("EUR/USD")] == [before["id"]]
    assert [t["order"] for t in exchange.fetch_order_trades(before["id"], "EUR/USD")] == [before["id"]]  # no use
    assert [t["order"] for t in exchange.fetch_my_trades("EUR/USD")] == [before["id"], placed["id"]]  # count used
    assert len(running.control("GET", "trades")[1]) == 2
    assert [r.get("fault") for r in running.control("GET", "requests")[1]
            if r["path"] == "/api/v3/myTrades"] == ["trades_lag", "trades_lag", None, None]


@pytest.mark.parametrize(("fault", "expected"), [
    ({"kind": "reject", "count": 1}, "InsufficientFunds"),
    ({"kind": "reject", "msg": "Market is closed.", "count": 1}, "MarketClosed"),
    ({"kind": "reject", "msg": "New order rejected by the simulator.", "count": 1}, "InvalidOrder"),
])
def test_a_rejected_order_surfaces_by_its_message(running: Running, exchange: Any, fault: dict[str, Any],
                                                   expected: str) -> None:
    running.control("POST", "faults", fault)
    raises_exactly(getattr(ccxt, expected), lambda: exchange.create_order("EUR/USD", "market", "buy", 10))
    assert exchange.create_order("EUR/USD", "market", "buy", 10)["status"] == "closed"  # count 1: the next passes


def test_order_refusals_from_the_exchange(running: Running, exchange: Any) -> None:
    base = {"symbol": "EURUSD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "newOrderRespType": "FULL"}
    raises_exactly(ccxt.InvalidOrder, lambda: exchange.privatePostOrder({**base, "quantity": "10.05",
                                                                          "price": "0.9"}))  # LOT_SIZE
    raises_exactly(ccxt.InvalidOrder, lambda: exchange.privatePostOrder({**base, "quantity": "10",
                                                                          "price": "0.900001"}))  # PRICE_FILTER
    # NOTIONAL has no message rule in ccxt: -1013 falls to the generic table's BadRequest.
    raises_exactly(ccxt.BadRequest, lambda: exchange.create_order("EUR/USD", "limit", "buy", 1, 0.9))
    raises_exactly(ccxt.InsufficientFunds, lambda: exchange.create_order("EUR/USD", "market", "buy", 100_000))
    raises_exactly(ccxt.OrderNotFound, lambda: exchange.fetch_order("424242", "EUR/USD"))
    raises_exactly(ccxt.OrderNotFound, lambda: exchange.cancel_order("424242", "EUR/USD"))
    raises_exactly(ccxt.BadSymbol, lambda: exchange.publicGetTicker24hr({"symbol": "NOPE"}))


def test_clock_skew_is_invalid_nonce_until_the_client_measures_the_offset(running: Running,
                                                                          exchange: Any) -> None:
    running.control("POST", "faults", {"kind": "clock_skew", "ms": 20_000})
    raises_exactly(ccxt.InvalidNonce, exchange.fetch_balance)
    exchange.load_time_difference()
    assert -25_000 < exchange.options["timeDifference"] < -15_000
    assert exchange.fetch_balance()["USD"]["free"] == 10_000


def test_credentials_errors(running: Running, exchange: Any) -> None:
    raises_exactly(ccxt.AuthenticationError, ccxt_client(running.url, secret="wrong-secret").fetch_balance)
    raises_exactly(ccxt.AuthenticationError, ccxt_client(running.url, key="WrongKey123").fetch_balance)  # -2015
    raises_exactly(ccxt.AuthenticationError, ccxt_client(running.url, key="bad-key!").fetch_balance)  # -2014
    # ccxt reads -2015 after a first success as a temporary ban (DDoSProtection): a revoked key looks temporary.
    exchange.fetch_balance()
    exchange.apiKey = "WrongKey123"
    raises_exactly(ccxt.DDoSProtection, exchange.fetch_balance)
