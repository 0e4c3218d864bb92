"""``start --mode backtest``: run the whole history at once with the daemon's strategy, config and state directory.

The same RunState fields a replay run fills (status complete, summary, charts) are filled from
the backtest's final state, the state is saved to the state directory as one snapshot, and the
webhook can keep serving the result for ``--complete-serve-seconds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tradeexecutor.atomic import remove_temp_files
from tradeexecutor.backtest.session import Session, open_session, run_session
from tradeexecutor.daemon.clock import Clock, SystemClock
from tradeexecutor.daemon.journal import JournalSink
from tradeexecutor.daemon.runner import WebServer
from tradeexecutor.daemon.signals import StopSignals
from tradeexecutor.engine.engine import EventSink
from tradeexecutor.errors import StateError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger, check_not_legacy
from tradeexecutor.runstate import RunState, RunStatus, image_key
from tradeexecutor.runstate.figures import FigureCounter
from tradeexecutor.settings import DaemonConfig
from tradeexecutor.stats import write_trades_csv
from tradeexecutor.stats.formatting import key_figures
from tradeexecutor.store.journal import Journal
from tradeexecutor.store.lock import StateDirLock
from tradeexecutor.store.publish import publish
from tradeexecutor.visual import render_all

__all__ = ["BacktestRun", "prepare_backtest"]

logger = logging.getLogger("tradeexecutor.daemon")


@dataclass
class BacktestRun:
    """A validated backtest-mode run, ready to execute."""

    config: DaemonConfig
    #: The strategy and its market, loaded and checked.
    session: Session
    runstate: RunState
    journal: EventSink
    clock: Clock
    #: SIGTERM and SIGINT: installed by the CLI before start-up, else by run().
    signals: StopSignals = field(default_factory=StopSignals)

    def run(self, web: WebServer | None = None) -> int:
        """Backtest, publish, save, serve for --complete-serve-seconds; returns 0."""
        self.signals.install()
        try:
            self.signals.check("before the webhook started")
            if web is not None:
                web.start()
        except BaseException:
            self.signals.restore()
            raise
        lock = StateDirLock(self.config.state_dir).acquire()
        try:
            files = RunFiles(self.config.state_dir)
            remove_temp_files(files.root, files.public)  # ours alone now: left by an interrupted write
            self._execute()
            seconds = self.config.complete_serve_seconds
            if seconds > 0 and not self.signals.requested.is_set():
                logger.info("backtest complete; the webhook keeps serving for %gs", seconds)
                self.signals.requested.wait(seconds)
            return 0
        finally:
            lock.release()
            self.signals.restore()
            if web is not None:
                web.stop()

    def _execute(self) -> None:
        config, strategy = self.config, self.session.strategy
        check_not_legacy(config.state_dir)
        store = Ledger(RunFiles(config.state_dir).ledger)
        existing = store.load()  # an unreadable state stops here, untouched
        if existing is not None and existing.replay_cursor >= 0:
            raise StateError(f"{store.path} holds the state of a replay or paper executor; a backtest will not replace it "
                             "(use another --state-dir)")
        market = self.session.market
        files = RunFiles(config.state_dir)
        journal = JournalSink(Journal(files.journal), self.clock.now)
        self.runstate.update(status=RunStatus.running, executor_running=True)
        journal("started", mode="backtest", bars=len(market))
        # Orders are not journaled one by one here: an fsynced line per fill would dominate a long backtest;
        # they are all in orders.csv and the state.
        outcome = run_session(self.session, config.engine, events=self.journal, now=self.clock.now())
        result, summary = outcome.backtest, outcome.summary.to_dict()
        store.save(result.state)  # the backtest kept its state in memory: one transaction at the end
        store.close()
        self.runstate.update(summary_statistics=summary, cycles=result.cycles,
                             completed_cycle=result.state.last_completed_cycle,
                             extra={"state_dir": str(config.state_dir), "bars": result.bars,
                                    "seconds": round(result.seconds, 3)})
        if config.chart_seconds > 0:
            images = render_all(result.state, dict(self.session.close_prices()))
            self.runstate.set_images({image_key(*key): data for key, data in images.items()}, self.clock.now())
        self.runstate.update(status=RunStatus.complete, executor_running=False,
                             portfolio=FigureCounter().figures(result.state, now=self.clock.now()))
        publish(result.state, files, orders_csv_writer=write_trades_csv, now=self.clock.now(), metadata={
            "executor_id": self.runstate.executor_id, "name": strategy.name, "description": strategy.description,
            "mode": "backtest", "strategy_version": strategy.version, "status": "complete",
            "started_at": self.runstate.started_at, "cycles": result.cycles,
            "key_figures": key_figures(summary),
        })
        journal("complete", cycles=result.cycles, bars=result.bars, seconds=round(result.seconds, 3))
        logger.info("%s: backtest of %d bars, %d cycles in %.2fs; state saved to %s", strategy.name, result.bars,
                    result.cycles, result.seconds, store.path)


def prepare_backtest(config: DaemonConfig, *, clock: Clock | None = None, journal: EventSink | None = None,
                     signals: StopSignals | None = None) -> BacktestRun:
    """Load and check the strategy and the data before anything is written (StopRequested after a signal)."""
    clock = clock or SystemClock()
    signals = signals or StopSignals()
    session = open_session(config.strategy_file, config.params, config.feed.data, config.feed.start, config.feed.end,
                           checkpoint=signals.check)
    strategy = session.strategy
    runstate = RunState.create(strategy.path.stem, mode="backtest", strategy_name=strategy.name,
                               strategy_version=strategy.version, source_code=strategy.source, now=clock.now())
    journal = journal or JournalSink(None, clock.now)  # engine events to the log only (see JournalSink)
    return BacktestRun(config=config, session=session, runstate=runstate, journal=journal, clock=clock,
                       signals=signals)
