"""Write-ahead with a venue twin that fails at each step: an order is never sent twice, a fill never applied twice.

Each test commits the state to a real state directory (StateStore), lets the process "die" at
a chosen point (an exception out of the commit, or a scripted venue fault), then "restarts":
loads the state from disk into new objects and resolves it against the same venue (the venue is
the exchange: it outlives our process). Afterwards the venue holds exactly one order per client
order id, our fills are the venue's fills, and cash and quantities recomputed from fills match.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import (
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    Position,
    State,
    client_order_id,
    run_key,
)
from tradeexecutor.store import StateStore
from tradeexecutor.venue import InMemoryVenue, OrderFilled, Venue
from tradeexecutor.venue.model import LOST_AFTER, LOST_AFTER_ANSWERS, NotFoundAnswers
from venue_contract import AAA

T0 = datetime(2024, 5, 1, tzinfo=UTC)


class Died(BaseException):
    """The process died here (kill -9): nothing after this point happened."""


def new_state() -> State:
    state = State(name="router", created_at=T0, initial_cash=10_000.0)
    state.portfolio.cash = 10_000.0
    state.add_instrument("AAA", "equity", 1.0)
    return state


def decide_open(state: State, value: float = 1000.0) -> Order:
    """What a cycle at T0 deciding ``open_long(value=...)`` leaves in the state: a position and a created order."""
    portfolio = state.portfolio
    position = Position(id=portfolio.next_position_id, instrument_id=1, opened_at=T0)
    portfolio.next_position_id += 1
    order = Order(id=portfolio.next_order_id, position_id=position.id, instrument_id=1,
                  client_order_id=client_order_id(run_key(state.name, state.created_at), T0, 0, OrderPurpose.open),
                  purpose=OrderPurpose.open, side=OrderSide.buy, created_at=T0, value=value, reference_price=100.0)
    portfolio.next_order_id += 1
    position.orders.append(order)
    portfolio.open_positions.append(position)
    return order


class Process:
    """One life of the executor: its state (loaded from disk) and a router whose commits may die."""

    def __init__(self, directory: Path, venue: Venue, die_at_commit: int | None = None,
                 state: State | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.store = StateStore(directory)
        loaded = self.store.load()
        current = state if loaded is None else loaded
        assert current is not None
        self.state: State = current
        self.commits = 0
        self.die_at_commit = die_at_commit
        self.router = OrderRouter(self.state, venue, self.commit, now or (lambda: T0 + timedelta(minutes=1)))

    def commit(self) -> None:
        self.commits += 1
        if self.die_at_commit is not None and self.commits == self.die_at_commit:
            raise Died(f"died before commit {self.commits}")
        self.store.save(self.state)


def twin() -> InMemoryVenue:
    return InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)


def check_books(state: State, venue: InMemoryVenue) -> None:
    """One venue order per client id, our fills = the venue's fills, figures = fills replayed."""
    submits = [cid for method, cid in venue.calls if method == "submit"]
    every = [f for cid in dict.fromkeys(submits) for f in venue.order_fills(cid)]
    accepted = {r.client_order_id for r in venue.open_orders()} | {f.client_order_id for f in every}
    assert len(accepted) <= len(set(submits))
    venue_fills = sorted((f.client_order_id, f.venue_trade_id, f.quantity, f.price) for f in every)
    ours = sorted((o.client_order_id, f.venue_trade_id, f.quantity, f.price)
                  for o in state.portfolio.all_orders() for f in o.fills)
    assert ours == venue_fills
    for position in state.portfolio.all_positions():
        figures = recompute_from_fills(position)
        assert (figures.quantity, figures.cost_basis) == (position.quantity, position.cost_basis)
    assert recompute_cash(state.initial_cash, state.portfolio) == pytest.approx(state.portfolio.cash)
    assert state.portfolio.cash == venue.balances()["USD"].free  # the same float operations, the same cash
    held = venue.balances().get("AAA")
    assert sum(p.quantity for p in state.portfolio.open_positions) == (held.free if held else 0.0)


def one_job(process: Process, step: Callable[[Process], None]) -> bool:
    """Run a job; False when the process died in it."""
    try:
        step(process)
    except Died:
        return False
    return True


def send_all_created(process: Process) -> None:
    for position in list(process.state.portfolio.open_positions):
        for order in position.orders:
            if order.status is OrderStatus.created:
                process.router.send(order)


def market_moves(venue: InMemoryVenue, price: float = 100.0) -> None:
    venue.advance({"AAA": price}, T0 + timedelta(minutes=2))


# ---------------------------------------------------------------------------------------------


def test_an_order_is_committed_as_submitting_before_the_venue_hears_of_it(tmp_path: Path) -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    seen: list[tuple[OrderStatus, int]] = []

    def commit() -> None:
        seen.append((order.status, len(venue.calls)))

    OrderRouter(state, venue, commit, lambda: T0).send(order)
    assert seen[0] == (OrderStatus.submitting, 0)  # committed, and nothing sent yet
    assert venue.calls == [("submit", order.client_order_id)]


@pytest.mark.parametrize("die_at_commit", [1, 2, 3, 4])
def test_dying_at_any_commit_never_sends_twice_nor_applies_a_fill_twice(tmp_path: Path, die_at_commit: int) -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    StateStore(tmp_path).save(state)  # the cycle's commit: the order is created
    cid = order.client_order_id

    first = Process(tmp_path, venue, die_at_commit=die_at_commit)

    def life(process: Process) -> None:
        send_all_created(process)   # commit 1: submitting (write-ahead)
        market_moves(venue)
        process.router.drain()      # commit 2: the fill
        process.commit()            # commit 3: the job's end
        process.commit()            # commit 4: the next job

    if one_job(first, life):
        pytest.fail("the process was meant to die")
    market_moves(venue)  # the exchange goes on while we are down
    second = Process(tmp_path, venue)
    resolved = second.router.resolve()
    send_all_created(second)  # what was never committed as submitting is re-derived and sent now
    market_moves(venue)
    second.router.drain()
    state = second.state
    assert [c for m, c in venue.calls if m == "submit"] == [cid], resolved
    (position,) = state.portfolio.open_positions
    (again,) = position.orders
    assert again.client_order_id == cid and again.status is OrderStatus.filled and len(again.fills) == 1
    check_books(state, venue)
    reloaded = StateStore(tmp_path).load()
    assert reloaded is not None and reloaded.portfolio.open_positions[0].orders[0].status is OrderStatus.filled


def test_a_submit_that_timed_out_is_unknown_and_asked_about_not_resent(tmp_path: Path) -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    venue.fail_next("submit", after_effect=True)  # the venue got it; we lost the answer
    process = Process(tmp_path, venue, state=state)
    process.router.send(order)
    assert order.status is OrderStatus.unknown and "outcome unknown" in (order.status_reason or "")
    assert order.reject_reason is None  # a timeout is never a rejection
    restarted = Process(tmp_path, venue)
    (loaded,) = restarted.state.portfolio.open_positions[0].orders
    assert loaded.status is OrderStatus.unknown
    restarted.router.resolve()
    assert loaded.status is OrderStatus.open
    assert [c for m, c in venue.calls if m == "submit"] == [order.client_order_id]  # asked, not resent
    market_moves(venue)
    restarted.router.drain()
    assert loaded.status is OrderStatus.filled
    check_books(restarted.state, venue)


def test_a_submit_that_failed_before_reaching_the_venue_is_sent_once_more_with_the_same_id(tmp_path: Path) -> None:
    """A submit whose reply never came, and which never reached the venue, is sent again under the same id — but
    only once "does not exist" has lasted (``LOST_AFTER_ANSWERS`` answers over ``LOST_AFTER``, the injected clock
    driven): before that the answer may be the exchange's lag after accepting it (Binance's -2013), and a resend
    then would be a second order. Until then an outage: TemporaryError, the order unknown, nothing sent."""
    venue = twin()
    state = new_state()
    order = decide_open(state)
    venue.fail_next("submit")
    process = Process(tmp_path, venue, state=state)
    process.router.send(order)
    assert order.status is OrderStatus.unknown and venue.fetch_order(order.client_order_id) is None
    now = [T0 + timedelta(minutes=1)]
    restarted = Process(tmp_path, venue, now=lambda: now[0])
    (loaded,) = restarted.state.portfolio.open_positions[0].orders

    def submits() -> list[str]:
        return [c for m, c in venue.calls if m == "submit"]

    for _ in range(LOST_AFTER_ANSWERS - 1):  # within the span: maybe the lag, asked again at the retry
        with pytest.raises(TemporaryError, match="taken as never arrived only after"):
            restarted.router.resolve()
        assert loaded.status is OrderStatus.unknown and submits() == [order.client_order_id]  # not resent
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    done = restarted.router.resolve()  # the answer has lasted: it never arrived
    assert done == [f"{order.client_order_id}: never reached the venue; sent"]
    assert submits() == [order.client_order_id] * 2  # the first never arrived; resent exactly once
    market_moves(venue)
    restarted.router.drain()
    check_books(restarted.state, venue)
    assert restarted.state.portfolio.open_positions[0].orders[0].status is OrderStatus.filled


def test_fills_the_process_never_saw_are_taken_from_the_venue_on_restart(tmp_path: Path) -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    venue.partial = [0.4, 0.6]
    process = Process(tmp_path, venue, state=state)
    process.router.send(order)
    market_moves(venue, 100.0)
    process.router.drain()
    assert order.status is OrderStatus.partially_filled and len(order.fills) == 1
    market_moves(venue, 102.0)  # the rest fills while we are down; its event dies with the process
    venue.poll()
    restarted = Process(tmp_path, venue)
    restarted.router.resolve()
    (loaded,) = restarted.state.portfolio.open_positions[0].orders
    assert loaded.status is OrderStatus.filled and [f.quantity for f in loaded.fills] == [4, 6]
    check_books(restarted.state, venue)
    restarted.router.resolve()  # resolving again changes nothing
    assert len(loaded.fills) == 2


def test_an_event_applied_twice_moves_money_once(tmp_path: Path) -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    router = OrderRouter(state, venue, lambda: None, lambda: T0)
    router.send(order)
    market_moves(venue)
    events = venue.poll()
    for event in events + events:
        router.apply(event)
    assert len(order.fills) == 1 and isinstance(events[-1], OrderFilled)
    check_books(state, venue)


def test_an_open_order_the_venue_does_not_know_is_left_unknown_for_a_person(tmp_path: Path) -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    order.transition(OrderStatus.submitting, T0)
    order.transition(OrderStatus.open, T0)  # we believed it open; the venue has no record of it
    now = [T0]
    router = OrderRouter(state, venue, lambda: None, lambda: now[0])
    for _ in range(LOST_AFTER_ANSWERS - 1):  # maybe the exchange's lag: an outage, the order as it was
        with pytest.raises(TemporaryError, match="does not know order"):
            router.resolve()
        assert order.status is OrderStatus.open and not router.lost
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    done = router.resolve()  # the answer has lasted
    assert order.status is OrderStatus.unknown and "left for a person" in (order.status_reason or "")
    assert venue.calls == [("fetch_order", order.client_order_id)] * LOST_AFTER_ANSWERS and done
    assert state.portfolio.cash == 10_000.0  # nothing was written off or resent


def test_an_order_the_venue_accepted_once_and_lost_is_never_resent_by_a_later_resolution() -> None:
    venue = twin()
    state = new_state()
    order = decide_open(state)
    order.transition(OrderStatus.submitting, T0)
    order.venue_order_id = "77"  # accepted by the venue ...
    order.transition(OrderStatus.open, T0)
    router = OrderRouter(state, venue, lambda: None, lambda: T0, NotFoundAnswers.one_look())
    router.resolve()  # ... which no longer knows it (at once, by this router's rule): left unknown for a person
    assert order.status is OrderStatus.unknown
    for _ in range(2):  # each later resolution (a restart, a job of the running executor) asks, never resends
        assert OrderRouter(state, venue, lambda: None, lambda: T0).resolve_order(  # one look: lost before
            state.portfolio.open_positions[0], order) == "missing"
    assert [method for method, _ in venue.calls] == ["fetch_order"] * 3
    assert order.status is OrderStatus.unknown and state.portfolio.cash == 10_000.0
