"""The executor daemon: runs one strategy unattended on wall-clock cycles, one worker thread, crash-safe.

Modules, one job each:

- ``commands``  the loop's inbox: Command kinds and a queue that coalesces duplicate ticks;
- ``clock``     injected time: SystemClock and a FakeClock for tests;
- ``scheduler`` when jobs fire: APScheduler 3 ticker and its in-memory twin (only module importing apscheduler);
- ``loop``      ExecutorLoop, the worker thread running the cycle, trigger-check and revaluation jobs;
- ``publish``   keeps RunState current (counters, summary, charts, lag, next cycle);
- ``crash``     crash records, crash-loop safe mode, the watchdog;
- ``signals``   SIGTERM/SIGINT → graceful stop;
- ``startup``   loaded-state checks, replay start;
- ``runner``    builds and runs a replay- or paper-mode executor, maps endings to exit codes;
- ``backtest_mode`` ``start --mode backtest``.

The webhook is built by the CLI and handed in (the daemon never imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradeexecutor import lazy_exports

if TYPE_CHECKING:
    from tradeexecutor.daemon.clock import Clock, FakeClock, SystemClock
    from tradeexecutor.daemon.commands import Command, CommandKind, CommandQueue, JobKind
    from tradeexecutor.daemon.loop import ExecutorLoop, LoopOutcome
    from tradeexecutor.daemon.runner import Daemon, build_daemon
    from tradeexecutor.daemon.scheduler import ApschedulerTicker, InMemoryTicker, JobSpec, Ticker

#: Where each name this package re-exports lives. Imported on first use, so that ``start`` can
#: install its stop signals (daemon.signals) before it pays for pandas, apscheduler and the engine.
_EXPORTS = {
    "Clock": "clock", "FakeClock": "clock", "SystemClock": "clock",
    "Command": "commands", "CommandKind": "commands", "CommandQueue": "commands", "JobKind": "commands",
    "ExecutorLoop": "loop", "LoopOutcome": "loop",
    "Daemon": "runner", "build_daemon": "runner",
    "ApschedulerTicker": "scheduler", "InMemoryTicker": "scheduler", "JobSpec": "scheduler", "Ticker": "scheduler",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "ApschedulerTicker",
    "Clock",
    "Command",
    "CommandKind",
    "CommandQueue",
    "Daemon",
    "ExecutorLoop",
    "FakeClock",
    "InMemoryTicker",
    "JobKind",
    "JobSpec",
    "LoopOutcome",
    "SystemClock",
    "Ticker",
    "build_daemon",
]
