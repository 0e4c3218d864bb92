"""``tradeexecutor metrics export|serve`` and ``report`` as real subprocesses over real run folders."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_runs_artifacts import make_run, promtool_check, write_spec
from tradeexecutor.ledger import load_state
from tradeexecutor.stats import compute_summary


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], check=False,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cli-metrics")
    runs_dir = base / "runs"
    make_run(runs_dir, write_spec(base, fast=10, slow=30), ref="sma-a")
    make_run(runs_dir, write_spec(base, fast=5, slow=20), ref="sma-b")
    return runs_dir


def _run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_export_by_folder_is_promtool_clean_and_matches_the_summary(runs: Path) -> None:
    run = _run_dirs(runs)[0]
    result = cli("metrics", "export", str(run))
    assert result.returncode == 0, result.stderr
    promtool_check(result.stdout.encode())
    state = load_state(run / "state")
    assert state is not None
    sharpe = json.loads((run / "metrics.json").read_text())["summary"]["sharpe"]
    assert sharpe == pytest.approx(compute_summary(state).sharpe)
    match = re.search(rf'^tradeexecutor_run_sharpe\{{[^}}]*run_id="{run.name}"[^}}]*\}} (\S+)$', result.stdout,
                      flags=re.MULTILINE)
    assert match and float(match.group(1)) == pytest.approx(sharpe)


def test_export_by_ref_to_a_file(runs: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "sma-b.prom"
    result = cli("metrics", "export", "sma-b", "--runs-dir", str(runs), "--output", str(target))
    assert result.returncode == 0, result.stderr
    text = target.read_text()
    assert 'ref="sma-b"' in text and 'ref="sma-a"' not in text
    promtool_check(text.encode())


def test_export_of_an_unknown_run_is_one_line_exit_2(runs: Path) -> None:
    result = cli("metrics", "export", "no-such-run", "--runs-dir", str(runs))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_serve_scrapes_every_run_then_stops_on_sigterm(runs: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeexecutor.cli.main", "metrics", "serve", "--runs-dir", str(runs), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"http://([\d.]+):(\d+)/metrics", line)
        assert match, line
        base = f"http://{match.group(1)}:{match.group(2)}"
        with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read()
        text = body.decode()
        for run in _run_dirs(runs):
            assert f'run_id="{run.name}"' in text
        assert 'ref="sma-a"' in text and 'ref="sma-b"' in text
        assert text.count("# TYPE tradeexecutor_cycles_total counter") == 1
        assert "process_resident_memory_bytes" in text
        promtool_check(body)

        # A new run appears on the next scrape: the folder is read per scrape.
        extra = runs / "r-extra"
        extra.mkdir()
        (extra / "metadata.json").write_text(json.dumps({"run_id": "r-extra", "mode": "replay", "status": "running"}))
        with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
            assert 'run_id="r-extra"' in response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nope", timeout=30)
        assert missing.value.code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
            (runs / "r-extra" / "metadata.json").unlink(missing_ok=True)
            if (runs / "r-extra").exists():
                (runs / "r-extra").rmdir()
    assert code == 0


def test_report_regenerates_report_and_charts(runs: Path) -> None:
    run = _run_dirs(runs)[1]
    for name in ("report.md", "report.html"):
        (run / name).unlink()
    for chart in (run / "charts").iterdir():
        chart.unlink()
    started = time.time()
    result = cli("report", run.name, "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    assert (run / "report.md").stat().st_mtime >= started - 1
    assert "## Key figures" in (run / "report.md").read_text()
    assert "<svg" in (run / "report.html").read_text()
    assert (run / "charts" / "equity.png").exists() and (run / "charts" / "equity.svg").exists()
