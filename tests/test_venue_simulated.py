"""Simulated buys are sized in closed form: they always end, never spend more than the cash and never
leave a whole lot unbought that the cash could pay, whatever the price, lot size, cash, fee and slippage."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tradeexecutor.config import ExecutionConfig
from tradeexecutor.state import Instrument
from tradeexecutor.venue.simulated import SimulatedVenue

#: Wall-clock seconds one sizing may take before it counts as a hang (it takes microseconds; generous, so a
#: machine busy with other work never trips it, while a loop that never ends still fails).
DEADLINE = 60.0


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block with TimeoutError after ``seconds``: a loop that never ends fails instead of hanging."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still sizing after {seconds} s: the sizing loop does not end")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats spread evenly over the orders of magnitude between ``low`` and ``high``."""
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: min(max(10.0 ** e, low), high))


def decimal_lots() -> st.SearchStrategy[float]:
    """Lot sizes as exchanges write them: 1 to 999 times a power of ten, from 1e-8 to 1000."""
    return st.builds(lambda digits, exponent: float(f"{digits}e{exponent}"), st.integers(1, 999),
                     st.integers(-8, 0)).filter(lambda step: 1e-8 <= step <= 1000)


PRICES = st.one_of(st.floats(1e-8, 1e6), log_uniform(1e-8, 1e6))
STEPS = st.one_of(decimal_lots(), st.floats(1e-8, 1000.0), log_uniform(1e-8, 1000.0))
CASH = st.one_of(st.floats(0.0, 1e12), log_uniform(1e-2, 1e12))
FEES = st.one_of(st.just(0.0), st.floats(0.0, 0.0999))
SLIPPAGE_BPS = st.one_of(st.just(0.0), st.floats(0.0, 999.0))


def exact_cost(quantity: float, price: float, fee: float) -> Fraction:
    """quantity × price × (1 + fee), exactly."""
    return Fraction(quantity) * Fraction(price) * (1 + Fraction(fee))


def ledger_debit(quantity: float, price: float, fee: float) -> float:
    """What the ledger takes from cash for a buy (engine/accounting.apply_buy), in its own float arithmetic."""
    notional = quantity * price
    return quantity * price + notional * fee


def pays(quantity: float, price: float, fee: float, cash: float) -> bool:
    return exact_cost(quantity, price, fee) <= Fraction(cash) and ledger_debit(quantity, price, fee) <= cash


def lots_of(quantity: float, step: float) -> int:
    """The whole number of lots a quantity stands for, the step read as the decimal it was written as."""
    return round(Fraction(quantity) / Fraction(repr(step)))


def next_quantity(quantity: float, step: float) -> float:
    """The smallest quantity a float holds that is at least one more lot than ``quantity`` (or the next float,
    where lots are finer than floats resolve)."""
    more = float((lots_of(quantity, step) + 1) * Fraction(repr(step)))
    return max(more, math.nextafter(quantity, math.inf))


def buy(price: float, step: float, cash: float, fee: float, slippage_bps: float, *, value: float | None = None,
        quantity: float | None = None):
    execution = SimulatedVenue(ExecutionConfig(fee=fee, slippage_bps=slippage_bps))
    instrument = Instrument(id=1, symbol="X", asset_type="crypto", quantity_step=step)
    with deadline(DEADLINE):
        return execution.buy(instrument, price, value=value, quantity=quantity, cash_available=cash)


def check_fill(fill, step: float, cash: float, fee: float, requested: float) -> None:
    """The properties every buy keeps, whether the cash or the request limited it."""
    price = fill.price
    if fill.reject_reason is None:
        size = fill.quantity
        assert size > 0
        # Never overspends, exactly or as the ledger reckons.
        assert exact_cost(size, price, fee) <= Fraction(cash)
        assert ledger_debit(size, price, fee) <= cash
        assert fill.fee == size * price * fee
        # A whole number of lots (to within the float's resolution)...
        lots = lots_of(size, step)
        assert abs(Fraction(size) - lots * Fraction(repr(step))) <= Fraction(math.ulp(size))
        # ... no more than asked for (a billionth of a lot of rounding tolerance) ...
        assert Fraction(size) <= Fraction(requested) * (1 + Fraction(1, 10**12)) + Fraction(step) * Fraction(1, 10**9)
        # ... and one lot more would overspend, unless that lot was not asked for.
        bigger = next_quantity(size, step)
        if bigger <= requested:
            assert not pays(bigger, price, fee, cash), (size, bigger)
    else:
        assert fill.quantity == 0
        if "not enough cash" in (fill.reason or ""):
            one_lot = next_quantity(0.0, step)
            assert not pays(one_lot, price, fee, cash)
        else:
            assert "rounds to zero" in (fill.reason or "")
            assert requested < step * (1 + 1e-6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(price=PRICES, step=STEPS, cash=CASH, fee=FEES, slippage_bps=SLIPPAGE_BPS,
       share=st.one_of(st.just(1.0), st.floats(0.0, 4.0)))
@example(price=0.00218, step=1e-8, cash=802_914.82, fee=0.001, slippage_bps=0.0, share=1.0)  # hung before
@example(price=1e-8, step=1e-8, cash=1e12, fee=0.0999, slippage_bps=999.0, share=1.0)
def test_buy_by_value_ends_fits_the_cash_and_leaves_no_whole_lot(price: float, step: float, cash: float, fee: float,
                                                                  slippage_bps: float, share: float) -> None:
    value = cash * share
    fill = buy(price, step, cash, fee, slippage_bps, value=value)
    if value / fill.price < step * (1 - 1e-6):
        assert fill.reject_reason is not None
    check_fill(fill, step, cash, fee, requested=value / fill.price)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(price=PRICES, step=STEPS, cash=CASH, fee=FEES, slippage_bps=SLIPPAGE_BPS, lots=st.integers(1, 10**22))
# The exact quotient by the decimal lot is just below 1; the float lot equals the cash: one lot is affordable.
@example(price=1.0, step=1.36587989591294, cash=1.36587989591294, fee=0.0, slippage_bps=0.0, lots=2)
def test_buy_by_quantity_ends_fits_the_cash_and_leaves_no_whole_lot(price: float, step: float, cash: float,
                                                                     fee: float, slippage_bps: float,
                                                                     lots: int) -> None:
    quantity = float(lots * Fraction(repr(step)))
    fill = buy(price, step, cash, fee, slippage_bps, quantity=quantity)
    check_fill(fill, step, cash, fee, requested=quantity)
    if fill.reject_reason is None and pays(quantity, fill.price, fee, cash):
        assert fill.quantity == quantity  # a whole-lot quantity the cash pays is bought as asked


def test_the_buy_that_hung_is_sized_at_once() -> None:
    # price 0.00218, lot 1e-8, cash 802,914.82: 3.7e16 lots, beyond a float's 2**53 integers.
    fill = buy(0.00218, 1e-8, 802_914.82, 0.001, 0.0, value=802_914.82)
    assert fill.reject_reason is None
    assert fill.quantity == pytest.approx(802_914.82 / (0.00218 * 1.001), rel=1e-12)
    check_fill(fill, 1e-8, 802_914.82, 0.001, requested=802_914.82 / 0.00218)


@pytest.mark.parametrize(
    ("step", "quantity", "expected"),
    [
        (0.25, 0.75, 0.75),  # was 0.8: rounded to the step's leading decimal, not to the step
        (0.25, 1.7, 1.5),
        (3.7e-5, 1.0, 0.999999),  # was 1.0: 27,027.03 lots
        (0.1, 0.1 * 3, 0.3),  # float noise of a computed quantity is forgiven
        (0.1, 0.29999999, 0.2),
        (1e-8, 10.12345678, 10.12345678),  # 1,012,345,678 lots: the float quotient is off by one below
        (0.01, 12345678901.23, 12345678901.23),
        (1.0, 2.0**60 + 2048.0, 2.0**60 + 2048.0),  # lots finer than the float resolves: kept as it is
    ],
)
def test_round_quantity_is_a_whole_number_of_lots_and_rounds_down(step: float, quantity: float,
                                                                   expected: float) -> None:
    instrument = Instrument(id=1, symbol="X", asset_type="crypto", quantity_step=step)
    assert instrument.round_quantity(quantity) == expected


@settings(max_examples=300, deadline=None)
@given(step=STEPS, lots=st.integers(0, 2**60))
def test_round_quantity_keeps_every_whole_lot_quantity(step: float, lots: int) -> None:
    instrument = Instrument(id=1, symbol="X", asset_type="crypto", quantity_step=step)
    quantity = float(lots * Fraction(repr(step)))
    assert instrument.round_quantity(quantity) == quantity


@settings(max_examples=300, deadline=None)
@given(step=STEPS, quantity=st.one_of(st.floats(0.0, 1e20), log_uniform(1e-9, 1e20)))
def test_round_quantity_drops_less_than_a_lot(step: float, quantity: float) -> None:
    instrument = Instrument(id=1, symbol="X", asset_type="crypto", quantity_step=step)
    rounded = instrument.round_quantity(quantity)
    exact_step = Fraction(repr(step))
    resolution = Fraction(math.ulp(quantity))
    assert abs(Fraction(rounded) - lots_of(rounded, step) * exact_step) <= Fraction(math.ulp(rounded))
    assert Fraction(rounded) <= Fraction(quantity) + exact_step / 10**9 + resolution
    assert Fraction(quantity) - Fraction(rounded) < exact_step + resolution


@settings(max_examples=300, deadline=None)
@given(step=STEPS, quantity=st.one_of(st.floats(0.0, 1e20), log_uniform(1e-9, 1e20), st.floats(-1e6, 0.0)),
       near=st.integers(1, 2**40), nudge=st.integers(-4, 4))
@example(step=1.0, quantity=96.74470349230918, near=1, nudge=0)  # the benchmark's first all-in buy
@example(step=0.1, quantity=0.3, near=3, nudge=1)
def test_round_quantity_inline_is_lot_count_then_lot_quantity(step: float, quantity: float, near: int,
                                                                nudge: int) -> None:
    # round_quantity's inline usual case does lot_count's and lot_quantity's operations itself: the same float
    # for any quantity, and a hair under a whole number of lots too, where lot_count compares the neighbours.
    instrument = Instrument(id=1, symbol="X", asset_type="crypto", quantity_step=step)
    edge = float((near - Fraction(1, 10**9)) * Fraction(repr(step)))  # at the tolerance: lot_count's doubt
    for _ in range(abs(nudge)):
        edge = math.nextafter(edge, math.inf if nudge > 0 else -math.inf)
    for wanted in (quantity, edge):
        finest = wanted / step >= 2.0**53  # finer than the float resolves: kept as it is
        expected = wanted if finest else instrument.lot_quantity(instrument.lot_count(wanted))
        assert instrument.round_quantity(wanted) == expected


def test_a_long_lived_book_keeps_its_recent_fills_only_and_trade_ids_still_count_from_the_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from tradeexecutor.state import OrderSide
    from tradeexecutor.venue import book
    from tradeexecutor.venue.memory import InMemoryVenue
    from tradeexecutor.venue.model import InstrumentSpec, OrderRequest

    monkeypatch.setattr(book, "MAX_KEPT_FILLS", 5)
    venue = InMemoryVenue([InstrumentSpec("AAA", 1.0, 0.01, 0.0, "AAA", "USD")], {"USD": 1e9})
    for n in range(1, 31):
        venue.submit(OrderRequest(f"c{n}", "AAA", OrderSide.buy, quantity=1.0))
        venue.advance({"AAA": 10.0}, datetime(2024, 1, 1, tzinfo=UTC))
        venue.poll()
    kept = [fill for n in range(1, 31) for fill in venue.order_fills(f"c{n}")]
    assert 5 <= len(kept) <= 10, "bounded: at most twice the kept count"
    assert [f.venue_trade_id for f in kept] == [f"memory-t{n}" for n in range(31 - len(kept), 31)]  # the newest
