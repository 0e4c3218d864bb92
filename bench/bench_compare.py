"""Before/after: this checkout's 1M-bar backtest against another checkout's, in alternating processes.

Run from the repository root, with a second checkout of the version to compare against::

    git worktree add /tmp/baseline main
    PYTHONPATH=. python bench/bench_compare.py --baseline /tmp/baseline [--rounds 6] [--repeat 2]

Each round starts one fresh process per checkout (their order alternates from round to round);
each process prepares the data of bench/bench_backtest.py and times ``--repeat`` runs of our
backtest and of backtesting.py on it, in turn. Reported per checkout: the median CPU time and
wall time of our run, and the median of backtesting.py's time over ours within the same process
(the figure docs/benchmarks.md quotes as "1.9x backtesting.py"), which a shared, busy machine
disturbs least.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(root: Path, repeat: int, bars: int) -> None:
    """Time our run and backtesting.py's in this process, using the checkout at ``root``."""
    sys.path[:0] = [str(root), str(root / "bench")]
    import bench_backtest as bench

    frame, market, _ = bench.prepare(bars)
    ohlcv, _ = bench.their_frame(frame)
    times: dict[str, list[float]] = {"cpu": [], "wall": [], "theirs": []}
    for _ in range(repeat):
        _, wall, cpu = bench.run_ours(market, 0.0)
        _, theirs = bench.run_theirs(ohlcv, 0.0)
        times["cpu"].append(cpu)
        times["wall"].append(wall)
        times["theirs"].append(theirs)
    print(json.dumps(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout's root folder")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.repeat, args.bars)
        return 0

    trees = {"this checkout": ROOT, "baseline": args.baseline.resolve()}
    results = {name: {"cpu": [], "wall": [], "ratio": []} for name in trees}
    for round_number in range(args.rounds):
        order = list(trees.items()) if round_number % 2 == 0 else list(reversed(trees.items()))
        for name, root in order:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", str(root), "--repeat", str(args.repeat),
                 "--bars", str(args.bars), "--baseline", str(args.baseline)],
                capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)},
            )
            times = json.loads(done.stdout.strip().splitlines()[-1])
            results[name]["cpu"] += times["cpu"]
            results[name]["wall"] += times["wall"]
            results[name]["ratio"] += [t / w for t, w in zip(times["theirs"], times["wall"], strict=True)]
            print(f"round {round_number + 1}/{args.rounds} {name}: cpu "
                  f"{', '.join(f'{c:.2f}' for c in times['cpu'])} s, backtesting.py / ours "
                  f"{', '.join(f'{t / w:.2f}' for t, w in zip(times['theirs'], times['wall'], strict=True))}",
                  flush=True)
    print()
    print("| checkout | runs | our CPU time, median | our wall time, median | backtesting.py / ours, median |")
    print("|---|---:|---:|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {len(values['cpu'])} | {statistics.median(values['cpu']):.2f} s | "
              f"{statistics.median(values['wall']):.2f} s | {statistics.median(values['ratio']):.2f}x |")
    ours, base = (statistics.median(results[name]["cpu"]) for name in trees)
    print(f"\nCPU time, this checkout / baseline: {ours / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
