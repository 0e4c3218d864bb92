"""The backtest's fast path against the engine stepped bar by bar: same trades, same equity curve.

run_backtest calls the engine's steps directly, marks positions only where something reads the
marks (the strategy's ``position()`` and ``equity``, sizing, the end) and builds the per-bar
valuation at the end from the holdings recorded at fills (backtest.curve). The reference here is
the daemon's path: ``Engine.process_step`` on every bar, which marks every bar, and
``Engine.valuation()`` read after each one. Strategies cover what the fast path skips: stop-loss,
take-profit and trailing stops, sizing from marked equity, reading the live position, several
instruments with gaps, and both fill timings.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeexecutor.backtest import curve
from tradeexecutor.backtest.runner import new_state, run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data import generate_candles, load_bundled
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.engine import Engine
from tradeexecutor.engine.schedule import cycle_times
from tradeexecutor.state import State
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 1, 1, tzinfo=UTC)

TRIGGERS = '''\
"""Triggers, equity sizing and the live position: everything the backtest's fast path marks lazily."""

from tradeexecutor.strategy.api import Integer, close, increase, open_long, set_triggers

name = "Curve probe"
description = "Exercises marks, triggers and sizing."
cycle_duration = "{cycle}"
instruments = {instruments!r}

parameters = {{"fast": Integer(5, min=2, max=50), "slow": Integer(20, min=3, max=200)}}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {{"fast": close_price.rolling(parameters.fast).mean(),
             "slow": close_price.rolling(parameters.slow).mean()}}


def decide(ctx):
    intents = []
    for symbol in ctx.symbols:
        fast, slow = ctx.indicator("fast", symbol), ctx.indicator("slow", symbol)
        if not fast == fast or not slow == slow:
            continue
        position = ctx.position(symbol)
        if position is None:
            if fast > slow:
                share = 0.9 / len(ctx.symbols)
                intents.append(open_long(symbol, value=ctx.equity * share, stop_loss_pct=0.004,
                                         take_profit_pct=0.01))
        elif position.quantity > 0 and position.unrealised_pnl > 0 and ctx.cash > ctx.equity * 0.3:
            intents.append(increase(symbol, fraction=0.05))
            intents.append(set_triggers(symbol, trailing_stop_pct=0.003, take_profit=None))
        elif fast < slow:
            intents.append(close(symbol))
    return intents
'''


def _strategy(tmp_path: Path, instruments: list[str], cycle: str) -> LoadedStrategy:
    path = tmp_path / f"probe_{len(instruments)}_{cycle}.py"
    path.write_text(TRIGGERS.format(cycle=cycle, instruments=instruments))
    return load_strategy(path, {})


def _stepped(strategy: LoadedStrategy, market: MarketData, config: EngineConfig) -> tuple[State, np.ndarray]:
    """The reference: every bar through Engine.process_step, valued after each one."""
    state = new_state(strategy, config, NOW)
    engine = Engine(strategy, market, state, config=config)
    due = cycle_times(market.timeline_ns, strategy.cycle_duration, timedelta(seconds=config.cycle_offset_seconds))
    rows = []
    for step, cycle_ns in enumerate(due.tolist()):
        engine.process_step(step, cycle_ns or None, report=False)
        rows.append(engine.valuation())
    return state, np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _trades(state: State) -> list[tuple[object, ...]]:
    return [(t.id, t.position_id, t.purpose, t.status, t.trigger, t.created_at, t.filled_at, t.signed_filled_quantity,
             t.average_fill_price, t.fees, t.status_reason) for t in sorted(state.portfolio.all_orders(), key=lambda t: t.id)]


def _compare(strategy: LoadedStrategy, market: MarketData, config: EngineConfig, *, exact: bool) -> None:
    fast = run_backtest(strategy, market, config, now=NOW)
    state, rows = _stepped(strategy, market, config)
    assert _trades(fast.state) == _trades(state)
    assert len(_trades(state)) > 20
    assert any(t.trigger for t in state.portfolio.all_orders()), "the probe should fire triggers"
    valuations = fast.state.valuations
    assert len(valuations) == len(market)
    curve = np.column_stack([valuations.equity, valuations.cash, valuations.exposure])
    if exact:
        assert np.array_equal(curve, rows)
    else:  # several instruments: position values summed in another order, last bits may differ
        np.testing.assert_allclose(curve, rows, rtol=1e-12, atol=1e-9)
    assert fast.state.portfolio.cash == state.portfolio.cash
    # Held positions end marked at the last close, as when every bar is marked. (A position that holds
    # nothing — closed, or its entry still pending — is not valued, so its last mark is not compared.)
    assert [(p.id, p.quantity, p.last_price) for p in fast.state.portfolio.open_positions if p.quantity] == \
        [(p.id, p.quantity, p.last_price) for p in state.portfolio.open_positions if p.quantity]
    assert [p.id for p in fast.state.portfolio.open_positions] == [p.id for p in state.portfolio.open_positions]


@pytest.mark.parametrize("fill_timing", ["next_open", "close"])
def test_one_instrument_curve_is_bit_identical(tmp_path: Path, fill_timing: str) -> None:
    frame = generate_candles(6_000, frequency="1m", seed=3, symbol="SYN", volatility=0.002)
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001, fill_timing=fill_timing), initial_cash=10_000.0)
    _compare(_strategy(tmp_path, ["SYN"], "1m"), market, config, exact=True)


def test_the_curve_is_the_same_built_in_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The curve is valued a chunk of steps at a time (memory); chunk edges change no row, and the
    columns are typed arrays (8 bytes a row, not a Python number each)."""
    frame = generate_candles(6_000, frequency="1m", seed=3, symbol="SYN", volatility=0.002)
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    strategy = _strategy(tmp_path, ["SYN"], "1m")
    whole = run_backtest(strategy, market, config, now=NOW).state.valuations
    monkeypatch.setattr(curve, "CHUNK", 997)  # 6,000 steps: six full chunks and a partial one
    _compare(strategy, market, config, exact=True)
    chunked = run_backtest(strategy, market, config, now=NOW).state.valuations
    assert chunked == whole and len(chunked) == 6_000
    assert list(chunked.timestamp) == (market.timeline_ns // 1_000_000).tolist()
    for column, typecode in ((chunked.timestamp, "q"), (chunked.equity, "d"), (chunked.cash, "d"),
                             (chunked.exposure, "d")):
        assert isinstance(column, array) and column.typecode == typecode


@pytest.mark.parametrize("fill_timing", ["next_open", "close"])
def test_several_instruments_with_gaps_and_a_slower_cycle(tmp_path: Path, fill_timing: str) -> None:
    frames = [generate_candles(4_000, frequency="1m", seed=seed, symbol=f"S{seed}", volatility=0.002)
              for seed in range(4)]
    frames[2] = frames[2].iloc[::3]  # a symbol with gaps: its last close is carried over the missing bars
    frames[3] = frames[3].iloc[500:]  # and one that starts later
    market = MarketData.from_long_frame(pd.concat(frames), asset_types={f"S{i}": "equity" for i in range(4)})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001, fill_timing=fill_timing), initial_cash=10_000.0)
    _compare(_strategy(tmp_path, [f"S{i}" for i in range(4)], "5m"), market, config, exact=False)


def test_rotation_on_bundled_stocks_matches(tmp_path: Path) -> None:
    frame = load_bundled("stocks-daily")
    market = MarketData.from_long_frame(frame, asset_types=dict.fromkeys(frame["symbol"].unique(), "equity"))
    strategy = load_strategy(ROOT / "strategies" / "momentum_rotation.py", {"lookback": 20})
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    fast = run_backtest(strategy, market, config, now=NOW)
    state, rows = _stepped(strategy, market, config)
    assert _trades(fast.state) == _trades(state) and len(_trades(state)) > 50
    curve = np.column_stack([fast.state.valuations.equity, fast.state.valuations.cash,
                             fast.state.valuations.exposure])
    np.testing.assert_allclose(curve, rows, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("increasing", [True, False])
def test_each_step_takes_the_last_holdings_recorded_at_or_before_it(monkeypatch: pytest.MonkeyPatch,
                                                                    increasing: bool) -> None:
    """append_curve finds each step's holdings by a running count of the recorded steps (they increase, one
    record a step): the same rows as a search per step, at chunk edges too, and the search itself when the
    steps were recorded out of order or twice."""
    frame = generate_candles(3_000, frequency="1m", seed=5, symbol="SYN", volatility=0.002)
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    monkeypatch.setattr(curve, "CHUNK", 997)
    rng = np.random.default_rng(7)
    steps = sorted({0, 996, 997, 1993, 1994, 2999, *rng.choice(3_000, 300, replace=False).tolist()})
    if not increasing:
        steps = [*steps[:100], steps[99], *steps[100:]]  # a step recorded twice: the later record counts
    holdings = curve.Holdings(1_000.0, ("SYN",))
    for number, step in enumerate(steps):
        holdings.steps.append(step)
        holdings.cash.append(1_000.0 - number)
        holdings.quantities.append(float(number % 4))
    valuations = State(name="curve").valuations
    curve.append_curve(holdings, market, valuations)
    closes = market.bars["SYN"].close
    last_closed = market.last_closed["SYN"]
    expected_cash, expected_equity = [], []
    for step in range(len(market)):
        rows = [number for number, recorded in enumerate(steps) if recorded <= step]
        cash = holdings.cash[rows[-1]] if rows else 1_000.0
        held = holdings.quantities[rows[-1]] if rows else 0.0
        expected_cash.append(cash)
        expected_equity.append(cash + (held * closes[last_closed[step]] if held else 0.0))
    assert list(valuations.cash) == expected_cash
    assert list(valuations.equity) == expected_equity


def test_a_curve_appended_to_a_series_with_rows_keeps_them() -> None:
    """A backtest's series is empty and takes the columns as made; one that has rows gets the new rows after its
    own, the same rows, in typed columns."""
    frame = generate_candles(1_500, frequency="1m", seed=5, symbol="SYN", volatility=0.002)
    market = MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})
    holdings = curve.Holdings(1_000.0, ("SYN",))
    for step, cash, quantity in ((10, 500.0, 4.0), (700, 1_010.0, 0.0), (1_200, 300.0, 7.5)):
        holdings.record(step, cash, [quantity])
    alone = State(name="curve").valuations
    curve.append_curve(holdings, market, alone)
    assert len(alone) == 1_500 and alone.cash[9] == 1_000.0 and alone.cash[10] == 500.0 and alone.cash[-1] == 300.0
    twice = State(name="curve").valuations
    curve.append_curve(holdings, market, twice)
    curve.append_curve(holdings, market, twice)
    for column in ("timestamp", "equity", "cash", "exposure"):
        made, appended = getattr(alone, column), getattr(twice, column)
        assert isinstance(appended, array) and appended.typecode == made.typecode
        assert appended[:1_500] == made and appended[1_500:] == made
