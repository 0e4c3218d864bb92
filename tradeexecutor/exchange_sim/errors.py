"""Binance's error replies: one exception carrying HTTP status, error code and message, and the catalogue we send.

Binance answers a failed request with ``{"code": <negative int>, "msg": "..."}`` and an HTTP
status; clients (ccxt among them) pick their exception class from the status, the exact message
and the code, so the simulator sends Binance's own wording. Every reply the simulator can give is
built here, so the table in docs/exchange-simulator.md has one source.

How ccxt 4.5's ``binance`` class reads them (verified by tests/test_exchange_sim_ccxt.py):

====================  ======  ===========================================  =============================
reply                 status  code / message                               ccxt exception
====================  ======  ===========================================  =============================
rate limited          429     -1003 "Too much request weight used; ..."    DDoSProtection (status first)
IP banned             418     -1003 "Way too much request weight ..."      DDoSProtection
server overloaded     503     -1008                                         ExchangeError on a loopback
                                                                           URL; OperationFailed on
                                                                           api.binance.com
internal error        503     -1001 "Internal error; ..."                  OperationFailed
maintenance           503     1 "System is under maintenance."             OnMaintenance (by message)
bare 5xx (no JSON)    5xx     HTML body                                    ExchangeNotAvailable (504:
                                                                           RequestTimeout)
recvWindow > 60000    400     -1131                                        ExchangeError on a loopback
                                                                           URL; BadRequest on
                                                                           api.binance.com
timestamp             400     -1021                                        InvalidNonce
signature             400     -1022                                        AuthenticationError
API key               401     -2014 / -2015                                AuthenticationError (-2015
                                                                           after a first success:
                                                                           DDoSProtection)
filter failure        400     -1013 "Filter failure: LOT_SIZE" ...         InvalidOrder (LOT_SIZE,
                                                                           PRICE_FILTER by message);
                                                                           BadRequest (NOTIONAL)
new order rejected    400     -2010                                        InvalidOrder; the
                                                                           insufficient-balance message
                                                                           gives InsufficientFunds
cancel rejected       400     -2011 "Unknown order sent."                  OrderNotFound
no such order         400     -2013 "Order does not exist."                OrderNotFound
====================  ======  ===========================================  =============================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class BinanceError(Exception):
    """A request the exchange refuses: sent as ``status`` with ``{"code": code, "msg": msg}``."""

    def __init__(self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code} {msg}")
        #: HTTP status of the reply.
        self.status = status
        #: Binance's error code (negative, except maintenance's 1).
        self.code = code
        #: Binance's message, word for word.
        self.msg = msg
        #: Extra response headers, such as Retry-After.
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body Binance sends."""
        return {"code": self.code, "msg": self.msg}


# -- request and parameter errors (-11xx) -----------------------------------------------------------


def mandatory(name: str) -> BinanceError:
    """-1102: a required parameter is missing or empty."""
    return BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def bad_value(name: str) -> BinanceError:
    """-1100: a parameter holds characters it may not (a number that does not parse, say)."""
    return BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")


def illegal_client_id(name: str) -> BinanceError:
    """-1100 for a client order id outside Binance's alphabet."""
    return BinanceError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[a-zA-Z0-9-_]{{1,36}}$'."
    )


def not_required(name: str) -> BinanceError:
    """-1106: a parameter sent where it does not belong (timeInForce on a market order)."""
    return BinanceError(400, -1106, f"Parameter '{name}' sent when not required.")


def duplicate_parameter() -> BinanceError:
    """-1101: the same parameter sent twice."""
    return BinanceError(400, -1101, "Duplicate values for a parameter detected.")


def too_precise(name: str) -> BinanceError:
    """-1111: more decimals than the asset has."""
    return BinanceError(400, -1111, f"Parameter '{name}' has too much precision.")


def invalid_parameter(name: str) -> BinanceError:
    """-1130: a value of the right form but not allowed."""
    return BinanceError(400, -1130, f"Invalid data sent for a parameter '{name}'.")


def invalid_symbol() -> BinanceError:
    """-1121: no such market."""
    return BinanceError(400, -1121, "Invalid symbol.")


def invalid_interval() -> BinanceError:
    """-1120: no such kline interval."""
    return BinanceError(400, -1120, "Invalid interval.")


def invalid_side() -> BinanceError:
    """-1117."""
    return BinanceError(400, -1117, "Invalid side.")


def invalid_order_type() -> BinanceError:
    """-1116."""
    return BinanceError(400, -1116, "Invalid orderType.")


def invalid_time_in_force() -> BinanceError:
    """-1115."""
    return BinanceError(400, -1115, "Invalid timeInForce.")


def bad_recv_window() -> BinanceError:
    """-1131."""
    return BinanceError(400, -1131, "recvWindow must be less than 60000")


def unknown_error() -> BinanceError:
    """-1000, HTTP 500: a bug in the simulator; the traceback stays in its log."""
    return BinanceError(500, -1000, "An unknown error occurred while processing the request.")


# -- authentication (-1021, -1022, -2014, -2015) ---------------------------------------------------


def timestamp_ahead() -> BinanceError:
    """-1021: the client's clock runs more than a second ahead of the exchange's."""
    return BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")


def timestamp_outside_window() -> BinanceError:
    """-1021: the request is older than its recvWindow."""
    return BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def bad_signature() -> BinanceError:
    """-1022."""
    return BinanceError(400, -1022, "Signature for this request is not valid.")


def bad_api_key_format() -> BinanceError:
    """-2014: no API key header, or one of the wrong shape."""
    return BinanceError(401, -2014, "API-key format invalid.")


def rejected_api_key() -> BinanceError:
    """-2015: a well-formed key the exchange does not know."""
    return BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")


# -- orders (-1013, -2010, -2011, -2013) ------------------------------------------------------------


def filter_failure(name: str) -> BinanceError:
    """-1013: a symbol filter (LOT_SIZE, PRICE_FILTER, NOTIONAL, MAX_NUM_ORDERS) refuses the order."""
    return BinanceError(400, -1013, f"Filter failure: {name}")


#: -2010's message when the balance cannot pay for the order (ccxt: InsufficientFunds).
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


def new_order_rejected(msg: str = INSUFFICIENT_BALANCE) -> BinanceError:
    """-2010: the order is refused; the message says why."""
    return BinanceError(400, -2010, msg)


def duplicate_order() -> BinanceError:
    """-2010 for a client order id still used by an open order of the symbol."""
    return new_order_rejected("Duplicate order sent.")


def would_take() -> BinanceError:
    """-2010 for a LIMIT_MAKER that would trade at once."""
    return new_order_rejected("Order would immediately match and take.")


def cancel_rejected() -> BinanceError:
    """-2011: the order to cancel is unknown or no longer open."""
    return BinanceError(400, -2011, "Unknown order sent.")


def no_such_order() -> BinanceError:
    """-2013."""
    return BinanceError(400, -2013, "Order does not exist.")


# -- the exchange's own trouble (-1003, -1008, -1001, maintenance) ---------------------------------


def rate_limited(limit: int, retry_after: int) -> BinanceError:
    """429 -1003 with Retry-After: the request weight of this minute is used up."""
    return BinanceError(
        429,
        -1003,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        {"Retry-After": str(max(1, retry_after))},
    )


def banned(until_ms: int, retry_after: int) -> BinanceError:
    """418 -1003 with Retry-After: the IP is banned until ``until_ms``."""
    return BinanceError(
        418,
        -1003,
        f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
        {"Retry-After": str(max(1, retry_after))},
    )


#: The maintenance message ccxt maps to OnMaintenance (it matches the message before the code).
MAINTENANCE_MESSAGE = "System is under maintenance."


def maintenance() -> BinanceError:
    """503 with Binance's maintenance message."""
    return BinanceError(503, 1, MAINTENANCE_MESSAGE)
