"""Live mode under injected faults: the executor and ``tradeexecutor exchange-sim`` as subprocesses, the real ccxt client.

One executor trades tests/strategies/live_guarded.py (buy with a 5 % stop-loss whenever flat, never sell) while
the simulator's control API injects, one after the other:

1. a reply that never comes to the first entry (the order *is* placed), while the exchange's order lookup answers
   503 until cleared: the order is ``unknown`` (journaled), ``/healthz`` turns 503 with the outage, nothing is sent
   again; once the lookup answers, the order is found by its client order id and booked (``order_resolved``);
2. the same timeout on a stop-loss exit (the price pinned under the stop): no crash, the exit is asked about at the
   next job and the position ends closed by its one order;
3. the same timeout on an operator's close (``tradeexecutor control URL close ID``): answered as sent and not
   filled, resolved at the next job;
4. a partial fill of the next entry (Binance expires the rest of a market order): the position holds what filled;
5. a refusal of an operator's close: booked rejected, the position stays open and protected;
6. a stop-loss whose request never reaches the exchange (503 before the order is placed): found missing when asked
   about, and sent with the same client order id;
7. a refusal of an entry: booked rejected, no position holds anything, the next entry fills.

Throughout: no crash, exactly one order on the exchange per order of the ledger, and at the end the ledger equals
the simulator's orders, trades and balances.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import http_json, simulator_process
from executor_process import Executor
from tradeexecutor.ledger import load_state
from tradeexecutor.store.journal import Journal

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "LiveFaultKey0123456789"
SECRET = "live-fault-secret-0123456789"
CLEAN = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
#: The webhook's operator credentials (control is refused without them), given to the executor and the CLI.
OPERATOR = {"TRADEEXECUTOR_WEBHOOK_USERNAME": "operator", "TRADEEXECUTOR_WEBHOOK_PASSWORD": "op-fault-pw-42"}
#: A reply that never comes to the next order placed: the connection is dropped once the order is on the book.
TIMEOUT = {"kind": "timeout", "mode": "drop", "count": 1}


def journal(executor: Executor) -> list[dict[str, Any]]:
    path = executor.state_dir / "journal.jsonl"
    return Journal(path).read(limit=100_000) if path.exists() else []


def events(executor: Executor, name: str) -> list[dict[str, Any]]:
    return [e for e in journal(executor) if e["event"] == name]


def until(executor: Executor, predicate: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll ``predicate`` until truthy (returned); fails when the executor exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert executor.process.poll() is None, f"executor exited while waiting for {what}:\n{executor.output()}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{executor.output()[-5000:]}")


def journaled(executor: Executor, name: str, match: Callable[[dict[str, Any]], bool] = lambda e: True,
              ) -> list[dict[str, Any]]:
    """The journal's ``name`` lines that ``match``, waited for until there is one. The journal file mirrors each
    job's lines just after the job's commit, so a test that saw the commit (the ledger's state, /healthz, an
    operator's answer) may read the file a moment before they are in it: it waits, where reading at once lost
    that race on a busy machine (``outage_ended`` missing right after /healthz turned 200)."""
    return until(executor, lambda: [e for e in events(executor, name) if match(e)], f"{name} in the journal")


def healthz(executor: Executor) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{executor.port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sim(url: str, method: str, path: str, body: Any = None) -> Any:
    code, answer = http_json(method, f"{url}/_sim/{path}", body)
    assert code == 200, (method, path, code, answer)
    return answer


def positions(executor: Executor) -> tuple[list[Any], list[Any]]:
    """(open, closed) positions of the ledger as committed now."""
    state = load_state(executor.state_dir)
    if state is None:
        return [], []
    return list(state.portfolio.open_positions), list(state.portfolio.closed_positions)


def held(executor: Executor) -> Any:
    """The open position once its entry has filled (and nothing of it is in flight), else None."""
    open_, _ = positions(executor)
    if len(open_) == 1 and open_[0].quantity > 0 and all(o.is_terminal for o in open_[0].orders):
        return open_[0]
    return None


def control(executor: Executor, *args: str) -> subprocess.CompletedProcess[str]:
    """``tradeexecutor control URL ARGS`` with the operator's credentials."""
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "control",
                           f"http://127.0.0.1:{executor.port}", *args],
                          capture_output=True, text=True, env={**CLEAN, **OPERATOR}, timeout=120, check=False)


def control_close(executor: Executor, position_id: int) -> subprocess.CompletedProcess[str]:
    return control(executor, "close", str(position_id), "--json")


def one_order_per_intent(url: str, executor: Executor) -> list[dict[str, Any]]:
    """``orders_agree`` once the ledger and the simulator agree, for up to a minute.

    The executor trades on while the test reads: the ledger and the simulator are read a moment apart, and an
    order committed and sent in between (the strategy's next entry) shows on one side only. Reproduced under
    load (1 in 21 runs): the simulator held one order more than the ledger read just before it. So the two are
    read again until they agree; what persists (an order sent twice, an order on the exchange that the ledger
    never committed) still fails, with the last reading."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return orders_agree(url, executor)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def orders_agree(url: str, executor: Executor) -> list[dict[str, Any]]:
    """The simulator's orders: exactly one per order the ledger sent, under its client order id (one the exchange
    refused leaves no order on its book), and exactly one order request per order sent: nothing was sent again."""
    state = load_state(executor.state_dir)
    assert state is not None
    sent = [o for p in state.portfolio.all_positions() for o in p.orders if o.status.value != "created"]
    theirs = sim(url, "GET", "orders")
    ids = [o["clientOrderId"] for o in theirs]
    assert len(ids) == len(set(ids)), f"an order was sent twice: {ids}"
    assert sorted(ids) == sorted(o.client_order_id for o in sent if o.status.value != "rejected")
    posts = [r for r in sim(url, "GET", "requests?limit=10000") if (r["method"], r["path"]) == ("POST", "/api/v3/order")]
    # A request answered with an error before the order was placed (a 503, a refusal) may be followed by a send of
    # the same id; a request that placed the order (answered, or its answer dropped) never is.
    placed = Counter(r["clientOrderId"] for r in posts if r.get("fault") in (None, "timeout"))
    assert placed == Counter(o.client_order_id for o in sent if o.status.value != "rejected"), posts
    assert {r["clientOrderId"] for r in posts if "clientOrderId" in r} == {o.client_order_id for o in sent}, posts
    assert all(r.get("fault") == "error" for r in posts if "clientOrderId" not in r), posts  # answered unread
    return list(theirs)


@pytest.mark.timeout(290)
def test_timeouts_partial_fills_and_refusals_in_live_mode_are_resolved_never_resent_and_booked(
        tmp_path: Path) -> None:
    with simulator_process("--speed", "3600", "--fee-asset", "quote", "--api-key-env", "SIM_KEY",
                           "--api-secret-env", "SIM_SECRET", env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        # 1. The first entry's reply never comes, and the exchange cannot be asked about it until cleared.
        sim(url, "POST", "faults", TIMEOUT)
        lookup = sim(url, "POST", "faults", {"kind": "error", "status": 503, "path": "/api/v3/order", "method": "GET"})
        executor = Executor(tmp_path, "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                            "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                            "--outage-grace-seconds", "1", "--retry-max-seconds", "1", strategy="live_guarded.py", window=False,
                            env={**CLEAN, **OPERATOR, "MY_KEY": KEY, "MY_SECRET": SECRET})
        try:
            [unknown] = until(executor, lambda: events(executor, "order_unknown"), "the entry's unknown outcome")
            assert unknown["fields"]["purpose"] == "open" and unknown["level"] == "warning"
            _, health = until(executor, lambda: (h := healthz(executor))[0] == 503 and h, "/healthz 503")
            assert any("temporary failure" in reason for reason in health["reasons"]), health
            assert [o["clientOrderId"] for o in sim(url, "GET", "orders")] == [unknown["fields"]["client_order_id"]]
            sim(url, "DELETE", f"faults/{lookup['id']}")  # the exchange answers again
            first = until(executor, lambda: held(executor), "the entry resolved and booked")
            assert first.orders[0].status.value == "filled" and first.stop_loss is not None
            until(executor, lambda: healthz(executor)[0] == 200, "/healthz 200 again")
            [resolved] = journaled(executor, "order_resolved")
            assert resolved["fields"]["detail"] == f"{unknown['fields']['client_order_id']}: filled at the venue"
            assert [e["fields"]["job"] for e in events(executor, "outage_started")] and journaled(executor, "outage_ended")
            one_order_per_intent(url, executor)

            # 2. A stop-loss whose reply never comes: the price pinned 20 % under the entry trips it.
            sim(url, "POST", "faults", TIMEOUT)
            price = first.orders[0].fills[0].price
            sim(url, "POST", "price", {"symbol": "EURUSD", "price": f"{price * 0.8:.5f}", "seconds": 4})
            stopped = until(executor, lambda: [p for p in positions(executor)[1] if p.id == first.id],
                            "the stop-loss resolved and the position closed")[0]
            [exit_order] = [o for o in stopped.orders if o.purpose.value == "close"]
            assert exit_order.trigger is not None and exit_order.trigger.value == "stop_loss"
            assert exit_order.status.value == "filled" and stopped.quantity == 0.0
            assert journaled(executor, "order_unknown",
                             lambda e: e["fields"]["client_order_id"] == exit_order.client_order_id)
            assert journaled(executor, "order_resolved",
                             lambda e: e["fields"]["detail"] == f"{exit_order.client_order_id}: filled at the venue")
            one_order_per_intent(url, executor)

            # 3. An operator's close whose reply never comes: answered as sent, resolved at the next job.
            second = until(executor, lambda: held(executor), "the strategy's next entry")
            sim(url, "POST", "faults", TIMEOUT)
            result = control_close(executor, second.id)
            assert result.returncode == 0, (result.stdout, result.stderr)
            answer = json.loads(result.stdout)
            [closing] = answer["details"]["closed"]
            assert closing["status"] == "unknown" and "not filled" in answer["message"], answer
            until(executor, lambda: any(p.id == second.id for p in positions(executor)[1]), "the close resolved")
            assert journaled(executor, "order_resolved",
                             lambda e: e["fields"]["detail"] == f"{closing['client_order_id']}: filled at the venue")
            one_order_per_intent(url, executor)

            # 4. The next entry fills in part: Binance expires the rest of the market order.
            sim(url, "POST", "faults", {"kind": "partial_fill", "parts": 2, "count": 1})
            third = until(executor, lambda: held(executor), "the entry filled in part")
            [entry] = third.orders
            assert entry.status.value == "expired" and entry.filled_quantity > 0
            assert third.quantity == pytest.approx(entry.filled_quantity, rel=1e-12)
            theirs = {o["clientOrderId"]: o for o in one_order_per_intent(url, executor)}[entry.client_order_id]
            assert theirs["status"] == "EXPIRED"
            assert float(theirs["executedQty"]) == pytest.approx(entry.filled_quantity, rel=1e-12)
            assert float(theirs["executedQty"]) < float(theirs["origQuoteOrderQty"] or 0) / entry.fills[0].price
            assert [e["fields"]["partial"] for e in journaled(executor, "order_filled",
                    lambda e: e["fields"]["client_order_id"] == entry.client_order_id)] == [True]
            assert [e["fields"]["status"] for e in journaled(executor, "order_expired")] == ["expired"]

            # 5. An operator's close the exchange refuses: booked rejected, the position stays open.
            sim(url, "POST", "faults", {"kind": "reject", "count": 1})
            result = control_close(executor, third.id)
            assert result.returncode == 0, (result.stdout, result.stderr)
            [refused] = json.loads(result.stdout)["details"]["closed"]
            assert refused["status"] == "rejected" and refused["quantity"] == 0.0
            [rejected] = journaled(executor, "order_rejected",
                                   lambda e: e["fields"]["client_order_id"] == refused["client_order_id"])
            assert "insufficient balance" in rejected["fields"]["reason"]
            still = held(executor)
            assert still is not None and still.id == third.id and still.quantity == third.quantity
            assert healthz(executor)[0] == 200

            # 6. The position stays protected: a stop-loss whose request never reached the exchange (a 503 before
            # the order was placed) is unknown, found missing when asked about, and sent with the same client id.
            # Entries are paused first, so that the next entry waits for step 7.
            assert control(executor, "pause").returncode == 0
            sim(url, "POST", "faults", {"kind": "error", "status": 503, "path": "/api/v3/order", "method": "POST",
                                        "count": 1})
            price = entry.fills[0].price
            sim(url, "POST", "price", {"symbol": "EURUSD", "price": f"{price * 0.8:.5f}", "seconds": 4})
            last = until(executor, lambda: [p for p in positions(executor)[1] if p.id == third.id],
                         "the unsent stop-loss sent again and the position closed")[0]
            [stop] = [o for o in last.orders if o.trigger is not None]
            assert stop.status.value == "filled" and last.quantity == 0.0
            assert journaled(executor, "order_resolved",
                             lambda e: e["fields"]["detail"] == f"{stop.client_order_id}: never reached the venue; sent")
            one_order_per_intent(url, executor)

            # 7. An entry the exchange refuses: booked rejected, no position holds anything; the next entry fills.
            sim(url, "POST", "faults", {"kind": "reject", "count": 1})
            assert control(executor, "resume").returncode == 0
            fourth = until(executor, lambda: held(executor), "the entry after the refused one")
            state = load_state(executor.state_dir)
            assert state is not None
            [refused_entry] = [o for p in state.portfolio.all_positions() for o in p.orders
                               if o.purpose.value == "open" and o.status.value == "rejected"]
            [failed] = [p for p in state.portfolio.all_positions() if p.id == refused_entry.position_id]
            assert failed.quantity == 0.0 and not refused_entry.fills and fourth.id > failed.id
            assert [p.id for p in state.portfolio.open_positions] == [fourth.id]
            assert journaled(executor, "order_rejected",
                             lambda e: e["fields"]["client_order_id"] == refused_entry.client_order_id)
            one_order_per_intent(url, executor)
            executor.process.send_signal(signal.SIGTERM)
            assert executor.wait() == 0
        finally:
            executor.kill()

        names = [e["event"] for e in journal(executor)]
        assert "crashed" not in names and not (executor.state_dir / "crash.json").exists()
        # The ledger equals the exchange: its orders, its trades (fees included) and its balances.
        state = load_state(executor.state_dir)
        assert state is not None
        one_order_per_intent(url, executor)
        fills = {str(f.venue_trade_id): f for p in state.portfolio.all_positions() for o in p.orders for f in o.fills}
        trades = sim(url, "GET", "trades")
        assert sorted(fills) == sorted(str(t["id"]) for t in trades)
        for trade in trades:
            fill = fills[str(trade["id"])]
            assert (fill.quantity, fill.price, fill.fee) == pytest.approx(
                (float(trade["qty"]), float(trade["price"]), float(trade["commission"])), rel=1e-12)
        balances = sim(url, "GET", "balances")
        assert float(balances["USD"]["free"]) + float(balances["USD"]["locked"]) == pytest.approx(
            state.portfolio.cash, abs=1e-6)
        assert float(balances["EUR"]["free"]) == pytest.approx(
            sum(p.quantity for p in state.portfolio.open_positions), abs=1e-9)
