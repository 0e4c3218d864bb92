"""Binance's request-weight limit per IP: a budget per clock minute, 429 past it, a 418 ban for those who keep going.

Every API request costs a weight (Binance's figures, e.g. 20 for exchangeInfo, 1 for a new
order). When an IP's weight in the current minute would pass the limit the request is refused
with 429 and ``Retry-After`` (seconds to the next minute); an IP that sends ``ban_after`` more
requests while limited is banned (418) for ``ban_seconds``. Several executors on one machine
share one IP, 127.0.0.1, as a fleet behind one address shares Binance's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeexecutor.exchange_sim import errors

_MINUTE_MS = 60_000


@dataclass
class _Usage:
    window_ms: int = 0
    used: int = 0
    refused: int = 0
    banned_until_ms: int = 0


class WeightLimiter:
    """Request weight per IP and minute; not thread-safe (the simulator holds its lock)."""

    def __init__(self, limit: int, ban_after: int, ban_seconds: int):
        #: Weight an IP may use per minute.
        self.limit = limit
        #: Requests an IP may send while limited before it is banned.
        self.ban_after = ban_after
        #: How long a ban lasts.
        self.ban_seconds = ban_seconds
        self._usage: dict[str, _Usage] = {}

    def reset(self) -> None:
        """Forget every IP's usage and bans."""
        self._usage = {}

    def charge(self, ip: str, weight: int, now_ms: int) -> int:
        """Count ``weight`` for ``ip``; the weight used this minute, or the 429/418 BinanceError."""
        usage = self._usage.setdefault(ip, _Usage())
        if now_ms < usage.banned_until_ms:
            raise errors.banned(usage.banned_until_ms, -(-(usage.banned_until_ms - now_ms) // 1000))
        window = now_ms - now_ms % _MINUTE_MS
        if window != usage.window_ms:
            usage.window_ms, usage.used, usage.refused = window, 0, 0
        if usage.used + weight > self.limit:
            usage.refused += 1
            if usage.refused > self.ban_after:
                usage.banned_until_ms = now_ms + self.ban_seconds * 1000
                raise errors.banned(usage.banned_until_ms, self.ban_seconds)
            raise errors.rate_limited(self.limit, -(-(window + _MINUTE_MS - now_ms) // 1000))
        usage.used += weight
        return usage.used

    def used(self, ip: str, now_ms: int) -> int:
        """Weight ``ip`` used in the current minute."""
        usage = self._usage.get(ip)
        if usage is None or usage.window_ms != now_ms - now_ms % _MINUTE_MS:
            return 0
        return usage.used
