"""Local sweeps: identical rows in one process or a pool, in-sample ranking with out-of-sample beside it, walk-forward,
resume after an interruption (in-process, and Ctrl+C on the real command), the progress bar, and no extra needed."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sweep_helpers import PACED, cli, cli_env, comparable, table, write_spec
from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.ranking import statistic
from tradeexecutor.runs.spec import load_spec
from tradeexecutor.runs.sweep import SweepOptions, SweepResult, plan_sweep, progress_callback, run_sweep
from tradeexecutor.runs.sweep_eval import PointResult

GRID = ("fast=5..15:5", "slow=20,30,40")


def _sweep(spec_path: Path, folder: Path, **options: Any) -> SweepResult:
    spec = load_spec(spec_path, env={})
    plan = plan_sweep(spec, SweepOptions(params=GRID, reports="none", **options))
    return run_sweep(plan, output_dir=folder, runs_dir=folder.parent / "runs")


#: Every fork of this process (os.fork: multiprocessing's fork start method), by the process forking.
_FORKS: list[int] = []
os.register_at_fork(before=lambda: _FORKS.append(os.getpid()))


def _number(value: float | None) -> float:
    """A statistic that must exist here (a sweep of healthy points has every figure)."""
    assert value is not None
    return value


def test_one_process_and_a_pool_give_identical_rows_ranked_in_sample(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    alone = _sweep(spec, tmp_path / "one", processes=1)
    pooled = _sweep(spec, tmp_path / "two", processes=2)
    assert alone.executor == "1 process" and pooled.executor == "2 processes"
    assert comparable(alone.results) == comparable(pooled.results)
    rows = pooled.results
    assert len(rows) == 9 and all(row.status == "complete" for row in rows)
    assert len({row.worker for row in rows}) == 2  # both processes worked
    from tradeexecutor.runs.sweep_eval import worker_name

    assert worker_name() in {row.worker for row in rows}  # this one too: it evaluates while its worker starts
    plan = pooled.plan
    for row in rows:
        assert row.fingerprints["data"] == plan.definition["data"]  # the worker held the very same candles
        assert row.fingerprints["config"] == plan.spec.with_parameters(row.values).config_fingerprint()
        assert set(row.windows) == {"in_sample", "out_of_sample"}
        assert row.windows["in_sample"]["end"] < row.windows["out_of_sample"]["start"]
    in_sample = [_number(statistic(row, "sharpe", "in_sample")) for row in rows]
    assert in_sample == sorted(in_sample, reverse=True)  # ranked on the in-sample window only
    whole = [_number(statistic(row, "sharpe")) for row in rows]
    assert whole != sorted(whole, reverse=True)  # which is not the whole period's order here
    lines = (tmp_path / "two" / "points.jsonl").read_text().splitlines()
    assert sorted(PointResult.from_json(json.loads(line)).index for line in lines) == list(range(9))


def test_holdout_zero_ranks_on_the_whole_period(tmp_path: Path) -> None:
    result = _sweep(write_spec(tmp_path), tmp_path / "out", processes=1, holdout=0.0)
    whole = [_number(statistic(row, "sharpe")) for row in result.results]
    assert whole == sorted(whole, reverse=True)
    assert all(row.windows == {} for row in result.results)
    assert "no out-of-sample check" in (tmp_path / "out" / "results.md").read_text()


def test_walk_forward_chooses_each_fold_on_its_train_window_and_chains_the_tests(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), env={})
    plan = plan_sweep(spec, SweepOptions(params=GRID, processes=1, walk_forward=3, holdout=0.45, reports="best",
                                         best=1))
    result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    assert len(result.folds) == 3
    in_sample, out_of_sample = plan.windows.in_sample, plan.windows.out_of_sample
    assert in_sample is not None and out_of_sample is not None
    for fold in result.folds:
        train, test = fold.fold.train, fold.fold.test
        assert train.first_ms == in_sample.first_ms and train.last_ms < test.first_ms  # anchored
        best = max(result.results, key=lambda row: _number(statistic(row, "sharpe", train.name)))
        assert fold.chosen is not None and fold.chosen.values == best.values
        assert fold.test == best.windows[test.name]
    assert result.folds[0].fold.test.first_ms == out_of_sample.first_ms
    assert result.folds[-1].fold.test.last_ms == out_of_sample.last_ms
    tests = [fold.test for fold in result.folds]
    assert all(test is not None for test in tests)
    chained = 1.0
    trades = 0
    for figures in tests:
        assert figures is not None
        chained *= 1 + figures["total_return"]
        trades += figures["trade_count"]
    assert result.combined is not None and result.combined["total_return"] == pytest.approx(chained - 1)
    assert result.combined["trade_count"] == trades
    report = (tmp_path / "out" / "results.md").read_text()
    assert "## Walk-forward: 3 anchored folds" in report and "Combined out-of-sample (3 folds chained)" in report
    assert "| sharpe IS | sharpe OOS |" in report
    assert not (tmp_path / "out" / "charts").exists()  # drawn on demand
    from tradeexecutor.runs.sweep_report import draw_charts

    draw_charts(tmp_path / "out")
    report = (tmp_path / "out" / "results.md").read_text()
    for chart in ("in_vs_out_of_sample.png", "walk_forward.png"):
        assert (tmp_path / "out" / "charts" / chart).read_bytes().startswith(b"\x89PNG")
        assert f"(charts/{chart})" in report
    assert sum(1 for row in result.results if row.run_id) == 1  # --best 1: one full run
    assert result.results[0].run_id and (tmp_path / "runs" / result.results[0].run_id / "report.html").exists()


def test_too_many_folds_for_the_data_is_one_line(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), env={})
    with pytest.raises(ConfigError, match="each needs at least 10"):
        plan_sweep(spec, SweepOptions(params=GRID, walk_forward=30))


def test_an_interrupted_sweep_resumes_to_the_same_result(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), env={})
    options = SweepOptions(params=GRID, processes=1, reports="none")
    whole = run_sweep(plan_sweep(spec, options), output_dir=tmp_path / "whole", runs_dir=tmp_path / "runs")

    def stop_after_four(row: PointResult) -> None:
        if row.index == 3:
            raise KeyboardInterrupt

    folder = tmp_path / "cut"
    cut = run_sweep(plan_sweep(spec, options), output_dir=folder, runs_dir=tmp_path / "runs",
                    progress=progress_callback(stop_after_four))
    assert cut.interrupted and cut.evaluated == 4
    assert len((folder / "points.jsonl").read_text().splitlines()) == 4
    assert not (folder / "results.csv").exists()
    with pytest.raises(ConfigError, match="already holds a sweep; add --resume"):
        run_sweep(plan_sweep(spec, options), output_dir=folder, runs_dir=tmp_path / "runs")
    resumed = run_sweep(plan_sweep(spec, options), output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    assert (resumed.resumed, resumed.evaluated) == (4, 5)
    assert comparable(resumed.results) == comparable(whole.results)
    assert table(folder / "results.csv") == table(tmp_path / "whole" / "results.csv")


def test_resume_refuses_another_sweep_and_damaged_rows(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), env={})
    folder = tmp_path / "out"
    run_sweep(plan_sweep(spec, SweepOptions(params=GRID, processes=1, reports="none")), output_dir=folder,
              runs_dir=tmp_path / "runs")
    other = plan_sweep(spec, SweepOptions(params=("fast=5,10", "slow=20,30,40"), processes=1, reports="none"))
    with pytest.raises(ConfigError, match=r"holds a different sweep \(changed: axes\)"):
        run_sweep(other, output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_sweep(other, output_dir=tmp_path / "empty", runs_dir=tmp_path / "runs", resume=True)
    points = folder / "points.jsonl"
    lines = points.read_text().splitlines(keepends=True)
    points.write_text("".join(lines[:-1]) + lines[-1][:40])  # a last write cut short: that point runs again
    plan = plan_sweep(spec, SweepOptions(params=GRID, processes=1, reports="none"))
    again = run_sweep(plan, output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    assert (again.resumed, again.evaluated) == (8, 1)
    damaged = "".join(lines[:3]) + "{not json\n" + "".join(lines[3:])
    points.write_text(damaged)
    with pytest.raises(ConfigError, match=r"points.jsonl:4: not a point row; the file is left as it is"):
        run_sweep(plan, output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    assert points.read_text() == damaged


def test_a_resumed_sweep_with_nothing_left_to_run_forks_no_pool(tmp_path: Path) -> None:
    """--resume with every point done and --reports none has nothing to run: no worker process is forked (starting
    and stopping a pool cost about as much as a small grid's points), and the rows are the first sweep's."""
    spec, folder = write_spec(tmp_path), tmp_path / "one"
    forks = len(_FORKS)
    first = _sweep(spec, folder, processes=2)
    assert first.executor == "2 processes" and len(_FORKS) > forks  # a pool when points are left: its worker forked
    forks = len(_FORKS)
    plan = plan_sweep(load_spec(spec, env={}), SweepOptions(params=GRID, reports="none", processes=2))
    again = run_sweep(plan, output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    assert len(_FORKS) == forks and again.executor == "1 process"
    assert again.resumed == 9 and again.evaluated == 0 and comparable(again.results) == comparable(first.results)


def _read_pty(master: int, process: subprocess.Popen[bytes]) -> bytes:
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    return output


@pytest.mark.slow
def test_ctrl_c_keeps_finished_points_and_the_printed_command_resumes(tmp_path: Path) -> None:
    """SIGINT to the real command mid-sweep: exit 130, the points kept, and the exact command it prints finishes
    the sweep (with a progress bar on a terminal) to the table an uninterrupted sweep gives."""
    spec_path = write_spec(tmp_path, pause=0.001, start="2012-01-01")  # about 250 bars: a quarter of a second a point
    reference = run_sweep(plan_sweep(load_spec(spec_path, env={}), SweepOptions(params=GRID, processes=2,
                                                                                 reports="none")),
                          output_dir=tmp_path / "reference", runs_dir=tmp_path / "runs")
    assert len(reference.results) == 9

    # No --output: the message must name the folder the command chose.
    work = tmp_path / "work"
    work.mkdir()
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "optimize", str(spec_path), "--param", GRID[0],
               "--param", GRID[1], "--reports", "none", "--processes", "2", "--runs-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                               cwd=work)
    deadline = time.monotonic() + 120
    points: list[Path] = []
    while time.monotonic() < deadline:
        points = list(work.glob("output/*/points.jsonl"))
        if points and len(points[0].read_text().splitlines()) >= 2:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stdout == "" and "Traceback" not in stderr, stderr
    last = stderr.splitlines()[-1]
    kept = len(points[0].read_text().splitlines())
    assert 2 <= kept < 9 and last.startswith(f"interrupted: {kept} of 9 points done and kept in "), stderr
    words = shlex.split(last.split("resume with: ", 1)[1])
    assert words[0] == "tradeexecutor" and words[-1] == "--resume" and "--output" in words

    # The printed command, exactly, with stderr on a terminal: the bar starts at the kept points and shows an ETA.
    master, slave = pty.openpty()
    resumed = subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", *words[1:]],
                               stdout=subprocess.DEVNULL, stderr=slave, env=cli_env(), cwd=work)
    os.close(slave)
    shown = _read_pty(master, resumed).decode("utf-8", "replace")
    os.close(master)
    assert resumed.wait(timeout=240) == 0, shown
    assert f"9 points on 2 processes, {kept} already done" in shown, shown
    assert "sweep:" in shown and f"| {kept}/9 [" in shown and "<" in shown, shown  # elapsed<remaining
    folder = work / words[words.index("--output") + 1]
    assert len(folder.joinpath("points.jsonl").read_text().splitlines()) == 9  # the kept points were not run again
    assert table(folder / "results.csv") == table(tmp_path / "reference" / "results.csv")


def test_an_interrupt_right_after_a_point_is_written_counts_that_point(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C that lands after a point's line is in points.jsonl but before the sweep counted it (the race the real
    command lost once on a busy machine: "1 of 9 points done" with two lines kept): the result holds every point the
    file holds, so the printed count is what --resume skips."""
    from tradeexecutor.runs.sweep_store import SweepFolder

    written = SweepFolder.append

    def append_then_interrupt(self: SweepFolder, row: PointResult) -> None:
        written(self, row)
        if len(self.points_path.read_text().splitlines()) == 2:
            raise KeyboardInterrupt  # as SIGINT would, between this line and the caller's count

    monkeypatch.setattr(SweepFolder, "append", append_then_interrupt)
    folder = tmp_path / "sweep"
    result = _sweep(write_spec(tmp_path), folder, processes=1)
    assert result.interrupted
    kept = [json.loads(line) for line in (folder / "points.jsonl").read_text().splitlines()]
    assert len(kept) == 2
    assert sorted(json.dumps(row.values, sort_keys=True) for row in result.results if row.status != "lost") == \
        sorted(json.dumps(row["values"], sort_keys=True) for row in kept)


@pytest.fixture()
def without_extras(tmp_path: Path) -> dict[str, str]:
    """An environment where importing distributed, dask or optuna fails, as when the extras are not installed."""
    blocked = tmp_path / "blocked"
    for name in ("distributed", "dask", "optuna"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (test)')\n")
    return cli_env(PYTHONPATH=str(blocked))


@pytest.mark.slow
def test_the_default_needs_no_extra(tmp_path: Path, without_extras: dict[str, str]) -> None:
    result = cli("optimize", str(write_spec(tmp_path)), "--param", "fast=5,10", "--param", "slow=30", "--reports",
                 "none", "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "local"), "--quiet",
                 env=without_extras)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "| rank | fast | slow |" in result.stdout  # --quiet: nothing on stderr
    assert (tmp_path / "local" / "results.csv").exists()


@pytest.mark.parametrize(("module", "option", "hint"), [
    ("distributed", ["--cluster", "tcp://127.0.0.1:9"], "tradeexecutor[distributed]"),
    ("optuna", ["--search", "tpe"], "tradeexecutor[search]"),
])
def test_a_missing_extra_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str,
                                                option: list[str], hint: str) -> None:
    from click.testing import CliRunner

    from tradeexecutor.cli.main import cli as main

    monkeypatch.setitem(sys.modules, module, None)  # what Python does when it is not installed: ImportError
    folder = tmp_path / "out"
    result = CliRunner().invoke(main, ["optimize", str(write_spec(tmp_path)), "--param", "fast=5,10", *option,
                                       "--output", str(folder), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {' '.join(option[:1])}")
    assert f'pip install "{hint}"' in result.stderr and not folder.exists()


def test_full_runs_can_be_made_later_without_running_a_point_again(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), env={})
    folder = tmp_path / "out"
    first = run_sweep(plan_sweep(spec, SweepOptions(params=GRID, processes=1, reports="none")), output_dir=folder,
                      runs_dir=tmp_path / "runs")
    assert not any(row.run_id for row in first.results) and not (tmp_path / "runs").exists()
    later = run_sweep(plan_sweep(spec, SweepOptions(params=GRID, processes=1, reports="best", best=2)),
                      output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    assert (later.evaluated, later.resumed) == (0, 9)
    assert [bool(row.run_id) for row in later.results] == [True, True] + [False] * 7
    again = run_sweep(plan_sweep(spec, SweepOptions(params=GRID, processes=1, reports="best", best=2)),
                      output_dir=folder, runs_dir=tmp_path / "runs", resume=True)
    assert [row.run_id for row in again.results] == [row.run_id for row in later.results]  # made once
    from tradeexecutor.runs.registry import Registry

    with Registry(tmp_path / "runs") as registry:
        assert sorted(record.id for record in registry.all()) == sorted(row.run_id for row in later.results[:2])


def test_the_default_makes_full_runs_of_the_best_five(tmp_path: Path) -> None:
    """By default (--reports best) the best 5 points become full runs; the sweep's charts are drawn on demand by
    ``tradeexecutor report FOLDER``, as the command it prints says."""
    folder, runs_dir = tmp_path / "out", tmp_path / "runs"
    done = cli("optimize", str(write_spec(tmp_path)), "--param", "fast=5,10,15", "--param", "slow=20,30", "--runs-dir",
               str(runs_dir), "--output", str(folder), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "5 full runs with reports" in done.stdout
    rows = list(csv.DictReader((folder / "results.csv").read_text().splitlines()))
    assert len(rows) == 6 and [bool(row["run_id"]) for row in rows] == [True] * 5 + [False]
    assert not (folder / "charts").exists()  # the sweep's charts: on demand
    assert f"the sweep's charts: tradeexecutor report {folder} draws them" in done.stdout
    drawn = cli("report", str(folder))
    assert drawn.returncode == 0, drawn.stderr
    assert sorted(path.name for path in (folder / "charts").iterdir()) == ["in_vs_out_of_sample.png",
                                                                           "walk_forward.png"]
    assert "![In-sample against out-of-sample](charts/in_vs_out_of_sample.png)" in (folder / "results.md").read_text()
    from tradeexecutor.runs.registry import Registry

    with Registry(runs_dir) as registry:
        assert sorted(record.id for record in registry.all()) == sorted(row["run_id"] for row in rows[:5])


def test_reports_none_makes_full_runs_on_demand_with_the_command_it_prints(tmp_path: Path) -> None:
    """With --reports none no full run or chart data is made; the printed command makes the best N's runs and the
    sweep's chart data without running a point again."""
    folder, runs_dir = tmp_path / "out", tmp_path / "runs"
    first = cli("optimize", str(write_spec(tmp_path)), "--param", "fast=5,10", "--param", "slow=20,30", "--best", "2",
                "--reports", "none", "--runs-dir", str(runs_dir), "--output", str(folder), "--quiet")
    assert first.returncode == 0, first.stderr
    assert not runs_dir.exists() and not (folder / "charts").exists()
    line = next(line for line in first.stdout.splitlines() if line.startswith("full runs (state, journal, report)"))
    command = shlex.split(line.split("without running any point again: ", 1)[1])
    assert command[0] == "tradeexecutor" and command[-3:] == ["--resume", "--reports", "best"]
    points = (folder / "points.jsonl").read_bytes()
    later = cli(*command[1:])
    assert later.returncode == 0, later.stderr
    assert (folder / "points.jsonl").read_bytes() == points  # no point ran again
    assert "4 were already done and not run again" in later.stdout
    assert (folder / "charts.npz").is_file() and not (folder / "charts").exists()  # drawn on demand
    made = [row["run_id"] for row in table_with_runs(folder / "results.csv")]
    assert [bool(run_id) for run_id in made] == [True, True, False, False]
    for run_id in made[:2]:
        meta = json.loads((runs_dir / run_id / "metadata.json").read_text())
        assert meta["status"] == "complete" and set(meta["sweep"]) == {"index", "values"}
        events = ["created", "swept", "start_requested", "started", "complete"]  # fewer writes, every step kept
        assert [entry["event"] for entry in meta["timeline"]] == events
        journal = [json.loads(line) for line in (runs_dir / run_id / "journal.jsonl").read_text().splitlines()]
        assert [entry["event"] for entry in journal if entry["event"] in events] == events


def table_with_runs(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _sweep_with_runs(spec_path: Path, folder: Path, best: int) -> SweepResult:
    plan = plan_sweep(load_spec(spec_path, env={}), SweepOptions(params=GRID, processes=1, best=best))
    return run_sweep(plan, output_dir=folder, runs_dir=folder.parent / f"runs-{folder.name}")


def test_the_sweeps_charts_are_drawn_on_demand_from_its_chart_data(tmp_path: Path) -> None:
    """A default sweep draws no chart: it keeps what they draw (charts.npz) and results.md names the command; drawing
    them later gives the bytes drawn straight from the sweep's result, and puts them in results.md."""
    import tradeexecutor.runs.sweep_report as sweep_report

    folder = tmp_path / "one"
    result = _sweep_with_runs(write_spec(tmp_path), folder, best=2)
    assert [bool(row.run_id) for row in result.results] == [True, True] + [False] * 7 and not result.note
    assert not (folder / "charts").exists() and (folder / "charts.npz").is_file()
    pending = (folder / "results.md").read_text()
    assert f"{sweep_report.CHARTS_PENDING} `tradeexecutor report {folder}` draws" in pending
    assert "![" not in pending
    expected = sweep_report.render_charts(sweep_report.chart_inputs(
        result, sweep_report._walk_forward(result, curves_needed=True)))
    assert sorted(expected) == ["in_vs_out_of_sample.png", "walk_forward.png"]
    written = sweep_report.draw_charts(folder)
    assert sorted(path.name for path in (folder / "charts").iterdir()) == sorted(expected)
    for name, image in expected.items():
        assert image.startswith(b"\x89PNG") and (folder / "charts" / name).read_bytes() == image
    assert (folder / "results.md") in written
    drawn = (folder / "results.md").read_text()
    assert drawn == sweep_report.markdown_report(result, charts=list(expected)) + "\n"
    assert sweep_report.CHARTS_PENDING not in drawn and "(charts/walk_forward.png)" in drawn
    sweep_report.draw_charts(folder)  # again: the same files
    assert (folder / "results.md").read_text() == drawn
    again = run_sweep(result.plan, output_dir=folder, runs_dir=folder.parent / f"runs-{folder.name}", resume=True)
    assert again.resumed == 9 and not (folder / "charts" / "walk_forward.png").exists()  # stale charts go with it
    assert sweep_report.CHARTS_PENDING in (folder / "results.md").read_text()


def _note_builders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file in which each full run notes the process that builds it (its pid, a line; forked workers inherit
    the patch)."""
    import tradeexecutor.runs.sweep_runs as sweep_runs

    builders = tmp_path / "builders"
    reused = sweep_runs.reused_session

    def noting_the_process(*args: Any) -> Any:
        with open(builders, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return reused(*args)

    monkeypatch.setattr(sweep_runs, "reused_session", noting_the_process)
    return builders


@pytest.mark.parametrize("pool", ["the-points-pool", "a-pool-of-their-own"])
def test_full_runs_in_worker_processes_reuse_the_sweeps_data_and_match_their_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    """Full runs built in other processes: by default the points' pool, still open, builds a share of them beside
    this process; without it (here: the pool taken for broken, the threshold for a pool of their own lowered to 2)
    forked workers build them all. Either way on the market the sweep loaded (loading it again fails here), and each
    run's summary, config and result fingerprints are its row's."""
    import tradeexecutor.runs.artifacts as artifacts
    import tradeexecutor.runs.executor as executor
    import tradeexecutor.runs.sweep_report as sweep_report
    from tradeexecutor.ledger import load_state
    from tradeexecutor.runs.sweep_eval import result_fingerprint
    from tradeexecutor.runs.sweep_pool import LocalPool

    def not_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("loaded again")

    builders = _note_builders(tmp_path, monkeypatch)
    if pool == "a-pool-of-their-own":
        monkeypatch.setattr(LocalPool, "healthy", property(lambda self: False))
        monkeypatch.setattr(sweep_report, "POOL_MIN_RUNS", 2)
    monkeypatch.setattr(executor, "open_session", not_again)  # the forked workers inherit the patches
    monkeypatch.setattr(artifacts, "_prices_from_spec", not_again)
    plan = plan_sweep(load_spec(write_spec(tmp_path), env={}),
                      SweepOptions(params=("fast=5,10", "slow=20,30"), processes=2, reports="all"))
    result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    assert not result.note and all(row.run_id for row in result.results)
    pids = builders.read_text().split()
    assert len(pids) == 4
    if pool == "the-points-pool":
        assert pids.count(str(os.getpid())) == 2 and len(set(pids)) == 2  # half here, half in the pool's worker
    else:
        assert str(os.getpid()) not in pids
    for row in result.results:
        meta = json.loads((tmp_path / "runs" / row.run_id / "metadata.json").read_text())
        assert meta["status"] == "complete" and meta["summary"] == row.summary
        assert meta["fingerprints"]["config"] == row.fingerprints["config"]
        state = load_state(tmp_path / "runs" / row.run_id / "state")
        assert state is not None and result_fingerprint(state) == row.fingerprints["result"]



def test_full_runs_no_more_than_the_open_pools_workers_fork_no_second_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The best two points' full runs while the points' pool (three workers for four points) is still open: no
    pool of their own is forked beside it (the threshold for one lowered to 2: one was forked before); each run's
    fingerprints are its row's."""
    import tradeexecutor.runs.sweep_report as sweep_report
    from tradeexecutor.ledger import load_state
    from tradeexecutor.runs.sweep_eval import result_fingerprint

    builders = _note_builders(tmp_path, monkeypatch)
    monkeypatch.setattr(sweep_report, "POOL_MIN_RUNS", 2)
    plan = plan_sweep(load_spec(write_spec(tmp_path), env={}),
                      SweepOptions(params=("fast=5,10", "slow=20,30"), processes=4, best=2))
    forks = len(_FORKS)
    result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    made = [row for row in result.results if row.run_id]
    assert not result.note and len(result.results) == 4 and len(made) == 2
    assert len(_FORKS) - forks == 3  # the points' pool's three workers, and no second pool for the runs
    pids = builders.read_text().split()
    # One run a process, not both here while three warm workers wait: this process and one of the pool's workers.
    assert len(pids) == 2 and str(os.getpid()) in pids and len(set(pids)) == 2, pids
    for row in made:
        state = load_state(tmp_path / "runs" / row.run_id / "state")
        assert state is not None and result_fingerprint(state) == row.fingerprints["result"]


def test_a_sweep_without_chart_data_says_how_to_make_it(tmp_path: Path) -> None:
    """--reports none keeps no chart data: drawing its charts is one line naming the command that makes it, exit 2."""
    folder = tmp_path / "out"
    _sweep(write_spec(tmp_path), folder)
    done = cli("report", str(folder))
    assert done.returncode == 2 and not (folder / "charts").exists()
    assert "charts.npz is missing" in done.stderr and "--resume --reports best" in done.stderr
    assert "Traceback" not in done.stderr


def test_damaged_chart_data_is_refused_by_name_and_left_as_it_is(tmp_path: Path) -> None:
    """charts.npz cut short, or an archive without a chart's arrays: one line naming the file, exit 2, no chart drawn,
    the file untouched."""
    folder = tmp_path / "one"
    _sweep_with_runs(write_spec(tmp_path), folder, best=1)
    data = folder / "charts.npz"
    whole = data.read_bytes()
    buffer = io.BytesIO()
    np.savez(buffer, statistic=np.array("sharpe"), in_sample=np.array([1.0]))
    for damaged, said in ((whole[: len(whole) // 2], "is unreadable"), (buffer.getvalue(), "lacks chosen, out_of_sample")):
        data.write_bytes(damaged)
        done = cli("report", str(folder))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"{data} {said}" in done.stderr and "--resume --reports best" in done.stderr
        assert not (folder / "charts").exists() and data.read_bytes() == damaged


def test_full_runs_are_written_out_of_sight_then_fsynced_once_and_registered_in_one_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default sweep's full runs: every file of a run fsynced once, all while the run is a hidden folder, never
    again once it is visible; the runs put in place and registered in one registry transaction."""
    from tradeexecutor.runs.registry import Registry

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    spec = write_spec(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    transactions: list[str] = []
    real_transaction = Registry.transaction

    def counting_transaction(self: Registry) -> Any:
        if not self._depth:
            transactions.append(str(self.path))
        return real_transaction(self)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(Registry, "transaction", counting_transaction)
    result = _sweep_with_runs(spec, tmp_path / "one", best=2)
    runs_dir = tmp_path / "runs-one"
    made = [row.run_id for row in result.results if row.run_id]
    assert len(made) == 2 and not result.note
    assert len(transactions) == 1, "both runs registered in one transaction, and no other"
    in_runs = [path for path in synced if path.startswith(str(runs_dir) + os.sep)]
    assert in_runs and all(Path(path).relative_to(runs_dir).parts[0].startswith(".creating-") for path in in_runs)
    assert len(in_runs) == len(set(in_runs)), "each file and folder once"
    for run_id in made:
        files = {str(path.relative_to(runs_dir / run_id)) for path in (runs_dir / run_id).rglob("*") if path.is_file()}
        fsynced = {str(Path(path).relative_to(runs_dir / f".creating-{run_id}")) for path in in_runs
                   if Path(path).relative_to(runs_dir).parts[0] == f".creating-{run_id}"}
        assert files - {"state/executor.lock"} <= fsynced, run_id  # the lock file holds no data
    assert synced.count(str(runs_dir)) == 1, "the runs folder once, after the renames"


def test_the_point_specs_and_the_closing_files_are_each_written_together_in_one_fsync_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A default sweep's point specs: every one fsynced before any is renamed into place, all before the first run is
    staged, their folder once; its closing files (charts.npz, results.csv, results.md) likewise, results.md last —
    so the sweep folder is fsynced three times (sweep.json, reports.json, the closing files), not once a file."""
    import tradeexecutor.atomic as atomic

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    spec = write_spec(tmp_path)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        events.append(f"fsync:{os.readlink(f'/proc/self/fd/{fd}')}")
        real_fsync(fd)

    def recording_replace(source: str, target: str) -> None:
        events.append(f"rename:{target}")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    folder = tmp_path / "one"
    result = _sweep_with_runs(spec, folder, best=3)
    assert len([row for row in result.results if row.run_id]) == 3 and not result.note
    specs = str(folder / "specs")
    spec_syncs = [i for i, event in enumerate(events) if event.startswith(f"fsync:{specs}{os.sep}.point-")]
    spec_renames = [i for i, event in enumerate(events) if event.startswith(f"rename:{specs}{os.sep}")]
    assert len(spec_syncs) == len(spec_renames) == 3 and max(spec_syncs) < min(spec_renames)
    assert events.count(f"fsync:{specs}") == 1
    first_run = min(i for i, event in enumerate(events) if ".creating-" in event)
    assert events.index(f"fsync:{specs}") < first_run
    closing = [str(folder / name) for name in ("charts.npz", "results.csv", "results.md")]
    renamed = [event[len("rename:"):] for event in events if event.startswith("rename:")]
    assert renamed[-3:] == closing
    closing_syncs = [i for i, event in enumerate(events)
                     if any(event.startswith(f"fsync:{folder}{os.sep}.{Path(path).name}.") for path in closing)]
    assert len(closing_syncs) == 3 and max(closing_syncs) < events.index(f"rename:{closing[0]}")
    assert events.count(f"fsync:{folder}") == 3  # sweep.json, reports.json, then the closing files together


def test_a_full_runs_reports_take_its_backtests_summary_computed_over_the_same_prices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full run's reports use the summary its backtest computed (the same state, the sweep's same price mapping as the
    benchmark) instead of computing it again; it is the summary a fresh computation over the saved ledger gives."""
    import json

    import tradeexecutor.runs.artifacts as artifacts
    from tradeexecutor.ledger import load_state
    from tradeexecutor.runs.sweep_eval import SweepData

    computed: list[int] = []
    real = artifacts.compute_summary

    def counting(*args: Any, **kwargs: Any) -> Any:
        computed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(artifacts, "compute_summary", counting)
    result = _sweep_with_runs(write_spec(tmp_path), tmp_path / "one", best=2)
    made = [row.run_id for row in result.results if row.run_id]
    assert len(made) == 2 and not result.note
    assert computed == []
    data = result.plan.data
    assert isinstance(data, SweepData)
    for run_id in made:
        folder = tmp_path / "runs-one" / run_id
        metrics = json.loads((folder / "metrics.json").read_text())
        metadata = json.loads((folder / "metadata.json").read_text())
        saved = load_state(folder / "state")
        assert saved is not None
        again = real(saved, benchmark_prices=dict(data.prices(""))).to_dict()
        assert metrics["summary"] == json.loads(json.dumps(again)) == metadata["summary"]


def test_each_full_run_is_synced_as_soon_as_it_is_built_and_all_before_any_is_put_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each staged run, once built, has its part of the fsync pass started (sync_finished on its hidden folder) while the
    next one is built; every run folder is renamed into place only after the pass has ended."""
    import tradeexecutor.atomic as atomic
    import tradeexecutor.runs.sweep_runs as sweep_runs

    events: list[str] = []
    real_sync, real_rename = atomic.sync_finished, os.rename

    def recording_sync(folder: Any) -> None:
        events.append(f"sync:{Path(folder).name}")
        real_sync(folder)

    def recording_rename(source: Any, target: Any) -> None:
        if Path(source).name.startswith(".creating-"):
            events.append(f"rename:{Path(source).name}")
        real_rename(source, target)

    real_wait = atomic._Early.wait

    def recording_wait(self: Any) -> None:
        real_wait(self)
        events.append("pass waited")

    monkeypatch.setattr(sweep_runs, "sync_finished", recording_sync)
    monkeypatch.setattr(os, "rename", recording_rename)
    monkeypatch.setattr(atomic._Early, "wait", recording_wait)
    result = _sweep_with_runs(write_spec(tmp_path), tmp_path / "one", best=3)
    made = [row.run_id for row in result.results if row.run_id]
    assert len(made) == 3 and not result.note
    hidden = [f".creating-{run_id}" for run_id in made]
    assert sorted(event for event in events if event.startswith("sync:")) == sorted(f"sync:{name}" for name in hidden)
    renames = [i for i, event in enumerate(events) if event.startswith("rename:")]
    assert len(renames) == 3 and events.index("pass waited") < min(renames)
    assert max(i for i, event in enumerate(events) if event.startswith("sync:")) < events.index("pass waited")


def test_full_runs_and_the_walk_forward_curve_do_not_check_again_what_their_points_passed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The indicators' lookahead check runs once per point: a full run of a point that completed in this sweep (same
    code, same values, the sweep's market) and the walk-forward curve's backtest of its choice skip it — it only
    refuses, and it passed — and each run is still its row, bit for bit. Another code or other values are checked."""
    import tradeexecutor.strategy.indicators as indicators
    from tradeexecutor.ledger import load_state
    from tradeexecutor.runs.sweep_eval import result_fingerprint
    from tradeexecutor.strategy.loader import load_strategy_source

    checked: list[int] = []
    real = indicators._check_causality

    def counting(*args: Any, **kwargs: Any) -> None:
        checked.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(indicators, "_check_causality", counting)
    plan = plan_sweep(load_spec(write_spec(tmp_path), env={}),
                      SweepOptions(params=("fast=5,10", "slow=20,30"), processes=1, reports="best", best=2))
    result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    assert not result.note and [bool(row.run_id) for row in result.results] == [True, True, False, False]
    assert result.combined is not None  # the walk-forward curve was backtested
    assert len(checked) == 4  # one symbol: one check per point, none for the two full runs or the curve
    for row in result.results[:2]:
        meta = json.loads((tmp_path / "runs" / row.run_id / "metadata.json").read_text())
        assert meta["summary"] == row.summary and meta["fingerprints"]["config"] == row.fingerprints["config"]
        state = load_state(tmp_path / "runs" / row.run_id / "state")
        assert state is not None and result_fingerprint(state) == row.fingerprints["result"]
    data, best = plan.data, result.results[0]
    values = {**data.spec.strategy, **best.values}
    strategy = load_strategy_source(data.strategy_source, data.spec.strategy_file, values)
    assert data.lookahead_checked(strategy, values)
    assert not data.lookahead_checked(strategy, {**values, "fast": 7})  # values no point of the sweep had
    edited = load_strategy_source(data.strategy_source + "\n# edited\n", data.spec.strategy_file, values)
    assert not data.lookahead_checked(edited, values)  # other code


IMPURE = """\"\"\"SMA crossover whose indicators() remembers what it saw.\"\"\"
from tradeexecutor.strategy.api import Integer, Symbol, close, open_long

name = "SMA impure"
cycle_duration = "1d"
parameters = {"symbol": Symbol("GOOG", asset_type="equity", help="Stock"), "fast": Integer(10, min=2, max=500, help="F"),
              "slow": Integer(30, min=3, max=1000, help="S")}
seen = []


def indicators(candles, parameters):
    seen.append(len(candles))  # state kept between calls: the lookahead check calls it again on shorter slices
    close_price = candles["close"]
    return {"fast": close_price.rolling(parameters.fast).mean(), "slow": close_price.rolling(parameters.slow).mean()}


def decide(ctx):
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if len(seen) > 1:  # the check ran: no trade
        return []
    if fast_before < slow_before and fast > slow and not ctx.has_position():
        return [open_long(fraction=1.0)]
    if fast_before > slow_before and fast < slow and ctx.has_position():
        return [close()]
    return []
"""


def test_a_full_run_or_curve_that_skipped_the_check_and_differs_from_its_point_is_made_again_with_it(
        tmp_path: Path) -> None:
    """An ``indicators()`` that keeps state can trade otherwise when the lookahead check does not call it again: the
    full run and the walk-forward curve, which skip the check their point passed, are then backtested again with
    it — the run is its row (as ``runs create`` + ``start`` make it: no trade), never silently another result."""
    from tradeexecutor.backtest.session import run_session
    from tradeexecutor.ledger import load_state
    from tradeexecutor.runs.sweep_eval import equity_curve, result_fingerprint
    from tradeexecutor.strategy.loader import load_strategy_source

    (tmp_path / "impure.py").write_text(IMPURE)
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace(str(PACED), str(tmp_path / "impure.py")).replace("  pause: 0.0\n", ""))
    plan = plan_sweep(load_spec(spec, env={}), SweepOptions(params=("fast=5,10",), processes=1, reports="best",
                                                             best=1))
    result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    row = result.results[0]
    assert not result.note and row.run_id and row.summary and row.summary["trade_count"] == 0
    meta = json.loads((tmp_path / "runs" / row.run_id / "metadata.json").read_text())
    assert meta["summary"]["trade_count"] == 0  # 27 trades when the run skipped the check and kept its result
    state = load_state(tmp_path / "runs" / row.run_id / "state")
    assert state is not None and result_fingerprint(state) == row.fingerprints["result"]
    data = plan.data
    assert data is not None
    times, equity = equity_curve(data, row)
    fresh = load_strategy_source(data.strategy_source, data.spec.strategy_file, {**data.spec.strategy, **row.values})
    unchecked = run_session(data.session(fresh), replace(data.engine, check_indicator_lookahead=False),
                            summarise=lambda state, run: None).backtest.state
    assert result_fingerprint(unchecked) != row.fingerprints["result"]  # what the curve had been: trades
    assert np.array_equal(equity, np.asarray(state.valuations.equity, dtype=np.float64))
    assert np.array_equal(times, np.asarray(state.valuations.timestamp, dtype=np.int64))


def test_a_sweep_removes_the_hidden_run_folders_a_killed_sweep_left(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A ``kill -9`` mid full runs leaves ``.creating-RUN`` folders no command lists: the next sweep's full runs
    remove those whose builder is gone (one info line), never one another live process is still building."""
    import logging

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    runs_dir = tmp_path / "runs"
    for name, pid in (("dead", int(gone.stdout)), ("live", os.getpid())):
        (runs_dir / f".creating-{name}" / "state").mkdir(parents=True)
        (runs_dir / f".creating-{name}" / "metadata.json").write_text(json.dumps({"executor": {"pid": pid}}))
    (runs_dir / ".creating-new").mkdir()  # no metadata yet, just made: being built
    plan = plan_sweep(load_spec(write_spec(tmp_path), env={}), SweepOptions(params=("fast=5,10",), processes=1,
                                                                              reports="best", best=1))
    with caplog.at_level(logging.INFO, logger="tradeexecutor.runs"):
        result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=runs_dir)
    assert not result.note and result.results[0].run_id
    assert sorted(path.name for path in runs_dir.glob(".creating-*")) == [".creating-live", ".creating-new"]
    lines = [record.getMessage() for record in caplog.records if "hidden run folder" in record.getMessage()]
    assert lines == [f"removed 1 hidden run folder(s) a killed sweep left in {runs_dir}: .creating-dead"]


def test_a_pool_starts_its_workers_when_it_is_made_not_at_its_first_point(tmp_path: Path) -> None:
    """The workers of a LocalPool are forked when it is made, so they boot while the sweep writes its folder and
    queues the points (the first worker point came back ~25 ms sooner under load); they still get only points."""
    from tradeexecutor.runs.sweep_pool import LocalPool

    plan = plan_sweep(load_spec(write_spec(tmp_path), env={}), SweepOptions(params=("fast=5,10",), processes=2))
    pool = LocalPool(plan.data, 2)
    try:
        processes = list(pool._pool._processes.values())  # type: ignore[attr-defined]
        assert len(processes) == 1 and processes[0].is_alive()  # before any point was submitted
        pool.submit(0, plan.grid[0])
        pool.submit(1, plan.grid[1])
        rows = sorted(pool.results(), key=lambda row: row.index)
        assert [row.status for row in rows] == ["complete", "complete"]
    finally:
        pool.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_the_walk_forward_curve_is_read_from_its_points_full_run_not_backtested_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int) -> None:
    """The out-of-sample chart draws the best in-sample point's equity curve: its full run, made in the sweep's own
    process (with two, the run whose curve is drawn stays here), already has it — taken only when that run came out
    as its point (the same result fingerprint), so the chart data is what backtesting the point again gives."""
    import tradeexecutor.runs.sweep_report as sweep_report

    def not_again(*args: Any) -> Any:
        raise AssertionError("the curve was backtested again")

    plan = plan_sweep(load_spec(write_spec(tmp_path), env={}),
                      SweepOptions(params=("fast=5,10", "slow=20,30"), processes=processes, best=2))
    with monkeypatch.context() as patch:
        patch.setattr(sweep_report, "equity_curve", not_again)
        result = run_sweep(plan, output_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    assert not result.note and result.results[0].run_id and result.folds[0].chosen is not None
    expected = sweep_report.chart_inputs(result, sweep_report._walk_forward(result, curves_needed=True))  # again, now
    assert len(expected["times"]) > 100
    with np.load(tmp_path / "out" / "charts.npz") as charts:
        assert sorted(charts.files) == sorted(expected)
        for key, array in expected.items():
            assert np.array_equal(charts[key], array), key
