"""``tradeexecutor drill NAME``: every drill run through the CLI against a real simulator, checked from outside.

Each drill runs as a subprocess (``python -m tradeexecutor.cli.main drill NAME --exchange-url URL --out DIR``)
against one ``tradeexecutor exchange-sim`` this module starts (the drill resets it first), so the test can
ask the simulator itself afterwards: its own order list must hold exactly one order per intent — each client
order id once, each one the ledger's — whatever the drill's report says. The report (``drills/NAME.json``)
must exist, name what was injected, list the expected behaviour, and carry a passing verdict per check; the
exit code must agree with it. No credential value may appear in any file of the drill's folder.

The usage errors are one line and exit 2: an unknown drill (the names listed), no name, a non-empty --out,
--exchange-url without the credential variables.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_sim_helpers import http_json, simulator_process
from tradeexecutor.drill import DRILLS
from tradeexecutor.drill.harness import Stage
from tradeexecutor.drill.scenarios import EXECUTOR_OPTIONS, KILL_AT_ENV, STRATEGIES
from tradeexecutor.engine.crashpoint import KILL_AT_ENV as ENGINE_KILL_AT_ENV
from tradeexecutor.layout import DrillFiles
from tradeexecutor.ledger import load_state

pytest.importorskip("ccxt")

KEY = "DrillSimKey0123456789"
SECRET = "drill-sim-secret-0123456789"
#: The drill's environment: no TRADEEXECUTOR_ setting of the caller's, the simulator's credentials by the default names.
CLEAN = {name: value for name, value in os.environ.items() if not name.startswith("TRADEEXECUTOR_")}
ENV = {**CLEAN, "TRADEEXECUTOR_SIM_API_KEY": KEY, "TRADEEXECUTOR_SIM_API_SECRET": SECRET}

def drill(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          timeout: float = 280) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "drill", *args], capture_output=True,
                          text=True, timeout=timeout, env=env if env is not None else ENV, cwd=cwd)


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    """One simulator for every drill of the module (each drill resets it): 1-second candles from the bundled data."""
    with simulator_process("--speed", "3600", env=ENV) as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(290)
@pytest.mark.parametrize("name", list(DRILLS))
def test_drill_passes_and_the_simulator_holds_one_order_per_intent(name: str, simulator: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = drill(name, "--exchange-url", simulator, "--out", str(out))
    files = DrillFiles(out)
    report = json.loads(files.report(name).read_text())
    # The simulator's own record, asked directly: each client order id once, and each one an order of the ledger.
    code, orders = http_json("GET", f"{simulator}/_sim/orders")
    assert code == 200
    ids = Counter(order["clientOrderId"] for order in orders)
    failed = [check for check in report["checks"] if not check["passed"]]
    assert orders and all(count == 1 for count in ids.values()), (ids, failed, result.stdout[-3000:],
                                                                  result.stderr[-3000:])
    state = load_state(files.run.state)
    assert state is not None
    ledger = {o.client_order_id: o for p in state.portfolio.all_positions() for o in p.orders}
    assert set(ids) <= set(ledger), (set(ids) - set(ledger))
    for order in orders:
        assert ledger[order["clientOrderId"]].filled_quantity == pytest.approx(float(order["executedQty"]), rel=1e-12)
    # The report: what was injected and when, what was expected, each check's verdict, agreeing with the exit code.
    assert report["drill"] == name and report["exchange_url"] == simulator and report["expected"]
    assert report["injected"] and all("at" in item for item in report["injected"])
    assert report["journal"] and report["health"] and report["processes"]
    assert {row["client_order_id"] for row in report["orders"]["ledger"]} == set(ledger)
    assert (result.returncode, report["passed"], failed) == (0, True, []), result.stderr
    assert f"drill {name}: passed" in result.stdout
    # The credentials the simulator takes are never written: not in the report, the logs, the ledger or the journal.
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert KEY.encode() not in data and SECRET.encode() not in data, path


@pytest.mark.slow
def test_an_executor_whose_port_was_taken_meanwhile_is_started_again_on_another(simulator: str,
                                                                                 tmp_path: Path) -> None:
    """The port a drill picks free may be bound by another process before its executor binds it: the executor
    exits at once (nothing written) and the drill starts it again on another port, instead of failing with no order
    placed. Here the port is taken for sure: a socket of the test listens on it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stage = Stage(DrillFiles(tmp_path / "run"), STRATEGIES["hold"], simulator, (KEY, SECRET))
        try:
            stage.port = taken.getsockname()[1]
            stage.start_executor(EXECUTOR_OPTIONS)  # returns once the webhook listens
            assert stage.port != taken.getsockname()[1]
            assert [p["event"] for p in stage.record["processes"]] == [
                "executor started", "executor exited: its port was taken meanwhile", "executor started"]
            assert stage.executor is not None and stage.executor.poll() is None
            stage.executor.kill()  # what it does next is the drills' business: no graceful stop to wait for
        finally:
            stage.close()
    log = stage.files.run.executor_log.read_text()
    assert "cannot listen on" in log and f"listening on http://127.0.0.1:{stage.port}" in log


def test_the_kill_point_is_the_engines() -> None:
    assert KILL_AT_ENV == ENGINE_KILL_AT_ENV


def test_list_names_every_drill() -> None:
    result = drill("--list")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(DRILLS)


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines()
             if line.startswith(("Error:", "error:"))]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", [("no-such-drill",), ()], ids=["unknown", "missing"])
def test_a_bad_name_lists_the_drills_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    result = drill(*args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    line = _error_line(result)
    assert all(name in line for name in DRILLS), line
    assert not (tmp_path / "run").exists()


def test_a_used_out_folder_is_refused_exit_2(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    result = drill("rejection", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "is not empty" in _error_line(result)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["something"]


def test_an_external_simulator_needs_its_credential_variables_exit_2(tmp_path: Path) -> None:
    result = drill("rejection", "--exchange-url", "http://127.0.0.1:9", "--out", str(tmp_path / "run"),
                   env={**CLEAN, "TRADEEXECUTOR_SIM_API_SECRET": SECRET})
    assert result.returncode == 2
    line = _error_line(result)
    assert "TRADEEXECUTOR_SIM_API_KEY is not set" in line and SECRET not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(290)
def test_without_an_url_the_drill_starts_its_own_simulator_in_a_new_run_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = drill("partial-fill", env={**CLEAN, "TRADEEXECUTOR_RUNS_DIR": str(runs)}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = list(runs.iterdir())
    assert folder.name.endswith("-drill-partial-fill")
    files = DrillFiles(folder)
    report = json.loads(files.report("partial-fill").read_text())
    assert report["passed"] and report["exchange_url"].startswith("http://127.0.0.1:")
    assert "listening on" in files.simulator_log.read_text() and files.run.executor_log.is_file()
    assert files.run.strategy.is_file() and (files.run.state_files.ledger).is_file()
