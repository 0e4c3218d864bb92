"""Outage: a temporary failure at the loop boundary — retried with capped backoff, shown, never counted as a crash.

A job that raises :class:`~tradeexecutor.errors.TemporaryError` (the network, a timeout, a 5xx, a
429 or 418, exchange maintenance: ``venue/ccxt_errors.py`` maps ccxt's classes to it) changed
nothing durable — its uncommitted changes die with the job, as for a crash — but it is not a bug:
the loop keeps running, the job is tried again after a backoff that doubles from
``first_seconds`` up to ``cap_seconds`` (or longer when the exchange named a ``retry_after``),
and scheduled ticks of that job arriving before then are deferred (a cycle's boundary that passes
meanwhile is journaled as missed). Nothing of it touches crash.json or its tally, so an outage
never puts the executor into crash-loop safe mode.

This object only keeps the books (since when, how many retries, the last error's class and
scrubbed message, when the next try is due) and mirrors them into RunState's ``outage`` field,
which /status shows, /metrics exports and the health rule turns into a 503 after
``--outage-grace-seconds`` (``runstate/health.py``). The loop journals its start, the missed
boundaries and its end (``daemon/loop.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tradeexecutor.runstate import RunState
from tradeexecutor.venue.ccxt_errors import scrub

__all__ = ["Outage", "OutageRecord"]

logger = logging.getLogger("tradeexecutor.daemon")


@dataclass
class OutageRecord:
    """One outage in progress: the job being retried and what went wrong."""

    #: The job that failed and is retried (``cycle``, ``triggers``, ``revaluation``, ...).
    job: str
    #: When its first failure happened.
    since: datetime
    #: Failed tries after the first.
    retries: int
    #: The last error's class name and its message, scrubbed of query strings and secrets.
    error_class: str
    error: str
    #: When the job is tried again.
    next_retry_at: datetime

    def as_json(self) -> dict[str, Any]:
        """What /status shows (``outage``) and the health rule reads."""
        return {"job": self.job, "since": self.since.isoformat(), "retries": self.retries,
                "error_class": self.error_class, "error": self.error,
                "next_retry_at": self.next_retry_at.isoformat()}


class Outage:
    """The books of the temporary failure the loop is retrying, if any (the loop's thread only)."""

    def __init__(self, runstate: RunState, now: Callable[[], datetime], *, first_seconds: float = 1.0,
                 cap_seconds: float = 60.0) -> None:
        self.runstate = runstate
        self._now = now
        self.first_seconds = first_seconds
        self.cap_seconds = cap_seconds
        #: The outage in progress, None while every job succeeds.
        self.current: OutageRecord | None = None
        #: Temporary failures of this process, all outages together (for /metrics).
        self.failures = 0

    def failed(self, job: str, error: BaseException) -> tuple[OutageRecord, bool]:
        """Book a temporary failure of ``job``; returns the record and whether it began an outage."""
        now = self._now()
        self.failures += 1
        message = scrub(str(error))
        if self.current is not None and self.current.job != job:
            # Another job failing during the outage: its error is the latest news; the retried job keeps its pace.
            self.current = replace(self.current, error_class=type(error).__name__, error=message)
            logger.warning("%s job failed temporarily too (%s: %s) while the %s job is retried", job,
                           type(error).__name__, message, self.current.job)
            self._publish()
            return self.current, False
        began = self.current is None
        retries = 0 if self.current is None else self.current.retries + 1
        delay = min(self.cap_seconds, self.first_seconds * 2 ** min(retries, 30))
        retry_after = getattr(error, "retry_after", None)  # a 429/418 names when requests may resume
        if isinstance(retry_after, (int, float)) and retry_after > delay:
            delay = float(retry_after)
        since = now if self.current is None else self.current.since
        self.current = OutageRecord(job=job, since=since,
                                    retries=retries, error_class=type(error).__name__, error=message,
                                    next_retry_at=now + timedelta(seconds=delay))
        logger.warning("%s job failed temporarily (%s: %s); retrying in %.1f s (retry %d, failing since %s)",
                       job, type(error).__name__, message, delay, retries, since.isoformat())
        self._publish()
        return self.current, began

    def holds(self, job: str) -> bool:
        """True when a scheduled tick of ``job`` must wait: it is the job being retried and its retry is not due."""
        return self.current is not None and self.current.job == job and self._now() < self.current.next_retry_at

    def due(self) -> str | None:
        """The job to try again now, or None (no outage, or its backoff has not run out)."""
        if self.current is not None and self._now() >= self.current.next_retry_at:
            return self.current.job
        return None

    def succeeded(self, job: str) -> OutageRecord | None:
        """``job`` ran through: when it was the one being retried, the outage is over (returned), else None."""
        if self.current is None or self.current.job != job:
            return None
        ended, self.current = self.current, None
        logger.info("%s job recovered after %.1f s and %d retries", job,
                    (self._now() - ended.since).total_seconds(), ended.retries)
        self._publish()
        return ended

    def _publish(self) -> None:
        self.runstate.update(outage=None if self.current is None else self.current.as_json(),
                             temporary_failures=self.failures)
