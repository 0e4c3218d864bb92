"""When jobs fire: a Ticker puts job ticks on the loop's queue, on APScheduler 3 or on an in-memory twin.

A ticker never runs a job itself. Each firing only calls ``CommandQueue.put_tick(kind)``; the
loop's worker thread takes the tick off the queue and runs the job, so jobs never overlap and
never run on a scheduler thread.

Timing: every job is a :class:`JobSpec` firing at ``epoch + offset + k * period`` (UTC), the
same boundaries as :func:`tradeexecutor.timeframe.next_boundary` and the backtest's
``cycle_times``: a 1h cycle with an 8-minute offset fires at HH:08; a 10 s trigger check at
:00, :10, :20, ... The first firing is the first boundary strictly after start-up.

Late and missed firings, the same on both tickers:

- APScheduler runs with ``coalesce=True`` and no misfire grace limit: when its thread wakes up
  after several run times of a job have passed (machine suspended, clock jump), the job fires
  *once*, late, and the next firing is the next boundary after now. The twin's ``advance()``
  does exactly this.
- A firing while a tick of the same kind still waits in the queue (the loop is busy with a
  long job) is dropped by the queue (see ``commands``). So a late loop runs each job once when
  it catches up, never a burst: a replay slows down instead of skipping or racing; a live
  cycle job decides once, on the newest data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tradeexecutor.daemon.clock import Clock, FakeClock, SystemClock
from tradeexecutor.daemon.commands import CommandQueue, JobKind
from tradeexecutor.timeframe import floor_boundary, next_boundary

__all__ = ["ApschedulerTicker", "InMemoryTicker", "JobSpec", "Ticker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """A recurring job: fires at every ``period`` boundary since the epoch, shifted by ``offset``."""

    kind: JobKind
    period: timedelta
    offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise ValueError(f"{self.kind} job period must be positive (leave a disabled job out)")
        if self.offset < timedelta(0):
            raise ValueError(f"{self.kind} job offset must not be negative")

    def next_run_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment``."""
        return next_boundary(moment, self.period, self.offset % self.period)

    def last_run_at_or_before(self, moment: datetime) -> datetime:
        """The boundary this job fired for when it runs at ``moment`` (for measuring lag)."""
        return floor_boundary(moment, self.period, self.offset % self.period)


class Ticker(Protocol):
    """Fires JobSpecs onto a CommandQueue."""

    def start(self, jobs: Sequence[JobSpec]) -> None:
        """Begin firing ``jobs``."""
        ...

    def shutdown(self) -> None:
        """Stop firing; idempotent."""
        ...

    def next_run_time(self, kind: JobKind) -> datetime | None:
        """When ``kind`` fires next (None: not scheduled)."""
        ...


class ApschedulerTicker:
    """The production ticker: an APScheduler 3 BackgroundScheduler whose jobs only queue ticks."""

    def __init__(self, commands: CommandQueue, clock: Clock | None = None) -> None:
        self.commands = commands
        self.clock = clock or SystemClock()
        self._scheduler: BackgroundScheduler | None = None
        self._specs: dict[JobKind, JobSpec] = {}

    def start(self, jobs: Sequence[JobSpec]) -> None:
        """Add one interval job per spec, aligned on its boundaries, and start the scheduler thread."""
        # The jobs only put a tick on the queue, so they run on the scheduler's own thread (DebugExecutor):
        # a thread-pool hand-off would cost one more wait for the GIL while the webhook is busy.
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": DebugExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._specs = {spec.kind: spec for spec in jobs}
        now = self.clock.now()
        for spec in jobs:
            trigger = IntervalTrigger(seconds=spec.period.total_seconds(), start_date=spec.next_run_after(now),
                                      timezone=UTC)
            scheduler.add_job(self._fire, trigger, args=[spec.kind], id=spec.kind.value, name=f"{spec.kind} tick")
        scheduler.start()
        self._scheduler = scheduler

    def _fire(self, kind: JobKind) -> None:
        """Runs on the APScheduler thread: only queue the tick, stamped with the boundary it is for."""
        now = self.clock.now()
        spec = self._specs.get(kind)
        self.commands.put_tick(kind, spec.last_run_at_or_before(now) if spec is not None else now)

    def shutdown(self) -> None:
        """Stop the scheduler thread without waiting for anything (jobs are only queue puts)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=False)

    def next_run_time(self, kind: JobKind) -> datetime | None:
        """From APScheduler's job store."""
        scheduler = self._scheduler
        job = scheduler.get_job(kind.value) if scheduler is not None else None
        return job.next_run_time if job is not None else None


class InMemoryTicker:
    """The test twin: no thread; time moves with a FakeClock and ``advance`` fires what came due."""

    def __init__(self, commands: CommandQueue, clock: FakeClock) -> None:
        self.commands = commands
        self.clock = clock
        self._specs: dict[JobKind, JobSpec] = {}
        self._next: dict[JobKind, datetime] = {}

    def start(self, jobs: Sequence[JobSpec]) -> None:
        """Schedule ``jobs`` from the clock's current time."""
        now = self.clock.now()
        self._specs = {spec.kind: spec for spec in jobs}
        self._next = {spec.kind: spec.next_run_after(now) for spec in jobs}

    def shutdown(self) -> None:
        """Forget every job."""
        self._specs.clear()
        self._next.clear()

    def next_run_time(self, kind: JobKind) -> datetime | None:
        """The next firing of ``kind``."""
        return self._next.get(kind)

    def fire_due(self) -> list[JobKind]:
        """Fire each job whose run time has come, once however many run times passed (coalesce)."""
        now = self.clock.now()
        due = sorted((at, kind) for kind, at in self._next.items() if at <= now)
        for at, kind in due:
            self.commands.put_tick(kind, at)
            self._next[kind] = self._specs[kind].next_run_after(now)
        return [kind for _, kind in due]

    def advance(self, delta: timedelta | float) -> list[JobKind]:
        """Move the clock by ``delta`` in one jump, then fire what came due."""
        self.clock.advance(delta)
        return self.fire_due()

