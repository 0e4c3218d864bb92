"""The venue contract (tests/venue_contract.py) run over every venue implementation we have."""

from __future__ import annotations

from datetime import datetime

import pytest

from tradeexecutor.config import ExecutionConfig
from tradeexecutor.venue import InMemoryVenue, SimulatedVenue
from venue_contract import AAA, FEE, Harness, VenueContract


def _memory(cash: float) -> InMemoryVenue:
    return InMemoryVenue([AAA], {"USD": cash}, fee=FEE)


def _simulated(cash: float) -> SimulatedVenue:
    return SimulatedVenue(ExecutionConfig(fee=FEE), [AAA], {"USD": cash})


def _advance(venue: InMemoryVenue | SimulatedVenue, price: float, at: datetime) -> None:
    venue.advance({"AAA": price}, at)


HARNESSES = [
    Harness("memory", _memory, _advance),
    Harness("simulated", _simulated, _advance),
]


@pytest.fixture(params=HARNESSES, ids=[h.name for h in HARNESSES])
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.param  # type: ignore[no-any-return]


class TestVenueContract(VenueContract):
    """Every contract test, once per venue."""
