"""Run a parameter sweep: plan it (everything checked, the data loaded once), evaluate its points where asked, rank them.

A sweep is one :class:`SweepOptions` (what ``tradeexecutor optimize`` parses) applied to a run
spec. :func:`plan_sweep` checks every option and loads the market data *before* anything runs or
is written (bad input is one ConfigError, exit 2). :func:`run_sweep` then

1. opens the sweep's folder (runs.sweep_store) — new, or resumed: points already done are not run;
2. asks the search (runs.search) for points, runs them on the executor (runs.sweep_pool: this
   process or local processes; runs.sweep_dask: a Dask cluster), persists each row as it arrives and tells the
   search its objective — the ranking statistic over the in-sample window;
3. ranks the points on the in-sample window (the whole period with ``holdout=0``), picks each
   walk-forward fold's point on its train window (runs.walkforward), and writes results.csv and
   results.md (runs.sweep_report);
4. makes full runs — state, report, charts, through the runs registry — for the best N points,
   every point, or none (``reports``), and the sweep's own charts.

Every point gets its row, fingerprints and summary; only step 4 draws charts, which is where a
point's time went when every point was a full run. Ctrl+C at any step keeps what finished:
the result comes back with ``interrupted`` set and the CLI prints how to resume.

Example::

    spec = load_spec("strategies/specs/sma_crossover_backtest.yaml")
    plan = plan_sweep(spec, SweepOptions(params=("fast=5..30:5", "slow=20,30,50"), constraints=("fast < slow",)))
    result = run_sweep(plan, output_dir=Path("output/sweep"), runs_dir=Path("runs"))
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tradeexecutor import __version__
from tradeexecutor.data.market import MarketData
from tradeexecutor.data.source import load_market
from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.constraints import Constraint
from tradeexecutor.runs.optimize import Axis, base_values, build_axes, build_grid, sweep_constraints
from tradeexecutor.runs.ranking import RANKABLE, check_rank_by, rank_results, statistic
from tradeexecutor.runs.run import data_fingerprints, remove_abandoned_staging
from tradeexecutor.runs.search import GridSearch, OptunaSearch, Search, require_optuna
from tradeexecutor.runs.spec import RunSpec
from tradeexecutor.runs.sweep_eval import (
    PointResult,
    SweepData,
    canonical_values,
    frequency_key,
    market_fingerprint,
)
from tradeexecutor.runs.sweep_options import DEFAULT_TRIALS, REPORT_MODES, SweepOptions
from tradeexecutor.runs.sweep_pool import Executor, InProcess, LocalPool, require_distributed
from tradeexecutor.runs.sweep_store import SweepFolder
from tradeexecutor.runs.walkforward import FoldResult, WindowPlan, plan_windows, select_folds
from tradeexecutor.strategy.loader import load_strategy

__all__ = ["REPORT_MODES", "SweepOptions", "SweepPlan", "SweepProgress", "SweepResult", "plan_sweep", "run_sweep"]

@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep, its data loaded: what :func:`run_sweep` needs and nothing written yet."""

    spec: RunSpec
    options: SweepOptions
    axes: tuple[Axis, ...]
    constraints: tuple[Constraint, ...]
    #: Every parameter's value before the sweep changes it.
    base: dict[str, Any]
    #: The admissible grid points (grid search only).
    grid: tuple[dict[str, Any], ...]
    windows: WindowPlan
    data: SweepData
    #: What identifies the sweep for --resume (sweep.json).
    definition: dict[str, Any]
    strategy_name: str

    @property
    def parameters(self) -> list[str]:
        return [axis.name for axis in self.axes]


class SweepProgress(Protocol):
    """Told how far the sweep is: the CLI draws its progress bar from this."""

    def start(self, total: int, done: int, description: str) -> None:
        """``total`` points to evaluate, ``done`` of them already in the folder (resumed)."""

    def advance(self, row: PointResult) -> None:
        """One more point finished."""

    def phase(self, text: str) -> None:
        """A step after the points: "ranking", then "reports"."""


class _Silent:
    def start(self, total: int, done: int, description: str) -> None:
        pass

    def advance(self, row: PointResult) -> None:
        pass

    def phase(self, text: str) -> None:
        pass


@dataclass
class SweepResult:
    """A finished (or interrupted) sweep."""

    plan: SweepPlan
    #: Every point, ranked best first (see ranking_window).
    results: list[PointResult]
    #: The window the ranking looked at (None: the whole period).
    ranking_window: str | None
    folds: list[FoldResult]
    #: Summary of the combined out-of-sample curve (walk-forward), when there is one.
    combined: dict[str, Any] | None
    seconds: float
    executor: str
    #: Points run this time, and points found done in the folder.
    evaluated: int
    resumed: int
    total: int
    note: str = ""
    interrupted: bool = False
    #: Where the tables and charts went.
    files: list[Path] = field(default_factory=list)
    markdown: str = ""

    @property
    def failed(self) -> int:
        return sum(1 for row in self.results if row.status != "complete")


# ---------------------------------------------------------------------------------------------
# Planning


def _check_options(options: SweepOptions) -> None:
    check_rank_by(options.rank_by)
    if options.search == "grid" and options.trials is not None:
        raise ConfigError("--trials is for --search random or tpe; a grid runs every admissible point")
    if options.ref_prefix is not None:
        from tradeexecutor.runs.registry import check_ref

        check_ref(f"{options.ref_prefix}-001")
    if options.cluster:
        require_distributed()
    if options.search != "grid":
        require_optuna(options.search)


def _strategy_needs(spec: RunSpec, axes: tuple[Axis, ...], grid: tuple[dict[str, Any], ...],
                    base: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The symbols and bar frequencies the points read: from every grid point, or from every axis value."""
    candidates = list(grid) if grid else [{axis.name: value} for axis in axes for value in axis.values]
    symbols: dict[str, None] = {}
    frequencies: dict[str, Any] = {}
    for point in [{}, *candidates]:
        try:
            strategy = load_strategy(spec.strategy_file, {**spec.strategy, **point})
        except Exception:  # noqa: BLE001 - a combination the strategy refuses becomes that point's error row
            continue
        symbols.update(dict.fromkeys(strategy.instruments))
        frequencies.setdefault(frequency_key(strategy.bar_frequency), strategy.bar_frequency)
    return list(symbols), frequencies


def plan_sweep(spec: RunSpec, options: SweepOptions) -> SweepPlan:
    """Check every option against the spec and its strategy, and load the market data; nothing is written."""
    _check_options(options)
    axes = tuple(build_axes(spec, options.params))
    constraints = sweep_constraints(spec, options.constraints)
    base = base_values(spec)
    grid: tuple[dict[str, Any], ...] = ()
    if options.search == "grid":
        grid = tuple(build_grid(spec, options.params, constraints=options.constraints))
    strategy = load_strategy(spec.strategy_file, spec.strategy)
    symbols, frequencies = _strategy_needs(spec, axes, grid, base)
    environment = spec.environment
    markets: dict[str, MarketData] = {}
    available: dict[str, dict[str, str | None]] = {}
    for key, frequency in frequencies.items():
        markets[key], selection = load_market(list(environment.data), symbols, bar_frequency=frequency,
                                              start=environment.start, end=environment.end)
        available[key] = selection.available
    main = markets[frequency_key(strategy.bar_frequency)] if frequency_key(strategy.bar_frequency) in markets \
        else next(iter(markets.values()))
    windows = plan_windows(np.asarray(main.timeline_ns) // 1_000_000, options.holdout, options.walk_forward)
    data = SweepData(token=uuid.uuid4().hex, spec=spec, strategy_source=strategy.source, markets=markets,
                     windows=windows.windows, available=available)
    definition = {
        "config": spec.config_fingerprint(),
        "code": strategy.version,
        "package_version": __version__,
        "data_files": data_fingerprints(spec, tuple(symbols)),
        "data": market_fingerprint(markets),
        "axes": {axis.name: list(axis.values) for axis in axes},
        "constraints": [constraint.text for constraint in constraints],
        "search": options.search,
        "trials": options.trials if options.search != "grid" else None,
        "seed": options.seed if options.search != "grid" else None,
        "rank_by": options.rank_by,
        "windows": windows.describe(),
    }
    return SweepPlan(spec=spec, options=options, axes=axes, constraints=constraints, base=base, grid=grid,
                     windows=windows, data=data, definition=definition, strategy_name=strategy.name)


# ---------------------------------------------------------------------------------------------
# Running


def _search(plan: SweepPlan) -> Search:
    options = plan.options
    if options.search == "grid":
        return GridSearch(plan.grid)
    trials = options.trials if options.trials is not None else DEFAULT_TRIALS
    return OptunaSearch(options.search, plan.axes, plan.constraints, plan.base, trials=trials, seed=options.seed,
                        higher_is_better=RANKABLE[options.rank_by])


def _executor(plan: SweepPlan, points: int) -> Executor:
    options = plan.options
    if options.cluster:
        from tradeexecutor.runs.sweep_dask import DaskCluster  # only here: the default needs no extra

        return DaskCluster(plan.data, options.cluster)
    processes = max(1, min(options.processes or os.cpu_count() or 1, points))
    if processes == 1:
        return InProcess(plan.data)
    return LocalPool(plan.data, processes)


def _remaining(plan: SweepPlan, search: Search, done: Mapping[str, PointResult]) -> int:
    """How many points are still to evaluate: exactly for a grid; for a search, its trials less the rows done."""
    if plan.options.search == "grid":
        return sum(1 for point in plan.grid if canonical_values(point) not in done)
    return max(0, search.total - len(done))


def _objective(plan: SweepPlan, row: PointResult) -> float | None:
    if row.status != "complete":
        return None
    return statistic(row, plan.options.rank_by, plan.windows.ranking_window)


def run_sweep(plan: SweepPlan, *, output_dir: Path, runs_dir: Path, resume: bool = False,
              progress: SweepProgress | None = None) -> SweepResult:
    """Evaluate the plan's points (skipping those done, with ``resume``), rank them and write the results.

    ConfigError before anything is written when the folder holds another sweep (or nothing to resume),
    or the cluster cannot be reached.
    """
    progress = progress or _Silent()
    folder = SweepFolder(output_dir)
    done = folder.check(plan.definition, resume=resume)
    search = _search(plan)
    # No pool when nothing is left to evaluate (a resume with every point done): starting and stopping one costs
    # about what a small grid's points do, and the full runs make their own choice (runs.sweep_report).
    executor = _executor(plan, search.total if _remaining(plan, search, done) else 0)
    rows: dict[str, PointResult] = {}
    indices: dict[str, int] = {}
    evaluated = resumed = 0
    interrupted = False
    started = time.perf_counter()
    try:
        folder.open(plan.definition, {"spec": str(Path(plan.spec.source).resolve()) if plan.spec.source else None,
                                      "strategy": plan.strategy_name})
        progress.start(search.total, min(len(done), search.total), executor.description)
        for batch in search.batches():
            for values in batch:
                key = canonical_values(values)
                index = indices.setdefault(key, len(indices))
                if key in done:
                    row = done[key]
                    rows[key] = PointResult(index, row.values, row.status, row.summary, row.windows,
                                            row.fingerprints, row.error, row.seconds, row.worker)
                    search.tell(values, _objective(plan, rows[key]))
                    resumed += 1
                else:
                    executor.submit(index, values)
            for row in executor.results():
                folder.append(row)
                key = canonical_values(row.values)
                rows[key] = row
                search.tell(row.values, _objective(plan, row))
                evaluated += 1
                progress.advance(row)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        executor.close()
        raise
    finally:
        folder.close()
    if interrupted:  # Ctrl+C can land between a point's line and its count: the file, which --resume reads, is the record
        for key, row in folder.kept().items():
            rows.setdefault(key, row)
    # A healthy local pool stays open for the full runs: its warm workers build some of them (runs.sweep_report).
    helpers = executor if isinstance(executor, LocalPool) and executor.healthy and not interrupted else None
    if helpers is None:
        executor.close()
    result: SweepResult | None = None
    try:
        result = _finish(plan, folder, rows, runs_dir=runs_dir, progress=progress, helpers=helpers,
                         seconds=time.perf_counter() - started, executor=executor.description, evaluated=evaluated,
                         resumed=resumed, total=search.total, note=search.note, interrupted=interrupted)
        return result
    finally:
        if helpers is not None:
            helpers.close()
            if result is None or result.interrupted:  # Ctrl+C while the workers built full runs: they are stopped,
                remove_abandoned_staging(Path(runs_dir))  # not interrupted; the hidden folders they built go now


def _finish(plan: SweepPlan, folder: SweepFolder, rows: dict[str, PointResult], *, runs_dir: Path,
            progress: SweepProgress, helpers: LocalPool | None, interrupted: bool, **counts: Any) -> SweepResult:
    """Rank the rows, pick the folds, then (unless interrupted) the reports: runs.sweep_report.finish."""
    from tradeexecutor.runs import sweep_report

    ranked = rank_results(list(rows.values()), plan.options.rank_by, plan.windows.ranking_window)
    folds = select_folds(ranked, plan.windows, plan.options.rank_by) if plan.windows.folds and not interrupted else []
    result = SweepResult(plan=plan, results=ranked, ranking_window=plan.windows.ranking_window, folds=folds,
                         combined=None, interrupted=interrupted, **counts)
    if interrupted:
        return result
    try:
        progress.phase("ranking")
        sweep_report.finish(result, folder, runs_dir=runs_dir, progress=progress, helpers=helpers)
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def progress_callback(function: Callable[[PointResult], None]) -> SweepProgress:
    """A SweepProgress that calls ``function`` for every finished point (for scripts and tests)."""

    class _Calls(_Silent):
        def advance(self, row: PointResult) -> None:
            function(row)

    return _Calls()
