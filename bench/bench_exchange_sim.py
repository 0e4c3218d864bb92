"""Benchmark of the exchange simulator's response time: order placement through ccxt against a bare GET /api/v3/time.

Run from the repository root::

    python bench/bench_exchange_sim.py [--runs 5] [--requests 200]

Starts ``tradeexecutor exchange-sim`` in its default configuration (bundled EURUSD replayed as
1-second candles, 4 threads) as a subprocess on a free loopback port, as an executor would meet
it, and measures from this process, each on one kept-alive connection:

- ``GET /api/v3/time`` with a bare http.client request: the floor of one round trip;
- ``GET /api/v3/time`` through ccxt's ``fetch_time``: what ccxt adds to any request;
- a signed market order with a bare http.client request (signed here): the simulator's own
  cost of an order (signature check, matching, balances, JSON);
- a market order through ccxt's ``create_order`` with a client order id: the baseline of the
  executor's order round trip, whose later benchmark adds the ledger and the loop.

Orders alternate buying 10 EUR and selling 9.9 (the buy's fee is taken in EUR), so neither
balance runs out. ccxt's own rate limiter is
off: it would add sleeps that measure ccxt, not the simulator. Each run sends ``--requests`` of
each kind after a warm-up; the table gives the median over runs of each run's p50 and p99, the
ratio of each p50 to the bare GET's, and this (client) process's CPU time per request — what
ccxt itself costs, as opposed to waiting for the simulator.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the ccxt client the tests use

from exchange_sim_helpers import ccxt_client  # noqa: E402

KEY = "BenchKey0123456789"
SECRET = "bench-secret-0123456789"


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "TRADEEXECUTOR_SIM_API_KEY": KEY, "TRADEEXECUTOR_SIM_API_SECRET": SECRET}
    process = subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim", "--port", "0"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("exchange simulator listening on "):
        process.kill()
        raise SystemExit(f"the simulator did not start: {first!r}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
    return process, first.rsplit(" ", 1)[1].strip()


def timed(call: Callable[[], object], count: int) -> tuple[list[float], float]:
    """Milliseconds of ``count`` calls (after one warm-up call), and this process's CPU ms per call."""
    call()
    result = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        call()
        result.append((time.perf_counter() - started) * 1000)
    return result, (time.process_time() - cpu) * 1000 / count


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Bare:
    """Requests on one kept-alive http.client connection, signed here for the order."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.side = "SELL"  # the first order buys
        self.number = 0

    def get_time(self) -> None:
        self.connection.request("GET", "/api/v3/time")
        response = self.connection.getresponse()
        response.read()
        assert response.status == 200

    def order(self) -> None:
        self.number += 1
        self.side = "SELL" if self.side == "BUY" else "BUY"
        quantity = "10" if self.side == "BUY" else "9.9"  # the buy's fee comes out of the EUR received
        query = urlencode({"symbol": "EURUSD", "side": self.side, "type": "MARKET", "quantity": quantity,
                           "newClientOrderId": f"bare-{self.number}", "newOrderRespType": "FULL",
                           "timestamp": int(time.time() * 1000)})
        body = f"{query}&signature={hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()}"
        self.connection.request("POST", "/api/v3/order", body=body, headers={
            "X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"})
        response = self.connection.getresponse()
        payload = response.read()
        assert response.status == 200, payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    process, url = start_simulator()
    try:
        bare = Bare(url)
        exchange = ccxt_client(url, key=KEY, secret=SECRET)
        exchange.load_markets()
        sides = iter(("buy", "sell") * (args.runs * args.requests + 10))
        numbers = iter(range(10**9))

        def ccxt_order() -> None:
            side = next(sides)
            exchange.create_order("EUR/USD", "market", side, 10 if side == "buy" else 9.9, None,
                                  {"clientOrderId": f"ccxt-{next(numbers)}"})

        kinds: dict[str, Callable[[], object]] = {
            "GET /api/v3/time, bare": bare.get_time,
            "GET /api/v3/time, ccxt fetch_time": exchange.fetch_time,
            "market order, bare signed POST": bare.order,
            "market order, ccxt create_order": ccxt_order,
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in kinds}
        for _ in range(args.runs):
            for name, call in kinds.items():  # interleaved, so machine load hits every kind alike
                samples, client_cpu = timed(call, args.requests)
                results[name].append((percentile(samples, 0.5), percentile(samples, 0.99), client_cpu))
    finally:
        process.terminate()
        process.wait(timeout=30)
    floor = statistics.median(run[0] for run in results["GET /api/v3/time, bare"])
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs x {args.requests} requests\n")
    print("| request | p50 | p99 | p50 / bare GET | client CPU per request |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        p50, p99, cpu = (statistics.median(run[i] for run in runs) for i in range(3))
        print(f"| {name} | {p50:.2f} ms | {p99:.2f} ms | {p50 / floor:.1f}x | {cpu:.2f} ms |")


if __name__ == "__main__":
    main()
