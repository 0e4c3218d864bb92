"""Give large freed blocks back to the system at once, so an executor's resting RSS does not follow its files' size.

Why. The public files of a running executor (state.json, its gzip, positions.json, orders.csv)
are joined from their kept pieces into one ``bytes`` each when the disk writer or the webhook
reads a publication, and let go when the next publication replaces it: blocks of several MiB
each (about 5 KB a closed position in all), made and freed again and again. glibc serves a
block of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with ``mmap`` and unmaps it when
it is freed, but it also raises that threshold to the size of each mmapped block freed (up to
32 MiB, and its trim threshold to twice that), so from the first freed file on, the files are
carved from the heap and their pages stay with the process after they are freed. The process
then keeps about one copy of its public files for good, a copy that grows with every closed
position. Fixing the threshold (``mallopt``) turns that adjustment off: every block of 128 KiB
or more is mapped and unmapped on its own.

Measured with ``bench/bench_heap.py --daemon`` (a replay executor with the production wiring
resuming a ledger of about 2,000 closed positions and closing 900 more; medians of three runs):
the resting RSS at the end was 18 MiB lower (194 against 212 MiB), and its growth a closed
position fell from 27 KB (8 to 39 KB) to 5.7 KB (``docs/benchmarks.md``, "What a running
executor keeps"). The cost is an ``mmap``/``munmap`` pair and the first touch of fresh pages
for each such block (a write of the public files to disk took about 1 ms more, bench_job).

The same process's threads (the loop, the web server's, the disk writer, the renderer's feed,
SQLite's calls outside the GIL) each get a glibc arena of their own, up to eight per core. Each
arena keeps the free space of its own high-water mark, and a thread's next peak may come from
an arena other than the one that freed the last: a live soak's arenas grew 800 to 1,000 B a cycle
of free space that was neither kept data nor given back. :func:`bound_arenas` caps their number
(``M_ARENA_MAX``, to the main arena alone); the threads mostly allocate under the GIL, so they seldom wait for
its lock (``docs/benchmarks.md``, "What grows with the cycles, bounded").

glibc only (Linux): elsewhere (musl, macOS) there is no ``mallopt`` and nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "bound_arenas", "return_large_blocks"]

logger = logging.getLogger("tradeexecutor.daemon")

#: Blocks of at least this many bytes are mapped on their own and unmapped when freed (glibc's starting value).
MMAP_THRESHOLD = 128 * 1024
#: ``mallopt``'s parameter number for the threshold (``M_MMAP_THRESHOLD`` in glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
#: At most this many glibc arenas serve the process's threads: the main one alone. In the 30-minute soak's second
#: half the process rose 23-33 KiB/min with two arenas (six runs, median 28.6) and 8-36 with one (seven, median 18.7;
#: set here or by ``MALLOC_ARENA_MAX=1``, no difference beyond that spread) while the allocator's in-use memory stayed
#: flat (docs/benchmarks.md, "One glibc arena, set three ways"). The threads allocate mostly under the GIL, so sharing
#: one arena's lock costs them next to nothing.
ARENA_MAX = 1
#: ``mallopt``'s parameter number for the arena cap (``M_ARENA_MAX`` in glibc's malloc.h).
_M_ARENA_MAX = -8


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's ``mallopt(parameter, value)``; False where there is none (not glibc) or it refused."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator has no such setting
        logger.info("the allocator has no mallopt (not glibc): left to its own defaults")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(parameter, value))


def return_large_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process; False where that cannot be done.

    Process-wide and for good: call it once, early, in the executor's own process (``tradeexecutor
    start``), not in a library's caller. An operator's own choice (``MALLOC_MMAP_THRESHOLD_`` or
    ``glibc.malloc.mmap_threshold`` in ``GLIBC_TUNABLES``) is left as it is: False.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        logger.info("the mmap threshold is set in the environment: left as it is")
        return False
    return _mallopt(_M_MMAP_THRESHOLD, threshold)


def bound_arenas(arenas: int = ARENA_MAX) -> bool:
    """Serve every thread of this process from at most ``arenas`` glibc arenas; False where that cannot be done.

    Process-wide, and only for threads whose first allocation comes after the call: call it before any thread
    starts — before pandas is imported, whose pyarrow starts threads that take an arena at once (``tradeexecutor start`` does it
    first thing, ``cli/early.py``; called after that import, a cap of one left two arenas). An operator's own choice (``MALLOC_ARENA_MAX`` or
    ``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``) is left as it is: False.
    """
    if "MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        logger.info("the number of malloc arenas is set in the environment: left as it is")
        return False
    return _mallopt(_M_ARENA_MAX, arenas)
