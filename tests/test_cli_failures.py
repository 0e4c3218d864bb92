"""What a person sees when they get something wrong: a bad date is one line (exit 2), a typo inside
decide() names the strategy file, line and cycle first (backtest, runs, optimize and the daemon's log),
never pandas' or the engine's 40-line traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMA = ROOT / "strategies" / "sma_crossover.py"
TYPO = ROOT / "tests" / "strategies" / "typo_in_decide.py"
#: The second cycle of GOOG's daily bars: the first one with a position, where exit_rules() runs.
TYPO_CYCLE = "2004-08-21 00:00 UTC"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**environment, **(env or {})})


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without Python's own warnings from third-party imports."""
    return [line for line in result.stderr.splitlines()
            if line.strip() and "Warning" not in line and "import pkg_resources" not in line]


# -- dates ---------------------------------------------------------------------------------------


DATES = [
    (["--start", "2010-13-45"], "--start '2010-13-45' is not a date or time (month must be in 1..12"),
    (["--end", "yesterdayish"], "--end 'yesterdayish' is not a date or time (Unknown datetime string format"),
    (["--start", "2012-01-01", "--end", "2011-06-30"], "--start 2012-01-01 is not before --end 2011-06-30"),
]


@pytest.mark.parametrize("command", ["backtest", "start"])
@pytest.mark.parametrize(("args", "message"), DATES)
def test_a_bad_date_is_one_line_exit_2_and_nothing_written(tmp_path: Path, command: str, args: list[str],
                                                          message: str) -> None:
    extra = ["--state-dir", str(tmp_path / "state"), "--port", "0"] if command == "start" else \
        ["--output", str(tmp_path / "out")]
    result = cli(command, str(SMA), *args, *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr
    assert "use ISO 8601" in lines[0] or "is not before" in lines[0]
    assert not (tmp_path / "state").exists() and not (tmp_path / "out").exists()


def test_a_bad_date_from_the_environment_is_one_line_too(tmp_path: Path) -> None:
    result = cli("backtest", str(SMA), cwd=tmp_path, env={"TRADEEXECUTOR_END": "2010-02-30"})
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: --end '2010-02-30' is not a date or time"), result.stderr


def test_a_bad_date_in_a_run_spec_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"strategy_file: {SMA}\nmode: backtest\nenvironment:\n  start: '2010-13-01'\n")
    for command in (["runs", "--runs-dir", str(tmp_path / "runs"), "create", str(spec)],
                    ["backtest", "--spec", str(spec)], ["optimize", str(spec), "--param", "fast=5,10"]):
        result = cli(*command, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        lines = error_lines(result)
        assert len(lines) == 1 and "environment.start" in lines[0] and "'2010-13-01'" in lines[0], result.stderr


# -- a typo inside decide() -----------------------------------------------------------------------


def _summary(path: Path) -> str:
    return f"{path}, line 26, in exit_rules, cycle {TYPO_CYCLE}: NameError: name 'clsoe' is not defined"


def test_a_typo_in_decide_names_the_file_line_and_cycle_first_in_a_backtest(tmp_path: Path) -> None:
    result = cli("backtest", str(TYPO), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    lines = error_lines(result)
    assert lines[0] == f"error: {_summary(TYPO)}", result.stderr
    assert lines[1:] == [f'  File "{TYPO}", line 22, in decide', "    return exit_rules(ctx)",
                         f'  File "{TYPO}", line 26, in exit_rules', '    return [clsoe(note="typo")]  # noqa: F821 '
                                                                    '- the typo under test']
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_typo_in_decide_in_a_backtest_run_and_its_metadata(tmp_path: Path) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text(f"strategy_file: {TYPO}\nmode: backtest\n")
    result = cli("runs", "create", str(spec), "--ref", "typo", "--start", cwd=tmp_path)  # the default ./runs
    assert result.returncode == 1
    run_dir = next(path for path in (tmp_path / "runs").glob("r*") if path.is_dir())
    pinned = run_dir / "strategy.py"
    assert error_lines(result)[0] == f"error: {_summary(pinned.resolve())}", result.stderr
    assert "Traceback" not in result.stderr
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "error" and meta["error"] == _summary(pinned.resolve())
    shown = cli("runs", "show", "typo", cwd=tmp_path)
    assert "error:" in shown.stdout and "line 26, in exit_rules, cycle 2004-08-21" in shown.stdout


def ranking_rows(markdown: str) -> list[str]:
    """The rows of the first table in a sweep's results.md (the ranking; walk-forward folds follow it), separator left out."""
    rows: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not line.startswith("|--") and not line.startswith("| --") and not line.startswith("|:"):
                rows.append(line)
        elif rows:
            break
    return rows


def test_a_typo_in_decide_in_an_optimize_sweep(tmp_path: Path) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text(f"strategy_file: {TYPO}\nmode: backtest\n")
    result = cli("optimize", str(spec), "--param", "window=5,10", "--processes", "1", "--output",
                 str(tmp_path / "sweep"), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode != 0
    rows = ranking_rows((tmp_path / "sweep" / "results.md").read_text())
    assert len(rows) == 3  # the header and two points
    for row in rows[1:]:
        # A sweep's points run the strategy from its source (no run folder, no pinned copy): the file named is it.
        assert f"| error: {TYPO}, line 26, in exit_rules, cycle 2004-08-21 00:00 UTC: NameError: " \
               "name 'clsoe' is not defined |" in row, row
    assert "Traceback" not in result.stderr


def test_the_daemon_log_leads_with_the_summary_and_keeps_the_full_crash_record(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = cli("start", str(TYPO), "--state-dir", str(state_dir), "--port", "0", "--replay-start", "first",
                 "--replay-seconds", "0.02", "--chart-seconds", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert f"ERROR   tradeexecutor.daemon: cycle job crashed: {_summary(TYPO)}\nTraceback (most recent call last):" \
        in result.stderr, result.stderr
    record = json.loads((state_dir / "crash.json").read_text())["last_exception"]
    assert record["class"] == "builtins.NameError", "the crash record describes the real exception, not a wrapper"
    assert [frame["name"] for frame in record["frames"]][-2:] == ["decide", "exit_rules"]
    assert record["notes"] == [f"strategy failed: {_summary(TYPO)}"]
