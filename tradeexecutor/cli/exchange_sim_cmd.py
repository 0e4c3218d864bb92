"""``tradeexecutor exchange-sim``: serve a simulated Binance spot exchange on loopback, for rehearsals and tests.

Only click and the CLI helpers are imported at module level: the simulator, numpy, pandas and
waitress load when the command runs, so ``tradeexecutor --help`` stays quick.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from decimal import Decimal
from typing import Any

import click

from tradeexecutor.cli.common import env, user_errors
from tradeexecutor.config import split_list
from tradeexecutor.errors import ConfigError

#: Environment variables holding the API key and secret clients sign with, unless renamed.
DEFAULT_KEY_ENV = "TRADEEXECUTOR_SIM_API_KEY"
DEFAULT_SECRET_ENV = "TRADEEXECUTOR_SIM_API_SECRET"
FEE_ASSETS = ("received", "quote", "base")


def _balances(values: tuple[str, ...]) -> dict[str, Decimal]:
    """``("USDT=1000", "BTC=0.5")`` → amounts by asset; a ConfigError says how to write one."""
    from tradeexecutor.exchange_sim.config import decimal

    result: dict[str, Decimal] = {}
    for value in split_list(values):
        asset, separator, amount = value.partition("=")
        if not separator or not asset.strip():
            raise ConfigError(f"--balance {value!r} must be ASSET=AMOUNT, such as USDT=10000")
        result[asset.strip().upper()] = decimal(amount, f"--balance {asset.strip()}")
    return result


def _credential(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"set the environment variable {name} to the API {what} clients sign with "
                          f"(or name another variable with --api-{what}-env)")
    return value


@click.command("exchange-sim")
@click.option("--host", default="127.0.0.1", show_default=True, envvar=env("SIM_HOST"), show_envvar=True,
              help="Interface to listen on (the control API answers loopback clients only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, envvar=env("SIM_PORT"),
              show_envvar=True, help="Port to listen on (0: any free port; the URL is printed).")
@click.option("--data", "data", multiple=True, envvar=env("SIM_DATA"), show_envvar=True,
              help="Bundled dataset or candle files to replay. Default: eurusd-hourly (unless --random-walk).")
@click.option("--symbols", "symbols", multiple=True, envvar=env("SIM_SYMBOLS"), show_envvar=True,
              help="Markets as BASE/QUOTE, repeatable or comma-separated; each replays the data symbol BASEQUOTE or "
                   "BASE. Default: every symbol of the bundled data (EURUSD as EUR/USD), or BTC/USDT.")
@click.option("--speed", type=float, default=None, envvar=env("SIM_SPEED"), show_envvar=True,
              help="Seconds of history replayed per second (3600 plays hourly bars as 1-second candles). "
                   "Default: one recorded bar per second.")
@click.option("--history", type=int, default=1000, show_default=True, envvar=env("SIM_HISTORY"),
              show_envvar=True, help="Bars already closed at start, for clients' warm-up.")
@click.option("--random-walk", "seed", type=int, default=None, envvar=env("SIM_RANDOM_WALK"), show_envvar=True,
              help="Price the markets with a seeded random walk of 1-second bars instead of replaying data.")
@click.option("--start-price", type=float, default=100.0, show_default=True, envvar=env("SIM_START_PRICE"),
              show_envvar=True, help="First price of the random walk.")
@click.option("--volatility", type=float, default=0.0005, show_default=True, envvar=env("SIM_VOLATILITY"),
              show_envvar=True, help="Random walk: standard deviation of each 1-second log return.")
@click.option("--api-key-env", default=DEFAULT_KEY_ENV, show_default=True, envvar=env("SIM_API_KEY_ENV"),
              show_envvar=True, help="Environment variable holding the API key clients send (letters and digits).")
@click.option("--api-secret-env", default=DEFAULT_SECRET_ENV, show_default=True, envvar=env("SIM_API_SECRET_ENV"),
              show_envvar=True, help="Environment variable holding the secret clients sign with (HMAC-SHA256).")
@click.option("--fee", type=str, default="0.001", show_default=True, envvar=env("SIM_FEE"), show_envvar=True,
              help="Commission as a fraction of the traded amount (0.001 = 0.1 %).")
@click.option("--fee-asset", type=click.Choice(FEE_ASSETS), default="received", show_default=True,
              envvar=env("SIM_FEE_ASSET"), show_envvar=True,
              help="Charge commission in the asset received (Binance's default), always the quote, or always the base.")
@click.option("--spread-bps", type=str, default="2", show_default=True, envvar=env("SIM_SPREAD_BPS"),
              show_envvar=True, help="Bid-ask spread in basis points; market orders pay half of it.")
@click.option("--min-notional", type=str, default="5", show_default=True, envvar=env("SIM_MIN_NOTIONAL"),
              show_envvar=True, help="Smallest order value in the quote asset (NOTIONAL filter).")
@click.option("--balance", "balances", multiple=True, envvar=env("SIM_BALANCE"), show_envvar=True,
              help="Starting free balance ASSET=AMOUNT, repeatable. Default: 10000 of each quote asset.")
@click.option("--weight-limit", type=click.IntRange(1, 10_000_000), default=6000, show_default=True,
              envvar=env("SIM_WEIGHT_LIMIT"), show_envvar=True,
              help="Request weight an IP may use per minute before 429 (Binance: 6000).")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True, envvar=env("SIM_THREADS"),
              show_envvar=True, help="Worker threads serving requests.")
@user_errors
def exchange_sim_command(host: str, port: int, data: tuple[str, ...], symbols: tuple[str, ...], speed: float | None,
                         history: int, seed: int | None, start_price: float, volatility: float, api_key_env: str,
                         api_secret_env: str, fee: str, fee_asset: str, spread_bps: str, min_notional: str,
                         balances: tuple[str, ...], weight_limit: int, threads: int) -> None:
    """Serve a simulated Binance spot exchange (REST API on /api/v3, control API on /_sim/) until stopped.

    Point an exchange client's API URLs at the printed address and sign with the key and secret
    from the two environment variables. docs/exchange-simulator.md tells how to rehearse with it.
    """
    from tradeexecutor.exchange_sim import ExchangeSimulator, SimConfig, make_app
    from tradeexecutor.exchange_sim.config import PriceConfig, decimal
    from tradeexecutor.exchange_sim.sources import build_markets

    key, secret = _credential(api_key_env, "key"), _credential(api_secret_env, "secret")
    prices = PriceConfig(data=split_list(data), pairs=split_list(symbols), speed=speed,
                         history=history, random_walk_seed=seed, start_price=start_price, volatility=volatility,
                         min_notional=decimal(min_notional, "--min-notional"))
    markets, series = build_markets(prices, now_ms=int(time.time() * 1000))
    config = SimConfig(
        markets=markets, api_key=key, api_secret=secret, fee_rate=decimal(fee, "--fee"), fee_asset=fee_asset,
        spread_bps=decimal(spread_bps, "--spread-bps"),
        balances=_balances(balances) or {market.quote: Decimal(10_000) for market in markets},
        weight_limit=weight_limit,
    )
    simulator = ExchangeSimulator(config, series)
    from tradeexecutor.webhook.server import WebhookServer  # waitress runner; imports pyramid, so only now

    server = WebhookServer(make_app(simulator), host=host, port=port, threads=threads, name="exchange simulator")
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"exchange simulator listening on {server.url}")
    click.echo(f"  markets: {', '.join(market.pair for market in markets)}")
    click.echo(f"  REST API: {server.url}/api/v3   control API: {server.url}/_sim/status")
    click.echo(f"  clients sign with the key in ${api_key_env} and the secret in ${api_secret_env}")
    sys.stdout.flush()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        simulator.close()
        server.stop()
    click.echo("exchange simulator stopped")
