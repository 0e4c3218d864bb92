"""Settling in two phases: every order is asked about first with nothing sent, the outcomes found are journaled and
committed, and only then are the orders the exchange never saw sent. Sent inside the asking pass (fix round 3), a
resend's write-ahead commit saved an order found filled earlier in the same pass before its order_filled was journaled
and its stop armed: kill -9 during the resend's submit, and the restart found that order terminal (never asked again),
its position with no stop-loss and no order_filled in the journal. ``Engine.settle_unknown`` (every job's start; the
start-up's ``Engine.resolve_orders`` leaves such orders to it: tests/test_settle_each.py)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from test_engine_router import T0
from test_engine_writeahead import orders
from test_settle_each import two_unknown_entries
from tradeexecutor.engine.router import said
from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import OrderStatus
from tradeexecutor.venue.model import LOST_AFTER, LOST_AFTER_ANSWERS


class Killed(BaseException):
    """kill -9 while the resend is on the wire."""


def test_a_resend_commit_does_not_commit_another_orders_fill_before_its_journal_and_stop(
        tmp_path: Path) -> None:
    commits: list[tuple[int, Any]] = []  # (journal length, a copy of the state) at each commit
    engine, venue, journal, now = two_unknown_entries(
        tmp_path, lambda engine, journal: commits.append((len(journal), copy.deepcopy(engine.state))))
    a, b = orders(engine)
    assert a.status is OrderStatus.unknown and b.status is OrderStatus.unknown
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)  # the exchange fills AAA
    fetch = venue.fetch_order
    blip = [True]

    def fetch_order(cid: str):  # both answer "does not exist" (the exchange's lag) until AAA shows up, filled, at the
        if cid == a.client_order_id and blip[0]:  # last pass (a network failure would end each pass at AAA: BBB
            return None  # would not be asked, resolve_each)
        return fetch(cid)
    venue.fetch_order = fetch_order  # type: ignore[method-assign,assignment]

    settle = engine.settle_unknown
    for _ in range(LOST_AFTER_ANSWERS - 1):
        with pytest.raises(TemporaryError):
            settle()
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    blip[0] = False
    submit = venue.submit

    def killed_submit(request):  # noqa: ANN001
        raise Killed()
    venue.submit = killed_submit  # type: ignore[method-assign,assignment]
    with pytest.raises(Killed):
        settle()  # AAA found filled, then BBB's lasting -2013: resent, write-ahead commit, kill -9
    venue.submit = submit  # type: ignore[method-assign]
    lines, state = commits[-1]  # what a restart reads
    a2 = next(o for o in state.portfolio.all_orders() if o.client_order_id == a.client_order_id)
    pos = next(p for p in state.portfolio.open_positions if any(o.client_order_id == a.client_order_id for o in p.orders))
    filled_lines = [f for e, f in journal[:lines] if e == "order_filled" and f["client_order_id"] == a.client_order_id]
    # A committed state in which AAA is filled must carry its order_filled line and its armed stop
    assert a2.status is OrderStatus.filled, "AAA was found filled before BBB was sent"
    assert len(filled_lines) == 1 and pos.stop_loss is not None, (
        f"committed: AAA {a2.status.value}, stop_loss {pos.stop_loss}, order_filled lines {len(filled_lines)}")
    resolved_lines = [f["detail"] for e, f in journal[:lines] if e == "order_resolved"]
    assert resolved_lines == [f"{a.client_order_id}: {said('filled')}"]
    b2 = next(o for o in state.portfolio.all_orders() if o.client_order_id == b.client_order_id)
    assert b2.status is OrderStatus.submitting  # BBB committed before it was sent: the restart asks about it


def test_a_sent_orders_line_is_committed_with_the_next_sends_write_ahead(tmp_path: Path) -> None:
    """Two orders that never reached the exchange, sent again in one settle: a kill -9 during the second's submit
    leaves the first sent and committed (by the second's write-ahead commit) — with its ``order_resolved`` line,
    which was journaled only after every send (a sent order without its line in the journal)."""
    commits: list[tuple[int, Any]] = []
    engine, venue, journal, now = two_unknown_entries(
        tmp_path, lambda engine, journal: commits.append((len(journal), copy.deepcopy(engine.state))), aaa_taken=False)
    assert [o.status for o in orders(engine)] == [OrderStatus.unknown, OrderStatus.unknown]  # neither reached it
    for _ in range(LOST_AFTER_ANSWERS - 1):
        with pytest.raises(TemporaryError):
            engine.settle_unknown()
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    submit = venue.submit
    sends: list[str] = []

    def killed_at_the_second(request: Any) -> Any:
        sends.append(request.client_order_id)
        if len(sends) == 2:
            raise Killed()
        return submit(request)

    venue.submit = killed_at_the_second  # type: ignore[method-assign]
    with pytest.raises(Killed):
        engine.settle_unknown()
    lines, state = commits[-1]  # what a restart reads
    first = next(o for o in state.portfolio.all_orders() if o.client_order_id == sends[0])
    assert first.status is not OrderStatus.unknown  # sent, and committed so by the second's write-ahead
    assert [f["detail"] for e, f in journal[:lines] if e == "order_resolved"] == [f"{sends[0]}: {said('sent')}"]
