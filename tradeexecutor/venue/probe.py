"""A read-only connectivity probe of an exchange: one public request, unsigned, and what became of it.

``tradeexecutor check SPEC --probe`` adds it to the readiness result, so an operator learns before
starting whether the exchange (or the simulator, proxy or testnet ``--exchange-url`` names) answers
from this host. The probe sends no credentials and changes nothing: it asks for the exchange's
clock (Binance's ``GET /api/v3/time``), or loads its markets where ccxt has no clock call. Safe
against loopback: it reaches only the one address the settings name.

Its verdict is one of a closed set:

=====================  =========================================================================
``probe_ok``           the exchange answered
``probe_http_error``   it answered with an error: a 5xx, maintenance, a 429 or 418, a refusal
``probe_timeout``      it did not answer within ``--exchange-timeout-seconds``
``probe_unreachable``  no connection: nothing listens there, the name does not resolve, TLS failed
=====================  =========================================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.venue.ccxt_connection import make_exchange
from tradeexecutor.venue.ccxt_errors import scrub

__all__ = ["Probe", "ProbeState", "probe_exchange"]


class ProbeState(str, Enum):
    """What the probe found."""

    ok = "probe_ok"
    http_error = "probe_http_error"
    timeout = "probe_timeout"
    unreachable = "probe_unreachable"


@dataclass(frozen=True)
class Probe:
    """One probe's verdict: names and numbers only, never a credential."""

    state: ProbeState
    #: The ccxt exchange id and the URL its API bases were pointed at (None: the exchange itself).
    exchange: str
    url: str | None
    #: How long the request took, in seconds.
    seconds: float
    #: The error's class and scrubbed message; empty when ok.
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state is ProbeState.ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as readiness.json holds it."""
        return {"state": self.state.value, "exchange": self.exchange, "url": self.url,
                "seconds": round(self.seconds, 3), "detail": self.detail}

    def line(self) -> str:
        """One line for the readiness report."""
        where = f"{self.exchange} at {self.url}" if self.url else self.exchange
        return f"probe: {self.state.value} ({where}, {self.seconds * 1000:.0f} ms)" + (
            f": {self.detail}" if self.detail else "")


def probe_exchange(config: CcxtVenueConfig) -> Probe:
    """Ask the exchange ``config`` names for its clock, unsigned; the verdict (never raises for the network)."""
    import ccxt

    exchange = make_exchange(config, private=False)  # no credentials: nothing is signed or read from the account
    name = str(config.exchange)  # make_exchange refused a missing or unknown id
    started = time.monotonic()
    try:
        if exchange.has.get("fetchTime"):
            exchange.fetch_time()
        else:
            exchange.load_markets()
    except ccxt.RequestTimeout as error:
        return _verdict(ProbeState.timeout, config, started, error)
    except (ccxt.ExchangeNotAvailable, ccxt.DDoSProtection, ccxt.InvalidNonce, ccxt.ExchangeError,
            ccxt.BadResponse) as error:
        return _verdict(ProbeState.http_error, config, started, error)
    except ccxt.NetworkError as error:  # what is left of it is the connection itself
        return _verdict(ProbeState.unreachable, config, started, error)
    except ccxt.BaseError as error:  # an answer ccxt could not use (Binance -1001/-1008 overloaded, ...)
        return _verdict(ProbeState.http_error, config, started, error)
    return Probe(ProbeState.ok, name, config.url, time.monotonic() - started)


def _verdict(state: ProbeState, config: CcxtVenueConfig, started: float, error: BaseException) -> Probe:
    return Probe(state, str(config.exchange), config.url, time.monotonic() - started,
                 f"{type(error).__name__}: {scrub(str(error))}")
