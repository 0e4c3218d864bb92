"""The fast state codec agrees exactly with dataclasses-json, round-trips exactly and reports bad files clearly."""

from __future__ import annotations

import copy
from array import array
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, cast

import orjson
import pytest
from dataclasses_json import DataClassJsonMixin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state_builders import make_order
from tradeexecutor.errors import SchemaVersionError, StateCorruptError
from tradeexecutor.state import (
    SCHEMA_VERSION,
    Fill,
    Instrument,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    Portfolio,
    Position,
    RejectReason,
    State,
    TimeInForce,
    TriggerKind,
    ValuationSeries,
)
from tradeexecutor.store import codec
from tradeexecutor.store.codec import dumps_state, loads_state, state_from_dict, state_to_dict

# ----------------------------------------------------------------------------------------------
# Random states


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
#: Extremes on purpose: huge, tiny, subnormal, negative zero, and ordinary prices.
floats = st.one_of(
    finite_floats,
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, 123456.789]),
)
optional_floats = st.none() | floats
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
small_ids = st.integers(min_value=0, max_value=10**9)
texts = st.text(max_size=12)
optional_texts = st.none() | texts
utc_datetimes = st.datetimes(timezones=st.just(UTC))
optional_datetimes = st.none() | utc_datetimes


def members(enum: type[Enum]) -> st.SearchStrategy[Any]:
    """Members of an enum (the model holds members, never plain strings)."""
    return st.sampled_from(list(enum))


instruments = st.builds(
    Instrument,
    id=small_ids,
    symbol=texts,
    asset_type=st.sampled_from(["equity", "fx", "crypto", "future"]),
    quantity_step=floats,
    min_notional=floats,
    quote_currency=texts,
)

fills = st.builds(
    Fill,
    id=small_ids,
    order_id=small_ids,
    quantity=floats,
    price=floats,
    at=utc_datetimes,
    fee=floats,
    fee_currency=texts,
    venue_trade_id=optional_texts,
    slippage=floats,
    realised_pnl=floats,
    fee_price=optional_floats,
    fee_price_source=optional_texts,
)

orders = st.builds(
    Order,
    id=small_ids,
    client_order_id=texts,
    position_id=small_ids,
    instrument_id=small_ids,
    purpose=members(OrderPurpose),
    side=members(OrderSide),
    created_at=utc_datetimes,
    status=members(OrderStatus),
    type=members(OrderType),
    time_in_force=members(TimeInForce),
    quantity=optional_floats,
    value=optional_floats,
    limit_price=optional_floats,
    stop_price=optional_floats,
    reference_price=optional_floats,
    venue_order_id=optional_texts,
    status_reason=optional_texts,
    reject_reason=st.none() | members(RejectReason),
    trigger=st.none() | members(TriggerKind),
    trigger_price=optional_floats,
    note=optional_texts,
    submitted_at=optional_datetimes,
    updated_at=optional_datetimes,
    closed_at=optional_datetimes,
    fills=st.lists(fills, max_size=2),
)


def positions(closed: bool) -> st.SearchStrategy[Position]:
    """Open positions (closed_at None) or closed ones, with orders of every status."""
    return st.builds(
        Position,
        id=small_ids,
        instrument_id=small_ids,
        opened_at=utc_datetimes,
        direction=st.sampled_from(["long", "short"]),
        quantity=floats,
        cost_basis=floats,
        realised_pnl=floats,
        fees_paid=floats,
        stop_loss=optional_floats,
        take_profit=optional_floats,
        trailing_stop_pct=optional_floats,
        high_water=optional_floats,
        stop_loss_pct=optional_floats,
        take_profit_pct=optional_floats,
        last_price=optional_floats,
        last_valued_at=optional_datetimes,
        closed_at=utc_datetimes if closed else st.none(),
        orders=st.lists(orders, max_size=3),
    )


portfolios = st.builds(
    Portfolio,
    cash=floats,
    open_positions=st.lists(positions(closed=False), max_size=2),
    closed_positions=st.lists(positions(closed=True), max_size=3),
    failed_positions=st.lists(positions(closed=False), max_size=2),
    next_position_id=small_ids,
    next_order_id=small_ids,
    next_fill_id=small_ids,
    fees_paid=floats,
    fee_asset_balances=st.dictionaries(texts, floats, max_size=2),
)


@st.composite
def valuation_series(draw: st.DrawFn) -> ValuationSeries:
    """Equal-length columns of epoch-ms timestamps and floats."""
    n = draw(st.integers(min_value=0, max_value=5))
    column = st.lists(floats, min_size=n, max_size=n)
    return ValuationSeries(
        timestamp=array("q", draw(st.lists(ints, min_size=n, max_size=n))),
        equity=array("d", draw(column)),
        cash=array("d", draw(column)),
        exposure=array("d", draw(column)),
    )


states = st.builds(
    State,
    schema_version=st.just(SCHEMA_VERSION),
    name=texts,
    strategy_version=texts,
    created_at=optional_datetimes,
    instruments=st.lists(instruments, max_size=3),
    portfolio=portfolios,
    valuations=valuation_series(),
    last_completed_cycle=optional_datetimes,
    cycles_completed=ints,
    replay_cursor=ints,
    last_bar_at=optional_datetimes,
    initial_cash=floats,
)

def _dcj(state: State) -> DataClassJsonMixin:
    """The state as dataclasses-json sees it: ``@dataclass_json`` adds to_dict/to_json at run time, unseen by mypy."""
    return cast(DataClassJsonMixin, state)


def _load_dcj(data: str | bytes) -> State:
    """dataclasses-json's own decoding of a state (``State.from_json``, added at run time)."""
    return cast(State, cast("type[DataClassJsonMixin]", State).from_json(data))


property_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------
# Properties


@property_settings
@given(states)
def test_codec_dict_equals_dataclasses_json_dict(state: State) -> None:
    reference = _dcj(state).to_dict(encode_json=True)
    assert state_to_dict(state) == reference
    # The file content too, field order included.
    assert orjson.loads(dumps_state(state)) == reference
    assert list(orjson.loads(dumps_state(state))) == list(reference)


@property_settings
@given(states)
def test_fast_round_trip_is_exact(state: State) -> None:
    assert loads_state(dumps_state(state), source="test") == state
    assert state_from_dict(_dcj(state).to_dict(encode_json=True)) == state
    assert state_from_dict(state_to_dict(state)) == state


@property_settings
@given(states)
def test_dataclasses_json_round_trip_is_exact(state: State) -> None:
    assert _load_dcj(_dcj(state).to_json()) == state


@property_settings
@given(states)
def test_each_codec_reads_the_others_output(state: State) -> None:
    assert _load_dcj(dumps_state(state)) == state
    assert loads_state(_dcj(state).to_json().encode(), source="test") == state


# ----------------------------------------------------------------------------------------------
# Examples


def sample_state() -> State:
    """A small state with one open, one closed and one failed position."""
    t0 = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    state = State(name="sample", created_at=t0, initial_cash=10_000.0, last_completed_cycle=t0)
    state.add_instrument("GOOG", "equity", 1.0)
    buy = make_order(1, 1, 1, "open", t0, quantity=3.0, fill_price=101.5)
    sell = make_order(2, 1, 1, "close", t0, quantity=3.0, fill_at=t0 + timedelta(days=1), fill_price=99.0,
                      realised_pnl=-7.5)
    closed = Position(
        id=1, instrument_id=1, opened_at=t0, closed_at=t0 + timedelta(days=1), orders=[buy, sell]
    )
    rejected = make_order(3, 2, 1, "open", t0, status="rejected", value=50.0, reason="not enough cash")
    failed = Position(id=2, instrument_id=1, opened_at=t0, orders=[rejected])
    open_position = Position(
        id=3, instrument_id=1, opened_at=t0, quantity=1.0, cost_basis=100.0, last_price=100.5
    )
    state.portfolio = Portfolio(
        cash=9_000.0,
        open_positions=[open_position],
        closed_positions=[closed],
        failed_positions=[failed],
        next_position_id=4,
        next_order_id=4,
        next_fill_id=3,
    )
    state.valuations.append(1_700_000_000_000, 10_000.0, 9_000.0, 0.1)
    return state


def test_state_to_dict_does_not_share_lists_with_the_state() -> None:
    state = sample_state()
    d = state_to_dict(state)
    d["valuations"]["equity"].append(1.0)
    d["portfolio"]["closed_positions"].clear()
    assert len(state.valuations.equity) == 1
    assert len(state.portfolio.closed_positions) == 1


def test_state_from_dict_does_not_change_its_input() -> None:
    d = _dcj(sample_state()).to_dict(encode_json=True)
    before = copy.deepcopy(d)
    state_from_dict(d)
    assert d == before


def test_loaded_state_does_not_share_valuation_lists_with_the_input() -> None:
    d = _dcj(sample_state()).to_dict(encode_json=True)
    state = state_from_dict(d)
    state.valuations.append(1_800_000_000_000, 1.0, 1.0, 0.0)
    valuations = d["valuations"]
    assert isinstance(valuations, dict) and len(valuations["timestamp"]) == 1


def test_numpy_and_pandas_values_are_stored_as_plain_numbers_and_text() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    state = sample_state()
    state.portfolio.cash = np.float64(123.25)
    state.cycles_completed = np.int64(7)
    state.last_completed_cycle = pd.Timestamp("2024-05-06T07:08:09.123456Z")
    loaded = loads_state(dumps_state(state), source="test")
    assert loaded == state
    assert type(loaded.portfolio.cash) is float
    assert type(loaded.cycles_completed) is int
    assert loaded.last_completed_cycle == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def test_naive_datetimes_are_read_as_utc() -> None:
    d = _dcj(sample_state()).to_dict(encode_json=True)
    d["created_at"] = "2024-01-01T00:00:00"
    assert state_from_dict(d).created_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_dumps_state_is_compact_json_ending_in_a_newline() -> None:
    data = dumps_state(sample_state())
    assert data.endswith(b"}\n")
    assert data.count(b"\n") == 1


# ----------------------------------------------------------------------------------------------
# Bad input


def assert_one_line_naming(error: pytest.ExceptionInfo[BaseException], *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


def test_invalid_json_is_corrupt_and_names_the_source() -> None:
    with pytest.raises(StateCorruptError) as error:
        loads_state(b'{"schema_version": 1, "name": ', source="/data/state.json")
    assert_one_line_naming(error, "/data/state.json", "not valid JSON")


@pytest.mark.parametrize("data", [b"[]", b"null", b"42", b'"text"', b"{}", b'{"schema_version": "1"}'])
def test_wrong_top_level_shape_is_corrupt(data: bytes) -> None:
    with pytest.raises(StateCorruptError) as error:
        loads_state(data, source="s.json")
    assert_one_line_naming(error, "s.json")


def mutated(change) -> bytes:
    d = _dcj(sample_state()).to_dict(encode_json=True)
    change(d)
    return orjson.dumps(d)


@pytest.mark.parametrize(
    "change, detail",
    [
        (lambda d: d["portfolio"]["closed_positions"][0]["orders"][0].pop("id"), "id"),
        (lambda d: d["portfolio"]["closed_positions"][0].update(surprise=1), "surprise"),
        (lambda d: d["portfolio"].update(open_positions={"not": "a list"}), "list"),
        (lambda d: d.update(created_at="yesterday"), "yesterday"),
        (lambda d: d["valuations"].update(equity=5), "equity"),
        (lambda d: d.update(portfolio=[]), ""),
        (lambda d: d["instruments"].append("GOOG"), ""),
    ],
)
def test_wrong_inner_shape_is_corrupt_and_names_the_source(change, detail: str) -> None:
    with pytest.raises(StateCorruptError) as error:
        loads_state(mutated(change), source="/data/state.json")
    assert_one_line_naming(error, "/data/state.json", detail)


def test_newer_schema_is_refused_with_both_versions_and_advice() -> None:
    data = mutated(lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(SchemaVersionError) as error:
        loads_state(data, source="/data/state.json")
    assert_one_line_naming(
        error, "/data/state.json", str(SCHEMA_VERSION + 1), str(SCHEMA_VERSION), "upgrade tradeexecutor"
    )


def test_state_from_dict_raises_state_corrupt_error() -> None:
    with pytest.raises(StateCorruptError):
        state_from_dict({"portfolio": {"cash": 1.0, "bogus": 2}})


def test_every_model_field_is_encoded() -> None:
    """A field added to the model but not to the codec fails here with a clear diff."""
    import dataclasses

    state = sample_state()
    objects: dict[str, tuple[Any, dict[str, Any]]] = {
        "State": (state, codec._state_to_dict(state)),
        "Portfolio": (state.portfolio, codec._state_to_dict(state)["portfolio"]),
        "Position": (
            state.portfolio.closed_positions[0],
            codec.position_to_dict(state.portfolio.closed_positions[0]),
        ),
        "Order": (
            state.portfolio.closed_positions[0].orders[0],
            codec.position_to_dict(state.portfolio.closed_positions[0])["orders"][0],
        ),
        "Fill": (
            state.portfolio.closed_positions[0].orders[0].fills[0],
            codec.position_to_dict(state.portfolio.closed_positions[0])["orders"][0]["fills"][0],
        ),
        "Instrument": (state.instruments[0], codec._instrument_to_dict(state.instruments[0])),
    }
    for name, (obj, encoded) in objects.items():
        assert list(encoded) == [f.name for f in dataclasses.fields(obj)], name
