"""Shared by the exchange simulator's tests: a simulator on a real waitress server, a movable clock, a ccxt client.

The ccxt client is the unmodified ``ccxt.binance`` class with every API base URL pointed at the
simulator (scheme and host replaced, path kept) and told to load spot markets only, skip
currencies and margin pairs: exactly what the ccxt venue will configure for ``--exchange-url``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tradeexecutor.data import load_bundled
from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig, make_app
from tradeexecutor.exchange_sim.prices import BarSeries, random_walk_series, replay_series
from tradeexecutor.webhook import WebhookServer

API_KEY = "SimKey0123456789abcdef"
API_SECRET = "sim-secret-0123456789-abcdef"

#: ccxt options that keep the binance class on spot endpoints only.
SPOT_ONLY: dict[str, Any] = {
    "defaultType": "spot",
    "fetchMarkets": {"types": ["spot"]},  # not linear/inverse: no fapi/dapi calls
    "fetchCurrencies": False,  # no sapi/v1/capital/config/getall
    "fetchMargins": False,  # no sapi/v1/margin/allPairs
    "fetchOpenOrders": {"warnWithoutSymbol": False},
}


class Clock:
    """Wall time plus an offset the test moves, thread-safe: ccxt signs with wall time, so they stay close."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


def eurusd_series(now_ms: int) -> BarSeries:
    """Bundled hourly EURUSD replayed as 1-second candles, 1000 of them already closed."""
    return replay_series(load_bundled("eurusd-hourly").drop(columns="symbol"), bar_ms=1000, now_ms=now_ms)


def make_simulator(clock: Clock | None = None, **settings: Any) -> ExchangeSimulator:
    """EUR/USD replayed from the bundled data and BTC/USDT on a random walk, with 10 000 USD and USDT."""
    clock = clock or Clock()
    now = int(clock() * 1000)
    series = {"EURUSD": eurusd_series(now), "BTCUSDT": random_walk_series(seed=11, now_ms=now, start_price=30_000)}
    markets = (MarketSpec.for_price("EUR/USD", series["EURUSD"].price_at(now)),
               MarketSpec.for_price("BTC/USDT", 30_000))
    balances = {"USD": Decimal(10_000), "USDT": Decimal(10_000), "EUR": Decimal(0), "BTC": Decimal(0)}
    config = SimConfig(markets=markets, api_key=API_KEY, api_secret=API_SECRET,
                       balances=settings.pop("balances", balances), **settings)
    return ExchangeSimulator(config, series, clock=clock)


@dataclass
class Running:
    """A simulator served on loopback."""

    sim: ExchangeSimulator
    server: WebhookServer

    @property
    def url(self) -> str:
        return self.server.url

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the control API: (status, decoded JSON)."""
        return http_json(method, f"{self.url}/_sim/{path}", body)

    def requests(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """The simulator's request log, less requests for an executor's webhook (``STRAY_PATHS``).

        The simulator listens on a port the OS chose, which an executor of another test may have had a moment
        before; a wallboard or health check still polling that executor (or a port a test named as nobody's)
        then asks the simulator for /status or /healthz. No exchange client asks for those paths, so leaving
        them out hides nothing a test of the exchange's traffic checks; every other path is kept.
        """
        _, log = self.control("GET", f"requests?limit={limit}")
        return [entry for entry in log if entry["path"] not in STRAY_PATHS]


#: An executor's webhook paths that pollers ask for (wallboard, health checks): never an exchange API's.
STRAY_PATHS = frozenset({"/status", "/summary", "/healthz", "/ping", "/metrics"})


@contextmanager
def serve(sim: ExchangeSimulator, threads: int = 4) -> Iterator[Running]:
    """``sim`` on a real waitress server on a free loopback port, stopped afterwards."""
    server = WebhookServer(make_app(sim), host="127.0.0.1", port=0, threads=threads, name="exchange simulator")
    server.start()
    try:
        yield Running(sim, server)
    finally:
        sim.close()
        server.stop()


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request; errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload)
        except ValueError:
            return exc.code, payload.decode("latin-1")


def ccxt_client(url: str, *, key: str = API_KEY, secret: str = API_SECRET, timeout_ms: int = 5000,
                **options: Any) -> Any:
    """An unmodified ccxt binance client whose every API base points at ``url``."""
    import ccxt

    exchange = ccxt.binance({"apiKey": key, "secret": secret, "timeout": timeout_ms, "enableRateLimit": False,
                             "options": {**SPOT_ONLY, **options}})
    for name, base in list(exchange.urls["api"].items()):
        if isinstance(base, str):
            exchange.urls["api"][name] = url + urlsplit(base).path
    return exchange


def wait_for(condition: Any, *, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it is truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def simulator_process(*options: str, env: dict[str, str]) -> Iterator[str]:
    """``tradeexecutor exchange-sim --port 0 OPTIONS`` as a subprocess with ``env``; yields the URL it listens on.

    The process is stopped with SIGTERM (killed if it does not end within 30 s) when the block ends.
    """
    process = subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim", "--port", "0",
                                *options], env={**env, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        first = wait_for(lambda: [line for line in lines if "listening on" in line], timeout=120)[0]
        yield first.rsplit(" ", 1)[1].strip()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
