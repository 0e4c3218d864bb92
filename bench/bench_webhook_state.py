"""Benchmark of the webhook's published-file routes and /metrics at a 10-position and a 10,000-position state.

Run from the repository root::

    python bench/bench_webhook_state.py [--runs 9]

Builds a real State by backtesting ``strategies/sma_crossover.py`` on the bundled data, resizes
it to 10 and to 10,000 positions (closed positions cycled from the backtest's history), publishes
each with ``store.publish.publish`` into a temporary state directory and serves it from a real
waitress server on 127.0.0.1. For each size it measures, median of ``--runs`` requests after one
warm-up request (the warm-up is the one file read per change):

- GET /state plain and gzip: time to first byte (request sent → status line and headers read)
  and body throughput (bytes / total request time);
- GET /state with a matching If-None-Match (the 304 a polling client mostly gets);
- GET /metrics scrape time (goal < 20 ms; independent of the state's size by design);
- the one-off cost per change: publish() and FigureCounter.figures() after one more closed position.

Prints a markdown table. Not a pytest test: timings are for people; the properties (no codec
call per request, one file read per change) are tested in tests/test_webhook_files.py.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # state_builders.resized

from state_builders import resized  # noqa: E402
from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.layout import RunFiles  # noqa: E402
from tradeexecutor.runstate import RunState  # noqa: E402
from tradeexecutor.runstate.figures import FigureCounter  # noqa: E402
from tradeexecutor.stats.summary import write_trades_csv  # noqa: E402
from tradeexecutor.store.publish import publish  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402
from tradeexecutor.webhook import WebhookServer, create_app  # noqa: E402
from tradeexecutor.webhook.options import WebhookOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]




def timed_get(port: int, path: str, headers: dict[str, str]) -> tuple[float, float, int, int]:
    """(time to first byte, total time, status, body bytes) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.connect()
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()  # returns once the status line and headers are read
        first_byte = time.perf_counter() - started
        body = response.read()
        total = time.perf_counter() - started
        return first_byte, total, response.status, len(body)
    finally:
        connection.close()


def measure(port: int, path: str, headers: dict[str, str], runs: int) -> tuple[float, float, int]:
    """Median TTFB (s), median bytes/s and the body size, after one warm-up request."""
    timed_get(port, path, headers)
    results = [timed_get(port, path, headers) for _ in range(runs)]
    assert all(status in (200, 304) for _, _, status, _ in results), results
    size = results[0][3]
    ttfb = statistics.median(r[0] for r in results)
    rate = statistics.median(r[3] / r[1] for r in results) if size else 0.0
    return ttfb, rate, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="requests per measurement (median)")
    args = parser.parse_args()

    strategy = load_strategy(ROOT / "strategies" / "sma_crossover.py")
    market, _ = load_market([], strategy.instruments)
    base = run_backtest(strategy, market).state

    rows: list[str] = []
    for positions in (10, 10_000):
        state = resized(base, positions)
        with tempfile.TemporaryDirectory() as directory:
            files = RunFiles(Path(directory))
            started = time.perf_counter()
            snapshot = publish(state, files, metadata={"name": state.name}, orders_csv_writer=write_trades_csv)
            publish_seconds = time.perf_counter() - started

            counter = FigureCounter()
            counter.figures(state)
            state.portfolio.closed_positions.append(copy.deepcopy(state.portfolio.closed_positions[-1]))
            started = time.perf_counter()
            figures = counter.figures(state, now=datetime.now(UTC))
            figures_seconds = time.perf_counter() - started
            state.portfolio.closed_positions.pop()

            runstate = RunState.create("bench", mode="replay", strategy_name=state.name,
                                       version={"package": "0", "git_commit": None})
            runstate.update(status="running", executor_running=True, portfolio=figures)
            app = create_app(runstate, options=WebhookOptions(files=files))
            with WebhookServer(app, port=0, threads=4) as server:
                port = server.effective_port
                plain = measure(port, "/state", {}, args.runs)
                zipped = measure(port, "/state", {"Accept-Encoding": "gzip"}, args.runs)
                not_modified = measure(port, "/state", {"If-None-Match": snapshot.etag}, args.runs)
                _, _metrics_total, _, _ = timed_get(port, "/metrics", {})
                scrapes = [timed_get(port, "/metrics", {})[1] for _ in range(max(args.runs, 21))]
                metrics_ms = statistics.median(scrapes) * 1000

        def cell(result: tuple[float, float, int]) -> str:
            ttfb, rate, size = result
            return f"{ttfb * 1000:.2f} ms / {rate / 1e6:,.0f} MB/s ({size / 1e6:,.2f} MB)"

        rows.append(
            f"| {positions:,} | {cell(plain)} | {cell(zipped)} | {not_modified[0] * 1000:.2f} ms "
            f"| {metrics_ms:.2f} ms | {publish_seconds * 1000:,.0f} ms | {figures_seconds * 1e6:,.0f} µs |"
        )

    print(f"Median of {args.runs} requests after one warm-up; fresh loopback connection each.\n")
    print("| positions | /state plain: TTFB / throughput (size) | /state gzip: TTFB / throughput (size) "
          "| /state 304 TTFB | /metrics scrape | publish() per change | figures() per cycle |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
