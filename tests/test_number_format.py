"""One way to write numbers for people: the same run's figures read the same in backtest, runs start,
runs show, optimize's table and the run report (stats/formatting.py); files for programs keep raw values."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tradeexecutor.state.risk import RiskState
from tradeexecutor.stats.formatting import format_figure, format_statistic

ROOT = Path(__file__).resolve().parent.parent
SPEC = """\
strategy_file: {strategy}
mode: backtest
environment: {{data: [stocks-daily], start: "2011-01-01", end: "2012-12-31"}}
strategy: {{fast: 5, slow: 30}}
core: {{fee: 0.001}}
"""


@pytest.mark.parametrize(("value", "kind", "text"), [
    (0.123456, "pct", "12.35 %"), (-0.0155, "pct", "-1.55 %"), (4.7746, "pct", "477.46 %"),
    (57746.456, "money", "57,746.46"), (-2018.97, "money", "-2,018.97"), (1.0349, "ratio", "1.03"),
    (2012, "int", "2,012"), (584.0, "days", "584.0 days"), (None, "pct", "n/a"), (math.nan, "ratio", "n/a"),
    (math.inf, "money", "n/a"), ("2004-08-20T00:00:00+00:00", "text", "2004-08-20T00:00:00+00:00"),
])
def test_format_figure(value: object, kind: str, text: str) -> None:
    assert format_figure(value, kind) == text


def test_statistics_are_formatted_by_their_kind() -> None:
    assert format_statistic("total_return", 0.1) == "10.00 %"
    assert format_statistic("max_drawdown", 0.30732) == "30.73 %"
    assert format_statistic("sharpe", 0.947382693147149) == "0.95"
    assert format_statistic("final_equity", 44160.49194722509) == "44,160.49"
    assert format_statistic("trade_count", 61) == "61"



def test_a_risk_pause_reason_writes_its_fractions_as_percentages_like_every_command() -> None:
    """`tradeexecutor status`, /healthz and the dashboard show this sentence beside figures runs show prints."""
    risk = RiskState(limit="max_daily_loss", value=0.031, threshold=0.03, hit_at="2005-03-01T00:00:00+00:00")
    assert f"{format_figure(0.031, 'pct')} (limit {format_figure(0.03, 'pct')})" in (risk.reason or "")
    streak = RiskState(limit="max_losing_streak", value=4.0, threshold=3.0, hit_at="2005-03-01T00:00:00+00:00")
    assert "4 losing positions in a row (limit 3)" in (streak.reason or "")

def cli(*args: str, cwd: Path) -> str:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_one_run_reads_the_same_in_every_command_and_report(tmp_path: Path) -> None:
    spec = tmp_path / "sma.yaml"
    spec.write_text(SPEC.format(strategy=ROOT / "strategies" / "sma_crossover.py"))
    backtest = cli("backtest", "--spec", str(spec), "--output", str(tmp_path / "bt"), cwd=tmp_path)
    started = cli("runs", "create", str(spec), "--ref", "one", "--start", cwd=tmp_path)
    shown = cli("runs", "show", "one", cwd=tmp_path)
    # --holdout 0: the point is ranked on the whole period, so its figures are the run's own
    cli("optimize", str(spec), "--param", "fast=5", "--processes", "1", "--holdout", "0", "--output",
        str(tmp_path / "sweep"), cwd=tmp_path)
    run_dir = next(path for path in (tmp_path / "runs").glob("r*") if path.is_dir())
    summary = json.loads((run_dir / "metadata.json").read_text())["summary"]
    report = (run_dir / "report.md").read_text()
    table = [line for line in (tmp_path / "sweep" / "results.md").read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    row = dict(zip(header, (cell.strip() for cell in table[1].strip("|").split("|"))))

    expected = {name: format_statistic(name, summary[name])
                for name in ("final_equity", "total_return", "max_drawdown", "sharpe", "trade_count")}
    assert expected["total_return"].endswith(" %") and "," in expected["final_equity"]
    # backtest's table
    for label, name in (("Final equity", "final_equity"), ("Total return", "total_return"),
                        ("Max drawdown", "max_drawdown"), ("Sharpe", "sharpe"), ("Trades executed", "trade_count")):
        assert re.search(rf"^{label}\s+{re.escape(expected[name])}$", backtest, flags=re.MULTILINE), (label, backtest)
    # runs create --start
    assert (f"final equity {expected['final_equity']}, total return {expected['total_return']}, "
            f"{expected['trade_count']} trades") in started
    # runs show
    for name in expected:
        assert re.search(rf"^{name.replace('_', ' ')}:\s+{re.escape(expected[name])}$", shown, flags=re.MULTILINE), \
            (name, shown)
    # optimize's table, and report.md's key figures and checks
    for name in ("total_return", "max_drawdown", "sharpe", "trade_count"):  # the ranking has no final equity column
        assert row[name] == expected[name], (name, row)
    assert f"| Total return | {expected['total_return']} |" in report
    assert f"| Sharpe | {expected['sharpe']} |" in report
    assert f"max drawdown {expected['max_drawdown']}" in report
    # files for programs keep raw fractions at full precision
    with open(tmp_path / "sweep" / "results.csv", newline="") as handle:
        raw = next(csv.DictReader(handle))
    assert float(raw["total_return"]) == pytest.approx(summary["total_return"], rel=1e-12)
    assert json.loads((tmp_path / "bt" / "summary.json").read_text())["summary"]["total_return"] == \
        pytest.approx(summary["total_return"], rel=1e-12)
