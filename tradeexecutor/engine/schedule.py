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
    shifted = timeline_ns.astype(np.int64) - offset_ns
    cycle_id = -((-shifted) // period_ns)  # ceiling division: the boundary at or after each step
    result = np.zeros(len(timeline_ns), dtype=np.int64)
    if len(timeline_ns) == 0:
        return result
    last_of_group = np.ones(len(timeline_ns), dtype=bool)
    last_of_group[:-1] = cycle_id[1:] != cycle_id[:-1]
    boundaries = cycle_id * period_ns + offset_ns
    result[last_of_group] = boundaries[last_of_group]
    if boundaries[-1] > timeline_ns[-1]:
        result[-1] = 0
    return result
