"""The backtest's lean order path (backtest/lean.py) against the engine's general one: the same state, field by field.

``run_backtest`` runs a ``BacktestEngine``, which plans plain entries and exits and fills them
inline and hands everything else to ``Engine.plan``. The reference is the same loop with the plain
``Engine`` (every intent through ``Engine.plan`` and ``Engine._fill``), and the daemon's path,
``Engine.process_step`` on every bar. The probe strategies mix what the lean path takes (open and
close, several in one cycle, on several instruments) with what it must hand over (entries with
stops, increase, reduce, set_triggers, close of a position whose entry has not filled, intents the
engine ignores) and with orders the venue rejects (cash, minimum notional), under fees, slippage
and both fill timings.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeexecutor.backtest import lean as lean_module
from tradeexecutor.backtest import runner
from tradeexecutor.backtest.lean import BacktestEngine
from tradeexecutor.backtest.runner import new_state, run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data import generate_candles
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.engine import Engine, _to_datetime
from tradeexecutor.engine.schedule import cycle_times
from tradeexecutor.state import OrderStatus, State, run_key
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy

NOW = datetime(2026, 1, 1, tzinfo=UTC)

MIXED = '''\
"""Plain entries and exits (the lean path) mixed with what only Engine.plan handles."""

from tradeexecutor.strategy.api import Integer, close, increase, open_long, reduce, set_triggers

name = "Lean probe"
description = "Mixes lean and general intents."
cycle_duration = "1m"
instruments = {instruments!r}

parameters = {{"fast": Integer(4, min=2, max=50), "slow": Integer(12, min=3, max=200)}}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {{"fast": close_price.rolling(parameters.fast).mean(),
             "slow": close_price.rolling(parameters.slow).mean()}}


def decide(ctx):
    intents = []
    bar = ctx.bars_available(ctx.symbols[0])
    for number, symbol in enumerate(ctx.symbols):
        fast, slow = ctx.indicator("fast", symbol), ctx.indicator("slow", symbol)
        before = ctx.indicator("fast", symbol, ago=1) - ctx.indicator("slow", symbol, ago=1)
        if not fast == fast or not before == before:
            continue
        held = ctx.has_position(symbol)
        if not held and before < 0 < fast - slow:
            kind = (bar // 7 + number) % 5
            if kind == 0:
                intents.append(open_long(symbol, value=ctx.cash * 0.6, stop_loss_pct=0.003))
            elif kind == 1:
                intents.append(open_long(symbol, value=ctx.cash * 5))  # more than the cash: rejected or cut
            elif kind == 2:
                intents.append(open_long(symbol, value=1.0))  # below the minimum notional: rejected
            else:
                intents.append(open_long(symbol, fraction=1.0 / len(ctx.symbols)))
        elif held:
            position = ctx.position(symbol)
            if position.quantity == 0 and bar % 3 == 0:
                intents.append(close(symbol))  # its entry has not filled yet
            elif before > 0 > fast - slow:
                intents.append(close(symbol, note="cross down"))
            elif bar % 11 == 0 and position.quantity > 2:
                intents.append(reduce(symbol, fraction=0.5))
            elif bar % 13 == 0:
                intents.append(increase(symbol, value=min(ctx.cash * 0.5, 50.0)))
            elif bar % 17 == 0:
                intents.append(set_triggers(symbol, trailing_stop_pct=0.002))
            elif bar % 19 == 0:
                intents.append(open_long(symbol, value=10.0))  # already open: ignored
    return intents
'''


def _strategy(tmp_path: Path, instruments: list[str]) -> LoadedStrategy:
    path = tmp_path / f"lean_probe_{len(instruments)}.py"
    path.write_text(MIXED.format(instruments=instruments))
    return load_strategy(path, {})


def _market(symbols: int, bars: int) -> MarketData:
    frames = [generate_candles(bars, frequency="1m", seed=seed, symbol=f"S{seed}", volatility=0.002)
              for seed in range(symbols)]
    if symbols > 2:
        frames[2] = frames[2].iloc[::3]  # gaps: orders wait for the symbol's next bar
    return MarketData.from_long_frame(pd.concat(frames), asset_types={f"S{i}": "equity" for i in range(symbols)})


def _general(strategy: LoadedStrategy, market: MarketData, config: EngineConfig,
             monkeypatch: pytest.MonkeyPatch) -> State:
    """The same loop with the plain Engine: every intent through Engine.plan, every fill through Engine._fill."""
    with monkeypatch.context() as patch:
        patch.setattr(runner, "BacktestEngine", Engine)
        return run_backtest(strategy, market, config, now=NOW).state


def _stepped(strategy: LoadedStrategy, market: MarketData, config: EngineConfig) -> State:
    """The daemon's path: Engine.process_step on every bar."""
    state = new_state(strategy, config, NOW)
    engine = Engine(strategy, market, state, config=config, run_key=run_key(strategy.name, None))  # as run_backtest
    due = cycle_times(market.timeline_ns, strategy.cycle_duration, timedelta(seconds=config.cycle_offset_seconds))
    for step, cycle_ns in enumerate(due.tolist()):
        engine.process_step(step, cycle_ns or None, report=False)
    return state


def _comparable(state: State) -> dict[str, Any]:
    data = asdict(state)
    data.pop("valuations")  # compared on their own (the stepped reference records none)
    return data


def _statuses(state: State) -> set[OrderStatus]:
    return {order.status for order in state.portfolio.all_orders()}


@pytest.mark.parametrize(("symbols", "fill_timing"), [(1, "next_open"), (1, "close"), (3, "next_open"), (3, "close")])
def test_lean_path_gives_the_general_paths_state_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  symbols: int, fill_timing: str) -> None:
    market = _market(symbols, 5_000)
    config = EngineConfig(execution=ExecutionConfig(fee=0.001, slippage_bps=3.0, fill_timing=fill_timing,
                                                    min_notional=5.0), initial_cash=10_000.0)
    strategy = _strategy(tmp_path, [f"S{i}" for i in range(symbols)])
    lean = run_backtest(strategy, market, config, now=NOW).state
    general = _general(strategy, market, config, monkeypatch)
    assert _comparable(lean) == _comparable(general)
    assert lean.valuations == general.valuations and len(lean.valuations) == len(market)
    stepped = _stepped(strategy, market, config)
    assert [asdict(o) for o in sorted(lean.portfolio.all_orders(), key=lambda o: o.id)] == \
        [asdict(o) for o in sorted(stepped.portfolio.all_orders(), key=lambda o: o.id)]
    assert lean.portfolio.cash == stepped.portfolio.cash
    # The probe reached both paths and every outcome: fills, rejections, cancellations, triggers.
    orders = list(lean.portfolio.all_orders())
    assert len(orders) > 200
    assert {OrderStatus.filled, OrderStatus.rejected} <= _statuses(lean)
    if symbols > 1 and fill_timing == "next_open":  # entries wait for the gapped symbol's next bar: close() cancels
        assert OrderStatus.cancelled in _statuses(lean)
    assert any(order.trigger for order in orders)
    assert any(order.purpose.value in ("increase", "reduce") and order.status is OrderStatus.filled
               for order in orders)
    assert lean.portfolio.failed_positions


def test_the_lean_path_plans_most_orders_of_a_plain_strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's kind of strategy (all-in entries, plain exits) never needs Engine.plan."""
    root = Path(__file__).resolve().parents[1]
    strategy = load_strategy(root / "bench" / "strategies" / "sma_1m.py", {"fast": 5, "slow": 20})
    market = MarketData.from_long_frame(generate_candles(20_000, frequency="1m", seed=2, symbol="SYN"),
                                        asset_types={"SYN": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    planned: list[int] = []
    original = Engine.plan

    def counting_plan(self: Engine, *args: Any, **kwargs: Any) -> Any:
        planned.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "plan", counting_plan)
    lean = run_backtest(strategy, market, config, now=NOW).state
    assert planned == []
    assert len(lean.portfolio.closed_positions) > 500
    general = _general(strategy, market, config, monkeypatch)
    assert planned  # the general loop went through Engine.plan
    assert _comparable(lean) == _comparable(general) and lean.valuations == general.valuations


def test_a_journalled_backtest_takes_the_general_path_and_gets_every_event(tmp_path: Path) -> None:
    """With an event sink the lean path steps aside: events are Engine's job, and none is lost."""
    root = Path(__file__).resolve().parents[1]
    strategy = load_strategy(root / "bench" / "strategies" / "sma_1m.py", {"fast": 5, "slow": 20})
    market = MarketData.from_long_frame(generate_candles(3_000, frequency="1m", seed=2, symbol="SYN"),
                                        asset_types={"SYN": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    events: list[str] = []

    def sink(event: str, /, **fields: Any) -> None:
        events.append(event)

    journalled = run_backtest(strategy, market, config, now=NOW, events=sink)
    quiet = run_backtest(strategy, market, config, now=NOW)
    orders = list(journalled.state.portfolio.all_orders())
    assert events.count("order_planned") == len(orders) > 50
    assert events.count("order_filled") == sum(1 for order in orders if order.status is OrderStatus.filled)
    assert _comparable(journalled.state) == _comparable(quiet.state)
    assert isinstance(BacktestEngine, type) and issubclass(BacktestEngine, Engine)


KNIFE_EDGE = """
from tradeexecutor.strategy.api import close, open_long

name = "Knife-edge probe"
description = "All-in entries whose float cost equals the cash while the exact cost is above it."
cycle_duration = "1m"
instruments = ["S0"]
parameters = {}
{body}
"""

KNIFE_DECIDE = """
def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=1.0)]
    return [close()] if ctx.bars_available() % 2 == 0 else []
"""

KNIFE_SIGNALS = """
signal_order = {"fraction": 1.0}


def signals(candles, parameters):
    odd = candles["volume"] > 1.5
    return {"entry": ~odd, "exit": odd}
"""


@pytest.mark.parametrize("body", [KNIFE_DECIDE, KNIFE_SIGNALS], ids=["decide", "signals"])
def test_an_entry_the_float_cost_affords_but_the_exact_cost_does_not_is_sized_as_the_venue_sizes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """The lean fill and the signals() trade loop price plain fills inline (SimulatedVenue's float operations);
    an entry whose float debit is at the cash but whose exact cost is above it (10 lots at 0.1 from a cash of
    1.0: 10 * 0.1 is 1.0 in floats, 1.0000000000000000555 exactly) is the venue's to size: 9 lots, as the
    general path (SimulatedVenue.buy, exact affordability) sizes it."""
    path = tmp_path / "knife_edge.py"
    path.write_text(KNIFE_EDGE.replace("{body}", body))
    strategy = load_strategy(path, {})
    bars = 12
    times = pd.date_range("2024-01-01", periods=bars, freq="1min", tz=UTC)
    frame = pd.DataFrame({"symbol": "S0", "open": 0.1, "high": 0.1, "low": 0.1, "close": 0.1,
                          "volume": np.where(np.arange(bars) % 4 == 3, 2.0, 1.0)}, index=times)
    market = MarketData.from_long_frame(frame, asset_types={"S0": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=0.0), initial_cash=1.0)
    lean = run_backtest(strategy, market, config, now=NOW).state
    entries = [order for order in lean.portfolio.all_orders() if order.purpose.value == "open"]
    assert len(entries) >= 2 and {order.fills[0].quantity for order in entries} == {9.0}
    assert _comparable(lean) == _comparable(_general(strategy, market, config, monkeypatch))


GENERATOR = """
from tradeexecutor.strategy.api import Integer, close, open_long

name = "Generator probe"
description = "decide() yields its intents."
cycle_duration = "1m"
instruments = ["S0"]
parameters = {"fast": Integer(5, min=2, max=50), "slow": Integer(20, min=3, max=200)}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {"fast": close_price.rolling(parameters.fast).mean(), "slow": close_price.rolling(parameters.slow).mean()}


def decide(ctx):
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    if not ctx.has_position() and fast > slow:
        yield open_long(fraction=1.0, stop_loss_pct=0.01)  # with a stop: through Engine.plan
    elif ctx.has_position() and fast < slow:
        yield close()
"""


def test_intents_yielded_by_a_generator_are_all_planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """decide() may return any iterable of intents: a generator is read once, and nothing it yields is lost
    when the lean path hands it to Engine.plan."""
    path = tmp_path / "generator_probe.py"
    path.write_text(GENERATOR)
    strategy = load_strategy(path, {})
    market = _market(1, 3_000)
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    lean = run_backtest(strategy, market, config, now=NOW).state
    assert len(lean.portfolio.closed_positions) > 20
    assert _comparable(lean) == _comparable(_general(strategy, market, config, monkeypatch))


@pytest.mark.parametrize("kept", [lean_module.RECORDS_KEPT, 8])
def test_plain_orders_are_records_until_the_run_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     kept: int) -> None:
    """The lean path keeps its orders and fills as records in the bar loop and makes the Orders and Fills
    from them later — every RECORDS_KEPT records (the filled ones), and the rest at the end of the run: the
    same objects, field by field, as the general path makes as it goes."""
    monkeypatch.setattr(lean_module, "RECORDS_KEPT", kept)
    root = Path(__file__).resolve().parents[1]
    strategy = load_strategy(root / "bench" / "strategies" / "sma_1m.py", {"fast": 5, "slow": 20})
    market = MarketData.from_long_frame(generate_candles(3_000, frequency="1m", seed=2, symbol="SYN"),
                                        asset_types={"SYN": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001, slippage_bps=2.0), initial_cash=10_000.0)
    made: list[int] = []
    original = BacktestEngine.materialise

    def counting(self: BacktestEngine) -> None:
        made.append(len(self._records))
        original(self)

    monkeypatch.setattr(BacktestEngine, "materialise", counting)
    lean = run_backtest(strategy, market, config, now=NOW).state
    orders = sorted(lean.portfolio.all_orders(), key=lambda o: o.id)
    assert len(orders) > 100
    if kept > len(orders):
        assert made == [len(orders)]  # every order made at once, at the end
    else:
        assert len(made) == 1 and made[0] < kept  # made in batches in the loop; the last few at the end
    assert all(order.status is OrderStatus.filled and len(order.fills) == 1 for order in orders[:-1])
    assert _comparable(lean) == _comparable(_general(strategy, market, config, monkeypatch))


READER = """
from tradeexecutor.strategy.api import Integer, close, open_long

name = "Position reader"
description = "Reads its position (entry price from the orders) at every cycle it holds one."
cycle_duration = "1m"
instruments = ["S0"]
parameters = {"fast": Integer(5, min=2, max=50), "slow": Integer(20, min=3, max=200)}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {"fast": close_price.rolling(parameters.fast).mean(), "slow": close_price.rolling(parameters.slow).mean()}


def decide(ctx):
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    position = ctx.position()
    if position is None and fast > slow:
        return [open_long(fraction=1.0)]
    if position is not None and fast < slow:
        return [close(note=f"entry {position.entry_price!r} held {position.quantity!r}")]
    return []
"""


def test_a_strategy_reading_its_position_sees_the_records_as_orders(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """position() reads the entry price from the position's orders: the records are made into Orders before
    the strategy reads them, so it sees what the general path shows it (its notes say so, order by order)."""
    path = tmp_path / "reader_probe.py"
    path.write_text(READER)
    strategy = load_strategy(path, {})
    market = _market(1, 2_000)
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    lean = run_backtest(strategy, market, config, now=NOW).state
    notes = [order.note for order in lean.portfolio.all_orders() if order.note]
    assert len(notes) > 20 and all("None" not in note for note in notes)
    assert _comparable(lean) == _comparable(_general(strategy, market, config, monkeypatch))


_NS = st.integers(min_value=-2_208_988_800_000_000_000, max_value=7_258_118_400_000_000_000)  # 1900 to 2200


@settings(max_examples=100, deadline=None)
@given(ns=st.lists(_NS, max_size=40) | st.lists(_NS.map(lambda n: n // 1_000_000_000 * 1_000_000_000), max_size=40))
def test_a_batch_of_decision_times_is_the_engines_datetimes(ns: list[int]) -> None:
    """_make's datetimes of a batch (whole seconds through datetime.fromtimestamp, anything else through pandas) are
    engine._to_datetime's, value and time zone: the orders' times the lean path writes are the general path's."""
    got = lean_module._datetimes(np.asarray(ns, dtype=np.int64))
    want = [_to_datetime(n) for n in ns]
    assert got == want
    assert all(type(a) is datetime and a.tzinfo is UTC for a in got)
