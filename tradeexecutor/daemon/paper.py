"""Paper (and live) trading on an exchange's live prices: the candles, the instruments and the fees come from the exchange.

``--mode paper --exchange NAME`` builds, at start-up and before anything is written:

1. one public ccxt connection (no credentials: paper trading sends no order), pointed at
   ``--exchange-url`` when given;
2. the strategy's candles from the exchange's public OHLCV (:class:`CcxtCandleSource`), at the
   strategy's bar frequency (its cycle duration unless it reads another; both shortened alike by an
   operator's ``--cycle-duration``, ``strategy.loader.with_cycle_duration``): the warm-up history is
   the exchange's latest closed candles (up to :data:`WARM_UP_CANDLES`), so indicators have values
   at the first cycle;
3. each instrument's lot step and minimum notional from the exchange's markets, and the
   exchange's taker fee, which replace the configured ones: a simulated fill is sized, refused and
   charged as the exchange would;
4. the feed (:class:`ExchangeFeed`): a FollowFeed whose new candles are the exchange's closed
   candles, so the market grows as candles close and cycles come from the clock. The cycle job
   wakes :func:`poll_period` often but asks the exchange only once a candle should have closed.

``--mode live`` builds the same, over a private connection, and the engine sends its orders to the
exchange through that connection's venue (``Engine.live_venue``): the exchange prices and fills them.

In paper mode fills are simulated by the engine's simulated venue at the exchange's prices: an order decided after
a candle closes fills at the next candle's open (``next_open``), the price the exchange traded at
when the decision was made, or at the deciding candle's close (``close``). A network failure while
polling is a TemporaryError from the connection (the loop boundary retries it); the connection's
figures (clock offset, requests, seconds held back, rate share used) go to RunState after each poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pandas as pd

from tradeexecutor.backtest.session import Checkpoint, Session
from tradeexecutor.config import EngineConfig
from tradeexecutor.data.follow import FollowFeed
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import ConfigError, DataError, StateError
from tradeexecutor.runstate import RunState
from tradeexecutor.settings import PAPER_NEEDS_EXCHANGE, REPLAY_HINT, DaemonConfig
from tradeexecutor.state import State
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy, with_cycle_duration
from tradeexecutor.timeframe import format_duration, utc_timestamp
from tradeexecutor.venue.ccxt_candles import CcxtCandleSource
from tradeexecutor.venue.ccxt_connection import CcxtConnection
from tradeexecutor.venue.ccxt_venue import CcxtVenue
from tradeexecutor.venue.model import InstrumentSpec

__all__ = ["CANDLE_WINDOW", "WARM_UP_CANDLES", "ExchangeCandles", "ExchangeFeed", "PaperMarket", "candles",
           "check_one_quote", "check_paper_state", "check_state_quotes", "cycles_description",
           "open_paper_session", "poll_period", "prices_description", "rehearsal_warning"]

logger = logging.getLogger("tradeexecutor.daemon")

#: Closed candles fetched at start-up as the warm-up history (Binance serves at most 1000 klines a request).
WARM_UP_CANDLES = 1000
#: Bars the running feed keeps in memory: the warm-up's, what a restart would load. The feed drops the oldest
#: once it holds twice this many, so it holds 1,000-2,000 bars (about 170 KB a symbol) instead of a bar a cycle
#: for ever, and ctx history and the indicators see at least the last 1,000 bars, as after a restart.
CANDLE_WINDOW = WARM_UP_CANDLES


def poll_period(timeframe: timedelta) -> timedelta:
    """How often the cycle job wakes in paper mode: a quarter candle, between 0.25 s and 15 s.

    Waking costs no request until a candle should have closed (``CcxtCandleSource.due``); then the
    first wake after the close asks, and a candle the exchange publishes late is asked for again
    at the next wake.
    """
    return min(max(timeframe / 4, timedelta(seconds=0.25)), timedelta(seconds=15))


def prices_description(config: DaemonConfig) -> str:
    """Where the prices come from, in words (RunState.prices: /status, the dashboard and the wallboard)."""
    if config.mode in ("paper", "live"):
        exchange = config.exchange
        return f"{exchange.exchange} live prices" + (f" via {exchange.url}" if exchange.url else "")
    data = ", ".join(config.feed.data) if config.feed.data else "bundled data"
    return f"historical candles ({data}{', followed' if config.feed.follow else ''})"


def rehearsal_warning(config: DaemonConfig) -> str | None:
    """The warning for ``--cycle-duration`` on the exchange itself (no ``--exchange-url``), else None.

    Shortened cycles are for rehearsing on a simulator or testnet: on the real exchange a strategy written for
    days would trade on its seconds-long noise. Not refused — an operator may watch a paper run on real prices
    so — but said at start-up.
    """
    if config.cycle_duration is None or config.exchange.url is not None:
        return None
    return (f"--cycle-duration {config.cycle_duration} on {config.exchange.exchange} itself (no --exchange-url): "
            "shortened cycles are for rehearsals on a simulator or testnet; the strategy's own cycles are what it "
            "was written for")


def cycles_description(strategy: LoadedStrategy) -> str:
    """``1h cycles``, or ``1s cycles (the strategy declares 1h; --cycle-duration)`` when an operator shortened them."""
    cycles = f"{format_duration(strategy.cycle_duration)} cycles"
    if strategy.declared_cycle_duration is None:
        return cycles
    return f"{cycles} (the strategy declares {format_duration(strategy.declared_cycle_duration)}; --cycle-duration)"


class ExchangeCandles:
    """The exchange's newly closed candles as a FollowFeed tail: asks only when one is due, reports the figures."""

    def __init__(self, source: CcxtCandleSource, report: Callable[[], None]) -> None:
        self.source = source
        self.report = report
        #: Named in a DataError about these candles.
        self.path = f"{source.connection.name} {source.timeframe} klines"

    def read(self) -> pd.DataFrame | None:
        """The candles closed since the last read, or None; TemporaryError when the exchange cannot be reached."""
        try:
            return self.source.poll() if self.source.due() else None
        finally:
            self.report()


class ExchangeFeed(FollowFeed):
    """Delivers the warm-up's newest candle, then each candle as the exchange closes it (never finishes)."""

    def __repr__(self) -> str:
        return f"ExchangeFeed(cursor={self._cursor}, bars={len(self.market)})"


@dataclass
class PaperMarket:
    """What paper mode reads from the exchange at start-up: the session, the instruments, the fee, the source."""

    session: Session
    connection: CcxtConnection
    source: CcxtCandleSource
    specs: dict[str, InstrumentSpec]
    #: The exchange's taker fee (the highest of the strategy's markets).
    fee: float
    #: The venue over the same connection: where live mode sends its orders (paper mode reads instruments only).
    venue: CcxtVenue

    def engine_config(self, engine: EngineConfig) -> EngineConfig:
        """The configured engine settings with the exchange's taker fee."""
        return replace(engine, execution=replace(engine.execution, fee=self.fee))

    def apply_instruments(self, state: State, asset_types: Mapping[str, str]) -> None:
        """Register (or update) each instrument with the exchange's lot step, minimum notional and quote."""
        for symbol, spec in self.specs.items():
            instrument = state.add_instrument(symbol, asset_types.get(symbol, "crypto"), spec.lot_step,
                                              spec.min_notional)
            instrument.quantity_step = spec.lot_step
            instrument.min_notional = spec.min_notional
            instrument.quote_currency = spec.quote

    def feed(self, runstate: RunState, *, monotonic: Callable[[], float]) -> ExchangeFeed:
        """The feed over the warm-up market, starting at its newest candle, reporting the figures to ``runstate``."""
        market = self.session.market

        def report() -> None:
            # candle_lag_seconds: how long after its close the newest candle arrived (by the exchange's clock).
            runstate.update(venue={**self.connection.snapshot(), "candle_lag_seconds": self.source.lag_seconds})

        report()
        return ExchangeFeed(market, [ExchangeCandles(self.source, report)], start=len(market) - 1,
                            monotonic=monotonic, window=CANDLE_WINDOW)


def open_paper_session(config: DaemonConfig, *, checkpoint: Checkpoint,
                       environ: Mapping[str, str] | None = None) -> PaperMarket:
    """Load the strategy, then its warm-up candles, instruments and fee from the exchange.

    Paper mode uses the public API only. Live mode's connection is private: the credentials are read
    from the variables ``environ`` (default ``os.environ``) holds under the configured names — a missing
    one is a ConfigError before any candle is asked for — and the one connection serves candles and
    orders, so they share the rate budget and the clock offset.
    """
    if config.exchange.exchange is None:
        raise ConfigError(PAPER_NEEDS_EXCHANGE)
    strategy = load_strategy(config.strategy_file, config.params)
    if config.cycle_override is not None:
        strategy = with_cycle_duration(strategy, config.cycle_override)
        warning = rehearsal_warning(config)
        if warning:
            logger.warning("%s", warning)
    checkpoint("the strategy was loaded")
    frequency = strategy.bar_frequency or strategy.cycle_duration
    timeframe = format_duration(frequency)
    symbols = tuple(strategy.instruments)
    connection = CcxtConnection(replace(config.exchange, symbols=symbols), environ=environ,
                                private=config.mode == "live")
    timeframes = connection.exchange.timeframes or {}
    if timeframes and timeframe not in timeframes:
        scaled = f" (--cycle-duration {config.cycle_duration})" if config.cycle_duration else ""
        raise ConfigError(f"{strategy.path}: {connection.name} has no {timeframe} candles for the strategy's "
                          f"{format_duration(frequency)} bars{scaled}; it offers {', '.join(timeframes)}")
    source = CcxtCandleSource(connection, symbols, timeframe, limit=WARM_UP_CANDLES)
    history = source.poll()
    counts = history["symbol"].value_counts() if history is not None else pd.Series(dtype=int)
    few = {symbol: int(counts.get(symbol, 0)) for symbol in symbols if counts.get(symbol, 0) < 2}
    if history is None or few:  # bar times need two candles: a market younger than two bars (a new simulator)
        closed = " and ".join(f"{candles(count, timeframe)} of {symbol}" for symbol, count in few.items())
        raise DataError(f"{connection.name} has closed {closed} (the strategy's bars are {timeframe}; two are needed "
                        "to start): try again once more have closed, or give the strategy bars the exchange has "
                        "history of (--cycle-duration runs it on shorter cycles and bars)")
    asset_types = {symbol: strategy.asset_types.get(symbol) or "crypto" for symbol in symbols}
    market = MarketData.from_long_frame(history, frequency, asset_types, symbols=symbols)
    checkpoint("the exchange's candles were loaded")
    venue = CcxtVenue(connection.config, connection)
    specs = venue.instruments(symbols)
    check_one_quote(specs, connection.name, str(strategy.path))
    fee = max(_taker_fee(connection, symbol) for symbol in symbols)
    logger.info("%s: %d warm-up %s candles of %s; taker fee %g; %s", connection.name, len(market), timeframe,
                ", ".join(symbols), fee, "; ".join(f"{s}: lot {p.lot_step:g}, tick {p.tick_size:g}, "
                                                   f"min notional {p.min_notional:g}" for s, p in specs.items()))
    session = Session(strategy=strategy, market=market, asset_types=asset_types)
    return PaperMarket(session=session, connection=connection, source=source, specs=specs, fee=fee, venue=venue)


def check_one_quote(specs: Mapping[str, InstrumentSpec], exchange: str, where: str) -> None:
    """Refuse instruments whose markets are priced in different currencies, naming each one's market.

    A portfolio holds one cash: bought in USDT and USD at once, its cash would match neither balance, and the
    reconciliation (which compares the cash with the one quote's balance) could not say so. A bare symbol is the
    one market of its base (``CcxtConnection.market``), so the quote can differ per symbol without anyone
    having written it; written out in full, the operator may have mixed them too.
    """
    quotes = {spec.quote for spec in specs.values()}
    if len(quotes) > 1:
        markets = ", ".join(f"{symbol}: {spec.base}/{spec.quote}" for symbol, spec in specs.items())
        raise ConfigError(f"{where}: its instruments are priced in {' and '.join(sorted(quotes))} on {exchange} "
                          f"({markets}); a portfolio has one cash: name markets of one quote in full "
                          "(BASE/QUOTE) in the strategy's instruments")


def check_state_quotes(state: State, specs: Mapping[str, InstrumentSpec], exchange: str, where: str) -> None:
    """Refuse a state whose instrument was traded in another currency than its market is priced in now.

    The state's cash is in the quote its instruments had; a bare symbol whose one market changed (GOOG/USD
    delisted, GOOG/USDT listed) would otherwise carry that cash over as if it were in the new currency.
    """
    for symbol, spec in specs.items():
        instrument = state.instrument_by_symbol(symbol)
        if instrument is not None and instrument.quote_currency != spec.quote:
            raise StateError(f"{where} traded {symbol} in {instrument.quote_currency}, but {exchange}'s {symbol} "
                             f"market is {spec.base}/{spec.quote} now: its cash is not in {spec.quote}; name the "
                             f"{instrument.quote_currency} market in full or use another --state-dir")


def candles(count: int, timeframe: str) -> str:
    """``1 1h candle``, ``0 1h candles``: a count of candles in words."""
    return f"{count} {timeframe} candle{'' if count == 1 else 's'}"


def _taker_fee(connection: CcxtConnection, symbol: str) -> float:
    """The exchange's taker fee of one market (what a market order pays), 0 when the exchange gives none."""
    market: dict[str, Any] = connection.exchange.markets[connection.market(symbol)]
    return float(market.get("taker") or 0.0)


def check_paper_state(state: State, market: MarketData, where: str) -> None:
    """Refuse a state whose last bar is older than the exchange's warm-up history, with the line about modes.

    Such a state was written by a replay of historical candles (what ``--mode paper`` meant before
    it meant live prices), or by a paper run stopped for longer than the warm-up history spans:
    either way it cannot continue on the exchange's candles.
    """
    if state.last_bar_at is None:
        return
    first = int(market.timeline_ns[0])
    if utc_timestamp(state.last_bar_at).value < first:
        raise ConfigError(f"{where}: its last bar closes {utc_timestamp(state.last_bar_at)}, before the exchange's "
                          f"earliest warm-up candle ({pd.Timestamp(first, tz='UTC')}); {REPLAY_HINT}, or give "
                          "--mode paper a new --state-dir")
