"""The loop's inbox: command kinds and a thread-safe queue that coalesces duplicate job ticks.

Everything that asks the loop to do something is a :class:`Command` on one
:class:`CommandQueue`: scheduler ticks (run the cycle, trigger-check or revaluation job),
operator requests (pause, resume, run a cycle now, cast elsewhere, close positions, reload parameters)
and stop requests (SIGTERM, SIGINT, an
end condition). Only the loop's worker thread takes commands off the queue, so jobs never
overlap and state is changed on that one thread.

Coalescing: a tick for a job kind that already has a tick waiting in the queue is dropped
(``put_tick`` returns False). A loop that falls behind therefore runs each late job once, not
once per missed firing. Stop commands jump the queue: ``get`` returns a waiting stop before
any tick.

``stop`` never blocks and touches only :class:`queue.SimpleQueue` objects (reentrant), so a
signal handler may call it safely.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tradeexecutor.control import ActionReply, ActionRequest, ActionResult, Outcome

__all__ = ["Command", "CommandKind", "CommandQueue", "JobKind"]


class JobKind(StrEnum):
    """The jobs of the loop: three recurring ones, and sending the chart renderer what changed."""

    #: A strategy cycle (in replay mode: deliver one bar, run the cycle when one is due).
    cycle = "cycle"
    #: Check stop-loss / take-profit triggers of open positions.
    triggers = "triggers"
    #: Mark open positions to market and record a valuation.
    revaluation = "revaluation"
    #: Send the chart renderer what changed: queued by the renderer's thread when it becomes idle while
    #: charts are waiting (never scheduled; cycles and the other jobs send charts as they end).
    charts = "charts"


class CommandKind(StrEnum):
    """What a command asks of the loop."""

    #: Run one job (``Command.job``), from the scheduler or "run a cycle now".
    tick = "tick"
    #: Finish the running job, save and leave the loop.
    stop = "stop"
    #: Open no new positions until resumed (cycles, triggers and revaluations go on).
    pause = "pause"
    #: Lift an operator pause.
    resume = "resume"
    #: Cast chart data to another wallboard chart (``Command.target``; None stops casting).
    cast = "cast"
    #: Close one open position (``Command.request.position_id``) at the current price.
    close = "close"
    #: Close every open position at the current price.
    close_all = "close_all"
    #: Change the running strategy's parameters (``Command.request.parameters``).
    reload_params = "reload_params"


@dataclass(frozen=True)
class Command:
    """One request for the loop."""

    kind: CommandKind
    #: The job to run, for ticks.
    job: JobKind | None = None
    #: When the scheduler meant the job to run (None: as soon as possible).
    scheduled_at: datetime | None = None
    #: Why, for logs: "SIGTERM", "max cycles reached", "operator", ...
    reason: str = ""
    #: For cast: the wallboard path or URL to cast to, None to stop.
    target: str | None = None
    #: For operator jobs (close, close_all, reload_params): what was asked and by whom.
    request: ActionRequest | None = None
    #: For operator jobs: where the loop puts its answer.
    reply: ActionReply | None = None


@dataclass
class _Counters:
    """Ticks accepted and dropped per job kind, for tests and diagnostics."""

    accepted: dict[str, int] = field(default_factory=dict)
    coalesced: dict[str, int] = field(default_factory=dict)


class CommandQueue:
    """Unbounded FIFO of commands with per-kind tick coalescing; stops are served first."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._stops: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._waiting: set[JobKind] = set()
        self._lock = threading.Lock()
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()  # one token per queued command
        #: Ticks accepted and coalesced, per job kind.
        self.counters = _Counters()
        #: Why the loop no longer reads the queue (None while it does): operator jobs are answered with it at once.
        self.closed: str | None = None

    def put_tick(self, job: JobKind, scheduled_at: datetime | None = None) -> bool:
        """Queue a run of ``job``; False (and nothing queued) when one is already waiting."""
        with self._lock:
            if job in self._waiting:
                self.counters.coalesced[job] = self.counters.coalesced.get(job, 0) + 1
                return False
            self._waiting.add(job)
            self.counters.accepted[job] = self.counters.accepted.get(job, 0) + 1
        self._queue.put(Command(CommandKind.tick, job=job, scheduled_at=scheduled_at))
        self._tokens.put(None)
        return True

    def put(self, command: Command) -> None:
        """Queue an operator command (pause, resume) or a stop; ticks go through put_tick."""
        if command.kind is CommandKind.tick:
            assert command.job is not None, "a tick names its job"
            self.put_tick(command.job, command.scheduled_at)
            return
        (self._stops if command.kind is CommandKind.stop else self._queue).put(command)
        self._tokens.put(None)

    def stop(self, reason: str) -> None:
        """Ask the loop to stop after the running job; safe to call from a signal handler."""
        self._stops.put(Command(CommandKind.stop, reason=reason))
        self._tokens.put(None)

    def submit(self, name: str) -> bool:
        """Queue an operator command by name (``stop``, ``pause``, ``resume``, ``cycle_now``); False if unknown.

        This is the webhook's command sink: ``POST /control/<name>`` ends here. ``cycle_now``
        is accepted even when a cycle tick is already waiting (that tick is the cycle asked for).
        """
        if name == "stop":
            self.stop("operator")
        elif name in ("pause", "resume"):
            self.put(Command(CommandKind(name), reason="operator"))
        elif name == "cycle_now":
            self.put_tick(JobKind.cycle)
        else:
            return False
        return True

    def cast(self, target: str | None) -> bool:
        """Queue a change of cast target (None: stop casting); the webhook's cast sink, ``POST /control/cast``."""
        self.put(Command(CommandKind.cast, reason="control", target=target))
        return True

    def ask(self, request: ActionRequest) -> ActionReply:
        """Queue an operator job (close, close_all, reload_params); the loop answers through the reply.

        The webhook's action sink: ``POST /control/close`` and its siblings end here. A command
        name that is no job is a bug of the caller (ValueError), not an operator's mistake.
        """
        kind = CommandKind(request.command)
        if kind not in (CommandKind.close, CommandKind.close_all, CommandKind.reload_params):
            raise ValueError(f"{request.command} is not an operator job")
        reply = ActionReply()
        with self._lock:  # against close(): a job is either answered by the loop or refused here, never lost
            if self.closed is None:
                self.put(Command(kind, reason=request.by, request=request, reply=reply))
                return reply
        reply.set(ActionResult(Outcome.failed, self.closed))
        return reply

    def close(self, reason: str) -> None:
        """The loop has ended: answer waiting operator jobs and later ones with ``reason`` instead of leaving them."""
        with self._lock:
            self.closed = reason
        waiting: list[Command] = []
        while True:
            try:
                waiting.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for command in waiting:
            if command.reply is not None:
                command.reply.set(ActionResult(Outcome.failed, reason))

    def get(self, timeout: float | None = None) -> Command | None:
        """The next command (stops first), waiting up to ``timeout`` seconds; None when none came."""
        try:
            if timeout is not None and timeout <= 0:
                self._tokens.get_nowait()
            else:
                self._tokens.get(timeout=timeout)
        except queue.Empty:
            return None
        try:
            command = self._stops.get_nowait()
        except queue.Empty:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:  # close() answered it already
                return None
        if command.kind is CommandKind.tick:
            with self._lock:
                self._waiting.discard(command.job)  # type: ignore[arg-type]
        return command

    def get_nowait(self) -> Command | None:
        """The next command if one is waiting, else None."""
        return self.get(timeout=0)

    def empty(self) -> bool:
        """True when no command is waiting."""
        return self._queue.empty() and self._stops.empty()
