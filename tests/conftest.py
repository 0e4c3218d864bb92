"""Suite-wide set-up: Ctrl+C reaches the suite's subprocesses, and the longest test files run first.

*SIGINT.* A shell script that starts a command in the background (``pytest ... &``, nohup, some CI
runners) starts it with SIGINT ignored, and an ignored signal stays ignored across exec: every
executor and CLI process the tests start would ignore the Ctrl+C that tests send them (``logs --tail``
stopping quietly, start-up holding its stop signals). So the test process puts Python's own
handler back when it finds SIGINT ignored; its children then start with the default, as from a terminal.

*Order.* ``.ci/run`` hands whole files to pytest-xdist workers in collection order (``--dist loadfile
--no-loadscope-reorder``; by default xdist would hand out the files with the most tests first).
A file of several minutes (tests/test_ledger_kill.py: hundreds of kill -9 restarts) handed out
last keeps one worker busy after the others have finished; handed out first, it runs beside the
rest. A test's ``@pytest.mark.timeout(N)`` is where it says it is long, so files are ordered by
their largest N (pytest's default of 300 s for the others), longest first. The sort is stable:
tests keep their order within a file, and files with the same figure keep theirs.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _declared_seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("timeout")
    return float(mark.args[0]) if mark is not None and mark.args else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    longest: dict[Path, float] = {}
    for item in items:
        longest[item.path] = max(longest.get(item.path, 0.0), _declared_seconds(item))
    items.sort(key=lambda item: -longest[item.path])
