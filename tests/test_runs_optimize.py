"""Parameter sweeps: grid syntax and its one-line errors, ranking, and a real 2x2 sweep whose rows match the runs made for them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.optimize import build_grid, expand_values, parse_param_option
from tradeexecutor.runs.ranking import rank_results
from tradeexecutor.runs.registry import Registry
from tradeexecutor.runs.spec import load_spec
from tradeexecutor.runs.sweep_eval import PointResult
from tradeexecutor.strategy.parameters import Boolean, Decimal, Integer, Symbol

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "strategies" / "sma_crossover.py"


@pytest.fixture()
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "sma.yaml"
    path.write_text(f"strategy_file: {STRATEGY}\nmode: backtest\nname: SMA sweep\n"
                    "environment:\n  data: [stocks-daily]\n  start: '2011-01-01'\n  end: '2012-12-31'\n"
                    "strategy:\n  fast: 10\n  slow: 30\ncore:\n  fee: 0.001\n")
    return path


@pytest.mark.parametrize(("parameter", "expression", "values"), [
    (Integer(10, min=2), "5..30:5", (5, 10, 15, 20, 25, 30)),
    (Integer(10), "5..8", (5, 6, 7, 8)),
    (Integer(10), "5..29:5", (5, 10, 15, 20, 25)),
    (Integer(10), "20,30,50,30", (20, 30, 50)),
    (Integer(10), "7", (7,)),
    (Decimal(0.5), "0.1..0.5:0.1", (0.1, 0.2, 0.3, 0.4, 0.5)),
    (Decimal(0.5), "0.25, 1", (0.25, 1.0)),
    (Boolean(False), "true,false", (True, False)),
    (Symbol("GOOG"), "GOOG,MSFT", ("GOOG", "MSFT")),
])
def test_expand_values(parameter, expression: str, values: tuple) -> None:
    assert expand_values("p", expression, parameter) == values


@pytest.mark.parametrize(("parameter", "expression", "message"), [
    (Integer(10), "5..", "FIRST..LAST"),
    (Integer(10), "a..9", "not a number"),
    (Integer(10), "5..30:0", "step must be positive"),
    (Integer(10), "30..5", "first value is above the last"),
    (Integer(10), "5..30:2.5", "integer parameter"),
    (Integer(10), "5,,6", "empty value"),
    (Integer(10), "5..9,12", "range or a list"),
    (Integer(10), "abc", "not an integer"),
    (Integer(10, min=2), "1..3", "below the minimum"),
    (Decimal(0.5), "0.1..0.5", "needs a step"),
    (Symbol("GOOG"), "A..B", "integer or decimal"),
])
def test_expand_values_errors(parameter, expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expand_values("p", expression, parameter)


def test_parse_param_option() -> None:
    assert parse_param_option("fast=5..30:5") == ("fast", "5..30:5")
    for bad in ("fast", "=5", "fast=", "fa st=5"):
        with pytest.raises(ConfigError):
            parse_param_option(bad)


def test_build_grid_is_the_product_and_checks_names(spec_path: Path) -> None:
    spec = load_spec(spec_path, env={})
    grid = build_grid(spec, ["fast=5..15:5", "slow=30,50"])
    assert grid == [{"fast": f, "slow": s} for f in (5, 10, 15) for s in (30, 50)]
    with pytest.raises(ConfigError, match=r"unknown parameter.*did you mean fast"):
        build_grid(spec, ["fats=5"])
    with pytest.raises(ConfigError, match="given twice"):
        build_grid(spec, ["fast=5", "fast=6"])
    with pytest.raises(ConfigError, match="at most"):
        build_grid(spec, ["fast=2..500", "slow=3..1000"])


def test_ranking_direction_and_missing_values_last() -> None:
    def point(i: int, **summary: float | None) -> PointResult:
        return PointResult(i, {"x": i}, "complete", dict(summary), windows={"in_sample": {"sharpe": -i}})

    results = [point(0, sharpe=0.5, max_drawdown=0.3), point(1, sharpe=None, max_drawdown=0.1),
               point(2, sharpe=1.5, max_drawdown=0.2),
               PointResult(3, {"x": 3}, "error", None, error="boom")]
    assert [r.index for r in rank_results(results, "sharpe")] == [2, 0, 1, 3]
    assert [r.index for r in rank_results(results, "max_drawdown")] == [1, 2, 0, 3]
    assert [r.index for r in rank_results(results, "sharpe", "in_sample")] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="did you mean sharpe"):
        rank_results(results, "sharp")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRADEEXECUTOR_PARAMS"}
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], check=False,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize(("param", "message"), [
    ("fast=5..x", "not a number"),
    ("fats=5", "unknown parameter"),
    ("fast=five", "not an integer"),
])
def test_cli_invalid_grid_is_one_line_exit_2_before_anything_runs(spec_path: Path, tmp_path: Path, param: str,
                                                                   message: str) -> None:
    runs_dir, output = tmp_path / "runs", tmp_path / "out"
    result = _cli("optimize", str(spec_path), "--param", param, "--runs-dir", str(runs_dir), "--output", str(output))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not runs_dir.exists() and not output.exists()


def test_help_names_the_environment_variable_of_cluster() -> None:
    """--cluster is also read from DASK_SCHEDULER_ADDRESS; its help says so, as every option with a variable does."""
    from click.testing import CliRunner

    from tradeexecutor.cli.main import cli as main

    result = CliRunner().invoke(main, ["optimize", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    cluster = text[text.index("--cluster ADDRESS"):text.index("--output DIRECTORY")]
    assert "[env var: DASK_SCHEDULER_ADDRESS]" in cluster


def test_cli_sweep_2x2_rows_match_the_runs_made_for_them(spec_path: Path, tmp_path: Path) -> None:
    """Ranked in-sample; every point a full run (--reports all) whose own figures and fingerprints match its row."""
    runs_dir, output = tmp_path / "runs", tmp_path / "out"
    result = _cli("optimize", str(spec_path), "--param", "fast=5,10", "--param", "slow=20..30:10",
                  "--rank-by", "total_return", "--processes", "2", "--runs-dir", str(runs_dir),
                  "--output", str(output), "--ref-prefix", "sweep", "--reports", "all")
    assert result.returncode == 0, result.stderr
    assert "Ranked by **total_return in-sample**" in result.stdout
    assert "| rank | fast | slow | total_return IS | total_return OOS |" in result.stdout
    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert {(int(r["fast"]), int(r["slow"])) for r in rows} == {(5, 20), (5, 30), (10, 20), (10, 30)}
    assert (output / "results.md").read_text().startswith("# Sweep of")
    assert (output / "charts.npz").is_file()  # the sweep's charts are drawn on demand (tradeexecutor report)
    assert [float(r["total_return_is"]) for r in rows] == sorted((float(r["total_return_is"]) for r in rows),
                                                                 reverse=True)
    for row in rows:
        run = runs_dir / row["run_id"]
        metrics = json.loads((run / "metrics.json").read_text())
        metadata = json.loads((run / "metadata.json").read_text())
        assert metadata["status"] == "complete" and metrics["status"] == "complete"
        assert metadata["sweep"]["values"] == {"fast": int(row["fast"]), "slow": int(row["slow"])}
        for name in ("metrics.prom", "report.md", "report.html", "orders.csv", "run_spec.yaml", "strategy.py"):
            assert (run / name).exists(), name
        # Charts are drawn on demand (they were most of a default sweep's time); the reports say how.
        assert not (run / "charts" / "equity.png").exists()
        assert f"`tradeexecutor report {row['run_id']}` draws them" in (run / "report.md").read_text()
        assert f"tradeexecutor report {row['run_id']} draws them" in (run / "report.html").read_text()
        spec = load_spec(run / "run_spec.yaml", env={})
        assert spec.strategy["fast"] == int(row["fast"]) and spec.strategy["slow"] == int(row["slow"])
        # The row's whole-period figures are the run's own, and it fingerprints the same config and code.
        assert float(row["total_return"]) == pytest.approx(metrics["summary"]["total_return"], rel=1e-12)
        assert float(row["sharpe"]) == pytest.approx(metrics["summary"]["sharpe"], rel=1e-12)
        assert row["fingerprint_config"] == metadata["fingerprints"]["config"]
        assert row["fingerprint_code"] == metadata["fingerprints"]["code"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    with Registry(runs_dir) as registry:
        records = registry.all()
    assert sorted(r.ref or "" for r in records) == ["sweep-001", "sweep-002", "sweep-003", "sweep-004"]
    assert all(r.status == "complete" for r in records)
    drawn = _cli("report", rows[0]["run_id"], "--runs-dir", str(runs_dir))
    assert drawn.returncode == 0, drawn.stderr
    run = runs_dir / rows[0]["run_id"]
    assert (run / "charts" / "equity.png").read_bytes().startswith(b"\x89PNG")
    assert "![Equity and prices](charts/equity.svg)" in (run / "report.md").read_text()
