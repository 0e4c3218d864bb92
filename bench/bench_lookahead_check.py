"""Cost of the indicator lookahead check: the indicator step with and without it, side by side.

Run from the repository root::

    PYTHONPATH=. python bench/bench_lookahead_check.py [--bars 1000000] [--repeat 7]

Same data and strategy as bench/bench_backtest.py (SMA 10/30 on synthetic 1-minute bars). In one
process, alternating, median of ``--repeat`` runs each: ``compute_indicators`` without the check
(the indicator step once), with it (the step on every prefix of ``causality_cuts`` and the
comparisons), and one whole ``run_backtest`` (check included) to show the check's share of a run.
Pass ``--baseline PATH`` (a checkout of another version's tradeexecutor/strategy/indicators.py) to
time that version's check beside this one's.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.data import generate_candles
from tradeexecutor.data.market import MarketData
from tradeexecutor.strategy.indicators import causality_cuts, compute_indicators
from tradeexecutor.strategy.loader import load_strategy

STRATEGY = ROOT / "bench" / "strategies" / "sma_1m.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=None, help="another indicators.py to time beside this one")
    args = parser.parse_args(argv)

    frame = generate_candles(args.bars, frequency="1m", seed=1, symbol="SYN")
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    strategy = load_strategy(STRATEGY, {"fast": 10, "slow": 30})
    step = strategy.indicators
    runs = {
        "indicator step only": lambda: compute_indicators(step, market, strategy.parameters, check_causality=False),
        "indicator step + check": lambda: compute_indicators(step, market, strategy.parameters),
    }
    if args.baseline is not None:
        spec = importlib.util.spec_from_file_location("baseline_indicators", args.baseline)
        assert spec is not None and spec.loader is not None
        baseline = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baseline)
        runs["baseline step + check"] = lambda: baseline.compute_indicators(step, market, strategy.parameters)
    runs["whole run_backtest"] = lambda: run_backtest(strategy, market, EngineConfig())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    cuts = causality_cuts(args.bars)
    print(f"# Lookahead check on {args.bars:,} bars, {len(cuts)} cuts recomputing {sum(cuts) / args.bars:.2f}x "
          f"the rows; medians of {args.repeat}\n")
    print("| measure | seconds |")
    print("|---|---:|")
    for name, seconds in median.items():
        print(f"| {name} | {seconds:.3f} |")
    check = median["indicator step + check"] - median["indicator step only"]
    print(f"| the check alone | {check:.3f} ({check / median['whole run_backtest']:.1%} of the run) |")
    if args.baseline is not None:
        print(f"| this check / baseline check (step included) | "
              f"{median['indicator step + check'] / median['baseline step + check']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
