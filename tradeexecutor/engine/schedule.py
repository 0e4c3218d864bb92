"""Which timeline steps end a strategy cycle, computed once for a whole backtest with numpy."""

from __future__ import annotations

from datetime import timedelta

import numpy as np


def cycle_times(timeline_ns: np.ndarray, period: timedelta, offset: timedelta = timedelta(0)) -> np.ndarray:
    """For each step, the cycle time (ns) when a cycle runs right after it, else 0.

    Cycles fire at ``k * period + offset``. The cycle at boundary B runs after the last step whose
    close time is at or before B, and sees exactly the bars closed by B. A boundary with no bar
    closing since the previous cycle is skipped (nothing new to decide on), and a final boundary
    after the end of the data does not run.
    """
    period_ns = int(period.total_seconds() * 1_000_000_000)
    offset_ns = int(offset.total_seconds() * 1_000_000_000)
    if len(timeline_ns) == 0:
        return np.zeros(0, dtype=np.int64)
    # One column worked in place, then the result: two arrays of a step each where the expressions made seven
    # (a 1M-bar run paid more for their fresh pages than for the arithmetic).
    boundaries = timeline_ns.astype(np.int64)  # a copy, as the expressions' first step made
    boundaries -= offset_ns
    np.negative(boundaries, out=boundaries)
    np.floor_divide(boundaries, period_ns, out=boundaries)
    np.negative(boundaries, out=boundaries)  # ceiling division: the cycle of the boundary at or after each step
    last_of_group = np.ones(len(timeline_ns), dtype=bool)
    np.not_equal(boundaries[1:], boundaries[:-1], out=last_of_group[:-1])
    np.multiply(boundaries, period_ns, out=boundaries)
    np.add(boundaries, offset_ns, out=boundaries)
    result = np.where(last_of_group, boundaries, 0)
    if boundaries[-1] > timeline_ns[-1]:
        result[-1] = 0
    return result


class CycleSchedule:
    """When a cycle runs, worked out one step at a time from the cycle duration: for timelines that grow.

    The same rule as :func:`cycle_times` — the cycle at boundary B runs right after the last step
    closing at or before B — decided with only what is known: a step closing exactly at B ends its
    cycle at once; otherwise the cycle is due once a later step closes after B, or once the feed
    knows every bar that closes by B (``known_until_ns`` ≥ B: the clock has passed the boundary).
    Over a timeline known in full it gives exactly ``cycle_times``.
    """

    __slots__ = ("offset_ns", "period_ns")

    def __init__(self, period: timedelta, offset: timedelta = timedelta(0)) -> None:
        self.period_ns = int(period.total_seconds() * 1_000_000_000)
        self.offset_ns = int(offset.total_seconds() * 1_000_000_000) % self.period_ns

    def boundary(self, time_ns: int) -> int:
        """The cycle boundary at or after ``time_ns``."""
        shifted = time_ns - self.offset_ns
        return -((-shifted) // self.period_ns) * self.period_ns + self.offset_ns

    def due(self, timeline_ns: np.ndarray, step: int, known_until_ns: int | None = None) -> int:
        """The cycle time (ns) when a cycle runs right after ``step``, else 0."""
        boundary = self.boundary(int(timeline_ns[step]))
        if step + 1 < len(timeline_ns):
            return boundary if int(timeline_ns[step + 1]) > boundary else 0
        if int(timeline_ns[step]) == boundary or (known_until_ns is not None and known_until_ns >= boundary):
            return boundary
        return 0
