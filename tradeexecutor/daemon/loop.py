"""ExecutorLoop: the one worker thread that takes commands off the queue and runs the jobs.

Every state change happens here. The scheduler (or a test) only queues ticks; operators and
signals only queue commands; the loop takes one command at a time, so the cycle, trigger-check
and revaluation jobs never overlap. Each job is a short recipe of named steps run inside one
ledger job (``Ledger.begin_job``): every ``Job.commit`` writes the state's changes together with
the journal lines the job wrote since its last commit, in one transaction, before RunState is
told; lines that changed no state (``paused``, ``started``) are committed when the job ends.
Notifications follow commits only (the ledger's ``on_commit``). A job that crashes is left
(``Job.__exit__``) with its uncommitted lines dropped, as the changes they describe were not
committed either; the crash's own ``crashed`` line is then committed in a job of its own
(``crash``). Every command, the start-up lines and the end of a replay are such jobs: the loop
has no other way to write the ledger.

Two commits per bar. The cycle job first manages positions on the new bar — pending fills,
stop-loss, take-profit and trailing stop, marks, the valuation, the risk limits — and saves that
together with the bar's close time (``last_bar_at``); only then, when a cycle is due, does the
strategy decide, and the decision's orders are saved with ``last_completed_cycle``. So a strategy that raises,
hangs or is killed can never undo or hold up what happened to its positions.

Cycles come from the clock, not from a precomputed array: ``CycleSchedule`` tells, from the
strategy's cycle duration and offset and what the feed knows now, whether the cycle whose
boundary follows a bar has ended. A bar closing exactly on the boundary ends it at once; one
closing before it waits until a later bar (or the feed's clock) passes the boundary, and is
then decided before the later bar is managed — the order a backtest over the same candles uses.

Write-ahead. The loop sends orders through the venue write-ahead (``Engine.start_write_ahead``,
engine/router.py): an order is committed ``submitting`` in the running job — the job's commit
hook — before the venue sees it, and the job commits again with the outcome, which comes back as
execution events drained on this thread (after each submit, and at the start of every job). The
start-up job resolves every order a crash left ``submitting`` by its client order id, journaled
``order_resolved``, before anything is decided (``Engine.resolve_orders``). In live mode every job
starts the same way for an order whose reply never came (``unknown``): the exchange is asked about
it by client order id and it is booked, or sent under the same id when it never arrived
(``_settle``, ``Engine.settle_unknown``); while the exchange cannot be asked, the job fails
temporarily and is retried with the outage's backoff. While such an order only waits out the
exchange's "does not exist" lag (``ExchangeLagError``) only the cycle job fails so, and only after
it has managed and saved its bar (fills, triggers, marks: the trigger checks see only the bars the
cycle delivers), before anything is decided; the trigger checks, the revaluation with its risk check
and an operator's job go on, that order's position kept out of every exit. A cycle due at the newest bar
managed meanwhile is *held* (journaled ``cycle_held``): when the lag clears before a newer bar is delivered
or the clock passes the next boundary, it is decided then, late, on its own bar. Once a newer bar or
boundary has come first it is stale: journaled ``cycle_missed`` with the reason ``LAG_MISSED`` and never
decided — as are the cycles of the older bars managed meanwhile and the boundaries the clock passed meanwhile
but the newest (whose bar may still be held). A process restarted during the lag reads those lines back from
the journal at start-up (``missed_before``, ``lag_held_before``): a missed cycle stays undecided, a held
one is decided if it is still current, else journaled missed.

Idempotence. A cycle is identified by its timestamp; a cycle at or before
``last_completed_cycle`` never runs again. Progress is the close time of the last bar processed
(``last_bar_at``): after a restart (even after kill -9) the feed continues after that bar, and
a cycle due at it that never completed (the process died between the two commits) is decided
at the first cycle job. A job that crashes
is *not* saved past its last commit: half-done changes die with the process.

A failing strategy. An exception from the strategy's own code (``Engine.ask_strategy``) is a
crash like any other — recorded in RunState, crash.json and the journal — but the bar it came
on stays committed. When that crash makes a crash loop (``crash_loop``: ``--crash-loop-count``
crashes within ``--crash-loop-minutes``), the loop does not end: it enters *safe mode*, where
the strategy is no longer called and the loop goes on filling, checking triggers, marking and
revaluing, the webhook reporting the reason (``/healthz`` 503). Otherwise the crash ends the
loop and the runner applies the crash policy; the restarted executor decides that cycle again.

A temporary failure. A TemporaryError escaping a job (the network, an exchange down or in
maintenance, a rate limit) is no bug: the job's uncommitted work is dropped as after a crash, but
nothing is recorded as one. A scheduled job is tried again after a capped backoff
(``daemon/outage.py``: the loop waits for it itself), its ticks arriving meanwhile are deferred, and
RunState shows the outage until the job runs through (``outage_ended``); an operator's job that fails
so is answered as failed. In paper and live mode the cycle job's deferred wakes look at the wall clock's
cycle boundaries: the newest one passed during the outage stays open — if the job runs through before
the next boundary, its cycle is decided then, late, on its own bar, and never journaled missed — and
each older one (the cycle being retried when the outage began among them) is journaled ``cycle_missed``
once (``OUTAGE_MISSED``) and never decided, not even when the catch-up delivers its bar, nor by a
restart (``missed_before``). The same rule as for the exchange's lag; a replay's deferred tick is a bar
not replayed, one ``cycle_missed`` each.

Operator jobs. ``close``, ``close_all`` and ``reload_params`` (from the webhook's action sink) run
as jobs of their own between the scheduled ones: the closes go through the engine's exit path
(``Engine.close_now``, the one stop-losses take), new parameters are checked as at start-up and
swapped in whole (``Engine.use_strategy``). Live, a position with an order in flight at the exchange
(``Engine.in_flight``: one of unknown outcome, an exit already sent, or an order the exchange says ended while its
trades are not all listed yet, ``Engine.exit_waits``) is never exited a second time: a close of it is refused, and
close-all closes the others and names it in its answer (``not_closed``, with why). Each journals ``operator_action`` or
``operator_refused`` (who, what, result) and, when it changed something, saves it with those lines
in one transaction; only then is the requester answered through the command's reply.

Ending. ``stop`` (SIGTERM, SIGINT, ``--max-cycles``) finishes the running job, saves, sets
status ``stopped``. The end of a replay sets ``complete``. An exception escaping a job sets
``error`` with the crash record. In each case ``run`` returns a :class:`LoopOutcome` and the
runner applies the exit policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from tradeexecutor.control import ActionRequest, ActionResult, Outcome
from tradeexecutor.daemon.caster import Caster
from tradeexecutor.daemon.commands import Command, CommandKind, CommandQueue, JobKind
from tradeexecutor.daemon.crash import CrashRecorder, Watchdog
from tradeexecutor.daemon.outage import Outage
from tradeexecutor.daemon.publish import Publisher
from tradeexecutor.daemon.risk_guard import RiskGuard
from tradeexecutor.data.feed import PriceFeed
from tradeexecutor.engine.engine import CycleReport, Engine, EventSink
from tradeexecutor.engine.reconcile import Mismatch, journal_reconciliation, recheck_balances, unconfirmed_orders
from tradeexecutor.engine.schedule import CycleSchedule
from tradeexecutor.errors import TemporaryError, UserInputError
from tradeexecutor.ledger import Job, Ledger
from tradeexecutor.runstate import RunState, RunStatus
from tradeexecutor.state import Order, Position
from tradeexecutor.strategy.loader import with_parameters
from tradeexecutor.timeframe import floor_boundary, format_duration, next_boundary
from tradeexecutor.venue.ccxt_errors import scrub

__all__ = ["ExecutorLoop", "LoopOutcome"]

#: Journal event names of operator commands.
_COMMAND_EVENTS = {
    CommandKind.stop: "stop_requested",
    CommandKind.pause: "paused",
    CommandKind.resume: "resumed",
}

#: Operator commands that are jobs of their own: they journal their outcome and answer through the command's reply.
_OPERATOR_JOBS = (CommandKind.close, CommandKind.close_all, CommandKind.reload_params)

logger = logging.getLogger("tradeexecutor.daemon")

#: The ``reason`` of a ``cycle_missed`` line for a cycle the exchange's lag left undecided for good (a bar managed
#: meanwhile, or a boundary passed meanwhile); read back at start-up (``ExecutorLoop.missed_before``), so a
#: restart never decides a cycle an earlier process journaled missed.
LAG_MISSED = "an order waits out the exchange's lag: the bar was managed, its cycle not decided"
#: The ``reason`` of a ``cycle_missed`` line for a cycle boundary an ordinary outage (the exchange down, 5xx,
#: maintenance: a plain TemporaryError) passed, once a newer boundary had passed too: the newest stays open while the
#: outage lasts, decided late on its own bar if the outage ends before the next one. Read back at start-up like
#: ``LAG_MISSED`` (``ExecutorLoop.missed_before``): a cycle journaled missed is never decided.
OUTAGE_MISSED = ("the cycle job failed temporarily (an outage) and a newer cycle boundary passed before it ran again: "
                 "not decided")
#: The ``reason`` of a ``cycle_held`` line: the cycle of a bar managed during the exchange's lag waits for it to
#: clear (``ExecutorLoop._lag_cycle``); read back at start-up (``ExecutorLoop.lag_held_before``).
LAG_HELD = ("an order waits out the exchange's lag: the bar was managed; its cycle is decided once the lag clears, "
            "unless a newer bar or cycle boundary comes first (then it is missed)")


@dataclass(frozen=True)
class LoopOutcome:
    """How the loop ended: ``stopped``, ``complete`` or ``error``, and why."""

    status: RunStatus
    reason: str = ""


def _crash_outcome(exc: BaseException, job: str) -> LoopOutcome:
    return LoopOutcome(RunStatus.error, f"{job} job crashed: {type(exc).__name__}: {exc}")


class ExecutorLoop:
    """Runs jobs from a CommandQueue against one engine, feed and store (see the module docstring)."""

    def __init__(self, engine: Engine, feed: PriceFeed, store: Ledger, runstate: RunState,
                 commands: CommandQueue, publisher: Publisher, recorder: CrashRecorder, *,
                 schedule: CycleSchedule, journal: EventSink, now: Callable[[], datetime],
                 cycle_limit: int = 0, safe_mode: bool = False, watchdog: Watchdog | None = None,
                 crash_loop: Callable[[], str | None] = lambda: None,
                 after_job: Callable[[], None] | None = None, caster: Caster | None = None,
                 risk: RiskGuard | None = None, outage: Outage | None = None,
                 recheck: frozenset[str] = frozenset(), unbooked: Mapping[str, float] | None = None,
                 wall_cycle: tuple[timedelta, timedelta] | None = None) -> None:
        self.engine = engine
        self.state = engine.state
        self.feed = feed
        self.store = store
        self.runstate = runstate
        self.commands = commands
        self.publisher = publisher
        self.recorder = recorder
        self.journal = journal
        self.watchdog = watchdog
        #: Sends chart data to a wallboard after jobs, when a cast target is set (None: never).
        self.caster = caster
        self._now = now
        #: Runs after every scheduled job that did not end the loop (the daily summary check).
        self.after_job = after_job
        #: When cycles end, from the strategy's cycle duration and offset, one step at a time (the data may grow).
        self.schedule = schedule
        #: Stop after this many strategy cycles (0: never).
        self.cycle_limit = cycle_limit
        #: Strategy cycles this process completed.
        self.cycles = 0
        #: Set when the loop has ended.
        self.outcome: LoopOutcome | None = None
        #: Safe mode: the strategy is not called; positions are still managed.
        self.safe_mode = safe_mode
        #: How many of the engine's lost orders (``Engine.lost``) safe mode already names: a new one names them again.
        self._lost_seen = 0
        #: Safe mode's reason when the first lost order came (kept in front of the lost orders' words).
        self._safe_reason_before_lost: str | None = None
        self.operator_paused = False
        #: The risk limits, checked after every job that values the portfolio (None: not checked).
        self.risk = risk
        #: Why the executor must enter safe mode now (a crash loop), or None; asked after a strategy crash.
        self._crash_loop = crash_loop
        #: The last bar processed (managed and saved), -1 before the first: after a restart, the restored cursor.
        self._processed = feed.cursor if (self.state.last_bar_at is not None or self.state.replay_cursor >= 0) else -1
        self._resumed_at = self._processed  # the last bar a previous process processed (-1: none)
        self._checked_step = feed.cursor  # newest bar whose triggers have been checked
        #: The market's dropped steps when the steps above were last rebased (a live feed keeps a window).
        self._dropped = feed.market.dropped
        #: A bar the feed delivered to a cycle job that failed temporarily before managing it (None: none): the
        #: retried job takes it instead of the next one.
        self._delivered: int | None = None
        self._jobs: dict[JobKind, Callable[[], None]] = {
            JobKind.cycle: self.run_cycle,
            JobKind.triggers: self.run_trigger_check,
            JobKind.revaluation: self.run_revaluation,
            JobKind.charts: self.run_charts,
        }
        self._begun = False
        #: The ledger job running now (None between jobs): what ``_commit`` commits through.
        self._scope: Job | None = None
        #: Seconds between when the scheduler meant the running job to start and when it started.
        self._job_lag: float | None = None
        #: The temporary failure being retried with backoff, if any (never a crash: daemon/outage.py).
        self.outage = outage if outage is not None else Outage(runstate, now)
        #: The last job that failed temporarily (for an operator's answer), cleared as each job starts.
        self._temporary: str | None = None
        #: Live mode: the client order ids start-up reconciliation left pending (their balances compared loosely);
        #: once all have settled the balances are compared again (``_recheck_balances``) — then the ids of the orders
        #: in flight that bounded that comparison, until one runs with none. Empty: done, strictly.
        self._recheck = recheck
        #: Of those, the orders whose fills the exchange had not all listed (``Unbooked``), with what it said they
        #: filled: settled once the ledger has booked that much (or they ended), not merely once confirmed.
        self._unbooked: dict[str, float] = dict(unbooked or {})
        #: The mismatches (symbol or asset, client order id) a re-check already entered safe mode for: a bounded run
        #: and the strict one after it that find the same difference enter (and journal ``safe_mode``) once.
        self._recheck_found: set[tuple[str, str | None]] = set()
        #: Paper and live: the cycle's duration and offset on the wall clock. Their cycle job wakes every quarter candle,
        #: at least every 15 s (``poll_period``), so a deferred wake misses a cycle only when a newer boundary has passed
        #: during the outage (``_passed_boundaries``); None (the replay): every deferred tick is a bar not replayed, one
        #: missed cycle each.
        self.wall_cycle = wall_cycle
        #: The newest boundary looked at by ``_passed_boundaries`` (paper and live), so each is journaled once.
        self._missed_until: datetime | None = None
        #: The cycle times (ns) journaled ``cycle_missed`` (``_miss_for_good``) and not yet passed by a completed cycle:
        #: each once, even when a later bar of the outage's catch-up shows it again.
        self._missed_ns: set[int] = set()
        #: The newest cycle time (ns) missed for good (``_miss_for_good``: a boundary an outage passed before a newer
        #: one, a bar managed during the exchange's lag, a held cycle gone stale), in this process or, read back from
        #: the journal, an earlier one (``missed_before``): it and older cycles are never decided.
        self._missed_through_ns = 0
        #: The cycle time (ns) of the cycle the exchange's lag holds (0: none): due at the newest bar managed during
        #: the lag, decided once the lag clears unless a newer bar or boundary comes first (``_lag_cycle``,
        #: ``_drop_stale_hold``); journaled ``cycle_held``, and read back at start-up (``lag_held_before``).
        self._held_ns = 0
        #: Set while the cycle job fails on the exchange's lag, until a try of it runs past the lag: the boundaries
        #: the job that finds the lag cleared misses (``_passed_boundaries``) carry the lag's reason.
        self._lag_outage = False
        engine.start_write_ahead(self._commit, now)  # every order committed submitting before the venue sees it

    # -- driving ------------------------------------------------------------------------------

    def begin(self) -> None:
        """Mark the executor running (or complete at once when the replay already ended)."""
        if self._begun:
            return
        self._begun = True
        self._apply_pause()
        if self.state.risk.paused:
            logger.warning("starting with new entries paused: %s", self.state.risk.reason)
        self.runstate.update(status=RunStatus.running, executor_running=True)
        self.publisher.progress(self.state)
        self.publisher.begin(self.state)
        self._guarded("start", self._started)
        if self.feed.finished:
            self._guarded("complete", self._complete)

    def _started(self) -> None:
        """The start-up job: its journal lines (nothing in the state changed yet)."""
        strategy = self.engine.strategy
        shortened = ({"cycle_duration": format_duration(strategy.cycle_duration),
                      "declared_cycle_duration": format_duration(strategy.declared_cycle_duration)}
                     if strategy.declared_cycle_duration is not None else {})  # an operator's --cycle-duration
        self.journal("started", cursor=self.feed.cursor, last_bar_at=self.state.last_bar_at,
                     cycles_completed=self.state.cycles_completed, **shortened)
        resolved = self.engine.resolve_orders(self._now())  # before anything new is decided
        for line in resolved:
            self.journal("order_resolved", detail=line)
        if resolved:
            self._commit()
        if self.safe_mode:
            self.journal("safe_mode", reason=self.runstate.snapshot().safe_mode_reason)

    def run(self, idle_timeout: float = 1.0) -> LoopOutcome:
        """Consume commands until the loop ends; the body of the worker thread."""
        self.begin()
        while self.outcome is None:
            command = self.commands.get(timeout=self._wait(idle_timeout))
            if command is not None:
                self.handle(command)
            self._retry_if_due()
        return self.outcome

    def run_pending(self) -> LoopOutcome | None:
        """Handle every queued command without waiting (tests drive the loop this way)."""
        self.begin()
        while self.outcome is None:
            command = self.commands.get_nowait()
            if command is None:
                break
            self.handle(command)
        self._retry_if_due()
        return self.outcome

    def _wait(self, idle_timeout: float) -> float:
        """How long to wait for a command: no longer than until the retry of a temporarily failed job is due."""
        current = self.outage.current
        if current is None:
            return idle_timeout
        return max(0.01, min(idle_timeout, (current.next_retry_at - self._now()).total_seconds()))

    def _retry_if_due(self) -> None:
        """Try the temporarily failed job again once its backoff has run out (a tick of the loop's own)."""
        job = self.outage.due()
        if job is not None and self.outcome is None and job in JobKind.__members__:
            self.handle(Command(CommandKind.tick, job=JobKind(job), reason="retry after a temporary failure"))

    def handle(self, command: Command) -> None:
        """Do what one command asks; each part of it is a ledger job of its own (``_guarded``)."""
        if self.outcome is not None:
            if command.reply is not None:
                command.reply.set(ActionResult(Outcome.failed, self._ended()))
            return
        if command.kind is CommandKind.tick and command.job is not None:
            if self.outage.holds(command.job.value):  # its retry is not due: this tick is deferred
                self._guarded("deferred", lambda: self._deferred(command))
                return
            self._job_lag = self._lag_of(command)
            self._guarded(command.job.value, self._jobs[command.job], retry=True)
            if self.after_job is not None and self.outcome is None:
                self._guarded("after_job", self.after_job)
            self._cast()
        elif command.kind is CommandKind.cast and self.caster is not None:  # a cast journals its own outcome
            caster = self.caster
            self._guarded("cast", lambda: caster.set_target(command.target, by=command.reason or "control"))
            self._cast()
        elif command.kind is CommandKind.stop:
            self._guarded("stop", lambda: self._stop_command(command))
        elif command.kind in (CommandKind.pause, CommandKind.resume):
            self._guarded(command.kind.value, lambda: self._pause(command))
        elif command.kind in _OPERATOR_JOBS and command.request is not None:
            request = command.request
            try:
                self._guarded(command.kind.value, lambda: self._operator_job(request, command))
            finally:
                if command.reply is not None and self._temporary is not None:  # set already unless it failed
                    command.reply.set(ActionResult(Outcome.failed, f"{request.command} failed temporarily "
                                                                   f"({self._temporary}); nothing changed, try again"))
                elif command.reply is not None:
                    command.reply.set(ActionResult(Outcome.failed, f"{request.command} crashed the executor; "
                                                                   "see /status for the crash"))
            self._cast()
        elif command.kind not in (CommandKind.tick, CommandKind.cast):
            self._guarded(command.kind.value, lambda: self._note(command))
        if self.outcome is not None:
            self.commands.close(self._ended())

    def _ended(self) -> str:
        """Why operator jobs can no longer be done, once the loop has ended."""
        status = self.outcome.status.value if self.outcome is not None else "ended"
        return f"the executor has {'crashed' if status == 'error' else status}; it takes no more actions"

    def _note(self, command: Command) -> None:
        """A command the loop has no job for: journaled, so the journal shows it arrived."""
        self.journal(_COMMAND_EVENTS.get(command.kind, command.kind.value), reason=command.reason)

    def _stop_command(self, command: Command) -> None:
        """A stop asked for (SIGTERM, SIGINT, the webhook): journaled, then the loop ends stopped."""
        self._note(command)
        self._stop(command.reason or "stop requested")

    def _pause(self, command: Command) -> None:
        """The operator paused (no new positions) or resumed; a resume also lifts a risk pause, committed at once."""
        self._note(command)
        self.operator_paused = command.kind is CommandKind.pause
        if command.kind is CommandKind.resume:
            self._lift_risk_pause(command.reason or "operator")
        self._apply_pause()
        logger.info("%s by operator", "paused" if self.operator_paused else "resumed")

    def _guarded(self, job: str, body: Callable[[], None], *, retry: bool = False) -> None:
        """Run ``body`` as one ledger job under the watchdog; a TemporaryError is retried, any other exception ends
        the loop as a crash.

        The job's commits (``_commit``) stand; what it journaled after its last commit is dropped
        with it. A TemporaryError (network, exchange down, rate limit) is no bug: a scheduled job
        (``retry``) is tried again after a backoff (``Outage``), another (an operator's) is answered
        as failed; neither counts as a crash. A crash is journaled and committed in a job of its own,
        so the journal says why the loop ended and the notifier hears it, whatever the failed job
        left behind.
        """
        if self.watchdog is not None:
            self.watchdog.job_started(job)
        self._temporary = None
        try:
            with self.store.begin_job(job, self._now()) as scope:
                self._scope = scope
                body()
                self._recovered(job)
        except TemporaryError as exc:
            self._scope = None
            self._failed_temporarily(job, exc, retry=retry)
        except Exception as exc:  # noqa: BLE001 - the loop boundary decides: every other job failure is a crash
            self._scope = None
            self._crashed(exc, job)
            self._commit_crash(job)
        finally:
            self._scope = None
            if self.watchdog is not None:
                self.watchdog.job_finished()
        if len(self.engine.lost) > self._lost_seen and self.outcome is None:
            self._needs_operator()
        missing = list(self.engine.missing_fills.orders.values())
        if missing != self.runstate.fills_missing:  # rare news: orders whose trades the exchange does not list
            self.runstate.update(fills_missing=missing)
        waiting = self.engine.waiting_exits()
        if waiting != self.runstate.exits_waiting:  # from the first answer: the positions whose exits wait on them
            self.runstate.update(exits_waiting=waiting)

    def _needs_operator(self) -> None:
        """The engine found orders the exchange lost (``Engine.lost``): safe mode, its reason naming each and what to
        do, after any reason it had already (a crash loop, a reconciliation mismatch)."""
        if self._lost_seen == 0 and self.safe_mode:
            self._safe_reason_before_lost = self.runstate.snapshot().safe_mode_reason
        self._lost_seen = len(self.engine.lost)
        reason = "; ".join([r for r in (self._safe_reason_before_lost,) if r] + list(self.engine.lost.values()))
        self._guarded("safe_mode", lambda: self._enter_safe_mode(reason))

    def _failed_temporarily(self, job: str, exc: TemporaryError, *, retry: bool) -> None:
        """Book a temporary failure and journal it in a job of its own (the failed job's lines died with it)."""
        self._temporary = f"{type(exc).__name__}: {scrub(str(exc))}"
        if retry:
            record, began = self.outage.failed(job, exc)
            if not began:
                return  # the retries are logged and counted in /status; the journal has the outage's start
            event, fields = "outage_started", {"job": job, "error_class": record.error_class, "error": record.error,
                                               "retry_at": record.next_retry_at}
        else:
            logger.warning("%s job failed temporarily: %s", job, self._temporary)
            event, fields = "temporary_failure", {"job": job, "error_class": type(exc).__name__,
                                                  "error": scrub(str(exc))}
        try:
            with self.store.begin_job("outage", self._now()):
                self.journal(event, **fields)
        except Exception:  # noqa: BLE001 - the log holds it; an outage line must not become a crash
            logger.exception("the journal line of the %s job's temporary failure could not be committed", job)

    def _recovered(self, job: str) -> None:
        """The job ran through: when it was being retried, the outage is over (journaled with this job)."""
        ended = self.outage.succeeded(job)
        if ended is not None:
            done_ns = self._done_ns()  # the missed ones still ahead of the decided cycles: the catch-up's bars show them
            self._missed_ns = {ns for ns in self._missed_ns if ns > done_ns}
            self.journal("outage_ended", job=job, since=ended.since, retries=ended.retries,
                         seconds=round((self._now() - ended.since).total_seconds(), 3),
                         last_error_class=ended.error_class)

    def _deferred(self, command: Command) -> None:
        """A scheduled tick of the job being retried arrived before its retry is due: a cycle boundary may be missed.

        In paper and live mode the tick is a wake of the cycle job (every quarter candle, at least every 15 s): a
        cycle is missed only once a newer boundary has passed during the outage (``_passed_boundaries``), journaled
        once at its own time, not the wake's, and never decided afterwards (``_miss_for_good``) — the newest stays
        open, to be decided late on its own bar if the outage ends before the next boundary. The cycle the
        exchange's lag holds is missed once the clock has passed the next boundary (``_drop_stale_hold``). A replay
        has no wall cycle: each deferred tick is a bar not replayed, one missed cycle."""
        current = self.outage.current
        if command.job is not JobKind.cycle or current is None:
            return
        at = command.scheduled_at or self._now()
        if self.wall_cycle is None:
            self.journal("cycle_missed", boundary=at, retry_at=current.next_retry_at, failing_since=current.since)
            return
        self._drop_stale_hold(newer=False)
        self._miss_passed(at, lag=self.engine.lag is not None or self._lag_outage)

    def _miss_passed(self, at: datetime, *, lag: bool) -> None:
        """Paper and live, while the cycle job is being retried: each cycle boundary the outage passed before a newer
        one had passed by ``at`` is missed for good (``_miss_for_good``), with the lag's reason when the outage is
        the exchange's lag (``lag``), else the ordinary outage's."""
        for boundary in self._passed_boundaries(at):
            self._miss_for_good(pd.Timestamp(boundary).value, reason=LAG_MISSED if lag else OUTAGE_MISSED)

    def _passed_boundaries(self, at: datetime) -> list[datetime]:
        """Paper and live: the cycle boundaries the clock passed by ``at`` while the cycle job was being retried and not
        looked at yet (each once), oldest first, but the newest passed: it stays open — its bar may still be decided
        once the outage ends (or held, and decided once the exchange's lag clears: ``_lag_cycle``) — until a newer
        boundary has passed; then it is stale, and missed. The first is the cycle due when the outage began (the one
        being retried) unless it was decided before; then the first after the outage began."""
        current = self.outage.current
        if current is None or self.wall_cycle is None or current.job != JobKind.cycle.value:
            return []
        period, offset = self.wall_cycle
        boundary = floor_boundary(current.since, period, offset)
        if pd.Timestamp(boundary).value <= self._done_ns():
            boundary += period
        if self._missed_until is not None and self._missed_until >= boundary:
            boundary = self._missed_until + period
        boundaries = []
        while boundary <= at:
            boundaries.append(boundary)
            boundary += period
        if boundaries:
            boundaries.pop()  # the newest: looked at again once a newer one has passed
        if boundaries:
            self._missed_until = boundaries[-1]
        return boundaries

    def mismatched_at_start(self, mismatches: Sequence[Mismatch]) -> None:
        """The differences start-up reconciliation found (its safe-mode reason names them already): a re-check
        finding one again neither adds it to the reason nor journals ``safe_mode`` again (``_recheck_balances``)."""
        self._recheck_found |= {(m.symbol, m.client_order_id) for m in mismatches}

    def missed_before(self, lines: Sequence[Mapping[str, Any]]) -> None:
        """The ``cycle_missed`` lines an earlier process journaled (``Ledger.journaled``; paper and live): the cycles it
        missed for good — for the exchange's lag (``reason`` ``LAG_MISSED``) or an outage that passed a newer boundary
        (``OUTAGE_MISSED``) — stay undecided after a restart, as in the process that journaled them: a restart must not
        decide a cycle the journal already says was missed (the journal would then have both lines for it). Lines at
        or before ``last_completed_cycle`` change nothing: those cycles never run again anyway."""
        done_ns = self._done_ns()
        for fields in lines:
            if fields.get("reason") not in (LAG_MISSED, OUTAGE_MISSED) or not fields.get("boundary"):
                continue
            ns = pd.Timestamp(fields["boundary"]).value
            if ns > done_ns:
                self._missed_through_ns = max(self._missed_through_ns, ns)
                self._missed_ns.add(ns)  # journaled once: not again by this process

    def lag_held_before(self, lines: Sequence[Mapping[str, Any]]) -> None:
        """The ``cycle_held`` lines an earlier process journaled (read after ``missed_before``): a cycle it held for
        the exchange's lag and neither decided nor journaled missed is held again. The first cycle job decides it
        if it is still current — the lag cleared, no newer bar delivered, the next boundary not passed — and
        journals it missed (never decided) once a newer bar or boundary came while this process was down
        (``_drop_stale_hold``). Without this a restart would decide it on its stale bar at once, as a cycle it
        interrupted between its two commits."""
        newest = self._held_ns
        for fields in lines:
            if fields.get("boundary"):
                newest = max(newest, pd.Timestamp(fields["boundary"]).value)
        if newest > max(self._done_ns(), self._missed_through_ns):
            self._held_ns = newest

    def _done_ns(self) -> int:
        """The cycle time (ns) of ``last_completed_cycle`` (0: none)."""
        done = self.state.last_completed_cycle
        return pd.Timestamp(done).value if done is not None else 0

    def _current(self, cycle_ns: int) -> bool:
        """Whether the cycle at ``cycle_ns`` can still be decided on time: the clock has not passed the next boundary
        (paper and live; a replay has no clock of its own)."""
        if self.wall_cycle is None:
            return True
        period, offset = self.wall_cycle
        return next_boundary(pd.Timestamp(cycle_ns, tz="UTC").to_pydatetime(), period, offset) > self._now()

    def _lag_cycle(self, step: int, *, newer: bool) -> None:
        """A bar managed while an order waits out the exchange's lag (``step``; ``newer``: a newer bar came since):
        the cycle that ends at it, if one does and has not run, is held or missed.

        Held (``_held_ns``, journaled ``cycle_held`` once and committed before the job fails on the lag) while it is
        current — no newer bar, the next boundary not passed: the first cycle job that finds the lag cleared
        decides it then, on its own bar (``_decide_ended``). Otherwise it is missed for good (``_miss_for_good``):
        deciding it after newer bars were managed (fills, triggers, marks) would decide on a bar that is no longer
        the market's. A cycle older than a boundary the clock passed during the lag (bars come at the retries' pace,
        behind the clock) is missed here too, journaled once."""
        cycle_ns = self.schedule.due(self.feed.market.timeline_ns, step, self.feed.known_until_ns)
        if not cycle_ns or cycle_ns <= self._done_ns() or cycle_ns == self._held_ns:
            return
        if newer or cycle_ns <= self._missed_through_ns or not self._current(cycle_ns):
            self._miss_for_good(cycle_ns, step=step)
            return
        self._held_ns = cycle_ns
        current = self.outage.current
        self.journal("cycle_held", boundary=pd.Timestamp(cycle_ns, tz="UTC").to_pydatetime(), step=step,
                     bar_at=self.feed.market.step_time(step).to_pydatetime(),
                     failing_since=current.since if current else self._now(), reason=LAG_HELD)
        self._commit_lines()

    def _drop_stale_hold(self, *, newer: bool) -> None:
        """The held cycle (``_held_ns``) once a newer bar was delivered (``newer``) or the clock passed the next
        boundary: missed for good (``_miss_for_good``), never decided. Decided or missed already: no longer held."""
        held = self._held_ns
        if not held:
            return
        if held <= max(self._done_ns(), self._missed_through_ns):
            self._held_ns = 0
        elif newer or not self._current(held):
            self._miss_for_good(held)

    def _miss_for_good(self, cycle_ns: int, *, reason: str = LAG_MISSED, step: int | None = None) -> None:
        """The cycle at ``cycle_ns`` is missed for good (the exchange's lag, or an outage that passed a newer
        boundary: ``reason``): never decided (``_cycle_due`` refuses it and every older one), journaled
        ``cycle_missed`` with the reason once — unless a line already says so — and committed at once (the job may
        fail next). A held cycle it passes goes with it. A cycle already decided is left alone."""
        if 0 < self._held_ns <= cycle_ns:
            held, self._held_ns = self._held_ns, 0
            if held < cycle_ns:
                self._miss_for_good(held)
        if cycle_ns <= self._done_ns():
            return
        self._missed_through_ns = max(self._missed_through_ns, cycle_ns)
        if cycle_ns in self._missed_ns:
            return
        self._missed_ns.add(cycle_ns)
        current = self.outage.current
        where = {"step": step} if step is not None else {}
        self.journal("cycle_missed", boundary=pd.Timestamp(cycle_ns, tz="UTC").to_pydatetime(),
                     retry_at=current.next_retry_at if current else None,
                     failing_since=current.since if current else self._now(), **where, reason=reason)
        self._commit_lines()

    def _commit_crash(self, job: str) -> None:
        """Commit the crash's journal line alone; the ledger may be what failed, which must not count twice."""
        try:
            with self.store.begin_job("crash", self._now()):
                pass  # the crashed line, journaled by the recorder, commits as the job ends
        except Exception:  # noqa: BLE001 - see above; crash.json and the log hold the crash
            logger.exception("the journal line of the %s job's crash could not be committed", job)

    def _commit(self) -> None:
        """Commit the state's changes and the running job's journal lines so far, in one transaction."""
        if self._scope is None:
            raise RuntimeError("a state commit outside a job: every change belongs to a ledger job")
        self._scope.commit(self.state)

    def _commit_lines(self) -> None:
        """Commit the running job's journal lines so far on their own (nothing in the state changed)."""
        if self._scope is None:
            raise RuntimeError("a journal commit outside a job: every line belongs to a ledger job")
        self._scope.commit(None)

    # -- the jobs, as recipes ---------------------------------------------------------------

    def run_cycle(self) -> None:
        """Deliver the next bar; decide a cycle it shows has ended; manage its positions and save; when a cycle
        ends at it, decide and save; publish."""
        if self.outcome is not None:
            return
        self._settle()  # outcomes the venue reported between jobs; orders of unknown outcome asked about
        # An order waiting out the exchange's "does not exist" lag holds up the decisions, not the bar: its fills,
        # triggers and marks are managed and saved (the trigger checks see only the bars this job delivers).
        lag = self.engine.lag
        # A bar delivered to a job that then failed temporarily, before its management was saved, is this job's bar
        # again: the feed has moved past it, and its fills and triggers must not be lost (nor taken twice).
        step = self._delivered if self._delivered is not None else self.feed.advance()
        self._delivered = step
        self._rebase()  # the feed may have dropped its oldest steps before the new bar (its window)
        self.engine.follow_market()  # a growing feed appended candles: indicators extended on their tail
        # The boundaries the clock passed while this job was retried (the lag or an ordinary outage), but the newest.
        self._miss_passed(self._now(), lag=lag is not None or self._lag_outage)
        if self._processed >= 0:
            self._drop_stale_hold(newer=step is not None)  # a newer bar or boundary came first: missed
            if lag is None:
                self._decide_ended(self._processed)  # a held cycle still current is decided here, late, on its bar
                self._held_ns = 0
            else:  # a newer bar (or the clock) shows its cycle ended: held while current, else never decided
                self._lag_cycle(self._processed, newer=step is not None)
        self._lag_outage = lag is not None
        if step is not None and self.outcome is None:
            self._manage(step)
        if lag is not None:
            if step is not None and self.outcome is None:
                self._lag_cycle(step, newer=False)
            raise lag  # nothing new is decided while it waits: an outage, the job retried with backoff
        if step is None or self.outcome is not None:
            return
        cycle_ns = self._cycle_due(step, warn=True)
        report = self._decide(step, cycle_ns) if cycle_ns is not None else None
        if self.outcome is not None:
            return
        self._publish_cycle(step, cycle_ns if report is not None else None, report)
        self._check_end()

    def run_trigger_check(self) -> None:
        """Check open positions' triggers against the newest bar not yet checked; save when one fired.

        A replay checks each bar's triggers inside its cycle job (``Engine.manage``), so here it finds
        nothing new; the job matters for feeds whose bars arrive between cycles.
        """
        self._settle()
        step = self.feed.cursor
        fired = 0
        if step > self._checked_step and self.state.portfolio.open_positions:
            fired = self.engine.check_triggers(step)
        self._checked_step = max(self._checked_step, step)
        if fired:
            self.engine.mark_to_market(step)
            self.engine.record_valuation(step)
            self._check_risk(step)
            self._commit()
        self.publisher.trigger_check_done(self.state)

    def run_revaluation(self) -> None:
        """Mark open positions to the newest bar, stamp the valuation time, record equity, save."""
        self._settle()
        step = self.feed.cursor
        if step >= 0 and self.state.replay_cursor >= 0:
            equity = self.engine.revalue(step, self._now())
            self.engine.record_valuation(step)
            self._check_risk(step)
            self._commit()
            self.journal("revalued", step=step, equity=round(equity, 2))
        self.publisher.revaluation_done(self.state)

    def _settle(self) -> None:
        """The start of every job: apply what the venue reported since the last one, and (live mode) ask the
        exchange about every order whose reply never came, journaled ``order_resolved`` and committed before
        anything else happens. While the exchange stays unreachable this raises TemporaryError: the job is
        retried with the outage's backoff, and nothing new is decided meanwhile. An order only waiting out the
        exchange's "does not exist" lag (``ExchangeLagError``, ``Engine.lag``) fails no job here: the jobs that
        protect (trigger checks, revaluation and the risk check, an operator's close) go on, its own position out of
        every exit meanwhile (``Engine.in_flight``), and the cycle manages its bar, then fails before deciding."""
        self.engine.drain()
        resolved = self.engine.settle_unknown(hold=False)
        for line in resolved:
            self.journal("order_resolved", detail=line)
        if resolved:
            self._commit()
        if self._recheck and self._pending_settled():
            self._recheck_balances()

    def _pending_settled(self) -> bool:
        """Whether every order the re-check waits for (``_recheck``) has settled: none is still in flight
        (``unconfirmed_orders``: adopted, sent, or ended by a cancel; a retired position's order has ended), and each
        whose fills the exchange had not all listed (``_unbooked``) has them booked: the strict comparison before
        then would find the account ahead of the ledger by exactly their part, a false safe mode."""
        if any(o.client_order_id in self._recheck for _, o in unconfirmed_orders(self.state)):
            return False
        return not any(order.client_order_id in self._unbooked and not order.is_terminal
                       and order.filled_quantity < self._unbooked[order.client_order_id] * (1 - 1e-9)
                       for position in self.state.portfolio.open_positions for order in position.orders)

    def _recheck_balances(self) -> None:
        """The orders the re-check waits for have settled: the balances start-up compared loosely for them (or not
        at all: the fee assets without a figure) are compared again with the ledger that now holds their fills
        (``recheck_balances``), journaled ``balances_rechecked``. A difference is journaled
        (``reconciliation_mismatch``, which notifies) and puts the executor in safe mode with the reason, as at
        start-up — once per difference (its asset or order): a later run finding it again adds nothing to the reason
        and journals no second ``safe_mode``; nothing is changed. Another order in flight at this moment (a stop-loss's
        exit sent during the lag), or one whose fills the exchange has not all listed (``Unbooked``: a later order
        whose trades lag), bounds the comparison: the re-check stays armed with it (``bounded_by``) and runs again once
        it has settled (its fills booked), until a run with nothing in flight or unbooked has compared strictly. A
        venue that cannot be asked fails the job temporarily: asked again at the retry.
        """
        venue = self.engine.live_venue
        bounded_by: frozenset[str] = frozenset()
        unbooked: dict[str, float] = {}
        if venue is not None:
            result = recheck_balances(self.state, venue, now=self._now, symbols=self.engine.symbols)
            journal_reconciliation(result, self.journal, "balances_rechecked")
            new = [m for m in result.mismatches if (m.symbol, m.client_order_id) not in self._recheck_found]
            if new:  # what an earlier run found is in the reason already (its figures may have moved since)
                self._recheck_found |= {(m.symbol, m.client_order_id) for m in new}
                reason = f"once the orders pending at start-up settled, {replace(result, mismatches=tuple(new)).reason}"
                before = self.runstate.snapshot().safe_mode_reason if self.safe_mode else None
                self._enter_safe_mode(f"{before}; {reason}" if before else reason)
            self._commit()  # the lines, and a fee asset's first figure if one was taken
            bounded_by = frozenset(result.bounded_by)
            unbooked = {u.client_order_id: u.filled for u in result.unbooked}
        self._recheck, self._unbooked = bounded_by, unbooked

    def run_charts(self) -> None:
        """Send the chart renderer what changed, now that it is idle (nothing is saved: charts are not state)."""
        self.publisher.send_charts(self.state)

    def _operator_job(self, request: ActionRequest, command: Command) -> None:
        """An operator's close, close-all or reload-params: done, journaled (who, what, result) and committed as one
        job, then answered through the command's reply (after the commit, so "done" means saved)."""
        self._settle()
        if request.command == CommandKind.reload_params:
            result = self._reload_params(request)
        else:
            result = self._close(request)
        self.journal("operator_action" if result.outcome is Outcome.done else "operator_refused",
                     action=request.command, by=request.by, outcome=result.outcome.value, message=result.message,
                     **result.details)
        if result.outcome is Outcome.done:
            self._commit()  # the closes (or nothing) and the journal lines, in one transaction
            parameters = result.details.get("parameters") if request.command == CommandKind.reload_params else None
            self.publisher.operator_done(self.state, parameters)
        else:
            self._commit_lines()  # the refusal is on record before it is answered
        logger.info("operator %s by %s: %s", request.command, request.by or "-", result.message)
        if command.reply is not None:
            command.reply.set(result)

    def _close(self, request: ActionRequest) -> ActionResult:
        """Close one position (``close``) or every open one (``close_all``) at the current bar's price."""
        portfolio = self.state.portfolio
        if request.command == CommandKind.close_all:
            targets = list(portfolio.open_positions)
            if not targets:
                return ActionResult(Outcome.conflict, "no open positions to close")
        else:
            wanted = request.position_id
            targets = [p for p in portfolio.open_positions if p.id == wanted]
            if not targets:
                # Ids are handed out in order and positions never deleted: an id below the next that is not
                # open is closed or failed — no scan of the (packed) history on the loop thread.
                if wanted is not None and 0 < wanted < portfolio.next_position_id:
                    return ActionResult(Outcome.conflict, f"position {wanted} is already closed",
                                        {"position_id": wanted})
                open_ids = ", ".join(str(p.id) for p in portfolio.open_positions) or "none"
                return ActionResult(Outcome.not_found, f"no position {wanted}; open positions: {open_ids}",
                                    {"position_id": wanted})
        # Live: a second exit must never be sent while an order of the position is in flight (an entry waiting out
        # the exchange's lag, say). A close of it is refused; close-all closes the others and names these.
        # An order the exchange says ended while its trades are not all listed (``Engine.exit_waits``) is one too: the
        # ledger booked part of it, so a close would be sized wrong; its reason says so (``exit_waiting``, once).
        busy = [(p, o) for p in targets if (o := self.engine.in_flight(p)) is not None]
        waits = {p.id: self.engine.note_exit_waiting(p, f"operator {request.command}") for p, _ in busy}
        not_closed = [{"position_id": p.id, "symbol": self.engine.symbol_of[p.instrument_id],
                       "client_order_id": o.client_order_id, "purpose": o.purpose.value,
                       "status": o.status.value, "reason": waits[p.id] or f"its {o.purpose.value} order "
                       f"{o.client_order_id} is {o.status.value} at the exchange; it is asked about at every job: "
                       "close again once it has ended"} for p, o in busy]
        if busy and request.command == CommandKind.close:
            position, order = busy[0]
            waiting = waits[position.id]
            if waiting is not None:
                return ActionResult(Outcome.conflict, f"position {position.id} cannot be closed now: {waiting}",
                                    {"position_id": position.id, "client_order_id": order.client_order_id,
                                     "reason": waiting})
            return ActionResult(Outcome.conflict, f"position {position.id} has order {order.client_order_id} "
                                f"{order.status.value} at the exchange; it is asked about at every job: close again "
                                "once it has ended", {"position_id": position.id,
                                                      "client_order_id": order.client_order_id})
        if busy and len(busy) == len(targets):
            return ActionResult(Outcome.conflict, "no open position can be closed now: " + "; ".join(
                f"position {n['position_id']}: {n['reason']}" for n in not_closed), {"not_closed": not_closed})
        targets = [p for p in targets if all(p is not b for b, _ in busy)]
        step = self.feed.cursor
        by = request.by or "operator"
        closed = [self._closed(position, order)
                  for position, order in zip(targets, self.engine.close_all_now(targets, step, by=by), strict=True)]
        self.engine.record_valuation(step)  # replaces the bar's row: the closes changed cash and value
        equity, cash, _ = self.engine.valuation()
        what = f"position {targets[0].id}" if request.command == CommandKind.close else f"{len(closed)} position(s)"
        pending = [c for c in closed if c.get("status", "filled") != "filled"]
        message = f"closed {what}; cash {cash:.2f}"
        if pending:  # live: refused, filled in part, or no reply (asked about at the next job)
            message = (f"close of {what} sent; not filled: " + ", ".join(
                f"position {c['position_id']} {c['status']}" for c in pending) + f"; cash {cash:.2f}")
        details: dict[str, object] = {"closed": closed, "cash": round(cash, 8), "equity": round(equity, 8)}
        if not_closed:  # close-all: the positions left open, each with why
            message += "; not closed: " + "; ".join(f"position {n['position_id']}: {n['reason']}" for n in not_closed)
            details["not_closed"] = not_closed
        return ActionResult(Outcome.done, message, details)

    def _closed(self, position: Position, order: Order | None) -> dict[str, object]:
        """What the engine's exit path did with one position of an operator's close (``order``: its exit, None when
        it held nothing), JSON-safe."""
        symbol = self.engine.symbol_of[position.instrument_id]
        if order is None:
            return {"position_id": position.id, "symbol": symbol, "quantity": 0.0,
                    "note": "its opening order had not filled: cancelled"}
        return {"position_id": position.id, "symbol": symbol, "order_id": order.id,
                "client_order_id": order.client_order_id, "status": order.status.value,
                "quantity": order.filled_quantity, "price": order.average_fill_price, "fee": order.fees,
                "fee_currency": self.engine.state.instrument(order.instrument_id).quote_currency,
                "realised_pnl": order.realised_pnl}

    def _reload_params(self, request: ActionRequest) -> ActionResult:
        """New parameter values, checked as at start-up, used from the next cycle; refused with the reason, unchanged."""
        old = dict(self.engine.strategy.parameters)
        try:
            strategy = with_parameters(self.engine.strategy, request.parameters or {})
            self.engine.use_strategy(strategy)  # indicators recomputed first: a failure changes nothing
        except UserInputError as exc:
            return ActionResult(Outcome.invalid, str(exc), {"parameters": old})
        new = dict(strategy.parameters)
        changed = {name: {"old": old[name], "new": new[name]} for name in new if new[name] != old[name]}
        names = ", ".join(f"{name} {c['old']!r} -> {c['new']!r}" for name, c in changed.items()) or "nothing changed"
        return ActionResult(Outcome.done, f"parameters reloaded: {names}", {"changed": changed, "parameters": new})

    # -- steps --------------------------------------------------------------------------------

    def _lag_of(self, command: Command) -> float | None:
        """How late the job starts against the time the scheduler gave it (None: unscheduled)."""
        if command.scheduled_at is None:
            return None
        return max(0.0, (self._now() - command.scheduled_at).total_seconds())

    def _cycle_due(self, step: int, *, warn: bool = False) -> int | None:
        """The cycle time (ns) when a cycle ends at ``step`` (as far as the feed knows now) and has not run, else None."""
        cycle_ns = self.schedule.due(self.feed.market.timeline_ns, step, self.feed.known_until_ns)
        if not cycle_ns:
            return None
        if cycle_ns <= self._missed_through_ns:
            return None  # journaled missed: an outage passed a newer boundary, or the exchange's lag (``_miss_for_good``)
        done = self.state.last_completed_cycle
        if done is not None and cycle_ns <= pd.Timestamp(done).value:
            if warn:
                logger.warning("cycle %s already completed; not running it again", pd.Timestamp(cycle_ns, tz="UTC"))
            return None
        return cycle_ns

    def _rebase(self) -> None:
        """Move the steps the loop holds by what the feed's window dropped since the last look (none on a replay).

        A step that was dropped becomes -1 ("none"): only the restart's resumed step can be that old.
        """
        dropped = self.feed.market.dropped - self._dropped
        if not dropped:
            return
        self._dropped = self.feed.market.dropped
        self._processed, self._resumed_at, self._checked_step = (
            max(-1, step - dropped) if step >= 0 else step
            for step in (self._processed, self._resumed_at, self._checked_step))

    def _manage(self, step: int) -> None:
        """Fills, triggers and marks of the bar, its valuation and the cursor: the first commit, before any decision."""
        self.engine.manage(step)
        self.engine.record_valuation(step)
        self._check_risk(step)
        self.state.replay_cursor = step + self.feed.market.dropped  # counted from the loaded data's first step
        self.state.last_bar_at = self.feed.market.step_time(step).to_pydatetime()
        self._processed = step
        self._checked_step = step
        self._commit()
        self._delivered = None

    def _decide(self, step: int, cycle_ns: int) -> CycleReport | None:
        """Ask the strategy and plan its trades; the second commit. None when it was not asked or failed.

        In safe mode the strategy is not asked. When its own code raises, nothing has changed
        since the first commit: the crash is recorded and the loop either enters safe mode (a
        crash loop) or ends.
        """
        if self.safe_mode:
            return None
        started = time.perf_counter()
        try:
            intents = self.engine.ask_strategy(step, cycle_ns)
        except Exception as exc:  # noqa: BLE001 - the strategy's code: any failure is its crash
            self._strategy_crashed(exc)
            return None
        report = self.engine.plan(intents, step, cycle_ns)
        report.duration = time.perf_counter() - started
        self.engine.record_valuation(step)  # replaces the bar's row: a fill at the close changed it
        self._check_risk(step)
        self.state.last_completed_cycle = pd.Timestamp(cycle_ns, tz="UTC").to_pydatetime()
        self.state.cycles_completed += 1
        self.cycles += 1
        self.journal("cycle_completed", cycle_time=self.state.last_completed_cycle, step=step,
                     decisions=report.decisions, planned=report.planned, executed=report.executed,
                     rejected=report.rejected, ignored=list(report.ignored), duration=round(report.duration, 6),
                     lag=None if self._job_lag is None else round(self._job_lag, 6))
        self._commit()  # the cycle and its journal lines, in one transaction
        return report

    def _decide_ended(self, step: int) -> None:
        """Decide the cycle of the last processed bar when it is due now but has not run.

        That is a cycle whose end a newer bar (or the feed's clock) has only now shown — on a
        growing feed, the usual case when bars do not close exactly on the boundary — or one a
        restart interrupted between its two commits.
        """
        cycle_ns = self._cycle_due(step)
        if cycle_ns is None:
            return
        restarted = step == self._resumed_at  # left undecided by the process before this one
        logger.log(logging.INFO if restarted else logging.DEBUG, "deciding the cycle of %s, due after the bar closing %s%s",
                   pd.Timestamp(cycle_ns, tz="UTC"), self.feed.market.step_time(step),
                   ", which had not completed before the restart" if restarted else "")
        report = self._decide(step, cycle_ns)
        if report is not None:
            self._publish_cycle(step, cycle_ns, report)

    def _strategy_crashed(self, exc: Exception) -> None:
        """The strategy raised: a crash, recorded; in a crash loop, safe mode instead of the end of the loop."""
        self.recorder.record(exc, "cycle")
        reason = self._crash_loop()
        if reason is None:
            self.outcome = _crash_outcome(exc, "cycle")
        else:
            self._enter_safe_mode(f"the strategy keeps crashing: {reason}")

    def _crashed(self, exc: BaseException, job: str) -> None:
        """Record the crash and end the loop with status error."""
        self.recorder.record(exc, job)
        self.outcome = _crash_outcome(exc, job)

    def _enter_safe_mode(self, reason: str) -> None:
        """Stop calling the strategy for the rest of this process; positions stay managed."""
        self.safe_mode = True
        logger.warning("entering safe mode: %s", reason)
        self.runstate.update(status=RunStatus.running, executor_running=True, safe_mode_reason=reason)
        self._apply_pause()
        self.journal("safe_mode", reason=reason)

    def _check_risk(self, step: int) -> None:
        """The risk limits after a valuation (daemon/risk_guard.py); a hit pauses entries, in this job's commit."""
        if self.risk is not None and self.risk.check(step):
            self._apply_pause()

    def _lift_risk_pause(self, by: str) -> None:
        """An operator resumed: lift a risk pause and save it at once (a restart must not find it again)."""
        if self.risk is not None and self.risk.lift(by):
            self._commit()

    def _publish_cycle(self, step: int, cycle_ns: int | None, report: CycleReport | None) -> None:
        cycle_time = pd.Timestamp(cycle_ns, tz="UTC").to_pydatetime() if cycle_ns is not None else None
        self.publisher.cycle_done(self.state, step, cycle_time, duration=report.duration if report else None,
                                  lag=self._job_lag)

    def _check_end(self) -> None:
        if self.feed.finished:
            self._complete()
        elif self.cycle_limit and self.cycles >= self.cycle_limit:
            self._stop(f"{self.cycles} cycle(s) run, the --max-cycles / --run-single-cycle limit")

    def _cast(self, *, final: bool = False) -> None:
        """Hand the caster what the job changed (it sends only when due and only what is new).

        At the end of a run (``final``) the outcome is already decided: a failure to cast is
        logged, not recorded as a crash of a run that did not crash.
        """
        if self.caster is None or (self.outcome is not None and not final):
            return
        caster, status = self.caster, RunStatus(self.runstate.status).value  # the loop is its only writer
        if not final:
            self._guarded("cast", lambda: caster.after_job(self.state, self.feed.cursor, status=status))
            return
        try:
            caster.after_job(self.state, self.feed.cursor, final=True, status=status)
        except Exception:  # noqa: BLE001 - see the docstring
            logger.exception("casting the final chart data failed")

    def _apply_pause(self) -> None:
        self.engine.set_paused(self.operator_paused or self.safe_mode or self.state.risk.paused)
        self.runstate.update(paused=self.operator_paused, safe_mode=self.safe_mode)
        if self.risk is not None:
            self.risk.publish()

    # -- endings ------------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        """Save, publish the final snapshot and end with status stopped."""
        self._commit()
        self.publisher.final(self.state)
        self._end(RunStatus.stopped, reason)

    def _complete(self) -> None:
        """The replay reached the end of its data: final snapshot and charts, status complete, how to replay again."""
        self._commit()
        self.publisher.final_charts(self.state)
        self.publisher.final(self.state)
        again = self.replay_again_hint()
        snapshot = self.runstate.snapshot()
        self.runstate.update(extra={**snapshot.extra, "replay_again": again})  # shown by /status
        self._end(RunStatus.complete, f"the replay reached the end of the data; {again}")

    def replay_again_hint(self) -> str:
        """What to do to replay from the start: the state remembers the end, so a restart would only end again."""
        where = self.store.path.parent
        state = f"move {where} aside"
        return (f"to replay again, stop the executor and {state} or start it with another --state-dir "
                "(a run: tradeexecutor runs reset RUN); restarting as it is ends at once")

    def _end(self, status: RunStatus, reason: str) -> None:
        self.runstate.update(status=status, executor_running=False, next_cycle_at=None)
        self.journal(status.value, reason=reason, cycles=self.cycles)
        logger.info("executor %s: %s", status.value, reason)
        self.outcome = LoopOutcome(status, reason)
        self._cast(final=True)  # the run's last data, whatever the throttle says
