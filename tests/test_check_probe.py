"""``tradeexecutor check SPEC --probe`` against a real exchange simulator on loopback, with its faults.

The probe is one unsigned, read-only request through the unmodified ccxt client: the simulator
answering gives ``probe_ok``; a 5xx, maintenance or a 429 ``probe_http_error``; an answer that
never comes ``probe_timeout``; a port where nothing listens ``probe_unreachable``. It sends no
credential (the simulator records every request it served) and changes nothing there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import Running, make_simulator, serve
from executor_process import free_port
from test_runs_readiness import spec_file

pytest.importorskip("ccxt")


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(make_simulator(), threads=4) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(running: Running) -> Iterator[None]:
    running.control("POST", "reset")
    yield
    running.control("POST", "reset")


def probe(tmp_path: Path, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run ``check --probe --json`` on a paper spec; (exit code, the readiness record)."""
    out = tmp_path / "readiness.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "check", str(spec_file(tmp_path, "paper")),
                             "--probe", "--json", "--output", str(out), "--exchange", "binance", "--exchange-url", url, *extra],
                            capture_output=True, text=True, timeout=120, env=environment, check=False)
    assert result.stderr == "", result.stderr
    assert json.loads(result.stdout) == json.loads(out.read_text())  # printed and written alike
    return result.returncode, json.loads(result.stdout)


def test_an_answering_exchange_is_probe_ok_and_the_probe_reads_only_the_clock_unsigned(tmp_path: Path,
                                                                                        running: Running) -> None:
    code, record = probe(tmp_path, running.url)
    assert code == 0 and record["state"] == "configured"
    assert record["probe"]["state"] == "probe_ok" and record["probe"]["url"] == running.url
    requests = running.requests()
    assert [(r["method"], r["path"]) for r in requests] == [("GET", "/api/v3/time")]
    assert not any("signature" in json.dumps(r) or "X-MBX-APIKEY" in json.dumps(r) for r in requests)


@pytest.mark.parametrize("fault", [{"kind": "error", "status": 503}, {"kind": "error", "status": 500, "code": -1001,
                                    "msg": "Internal error; unable to process your request. Please try again."},
                                   {"kind": "maintenance"}, {"kind": "rate_limit", "retry_after": 5}])
def test_an_exchange_answering_with_an_error_is_probe_http_error(tmp_path: Path, running: Running,
                                                                 fault: dict[str, Any]) -> None:
    assert running.control("POST", "faults", fault)[0] == 200
    code, record = probe(tmp_path, running.url)
    assert code == 1 and record["probe"]["state"] == "probe_http_error", record
    assert record["probe"]["detail"]


def test_an_exchange_that_never_answers_is_probe_timeout(tmp_path: Path, running: Running) -> None:
    assert running.control("POST", "faults", {"kind": "timeout", "path": "/api/v3/time", "method": "GET",
                                              "hang_seconds": 20, "count": 1})[0] == 200
    code, record = probe(tmp_path, running.url, "--exchange-timeout-seconds", "1")
    assert code == 1 and record["probe"]["state"] == "probe_timeout", record
    assert record["probe"]["seconds"] >= 1


def test_a_port_where_nothing_listens_is_probe_unreachable(tmp_path: Path) -> None:
    code, record = probe(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert code == 1 and record["probe"]["state"] == "probe_unreachable", record


def test_without_probe_the_check_asks_nothing_of_the_network(tmp_path: Path, running: Running) -> None:
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "check", str(spec_file(tmp_path, "paper")),
                             "--json", "--exchange-url", running.url], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0 and json.loads(result.stdout)["probe"] is None
    assert running.requests() == []


def test_without_exchange_options_the_probe_asks_the_exchange_the_spec_names(tmp_path: Path, running: Running) -> None:
    spec = spec_file(tmp_path, "paper")
    spec.write_text(spec.read_text() + f"  exchange_url: {running.url}\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "check", str(spec), "--probe", "--json"],
                            capture_output=True, text=True, timeout=120, env=environment, check=False)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["probe"]["state"] == "probe_ok"
    assert record["probe"]["exchange"] == "binance" and record["probe"]["url"] == running.url
    requests = running.requests()
    assert [(r["method"], r["path"]) for r in requests] == [("GET", "/api/v3/time")]
