"""Which notifications go out: per-event switches, then one message per kind and subject per cool-down window.

A flapping exchange or health check produces hundreds of similar events. The first one of a kind
and subject is sent and opens a window of ``cooldown_seconds``; the similar ones inside the
window are only counted (the newest kept). When the window ends, :meth:`Policy.due` returns one
digest — "N more similar events suppressed", with the newest — and, if there was anything to
report, a fresh window begins, so a fault that keeps flapping sends one digest per window: at
most ``1 + duration / cooldown`` messages per kind and subject, however fast it flaps. A window
that ends quiet is forgotten, and the next event is sent at once.

Time comes from an injected ``monotonic`` clock so tests drive windows without waiting. Safe
to call from several threads (the loop and the health watch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tradeexecutor.notify.message import Message, digest_message

__all__ = ["Decision", "Policy"]


@dataclass
class _Window:
    """One open cool-down window of a kind and subject."""

    opened_at: float
    suppressed: int = 0
    last: Message | None = None


class Decision(StrEnum):
    """What the policy did with a message."""

    #: Send it now.
    send = "send"
    #: Its kind is switched off.
    off = "off"
    #: Similar to one sent within the window: counted for the digest.
    suppressed = "suppressed"


class Policy:
    """Switches and rate limit; see the module docstring."""

    def __init__(self, events: frozenset[str], cooldown_seconds: float, monotonic: Callable[[], float]) -> None:
        self.events = events
        self.cooldown_seconds = cooldown_seconds
        self._monotonic = monotonic
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def decide(self, message: Message) -> Decision:
        """Send it now, or not (switched off, or similar to one sent within the window)."""
        if message.kind not in self.events:
            return Decision.off
        if self.cooldown_seconds <= 0:
            return Decision.send
        key = (message.kind, message.subject)
        now = self._monotonic()
        with self._lock:
            window = self._windows.get(key)
            if window is None or (now - window.opened_at >= self.cooldown_seconds and window.suppressed == 0):
                self._windows[key] = _Window(opened_at=now)
                return Decision.send
            window.suppressed += 1
            window.last = message
            return Decision.suppressed

    def due(self) -> list[Message]:
        """Digests of the windows that have ended; quiet windows are forgotten."""
        now = self._monotonic()
        digests: list[Message] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if now - window.opened_at < self.cooldown_seconds:
                    continue
                if window.suppressed and window.last is not None:
                    digests.append(digest_message(window.last, window.suppressed, self.cooldown_seconds))
                    self._windows[key] = _Window(opened_at=now)
                else:
                    del self._windows[key]
        return digests

    def drain(self) -> list[Message]:
        """Digests of every window with something suppressed, ended or not (shutdown); forgets all windows."""
        with self._lock:
            windows, self._windows = self._windows, {}
        return [digest_message(w.last, w.suppressed, self.cooldown_seconds)
                for w in windows.values() if w.suppressed and w.last is not None]
