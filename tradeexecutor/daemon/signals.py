"""SIGTERM and SIGINT become a graceful stop, from the first line of ``start`` to the end of the run.

:class:`StopSignals` is installed before anything else ``start`` does, so a signal that arrives
while the strategy, the data or the state are still loading is no longer the default action
(the process killed, exit 143) but a request like any other: start-up looks at it between its
steps (:meth:`StopSignals.check` raises :class:`StopRequested`, the command exits 0 having
started nothing and written nothing but the state directory's lock file), and once the loop
runs it is a stop command on the loop's queue: the loop finishes its running job, saves, and
ends with status ``stopped``. A signal during a crash- or complete-serve window ends the
window early.

The handler does the least possible work — it touches only reentrant queues and an Event, and
never logs — because it runs between two bytecodes of whatever the main thread was doing.
Start-up steps are not interrupted in the middle (a step may be a long C call, and some steps
write): the stop waits for the step under way, at most the longest of them (loading the data
or computing the indicators).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from tradeexecutor.daemon.commands import CommandQueue

__all__ = ["STOP_SIGNALS", "StopRequested", "StopSignals"]

#: Signals that stop the executor gracefully.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """A stop signal arrived during start-up: leave without starting anything (exit 0)."""

    def __init__(self, reason: str, during: str) -> None:
        super().__init__(f"{reason} during start-up ({during}); nothing was started")
        #: The signal's name.
        self.reason = reason
        #: The start-up step that had just finished.
        self.during = during


class StopSignals:
    """Routes SIGTERM and SIGINT to a stop request: an Event, and a stop command on the loop's queue."""

    def __init__(self, commands: CommandQueue | None = None) -> None:
        #: The loop's queue; a signal puts a stop command on it.
        self.commands = commands or CommandQueue()
        #: Set by a signal; ends start-up and serve windows early.
        self.requested = threading.Event()
        #: Name of the signal that asked to stop.
        self.reason = ""
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        """Take over SIGTERM and SIGINT (once; a no-op outside the main thread, where Python cannot)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return self
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def adopt(self, held: Sequence[int], previous: Mapping[int, Any]) -> None:
        """Take over a hold that kept stop signals before :meth:`install` (``cli/early.py``).

        The signals it kept count as if they arrived now; :meth:`restore` puts back the handlers
        from before the hold, not the hold's own.
        """
        for sig, old in previous.items():
            if sig in self._previous:
                self._previous[sig] = old
        for signum in held:
            self._handle(signum, None)

    def restore(self) -> None:
        """Put the handlers back as they were before :meth:`install`."""
        previous, self._previous = self._previous, {}
        for sig, old in previous.items():
            signal.signal(sig, old)

    def check(self, during: str) -> None:
        """Raise StopRequested when a signal has arrived; start-up calls this between its steps."""
        if self.requested.is_set():
            raise StopRequested(self.reason, during)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.reason = signal.Signals(signum).name
        self.commands.stop(self.reason)
        self.requested.set()

