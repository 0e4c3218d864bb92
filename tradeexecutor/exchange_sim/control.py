"""The control API on ``/_sim/``: inject faults, move the market, set balances, and read the exchange's own record.

JSON in, JSON out; errors are ``{"error": "..."}`` with 400, 403, 404 or 405. It answers only
clients on the loopback address, whatever address the simulator listens on, so a simulator
reachable from elsewhere cannot be steered from there.

=======  =====================  ==========================================================
GET      /_sim/status           clock, skew, prices, counts, live faults
GET      /_sim/orders           every order kept, Binance's order shape (``?symbol=``)
GET      /_sim/trades           every trade kept, myTrades shape (``?symbol=``)
GET      /_sim/balances         ``{"ASSET": {"free": "...", "locked": "..."}}``
POST     /_sim/balances         ``{"ASSET": "amount"}``: set free balances
GET      /_sim/faults           live faults
POST     /_sim/faults           add one (see :mod:`faults` for the fields); returns it with its id
DELETE   /_sim/faults           clear every fault; ``/_sim/faults/<id>`` one
POST     /_sim/price            ``{"symbol", "price", "seconds"}``: hold the price from the next bar
POST     /_sim/reset            forget orders, trades, faults, bans; starting balances again
GET      /_sim/requests         the latest API requests (``?limit=``, default 100)
=======  =====================  ==========================================================
"""

from __future__ import annotations

import ipaddress
import json
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.faults import FaultError
from tradeexecutor.exchange_sim.numbers import fmt
from tradeexecutor.exchange_sim.orders import order_json, trade_json
from tradeexecutor.exchange_sim.simulator import ExchangeSimulator

#: Path prefix of the control API.
PREFIX = "/_sim/"

_MAX_BODY = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _body(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > _MAX_BODY:
        raise _Refused(400, "request body too large")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise _Refused(400, "request body is not JSON") from None


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(str(environ.get("QUERY_STRING") or "")).items()}


def handle(sim: ExchangeSimulator, environ: dict[str, Any]) -> tuple[int, Any]:
    """(status, JSON payload) for one control request."""
    if not _is_loopback(str(environ.get("REMOTE_ADDR", ""))):
        return 403, {"error": "the control API answers only clients on the loopback address"}
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    path = str(environ.get("PATH_INFO", ""))[len(PREFIX):].strip("/")
    try:
        return 200, _dispatch(sim, method, path, environ)
    except _Refused as exc:
        return exc.status, {"error": str(exc)}
    except (FaultError, errors.BinanceError) as exc:
        return 400, {"error": str(exc.msg if isinstance(exc, errors.BinanceError) else exc)}


def _dispatch(sim: ExchangeSimulator, method: str, path: str, environ: dict[str, Any]) -> Any:
    name, _, rest = path.partition("/")
    query = _query(environ)
    with sim.lock:
        clock = sim.clock_ms()
        now = clock + sim.faults.skew_ms(clock)
        sim.engine.advance(now)
        if (method, name) == ("GET", "status"):
            return _status(sim, clock, now)
        if (method, name) == ("GET", "orders"):
            return [order_json(order) for order in sim.engine.all_orders(query.get("symbol"))]
        if (method, name) == ("GET", "trades"):
            return [trade_json(trade) for trade in sim.engine.trade_list(query.get("symbol"))]
        if name == "balances" and method in ("GET", "POST"):
            if method == "POST":
                _set_balances(sim, _body(environ))
            return {asset: {"free": fmt(b.free), "locked": fmt(b.locked)}
                    for asset, b in sim.accounts.snapshot().items()}
        if name == "faults":
            return _faults(sim, method, rest, environ, clock)
        if (method, name) == ("POST", "price"):
            return _pin(sim, _body(environ), now)
        if (method, name) == ("POST", "reset"):
            sim.reset()
            return {"reset": True}
        if (method, name) == ("GET", "requests"):
            limit = query.get("limit", "100")
            if not limit.isdigit():
                raise _Refused(400, "limit must be a whole number")
            return list(sim.requests)[-int(limit):] if int(limit) else []
    known = {"status", "orders", "trades", "balances", "faults", "price", "reset", "requests"}
    if name in known:
        raise _Refused(405, f"{method} is not allowed on {PREFIX}{name}")
    raise _Refused(404, f"no control endpoint {PREFIX}{path}")


def _status(sim: ExchangeSimulator, clock: int, now: int) -> dict[str, Any]:
    return {
        "clock_ms": clock,
        "server_time_ms": now,
        "skew_ms": now - clock,
        "maintenance": sim.faults.maintenance(clock),
        "markets": {
            market.symbol: {"pair": market.pair, "price": fmt(sim.engine.last_price(market.symbol, now))}
            for market in sim.config.markets
        },
        "orders": len(sim.engine.orders),
        "open_orders": len(sim.engine.open_orders()),
        "trades": len(sim.engine.trades),
        "faults": [fault.as_json() for fault in sim.faults.active(clock)],
    }


def _faults(sim: ExchangeSimulator, method: str, rest: str, environ: dict[str, Any], clock: int) -> Any:
    if method == "GET" and not rest:
        return [fault.as_json() for fault in sim.faults.active(clock)]
    if method == "POST" and not rest:
        spec = _body(environ)
        if not isinstance(spec, dict):
            raise _Refused(400, "a fault is a JSON object with at least a kind")
        return sim.faults.add(spec, clock, sim.engine.next_trade_id).as_json()
    if method == "DELETE" and not rest:
        sim.faults.clear()
        return {"cleared": True}
    if method == "DELETE" and rest.isdigit():
        if not sim.faults.remove(int(rest)):
            raise _Refused(404, f"no fault {rest}")
        return {"removed": int(rest)}
    raise _Refused(405 if not rest else 404, f"{method} {PREFIX}faults/{rest} is not a control endpoint")


def _amount(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _Refused(400, f"{what} must be a number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise _Refused(400, f"{what} must be zero or more, got {value!r}")
    return amount


def _set_balances(sim: ExchangeSimulator, body: Any) -> None:
    if not isinstance(body, dict) or not body:
        raise _Refused(400, 'set balances with an object such as {"USDT": "1000"}')
    amounts = {str(asset).upper(): _amount(value, f"balance of {asset}") for asset, value in body.items()}
    for asset, amount in amounts.items():
        sim.accounts.set_free(asset, amount)


def _pin(sim: ExchangeSimulator, body: Any, now: int) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Refused(400, 'pin a price with {"symbol": "BTCUSDT", "price": "100.5", "seconds": 60}')
    market = sim.engine.market(str(body.get("symbol", "")))
    price = _amount(body.get("price"), "price")
    seconds = body.get("seconds", 60)
    if price <= 0 or not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= 86400:
        raise _Refused(400, "price must be positive and seconds between 0 and 86400")
    series = sim.engine.series[market.symbol]
    start = series.pin(now, now + int(seconds * 1000), float(price))
    return {"symbol": market.symbol, "price": fmt(price), "from_ms": start, "until_ms": now + int(seconds * 1000)}
