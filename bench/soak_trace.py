"""Compare two tracemalloc snapshots of bench/soak_probe: the growing allocation sites per cycle and per closed position.

Run after a soak with the probe's ``SOAK_TRACE`` set (see bench/soak_probe/sitecustomize.py)::

    python bench/soak_trace.py DIR [--first SECONDS] [--last SECONDS] [--top 25] [--frames 4]

``DIR/snapshots.txt`` lists each snapshot's seconds, completed cycles and closed positions; the
default compares the snapshot nearest the middle of the run with the last. Sites are grouped by
their innermost ``--frames`` frames inside the repository (frames of the standard library and of
site-packages are shown only when no frame of ours is in the trace). Measurement only.
"""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def _ours(frame: tracemalloc.Frame) -> bool:
    return "tradeexecutor" in frame.filename and "site-packages" not in frame.filename


def _site(trace: tracemalloc.Traceback, frames: int) -> str:
    ours = [frame for frame in trace if _ours(frame)]  # a Traceback runs from the oldest frame to the newest
    chosen = ours[-frames:] if ours else list(trace)[-1:]
    inner = trace[-1] if len(trace) else None
    parts = [f"{Path(f.filename).name}:{f.lineno}" for f in reversed(chosen)]
    if inner is not None and (not ours or inner is not ours[-1]):
        parts.insert(0, f"[{Path(inner.filename).name}:{inner.lineno}]")
    return " < ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--first", type=int)
    parser.add_argument("--last", type=int)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    for line in (args.directory / "snapshots.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        seconds, cycles, closed, traced = (int(x) for x in line.split())
        rows[seconds] = (cycles, closed, traced)
    times = sorted(rows)
    first = args.first if args.first is not None else times[len(times) // 2]
    last = args.last if args.last is not None else times[-1]
    cycles = rows[last][0] - rows[first][0]
    closed = rows[last][1] - rows[first][1]
    old = tracemalloc.Snapshot.load(str(args.directory / f"snapshot-{first}.pickle"))
    new = tracemalloc.Snapshot.load(str(args.directory / f"snapshot-{last}.pickle"))
    sizes: dict[str, list[int]] = {}
    for sign, snap in ((-1, old), (1, new)):
        for stat in snap.statistics("traceback"):
            key = _site(stat.traceback, args.frames)
            entry = sizes.setdefault(key, [0, 0])
            entry[0] += sign * stat.size
            entry[1] += sign * stat.count
    total = sum(size for size, _ in sizes.values())
    print(f"snapshots {first}s -> {last}s: {cycles} cycles, {closed} closed positions, traced growth {total} B "
          f"({total / max(cycles, 1):.0f} B a cycle, {total / max(closed, 1):.0f} B a closed position)")
    print(f"{'bytes':>10} {'blocks':>7} {'B/cycle':>8} {'B/close':>8}  site (innermost first)")
    for key, (size, count) in sorted(sizes.items(), key=lambda item: -item[1][0])[: args.top]:
        print(f"{size:>10} {count:>7} {size / max(cycles, 1):>8.1f} {size / max(closed, 1):>8.1f}  {key}")
    print("shrinking:")
    for key, (size, count) in sorted(sizes.items(), key=lambda item: item[1][0])[:5]:
        print(f"{size:>10} {count:>7}  {key}")


if __name__ == "__main__":
    main()
