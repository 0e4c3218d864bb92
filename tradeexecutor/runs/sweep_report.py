"""Finish a sweep: the walk-forward curve, full runs for the best points, results.csv, results.md and the sweep's charts.

Written into the sweep's folder (next to sweep.json and points.jsonl):

- ``results.csv`` — every point, ranked: the swept values, the ranking statistic and the table's
  statistics over the whole period, in-sample (``_is``) and out-of-sample (``_oos``) at full
  precision, status, error, the full run's id, and the point's fingerprints;
- ``results.md`` — the same ranking for people, in-sample and out-of-sample side by side, then
  the walk-forward folds and the combined out-of-sample result, and the charts;
- ``charts/in_vs_out_of_sample.png`` and ``charts/walk_forward.png`` (unless ``reports="none"``);
- ``specs/point-NNN.yaml`` — the spec of each point that became a full run.

Full runs (``reports``: the best N, all, or none) are ordinary backtest runs in the runs folder,
the same runs ``tradeexecutor runs create`` + ``start`` would make — state, journal, metrics,
orders, report — but each built out of sight and committed with the others (``runs.sweep_runs``:
a hidden folder, one fsync pass, then every run put in place and registered in one transaction,
so an interrupted sweep leaves no half run), in parallel local processes; on one process the
sweep's charts are drawn in a thread beside them. Their charts are drawn on demand
(``tradeexecutor report RUN``; the reports say so): drawing them cost 0.3 s a run, most of a
default sweep's time on a small grid, for images nobody may open. Their ids go to ``reports.json``
once they are registered, so an interrupted or resumed sweep never makes a run twice.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from tradeexecutor.atomic import atomic_write_bytes, atomic_write_text, deferred_directory_fsyncs
from tradeexecutor.layout import SweepFiles
from tradeexecutor.runs.ranking import RANKABLE, statistic
from tradeexecutor.runs.sweep_eval import PointResult, canonical_values, equity_curve
from tradeexecutor.runs.sweep_pool import process_context
from tradeexecutor.runs.walkforward import IN_SAMPLE, OUT_OF_SAMPLE, combine_curves
from tradeexecutor.stats.formatting import format_statistic

if TYPE_CHECKING:
    from tradeexecutor.runs.run import StagedRun
    from tradeexecutor.runs.sweep import SweepProgress, SweepResult
    from tradeexecutor.runs.sweep_store import SweepFolder

__all__ = ["TABLE_STATISTICS", "finish", "markdown_report", "results_csv"]

#: Statistics every results table shows (besides the ranking one).
TABLE_STATISTICS: tuple[str, ...] = ("total_return", "sharpe", "max_drawdown", "trade_count")
#: Rows of the ranking printed on the terminal (results.md has them all).
PRINTED_ROWS = 20
#: Window column suffixes: whole period, in-sample, out-of-sample.
_SUFFIXES = (("", None), ("_is", IN_SAMPLE), ("_oos", OUT_OF_SAMPLE))


def finish(result: SweepResult, folder: SweepFolder, *, runs_dir: Path, progress: SweepProgress) -> None:
    """Everything after the points: walk-forward curve, full runs, tables and charts (module docstring)."""
    plan = result.plan
    curves = _walk_forward(result, curves_needed=plan.options.reports != "none")
    charts: dict[str, bytes] = {}
    if plan.options.reports != "none":
        progress.phase("reports")
        # The charts need the rows only: drawn while the full runs are made (by worker processes, or in this
        # process while they wait for the disk); imported here, not in the drawing thread while the runs import.
        import tradeexecutor.visual.sweep_charts  # noqa: F401
        _full_runs(result, folder, runs_dir=runs_dir, meanwhile=lambda: charts.update(_charts(result, curves)))
    files = [folder.files.results_csv, folder.files.results_md]
    if charts:
        folder.files.charts.mkdir(exist_ok=True)
    for name, image in charts.items():
        atomic_write_bytes(folder.files.charts / name, image)
        files.append(folder.files.charts / name)
    atomic_write_text(files[0], results_csv(result))
    result.markdown = markdown_report(result, charts=list(charts))
    atomic_write_text(files[1], result.markdown + "\n")
    result.files = files


# ---------------------------------------------------------------------------------------------
# Walk-forward


def _walk_forward(result: SweepResult, *, curves_needed: bool) -> dict[str, Any]:
    """The combined out-of-sample result; each fold's choice backtested again for the curves the chart draws.

    With one fold the combined result is that fold's test window, as the row shows it; with more,
    the chained curve of :func:`combine_curves`, which needs the choices' equity curves.
    """
    plan = result.plan
    folds = result.folds
    if not folds or any(fold.chosen is None for fold in folds):
        return {}
    if len(folds) == 1:
        result.combined = dict(folds[0].test or {})
        if not curves_needed:
            return {}
    curves = {fold.fold.number: equity_curve(plan.data, fold.chosen.values)  # type: ignore[union-attr]
              for fold in folds}
    ppy = (folds[0].chosen.summary or {}).get("periods_per_year")  # type: ignore[union-attr]
    combined = combine_curves(folds, curves, plan.spec.core.cash, ppy)
    if combined is None:
        return {}
    times, equity, summary = combined
    if len(folds) > 1:
        result.combined = summary
    reference = curves[1]  # fold 1 chose on the in-sample window: the plain best in-sample point
    start = int(np.searchsorted(reference[0], times[0], side="left"))
    scale = plan.spec.core.cash / float(reference[1][start]) if reference[1][start] > 0 else 1.0
    return {"times": times, "equity": equity, "reference": (reference[0][start:], reference[1][start:] * scale),
            "boundaries": [fold.fold.test.first_ms for fold in folds[1:]]}


# ---------------------------------------------------------------------------------------------
# Full runs


@dataclass(frozen=True)
class _RunJob:
    """What a process needs to make one point's full run (all picklable)."""

    index: int
    values: dict[str, Any]
    spec_file: Path
    runs_dir: Path
    ref: str | None


def _build(job: _RunJob) -> tuple[int, StagedRun | None, str | None]:
    """Build the point's full run in a hidden folder, fsynced (runs.sweep_runs); (index, staged run, error)."""
    return _build_all([job])[0]


def _build_all(jobs: Sequence[_RunJob]) -> list[tuple[int, StagedRun | None, str | None]]:
    """Build the jobs' full runs in one durability pass (they share a runs folder: the sweep's)."""
    from tradeexecutor.runs.run import Runs
    from tradeexecutor.runs.sweep_runs import build_runs

    if not jobs:
        return []
    runs = Runs(jobs[0].runs_dir, env={})  # the point's spec already holds every value; the environment must not
    try:
        built = build_runs(runs, [(job.spec_file, job.ref, ("swept", f"sweep point {job.index + 1}: "
                                                                     f"{_label(job.values)}"),
                                   {"sweep": {"index": job.index, "values": job.values}}) for job in jobs])
    finally:
        runs.close()
    return [(job.index, staged, error) for job, (staged, error) in zip(jobs, built, strict=True)]


def _label(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items())


def write_point_spec(result: SweepResult, row: PointResult, folder: Path) -> Path:
    """``specs/point-NNN.yaml``: the sweep's spec with the point's values (absolute paths, so it works anywhere)."""
    plan = result.plan
    data = plan.spec.to_dict()
    data["mode"] = "backtest"
    data["name"] = f"{plan.spec.name or plan.strategy_name} [{_label(row.values)}]"
    data["strategy"] = {**data.get("strategy", {}), **row.values}
    path = SweepFiles(folder).point_spec(row.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Point {row.index + 1} of a sweep of {plan.spec.source or 'a run spec'}\n"
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _full_runs(result: SweepResult, folder: SweepFolder, *, runs_dir: Path, meanwhile: Callable[[], None]) -> None:
    """Make the full runs ``reports`` asks for (those not made before), in parallel; record their ids on the rows.

    Each run is built in a hidden folder and made durable (runs.sweep_runs); when all are built, they
    are put in place and registered in one transaction, and reports.json is written once. Ctrl+C
    before that leaves no run (hidden folders are removed). ``meanwhile`` is called once in this process:
    while worker processes build the runs, or in a thread beside them when they are built here
    (:func:`_in_this_process`).
    """
    from tradeexecutor.runs.run import Runs

    plan = result.plan
    complete = [row for row in result.results if row.status == "complete"]
    chosen = complete if plan.options.reports == "all" else complete[:plan.options.best]
    made = folder.reports()
    prefix = plan.options.ref_prefix
    with deferred_directory_fsyncs():  # the point specs' folder is fsynced once, before any run reads them
        jobs = [_RunJob(row.index, row.values, write_point_spec(result, row, folder.path), Path(runs_dir),
                        f"{prefix}-{row.index + 1:03d}" if prefix else None)
                for row in chosen if canonical_values(row.values) not in made]
    by_index = {row.index: row for row in result.results}
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    built: list[tuple[int, StagedRun | None, str | None]] = []
    chart_failure: list[Exception] = []

    def charts() -> None:
        try:
            meanwhile()
        except Exception as exc:  # noqa: BLE001 - raised once the runs are in place: they stand on their own
            chart_failure.append(exc)

    try:
        for outcome in _run_jobs(jobs, plan.options.processes, charts):
            built.append(outcome)
    except BaseException:
        for _, staged, _ in built:
            if staged is not None:
                shutil.rmtree(staged.paths.root, ignore_errors=True)
        raise
    errors = {index: error for index, _, error in built if error}
    staged_runs = {staged.record.id: index for index, staged, _ in built if staged is not None}
    if staged_runs:
        runs = Runs(Path(runs_dir), env={})
        try:
            committed = runs.commit_staged([staged for _, staged, _ in built if staged is not None])
        finally:
            runs.close()
        for staged, error in committed:
            index = staged_runs[staged.record.id]
            if error:
                errors[index] = error
            else:
                made[canonical_values(by_index[index].values)] = staged.record.id
        folder.save_reports(made)
    for index, error in sorted(errors.items()):
        result.note = (result.note + "; " if result.note else "") + f"report of point {index + 1} failed: {error}"
    result.results = [row.with_run(made.get(canonical_values(row.values), "")) for row in result.results]
    if chart_failure:
        raise chart_failure[0]


def _run_jobs(jobs: Sequence[_RunJob], processes: int | None,
              meanwhile: Callable[[], None]) -> Iterable[tuple[int, StagedRun | None, str | None]]:
    workers = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        yield from _in_this_process(jobs, meanwhile)
        return
    import tradeexecutor.runs.artifacts  # noqa: F401 - imported once before forking, not in every worker
    import tradeexecutor.runs.sweep_runs  # noqa: F401

    with ProcessPoolExecutor(max_workers=workers, mp_context=process_context()) as pool:
        futures = [pool.submit(_build, job) for job in jobs]  # a fork pool has started its workers by now
        try:
            meanwhile()
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _in_this_process(jobs: Sequence[_RunJob],
                     meanwhile: Callable[[], None]) -> Iterable[tuple[int, StagedRun | None, str | None]]:
    """The runs one after the other here, in one durability pass, ``meanwhile`` (the sweep's charts) in a thread.

    A full run spends part of its time waiting for the disk (the ledger's commits, the pass's
    fsyncs), when it holds no GIL: the charts are drawn then. Only the thread touches matplotlib
    (the runs draw no charts: on demand), each chart on a Figure of its own. An exception in the
    thread is raised here, after the runs; on Ctrl+C the thread is left to finish on its own (it writes nothing).
    """
    if not jobs:
        meanwhile()
        return
    failure: list[BaseException] = []

    def draw() -> None:
        try:
            meanwhile()
        except BaseException as exc:  # noqa: BLE001 - handed to the sweep's thread below
            failure.append(exc)

    thread = threading.Thread(target=draw, name="sweep-charts", daemon=True)
    thread.start()
    yield from _build_all(jobs)
    thread.join()
    if failure:
        raise failure[0]


# ---------------------------------------------------------------------------------------------
# Charts


def _charts(result: SweepResult, curves: dict[str, Any]) -> dict[str, bytes]:
    from tradeexecutor.visual.sweep_charts import render_in_out_of_sample, render_walk_forward

    plan = result.plan
    charts: dict[str, bytes] = {}
    rank_by = plan.options.rank_by
    if plan.windows.folds:
        pairs = [(statistic(row, rank_by, IN_SAMPLE), statistic(row, rank_by, OUT_OF_SAMPLE))
                 for row in result.results]
        xs = [a for a, b in pairs if a is not None and b is not None]
        ys = [b for a, b in pairs if a is not None and b is not None]
        best = pairs[0] if pairs and None not in pairs[0] else None
        charts["in_vs_out_of_sample.png"] = render_in_out_of_sample(xs, ys, statistic=rank_by,
                                                                    chosen=best)  # type: ignore[arg-type]
    if curves:
        folds = len(result.folds)
        title = (f"Out-of-sample equity, walk-forward over {folds} folds" if folds > 1
                 else "Out-of-sample equity of the best in-sample point")
        charts["walk_forward.png"] = render_walk_forward(curves["times"], curves["equity"],
                                                         boundaries_ms=curves["boundaries"],
                                                         reference=curves["reference"] if folds > 1 else None,
                                                         title=title)
    return charts


# ---------------------------------------------------------------------------------------------
# Tables


def _statistics(result: SweepResult) -> list[str]:
    rank_by = result.plan.options.rank_by
    return [rank_by, *[name for name in TABLE_STATISTICS if name != rank_by]]


def results_csv(result: SweepResult) -> str:
    """Every point, ranked, at full precision (module docstring)."""
    plan = result.plan
    windows = [(suffix, window) for suffix, window in _SUFFIXES if window is None or plan.windows.folds]
    statistics = list(dict.fromkeys([*_statistics(result), "final_equity"]))
    columns = ["rank", *plan.parameters,
               *[f"{name}{suffix}" for suffix, _ in windows for name in statistics],
               "status", "error", "run_id", "seconds", "worker",
               "fingerprint_config", "fingerprint_data", "fingerprint_code", "fingerprint_result"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rank, row in enumerate(result.results, start=1):
        figures = [_raw(row, name, window) for _, window in windows for name in statistics]
        prints = row.fingerprints
        writer.writerow([rank, *[row.values.get(name) for name in plan.parameters], *figures, row.status,
                         row.error or "", row.run_id, f"{row.seconds:.4f}", row.worker, prints.get("config", ""),
                         prints.get("data", ""), prints.get("code", ""), prints.get("result", "")])
    return buffer.getvalue()


def _raw(row: PointResult, name: str, window: str | None) -> Any:
    figures = row.figures(window)
    value = figures.get(name) if figures else None
    return "" if value is None else value


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _header(result: SweepResult) -> list[str]:
    plan = result.plan
    options = plan.options
    direction = "higher is better" if RANKABLE[options.rank_by] else "lower is better"
    search = {"grid": "grid", "random": f"random search (seed {options.seed})",
              "tpe": f"TPE search (seed {options.seed})"}[options.search]
    lines = [f"# Sweep of {plan.spec.source or 'a run spec'} ({plan.strategy_name})", ""]
    done = f"{len(result.results)} points ({search}) in {result.seconds:.1f} s on {result.executor}"
    if result.resumed:
        done += f"; {result.resumed} were already done and not run again"
    if result.failed:
        done += f"; {result.failed} failed"
    if plan.windows.folds:
        ins, oos = plan.windows.in_sample, plan.windows.out_of_sample
        assert ins is not None and oos is not None
        lines.append(f"Ranked by **{options.rank_by} in-sample** ({direction}): {_when(ins.first_ms)} to "
                     f"{_when(ins.last_ms)}. Out-of-sample (the last {plan.windows.holdout:.0%} of the bars, never "
                     f"seen by the search or the ranking): {_when(oos.first_ms)} to {_when(oos.last_ms)}. {done}.")
    else:
        lines.append(f"Ranked by **{options.rank_by}** over the whole period ({direction}); no out-of-sample "
                     f"check (--holdout 0). {done}.")
    if plan.constraints:
        lines.append("")
        lines.append("Constraints: " + "; ".join(f"`{c.text}`" for c in plan.constraints) + ".")
    if result.note:
        lines += ["", f"Note: {result.note}."]
    return lines


def ranking_table(result: SweepResult, limit: int | None = None) -> list[str]:
    """The ranked table as markdown lines (in-sample and out-of-sample side by side when there is a hold-out)."""
    plan = result.plan
    statistics = _statistics(result)
    split = bool(plan.windows.folds)
    figure_columns = ([f"{name} {label}" for name in statistics for label in ("IS", "OOS")] if split
                      else list(statistics))
    columns = ["rank", *plan.parameters, *figure_columns, "status", "run"]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("status", "run") else "---:" for c in columns) + "|"]
    rows = result.results if limit is None else result.results[:limit]
    for rank, row in enumerate(rows, start=1):
        cells = [str(rank), *[str(row.values.get(name)) for name in plan.parameters]]
        for name in statistics:
            if split:
                cells += [format_statistic(name, _value(row, name, IN_SAMPLE)),
                          format_statistic(name, _value(row, name, OUT_OF_SAMPLE))]
            else:
                cells.append(format_statistic(name, _value(row, name, None)))
        cells.append(row.status if row.error is None else f"{row.status}: {row.error}")
        cells.append(row.run_id)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if limit is not None and len(result.results) > limit:
        lines.append(f"\n… and {len(result.results) - limit} more rows in results.md and results.csv")
    return lines


def _value(row: PointResult, name: str, window: str | None) -> Any:
    figures = row.figures(window)
    return figures.get(name) if figures else None


def walk_forward_lines(result: SweepResult) -> list[str]:
    """The folds (train, test, choice, figures) and the combined out-of-sample result, as markdown lines."""
    plan = result.plan
    if not result.folds:
        return []
    rank_by = plan.options.rank_by
    count = len(result.folds)
    title = (f"## Walk-forward: {count} anchored folds" if count > 1
             else "## Out-of-sample check: the best in-sample point on data it never saw")
    lines = [title, "",
             "| fold | train | test | chosen | " + f"{rank_by} train | {rank_by} test | total_return test | "
             "max_drawdown test | trades test |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for fold in result.folds:
        train, test = fold.fold.train, fold.fold.test
        chosen = _label(fold.chosen.values) if fold.chosen else "none"
        trained, tested = fold.train or {}, fold.test or {}
        lines.append(f"| {fold.fold.number} | {_when(train.first_ms)} to {_when(train.last_ms)} | "
                     f"{_when(test.first_ms)} to {_when(test.last_ms)} | {chosen} | "
                     f"{format_statistic(rank_by, trained.get(rank_by))} | "
                     f"{format_statistic(rank_by, tested.get(rank_by))} | "
                     f"{format_statistic('total_return', tested.get('total_return'))} | "
                     f"{format_statistic('max_drawdown', tested.get('max_drawdown'))} | "
                     f"{format_statistic('trade_count', tested.get('trade_count'))} |")
    if result.combined is not None and count > 1:
        combined = result.combined
        names = list(dict.fromkeys(["total_return", rank_by, "sharpe", "max_drawdown"]))
        figures = ", ".join(f"{name.replace('_', ' ')} {format_statistic(name, combined.get(name))}"
                            for name in names)
        lines += ["", f"Combined out-of-sample ({count} fold{'s' if count > 1 else ''} chained): {figures}, "
                      f"{format_statistic('trade_count', combined.get('trade_count'))} trades."]
    return lines


def markdown_report(result: SweepResult, *, charts: Sequence[str] = (), limit: int | None = None) -> str:
    """results.md: header, ranked table, walk-forward, charts."""
    lines = [*_header(result), "", *ranking_table(result, limit)]
    folds = walk_forward_lines(result)
    if folds:
        lines += ["", *folds]
    titles = {"in_vs_out_of_sample.png": "In-sample against out-of-sample",
              "walk_forward.png": "Out-of-sample equity"}
    if charts:
        lines.append("")
        lines += [f"![{titles.get(name, name)}](charts/{name})" for name in charts]
    return "\n".join(lines)
