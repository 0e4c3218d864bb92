"""Signed-endpoint checks as Binance does them: the API key header, HMAC-SHA256 of the exact bytes, timestamp and recvWindow.

The signature covers the request's *total parameters*: the query string followed by the body,
byte for byte as sent, without the ``signature`` parameter itself. Re-encoding the parsed
parameters would accept requests Binance refuses (and the other way round), so the raw strings
are signed. Keys and secrets are compared in constant time and never echoed.
"""

from __future__ import annotations

import hashlib
import hmac

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.numbers import parse_int

#: recvWindow when the request gives none, and the largest Binance accepts.
DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60_000

#: A timestamp may run ahead of the exchange's clock by less than this.
_AHEAD_MS = 1000


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def signed_payload(query: str, body: str) -> str:
    """What the client signed: query string then body, the signature parameter left out."""
    return _without_signature(query) + _without_signature(body)


def sign(secret: str, payload: str) -> str:
    """The hex HMAC-SHA256 of ``payload`` under ``secret`` (what a client sends as ``signature``)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def check_signed(*, api_key: str | None, params: dict[str, str], query: str, body: str, expected_key: str,
                 secret: str, server_ms: int) -> None:
    """Raise the Binance error for the first thing wrong with a signed request; return when it is good."""
    if not api_key or not api_key.isascii() or not api_key.isalnum():
        raise errors.bad_api_key_format()
    if not hmac.compare_digest(api_key.encode(), expected_key.encode()):
        raise errors.rejected_api_key()
    signature = params.get("signature")
    if not signature:
        raise errors.mandatory("signature")
    timestamp = parse_int(params, "timestamp", required=True)
    recv_window = parse_int(params, "recvWindow", default=DEFAULT_RECV_WINDOW)
    assert timestamp is not None and recv_window is not None
    if recv_window > MAX_RECV_WINDOW:
        raise errors.bad_recv_window()
    expected = sign(secret, signed_payload(query, body))
    if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
        raise errors.bad_signature()
    if timestamp >= server_ms + _AHEAD_MS:
        raise errors.timestamp_ahead()
    if server_ms - timestamp > recv_window:
        raise errors.timestamp_outside_window()
