"""Cost of a commit whose journal line is one start-up reads back (``RECALLED``), against a plain line.

Run from the repository root (and with ``PYTHONPATH=/path/to/main`` for the code before the change)::

    PYTHONPATH=. python bench/bench_journal_recall.py [--lines 100000] [--recalled 50000] [--jobs 400]

A ledger with ``--lines`` journal lines past a retention of ``--lines`` (so every commit deletes), of which
``--recalled`` older ones are ``cycle_missed`` lines (with the change, spared below the retention: the worst
case a long lag outage leaves), then ``--jobs`` commits of one line each, a ``revalued`` and a ``cycle_missed``
taking turns. Reported: the median and 90th percentile of each kind's commit (``Ledger.save``, fsynced), ms.
Goal: a recalled line's commit costs no more than a plain one's beyond the spread. Not a pytest test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_store_state_store import new_state  # noqa: E402
from tradeexecutor.ledger import Ledger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--recalled", type=int, default=50_000)
    parser.add_argument("--jobs", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "ledger.sqlite", journal_keep=args.lines)
        state = new_state()
        for i in range(args.recalled):
            ledger.append("cycle_missed", {"boundary": f"old-{i}", "reason": "lag"})
            if i % 1000 == 999:
                ledger.save(state)
        for i in range(args.lines):
            ledger.append("revalued", {"i": i})
            if i % 1000 == 999:
                ledger.save(state)
        ledger.save(state)
        times: dict[str, list[float]] = {"revalued": [], "cycle_missed": []}
        for job in range(args.jobs):
            event = ("revalued", "cycle_missed")[job % 2]
            ledger.append(event, {"boundary": f"new-{job}", "reason": "lag"})
            started = time.perf_counter()
            ledger.save(state)
            times[event].append(time.perf_counter() - started)
        ledger.close()
    print("| line committed | median ms | p90 ms |\n|---|---|---|")
    for event, taken in times.items():
        taken.sort()
        print(f"| {event} | {statistics.median(taken) * 1000:.2f} | {taken[int(len(taken) * 0.9)] * 1000:.2f} |")


if __name__ == "__main__":
    main()
