"""The simulator's settings: its markets with their filters, fees, spread, balances and limits, validated once.

Amounts are ``Decimal`` because Binance speaks in decimal strings (``"0.00100000"``) and a
balance must come out exact after thousands of fills. The credentials are held here, in memory
only: they are kept out of ``repr`` and never sent or logged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from tradeexecutor.errors import ConfigError

#: How commission is charged: in the asset the trade brings in (Binance's default without BNB:
#: the base on a buy, the quote on a sell), or always in the quote, or always in the base.
FEE_ASSETS = ("received", "quote", "base")

#: Binance's alphabet and length for client order ids.
CLIENT_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")

#: Decimals of every amount Binance reports (base, quote and commission precision).
AMOUNT_DECIMALS = 8

_ASSET = re.compile(r"^[A-Z0-9]{2,12}$")


def decimal(value: object, what: str) -> Decimal:
    """``value`` as a finite Decimal, or a ConfigError naming ``what``."""
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return result


def _decimals(value: Decimal) -> int:
    """Digits after the point of ``value`` written without trailing zeros."""
    return max(0, -int(value.normalize().as_tuple().exponent))


@dataclass(frozen=True)
class MarketSpec:
    """One spot market and its filters, as exchangeInfo reports them."""

    #: Asset bought and sold, such as ``EUR``.
    base: str
    #: Asset prices are quoted in, such as ``USD``.
    quote: str
    #: Smallest price step (PRICE_FILTER tickSize).
    tick_size: Decimal
    #: Smallest quantity step (LOT_SIZE stepSize); also the minimum quantity.
    step_size: Decimal
    #: Smallest order value in the quote asset (NOTIONAL minNotional).
    min_notional: Decimal = Decimal("5")
    #: Largest quantity of one order (LOT_SIZE maxQty).
    max_qty: Decimal = Decimal("9000000")
    #: Highest price accepted (PRICE_FILTER maxPrice).
    max_price: Decimal = Decimal("1000000")
    #: Open orders allowed at once (MAX_NUM_ORDERS).
    max_open_orders: int = 200
    #: Symbol of the candles that drive this market; defaults to ``base + quote``.
    data_symbol: str = ""

    def __post_init__(self) -> None:
        for name in ("base", "quote"):
            value = getattr(self, name)
            if not _ASSET.match(value):
                raise ConfigError(f"market asset {value!r} must be 2-12 upper-case letters or digits, such as BTC")
        if self.base == self.quote:
            raise ConfigError(f"market {self.base}/{self.quote} trades an asset against itself")
        for name in ("tick_size", "step_size"):
            value = getattr(self, name)
            if not (value > 0 and _decimals(value) <= AMOUNT_DECIMALS):
                raise ConfigError(f"{self.symbol} {name} {value} must be positive with at most 8 decimals")
        if _decimals(self.tick_size) + _decimals(self.step_size) > AMOUNT_DECIMALS:
            raise ConfigError(f"{self.symbol}: tick_size {self.tick_size} and step_size {self.step_size} have more "
                              "than 8 decimals together, so price x quantity would not be exact at 8 decimals")
        if self.min_notional < 0 or self.max_qty <= self.step_size or self.max_price <= self.tick_size:
            raise ConfigError(f"{self.symbol}: min_notional must be >= 0 and max_qty / max_price above one step")
        if self.max_open_orders < 1:
            raise ConfigError(f"{self.symbol}: max_open_orders must be at least 1")
        if not self.data_symbol:
            object.__setattr__(self, "data_symbol", self.symbol)

    @property
    def symbol(self) -> str:
        """Binance's market id, ``BASEQUOTE``."""
        return self.base + self.quote

    @property
    def pair(self) -> str:
        """The ccxt symbol, ``BASE/QUOTE``."""
        return f"{self.base}/{self.quote}"

    @classmethod
    def for_price(cls, pair: str, price: float, *, min_notional: Decimal = Decimal("5"),
                  data_symbol: str = "") -> MarketSpec:
        """A market for ``BASE/QUOTE`` whose tick and lot steps suit a price near ``price``.

        The tick is about a millionth of the price, and the lot step about a tenth of the
        minimum notional's quantity, so typical orders pass the filters and a careless one
        (too many decimals, too small) is caught, as on the real exchange.
        """
        base, quote = parse_pair(pair)
        if not (math.isfinite(price) and price > 0):
            raise ConfigError(f"{pair}: reference price {price!r} must be positive")
        tick_exponent = max(-AMOUNT_DECIMALS, math.floor(math.log10(price)) - 5)
        notional = float(min_notional) if min_notional > 0 else 5.0
        step_exponent = min(2, max(-AMOUNT_DECIMALS, math.floor(math.log10(notional / price)) - 1))
        return cls(
            base=base,
            quote=quote,
            tick_size=Decimal(1).scaleb(tick_exponent),
            step_size=Decimal(1).scaleb(step_exponent),
            min_notional=min_notional,
            max_price=Decimal(1).scaleb(max(2, math.ceil(math.log10(price)) + 3)),
            data_symbol=data_symbol,
        )


def parse_pair(pair: str) -> tuple[str, str]:
    """``"EUR/USD"`` → ``("EUR", "USD")``; a ConfigError says how to write one."""
    parts = pair.strip().upper().split("/")
    if len(parts) != 2 or not all(_ASSET.match(part) for part in parts):
        raise ConfigError(f"market {pair!r} must be written BASE/QUOTE, such as EUR/USD or BTC/USDT")
    return parts[0], parts[1]


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulated exchange needs besides its prices and its clock."""

    #: The markets served, in exchangeInfo order.
    markets: tuple[MarketSpec, ...]
    #: The one API key the exchange accepts (the ``X-MBX-APIKEY`` header).
    api_key: str = field(repr=False)
    #: Its HMAC-SHA256 secret.
    api_secret: str = field(repr=False)
    #: Commission as a fraction of the traded amount (0.001 = 0.1 %, Binance's base rate).
    fee_rate: Decimal = Decimal("0.001")
    #: Where commission is charged: one of FEE_ASSETS.
    fee_asset: str = "received"
    #: Distance between bid and ask in basis points of the last price; market orders pay half.
    spread_bps: Decimal = Decimal("2")
    #: Free balance of each asset at start and after a reset.
    balances: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    #: Request weight one IP may use per minute before 429 (Binance: 6000).
    weight_limit: int = 6000
    #: Requests an IP may send while limited before it is banned (418).
    ban_after: int = 5
    #: Seconds an IP stays banned.
    ban_seconds: int = 120
    #: Closed orders kept (oldest dropped first), so a months-long run stays bounded.
    max_closed_orders: int = 100_000
    #: Trades kept (oldest dropped first).
    max_trades: int = 100_000
    #: API requests remembered for ``GET /_sim/requests``.
    request_log_size: int = 10_000

    def __post_init__(self) -> None:
        if not self.markets:
            raise ConfigError("the exchange simulator needs at least one market")
        symbols = [market.symbol for market in self.markets]
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"markets repeat a symbol: {', '.join(symbols)}")
        if not self.api_key or not self.api_secret:
            raise ConfigError("the exchange simulator needs an API key and secret")
        if not (self.api_key.isascii() and self.api_key.isalnum() and len(self.api_key) <= 128):
            raise ConfigError("the exchange simulator's API key must be ASCII letters and digits (as Binance's are), "
                              "at most 128 of them")
        if not Decimal(0) <= self.fee_rate < Decimal("0.1"):
            raise ConfigError(f"fee {self.fee_rate} must be a fraction between 0 and 0.1 (0.001 = 0.1 %)")
        if self.fee_asset not in FEE_ASSETS:
            raise ConfigError(f"fee asset {self.fee_asset!r} must be one of {', '.join(FEE_ASSETS)}")
        if not Decimal(0) <= self.spread_bps < Decimal(1000):
            raise ConfigError(f"spread {self.spread_bps} bps must be between 0 and 1000")
        for asset, amount in self.balances.items():
            if not _ASSET.match(asset) or amount < 0:
                raise ConfigError(f"balance {asset}={amount}: asset must be upper-case, amount zero or more")
        if min(self.weight_limit, self.ban_after, self.ban_seconds, self.max_closed_orders, self.max_trades,
               self.request_log_size) < 1:
            raise ConfigError("weight limit, ban settings and record sizes must be at least 1")
        object.__setattr__(self, "balances", MappingProxyType(dict(self.balances)))

    def market(self, symbol: str) -> MarketSpec | None:
        """The market with Binance id ``symbol``, or None."""
        for market in self.markets:
            if market.symbol == symbol:
                return market
        return None

    @property
    def assets(self) -> tuple[str, ...]:
        """Every asset of the markets and balances, sorted."""
        names = {market.base for market in self.markets} | {market.quote for market in self.markets}
        return tuple(sorted(names | set(self.balances)))


@dataclass(frozen=True)
class PriceConfig:
    """Where the simulated prices come from: recorded candles replayed on the clock, or a seeded random walk."""

    #: Bundled dataset names or candle files; empty: ``eurusd-hourly`` (unless a random walk is asked for).
    data: tuple[str, ...] = ()
    #: Markets as ``BASE/QUOTE``; empty: one per data symbol (EURUSD → EUR/USD, GOOG → GOOG/USD), or BTC/USDT.
    pairs: tuple[str, ...] = ()
    #: Seconds of history replayed per second; None: one recorded bar per second, whatever its length.
    speed: float | None = None
    #: Bars already closed when the simulator starts, for clients' warm-up.
    history: int = 1000
    #: Seed of the random walk; None: replay candles.
    random_walk_seed: int | None = None
    #: The random walk's first price.
    start_price: float = 100.0
    #: The random walk's volatility per 1-second bar (log-return standard deviation).
    volatility: float = 0.0005
    #: The smallest order value, in the quote asset, of every market.
    min_notional: Decimal = Decimal("5")

    def __post_init__(self) -> None:
        if self.speed is not None and not (math.isfinite(self.speed) and self.speed > 0):
            raise ConfigError(f"--speed {self.speed} must be a positive number of seconds of history per second")
        if not 0 <= self.history <= 100_000:
            raise ConfigError(f"--history {self.history} must be between 0 and 100000 bars")
        if not (math.isfinite(self.start_price) and self.start_price > 0):
            raise ConfigError(f"--start-price {self.start_price} must be positive")
        if not (math.isfinite(self.volatility) and 0 <= self.volatility < 0.1):
            raise ConfigError(f"--volatility {self.volatility} must be between 0 and 0.1")
        if self.random_walk_seed is not None and self.data:
            raise ConfigError("give --data or --random-walk, not both")
        if self.min_notional < 0:
            raise ConfigError(f"--min-notional {self.min_notional} must not be negative")
        for pair in self.pairs:
            parse_pair(pair)
