"""Operator jobs in the loop: close one, close all, reload parameters — each one job, journaled and answered.

The loop runs in-process on the fake clock and the in-memory ticker (as in test_daemon_loop.py),
with the real engine, ledger and journal; the operator's requests go through the command queue
exactly as the webhook's action sink sends them (``CommandQueue.ask``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_daemon_loop import make, run_ticks
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.control import ActionRequest, ActionResult, Outcome
from tradeexecutor.daemon.runner import Daemon
from tradeexecutor.ledger import load_state
from tradeexecutor.store.journal import Journal


def ask(daemon: Daemon, command: str, **fields: Any) -> ActionResult:
    """Queue an operator job as the webhook does, let the loop run it, return its answer."""
    reply = daemon.commands.ask(ActionRequest(command, by="ops", **fields))
    daemon.loop.run_pending()
    result = reply.wait(0)
    assert result is not None, "the loop answered"
    return result


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    return list(Journal(tmp_path / "state" / "journal.jsonl").entries())


def operator(tmp_path: Path, **params: Any) -> tuple[Daemon, Any]:
    log = tmp_path / "cycles.txt"
    engine = EngineConfig(execution=ExecutionConfig(fee=0.001, slippage_bps=10.0))
    daemon, ticker, _ = make(tmp_path, "daemon_operator.py", params={"log_file": str(log), **params}, engine=engine)
    return daemon, ticker


def test_close_one_position_at_the_current_bar_through_the_trigger_exit_path(tmp_path: Path) -> None:
    daemon, ticker = operator(tmp_path)
    try:
        run_ticks(daemon, ticker, 3)  # cycle 1 plans both entries, the next bar fills them
        portfolio = daemon.engine.state.portfolio
        assert [p.quantity > 0 for p in portfolio.open_positions] == [True, True]
        position = portfolio.open_positions[0]
        quantity, cash_before = position.quantity, portfolio.cash
        step = daemon.feed.cursor
        bars = daemon.feed.market.bars[daemon.engine.symbol_of[position.instrument_id]]
        price = bars.close.item(int(daemon.feed.market.last_closed[daemon.engine.symbol_of[position.instrument_id]][step]))

        result = ask(daemon, "close", position_id=position.id)

        assert result.outcome is Outcome.done, result
        assert position not in portfolio.open_positions and position in portfolio.closed_positions
        order = position.orders[-1]
        assert order.purpose.value == "close" and order.filled_quantity == pytest.approx(quantity)
        assert order.client_order_id.endswith(f"-p{position.id}c")  # names the position, as a trigger exit's id
        fill_price = order.average_fill_price
        assert fill_price is not None
        assert fill_price == pytest.approx(price * (1 - 0.001))  # the venue's 10 bps of slippage, as a stop's
        assert order.fees == pytest.approx(quantity * fill_price * 0.001)
        assert portfolio.cash == pytest.approx(cash_before + quantity * fill_price - order.fees)
        assert result.details["cash"] == pytest.approx(portfolio.cash)
        assert [c["position_id"] for c in result.details["closed"]] == [position.id]
        [closed] = result.details["closed"]
        assert (closed["fee"], closed["fee_currency"]) == (order.fees, "USD")  # the fee says its currency
        # Committed as one job: the saved state has it closed, and the journal holds the fill and the action.
        saved = load_state(tmp_path / "state")
        assert saved is not None and [p.id for p in saved.portfolio.closed_positions] == [position.id]
        assert saved.portfolio.cash == pytest.approx(portfolio.cash)
        events = journal(tmp_path)
        action = [e for e in events if e["event"] == "operator_action"]
        assert action and action[-1]["fields"]["by"] == "ops" and action[-1]["fields"]["action"] == "close"
        filled = [e for e in events if e["event"] == "order_filled" and e["fields"].get("by") == "ops"]
        assert filled and filled[-1]["fields"]["position_id"] == position.id

        again = ask(daemon, "close", position_id=position.id)
        assert again.outcome is Outcome.conflict and "already closed" in again.message
        assert again.details == {"position_id": position.id}  # the webhook's 409 carries it (details)
        unknown = ask(daemon, "close", position_id=99)
        assert unknown.outcome is Outcome.not_found and "no position 99" in unknown.message
        assert unknown.details == {"position_id": 99}  # the webhook's 404 carries it
        refused = [e for e in journal(tmp_path) if e["event"] == "operator_refused"]
        assert [e["fields"]["outcome"] for e in refused] == ["conflict", "not_found"]
        assert all(e["level"] == "warning" for e in refused)
    finally:
        daemon.close()


def test_close_all_then_nothing_left(tmp_path: Path) -> None:
    daemon, ticker = operator(tmp_path)
    try:
        run_ticks(daemon, ticker, 3)
        portfolio = daemon.engine.state.portfolio
        ids = [p.id for p in portfolio.open_positions]
        assert len(ids) == 2
        result = ask(daemon, "close_all")
        assert result.outcome is Outcome.done
        assert not portfolio.open_positions and sorted(c["position_id"] for c in result.details["closed"]) == ids
        equity, cash, exposure = daemon.engine.valuation()
        assert equity == pytest.approx(cash) and exposure == 0.0
        assert daemon.engine.state.valuations.cash[-1] == pytest.approx(cash)  # the bar's row reflects the closes
        assert ask(daemon, "close_all").outcome is Outcome.conflict
    finally:
        daemon.close()


def test_close_of_a_position_whose_entry_has_not_filled_cancels_it(tmp_path: Path) -> None:
    daemon, ticker = operator(tmp_path)
    try:
        run_ticks(daemon, ticker, 1)  # cycle 1 planned the entries; they fill at the next bar's open
        portfolio = daemon.engine.state.portfolio
        position = portfolio.open_positions[0]
        assert position.quantity == 0
        result = ask(daemon, "close", position_id=position.id)
        assert result.outcome is Outcome.done
        assert position not in portfolio.open_positions
        assert position.orders[0].status.value == "cancelled"
        run_ticks(daemon, ticker, 1)
        assert position.quantity == 0  # the cancelled entry never fills
    finally:
        daemon.close()


def test_reload_params_is_used_by_the_next_cycle_and_journaled(tmp_path: Path) -> None:
    daemon, ticker = operator(tmp_path)
    try:
        run_ticks(daemon, ticker, 2)
        result = ask(daemon, "reload_params", parameters={"window": 7, "entries": "false"})
        assert result.outcome is Outcome.done, result
        assert result.details["changed"] == {"window": {"old": 3, "new": 7}, "entries": {"old": True, "new": False}}
        assert daemon.runstate.snapshot().strategy_parameters["window"] == 7  # /status shows it
        lines = (tmp_path / "cycles.txt").read_text().splitlines()
        run_ticks(daemon, ticker, 2)
        after = (tmp_path / "cycles.txt").read_text().splitlines()[len(lines):]
        assert after and all(line.startswith("window=7 entries=False") for line in after), after
        sma = daemon.engine.indicators.values["GOOG"]["sma"]
        close = daemon.feed.market.bars["GOOG"].close
        assert sma[6] == pytest.approx(close[:7].mean())  # the indicator was recomputed with window 7
        entry = [e for e in journal(tmp_path) if e["event"] == "operator_action"][-1]
        assert entry["fields"]["changed"]["window"] == {"old": 3, "new": 7}
    finally:
        daemon.close()


@pytest.mark.parametrize(("changes", "reason"), [
    ({"window": 1}, "'window': 1 is below the minimum 2"),
    ({"window": "ten"}, "'window': 'ten' is not an integer"),
    ({"speed": 3}, "'speed' is not a parameter of this strategy"),
    ({}, "no parameters given"),
])
def test_invalid_parameters_are_refused_with_the_reason_and_nothing_changes(
        tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    daemon, ticker = operator(tmp_path)
    try:
        run_ticks(daemon, ticker, 2)
        strategy, indicators = daemon.engine.strategy, daemon.engine.indicators
        result = ask(daemon, "reload_params", parameters=changes)
        assert result.outcome is Outcome.invalid and reason in result.message, result
        assert result.details == {"parameters": dict(strategy.parameters)}  # those in use: the webhook's 400 too
        assert daemon.engine.strategy is strategy and daemon.engine.indicators is indicators
        assert daemon.runstate.snapshot().strategy_parameters["window"] == 3
        refused = [e for e in journal(tmp_path) if e["event"] == "operator_refused"]
        assert refused and reason in refused[-1]["fields"]["message"]
    finally:
        daemon.close()


def test_a_symbol_parameter_cannot_change_while_running(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path)  # daemon_sma.py: symbol is a Symbol parameter
    try:
        run_ticks(daemon, ticker, 2)
        reply = daemon.commands.ask(ActionRequest("reload_params", by="ops", parameters={"symbol": "AAPL"}))
        daemon.loop.run_pending()
        result = reply.wait(0)
        assert result is not None and result.outcome is Outcome.invalid
        assert "restart it with -p symbol=AAPL" in result.message
    finally:
        daemon.close()


def test_entries_stay_shut_while_paused_but_an_operator_close_still_works(tmp_path: Path) -> None:
    daemon, ticker = operator(tmp_path)
    try:
        assert daemon.commands.submit("pause")
        daemon.loop.run_pending()
        run_ticks(daemon, ticker, 5)
        assert daemon.engine.state.portfolio.next_position_id == 1  # nothing opened while paused
        assert daemon.commands.submit("resume")
        daemon.loop.run_pending()
        run_ticks(daemon, ticker, 2)
        assert daemon.engine.state.portfolio.open_positions
        assert daemon.commands.submit("pause")
        result = ask(daemon, "close_all")
        assert result.outcome is Outcome.done and not daemon.engine.state.portfolio.open_positions
        run_ticks(daemon, ticker, 3)
        assert not daemon.engine.state.portfolio.open_positions  # still paused: not reopened
    finally:
        daemon.close()


def test_a_stopped_loop_answers_instead_of_leaving_the_caller_waiting(tmp_path: Path) -> None:
    daemon, _ = operator(tmp_path)
    try:
        daemon.commands.stop("test")
        daemon.loop.run_pending()
        result = ask(daemon, "close_all")
        assert result.outcome is Outcome.failed and "stopped" in result.message
    finally:
        daemon.close()
