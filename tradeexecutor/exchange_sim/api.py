"""Binance's spot REST endpoints: parameters checked as Binance checks them, answers in Binance's JSON shapes.

Each handler takes the simulator and the parsed :class:`ApiRequest` and returns the JSON value
to send, or raises a :class:`~tradeexecutor.exchange_sim.errors.BinanceError`. Handlers run with
the simulator's lock held (the app takes it), after the price paths and resting orders were
brought up to the request's time. :data:`ROUTES` lists every endpoint with its request weight
and whether it is signed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.config import CLIENT_ID_PATTERN, MarketSpec
from tradeexecutor.exchange_sim.filters import describe
from tradeexecutor.exchange_sim.klines import DEFAULT_LIMIT, klines, quote_volume
from tradeexecutor.exchange_sim.matching import (
    BUY,
    LIMIT,
    LIMIT_TYPES,
    MARKET,
    MARKET_ON_TRIGGER,
    ORDER_TYPES,
    SELL,
    STOP_TYPES,
    TIMES_IN_FORCE,
    NewOrder,
    PartialPlan,
)
from tradeexecutor.exchange_sim.numbers import fmt, parse_amount, parse_int, round_down, to_decimal
from tradeexecutor.exchange_sim.orders import (
    Order,
    Trade,
    cancel_json,
    new_order_json,
    order_json,
    trade_json,
)
from tradeexecutor.exchange_sim.simulator import ExchangeSimulator

_DAY_MS = 86_400_000
_MAX_LIMIT = 1000


@dataclass
class ApiRequest:
    """One parsed API request."""

    method: str
    path: str
    #: Query and body parameters together.
    params: dict[str, str]
    #: The raw query string and body, for the signature.
    query: str = ""
    body: str = ""
    #: The X-MBX-APIKEY header.
    api_key: str | None = None
    #: The client's address (rate limits are per IP).
    ip: str = ""
    #: The exchange's time for this request (ms), set by the app.
    now_ms: int = 0
    #: Notes for the request log (symbol, client order id).
    log: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ExchangeSimulator, ApiRequest], Any]


@dataclass(frozen=True)
class Route:
    """One endpoint."""

    handler: Handler
    #: Request weight with a symbol, and without one (endpoints that cover every market cost more).
    weight: int
    weight_all: int = 0
    #: Needs an API key, a timestamp and a signature.
    signed: bool = False

    def weight_of(self, params: dict[str, str]) -> int:
        """The weight this request costs."""
        if self.weight_all and "symbol" not in params:
            return self.weight_all
        return self.weight


# -- parameters ------------------------------------------------------------------------------------


def _market(sim: ExchangeSimulator, request: ApiRequest, *, required: bool = True) -> MarketSpec | None:
    symbol = request.params.get("symbol")
    if not symbol:
        if required:
            raise errors.mandatory("symbol")
        return None
    request.log["symbol"] = symbol
    return sim.engine.market(symbol)


def _markets(sim: ExchangeSimulator, request: ApiRequest) -> tuple[list[MarketSpec], bool]:
    """The markets a request names by ``symbol`` or ``symbols`` (all when neither), and whether it named one."""
    single = _market(sim, request, required=False)
    if single is not None:
        return [single], True
    text = request.params.get("symbols")
    if not text:
        return list(sim.config.markets), False
    try:
        names = json.loads(text)
    except ValueError:
        raise errors.mandatory("symbols") from None
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise errors.mandatory("symbols")
    return [sim.engine.market(name) for name in names], False


def _choice(params: dict[str, str], name: str, allowed: tuple[str, ...], error: errors.BinanceError) -> str:
    value = params.get(name)
    if not value:
        raise errors.mandatory(name)
    if value not in allowed:
        raise error
    return value


def _limit(params: dict[str, str]) -> int:
    limit = parse_int(params, "limit", default=DEFAULT_LIMIT)
    assert limit is not None
    return max(1, min(limit, _MAX_LIMIT))


def _order_ref(request: ApiRequest) -> tuple[int | None, str | None]:
    order_id = parse_int(request.params, "orderId")
    client_id = request.params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise errors.BinanceError(
            400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    if client_id is not None:
        request.log["clientOrderId"] = client_id
    return order_id, client_id


def _window(items: list[Any], params: dict[str, str], *, id_name: str, id_of: Callable[[Any], int],
            time_of: Callable[[Any], int]) -> list[Any]:
    """Binance's paging: from an id (or a start time) oldest first, otherwise the most recent ``limit``."""
    limit = _limit(params)
    from_id = parse_int(params, id_name)
    start, end = parse_int(params, "startTime"), parse_int(params, "endTime")
    if start is not None and end is not None and end < start:
        raise errors.invalid_parameter("endTime")
    if from_id is not None:
        items = [item for item in items if id_of(item) >= from_id]
        return items[:limit]
    items = [item for item in items if (start is None or time_of(item) >= start) and (end is None or time_of(item) <= end)]
    return items[:limit] if start is not None else items[-limit:]


# -- general and market data ------------------------------------------------------------------------


def ping(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/ping."""
    return {}


def server_time(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/time."""
    return {"serverTime": request.now_ms}


def system_status(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /sapi/v1/system/status: 0 normal, 1 maintenance (ccxt's fetch_status)."""
    if sim.faults.maintenance(sim.clock_ms()):
        return {"status": 1, "msg": "system_maintenance"}
    return {"status": 0, "msg": "normal"}


def exchange_info(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/exchangeInfo."""
    markets, _ = _markets(sim, request)
    return {
        "timezone": "UTC",
        "serverTime": request.now_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": sim.config.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_info(market) for market in markets],
    }


def _symbol_info(market: MarketSpec) -> dict[str, Any]:
    return {
        "symbol": market.symbol,
        "status": "TRADING",
        "baseAsset": market.base,
        "baseAssetPrecision": 8,
        "quoteAsset": market.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": describe(market),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
    }


def depth(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/depth: a synthetic book of evenly spaced levels around the bid and ask."""
    market = _market(sim, request)
    assert market is not None
    levels = min(_limit({"limit": request.params.get("limit", "100")}), 100)
    bid, ask = sim.engine.bid_ask(market.symbol, request.now_ms)
    size = max(round_down(Decimal(10_000) / ask, market.step_size), market.step_size)
    bids = [[fmt(bid - i * market.tick_size), fmt(size)] for i in range(levels) if bid - i * market.tick_size > 0]
    asks = [[fmt(ask + i * market.tick_size), fmt(size)] for i in range(levels)]
    return {"lastUpdateId": request.now_ms, "bids": bids, "asks": asks}


def _ticker(sim: ExchangeSimulator, market: MarketSpec, now_ms: int) -> dict[str, Any]:
    series = sim.engine.series[market.symbol]
    window = series.window(now_ms - _DAY_MS, now_ms + 1)
    tick = market.tick_size
    last, opened = to_decimal(window.close, tick), to_decimal(window.open, tick)
    bid, ask = sim.engine.bid_ask(market.symbol, now_ms)
    volume = Decimal(window.volume)
    change = last - opened
    return {
        "symbol": market.symbol,
        "priceChange": fmt(change),
        "priceChangePercent": f"{(change / opened * 100) if opened else Decimal(0):.3f}",
        "weightedAvgPrice": fmt(to_decimal((window.high + window.low + window.close) / 3.0, tick)),
        "prevClosePrice": fmt(to_decimal(series.price_before(now_ms - _DAY_MS), tick)),
        "lastPrice": fmt(last),
        "lastQty": fmt(market.step_size),
        "bidPrice": fmt(bid),
        "bidQty": fmt(market.step_size * 1000),
        "askPrice": fmt(ask),
        "askQty": fmt(market.step_size * 1000),
        "openPrice": fmt(opened),
        "highPrice": fmt(to_decimal(window.high, tick)),
        "lowPrice": fmt(to_decimal(window.low, tick)),
        "volume": fmt(volume),
        "quoteVolume": fmt(volume * last),
        "openTime": now_ms - _DAY_MS,
        "closeTime": now_ms,
        "firstId": -1,
        "lastId": -1,
        "count": window.active_bars,
    }


def ticker_24hr(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/ticker/24hr (one object for ``symbol``, a list otherwise)."""
    markets, single = _markets(sim, request)
    tickers = [_ticker(sim, market, request.now_ms) for market in markets]
    return tickers[0] if single else tickers


def ticker_price(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/ticker/price."""
    markets, single = _markets(sim, request)
    prices = [{"symbol": m.symbol, "price": fmt(sim.engine.last_price(m.symbol, request.now_ms))} for m in markets]
    return prices[0] if single else prices


def book_ticker(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/ticker/bookTicker."""
    markets, single = _markets(sim, request)
    books = []
    for market in markets:
        bid, ask = sim.engine.bid_ask(market.symbol, request.now_ms)
        size = fmt(market.step_size * 1000)
        books.append({"symbol": market.symbol, "bidPrice": fmt(bid), "bidQty": size, "askPrice": fmt(ask),
                      "askQty": size})
    return books[0] if single else books


def kline_rows(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/klines (also /api/v3/uiKlines)."""
    market = _market(sim, request)
    assert market is not None
    interval = request.params.get("interval")
    if not interval:
        raise errors.mandatory("interval")
    rows = klines(sim.engine.series[market.symbol], interval, now_ms=request.now_ms,
                  start_ms=parse_int(request.params, "startTime"), end_ms=parse_int(request.params, "endTime"),
                  limit=_limit(request.params))
    tick = market.tick_size
    result = []
    for row in rows:
        volume, quote = Decimal(row.volume), Decimal(quote_volume(row))
        result.append([
            row.open_time, fmt(to_decimal(row.open, tick)), fmt(to_decimal(row.high, tick)),
            fmt(to_decimal(row.low, tick)), fmt(to_decimal(row.close, tick)), fmt(volume), row.close_time,
            fmt(quote), row.trades, fmt(volume / 2), fmt(quote / 2), "0",
        ])
    return result


# -- account and orders -----------------------------------------------------------------------------


def account(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/account."""
    rate = sim.config.fee_rate
    omit_zero = request.params.get("omitZeroBalances", "false").lower() == "true"
    balances = [
        {"asset": asset, "free": fmt(balance.free), "locked": fmt(balance.locked)}
        for asset, balance in sim.accounts.snapshot().items()
        if not (omit_zero and balance.free == 0 and balance.locked == 0)
    ]
    bps = int(rate * 10_000)
    return {
        "makerCommission": bps, "takerCommission": bps, "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": fmt(rate), "taker": fmt(rate), "buyer": fmt(Decimal(0)),
                            "seller": fmt(Decimal(0))},
        "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
        "requireSelfTradePrevention": False, "preventSor": False,
        "updateTime": request.now_ms, "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"],
        "uid": 1,
    }


def _client_id(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        return uuid.uuid4().hex[:22]
    if not CLIENT_ID_PATTERN.match(value):
        raise errors.illegal_client_id(name)
    return value


def new_order(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """POST /api/v3/order."""
    params = request.params
    market = _market(sim, request)
    assert market is not None
    side = _choice(params, "side", (BUY, SELL), errors.invalid_side())
    order_type = _choice(params, "type", ORDER_TYPES, errors.invalid_order_type())
    tif = params.get("timeInForce") or None
    if order_type in LIMIT_TYPES:
        if tif is None:
            raise errors.mandatory("timeInForce")
        if tif not in TIMES_IN_FORCE:
            raise errors.invalid_time_in_force()
    elif tif is not None:
        raise errors.not_required("timeInForce")
    quantity = parse_amount(params, "quantity", required=order_type != MARKET)
    quote_qty = parse_amount(params, "quoteOrderQty", required=False)
    stop_price = parse_amount(params, "stopPrice", required=order_type in STOP_TYPES)
    if stop_price is not None and order_type not in STOP_TYPES:
        raise errors.not_required("stopPrice")
    if order_type in MARKET_ON_TRIGGER:  # STOP_LOSS, TAKE_PROFIT: a quantity and the stop, no price
        if params.get("price"):
            raise errors.not_required("price")
        if quote_qty is not None:
            raise errors.not_required("quoteOrderQty")
        price = None
    elif order_type == MARKET:
        if quantity is None and quote_qty is None:
            raise errors.mandatory("quantity")
        if quantity is not None and quote_qty is not None:
            raise errors.not_required("quoteOrderQty")
        if params.get("price"):
            raise errors.not_required("price")
        price = None
    else:
        if quote_qty is not None:
            raise errors.not_required("quoteOrderQty")
        price = parse_amount(params, "price")
    client_id = _client_id(params, "newClientOrderId")
    request.log["clientOrderId"] = client_id
    response_type = params.get("newOrderRespType") or ("FULL" if order_type in (MARKET, LIMIT) else "ACK")
    if response_type not in ("ACK", "RESULT", "FULL"):
        raise errors.invalid_parameter("newOrderRespType")
    order_request = NewOrder(symbol=market.symbol, side=side, type=order_type, client_order_id=client_id,
                             time_in_force=tif, quantity=quantity, quote_order_qty=quote_qty, price=price,
                             stop_price=stop_price)
    clock = sim.clock_ms()
    found = sim.faults.find(("reject",), request.method, request.path, clock, market.symbol)
    reject = None
    if found:
        reject = errors.BinanceError(400, int(found[0].params["code"]), str(found[0].params["msg"]))
    partial_fault = sim.faults.find(("partial_fill",), request.method, request.path, clock, market.symbol)
    partial = None
    if partial_fault:
        params_ = partial_fault[0].params
        partial = PartialPlan(parts=int(params_["parts"]), interval_ms=int(float(params_["interval"]) * 1000))
    try:
        order, trades = sim.engine.place(order_request, request.now_ms, partial=partial, reject=reject)
    except errors.BinanceError as exc:
        if reject is not None and exc is reject:
            sim.faults.use(found[0], clock)
            request.log["fault"] = "reject"
        raise
    if partial_fault:
        sim.faults.use(partial_fault[0], clock)
    return new_order_json(order, response_type, _listed(sim, market.symbol, trades, clock))


def _listed(sim: ExchangeSimulator, symbol: str, trades: list[Trade], clock: int) -> list[Trade]:
    """A new order's trades less those a live ``trades_lag`` fault hides: its FULL reply lists only what the trade
    list does (as an exchange whose reply carries no fills), so an executor's one way to learn them is that list.
    Not a use of the fault (its count is of ``myTrades`` answers)."""
    for fault in sim.faults.active(clock):
        if fault.kind == "trades_lag" and fault.symbol in (None, symbol) and fault.from_trade_id is not None:
            trades = [trade for trade in trades if trade.trade_id < fault.from_trade_id]
    return trades


def get_order(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/order."""
    market = _market(sim, request)
    assert market is not None
    order_id, client_id = _order_ref(request)
    order = sim.engine.find(market.symbol, order_id, client_id)
    clock = sim.clock_ms()
    for fault in sim.faults.find(("lag",), request.method, request.path, clock, market.symbol):
        if request.now_ms - order.time_ms < float(fault.params["lag_seconds"]) * 1000:
            sim.faults.use(fault, clock)  # accepted, but its query side does not show it yet (Binance's lag)
            request.log["fault"] = "lag"
            raise errors.no_such_order()
    return order_json(order)


def cancel_order(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """DELETE /api/v3/order."""
    market = _market(sim, request)
    assert market is not None
    order_id, client_id = _order_ref(request)
    cancel_id = _client_id(request.params, "newClientOrderId")
    order = sim.engine.cancel(market.symbol, order_id, client_id, request.now_ms)
    return cancel_json(order, cancel_id, request.now_ms)


def open_orders(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/openOrders."""
    market = _market(sim, request, required=False)
    return [order_json(order) for order in sim.engine.open_orders(market.symbol if market else None)]


def cancel_open_orders(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """DELETE /api/v3/openOrders: cancel every open order of a symbol."""
    market = _market(sim, request)
    assert market is not None
    orders = sim.engine.open_orders(market.symbol)
    if not orders:
        raise errors.cancel_rejected()
    return [cancel_json(sim.engine.cancel(market.symbol, order.order_id, None, request.now_ms),
                        sim.engine.cancel_client_id(), request.now_ms) for order in orders]


def all_orders(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/allOrders."""
    market = _market(sim, request)
    assert market is not None
    orders: list[Order] = _window(sim.engine.all_orders(market.symbol), request.params, id_name="orderId",
                                  id_of=lambda o: o.order_id, time_of=lambda o: o.time_ms)
    return [order_json(order) for order in orders]


def my_trades(sim: ExchangeSimulator, request: ApiRequest) -> Any:
    """GET /api/v3/myTrades (less the trades a ``trades_lag`` fault hides)."""
    market = _market(sim, request)
    assert market is not None
    trades = sim.engine.trade_list(market.symbol)
    order_id = parse_int(request.params, "orderId")
    if order_id is not None:
        trades = [trade for trade in trades if trade.order_id == order_id]
    clock = sim.clock_ms()
    for fault in sim.faults.find(("trades_lag",), request.method, request.path, clock, market.symbol):
        assert fault.from_trade_id is not None, "a trades_lag fault knows where it starts"
        shown = [trade for trade in trades if trade.trade_id < fault.from_trade_id]
        if len(shown) < len(trades):  # the trade list lags the orders: a trade made since is not listed yet
            trades = shown
            sim.faults.use(fault, clock)
            request.log["fault"] = "trades_lag"
    chosen = _window(trades, request.params, id_name="fromId", id_of=lambda t: t.trade_id,
                     time_of=lambda t: t.time_ms)
    return [trade_json(trade) for trade in chosen]


#: Every endpoint served: (method, path) → route. Weights are Binance's.
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/v3/ping"): Route(ping, 1),
    ("GET", "/api/v3/time"): Route(server_time, 1),
    ("GET", "/api/v3/exchangeInfo"): Route(exchange_info, 20),
    ("GET", "/api/v3/depth"): Route(depth, 5),
    ("GET", "/api/v3/klines"): Route(kline_rows, 2),
    ("GET", "/api/v3/uiKlines"): Route(kline_rows, 2),
    ("GET", "/api/v3/ticker/24hr"): Route(ticker_24hr, 2, weight_all=80),
    ("GET", "/api/v3/ticker/price"): Route(ticker_price, 2, weight_all=4),
    ("GET", "/api/v3/ticker/bookTicker"): Route(book_ticker, 2, weight_all=4),
    ("GET", "/api/v3/account"): Route(account, 20, signed=True),
    ("POST", "/api/v3/order"): Route(new_order, 1, signed=True),
    ("GET", "/api/v3/order"): Route(get_order, 4, signed=True),
    ("DELETE", "/api/v3/order"): Route(cancel_order, 1, signed=True),
    ("GET", "/api/v3/openOrders"): Route(open_orders, 6, weight_all=80, signed=True),
    ("DELETE", "/api/v3/openOrders"): Route(cancel_open_orders, 1, signed=True),
    ("GET", "/api/v3/allOrders"): Route(all_orders, 20, signed=True),
    ("GET", "/api/v3/myTrades"): Route(my_trades, 20, signed=True),
    ("GET", "/sapi/v1/system/status"): Route(system_status, 1),
}
