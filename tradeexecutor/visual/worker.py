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

Memory. After each answer the child frees the render's garbage at once (:func:`release_memory`):
a matplotlib figure is a web of reference cycles (figure, canvas, axes, artists, the Agg
renderer with its 3.7 MiB pixel buffer), which only the cyclic garbage collector frees, and it
ran too seldom for a process that makes four figures a render; then glibc kept the freed heap.
Without it the child's RSS rose from 55 to 127 MiB in the 30-minute soak (and past 180 MiB in
15 renders of a day of history); with it the child stays near its size after the first render
(``docs/benchmarks.md``, "Chart renderer memory").
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradeexecutor.visual.series import ChartDelta, SeriesBuilder

__all__ = ["main", "release_memory", "render_once"]


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, which hands freed heap pages back to the system; None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Free the last render's figures now (they are reference cycles) and return the freed heap to the system.

    After ``gc.freeze()`` of the imports (``main``), a full collection costs 6-18 ms of CPU
    against a render's 0.6 s (50-65 ms without the freeze); trimming, under a millisecond.
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def render_once(builder: SeriesBuilder, delta: ChartDelta) -> tuple[object, ...]:
    """Apply ``delta`` and draw every chart: the answer to send (then :func:`release_memory`, as ``main`` does)."""
    from tradeexecutor.visual.charts import render_series  # matplotlib: imported once, by main, before the first

    try:
        started = time.process_time()  # CPU, not wall, time: a busy machine stretches the wall time
        builder.apply(delta)
        images = render_series(builder.series())
        reply: tuple[object, ...] = ("images", images, time.process_time() - started, os.getpid())
    except Exception:  # noqa: BLE001 - reported to the parent, which logs it and starts a fresh child
        reply = ("error", traceback.format_exc())
    return reply


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
    import tradeexecutor.visual.charts  # noqa: F401 - matplotlib: the slow part of starting, done before "ready"
    from tradeexecutor.visual.series import SeriesBuilder

    gc.collect()
    gc.freeze()  # the imports' 75k objects live as long as we do: each render's full collection skips them

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
        reply = render_once(builder, delta)
        try:
            connection.send(reply)
        except OSError:
            return 0
        del reply, delta  # the images: freed now, not kept through the next render
        release_memory()  # after the answer: the executor does not wait for it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
