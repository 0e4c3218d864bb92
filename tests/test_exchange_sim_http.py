"""The simulator over raw HTTP on a real waitress server: signing, errors, rate limits, faults and the control API.

Requests are signed here with hmac directly (not the simulator's own helper), over the exact
bytes sent, so the check is independent of the code it tests. The clock is wall time plus an
offset the test moves, so ban and fault lifetimes pass without waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from exchange_sim_helpers import API_KEY, API_SECRET, Clock, Running, make_simulator, serve, wait_for
from tradeexecutor.exchange_sim import api, control
from tradeexecutor.exchange_sim.app import make_app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def running(clock: Clock) -> Iterator[Running]:
    with serve(make_simulator(clock, weight_limit=400, ban_after=2, ban_seconds=60)) as running:
        yield running


def signature(payload: str, secret: str = API_SECRET) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def call(running: Running, method: str, path: str, *, query: str = "", body: str = "",
         key: str | None = API_KEY) -> tuple[int, Any, dict[str, str]]:
    """One raw request: (status, decoded body, headers)."""
    parts = urlsplit(running.url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if key is not None:
        headers["X-MBX-APIKEY"] = key
    connection.request(method, path + (f"?{query}" if query else ""), body=body or None, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    try:
        decoded: Any = json.loads(raw)
    except ValueError:
        decoded = raw.decode("latin-1")
    return response.status, decoded, {name.lower(): value for name, value in response.getheaders()}


def signed(params: dict[str, Any], clock: Clock, **extra: Any) -> str:
    """``params`` plus a timestamp, urlencoded, with the signature of exactly that string appended."""
    text = urlencode({**params, "timestamp": int(clock() * 1000) + extra.pop("shift_ms", 0), **extra})
    return f"{text}&signature={signature(text)}"


# -- signing ----------------------------------------------------------------------------------------


def test_a_request_signed_over_its_exact_query_string_is_served(running: Running, clock: Clock) -> None:
    status, body, headers = call(running, "GET", "/api/v3/account", query=signed({"omitZeroBalances": "true"}, clock))
    assert status == 200, body
    assert {b["asset"] for b in body["balances"]} == {"USD", "USDT"}
    assert headers["content-type"].startswith("application/json") and int(headers["x-mbx-used-weight-1m"]) == 20


def test_the_signature_covers_the_query_string_then_the_body(running: Running, clock: Clock) -> None:
    query = urlencode({"symbol": "EURUSD", "side": "BUY", "type": "MARKET"})
    body = urlencode({"quantity": "10", "newClientOrderId": "split-1", "timestamp": int(clock() * 1000)})
    status, reply, _ = call(running, "POST", "/api/v3/order", query=query,
                            body=f"{body}&signature={signature(query + body)}")
    assert status == 200 and reply["clientOrderId"] == "split-1" and reply["status"] == "FILLED", reply


@pytest.mark.parametrize("tamper", ["reorder", "reencode", "append", "other secret"])
def test_any_change_to_the_signed_bytes_is_minus_1022(running: Running, clock: Clock, tamper: str) -> None:
    params = {"symbol": "EURUSD", "orderId": "1", "recvWindow": "5000", "timestamp": str(int(clock() * 1000))}
    text = urlencode(params)
    sent, signed_text = text, text
    if tamper == "reorder":
        sent = urlencode(dict(reversed(list(params.items()))))
    elif tamper == "reencode":  # the same parameters, decoded then encoded differently: Binance signs bytes
        sent = text.replace("symbol=EURUSD", "symbol=%45URUSD")
    elif tamper == "append":
        sent = text + "&limit=5"
    status, reply, _ = call(running, "GET", "/api/v3/order",
                            query=f"{sent}&signature={signature(signed_text, 'x' if tamper == 'other secret' else API_SECRET)}")
    assert (status, reply) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})


@pytest.mark.parametrize(("key", "status", "code"), [(None, 401, -2014), ("", 401, -2014), ("not-alnum!", 401, -2014),
                                                     ("WrongKey123", 401, -2015)])
def test_a_missing_or_unknown_api_key_is_refused(running: Running, clock: Clock, key: str | None, status: int,
                                                 code: int) -> None:
    got, reply, _ = call(running, "GET", "/api/v3/account", query=signed({}, clock), key=key)
    assert (got, reply["code"]) == (status, code)


@pytest.mark.parametrize(("query", "code", "msg"), [
    ("timestamp=1", -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."),
    ("signature=00", -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."),
    ("timestamp=abc&signature=00", -1100, None),
    ("timestamp=1&recvWindow=60001&signature=00", -1131, "recvWindow must be less than 60000"),
    ("symbol=EURUSD&symbol=EURUSD", -1101, "Duplicate values for a parameter detected."),
])
def test_malformed_signed_requests_get_binance_s_codes(running: Running, query: str, code: int,
                                                       msg: str | None) -> None:
    status, reply, _ = call(running, "GET", "/api/v3/account", query=query)
    assert status == 400 and reply["code"] == code and (msg is None or reply["msg"] == msg)


def test_timestamps_are_checked_against_the_exchange_clock_and_its_skew(running: Running, clock: Clock) -> None:
    assert call(running, "GET", "/api/v3/account", query=signed({}, clock, shift_ms=900))[0] == 200
    status, reply, _ = call(running, "GET", "/api/v3/account", query=signed({}, clock, shift_ms=1500))
    assert (status, reply["msg"]) == (400, "Timestamp for this request was 1000ms ahead of the server's time.")
    status, reply, _ = call(running, "GET", "/api/v3/account", query=signed({}, clock, shift_ms=-6000))
    assert (status, reply["msg"]) == (400, "Timestamp for this request is outside of the recvWindow.")
    assert call(running, "GET", "/api/v3/account", query=signed({}, clock, shift_ms=-6000, recvWindow=10_000))[0] == 200
    assert running.control("POST", "faults", {"kind": "clock_skew", "ms": 30_000})[0] == 200
    _, server, _ = call(running, "GET", "/api/v3/time")
    assert abs(server["serverTime"] - (clock() * 1000 + 30_000)) < 5_000
    assert call(running, "GET", "/api/v3/account", query=signed({}, clock))[1]["code"] == -1021
    assert call(running, "GET", "/api/v3/account", query=signed({}, clock, shift_ms=30_000))[0] == 200


# -- routes -----------------------------------------------------------------------------------------


def test_unknown_paths_and_methods_get_an_html_404(running: Running) -> None:
    for method, path in (("GET", "/api/v3/nothing"), ("PUT", "/api/v3/order"), ("GET", "/fapi/v1/exchangeInfo")):
        status, body, headers = call(running, method, path)
        assert status == 404 and headers["content-type"].startswith("text/html") and "404" in body


def test_public_market_data_endpoints(running: Running) -> None:
    assert call(running, "GET", "/api/v3/ping")[:2] == (200, {})
    status, info, _ = call(running, "GET", "/api/v3/exchangeInfo", query='symbols=["EURUSD"]')
    assert status == 200 and [s["symbol"] for s in info["symbols"]] == ["EURUSD"]
    filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
    assert filters["LOT_SIZE"]["stepSize"] == "0.10000000" and filters["PRICE_FILTER"]["tickSize"] == "0.00001000"
    assert call(running, "GET", "/api/v3/exchangeInfo", query="symbol=NOPE")[1] == {"code": -1121,
                                                                                      "msg": "Invalid symbol."}
    prices = call(running, "GET", "/api/v3/ticker/price")[1]
    assert [p["symbol"] for p in prices] == ["EURUSD", "BTCUSDT"]
    book = call(running, "GET", "/api/v3/ticker/bookTicker", query="symbol=BTCUSDT")[1]
    assert float(book["bidPrice"]) < float(book["askPrice"])
    depth = call(running, "GET", "/api/v3/depth", query="symbol=BTCUSDT&limit=5")[1]
    asks, bids = [float(level[0]) for level in depth["asks"]], [float(level[0]) for level in depth["bids"]]
    assert len(asks) == len(bids) == 5 and bids[0] < asks[0] and asks == sorted(asks) and bids == sorted(bids)[::-1]
    rows = call(running, "GET", "/api/v3/klines", query="symbol=EURUSD&interval=1m&limit=3")[1]
    assert len(rows) == 3 and all(row[6] == row[0] + 59_999 for row in rows) and len(rows[0]) == 12
    assert call(running, "GET", "/api/v3/klines", query="symbol=EURUSD&interval=7m")[1]["code"] == -1120
    assert call(running, "GET", "/api/v3/klines", query="symbol=EURUSD")[1]["code"] == -1102


# -- rate limits ------------------------------------------------------------------------------------


def test_request_weight_past_the_limit_is_429_then_an_ip_that_keeps_going_is_banned(
        running: Running, clock: Clock) -> None:
    clock.advance(61 - clock() % 60)  # a second into a clock minute: the test ends long before the next
    used = 0
    while used + 20 <= 400:  # exchangeInfo weighs 20
        status, _, headers = call(running, "GET", "/api/v3/exchangeInfo")
        assert status == 200
        used = int(headers["x-mbx-used-weight-1m"])
    status, reply, headers = call(running, "GET", "/api/v3/exchangeInfo")
    assert status == 429 and reply["code"] == -1003 and 1 <= int(headers["retry-after"]) <= 60
    assert call(running, "GET", "/api/v3/exchangeInfo")[0] == 429  # ban_after=2: two refusals are tolerated
    status, reply, headers = call(running, "GET", "/api/v3/exchangeInfo")
    assert status == 418 and "IP banned until" in reply["msg"] and int(headers["retry-after"]) == 60
    assert call(running, "GET", "/api/v3/ping")[0] == 418  # the ban covers every endpoint
    clock.advance(61)
    assert call(running, "GET", "/api/v3/ping")[0] == 200


# -- faults -----------------------------------------------------------------------------------------


def test_a_fault_applies_to_its_path_for_its_count(running: Running) -> None:
    status, fault = running.control("POST", "faults", {"kind": "error", "status": 503, "code": -1008,
                                                       "msg": "Server is currently overloaded", "path": "/api/v3/time",
                                                       "count": 2})
    assert status == 200 and fault["remaining"] == 2
    assert call(running, "GET", "/api/v3/ping")[0] == 200  # another path
    assert [call(running, "GET", "/api/v3/time")[:2] for _ in range(2)] == [
        (503, {"code": -1008, "msg": "Server is currently overloaded"})] * 2
    assert call(running, "GET", "/api/v3/time")[0] == 200
    assert running.control("GET", "faults") == (200, [])


def test_a_fault_scoped_to_a_symbol_spares_the_others(running: Running) -> None:
    running.control("POST", "faults", {"kind": "error", "status": 502, "symbol": "BTCUSDT", "count": 1})
    assert call(running, "GET", "/api/v3/ticker/price", query="symbol=EURUSD")[0] == 200
    assert call(running, "GET", "/api/v3/ticker/price")[0] == 200  # no symbol named: not in scope
    assert call(running, "GET", "/api/v3/ticker/price", query="symbol=BTCUSDT")[0] == 502


def test_a_fault_with_seconds_ends_on_the_clock_and_can_be_removed(running: Running, clock: Clock) -> None:
    _, first = running.control("POST", "faults", {"kind": "maintenance", "seconds": 30})
    _, second = running.control("POST", "faults", {"kind": "error", "status": 502, "path": "/api/v3/ping"})
    status, body, headers = call(running, "GET", "/api/v3/time")
    assert (status, body) == (503, {"code": 1, "msg": "System is under maintenance."})
    assert call(running, "GET", "/sapi/v1/system/status")[1] == {"status": 1, "msg": "system_maintenance"}
    clock.advance(31)
    assert call(running, "GET", "/api/v3/time")[0] == 200
    status, _page, headers = call(running, "GET", "/api/v3/ping")
    assert status == 502 and headers["content-type"].startswith("text/html")
    assert running.control("DELETE", f"faults/{second['id']}") == (200, {"removed": second["id"]})
    assert call(running, "GET", "/api/v3/ping")[0] == 200
    assert running.control("DELETE", f"faults/{first['id']}")[0] == 404


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"kind": "meteor"}, "kind must be one of"),
    ({"kind": "ban"}, "a ban needs seconds"),
    ({"kind": "error", "status": 200}, "HTTP error status"),
    ({"kind": "error", "code": -1008}, "code and msg together"),
    ({"kind": "latency", "seconds_delay": "slow"}, "seconds_delay must be a number"),
    ({"kind": "timeout", "mode": "explode"}, "mode must be hang or drop"),
    ({"kind": "rate_limit", "count": 0}, "count must be"),
    ({"kind": "partial_fill", "parts": 1}, "parts must be 2-2000"),
    ({"kind": "lag", "lag_seconds": 0}, "lag_seconds must be between"),
    ({"kind": "latency", "colour": "red"}, "does not take colour"),
    ({"kind": "error", "path": "api/v3/order"}, "path must start with /"),
])
def test_a_bad_fault_is_a_400_naming_the_problem(running: Running, spec: dict[str, Any], fragment: str) -> None:
    status, reply = running.control("POST", "faults", spec)
    assert status == 400 and fragment in reply["error"], reply
    assert running.control("GET", "faults") == (200, [])


def test_latency_delays_the_answer(running: Running) -> None:
    running.control("POST", "faults", {"kind": "latency", "seconds_delay": 0.4, "count": 1})
    started = time.monotonic()
    assert call(running, "GET", "/api/v3/ping")[0] == 200
    assert time.monotonic() - started >= 0.4


def _raw_order(running: Running, clock: Clock, client_id: str, timeout: float = 10.0) -> bytes:
    """POST a market order on a bare socket; whatever bytes come back before the server closes."""
    body = signed({"symbol": "EURUSD", "side": "BUY", "type": "MARKET", "quantity": "10",
                   "newClientOrderId": client_id}, clock)
    parts = urlsplit(running.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall((f"POST /api/v3/order HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: {API_KEY}\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_timeout_fault_places_the_order_and_drops_the_connection_without_a_byte(
        running: Running, clock: Clock) -> None:
    running.control("POST", "faults", {"kind": "timeout", "mode": "drop", "count": 1})
    assert _raw_order(running, clock, "dropped-1") == b""
    _, orders = running.control("GET", "orders")
    assert [(o["clientOrderId"], o["status"]) for o in orders] == [("dropped-1", "FILLED")]
    _, requests = running.control("GET", "requests")
    assert requests[-1]["fault"] == "timeout" and requests[-1]["clientOrderId"] == "dropped-1"


def test_a_hanging_timeout_keeps_the_client_waiting_until_the_simulator_closes(clock: Clock) -> None:
    with serve(make_simulator(clock)) as running:
        running.control("POST", "faults", {"kind": "timeout", "hang_seconds": 60, "count": 1})
        with pytest.raises(TimeoutError):
            _raw_order(running, clock, "hung-1", timeout=1.0)
        assert [o["clientOrderId"] for o in running.control("GET", "orders")[1]] == ["hung-1"]
        started = time.monotonic()
    assert time.monotonic() - started < 30  # close() woke the hung worker; stop() did not wait a minute


# -- the control API --------------------------------------------------------------------------------


def test_balances_can_be_set_and_reset_restores_the_start(running: Running, clock: Clock) -> None:
    assert running.control("POST", "balances", {"usdt": "123.5", "BTC": 2})[0] == 200
    _, account, _ = call(running, "GET", "/api/v3/account", query=signed({}, clock))
    balances = {b["asset"]: b["free"] for b in account["balances"]}
    assert balances["USDT"] == "123.50000000" and balances["BTC"] == "2.00000000"
    assert running.control("POST", "balances", {"USDT": "-1"})[0] == 400
    assert running.control("POST", "reset") == (200, {"reset": True})
    assert running.control("GET", "balances")[1]["USDT"] == {"free": "10000.00000000", "locked": "0.00000000"}


def test_a_pinned_price_shows_from_the_next_bar(running: Running) -> None:
    status, pin = running.control("POST", "price", {"symbol": "BTCUSDT", "price": "12345.6", "seconds": 30})
    assert status == 200 and pin["from_ms"] % 1000 == 0
    wait_for(lambda: call(running, "GET", "/api/v3/ticker/price", query="symbol=BTCUSDT")[1]["price"]
             == "12345.60000000", timeout=60)
    assert running.control("POST", "price", {"symbol": "NOPE", "price": "1"})[0] == 400


def test_the_request_log_names_requests_but_never_their_credentials(running: Running, clock: Clock) -> None:
    call(running, "GET", "/api/v3/account", query=signed({}, clock))
    call(running, "GET", "/api/v3/account", query=signed({}, clock), key="WrongKey123")
    _, requests = running.control("GET", "requests?limit=2")
    assert [(r["path"], r["status"], r.get("code")) for r in requests] == [
        ("/api/v3/account", 200, None), ("/api/v3/account", 401, -2015)]
    text = json.dumps(running.control("GET", "requests")[1]) + json.dumps(running.control("GET", "status")[1])
    assert API_KEY not in text and API_SECRET not in text and "signature" not in text


def test_the_control_api_refuses_clients_off_the_loopback(running: Running) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/_sim/status", "REMOTE_ADDR": "192.0.2.7",
               "wsgi.input": io.BytesIO()}
    assert control.handle(running.sim, environ)[0] == 403
    assert control.handle(running.sim, {**environ, "REMOTE_ADDR": "::1"})[0] == 200
    assert running.control("GET", "nothing")[0] == 404
    assert running.control("PUT", "orders")[0] == 405


def test_a_bug_in_the_simulator_is_a_500_without_its_traceback(running: Running, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    def boom(sim: Any, request: Any) -> Any:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setitem(api.ROUTES, ("GET", "/api/v3/ping"), api.Route(boom, 1))
    status, reply, _ = call(running, "GET", "/api/v3/ping")
    assert (status, reply) == (500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})
    assert "ZeroDivisionError" in caplog.text


def test_the_app_serves_any_wsgi_server(clock: Clock) -> None:
    """make_app is plain WSGI: called directly it answers like on waitress (ping, and the control API)."""
    sim = make_simulator(clock)
    app = make_app(sim)
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v3/ping", "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.input": io.BytesIO()}
    assert b"".join(app(environ, lambda status, headers: statuses.append(status))) == b"{}"
    assert statuses == ["200 OK"]
