"""Where sweep points run: in this process, in a pool of local processes (the default), or on an existing Dask cluster.

All three take the sweep's :class:`~tradeexecutor.runs.sweep_eval.SweepData` once and then only
``(index, values)`` per point, and hand back rows as points finish:

- :class:`InProcess` — one process, no pool: nothing to start, nothing to send.
- :class:`LocalPool` — this process and a ``ProcessPoolExecutor`` of the others; on Linux its workers are forked after the data
  is loaded, so they inherit it and nothing is sent at all (elsewhere each worker receives it
  once, through its initializer). Workers ignore SIGINT: Ctrl+C is the parent's to handle, and
  :meth:`LocalPool.close` stops them. A worker that dies loses only the points it held; they
  come back as ``lost`` rows, which ``--resume`` runs again.
- :class:`~tradeexecutor.runs.sweep_dask.DaskCluster` — ``--cluster``: in its own module, imported
  only then, so the default needs no extra (:func:`require_distributed` names it when missing).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.sweep_eval import PointResult, SweepData, evaluate, one_line

__all__ = ["INSTALL_HINT", "Executor", "InProcess", "LocalPool", "process_context", "require_distributed",
           "worker_data"]

INSTALL_HINT = 'pip install "tradeexecutor[distributed]"'
T = TypeVar("T")


class Executor(Protocol):
    """Runs points and hands back their rows as they finish."""

    #: "1 process", "2 processes", "Dask cluster tcp://... (4 workers)".
    description: str

    def submit(self, index: int, values: Mapping[str, Any]) -> None: ...

    def results(self) -> Iterator[PointResult]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# In this process


class InProcess:
    """Points run one after the other in this process."""

    def __init__(self, data: SweepData) -> None:
        self.data = data
        self.description = "1 process"
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()

    def submit(self, index: int, values: Mapping[str, Any]) -> None:
        self._queue.append((index, dict(values)))

    def results(self) -> Iterator[PointResult]:
        while self._queue:
            index, values = self._queue.popleft()
            yield evaluate(self.data, index, values)

    def close(self) -> None:
        self._queue.clear()


# ---------------------------------------------------------------------------------------------
# Local processes

#: The sweep data of this worker process (set by the initializer, or inherited through fork).
_DATA: SweepData | None = None


def _start_worker(data: SweepData) -> None:
    global _DATA
    _DATA = data
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group; the parent handles it


def _started() -> None:
    """A worker's first task: nothing, so that the executor starts its processes (see LocalPool)."""


def _evaluate_in_worker(index: int, values: dict[str, Any]) -> PointResult:
    return evaluate(worker_data(), index, values)


def worker_data() -> SweepData:
    """The sweep data of this pool worker process."""
    assert _DATA is not None, "worker started without sweep data"
    return _DATA


def process_context() -> Any:
    """fork on Linux (workers inherit the data and every import), spawn elsewhere."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class LocalPool:
    """Points run in ``processes`` local processes: this one and ``processes - 1`` pool workers.

    This process evaluates points too, from the far end of the queue, while the workers start and
    between their results: a pool's start-up (forking, the first result back: ~0.2 s) is about
    what a second worker saves on a 20-point grid, so with the parent idle two processes lost to
    one. The workers get at most :data:`IN_FLIGHT` points each at a time, so the parent's share
    follows their pace. A point's row does not depend on where it ran (its fingerprints prove it).
    """

    #: Points handed to each worker ahead of its results.
    IN_FLIGHT = 2

    def __init__(self, data: SweepData, processes: int) -> None:
        self.description = f"{processes} processes"
        self.data = data
        self._workers = max(1, processes - 1)
        self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=process_context(),
                                         initializer=_start_worker, initargs=(data,))
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()
        self._pending: dict[Future[PointResult], tuple[int, dict[str, Any]]] = {}
        # The workers are started now (the executor starts them on its first task), so that they boot while this
        # process writes the sweep's folder and queues the points, not after.
        self._pool.submit(_started)

    def submit(self, index: int, values: Mapping[str, Any]) -> None:
        self._queue.append((index, dict(values)))

    @property
    def workers(self) -> int:
        """The pool's worker processes (this process not counted)."""
        return self._workers

    @property
    def healthy(self) -> bool:
        """False once a worker process has died (the pool takes no more work)."""
        return not getattr(self._pool, "_broken", False)

    def call(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``function(*args)`` in a worker, where :func:`worker_data` is this pool's sweep data (a sweep's
        full runs, after its points: the workers are warm)."""
        return self._pool.submit(function, *args)

    def _feed(self) -> None:
        """Hand queued points to the workers, up to IN_FLIGHT each."""
        while self._queue and len(self._pending) < self.IN_FLIGHT * self._workers:
            index, point = self._queue.popleft()
            try:
                future = self._pool.submit(_evaluate_in_worker, index, point)
            except BrokenProcessPool:
                future = Future()
                future.set_exception(BrokenProcessPool("the pool lost a worker process"))
            self._pending[future] = (index, point)

    def _finished(self, futures: Iterable[Future[PointResult]]) -> Iterator[PointResult]:
        for future in futures:
            index, values = self._pending.pop(future)
            try:
                yield future.result()
            except BrokenProcessPool as exc:
                yield PointResult(index, values, "lost", None,
                                  error=f"a worker process died while running it ({one_line(exc)})")

    def results(self) -> Iterator[PointResult]:
        while self._queue or self._pending:
            self._feed()
            yield from self._finished([future for future in self._pending if future.done()])
            if self._queue:  # the workers are busy: this process takes a point from the far end
                index, values = self._queue.pop()
                yield evaluate(self.data, index, values)
            elif self._pending:
                done, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
                yield from self._finished(done)

    def close(self) -> None:
        """Cancel what has not started and stop the workers (a running point is abandoned, not waited for)."""
        self._pending.clear()
        self._queue.clear()
        processes = list(getattr(self._pool, "_processes", {}).values())  # the executor offers no terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# The Dask cluster's extra


def require_distributed() -> Any:
    """The distributed module; ConfigError naming the extra when it is not installed."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--cluster needs Dask's distributed package, which is not installed: {INSTALL_HINT}") \
            from None
    return distributed
