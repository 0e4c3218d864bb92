"""Live mode: real orders through the unmodified ccxt client to ``tradeexecutor exchange-sim``, both as subprocesses.

The simulator replays the bundled hourly EURUSD as 1-second candles and charges its 0.1 % fee either in the
quote currency (``--fee-asset quote``) or in the asset received (its default and Binance's: a buy's fee in
EUR, which the ledger books as a net quantity; a close sells every whole lot and writes off the rest as dust),
or prices EUR/USD and BNB/USD on a random walk and charges the fee in BNB (``--fee-asset bnb``, Binance's
"pay fees with BNB"): the fill keeps the BNB amount, valued at the venue's BNB/USD ticker; USD cash is not
touched by it; the ledger's BNB figure equals the account's, and ``tradeexecutor reconcile`` compares it. The executor (``--mode live --exchange binance --exchange-url
URL``, the API key and secret in the variables the flags name) trades tests/strategies/paper_flip.py,
which buys on one cycle and sells on the next. Its write-ahead router sends each order to the
simulator as a market order under the order's client order id; the fills come back through the
venue and are applied through accounting. The simulator's own record (its control API lists every
order, trade and balance) must equal the ledger: one order per intent, the same trades with the fees
the simulator charged, the same cash and holdings. A missing credential variable is one line, exit 2.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import http_json, simulator_process
from executor_process import STRATEGIES, Executor
from tradeexecutor.engine.accounting import Holding, recompute_cash, recompute_from_fills
from tradeexecutor.ledger import load_state
from tradeexecutor.store.journal import Journal

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "LiveSimKey0123456789"
SECRET = "live-sim-secret-0123456789"
#: The executor's environment without any TRADEEXECUTOR_ setting: the credentials are added by name per test.
CLEAN = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
FLIP = STRATEGIES / "paper_flip.py"


#: The BNB the account holds with ``--fee-asset bnb``: each 5 000 USD fill's fee is about 0.05 BNB.
BNB_HELD = 2.0


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh ``tradeexecutor exchange-sim`` (its orders are this test's alone), fees in the quote currency, in
    the asset received, or in BNB (EUR/USD and BNB/USD on a random walk, 10 000 USD and some BNB held)."""
    prices = ("--speed", "3600") if request.param != "bnb" else (
        "--random-walk", "7", "--symbols", "EUR/USD,BNB/USD", "--balance", "USD=10000", "--balance", f"BNB={BNB_HELD}")
    with simulator_process(*prices, "--fee-asset", request.param,
                           "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        yield url


@pytest.mark.timeout(290)
@pytest.mark.parametrize("simulator", ["quote", "received", "bnb"], indirect=True)
def test_live_orders_go_to_the_exchange_and_the_ledger_equals_its_record(tmp_path: Path, simulator: str,
                                                                         request: pytest.FixtureRequest) -> None:
    executor = Executor(tmp_path, "--mode", "live", "--exchange", "binance", "--exchange-url", simulator,
                        "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                        strategy="paper_flip.py", window=False, env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET})
    try:
        status = executor.wait_status(lambda s: s.get("portfolio", {}).get("orders_filled", 0) >= 4, timeout=200)
        assert status["mode"] == "live" and status["prices"] == f"binance live prices via {simulator}"
        assert status["reconciliation"]["outcome"] == "clean" and not status["safe_mode"]
        executor.process.send_signal(signal.SIGTERM)
        assert executor.wait() == 0
    finally:
        executor.kill()
    output = executor.output()
    assert "live mode on binance live prices via" in output
    assert KEY not in output and SECRET not in output
    for path in executor.state_dir.rglob("*"):  # ledger, journal, reconciliation.json, published files
        if path.is_file():
            data = path.read_bytes()
            assert KEY.encode() not in data and SECRET.encode() not in data, path
    state = load_state(executor.state_dir)
    assert state is not None
    orders = [order for position in state.portfolio.all_positions() for order in position.orders]
    sent = [order for order in orders if order.status.value != "created"]
    assert len(sent) >= 4 and {order.side.value for order in sent} == {"buy", "sell"}
    code, sim_orders = http_json("GET", f"{simulator}/_sim/orders")
    assert code == 200
    # One order on the exchange per order of the ledger (one per intent), under its client order id.
    assert sorted(o["clientOrderId"] for o in sim_orders) == sorted(o.client_order_id for o in sent)
    by_cid = {o["clientOrderId"]: o for o in sim_orders}
    for order in sent:
        theirs = by_cid[order.client_order_id]
        assert theirs["type"] == "MARKET" and theirs["side"] == order.side.value.upper()
        assert order.venue_order_id == str(theirs["orderId"])
        if theirs["status"] == "FILLED":
            assert order.status.value == "filled"
            assert sum(f.quantity for f in order.fills) == pytest.approx(float(theirs["executedQty"]), rel=1e-12)
    # The ledger's fills are the exchange's trades: same ids, quantities, prices and the fees it charged.
    code, trades = http_json("GET", f"{simulator}/_sim/trades")
    assert code == 200
    fills = {f.venue_trade_id: f for order in orders for f in order.fills}
    assert sorted(str(cid) for cid in fills) == sorted(str(t["id"]) for t in trades)
    for trade in trades:
        fill = fills[str(trade["id"])]
        assert fill.quantity == pytest.approx(float(trade["qty"]), rel=1e-12)
        assert fill.price == pytest.approx(float(trade["price"]), rel=1e-12)
        assert fill.fee == pytest.approx(float(trade["commission"]), rel=1e-12) and fill.fee > 0
        assert fill.fee_currency == trade["commissionAsset"]
    # Every close sold what it could: no order refused (no "nothing to sell ... less than one lot"), and each
    # close left the position closed, with at most one lot written off as dust.
    assert not [order.status_reason for order in sent if order.status.value == "rejected"]
    closed = state.portfolio.closed_positions
    assert len(closed) >= 2 and all(p.quantity == 0.0 and p.closed_at is not None for p in closed), [
        (p.quantity, p.dust_quantity, [(o.purpose.value, o.status.value) for o in p.orders]) for p in closed]
    fee_asset = request.node.callspec.params["simulator"]
    assert {trade["commissionAsset"] for trade in trades} == {"quote": {"USD"}, "received": {"EUR", "USD"},
                                                              "bnb": {"BNB"}}[fee_asset]
    _check_fee_figures(state, executor.state_dir, trades)
    if fee_asset == "received":  # fees in EUR leave dust
        assert any(p.dust_quantity > 0 for p in closed)
    else:
        assert all(p.dust_quantity == 0.0 for p in closed)
    if fee_asset == "bnb":
        _check_bnb_fees(state, trades, fills, balances=http_json("GET", f"{simulator}/_sim/balances")[1])
        filled = [e["fields"] for e in Journal(executor.state_dir / "journal.jsonl").read(limit=10_000)
                  if e["event"] == "order_filled"]
        assert filled and all(f["fee_currency"] == "BNB" and f["fee_value"] > 0 for f in filled)
        _check_bnb_reconciliation(executor.state_dir, simulator)
    # Each write-off is journaled with the position and the quantity.
    journaled = {e["fields"]["position_id"]: e["fields"]["quantity"]
                 for e in Journal(executor.state_dir / "journal.jsonl").read(limit=10_000)
                 if e["event"] == "dust_written_off"}
    assert journaled == {p.id: p.dust_quantity for p in closed if p.dust_quantity}
    # Cash and holdings: the ledger's equal the account's (it started with the executor's 10,000 USD); the
    # account's EUR is what the open positions hold plus the dust the closes left.
    code, balances = http_json("GET", f"{simulator}/_sim/balances")
    assert code == 200
    held = sum(p.quantity for p in state.portfolio.open_positions) + sum(p.dust_quantity for p in closed)
    assert float(balances["USD"]["free"]) + float(balances["USD"]["locked"]) == pytest.approx(state.portfolio.cash,
                                                                                              abs=1e-6)
    assert float(balances.get("EUR", {"free": 0})["free"]) == pytest.approx(held, abs=1e-9)


def _check_fee_figures(state: Any, state_dir: Path, trades: list[dict[str, Any]]) -> None:
    """Every order's fee is one figure in USD, worked out from the exchange's own record: a USD commission as it
    is, one in EUR (the base asset) at the trade's price, one in BNB at the fill's BNB/USD ticker price; the
    published orders.csv says so (``fee``, ``fee_currency``), and the journal's fill lines name each fee's
    currency, with its USD value when it is not USD."""
    by_id = {str(t["id"]): t for t in trades}
    with (state_dir / "public" / "orders.csv").open(newline="") as handle:
        rows = {int(row["trade_id"]): row for row in csv.DictReader(handle)}
    filled = [order for position in state.portfolio.all_positions() for order in position.orders if order.fills]
    assert filled and {order.id for order in filled} <= set(rows)
    for order in filled:
        worth = 0.0
        for fill in order.fills:
            trade = by_id[fill.venue_trade_id]
            fee, asset = float(trade["commission"]), trade["commissionAsset"]
            worth += {"USD": fee, "EUR": fee * float(trade["price"])}.get(asset, fee * (fill.fee_price or 0.0))
        assert order.fees == pytest.approx(worth, rel=1e-12) and worth > 0
        assert float(rows[order.id]["fee"]) == order.fees and rows[order.id]["fee_currency"] == "USD"
    lines = [e["fields"] for e in Journal(state_dir / "journal.jsonl").read(limit=10_000) if e["event"] == "order_filled"]
    assert {line["fee_currency"] for line in lines} == {t["commissionAsset"] for t in trades}
    assert all((line["fee_currency"] == "USD") == ("fee_value" not in line) for line in lines)


def _check_bnb_fees(state: Any, trades: list[dict[str, Any]], fills: dict[Any, Any], balances: dict[str, Any]) -> None:
    """Fees in BNB: kept in BNB, valued at the venue's BNB/USD ticker, in the positions' fees and P&L, not in cash."""
    assert {trade["commissionAsset"] for trade in trades} == {"BNB"}
    for trade in trades:
        fill = fills[str(trade["id"])]
        assert fill.fee_price is not None and fill.fee_price > 0
        assert fill.fee_price_source.startswith("binance ticker BNB/USD last at ")
        # the fee is 0.1 % of the trade, converted at the BNB price (the walk moves it a little by the ticker read)
        assert fill.fee * fill.fee_price == pytest.approx(0.001 * fill.quantity * fill.price, rel=0.01)
    for position in state.portfolio.all_positions():
        values = [f.fee * f.fee_price for o in position.orders for f in o.fills]
        assert position.fees_paid == pytest.approx(sum(values), rel=1e-12)
        assert recompute_from_fills(position) == Holding(position.quantity, position.cost_basis,
                                                         position.realised_pnl, position.fees_paid)
    # USD cash moved by the trades alone: the replay of every fill without any fee is the ledger's cash
    assert recompute_cash(10_000.0, state.portfolio) == pytest.approx(state.portfolio.cash, abs=1e-9)
    assert state.portfolio.cash == pytest.approx(10_000.0 + sum(
        (-1 if t["isBuyer"] else 1) * float(t["qty"]) * float(t["price"]) for t in trades), abs=1e-6)
    paid = sum(float(t["commission"]) for t in trades)
    assert float(balances["BNB"]["free"]) == pytest.approx(BNB_HELD - paid, abs=1e-9)
    assert state.portfolio.fee_asset_balances["BNB"] == pytest.approx(BNB_HELD - paid, abs=1e-9)


def _check_bnb_reconciliation(state_dir: Path, simulator: str) -> None:
    """``tradeexecutor reconcile`` compares the BNB balance: clean as it is, a mismatch once BNB goes missing."""
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "reconcile", "--state-dir", str(state_dir), "--json",
               "--exchange", "binance", "--exchange-url", simulator, "--exchange-key-variable", "MY_KEY",
               "--exchange-secret-variable", "MY_SECRET"]
    env = {**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET}
    clean = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (bnb,) = [b for b in json.loads(clean.stdout)["balances"] if b["asset"] == "BNB"]
    assert bnb["kind"] == "fee" and bnb["ok"] and bnb["ours"] == pytest.approx(bnb["venue"], abs=1e-9)
    http_json("POST", f"{simulator}/_sim/balances", {"BNB": f"{bnb['venue'] - 0.01:.8f}"})  # a fee we never heard of
    mismatch = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert mismatch.returncode == 1, mismatch.stdout + mismatch.stderr
    (what,) = [m["what"] for m in json.loads(mismatch.stdout)["mismatches"]]
    assert what.startswith("BNB: the venue holds") and "less than" in what
    state = load_state(state_dir)
    assert state is not None and state.portfolio.fee_asset_balances["BNB"] == pytest.approx(bnb["ours"])  # not fixed


@pytest.mark.parametrize("simulator", ["quote"], indirect=True)  # the fee asset plays no part here
def test_live_without_the_credential_variable_is_one_line_exit_2(tmp_path: Path, simulator: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start", str(FLIP), "--mode", "live",
                             "--exchange", "binance", "--exchange-url", simulator, "--exchange-key-variable", "MY_KEY",
                             "--exchange-secret-variable", "MY_SECRET", "--state-dir", str(tmp_path / "state"),
                             "--port", "0"],
                            capture_output=True, text=True, timeout=180, env={**CLEAN, "MY_SECRET": SECRET},
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and "Warning" not in line and "import pkg_resources" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert "MY_KEY is not set" in lines[0] and SECRET not in result.stderr
    assert not (tmp_path / "state").exists()
    assert http_json("GET", f"{simulator}/_sim/orders") == (200, [])
