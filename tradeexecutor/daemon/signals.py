"""SIGTERM and SIGINT become a graceful stop: a stop command on the loop's queue, and a wake-up for the main thread.

The handler does the least possible work — it touches only reentrant queues and an Event, and
never logs — because it runs between two bytecodes of whatever the main thread was doing. The
loop finishes its running job, saves, and ends with status ``stopped``. A signal during a
crash- or complete-serve window ends the window early.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from tradeexecutor.daemon.commands import CommandQueue

__all__ = ["STOP_SIGNALS", "install_stop_signals"]

#: Signals that stop the executor gracefully.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_signals(commands: CommandQueue, stop_requested: threading.Event) -> Callable[[], None]:
    """Route SIGTERM and SIGINT to ``commands.stop``; returns a function that restores the old handlers.

    Does nothing (and returns a no-op) outside the main thread, where Python cannot install handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        commands.stop(signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
