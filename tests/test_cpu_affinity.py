"""--cpu: every thread of a real executor process on one CPU, moved off a CPU that other work crowds.

The daemon runs as a subprocess and its threads' CPU masks are read from /proc; the
rebalancing check runs in a child process next to a real busy process, so the test process
itself is never pinned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_daemon_e2e import Executor, executors  # noqa: F401 - the fixture
from tradeexecutor.daemon.affinity import (
    busy_fractions,
    check_cpu_setting,
    read_cpu_times,
    runnable_load,
    runnable_threads,
    thread_cpus,
)
from tradeexecutor.errors import ConfigError

ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2 or not Path("/proc/self/task").is_dir(),
                                    reason="pinning is observable only on Linux with two or more usable CPUs")


@pytest.mark.parametrize(("text", "expected"), [("auto", "auto"), (" OFF ", "off"), ("3", "3"), ("007", "7")])
def test_cpu_settings_are_normalised(text: str, expected: str) -> None:
    assert check_cpu_setting(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "two", "1.5", "0,1", "123456"])
def test_bad_cpu_settings_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ConfigError, match=r"use auto .* off .* or a CPU number"):
        check_cpu_setting(text)


@needs_two_cpus
def test_proc_stat_covers_every_usable_cpu() -> None:
    times = read_cpu_times()
    assert set(ALLOWED) <= set(times)
    assert all(0 <= busy <= total for busy, total in times.values())


def test_busy_fractions_from_two_readings() -> None:
    before = {0: (100, 1000), 1: (500, 1000)}
    after = {0: (190, 1100), 1: (510, 1100), 2: (5, 10)}
    assert busy_fractions(before, after) == {0: 0.9, 1: 0.1}


@needs_two_cpus
def test_runnable_threads_of_other_processes_are_counted_on_their_cpu() -> None:
    """Four threads of another process spinning outside the GIL, pinned to one CPU, are four runnable threads
    there however busy the machine is (the measure --cpu auto falls back on when every CPU is busy)."""
    cpu = ALLOWED[-1]
    code = textwrap.dedent(f"""
        import hashlib, os, threading
        os.sched_setaffinity(0, {{{cpu}}})
        data = bytes(1 << 20)
        def burn():
            while True:
                hashlib.sha256(data).digest()
        for _ in range(4):
            threading.Thread(target=burn, daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait()
    """)
    burner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert burner.stdout is not None and burner.stdout.readline().strip() == "ready"
        load = runnable_load(os.getpid(), samples=10, interval=0.02)
        without_it = runnable_threads(burner.pid)
    finally:
        burner.kill()
        burner.wait()
    assert load.get(cpu, 0.0) >= 3.5, load  # the four burners (and whatever else happens to run there)
    assert without_it.get(cpu, 0) < load[cpu], "a process left out is not counted"


def _masks(executor: Executor) -> set[frozenset[int]]:
    return {frozenset(cpus) for cpus in thread_cpus(executor.process.pid).values()}


@needs_two_cpus
def test_default_pins_every_thread_of_the_executor_to_one_cpu(tmp_path: Path, executors: list[Executor]) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.05")
    executors.append(executor)
    executor.wait_status(lambda status: status["cycles"] >= 3)
    masks = _masks(executor)
    assert len(thread_cpus(executor.process.pid)) >= 5, "loop, scheduler, webhook and its workers are running"
    assert len(masks) == 1 and len(next(iter(masks))) == 1, f"threads on different CPU sets: {masks}"
    assert next(iter(next(iter(masks)))) in ALLOWED
    assert "pinned to CPU" in executor.output()


@needs_two_cpus
def test_explicit_cpu_and_off(tmp_path: Path, executors: list[Executor]) -> None:
    chosen = ALLOWED[-1]
    pinned = Executor(tmp_path / "a", "--replay-seconds", "0.05", "--cpu", str(chosen))
    unpinned = Executor(tmp_path / "b", "--replay-seconds", "0.05", env={"TRADEEXECUTOR_CPU": "off"})
    executors.extend([pinned, unpinned])
    for executor in (pinned, unpinned):
        executor.wait_status(lambda status: status["cycles"] >= 2)
    assert _masks(pinned) == {frozenset({chosen})}
    assert _masks(unpinned) == {frozenset(ALLOWED)}, "--cpu off leaves every thread to the OS"


@needs_two_cpus
def test_a_cpu_the_process_may_not_use_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(Path(__file__).parent / "strategies" /
                                                                      "daemon_sma.py"),
         "--state-dir", str(state_dir), "--port", "0", "--cpu", "4096"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--cpu 4096 is not a CPU this process may use" in result.stderr
    assert f"allowed: {', '.join(map(str, ALLOWED))}" in result.stderr
    assert "Traceback" not in result.stderr and not state_dir.exists()


_REBALANCE = textwrap.dedent("""
    import json, math, os, subprocess, sys, threading, time
    from tradeexecutor.daemon.affinity import CpuPinning, runnable_load, thread_cpus

    pinning = CpuPinning("auto", rebalance_seconds=3600)  # no background checks: the test calls rebalance()
    first = pinning.start()

    # Other work busy on the same CPU must make the executor move. Whatever else keeps this machine busy
    # (other tests, other people's work) the OS spreads over every CPU; a process pinned to ours with more
    # busy threads than twice all the other runnable threads there are crowds it more than any other CPU.
    elsewhere = sum(runnable_load(os.getpid()).values())
    count = math.ceil(2 * elsewhere) + 3
    code = ("import hashlib, os, threading\\n"
            f"os.sched_setaffinity(0, {{{first}}})\\n"
            "data = bytes(1 << 20)\\n"
            "def burn():\\n"
            "    while True:\\n"
            "        hashlib.sha256(data).digest()  # outside the GIL: every thread runnable at once\\n"
            f"for _ in range({count}):\\n"
            "    threading.Thread(target=burn, daemon=True).start()\\n"
            "print('ready', flush=True)\\n"
            "threading.Event().wait()\\n")
    burner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert burner.stdout.readline().strip() == "ready"  # its threads spin on our CPU, however long that took
    # The rest of the machine's work comes and goes (other tests start and end): while our CPU stays crowded,
    # ask again until a check sees the difference, within a generous deadline; staying put means no move.
    moved, deadline = None, time.monotonic() + 120
    while moved is None and time.monotonic() < deadline:
        time.sleep(1.0)
        moved = pinning.rebalance()
    moved_loads = pinning.last_loads
    burner.kill()
    burner.wait()
    masks = sorted({tuple(sorted(cpus)) for cpus in thread_cpus().values()})
    pinning.stop()
    print(json.dumps({"first": first, "moved": moved, "masks": masks, "burners": count, "moved_loads": moved_loads}))
""")

#: Its own work on its CPU does not count as crowding. Measured for real, other processes' work lands where the OS
#: puts it and on a busy machine may crowd that CPU for real (a rightful move, which failed this check under load),
#: so the readings are the script's: a /proc/stat whose figures it writes, the process's CPU time running like the
#: wall clock (one core of its own, all the time) and other processes' runnable threads spread evenly.
_OWN_WORK = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from tradeexecutor.daemon.affinity import CpuPinning

    stat = Path(sys.argv[1])
    allowed = os.sched_getaffinity(0)
    cpus = sorted(allowed)[:2]
    def write(busy):  # each CPU: busy ticks of 100 more since the last reading, idle the rest
        write.ticks = {cpu: (old[0] + busy.get(cpu, 0), old[1] + 100) for cpu, old in write.ticks.items()}
        stat.write_text("cpu  0 0 0 0 0 0 0 0\\n" + "".join(
            f"cpu{cpu} {b} 0 0 {t - b} 0 0 0 0\\n" for cpu, (b, t) in sorted(write.ticks.items())))
    write.ticks = {cpu: (0, 1000) for cpu in cpus}
    write({})
    asked = []
    def runnable(pid):  # other processes' runnable threads: as many on each CPU
        asked.append(pid)
        return {cpu: 2.0 for cpu in cpus}

    def check(own_time, wait):
        pinning = CpuPinning("auto", rebalance_seconds=3600, stat_path=stat, process_time=own_time, runnable=runnable)
        first = pinning.start()
        other = [cpu for cpu in cpus if cpu != first][0]
        time.sleep(wait)  # our own share is CPU time over wall time: a second makes it exact to a few per cent
        write({first: 90, other: 50})  # our CPU 40 % busier than the other: by a core of our own work
        quiet = pinning.rebalance()
        time.sleep(0.2)
        write({first: 100, other: 100})  # every CPU saturated: the runnable threads of others decide
        saturated = pinning.rebalance()
        pinning.stop()
        for task in Path("/proc/self/task").iterdir():  # unpinned again, for the next check to choose
            try:
                os.sched_setaffinity(int(task.name), allowed)
            except ProcessLookupError:
                pass  # the rebalancing thread, just ended
        return {"quiet": quiet, "saturated": saturated, "first": first, "other": other, "loads": pinning.last_loads}

    own = check(time.monotonic, 1.0)  # a core of its own the whole time
    none = check(lambda: 0.0, 0.2)  # the same readings with no work of its own: the other 40 % is someone else's
    print(json.dumps({"own": own, "none": none, "asked": sorted(set(asked)), "pid": __import__("os").getpid()}))
""")


@needs_two_cpus
def test_its_own_work_on_its_cpu_is_not_crowding(tmp_path: Path) -> None:
    script = tmp_path / "own_work.py"
    script.write_text(_OWN_WORK)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "stat")], capture_output=True, text=True,
                            timeout=120, check=False, env=_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    own, none = report["own"], report["none"]
    assert own["quiet"] is None and own["saturated"] is None, f"its own work drove it off its CPU: {report}"
    assert none["quiet"] == none["other"], f"the same readings without its own work must move it: {report}"
    assert report["asked"] == [report["pid"]], "the runnable threads counted are other processes' (its own excluded)"


def _env() -> dict[str, str]:
    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


@needs_two_cpus
def test_auto_moves_off_a_cpu_crowded_by_other_work(tmp_path: Path) -> None:
    script = tmp_path / "rebalance.py"
    script.write_text(_REBALANCE)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False,
                            env=_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["first"] in ALLOWED
    assert report["moved"] in ALLOWED and report["moved"] != report["first"], report
    assert report["masks"] == [[report["moved"]]], "every thread moved together"
