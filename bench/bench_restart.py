"""Benchmark of what every executor restart pays before its first job: its imports and the WAL check.

Run from the repository root::

    python bench/bench_restart.py [--runs 7] [--baseline PATH-OF-ANOTHER-CHECKOUT]

(a) Imports, each in a fresh interpreter (CPU time of the child, user + system, so other load on
    the machine moves it less than wall time): ``tradeexecutor.daemon.runner`` (the modules
    ``tradeexecutor start`` loads to run a strategy), ``tradeexecutor.engine.accounting`` (what
    tests/ledger_writer.py, the stand-in restarted 210 times by tests/test_ledger_kill.py, needs
    besides the ledger) and ``python -c pass`` (the floor). With ``--baseline``, the same imports
    from that checkout (``PYTHONPATH=PATH``), taking turns with this one.
(b) ``wal_valid_frames`` over the WAL of a ledger whose writer died after ``--cycles`` commits
    (written as tests/test_ledger_damage.py writes its pending ledger): the checksum of every frame,
    which ``Ledger.load`` runs at every start while a WAL is pending. With ``--baseline``, that
    checkout's ``tradeexecutor/ledger/files.py`` too, loaded beside this one.

Medians of ``--runs``. Prints markdown. Not a pytest test.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMPORTS = [("python -c pass", "pass"), ("import tradeexecutor.daemon.runner", "import tradeexecutor.daemon.runner"),
           ("import tradeexecutor.engine.accounting", "import tradeexecutor.engine.accounting")]

_WRITER = """
import os, sys
sys.path.insert(0, sys.argv[3])
from test_store_state_store import new_state, run_cycle
from tradeexecutor.ledger import Ledger
ledger = Ledger(sys.argv[1])
state = new_state()
for i in range(int(sys.argv[2])):
    run_cycle(state, i)
    ledger.save(state)
os._exit(0)  # no close, no checkpoint: the WAL stays, as after kill -9
"""


def child_cpu(checkout: Path, code: str) -> float:
    """CPU seconds (user + system) of ``python -c code`` with ``checkout`` first on the path."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=checkout,  # -c puts the working directory first
                   env={**os.environ, "PYTHONPATH": str(checkout)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_seconds(function: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cycles", type=int, default=200, help="commits in the pending WAL")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure beside this one")
    args = parser.parse_args(argv)
    checkouts = {"this checkout": ROOT}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()

    cpu: dict[tuple[str, str], list[float]] = {(label, name): [] for label, _ in IMPORTS for name in checkouts}
    for _ in range(args.runs):  # rounds: every row once per round, so each sees the same load
        for label, code in IMPORTS:
            for name, checkout in checkouts.items():
                cpu[label, name].append(child_cpu(checkout, code))
    print("| import, fresh process | " + " | ".join(f"{name}, CPU median" for name in checkouts) + " |")
    print("|---|" + "---:|" * len(checkouts))
    for label, _ in IMPORTS:
        cells = " | ".join(f"{statistics.median(cpu[label, name]) * 1000:.0f} ms" for name in checkouts)
        print(f"| `{label}` | {cells} |")

    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "ledger.sqlite"
        subprocess.run([sys.executable, "-c", _WRITER, str(ledger), str(args.cycles), str(ROOT / "tests")],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        wal = Path(f"{ledger}-wal").read_bytes()
    checks: dict[str, Callable[[bytes], tuple[int, int, bool]]] = {}
    for name, checkout in checkouts.items():
        spec = importlib.util.spec_from_file_location(f"files_{len(checks)}", checkout / "tradeexecutor/ledger/files.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        checks[name] = module.wal_valid_frames
    results = {name: check(wal) for name, check in checks.items()}
    assert len(set(results.values())) == 1, f"the checkouts disagree about the WAL: {results}"
    frames = next(iter(results.values()))[0]
    print(f"\n| `wal_valid_frames`, {len(wal) / 1e6:.1f} MB WAL, {frames} frames | CPU median |")
    print("|---|---:|")
    for name, check in checks.items():
        print(f"| {name} | {median_seconds(functools.partial(check, wal), args.runs) * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
