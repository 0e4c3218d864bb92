"""A sweep's full runs: built out of sight, made durable in one pass, then put in place and registered together.

A full run of a sweep point is the run ``tradeexecutor runs create`` + ``start`` makes — pinned
spec and strategy, metadata and timeline, journal, the backtest's state (SQLite ledger), orders,
metrics and reports, read by ``runs show`` and ``report`` like any other — but it is built in a
hidden ``.creating-RUN`` folder (:meth:`Runs.stage`) with no file fsynced as it is written
(:func:`tradeexecutor.atomic.deferred_fsyncs`). When a batch of runs is finished, every file and
folder of the batch is fsynced in one pass, the folders are renamed into place and their
registry rows (already ``complete``, or ``error``) inserted in one transaction
(:meth:`Runs.commit_staged`). So a crash or Ctrl+C at any moment leaves no half run: a run is
listed complete with all its files, or not at all (a ``kill -9`` may leave a hidden folder, which the next
sweep removes: :func:`~tradeexecutor.runs.run.remove_abandoned_staging`). What this
saves, per run, against a run created started and recorded complete in the registry: about 30
fsyncs (each file and the journal on its own, the registry's four commits) and three registry
transactions, which on a busy disk were most of a default sweep's time (docs/benchmarks.md).

A run's part of that pass starts as soon as the run is built (:func:`~tradeexecutor.atomic.sync_finished`), in the
background while the next one is built; the pass still ends before any run is put in place.
The ledger is written as one new file (:meth:`~tradeexecutor.ledger.Ledger.write_new`) and fsynced in that
same pass. A full run skips the indicators' lookahead check its point passed in this sweep, but is made again
with it when it does not come out as its point's row (:meth:`SweepData.lookahead_checked`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tradeexecutor.atomic import deferred_fsyncs, sync_finished
from tradeexecutor.backtest.session import Session
from tradeexecutor.config import EngineConfig
from tradeexecutor.runs.registry import RunsError
from tradeexecutor.runs.run import Runs, StagedRun, iso_time, read_metadata, record_in_folder
from tradeexecutor.runs.spec import RunSpec
from tradeexecutor.runs.sweep_eval import SweepData, checked_again, frequency_key
from tradeexecutor.state import State
from tradeexecutor.store.journal import Journal
from tradeexecutor.strategy.failure import strategy_failure
from tradeexecutor.strategy.loader import check_universe

__all__ = ["build_run", "build_runs", "reused_session"]


def build_runs(runs: Runs, jobs: list[tuple[Path, str | None, tuple[str, str], dict[str, Any]]], *,
               data: SweepData | None = None,
               on_state: Callable[[int, State], None] | None = None) -> list[tuple[StagedRun | None, str | None]]:
    """Build each (spec file, ref, then, metadata) as a staged run, in one durability pass; (run or None, error) each.

    ``data``: the sweep's data, already in this process — each run's backtest then reads the market the
    sweep loaded (and its benchmark prices) instead of loading it again, when it is the market a fresh
    session of the run's pinned spec would load (:func:`reused_session`).
    ``on_state``: called with a job's position and its backtest's final state, for each run that completes (the
    sweep's walk-forward curve is read from it instead of being backtested again).

    The staged folders are complete and fsynced when this returns; :meth:`Runs.commit_staged` puts
    them in place. On any BaseException (Ctrl+C) the folders built so far are removed, then it is raised.
    """
    built: list[tuple[StagedRun | None, str | None]] = []
    try:
        with deferred_fsyncs():
            for position, (spec_file, ref, then, metadata) in enumerate(jobs):
                keep = None if on_state is None else (lambda state, at=position: on_state(at, state))
                built.append(build_run(runs, spec_file, ref=ref, then=then, metadata=metadata, data=data,
                                       on_state=keep))
                if built[-1][0] is not None:  # finished: its fsyncs wait on the disk while the next run is built
                    sync_finished(built[-1][0].paths.root)
    except BaseException:
        for staged, _ in built:
            if staged is not None:
                shutil.rmtree(staged.paths.root, ignore_errors=True)
        raise
    return built


def build_run(runs: Runs, spec_file: Path, *, ref: str | None, then: tuple[str, str],
              metadata: dict[str, Any], data: SweepData | None = None,
              on_state: Callable[[State], None] | None = None) -> tuple[StagedRun | None, str | None]:
    """One staged run, backtested and recorded ``complete`` (or ``error``) in its hidden folder, with its reports.

    (None, error) when the run could not even be staged (a spec the loader refuses, a taken ref).
    Call inside :func:`deferred_fsyncs` (see :func:`build_runs`), or the files are fsynced one by one.
    """
    try:
        staged = runs.stage(spec_file, ref=ref, then=then, started_by=os.getpid(), **metadata)
    except Exception as exc:  # noqa: BLE001 - one point's failure is that point's note
        return None, " ".join(str(exc).split()) or type(exc).__name__
    try:
        return _run(runs, staged, data, on_state)
    except BaseException:
        shutil.rmtree(staged.paths.root, ignore_errors=True)
        raise


def reused_session(spec: RunSpec, data: SweepData | None) -> tuple[Session | None, dict[str, Any] | None]:
    """The run's session on the sweep's market and its benchmark prices, or (None, None): open and load them as usual.

    Reused only when it is what :func:`~tradeexecutor.backtest.session.open_session` and the reports
    would load: the same data files and period, the strategy's bar frequency and exactly its symbols;
    the strategy (the run's pinned copy) is checked against the data as a fresh session checks it.
    Prices only when the sweep holds the data's own frequency (what the reports load) with those symbols.
    """
    if data is None or spec.environment.to_dict() != data.spec.environment.to_dict():
        return None, None
    strategy = spec.load_strategy()
    key = frequency_key(strategy.bar_frequency)
    market, available = data.markets.get(key), data.available.get(key)
    if market is None or available is None or set(market.symbols) != set(strategy.instruments):
        return None, None
    check_universe(strategy, available)
    native = data.markets.get("")
    prices = data.prices("") if native is not None and set(native.symbols) == set(strategy.instruments) else None
    return data.session(strategy), prices


def _run(runs: Runs, staged: StagedRun, data: SweepData | None,
         on_state: Callable[[State], None] | None = None) -> tuple[StagedRun, str | None]:
    """As runner._backtest_started: the backtest, then complete with summary and fingerprints, then the reports."""
    from tradeexecutor.runs.artifacts import write_artifacts
    from tradeexecutor.runs.executor import execute_backtest

    paths, run_id = staged.paths, staged.record.id
    try:
        # The pinned spec, running the pinned strategy.py: as staging made it, not parsed back from its file.
        spec = staged.spec
        if spec.mode != "backtest":
            raise RunsError(f"run {staged.record.label} is a {spec.mode} run, not a backtest")
        spec.daemon_config(paths.state)  # refused settings stop here, as in start_run
        session, prices = reused_session(spec, data)
        engine = spec.engine_config()
        retry = None
        if session is not None and data is not None:
            sweep, checked = data, engine
            expected = data.lookahead_checked(session.strategy, spec.strategy)
            if expected is not None:  # its point passed the check in this sweep: not made again, if the same comes out
                engine = replace(engine, check_indicator_lookahead=False)

                def retry(state: State) -> tuple[Session, EngineConfig] | None:
                    if not checked_again(state, expected):
                        return None
                    return sweep.session(spec.load_strategy()), checked  # loaded afresh, as `runs start` loads it
        outcome = execute_backtest(spec, paths, run_id, session=session, engine=engine, retry=retry)
    except Exception as exc:  # noqa: BLE001 - recorded as the run's error, like a start's
        failure = strategy_failure(exc)
        message = failure.summary if failure else (" ".join(str(exc).split()) or type(exc).__name__)
        meta = record_in_folder(paths, run_id, "error", at=iso_time(runs.clock()), status="error", level="error",
                                pid=None, detail=message)
        return _ended(staged, meta), f"run {run_id} ended error: {message}"
    if on_state is not None and outcome.state is not None:
        on_state(outcome.state)
    fingerprints = {**read_metadata(paths, run_id).get("fingerprints", {}), "data": outcome.data}
    meta = record_in_folder(paths, run_id, "complete", at=iso_time(runs.clock()), status="complete", pid=None,
                            metadata={"summary": outcome.summary, "fingerprints": fingerprints,
                                      "backtest": {"bars": outcome.bars, "cycles": outcome.cycles,
                                                   "seconds": round(outcome.seconds, 3)}})
    try:  # charts on demand (`tradeexecutor report RUN`); the state saved a moment ago, not read back
        # The backtest's benchmark: its summary stands. Defensive: whenever a full run has prices they are the
        # backtest's (only a strategy without bar_frequency has a native market, and it has no prices here).
        same = prices is not None and outcome.benchmark is prices
        write_artifacts(paths.root, charts=False, orders=False, state=outcome.state, prices=prices,
                        summary=outcome.computed if same else None)
    except Exception as exc:  # noqa: BLE001 - the run's result stands; its reports are secondary
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        Journal(paths.journal).append("artifacts_failed", {"run_id": run_id, "error": message}, level="error")
        return _ended(staged, meta), f"the reports of run {run_id} could not be written: {message}"
    return _ended(staged, meta), None


def _ended(staged: StagedRun, meta: dict[str, Any]) -> StagedRun:
    """The staged run with the registry row its metadata now describes."""
    return replace(staged, record=replace(staged.record, status=meta["status"], updated_at=meta["stopped_at"],
                                          pid=None))
