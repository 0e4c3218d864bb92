"""Backtest cost against bar count: CPU time of 1M and 2M synthetic 1-minute bars in one process.

Run: ``python bench/bench_linearity.py [--repeat 3]``. Prints the t(2M)/t(1M) ratio (goal <= 2.2) with the
garbage collector on, and again with it off to show how much of any excess is collection work.
Only the run is timed (``time.process_time``), not data generation.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

from tradeexecutor.backtest import run_backtest
from tradeexecutor.data import generate_candles
from tradeexecutor.data.market import MarketData
from tradeexecutor.strategy.loader import load_strategy

STRATEGY = Path(__file__).resolve().parent / "strategies" / "sma_1m.py"


def cpu_seconds(bars: int, collect: bool) -> float:
    """CPU time of one backtest over ``bars`` synthetic bars."""
    market = MarketData.from_long_frame(generate_candles(bars, frequency="1m", seed=1), asset_types={"SYN": "equity"})
    strategy = load_strategy(STRATEGY)
    if not collect:
        gc.disable()
    try:
        started = time.process_time()
        run_backtest(strategy, market)
        return time.process_time() - started
    finally:
        gc.enable()
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| garbage collector | t(1M) | t(2M) | ratio (goal <= 2.2) |")
    print("|---|---:|---:|---:|")
    for collect in (True, False):
        ratios, ones, twos = [], [], []
        for _ in range(args.repeat):
            one, two = cpu_seconds(1_000_000, collect), cpu_seconds(2_000_000, collect)
            ones.append(one)
            twos.append(two)
            ratios.append(two / one)
        print(f"| {'on' if collect else 'off'} | {statistics.median(ones):.2f} s | {statistics.median(twos):.2f} s | "
              f"{statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
