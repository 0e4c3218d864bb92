"""A test hook: the process kills itself with SIGKILL at the Nth pass through a named write-ahead point.

The kill -9 tests of write-ahead (tests/test_writeahead_kill.py) must land exactly between an
order's ``submitting`` commit and its submission, or between the submission and the commit of
its outcome — instants a signal from outside hits only by luck. With
``TRADEEXECUTOR_TEST_KILL_AT=POINT:N`` in the environment (``submitting`` or ``submitted``; N
counts from 1 in this process) the executor sends itself SIGKILL at the Nth pass through POINT:
a real signal, nothing flushed, the files as a power cut leaves them. Unset (always, outside
tests) a pass costs one comparison. This is not a setting: nobody runs an executor with it.

The variable is read at the first pass, not at import: an executor forked from a process that
imported the engine already (tests/forked_executor.py) obeys its own environment.
"""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_AT_ENV", "reached"]

#: The environment variable the tests set.
KILL_AT_ENV = "TRADEEXECUTOR_TEST_KILL_AT"


def _parse(text: str) -> tuple[str, int] | None:
    point, _, count = text.partition(":")
    return (point, int(count or "1")) if point else None


_unread = ("", 0)
_target: tuple[str, int] | None = _unread
_passes: dict[str, int] = {}


def reached(point: str) -> None:
    """One pass through ``point``; the Nth pass (when the environment asks for it) never returns."""
    global _target
    if _target is _unread:
        _target = _parse(os.environ.get(KILL_AT_ENV, ""))
    if _target is None or _target[0] != point:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
