"""What happens when a job fails or hangs: crash records, crash-loop detection and the watchdog.

- :class:`CrashRecorder` turns an exception escaping a job into RunState's crash record
  (``set_fail``: the real exception, frames and cause chain), a crash.json record beside the
  state (with its counter and recent crash times) and an ERROR log line.
- :func:`crash_loop_reason` reads crash.json and its tally: after ``count`` crashes within
  ``minutes`` the executor is in *safe mode* — the strategy is no longer called, positions are
  still managed (fills, stop-loss, take-profit, trailing stop, revaluation) — and says why. It is
  asked at start-up, and by the loop after each strategy crash, so a strategy that keeps failing
  ends in safe mode in the running process rather than in endless restarts. A crash whose
  crash.json could not be written (a full disk) counts through the tally (``crash.tally``,
  :class:`~tradeexecutor.runstate.crash.CrashTally`).
- :class:`Watchdog` is a thread that watches the running job; one running longer than its
  limit becomes a crash record holding every thread's stack (``dump_all_thread_stacks``), and
  the runner then exits non-zero (the stuck job cannot be interrupted from outside).

The crash *policy* (exit at once, or serve the webhook for a while, then exit non-zero) is
applied by the runner on the main thread once the loop has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tradeexecutor.engine.engine import EventSink
from tradeexecutor.errors import StateCorruptError, TradeExecutorError
from tradeexecutor.runstate import CrashFile, RunState, dump_all_thread_stacks, format_exception_record
from tradeexecutor.strategy.failure import strategy_failure

__all__ = ["CrashRecorder", "JobHangError", "Watchdog", "crash_loop_reason", "crash_site"]

logger = logging.getLogger("tradeexecutor.daemon")


class JobHangError(TradeExecutorError):
    """A job ran longer than the watchdog allows; the crash record carries every thread's stack."""


class CrashRecorder:
    """Records crashes in RunState, crash.json and the log; safe to call from any thread."""

    def __init__(self, runstate: RunState, crash_file: CrashFile, journal: EventSink,
                 now: Callable[[], datetime], *, hang_journal: EventSink | None = None) -> None:
        """``hang_journal`` takes the watchdog's ``crashed`` line (default: ``journal``): in the daemon, one
        that commits the line at once, since the hung job never commits and the process then exits."""
        self.runstate = runstate
        self.crash_file = crash_file
        self.journal = journal
        self.hang_journal = hang_journal if hang_journal is not None else journal
        self._now = now

    def record(self, exc: BaseException, job: str) -> None:
        """An exception escaped ``job``: make it visible in /status, crash.json and the log."""
        now = self._now()
        self.runstate.set_fail(exc, now)
        record = self.runstate.snapshot().exception or {}
        self._write(record, now)
        failure = strategy_failure(exc)  # the strategy's file, line and cycle first; the traceback follows
        headline = failure.summary if failure else f"{type(exc).__name__}: {exc}"
        logger.error("%s job crashed: %s", job, headline, exc_info=exc)
        self._journal(job=job, exception=record.get("class"), message=record.get("message"), where=crash_site(record))

    def record_hang(self, job: str, seconds: float) -> None:
        """The watchdog saw ``job`` run for ``seconds``: a crash record with every thread's stack."""
        now = self._now()
        error = JobHangError(f"the {job} job has been running for {seconds:.0f}s, past the watchdog limit")
        stacks = dump_all_thread_stacks()
        self.runstate.set_fail(error, now)
        with self.runstate.lock:
            record = dict(self.runstate.exception or {})
            record["thread_stacks"] = stacks
            self.runstate.exception = record
        self._write(record, now)
        text = "\n".join(f"--- thread {t['name']} ---\n{t['stack']}" for t in stacks["threads"])
        logger.error("watchdog: %s\n%s", error, text)
        self._journal(job=job, exception=record.get("class"), message=str(error), sink=self.hang_journal)

    def _journal(self, sink: EventSink | None = None, **fields: Any) -> None:
        """The ``crashed`` journal line; a journal that cannot be written (full disk, a ledger held by the hung
        job) is logged, not raised over the crash."""
        try:
            (sink or self.journal)("crashed", **fields)
        except Exception as error:  # noqa: BLE001 - see the docstring; crash.json and the log hold the crash
            logger.error("cannot journal the crash: %s", error)

    def _write(self, record: dict[str, Any], now: datetime) -> None:
        """Count the crash and add its record to crash.json; a failure here is logged, never raised over the crash."""
        try:
            history = self.crash_file.record(record, now)  # counts it even when crash.json cannot be written
        except OSError as error:
            logger.error("cannot record the crash in %s or %s: %s", self.crash_file.path, self.crash_file.tally.path,
                         error)
            return
        self.runstate.update(crash_count=history.crash_count)
        logger.debug("crash record:\n%s", format_exception_record(record))


def crash_site(record: dict[str, Any]) -> str | None:
    """``file:line in function`` of the innermost frame of a crash record (where it was raised), or None."""
    frames = record.get("frames") or []
    if not frames:
        return None
    frame = frames[-1]
    return f"{frame.get('filename')}:{frame.get('lineno')} in {frame.get('name')}"


def crash_loop_reason(crash_file: CrashFile, count: int, minutes: float, now: datetime) -> str | None:
    """Why the executor must start in safe mode (``count`` crashes within ``minutes``), or None."""
    if count <= 0:
        return None
    try:
        recent = crash_file.recent_crashes(timedelta(minutes=minutes), now)
    except StateCorruptError as error:
        logger.warning("crash-loop check counts only %s: %s", crash_file.tally.path, error)
        recent = crash_file.tallied_crashes(timedelta(minutes=minutes), now)
    if len(recent) < count:
        return None
    return (f"{len(recent)} crashes within {minutes:g} minutes (see {crash_file.path}); the strategy is not called "
            f"(positions are still managed) until a restart after "
            f"{(recent[-1] + timedelta(minutes=minutes)).isoformat()}")


class Watchdog:
    """A daemon thread that reports a job running past ``seconds`` once, through ``on_hang(job, seconds)``."""

    def __init__(self, seconds: float, on_hang: Callable[[str, float], None], *,
                 monotonic: Callable[[], float] = time.monotonic, poll: float | None = None) -> None:
        self.seconds = seconds
        self.on_hang = on_hang
        self._monotonic = monotonic
        self._poll = poll if poll is not None else min(1.0, max(seconds / 10, 0.01))
        self._lock = threading.Lock()
        self._job: str | None = None
        self._started = 0.0
        self._stopped = threading.Event()
        #: Set once a hang has been reported.
        self.fired = threading.Event()
        self._thread: threading.Thread | None = None

    def job_started(self, job: str) -> None:
        """The loop began ``job``."""
        with self._lock:
            self._job, self._started = job, self._monotonic()

    def job_finished(self) -> None:
        """The loop finished its job."""
        with self._lock:
            self._job = None

    def start(self) -> None:
        """Start watching (no-op when seconds is 0)."""
        if self.seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self._poll):
            with self._lock:
                job, started = self._job, self._started
            if job is None:
                continue
            elapsed = self._monotonic() - started
            if elapsed > self.seconds:
                try:
                    self.on_hang(job, elapsed)
                finally:
                    self.fired.set()
                return
