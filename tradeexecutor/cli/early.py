"""Stop signals held from the first line of ``tradeexecutor start``, before click and the commands load.

``start`` makes SIGTERM and SIGINT a graceful stop as the first thing its command does
(``daemon/signals.py``), but Python imports click and every command module before that: about a
tenth of a second on a quiet machine, over a second on a busy one, during which a SIGTERM killed
the process (exit 143). :func:`hold_stop_signals`, called at the top of ``cli/main.py``, catches
both signals from there when the command is ``start`` and keeps them; ``start`` installs its
StopSignals and takes them over (:func:`release`), so a signal in that moment is a stop during
start-up like any later one: exit 0, nothing started. Every other command is left alone.

:func:`settle_heap` fixes glibc's allocator settings for ``start`` at the same moment (``daemon/heap.py``): the
arena cap only binds threads whose first allocation comes after it, and importing pandas (as the commands do)
imports pyarrow, whose threads take an arena of their own at once — set in ``start``'s body, the cap of one arena
left the process two (counted with ``malloc_stats``; the 30-minute soak's second half then rose as with two).

This module imports only the standard library's ``signal`` and ``sys`` (and, for ``start``, ``daemon/heap.py``'s
``ctypes``): it must cost nothing.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

__all__ = ["hold_stop_signals", "release", "settle_heap"]

#: Signals held (numbers, oldest first) and the handlers the hold replaced.
_held: list[int] = []
_previous: dict[int, Any] = {}


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def hold_stop_signals(argv: Sequence[str] | None = None) -> None:
    """Catch and keep SIGTERM and SIGINT when the command line (``sys.argv`` by default) runs ``start``."""
    args = sys.argv[1:] if argv is None else argv
    if _previous or not args or args[0] != "start":
        return
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            _previous[sig] = signal.signal(sig, _hold)
    except ValueError:  # not the main thread: Python cannot take signals over here
        return


def release() -> tuple[list[int], dict[int, Any]]:
    """End the hold: the signals it kept and the handlers from before it (empty when there was no hold).

    The caller installs its own handlers first, so no signal falls between the hold and them.
    """
    held, previous = list(_held), dict(_previous)
    _held.clear()
    _previous.clear()
    return held, previous


def settle_heap(argv: Sequence[str] | None = None) -> None:
    """For ``start`` (``sys.argv`` by default): glibc's mmap threshold and arena cap, before any import starts a thread.

    An operator's own ``MALLOC_*`` settings are left as they are (``daemon/heap.py``).
    """
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "start":
        return
    from tradeexecutor.daemon.heap import bound_arenas, return_large_blocks

    return_large_blocks()
    bound_arenas()
