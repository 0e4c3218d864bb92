"""What each ccxt exception means to the executor: temporary (retry later), a rejected order, or a crash — one table.

ccxt raises one exception tree for every exchange (``ccxt.base.errors``). The executor needs
three answers, and only one place may give them:

- **temporary** — the network, a timeout, a 5xx, a 429 or 418, maintenance, a clock that drifted:
  the venue raises ``TemporaryError`` and the loop boundary retries with backoff. On submit the
  outcome is *unknown* and is resolved by asking for the client order id, never by resending.
- **rejected** — the exchange refused *this order* (funds, filters, a closed market): the order
  becomes ``rejected`` with a reason. Only a submit can be rejected; the same class raised by a
  query is a crash (we asked something wrong).
- **crash** — credentials, permissions, a request we built wrong, an answer nobody expected:
  ``VenueFailure``, which the loop treats like any bug (crash record, crash-loop safe mode).

Every class ccxt defines has its own row (tests/test_venue_ccxt_errors.py checks the table
covers the installed ccxt), so a class added by a ccxt upgrade fails a test instead of falling
through to its parent silently. Messages are passed through ``scrub``: ccxt puts the request URL
in some of them, and a signed URL carries the signature and the timestamp.
"""

from __future__ import annotations

import re
from enum import Enum

from tradeexecutor.errors import TemporaryError, TradeExecutorError
from tradeexecutor.state import OrderSide, RejectReason

__all__ = ["ERROR_TABLE", "Meaning", "RateLimitedError", "VenueFailure", "classify", "reject_reason", "scrub"]


class Meaning(str, Enum):
    """What an exchange error means for the executor."""

    #: Retry later with backoff; on submit the outcome is unknown.
    temporary = "temporary"
    #: The order was refused (only when submitting; otherwise a crash).
    rejected = "rejected"
    #: Not temporary and not a refusal: stop and show a person.
    crash = "crash"


class VenueFailure(TradeExecutorError):
    """The exchange answered in a way that is neither temporary nor an order's rejection (credentials,
    permissions, a request we built wrong): the loop crashes on it like on a bug."""


class RateLimitedError(TemporaryError):
    """The exchange asked us to slow down (429) or banned the address (418); no request before ``retry_after``."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        #: Seconds until a request may be sent again.
        self.retry_after = retry_after


#: ccxt exception class name → meaning. Names, not classes, so this module imports without ccxt.
ERROR_TABLE: dict[str, Meaning] = {
    "BaseError": Meaning.crash,
    "ExchangeError": Meaning.crash,  # an exchange code ccxt does not know: nobody can say it is safe to retry
    "AuthenticationError": Meaning.crash,
    "PermissionDenied": Meaning.crash,
    "AccountNotEnabled": Meaning.crash,
    "AccountSuspended": Meaning.crash,
    "ArgumentsRequired": Meaning.crash,
    "BadRequest": Meaning.rejected,  # Binance: -1013 filter failures, -1100 bad parameters (for an order)
    "BadSymbol": Meaning.rejected,
    "OperationRejected": Meaning.rejected,
    "NoChange": Meaning.crash,  # margin and position settings: never asked by a spot venue
    "MarginModeAlreadySet": Meaning.crash,
    "MarketClosed": Meaning.rejected,
    "ManualInteractionNeeded": Meaning.crash,
    "RestrictedLocation": Meaning.crash,
    "InsufficientFunds": Meaning.rejected,
    "InvalidAddress": Meaning.crash,  # withdrawals only
    "AddressPending": Meaning.crash,
    "InvalidOrder": Meaning.rejected,
    "OrderNotFound": Meaning.rejected,  # a query answers None / a cancel is a no-op before this is consulted
    "OrderNotCached": Meaning.crash,
    "OrderImmediatelyFillable": Meaning.rejected,  # a post-only order that would take
    "OrderNotFillable": Meaning.rejected,
    "DuplicateOrderId": Meaning.crash,  # we sent a client order id twice: a bug (DuplicateOrderError)
    "ContractUnavailable": Meaning.rejected,
    "NotSupported": Meaning.crash,
    "InvalidProxySettings": Meaning.crash,
    "ExchangeClosedByUser": Meaning.crash,
    "OperationFailed": Meaning.temporary,  # Binance -1001 / -1008: internal error, overloaded
    "NetworkError": Meaning.temporary,
    "DDoSProtection": Meaning.temporary,  # 429 and 418 (the gate then holds every request back)
    "RateLimitExceeded": Meaning.temporary,
    "ExchangeNotAvailable": Meaning.temporary,  # 5xx, a proxy's error page
    "OnMaintenance": Meaning.temporary,
    "InvalidNonce": Meaning.temporary,  # clock drift: the venue measures the offset again and retries once
    "ChecksumError": Meaning.temporary,
    "RequestTimeout": Meaning.temporary,  # on submit: outcome unknown, resolved by client order id
    "BadResponse": Meaning.temporary,  # a garbled or empty reply (a proxy in between)
    "NullResponse": Meaning.temporary,
    "CancelPending": Meaning.temporary,
    "UnsubscribeError": Meaning.crash,  # websockets: never used here
}


def classify(error: BaseException, *, submitting: bool) -> Meaning:
    """The meaning of a ccxt exception: the row of its most specific class in ERROR_TABLE.

    A refusal only rejects an order while it is being submitted; from any other call it is a crash.
    Anything that is not a ccxt exception is ours, so a crash.
    """
    for cls in type(error).__mro__:
        meaning = ERROR_TABLE.get(cls.__name__)
        if meaning is not None and cls.__module__.startswith("ccxt"):
            if meaning is Meaning.rejected and not submitting:
                return Meaning.crash
            return meaning
    return Meaning.crash


#: Exchange messages that name a more precise reason than the exception class (Binance's filter names).
_MESSAGE_REASONS: tuple[tuple[str, RejectReason], ...] = (
    ("NOTIONAL", RejectReason.below_min_notional),  # "Filter failure: NOTIONAL" / MIN_NOTIONAL
    ("LOT_SIZE", RejectReason.rounds_to_zero),
    ("must be greater than minimum amount precision", RejectReason.rounds_to_zero),  # ccxt, before sending
)


def reject_reason(error: BaseException, side: OrderSide) -> RejectReason:
    """The machine reason of a refused order: from the exchange's message, else from the class."""
    text = str(error)
    for needle, reason in _MESSAGE_REASONS:
        if needle in text:
            return reason
    if any(cls.__name__ == "InsufficientFunds" for cls in type(error).__mro__):
        return RejectReason.insufficient_cash if side is OrderSide.buy else RejectReason.nothing_to_sell
    return RejectReason.venue


_QUERY = re.compile(r"\?\S*")
_SIGNATURE = re.compile(r"(signature|apiKey|api_key|secret|timestamp)=[^&\s\"']*", re.IGNORECASE)


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without query strings (signed URLs), signature-like parameters and the given secret values."""
    text = _SIGNATURE.sub(lambda m: f"{m.group(1)}=…", _QUERY.sub("?…", text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return text[:500]
