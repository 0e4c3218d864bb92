"""The simulator's WSGI app: Binance's REST API on ``/api/v3`` (and ``/sapi/v1/system/status``), control on ``/_sim``.

A plain WSGI callable rather than Pyramid: Binance's API is a flat table of (method, path) pairs
with its own error shape, signatures must be checked over the raw query string and body, and a
"timeout after accept" fault must be able to drop the connection — none of which Pyramid's
routing, views or renderers help with, and every microsecond of framework is added to the
simulator's response time, the baseline of the executor's order round-trip benchmark.

One API request, in order:

1. faults of its path: latency waits (outside the lock); an error, maintenance, 429 or 418
   fault answers instead of the exchange;
2. the IP's request weight (429, then 418 for an IP that keeps going);
3. the signature, key and timestamp of a signed endpoint;
4. the handler, under the simulator's lock, after the market was brought up to now;
5. a ``timeout`` fault: the request was served (an order *was* placed), but the answer never
   leaves: the connection is dropped, at once or after a hang.

A bug in the simulator answers 500 -1000 and logs the traceback to ``tradeexecutor.exchange_sim``;
nothing of it reaches the client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from waitress.channel import ClientDisconnected

from tradeexecutor.exchange_sim import control, errors
from tradeexecutor.exchange_sim.api import ROUTES, ApiRequest
from tradeexecutor.exchange_sim.auth import check_signed
from tradeexecutor.exchange_sim.faults import BLOCKING, Fault
from tradeexecutor.exchange_sim.simulator import ExchangeSimulator

logger = logging.getLogger("tradeexecutor.exchange_sim")

StartResponse = Callable[..., Any]

#: Binance's system status endpoint (ccxt's fetch_status), which answers during maintenance.
STATUS_PATH = "/sapi/v1/system/status"

#: Largest request body read (Binance's requests are a few hundred bytes).
MAX_BODY = 64 * 1024

_JSON = "application/json;charset=UTF-8"
_HTML_PAGE = "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 413: "Payload Too Large",
            418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


def status_line(status: int) -> str:
    """``"503 Service Unavailable"``."""
    return f"{status} {_REASONS.get(status, 'Error')}"


def make_app(sim: ExchangeSimulator) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application serving ``sim``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/")
        if path.startswith(control.PREFIX):
            status, payload = control.handle(sim, environ)
            return _send(start_response, status, json.dumps(payload).encode(), "application/json", {})
        return _serve_api(sim, environ, start_response, path)

    return app


def _send(start_response: StartResponse, status: int, body: bytes, content_type: str,
          headers: dict[str, str]) -> list[bytes]:
    start_response(status_line(status), [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                         *headers.items()])
    return [body]


def _serve_api(sim: ExchangeSimulator, environ: dict[str, Any], start_response: StartResponse,
               path: str) -> list[bytes]:
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    entry: dict[str, Any] = {"method": method, "path": path}
    reply = _answer(sim, environ, method, path, entry)
    entry["status"] = reply.status
    with sim.lock:
        entry["time"] = sim.clock_ms()
        sim.requests.append(entry)
    if reply.drop is not None:
        if reply.drop.params["mode"] == "hang":
            sim.wait(float(reply.drop.params["hang_seconds"]))
        # waitress closes the connection without a byte of response when the app raises this.
        raise ClientDisconnected(f"timeout fault {reply.drop.fault_id}: {method} {path} served, answer dropped")
    return _send(start_response, reply.status, reply.body, reply.content_type, reply.headers)


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    #: A timeout fault that swallows this reply.
    drop: Fault | None = None


def _html(status: int) -> _Reply:
    return _Reply(status, _HTML_PAGE.format(status=status_line(status)).encode(), "text/html")


def _answer(sim: ExchangeSimulator, environ: dict[str, Any], method: str, path: str,
            entry: dict[str, Any]) -> _Reply:
    """The reply to one API request, with the request log ``entry`` filled in."""
    headers: dict[str, str] = {}
    try:
        route = ROUTES.get((method, path))
        if route is None:
            return _html(404)
        request = _parse(environ, method, path, str(environ.get("REMOTE_ADDR", "")))
        symbol = request.params.get("symbol")
        with sim.lock:
            clock = sim.clock_ms()
            delays = sim.faults.find(("latency",), method, path, clock, symbol)
            for fault in delays:
                sim.faults.use(fault, clock)
        for fault in delays:
            sim.wait(float(fault.params["seconds_delay"]))
        with sim.lock:
            clock = sim.clock_ms()
            # The status endpoint reports maintenance rather than suffering it.
            kinds = [kind for kind in BLOCKING if not (kind == "maintenance" and path == STATUS_PATH)]
            blocking = sim.faults.take(kinds, method, path, clock, symbol)
            if blocking is not None:
                entry["fault"] = blocking.kind
                error = _fault_reply(sim, blocking, clock)
                if error is None:  # an error fault without a Binance code: a bare HTML error page
                    return _html(int(blocking.params["status"]))
                raise error
            used = sim.limiter.charge(request.ip, route.weight_of(request.params), clock)
            headers["X-MBX-USED-WEIGHT-1M"] = str(used)
            request.now_ms = sim.now_ms()
            if route.signed:
                check_signed(api_key=request.api_key, params=request.params, query=request.query,
                             body=request.body, expected_key=sim.config.api_key, secret=sim.config.api_secret,
                             server_ms=request.now_ms)
            sim.engine.advance(request.now_ms)
            try:
                payload = route.handler(sim, request)
            finally:
                entry.update(request.log)
            drop = sim.faults.take(("timeout",), method, path, clock, symbol)
        if drop is not None:
            entry["fault"] = "timeout"
        return _Reply(200, json.dumps(payload, separators=(",", ":")).encode(), headers=headers, drop=drop)
    except errors.BinanceError as exc:
        entry["code"] = exc.code
        return _Reply(exc.status, json.dumps(exc.body(), separators=(",", ":")).encode(),
                      headers={**headers, **exc.headers})
    except Exception:  # a bug in the simulator: log it, send Binance's unknown-error reply only
        logger.exception("exchange simulator failed on %s %s", method, path)
        fallback = errors.unknown_error()
        entry["code"] = fallback.code
        return _Reply(fallback.status, json.dumps(fallback.body()).encode())


def _fault_reply(sim: ExchangeSimulator, fault: Fault, now_ms: int) -> errors.BinanceError | None:
    """The reply a blocking fault sends instead of the exchange (None: a bare HTML error page)."""
    if fault.kind == "maintenance":
        return errors.maintenance()
    if fault.kind == "rate_limit":
        return errors.rate_limited(sim.config.weight_limit, int(fault.params["retry_after"]))
    if fault.kind == "ban":
        until = fault.until_ms if fault.until_ms is not None else now_ms + 60_000
        return errors.banned(until, -(-(until - now_ms) // 1000))
    code, msg = fault.params["code"], fault.params["msg"]
    if code is None:
        return None
    return errors.BinanceError(int(fault.params["status"]), int(code), str(msg))


def _parse(environ: dict[str, Any], method: str, path: str, ip: str) -> ApiRequest:
    """Query and body parameters (Binance takes either), keeping the raw strings for the signature."""
    query = str(environ.get("QUERY_STRING") or "")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise errors.BinanceError(413, -1000, "Request body too large.")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        body = raw.decode("ascii")
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict") + parse_qsl(
            body, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise errors.BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise errors.duplicate_parameter()
        params[name] = value
    return ApiRequest(method=method, path=path, params=params, query=query, body=body,
                      api_key=environ.get("HTTP_X_MBX_APIKEY"), ip=ip)
