"""The simulator's settings: its markets with their filters, fees, spread, balances and limits, validated once.

Amounts are ``Decimal`` because Binance speaks in decimal strings (``"0.00100000"``) and a
balance must come out exact after thousands of fills. The credentials are held here, in memory
only: they are kept out of ``repr`` and never sent or logged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from tradeexecutor.config import check_settings, setting, split_list
from tradeexecutor.errors import ConfigError

#: How commission is charged: in the asset the trade brings in (Binance's default without BNB:
#: the base on a buy, the quote on a sell), or always in the quote, or always in the base.
FEE_ASSETS = ("received", "quote", "base", "bnb")
#: The asset ``--fee-asset bnb`` charges commission in (Binance's "pay fees with BNB").
BNB = "BNB"

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


def _option_decimal(option: str) -> Callable[[object], Decimal]:
    """A parser of the option's text as a Decimal, whose errors name the option."""

    def parse(value: object) -> Decimal:
        return decimal(value, option)

    return parse


def parse_balances(values: object) -> dict[str, Decimal]:
    """``("USDT=1000", "BTC=0.5")`` → amounts by asset; a ConfigError says how to write one."""
    result: dict[str, Decimal] = {}
    for value in split_list(values):
        asset, separator, amount = value.partition("=")
        if not separator or not asset.strip():
            raise ConfigError(f"--balance {value!r} must be ASSET=AMOUNT, such as USDT=10000")
        result[asset.strip().upper()] = decimal(amount, f"--balance {asset.strip()}")
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
    fee_rate: Decimal = setting(Decimal("0.001"), flag="--fee", env="SIM_FEE", parse=_option_decimal("--fee"),
                                text_default="0.001",
                                help="Commission as a fraction of the traded amount (0.001 = 0.1 %).")
    fee_asset: str = setting("received", env="SIM_FEE_ASSET", choices=FEE_ASSETS,
                             help="Charge commission in the asset received (Binance's default), always the quote, "
                                  "always the base, or in BNB (its value at the BNB/QUOTE market's last price, while "
                                  "the account holds enough BNB; the asset received otherwise).")
    spread_bps: Decimal = setting(Decimal("2"), env="SIM_SPREAD_BPS", parse=_option_decimal("--spread-bps"),
                                  text_default="2",
                                  help="Bid-ask spread in basis points; market orders pay half of it.")
    balances: Mapping[str, Decimal] = setting(
        factory=lambda: MappingProxyType({}), flag="--balance", env="SIM_BALANCE", multiple=True,
        parse=parse_balances,
        help="Starting free balance ASSET=AMOUNT, repeatable. Default: 10000 of each quote asset.")
    weight_limit: int = setting(6000, env="SIM_WEIGHT_LIMIT",
                                help="Request weight an IP may use per minute before 429 (Binance: 6000).")
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
        if self.fee_asset == "bnb":
            pairs = {market.pair for market in self.markets}
            missing = sorted({f"{BNB}/{m.quote}" for m in self.markets if m.quote != BNB} - pairs)
            if missing:
                raise ConfigError(f"--fee-asset bnb values each fee at a BNB market's price: add "
                                  f"{', '.join(missing)} to --symbols")
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

    data: tuple[str, ...] = setting((), env="SIM_DATA", multiple=True, parse=split_list,
                                    help="Bundled dataset or candle files to replay. Default: eurusd-hourly (unless "
                                         "--random-walk).")
    pairs: tuple[str, ...] = setting(
        (), flag="--symbols", env="SIM_SYMBOLS", multiple=True, parse=split_list,
        help="Markets as BASE/QUOTE, repeatable or comma-separated; each replays the data symbol BASEQUOTE or BASE. "
             "Default: every symbol of the bundled data (EURUSD as EUR/USD), or BTC/USDT.")
    speed: float | None = setting(None, env="SIM_SPEED", kind=float, above=0,
                                  help="Seconds of history replayed per second (3600 plays hourly bars as 1-second "
                                       "candles). Default: one recorded bar per second.")
    history: int = setting(1000, env="SIM_HISTORY", minimum=0, maximum=100_000, help="Bars already closed at start, for clients' warm-up.")
    random_walk_seed: int | None = setting(None, flag="--random-walk", env="SIM_RANDOM_WALK", kind=int,
                                           help="Price the markets with a seeded random walk of 1-second bars instead "
                                                "of replaying data.")
    start_price: float = setting(100.0, env="SIM_START_PRICE", above=0, help="First price of the random walk.")
    volatility: float = setting(0.0005, env="SIM_VOLATILITY", minimum=0, maximum=0.1,
                                help="Random walk: standard deviation of each 1-second log return.")
    min_notional: Decimal = setting(Decimal("5"), env="SIM_MIN_NOTIONAL", parse=_option_decimal("--min-notional"),
                                    text_default="5", help="Smallest order value in the quote asset (NOTIONAL filter).")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.random_walk_seed is not None and self.data:
            raise ConfigError("give --data or --random-walk, not both")
        if self.min_notional < 0:
            raise ConfigError(f"--min-notional {self.min_notional} must not be negative")
        for pair in self.pairs:
            parse_pair(pair)


#: The variables holding the API key and secret clients use, unless the options name others.
DEFAULT_KEY_ENV = "TRADEEXECUTOR_SIM_API_KEY"
DEFAULT_SECRET_ENV = "TRADEEXECUTOR_SIM_API_SECRET"


@dataclass(frozen=True)
class SimServerConfig:
    """Where the simulator listens and which environment variables hold the credentials clients sign with."""

    host: str = setting("127.0.0.1", env="SIM_HOST",
                        help="Interface to listen on (the control API answers loopback clients only).")
    port: int = setting(8765, env="SIM_PORT", minimum=0, maximum=65535,
                        help="Port to listen on (0: any free port; the URL is printed).")
    api_key_env: str = setting(DEFAULT_KEY_ENV, env="SIM_API_KEY_ENV",
                               help="Environment variable holding the API key clients send (letters and digits).")
    api_secret_env: str = setting(DEFAULT_SECRET_ENV, env="SIM_API_SECRET_ENV",
                                  help="Environment variable holding the secret clients sign with (HMAC-SHA256).")
    threads: int = setting(4, env="SIM_THREADS", minimum=1, maximum=64, help="Worker threads serving requests.")

    def __post_init__(self) -> None:
        check_settings(self)
