"""``tradeexecutor exchange-sim`` as a real subprocess: it serves until SIGTERM, keeps credentials secret, refuses bad input.

ccxt trades against the process it started; stdout and stderr are searched for the key and
secret afterwards. Bad options exit 2 with one line and start nothing. ``tradeexecutor --help``
must not load the simulator (the CLI stays quick to start).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from exchange_sim_helpers import ccxt_client, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
KEY = "CliSimKey0123456789"
SECRET = "cli-sim-secret-9876543210"
ENV = {**os.environ, "SIM_KEY": KEY, "SIM_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
COMMAND = [sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim"]


def test_the_simulator_runs_as_a_process_serves_ccxt_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", "--random-walk", "3", "--symbols", "BTC/USDT,ETH/USDT", "--start-price", "2000",
         "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET", "--balance", "USDT=5000"],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr_pipe = process.stdout, process.stderr
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        first = wait_for(lambda: lines[:1], timeout=60)[0]
        assert first.startswith("exchange simulator listening on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[1].strip()
        client = ccxt_client(url, key=KEY, secret=SECRET)
        assert sorted(client.load_markets()) == ["BTC/USDT", "ETH/USDT"]
        order = client.create_order("ETH/USDT", "market", "buy", 1, None, {"clientOrderId": "cli-1"})
        assert order["status"] == "closed"
        assert client.fetch_balance()["USDT"]["free"] < 5000
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    reader.join(10)
    stderr = stderr_pipe.read()
    output = "".join(lines) + stderr
    assert "exchange simulator stopped" in output and "SIM_KEY" in output
    assert KEY not in output and SECRET not in output
    assert "Traceback" not in stderr


def _fails(*options: str, env: dict[str, str] = ENV) -> str:
    result = subprocess.run([*COMMAND, "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET", *options],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]  # ours, or click's
    assert len(errors) == 1 and "Traceback" not in result.stderr and result.stdout == "", result.stderr
    return errors[0]


@pytest.mark.parametrize(("options", "fragment"), [
    (("--speed", "1000"), "choose a speed that gives whole seconds"),
    (("--symbols", "BTCUSDT"), "must be written BASE/QUOTE"),
    (("--symbols", "BTC/USDT"), "no candles for BTC/USDT"),
    (("--data", "missing.csv"), "--symbols"),
    (("--data", "stocks-daily", "--random-walk", "1"), "not both"),
    (("--balance", "USDT"), "ASSET=AMOUNT"),
    (("--fee", "lots"), "--fee must be a number"),
    (("--fee-asset", "gold"), "Invalid value for '--fee-asset'"),
])
def test_bad_options_exit_2_with_one_line(options: tuple[str, ...], fragment: str) -> None:
    assert fragment in _fails(*options)


def test_missing_credentials_name_the_variable_and_never_a_value() -> None:
    env = {name: value for name, value in ENV.items() if name != "SIM_SECRET"}
    line = _fails(env=env)
    assert "SIM_SECRET" in line and KEY not in line


def test_a_port_in_use_is_refused_with_its_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _fails("--port", str(port))
    assert f"exchange simulator cannot listen on 127.0.0.1:{port}" in line


def test_help_lists_the_command_without_loading_the_simulator() -> None:
    """Only the simulator's config module loads (its options come from it); the simulator, numpy and waitress do not."""
    probe = ("import sys\nfrom tradeexecutor.cli.main import cli\ntry:\n    cli(['--help'])\nexcept SystemExit:\n"
             "    pass\nprint(sorted(m for m in ('tradeexecutor.exchange_sim.simulator', 'tradeexecutor.exchange_sim.app', "
             "'numpy', 'waitress', 'ccxt') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "exchange-sim" in result.stdout and result.stdout.strip().endswith("[]"), result.stdout + result.stderr
