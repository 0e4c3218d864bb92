"""The engine with write-ahead on (the daemon's way): commit first, then the venue; restarts resolve, never resend.

In-process and fast, against a real ledger file: the commit hook is what the loop's job gives
the engine. tests/test_writeahead_kill.py does the same with the real daemon and SIGKILL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scripted import SCRIPTED, after, ohlc
from tradeexecutor.backtest.runner import new_state
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.accounting import recompute_cash
from tradeexecutor.engine.engine import Engine
from tradeexecutor.errors import TemporaryError
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import Order, OrderStatus, State
from tradeexecutor.strategy.api import open_long
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import LOST_AFTER, LOST_AFTER_ANSWERS
from venue_contract import AAA

T0 = datetime(2024, 6, 1, tzinfo=UTC)
PRICES: list[Any] = [100.0, 101.0, 103.0, 99.0, 104.0]
CONFIG = EngineConfig(execution=ExecutionConfig(fee=0.001, slippage_bps=10))


class Killed(BaseException):
    """Stands for the process dying at a commit (BaseException: nothing on the way catches it)."""


def make_engine(tmp_path: Path, state: State | None = None, prices: list[Any] = PRICES) -> Engine:
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", prices), asset_types={"AAA": "equity"})
    return Engine(strategy, market, state or new_state(strategy, CONFIG, T0), config=CONFIG)


def live_engine_over(tmp_path: Path, prices: Mapping[str, list[Any]], journal: list[tuple[str, dict[str, Any]]],
                now: Callable[[], datetime], venue_class: type[InMemoryVenue] = InMemoryVenue,
                ) -> tuple[Engine, InMemoryVenue]:
    """A live engine on the scripted strategy over ``prices`` (symbol → daily bars, equities): write-ahead through an
    InMemoryVenue (or ``venue_class``) holding 10 000 USD with a 0.1 % fee, each symbol an instrument like
    venue_contract's AAA; its journal lines appended to ``journal``, ``now`` its clock (the state created at its first
    reading)."""
    path = tmp_path / "scripted.py"
    symbols = list(prices)
    path.write_text(SCRIPTED.format(cycle="1d", instruments=symbols))
    strategy = load_strategy(path)
    frame = pd.concat([ohlc(symbol, bars) for symbol, bars in prices.items()])
    market = MarketData.from_long_frame(frame, asset_types=dict.fromkeys(symbols, "equity"))
    engine = Engine(strategy, market, new_state(strategy, CONFIG, now()), config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    venue = venue_class([dataclasses.replace(AAA, symbol=symbol, base=symbol) for symbol in symbols],
                        {"USD": 10_000.0}, fee=0.001)
    engine.live_venue = venue
    engine.start_write_ahead(lambda: None, now)
    return engine, venue


def cycle_ns(i: int) -> int:
    return int(pd.Timestamp(after(i)).value)


def orders(engine: Engine) -> list[Order]:
    return list(engine.state.portfolio.all_orders())


def test_an_order_is_committed_submitting_before_the_venue_prices_it_and_again_with_its_outcome(
        tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    commits: list[list[tuple[OrderStatus, int, float]]] = []
    engine.start_write_ahead(
        lambda: commits.append([(o.status, len(o.fills), engine.state.portfolio.cash) for o in orders(engine)]),
        lambda: T0)
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    assert commits == []  # created: the decision's own commit (the loop's) carries it; nothing sent yet
    engine.manage(1)  # the next bar's open: sent
    assert commits == [[(OrderStatus.submitting, 0, 10_000.0)],
                       [(OrderStatus.filled, 1, engine.state.portfolio.cash)]]
    (order,) = orders(engine)
    fill = order.fills[0]
    assert fill.price == PRICES[1] * 1.001 and fill.venue_trade_id is not None
    assert order.submitted_at is not None and order.status is OrderStatus.filled
    assert recompute_cash(10_000.0, engine.state.portfolio) == engine.state.portfolio.cash


def test_the_same_decision_taken_again_finds_its_order_instead_of_making_a_second(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    engine.start_write_ahead(lambda: None, lambda: T0)
    first = engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    again = engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    assert first.planned == again.planned == 1
    (order,) = orders(engine)
    assert engine.state.portfolio.next_order_id == 2 and len(engine.state.portfolio.open_positions) == 1
    assert [o for _, o in engine.pending] == [order]


def test_a_restart_resolves_an_order_left_submitting_and_fills_it_as_it_would_have_been(tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.sqlite"
    ledger = Ledger(ledger_path)
    engine = make_engine(tmp_path)

    def commit_then_die() -> None:
        ledger.save(engine.state)
        raise Killed

    engine.start_write_ahead(lambda: ledger.save(engine.state), lambda: T0)
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    ledger.save(engine.state)  # the decision's commit
    assert engine.router is not None
    engine.router.commit = commit_then_die  # the next commit is the order's write-ahead: the process dies there
    with pytest.raises(Killed):
        engine.manage(1)
    ledger.close()

    restarted_ledger = Ledger(ledger_path)
    state = restarted_ledger.load()
    assert state is not None
    (left,) = state.portfolio.all_orders()
    assert left.status is OrderStatus.submitting and not left.fills
    restarted = make_engine(tmp_path, state)
    restarted.start_write_ahead(lambda: restarted_ledger.save(restarted.state), lambda: T0)
    done = restarted.resolve_orders(T0)
    assert done == [f"{left.client_order_id}: never reached the venue; sent"]
    restarted.manage(1)  # the bar the killed process was managing, managed again
    restarted_ledger.close()

    uninterrupted = make_engine(tmp_path)
    uninterrupted.start_write_ahead(lambda: None, lambda: T0)
    uninterrupted.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    uninterrupted.manage(1)
    final = Ledger(ledger_path).load()
    assert final is not None
    (resolved,) = final.portfolio.all_orders()
    (expected,) = orders(uninterrupted)
    assert resolved.client_order_id == expected.client_order_id and resolved.status is OrderStatus.filled
    assert [(f.quantity, f.price, f.fee, f.at) for f in resolved.fills] == [
        (f.quantity, f.price, f.fee, f.at) for f in expected.fills]
    assert final.portfolio.cash == uninterrupted.state.portfolio.cash


def _open_with_stop(engine: Engine) -> None:
    engine.plan([open_long("AAA", value=1000, stop_loss=95.0)], 0, cycle_ns(0))
    engine.manage(1)
    engine.manage(2)


def _open(engine: Engine) -> None:
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    engine.manage(1)


def _operator_close(engine: Engine) -> None:
    (position,) = engine.state.portfolio.open_positions
    engine.close_now(position, 2, by="operator")


#: The exits of a whole position: (prices, what happens before, the step the process dies in, its order's trigger).
EXITS = {
    # Bar 3 opens at 90, below the stop at 95: the exit is priced at the open (the gap), not at the level.
    "gapped_stop_loss": ([100.0, 101.0, 103.0, (90.0, 92.0, 85.0, 91.0), 104.0], _open_with_stop,
                         lambda engine: engine.manage(3), "stop_loss"),
    "operator_close": (PRICES, _open, _operator_close, None),
}


@pytest.mark.parametrize("case", list(EXITS))
def test_an_exit_left_submitting_fills_on_restart_at_the_price_it_was_priced_at(tmp_path: Path, case: str) -> None:
    prices, before, dies_in, trigger = EXITS[case]
    ledger_path = tmp_path / "ledger.sqlite"
    ledger = Ledger(ledger_path)
    engine = make_engine(tmp_path, prices=prices)
    engine.start_write_ahead(lambda: ledger.save(engine.state), lambda: T0)
    before(engine)
    ledger.save(engine.state)

    def commit_then_die() -> None:
        ledger.save(engine.state)
        raise Killed

    assert engine.router is not None
    engine.router.commit = commit_then_die  # the exit's write-ahead commit is the last
    with pytest.raises(Killed):
        dies_in(engine)
    ledger.close()

    restarted_ledger = Ledger(ledger_path)
    state = restarted_ledger.load()
    assert state is not None
    (left,) = [o for o in state.portfolio.all_orders() if o.status is OrderStatus.submitting]
    assert (left.trigger.value if left.trigger else None) == trigger and not left.fills
    restarted = make_engine(tmp_path, state, prices)
    restarted.start_write_ahead(lambda: restarted_ledger.save(restarted.state), lambda: T0)
    done = restarted.resolve_orders(T0)
    restarted_ledger.save(restarted.state)
    restarted_ledger.close()
    assert done[0] == f"{left.client_order_id}: never reached the venue; sent"
    assert done[1].startswith(f"{left.client_order_id}: the exit filled at")

    uninterrupted = make_engine(tmp_path, prices=prices)
    uninterrupted.start_write_ahead(lambda: None, lambda: T0)
    before(uninterrupted)
    dies_in(uninterrupted)
    final = Ledger(ledger_path).load()
    assert final is not None
    assert not final.portfolio.open_positions and len(final.portfolio.closed_positions) == 1

    def rows(s: State) -> list[tuple[object, ...]]:
        return [(o.client_order_id, o.status, o.reference_price, o.trigger_price,
                 [(f.quantity, f.price, f.fee, f.at, f.slippage) for f in o.fills]) for o in s.portfolio.all_orders()]

    assert rows(final) == rows(uninterrupted.state)
    assert final.portfolio.cash == uninterrupted.state.portfolio.cash
    if trigger == "stop_loss":
        exit_fill = final.portfolio.closed_positions[0].orders[-1].fills[0]
        assert exit_fill.price == 90.0 * (1 - 0.001)  # the gap's open, with slippage; not the level


def test_live_an_unknown_entry_blocks_a_second_order_and_is_sent_again_at_the_next_settle_only_once_asked(
        tmp_path: Path) -> None:
    from tradeexecutor.venue import InMemoryVenue
    from venue_contract import AAA

    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", PRICES), asset_types={"AAA": "equity"})
    journal: list[tuple[str, dict[str, Any]]] = []

    def sink(event: str, /, **fields: Any) -> None:
        journal.append((event, fields))

    engine = Engine(strategy, market, new_state(strategy, CONFIG, T0), config=CONFIG, events=sink)
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    engine.live_venue = venue  # live mode: the exchange prices and fills
    now = [T0]
    engine.start_write_ahead(lambda: None, lambda: now[0])
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    venue.fail_next("submit")  # the request never reached the exchange, and we cannot know that yet
    engine.manage(1)
    (order,) = orders(engine)
    assert order.status is OrderStatus.unknown
    assert [f["client_order_id"] for e, f in journal if e == "order_unknown"] == [order.client_order_id]
    report = engine.plan([open_long("AAA", value=1000)], 1, cycle_ns(1))  # the next cycle wants in again
    assert report.planned == 0 and "unknown outcome" in report.ignored[0] and orders(engine) == [order]
    for _ in range(LOST_AFTER_ANSWERS - 1):  # "not found" may be the exchange's lag: an outage, nothing sent
        with pytest.raises(TemporaryError, match="taken as never arrived only after"):
            engine.settle_unknown()
        assert order.status is OrderStatus.unknown
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    assert engine.settle_unknown() == [f"{order.client_order_id}: never reached the venue; sent"]  # it lasted
    assert [m for m, c in venue.calls if c == order.client_order_id] == [
        "submit", *["fetch_order"] * LOST_AFTER_ANSWERS, "submit"]
    assert engine.settle_unknown() == []  # nothing unknown is left: nothing is asked, nothing sent
    venue.advance({"AAA": 101.0}, T0)
    engine.drain()
    assert order.status is OrderStatus.filled
    assert engine.state.portfolio.open_positions[0].quantity == order.fills[0].quantity


def test_live_a_fill_that_arrives_after_its_job_is_journaled_with_it_and_arms_the_triggers(tmp_path: Path) -> None:
    """An order the exchange accepted but filled only later (it rested on the book) is booked by the next job's
    drain: that fill is journaled ``order_filled`` in the same commit, and the opening fill sets the stop-loss."""
    from tradeexecutor.venue import InMemoryVenue
    from venue_contract import AAA

    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", PRICES), asset_types={"AAA": "equity"})
    journal: list[tuple[str, dict[str, Any]]] = []
    commits: list[list[str]] = []

    def sink(event: str, /, **fields: Any) -> None:
        journal.append((event, fields))

    engine = Engine(strategy, market, new_state(strategy, CONFIG, T0), config=CONFIG, events=sink)
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True  # the exchange accepts the order and fills nothing yet
    engine.live_venue = venue
    engine.start_write_ahead(lambda: commits.append([e for e, _ in journal]), lambda: T0)
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=0.05)], 0, cycle_ns(0))
    engine.manage(1)
    (order,) = orders(engine)
    position = engine.state.portfolio.open_positions[0]
    assert order.status is OrderStatus.open and not order.fills and position.stop_loss is None
    assert [o for _, o in engine.pending] == [order]
    assert not [e for e, _ in journal if e == "order_filled"]

    venue.hold = False
    venue.advance({"AAA": 102.0}, T0)  # filled on the book between two jobs
    assert engine.drain() > 0
    assert order.status is OrderStatus.filled and len(order.fills) == 1
    filled = [f for e, f in journal if e == "order_filled"]
    assert [(f["client_order_id"], f["quantity"], f["price"]) for f in filled] == [
        (order.client_order_id, order.fills[0].quantity, order.fills[0].price)]
    assert commits[-1].count("order_filled") == 1  # committed together with the fill it describes
    assert position.stop_loss == pytest.approx(order.fills[0].price * 0.95)
    assert engine.pending == []
    assert engine.drain() == 0 and len([e for e, _ in journal if e == "order_filled"]) == 1  # never twice


def test_live_a_fill_made_while_the_executor_was_down_is_journaled_at_restart_and_arms_the_triggers(
        tmp_path: Path) -> None:
    """Restart with an order the exchange filled meanwhile: resolve_orders books it and journals ``order_filled``
    (``resolved``) for the caller's one commit with its ``order_resolved`` lines, and the opening fill sets the stop."""
    from tradeexecutor.venue import InMemoryVenue
    from venue_contract import AAA

    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", PRICES), asset_types={"AAA": "equity"})
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True  # accepted, not filled, when the executor goes down
    first = Engine(strategy, market, new_state(strategy, CONFIG, T0), config=CONFIG)
    first.live_venue = venue
    first.start_write_ahead(lambda: None, lambda: T0)
    first.plan([open_long("AAA", value=1000, stop_loss_pct=0.05)], 0, cycle_ns(0))
    first.manage(1)
    (order,) = orders(first)
    assert order.status is OrderStatus.open and not order.fills

    venue.hold = False
    venue.advance({"AAA": 102.0}, T0)  # filled while the executor was down
    journal: list[tuple[str, dict[str, Any]]] = []
    commits: list[int] = []

    def sink(event: str, /, **fields: Any) -> None:
        journal.append((event, fields))

    again = Engine(strategy, market, first.state, config=CONFIG, events=sink)
    again.live_venue = venue
    again.start_write_ahead(lambda: commits.append(len(journal)), lambda: T0)
    done = again.resolve_orders(T0)
    assert done == [f"{order.client_order_id}: filled at the venue"] and commits == []  # the caller commits, with its lines
    (restored,) = orders(again)
    filled = [f for e, f in journal if e == "order_filled"]
    assert [(f["client_order_id"], f["resolved"], f["price"]) for f in filled] == [
        (order.client_order_id, True, restored.fills[0].price)]
    position = again.state.portfolio.open_positions[0]
    assert position.stop_loss == pytest.approx(restored.fills[0].price * 0.95) and again.pending == []


def test_live_a_followed_order_s_fill_taken_in_another_order_s_send_is_journaled_once_and_arms_its_stop(
        tmp_path: Path) -> None:
    """AAA's entry rests at the exchange (followed); the exchange fills it, and before any drain BBB's stop-loss sends
    its exit, whose drain (the venue's poll: every followed order) brings AAA's fill too. It is booked there — and
    must be journaled ``order_filled`` there, and arm AAA's stop, as ``Engine.drain`` would have: afterwards AAA's
    fill is no news to any drain (review leftover; fails before: the ledger held a fill the journal never mentioned,
    and AAA was bought with no stop-loss)."""
    journal: list[tuple[str, dict[str, Any]]] = []
    flat = [100.0] * 6
    engine, venue = live_engine_over(tmp_path, {"AAA": flat, "BBB": [100.0] * 3 + [(100.0, 100.0, 85.0, 88.0)] * 3},
                                     journal, lambda: T0)
    engine.plan([open_long("BBB", value=1000, stop_loss_pct=0.1)], 0, cycle_ns(0))
    engine.manage(1)
    venue.advance({"BBB": 100.0}, T0)
    engine.drain()
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=0.1)], 1, cycle_ns(1))
    venue.hold = True  # accepted: it rests on the book
    engine.manage(2)
    venue.hold = False
    entry = orders(engine)[-1]
    assert entry.status is OrderStatus.open and not entry.fills
    venue.advance({"AAA": 100.0}, T0)  # the exchange fills it; nobody has asked yet
    assert engine.check_triggers(3) == 1  # BBB's stop: its exit's drain takes AAA's fill
    assert entry.status is OrderStatus.filled
    engine.drain()
    aaa = next(p for p in engine.state.portfolio.open_positions if p.orders[0] is entry)
    assert aaa.stop_loss is not None, "AAA bought but its stop-loss was never armed"
    filled = [f["client_order_id"] for e, f in journal if e == "order_filled"]
    assert filled.count(entry.client_order_id) == 1, filled
    ledger = sorted(o.client_order_id for o in orders(engine) for _ in o.fills)
    assert sorted(filled) == ledger  # the journal's fills are the ledger's
