"""bench/soak_probe: the probed executor has the glibc arenas an unprobed one has, and pymalloc's statistics are read.

The probe is Python's ``sitecustomize``: it runs before ``cli/main.py``'s first line, where ``start`` caps
glibc's arenas at one (``cli/early.py``). Its sampling thread's first ``malloc`` came before that cap, took
an arena of its own, and the executor's later threads shared it with the main one round-robin: every
probed soak measured a process with two arenas where the unprobed executor has one. Counted here with
glibc's ``malloc_stats()`` (one "Arena N:" paragraph an arena) in a fresh interpreter run as the probe
sees ``start`` (``python -c SCRIPT start``), which then does what ``cli/main.py`` does first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradeexecutor.daemon.heap import ARENA_MAX

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas and /proc: Linux")

#: The probe starts with the interpreter; a pause lets its thread allocate before the command line's first step
#: (a loaded machine gives it more), then ``start``'s early steps, then six threads each holding a block at once.
SCRIPT = r"""
import ctypes, json, os, sys, threading, time
time.sleep(0.3)  # the probe's thread runs now (its first allocations: its files)
sys.argv = ["tradeexecutor", "start"]
import tradeexecutor.cli.main  # the command line's early steps: the arena cap for `start`

barrier = threading.Barrier(7)
held = []

def work():
    held.append(bytearray(64 * 1024 - 64))  # from malloc (beyond pymalloc's 512 B): the thread takes an arena
    barrier.wait()

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
print(json.dumps({"arenas": report.count("Arena ")}))
"""


def test_the_probed_start_has_the_one_arena_of_an_unprobed_one(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"}
    env |= {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench" / "soak_probe")]),
            "SOAK_PROBE": str(tmp_path / "probe")}
    result = subprocess.run([sys.executable, "-c", SCRIPT, "start"], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    assert (tmp_path / "probe" / "probe.txt").exists()  # the probe ran in this interpreter
    assert json.loads(result.stdout)["arenas"] == ARENA_MAX == 1


def test_pymallocs_totals_are_read_from_its_own_statistics(tmp_path: Path) -> None:
    """The probe's pymalloc line: arenas (1 MiB each, so at least the bytes in blocks over 1 MiB), the highwater at
    least the current count, and every total a number (-1 would be a label not found in the statistics)."""
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import sitecustomize, json; "
              "print(json.dumps(sitecustomize._pymalloc(sys.argv[2], 60).split()))")
    result = subprocess.run([sys.executable, "-c", script, str(ROOT / "bench" / "soak_probe"), str(tmp_path)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=60, check=True)
    arenas, highwater, allocated, available, unused, quantization = (int(v) for v in json.loads(result.stdout))
    assert min(arenas, allocated, available, unused, quantization) >= 0
    assert highwater >= arenas >= allocated / (1 << 20) > 0
    assert "# arenas allocated current" in (tmp_path / "pymalloc-60.txt").read_text()
