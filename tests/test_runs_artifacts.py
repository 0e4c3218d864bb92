"""Run artifacts from real backtest run folders: metrics.json equals compute_summary, metrics.prom is promtool-clean,
the report's key figures, checks and notable events are right, the HTML is self-contained, and no secret leaks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradeexecutor.backtest import run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.source import load_market
from tradeexecutor.ledger import Ledger, load_state
from tradeexecutor.runs.artifacts import CHART_FILES, Thresholds, key_figures, write_artifacts, write_report
from tradeexecutor.runs.metrics_text import RUN_LABELS, RUN_METRIC_NAMES, render_runs
from tradeexecutor.runs.run import Runs
from tradeexecutor.runs.runner import start_run
from tradeexecutor.runstate import CrashFile
from tradeexecutor.stats import compute_summary
from tradeexecutor.store.journal import Journal
from tradeexecutor.strategy.loader import load_strategy

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "strategies" / "sma_crossover.py"
SECRET = "s3cr3t-artifact-value-9f2c"


def promtool() -> str | None:
    """promtool's path; skipped when absent unless CI is set."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI but was not found")
        pytest.skip("promtool not installed")
    return path


def promtool_check(text: bytes) -> None:
    tool = promtool()
    assert tool is not None
    result = subprocess.run([tool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def write_spec(folder: Path, *, fast: int = 10, slow: int = 30, fee: float = 0.001, min_notional: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"spec-{fast}-{slow}.yaml"
    path.write_text(
        f"strategy_file: {STRATEGY}\nmode: backtest\nname: SMA test\n"
        "environment:\n  data: [stocks-daily]\n  start: '2010-01-01'\n  end: '2012-12-31'\n"
        f"strategy:\n  fast: {fast}\n  slow: {slow}\n"
        f"core:\n  cash: 10000\n  fee: {fee}\n  min_notional: {min_notional}\n",
        encoding="utf-8",
    )
    return path


def make_run(runs_dir: Path, spec_path: Path, ref: str | None = None) -> Path:
    """A real backtest run through the runs API (create, then start: backtest, record, write_artifacts)."""
    runs = Runs(runs_dir, env={})
    try:
        record, _ = runs.create(spec_path, ref=ref)
        result = start_run(runs, record.id)
        assert result.record.status == "complete", result
        assert not result.notes, result.notes  # write_artifacts did not fail
        return runs.paths(record.id).root
    finally:
        runs.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("artifacts")
    os.environ["TRADEEXECUTOR_EXCHANGE_API_SECRET"] = SECRET  # present in the process: must reach no artifact
    try:
        return make_run(base / "runs", write_spec(base), ref="sma-art")
    finally:
        os.environ.pop("TRADEEXECUTOR_EXCHANGE_API_SECRET", None)


def _prices(symbols: list[str]) -> dict:
    market, _ = load_market(["stocks-daily"], symbols, start="2010-01-01", end="2012-12-31")
    return {symbol: market.close_series(symbol) for symbol in market.symbols}


def _state(run: Path):
    state = load_state(run / "state")
    assert state is not None
    return state


def test_every_artifact_is_written(run_dir: Path) -> None:
    for name in ("metrics.json", "metrics.prom", "orders.csv", "report.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
    for name in CHART_FILES:
        assert (run_dir / "charts" / name).stat().st_size > 1000, name
    assert (run_dir / "charts" / "equity.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (run_dir / "charts" / "equity.svg").read_bytes()


def test_metrics_json_equals_compute_summary_and_the_state(run_dir: Path) -> None:
    state = _state(run_dir)
    document = json.loads((run_dir / "metrics.json").read_text())
    expected = compute_summary(state, benchmark_prices=_prices(["GOOG"])).to_dict()
    assert document["summary"] == expected
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert document["run_id"] == metadata["run_id"] == run_dir.name
    assert document["ref"] == "sma-art"
    assert document["mode"] == "backtest"
    assert document["status"] == "complete"
    assert document["strategy"] == {"name": "SMA crossover", "version": metadata["strategy_version"]}
    run = document["run"]
    assert run["cycles"] == state.cycles_completed > 0
    assert run["trades"] == expected["trade_count"] > 0
    assert run["orders"]["filled"] == expected["trade_count"]
    assert run["orders"]["rejected"] == 0
    assert run["fees_paid"] == pytest.approx(state.portfolio.fees_paid) and run["fees_paid"] > 0
    assert run["crashes"] == 0
    assert run["started_at"] and run["finished_at"] and run["duration_seconds"] >= 0
    assert document["events"]["order_filled"] == expected["trade_count"]
    assert {c["name"]: c["passed"] for c in document["checks"]}["no_rejected_orders"] is True


def test_metrics_prom_is_promtool_clean_and_labelled(run_dir: Path) -> None:
    text = (run_dir / "metrics.prom").read_bytes()
    promtool_check(text)
    body = text.decode()
    run_id = run_dir.name
    assert f'tradeexecutor_cycles_total{{mode="backtest",ref="sma-art",run_id="{run_id}",strategy="SMA crossover"}}' \
        in body
    assert re.search(rf'tradeexecutor_orders\{{[^}}]*run_id="{run_id}",state="filled"', body)
    # The live /metrics names are reused where they mean the same thing.
    from tradeexecutor.webhook.metrics import METRIC_NAMES

    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", body, flags=re.MULTILINE))
    assert {"tradeexecutor_cycles_total", "tradeexecutor_fees_paid", "tradeexecutor_portfolio_value",
            "tradeexecutor_orders", "tradeexecutor_crashes_total"} <= exported & set(METRIC_NAMES)
    assert exported <= set(RUN_METRIC_NAMES), exported - set(RUN_METRIC_NAMES)
    for line in body.splitlines():
        if line.startswith("tradeexecutor_") and "{" in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            assert set(RUN_LABELS) <= set(labels), line
    assert "NaN" not in body


def _markdown_table(text: str, heading: str) -> dict[str, str]:
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and not set(cells[0]) <= {"-", ":"}:
            rows[cells[0]] = cells[1]
    return rows


def test_report_key_figures_equal_compute_summary(run_dir: Path) -> None:
    state = _state(run_dir)
    summary = compute_summary(state, benchmark_prices=_prices(["GOOG"]))
    report = (run_dir / "report.md").read_text()
    figures = _markdown_table(report, "Key figures")
    assert summary.total_return is not None and summary.sharpe is not None and summary.max_drawdown is not None
    assert figures["Total return"] == f"{summary.total_return * 100:,.2f} %"
    assert figures["Sharpe"] == f"{summary.sharpe:,.2f}"
    assert figures["Max drawdown"] == f"{summary.max_drawdown * 100:,.2f} %"
    assert figures["Final equity"] == f"{summary.final_equity:,.2f}"
    assert figures["Trades executed"] == f"{summary.trade_count:,}"
    assert figures["Fees paid"] == f"{summary.fees_paid:,.2f}"
    assert figures["Cycles"] == f"{state.cycles_completed:,}"
    for label, text in key_figures(summary):
        assert figures[label] == text, label
    checks = _markdown_table(report, "Checks")
    assert checks["No rejected orders"] == "pass"
    assert checks["No crashes"] == "pass"
    assert checks["Run completed"] == "pass"
    assert any(label.startswith("Fees under") for label in checks)
    assert any(label.startswith("Max drawdown under") for label in checks)
    assert f"Run {run_dir.name}" in report
    assert "charts/equity.svg" in report


def test_report_html_is_self_contained(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "<?xml" not in page
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page), "the report fetches something"
    assert "<script" not in page
    summary = compute_summary(_state(run_dir), benchmark_prices=_prices(["GOOG"]))
    assert summary.total_return is not None and f"{summary.total_return * 100:,.2f} %" in page


def test_no_secret_value_in_any_artifact(run_dir: Path) -> None:
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def _hand_built_run(folder: Path) -> Path:
    """run_backtest + a ledger written once + metadata.json, with rejections, a trigger and a crash in the journals."""
    strategy = load_strategy(STRATEGY, {"fast": 5, "slow": 20})
    market, _ = load_market(["stocks-daily"], list(strategy.instruments), start="2011-01-01", end="2012-12-31")
    state_dir = folder / "state"
    state_dir.mkdir(parents=True)
    journal = Journal(state_dir / "journal.jsonl")

    def events(event: str, /, **fields: object) -> None:
        journal.append(event, fields, level="warning" if event == "order_rejected" else "info")

    config = EngineConfig(execution=ExecutionConfig(fee=0.001, min_notional=50_000.0), initial_cash=10_000.0)
    result = run_backtest(strategy, market, config, events=events)
    ledger = Ledger(state_dir / "ledger.sqlite")
    ledger.save(result.state)
    ledger.close()
    journal.append("trigger_fired", {"symbol": "GOOG", "trigger": "stop_loss", "price": 512.5})
    try:
        raise RuntimeError("feed went away")
    except RuntimeError as exc:
        CrashFile.for_state_dir(state_dir).record(exc)
    Journal(folder / "journal.jsonl").append("crashed", {"message": "RuntimeError: feed went away"}, level="error")
    (folder / "metadata.json").write_text(json.dumps({
        "run_id": "hand-1", "ref": "hand", "name": "Hand built", "mode": "replay", "status": "error",
        "strategy_name": strategy.name, "strategy_version": strategy.version,
        "timeline": [{"event": "created", "at": "2024-05-01T12:00:00+00:00"},
                     {"event": "started", "at": "2024-05-01T12:00:01+00:00"},
                     {"event": "error", "at": "2024-05-01T12:00:09+00:00"}],
    }))
    return folder


def test_notable_events_and_failed_checks(tmp_path: Path) -> None:
    run = _hand_built_run(tmp_path / "hand-1")
    write_artifacts(run, thresholds=Thresholds(max_drawdown=0.0001))
    state = _state(run)
    summary = compute_summary(state)
    assert summary.rejected_trade_count > 0
    document = json.loads((run / "metrics.json").read_text())
    assert document["status"] == "error" and document["mode"] == "replay"
    assert document["run"]["crashes"] == 1
    assert document["run"]["last_crash"] == "RuntimeError: feed went away"
    assert document["run"]["orders"]["rejected"] == summary.rejected_trade_count
    assert document["run"]["duration_seconds"] == 8.0
    assert document["events"]["order_rejected"] == summary.rejected_trade_count
    report = (run / "report.md").read_text()
    checks = _markdown_table(report, "Checks")
    assert checks["No rejected orders"] == "FAIL"
    assert checks["No crashes"] == "FAIL"
    assert checks["Run completed"] == "FAIL"
    notable = report.split("## Notable events", 1)[1].split("\n## ", 1)[0]
    assert "**order_rejected**" in notable and "reason=" in notable
    assert "**trigger_fired**" in notable and "trigger=stop_loss" in notable
    assert "**crashed**" in notable
    prom = (run / "metrics.prom").read_bytes()
    assert b'tradeexecutor_run_check_passed{check="no_rejected_orders",mode="replay",ref="hand",run_id="hand-1"' in prom
    promtool_check(prom)
    html_page = (run / "report.html").read_text()
    assert "FAIL" in html_page and "order_rejected" in html_page


def test_a_run_without_state_still_gets_artifacts(tmp_path: Path) -> None:
    run = tmp_path / "r-empty"
    (run / "state").mkdir(parents=True)
    (run / "metadata.json").write_text(json.dumps({"run_id": "r-empty", "mode": "backtest", "status": "new"}))
    write_artifacts(run)
    document = json.loads((run / "metrics.json").read_text())
    assert document["status"] == "new" and document["run"]["cycles"] == 0
    assert "no state saved" in (run / "report.md").read_text()
    promtool_check((run / "metrics.prom").read_bytes())


def test_write_report_regenerates_only_the_report(run_dir: Path) -> None:
    (run_dir / "report.md").unlink()
    (run_dir / "report.html").unlink()
    shutil.rmtree(run_dir / "charts")
    before = (run_dir / "metrics.json").stat().st_mtime_ns
    write_report(run_dir)
    assert (run_dir / "report.md").exists() and (run_dir / "report.html").exists()
    assert (run_dir / "charts" / "equity.svg").exists()
    assert (run_dir / "metrics.json").stat().st_mtime_ns == before


def test_render_runs_groups_families_over_runs() -> None:
    documents = [{"run_id": f"r{i}", "ref": None, "mode": "backtest", "status": "complete",
                  "strategy": {"name": "S", "version": "v"}, "run": {"cycles": i}, "summary": {"sharpe": None}}
                 for i in range(3)]
    text = render_runs(documents).decode()
    assert text.count("# TYPE tradeexecutor_cycles_total counter") == 1
    assert text.count("tradeexecutor_cycles_total{") == 3
    assert "tradeexecutor_run_sharpe{" not in text  # unknown: declared, no sample
    promtool_check(text.encode())


def test_reports_from_the_saved_state_equal_reports_read_back(tmp_path: Path) -> None:
    """A backtest run's reports are made from the state it has just saved (not read back): byte for byte the same."""
    from datetime import UTC, datetime

    from tradeexecutor.runs.executor import execute_backtest

    runs = Runs(tmp_path / "runs", env={})
    try:
        record, _ = runs.create(write_spec(tmp_path))
        paths = runs.paths(record.id)
        outcome = execute_backtest(runs.load_run_spec(record.id), paths, record.id)
    finally:
        runs.close()
    assert outcome.state is not None and outcome.summary["trade_count"] > 0
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    names = ("metrics.json", "metrics.prom", "report.md", "report.html")
    write_artifacts(paths.root, now=now, charts=False, orders=False, state=outcome.state)
    from_memory = {name: (paths.root / name).read_bytes() for name in names}
    write_artifacts(paths.root, now=now, charts=False, orders=False)  # reads state/ledger.sqlite back
    read_back = {name: (paths.root / name).read_bytes() for name in names}
    for name in names:
        assert from_memory[name] == read_back[name], name
    assert json.loads(from_memory["metrics.json"])["summary"] == outcome.summary


def test_the_report_lists_the_reconciliation_when_the_run_has_one(run_dir: Path, tmp_path: Path) -> None:
    """reconciliation.json sits in state/ (every executor start writes one); a backtest run has none and the report
    does not name it; once it is there, report.md lists it with the other files."""
    from tradeexecutor.engine.reconcile import reconcile, write_reconciliation

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    write_report(run)
    files = re.search(r"^Files: (.*)\.$", (run / "report.md").read_text(), flags=re.MULTILINE)
    assert files is not None and "reconciliation" not in files.group(1)
    assert files.group(1).split(", ")[:3] == ["`metrics.json`", "`metrics.prom`", "`orders.csv`"]
    state = _state(run)
    write_reconciliation(reconcile(state, None, commit=lambda: None, now=lambda: datetime.now(UTC)),
                         run / "state" / "reconciliation.json")
    write_report(run)
    files = re.search(r"^Files: (.*)\.$", (run / "report.md").read_text(), flags=re.MULTILINE)
    assert files is not None and files.group(1).endswith(", `state/reconciliation.json`")
    assert json.loads((run / "state" / "reconciliation.json").read_text())["outcome"] == "clean"
