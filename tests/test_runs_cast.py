"""``runs cast`` on backtests and on runs that are not running: recorded at once, cast once when finished.

The runner commands are subprocesses as a user runs them; the wallboard is the real app on
waitress (loopback). A replay run casting while it runs is tested in tests/test_wallboard_browser.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tradeexecutor.store.cast_target import CastTargetFile
from tradeexecutor.store.journal import Journal
from tradeexecutor.wallboard import ChartStore, Poller, WallboardConfig
from tradeexecutor.wallboard import create_app as wallboard_app
from tradeexecutor.webhook import WebhookServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "runs-cast-token"
BACKTEST = """\
strategy_file: sma.py
mode: backtest
name: Cast backtest
environment: {data: [stocks-daily], start: "2008-01-01", end: "2011-12-31"}
core: {fee: 0.001}
"""


@pytest.fixture
def board() -> Iterator[tuple[str, ChartStore]]:
    config = WallboardConfig(token=TOKEN)
    charts = ChartStore()
    with WebhookServer(wallboard_app(config, Poller(config), charts), port=0) as server:
        yield server.url.rstrip("/"), charts


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "strategies" / "sma_crossover.py", tmp_path / "sma.py")
    (tmp_path / "bt.yaml").write_text(BACKTEST)
    return tmp_path


def runs(work: Path, *args: str, env: dict[str, str] | None = None, expect: int = 0) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    clean["TRADEEXECUTOR_RUNS_DIR"] = str(work / "runs")
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "runs", *args], cwd=work,
                            capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})
    assert result.returncode == expect, f"runs {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def meta(work: Path, ref: str) -> dict[str, Any]:
    for path in (work / "runs").glob("r*/metadata.json"):
        data = json.loads(path.read_text())
        if data["ref"] == ref:
            return data
    raise AssertionError(ref)


def events(work: Path, ref: str) -> list[dict[str, Any]]:
    return [e for e in Journal(work / "runs" / meta(work, ref)["run_id"] / "journal.jsonl").read(limit=1000)
            if e["event"].startswith("cast")]


def test_a_backtest_casts_its_final_data_once_when_it_completes_and_again_when_asked(
        work: Path, board: tuple[str, ChartStore]) -> None:
    url, charts = board
    env = {"TRADEEXECUTOR_WALLBOARD_URL": url, "TRADEEXECUTOR_WALLBOARD_TOKEN": TOKEN}
    runs(work, "create", "bt.yaml", "--ref", "bt")
    said = runs(work, "cast", "bt", "/wallboard/backtests/sma", env=env).stdout.strip()
    assert said == "run bt casts to /wallboard/backtests/sma: the run casts once it is started"
    run_id = meta(work, "bt")["run_id"]
    assert CastTargetFile(work / "runs" / run_id / "state" / "cast.json").read().target == "/wallboard/backtests/sma"  # type: ignore[union-attr]
    assert meta(work, "bt")["cast"] == "/wallboard/backtests/sma"
    assert charts.index() == {"pages": []}

    runs(work, "start", "bt", env=env)
    chart = json.loads(charts.chart("backtests", "sma") or b"{}")
    assert chart["updates"] == 1 and chart["title"] == "Cast backtest"
    assert chart["source"] == {"name": "Cast backtest", "run": "bt", "mode": "backtest", "status": "complete"}
    equity, close = chart["series"]
    summary = meta(work, "bt")["summary"]
    assert equity["v"][-1] == pytest.approx(summary["final_equity"]) and 2 <= len(equity["t"]) <= 501
    assert close["name"] == "GOOG close" and close["t"][0] == equity["t"][0] and close["t"][-1] == equity["t"][-1]
    assert [e["event"] for e in events(work, "bt")] == ["cast_requested", "cast_delivered"]

    # Cast a finished run elsewhere: the command returns, a detached process sends it once.
    said = runs(work, "cast", "bt", "/wallboard/backtests/again", env=env).stdout.strip()
    assert said.startswith("run bt casts to /wallboard/backtests/again: sending the final data of the complete run")
    deadline = time.monotonic() + 60
    while charts.chart("backtests", "again") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    again = json.loads(charts.chart("backtests", "again") or b"{}")
    assert again["series"] == chart["series"]
    assert json.loads(charts.chart("backtests", "sma") or b"{}")["updates"] == 1

    # A misspelt path on a finished run: the failure lands in the run's journal.
    runs(work, "cast", "bt", "/wallbord/backtests/sma", env=env)
    deadline = time.monotonic() + 60
    while "cast_failed" not in [e["event"] for e in events(work, "bt")] and time.monotonic() < deadline:
        time.sleep(0.1)
    failed = [e for e in events(work, "bt") if e["event"] == "cast_failed"]
    assert failed and "404" in failed[-1]["fields"]["reason"] and failed[-1]["fields"]["target"] == "/wallbord/backtests/sma"
    assert TOKEN not in (work / "runs" / run_id / "journal.jsonl").read_text()


def test_bad_targets_are_refused_at_once_and_a_dash_stops(work: Path) -> None:
    runs(work, "create", "bt.yaml", "--ref", "bt")
    refused = runs(work, "cast", "bt", "wallboard/page1/chart1", expect=2)
    assert refused.stderr.startswith("error: cast target 'wallboard/page1/chart1' is neither a wallboard path")
    assert not (work / "runs" / meta(work, "bt")["run_id"] / "state" / "cast.json").exists()
    assert runs(work, "cast", "nope", "/wallboard/p/c", expect=2).stderr.startswith("error: no run with id or ref")
    without_url = runs(work, "cast", "bt", "/wallboard/p/c")
    assert without_url.stdout.strip() == "run bt casts to /wallboard/p/c: the run casts once it is started"
    assert without_url.stderr.startswith("warning: no wallboard URL to cast /wallboard/p/c to: set "
                                         "TRADEEXECUTOR_WALLBOARD_URL")
    assert runs(work, "cast", "bt", "-").stdout.strip() == "run bt stops casting: the run will not cast"
    assert runs(work, "cast", "bt").stdout.strip() == "run bt stops casting: the run will not cast"
    assert meta(work, "bt")["cast"] is None
    assert [e["fields"]["detail"] for e in events(work, "bt")] == ["/wallboard/p/c", "stop", "stop"]
    # A damaged cast.json is refused by name, left as it is, and nothing is recorded.
    damaged = work / "runs" / meta(work, "bt")["run_id"] / "state" / "cast.json"
    damaged.write_text("{half")
    refused = runs(work, "cast", "bt", "/wallboard/p/c", expect=2)
    assert "cast.json" in refused.stderr and "fix or delete it" in refused.stderr
    assert damaged.read_text() == "{half" and len(events(work, "bt")) == 3
