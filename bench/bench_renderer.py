"""Renderer-only soak: the chart renderer's child process over N renders of a growing series.

Run from the repository root::

    python bench/bench_renderer.py [--renders 180] [--rows 10] [--fills 2] [--json out.json]

Drives a real :class:`~tradeexecutor.visual.renderer.ChartRenderer` (the child process the daemon
starts) the way the 1-second soak does (``bench/bench_soak.py``): each render receives a delta of
``--rows`` new valuation rows and bars (charts every 10 s of 1-second cycles) and ``--fills`` new
fills (an order every five cycles), so 180 renders are the soak's 30 minutes of history. The
renders follow each other at once (no 10-second pauses), so the 30 minutes take one or two.

After each render it reads the child's VmRSS from /proc and the CPU seconds the render took. It
reports RSS after the first render, at the middle and the end, the least-squares slope over the
second half per render and per minute of history (``--rows`` rows are ``--rows`` seconds), and the render's CPU
time at the start and end (does drawing cost grow with history?). ``--start-rows`` and
``--start-fills`` make the first delta a long history (e.g. a day: 86400 rows, 34560 fills).

Before/after: run it with ``PYTHONPATH`` pointing at another checkout (the renderer's child
imports the package its parent imported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tradeexecutor.visual.renderer import ChartRenderer, Images
from tradeexecutor.visual.series import ChartDelta

T0 = 1_767_225_600_000  # 2026-01-01, epoch ms


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Feed:
    """Soak-like deltas: a random-walk equity and close, fills alternating buy and sell."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.rows = 0
        self.fills = 0
        self.equity = 10_000.0
        self.close = 1.1

    def delta(self, rows: int, fills: int) -> ChartDelta:
        start = self.rows
        stamps = T0 + np.arange(start, start + rows, dtype=np.int64) * 1000
        equity = self.equity + np.cumsum(self.rng.normal(0, 1.0, rows))
        closes = self.close + np.cumsum(self.rng.normal(0, 1e-4, rows))
        self.equity, self.close = float(equity[-1]), float(closes[-1])
        at = self.rng.integers(0, rows, fills)
        made = tuple((self.fills + i, 1, "EURUSD", int(stamps[at[i]]), float(closes[at[i]]), (self.fills + i) % 2 == 0)
                     for i in range(fills))
        self.rows += rows
        self.fills += fills
        return ChartDelta("soak", start, stamps, equity, made, {"EURUSD": (start, stamps, closes)})


def run(args: argparse.Namespace) -> dict[str, Any]:
    done = threading.Semaphore(0)
    costs: list[float] = []
    sizes: list[int] = []
    failures: list[str] = []

    def on_images(images: Images, cost: float) -> None:
        costs.append(cost)
        sizes.append(sum(len(image) for image in images.values()))
        done.release()

    def on_failure(reason: str) -> None:
        failures.append(reason)
        done.release()

    renderer = ChartRenderer(on_images, on_failure=on_failure, timeout=300).start()
    feed = Feed()
    samples: list[tuple[int, int]] = []  # (render, child VmRSS KiB)
    try:
        if not renderer.wait_idle(300) or renderer.pid is None:
            raise SystemExit(f"the renderer did not start: {renderer.failure}")
        pid = renderer.pid
        samples.append((0, vm_rss_kib(pid)))
        for n in range(1, args.renders + 1):
            first = n == 1
            delta = feed.delta(args.start_rows if first and args.start_rows else args.rows,
                               args.start_fills if first and args.start_fills else args.fills)
            while not renderer.submit(delta):
                renderer.wait_idle(300)
            done.acquire()
            renderer.wait_idle(300)  # idle again: the child has sent its answer
            if failures:
                raise SystemExit(f"render {n} failed: {failures[-1]}")
            time.sleep(args.pause)
            samples.append((n, vm_rss_kib(pid)))
    finally:
        renderer.close()
    rendered = samples[1:]
    half = rendered[len(rendered) // 2:]
    xs, ys = [float(n) for n, _ in half], [float(kib) for _, kib in half]
    slope = statistics.linear_regression(xs, ys).slope if len(half) >= 2 else 0.0
    return {
        "machine": f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs",
        "load_average_end": os.getloadavg(),
        "renders": args.renders, "rows_per_render": args.rows, "fills_per_render": args.fills,
        "start_rows": args.start_rows, "start_fills": args.start_fills,
        "rows_end": feed.rows, "fills_end": feed.fills,
        "rss_kib": {"started": samples[0][1], "first_render": rendered[0][1],
                    "middle": rendered[len(rendered) // 2][1], "end": rendered[-1][1], "max": max(kib for _, kib in samples),
                    "slope_per_render_second_half": slope,
                    "slope_per_soak_minute_second_half": slope * 60 / args.rows},
        "cpu_seconds": {"first_10_median": statistics.median(costs[:10]),
                        "last_10_median": statistics.median(costs[-10:])},
        "image_bytes": {"first": sizes[0], "last": sizes[-1]},
        "rss_series": samples,
    }


def report(result: dict[str, Any]) -> str:
    rss, cpu = result["rss_kib"], result["cpu_seconds"]
    return "\n".join([
        f"{result['machine']}, load average at the end {result['load_average_end'][0]:.2f}; "
        f"{result['renders']} renders of +{result['rows_per_render']} rows, +{result['fills_per_render']} fills "
        f"(first: {result['start_rows'] or result['rows_per_render']} rows, "
        f"{result['start_fills'] or result['fills_per_render']} fills); "
        f"at the end {result['rows_end']} rows, {result['fills_end']} fills",
        f"child RSS: started {rss['started'] / 1024:.1f} MiB, after the first render {rss['first_render'] / 1024:.1f} MiB, "
        f"middle {rss['middle'] / 1024:.1f} MiB, end {rss['end'] / 1024:.1f} MiB (max {rss['max'] / 1024:.1f}); "
        f"slope over the second half {rss['slope_per_render_second_half']:+.1f} KiB/render = "
        f"{rss['slope_per_soak_minute_second_half']:+.1f} KiB/min of the soak",
        f"render CPU: {cpu['first_10_median']:.3f} s (median of the first 10), {cpu['last_10_median']:.3f} s "
        f"(last 10); image bytes {result['image_bytes']['first']} -> {result['image_bytes']['last']}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renders", type=int, default=180)
    parser.add_argument("--rows", type=int, default=10, help="valuation rows and bars per render")
    parser.add_argument("--fills", type=int, default=2, help="fills per render")
    parser.add_argument("--start-rows", type=int, default=0, help="rows in the first delta (0: --rows)")
    parser.add_argument("--start-fills", type=int, default=0, help="fills in the first delta (0: --fills)")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds after each answer before RSS is read (the child frees memory after answering)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    print(report(result))


if __name__ == "__main__":
    main()
