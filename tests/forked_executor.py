"""Executors forked from a server that imported the executor once: a restart costs the start-up, not the imports.

A test that restarts ``tradeexecutor start`` a hundred times (tests/test_live_kill.py) would spend
most of its time importing pandas, ccxt and the webhook again in each new interpreter — seconds
per start on a busy machine, none of it under test. :class:`ForkServer` keeps one
``multiprocessing`` fork server that has imported them (``PRELOAD``); :meth:`ForkServer.start`
forks a fresh process from it that runs the real command line (``cli.main``) with the given
arguments and environment, its stdout and stderr in a log file. The child is an ordinary process
of its own: its pid takes a real SIGKILL, it opens the ledger and the exchange itself, and it
shares nothing with the others but the imported modules. ``Executor(..., starter=server.start)``
watches it like a spawned one.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
from multiprocessing.process import BaseProcess
from pathlib import Path

#: What the fork server imports once: the command line, the daemon, the ccxt venue and ccxt.
PRELOAD = ["tradeexecutor.cli.main", "tradeexecutor.daemon.runner", "tradeexecutor.venue.ccxt_venue", "ccxt"]


def _run(argv: list[str], env: dict[str, str], log: str) -> None:
    """In the forked child: the environment and log given, then the command line as ``tradeexecutor ARGV``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.clear()
    os.environ.update(env)
    from tradeexecutor.cli.main import cli

    cli.main(args=argv, prog_name="tradeexecutor")  # exits with the command's code (SystemExit)


class ForkedProcess:
    """The part of ``subprocess.Popen`` that Executor uses, for a process forked from the server."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["forked executor"], timeout or 0.0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid or 0, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """One fork server with ``PRELOAD`` imported; ``start`` forks an executor from it. A context manager: the
    server (a few hundred megabytes of imported modules) ends with the block, not with the test session."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]  # what CPython's tests use

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> ForkedProcess:
        """Fork ``tradeexecutor ARGV`` with exactly ``env`` as its environment, its output appended to ``log``."""
        process = self._context.Process(target=_run, args=(argv, env, str(log)), daemon=False)
        process.start()
        return ForkedProcess(process)
