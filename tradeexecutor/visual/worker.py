"""The chart renderer's child process: takes deltas, keeps the series, answers with every chart's bytes.

Started by :class:`~tradeexecutor.visual.renderer.ChartRenderer` as
``python -m tradeexecutor.visual.worker FD``, where FD is its end of a socket pair carrying
``multiprocessing.connection`` messages:

- it first sends ``("ready", pid, cpus)`` once matplotlib is imported (the import is most of a
  start);
- then, for each :class:`~tradeexecutor.visual.series.ChartDelta` received, it applies it to its
  :class:`~tradeexecutor.visual.series.SeriesBuilder`, draws every chart with
  :func:`~tradeexecutor.visual.charts.render_series` and sends ``("images", images, cpu_seconds, pid)``;
- ``None``, or the parent going away (end of file), ends it.

A failure inside a render is sent as ``("error", traceback)``; the parent then starts a new
child, so no half-applied series is drawn again. The child runs on the CPUs the executor is not
pinned to (``daemon/affinity.py``), when the machine has any (see renderer.py for why).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection

__all__ = ["main"]

def _allowed_cpus() -> set[int]:
    """Every CPU this process may run on (Linux): its inherited pin widened to what the cpuset allows."""
    try:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # the kernel keeps it inside the cpuset
    except OSError:
        pass
    return set(os.sched_getaffinity(0))


def _step_aside(allowed: set[int]) -> set[int]:
    """Run on the CPUs the executor (our parent) is not pinned to, when there are any; the CPUs chosen.

    Checked before each render, since the executor moves to a quieter CPU now and then.
    """
    try:
        parent = os.sched_getaffinity(os.getppid())
    except OSError:
        parent = set()
    chosen = (allowed - parent) or allowed
    if chosen != os.sched_getaffinity(0):
        try:
            os.sched_setaffinity(0, chosen)
        except OSError:
            pass
    return chosen


def main(argv: list[str]) -> int:
    """Serve render requests on the connection whose descriptor is ``argv[0]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group: the executor stops us
    connection = Connection(int(argv[0]))
    pinning = hasattr(os, "sched_setaffinity")
    allowed = _allowed_cpus() if pinning else set()
    cpus = _step_aside(allowed) if pinning else set()
    from tradeexecutor.visual.charts import render_series  # matplotlib: the slow part of starting
    from tradeexecutor.visual.series import SeriesBuilder

    builder = SeriesBuilder()
    connection.send(("ready", os.getpid(), sorted(cpus)))
    while True:
        try:
            delta = connection.recv()
        except (EOFError, OSError):
            return 0
        if delta is None:
            return 0
        if pinning:
            _step_aside(allowed)
        try:
            started = time.process_time()  # CPU, not wall, time: a busy machine stretches the wall time
            builder.apply(delta)
            images = render_series(builder.series())
            reply: tuple[object, ...] = ("images", images, time.process_time() - started, os.getpid())
        except Exception:  # noqa: BLE001 - reported to the parent, which logs it and starts a fresh child
            reply = ("error", traceback.format_exc())
        try:
            connection.send(reply)
        except OSError:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
