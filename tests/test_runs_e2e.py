"""``tradeexecutor runs`` as a user drives it: every command a subprocess, refs and ids alike, a real replay executor."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tradeexecutor.runs.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ROOT / "strategies"

pytestmark = pytest.mark.slow

BACKTEST = """\
strategy_file: sma.py
mode: backtest
environment: {data: [stocks-daily], start: "2008-01-01", end: "2011-12-31"}
strategy: {fast: 8}
core: {fee: 0.001}
"""

PAPER = """\
strategy_file: sma.py
mode: replay
environment: {data: [stocks-daily], start: "2009-01-01", end: "2012-12-31", replay_seconds: 0.1}
core: {fee: 0.001, revaluation_seconds: 1}
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(STRATEGIES / "sma_crossover.py", tmp_path / "sma.py")
    (tmp_path / "bt.yaml").write_text(BACKTEST)
    (tmp_path / "replay.yaml").write_text(PAPER)
    return tmp_path


def runs(work: Path, *args: str, env: dict[str, str] | None = None,
         expect: int = 0) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    clean["TRADEEXECUTOR_RUNS_DIR"] = str(work / "runs")
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "runs", *args], cwd=work,
                            capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})
    assert result.returncode == expect, f"runs {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def show(work: Path, run: str) -> dict:
    """metadata.json of the run with this id or ref, read from its folder (``runs show`` is tested once)."""
    for path in (work / "runs").glob("r*/metadata.json"):
        meta = json.loads(path.read_text())
        if run in (meta["run_id"], meta["ref"]):
            return meta
    raise AssertionError(f"no run {run}")


def kill_run(work: Path, ref: str) -> None:
    """Never leave a detached executor behind, whatever failed: SIGKILL the run's process group."""
    with Registry(work / "runs") as registry:
        record = registry.find(ref)
    if record is not None and record.pid:
        try:
            os.killpg(record.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def listing(work: Path) -> list[list[str]]:
    return [line.split() for line in runs(work, "ls").stdout.splitlines()]


def test_backtest_runs_from_the_command_line(work: Path) -> None:
    created = runs(work, "create", "bt.yaml", "--ref", "sma", "--start", env={"TRADEEXECUTOR_FEE": "0.002"})
    assert "created run r" in created.stdout and "(ref sma)" in created.stdout and "complete:" in created.stdout
    meta = show(work, "sma")
    run_id = meta["run_id"]
    assert meta["status"] == "complete" and meta["ref"] == "sma"
    assert [e["event"] for e in meta["timeline"]] == ["created", "start_requested", "started", "complete"]
    assert "fee: 0.002" in (work / "runs" / run_id / "run_spec.yaml").read_text()  # the env override was pinned
    assert json.loads(runs(work, "show", run_id, "--json").stdout) == meta
    text = runs(work, "show", "sma").stdout
    assert f"id:           {run_id}" in text and "status:       complete" in text and "timeline:" in text

    logs = runs(work, "logs", run_id, "--format", "csv", "--timezone", "UTC", "--limit", "1000").stdout
    rows = list(csv.reader(io.StringIO(logs)))
    assert rows[0] == ["time", "level", "event", "details"]
    events = [row[2] for row in rows[1:]]
    assert events[:3] == ["created", "start_requested", "started"] and events[-1] == "complete"
    assert "order_filled" in events and rows[1][0].endswith("+00:00")

    orders = list(csv.DictReader(io.StringIO(runs(work, "orders", "sma").stdout)))
    assert len(orders) > 5 and orders[0]["symbol"] == "GOOG"

    again = runs(work, "start", "sma", expect=2)
    assert "backtest run sma is complete; reset it (runs reset sma)" in again.stderr

    copied = runs(work, "copy", run_id, "--ref", "sma-copy")
    assert "as a copy of" in copied.stdout
    copy_meta = show(work, "sma-copy")
    assert copy_meta["status"] == "new" and copy_meta["copied_from"] == run_id
    assert copy_meta["fingerprints"] == meta["fingerprints"]
    runs(work, "set", "sma-copy", "core.fee=0.003", "strategy.slow=40")
    assert show(work, "sma-copy")["fingerprints"]["config"] != meta["fingerprints"]["config"]
    assert listing(work) == [["ID", "REF", "NAME", "MODE", "STATUS"],
                             [run_id, "sma", "SMA", "crossover", "backtest", "complete"],
                             [copy_meta["run_id"], "sma-copy", "SMA", "crossover", "backtest", "new"]]

    assert "reset: status new" in runs(work, "reset", "sma").stdout
    assert not (work / "runs" / run_id / "orders.csv").exists() and show(work, "sma")["status"] == "new"
    runs(work, "start", run_id)
    after = show(work, run_id)
    assert after["status"] == "complete" and after["summary"] == meta["summary"]
    assert runs(work, "show", "nope", expect=2).stderr.startswith("error: no run with id or ref 'nope'")


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_paper_run_starts_with_the_default_relative_runs_dir(work: Path) -> None:
    """No --runs-dir, no TRADEEXECUTOR_RUNS_DIR: ./runs, while the run's processes work inside the run's folder."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "runs", *args], cwd=work,
                              capture_output=True, text=True, timeout=120, env=clean)

    started = cli("create", "replay.yaml", "--ref", "rel", "--start")
    try:
        assert started.returncode == 0, started.stderr
        assert "running: webhook http://127.0.0.1:" in started.stdout and "webhook -" not in started.stdout
        meta = show(work, "rel")
        with urllib.request.urlopen(meta["executor"]["url"] + "/status", timeout=5) as response:
            assert json.loads(response.read())["executor_running"] is True
        assert not (work / "runs" / meta["run_id"] / "runs").exists(), "no second runs folder inside the run"
        stopped = cli("stop", "rel")
        assert stopped.returncode == 0 and "run rel stopped" in stopped.stdout
    finally:
        kill_run(work, "rel")


def test_a_paper_run_is_its_own_executor_started_and_stopped(work: Path) -> None:
    started = runs(work, "create", "replay.yaml", "--ref", "replay", "--start")
    meta = show(work, "replay")
    try:
        assert "running: webhook http://127.0.0.1:" in started.stdout, started.stdout
        assert meta["status"] == "running"
        url, port = meta["executor"]["url"], meta["executor"]["port"]
        assert url == f"http://127.0.0.1:{port}" and port != 3456
        executor_pid = meta["executor"]["pid"]
        with urllib.request.urlopen(url + "/status", timeout=5) as response:
            status = json.loads(response.read())
        assert status["executor_running"] is True

        def cycled() -> bool:
            with urllib.request.urlopen(url + "/status", timeout=5) as response:
                return json.loads(response.read())["cycles"] >= 5
        _wait(cycled)
        rows = listing(work)
        assert rows[1][-1] == "running" and rows[1][1] == "replay"

        stopped = runs(work, "stop", meta["run_id"])
        assert "run replay stopped" in stopped.stdout
        assert not psutil.pid_exists(executor_pid) or psutil.Process(executor_pid).status() == psutil.STATUS_ZOMBIE
        final = show(work, "replay")
        events = [e["event"] for e in final["timeline"]]
        assert events == ["created", "start_requested", "started", "stop_requested", "stopped"]
        assert final["status"] == "stopped" and final["stopped_at"]
        log = runs(work, "logs", "replay", "--limit", "1000").stdout
        assert "stop_requested" in log and "cycle_completed" in log  # the run's and the executor's journals
        assert (work / "runs" / final["run_id"] / "executor.log").stat().st_size > 0
        assert (work / "runs" / final["run_id"] / "state" / "ledger.sqlite").exists()
        folder = work / "runs" / final["run_id"]
        for artifact in ("metrics.json", "metrics.prom", "report.md", "report.html", "orders.csv"):
            assert (folder / artifact).stat().st_size > 0, f"a stopped replay run has {artifact}"
        assert json.loads((folder / "metrics.json").read_text())["status"] == "stopped"

        assert "reset: status new" in runs(work, "reset", "replay").stdout
        assert not (work / "runs" / final["run_id"] / "state" / "ledger.sqlite").exists()
    finally:  # never leave a detached executor behind, whatever failed
        kill_run(work, "replay")
