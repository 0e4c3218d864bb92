"""The lock that makes one process the owner of a state directory (an executor, or a run's backtest).

An exclusive, non-blocking ``flock``: the kernel drops it when the process dies, even by
``kill -9``, so a stale lock file never keeps a directory locked. The owner may then clean up
after earlier owners (temporary files an interrupted write left), since no one else writes there.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tradeexecutor.errors import StateLockedError
from tradeexecutor.layout import RunFiles

__all__ = ["StateDirLock"]


class StateDirLock:
    """An exclusive, non-blocking flock on ``<state dir>/executor.lock``; released when the process dies."""

    def __init__(self, state_dir: Path) -> None:
        self.path = RunFiles(Path(state_dir)).lock
        self._fd: int | None = None

    def acquire(self) -> StateDirLock:
        """Create the directory if needed and lock it; StateLockedError when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            raise StateLockedError(
                f"{self.path.parent} is in use by another executor (lock {self.path} is held); "
                "stop it first or use another --state-dir"
            ) from error
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock (closing the descriptor releases the flock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
