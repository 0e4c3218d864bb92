"""Paper trading on live prices: the executor as a subprocess against ``tradeexecutor exchange-sim`` (a subprocess too).

The simulator replays the bundled hourly EURUSD as 1-second candles (``--speed 3600``); the
executor (``--mode paper --exchange binance --exchange-url URL``, no credentials in its
environment) takes its candles from the simulator's public klines through the unmodified ccxt
client and trades tests/strategies/paper_flip.py, which enters and exits on alternate 1-second
cycles. Every fill is checked against the simulator's own klines (the open of the candle it filled
in) and the simulator's fee (0.1 %, what ccxt reads as the market's taker fee); the lot step comes
from the simulator's LOT_SIZE filter. /status and /metrics show the mode, where the prices come
from and the exchange connection's figures. Bad mode and exchange combinations, and a state a
replay wrote, are one line and exit 2.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from exchange_sim_helpers import http_json, simulator_process
from executor_process import STRATEGIES, Executor
from tradeexecutor.ledger import load_state
from tradeexecutor.state import State
from tradeexecutor.store.codec import dumps_state
from tradeexecutor.webhook.metrics import VENUE_METRIC_NAMES

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "PaperSimKey0123456789"
SECRET = "paper-sim-secret-0123456789"
#: The executor's environment: no exchange credentials at all (paper needs none), no stray settings.
CLEAN = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
FLIP = STRATEGIES / "paper_flip.py"


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    """``tradeexecutor exchange-sim`` on a free loopback port, 1-second candles; yields its URL."""
    with simulator_process("--speed", "3600", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        yield url


def paper(tmp_path: Path, url: str, *args: str, **settings: object) -> Executor:
    return Executor(tmp_path, "--mode", "paper", "--exchange", "binance", "--exchange-url", url,
                    "--exchange-rate-share", "0.5", *args, strategy="paper_flip.py", window=False, env=CLEAN,
                    **settings)  # type: ignore[arg-type]


def first_filled(state: State) -> int:
    """Orders filled in ``state``."""
    return sum(1 for position in state.portfolio.all_positions() for order in position.orders if order.fills)


def metrics(executor: Executor) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{executor.port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, name: str) -> float:
    found = re.search(rf'^{name}\{{exchange="binance"\}} (\S+)$', text, flags=re.MULTILINE)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))


@pytest.mark.timeout(290)
def test_paper_trades_at_the_exchanges_prices_with_its_fee_and_shows_the_venue(tmp_path: Path,
                                                                                simulator: str) -> None:
    executor = paper(tmp_path, simulator)
    try:
        status = executor.wait_status(lambda s: s.get("portfolio", {}).get("orders_filled", 0) >= 4, timeout=200)
        assert status["mode"] == "paper" and status["prices"] == f"binance live prices via {simulator}"
        venue = status["venue"]
        assert venue["exchange"] == "binance" and venue["url"] == simulator
        assert venue["requests"] > 0 and isinstance(venue["clock_offset_ms"], (int, float))
        assert venue["held_back_seconds"] == 0 and venue["held_back_total_seconds"] == 0
        assert venue["rate_share"] == 0.5 and 0 < venue["rate_share_used"] < 1
        assert 0 <= venue["candle_lag_seconds"] < 30  # the newest candle came soon after it closed
        text = metrics(executor)
        assert sample(text, "tradeexecutor_exchange_requests_total") >= venue["requests"]
        assert sample(text, "tradeexecutor_exchange_rate_share") == 0.5
        assert 0 < sample(text, "tradeexecutor_exchange_rate_share_used") < 1
        assert sample(text, "tradeexecutor_exchange_held_back_seconds") == 0
        assert sample(text, "tradeexecutor_exchange_held_back_seconds_total") == 0
        assert abs(sample(text, "tradeexecutor_exchange_clock_offset_seconds") * 1000 - venue["clock_offset_ms"]) < 1e-6
        assert 'mode="paper"' in text
        assert all(f"\n{name}{{" in text for name in VENUE_METRIC_NAMES)
        executor.process.send_signal(signal.SIGTERM)
        assert executor.wait() == 0
    finally:
        executor.kill()
    output = executor.output()
    assert "paper mode on binance live prices via" in output and "taker fee 0.001" in output
    first = load_state(executor.state_dir)
    assert first is not None
    # A restart continues after the last candle it processed: the candles that closed meanwhile are in the
    # exchange's warm-up history and are processed in order, none skipped, none twice.
    again = paper(tmp_path, simulator, state_dir=executor.state_dir)
    try:
        again.wait_status(lambda s: s.get("portfolio", {}).get("orders_filled", 0) >= first_filled(first) + 2,
                          timeout=200)
        again.process.send_signal(signal.SIGTERM)
        assert again.wait() == 0
    finally:
        again.kill()
    assert "resuming after" in again.output()
    state = load_state(executor.state_dir)
    assert state is not None
    stamps = list(state.valuations.timestamp)
    assert len(stamps) > len(first.valuations.timestamp) and stamps[:len(first.valuations.timestamp)] == list(
        first.valuations.timestamp)
    assert {later - earlier for earlier, later in pairwise(stamps)} == {1000}, "every 1-second candle once"
    instrument = state.instruments[0]
    assert instrument.symbol == "EURUSD" and instrument.quantity_step == 0.1 and instrument.min_notional == 5
    fills = [fill for position in state.portfolio.all_positions() for order in position.orders for fill in order.fills]
    assert len(fills) >= 4
    for fill in fills:
        opened_ms = int(fill.at.timestamp() * 1000)
        code, klines = http_json("GET", f"{simulator}/api/v3/klines?symbol=EURUSD&interval=1s&startTime={opened_ms}"
                                        "&limit=1")
        assert code == 200 and klines[0][0] == opened_ms
        assert fill.price == float(klines[0][1]), "a fill is at the open of the exchange's candle it filled in"
        assert fill.fee == pytest.approx(abs(fill.quantity) * fill.price * 0.001, rel=1e-9)
        assert round(abs(fill.quantity) / 0.1, 6) == round(abs(fill.quantity) / 0.1)  # whole lots of the filter
    # Paper trading sent no order and made no signed request: public market data only.
    assert http_json("GET", f"{simulator}/_sim/orders") == (200, [])
    code, requests = http_json("GET", f"{simulator}/_sim/requests?limit=1000")
    paths = {entry["path"] for entry in requests}
    assert code == 200 and "/api/v3/klines" in paths and paths <= {"/api/v3/klines", "/api/v3/exchangeInfo",
                                                                   "/api/v3/time", "/api/v3/ping"}, paths


def one_line_exit_2(*args: str, tmp_path: Path, after_logging: bool = False) -> str:
    """The one error line of a start that exits 2; ``after_logging``: found once start-up had logged its progress
    (INFO lines), as a state is checked only after the exchange's candles were read."""
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(FLIP),
                             "--state-dir", str(tmp_path / "state"), "--port", "0", *args],
                            capture_output=True, text=True, timeout=180, env=CLEAN, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and "Warning" not in line and "import pkg_resources" not in line]
    if after_logging:
        assert all(" INFO " in line for line in lines[:-1]), result.stderr
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "fragment"), [
    (("--mode", "paper"), "needs --exchange NAME"),
    (("--mode", "paper", "--exchange", "binance", "--data", "eurusd-hourly"), "--data does not apply to --mode paper"),
    (("--mode", "live"), "--mode live sends real orders to an exchange and needs --exchange NAME"),
    (("--mode", "paper", "--exchange", "nosuchexchange"), "is not an exchange ccxt"),
])
def test_a_bad_mode_and_exchange_combination_is_one_line(tmp_path: Path, args: tuple[str, ...],
                                                         fragment: str) -> None:
    line = one_line_exit_2(*args, tmp_path=tmp_path)
    assert fragment in line
    if args[1] == "paper" and "--exchange" not in args:
        assert "use --mode replay" in line
    assert not (tmp_path / "state").exists()


def test_an_example_strategy_whose_bars_the_exchange_has_not_closed_twice_yet_is_told_so(tmp_path: Path,
                                                                                       simulator: str) -> None:
    """strategies/eurusd_breakout.py reads 1h bars; the simulator plays hourly EURUSD as 1-second candles, so it has
    closed at most one 1h candle of its own clock. One line says so (with one it said "cannot tell the bar frequency:
    every instrument has fewer than two candles", which names neither the exchange nor the bars; then "closed 1 1h
    candles"), and names the way out: --cycle-duration (tests/test_examples_live_e2e.py runs it so)."""
    example = Path(__file__).parent.parent / "strategies" / "eurusd_breakout.py"
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(example), "--mode", "paper",
                             "--exchange", "binance", "--exchange-url", simulator,
                             "--state-dir", str(tmp_path / "state"), "--port", "0"],
                            capture_output=True, text=True, timeout=180, env=CLEAN, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert re.match(r"error: binance has closed (0 1h candles|1 1h candle) of EURUSD \(the strategy's bars are 1h; "
                    r"two are needed to start\): try again once more have closed, or give the strategy bars the "
                    r"exchange has history of \(--cycle-duration runs it on shorter cycles and bars\)$", line), line


def test_a_spec_or_state_of_the_old_paper_is_told_to_use_replay(tmp_path: Path, simulator: str) -> None:
    spec = tmp_path / "old.yaml"
    spec.write_text(f"strategy_file: {FLIP}\nmode: paper\nenvironment:\n  data: [eurusd-hourly]\n")
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", "--spec", str(spec),
                             "--state-dir", str(tmp_path / "spec-state")], capture_output=True, text=True,
                            timeout=180, env=CLEAN)
    assert result.returncode == 2 and "use --mode replay" in result.stderr and "Traceback" not in result.stderr
    # A replay's state (historical bars), then started as paper on live prices: refused, nothing changed.
    state_dir = tmp_path / "state"
    replay = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(FLIP), "--mode", "replay",
                             "--state-dir", str(state_dir), "--port", "0", "--max-cycles", "3",
                             "--chart-seconds", "0", "--replay-seconds", "0.05"],
                            capture_output=True, text=True, timeout=180, env=CLEAN)
    assert replay.returncode == 0, replay.stderr
    before = load_state(state_dir)
    line = one_line_exit_2("--mode", "paper", "--exchange", "binance", "--exchange-url", simulator,
                           tmp_path=tmp_path, after_logging=True)
    assert "before the exchange's earliest warm-up candle" in line and "use --mode replay" in line
    after = load_state(state_dir)
    assert before is not None and after is not None and dumps_state(after) == dumps_state(before)


def test_a_paper_run_spec_names_its_exchange(tmp_path: Path, simulator: str) -> None:
    spec = tmp_path / "paper.yaml"
    spec.write_text(f"strategy_file: {FLIP}\nmode: paper\nenvironment:\n  exchange: binance\n"
                    f"  exchange_url: {simulator}\ncore:\n  exchange_rate_share: 0.5\n  port: 0\n")
    state_dir = tmp_path / "state"
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", "--spec", str(spec),
                             "--state-dir", str(state_dir), "--max-cycles", "3", "--chart-seconds", "0"],
                            capture_output=True, text=True, timeout=180, env=CLEAN)
    assert result.returncode == 0, result.stderr
    assert f"paper mode on binance live prices via {simulator}" in result.stderr
    state = load_state(state_dir)
    assert state is not None and state.cycles_completed == 3 and state.instruments[0].quantity_step == 0.1
