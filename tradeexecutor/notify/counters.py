"""Counts of what happened to notifications, per channel and kind, for /metrics; thread-safe.

Outcomes: ``sent`` and ``failed`` (the channel answered, or did not), ``dropped`` (a full queue,
or still queued or being sent when shutdown's deadline passed) per channel; ``suppressed`` (held back by the
rate limit, so counted once, not per channel) with the channel ``""``.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["OUTCOMES", "NotifyCounters"]

#: Every outcome a notification can have.
OUTCOMES: tuple[str, ...] = ("sent", "failed", "dropped", "suppressed")


class NotifyCounters:
    """``(channel, kind, outcome) → count``, only ever growing."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, channel: str, kind: str, outcome: str, count: int = 1) -> None:
        """Count ``count`` notifications of ``kind`` with ``outcome`` on ``channel``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown notification outcome {outcome!r}")
        with self._lock:
            self._counts[(channel, kind, outcome)] += count

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        """A copy of every count so far."""
        with self._lock:
            return dict(self._counts)
