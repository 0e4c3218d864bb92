"""Benchmark of command start-up: how long ``tradeexecutor --help`` and the light commands take, next to Python itself.

Run from the repository root, with the interpreter the project is installed in::

    python bench/bench_cli_startup.py [--runs 15]

Each round runs, one after the other in fresh processes (so every row sees the same machine
load), ``python -c pass`` (the floor: the interpreter alone), ``python -c "import pandas"`` (what
every command paid before its heavy imports were made lazy), ``tradeexecutor --help``,
``tradeexecutor backtest --help``, ``tradeexecutor runs ls`` (in an empty folder) and
``tradeexecutor status`` against a closed port (the HTTP client's start-up and its one-line
error). Commands run through the installed console script, as a person types them. The table
shows the median wall time of ``--runs`` rounds and its ratio to ``python -c pass``; the goal is
``tradeexecutor --help`` under 0.2 s.

Then ``python -X importtime -c "import tradeexecutor.cli.main"`` lists the slowest imports of the
command line module (cumulative microseconds), to see what a change would cost.

Prints markdown. Not a pytest test: timings are for people (tests/test_cli_startup.py checks the
structure: --help imports no pandas, numpy, matplotlib or pyramid).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(executable: str) -> list[tuple[str, list[str]]]:
    """(label, argv) of every row, the baselines first."""
    script = shutil.which("tradeexecutor", path=str(Path(executable).parent)) or shutil.which("tradeexecutor")
    if script is None:
        raise SystemExit("the tradeexecutor command is not installed next to this python; pip install -e . first")
    return [
        ("python -c pass", [executable, "-c", "pass"]),
        ("python -c \"import pandas\"", [executable, "-c", "import pandas"]),
        ("tradeexecutor --help", [script, "--help"]),
        ("tradeexecutor backtest --help", [script, "backtest", "--help"]),
        ("tradeexecutor runs ls", [script, "runs", "ls"]),
        ("tradeexecutor status (closed port)", [script, "status", "http://127.0.0.1:9", "--timeout", "0.5"]),
    ]


def measure(rows: list[tuple[str, list[str]]], runs: int, cwd: Path) -> dict[str, list[float]]:
    """Wall seconds of each row, ``runs`` rounds, the rows interleaved within each round."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    times: dict[str, list[float]] = {label: [] for label, _ in rows}
    for _ in range(runs):
        for label, argv in rows:
            started = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)
            times[label].append(time.perf_counter() - started)
    return times


def slowest_imports(executable: str, count: int = 12) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest imports of tradeexecutor.cli.main."""
    result = subprocess.run([executable, "-X", "importtime", "-c", "import tradeexecutor.cli.main"],
                            capture_output=True, text=True, check=True)
    found = []
    for line in result.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line, or something else on stderr
        found.append((int(parts[1]), parts[2].strip()))
    return sorted(found, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds; the median is reported")
    args = parser.parse_args()
    executable = sys.executable
    rows = commands(executable)
    folder = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        measure(rows, 1, folder)  # warm the file cache, not counted
        times = measure(rows, args.runs, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    floor = statistics.median(times[rows[0][0]])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.1f}; median of {args.runs} rounds\n")
    print("| command | median wall time | × python -c pass |")
    print("|---|---:|---:|")
    for label, _ in rows:
        median = statistics.median(times[label])
        print(f"| `{label}` | {median * 1000:,.0f} ms | {median / floor:.1f} |")
    print("\nSlowest imports of `tradeexecutor.cli.main` (cumulative):\n")
    print("| module | ms |")
    print("|---|---:|")
    for cumulative, name in slowest_imports(executable):
        print(f"| `{name}` | {cumulative / 1000:.1f} |")


if __name__ == "__main__":
    main()
