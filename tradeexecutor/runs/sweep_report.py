"""Finish a sweep: the walk-forward curve, full runs for the best points, results.csv, results.md and the charts' data.

Written into the sweep's folder (next to sweep.json and points.jsonl):

- ``results.csv`` — every point, ranked: the swept values, the ranking statistic and the table's
  statistics over the whole period, in-sample (``_is``) and out-of-sample (``_oos``) at full
  precision, status, error, the full run's id, and the point's fingerprints;
- ``results.md`` — the same ranking for people, in-sample and out-of-sample side by side, then
  the walk-forward folds and the combined out-of-sample result, and the charts once drawn;
- ``charts.npz`` — what the sweep's charts draw (unless ``reports="none"``); the charts themselves,
  ``charts/in_vs_out_of_sample.png`` and ``charts/walk_forward.png``, are drawn **on demand**, as a
  run's own are: ``tradeexecutor report SWEEP_FOLDER`` (:func:`draw_charts`) draws them and puts
  them in results.md. Two matplotlib charts cost about as much CPU as a 20-point grid's points;
- ``specs/point-NNN.yaml`` — the spec of each point that became a full run.

Full runs (``reports``: the best N, all, or none) are ordinary backtest runs in the runs folder,
the same runs ``tradeexecutor runs create`` + ``start`` would make — state, journal, metrics,
orders, report — but each built out of sight and committed with the others (``runs.sweep_runs``:
a hidden folder, one fsync pass, then every run put in place and registered in one transaction,
so an interrupted sweep leaves no half run), in parallel local processes, each backtesting on the
market the sweep already loaded. Their charts are drawn on demand too (``tradeexecutor report
RUN``; the reports say so). Their ids go to ``reports.json`` once they are registered, so an
interrupted or resumed sweep never makes a run twice.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shlex
import shutil
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeexecutor.atomic import atomic_write_bytes, atomic_write_files, atomic_write_text, deferred_directory_fsyncs
from tradeexecutor.errors import ConfigError
from tradeexecutor.layout import SweepFiles
from tradeexecutor.runs.ranking import RANKABLE, statistic
from tradeexecutor.runs.run import remove_abandoned_staging
from tradeexecutor.runs.spec import dump_spec
from tradeexecutor.runs.sweep_eval import (
    PointResult,
    SweepData,
    canonical_values,
    equity_curve,
    result_fingerprint,
    valuation_curve,
)
from tradeexecutor.runs.sweep_pool import LocalPool, process_context, worker_data
from tradeexecutor.runs.walkforward import IN_SAMPLE, OUT_OF_SAMPLE, combine_curves
from tradeexecutor.stats.formatting import format_statistic

if TYPE_CHECKING:
    from tradeexecutor.runs.run import StagedRun
    from tradeexecutor.runs.sweep import SweepProgress, SweepResult
    from tradeexecutor.runs.sweep_store import SweepFolder
    from tradeexecutor.state import State

__all__ = ["TABLE_STATISTICS", "finish", "markdown_report", "results_csv"]

logger = logging.getLogger("tradeexecutor.runs")

#: Statistics every results table shows (besides the ranking one).
TABLE_STATISTICS: tuple[str, ...] = ("total_return", "sharpe", "max_drawdown", "trade_count")
#: Rows of the ranking printed on the terminal (results.md has them all).
PRINTED_ROWS = 20
#: A point's valuation times (epoch ms) and equity, as :func:`~tradeexecutor.runs.sweep_eval.equity_curve` gives it.
Curve = tuple[np.ndarray, np.ndarray]
#: Window column suffixes: whole period, in-sample, out-of-sample.
_SUFFIXES = (("", None), ("_is", IN_SAMPLE), ("_oos", OUT_OF_SAMPLE))


def finish(result: SweepResult, folder: SweepFolder, *, runs_dir: Path, progress: SweepProgress,
           helpers: LocalPool | None = None) -> None:
    """Everything after the points: walk-forward curve, full runs, tables and the charts' data (module docstring).

    ``helpers``: the points' local pool, still open: its workers build a share of the full runs.
    """
    plan = result.plan
    files = [folder.files.results_csv, folder.files.results_md]
    closing: list[tuple[Path, bytes]] = []
    charts: list[str] = []
    if plan.options.reports == "none":
        _walk_forward(result, curves_needed=False)
    else:
        progress.phase("reports")
        # The full runs first: the curve of a fold's choice is read from its full run when this process made it.
        made = _full_runs(result, folder, runs_dir=runs_dir, helpers=helpers)
        curves = _walk_forward(result, curves_needed=True, known=made)
        inputs = chart_inputs(result, curves)
        charts = _chart_names(inputs)
        for name in ("in_vs_out_of_sample.png", "walk_forward.png"):  # drawn from an earlier state of a resumed sweep
            (folder.files.charts / name).unlink(missing_ok=True)
        files.append(folder.files.chart_data)
        closing.append((folder.files.chart_data, _encode_inputs(inputs)))
    result.markdown = markdown_report(result, charts=charts, drawn=False, folder=folder.path)
    closing += [(files[0], results_csv(result).encode("utf-8")), (files[1], (result.markdown + "\n").encode("utf-8"))]
    atomic_write_files(closing)  # one fsync pass and one of the folder, not one of each per file; results.md last
    result.files = files


# ---------------------------------------------------------------------------------------------
# Walk-forward


def _walk_forward(result: SweepResult, *, curves_needed: bool, known: Mapping[int, Curve] | None = None) -> dict[str, Any]:
    """The combined out-of-sample result; each fold's choice backtested again for the curves the chart draws.

    With one fold the combined result is that fold's test window, as the row shows it; with more,
    the chained curve of :func:`combine_curves`, which needs the choices' equity curves. ``known``: point index →
    its curve, read from the point's full run (:func:`_full_runs`): that choice is not backtested again.
    """
    known = known or {}
    plan = result.plan
    folds = result.folds
    if not folds or any(fold.chosen is None for fold in folds):
        return {}
    if len(folds) == 1:
        result.combined = dict(folds[0].test or {})
        if not curves_needed:
            return {}
    curves = {fold.fold.number: known.get(fold.chosen.index) or equity_curve(plan.data, fold.chosen)  # type: ignore[union-attr,arg-type]
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
    #: The point's result fingerprint: its full run, made without the lookahead check, must come out the same.
    result: str = ""
    #: The walk-forward chart draws this point's equity curve: read it from the full run when it is the point's.
    curve: bool = False


def _build_all(jobs: Sequence[_RunJob], data: SweepData | None,
               curves: dict[int, Curve] | None = None) -> list[tuple[int, StagedRun | None, str | None]]:
    """Build the jobs' full runs in one durability pass (they share a runs folder: the sweep's), from ``data``.

    ``curves`` (in the sweep's own process): point index → equity curve, for each job that asks for its curve and
    whose full run came out as its point (the same result fingerprint: the same curve, bit for bit), so the
    walk-forward chart does not backtest that point again."""
    from tradeexecutor.runs.run import Runs
    from tradeexecutor.runs.sweep_runs import build_runs

    if not jobs:
        return []
    if data is not None:
        for job in jobs:  # a job is a point that completed in this sweep: its backtest passed the lookahead check
            data.note_checked(job.values, job.result)
    def keep(position: int, state: State) -> None:
        job = jobs[position]
        if curves is not None and job.curve and job.result and result_fingerprint(state) == job.result:
            curves[job.index] = valuation_curve(state)

    runs = Runs(jobs[0].runs_dir, env={})  # the point's spec already holds every value; the environment must not
    try:
        built = build_runs(runs, [(job.spec_file, job.ref, ("swept", f"sweep point {job.index + 1}: "
                                                                     f"{_label(job.values)}"),
                                   {"sweep": {"index": job.index, "values": job.values}}) for job in jobs],
                           data=data, on_state=keep if curves is not None else None)
    finally:
        runs.close()
    return [(job.index, staged, error) for job, (staged, error) in zip(jobs, built, strict=True)]


def _label(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items())


def point_spec(result: SweepResult, row: PointResult, folder: Path) -> tuple[Path, str]:
    """``specs/point-NNN.yaml`` and its text: the sweep's spec with the point's values (absolute paths, so it works
    anywhere). Its folder is made; the file is the caller's to write (:func:`_full_runs` writes them together)."""
    plan = result.plan
    data = plan.spec.to_dict()
    data["mode"] = "backtest"
    data["name"] = f"{plan.spec.name or plan.strategy_name} [{_label(row.values)}]"
    data["strategy"] = {**data.get("strategy", {}), **row.values}
    path = SweepFiles(folder).point_spec(row.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Point {row.index + 1} of a sweep of {plan.spec.source or 'a run spec'}\n"
    return path, header + dump_spec(data)


def _full_runs(result: SweepResult, folder: SweepFolder, *, runs_dir: Path,
               helpers: LocalPool | None) -> dict[int, Curve]:
    """Make the full runs ``reports`` asks for (those not made before), in parallel; record their ids on the rows.
    Returns the equity curves of the walk-forward's choices whose full runs this process made (:func:`_build_all`).

    Each run is built in a hidden folder and made durable (runs.sweep_runs), from the sweep's data
    already in memory (its market and strategy source: no session opened again); when all are
    built, they are put in place and registered in one transaction, and reports.json is written
    once. Ctrl+C before that leaves no run (hidden folders are removed).
    """
    from tradeexecutor.runs.run import Runs

    plan = result.plan
    complete = [row for row in result.results if row.status == "complete"]
    chosen = complete if plan.options.reports == "all" else complete[:plan.options.best]
    made = folder.reports()
    prefix = plan.options.ref_prefix
    specs = [(row, *point_spec(result, row, folder.path)) for row in chosen
             if canonical_values(row.values) not in made]
    # Each durable before any run reads it, in one fsync pass and one of their folder (not one of each per spec).
    atomic_write_files([(path, text.encode("utf-8")) for _, path, text in specs])
    chosen_by_folds = {fold.chosen.index for fold in result.folds if fold.chosen is not None}
    jobs = [_RunJob(row.index, row.values, path, Path(runs_dir), f"{prefix}-{row.index + 1:03d}" if prefix else None,
                    row.fingerprints.get("result", ""), curve=row.index in chosen_by_folds) for row, path, _ in specs]
    by_index = {row.index: row for row in result.results}
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    stale = remove_abandoned_staging(Path(runs_dir))
    if stale:
        logger.info("removed %d hidden run folder(s) a killed sweep left in %s: %s", len(stale), runs_dir,
                    ", ".join(stale))
    built: list[tuple[int, StagedRun | None, str | None]] = []
    curves: dict[int, Curve] = {}
    try:
        for outcome in _run_jobs(jobs, plan.options.processes, plan.data, helpers, curves):
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
    return curves


#: Fewer full runs than this are built in this process, whatever ``processes`` says: a run on the sweep's loaded
#: market costs ~30 ms of CPU, a process pool ~0.2 s to start, so a pool pays only from about a dozen runs
#: (the default's five: 0.41 s on two processes against 0.34 s on one, before this).
POOL_MIN_RUNS = 16

#: The sweep's data in a forked full-run worker (inherited from the parent; None: load it as ``runs start`` does).
_RUN_DATA: SweepData | None = None


def _build_in_worker(job: _RunJob) -> tuple[int, StagedRun | None, str | None]:
    return _build_all([job], _RUN_DATA)[0]


def _build_in_helper(jobs: list[_RunJob]) -> list[tuple[int, StagedRun | None, str | None]]:
    """A share of the full runs in a worker of the points' pool, on the sweep data it already holds, in one
    durability pass (one registry opened, one fsync pass for the share, not one per run)."""
    return _build_all(jobs, worker_data())


def _shared(jobs: Sequence[_RunJob], data: SweepData, helpers: LocalPool,
            curves: dict[int, Curve]) -> Iterable[tuple[int, StagedRun | None, str | None]]:
    """The runs shared between this process and the points' pool workers, already started and warm (no new pool):
    each worker builds an equal share, in one call; this process the first share, in one durability pass. A share
    is the runs over the processes rounded up, so runs no more than the workers are one a process, never all here.
    Those whose curve the walk-forward chart draws come first, so they are made here and their curves kept."""
    jobs = sorted(jobs, key=lambda job: not job.curve)  # stable: otherwise in rank order
    share = -(-len(jobs) // (helpers.workers + 1))
    here, there = jobs[:share], jobs[share:]
    futures = [helpers.call(_build_in_helper, list(there[start::helpers.workers]))
               for start in range(min(helpers.workers, len(there)))]
    try:
        yield from _build_all(here, data, curves)
        for future in futures:
            yield from future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _run_jobs(jobs: Sequence[_RunJob], processes: int | None, data: SweepData, helpers: LocalPool | None,
              curves: dict[int, Curve]) -> Iterable[tuple[int, StagedRun | None, str | None]]:
    global _RUN_DATA
    if helpers is not None:  # the points' pool is open and warm: its workers take a share, never a second pool beside it
        yield from _shared(jobs, data, helpers, curves)
        return
    workers = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
    if workers == 1 or len(jobs) < POOL_MIN_RUNS:
        yield from _build_all(jobs, data, curves)
        return
    import tradeexecutor.runs.artifacts  # noqa: F401 - imported once before forking, not in every worker
    import tradeexecutor.runs.sweep_runs  # noqa: F401

    context = process_context()
    _RUN_DATA = data if context.get_start_method() == "fork" else None  # forked workers inherit it; nothing sent
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_build_in_worker, job) for job in jobs]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        _RUN_DATA = None


# ---------------------------------------------------------------------------------------------
# Charts, on demand

#: results.md's line where the charts go until they are drawn (``tradeexecutor report FOLDER`` replaces it).
CHARTS_PENDING = "Charts (drawn on demand, not yet):"
_TITLES = {"in_vs_out_of_sample.png": "In-sample against out-of-sample", "walk_forward.png": "Out-of-sample equity"}


def chart_inputs(result: SweepResult, curves: dict[str, Any]) -> dict[str, np.ndarray]:
    """What the sweep's charts draw, as arrays (``charts.npz``): enough to draw them later without the data or a backtest."""
    plan = result.plan
    inputs: dict[str, np.ndarray] = {}
    rank_by = plan.options.rank_by
    if plan.windows.folds:
        pairs = [(statistic(row, rank_by, IN_SAMPLE), statistic(row, rank_by, OUT_OF_SAMPLE))
                 for row in result.results]
        inputs["statistic"] = np.asarray(rank_by)
        inputs["in_sample"] = np.asarray([a for a, b in pairs if a is not None and b is not None], dtype=np.float64)
        inputs["out_of_sample"] = np.asarray([b for a, b in pairs if a is not None and b is not None],
                                             dtype=np.float64)
        inputs["chosen"] = np.asarray(pairs[0] if pairs and None not in pairs[0] else [], dtype=np.float64)
    if curves:
        folds = len(result.folds)
        inputs["title"] = np.asarray(f"Out-of-sample equity, walk-forward over {folds} folds" if folds > 1
                                     else "Out-of-sample equity of the best in-sample point")
        inputs["times"] = np.asarray(curves["times"])
        inputs["equity"] = np.asarray(curves["equity"])
        inputs["boundaries"] = np.asarray(curves["boundaries"], dtype=np.int64)
        if folds > 1:
            inputs["reference_times"], inputs["reference_equity"] = (np.asarray(part) for part in curves["reference"])
    return inputs


def _chart_names(inputs: dict[str, np.ndarray]) -> list[str]:
    return [name for name, key in (("in_vs_out_of_sample.png", "statistic"), ("walk_forward.png", "times"))
            if key in inputs]


def _encode_inputs(inputs: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **inputs)  # type: ignore[arg-type]  # numpy's stubs read ** as allow_pickle
    return buffer.getvalue()


#: What each chart of render_charts reads, by the key that asks for it (draw_charts refuses an archive without them).
_CHART_KEYS = {"statistic": ("chosen", "in_sample", "out_of_sample"), "times": ("equity", "boundaries", "title")}


def render_charts(inputs: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The sweep's charts as PNG bytes, by file name, from :func:`chart_inputs`."""
    from tradeexecutor.visual.sweep_charts import render_in_out_of_sample, render_walk_forward

    charts: dict[str, bytes] = {}
    if "statistic" in inputs:
        chosen = inputs["chosen"]
        charts["in_vs_out_of_sample.png"] = render_in_out_of_sample(
            inputs["in_sample"].tolist(), inputs["out_of_sample"].tolist(), statistic=str(inputs["statistic"]),
            chosen=(float(chosen[0]), float(chosen[1])) if len(chosen) == 2 else None)
    if "times" in inputs:
        reference = ((inputs["reference_times"], inputs["reference_equity"]) if "reference_times" in inputs
                     else None)
        charts["walk_forward.png"] = render_walk_forward(inputs["times"], inputs["equity"],
                                                         boundaries_ms=[int(b) for b in inputs["boundaries"]],
                                                         reference=reference, title=str(inputs["title"]))
    return charts


def draw_charts(folder: Path) -> list[Path]:
    """Draw a finished sweep's charts into ``charts/`` from its ``charts.npz`` and show them in results.md; the files.

    What ``tradeexecutor report SWEEP_FOLDER`` does: the default sweep leaves them undrawn (two
    matplotlib charts cost about as much CPU as the 20-point grid itself). ConfigError when the sweep
    has no chart data (``--reports none``; ``--resume --reports best`` makes it).
    """
    files = SweepFiles(Path(folder))
    try:
        with np.load(files.chart_data, allow_pickle=False) as archive:
            inputs = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise ConfigError(f"{files.chart_data} is missing: this sweep has no chart data (made with --reports none, "
                          "interrupted, or made before its charts were drawn on demand); run it again with --resume "
                          "--reports best") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # cut short, or not an archive numpy wrote
        raise ConfigError(f"{files.chart_data} is unreadable ({exc}); run the sweep again with --resume "
                          "--reports best") from None
    missing = [key for needs, keys in _CHART_KEYS.items() if needs in inputs for key in keys if key not in inputs]
    if missing or not any(needs in inputs for needs in _CHART_KEYS):
        raise ConfigError(f"{files.chart_data} lacks {', '.join(missing) or 'every chart'}: not chart data this "
                          "version wrote; run the sweep again with --resume --reports best")
    charts = render_charts(inputs)
    written = []
    with deferred_directory_fsyncs():
        files.charts.mkdir(exist_ok=True)
        for name, image in charts.items():
            atomic_write_bytes(files.charts / name, image)
            written.append(files.charts / name)
    if files.results_md.exists():
        text = files.results_md.read_text(encoding="utf-8")
        links = "\n".join(f"![{_TITLES.get(name, name)}](charts/{name})" for name in charts)
        lines = [links if line.startswith(CHARTS_PENDING) else line for line in text.split("\n")]
        atomic_write_text(files.results_md, "\n".join(lines))
        written.append(files.results_md)
    return written


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


def markdown_report(result: SweepResult, *, charts: Sequence[str] = (), drawn: bool = True,
                    folder: Path | None = None, limit: int | None = None) -> str:
    """results.md: header, ranked table, walk-forward, charts (or, not ``drawn``, the command that draws them)."""
    lines = [*_header(result), "", *ranking_table(result, limit)]
    folds = walk_forward_lines(result)
    if folds:
        lines += ["", *folds]
    if charts and drawn:
        lines.append("")
        lines += [f"![{_TITLES.get(name, name)}](charts/{name})" for name in charts]
    elif charts:
        command = shlex.join(["tradeexecutor", "report", str(folder or "SWEEP_FOLDER")])
        lines += ["", f"{CHARTS_PENDING} `{command}` draws "
                      + " and ".join(f"charts/{name}" for name in charts) + " and shows them here."]
    return "\n".join(lines)
