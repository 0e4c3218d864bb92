"""Execute a backtest run in this process: its pinned strategy over its data, with state, orders and journal in the run folder.

Nothing is written before the strategy and the data have loaded and checked out. The state is
written to ``state/ledger.sqlite`` once, at the end (under the state directory's lock; built in memory and
written as one file, :meth:`~tradeexecutor.ledger.Ledger.write_new`), every order goes to
``orders.csv``, and the engine's events (orders planned, filled, rejected, triggers) are appended
to the run's ``journal.jsonl`` in one fsynced write at the end, so a long backtest does not pay an
fsync per event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tradeexecutor.backtest.session import Session, open_session, run_session
from tradeexecutor.config import EngineConfig
from tradeexecutor.layout import RunFiles, RunPaths
from tradeexecutor.ledger import Ledger, check_not_legacy
from tradeexecutor.runs.registry import RunsError
from tradeexecutor.runs.run import data_fingerprints
from tradeexecutor.runs.spec import RunSpec
from tradeexecutor.state import State
from tradeexecutor.stats import Summary, write_trades_csv
from tradeexecutor.store.journal import Journal, encode_entry
from tradeexecutor.store.lock import StateDirLock

__all__ = ["BacktestOutcome", "EventBuffer", "execute_backtest"]

#: Journal level of each engine event (others: info).
EVENT_LEVELS = {"order_planned": "debug", "intent_ignored": "debug", "order_rejected": "warning"}


@dataclass(frozen=True)
class BacktestOutcome:
    """What a finished backtest run produced."""

    #: compute_summary(...).to_dict() with the close prices as the buy-and-hold benchmark.
    summary: dict[str, Any]
    bars: int
    cycles: int
    seconds: float
    #: sha256 of every data file read, by path.
    data: dict[str, str]
    #: The final state, as saved to the ledger: the run's reports are made from it without reading it back.
    state: State | None = field(default=None, repr=False, compare=False)
    #: ``summary`` as computed, and the benchmark prices it was computed with (the session's ``prices``, the very
    #: mapping): reports of the same state with those same prices are this summary, not computed again.
    computed: Summary | None = field(default=None, repr=False, compare=False)
    benchmark: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass
class EventBuffer:
    """An engine event sink that keeps events in memory until :meth:`flush` appends them to a journal."""

    run_id: str
    entries: list[bytes] = field(default_factory=list)

    def __call__(self, event: str, /, **fields: Any) -> None:
        self.entries.append(encode_entry(event, {"run_id": self.run_id, **fields},
                                         level=EVENT_LEVELS.get(event, "info")))

    def flush(self, path: Any) -> None:
        """Append every buffered entry in one fsynced write."""
        if self.entries:
            Journal(path).append_encoded(b"".join(self.entries))
            self.entries.clear()


def execute_backtest(spec: RunSpec, paths: RunPaths, run_id: str, *, now: datetime | None = None,
                     session: Session | None = None, engine: EngineConfig | None = None,
                     retry: Callable[[State], tuple[Session, EngineConfig] | None] | None = None) -> BacktestOutcome:
    """Backtest ``spec`` into ``paths``: state/ (one snapshot), orders.csv and the journal's order events.

    ``session``: the spec's strategy on its market, already opened and checked by the caller (a
    sweep's full run reuses the market the sweep loaded); by default opened here from the spec.
    ``engine``: the spec's engine config as the caller adjusted it (a sweep's full run leaves out the
    lookahead check its point already passed: runs.sweep_runs); by default the spec's.
    ``retry``: called with the backtest's final state before anything is written; a (session, engine) it
    returns is backtested instead (that full run did not come out as its point: made again with the check).
    """
    environment = spec.environment
    if session is None:
        session = open_session(spec.strategy_file, spec.strategy, environment.data, environment.start,
                               environment.end)
    data = data_fingerprints(spec, session.strategy.instruments)
    lock = StateDirLock(paths.state).acquire()
    try:
        check_not_legacy(paths.state)
        store = Ledger(RunFiles(paths.state).ledger)
        if store.load() is not None:  # an unreadable state stops here, untouched
            raise RunsError(f"{paths.state} already holds a state; reset the run to backtest it again")
        events = EventBuffer(run_id)
        outcome = run_session(session, engine or spec.engine_config(), events=events, now=now)
        again = retry(outcome.backtest.state) if retry is not None else None
        if again is not None:
            events = EventBuffer(run_id)
            outcome = run_session(again[0], again[1], events=events, now=now)
        result, summary = outcome.backtest, outcome.summary.to_dict()
        store.write_new(result.state)  # the whole state of the run, as one new file
        write_trades_csv(result.state, paths.orders_csv)
        events.flush(paths.journal)
    finally:
        lock.release()
    return BacktestOutcome(summary=summary, bars=result.bars, cycles=result.cycles, seconds=result.seconds, data=data,
                           state=result.state, computed=outcome.summary, benchmark=outcome.session.prices)
