"""Shared by the sweep tests: a run spec of the paced SMA on two years of GOOG, the CLI as a subprocess, comparable rows."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACED = ROOT / "tests" / "strategies" / "sma_paced.py"


def write_spec(folder: Path, *, pause: float = 0.0, extra: str = "", start: str = "2011-01-01") -> Path:
    """A backtest spec of the paced SMA crossover on GOOG daily from ``start`` to 2012 (about 500 bars from 2011)."""
    path = folder / "paced.yaml"
    path.write_text(f"strategy_file: {PACED}\nmode: backtest\nname: paced sweep\n"
                    f"environment:\n  data: [stocks-daily]\n  start: '{start}'\n  end: '2012-12-31'\n"
                    f"strategy:\n  fast: 10\n  slow: 30\n  pause: {pause}\ncore:\n  fee: 0.001\n{extra}")
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_") and k != "DASK_SCHEDULER_ADDRESS"}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env=env or cli_env(), cwd=ROOT)


def table(path: Path) -> list[dict[str, str]]:
    """results.csv without the columns that differ between equal runs (time taken, which process, run ids)."""
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("seconds", "worker", "run_id")}
                for row in csv.DictReader(handle)]


def comparable(results: list[Any]) -> list[tuple[Any, ...]]:
    """What must be identical between two executions of one sweep: order, values, figures, fingerprints."""
    return [(row.values, row.status, row.summary, row.windows, row.fingerprints) for row in results]
