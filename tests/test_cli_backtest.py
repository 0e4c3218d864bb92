"""`tradeexecutor backtest` as a user runs it: a subprocess, real files, exit codes, nothing half-written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradeexecutor.stats import TRADE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
SMA = ROOT / "strategies" / "sma_crossover.py"


def backtest(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "backtest", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_backtest_writes_state_trades_and_summary_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = backtest(str(SMA), "--fee", "0.002", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Final equity" in result.stdout and "Sharpe" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    state = json.loads((out / "state.json").read_text())
    with open(out / "trades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(TRADE_COLUMNS)
    executed = [r for r in rows if r["status"] == "filled"]
    assert summary["summary"]["trade_count"] == len(executed) > 10
    # The printed final equity is the state's last valuation.
    assert summary["summary"]["final_equity"] == pytest.approx(state["valuations"]["equity"][-1])
    assert summary["config"]["fee"] == 0.002 and summary["data"]["dataset"] == "stocks-daily"


def test_options_come_from_the_environment_too(tmp_path: Path) -> None:
    out = tmp_path / "env-out"
    result = backtest(str(SMA), cwd=tmp_path, env={"TRADEEXECUTOR_OUTPUT": str(out), "TRADEEXECUTOR_CASH": "25000",
                                                   "TRADEEXECUTOR_PARAMS": "fast=5,slow=20"})
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["initial_cash"] == 25000
    assert summary["strategy"]["parameters"]["fast"] == 5 and summary["strategy"]["parameters"]["slow"] == 20


def test_help_lists_every_option_with_its_environment_variable(tmp_path: Path) -> None:
    result = backtest("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("TRADEEXECUTOR_DATA", "TRADEEXECUTOR_FEE", "TRADEEXECUTOR_FILL_TIMING", "TRADEEXECUTOR_OUTPUT"):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.py"], "strategy file not found"),
        ([str(SMA), "-p", "fast=abc"], "'abc' is not an integer"),
        ([str(SMA), "-p", "nope=1"], "'nope' is not a parameter"),
        ([str(SMA), "-p", "symbol=EURUSD"], "EURUSD"),
        ([str(SMA), "--data", "no-such-dataset"], "no-such-dataset"),
        ([str(SMA), "--start", "2010-01-01", "--end", "2009-01-01"], "not before --end"),
        ([str(SMA), "--fee", "0.5"], "fee 0.5"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "out"
    result = backtest(*args, "--output", str(out), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing may be written when the input is bad"


def test_a_bad_candle_row_names_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "candles.csv"
    data.write_text("timestamp,open,high,low,close,volume\n"
                    "2020-01-01T00:00:00Z,10,11,9,10,1\n"
                    "2020-01-02T00:00:00Z,10,9,11,10,1\n")
    strategy = tmp_path / "s.py"
    strategy.write_text(SMA.read_text().replace('Symbol("GOOG", asset_type="equity"', 'Symbol("XYZ"'))
    result = backtest(str(strategy), "--data", str(data), "--output", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert "candles.csv" in result.stderr and "line 3" in result.stderr
