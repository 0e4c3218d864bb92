"""Benchmark of the summary statistics: compute_summary over a million valuations, next to numpy doing the core of it.

Run from the repository root::

    python bench/bench_summary.py [--rows 1000000] [--repeat 7]

The state holds ``--rows`` hourly valuations of a random-walk equity curve (seed 1, the numbers
tests/test_stats_summary.py checks for exactness). Each round times ``compute_summary(state)`` and,
side by side in the same process, a bare numpy pass over the same list of floats: the array
conversion, period returns, their mean and standard deviation, and the running-peak drawdown —
the least any summary of this curve must do. The table shows the medians and their ratio; the
old test asserted "under 1 s", which only held on an idle machine, so the ratio is the figure to
watch (docs/benchmarks.md).

Prints markdown. Not a pytest test: timings are for people.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradeexecutor.state import State  # noqa: E402
from tradeexecutor.stats import compute_summary  # noqa: E402

T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def curve_state(rows: int) -> tuple[State, list[float]]:
    """A state with ``rows`` hourly valuations of a seeded random walk, and the equity list itself."""
    rng = np.random.default_rng(1)
    equity = (1e6 * np.cumprod(1 + rng.normal(0, 0.001, rows))).tolist()
    state = State(initial_cash=1e6)
    state.valuations.extend((T0_MS + np.arange(rows) * 3_600_000).tolist(), equity, equity, [1.0] * rows)
    return state, equity


def numpy_core(equity: list[float]) -> float:
    """The floor: returns, their mean and deviation, the deepest drawdown."""
    curve = np.asarray(equity, dtype=np.float64)
    returns = curve[1:] / curve[:-1] - 1.0
    _ = returns.mean(), returns.std(ddof=1)
    return float(np.max(1.0 - curve / np.maximum.accumulate(curve)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    state, equity = curve_state(args.rows)
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        compute_summary(state)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        numpy_core(equity)
        floor.append(time.perf_counter() - started)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.rows:,} hourly valuations; median of {args.repeat}; {os.cpu_count()} cores, load {load:.1f}\n")
    print("| measure | median |")
    print("|---|---:|")
    print(f"| `compute_summary` | {statistics.median(ours) * 1000:,.0f} ms |")
    print(f"| numpy core (floor) | {statistics.median(floor) * 1000:,.0f} ms |")
    print(f"| ratio | {statistics.median(ours) / statistics.median(floor):.1f}x |")


if __name__ == "__main__":
    main()
