"""A restart's pending order (unknown, no exchange id, the exchange's "does not exist" not yet lasted) must not hold
up the jobs that protect the other positions: ``settle_unknown(hold=False)`` (trigger checks, revaluation and the risk
check, an operator's close; ``ExecutorLoop._settle``) lets an ``ExchangeLagError`` pass, while the cycle's
``hold=True`` and a real outage still fail the job. Review reproducer (fails before: every job failed ~60 s)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_engine_router import T0
from test_engine_writeahead import cycle_ns, live_engine_over, orders
from tradeexecutor.engine.engine import Engine
from tradeexecutor.errors import ExchangeLagError, TemporaryError
from tradeexecutor.state import Order, OrderStatus
from tradeexecutor.strategy.api import open_long
from tradeexecutor.venue import InMemoryVenue


def _bbb_stopped_aaa_pending(tmp_path: Path) -> tuple[Engine, InMemoryVenue, Order]:
    """BBB held with a 10 % stop, then crashed 40 %; AAA's entry committed but never sent (a kill -9 between commit
    and send, then a restart): unknown, no exchange id — what start-up reconciliation leaves pending. The clock does
    not move, so the lag rule is never met."""
    journal: list[tuple[str, dict[str, Any]]] = []
    engine, venue = live_engine_over(tmp_path, {"AAA": [100.0] * 5, "BBB": [50.0, 50.0, 50.0, 30.0, 30.0]}, journal,
                                lambda: T0)
    engine.plan([open_long("BBB", value=1000, stop_loss_pct=0.1)], 0, cycle_ns(0))
    engine.manage(1)
    venue.advance({"BBB": 50.0}, T0)
    engine.drain()
    engine.plan([open_long("AAA", value=1000)], 1, cycle_ns(1))
    venue.fail_next("submit")
    engine.manage(2)
    entry = next(o for o in orders(engine) if engine.symbol_of[o.instrument_id] == "AAA")
    assert entry.status is OrderStatus.unknown and not entry.venue_order_id
    return engine, venue, entry


def test_a_pending_entry_of_one_position_does_not_hold_up_anothers_stop_loss(tmp_path: Path) -> None:
    engine, venue, entry = _bbb_stopped_aaa_pending(tmp_path)

    def trigger_job(step: int) -> int:  # ExecutorLoop.run_trigger_check: _settle(hold=False), then the triggers
        engine.drain()
        engine.settle_unknown(hold=False)
        return engine.check_triggers(step)

    assert trigger_job(3) == 1  # BBB sold while AAA waits out the lag
    assert [cid for call, cid in venue.calls if call == "submit"].count(entry.client_order_id) == 1
    assert entry.status is OrderStatus.unknown  # still followed, never sent again
    aaa = next(p for p in engine.state.portfolio.open_positions if engine.symbol_of[p.instrument_id] == "AAA")
    assert engine.in_flight(aaa) is entry  # its own position stays out of every exit


def test_the_cycle_still_waits_on_the_lag(tmp_path: Path) -> None:
    engine, venue, entry = _bbb_stopped_aaa_pending(tmp_path)
    with pytest.raises(ExchangeLagError):
        engine.settle_unknown(hold=True)
    assert [cid for call, cid in venue.calls if call == "submit"].count(entry.client_order_id) == 1


def test_a_real_outage_still_fails_the_protective_jobs(tmp_path: Path) -> None:
    engine, venue, entry = _bbb_stopped_aaa_pending(tmp_path)
    venue.fail_next("fetch_order")  # the exchange unreachable, not a "does not exist"
    with pytest.raises(TemporaryError) as raised:
        engine.settle_unknown(hold=False)
    assert not isinstance(raised.value, ExchangeLagError)
    assert entry.status is OrderStatus.unknown  # asked again at the retry, nothing sent
    assert [cid for call, cid in venue.calls if call == "submit"].count(entry.client_order_id) == 1
