"""The executor process and its files: a stop signal during start-up, temporary files left by kill -9,
file permissions, and crashes that still count when crash.json cannot be written (a real file-size limit)."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from executor_process import END, START, STRATEGIES, Executor, free_port
from test_daemon_e2e import executors  # noqa: F401 - the fixture
from tradeexecutor.atomic import temp_path_for
from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate import CrashFile

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- a stop signal during start-up ---------------------------------------------------------------


@pytest.mark.parametrize("step", ["load", "indicators"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_start_up_exits_0_having_started_and_written_nothing(
        tmp_path: Path, executors: list, step: str, signum: int) -> None:
    """The strategy's loading (before the state directory is locked) or its first indicator computation
    (after) takes seconds; a signal then is a graceful stop (exit 0), not the default kill (143)."""
    marker = tmp_path / "slow-step-began"
    executor = Executor(tmp_path, strategy="slow_start.py",
                        env={"SLOW_START_IN": step, "SLOW_START_MARKER": str(marker)})
    executors.append(executor)
    wait_for(marker.exists, what=f"the strategy's slow {step} step")
    executor.process.send_signal(signum)
    assert executor.wait() == 0, executor.output()
    output = executor.output()
    assert f"executor stopped: {signal.Signals(signum).name} during start-up" in output, output
    assert "nothing was started" in output and "Traceback" not in output
    assert executor.status() is None, "the webhook never started"
    written = sorted(p.name for p in executor.state_dir.rglob("*")) if executor.state_dir.exists() else []
    assert set(written) <= {"executor.lock"}, f"start-up stopped half-way wrote {written}"



#: Imports the CLI as ``tradeexecutor ARGS`` would, noting the stop signals' handlers as click and start's module load.
_IMPORT_PROBE = """
import importlib.abc, json, signal, sys

seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in ("click", "tradeexecutor.cli.start_cmd") and name not in seen:
            seen[name] = [signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL,
                          signal.getsignal(signal.SIGINT) is not signal.default_int_handler]
        return None

sys.meta_path.insert(0, Watch())
sys.argv = ["tradeexecutor", *sys.argv[1:]]
import tradeexecutor.cli.main
print(json.dumps(seen))
"""


@pytest.mark.parametrize(("args", "held"), [(["start", "strategy.py"], True), (["runs", "ls"], False)],
                         ids=["start", "other commands"])
def test_start_holds_its_stop_signals_before_click_and_the_commands_load(args: list[str], held: bool) -> None:
    """The window before start's command runs (imports: up to seconds on a busy machine) was a SIGTERM kill."""
    result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *args], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"click": [held, held], "tradeexecutor.cli.start_cmd": [held, held]}


def _catches_sigterm(pid: int) -> bool:
    """True once the process has a handler for SIGTERM (the SigCgt mask of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def test_a_sigterm_the_moment_start_catches_it_exits_0_having_written_nothing(tmp_path: Path) -> None:
    """Sent as soon as the process handles SIGTERM at all, while the commands are still loading: a stop, not a kill."""
    state_dir = tmp_path / "state"
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_sma.py"),
               "--state-dir", str(state_dir), "--port", str(free_port())]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not _catches_sigterm(process.pid):
            assert process.poll() is None and time.monotonic() < deadline, "start never took SIGTERM over"
            time.sleep(0.001)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "executor stopped: SIGTERM during start-up" in output and "nothing was started" in output, output
    assert "Traceback" not in output
    assert not state_dir.exists() or {p.name for p in state_dir.iterdir()} <= {"executor.lock"}

# -- temporary files left by kill -9 --------------------------------------------------------------


def test_temporary_files_an_interrupted_write_left_are_removed_at_start_up(tmp_path: Path,
                                                                          executors: list) -> None:
    state_dir = tmp_path / "state"
    files = RunFiles(state_dir)
    files.public.mkdir(parents=True)
    left = [Path(temp_path_for(state_dir / "state.json")), Path(temp_path_for(state_dir / "crash.json")),
            Path(temp_path_for(files.orders_csv)), Path(temp_path_for(files.state_snapshot)),
            state_dir / ".state.json.bak.4242.tmp",  # the backup link's name before
            files.public / ".orders.csv.k3j_x9qa.tmp"]  # write_trades_csv's mkstemp name before
    for path in left:
        path.write_bytes(b"half a write")
    kept = [state_dir / "notes.tmp", state_dir / ".hidden", files.public / "operator.txt"]
    for path in kept:
        path.write_bytes(b"not ours to remove")

    executor = Executor(tmp_path, "--replay-seconds", "0.05", state_dir=state_dir)
    executors.append(executor)
    executor.wait_status(lambda status: status["cycles"] >= 3)
    assert [path for path in left if path.exists()] == []
    assert all(path.read_bytes() == b"not ours to remove" for path in kept)
    assert "removed 6 temporary file(s) an interrupted write left" in executor.output()


# -- permissions ------------------------------------------------------------------------------------


def test_every_file_of_the_state_directory_gets_the_same_permissions(tmp_path: Path) -> None:
    """crash.json and orders.csv were 0600 (mkstemp) where every other file is 0666 minus the umask."""
    state_dir = tmp_path / "state"
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_crash.py"),
               "--state-dir", str(state_dir), "--port", str(free_port()), "--start", START, "--end", END,
               "--replay-start", "first", "--replay-seconds", "0.05", "--chart-seconds", "0",
               "--publish-seconds", "0", "-p", "crash_on=6"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 1, result.stderr
    files = RunFiles(state_dir)
    modes = {path.relative_to(state_dir).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in (files.ledger, files.journal, files.crash,
                          state_dir / "crash.tally", files.orders_csv, files.positions, files.state_snapshot,
                          files.metadata)}
    assert modes == dict.fromkeys(modes, 0o644), modes


# -- a crash when crash.json cannot be written ---------------------------------------------------------


_FULL_DISK_CHILD = """
import resource, sys
from datetime import datetime, timedelta, UTC
from tradeexecutor.runstate import CrashFile

crash_file = CrashFile(sys.argv[1])
crash_file.prepare()
resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))  # no file may grow past 512 bytes: crash.json cannot be written
now = datetime(2024, 5, 1, 12, tzinfo=UTC)
for minute in range(3):
    try:
        raise RuntimeError("x" * 2000)
    except RuntimeError as exc:
        history = crash_file.record(exc, now + timedelta(minutes=minute))
print(history.crash_count)
"""


def test_a_crash_counts_even_when_crash_json_cannot_be_written(tmp_path: Path) -> None:
    """A real write failure (RLIMIT_FSIZE in a child process): the tally still counts every crash."""
    path = tmp_path / "crash.json"
    result = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert "cannot write crash file" in result.stderr and "the crash is counted in" in result.stderr
    assert not path.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["crash.tally"]
    crash_file = CrashFile(path)
    history = crash_file.load()
    assert history is not None and history.crash_count == 3 and history.last_exception is None
    now = history.recent_crashes[-1]
    assert len(crash_file.recent_crashes(timedelta(minutes=5), now)) == 3


def test_the_executor_starts_in_safe_mode_after_a_crash_it_could_not_write_down(tmp_path: Path,
                                                                                executors: list) -> None:
    """A running executor's files stop growing (RLIMIT_FSIZE set on the live process, as a full disk
    would): its next save fails, a crash that crash.json cannot hold; the next start counts it."""
    state_dir = tmp_path / "state"
    log = tmp_path / "first.log"
    port = free_port()
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_sma.py"),
               "--state-dir", str(state_dir), "--port", str(port), "--start", START, "--end", END,
               "--replay-start", "first", "--replay-seconds", "0.05", "--chart-seconds", "0",
               "--crash-loop-count", "1", "--crash-loop-minutes", "60"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()  # a pipe, not a file: the limit must not silence the log
    try:
        wait_for(lambda: (state_dir / "ledger.sqlite").exists() and (state_dir / "crash.tally").exists(),
                 what="the first saves")
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (512, 512))
        assert process.wait(300) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)
    log.write_bytes(b"".join(output))
    text = log.read_text(errors="replace")
    assert "cannot write crash file" in text and "the crash is counted in" in text, text
    assert not (state_dir / "crash.json").exists()

    again = Executor(tmp_path / "again", "--replay-seconds", "0.05", "--crash-loop-count", "1",
                     "--crash-loop-minutes", "60", state_dir=state_dir)
    executors.append(again)
    status = again.wait_status(lambda s: s["status"] in ("running", "complete"))
    assert status["safe_mode"] is True, status
    assert "1 crashes within 60 minutes" in status["safe_mode_reason"]
    assert status["crash_count"] == 1


def test_an_executor_killed_before_its_first_save_starts_again(tmp_path: Path, executors: list) -> None:
    """The ``started`` line is committed before the first cycle saves a state; kill -9 in between (here
    the first cycle is an hour away, so the moment is certain) used to leave a ledger the next start
    refused as damaged (exit 3: "zero-length, empty document") — the CI failure of the test above,
    when the file-size limit landed in that moment on a busy machine."""
    first = Executor(tmp_path / "first", "--replay-seconds", "3600")
    executors.append(first)
    journal = RunFiles(first.state_dir).journal
    wait_for(lambda: journal.exists() and b'"started"' in journal.read_bytes(), what="the committed started line")
    first.kill()

    again = Executor(tmp_path / "again", "--replay-seconds", "0.05", state_dir=first.state_dir)
    executors.append(again)
    status = again.wait_status(lambda s: s["status"] in ("running", "complete") and s["cycles"] >= 1)
    assert status["safe_mode"] is False, status
    assert journal.read_bytes().count(b'"started"') == 2  # the first run's line was kept, not lost
