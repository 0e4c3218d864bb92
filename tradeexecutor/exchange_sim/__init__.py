"""A local exchange simulator that speaks Binance's spot REST API, for rehearsals and for the tests of the ccxt venue.

An unmodified exchange client (ccxt's ``binance`` class, with every API URL pointed at it) loads
markets, reads tickers and klines, signs requests, places, queries and cancels orders, and sees
Binance's errors, while a control API on ``/_sim/`` injects faults (latency, 5xx, maintenance,
429, 418 bans, timeouts after an order was accepted, partial fills, rejections, clock skew, an
order lookup or a trade list lagging) and
reads back the simulator's own record of orders, trades and balances.

Layer 2 of docs/architecture.md: it imports only lower layers (data for candles and the random
walk, errors) and waitress, and nothing in the package imports it; the venue reaches it over
HTTP, like any exchange. Modules, one job each:

``config``      markets with their filters, fees, spread, balances, limits (SimConfig, MarketSpec)
``prices``      the price path: candles replayed on the clock, or a seeded random walk; pins
``klines``      Binance's kline intervals and windows over the path
``numbers``     8-decimal amounts, steps, strict parameter parsing
``filters``     PRICE_FILTER, LOT_SIZE, NOTIONAL, MAX_NUM_ORDERS
``accounts``    free and locked balances
``orders``      the order state machine and Binance's JSON shapes
``matching``    market and limit orders against the path, partial fills, client order ids
``faults``      injected faults and their scope and life
``ratelimit``   request weight per IP and minute; 429 and 418
``auth``        API key, HMAC-SHA256 signature, timestamp and recvWindow
``errors``      Binance's error replies
``api``         the REST endpoints
``control``     the /_sim control API
``app``         the WSGI app tying a request's steps together
``simulator``   ExchangeSimulator: the state behind one lock, the injected clock

Serve ``make_app(simulator)`` with any WSGI server; ``tradeexecutor exchange-sim`` runs it on
waitress. docs/exchange-simulator.md tells how to rehearse against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradeexecutor import lazy_exports

if TYPE_CHECKING:
    from tradeexecutor.exchange_sim.app import make_app
    from tradeexecutor.exchange_sim.config import MarketSpec, SimConfig
    from tradeexecutor.exchange_sim.prices import BarSeries, random_walk_series, replay_series
    from tradeexecutor.exchange_sim.simulator import ExchangeSimulator

#: Where each re-exported name lives, imported on first use: the CLI builds the simulator's options
#: from ``config`` when any command starts, and must not load numpy, pandas or pyramid then.
_EXPORTS = {"make_app": "app", "MarketSpec": "config", "SimConfig": "config", "BarSeries": "prices",
            "random_walk_series": "prices", "replay_series": "prices", "ExchangeSimulator": "simulator"}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BarSeries",
    "ExchangeSimulator",
    "MarketSpec",
    "SimConfig",
    "make_app",
    "random_walk_series",
    "replay_series",
]
