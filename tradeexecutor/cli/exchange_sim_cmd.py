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

from tradeexecutor.cli.common import user_errors
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import build_config
from tradeexecutor.errors import ConfigError
from tradeexecutor.exchange_sim.config import PriceConfig, SimConfig, SimServerConfig


def _credential(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"set the environment variable {name} to the API {what} clients sign with "
                          f"(or name another variable with --api-{what}-env)")
    return value


@click.command("exchange-sim")
@config_options(SimServerConfig, select=lambda item: item.name in ("host", "port"))
@config_options(PriceConfig)
@config_options(SimServerConfig, select=lambda item: item.name in ("api_key_env", "api_secret_env"))
@config_options(SimConfig)
@config_options(SimServerConfig, select=lambda item: item.name == "threads")
@user_errors
def exchange_sim_command(**options: Any) -> None:
    """Serve a simulated Binance spot exchange (REST API on /api/v3, control API on /_sim/) until stopped.

    Point an exchange client's API URLs at the printed address and sign with the key and secret
    from the two environment variables. docs/exchange-simulator.md tells how to rehearse with it.
    """
    from tradeexecutor.exchange_sim import ExchangeSimulator, make_app
    from tradeexecutor.exchange_sim.sources import build_markets

    server_config: SimServerConfig = build_config(SimServerConfig, config_values(SimServerConfig, options))
    api_key_env, api_secret_env = server_config.api_key_env, server_config.api_secret_env
    key, secret = _credential(api_key_env, "key"), _credential(api_secret_env, "secret")
    prices: PriceConfig = build_config(PriceConfig, config_values(PriceConfig, options))
    markets, series = build_markets(prices, now_ms=int(time.time() * 1000))
    values = config_values(SimConfig, options)
    values[("balances",)] = values.get(("balances",)) or {market.quote: Decimal(10_000) for market in markets}
    config: SimConfig = build_config(SimConfig, values, markets=markets, api_key=key, api_secret=secret)
    simulator = ExchangeSimulator(config, series)
    from tradeexecutor.webhook.server import WebhookServer  # waitress runner; imports pyramid, so only now

    server = WebhookServer(make_app(simulator), host=server_config.host, port=server_config.port,
                           threads=server_config.threads, name="exchange simulator")
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
