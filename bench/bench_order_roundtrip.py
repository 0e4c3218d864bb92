"""Benchmark of an order's round trip through the executor's own order path to the exchange simulator.

Run from the repository root::

    python bench/bench_order_roundtrip.py [--runs 5] [--orders 300]

Starts ``tradeexecutor exchange-sim`` as a subprocess on a free loopback port (a random-walk
AAA/USD market, fee in USD, no spread), as an executor would meet it, and times each order
through what the daemon runs for it, on this process's thread:

- **decision**: the order is created in the state (a position opened by value, or the whole
  position closed, alternately — so neither balance runs out);
- **committed submitting**: ``OrderRouter.send`` commits it to a real SQLite Ledger (in a
  temporary directory on local disk) before anything is sent — the write-ahead;
- **submitted**: ``CcxtVenue.submit`` through the unmodified ccxt ``binance`` client (a market
  order with its client order id; the simulator fills it on arrival and says so in its reply);
- **fill received**: ``CcxtVenue.poll`` hands the accepted and filled events over;
- **fill committed**: ``OrderRouter.apply`` books the fill and the ledger commits it.

Next to it, on its own kept-alive connection, the same two requests sent bare (signed here with
http.client, no ccxt, no ledger): the simulator's own response time for an order. A close also
reads the account's balance first (the venue sells what the exchange says is held), one more
request; its bare figure is the balance read plus the sell.

The venue is configured as the executor ships it, ccxt's rate limiter on: a close's sell waits for
the account read's weight (Binance's budget of 6000 weight a minute: the 20 of an account read
cost 200 ms). ``--no-rate-limiter`` turns it off to show the path's own cost. Each run
sends ``--orders`` orders after a warm-up; the tables give the median over runs of each run's p50
and p99 (milliseconds).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import Order, OrderPurpose, OrderSide, OrderStatus, Position, State, client_order_id, run_key
from tradeexecutor.venue.ccxt_venue import CcxtVenue

KEY = "BenchKey0123456789"
SECRET = "bench-secret-0123456789"
ENVIRON = {"TRADEEXECUTOR_EXCHANGE_API_KEY": KEY, "TRADEEXECUTOR_EXCHANGE_API_SECRET": SECRET}
VALUE = 50.0  # USD per position: 300 orders never come near the 10 000 USD balance
STAGES = ("committed submitting", "submitted", "fill received", "fill committed")


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "TRADEEXECUTOR_SIM_API_KEY": KEY, "TRADEEXECUTOR_SIM_API_SECRET": SECRET}
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim", "--port", "0", "--symbols", "AAA/USD",
               "--random-walk", "5", "--fee-asset", "quote", "--spread-bps", "0", "--balance", "USD=10000",
               "--weight-limit", "10000000"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("exchange simulator listening on "):
        process.kill()
        raise SystemExit(f"the simulator did not start: {first!r}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
    return process, first.rsplit(" ", 1)[1].strip()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Executor:
    """The executor's order path: a state in a real Ledger, an OrderRouter over a CcxtVenue."""

    def __init__(self, directory: Path, url: str, *, rate_limiter: bool = True) -> None:
        self.ledger = Ledger(directory / "ledger.sqlite")
        self.state = State(name="bench", created_at=datetime.now(UTC), initial_cash=10_000.0)
        self.state.portfolio.cash = 10_000.0
        self.state.add_instrument("AAA", "crypto", 1e-8)
        config = CcxtVenueConfig(exchange="binance", url=url, quote="USD", symbols=("AAA",), timeout_seconds=10.0)
        self.venue = CcxtVenue(config, environ=ENVIRON)
        self.venue.exchange.enableRateLimit = rate_limiter
        self.venue.connect()
        self.router = OrderRouter(self.state, self.venue, self.commit, lambda: datetime.now(UTC))
        self.run = run_key(self.state.name, self.state.created_at)
        self.decided = datetime(2025, 1, 1, tzinfo=UTC)
        self.commits: list[float] = []

    def commit(self) -> None:
        with self.ledger.begin_job("cycle", datetime.now(UTC)) as job:
            job.commit(self.state)
        self.commits.append(time.perf_counter())

    def decide(self) -> Order:
        """What a cycle deciding ``open_long(value=VALUE)``, or the close of the open position, leaves in the state."""
        portfolio = self.state.portfolio
        self.decided += timedelta(seconds=1)  # one decision per cycle: a new client order id each time
        if portfolio.open_positions:
            position = portfolio.open_positions[0]
            purpose, side, value, quantity = OrderPurpose.close, OrderSide.sell, None, position.quantity
        else:
            position = Position(id=portfolio.next_position_id, instrument_id=1, opened_at=self.decided)
            portfolio.next_position_id += 1
            portfolio.open_positions.append(position)
            purpose, side, value, quantity = OrderPurpose.open, OrderSide.buy, VALUE, None
        order = Order(id=portfolio.next_order_id, position_id=position.id, instrument_id=1,
                      client_order_id=client_order_id(self.run, self.decided, 0, purpose), purpose=purpose,
                      side=side, created_at=self.decided, value=value, quantity=quantity)
        portfolio.next_order_id += 1
        position.orders.append(order)
        return order

    def round_trip(self) -> tuple[str, list[float]]:
        """One order from decision to committed fill: its purpose and the milliseconds to each stage."""
        started = time.perf_counter()
        order = self.decide()
        submit = self.venue.submit
        marks: list[float] = []

        def timed_submit(request: object) -> None:
            marks.append(self.commits[-1])  # the write-ahead commit just happened
            submit(request)  # type: ignore[arg-type]
            marks.append(time.perf_counter())

        self.venue.submit = timed_submit  # type: ignore[method-assign]
        try:
            self.router.send(order)
        finally:
            del self.venue.submit
        events = self.venue.poll()
        marks.append(time.perf_counter())
        for event in events:
            self.router.apply(event)
        self.commit()
        marks.append(self.commits[-1])
        if order.status is not OrderStatus.filled:
            raise SystemExit(f"order {order.client_order_id} ended {order.status.value}, not filled: {events}")
        return order.purpose.value, [(mark - started) * 1000 for mark in marks]


class Bare:
    """The same requests on one kept-alive http.client connection, signed here: the simulator's own time."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.number = 0
        self.held = "0"

    def _send(self, method: str, path: str, params: dict[str, str | int]) -> bytes:
        query = urlencode({**params, "timestamp": int(time.time() * 1000)})
        signed = f"{query}&signature={hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()}"
        headers = {"X-MBX-APIKEY": KEY}
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            self.connection.request(method, path, body=signed, headers=headers)
        else:
            self.connection.request(method, f"{path}?{signed}", headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        assert response.status == 200, payload
        return payload

    def round_trip(self) -> tuple[str, float]:
        """One bare order (a buy by value, or a balance read and the sell of what was bought); its milliseconds."""
        self.number += 1
        started = time.perf_counter()
        if self.held == "0":
            params: dict[str, str | int] = {"symbol": "AAAUSD", "side": "BUY", "type": "MARKET",
                                            "quoteOrderQty": f"{VALUE:g}"}
            purpose = "open"
        else:
            self._send("GET", "/api/v3/account", {})
            params = {"symbol": "AAAUSD", "side": "SELL", "type": "MARKET", "quantity": self.held}
            purpose = "close"
        reply = json.loads(self._send("POST", "/api/v3/order", {
            **params, "newClientOrderId": f"bare-{self.number}", "newOrderRespType": "FULL"}))
        elapsed = (time.perf_counter() - started) * 1000
        self.held = reply["executedQty"] if purpose == "open" else "0"
        return purpose, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--no-rate-limiter", action="store_true", help="turn ccxt's rate limiter off in the venue")
    args = parser.parse_args()
    process, url = start_simulator()
    # by purpose: per run, the samples of each stage (executor) and of the bare requests
    stages: dict[str, list[list[list[float]]]] = {"open": [], "close": []}
    bare_runs: dict[str, list[list[float]]] = {"open": [], "close": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-roundtrip-", dir=os.environ.get("BENCH_TMP")) as tmp:
            executor = Executor(Path(tmp), url, rate_limiter=not args.no_rate_limiter)
            bare = Bare(url)
            for _ in range(4):  # warm-up: connections, ccxt's caches, the ledger's first full write
                executor.round_trip()
            for _ in range(4):
                bare.round_trip()
            for _ in range(args.runs):
                run: dict[str, list[list[float]]] = {"open": [], "close": []}
                bare_run: dict[str, list[float]] = {"open": [], "close": []}
                for _ in range(args.orders // 2):  # interleaved, so machine load hits both alike
                    for _ in range(2):  # open and close: one account, so each side leaves it flat
                        purpose, marks = executor.round_trip()
                        run[purpose].append(marks)
                    for _ in range(2):
                        kind, elapsed = bare.round_trip()
                        bare_run[kind].append(elapsed)
                for purpose in stages:
                    stages[purpose].append([[m[i] for m in run[purpose]] for i in range(len(STAGES))])
                    bare_runs[purpose].append(bare_run[purpose])
            executor.ledger.close()
    finally:
        process.terminate()
        process.wait(timeout=30)

    def median_of(samples: list[list[float]], share: float) -> float:
        return statistics.median(percentile(run, share) for run in samples)

    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs x {args.orders} orders "
          f"({args.orders // 2} opens, {args.orders // 2} closes); ccxt rate limiter "
          f"{'off' if args.no_rate_limiter else 'on'}\n")
    print("| order | stage (from the decision) | p50 | p99 |")
    print("|---|---|---:|---:|")
    for purpose, runs in stages.items():
        for index, stage in enumerate(STAGES):
            per_stage = [run[index] for run in runs]
            print(f"| {purpose} | {stage} | {median_of(per_stage, 0.5):.2f} ms | {median_of(per_stage, 0.99):.2f} ms |")
        print(f"| {purpose} | simulator alone (bare signed requests) | {median_of(bare_runs[purpose], 0.5):.2f} ms | "
              f"{median_of(bare_runs[purpose], 0.99):.2f} ms |")


if __name__ == "__main__":
    main()
