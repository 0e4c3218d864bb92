"""Builds everything ``tradeexecutor start`` runs in replay or paper mode, runs it, and turns the ending into an exit code.

Order of start-up (nothing is written before the inputs are known to be good):

0. the CLI has installed the stop signals (:class:`StopSignals`) before anything else: a
   SIGTERM from here on is a stop request, looked at between the steps below (exit 0, nothing
   started);
1. load the strategy and the data (UserInputError, exit 2): in replay mode candle files or bundled
   data, in paper and live mode the exchange's warm-up candles, instruments and fee (daemon/paper.py;
   live mode reads the API key and secret first: a missing variable is one line, exit 2);
2. lock the state directory, remove the temporary files an interrupted write left there, load
   its state (StateCorruptError names the file, exit 3) and check it fits the strategy and data;
3. build the engine, the replay feed (restored to the saved cursor), RunState, the loop;
4. read crash.json and its tally: show the last crash, and start in safe mode after a crash loop;
5. start the notifier (when TRADEEXECUTOR_NOTIFY_*_URL channels are set; their URLs are checked
   in step 1), then the webhook, the ticker, the watchdog and the health watch; run the loop on
   its thread (the caster reads the cast target at build time; its sender thread flushes the
   run's last chart data, bounded, when the loop has ended).

The main thread then only waits: for the loop to end, for the watchdog to fire, or for a
signal. It applies the crash policy and returns the exit code: 0 when stopped or complete, 1
after a crash or a hang.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NoReturn, Protocol

import numpy as np

from tradeexecutor.atomic import remove_temp_files
from tradeexecutor.backtest.runner import new_state
from tradeexecutor.backtest.session import open_session
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.daemon.caster import Caster
from tradeexecutor.daemon.clock import Clock, SystemClock
from tradeexecutor.daemon.commands import CommandQueue, JobKind
from tradeexecutor.daemon.crash import CrashRecorder, Watchdog, crash_loop_reason
from tradeexecutor.daemon.daily import DailySummary
from tradeexecutor.daemon.health_watch import HealthWatch
from tradeexecutor.daemon.journal import CommittedAtOnce, JournalSink
from tradeexecutor.daemon.loop import ExecutorLoop, LoopOutcome
from tradeexecutor.daemon.outage import Outage
from tradeexecutor.daemon.paper import (
    PaperMarket,
    check_paper_state,
    check_state_quotes,
    cycles_description,
    open_paper_session,
    poll_period,
    prices_description,
)
from tradeexecutor.daemon.publish import Publisher
from tradeexecutor.daemon.risk_guard import RiskGuard
from tradeexecutor.daemon.scheduler import ApschedulerTicker, JobSpec, Ticker
from tradeexecutor.daemon.signals import StopSignals
from tradeexecutor.daemon.startup import check_cycle_duration, check_loaded_state, replay_start_step, resume
from tradeexecutor.data.feed import PriceFeed, ReplayFeed
from tradeexecutor.data.follow import CandleFileTail, FollowFeed
from tradeexecutor.data.market import CloseColumns, MarketData
from tradeexecutor.engine.engine import Engine, EventSink
from tradeexecutor.engine.reconcile import Reconciliation, reconcile, write_reconciliation
from tradeexecutor.engine.risk import RiskLimits
from tradeexecutor.engine.schedule import CycleSchedule, cycle_times
from tradeexecutor.errors import StateCorruptError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger, check_not_legacy
from tradeexecutor.notify import Notifier
from tradeexecutor.runstate import CrashFile, RunState, RunStatus
from tradeexecutor.settings import EXCHANGE_MODES, DaemonConfig
from tradeexecutor.state import PackedPositions, State, packed
from tradeexecutor.store.cast_target import CastTargetFile
from tradeexecutor.store.lock import StateDirLock
from tradeexecutor.timeframe import format_duration
from tradeexecutor.venue import Venue

__all__ = ["Daemon", "WebServer", "build_daemon", "replay_cycle_interval"]

logger = logging.getLogger("tradeexecutor.daemon")

#: Exit code after a crash or a watchdog hang.
CRASH_EXIT_CODE = 1


class WebServer(Protocol):
    """What the runner needs of the webhook (the CLI builds it; the daemon does not import the webhook)."""

    def start(self) -> object: ...

    def stop(self, timeout: float | None = None) -> None: ...


@dataclass
class Daemon:
    """Every object of one replay- or paper-mode executor process, wired together."""

    config: DaemonConfig
    clock: Clock
    store: Ledger
    lock: StateDirLock
    feed: PriceFeed
    engine: Engine
    runstate: RunState
    commands: CommandQueue
    ticker: Ticker
    loop: ExecutorLoop
    publisher: Publisher
    recorder: CrashRecorder
    watchdog: Watchdog
    #: Sends notifications; None when no channel is configured.
    notifier: Notifier | None = None
    #: Reports health changes to the notifier; None without one.
    health_watch: HealthWatch | None = None
    #: Casts chart data to a wallboard (when cast.json names a target).
    caster: Caster | None = None
    #: SIGTERM and SIGINT, routed to ``commands``; installed by the CLI before start-up, else by run().
    signals: StopSignals = field(default_factory=StopSignals)
    #: The cycle job's period: the replay pace, or in paper mode how often the feed looks for a closed candle.
    cycle_period: timedelta | None = None

    @property
    def stop_requested(self) -> threading.Event:
        """Set by a signal; ends serve windows early."""
        return self.signals.requested

    def job_specs(self) -> list[JobSpec]:
        """The cycle job (period: the replay pace, or paper's poll period) and the enabled trigger and revaluation
        jobs."""
        config = self.config
        period = self.cycle_period or timedelta(seconds=config.feed.replay_seconds)
        specs = [JobSpec(JobKind.cycle, period, config.cycle_offset % period)]
        if config.trigger_seconds > 0:
            specs.append(JobSpec(JobKind.triggers, timedelta(seconds=config.trigger_seconds)))
        if config.revaluation_seconds > 0:
            specs.append(JobSpec(JobKind.revaluation, timedelta(seconds=config.revaluation_seconds)))
        return specs

    def start_jobs(self) -> None:
        """Start the ticker; queue a first cycle at once when asked to trade immediately."""
        self.ticker.start(self.job_specs())
        if self.config.trade_immediately or self.config.run_single_cycle:
            self.commands.put_tick(JobKind.cycle)

    def run(self, web: WebServer | None = None) -> int:
        """Run until stopped, complete or crashed (main thread); returns the process exit code."""
        self.signals.install()
        try:
            self.signals.check("before the webhook started")
            self.publisher.start()  # the chart renderer's process imports matplotlib meanwhile
            if web is not None:
                web.start()  # a port in use fails here, before any job ran
        except BaseException:
            self.close()
            raise
        try:
            self.start_jobs()
            self.watchdog.start()
            if self.health_watch is not None:
                self.health_watch.start()
            outcome = self._run_loop_thread()
            self.ticker.shutdown()
            self.watchdog.stop()
            if self.health_watch is not None:
                self.health_watch.stop()
            if self.caster is not None:
                self.caster.close()  # the final chart data, within the cast timeout
            if outcome is None:
                return self._hard_exit()
            return self._exit_code(outcome)
        finally:
            self.signals.restore()
            if web is not None:
                web.stop()
            self._close_ledger()  # commits the ending's journal lines, which the notifier then hears
            self._close_notifier()
            self.publisher.close()
            self.lock.release()

    def _run_loop_thread(self) -> LoopOutcome | None:
        """Run the loop on its worker thread and wait; None when the watchdog fired first."""
        result: list[LoopOutcome] = []

        def body() -> None:
            try:
                result.append(self.loop.run())
            except Exception as exc:  # noqa: BLE001 - outside any job (start-up bookkeeping): still a crash
                self.recorder.record(exc, "loop")
                result.append(LoopOutcome(RunStatus.error, f"the loop crashed: {exc}"))

        thread = threading.Thread(target=body, name="executor-loop", daemon=True)
        thread.start()
        while thread.is_alive() and not self.watchdog.fired.is_set():
            thread.join(0.2)
        return result[0] if result else None

    def _exit_code(self, outcome: LoopOutcome) -> int:
        """Apply the crash policy and the complete-serve window; the exit code."""
        if outcome.status is RunStatus.complete:
            self._serve_for(self.config.complete_serve_seconds, "the run is complete")
            return 0
        if outcome.status is RunStatus.stopped:
            return 0
        if self.config.crash_policy == "serve":
            self._serve_for(self.config.crash_serve_seconds, "crashed")
        return CRASH_EXIT_CODE

    def _serve_for(self, seconds: float, why: str) -> None:
        """Keep the webhook answering for ``seconds`` (a signal ends it early); never forever."""
        if seconds > 0 and not self.stop_requested.is_set():
            logger.info("%s; the webhook keeps serving for %gs", why, seconds)
            self.stop_requested.wait(seconds)

    def _hard_exit(self) -> NoReturn:
        """The watchdog fired: the loop thread is stuck in a job, so serve if asked, then leave at once."""
        if self.config.crash_policy == "serve":
            self._serve_for(self.config.crash_serve_seconds, "a job hung")
        self._close_notifier()
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)

    def _close_ledger(self) -> None:
        """Commit the journal's last lines (the ending) and close the ledger; a failure here is logged, not raised,
        because the outcome is already decided and recorded."""
        try:
            self.store.close()
        except Exception:  # noqa: BLE001 - see the docstring
            logger.exception("the journal's last lines could not be committed to %s", self.store.path)

    def _close_notifier(self) -> None:
        """Send what the notifier still holds, within its flush deadline."""
        if self.health_watch is not None:
            self.health_watch.stop()
        if self.notifier is not None:
            self.notifier.close()

    def close(self) -> None:
        """Stop the ticker, watchdog, notifier, caster and chart renderer, put the signal handlers back, release
        the state directory."""
        self.ticker.shutdown()
        self.watchdog.stop()
        self._close_ledger()
        self._close_notifier()
        if self.caster is not None:
            self.caster.close(0.0)
        self.publisher.close()
        self.signals.restore()
        self.lock.release()


def replay_cycle_interval(due: np.ndarray, replay_seconds: float, *,
                          real_pace: timedelta | None = None) -> float | None:
    """Wall-clock seconds between strategy cycles: the median bars per cycle times the replay pace.

    A daily strategy on hourly bars replayed at 1 s a bar cycles every 24 s; alert rules compare
    how late data and cycles are with this (tradeexecutor_cycle_interval_seconds). None without cycles.
    A feed that follows growing files (``real_pace``: the strategy's cycle duration) delivers new
    bars at the pace they are written once the loaded ones are replayed, so its cycles are that far
    apart: a daily strategy's newest bar is rightly up to a day old, which must not look stale.
    """
    steps = np.flatnonzero(due)
    replayed = None
    if len(steps):
        replayed = (float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0) * replay_seconds
    if real_pace is None:
        return replayed
    return max(replayed or 0.0, real_pace.total_seconds())


def build_daemon(config: DaemonConfig, *, clock: Clock | None = None, journal: EventSink | None = None,
                 ticker_factory: Callable[[CommandQueue], Ticker] | None = None,
                 environ: Mapping[str, str] | None = None, signals: StopSignals | None = None,
                 venue: Venue | None = None) -> Daemon:
    """Load, check and wire everything for a replay or paper run; raises our errors before anything is written.

    ``journal`` defaults to the run's JSON-lines journal beside the state (plus the log), which
    also feeds the notifier; a caller giving its own journal gets no event notifications.
    ``environ`` (default ``os.environ``) holds the notification channels' URLs. ``signals``,
    installed by the caller before it did anything else, are looked at between the steps:
    StopRequested when a stop signal came during start-up. ``venue`` is where orders go when that is
    outside the process (an exchange): the ledger is reconciled with it before the first decision;
    None for the replay's simulated fills (nothing to compare). Live mode defaults it to the
    exchange's CcxtVenue and the engine sends its orders there (``Engine.live_venue``).
    """
    clock = clock or SystemClock()
    signals = signals or StopSignals()
    files = RunFiles(config.state_dir)
    paper: PaperMarket | None = None
    engine_config = config.engine
    if config.mode in EXCHANGE_MODES:
        paper = open_paper_session(config, checkpoint=signals.check, environ=environ)
        session, engine_config = paper.session, paper.engine_config(config.engine)
        if config.mode == "live" and venue is None:
            venue = paper.venue  # real orders: reconciled with and sent to the exchange
    else:
        session = open_session(config.strategy_file, config.params, config.feed.data, config.feed.start,
                               config.feed.end, checkpoint=signals.check)
    strategy, market, asset_types = session.strategy, session.market, session.asset_types
    notifier = Notifier.from_env(config.notify, os.environ if environ is None else environ,
                                 source=strategy.path.stem, monotonic=clock.monotonic)

    runstate = RunState.create(strategy.path.stem, mode=config.mode, strategy_name=strategy.name,
                               strategy_version=strategy.version, source_code=strategy.source, now=clock.now())
    runstate.update(strategy_parameters=dict(strategy.parameters), prices=prices_description(config),
                    cycle_duration=format_duration(strategy.cycle_duration),
                    declared_cycle_duration=format_duration(strategy.declared_cycle_duration)
                    if strategy.declared_cycle_duration is not None else None)
    lock = StateDirLock(config.state_dir).acquire()
    # Closed positions leave the heap as objects once far enough behind (state/packed.py): months of them.
    keep_closed = packed.daemon_keep(len(market.symbols))
    # So do valuation rows once committed: the state keeps a tail of them in memory (state/valuation.py).
    store = Ledger(files.ledger, now=clock.now, mirror=files.journal, on_commit=notifier, keep_closed=keep_closed,
                   tail_valuations=True)
    hang_journal: EventSink | None = None
    if journal is None:
        journal = JournalSink(store, clock.now)  # the ledger tells the notifier once a line is committed
        hang_journal = JournalSink(CommittedAtOnce(store), clock.now)  # the hung job never commits
    try:
        removed = remove_temp_files(files.root, files.public)  # ours alone now: left by an interrupted write
        if removed:
            logger.info("removed %d temporary file(s) an interrupted write left: %s", len(removed),
                        ", ".join(path.name for path in removed))
        check_not_legacy(config.state_dir)
        state = store.load()
        if state is None:
            state = new_state(strategy, config.engine, clock.now())
            state.portfolio.closed_positions = PackedPositions(keep=keep_closed)
            state.valuations = store.new_valuations()
        else:
            if paper is not None:
                check_cycle_duration(store.journaled("started"), strategy, str(store.path))
                check_paper_state(state, market, str(store.path))
                check_state_quotes(state, paper.specs, paper.connection.name, str(store.path))
            check_loaded_state(state, strategy, market, store.path)
        if paper is not None:
            paper.apply_instruments(state, asset_types)
        engine = Engine(strategy, market, state, config=engine_config, asset_types=asset_types, events=journal)
        engine.max_position_value = config.risk.max_position_value
        if config.mode == "live":
            engine.live_venue = venue  # the loop's write-ahead router sends every order to the exchange
            engine.not_found_after = timedelta(seconds=config.exchange.not_found_seconds)
            engine.cancels_asked_before(store.journaled("order_cancel_requested"))  # journaled once, across restarts
            engine.missing_fills.before(state, store.journaled("order_fills_missing"))  # once, across restarts too
        feed: ReplayFeed
        if paper is not None:
            feed = paper.feed(runstate, monotonic=clock.monotonic)
        else:
            start = replay_start_step(config.feed.replay_start, market, engine.indicators)
            feed = (FollowFeed(market, follow_tails(config.feed.data, strategy.instruments), start=start,
                               monotonic=clock.monotonic)
                    if config.feed.follow else ReplayFeed(market, start=start, monotonic=clock.monotonic))
        resume(feed, state)
        signals.check("the state was loaded and the indicators computed")
    except BaseException:
        lock.release()
        raise

    crash_file = CrashFile.for_state_dir(config.state_dir)
    crash_file.prepare()  # room to count a crash even if the disk fills up later
    try:
        runstate.apply_crash_history(crash_file.load())
    except StateCorruptError as error:
        logger.warning("%s; the next crash record moves it aside", error)
    safe_reason = crash_loop_reason(crash_file, config.crash_loop_count, config.crash_loop_minutes, clock.now())
    try:
        reconciliation = reconcile_at_start(store, state, venue, journal, files, clock, strategy.instruments)
    except BaseException:
        lock.release()
        raise
    runstate.update(reconciliation=reconciliation.summary())
    if config.mode == "live":  # after reconciliation, which may have found one of them (adopted): its words not kept
        engine.lost_before(store.journaled("order_lost"))  # order_lost once per order; safe mode comes back with it
    if not reconciliation.clean:
        safe_reason = f"{safe_reason}; {reconciliation.reason}" if safe_reason else reconciliation.reason
    if safe_reason:
        logger.warning("starting in safe mode: %s", safe_reason)
        runstate.update(safe_mode=True, safe_mode_reason=safe_reason)

    commands = signals.commands
    ticker = ticker_factory(commands) if ticker_factory else ApschedulerTicker(commands, clock)
    recorder = CrashRecorder(runstate, crash_file, journal, clock.now, hang_journal=hang_journal)
    watchdog = Watchdog(config.watchdog_seconds, recorder.record_hang)
    publisher = Publisher(runstate, feed, clock, chart_seconds=config.chart_seconds,
                          chart_timeout=config.chart_timeout_seconds,
                          wake=lambda: commands.put_tick(JobKind.charts),
                          next_cycle_at=lambda: ticker.next_run_time(JobKind.cycle),
                          extra={"state_dir": str(config.state_dir), "replay_start": feed.start,
                                 "notifications": notifier.describe() if notifier else []},
                          files=files, publish_seconds=config.publish_seconds,
                          metadata={"executor_id": runstate.executor_id, "name": strategy.name,
                                    "description": strategy.description, "mode": config.mode,
                                    "strategy_version": strategy.version,
                                    "parameters": dict(strategy.parameters)})
    if paper is not None:
        runstate.update(cycle_interval_seconds=strategy.cycle_duration.total_seconds())
    else:
        due = cycle_times(market.timeline_ns, strategy.cycle_duration, config.cycle_offset)
        runstate.update(cycle_interval_seconds=replay_cycle_interval(
            due, config.feed.replay_seconds, real_pace=strategy.cycle_duration if config.feed.follow else None))
    caster = build_caster(config, market, files, journal, clock, title=strategy.name,
                          source={"name": strategy.name, "executor_id": runstate.executor_id, "mode": config.mode})
    daily = DailySummary(config.notify.summary_time, runstate, journal, clock.now) if notifier else None
    loop = ExecutorLoop(engine, feed, store, runstate, commands, publisher, recorder,
                        schedule=CycleSchedule(strategy.cycle_duration, config.cycle_offset),
                        journal=journal, now=clock.now, cycle_limit=config.cycle_limit,
                        safe_mode=bool(safe_reason), watchdog=watchdog, after_job=daily,
                        crash_loop=lambda: crash_loop_reason(crash_file, config.crash_loop_count,
                                                             config.crash_loop_minutes, clock.now()),
                        caster=caster, risk=RiskGuard(RiskLimits(config.risk), engine, runstate, journal),
                        outage=Outage(runstate, clock.now, cap_seconds=config.retry_max_seconds),
                        recheck=frozenset(reconciliation.bounded_by),  # pending and unbooked orders
                        unbooked={u.client_order_id: u.filled for u in reconciliation.unbooked},
                        wall_cycle=(strategy.cycle_duration, config.cycle_offset) if paper is not None else None)
    loop.mismatched_at_start(reconciliation.mismatches)  # in safe mode for them already: a re-check adds none again
    if paper is not None:  # the cycles an earlier process missed for good (an outage, the exchange's lag) stay so
        loop.missed_before(store.journaled("cycle_missed"))
    if config.mode == "live":
        loop.lag_held_before(store.journaled("cycle_held"))  # after the missed lines: a held cycle missed since is not
    health_watch = HealthWatch(runstate, config.health, notifier, clock.now) if notifier else None
    if paper is not None:
        logger.info("%s: %s mode on %s, %s candles, %s, resuming after %s; state in %s", strategy.name,
                    config.mode, runstate.prices, paper.source.timeframe, cycles_description(strategy),
                    market.step_time(feed.cursor), config.state_dir)
    else:
        logger.info("%s: replay mode replaying %d bars (bar %d onwards, %s) at %gs per bar, resuming after bar %d; "
                    "state in %s", strategy.name, len(market), feed.start, market.step_time(feed.start).date(),
                    config.feed.replay_seconds, feed.cursor, config.state_dir)
    if notifier is not None:
        notifier.start()
    period = (poll_period(strategy.bar_frequency or strategy.cycle_duration) if paper is not None
              else timedelta(seconds=config.feed.replay_seconds))
    return Daemon(config=config, clock=clock, store=store, lock=lock, feed=feed, engine=engine, runstate=runstate,
                  commands=commands, ticker=ticker, loop=loop, publisher=publisher, recorder=recorder,
                  watchdog=watchdog, notifier=notifier, health_watch=health_watch, caster=caster, signals=signals,
                  cycle_period=period)


def reconcile_at_start(store: Ledger, state: State, venue: Venue | None, journal: EventSink, files: RunFiles,
                       clock: Clock, symbols: Sequence[str]) -> Reconciliation:
    """Reconcile the ledger with the venue before the first decision (engine/reconcile.py), as a ledger job of its
    own: fills the venue reports are applied and committed with the journal lines, the result is written to
    reconciliation.json. A mismatch changes nothing; the caller starts in safe mode with its reason. Without a
    venue outside the process (the replay) the clean record is only written (the journal stays as it was)."""
    if venue is None:  # the replay's fills are simulated in-process: nothing to compare, nothing to journal
        result = reconcile(state, None, commit=lambda: None, now=clock.now)
        write_reconciliation(result, files.reconciliation)
        logger.debug("reconciliation: %s", "; ".join(result.notes))
        return result
    with store.begin_job("reconcile", clock.now()) as job:
        result = reconcile(state, venue, commit=lambda: job.commit(state), now=clock.now, symbols=symbols,
                           journal=journal, cancels_asked=store.journaled("order_cancel_requested"))
    write_reconciliation(result, files.reconciliation)
    if result.clean:
        logger.info("reconciled with %s: clean (%d order(s) asked about)", result.venue, len(result.orders))
    else:
        logger.warning("reconciled with %s: %s", result.venue, result.reason)
    return result


def follow_tails(data: Sequence[str], symbols: Sequence[str]) -> list[CandleFileTail]:
    """The followed candle files of ``--follow``: every --data source, each a .csv file."""
    single = symbols[0] if len(symbols) == 1 else None
    return [CandleFileTail(Path(source), symbol=single) for source in data]


def build_caster(config: DaemonConfig, market: MarketData, files: RunFiles, journal: EventSink, clock: Clock, *,
                 title: str, source: dict[str, object]) -> Caster:
    """The caster of one executor: its chart feed over the market's closes, its cast.json read now."""
    caster = Caster(config.cast, CastTargetFile(files.cast), journal, ChartFeed(CloseColumns(market)), title=title,
                    source=source,
                    last_bars=lambda step: {symbol: int(market.last_closed[symbol][step]) for symbol in market.symbols},
                    monotonic=clock.monotonic, now=clock.now)
    caster.load()
    return caster
