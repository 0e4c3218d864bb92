"""RequestGate: the one door every exchange request passes, shut while the exchange asked us to wait (429, 418).

Binance answers 429 with ``Retry-After`` when an address sends too much, and bans an address that
keeps going with 418 — for minutes at first, for days when it goes on. ccxt's own rate limiter
spaces requests but does not remember a ban, so after a 418 the next cycle would ask again and
make the ban longer. The gate remembers: until the time the exchange gave, every call fails at
once with ``RateLimitedError`` and no request leaves the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tradeexecutor.venue.ccxt_errors import RateLimitedError

__all__ = ["RequestGate"]


class RequestGate:
    """Shut until a time the exchange gave; ``check`` before every request."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._clock = clock
        self._open_at = 0.0
        self._reason = ""
        #: Seconds the exchange has had us hold requests back (429/418) since start-up, for /metrics.
        self.held_back_total = 0.0

    def check(self) -> None:
        """Return when a request may be sent; RateLimitedError (a TemporaryError) while the gate is shut."""
        left = self._open_at - self._clock()
        if left > 0:
            raise RateLimitedError(f"{self.name}: {self._reason}; no request for another {left:.0f} s", left)

    def shut(self, seconds: float, reason: str) -> None:
        """Hold every request back for ``seconds`` (kept if an earlier shut lasts longer)."""
        now = self._clock()
        until = max(self._open_at, now + max(0.0, seconds))
        self.held_back_total += until - max(self._open_at, now)  # only the part not already held back
        self._open_at = until
        self._reason = reason

    @property
    def seconds_left(self) -> float:
        """Seconds until the gate opens (0 when open), for /status."""
        return max(0.0, self._open_at - self._clock())
