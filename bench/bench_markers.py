"""Fill markers thinned to the marker's own size: SVG bytes and render time against every fill drawn.

Run from the repository root::

    python bench/bench_markers.py [--fills 1000 10000 100000] [--weeks 4] [--repeats 5]
                                  [--old PATH/TO/charts.py] [--json out.json]

Builds soak-like chart series (``bench/bench_soak.py``'s rate: a 1-second cycle, a fill every
``--every`` cycles, buys and sells alternating, on a random-walk close) with ``--fills`` fills each,
plus ``--weeks`` weeks at that rate, and draws the large light chart as SVG and as PNG (the renderer
draws each from one figure; here each is timed on its own) with the real code path, thinning on and
off (``render_series(..., thin_markers=False)``'s switch) side by side in this process. The variants
take turns within each repeat, so a busy machine slows them alike; the figures are medians.

``--old`` also loads another checkout's ``tradeexecutor/visual/charts.py`` (e.g. main's before
this change, which thinned to a grid of the figure's pixels) under another module name and draws
the same series with it: three columns, still one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tradeexecutor.visual import charts
from tradeexecutor.visual.series import ChartSeries, Fills

T0 = 1_767_225_600_000  # 2026-01-01, epoch ms


def soak_series(fills: int, every: int, seed: int = 7) -> ChartSeries:
    """``fills`` fills, one every ``every`` 1-second cycles, and a valuation row and close each cycle."""
    rng = np.random.default_rng(seed)
    rows = fills * every
    stamps = T0 + np.arange(rows, dtype=np.int64) * 1000
    closes = 1.1 + np.cumsum(rng.normal(0, 1e-4, rows))
    equity = 10_000 + np.cumsum(rng.normal(0, 1.0, rows))
    at = np.arange(fills, dtype=np.int64) * every + every - 1
    made = Fills("EURUSD", stamps[at], closes[at], np.arange(fills) % 2 == 0)
    return ChartSeries("bench", stamps, equity, {1: made}, {"EURUSD": (stamps, closes)})


def load_old(path: Path) -> ModuleType:
    """Another checkout's charts.py as module ``old_charts`` (it imports this checkout's ``visual.series``)."""
    spec = importlib.util.spec_from_file_location("old_charts", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_charts"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def draw(variant: str, series: ChartSeries, fmt: str, old: ModuleType | None) -> tuple[bytes, float, int]:
    """One large light chart in ``fmt``: its bytes, the seconds it took (prepare, draw, encode), markers drawn."""
    started = time.perf_counter()
    if variant == "old":
        assert old is not None
        data = old._prepare(series)
        image = old._draw(data, "large", "light", (fmt,))[fmt]
        markers = sum(len(p.buy_times) + len(p.sell_times) for p in data.panels)
    else:
        data = charts._prepare(series, thin_markers=variant == "thinned")
        image = charts._draw(data, "large", "light", (fmt,))[fmt]
        markers = sum(len(p.buys.counts) + len(p.sells.counts) for p in data.panels)
    return image, time.perf_counter() - started, markers


def measure(name: str, series: ChartSeries, variants: list[str], repeats: int,
            old: ModuleType | None) -> dict[str, Any]:
    fills = sum(len(f.times) for f in series.fills.values())
    result: dict[str, Any] = {"case": name, "fills": fills, "rows": len(series.stamps)}
    svg_seconds: dict[str, list[float]] = {v: [] for v in variants}
    png_seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for variant in variants:
            svg, seconds, markers = draw(variant, series, "svg", old)
            svg_seconds[variant].append(seconds)
            result[f"{variant}_svg_bytes"] = len(svg)
            result[f"{variant}_markers"] = markers
            png_seconds[variant].append(draw(variant, series, "png", old)[1])
    for variant in variants:
        result[f"{variant}_svg_seconds"] = statistics.median(svg_seconds[variant])
        result[f"{variant}_png_seconds"] = statistics.median(png_seconds[variant])
    return result


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": model, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fills", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--weeks", type=float, default=4.0, help="also this many weeks at the soak rate (0: no)")
    parser.add_argument("--every", type=int, default=5, help="1-second cycles between two fills (the soak's 5)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old", type=Path, help="another checkout's tradeexecutor/visual/charts.py to compare")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    old = load_old(args.old) if args.old else None
    variants = ["unthinned"] + (["old"] if old else []) + ["thinned"]
    cases = [(f"{n:,} fills", n) for n in args.fills]
    if args.weeks:
        cases.append((f"{args.weeks:g} weeks at the soak rate", round(args.weeks * 7 * 86_400 / args.every)))
    info = machine()
    print(f"{info['nproc']} CPUs, {info['cpu']}, {info['date']}, load average {info['load_average']}")
    print(f"large light chart, medians of {args.repeats}; a fill every {args.every} s; variants: {', '.join(variants)}")
    results = []
    for name, fills in cases:
        result = measure(name, soak_series(fills, args.every), variants, args.repeats, old)
        results.append(result)
        cells = " | ".join(
            f"{v}: {result[f'{v}_markers']:,} markers, SVG {result[f'{v}_svg_bytes'] / 1000:,.0f} KB "
            f"{result[f'{v}_svg_seconds']:.2f} s, PNG {result[f'{v}_png_seconds']:.2f} s" for v in variants)
        print(f"{name} ({result['rows']:,} rows): {cells}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "repeats": args.repeats, "every": args.every,
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
