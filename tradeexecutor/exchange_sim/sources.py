"""Build the markets and their price paths from a PriceConfig: bundled or given candles, or a random walk."""

from __future__ import annotations

import math

from tradeexecutor.data.bundled import BUNDLED_DATASETS, asset_type_of
from tradeexecutor.data.source import load_market
from tradeexecutor.errors import ConfigError, DataError
from tradeexecutor.exchange_sim.config import MarketSpec, PriceConfig, parse_pair
from tradeexecutor.exchange_sim.prices import BarSeries, random_walk_series, replay_series

#: What a plain ``tradeexecutor exchange-sim`` replays.
DEFAULT_DATASET = "eurusd-hourly"


def default_pair(data_symbol: str) -> str:
    """The market a data symbol becomes: an FX pair splits in two (EURUSD → EUR/USD), anything else trades in USD."""
    symbol = data_symbol.strip().upper()
    if asset_type_of(symbol) == "fx" and len(symbol) == 6:
        return f"{symbol[:3]}/{symbol[3:]}"
    return f"{symbol}/USD"


def build_markets(config: PriceConfig, *, now_ms: int) -> tuple[tuple[MarketSpec, ...], dict[str, BarSeries]]:
    """The markets and a price path for each, their filters sized from the price at ``now_ms``."""
    if config.random_walk_seed is not None:
        pairs = config.pairs or ("BTC/USDT",)
        series: dict[str, BarSeries] = {}
        markets = []
        for number, pair in enumerate(pairs):
            path = random_walk_series(seed=config.random_walk_seed + number, now_ms=now_ms,
                                      start_price=config.start_price, volatility=config.volatility,
                                      history=config.history)
            market = MarketSpec.for_price(pair, path.price_at(now_ms), min_notional=config.min_notional)
            markets.append(market)
            series[market.symbol] = path
        return tuple(markets), series
    return _replayed(config, now_ms)


def _replayed(config: PriceConfig, now_ms: int) -> tuple[tuple[MarketSpec, ...], dict[str, BarSeries]]:
    sources = list(config.data) or [DEFAULT_DATASET]
    wanted = [_data_symbols(pair) for pair in config.pairs]
    if not wanted:
        symbols = _symbols_of(sources)
        pairs = [default_pair(symbol) for symbol in symbols]
        wanted = [(symbol,) for symbol in symbols]
    else:
        pairs = list(config.pairs)
    candidates = [name for names in wanted for name in names]
    try:
        market_data, _ = load_market(sources, candidates)
    except DataError as exc:
        if "holds none of" not in str(exc):  # load_market words this one for strategies; say it for markets
            raise
        raise DataError(f"the data holds no candles for {', '.join(pairs)} (looked for {', '.join(candidates)}); "
                        f"{str(exc).partition('(')[2].rstrip(')')}") from None
    frequency_ms = int(market_data.frequency.total_seconds() * 1000)
    bar_ms = _bar_ms(frequency_ms, config.speed)
    markets: list[MarketSpec] = []
    series: dict[str, BarSeries] = {}
    for pair, names in zip(pairs, wanted):
        symbol = next((name for name in names if name in market_data.bars), None)
        if symbol is None:
            raise DataError(f"the data holds no candles for {pair} (looked for {' or '.join(names)}; "
                            f"it has {', '.join(market_data.bars)})")
        path = replay_series(market_data.bars[symbol].frame, bar_ms=bar_ms, now_ms=now_ms, history=config.history)
        market = MarketSpec.for_price(pair, path.price_at(now_ms), min_notional=config.min_notional,
                                      data_symbol=symbol)
        markets.append(market)
        series[market.symbol] = path
    return tuple(markets), series


def _data_symbols(pair: str) -> tuple[str, ...]:
    """The data symbols that may hold a market's candles: BASEQUOTE, then BASE."""
    base, quote = parse_pair(pair)
    return (base + quote, base)


def _symbols_of(sources: list[str]) -> list[str]:
    """Every symbol of the data, for a simulator started without --symbols."""
    symbols: list[str] = []
    for source in sources:
        dataset = BUNDLED_DATASETS.get(source)
        if dataset is None:
            raise ConfigError(f"name the markets of {source} with --symbols BASE/QUOTE (such as --symbols BTC/USDT)")
        symbols.extend(s for s in dataset.symbols if s not in symbols)
    return symbols


def _bar_ms(frequency_ms: int, speed: float | None) -> int:
    """How long one recorded bar lasts on the simulator's clock: a whole number of seconds, at least one."""
    if speed is None:
        return 1000
    exact = frequency_ms / speed
    bar_ms = round(exact / 1000.0) * 1000
    if bar_ms < 1000 or not math.isclose(bar_ms, exact, rel_tol=1e-9):
        one_second = frequency_ms / 1000
        raise ConfigError(
            f"--speed {speed:g} replays each {frequency_ms // 1000} s bar in {exact / 1000:g} s; choose a speed that "
            f"gives whole seconds, at least one (such as {one_second:g} for 1 s or {one_second / 10:g} for 10 s)")
    return bar_ms
