"""Random and TPE search with Optuna: the same seed gives the same trials and result on any number of processes,
constraints are never broken by an evaluated point, trials are capped at the admissible points, and a search resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sweep_helpers import comparable, write_spec
from tradeexecutor.runs.constraints import parse_constraint
from tradeexecutor.runs.spec import load_spec
from tradeexecutor.runs.sweep import SweepOptions, SweepProgress, SweepResult, plan_sweep, progress_callback, run_sweep
from tradeexecutor.runs.sweep_eval import PointResult

pytest.importorskip("optuna")

SPACE = ("fast=2..40", "slow=10..120:5")


def _search(tmp_path: Path, name: str, *, spec_path: Path | None = None, resume: bool = False,
            progress: SweepProgress | None = None, **options: Any) -> SweepResult:
    spec = load_spec(spec_path or write_spec(tmp_path, start="2012-01-01"), env={})
    settings: dict[str, Any] = {"params": SPACE, "reports": "none", "processes": 1, **options}
    plan = plan_sweep(spec, SweepOptions(**settings))
    return run_sweep(plan, output_dir=tmp_path / name, runs_dir=tmp_path / "runs", resume=resume,
                     progress=progress)


def _trials(result: SweepResult) -> list[tuple[int, dict]]:
    return sorted((row.index, row.values) for row in result.results)


def test_tpe_gives_the_same_trials_and_result_for_a_seed_on_any_number_of_processes(tmp_path: Path) -> None:
    first = _search(tmp_path, "a", search="tpe", trials=24, seed=7)
    again = _search(tmp_path, "b", search="tpe", trials=24, seed=7, processes=2)
    assert len(first.results) == 24
    assert _trials(first) == _trials(again)
    assert comparable(first.results) == comparable(again.results)
    other = _search(tmp_path, "c", search="tpe", trials=24, seed=8)
    assert _trials(other) != _trials(first)
    values = [values for _, values in _trials(first)]
    assert len({tuple(sorted(v.items())) for v in values}) == 24  # distinct points


def test_random_search_never_evaluates_a_point_that_breaks_a_constraint(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, start="2012-01-01", extra="optimize:\n  constraints: ['slow >= 2 * fast']\n")
    result = _search(tmp_path, "r", spec_path=spec_path, search="random", trials=30, seed=1,
                     constraints=("slow - fast <= 60",))
    rows = result.results
    assert len(rows) == 30
    declared = [parse_constraint("slow >= 2 * fast", ["fast", "slow"]),
                parse_constraint("slow - fast <= 60", ["fast", "slow"])]
    assert all(rule.holds(row.values) for row in rows for rule in declared)
    same = _search(tmp_path, "r2", spec_path=spec_path, search="random", trials=30, seed=1,
                   constraints=("slow - fast <= 60",))
    assert _trials(same) == _trials(result)


def test_trials_are_capped_at_the_admissible_points(tmp_path: Path) -> None:
    result = _search(tmp_path, "cap", params=("fast=5..15:5", "slow=20,30"), constraints=("fast < slow - 10",),
                     search="tpe", trials=50, seed=0)
    assert sorted((v["fast"], v["slow"]) for _, v in _trials(result)) == [(5, 20), (5, 30), (10, 30), (15, 30)]
    assert "capped at the 4 admissible points" in result.note


def test_an_interrupted_tpe_search_resumes_to_the_same_trials(tmp_path: Path) -> None:
    whole = _search(tmp_path, "whole", search="tpe", trials=24, seed=5)

    def stop(row: PointResult) -> None:
        if row.index == 19:  # inside the second batch of 16
            raise KeyboardInterrupt

    cut = _search(tmp_path, "cut", search="tpe", trials=24, seed=5, progress=progress_callback(stop))
    assert cut.interrupted and cut.evaluated == 20
    resumed = _search(tmp_path, "cut", search="tpe", trials=24, seed=5, resume=True)
    assert (resumed.resumed, resumed.evaluated) == (20, 4)
    assert _trials(resumed) == _trials(whole)
    assert comparable(resumed.results) == comparable(whole.results)
