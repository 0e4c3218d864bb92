"""Start-up with the exchange down is a temporary failure, waited out in-process; bad credentials are not.

The executor (``tradeexecutor start``, a subprocess) and ``tradeexecutor exchange-sim`` (a subprocess) as
a deployment has them, the unmodified ccxt client between them:

- the simulator starts only after the executor: the executor keeps its process, serves ``/status``
  (``starting``, the ``outage`` of the ``start-up`` job) and ``/healthz`` (503 with the reason once
  ``--outage-grace-seconds`` passed), counts no crash, and trades live once the simulator listens;
- the simulator is in maintenance at start-up: the same, until the fault is cleared;
- a key or secret the exchange refuses (Binance -2015, -1022) is one line and exit 1 at once, no waiting.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_sim_helpers import http_json, simulator_process
from executor_process import Executor, free_port

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "StartupSimKey0123456789"
SECRET = "startup-sim-secret-0123456789"
CLEAN = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
SIM_ENV = {**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}
SIM_OPTIONS = ("--speed", "3600", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET")
#: A short grace and backoff, so the 503 and the retries come within seconds.
FAST = ("--outage-grace-seconds", "1", "--retry-max-seconds", "1")
LIVE = ("--mode", "live", "--exchange", "binance", "--exchange-key-variable", "MY_KEY",
        "--exchange-secret-variable", "MY_SECRET")


def healthz(executor: Executor) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{executor.port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_unhealthy_at_start_up(executor: Executor) -> dict:
    """The start-up outage as /status and /healthz show it, once past its grace; the process waits, no crash."""
    status = executor.wait_status(lambda s: (s.get("outage") or {}).get("retries", 0) >= 2, timeout=150)
    assert status["status"] == "starting" and status["outage"]["job"] == "start-up", status
    assert status["outage"]["error_class"] == "TemporaryError" and status["temporary_failures"] >= 3
    code, body = healthz(executor)
    assert code == 503 and "temporary failure for" in body["error"] and "the start-up job retried" in body["error"]
    assert not (executor.state_dir / "crash.json").exists()
    return status


@pytest.mark.timeout(280)
def test_the_exchange_started_after_the_executor_is_waited_for_and_then_traded_on(tmp_path: Path) -> None:
    port = free_port()
    executor = Executor(tmp_path, *LIVE, "--exchange-url", f"http://127.0.0.1:{port}", *FAST,
                        strategy="paper_flip.py", window=False, env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET})
    try:
        status = wait_unhealthy_at_start_up(executor)
        assert status["mode"] == "live" and "NetworkError" in status["outage"]["error"]
        with simulator_process(*SIM_OPTIONS, "--port", str(port), env=SIM_ENV) as url:
            assert url == f"http://127.0.0.1:{port}"
            status = executor.wait_status(lambda s: s.get("portfolio", {}).get("orders_filled", 0) >= 1, timeout=150)
            assert status["outage"] is None and status["reconciliation"]["outcome"] == "clean"
            assert not status["safe_mode"] and status["crash_count"] == 0
            assert healthz(executor)[0] == 200
            code, orders = http_json("GET", f"{url}/_sim/orders")
            assert code == 200 and orders, "real orders reached the exchange once it was up"
            executor.process.send_signal(signal.SIGTERM)
            assert executor.wait() == 0
    finally:
        executor.kill()
    output = executor.output()
    assert "cannot be reached at start-up; waiting for it in-process" in output
    assert "answered after" in output and "Traceback" not in output and SECRET not in output
    assert not (executor.state_dir / "crash.json").exists()


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with simulator_process(*SIM_OPTIONS, env=SIM_ENV) as url:
        yield url


@pytest.mark.timeout(240)
def test_an_exchange_in_maintenance_at_start_up_is_waited_for(tmp_path: Path, simulator: str) -> None:
    assert http_json("POST", f"{simulator}/_sim/faults", {"kind": "maintenance"})[0] in (200, 201)
    executor = Executor(tmp_path, "--mode", "paper", "--exchange", "binance", "--exchange-url", simulator, *FAST,
                        strategy="paper_flip.py", window=False, env=CLEAN)
    try:
        status = wait_unhealthy_at_start_up(executor)
        assert status["mode"] == "paper"
        assert http_json("DELETE", f"{simulator}/_sim/faults")[0] == 200
        status = executor.wait_status(lambda s: s.get("cycles", 0) >= 1, timeout=150)
        assert status["outage"] is None and status["status"] == "running" and healthz(executor)[0] == 200
        executor.process.send_signal(signal.SIGTERM)
        assert executor.wait() == 0
    finally:
        executor.kill()
        http_json("DELETE", f"{simulator}/_sim/faults")


@pytest.mark.parametrize(("key", "secret", "code"), [(KEY, "wrong-" + SECRET, "-1022"), ("Wrong" + KEY, SECRET, "-2015")])
def test_credentials_the_exchange_refuses_are_one_line_and_no_wait(tmp_path: Path, simulator: str, key: str,
                                                                   secret: str, code: str) -> None:
    executor = Executor(tmp_path, *LIVE, "--exchange-url", simulator, *FAST, strategy="paper_flip.py", window=False,
                        env={**CLEAN, "MY_KEY": key, "MY_SECRET": secret})
    try:
        assert executor.wait(150) == 1
    finally:
        executor.kill()
    errors = [line for line in executor.output().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "AuthenticationError" in errors[0] and code in errors[0], executor.output()
    assert "waiting for it in-process" not in executor.output() and "Traceback" not in executor.output()
    assert secret not in executor.output()


def test_a_stop_signal_ends_the_wait_and_the_waiting_webhook(tmp_path: Path) -> None:
    """In-process: each try is a fresh build; a stop request during the backoff raises StopRequested (exit 0 in the
    CLI) and the waiting webhook is stopped; a non-temporary error of a later try is raised as it is."""
    from daemon_configs import daemon_config
    from executor_process import STRATEGIES
    from tradeexecutor.config import CcxtVenueConfig
    from tradeexecutor.daemon.signals import StopRequested, StopSignals
    from tradeexecutor.daemon.startup_wait import build_when_reachable
    from tradeexecutor.errors import TemporaryError
    from tradeexecutor.runstate import RunState
    from tradeexecutor.venue.ccxt_errors import VenueFailure

    config = daemon_config(strategy_file=STRATEGIES / "paper_flip.py", state_dir=tmp_path / "state", mode="paper",
                           exchange=CcxtVenueConfig(exchange="binance"), retry_max_seconds=0.01)
    served: list[RunState] = []
    stopped: list[bool] = []

    class Server:
        def stop(self, timeout: float | None = None) -> None:
            stopped.append(True)

    def serve(runstate: RunState) -> Server:
        served.append(runstate)
        return Server()

    signals = StopSignals()
    tries: list[int] = []

    def down_then_stop() -> None:
        tries.append(1)
        if len(tries) == 3:
            signals.requested.set()  # as a SIGTERM during the next backoff would
        raise TemporaryError("binance: NetworkError: down")

    with pytest.raises(StopRequested):
        build_when_reachable(config, down_then_stop, serve, signals)
    assert len(tries) == 3 and stopped == [True] and (served[0].outage or {}).get("job") == "start-up"

    def down_then_refused() -> None:
        tries.append(1)
        raise TemporaryError("down") if len(tries) < 6 else VenueFailure("binance: AuthenticationError: -2015")

    with pytest.raises(VenueFailure):
        build_when_reachable(config, down_then_refused, serve, StopSignals())
    assert len(tries) == 6 and stopped == [True, True]
    assert build_when_reachable(config, lambda: "built", serve, StopSignals()) == "built" and len(served) == 2
