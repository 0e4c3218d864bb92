"""HealthWatch: applies the /healthz rule every few seconds and journals nothing, but reports each change.

The loop cannot notice that it is late — a stuck or starved loop is exactly what the health rule
catches — so a small daemon thread of its own reads RunState snapshots (as the webhook does)
and applies the same rule (``runstate.health``). A change from healthy to unhealthy is reported
once as ``health_degraded`` with the reasons, the way back as ``health_recovered``; both are
logged and handed to the notifier. Only a *running* executor is judged: starting, stopping,
completing and crashing have notifications of their own, and must not read as degraded health.
Neither do safe mode and a risk pause: each already sends its own message (``safe_mode``,
``risk_limit_hit``), and a second "health degraded" for the same event taught operators to ignore
one of them. They still make /healthz answer 503, and they are listed among the reasons when
something else degrades health at the same time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from tradeexecutor.runstate import HealthLimits, RunState, RunStatus, assess_health

__all__ = ["HealthWatch"]

logger = logging.getLogger("tradeexecutor.daemon")


class HealthWatch:
    """Reports health changes of a running executor through ``notify(event, level, fields)``."""

    def __init__(self, runstate: RunState, limits: HealthLimits, notify: Callable[[str, str, Mapping[str, Any]], None],
                 now: Callable[[], datetime], *, poll_seconds: float = 5.0) -> None:
        self.runstate = runstate
        self.limits = limits
        self.notify = notify
        self._now = now
        self.poll_seconds = poll_seconds
        #: The last health reported (a running executor starts healthy).
        self.healthy = True
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Judge one snapshot; report when health changed since the last check."""
        snapshot = self.runstate.snapshot()
        if snapshot.status is not RunStatus.running:
            return
        now = self._now()
        verdict = assess_health(snapshot, self.limits, now)
        if not verdict.healthy and assess_health(replace(snapshot, safe_mode=False, risk_paused=False),
                                                 self.limits, now).healthy:
            verdict = replace(verdict, healthy=True)  # only reasons notified on their own (module docstring)
        if verdict.healthy == self.healthy:
            return
        self.healthy = verdict.healthy
        if verdict.healthy:
            logger.info("health recovered")
            self.notify("health_recovered", "info", {})
        else:
            logger.warning("health degraded: %s", "; ".join(verdict.reasons))
            self.notify("health_degraded", "warning", {"reasons": list(verdict.reasons)})

    def start(self) -> None:
        """Check every ``poll_seconds`` on a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="health-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop checking."""
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self.poll_seconds):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a watch that dies silently would be worse than a logged bug
                logger.exception("health watch check failed")
