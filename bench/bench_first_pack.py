"""The executor's first pack of closed positions: what it adds to the resident memory, with and without the stream.

Run from the repository root (``PYTHONPATH`` picks the checkout to measure)::

    PYTHONPATH=. python bench/bench_first_pack.py [--rounds 3]

A backtest of bench/strategies/flip_1m.py makes 600 closed positions. Each variant then runs in a fresh
interpreter set up as ``tradeexecutor start`` sets itself up (the mmap threshold fixed, two malloc arenas)
with a heap of mid-size blocks half freed, as a running executor's is; a second thread, like the executor's
loop thread, appends the positions to a ``PackedPositions`` (32 kept, blocks of 64) and allocates a little
between two closes. Read: VmRSS just before and just after the first block is packed (the 96th close).
Variants: ``per block`` packs as before the stream, a new zlib
compressor a block (``zlib.compress``, level 1); ``stream at start`` calls ``take_packer()`` on the main
thread first, as ``tradeexecutor start`` does. A count of pages, not a time; interleaved ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "bench" / "strategies" / "flip_1m.py"
VARIANTS = ("per block", "stream at start")

CHILD = r"""
import gc, json, pickle, random, sys, threading, zlib
from tradeexecutor.daemon.heap import bound_arenas, return_large_blocks
from tradeexecutor.state import packed
from tradeexecutor.state.packed import PackedPositions

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

return_large_blocks()
bound_arenas()
if sys.argv[2] == "stream at start":
    packed.take_packer()
else:  # as before the stream: a compressor made and freed at each pack
    packed._pack = lambda block: zlib.compress(pickle.dumps(block, protocol=pickle.HIGHEST_PROTOCOL), 1)
    packed._unpack = lambda data: pickle.loads(zlib.decompress(data))
with open(sys.argv[1], "rb") as file:
    positions = pickle.load(file)
filler = random.Random(1)
blocks = [bytes(filler.randrange(600, 9000)) for _ in range(6000)]
kept = blocks[::2]
del blocks
gc.collect()
found = {}

def loop():
    closed = PackedPositions(keep=32, block=64)
    rss = []
    for number, position in enumerate(positions[:96], start=1):
        if number == 96:
            rss.append(rss_kib())
        closed.append(position)
        kept.append(bytes(filler.randrange(600, 3000)))
    rss.append(rss_kib())
    found.update(first=rss[1] - rss[0], packed=closed.packed)

thread = threading.Thread(target=loop)
thread.start()
thread.join()
print(json.dumps(found))
"""


def _positions(folder: Path) -> Path:
    from tradeexecutor.backtest.runner import run_backtest
    from tradeexecutor.config import EngineConfig
    from tradeexecutor.data import generate_candles
    from tradeexecutor.data.source import load_market
    from tradeexecutor.strategy.loader import load_strategy

    data = folder / "candles.csv"
    generate_candles(1200, frequency="1m", seed=1, symbol="SYN").to_csv(data, index_label="timestamp")
    strategy = load_strategy(STRATEGY)
    market, _ = load_market([str(data)], strategy.instruments)
    state = run_backtest(strategy, market, EngineConfig(), now=datetime(2024, 1, 1, tzinfo=UTC)).state
    positions = list(state.portfolio.closed_positions)
    if len(positions) < 96:
        raise SystemExit(f"the backtest closed {len(positions)} positions, fewer than 96")
    path = folder / "positions.pickle"
    path.write_bytes(pickle.dumps(positions))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found: dict[str, list[dict[str, int]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        path = _positions(Path(folder))
        for _ in range(args.rounds):
            for variant in VARIANTS:
                result = subprocess.run([sys.executable, "-c", CHILD, str(path), variant], capture_output=True,
                                        text=True, check=True, timeout=300)
                found[variant].append(json.loads(result.stdout))
    print("| variant | VmRSS step at the first pack (KiB), each round | median |")
    print("|---|---:|---:|")
    for variant, rounds in found.items():
        firsts = [r["first"] for r in rounds]
        print(f"| {variant} | {', '.join(map(str, firsts))} | {statistics.median(firsts):.0f} |")


if __name__ == "__main__":
    main()
