"""daemon/heap.py: with the mmap threshold fixed, a large block freed is given back, and the next is mapped afresh.

Counted with glibc's ``mallinfo2`` in a fresh interpreter (the allocator's state is process-wide):
how many bytes are in blocks mapped on their own (``hblkhd``) and in the heap (``arena``) while a
publication's joined file (a few MiB of ``bytes``) is alive and after it is freed, for two
publications in a row, the second file a little smaller than the first, as when a position closes
between them and its open row leaves. Without the fix glibc raises its threshold to the first
file's size when it is freed, so the second is carved from the heap, whose pages stay with the
process (glibc raises its trim threshold with it, so the freed top of the heap is not given back either);
with it, both are mapped and unmapped.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from tradeexecutor.daemon.heap import ARENA_MAX

SCRIPT = r"""
import ctypes, json, sys
from tradeexecutor.daemon.heap import return_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
fixed = sys.argv[1] == "fixed" and return_large_blocks()

def counts():
    info = libc.mallinfo2()
    return {"mapped": info.hblkhd, "heap": info.arena}

MIB = 1 << 20
before = counts()
first = b"x" * (8 * MIB)
first_alive = counts()
del first
first_freed = counts()
second = b"y" * (6 * MIB)
second_alive = counts()
del second
second_freed = counts()
print(json.dumps({"fixed": bool(fixed), "before": before, "first_alive": first_alive, "first_freed": first_freed,
                  "second_alive": second_alive, "second_freed": second_freed}))
"""

MIB = 1 << 20


def glibc_has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not glibc_has_mallinfo2(), reason="glibc's allocator (mallinfo2, glibc 2.33+) only")


def run(how: str, **extra: str) -> dict[str, dict[str, int]]:
    env = {key: value for key, value in os.environ.items()  # glibc's own defaults, and ``extra``
           if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"} | extra
    result = subprocess.run([sys.executable, "-c", SCRIPT, how], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    counts: dict[str, dict[str, int]] = json.loads(result.stdout)
    return counts


def test_without_the_fix_the_second_file_stays_in_the_heap() -> None:
    """The behaviour the fix is for: glibc's own threshold keeps the second publication's file in the heap."""
    counts = run("default")
    assert counts["fixed"] is False
    assert counts["first_alive"]["mapped"] - counts["before"]["mapped"] >= 8 * MIB  # the first is mapped ...
    assert counts["first_freed"]["mapped"] == counts["before"]["mapped"]  # ... and unmapped
    assert counts["second_alive"]["mapped"] == counts["before"]["mapped"]  # the second is not mapped:
    assert counts["second_alive"]["heap"] - counts["before"]["heap"] >= 5 * MIB  # the heap grew by it (less its free part)
    assert counts["second_freed"]["heap"] == counts["second_alive"]["heap"]  # and kept it after it was freed


def test_with_the_fix_every_large_file_is_mapped_and_given_back() -> None:
    counts = run("fixed")
    assert counts["fixed"] is True
    before = counts["before"]
    assert counts["first_alive"]["mapped"] - before["mapped"] >= 8 * MIB
    assert counts["second_alive"]["mapped"] - before["mapped"] >= 6 * MIB
    for freed in ("first_freed", "second_freed"):
        assert counts[freed]["mapped"] == before["mapped"], freed  # given back to the system when freed
    assert counts["second_freed"]["heap"] - before["heap"] < MIB  # the heap did not take the file


def test_an_operators_own_threshold_is_left_as_it_is() -> None:
    """MALLOC_MMAP_THRESHOLD_ (here 16 MiB, so neither file is mapped) wins over the executor's fix."""
    counts = run("fixed", MALLOC_MMAP_THRESHOLD_=str(16 * MIB))
    assert counts["fixed"] is False
    assert counts["first_alive"]["mapped"] == counts["before"]["mapped"]
    assert counts["first_alive"]["heap"] - counts["before"]["heap"] >= 7 * MIB


#: Six threads each holding a block from malloc at once, then glibc's own count of its arenas (``report``).
COUNT_ARENAS = r"""
barrier = threading.Barrier(7)
held = []

def work():
    held.append(bytearray(64 * 1024 - 64))  # from malloc (beyond pymalloc's 512 B): the thread takes an arena
    barrier.wait()  # every thread alive and holding its block at once

threads = [threading.Thread(target=work) for _ in range(6)]
for thread in threads:
    thread.start()
barrier.wait()
read, write = os.pipe()
saved = os.dup(2)
os.dup2(write, 2)
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
os.dup2(saved, 2)
os.close(write)
report = os.read(read, 1 << 16).decode()
for thread in threads:
    thread.join()
"""

ARENAS = r"""
import ctypes, json, os, sys, threading
from tradeexecutor.daemon.heap import bound_arenas

bounded = sys.argv[1] == "bounded" and bound_arenas()
""" + COUNT_ARENAS + r"""
print(json.dumps({"bounded": bool(bounded), "arenas": report.count("Arena ")}))
"""


def arenas(how: str, **extra: str) -> dict[str, int]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"} | extra
    result = subprocess.run([sys.executable, "-c", ARENAS, how], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    counts: dict[str, int] = json.loads(result.stdout)
    return counts


def test_the_threads_share_the_main_arena_when_bounded() -> None:
    unbounded, bounded = arenas("default"), arenas("bounded")
    assert unbounded["bounded"] is False and bounded["bounded"] is True
    assert unbounded["arenas"] >= 4  # glibc's own way: an arena per thread, up to eight per core
    assert bounded["arenas"] == ARENA_MAX == 1


def test_an_operators_own_arena_count_is_left_as_it_is() -> None:
    counts = arenas("bounded", MALLOC_ARENA_MAX="3")
    assert counts["bounded"] is False
    assert counts["arenas"] == 3


#: The command line's own order (cli/main.py): ``start``'s early settings, then the imports, then the threads.
#: ``late`` bounds the arenas after numpy's and pandas' imports instead, as ``start``'s body alone did before.
ARENAS_CLI = r"""
import ctypes, json, os, sys, threading
sys.argv = ["tradeexecutor", sys.argv[1]]
if sys.argv[1] == "late":
    import numpy, pandas
    from tradeexecutor.daemon.heap import bound_arenas
    bound_arenas()
else:
    import tradeexecutor.cli.main  # runs the command line's early steps for sys.argv
import numpy, pandas  # pandas imports pyarrow, whose threads start here and take an arena
""" + COUNT_ARENAS + r"""
print(json.dumps({"arenas": report.count("Arena ")}))
"""


def cli_arenas(command: str) -> int:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", ARENAS_CLI, command], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    arenas: int = json.loads(result.stdout)["arenas"]
    return arenas


def test_start_bounds_the_arenas_before_pyarrows_threads_take_one() -> None:
    """`tradeexecutor start` serves every thread from the main arena, pyarrow's included; bounded after pandas'
    import (where `start`'s body did it), the process kept the arena pyarrow's threads took: two."""
    assert cli_arenas("start") == ARENA_MAX == 1
    assert cli_arenas("late") == 2
    assert cli_arenas("backtest") >= 4  # other commands are left to glibc's own way
