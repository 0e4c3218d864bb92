"""``tradeexecutor start`` as a subprocess, watched over HTTP: the helper of the end-to-end tests.

``Executor(tmp_path, *args, strategy=...)`` starts one executor on a free port (or ``port``)
replaying ``START`` to ``END`` of the bundled data (``window=False``: all of ``--data``) from the first bar, with charts off and fast
trigger checks and revaluations; ``wait_status`` polls /status until a condition holds. ``launcher`` runs
a script instead of ``python -m tradeexecutor.cli.main`` (tests/outage_launcher.py: a feed standing in for an exchange that goes down);
``starter`` forks it from a server that imported the executor already (tests/forked_executor.py).
Used by tests/test_daemon_e2e.py and tests/test_wallboard_browser.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

STRATEGIES = Path(__file__).parent / "strategies"
START, END = "2005-01-01", "2005-12-31"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Executor:
    """One ``tradeexecutor start`` subprocess with its port and log file."""

    def __init__(self, tmp_path: Path, *args: str, strategy: str = "daemon_sma.py", state_dir: Path | None = None,
                 env: dict[str, str] | None = None, port: int | None = None, window: bool = True,
                 headers: dict[str, str] | None = None, launcher: Path | None = None,
                 starter: Callable[[list[str], dict[str, str], Path], Any] | None = None):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self._tmp_path = tmp_path
        #: A free port picked here may be taken by another process (another test worker) before the executor
        #: binds it; then wait_status starts it again on another (see _port_was_taken), ``tries`` times in all.
        self._picked_port = port is None
        self._tries = 3
        self.port = port or free_port()
        self.state_dir = state_dir or tmp_path / "state"
        #: Sent with every request (basic auth, when the executor has it on).
        self.headers = headers or {}
        program = [str(launcher)] if launcher is not None else ["-m", "tradeexecutor.cli.main"]
        self._command = [sys.executable, *program, "start", str(STRATEGIES / strategy),
                         "--state-dir", str(self.state_dir),
                         *(("--start", START, "--end", END) if window else ()), "--replay-start", "first", "--chart-seconds", "0", "--trigger-seconds", "0.5",
                         "--revaluation-seconds", "0.7", *args]
        self._environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._starter = starter
        #: A subprocess.Popen, or what ``starter`` returned in its place (the same methods).
        self.process: Any
        self._launch()

    def _launch(self) -> None:
        self._tries -= 1
        self.log = self._tmp_path / f"executor-{self.port}-{time.monotonic_ns()}.log"
        if self._starter is not None:  # the arguments after the interpreter and program, as ``start`` takes them
            self.log.touch()
            arguments = [*self._command[self._command.index("start"):], "--port", str(self.port)]
            self.process = self._starter(arguments, self._environment, self.log)
            return
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([*self._command, "--port", str(self.port)], stdout=log,
                                            stderr=subprocess.STDOUT, env=self._environment)

    def _port_was_taken(self) -> bool:
        """The executor exited because the port this helper picked was bound meanwhile: the one case to start again.

        ``start`` checks the port before it locks or writes its state directory, so nothing of the failed
        start is left behind (tests/test_daemon_e2e.py proves it with a port in use).
        """
        return (self._picked_port and self._tries > 0 and self.process.returncode == 2
                and "webhook cannot listen on" in self.output())

    def status(self) -> dict[str, Any] | None:
        """GET /status, None while the webhook does not answer."""
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}/status", headers=self.headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
        """The first /status that satisfies ``predicate``; generous by default, since a machine whose cores other
        work keeps busy can take tens of seconds to start an executor (only a failure waits that long)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and predicate(status):
                return status
            if self.process.poll() is not None:
                if self._port_was_taken():
                    self.port = free_port()
                    self._launch()
                    continue
                raise AssertionError(f"executor exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for /status; last: {self.status()}\n{self.output()}")

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"executor did not exit in {timeout}s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
