"""Parameter sweeps: a grid of backtests of one run spec, run in parallel processes, ranked by a statistic.

Each ``--param`` gives one strategy parameter its values:

===================  ===========================================================
``fast=5..30:5``     an inclusive range with a step: 5, 10, 15, 20, 25, 30
``fast=5..8``        step 1 (integers only)
``slow=20,30,50``    a list
``allocation=0.5``   a single value
===================  ===========================================================

Ranges are for integer and decimal parameters; lists and single values work for every type and
are parsed by the parameter's own type (so ``fast=abc`` is refused like ``-p fast=abc``). The grid
is the cartesian product; parameters not swept keep the spec's values. :func:`build_grid`
checks everything — syntax, parameter names, types and bounds, each combination loaded by the
strategy — and raises a one-line :class:`~tradeexecutor.errors.ConfigError` (exit 2) before
anything runs or is written.

:func:`run_grid` runs every point as its own backtest *run* (a run folder with its own
artifacts, registered like any other) in a ``ProcessPoolExecutor`` of ``processes`` workers
(all cores by default; one process runs in-process), then ranks the points by a
:class:`~tradeexecutor.stats.Summary` statistic (:data:`RANKABLE`: higher is better except for
drawdown, volatility, fees and rejections) and writes ``results.csv`` and ``results.md``.

Example::

    spec = load_spec("strategies/specs/sma_crossover_backtest.yaml")
    grid = build_grid(spec, ["fast=5..30:5", "slow=20,30,50"])
    result = run_grid(spec, grid, runs_dir=Path("runs"), rank_by="sharpe", output_dir=Path("output/opt"))
    print(result.markdown)
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from decimal import Decimal as _Dec
from decimal import InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from tradeexecutor.errors import ConfigError, TradeExecutorError, UserInputError
from tradeexecutor.runs.spec import RunSpec
from tradeexecutor.store.atomic import atomic_write_text
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.strategy.parameters import Decimal, Integer, Parameter

__all__ = [
    "MAX_GRID_POINTS",
    "RANKABLE",
    "OptimizeResult",
    "PointResult",
    "build_grid",
    "check_rank_by",
    "expand_values",
    "parse_param_option",
    "rank_results",
    "run_grid",
]

#: A grid larger than this is refused (a typo such as ``1..100000`` should not start 100,000 runs).
MAX_GRID_POINTS = 10_000

#: Statistics a sweep may rank by, and whether higher is better.
RANKABLE: dict[str, bool] = {
    "sharpe": True,
    "sortino": True,
    "total_return": True,
    "cagr": True,
    "final_equity": True,
    "profit_factor": True,
    "win_rate": True,
    "average_win": True,
    "average_loss": True,
    "exposure_time": True,
    "trade_count": True,
    "position_count": True,
    "max_drawdown": False,
    "max_drawdown_duration": False,
    "annualised_volatility": False,
    "fees_paid": False,
    "rejected_trade_count": False,
}

#: Statistics every results table shows (besides the ranking one).
TABLE_STATISTICS: tuple[str, ...] = ("total_return", "sharpe", "max_drawdown", "trade_count", "final_equity")


# ---------------------------------------------------------------------------------------------
# The grid


def parse_param_option(text: str) -> tuple[str, str]:
    """``"fast=5..30:5"`` → ``("fast", "5..30:5")``; ConfigError for anything else."""
    name, sep, expression = str(text).partition("=")
    name, expression = name.strip(), expression.strip()
    if not sep or not name or not expression:
        raise ConfigError(f"--param {text!r}: expected NAME=VALUES, such as fast=5..30:5, slow=20,30,50 or fee=0.1")
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"--param {text!r}: {name!r} is not a parameter name")
    return name, expression


def _decimal(text: str, name: str, what: str) -> _Dec:
    try:
        number = _Dec(text.strip())
    except InvalidOperation:
        raise ConfigError(f"--param {name}: {what} {text.strip()!r} is not a number") from None
    if not number.is_finite():
        raise ConfigError(f"--param {name}: {what} {text.strip()!r} is not a finite number")
    return number


def _range(name: str, expression: str, parameter: Parameter) -> list[Any]:
    """The values of ``a..b[:step]`` (inclusive), typed for an integer or decimal parameter."""
    bounds, _, step_text = expression.partition(":")
    low_text, _, high_text = bounds.partition("..")
    if not low_text.strip() or not high_text.strip():
        raise ConfigError(f"--param {name}={expression}: a range is FIRST..LAST or FIRST..LAST:STEP, such as 5..30:5")
    if not isinstance(parameter, (Integer, Decimal)):
        raise ConfigError(f"--param {name}={expression}: a range needs an integer or decimal parameter; "
                          f"{name} is {parameter.kind} (list its values: {name}=a,b,c)")
    low, high = _decimal(low_text, name, "first value"), _decimal(high_text, name, "last value")
    if step_text.strip():
        step = _decimal(step_text, name, "step")
    elif isinstance(parameter, Integer):
        step = _Dec(1)
    else:
        raise ConfigError(f"--param {name}={expression}: a decimal range needs a step, such as 0.1..0.5:0.1")
    if step <= 0:
        raise ConfigError(f"--param {name}={expression}: the step must be positive")
    if low > high:
        raise ConfigError(f"--param {name}={expression}: the first value is above the last")
    if isinstance(parameter, Integer) and any(v != v.to_integral_value() for v in (low, high, step)):
        raise ConfigError(f"--param {name}={expression}: {name} is an integer parameter; use whole numbers")
    count = int((high - low) / step) + 1
    if count > MAX_GRID_POINTS:
        raise ConfigError(f"--param {name}={expression}: {count:,} values; at most {MAX_GRID_POINTS:,}")
    values = [low + step * i for i in range(count)]
    if isinstance(parameter, Integer):
        return [int(v) for v in values]
    return [float(v) for v in values]


def expand_values(name: str, expression: str, parameter: Parameter) -> tuple[Any, ...]:
    """The typed, checked, de-duplicated values of one ``--param`` expression for ``parameter``."""
    if ".." in expression:
        if "," in expression:
            raise ConfigError(f"--param {name}={expression}: give a range or a list, not both")
        raw: list[Any] = _range(name, expression, parameter)
    else:
        parts = [part.strip() for part in expression.split(",")]
        if any(not part for part in parts):
            raise ConfigError(f"--param {name}={expression}: empty value in the list")
        raw = parts
    values: list[Any] = []
    for value in raw:
        try:
            typed = parameter.parse(value) if isinstance(value, str) else parameter.check(value)
        except ValueError as exc:
            raise ConfigError(f"--param {name}={expression}: {exc} (expected {parameter.kind})") from None
        if typed not in values:
            values.append(typed)
    return tuple(values)


def build_grid(spec: RunSpec, options: Sequence[str]) -> list[dict[str, Any]]:
    """Every combination of the swept values, checked by loading the strategy with each; ConfigError otherwise."""
    if not options:
        raise ConfigError("give at least one --param NAME=VALUES to sweep")
    strategy = load_strategy(spec.strategy_file, spec.strategy)
    specs = strategy.parameter_specs
    axes: dict[str, tuple[Any, ...]] = {}
    for option in options:
        name, expression = parse_param_option(option)
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"--param {name}: unknown parameter of {strategy.name}{hint} "
                              f"(known: {', '.join(sorted(specs)) or 'none'})")
        if name in axes:
            raise ConfigError(f"--param {name}: given twice; list every value in one option")
        axes[name] = expand_values(name, expression, specs[name])
    total = math.prod(len(values) for values in axes.values())
    if total > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {total:,} points; at most {MAX_GRID_POINTS:,}")
    names = list(axes)
    grid = [dict(zip(names, combination, strict=True)) for combination in itertools.product(*axes.values())]
    for point in grid:
        try:
            load_strategy(spec.strategy_file, {**spec.strategy, **point})
        except UserInputError as exc:
            label = ", ".join(f"{k}={v}" for k, v in point.items())
            raise ConfigError(f"grid point {label}: {' '.join(str(exc).split())}") from None
    return grid


def check_rank_by(statistic: str) -> str:
    """A rankable statistic name; ConfigError naming the allowed ones otherwise."""
    if statistic not in RANKABLE:
        close = difflib.get_close_matches(statistic, list(RANKABLE), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"--rank-by {statistic!r} is not a statistic{hint} (use one of {', '.join(RANKABLE)})")
    return statistic


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class PointResult:
    """The outcome of one grid point."""

    #: Position in the grid (0-based, grid order).
    index: int
    #: The swept parameter values of this point.
    values: dict[str, Any]
    #: The run's id and folder ("" when the run could not even be created).
    run_id: str
    run_dir: str
    #: complete or error.
    status: str
    #: Summary.to_dict() of the run's final state (None on error).
    summary: dict[str, Any] | None
    #: One-line error, when status is error.
    error: str | None = None
    #: Wall-clock seconds of the whole point (create, backtest, artifacts).
    seconds: float = 0.0


@dataclass
class OptimizeResult:
    """A finished sweep: points ranked best first, and where the tables went."""

    rank_by: str
    #: True when higher values rank first.
    descending: bool
    parameters: list[str]
    results: list[PointResult]
    processes: int
    seconds: float
    csv_path: Path | None = None
    markdown_path: Path | None = None
    markdown: str = ""
    failed: int = field(default=0)

    @property
    def backtests_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class _Job:
    """What a worker process needs for one point (all picklable)."""

    index: int
    values: dict[str, Any]
    #: The point's own spec file (the sweep's spec with this point's values), which the run is created from.
    spec_file: Path
    runs_dir: Path
    ref: str | None


def _one_line(exc: BaseException) -> str:
    kind = "" if isinstance(exc, TradeExecutorError) else f"{type(exc).__name__}: "
    return " ".join(f"{kind}{exc}".split())[:500]


def _run_point(job: _Job) -> PointResult:
    """Worker: create the point's run and start it (the runs API backtests it and writes its artifacts); never raises."""
    from tradeexecutor.runs.run import Runs
    from tradeexecutor.runs.runner import start_run

    started = time.perf_counter()
    run_id, run_dir = "", ""
    runs = Runs(job.runs_dir, env={})  # the point's spec already holds every value; the environment must not
    try:
        record, _ = runs.create(job.spec_file, ref=job.ref)
        run_id, run_dir = record.id, str(runs.paths(record.id).root)
        runs.record(run_id, "swept", detail=f"grid point {job.index + 1}: {_point_label(job.values)}",
                    sweep={"index": job.index, "values": job.values})
        outcome = start_run(runs, run_id)
        if outcome.record.status != "complete":
            raise TradeExecutorError(f"run {run_id} ended {outcome.record.status}")
        document = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))
        summary = document.get("summary") or runs.metadata(run_id).get("summary")  # rank by the run's own figures
        return PointResult(job.index, job.values, run_id, run_dir, "complete", summary,
                           seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one failed point must not stop the sweep
        return PointResult(job.index, job.values, run_id, run_dir, "error", None, error=_one_line(exc),
                           seconds=time.perf_counter() - started)
    finally:
        runs.close()


def _context() -> Any:
    """fork on Linux (workers inherit the parent's imports: no second of importing per worker), spawn elsewhere."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _point_label(values: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items())


def write_point_specs(spec: RunSpec, grid: Sequence[Mapping[str, Any]], folder: Path) -> list[Path]:
    """One spec file per grid point (``point-001.yaml``, ...): the sweep's spec with that point's values.

    Paths inside are absolute, so the files work from any folder; each run records its file as its source.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base_name = spec.name or load_strategy(spec.strategy_file, spec.strategy).name
    files = []
    for index, point in enumerate(grid):
        data = spec.to_dict()
        data["mode"] = "backtest"
        data["name"] = f"{base_name} [{_point_label(point)}]"
        data["strategy"] = {**data.get("strategy", {}), **point}
        path = folder / f"point-{index + 1:03d}.yaml"
        header = f"# Grid point {index + 1} of {len(grid)} of a sweep of {spec.source or 'a run spec'}\n"
        atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        files.append(path)
    return files


def run_grid(spec: RunSpec, grid: Sequence[Mapping[str, Any]], *, runs_dir: Path, rank_by: str = "sharpe",
             processes: int | None = None, output_dir: Path | None = None, ref_prefix: str | None = None,
             progress: Callable[[PointResult], None] | None = None) -> OptimizeResult:
    """Run every grid point as a backtest run (in ``processes`` worker processes), rank and write the tables.

    The point specs go to ``output_dir/specs/`` (a temporary folder without ``output_dir``).
    """
    check_rank_by(rank_by)
    if ref_prefix is not None:
        from tradeexecutor.runs.registry import check_ref

        check_ref(f"{ref_prefix}-001")
    workers = max(1, min(processes or os.cpu_count() or 1, len(grid)))
    with tempfile.TemporaryDirectory(prefix="tradeexecutor-sweep-") as scratch:
        spec_folder = (output_dir / "specs") if output_dir is not None else Path(scratch)
        spec_files = write_point_specs(spec, grid, spec_folder)
        jobs = [_Job(i, dict(point), spec_files[i], Path(runs_dir),
                     f"{ref_prefix}-{i + 1:03d}" if ref_prefix else None) for i, point in enumerate(grid)]
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        results: list[PointResult] = []
        if workers == 1:
            for job in jobs:
                results.append(_run_point(job))
                if progress is not None:
                    progress(results[-1])
        else:
            _warm_imports()  # forked workers inherit them instead of importing each
            with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
                futures = [pool.submit(_run_point, job) for job in jobs]
                for future in as_completed(futures):
                    results.append(future.result())
                    if progress is not None:
                        progress(results[-1])
        seconds = time.perf_counter() - started
    ranked = rank_results(results, rank_by)
    parameters = list(grid[0]) if grid else []
    result = OptimizeResult(rank_by=rank_by, descending=RANKABLE[rank_by], parameters=parameters, results=ranked,
                            processes=workers, seconds=seconds,
                            failed=sum(1 for r in results if r.status != "complete"))
    result.markdown = results_markdown(result)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        result.csv_path = output_dir / "results.csv"
        result.markdown_path = output_dir / "results.md"
        atomic_write_text(result.csv_path, results_csv(result))
        atomic_write_text(result.markdown_path, result.markdown + "\n")
    return result


def _warm_imports() -> None:
    """Import what every point needs once in the parent, before forking."""
    import tradeexecutor.runs.artifacts
    import tradeexecutor.runs.run
    import tradeexecutor.runs.runner  # noqa: F401


# ---------------------------------------------------------------------------------------------
# Ranking and tables


def _statistic(result: PointResult, name: str) -> float | None:
    if result.summary is None:
        return None
    value = result.summary.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def rank_results(results: Sequence[PointResult], rank_by: str) -> list[PointResult]:
    """Best first by ``rank_by`` (direction from RANKABLE); points without a value, then errors, last; ties by grid order."""
    higher = RANKABLE[check_rank_by(rank_by)]

    def key(result: PointResult) -> tuple[int, float, int]:
        value = _statistic(result, rank_by)
        if result.status != "complete":
            return (2, 0.0, result.index)
        if value is None:
            return (1, 0.0, result.index)
        return (0, -value if higher else value, result.index)

    return sorted(results, key=key)


def _columns(result: OptimizeResult) -> list[str]:
    statistics = [result.rank_by, *[s for s in TABLE_STATISTICS if s != result.rank_by]]
    return ["rank", *result.parameters, *statistics, "status", "run_id"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _rows(result: OptimizeResult) -> list[list[str]]:
    columns = _columns(result)
    rows = []
    for rank, point in enumerate(result.results, start=1):
        row: list[str] = []
        for column in columns:
            if column == "rank":
                row.append(str(rank))
            elif column in point.values:
                row.append(_cell(point.values[column]))
            elif column == "status":
                row.append(point.status if point.error is None else f"error: {point.error}")
            elif column == "run_id":
                row.append(point.run_id)
            else:
                row.append(_cell(point.summary.get(column) if point.summary else None))
        rows.append(row)
    return rows


def results_csv(result: OptimizeResult) -> str:
    """The ranked table as CSV (full precision for the statistics)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = _columns(result)
    writer.writerow(columns)
    for rank, point in enumerate(result.results, start=1):
        row: list[Any] = []
        for column in columns:
            if column == "rank":
                row.append(rank)
            elif column in point.values:
                row.append(point.values[column])
            elif column == "status":
                row.append(point.status)
            elif column == "run_id":
                row.append(point.run_id)
            else:
                value = point.summary.get(column) if point.summary else None
                row.append("" if value is None else value)
        writer.writerow(row)
    return buffer.getvalue()


def results_markdown(result: OptimizeResult) -> str:
    """The ranked table as markdown, with a line saying how it was ranked."""
    columns = _columns(result)
    direction = "higher is better" if result.descending else "lower is better"
    lines = [f"Ranked by {result.rank_by} ({direction}); {len(result.results)} backtests in {result.seconds:.1f}s "
             f"on {result.processes} process(es)" + (f"; {result.failed} failed" if result.failed else ""), "",
             "| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c not in ("status", "run_id") else "---" for c in columns) + "|"]
    for row in _rows(result):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)
