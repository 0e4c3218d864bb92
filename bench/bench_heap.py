"""What a running executor keeps in memory per closed position: the state's objects and the published files' caches.

Run from the repository root (``PYTHONPATH`` picks the checkout to measure)::

    PYTHONPATH=. python bench/bench_heap.py [--bars 20000]

A backtest of bench/strategies/flip_1m.py (an order every five 1-minute bars) over ``--bars``
synthetic bars makes a state of about bars / 10 closed positions (two orders and two fills each)
and a valuation row a bar; it is saved to a ledger. Measured with ``tracemalloc`` (bytes Python
allocated and still holds, a count, not a time): the state as the executor loads it from the
ledger at start-up, and the caches a running executor keeps to publish its files
(``store.publish.PublishCache`` and ``stats.trades_csv.TradesCsv``: the encoded pieces of
state.json, positions.json and orders.csv) after two publications, next to the files' sizes.
Memory Python does not trace (SQLite's page cache, the allocator's free lists) is not in it.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import tempfile
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.layout import RunFiles  # noqa: E402
from tradeexecutor.ledger import Ledger  # noqa: E402
from tradeexecutor.stats.trades_csv import TradesCsv  # noqa: E402
from tradeexecutor.store.publish import PublishCache, public_files  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = ROOT / "bench" / "strategies" / "flip_1m.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, checkout {ROOT}")
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "candles.csv"
        generate_candles(args.bars, frequency="1m", seed=1, symbol="SYN").to_csv(data, index_label="timestamp")
        strategy = load_strategy(STRATEGY)
        market, _ = load_market([str(data)], strategy.instruments)
        files = RunFiles(Path(folder) / "state")
        files.root.mkdir()
        ledger = Ledger(files.ledger)
        ledger.save(run_backtest(strategy, market, EngineConfig(), now=datetime(2024, 1, 1, tzinfo=UTC)).state)
        ledger.close()
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            ledger = Ledger(files.ledger)
            state = ledger.load()
            assert state is not None
            gc.collect()
            loaded = tracemalloc.get_traced_memory()[0] - start
            cache, csv = PublishCache(), TradesCsv()
            start = tracemalloc.get_traced_memory()[0]
            for _ in range(2):
                documents = public_files(state, files, metadata={"name": "heap"}, orders_csv=csv.parts, cache=cache)
                sizes = {name: len(document.data()) for name, document in documents.items()
                         if not name.endswith(".gz")}
                del documents
            gc.collect()
            caches = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        ledger.close()
    closed = state.portfolio.closed_positions
    orders = sum(len(position.orders) for position in closed)
    valuations = state.valuations
    columns = sum(len(column) * column.itemsize for column in (valuations.timestamp, valuations.equity,
                                                                 valuations.cash, valuations.exposure))
    print(f"{args.bars:,} bars: {len(closed):,} closed positions, {orders:,} orders, {len(valuations):,} valuation rows")
    print(f"state loaded from the ledger: {loaded / 2**20:.1f} MiB; of it the valuation columns {columns / 2**20:.2f} MiB; "
          f"the rest {(loaded - columns) / len(closed):,.0f} B per closed position")
    print(f"publication caches: {caches / 2**20:.1f} MiB = {caches / len(closed):,.0f} B per closed position; "
          f"the files: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sorted(sizes.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
