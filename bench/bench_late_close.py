"""A close out of id order while a position is held open from the very start: what one such close costs the caches.

Run from the repository root (``PYTHONPATH`` picks the checkout to measure)::

    PYTHONPATH=. python bench/bench_late_close.py [--closed 2000,8000] [--behind 100,1000] [--repeat 9]

A running executor keeps the encoded rows of closed positions (positions.json, orders.csv) in
:class:`~tradeexecutor.kept_rows.KeptRows` with a spill file. Here the oldest position (id 0) stays
open, so nothing can be spilled below it, while N positions close after it (rows of ``--width``
bytes, in id order); then positions that closed ``--behind`` rows out of order arrive, one at a time,
each followed by the publication's ``parts()``. Measured per late close: the wall time of ``add`` and
``parts`` (median of ``--repeat`` closes, each at a fresh place the same distance from the end), the
bytes of pieces that are not the previous publication's objects (what a publication copies and its
ETag hashes anew) and, where the checkout counts it, the rows re-joined (``KeptRows.rejoined``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.kept_rows import KeptRows  # noqa: E402
from tradeexecutor.spill import Spill  # noqa: E402


def measure(closed: int, behind: int, repeat: int, width: int, folder: Path) -> tuple[float, int, int | None]:
    """Median seconds, bytes copied anew and rows re-joined (None when not counted) of one late close."""
    late = {closed - behind - step * 3 for step in range(repeat)}  # ids that close late, `behind` rows out of order
    kept = KeptRows(Spill(folder / f"rows-{closed}-{behind}.spill"))
    for key in range(1, closed + 1):
        if key not in late:
            kept.add(key, (b",%d:" % key).ljust(width, b"x"))
    live = [(0, b"0:".ljust(width - 1, b"x"))]
    previous = kept.parts(live, b",")
    times, copied, rejoined = [], [], []
    for key in sorted(late, reverse=True):
        before = getattr(kept, "rejoined", None)
        start = time.perf_counter()
        kept.add(key, (b",%d:late" % key).ljust(width, b"x"))
        parts = kept.parts(live, b",")
        times.append(time.perf_counter() - start)
        seen = {id(part) for part in previous}
        copied.append(sum(len(part) for part in parts if id(part) not in seen))
        if before is not None:
            rejoined.append(kept.rejoined - before)
        previous = parts
    return statistics.median(times), int(statistics.median(copied)), \
        int(statistics.median(rejoined)) if rejoined else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closed", default="2000,8000", help="positions closed after the held one (comma-separated)")
    parser.add_argument("--behind", default="100,1000", help="how many rows out of order a late close lands")
    parser.add_argument("--repeat", type=int, default=9, help="late closes measured for each pair")
    parser.add_argument("--width", type=int, default=600, help="bytes of one encoded row")
    args = parser.parse_args()
    print(f"# python {platform.python_version()}, {platform.machine()}, load average {os.getloadavg()[0]:.1f}")
    print("closed,behind,median_ms,bytes_copied,rows_rejoined")
    with tempfile.TemporaryDirectory() as folder:
        for closed in (int(n) for n in args.closed.split(",")):
            for behind in (int(n) for n in args.behind.split(",")):
                seconds, copied, rejoined = measure(closed, behind, args.repeat, args.width, Path(folder))
                print(f"{closed},{behind},{seconds * 1000:.2f},{copied},{'' if rejoined is None else rejoined}")


if __name__ == "__main__":
    main()
