"""Crash-safe file writes, re-exported from :mod:`tradeexecutor.atomic` for the store's existing callers.

The writers moved one layer down so that ``runstate`` (crash.json) and ``stats`` (orders.csv),
which may not import ``store``, write files the same way: same temporary names, same
permissions, same clean-up after ``kill -9``.
"""

from __future__ import annotations

from tradeexecutor.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_append,
    fsync_directory,
    remove_temp_files,
    temp_path_for,
)

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_append", "fsync_directory", "remove_temp_files",
           "temp_path_for"]
