"""Two unknown orders asked about at once, the first found filled, the second not found yet (its "does not exist" has
not lasted: TemporaryError): the first's fill must be journaled, committed and its stop armed before the error escapes,
for at the retry it is no longer unknown and never asked about again. They are asked about at every job's start
(``Engine.settle_unknown``); the start-up's ``Engine.resolve_orders`` leaves them to it."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scripted import SCRIPTED, ohlc
from test_engine_router import T0
from test_engine_writeahead import CONFIG, cycle_ns, orders
from tradeexecutor.backtest.runner import new_state
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.engine import Engine
from tradeexecutor.engine.router import said
from tradeexecutor.errors import ExchangeLagError, TemporaryError
from tradeexecutor.state import OrderStatus
from tradeexecutor.strategy.api import open_long
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import LOST_AFTER, LOST_AFTER_ANSWERS, InstrumentSpec, OrderReport
from venue_contract import AAA


class CcxtLike(InMemoryVenue):
    """As the ccxt venue: an order whose submit reply never came has no exchange id, so its poll reports nothing
    of it; only fetch_order (by client order id) finds it."""

    def poll(self):  # type: ignore[override]
        super().poll()
        return []


BBB = InstrumentSpec(symbol="BBB", lot_step=1.0, tick_size=0.01, min_notional=10.0, base="BBB", quote="USD")


Journal = list[tuple[str, dict[str, Any]]]


def two_unknown_entries(tmp_path: Path, on_commit: Callable[[Engine, Journal], None], *, aaa_taken: bool = True,
                        ) -> tuple[Engine, CcxtLike, Journal, list[datetime]]:
    """A live engine with two entries of unknown outcome: AAA taken by the exchange with its reply lost (or, not
    ``aaa_taken``, never reaching it), BBB that never reached it; ``on_commit(engine, journal)`` runs at each
    write-ahead commit. Returns the engine, its venue, the journal and the clock (a list of one time, moved by the
    caller)."""
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA", "BBB"]))
    strategy = load_strategy(path)
    frame = pd.concat([ohlc("AAA", [100.0] * 6), ohlc("BBB", [50.0] * 6)])
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity", "BBB": "equity"})
    journal: Journal = []
    engine = Engine(strategy, market, new_state(strategy, CONFIG, T0), config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    venue = CcxtLike([AAA, BBB], {"USD": 10_000.0}, fee=0.001)
    engine.live_venue = venue
    now = [T0]
    engine.start_write_ahead(lambda: on_commit(engine, journal), lambda: now[0])
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=0.1), open_long("BBB", value=1000, stop_loss_pct=0.1)],
                0, cycle_ns(0))
    venue.fail_next("submit", after_effect=aaa_taken)  # AAA: the exchange took it, the reply was lost (or not)
    venue.fail_next("submit")  # BBB: never reached the exchange
    engine.manage(1)
    return engine, venue, journal, now


def test_a_found_unknown_order_before_a_lagging_one_is_journaled_and_its_stop_armed(tmp_path: Path) -> None:
    committed: list[int] = []  # the journal's length at each commit: what a failed job would keep
    engine, venue, journal, now = two_unknown_entries(tmp_path, lambda engine, journal: committed.append(len(journal)))
    a, b = orders(engine)
    assert a.status is OrderStatus.unknown and b.status is OrderStatus.unknown
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)  # the exchange fills AAA

    settle = engine.settle_unknown

    for answer in range(LOST_AFTER_ANSWERS - 1):
        engine.drain()  # as the loop's _settle: drain, then settle_unknown
        with pytest.raises(TemporaryError):
            settle()
        if answer == 0:  # AAA's outcome is in the journal and committed although BBB's question failed
            lines = journal[:committed[-1]]
            assert [f["client_order_id"] for e, f in lines if e == "order_filled"] == [a.client_order_id]
            assert [f["detail"] for e, f in lines if e == "order_resolved"] == [f"{a.client_order_id}: {said('filled')}"]
            assert b.status is OrderStatus.unknown
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    assert settle() == [f"{b.client_order_id}: {said('sent')}"]  # BBB's "does not exist" has lasted: sent now
    position_a = next(p for p in engine.state.portfolio.open_positions if p.orders[0] is a)
    assert a.status is OrderStatus.filled
    assert position_a.stop_loss is not None, "AAA bought but its stop-loss was never armed"
    assert [f["client_order_id"] for e, f in journal if e == "order_filled"].count(a.client_order_id) == 1


def test_the_start_up_leaves_orders_of_unknown_outcome_with_no_exchange_id_to_settle_unknown(tmp_path: Path) -> None:
    """At start-up, an order whose submit never got a reply and that reconciliation did not find is ``unknown`` with no
    exchange id (maybe the exchange's lag). ``resolve_orders`` asks nothing about it and fails nothing, so the start
    job neither waits for the lag nor fails (its ``started`` line would be dropped); the first job's
    ``settle_unknown`` asks, under the lag rule."""
    engine, venue, _, now = two_unknown_entries(tmp_path, lambda engine, journal: None)
    a, b = orders(engine)
    venue.calls.clear()
    assert engine.resolve_orders(now[0]) == []
    assert [call for call, _ in venue.calls if call == "fetch_order"] == []
    assert a.status is OrderStatus.unknown and b.status is OrderStatus.unknown
    with pytest.raises(TemporaryError):
        engine.settle_unknown()  # BBB: "does not exist", not yet lasted
    assert a.status is OrderStatus.open and b.status is OrderStatus.unknown  # AAA found; BBB asked again later


def test_a_followed_order_that_fills_while_others_are_asked_about_is_journaled_and_its_stop_armed(
        tmp_path: Path) -> None:
    """AAA is found open at the exchange (followed from then on) while BBB's "does not exist" has not lasted; the
    exchange fills AAA after the job's first drain. The next settle's own drain (the ccxt venue's poll asks again
    about every followed order) must journal AAA's fill and arm its stop, as ``Engine.drain`` does: otherwise the
    position is open with no stop-loss and no ``order_filled`` line, and the next drain sees nothing new."""
    engine, venue, journal, now = two_unknown_entries(tmp_path, lambda engine, journal: None)
    a, b = orders(engine)
    found: set[str] = set()
    fetch, poll = venue.fetch_order, InMemoryVenue.poll

    def fetch_order(client_order_id: str) -> OrderReport | None:  # as ccxt: an order found is followed from then on
        report = fetch(client_order_id)
        if report is not None:
            found.add(client_order_id)
        return report

    venue.fetch_order = fetch_order  # type: ignore[method-assign]
    venue.poll = lambda: [e for e in poll(venue) if e.client_order_id in found]  # type: ignore[method-assign]
    with pytest.raises(TemporaryError):
        engine.settle_unknown()  # AAA found open (not filled yet); BBB not found: the lag
    assert a.status is not OrderStatus.unknown and not a.is_terminal and b.status is OrderStatus.unknown
    engine.drain()  # the loop's _settle: drain first ...
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)  # ... the exchange fills AAA meanwhile ...
    now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    with pytest.raises(TemporaryError):
        engine.settle_unknown()  # ... then settle_unknown, whose drain takes AAA's fill
    engine.drain()
    position_a = next(p for p in engine.state.portfolio.open_positions if p.orders[0] is a)
    assert a.status is OrderStatus.filled
    assert [f["client_order_id"] for e, f in journal if e == "order_filled"].count(a.client_order_id) == 1
    assert position_a.stop_loss is not None, "AAA bought but its stop-loss was never armed"


def test_an_outage_ends_the_round_of_lookups_an_order_whose_cancel_was_asked_for_included(tmp_path: Path) -> None:
    """Two orders of unknown outcome, BBB's cancel asked for (it is no longer wanted: ``_cancelling``), and the exchange
    down (every lookup fails). ``settle_unknown`` asks about AAA, fails, and asks no more this round: the job fails as
    an outage and is retried with its backoff. It went on to a second round for the orders whose cancel was asked for —
    one more failing request per such order at every retry of an outage (fails before: two lookups)."""
    engine, venue, _, _ = two_unknown_entries(tmp_path, lambda engine, journal: None)
    a, b = orders(engine)
    engine.cancels_asked_before([{"client_order_id": b.client_order_id, "reason": "cancelled by close()"}])
    venue.calls.clear()
    venue.fail_next("fetch_order")
    venue.fail_next("fetch_order")  # the exchange down: the next lookup would fail too
    with pytest.raises(TemporaryError) as raised:
        engine.settle_unknown(hold=False)
    assert not isinstance(raised.value, ExchangeLagError)  # an outage, which even the protecting jobs fail on
    assert [cid for call, cid in venue.calls if call == "fetch_order"] == [a.client_order_id]
    assert a.status is OrderStatus.unknown and b.status is OrderStatus.unknown
