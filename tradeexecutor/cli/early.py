"""Stop signals held from the first line of ``tradeexecutor start``, before click and the commands load.

``start`` makes SIGTERM and SIGINT a graceful stop as the first thing its command does
(``daemon/signals.py``), but Python imports click and every command module before that: about a
tenth of a second on a quiet machine, over a second on a busy one, during which a SIGTERM killed
the process (exit 143). :func:`hold_stop_signals`, called at the top of ``cli/main.py``, catches
both signals from there when the command is ``start`` and keeps them; ``start`` installs its
StopSignals and takes them over (:func:`release`), so a signal in that moment is a stop during
start-up like any later one: exit 0, nothing started. Every other command is left alone.

This module imports only the standard library's ``signal`` and ``sys``: it must cost nothing.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

__all__ = ["hold_stop_signals", "release"]

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
