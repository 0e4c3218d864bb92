"""Benchmark of a default sweep's fixed cost: the five full runs ``--reports best`` makes, and its charts' data.

Run from the repository root::

    python bench/bench_full_runs.py [--runs 7]

The 20-point grid of ``bench/bench_optimize.py`` is swept once with ``--reports none`` (rows
only); then, ``--runs`` times, a fresh runs folder and a copy of that sweep folder are finished
with ``--reports best`` (``--resume``: no point runs again), which makes the best 5 points' full
runs — registry row, pinned spec and strategy, backtest, state, journal, orders, metrics,
reports — and the data of the sweep's two charts (drawn on demand since issue 15's sixth round). Times that resumed sweep as a whole (no point is evaluated,
so it is the default's fixed cost plus reading the rows back), its CPU seconds (this process's and its
finished children's: on a busy machine wall time mostly measures the other work, CPU time much less so)
and counts Python's fsyncs in it. Not a pytest test: timings are for people.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tradeexecutor.runs.spec import load_spec  # noqa: E402
from tradeexecutor.runs.sweep import SweepOptions, plan_sweep, run_sweep  # noqa: E402

SPEC = ROOT / "strategies" / "specs" / "sma_crossover_backtest.yaml"
GRID = ("fast=5..20:5", "slow=20,30,40,50,60")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="Repetitions (median reported).")
    parser.add_argument("--processes", type=int, default=1, help="Processes for the points and the full runs.")
    args = parser.parse_args()
    spec = load_spec(SPEC)
    fsyncs = [0]
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs[0] += 1
        real_fsync(fd)

    finishes: list[float] = []
    cpus: list[float] = []
    counts: list[int] = []
    with tempfile.TemporaryDirectory() as work:
        rows = Path(work) / "rows"
        run_sweep(plan_sweep(spec, SweepOptions(params=GRID, processes=args.processes, reports="none")),
                  output_dir=rows, runs_dir=Path(work) / "unused")
        plan = plan_sweep(spec, SweepOptions(params=GRID, processes=args.processes, reports="best"))
        for number in range(args.runs + 1):  # the first warms up
            folder = Path(work) / f"s{number}"
            shutil.copytree(rows, folder)
            fsyncs[0] = 0
            os.fsync = counting_fsync
            cpu = _cpu_seconds()
            started = time.perf_counter()
            run_sweep(plan, output_dir=folder, runs_dir=Path(work) / f"runs{number}", resume=True)
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu
            os.fsync = real_fsync
            if number:
                finishes.append(elapsed)
                cpus.append(cpu)
                counts.append(fsyncs[0])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"resumed default sweep (5 full runs), {args.processes} process(es), median of {args.runs}: "
          f"{statistics.median(finishes):.3f} s, CPU {statistics.median(cpus):.3f} s; "
          f"fsyncs (Python's) per sweep {statistics.median(counts):.0f}; load average {load:.1f}")
    print("all:", ", ".join(f"{t:.3f}" for t in finishes), "| CPU:", ", ".join(f"{t:.3f}" for t in cpus))


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its children that have ended (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
