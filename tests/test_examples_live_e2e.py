"""The example strategies of strategies/, unchanged, trade live and paper on 1-second candles against the simulator.

Issue 13's test as written: "Live and paper runs of the example strategies on 1-second candles: orders placed,
filled and recorded with the exchange's fees; the ledger equals the simulator's own record of orders, trades and
balances." The strategies declare 1h, 1d and 7d cycles; the operator runs them on 1-second cycles with
``--cycle-duration 1s`` (their bars scaled alike), and sets short lookbacks through ``-p`` so that orders come
within seconds. ``tradeexecutor exchange-sim`` (a subprocess) serves the markets: the bundled hourly EURUSD as
1-second candles for eurusd_breakout, the bundled daily stocks one recorded bar a second for sma_crossover and
momentum_rotation, which name their stocks without a quote (GOOG: the one market of that base, GOOG/USD). The executor is a subprocess too, talking to it through the unmodified ccxt client.

- ``--mode live``: a fresh simulator per run, so its record is the run's alone; once the executor has filled
  enough orders it is stopped (SIGTERM) and the ledger must equal the simulator's orders, trades (with the fee it
  charged) and balances (tests/ledger_vs_exchange.py, the check the kill -9 test ends with); the journal's
  ``started`` line and /status name the operator's cycle and the strategy's own.
- ``--mode paper``: no credentials and no order reaches the simulator; every fill is at the simulator's live
  price — the open of the 1-second candle it filled in, or the trigger's level inside that candle's range —
  with its 0.1 % fee, in whole lots of its LOT_SIZE filter.

Counts (filled orders), never times: the waits are generous upper bounds for a busy machine.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import STRAY_PATHS, http_json, simulator_process
from executor_process import Executor
from ledger_vs_exchange import check_ledger_equals_exchange, journal
from tradeexecutor.ledger import load_state
from tradeexecutor.state import State

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
KEY = "ExamplesKey0123456789"
SECRET = "examples-secret-0123456789"
CLEAN = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
#: The simulator's fee (its default), what ccxt reads as each market's taker fee.
FEE = 0.001
#: Filled orders a run waits for: two round trips at least.
ORDERS = 4


@dataclass(frozen=True)
class Example:
    """One example strategy, the simulator's markets it trades on and the parameters that make it trade at once."""

    file: str
    #: The strategy's own cycle duration, as /status and the journal name it.
    declared: str
    #: The simulator's price options.
    prices: tuple[str, ...]
    params: dict[str, str] = field(default_factory=dict)
    #: The ledger's symbol → the base asset the simulator's balances hold.
    bases: dict[str, str] = field(default_factory=dict)
    #: Whether a decision sells one stock and buys another (the rotation): the run must show one, both filled — the
    #: buy, sized at the decision's prices, sent once the sell had filled, for no more than the cash it brought.
    rotates: bool = False

    @property
    def path(self) -> Path:
        return ROOT / "strategies" / self.file

    @property
    def args(self) -> list[str]:
        params = [arg for name, value in self.params.items() for arg in ("-p", f"{name}={value}")]
        return [str(self.path), "--cycle-duration", "1s", *params]


#: The bundled daily stocks, one recorded bar a second, each stock a market in USD (what sma_crossover and
#: momentum_rotation name by their bare symbols: the one market of that base).
STOCKS = ("--data", "stocks-daily", "--symbols", "AAPL/USD,GOOG/USD,IBM/USD,MSFT/USD")
EXAMPLES = [
    # Hourly EURUSD as 1-second candles; a 2-bar channel breaks often, and stops and targets 0.05 % away close each
    # entry within a few candles (the trigger checks run every half second), so entries come again.
    Example("eurusd_breakout.py", "1h", ("--speed", "3600"),
            {"lookback": "2", "stop_loss_pct": "0.0005", "take_profit_pct": "0.0005"}, {"EURUSD": "EUR"}),
    # GOOG's 2- and 3-bar averages cross every few bars.
    Example("sma_crossover.py", "1d", STOCKS, {"fast": "2", "slow": "3"}, {"GOOG": "GOOG"}),
    # The leader of 5-bar returns changes every few bars: each change sells one stock and buys another.
    Example("momentum_rotation.py", "7d", STOCKS, {"lookback": "5"},
            {symbol: symbol for symbol in ("AAPL", "GOOG", "IBM", "MSFT")}, rotates=True),
]
IDS = [example.file.removesuffix(".py") for example in EXAMPLES]


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh simulator of the example's markets (its record is this test's alone); yields its URL."""
    example: Example = request.param
    with simulator_process(*example.prices, "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        yield url


def run_until_filled(executor: Executor, example: Example, mode: str) -> dict[str, Any]:
    """Wait until ``ORDERS`` orders filled, check /status names both cycles, stop with SIGTERM (exit 0)."""
    try:
        status = executor.wait_status(lambda s: s.get("portfolio", {}).get("orders_filled", 0) >= ORDERS,
                                      timeout=150)
        executor.process.send_signal(signal.SIGTERM)
        assert executor.wait() == 0, executor.output()
    finally:
        executor.kill()
    assert status["mode"] == mode and not status["safe_mode"], status
    assert (status["cycle_duration"], status["declared_cycle_duration"]) == ("1s", example.declared)
    assert status["strategy_version"] == hashlib.sha256(example.path.read_bytes()).hexdigest()  # the file as it is
    assert f"1s candles, 1s cycles (the strategy declares {example.declared}; --cycle-duration)" in executor.output()
    return status


def check_started_line(state_dir: Path, example: Example) -> None:
    """The journal's ``started`` line names the operator's cycle and the strategy's own."""
    started = [e["fields"] for e in journal(state_dir) if e["event"] == "started"]
    assert started and all(f["cycle_duration"] == "1s" and f["declared_cycle_duration"] == example.declared
                           for f in started), started


def fills_of(state: State) -> list[tuple[Any, Any]]:
    """(order, fill) of every fill in the ledger."""
    return [(order, fill) for order in state.portfolio.all_orders() for fill in order.fills]


@pytest.mark.timeout(290)
@pytest.mark.parametrize("simulator", EXAMPLES, ids=IDS, indirect=True)
def test_an_example_strategy_trades_live_on_1_second_candles_and_the_ledger_equals_the_exchange(
        tmp_path: Path, simulator: str, request: pytest.FixtureRequest) -> None:
    example: Example = request.node.callspec.params["simulator"]
    executor = Executor(tmp_path, "--mode", "live", "--exchange", "binance", "--exchange-url", simulator,
                        "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET", "--cpu", "off",
                        *example.args[1:], strategy=str(example.path), window=False,
                        env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET})
    status = run_until_filled(executor, example, "live")
    assert status["reconciliation"]["outcome"] == "clean"
    state = load_state(executor.state_dir)
    assert state is not None
    # Every order went to the exchange and came back filled, with the fee the exchange charged: the ledger's orders,
    # trades and balances are the simulator's own (no fill taken by a reconciliation: the run was never killed).
    assert check_ledger_equals_exchange(state, executor.state_dir, simulator, bases=example.bases) == 0
    filled = [order for order in state.portfolio.all_orders() if order.fills]
    assert len(filled) >= ORDERS and {order.side.value for order in filled} == {"buy", "sell"}
    assert all(fill.fee > 0 for _, fill in fills_of(state))
    # No order refused: the rotation's buy waited for its sell and asked for no more than the cash there was then.
    rejected = [order for order in state.portfolio.all_orders() if order.status.value == "rejected"]
    assert rejected == [], [o.status_reason for o in rejected]
    code, requests = http_json("GET", f"{simulator}/_sim/requests?limit=10000")
    assert code == 200 and [r for r in requests if r.get("code") == -2010] == []
    if example.rotates:  # a decision that sold one stock and bought another, both filled
        by_decision: dict[Any, set[str]] = {}
        for order in filled:
            by_decision.setdefault(order.created_at, set()).add(order.side.value)
        assert {"buy", "sell"} in by_decision.values(), sorted(by_decision.items())
    check_started_line(executor.state_dir, example)
    output = executor.output()
    assert KEY not in output and SECRET not in output


@pytest.fixture(scope="module")
def paper_simulators() -> Iterator[dict[tuple[str, ...], str]]:
    """One simulator per set of markets for every paper run (paper sends no order: nothing to keep apart), by its
    price options."""
    env = {**CLEAN, "TRADEEXECUTOR_SIM_API_KEY": KEY, "TRADEEXECUTOR_SIM_API_SECRET": SECRET}
    with ExitStack() as stack:
        yield {prices: stack.enter_context(simulator_process(*prices, env=env))
               for prices in dict.fromkeys(example.prices for example in EXAMPLES)}


@pytest.mark.timeout(290)
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_an_example_strategy_trades_paper_at_the_exchanges_live_prices_on_1_second_candles(
        tmp_path: Path, example: Example, paper_simulators: dict[tuple[str, ...], str]) -> None:
    url = paper_simulators[example.prices]
    executor = Executor(tmp_path, "--mode", "paper", "--exchange", "binance", "--exchange-url", url, "--cpu", "off",
                        *example.args[1:], strategy=str(example.path), window=False, env=CLEAN)
    run_until_filled(executor, example, "paper")
    state = load_state(executor.state_dir)
    assert state is not None
    check_started_line(executor.state_dir, example)
    fills = fills_of(state)
    assert len(fills) >= ORDERS
    for order, fill in fills:
        instrument = state.instrument(order.instrument_id)
        market = example.bases[instrument.symbol] + "USD"  # the simulator's market id (its markets are in USD)
        # A market order, and a stop or target the candle opened beyond, fills at the open of the exchange's candle
        # it filled in (stamped with that candle's open); a stop or target the candle reached fills at its level,
        # inside that candle's range (stamped with the candle's close).
        at_open = order.trigger is None or fill.price != order.trigger_price
        opened_ms = int(fill.at.timestamp() * 1000) - (0 if at_open else 1000)
        code, klines = http_json("GET", f"{url}/api/v3/klines?symbol={market}&interval=1s&startTime={opened_ms}"
                                        "&limit=1")
        assert code == 200 and klines[0][0] == opened_ms, (order.client_order_id, klines)
        candle_open, high, low = float(klines[0][1]), float(klines[0][2]), float(klines[0][3])
        if at_open:
            assert fill.price == candle_open, (order.client_order_id, order.trigger, fill.price, klines[0])
        else:
            assert low <= fill.price <= high, (order.trigger, fill.price, klines[0])
        assert fill.fee == pytest.approx(abs(fill.quantity) * fill.price * FEE, rel=1e-9)
        lots = abs(fill.quantity) / instrument.quantity_step
        assert round(lots, 6) == round(lots)  # whole lots of the exchange's filter
    # Paper trading sent no order and made no signed request: public market data only.
    assert http_json("GET", f"{url}/_sim/orders") == (200, [])
    code, requests = http_json("GET", f"{url}/_sim/requests?limit=10000")
    paths = {entry["path"] for entry in requests} - STRAY_PATHS  # another test's poller may ask a port it knew
    assert code == 200 and paths <= {"/api/v3/klines", "/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/ping"}, paths


@pytest.mark.parametrize(("args", "fragment"), [
    # 4h bars read on 1h cycles become 4-second bars on 1-second cycles: no exchange serves those.
    (("-p", "frequency=4h", "--cycle-duration", "1s"),
     "binance has no 4s candles for the strategy's 4s bars (--cycle-duration 1s); it offers 1s, 1m, "),
    (("--cycle-duration", "2h"), "--cycle-duration 2h is longer than the 1h cycle eurusd_breakout.py declares"),
], ids=["bars-the-exchange-lacks", "longer-than-declared"])
def test_a_cycle_the_exchange_cannot_serve_is_one_line_and_writes_nothing(
        tmp_path: Path, paper_simulators: dict[tuple[str, ...], str], args: tuple[str, ...], fragment: str) -> None:
    url = paper_simulators[EXAMPLES[0].prices]
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(EXAMPLES[0].path),
                             "--mode", "paper", "--exchange", "binance", "--exchange-url", url, "--port", "0",
                             "--state-dir", str(tmp_path / "state"), *args],
                            capture_output=True, text=True, timeout=180, env=CLEAN, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and fragment in line, line
    assert not (tmp_path / "state").exists()


def paper_cycles(folder: Path, url: str, example: Example, state_dir: Path) -> None:
    """Run ``example`` in paper mode against the simulator at ``url`` until two cycles completed, then stop it."""
    executor = Executor(folder, "--mode", "paper", "--exchange", "binance", "--exchange-url", url, "--cpu", "off",
                        *example.args[1:], strategy=str(example.path), state_dir=state_dir, window=False, env=CLEAN)
    try:
        executor.wait_status(lambda s: s.get("cycles", 0) >= 2)
        executor.process.send_signal(signal.SIGTERM)
        assert executor.wait() == 0, executor.output()
    finally:
        executor.kill()


def start_refused(tmp_path: Path, strategy: Path, url: str, *args: str, state_dir: Path | None = None,
                  env: dict[str, str] | None = None) -> tuple[int, str]:
    """``tradeexecutor start`` that must end before it trades: (exit code, the last line of stderr)."""
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(strategy),
                             "--exchange", "binance", "--exchange-url", url, "--port", "0", "--cpu", "off",
                             "--state-dir", str(state_dir or tmp_path / "state"), *args],
                            capture_output=True, text=True, timeout=180, env=env or CLEAN, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr.strip().splitlines()[-1]


#: Two stocks written out in full, one in USDT and one in USD: an operator's mix, refused as the bare names' is.
MIXED_IN_FULL = '''"""Two stocks of different quotes, named in full."""
name = "mixed quotes"
cycle_duration = "1s"
instruments = ["AAPL/USDT", "GOOG/USD"]


def decide(ctx):
    return []
'''


@pytest.mark.timeout(290)
def test_instruments_priced_in_two_currencies_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    """AAPL is listed only against USDT, the other stocks only against USD: each bare name momentum_rotation trades
    has one market, but its one cash would be spent in two currencies (and the reconciliation, which compares the
    cash with one quote's balance, could not tell). Refused at start-up, live or paper, named or bare."""
    prices = ("--data", "stocks-daily", "--symbols", "AAPL/USDT,GOOG/USD,IBM/USD,MSFT/USD")
    full = tmp_path / "mixed_in_full.py"
    full.write_text(MIXED_IN_FULL)
    with simulator_process(*prices, "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        bare = EXAMPLES[2]
        code, line = start_refused(tmp_path, bare.path, url, "--mode", "live", *bare.args[1:],
                                   "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                                   state_dir=tmp_path / "bare", env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET})
        assert code == 2 and line == (
            f"error: {bare.path}: its instruments are priced in USD and USDT on binance (AAPL: AAPL/USDT, GOOG: "
            "GOOG/USD, IBM: IBM/USD, MSFT: MSFT/USD); a portfolio has one cash: name markets of one quote in full "
            "(BASE/QUOTE) in the strategy's instruments"), line
        code, line = start_refused(tmp_path, full, url, "--mode", "paper", state_dir=tmp_path / "full")
        assert code == 2 and "priced in USD and USDT on binance (AAPL/USDT: AAPL/USDT, GOOG/USD: GOOG/USD)" in line, line
        assert http_json("GET", f"{url}/_sim/orders") == (200, [])
    assert not (tmp_path / "bare").exists() and not (tmp_path / "full").exists()


@pytest.mark.timeout(290)
def test_a_state_traded_in_one_quote_is_refused_when_its_market_is_priced_in_another_now(tmp_path: Path) -> None:
    """sma_crossover's bare GOOG was GOOG/USD; on restart the exchange lists only GOOG/USDT: the state's cash is in
    USD, so carrying it over as USDT would be wrong. Refused (the state's exit code), the state left as it was."""
    example = EXAMPLES[1]
    env = {**CLEAN, "TRADEEXECUTOR_SIM_API_KEY": KEY, "TRADEEXECUTOR_SIM_API_SECRET": SECRET}
    state_dir = tmp_path / "state"
    with simulator_process("--data", "stocks-daily", "--symbols", "GOOG/USD", env=env) as usd:
        paper_cycles(tmp_path / "usd", usd, example, state_dir)
    state = load_state(state_dir)
    assert state is not None and [i.quote_currency for i in state.instruments] == ["USD"]
    ledger = (state_dir / "ledger.sqlite").read_bytes()
    with simulator_process("--data", "stocks-daily", "--symbols", "GOOG/USDT", env=env) as usdt:
        code, line = start_refused(tmp_path, example.path, usdt, "--mode", "paper", *example.args[1:],
                                   state_dir=state_dir)
    assert code == 3 and line.endswith(
        "traded GOOG in USD, but binance's GOOG market is GOOG/USDT now: its cash is not in USDT; name the USD "
        "market in full or use another --state-dir"), line
    assert (state_dir / "ledger.sqlite").read_bytes() == ledger


@pytest.mark.timeout(290)
@pytest.mark.parametrize("rotated", [False, True], ids=["kept", "rotated"])
def test_a_state_run_on_1_second_cycles_restarted_on_others_names_the_cycle_not_the_data(
        tmp_path: Path, paper_simulators: dict[tuple[str, ...], str], rotated: bool) -> None:
    """eurusd_breakout ran on 1-second cycles (--cycle-duration 1s); restarted on 1-minute cycles its bars and
    valuations are on another grid: the refusal names the cycles, not "the data changed". (On the strategy's own 1h,
    the simulator has too few hourly candles to get that far: test_cycle_duration checks that case's words.)
    ``rotated``: the journal's retention (a tiny ``journal_keep``) deleted every line the run journaled before the
    restart but its ``started`` line, which it keeps (fails before: deleted, the refusal blamed the data)."""
    example = EXAMPLES[0]
    url = paper_simulators[example.prices]
    state_dir = tmp_path / "state"
    paper_cycles(tmp_path / "first", url, example, state_dir)
    if rotated:
        from tradeexecutor.ledger import Ledger

        rotating = Ledger(state_dir / "ledger.sqlite", journal_keep=2)
        for i in range(5):
            rotating.append_apart("revalued", {"filler": i})
        rotating.close()
        kept = [(e["event"], e["fields"].get("filler")) for e in journal(state_dir)]
        assert [line for line in kept if line[0] != "started"] == [("revalued", 3), ("revalued", 4)], kept
    ledger = (state_dir / "ledger.sqlite").read_bytes()
    params = [arg for name, value in example.params.items() for arg in ("-p", f"{name}={value}")]
    code, line = start_refused(tmp_path, example.path, url, "--mode", "paper", "--cycle-duration", "1m", *params,
                               state_dir=state_dir)
    assert code == 3 and line == (f"error: StateError: {state_dir / 'ledger.sqlite'} ran on 1s cycles (--cycle-duration), not 1m: "
                                  "use the same --cycle-duration or a new --state-dir"), line
    assert (state_dir / "ledger.sqlite").read_bytes() == ledger
