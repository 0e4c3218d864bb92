"""CcxtVenue with the unmodified ccxt binance client against a real exchange simulator on loopback.

The venue contract (tests/venue_contract.py) runs over it first, then every fault the issue
names is injected through the simulator's control API and the venue's answer checked against
the simulator's own record: 5xx and maintenance are temporary, a 429 shuts the gate for its
Retry-After, a 418 ban lets no request out until it ends (counted at the simulator), a timeout
after the order was accepted is resolved by client order id with exactly one order on the
exchange, partial fills arrive as they happen, a refusal is a rejected order with its reason,
and a skewed exchange clock is measured and corrected so orders go through.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from exchange_sim_helpers import API_KEY, API_SECRET, Running, ccxt_client, serve, wait_for
from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.errors import ConfigError, TemporaryError
from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig
from tradeexecutor.exchange_sim.api import ROUTES
from tradeexecutor.exchange_sim.prices import random_walk_series
from tradeexecutor.state import OrderSide, OrderStatus, OrderType, RejectReason
from tradeexecutor.venue import OrderAccepted, OrderFilled, OrderRejected, OrderReport, OrderRequest
from tradeexecutor.venue.ccxt_connection import make_exchange
from tradeexecutor.venue.ccxt_errors import RateLimitedError, VenueFailure
from tradeexecutor.venue.ccxt_venue import CcxtVenue
from tradeexecutor.venue.model import OrderEndedShort
from venue_contract import FEE, Harness, VenueContract

pytest.importorskip("ccxt")

ENVIRON = {"TRADEEXECUTOR_EXCHANGE_API_KEY": API_KEY, "TRADEEXECUTOR_EXCHANGE_API_SECRET": API_SECRET}


def aaa_simulator() -> ExchangeSimulator:
    """AAA/USD as the contract's instrument (whole lots, 0.01 tick, 10 USD minimum), fee in USD, no spread."""
    now = int(time.time() * 1000)
    market = MarketSpec(base="AAA", quote="USD", tick_size=Decimal("0.01"), step_size=Decimal(1),
                        min_notional=Decimal(10))
    config = SimConfig(markets=(market,), api_key=API_KEY, api_secret=API_SECRET, fee_rate=Decimal(str(FEE)),
                       fee_asset="quote", spread_bps=Decimal(0),
                       balances={"USD": Decimal(10_000), "AAA": Decimal(0)})
    return ExchangeSimulator(config, {"AAAUSD": random_walk_series(seed=5, now_ms=now, start_price=100.0)})


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(aaa_simulator(), threads=6) as running:
        yield running


def make_venue(running: Running, cash: float, **settings: Any) -> CcxtVenue:
    """A fresh account holding ``cash`` USD and no AAA, and a venue on it (the default 10 s reply timeout: the
    machine may be busy; tests of timeouts give a short one and make the simulator hang much longer)."""
    running.control("POST", "reset")
    running.control("POST", "balances", {"USD": str(cash), "AAA": "0"})
    return aaa_venue(running, **settings)


def aaa_venue(running: Running, now: Callable[[], datetime] | None = None, **settings: Any) -> CcxtVenue:
    """A venue on the simulator's AAA/USD market as a new process makes it: it knows nothing of what an earlier
    one sent (the default 10 s reply timeout; ``timeout_seconds`` for tests of timeouts; ``now`` for tests that
    drive the venue's clock)."""
    config = CcxtVenueConfig(exchange="binance", url=running.url, quote="USD", symbols=("AAA",), **settings)
    return CcxtVenue(config, environ=ENVIRON, now=now)


@pytest.fixture
def aaa_at_100(running: Running) -> Iterator[None]:
    """A fresh simulator account with AAA held at 100: where each reconciliation and router test starts (used by
    tests/test_reconcile*.py and tests/test_venue_ccxt_router.py with this module's ``running``)."""
    running.control("POST", "reset")
    pin(running, 100.0)
    yield


def pin(running: Running, price: float) -> None:
    """Hold AAA at ``price`` from the next 1-second bar, and wait until the exchange shows it."""
    running.control("POST", "price", {"symbol": "AAAUSD", "price": str(price), "seconds": 3600})
    wait_for(lambda: Decimal(running.control("GET", "status")[1]["markets"]["AAAUSD"]["price"]) == Decimal(
        str(price)), timeout=60)


@pytest.fixture
def harness(running: Running) -> Harness:
    def price(venue: CcxtVenue, value: float, at: datetime) -> None:
        pin(running, value)

    return Harness("ccxt", lambda cash: make_venue(running, cash), price, fills_on_arrival=True)


class TestCcxtVenueContract(VenueContract):
    """The whole venue contract, through ccxt and HTTP, against the simulator."""


# -- construction ----------------------------------------------------------------------------------------


def test_every_api_base_points_at_the_url_and_only_spot_endpoints_are_called(running: Running) -> None:
    venue = make_venue(running, 1000.0)
    assert venue.instruments(["AAA"])["AAA"].tick_size == 0.01
    venue.balances()
    venue.open_orders()
    assert venue.order_fills("never-sent") == []
    hosts = {base.split("/")[2] for base in _strings(venue.exchange.urls["api"])}
    assert hosts == {running.url.split("/")[2]}
    requests = running.requests()
    assert {r["path"] for r in requests} == {"/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/account",
                                             "/api/v3/openOrders", "/api/v3/order"}
    assert venue.exchange.enableRateLimit


def test_open_orders_are_asked_market_by_market_while_that_costs_less_than_one_request_for_every_market() -> None:
    """Binance's openOrders costs 6 request weight for one market and 80 for every market: an executor trading up
    to 13 markets asks market by market, one trading more asks once for every market and keeps its own markets'
    orders — the same reports either way (counted in the simulator's request log at its own weights)."""
    bases = [f"X{chr(ord('A') + i)}" for i in range(15)]
    now = int(time.time() * 1000)
    markets = tuple(MarketSpec(base=base, quote="USD", tick_size=Decimal("0.01"), step_size=Decimal(1),
                               min_notional=Decimal(10)) for base in bases)
    config = SimConfig(markets=markets, api_key=API_KEY, api_secret=API_SECRET, balances={"USD": Decimal(10_000)})
    series = {f"{base}USD": random_walk_series(seed=i, now_ms=now, start_price=100.0, history=60)
              for i, base in enumerate(bases)}
    with serve(ExchangeSimulator(config, series)) as running:
        client = ccxt_client(running.url)
        for i in (0, 2, 5, 14):  # resting buys far below the price: on watched markets, and on one nobody watches
            client.create_order(f"{bases[i]}/USD", "limit", "buy", 1, 50, {"newClientOrderId": f"te-rest-{i}"})

        def asked(count: int) -> tuple[list[OrderReport], list[str | None], int]:
            """open_orders() of a venue watching the first ``count`` markets, and the openOrders requests it made
            (their symbols) and their weight."""
            venue = CcxtVenue(CcxtVenueConfig(exchange="binance", url=running.url, quote="USD",
                                              symbols=tuple(bases[:count])), environ=ENVIRON)
            venue.connect()
            before = len(running.requests())
            reports = venue.open_orders()
            requests = [r for r in running.requests()[before:] if r["path"] == "/api/v3/openOrders"]
            weight = sum(ROUTES["GET", "/api/v3/openOrders"].weight_of(r) for r in requests)
            return reports, [r.get("symbol") for r in requests], weight

        reports, symbols, weight = asked(3)
        assert ([r.client_order_id for r in reports], symbols, weight) == (
            ["te-rest-0", "te-rest-2"], ["XAUSD", "XBUSD", "XCUSD"], 18)
        one_by_one, symbols, weight = asked(13)
        assert ([r.client_order_id for r in one_by_one], len(symbols), None in symbols, weight) == (
            ["te-rest-0", "te-rest-2", "te-rest-5"], 13, False, 78)
        at_once, symbols, weight = asked(14)
        assert (symbols, weight) == ([None], 80)  # 14 one by one: 84
        assert at_once == one_by_one  # the same reports either way (te-rest-14's market is not watched)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    return []


def test_the_rate_share_scales_ccxt_s_rate_limit() -> None:
    full = make_exchange(CcxtVenueConfig(exchange="binance"), ENVIRON)
    quarter = make_exchange(CcxtVenueConfig(exchange="binance", rate_share=0.25), ENVIRON)
    assert quarter.rateLimit == pytest.approx(full.rateLimit * 4) and quarter.enableRateLimit


@pytest.mark.parametrize(("settings", "message"), [
    ({"exchange": "Binance!"}, "ccxt exchange id"),
    ({"exchange": "nosuchexchange"}, "not an exchange ccxt"),
    ({"url": "ftp://127.0.0.1:1"}, "scheme and host only"),
    ({"url": "http://127.0.0.1:1/api"}, "scheme and host only"),
    ({"rate_share": 0.0}, "--exchange-rate-share 0.0 must be positive"),
    ({"rate_share": 1.5}, "--exchange-rate-share 1.5 must be between 0 and 1"),
    ({"rate_share": float("nan")}, "--exchange-rate-share"),
    ({"timeout_seconds": 0}, "--exchange-timeout-seconds"),
    ({"key_variable": "lower-case"}, "--exchange-key-variable 'lower-case' must be an environment variable name"),
])
def test_bad_settings_are_one_clear_line(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_exchange(CcxtVenueConfig(**{"exchange": "binance", **settings}), ENVIRON)


def test_missing_credentials_name_the_variable_not_a_value() -> None:
    with pytest.raises(ConfigError, match="TRADEEXECUTOR_EXCHANGE_API_SECRET is not set") as caught:
        make_exchange(CcxtVenueConfig(exchange="binance"), {"TRADEEXECUTOR_EXCHANGE_API_KEY": API_KEY})
    assert API_KEY not in str(caught.value)
    public = make_exchange(CcxtVenueConfig(exchange="binance"), {}, private=False)  # candles need no credentials
    assert not public.apiKey


def test_wrong_credentials_are_a_crash_not_a_retry(running: Running) -> None:
    config = CcxtVenueConfig(exchange="binance", url=running.url, quote="USD", symbols=("AAA",))
    venue = CcxtVenue(config, environ={**ENVIRON, "TRADEEXECUTOR_EXCHANGE_API_SECRET": "wrong-secret"})
    with pytest.raises(VenueFailure, match="AuthenticationError") as caught:
        venue.balances()
    assert "wrong-secret" not in str(caught.value)


# -- faults ----------------------------------------------------------------------------------------------


def fault(running: Running, **spec: Any) -> None:
    status, body = running.control("POST", "faults", spec)
    assert status == 200, body


def api_requests(running: Running) -> int:
    return len(running.requests())


@pytest.mark.parametrize("spec", [
    {"kind": "error", "status": 503},
    {"kind": "error", "status": 502},
    {"kind": "error", "status": 503, "code": -1001, "msg": "Internal error; unable to process your request."},
    {"kind": "error", "status": 503, "code": -1008, "msg": "Server is currently overloaded with other requests."},
    {"kind": "maintenance"},
    {"kind": "latency", "seconds_delay": 8},
])
def test_5xx_maintenance_and_timeouts_are_temporary_and_pass(running: Running, spec: dict[str, Any]) -> None:
    venue = make_venue(running, 1000.0, timeout_seconds=2)
    venue.connect()
    fault(running, **spec, count=1)
    with pytest.raises(TemporaryError) as caught:
        venue.balances()
    assert not isinstance(caught.value, RateLimitedError)
    assert venue.balances()["USD"].free == 1000.0  # the fault passed: the next call goes through
    # A delayed request is logged when its answer finally leaves; wait for it, so it is not counted by a later test.
    wait_for(lambda: [r["path"] for r in running.requests()].count("/api/v3/account") == 2,
             timeout=30)


def test_a_429_shuts_the_gate_for_its_retry_after(running: Running) -> None:
    venue = make_venue(running, 1000.0)
    venue.connect()
    fault(running, kind="rate_limit", retry_after=3, count=1)
    with pytest.raises(RateLimitedError) as caught:
        venue.balances()
    assert caught.value.retry_after == 3 and "429" in str(caught.value)
    sent = api_requests(running)
    with pytest.raises(RateLimitedError):
        venue.balances()  # held back by the gate, not sent
    assert api_requests(running) == sent
    wait_for(lambda: venue.connection.gate.seconds_left == 0, timeout=60)
    assert venue.balances()["USD"].free == 1000.0


def test_after_a_418_ban_no_request_leaves_until_it_ends(running: Running) -> None:
    venue = make_venue(running, 1000.0)
    venue.connect()
    banned_at = time.monotonic()
    fault(running, kind="ban", seconds=6)
    with pytest.raises(RateLimitedError, match="418") as caught:
        venue.balances()
    # What is left of the 6 s ban when the answer came (within a second's rounding), however slow the machine.
    assert 6 - (time.monotonic() - banned_at) - 1 <= caught.value.retry_after <= 7
    sent = api_requests(running)
    refused = 0
    # A loop retrying as fast as it can: twenty refusals take milliseconds, not a share of the ban that a busy
    # machine could use up (a sleep between them made the count depend on the scheduler).
    while refused < 20 and venue.connection.gate.seconds_left > 0:
        with pytest.raises(RateLimitedError):
            venue.submit(OrderRequest(f"ban-{refused}", "AAA", OrderSide.buy, value=100.0))
        refused += 1
    assert refused == 20 and api_requests(running) == sent, running.requests()[-10:]
    wait_for(lambda: venue.connection.gate.seconds_left <= 0 and not running.control("GET", "faults")[1], timeout=60)
    assert venue.balances()["USD"].free == 1000.0


def test_a_timeout_after_accept_is_unknown_and_resolved_by_client_id_never_resent(running: Running) -> None:
    venue = make_venue(running, 10_000.0, timeout_seconds=2)
    pin(running, 100.0)
    fault(running, kind="timeout", hang_seconds=8, count=1)
    request = OrderRequest("lost-1", "AAA", OrderSide.buy, value=1000.0)
    with pytest.raises(TemporaryError):
        venue.submit(request)
    from tradeexecutor.venue import DuplicateOrderError

    with pytest.raises(DuplicateOrderError):  # a blind resend is refused before it leaves
        venue.submit(request)
    report = venue.fetch_order("lost-1")
    assert report is not None and report.status is OrderStatus.filled and report.filled_quantity == 10
    _, orders = running.control("GET", "orders")
    assert [o["clientOrderId"] for o in orders] == ["lost-1"]  # exactly one order on the exchange
    (event,) = venue.poll()  # adopted: its fill arrives like any other
    assert isinstance(event, OrderFilled) and event.complete
    fills = venue.order_fills("lost-1")
    assert [f.venue_trade_id for f in fills] == [event.fill.venue_trade_id]


def test_an_order_that_never_arrived_may_be_sent_after_the_lookup(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    pin(running, 100.0)
    fault(running, kind="error", status=502, path="/api/v3/order", method="POST", count=1)
    request = OrderRequest("gone-1", "AAA", OrderSide.buy, value=500.0)
    with pytest.raises(TemporaryError):
        venue.submit(request)
    assert venue.fetch_order("gone-1") is None  # the exchange never saw it ...
    venue.submit(request)  # ... so sending it now is the first send, not a resend
    assert [type(e) for e in venue.poll()] == [OrderAccepted, OrderFilled]
    assert len(running.control("GET", "orders")[1]) == 1


def test_partial_fills_arrive_as_they_happen(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    pin(running, 100.0)
    fault(running, kind="partial_fill", parts=2, interval=0.5, count=1)
    venue.submit(OrderRequest("part-1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=10,
                              limit_price=101.0))
    accepted, part = venue.poll()
    assert isinstance(accepted, OrderAccepted) and isinstance(part, OrderFilled) and not part.complete
    assert part.fill.quantity == 5
    assert venue.fetch_order("part-1").status is OrderStatus.partially_filled  # type: ignore[union-attr]
    later: list[Any] = wait_for(lambda: venue.poll() or None, timeout=60)
    assert [type(e) for e in later] == [OrderFilled] and later[0].complete and later[0].fill.quantity == 5
    fills = venue.order_fills("part-1")
    _, trades = running.control("GET", "trades")
    assert sorted(f.venue_trade_id for f in fills) == sorted(str(t["id"]) for t in trades)


@pytest.mark.parametrize(("spec", "reason"), [
    ({"kind": "reject"}, RejectReason.insufficient_cash),
    ({"kind": "reject", "msg": "Market is closed."}, RejectReason.venue),
    ({"kind": "reject", "msg": "New order rejected by the simulator."}, RejectReason.venue),
])
def test_a_refused_order_is_rejected_with_its_reason(running: Running, spec: dict[str, Any],
                                                     reason: RejectReason) -> None:
    venue = make_venue(running, 10_000.0)
    fault(running, **spec, count=1)
    venue.submit(OrderRequest("no-1", "AAA", OrderSide.buy, value=500.0))
    (event,) = venue.poll()
    assert isinstance(event, OrderRejected) and event.reason is reason and event.text
    report = venue.fetch_order("no-1")
    assert report is not None and report.status is OrderStatus.rejected and report.reject_reason is reason
    assert running.control("GET", "orders")[1] == []


def test_clock_skew_is_measured_and_orders_go_through(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    venue.connect()
    assert abs(venue.clock_offset_ms) < 2000
    pin(running, 100.0)
    fault(running, kind="clock_skew", ms=-30_000)  # the exchange's clock is now 30 s behind ours
    venue.submit(OrderRequest("skew-1", "AAA", OrderSide.buy, value=500.0))  # InvalidNonce, measured, sent again
    assert [type(e) for e in venue.poll()] == [OrderAccepted, OrderFilled]
    assert -32_000 < venue.clock_offset_ms < -28_000
    assert [o["clientOrderId"] for o in running.control("GET", "orders")[1]] == ["skew-1"]


def test_a_market_order_filled_in_part_expires_with_its_part_kept(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    pin(running, 100.0)
    fault(running, kind="partial_fill", parts=4, count=1)
    venue.submit(OrderRequest("thin-1", "AAA", OrderSide.buy, quantity=20))
    _accepted, filled, expired = venue.poll()
    assert isinstance(filled, OrderFilled) and filled.fill.quantity == 5 and not filled.complete
    assert type(expired).__name__ == "OrderExpired"
    report = venue.fetch_order("thin-1")
    assert report is not None and report.status is OrderStatus.expired and report.filled_quantity == 5
    assert venue.balances()["AAA"].free == 5


def test_an_id_the_exchange_has_open_is_a_duplicate_even_after_a_restart(running: Running) -> None:
    from tradeexecutor.venue import DuplicateOrderError

    before = make_venue(running, 10_000.0)
    pin(running, 100.0)
    resting = OrderRequest("rest-1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=1, limit_price=50.0)
    before.submit(resting)
    after = CcxtVenue(before.config, environ=ENVIRON)  # a new process: no memory of what was sent
    with pytest.raises(DuplicateOrderError, match="rest-1"):
        after.submit(resting)
    assert len(running.control("GET", "orders")[1]) == 1
    report = after.fetch_order("rest-1")  # what the restart resolution asks instead
    assert report is not None and report.status is OrderStatus.open
    after.cancel("rest-1")
    assert [type(e).__name__ for e in after.poll()] == ["OrderCancelled"]


def test_a_reply_without_its_fills_has_them_fetched(running: Running) -> None:
    """Binance's RESULT reply (and many exchanges' replies) says an order filled but not in which trades."""
    venue = make_venue(running, 10_000.0)
    venue.exchange.options["newOrderRespType"] = {"market": "RESULT", "limit": "RESULT"}
    pin(running, 100.0)
    venue.submit(OrderRequest("result-1", "AAA", OrderSide.buy, value=1000.0))
    _accepted, filled = venue.poll()
    assert isinstance(filled, OrderFilled) and filled.complete and filled.fill.quantity == 10
    assert venue.order_fills("result-1") == [filled.fill]
    assert venue.poll() == []


def test_closing_dust_below_one_lot_is_a_rejection_not_an_error(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    running.control("POST", "balances", {"AAA": "0.5"})  # the lot step is 1
    venue.submit(OrderRequest("dust-1", "AAA", OrderSide.sell, close_all=True))
    (event,) = venue.poll()
    assert isinstance(event, OrderRejected) and event.reason is RejectReason.nothing_to_sell
    assert "0.5 AAA held" in event.text and running.control("GET", "orders")[1] == []
    venue.submit(OrderRequest("tiny-1", "AAA", OrderSide.buy, quantity=0.4))  # ccxt refuses before sending
    (event,) = venue.poll()
    assert isinstance(event, OrderRejected) and event.reason is RejectReason.rounds_to_zero


def test_the_connection_snapshot_shows_numbers_and_names_only(running: Running) -> None:
    venue = make_venue(running, 1000.0)
    venue.connect()
    fault(running, kind="clock_skew", ms=12_000)
    assert 10_000 < venue.connection.measure_clock() < 14_000
    snapshot = venue.connection.snapshot()
    assert snapshot["exchange"] == "binance" and snapshot["url"] == running.url
    assert snapshot["clock_offset_ms"] == venue.clock_offset_ms and snapshot["requests"] >= 3
    assert snapshot["held_back_seconds"] == 0
    assert API_KEY not in repr(snapshot) and API_SECRET not in repr(snapshot)


def test_a_ban_lasts_until_the_time_binance_names_when_that_is_later_than_retry_after(running: Running) -> None:
    import ccxt

    venue = make_venue(running, 1000.0)
    venue.connect()
    connection = venue.connection
    connection.exchange.last_response_headers = {"Retry-After": "1"}
    started = time.monotonic()  # what passes from here on is taken off the 30 s (a busy machine may stall)
    until = connection.now_ms() + 30_000
    ban = ccxt.DDoSProtection(f'binance 418 I\'m a teapot {{"code":-1003,"msg":"Way too much request weight used; '
                              f'IP banned until {until}. Please use WebSocket Streams for live updates."}}')
    translated = connection._translate(ban, submitting=False)
    waited = time.monotonic() - started
    assert isinstance(translated, RateLimitedError) and 28 - waited < translated.retry_after <= 30
    assert 28 - waited < connection.gate.seconds_left <= 30


def test_cancelling_an_order_whose_submit_timed_out_finds_it_by_client_id(running: Running) -> None:
    venue = make_venue(running, 10_000.0, timeout_seconds=2)
    pin(running, 100.0)
    fault(running, kind="timeout", hang_seconds=8, count=1)
    with pytest.raises(TemporaryError):
        venue.submit(OrderRequest("lim-1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=5, limit_price=50.0))
    venue.cancel("lim-1")  # the venue never heard its id back: the exchange is asked by client order id
    (event,) = venue.poll()
    assert type(event).__name__ == "OrderCancelled"
    [order] = running.control("GET", "orders")[1]
    assert (order["clientOrderId"], order["status"]) == ("lim-1", "CANCELED")
    assert venue.balances()["USD"] == type(venue.balances()["USD"])("USD", 10_000.0, 0.0)


def test_cancelling_an_order_that_filled_first_reports_the_fill(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    pin(running, 100.0)
    venue.submit(OrderRequest("lim-2", "AAA", OrderSide.buy, type=OrderType.limit, quantity=5, limit_price=90.0))
    assert [type(e).__name__ for e in venue.poll()] == ["OrderAccepted"]
    pin(running, 80.0)  # the market reaches the limit: the exchange fills it, unasked
    wait_for(lambda: running.control("GET", "trades")[1], timeout=60)
    venue.cancel("lim-2")  # too late: -2011, and the answer is what happened instead
    (filled,) = venue.poll()
    assert isinstance(filled, OrderFilled) and filled.complete and filled.fill.price == 90.0



def test_memory_stays_bounded_over_many_orders_and_open_ones_are_never_forgotten(running: Running) -> None:
    venue = make_venue(running, 10_000.0)
    venue.max_kept = 3
    pin(running, 100.0)
    venue.submit(OrderRequest("keep-open", "AAA", OrderSide.buy, type=OrderType.limit, quantity=1, limit_price=50.0))
    for number in range(6):
        venue.submit(OrderRequest(f"many-{number}", "AAA", OrderSide.buy, quantity=1))
        venue.submit(OrderRequest(f"refused-{number}", "NOPE", OrderSide.buy, quantity=1))
    venue.poll()
    assert len(venue._orders) <= 3 and len(venue._refused) <= 3
    assert "keep-open" in venue._orders and "many-5" in venue._orders  # open, and the newest ended
    report = venue.fetch_order("many-0")  # forgotten here, still known to the exchange
    assert report is not None and report.status is OrderStatus.filled


def _bytes(value: Any) -> int:
    """Bytes of ``value`` and of what it holds (its slots, ``__dict__``, containers' items); enum members and
    other shared singletons counted as nothing."""
    if isinstance(value, (OrderSide, OrderStatus)):
        return 0
    size = sys.getsizeof(value)
    if isinstance(value, (set, tuple, list)):
        return size + sum(_bytes(item) for item in value)
    if hasattr(value, "__dict__"):
        size += _bytes_dict(vars(value))
    for name in getattr(type(value), "__slots__", ()):
        size += _bytes(getattr(value, name))
    return size


def _bytes_dict(values: dict[str, Any]) -> int:
    return sys.getsizeof(values) + sum(_bytes(item) for item in values.values())


def test_an_ended_order_kept_costs_a_few_hundred_bytes_and_its_trades_still_count_once(running: Running) -> None:
    """Counted: up to ``max_kept`` (256) ended orders stay followed, so each record is small (slots, trade ids as a
    tuple once ended): under 400 B for an order of one trade (574 B with a ``__dict__`` and a set; the strings
    its own). An open order keeps a set; its trades read again after it ended are not reported twice."""
    venue = make_venue(running, 10_000.0)
    pin(running, 100.0)
    venue.submit(OrderRequest("open-one", "AAA", OrderSide.buy, type=OrderType.limit, quantity=1, limit_price=50.0))
    for number in range(4):
        venue.submit(OrderRequest(f"ended-{number}", "AAA", OrderSide.buy, quantity=1))
    events = venue.poll()
    assert sum(isinstance(event, OrderFilled) for event in events) == 4
    for number in range(4):
        tracked = venue._orders[f"ended-{number}"]
        assert tracked.status is OrderStatus.filled and isinstance(tracked.trade_ids, tuple)
        assert len(tracked.trade_ids) == 1 and not hasattr(tracked, "__dict__")
        assert _bytes(tracked) < 400, _bytes(tracked)
    assert isinstance(venue._orders["open-one"].trade_ids, set)
    ended = venue._orders["ended-0"]
    report = venue.fetch_order("ended-0")  # asked about again: its reply's trades are known ones
    assert report is not None and report.status is OrderStatus.filled
    order = venue._call(venue.exchange.fetch_order, ended.venue_order_id, ended.market)
    order["trades"] = venue._call(venue.exchange.fetch_order_trades, ended.venue_order_id, ended.market)
    venue._take(order, announce=False)
    assert not [event for event in venue.poll() if isinstance(event, OrderFilled)]
    assert isinstance(venue._orders["ended-0"].trade_ids, tuple) and len(venue._orders["ended-0"].trade_ids) == 1



def lagging_venue(running: Running) -> tuple[CcxtVenue, int]:
    """A venue whose replies do not carry their fills (Binance's RESULT reply: the trades are read from the trade
    list), and a ``trades_lag`` fault hiding every trade from now on; the fault's id, to end it."""
    venue = make_venue(running, 10_000.0)
    venue.exchange.options["newOrderRespType"] = {"market": "RESULT", "limit": "RESULT"}
    pin(running, 100.0)
    status, lag = running.control("POST", "faults", {"kind": "trades_lag"})
    assert status == 200
    return venue, int(lag["id"])


def test_a_market_order_filled_while_its_trades_lag_ends_once_they_are_read_not_before(running: Running) -> None:
    """The order reads filled while the trade list does not list its trade yet: the venue queues no fill and no
    end, goes on following the order (asking again each poll, the report saying partially filled), and once the
    trade is listed queues it once, as the complete fill. It used to take the order as ended with no fill. The first
    answer that it ended short is said at once (``OrderEndedShort``: its position's exits wait), once."""
    venue, lag = lagging_venue(running)
    venue.submit(OrderRequest("lag-m1", "AAA", OrderSide.buy, quantity=10))
    accepted, short = venue.poll()
    assert isinstance(accepted, OrderAccepted)
    assert isinstance(short, OrderEndedShort) and (short.client_order_id, short.filled, short.listed) == (
        "lag-m1", 10.0, 0.0)
    for _ in range(3):
        assert venue.poll() == []
    report = venue.fetch_order("lag-m1")
    assert report is not None and report.status is OrderStatus.partially_filled and report.filled_quantity == 10
    venue.max_kept = 0  # an order still waiting for its trades is never forgotten
    assert venue.poll() == [] and "lag-m1" in venue._orders
    asked = [r.get("fault") for r in running.requests() if r["path"] == "/api/v3/myTrades"]
    assert asked.count("trades_lag") >= 5  # the submit's, each poll's and the lookup's: asked, never assumed
    assert running.control("DELETE", f"faults/{lag}")[0] == 200
    (filled,) = venue.poll()
    assert isinstance(filled, OrderFilled) and filled.complete and filled.fill.quantity == 10
    assert venue.poll() == []
    _, trades = running.control("GET", "trades")
    assert [str(t["id"]) for t in trades] == [filled.fill.venue_trade_id]
    report = venue.fetch_order("lag-m1")
    assert report is not None and report.status is OrderStatus.filled


def test_a_limit_order_cancelled_after_a_part_filled_while_its_trades_lag_ends_once_they_are_read(
        running: Running) -> None:
    """Cancelled after half filled, with the half's trade not yet listed: no end queued (and no fill) until the
    trade is; then the half, not complete, and the cancel, each once."""
    venue, lag = lagging_venue(running)
    fault(running, kind="partial_fill", parts=2, interval=3600, count=1)
    venue.submit(OrderRequest("lag-l1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=10,
                              limit_price=101.0))
    assert [type(e) for e in venue.poll()] == [OrderAccepted]
    venue.cancel("lag-l1")
    (short,) = venue.poll()  # the cancel's reply: cancelled with half filled, no trade listed — said once
    assert isinstance(short, OrderEndedShort) and (short.filled, short.listed) == (5.0, 0.0)
    venue.cancel("lag-l1")  # ended at the exchange: nothing is sent
    assert [r for r in running.requests() if r["method"] == "DELETE"][1:] == []
    for _ in range(3):
        assert venue.poll() == []
    report = venue.fetch_order("lag-l1")
    assert report is not None and report.status is OrderStatus.partially_filled and report.filled_quantity == 5
    assert running.control("GET", "orders")[1][0]["status"] == "CANCELED"
    assert running.control("DELETE", f"faults/{lag}")[0] == 200
    part, cancelled = venue.poll()
    assert isinstance(part, OrderFilled) and not part.complete and part.fill.quantity == 5
    assert type(cancelled).__name__ == "OrderCancelled"
    assert venue.poll() == []
    _, trades = running.control("GET", "trades")
    assert [str(t["id"]) for t in trades] == [part.fill.venue_trade_id]
    report = venue.fetch_order("lag-l1")
    assert report is not None and report.status is OrderStatus.cancelled and report.filled_quantity == 5


def test_a_fill_landing_between_the_order_read_and_the_trades_read_still_ends_the_order(running: Running) -> None:
    """The trade list *ahead* of the status: the poll reads the order with two of its three parts filled, then its
    trades with the third already in (all queued, none complete, as the order still read open); the next poll reads
    it filled with no new trade. Its last trade is queued again, complete — once — so the order is ended."""
    venue = make_venue(running, 10_000.0)
    venue.exchange.options["newOrderRespType"] = {"market": "RESULT", "limit": "RESULT"}
    pin(running, 100.0)
    fault(running, kind="partial_fill", parts=3, interval=1.0, count=1)
    venue.submit(OrderRequest("ahead-1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=9, limit_price=101.0))
    events = venue.poll()
    wait_for(lambda: len(running.control("GET", "trades")[1]) == 2, timeout=30)  # two of its three parts landed
    real = venue.exchange.fetch_order
    calls = {"n": 0}

    def order_then_a_fill_lands(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # the third (last) part lands after the order was read, before its trades are
            wait_for(lambda: len(running.control("GET", "trades")[1]) == 3, timeout=30)
        return answer

    venue.exchange.fetch_order = order_then_a_fill_lands
    for _ in range(3):
        events += venue.poll()
    fills = [e for e in events if isinstance(e, OrderFilled)]
    trades = {str(t["id"]) for t in running.control("GET", "trades")[1]}
    assert {f.fill.venue_trade_id for f in fills} == trades and len(trades) == 3
    assert [f.complete for f in fills].count(True) == 1 and fills[-1].complete  # the last again, complete, once
    assert sum(f.fill.quantity for f in fills if not f.complete) == 9  # each trade's quantity queued once before
    report = venue.fetch_order("ahead-1")
    assert report is not None and report.status is OrderStatus.filled


def test_an_order_of_more_fills_than_one_page_is_read_page_by_page(running: Running) -> None:
    """Binance lists at most 1,000 trades a request and, without ``fromId``, the most recent: an order of 1,200 fills
    read in one request had its first 200 never counted (and, since the trades must add up, was followed for ever)."""
    venue = make_venue(running, 200_000.0)
    venue.exchange.options["newOrderRespType"] = {"market": "RESULT", "limit": "RESULT"}
    pin(running, 100.0)
    fault(running, kind="partial_fill", parts=1200, interval=0.0, count=1)  # more fills than a page (1,000)
    venue.submit(OrderRequest("pages-1", "AAA", OrderSide.buy, type=OrderType.limit, quantity=1200, limit_price=101.0))
    wait_for(lambda: len(running.control("GET", "trades")[1]) == 1200, timeout=60)
    events: list[Any] = []
    for _ in range(2):
        events += venue.poll()
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert len(fills) == len({f.fill.venue_trade_id for f in fills}) == 1200
    assert sum(f.fill.quantity for f in fills) == 1200 and [f.complete for f in fills].count(True) == 1
    report = venue.fetch_order("pages-1")
    assert report is not None and report.status is OrderStatus.filled
