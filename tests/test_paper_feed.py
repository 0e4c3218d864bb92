"""Paper mode's feed against the exchange simulator (real waitress, the unmodified ccxt client), in process.

A failure while polling candles is a TemporaryError out of ``advance()`` — the loop boundary's to
retry — and loses no candle; a 429 holds requests back and shows in the venue figures RunState
carries to /status and /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from exchange_sim_helpers import Running, make_simulator, serve, wait_for
from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.daemon.paper import ExchangeFeed, open_paper_session, poll_period
from tradeexecutor.errors import TemporaryError
from tradeexecutor.runstate import RunState
from tradeexecutor.settings import DaemonConfig
from tradeexecutor.venue.ccxt_errors import RateLimitedError

pytest.importorskip("ccxt")

FLIP = Path(__file__).parent / "strategies" / "paper_flip.py"


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with serve(make_simulator()) as running:
        yield running


def paper_feed(running: Running) -> tuple[ExchangeFeed, RunState]:
    config = DaemonConfig(strategy_file=FLIP, mode="paper",
                          exchange=CcxtVenueConfig(exchange="binance", url=running.url))
    market = open_paper_session(config, checkpoint=lambda _: None)
    runstate = RunState.create("paper-feed", mode="paper")
    return market.feed(runstate, monotonic=lambda: 0.0), runstate


def test_poll_period_is_a_quarter_candle_within_bounds() -> None:
    assert poll_period(timedelta(seconds=1)).total_seconds() == 0.25
    assert poll_period(timedelta(seconds=20)).total_seconds() == 5
    assert poll_period(timedelta(hours=1)).total_seconds() == 15
    assert poll_period(timedelta(milliseconds=500)).total_seconds() == 0.25


def test_a_failed_poll_is_temporary_and_the_feed_goes_on_without_a_gap(running: Running) -> None:
    running.control("POST", "reset")
    feed, runstate = paper_feed(running)
    warm_up = len(feed.market)
    assert warm_up >= 900 and feed.advance() == warm_up - 1  # the warm-up's newest candle first
    wait_for(lambda: feed.advance() is not None, timeout=60)
    last = int(feed.market.timeline_ns[feed.cursor])
    running.control("POST", "faults", {"kind": "error", "status": 503, "count": 1})
    with pytest.raises(TemporaryError):
        wait_for(lambda: feed.advance() is not None, timeout=60)
    assert feed.cursor == len(feed.market) - 1 and int(feed.market.timeline_ns[feed.cursor]) == last
    steps = wait_for(lambda: list(iter(feed.advance, None)), timeout=30)  # the next polls answer
    closes = [int(feed.market.timeline_ns[step]) for step in steps]
    assert closes[0] == last + 1_000_000_000 and all(b - a == 1_000_000_000 for a, b in pairwise(closes))
    assert runstate.snapshot().venue["requests"] > 0


def test_a_429_holds_requests_back_and_shows_in_the_venue_figures(running: Running) -> None:
    running.control("POST", "reset")
    feed, runstate = paper_feed(running)
    feed.advance()
    running.control("POST", "faults", {"kind": "rate_limit", "retry_after": 30, "count": 1})
    posted = time.monotonic()  # the 429 came after this: at most `waited` seconds of its 30 have passed
    with pytest.raises(RateLimitedError):
        wait_for(lambda: feed.advance() is not None, timeout=60)
    venue = runstate.snapshot().venue
    waited = time.monotonic() - posted
    assert 30 - waited - 1 < venue["held_back_seconds"] <= 30, (waited, venue)
    assert venue["held_back_total_seconds"] == pytest.approx(30, abs=1)
    sent = venue["requests"]
    with pytest.raises(RateLimitedError):
        feed.advance()  # the gate is shut: no request leaves, and the figures say so
    assert runstate.snapshot().venue["requests"] == sent
