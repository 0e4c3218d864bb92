"""CcxtCandleSource against the exchange simulator: closed candles only, each once, the lag measured, one door."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from exchange_sim_helpers import API_KEY, API_SECRET, Running, http_json, make_simulator, serve, wait_for
from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.errors import ConfigError, TemporaryError
from tradeexecutor.venue.ccxt_candles import CcxtCandleSource
from tradeexecutor.venue.ccxt_connection import CcxtConnection
from tradeexecutor.venue.ccxt_errors import RateLimitedError
from tradeexecutor.venue.ccxt_venue import CcxtVenue

pytest.importorskip("ccxt")


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(make_simulator()) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(running: Running) -> Iterator[None]:
    running.control("POST", "reset")
    yield
    running.control("POST", "reset")


def public(running: Running) -> CcxtConnection:
    return CcxtConnection(CcxtVenueConfig(exchange="binance", url=running.url), environ={}, private=False)


def test_only_closed_candles_are_delivered_each_once_and_the_lag_is_measured(running: Running) -> None:
    source = CcxtCandleSource(public(running), ["BTC/USDT", "EURUSD"], "1s", limit=50)
    first = source.poll()
    assert first is not None and set(first["symbol"]) == {"BTC/USDT", "EURUSD"}
    now = time.time()
    for _symbol, frame in first.groupby("symbol"):
        opens = [t.timestamp() for t in frame.index]
        assert opens == sorted(opens) and len(opens) == 49  # the latest 50 klines end with the forming one
        assert opens[-1] + 1 <= now + 0.5  # closed: its close time has passed
        assert all(frame["low"] <= frame[["open", "close"]].min(axis=1))
    assert source.lag_seconds is not None and 0 <= source.lag_seconds < 5
    # The exchange's own klines agree, candle for candle.
    btc_first = first[first["symbol"] == "BTC/USDT"]
    start = int(btc_first.index[0].timestamp() * 1000)
    _, raw = http_json("GET", f"{running.url}/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={start}&limit=49")
    assert [(row[0], float(row[4])) for row in raw] == [
        (int(t.timestamp() * 1000), close) for t, close in zip(btc_first.index, btc_first["close"])]
    polled: list[Any] = []  # the two markets' candles need not close at the same instant: poll until BTC's does

    def btc_polled() -> bool:
        frame = source.poll()
        polled.extend([] if frame is None else [frame[frame["symbol"] == "BTC/USDT"]])
        return any(len(part) for part in polled)

    wait_for(btc_polled, timeout=60)
    last_before = first[first["symbol"] == "BTC/USDT"].index[-1]
    btc = pd.concat(polled)
    assert len(btc) >= 1 and btc.index[0] > last_before  # nothing delivered twice
    assert (btc.index[0] - last_before).total_seconds() == 1  # and nothing skipped
    assert source.lag_seconds is not None and 0 <= source.lag_seconds < 5


def test_a_failed_poll_is_temporary_and_the_gate_is_shared_with_the_venue(running: Running) -> None:
    config = CcxtVenueConfig(exchange="binance", url=running.url, symbols=("EUR/USD",))
    connection = CcxtConnection(config, environ={"TRADEEXECUTOR_EXCHANGE_API_KEY": API_KEY,
                                                 "TRADEEXECUTOR_EXCHANGE_API_SECRET": API_SECRET})
    venue = CcxtVenue(config, connection)
    source = CcxtCandleSource(connection, ["EUR/USD"], "1s")
    assert source.poll() is not None
    running.control("POST", "faults", {"kind": "error", "status": 503, "count": 1})
    with pytest.raises(TemporaryError):
        wait_for(lambda: source.poll() is not None, timeout=60)
    running.control("POST", "faults", {"kind": "rate_limit", "retry_after": 30, "count": 1})
    with pytest.raises(RateLimitedError):
        venue.balances()
    sent = len(running.requests())
    with pytest.raises(RateLimitedError):
        source.poll()  # the venue's 429 holds the candles back too: one address, one budget
    assert len(running.requests()) == sent


def test_a_poll_that_fails_half_way_loses_no_candle(running: Running) -> None:
    source = CcxtCandleSource(public(running), ["BTC/USDT", "EURUSD"], "1s", limit=50)
    first = source.poll()
    assert first is not None
    last_before = {symbol: frame.index[-1] for symbol, frame in first.groupby("symbol")}
    # BTC/USDT's klines answer, then EURUSD's fail: the poll is temporary and BTC's new candles are not used up.
    wait_for(source.due, timeout=60)
    running.control("POST", "faults", {"kind": "error", "status": 503, "count": 1, "path": "/api/v3/klines",
                                       "symbol": "EURUSD"})
    with pytest.raises(TemporaryError):
        source.poll()
    polled: list[pd.DataFrame] = []

    def both_polled() -> bool:
        frame = source.poll()
        polled.extend([] if frame is None else [frame])
        return bool(polled) and {"BTC/USDT", "EURUSD"} <= set(pd.concat(polled)["symbol"])

    wait_for(both_polled, timeout=60)
    for symbol, frame in pd.concat(polled).groupby("symbol"):
        assert (frame.index[0] - last_before[symbol]).total_seconds() == 1, f"{symbol}: a candle was skipped"


def test_a_symbol_the_exchange_does_not_list_is_a_config_error(running: Running) -> None:
    with pytest.raises(ConfigError, match="does not list NOPE"):
        CcxtCandleSource(public(running), ["NOPE"], "1m").poll()


def test_a_symbol_without_a_quote_is_the_one_market_of_that_base(running: Running) -> None:
    """``BTC`` and ``EUR`` (a strategy's ``instruments = ["BTC"]``): the simulator lists one market of each base, so
    that market is what the name means; a name that is no market's base stays refused."""
    connection = public(running)
    assert (connection.market("BTC"), connection.market("EUR")) == ("BTC/USDT", "EUR/USD")
    assert connection.market("USD") is None and connection.market("BTC", "USD") is None  # a quote asked is kept to
    frame = CcxtCandleSource(connection, ["BTC"], "1s", limit=5).poll()
    assert frame is not None and set(frame["symbol"]) == {"BTC"}


def test_a_symbol_without_a_quote_that_several_markets_trade_is_refused() -> None:
    """With BTC/USDT and BTC/USD both listed, ``BTC`` could mean either: refused, naming both to choose from."""
    from decimal import Decimal

    from exchange_sim_helpers import Clock
    from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig
    from tradeexecutor.exchange_sim.prices import random_walk_series

    clock = Clock()
    now = int(clock() * 1000)
    series = {name.replace("/", ""): random_walk_series(seed=i, now_ms=now, start_price=30_000)
              for i, name in enumerate(("BTC/USDT", "BTC/USD"))}
    config = SimConfig(markets=(MarketSpec.for_price("BTC/USDT", 30_000), MarketSpec.for_price("BTC/USD", 30_000)),
                       api_key=API_KEY, api_secret=API_SECRET,
                       balances={"USD": Decimal(10_000), "USDT": Decimal(10_000), "BTC": Decimal(0)})
    with serve(ExchangeSimulator(config, series, clock=clock)) as two:
        connection = public(two)
        assert connection.market("BTC") is None and connection.market("BTCUSD") == "BTC/USD"
        assert connection.markets_of("BTC") == ["BTC/USD", "BTC/USDT"]
        with pytest.raises(ConfigError) as error:
            CcxtCandleSource(connection, ["BTC"], "1s").poll()
        assert str(error.value) == (f"BTC is no market of {connection.name}'s, and several trade it (BTC/USD, "
                                    "BTC/USDT); name one in full, such as BTC/USD")
