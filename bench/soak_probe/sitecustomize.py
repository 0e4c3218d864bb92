"""Memory probe for bench/bench_soak.py: where an executor's resident memory goes, sampled every 15 s.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; with this directory on it and
``SOAK_PROBE=DIR`` set, a ``tradeexecutor start`` process (and no other) starts a daemon thread that
appends a line to ``DIR/probe.txt`` every 15 s: VmRSS (KiB), SQLite's heap
(``sqlite3_status64(SQLITE_STATUS_MEMORY_USED)``, bytes), glibc's ``mallinfo2()`` in-use and arena
bytes, the resident KiB of the main heap and of the other anonymous mappings (``/proc/self/smaps``)
and ``len(gc.get_objects())``, then glibc's free bytes in its arenas (``fordblks``) and its mmapped blocks
(``hblkhd``). Every 60 s it also writes pymalloc's own statistics (``_PyObject_DebugMallocStats``, the
text of ``sys._debugmallocstats()``, written to a file rather than to the process's stderr) to
``DIR/pymalloc-SECONDS.txt`` and their totals as a line of ``DIR/pymalloc.txt``: pymalloc's arenas
(1 MiB each, mmapped, outside ``mallinfo2``) allocated now, their highwater mark, the bytes in
allocated blocks, in free blocks of used pools, in unused pools, and lost to quantization. Measurement only,
never shipped::

    PYTHONPATH=.:bench/soak_probe SOAK_PROBE=/tmp/probe python bench/bench_soak.py --minutes 5 --every 3600

With ``SOAK_TRACE=FRAMES`` as well, ``tracemalloc`` runs from start-up with that many frames a trace, and
every 60 s the probe writes ``DIR/snapshot-SECONDS.pickle`` (after ``gc.collect()``) with the executor's
completed cycles and closed positions so far in ``DIR/snapshots.txt``: two snapshots of the second half,
compared with ``bench/soak_trace.py``, give the growing allocation sites per cycle and per closed position.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"]]


def _sqlite_bytes() -> int:
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    ctypes.CDLL("libsqlite3.so.0").sqlite3_status64(0, ctypes.byref(current), ctypes.byref(highest), 0)
    return current.value


def _resident() -> tuple[int, int, int]:
    """VmRSS, the main heap's resident KiB and the other anonymous mappings' resident KiB."""
    heap = anon = 0
    kind = ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                name = parts[5] if len(parts) > 5 else ""
                kind = "heap" if name == "[heap]" else ("anon" if not name else "")
            elif parts[0] == "Rss:" and kind:
                heap += int(parts[1]) if kind == "heap" else 0
                anon += int(parts[1]) if kind == "anon" else 0
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss, heap, anon


def _counts() -> tuple[int, int]:
    """Completed cycles and closed positions of the running daemon's state, found among the collector's objects."""
    from tradeexecutor.state.state import State  # noqa: PLC0415 - only once the daemon runs

    for obj in gc.get_objects():
        if isinstance(obj, State):
            return obj.cycles_completed, len(obj.portfolio.closed_positions)
    return -1, -1


def _snapshots(directory: str) -> None:
    import tracemalloc  # noqa: PLC0415

    started = time.monotonic()
    with open(os.path.join(directory, "snapshots.txt"), "a", buffering=1) as out:
        while True:
            time.sleep(60)
            gc.collect()
            seconds = round(time.monotonic() - started)
            try:
                cycles, closed = _counts()
            except Exception as error:  # noqa: BLE001 - measurement only
                cycles, closed = -1, -1
                out.write(f"# counts failed: {error!r}\n")
            tracemalloc.take_snapshot().dump(os.path.join(directory, f"snapshot-{seconds}.pickle"))
            out.write(f"{seconds} {cycles} {closed} {tracemalloc.get_traced_memory()[0]}\n")


#: The totals of ``_PyObject_DebugMallocStats`` written to ``pymalloc.txt``, by the start of their line.
_PYMALLOC_TOTALS = {
    "# arenas allocated current": "arenas",
    "# arenas highwater mark": "arenas_highwater",
    "# bytes in allocated blocks": "allocated_bytes",
    "# bytes in available blocks": "available_bytes",
    "unused pools": "unused_pool_bytes",
    "# bytes lost to quantization": "quantization_bytes",
}


def _pymalloc(directory: str, seconds: int) -> str:
    """pymalloc's statistics written to ``DIR/pymalloc-SECONDS.txt``; their totals as one line."""
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    dump = ctypes.pythonapi._PyObject_DebugMallocStats  # PyDLL: called with the GIL held
    dump.argtypes = [ctypes.c_void_p]
    path = os.path.join(directory, f"pymalloc-{seconds}.txt")
    stream = libc.fopen(path.encode(), b"w")
    dump(stream)
    libc.fclose(stream)
    totals: dict[str, int] = {}
    with open(path) as text:
        for line in text:
            label, _, value = line.partition("=")
            for start, name in _PYMALLOC_TOTALS.items():
                if start in label and name not in totals:
                    totals[name] = int(value.strip().replace(",", ""))
    return " ".join(str(totals.get(name, -1)) for name in _PYMALLOC_TOTALS.values())


def _sample(path: str) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    directory = os.path.dirname(path)
    started = time.monotonic()
    with open(path, "a", buffering=1) as out, open(os.path.join(directory, "pymalloc.txt"), "a", buffering=1) as pym:
        out.write("t rss_kib sqlite_bytes malloc_in_use_bytes malloc_arena_bytes heap_kib anon_kib gc_objects "
                  "malloc_free_bytes malloc_mmap_bytes\n")
        pym.write("t rss_kib " + " ".join(_PYMALLOC_TOTALS.values()) + "\n")
        samples = 0
        while True:
            time.sleep(15)
            samples += 1
            seconds = round(time.monotonic() - started)
            info = libc.mallinfo2()
            rss, heap, anon = _resident()
            out.write(f"{seconds} {rss} {_sqlite_bytes()} {info.uordblks} {info.arena} "
                      f"{heap} {anon} {len(gc.get_objects())} {info.fordblks} {info.hblkhd}\n")
            if samples % 4 == 0:
                pym.write(f"{seconds} {rss} {_pymalloc(directory, seconds)}\n")


if os.environ.get("SOAK_PROBE") and sys.argv[1:2] == ["start"]:
    # The probe's threads start before cli/main.py's first line: a thread's first malloc before the arena cap
    # takes a glibc arena of its own, which later threads then share round-robin with the main one (the probed
    # executor had two arenas, the unprobed one). So the cap `start` sets first thing is set here first.
    from tradeexecutor.cli.early import settle_heap

    settle_heap()
    os.makedirs(os.environ["SOAK_PROBE"], exist_ok=True)
    threading.Thread(target=_sample, args=(os.path.join(os.environ["SOAK_PROBE"], "probe.txt"),),
                     name="soak-probe", daemon=True).start()
    if os.environ.get("SOAK_TRACE"):
        import tracemalloc

        tracemalloc.start(int(os.environ["SOAK_TRACE"]))
        threading.Thread(target=_snapshots, args=(os.environ["SOAK_PROBE"],), name="soak-trace", daemon=True).start()
