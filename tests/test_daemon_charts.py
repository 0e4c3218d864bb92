"""The daemon's charts as a subprocess shows them: drawn by the renderer's process, first after the first cycle,
and a renderer killed or stopped never stops the loop.

The renderer is found through /status (``extra.chart_renderer_pid``) and checked in /proc: a child
of the executor running ``tradeexecutor.visual.worker``. Crashes and hangs are real signals.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from test_daemon_e2e import Executor, executors  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"
#: Seconds for things that need a renderer process to start (it imports matplotlib) on a busy machine.
PATIENCE = 120


def renderer_of(executor: Executor, status: dict[str, Any]) -> int:
    """The renderer's pid from /status, checked to be the executor's child running the chart worker."""
    pid = status["extra"]["chart_renderer_pid"]
    assert isinstance(pid, int) and pid != executor.process.pid
    with open(f"/proc/{pid}/stat") as stat:
        assert int(stat.read().rsplit(") ", 1)[1].split()[1]) == executor.process.pid  # its parent
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert b"tradeexecutor.visual.worker" in cmdline.read()
    return pid


def chart(executor: Executor) -> bytes:
    url = f"http://127.0.0.1:{executor.port}/visualisation?type=small&format=png"
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_the_first_cycle_is_charted_by_the_renderer_process_then_charts_keep_up(tmp_path: Path,
                                                                                 executors: list[Executor]) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.5", "--chart-seconds", "1", "--log-level", "debug")
    executors.append(executor)
    first = executor.wait_status(lambda s: s["visualisation_updated_at"] is not None, PATIENCE)
    assert first["cycles"] >= 1 and first["visualisation_stale"] is None
    renderer_of(executor, first)
    assert chart(executor).startswith(PNG)
    later = executor.wait_status(lambda s: s["visualisation_updated_at"] != first["visualisation_updated_at"], PATIENCE)
    assert later["cycles"] > first["cycles"] and later["executor_running"]
    assert "chart renderer started: pid" in executor.output()  # at debug: operators' logs need not say it


def test_a_replay_that_ends_after_its_first_cycle_shows_that_cycle_s_chart(tmp_path: Path, executors: list[Executor]) -> None:
    """Three bars, cycles every 0.2 s: the run is over before a renderer could start, and still has its chart."""
    executor = Executor(tmp_path, "--replay-seconds", "0.2", "--end", "2005-01-06", "--complete-serve-seconds", "60",
                        "--chart-seconds", "10")  # the default (the harness turns charts off)
    executors.append(executor)
    status = executor.wait_status(lambda s: s["status"] == "complete", PATIENCE)
    assert 1 <= status["cycles"] <= 4
    assert status["visualisation_updated_at"] is not None, "the final charts are drawn before the run says complete"
    assert chart(executor).startswith(PNG)


def test_a_killed_renderer_marks_the_charts_stale_and_the_loop_goes_on(tmp_path: Path, executors: list[Executor]) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.2", "--chart-seconds", "1")
    executors.append(executor)
    status = executor.wait_status(lambda s: s["visualisation_updated_at"] is not None, PATIENCE)
    pid = renderer_of(executor, status)
    os.kill(pid, signal.SIGKILL)
    stale = executor.wait_status(lambda s: s["visualisation_stale"] is not None, PATIENCE)
    assert "gone" in stale["visualisation_stale"] and stale["executor_running"]
    # The loop never waited: cycles go on, and a new renderer (three chart intervals later) brings charts back.
    fresh = executor.wait_status(lambda s: s["visualisation_stale"] is None and s["cycles"] > stale["cycles"], PATIENCE)
    assert renderer_of(executor, fresh) != pid
    assert "charts are stale until a new renderer starts" in executor.output()


def test_a_hung_renderer_is_killed_after_the_chart_timeout_and_the_loop_goes_on(tmp_path: Path, executors: list[Executor]) -> None:
    # Long enough for a render on a busy machine, short enough for the test.
    executor = Executor(tmp_path, "--replay-seconds", "0.2", "--chart-seconds", "1", "--chart-timeout-seconds", "20")
    executors.append(executor)
    status = executor.wait_status(lambda s: s["visualisation_updated_at"] is not None, PATIENCE)
    pid = renderer_of(executor, status)
    os.kill(pid, signal.SIGSTOP)
    try:
        stale = executor.wait_status(lambda s: s["visualisation_stale"] is not None, PATIENCE)
        assert "did not answer within 20 s" in stale["visualisation_stale"]
        going = executor.wait_status(lambda s: s["cycles"] >= stale["cycles"] + 5, PATIENCE)
        assert going["executor_running"] and going["status"] == "running"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
