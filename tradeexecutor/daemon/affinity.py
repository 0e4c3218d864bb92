"""Keep every thread of the executor on one CPU (``--cpu``), since CPython runs them one at a time anyway.

Why. The loop, the scheduler and the webhook are threads of one interpreter and take turns
holding the GIL. When the OS spreads them over several cores, each hand-over of the GIL is a
wake-up on another core, and a thread woken by its timer (the scheduler at a cycle boundary)
can lose the race for the GIL again and again to busy web threads. Under 50 pollers on a 2-core
machine the p99 delay of a cycle's start was about 110-130 ms and /status served 1,500-2,100
requests a second; with the same threads on one core, p99 was about 8-10 ms and /status about
7,400 requests a second (``docs/benchmarks.md``). Little is lost: only one thread runs Python at
any moment.

Settings:

- ``auto`` (the default): pin to the least busy CPU this process may use (near-ties broken at
  random, so executors started together spread out), then every ``rebalance_seconds`` move to
  another CPU when other work crowds the chosen one (our own use of it does not count).

How busy a CPU is: the share of time it was not idle (``/proc/stat``), less our own share on the
CPU we are pinned to. That saturates at 100 %: on a machine whose every core is busy it cannot
tell a CPU that one other process wants from one that three want, so when every CPU is nearly
fully busy the *runnable* threads of other processes on each CPU are counted too
(``/proc/*/task/*/stat``: state R and the CPU whose run queue holds the thread, sampled a few
times) and a CPU's load is the larger of the two, in cores. The scan costs tens of
milliseconds, so it runs only then.
- a CPU number: pin to that CPU and never move (operators who plan cores themselves).
- ``off``: leave placement to the OS.

Linux only (``sched_setaffinity``, ``/proc``): elsewhere ``auto`` does nothing and a number is
a ConfigError. Pinning sets the mask of every thread in ``/proc/self/task`` (the call affects
one thread at a time), and threads started later inherit their creator's mask.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tradeexecutor.errors import ConfigError
from tradeexecutor.settings import check_cpu_setting

__all__ = ["CpuPinning", "read_cpu_times", "runnable_load", "runnable_threads", "thread_cpus"]

logger = logging.getLogger("tradeexecutor.daemon")

#: Seconds of /proc/stat sampled to choose the first CPU.
_FIRST_SAMPLE_SECONDS = 0.1
#: CPUs this much busier than the least busy one (fraction of a core) are not chosen.
_NEAR_TIE = 0.1
#: When every usable CPU is at least this busy, busy fractions cannot rank them: count runnable threads too.
_SATURATED = 0.9
#: Samples of the runnable threads, and seconds between them.
_RUNNABLE_SAMPLES = 8
_RUNNABLE_INTERVAL = 0.03


def can_pin() -> bool:
    """True where threads can be pinned (Linux)."""
    return hasattr(os, "sched_setaffinity") and Path("/proc/self/task").is_dir()


def read_cpu_times(path: Path = Path("/proc/stat")) -> dict[int, tuple[int, int]]:
    """Per CPU, (busy, total) clock ticks since boot from ``/proc/stat``; empty when unreadable."""
    times: dict[int, tuple[int, int]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            values = [int(value) for value in rest.split()]
        except ValueError:
            continue
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
        times[int(name[3:])] = (total - idle, total)
    return times


def busy_fractions(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    """How busy each CPU was between two readings, 0..1."""
    fractions: dict[int, float] = {}
    for cpu, (busy, total) in after.items():
        if cpu in before:
            elapsed = total - before[cpu][1]
            fractions[cpu] = (busy - before[cpu][0]) / elapsed if elapsed > 0 else 0.0
    return fractions


def runnable_threads(exclude_pid: int | None = None, proc: Path = Path("/proc")) -> dict[int, int]:
    """Per CPU, how many threads of other processes are runnable right now (running, or waiting in its run queue).

    Reads each thread's ``stat``: the state (``R``) and field 39, the CPU whose run queue the
    thread is on. Threads of ``exclude_pid`` (ours) are not counted. Empty when /proc is unreadable.
    """
    counts: dict[int, int] = {}
    try:
        processes = [entry.name for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return counts
    skip = str(exclude_pid) if exclude_pid is not None else None
    for pid in processes:
        if pid == skip:
            continue
        try:
            tasks = [entry.path for entry in os.scandir(proc / pid / "task")]
        except OSError:
            continue  # the process ended meanwhile, or is not ours to read
        for task in tasks:
            try:
                with open(os.path.join(task, "stat"), "rb") as handle:
                    text = handle.read()
            except OSError:
                continue
            fields = text[text.rfind(b")") + 2:].split()  # after "(comm)", which may hold spaces
            if len(fields) > 36 and fields[0] == b"R":
                cpu = int(fields[36])
                counts[cpu] = counts.get(cpu, 0) + 1
    return counts


def runnable_load(exclude_pid: int | None = None, samples: int = _RUNNABLE_SAMPLES,
                  interval: float = _RUNNABLE_INTERVAL, proc: Path = Path("/proc")) -> dict[int, float]:
    """Per CPU, the average number of other processes' runnable threads over ``samples`` readings."""
    totals: dict[int, float] = {}
    for index in range(samples):
        if index:
            time.sleep(interval)
        for cpu, count in runnable_threads(exclude_pid, proc).items():
            totals[cpu] = totals.get(cpu, 0.0) + count
    return {cpu: total / samples for cpu, total in totals.items()}


def thread_cpus(pid: int | str = "self") -> dict[int, set[int]]:
    """The CPUs each thread of process ``pid`` may run on, by thread id (for logs and tests)."""
    result: dict[int, set[int]] = {}
    task_dir = Path(f"/proc/{pid}/task")
    for entry in task_dir.iterdir():
        try:
            result[int(entry.name)] = os.sched_getaffinity(int(entry.name))
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return result


def _pin_threads(cpu: int) -> None:
    """Pin every thread of this process (and so the threads they start later) to ``cpu``."""
    for entry in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(entry.name), {cpu})
        except ProcessLookupError:
            continue  # the thread ended meanwhile


class CpuPinning:
    """Applies ``--cpu`` to this process and, for ``auto``, moves away from a crowded CPU (module docstring)."""

    def __init__(self, setting: str = "auto", *, rebalance_seconds: float = 30.0, margin: float = 0.25,
                 stat_path: Path = Path("/proc/stat"), rng: random.Random | None = None,
                 process_time: Callable[[], float] = time.process_time,
                 runnable: Callable[[int], dict[int, float]] = runnable_load) -> None:
        self.setting = check_cpu_setting(setting)
        self.rebalance_seconds = rebalance_seconds
        #: Move when the pinned CPU's other work exceeds the least busy CPU's by this fraction of a core.
        self.margin = margin
        self.stat_path = stat_path
        self._rng = rng or random.Random()
        self._process_time = process_time
        self._runnable = runnable
        #: The CPU every thread is pinned to (None: not pinned).
        self.cpu: int | None = None
        #: Each CPU's load by other work (in cores) at the last rebalance, for logs and tests.
        self.last_loads: dict[int, float] = {}
        self._allowed: list[int] = []
        self._last: tuple[dict[int, tuple[int, int]], float, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> int | None:
        """Pin (and for ``auto`` start the rebalancing thread); the CPU chosen, or None when not pinned."""
        if self.setting == "off":
            return None
        if not can_pin():
            if self.setting != "auto":
                raise ConfigError(f"--cpu {self.setting} needs Linux (sched_setaffinity); use --cpu auto or off")
            logger.info("threads not pinned to a CPU: this system has no sched_setaffinity")
            return None
        self._allowed = sorted(os.sched_getaffinity(0))
        if self.setting != "auto":
            cpu = int(self.setting)
            if cpu not in self._allowed:
                raise ConfigError(f"--cpu {cpu} is not a CPU this process may use "
                                  f"(allowed: {', '.join(map(str, self._allowed))}); pick one of those, or auto")
            try:
                self._pin(cpu, "as --cpu asks")
            except OSError as exc:
                raise ConfigError(f"--cpu {cpu}: this system refused to pin threads ({exc}); use --cpu off") from None
            return cpu
        if len(self._allowed) == 1:
            self.cpu = self._allowed[0]  # nothing to choose, nothing to move
            return self.cpu
        before = read_cpu_times(self.stat_path)
        time.sleep(_FIRST_SAMPLE_SECONDS)
        busy = self._with_runnable(busy_fractions(before, read_cpu_times(self.stat_path)))
        try:
            self._pin(self._least_busy(busy), "the least busy")
        except OSError as exc:  # a sandbox that forbids it: run unpinned rather than not at all
            logger.warning("threads not pinned to a CPU: %s", exc)
            self.cpu = None
            return None
        self._remember()
        self._thread = threading.Thread(target=self._watch, name="cpu-rebalance", daemon=True)
        self._thread.start()
        return self.cpu

    def stop(self) -> None:
        """Stop rebalancing (the pin stays until the process ends)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def rebalance(self) -> int | None:
        """Compare CPUs since the last check; move when another is clearly less busy. The new CPU, or None."""
        if self.cpu is None or self._last is None:
            return None
        before, wall_before, own_before = self._last
        after, wall_after, own_after = self._remember()
        busy = busy_fractions(before, after)
        if self.cpu not in busy or not busy:
            return None
        own = max(0.0, (own_after - own_before) / max(wall_after - wall_before, 1e-9))
        others = {cpu: fraction for cpu, fraction in busy.items() if cpu in self._allowed}
        saturated = bool(others) and min(others.values()) >= _SATURATED
        others[self.cpu] = max(0.0, others[self.cpu] - own)  # our own work moves with us
        if saturated:
            others = self._with_runnable(others, force=True)
        self.last_loads = others
        quietest = min(others.values())
        # Counted threads come and go: a count of n wobbles by about sqrt(n), and less than one thread
        # more is no crowding at all. Moving on noise would only make the executor hop between CPUs.
        margin = max(self.margin, 1.0, math.sqrt(quietest)) if saturated else self.margin
        if others[self.cpu] - quietest <= margin:
            _pin_threads(self.cpu)  # re-assert for threads started since (cheap)
            return None
        target = self._least_busy(others)
        self._pin(target, f"other work keeps {others[self.cpu]:.1f} core(s) of CPU {self.cpu} busy, "
                          f"{others[target]:.1f} of CPU {target}")
        return target

    # -- helpers --------------------------------------------------------------------------------

    def _with_runnable(self, busy: dict[int, float], *, force: bool = False) -> dict[int, float]:
        """``busy`` where every usable CPU is nearly fully busy: each CPU's load as the larger of its busy
        fraction and the runnable threads of other processes on it (module docstring); else as it is."""
        usable = [busy[cpu] for cpu in self._allowed if cpu in busy]
        if not force and (not usable or min(usable) < _SATURATED):
            return busy
        queued = self._runnable(os.getpid())
        return {cpu: max(fraction, queued.get(cpu, 0.0)) for cpu, fraction in busy.items()}

    def _least_busy(self, busy: dict[int, float]) -> int:
        """A CPU within a near-tie of the least busy allowed one, at random."""
        known = {cpu: busy[cpu] for cpu in self._allowed if cpu in busy}
        if not known:
            return self._rng.choice(self._allowed)
        quietest = min(known.values())
        return self._rng.choice(sorted(cpu for cpu, fraction in known.items() if fraction - quietest <= _NEAR_TIE))

    def _pin(self, cpu: int, why: str) -> None:
        _pin_threads(cpu)
        moved = self.cpu is not None
        self.cpu = cpu
        logger.info("executor threads %s CPU %d (%s); --cpu off lets the OS place them",
                    "moved to" if moved else "pinned to", cpu, why)

    def _remember(self) -> tuple[dict[int, tuple[int, int]], float, float]:
        self._last = (read_cpu_times(self.stat_path), time.monotonic(), self._process_time())
        return self._last

    def _watch(self) -> None:
        while not self._stop.wait(self.rebalance_seconds):
            try:
                self.rebalance()
            except OSError as exc:  # never let placement take the executor down
                logger.warning("CPU rebalancing stopped: %s", exc)
                return
