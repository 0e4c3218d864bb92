"""Cost per instrument-bar: a 50-instrument rotation against the same strategy on one instrument.

Run from the repository root::

    PYTHONPATH=. python bench/bench_rotation.py [--instruments 50] [--bars 20000] [--repeat 5]

The strategy (bench/strategies/rotation_1m.py) re-ranks every instrument by trailing return at
every 1-minute bar and holds the leader, so each cycle reads every instrument once. It runs on
``--instruments`` synthetic instruments of ``--bars`` bars each, and, interleaved in the same
process, on one instrument of ``instruments × bars`` bars: the same number of instrument-bars.
Reported: CPU seconds per million instrument-bars of each (median of ``--repeat``) and their
ratio. Goal: the rotation's cost per instrument-bar no worse than one instrument's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig, ExecutionConfig  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.market import MarketData  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = Path(__file__).resolve().parent / "strategies" / "rotation_1m.py"


def market(count: int, bars: int) -> MarketData:
    frames = [generate_candles(bars, frequency="1m", seed=seed, symbol=f"R{seed}", volatility=0.002)
              for seed in range(count)]
    return MarketData.from_long_frame(pd.concat(frames), asset_types={f"R{i}": "equity" for i in range(count)})


def timed(count: int, data: MarketData) -> tuple[float, int]:
    strategy = load_strategy(STRATEGY, {"count": count})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    started = time.process_time()
    result = run_backtest(strategy, data, config)
    return time.process_time() - started, sum(1 for _ in result.state.portfolio.all_orders())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=50)
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    many = market(args.instruments, args.bars)
    one = market(1, args.instruments * args.bars)
    cells = args.instruments * args.bars
    times: dict[str, list[float]] = {"many": [], "one": []}
    trades: dict[str, int] = {}
    for _ in range(args.repeat):
        for key, count, data in (("many", args.instruments, many), ("one", 1, one)):
            seconds, trades[key] = timed(count, data)
            times[key].append(seconds)
    per = {key: statistics.median(values) / cells * 1e6 for key, values in times.items()}
    print(f"{cells:,} instrument-bars each; median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| run | CPU s per million instrument-bars | trades | runs (CPU s) |")
    print("|---|---:|---:|---|")
    print(f"| {args.instruments} instruments x {args.bars:,} bars | {per['many']:.2f} | {trades['many']:,} | "
          f"{', '.join(f'{v:.2f}' for v in times['many'])} |")
    print(f"| 1 instrument x {cells:,} bars | {per['one']:.2f} | {trades['one']:,} | "
          f"{', '.join(f'{v:.2f}' for v in times['one'])} |")
    print()
    print(f"rotation / one instrument, per instrument-bar: {per['many'] / per['one']:.2f} (goal <= 1)")


if __name__ == "__main__":
    main()
