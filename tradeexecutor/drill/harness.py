"""The drill's stage: an exchange simulator, a real executor process, and everything seen of both.

:class:`Stage` starts ``tradeexecutor exchange-sim`` (or uses one at ``--exchange-url``) and
``tradeexecutor start --mode live`` against it as subprocesses, with throwaway credentials
made for this drill and handed to both only through their environment — never printed, logged
or written. It injects faults through the simulator's loopback control API, watches the
executor through its webhook (a thread records every change of ``/healthz``), and reads the
journal and the ledger from the executor's state directory. Everything the drill did and saw
goes into :attr:`Stage.record`, which the report (``drills/NAME.json``) is made of.

Both processes are children of the drill: :meth:`Stage.close` ends them (SIGTERM, then SIGKILL
after a grace) whatever happened, so a failed drill leaves nothing running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar

from tradeexecutor.layout import DrillFiles

__all__ = ["DrillError", "Stage", "wait_until"]

T = TypeVar("T")

#: Names of the variables the children read the throwaway credentials from (names only, never values).
KEY_VARIABLE = "TRADEEXECUTOR_DRILL_EXCHANGE_KEY"
SECRET_VARIABLE = "TRADEEXECUTOR_DRILL_EXCHANGE_SECRET"

#: How long a process may take to come up on a busy machine (only a failure waits this long).
START_SECONDS = 120.0


class DrillError(Exception):
    """The drill could not be staged (a process would not start, the simulator is unreachable)."""


def now_iso() -> str:
    """The time now, UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition()`` until it returns something truthy (returned); DrillError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DrillError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, decoded JSON or text) of one request; an HTTP error is an answer, no answer is (0, reason)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))
    try:
        return status, json.loads(payload or b"null")
    except ValueError:
        return status, payload.decode("utf-8", "replace")


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_environment() -> dict[str, str]:
    """This process's environment without any TRADEEXECUTOR_ setting: the children get only what the drill sets."""
    return {name: value for name, value in os.environ.items() if not name.startswith("TRADEEXECUTOR_")}


class _HealthWatch(threading.Thread):
    """Polls /healthz and keeps each change of its answer (status code and reason) with the time it was seen."""

    def __init__(self, url: str, interval: float = 0.2):
        super().__init__(name="drill-healthz", daemon=True)
        self.url = url
        self.interval = interval
        self.transitions: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        last: int | None = None
        while not self._halt.wait(self.interval):
            status, body = http_json("GET", self.url, timeout=3)
            if status == 0:
                continue  # not up (yet, or any more): what the process list records
            reasons = body.get("reasons") if isinstance(body, dict) else None
            reason = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
            if status != last:  # a change of status, with its first reason (reasons count seconds up)
                self.transitions.append({"at": now_iso(), "status": status, "reason": reason})
                last = status

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


class Stage:
    """The simulator, the executor and the record of one drill."""

    def __init__(self, files: DrillFiles, strategy_source: str, exchange_url: str | None = None,
                 credentials: tuple[str, str] | None = None):
        self.files = files
        self.files.drills.mkdir(parents=True, exist_ok=True)
        self.files.run.strategy.write_text(strategy_source, encoding="utf-8")
        # Throwaway credentials: the simulator accepts them and the executor signs with them, both from the
        # environment; at an external simulator they are the ones it was started with (read from the variables).
        self._key, self._secret = credentials or (secrets.token_hex(16), secrets.token_hex(24))
        self._sim: subprocess.Popen[bytes] | None = None
        self._sim_log: BinaryIO | None = None
        self.executor: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._health: _HealthWatch | None = None
        self.record: dict[str, Any] = {"injected": [], "processes": [], "health": []}
        try:
            self.url = exchange_url or self._start_simulator()
        except BaseException:
            self.close()  # a simulator that started but never said where it listens is ended too
            raise
        if exchange_url is not None:
            status, _ = self.control("POST", "reset")
            if status != 200:
                raise DrillError(f"the simulator at {exchange_url} did not answer its control API "
                                 f"(POST /_sim/reset: {status}); is it a tradeexecutor exchange-sim on loopback?")

    # -- the simulator -------------------------------------------------------------------------------------------

    def _start_simulator(self) -> str:
        env = {**_clean_environment(), "PYTHONUNBUFFERED": "1", KEY_VARIABLE: self._key, SECRET_VARIABLE: self._secret}
        self._sim_log = open(self.files.simulator_log, "wb")  # noqa: SIM115 - the child holds it; closed in close()
        self._sim = subprocess.Popen(
            [sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim", "--port", "0", "--speed", "3600",
             "--api-key-env", KEY_VARIABLE, "--api-secret-env", SECRET_VARIABLE],
            stdout=self._sim_log, stderr=subprocess.STDOUT, env=env)

        def listening() -> str | None:
            if self._sim is not None and self._sim.poll() is not None:
                raise DrillError(f"the exchange simulator exited with {self._sim.returncode}; "
                                 f"see {self.files.simulator_log}")
            for line in self.files.simulator_log.read_text(errors="replace").splitlines():
                if "listening on" in line:
                    return line.rsplit(" ", 1)[1].strip()
            return None

        return wait_until(listening, START_SECONDS, "the exchange simulator did not start")

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One call of the simulator's control API."""
        return http_json(method, f"{self.url}/_sim/{path}", body)

    def inject(self, fault: dict[str, Any]) -> dict[str, Any]:
        """Add ``fault`` on the simulator (recorded with the time); returns it as the simulator holds it."""
        status, answer = self.control("POST", "faults", fault)
        if status != 200:
            raise DrillError(f"the simulator refused the fault {fault}: {answer}")
        self.record["injected"].append({"at": now_iso(), "fault": answer})
        return dict(answer)

    def sim_orders(self) -> list[dict[str, Any]]:
        """Every order the simulator keeps."""
        status, orders = self.control("GET", "orders")
        if status != 200 or not isinstance(orders, list):
            raise DrillError(f"GET /_sim/orders answered {status}")
        return orders

    def sim_requests(self) -> list[dict[str, Any]]:
        """The simulator's latest API requests (method, path, status, time), oldest first."""
        status, requests = self.control("GET", "requests?limit=10000")
        if status != 200 or not isinstance(requests, list):
            raise DrillError(f"GET /_sim/requests answered {status}")
        return requests

    def fault_alive(self, fault_id: int) -> bool:
        """True while the simulator still holds fault ``fault_id`` (not used up, not past its end)."""
        status, faults = self.control("GET", "faults")
        return status == 200 and any(f.get("id") == fault_id for f in faults)

    # -- the executor --------------------------------------------------------------------------------------------

    def start_executor(self, options: tuple[str, ...], env: dict[str, str] | None = None) -> None:
        """``tradeexecutor start --mode live`` on the drill's strategy and state, its output appended to the log.

        Returns once its webhook listens (or it has exited, or START_SECONDS passed: the drill's own steps then
        say what went wrong). A port picked free here can be bound by another process before the executor binds
        it; the executor then exits at once with "cannot listen on" and nothing written, and is started again on
        another port (three tries in all), where a drill on a busy machine used to fail having placed no order.
        """
        self.port = self.port or free_port()
        environment = {**_clean_environment(), "PYTHONUNBUFFERED": "1", KEY_VARIABLE: self._key,
                       SECRET_VARIABLE: self._secret, **(env or {})}
        for tries_left in (2, 1, 0):
            command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(self.files.run.strategy),
                       "--mode", "live", "--exchange", "binance", "--exchange-url", self.url,
                       "--exchange-key-variable", KEY_VARIABLE, "--exchange-secret-variable", SECRET_VARIABLE,
                       "--state-dir", str(self.files.run.state), "--port", str(self.port), "--chart-seconds", "0",
                       "--cpu", "off", *options]
            log_path = self.files.run.executor_log
            offset = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:
                self.executor = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
            self.record["processes"].append({"event": "executor started", "at": now_iso(), "pid": self.executor.pid,
                                             "extra_environment": sorted(env or {})})
            if not self._lost_its_port(offset) or not tries_left:
                break
            self.record["processes"].append({"event": "executor exited: its port was taken meanwhile",
                                             "at": now_iso(), "port": self.port})
            self.port = free_port()
        url = f"http://127.0.0.1:{self.port}/healthz"
        if self._health is None:
            self._health = _HealthWatch(url)
            self._health.start()
        self._health.url = url  # the port of this start (another one when its port was taken)

    def _lost_its_port(self, offset: int) -> bool:
        """Wait until the executor started at log ``offset`` listens or exits; True when it exited because the
        port was taken."""
        assert self.executor is not None
        executor, listening = self.executor, f"listening on http://127.0.0.1:{self.port}"

        def output() -> str:
            with open(self.files.run.executor_log, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")

        try:
            exited = wait_until(lambda: "exited" if executor.poll() is not None else
                                ("listening" if listening in output() else None), START_SECONDS,
                                "the executor's webhook did not start")
        except DrillError:
            return False  # still starting: the drill's own waits report what it does
        return exited == "exited" and executor.returncode == 2 and "cannot listen on" in output()

    def status(self) -> dict[str, Any] | None:
        """The executor's /status, None while it does not answer."""
        code, body = http_json("GET", f"http://127.0.0.1:{self.port}/status", timeout=3)
        return body if code == 200 and isinstance(body, dict) else None

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first /status that satisfies ``predicate``; DrillError when the executor exits or time runs out."""
        def check() -> dict[str, Any] | None:
            if self.executor is not None and self.executor.poll() is not None:
                raise DrillError(f"{what}: the executor exited with {self.executor.returncode}; "
                                 f"see {self.files.run.executor_log}")
            status = self.status()
            return status if status is not None and predicate(status) else None

        return wait_until(check, timeout, what)

    def wait_exit(self, timeout: float, what: str) -> int:
        """The executor's exit code once it has exited (recorded)."""
        assert self.executor is not None
        try:
            code = self.executor.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DrillError(f"{what}: the executor did not exit within {timeout:.0f} s") from None
        self.record["processes"].append({"event": "executor exited", "at": now_iso(), "exit_code": code})
        return code

    def signal_executor(self, signum: signal.Signals) -> None:
        """Send the executor ``signum`` (recorded as an injection)."""
        assert self.executor is not None
        self.record["injected"].append({"at": now_iso(), "signal": signum.name, "pid": self.executor.pid})
        self.executor.send_signal(signum)

    def stop_executor(self, timeout: float = 60.0) -> int:
        """SIGTERM, the graceful stop; its exit code (0 when it stopped cleanly)."""
        assert self.executor is not None
        self.record["processes"].append({"event": "executor sent SIGTERM", "at": now_iso()})
        self.executor.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout, "stopping the executor")

    def journal(self) -> list[dict[str, Any]]:
        """Every journal entry of the executor's state directory, oldest first."""
        from tradeexecutor.store.journal import Journal

        return Journal(self.files.run.state_files.journal).read(limit=100_000)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The journal entries of event ``name``."""
        return [entry for entry in self.journal() if entry["event"] == name]

    def ledger_orders(self) -> list[Any]:
        """Every order of the ledger (after the executor stopped: the committed state)."""
        from tradeexecutor.ledger import load_state

        state = load_state(self.files.run.state)
        if state is None:
            return []
        return [order for position in state.portfolio.all_positions() for order in position.orders]

    def published_orders(self) -> dict[str, dict[str, Any]]:
        """The orders of the state the running executor last published (its webhook's /state), by client order id.

        The ledger itself is the executor's while it runs; /state is the copy it publishes after each change
        (public/state.json on disk may be up to a minute behind it). Empty while the executor does not answer.
        """
        code, state = http_json("GET", f"http://127.0.0.1:{self.port}/state", timeout=5)
        if code != 200 or not isinstance(state, dict):
            return {}
        portfolio = state.get("portfolio", {})
        positions = [p for kind in ("open_positions", "closed_positions", "failed_positions")
                     for p in portfolio.get(kind, [])]
        return {order["client_order_id"]: order for position in positions for order in position.get("orders", [])}

    def files_holding_credentials(self) -> list[str]:
        """Files of the run folder that hold the drill's API key or secret (there must be none)."""
        needles = (self._key.encode(), self._secret.encode())
        return sorted(str(path) for path in self.files.root.rglob("*")
                      if path.is_file() and any(needle in path.read_bytes() for needle in needles))

    def health_transitions(self) -> list[dict[str, Any]]:
        """Each change of /healthz seen so far."""
        return list(self._health.transitions) if self._health is not None else []

    def close(self) -> None:
        """End both processes (if still running) and the health watch."""
        if self._health is not None:
            self._health.stop()
            self.record["health"] = self._health.transitions
        for process in (self.executor, self._sim):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._sim_log is not None:
            self._sim_log.close()
