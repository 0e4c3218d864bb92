"""Parse and reason about durations such as ``1m``, ``4h``, ``1d`` and ``7d``; pure, no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd

from tradeexecutor.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")



def parse_duration(text: str | timedelta) -> timedelta:
    """Turn ``"15m"`` into ``timedelta(minutes=15)``.

    Raises ConfigError naming the bad text, because durations come from people.
    """
    if isinstance(text, timedelta):
        if text <= timedelta(0):
            raise ConfigError(f"duration must be positive, got {text}")
        return text
    match = _PATTERN.match(str(text))
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: use a number and a unit s, m, h, d or w, such as 1m, 4h or 1d"
        )
    count, unit = int(match.group(1)), match.group(2)
    if count <= 0:
        raise ConfigError(f"invalid duration {text!r}: must be greater than zero")
    return timedelta(seconds=count * _UNITS[unit])


def format_duration(delta: timedelta) -> str:
    """Inverse of parse_duration for whole units: ``timedelta(hours=4)`` → ``"4h"``."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds % size == 0 and seconds >= size:
            if unit == "w":
                return f"{seconds // size * 7}d"
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def to_pandas_frequency(delta: timedelta) -> str:
    """A pandas offset alias for a duration, for resampling and date ranges."""
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}D"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_boundary(now: datetime, period: timedelta, offset: timedelta = timedelta(0)) -> datetime:
    """The first time strictly after ``now`` that is a multiple of ``period`` since the epoch plus ``offset``.

    A 1h period with an 8 minute offset gives HH:08 UTC.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    elapsed = now - _EPOCH - offset
    periods = elapsed // period
    candidate = _EPOCH + offset + (periods + 1) * period
    return candidate


def floor_boundary(now: datetime, period: timedelta, offset: timedelta = timedelta(0)) -> datetime:
    """The latest boundary at or before ``now``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    elapsed = now - _EPOCH - offset
    return _EPOCH + offset + (elapsed // period) * period


def utc_timestamp(value: str | datetime | pd.Timestamp) -> pd.Timestamp:
    """A timezone-aware UTC pandas Timestamp from text, datetime or Timestamp."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        return stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC")


def parse_time(text: str, what: str) -> pd.Timestamp:
    """A date or time people gave (``--start``, ``environment.end``, …) as a UTC Timestamp.

    Raises ConfigError in one line naming ``what`` and the text, why pandas refused it, and what
    to write instead — never pandas' own traceback.
    """
    try:
        return utc_timestamp(text)
    except (ValueError, TypeError, OverflowError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{what} {text!r} is not a date or time ({reason}); use ISO 8601 such as 2012-01-31 "
                          "or 2012-01-31T12:00 (UTC unless it says otherwise)") from None
