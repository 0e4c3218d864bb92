"""ChartRenderer: draws the loop's charts in a child process, so matplotlib never holds the loop's interpreter lock.

Why a process. Drawing the eight chart images costs about 0.6 s of Python (matplotlib's artists,
Agg, the SVG writer). On the loop's thread that made 1-second cycles start 2.6-3.7 s late every
chart interval; on another thread of the executor it would still hold the interpreter lock the
loop needs at each cycle boundary. A child process has an interpreter of its own.

How. When charts are due and the renderer is idle, the loop hands :meth:`ChartRenderer.submit`
a :class:`~tradeexecutor.visual.series.ChartDelta` (what changed since the last one) and goes on
at once. A thread of this process (``chart-renderer``) sends it to the child
(``visual/worker.py``), waits for the images and gives them to ``on_images`` with the time they
took. The child keeps its copy of the series, so a delta stays as small as what changed.

Failures never reach the loop. A child that dies, fails, or takes longer than ``timeout``
seconds (a hang: it is killed) is logged and reported through ``on_failure`` (the daemon marks
the charts stale); :attr:`needs_full` then asks the loop for a complete delta, and the next
:meth:`submit`, at least ``restart_seconds`` later, starts a new child. The loop waits for the
renderer only at the end of a run (:meth:`wait_idle`, bounded), for the final charts.

CPU. The child moves itself to the CPUs the executor's threads are not pinned to
(``daemon/affinity.py``), checking again before each render since the executor moves now and
then; on a one-CPU machine it shares. At normal priority: at ``nice`` +10 a busy machine starved
it of every render. The chart interval keeps it under a quarter of a CPU (``docs/benchmarks.md``).
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tradeexecutor.visual.series import ChartDelta

__all__ = ["ChartRenderer", "Images"]

logger = logging.getLogger("tradeexecutor.visual")

#: Chart images by (size, theme, format), as render_all returns them.
Images = dict[tuple[str, str, str], bytes]

#: The package's parent folder, put first on the child's PYTHONPATH so it imports this very code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _Failure(Exception):
    """The child failed, died or hung; the message says which."""


class _Child:
    """One running worker process and our end of its connection."""

    def __init__(self, start_timeout: float) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tradeexecutor.visual.worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
            )
        except OSError as exc:
            ours.close()
            raise _Failure(f"cannot start the chart renderer: {exc}") from exc
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self.pid = self.process.pid
        reply = self.receive(start_timeout, "start")
        if not (isinstance(reply, tuple) and reply and reply[0] == "ready"):
            self.kill()
            raise _Failure(f"the chart renderer (pid {self.pid}) started with an unexpected message")
        #: The CPUs the child runs on.
        self.cpus: list[int] = list(reply[2])

    def receive(self, timeout: float, what: str) -> Any:
        """The next message, within ``timeout`` seconds; _Failure when none came or the child is gone."""
        try:
            if not self.connection.poll(timeout):
                self.kill()
                raise _Failure(f"the chart renderer (pid {self.pid}) did not {what} within {timeout:g} s; killed it")
            return self.connection.recv()
        except (EOFError, OSError) as exc:
            code = self.process.poll()
            raise _Failure(f"the chart renderer (pid {self.pid}) is gone"
                           + (f" (exit code {code})" if code is not None else f": {exc}")) from None

    def send(self, message: object) -> None:
        try:
            self.connection.send(message)
        except OSError as exc:
            code = self.process.poll()
            raise _Failure(f"the chart renderer (pid {self.pid}) is gone"
                           + (f" (exit code {code})" if code is not None else f": {exc}")) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self, timeout: float) -> None:
        """Ask the child to leave, kill it if it does not, and close our end."""
        try:
            self.connection.send(None)
            self.process.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self.connection.close()


class ChartRenderer:
    """Renders chart deltas in a child process (see the module docstring); ``submit`` never blocks."""

    def __init__(self, on_images: Callable[[Images, float], None], *,
                 on_failure: Callable[[str], None] | None = None,
                 on_idle: Callable[[], None] | None = None, timeout: float = 120.0,
                 restart_seconds: float = 30.0, start_timeout: float = 120.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        #: Receives every set of images and the CPU seconds the child took (called on the renderer's thread).
        self.on_images = on_images
        #: Receives why the charts went stale (called on the renderer's thread).
        self.on_failure = on_failure
        #: Called on the renderer's thread each time it becomes idle (started, or a render done or failed).
        self.on_idle = on_idle
        #: Seconds a render may take before the child is taken for hung and killed.
        self.timeout = timeout
        #: Least seconds between a failure and the next child.
        self.restart_seconds = restart_seconds
        #: Seconds a new child may take to import matplotlib and say it is ready.
        self.start_timeout = start_timeout
        #: CPU seconds the last render took in the child (0 before the first).
        self.last_cost = 0.0
        #: The loop must send everything again: the child that held the series is gone.
        self.needs_full = False
        #: Why the charts are stale, None while the last render succeeded.
        self.failure: str | None = None
        self._monotonic = monotonic
        self._failed_at: float | None = None
        self._inbox: queue.SimpleQueue[ChartDelta | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._child: _Child | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the loop's side ---------------------------------------------------------------------

    def start(self) -> ChartRenderer:
        """Start the renderer's thread, which starts the child at once (so it is ready for the first cycle)."""
        if self._thread is None:
            self._idle.clear()
            self._thread = threading.Thread(target=self._run, name="chart-renderer", daemon=True)
            self._thread.start()
        return self

    @property
    def idle(self) -> bool:
        """True when a delta may be submitted: nothing in flight, not closed, not waiting to restart."""
        if self._closed or not self._idle.is_set():
            return False
        return self._failed_at is None or self._monotonic() - self._failed_at >= self.restart_seconds

    def submit(self, delta: ChartDelta) -> bool:
        """Hand ``delta`` to the renderer's thread; False (and nothing done) when not idle. Never blocks."""
        if not self.idle:
            return False
        self.needs_full = False  # the loop cut this delta knowing needs_full: it is complete if it had to be
        self._idle.clear()
        self._inbox.put(delta)
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the render in flight; True when none is left."""
        return self._idle.wait(timeout)

    @property
    def pid(self) -> int | None:
        """The child's process id, None while there is none."""
        child = self._child
        return child.pid if child is not None else None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child and the renderer's thread (a render in flight is abandoned)."""
        if self._closed:
            return
        self._closed = True
        child = self._child
        if child is not None and not self._idle.is_set():
            child.kill()  # unblock the thread stuck on a render
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the renderer's thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._guard(self._spawn)
            self._become_idle()
            while True:
                delta = self._inbox.get()
                if delta is None:
                    break
                self._guard(functools.partial(self._render, delta))
                self._become_idle()
        finally:
            if self._child is not None:
                self._child.close(timeout=2.0)
                self._child = None

    def _become_idle(self) -> None:
        self._idle.set()
        if self.on_idle is not None and not self._closed:
            try:
                self.on_idle()
            except Exception:  # noqa: BLE001 - a callback's bug must not end the renderer
                logger.exception("chart renderer: on_idle failed")

    def _guard(self, work: Callable[[], object]) -> None:
        """Run ``work``; a failure is logged, reported and leaves no child behind."""
        try:
            work()
        except _Failure as failure:
            if self._closed:  # close() killed the child mid-render: not a failure
                return
            self._fail(str(failure))
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave the thread dead and charts silent
            logger.exception("chart renderer thread failed")
            self._fail(f"the chart renderer failed: {type(exc).__name__}: {exc}")

    def _spawn(self) -> _Child:
        if self._child is None:
            started = time.perf_counter()
            self._child = _Child(self.start_timeout)
            logger.debug("chart renderer started: pid %d on CPU(s) %s in %.1f s", self._child.pid,
                        ",".join(map(str, self._child.cpus)) or "any", time.perf_counter() - started)
        return self._child

    def _render(self, delta: ChartDelta) -> None:
        child = self._spawn()
        submitted = time.perf_counter()
        fired = threading.Event()

        def kill_on_timeout() -> None:
            fired.set()  # before the kill: the reset it causes must read as the timeout it is
            child.kill()

        killer = threading.Timer(self.timeout, kill_on_timeout)  # a child stuck mid-send is unblocked too
        killer.daemon = True
        killer.start()
        try:
            child.send(delta)
            reply = child.receive(self.timeout, "answer")
        except _Failure:
            if not fired.is_set():
                raise
            raise _Failure(f"the chart renderer (pid {child.pid}) did not answer within {self.timeout:g} s; "
                           "killed it") from None
        finally:
            killer.cancel()
        if reply[0] == "error":
            child.kill()
            text = str(reply[1]).strip()
            logger.error("chart renderer (pid %d) failed:\n%s", child.pid, text)
            raise _Failure(f"the chart renderer failed: {text.splitlines()[-1] if text else 'no reason given'}")
        _, images, cost, _pid = reply
        self.last_cost = float(cost)
        logger.debug("charts drawn by pid %d: %.2f s of CPU, %.2f s from submit", child.pid, self.last_cost,
                     time.perf_counter() - submitted)
        if self.failure is not None:
            logger.info("chart renderer recovered: charts are current again")
        self.failure = None
        self._failed_at = None
        self.on_images(images, self.last_cost)

    def _fail(self, reason: str) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.connection.close()
        self.failure = reason
        self.needs_full = True
        self._failed_at = self._monotonic()
        logger.error("%s; charts are stale until a new renderer starts (in %g s)", reason, self.restart_seconds)
        if self.on_failure is not None:
            try:
                self.on_failure(reason)
            except Exception:  # noqa: BLE001 - reporting must not end the renderer
                logger.exception("reporting the chart renderer's failure failed")
