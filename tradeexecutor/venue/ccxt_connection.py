"""CcxtConnection: one ccxt exchange object and the one door every request to it passes (gate, limiter, errors, clock).

Built by ``make_exchange`` from one ``CcxtVenueConfig`` (tradeexecutor/config.py, so the settings
tree can hold it without importing the venue): the exchange id, one URL that replaces
the host of every API base (a simulator, a proxy, a testnet), credentials read from environment
variables named in the config (the values never leave the ccxt object: not in a repr, a message
or a log line — ccxt's debug logger, which prints request headers, is silenced), the rate budget
scaled by this executor's share, and the clock offset measured at connect and again whenever the
exchange calls a timestamp stale. The venue and the candle source share one connection, so they
share its ban gate and its rate budget too.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.errors import ConfigError, TemporaryError
from tradeexecutor.venue.ccxt_errors import Meaning, RateLimitedError, VenueFailure, classify, scrub
from tradeexecutor.venue.ccxt_gate import RequestGate

__all__ = ["CcxtConnection", "check_exchange_id", "credentials", "make_exchange"]

T = TypeVar("T")

#: Options that keep an exchange class on its spot endpoints. Binance's class otherwise loads
#: futures markets (fapi, dapi), currencies and margin pairs (private sapi endpoints) on load_markets.
SPOT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
    },
}

#: Seconds to hold requests back after a 429 or 418 that gave no Retry-After.
DEFAULT_RETRY_AFTER = {429: 60.0, 418: 120.0}

_STATUS_IN_MESSAGE = re.compile(r"\b(418|429)\b")
_BANNED_UNTIL = re.compile(r"banned until (\d{12,14})")



def _silent_logger() -> logging.Logger:
    """A logger that drops everything: ccxt logs every request's headers (the API key) at debug."""
    logger = logging.getLogger("tradeexecutor.venue.ccxt.wire")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)  # above every level: nothing is even formatted
    return logger


def check_exchange_id(name: str | None) -> None:
    """ConfigError unless ``name`` is an exchange id the installed ccxt knows (a usage error, found before start-up)."""
    import ccxt

    if name is None:
        raise ConfigError("--exchange is not set: name a ccxt exchange id such as binance")
    if name not in ccxt.exchanges:
        raise ConfigError(f"--exchange {name!r} is not an exchange ccxt {ccxt.__version__} knows; see ccxt.exchanges")


def credentials(config: CcxtVenueConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """ccxt's ``apiKey`` and ``secret`` from the variables the config names; ConfigError naming a missing one."""
    found: dict[str, str] = {}
    for variable, name in ((config.key_variable, "apiKey"), (config.secret_variable, "secret")):
        value = environ.get(variable, "")
        if not value.strip():
            raise ConfigError(f"{variable} is not set: export the exchange API "
                              f"{'key' if name == 'apiKey' else 'secret'} in it (the value is never shown)")
        found[name] = value.strip()
    return found


def make_exchange(config: CcxtVenueConfig, environ: Mapping[str, str] | None = None, *,
                  private: bool = True) -> Any:
    """The ccxt exchange object for ``config``: spot only, rate limiter on at this executor's share, URL replaced.

    ``private`` reads the credentials from the environment (ConfigError naming the variable when
    one is missing); a public-only client (candles) needs none.
    """
    import ccxt

    check_exchange_id(config.exchange)
    exchange_id = str(config.exchange)
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(config.timeout_seconds * 1000),
        "options": {"defaultType": "spot", **SPOT_OPTIONS.get(exchange_id, {})},
    }
    if private:
        settings.update(credentials(config, environ))
    exchange = getattr(ccxt, exchange_id)(settings)
    exchange.logger = _silent_logger()
    exchange.rateLimit = exchange.rateLimit / config.rate_share
    if config.url is not None:
        _point_at(exchange, config.url.rstrip("/"))
    return exchange


def _point_at(exchange: Any, url: str) -> None:
    """Every API base of ``exchange`` at ``url`` (paths kept), and the exchange's spot error table restored.

    Some ccxt classes (Binance's) choose their error-code table by the URL's host name; on any
    other host the spot-only codes (Binance -1008 "server overloaded") would fall back to a
    generic ExchangeError — a crash instead of a retry. What ccxt does on the real host (spot
    table first) is done here once for all.
    """

    def replace(node: Any) -> Any:
        if isinstance(node, str):
            return url + urlsplit(node).path if "://" in node else node
        if isinstance(node, dict):
            return {key: replace(value) for key, value in node.items()}
        return node

    exchange.urls["api"] = replace(exchange.urls["api"])
    spot = exchange.exceptions.get("spot") if isinstance(exchange.exceptions, dict) else None
    if isinstance(spot, dict):
        for kind in ("exact", "broad"):
            exchange.exceptions[kind] = {**exchange.exceptions.get(kind, {}), **spot.get(kind, {})}



class CcxtConnection:
    """A ccxt exchange behind the ban gate; ``call`` is the only way the venue and the candles reach it."""

    def __init__(self, config: CcxtVenueConfig, exchange: Any | None = None, *,
                 environ: Mapping[str, str] | None = None, private: bool = True,
                 clock: Callable[[], float] | None = None):
        self.config = config
        self.name = config.exchange or "exchange"
        self.exchange = exchange if exchange is not None else make_exchange(config, environ, private=private)
        self.gate = RequestGate(self.name) if clock is None else RequestGate(self.name, clock)
        #: The credential values, only to scrub them from messages.
        self._secrets = tuple(str(getattr(self.exchange, attribute, "") or "") for attribute in ("apiKey", "secret"))
        self._loaded = False
        #: Requests sent through the gate, for /metrics.
        self.requests = 0
        self._monotonic = clock or time.monotonic
        #: Monotonic times of the requests of the last minute: the share of the rate budget used.
        self._recent: deque[float] = deque()
        #: The exchange's whole per-address budget, in requests a minute (ccxt's interval before the share).
        self.budget_per_minute = 60_000.0 / max(float(self.exchange.rateLimit) * config.rate_share, 1e-3)

    def __repr__(self) -> str:
        return f"CcxtConnection({self.config.exchange}, url={self.config.url!r})"

    def scrub(self, text: str) -> str:
        """``text`` fit for a message or a log line: no signed query strings, no credential values."""
        return scrub(text, self._secrets)

    def connect(self) -> None:
        """Load the markets and measure the clock offset, once."""
        if self._loaded:
            return
        self.call(self.exchange.load_markets)
        self.measure_clock()
        self._loaded = True

    def measure_clock(self) -> float:
        """Measure the exchange's clock against ours now (one request); returns ``clock_offset_ms``.

        Done at connect and after every stale-timestamp refusal; a daemon may also call it on a
        schedule, so a drifting host clock is corrected before the exchange refuses an order.
        """
        self.call(self.exchange.load_time_difference)
        return self.clock_offset_ms

    def snapshot(self) -> dict[str, Any]:
        """What /status and /metrics show of the connection: names and numbers, never a credential.

        ``rate_share`` is this executor's configured share of the address's request budget;
        ``rate_share_used`` how much of that share the requests of the last minute used (1.0: all of it).
        """
        share = self.config.rate_share
        return {"exchange": self.name, "url": self.config.url, "clock_offset_ms": self.clock_offset_ms,
                "requests": self.requests, "held_back_seconds": self.gate.seconds_left,
                "held_back_total_seconds": self.gate.held_back_total, "rate_share": share,
                "rate_share_used": self.requests_last_minute() / (self.budget_per_minute * share)}

    def requests_last_minute(self) -> int:
        """Requests sent in the last 60 seconds."""
        horizon = self._monotonic() - 60.0
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
        return len(self._recent)

    @property
    def clock_offset_ms(self) -> float:
        """The exchange's clock minus ours, in ms, as last measured (0 before connect): for /status and /metrics."""
        return -float(self.exchange.options.get("timeDifference") or 0)

    def now_ms(self) -> int:
        """The exchange's time by our clock corrected with the measured offset."""
        return int(self.exchange.milliseconds() + self.clock_offset_ms)

    def now(self) -> datetime:
        """``now_ms`` as a datetime."""
        return datetime.fromtimestamp(self.now_ms() / 1000, UTC)

    def market(self, symbol: str, quote: str | None = None) -> str | None:
        """The ccxt market symbol for ``symbol``: itself, the exchange's market id, ``symbol/quote``, or the one
        market whose base asset ``symbol`` is.

        The last is for strategies that name what they trade without a quote (``instruments = ["AAPL", "GOOG"]``):
        on an exchange where exactly one market trades it, that market is the only thing the name can mean; where
        several do (BTC/USDT, BTC/EUR, ...), None, and the caller's error names them (``markets_of``) and asks for
        one by its full name.
        """
        self.connect()
        markets = self.exchange.markets or {}
        if symbol in markets:
            return symbol
        by_id = self.exchange.markets_by_id or {}
        if symbol in by_id:
            return str(by_id[symbol][0]["symbol"])
        if quote:
            return f"{symbol}/{quote}" if f"{symbol}/{quote}" in markets else None
        based = self.markets_of(symbol)
        return based[0] if len(based) == 1 else None

    def markets_of(self, base: str) -> list[str]:
        """The ccxt symbols of the markets whose base asset is ``base`` (BTC: BTC/USDT, BTC/EUR, ...), sorted."""
        self.connect()
        return sorted(str(name) for name, market in (self.exchange.markets or {}).items() if market.get("base") == base)

    def call(self, function: Callable[..., T], *args: Any, submitting: bool = False,
              answers: tuple[type[BaseException], ...] = (), **kwargs: Any) -> T:
        """One exchange call through the gate; ccxt's failures become TemporaryError, or VenueFailure (a crash).

        A refusal of an order while submitting, and the exceptions in ``answers`` (OrderNotFound
        for a lookup), are re-raised as ccxt raised them, for the caller to read as an answer.
        An InvalidNonce (our timestamp outside the exchange's window) measures the offset again
        and tries once more: the exchange refused the request unread, so even a submit is safe
        to repeat.
        """
        import ccxt

        for attempt in (1, 2):
            self.gate.check()
            self.requests += 1
            self._recent.append(self._monotonic())
            try:
                return function(*args, **kwargs)
            except ccxt.InvalidNonce as error:
                if attempt == 1:
                    self.measure_clock()  # then once more, with the corrected timestamp
                    continue
                raise self._translate(error, submitting=submitting) from None
            except answers:
                raise
            except ccxt.BaseError as error:
                translated = self._translate(error, submitting=submitting)
                if translated is error:
                    raise
                raise translated from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(self, error: BaseException, *, submitting: bool) -> BaseException:
        meaning = classify(error, submitting=submitting)
        text = f"{self.name}: {type(error).__name__}: {self.scrub(str(error))}"
        if meaning is Meaning.rejected:
            return error
        if meaning is Meaning.crash:
            return VenueFailure(text)
        status = _ban_status(error)
        if status is not None:
            headers = self.exchange.last_response_headers or {}
            retry_after = _seconds(headers.get("Retry-After")) or DEFAULT_RETRY_AFTER[status]
            until = _BANNED_UNTIL.search(str(error))
            if status == 418 and until:  # Binance names the ban's end in ms: trust the later of the two
                retry_after = max(retry_after, (int(until.group(1)) - self.now_ms()) / 1000)
            what = "address banned (418)" if status == 418 else "rate limited (429)"
            self.gate.shut(retry_after, what)
            return RateLimitedError(f"{text} — {what}, retry after {retry_after:.0f} s", retry_after)
        return TemporaryError(text)

    # -- instruments --------------------------------------------------------------------------------


def _ban_status(error: BaseException) -> int | None:
    """418 or 429 when the exception is ccxt's answer to one (ccxt puts the status in the message)."""
    if not any(cls.__name__ in ("DDoSProtection", "RateLimitExceeded") for cls in type(error).__mro__):
        return None
    found = _STATUS_IN_MESSAGE.search(str(error))
    # Binance's -2015 after a first success also comes as DDoSProtection, without a status: not a ban we can time.
    return int(found.group(1)) if found else None


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None

