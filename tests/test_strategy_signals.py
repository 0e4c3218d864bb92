"""signals() strategies: the same trades, fees, triggers and equity as the same rules in decide(), visiting fewer bars.

The decide() versions are written by hand below (and bench/strategies/sma_1m.py); the signals()
versions are bench/strategies/sma_1m_signals.py and variants. Both run through run_backtest on
the same candles; every trade and every valuation must be equal — exactly, not approximately.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradeexecutor.backtest import runner, signal_events
from tradeexecutor.backtest.runner import BacktestResult, run_backtest
from tradeexecutor.backtest.signal_events import visit_signal_trades
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data import generate_candles
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import LookaheadRefusedError, StrategyLoadError
from tradeexecutor.state import OrderStatus, State
from tradeexecutor.strategy.loader import load_strategy

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BENCH = Path(__file__).resolve().parents[1] / "bench" / "strategies"

HEADER = '''\
from tradeexecutor.strategy.api import Integer, Symbol, close, open_long

name = "probe"
description = "probe"
cycle_duration = "{cycle}"
parameters = {{
    "symbol": Symbol("SYN", asset_type="equity"),
    "fast": Integer(10, min=2, max=500),
    "slow": Integer(30, min=3, max=1000),
}}
'''

DECIDE = HEADER + '''

def indicators(candles, parameters):
    close_price = candles["close"]
    return {{"fast": close_price.rolling(parameters.fast).mean(), "slow": close_price.rolling(parameters.slow).mean()}}


def decide(ctx):
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if not ctx.has_position():
        if fast_before < slow_before and fast > slow:
            return [open_long({order})]
    elif fast_before > slow_before and fast < slow:
        return [close()]
    return []
'''

SIGNALS = HEADER + '''
signal_order = {{{signal_order}}}


def signals(candles, parameters):
    close_price = candles["close"]
    fast = close_price.rolling(parameters.fast).mean()
    slow = close_price.rolling(parameters.slow).mean()
    fast_before, slow_before = fast.shift(1), slow.shift(1)
    return {{"entry": (fast_before < slow_before) & (fast > slow), "exit": (fast_before > slow_before) & (fast < slow)}}
'''


def _market(bars: int = 20_000, seed: int = 5) -> MarketData:
    frame = generate_candles(bars, frequency="1m", seed=seed, symbol="SYN", volatility=0.002)
    return MarketData.from_long_frame(frame, asset_types={"SYN": "equity"})


def _same(a: BacktestResult, b: BacktestResult) -> None:
    def trades(state: State) -> list[tuple[object, ...]]:
        return [(t.id, t.purpose, t.status, t.trigger, t.created_at, t.filled_at, t.signed_filled_quantity,
                 t.average_fill_price, t.fees) for t in sorted(state.portfolio.all_orders(), key=lambda t: t.id)]

    assert trades(a.state) == trades(b.state)
    for column in ("timestamp", "equity", "cash", "exposure"):
        assert np.array_equal(getattr(a.state.valuations, column), getattr(b.state.valuations, column)), column
    assert a.state.portfolio.cash == b.state.portfolio.cash


def test_bench_sma_signals_equal_the_decide_version() -> None:
    market = _market()
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    by_decide = run_backtest(load_strategy(BENCH / "sma_1m.py", {}), market, config)
    by_signals = run_backtest(load_strategy(BENCH / "sma_1m_signals.py", {}), market, config)
    _same(by_decide, by_signals)
    assert len(list(by_decide.state.portfolio.all_orders())) > 500
    assert by_decide.visited == len(market)
    assert by_signals.visited < len(market) / 5  # only signal bars and the fills after them
    assert by_signals.cycles == by_decide.cycles


@pytest.mark.parametrize(("order", "fill_timing"), [
    ("fraction=0.5, stop_loss_pct=0.003, take_profit_pct=0.004", "next_open"),
    ("value=4000.0, trailing_stop_pct=0.002", "close"),
    ("fraction=1.0", "close"),
])
def test_triggers_fees_and_fill_timings_to_the_cent(tmp_path: Path, order: str, fill_timing: str) -> None:
    (tmp_path / "by_decide.py").write_text(DECIDE.format(cycle="1m", order=order))
    pairs = ", ".join(f'"{key.strip()}": {value}' for key, value in (part.split("=") for part in order.split(",")))
    (tmp_path / "by_signals.py").write_text(SIGNALS.format(cycle="1m", signal_order=pairs))
    market = _market(12_000, seed=11)
    config = EngineConfig(execution=ExecutionConfig(fee=0.002, slippage_bps=3.0, fill_timing=fill_timing),
                          initial_cash=10_000.0)
    by_decide = run_backtest(load_strategy(tmp_path / "by_decide.py", {}), market, config)
    by_signals = run_backtest(load_strategy(tmp_path / "by_signals.py", {}), market, config)
    _same(by_decide, by_signals)
    if "pct" in order:
        assert any(t.trigger for t in by_signals.state.portfolio.all_orders()), "triggers should fire"


def test_a_slower_cycle_than_the_bars(tmp_path: Path) -> None:
    (tmp_path / "by_decide.py").write_text(DECIDE.format(cycle="5m", order="fraction=1.0"))
    (tmp_path / "by_signals.py").write_text(SIGNALS.format(cycle="5m", signal_order='"fraction": 1.0'))
    market = _market(10_000, seed=2)
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0)
    _same(run_backtest(load_strategy(tmp_path / "by_decide.py", {}), market, config),
          run_backtest(load_strategy(tmp_path / "by_signals.py", {}), market, config))


def test_signals_are_checked_for_lookahead(tmp_path: Path) -> None:
    source = SIGNALS.format(cycle="1m", signal_order='"fraction": 1.0').replace(
        'fast_before, slow_before = fast.shift(1), slow.shift(1)',
        'fast_before, slow_before = fast.shift(-1), slow.shift(-1)')
    (tmp_path / "peeks.py").write_text(source)
    with pytest.raises(LookaheadRefusedError):
        run_backtest(load_strategy(tmp_path / "peeks.py", {}), _market(3_000), EngineConfig())


@pytest.mark.parametrize(("extra", "message"), [
    ("\ndef decide(ctx):\n    return []\n", "not both"),
    ('\nsignal_order = {"fraction": 2.0}\n', "signal_order: fraction must be a fraction"),
    ('\nsignal_order = {"size": 1}\n', "signal_order: "),
])
def test_bad_signal_strategies_are_refused_when_they_load(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "bad.py").write_text(SIGNALS.format(cycle="1m", signal_order='"fraction": 1.0') + extra)
    with pytest.raises(StrategyLoadError, match=message):
        load_strategy(tmp_path / "bad.py", {})


BOTH = HEADER + '''
signal_order = {{{signal_order}}}


def signals(candles, parameters):
    close_price = candles["close"]
    fast = close_price.rolling(parameters.fast).mean()
    slow = close_price.rolling(parameters.slow).mean()
    return {{"entry": fast > slow, "exit": close_price < close_price.shift(1)}}  # often both at once
'''


def _per_step(strategy_path: Path, market: MarketData, config: EngineConfig,
              monkeypatch: pytest.MonkeyPatch) -> BacktestResult:
    """The run with every signal step visited by the per-step loop (backtest.signal_events switched off)."""
    with monkeypatch.context() as patch:
        patch.setattr(runner, "visit_signal_trades", lambda *args: None)
        return run_backtest(load_strategy(strategy_path, {}), market, config, now=NOW)


@pytest.mark.parametrize("fill_timing", ["next_open", "close"])
@pytest.mark.parametrize(("source", "order", "min_notional"), [
    pytest.param(SIGNALS, '"fraction": 1.0', 0.0, id="crossings"),
    pytest.param(BOTH, '"fraction": 1.0', 0.0, id="entry-and-exit-on-one-bar"),  # the position's state decides
    # equity falls below it after a few trades: a rejected entry, and the per-step loop goes on from there
    pytest.param(SIGNALS, '"fraction": 1.0', 9_900.0, id="rejected-entry"),
    pytest.param(BOTH, '"value": 2500.0', 0.0, id="fixed-value"),
])
def test_the_trade_loop_leaves_the_per_step_loops_state_field_by_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fill_timing: str, source: str, order: str,
        min_notional: float) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source.format(cycle="1m", signal_order=order))
    market = _market(1_500, seed=7)
    config = EngineConfig(execution=ExecutionConfig(fee=0.002, slippage_bps=3.0, fill_timing=fill_timing,
                                                    min_notional=min_notional), initial_cash=10_000.0,
                          check_indicator_lookahead=False)  # checked in its own tests; not the point here
    calls: list[tuple[int, int] | None] = []

    def counting(*args: Any) -> tuple[int, int] | None:
        calls.append(visit_signal_trades(*args))
        return calls[-1]

    monkeypatch.setattr(runner, "visit_signal_trades", counting)
    monkeypatch.setattr(signal_events, "ROWS", 7)  # trades taken in many small batches, a rejection inside one
    fast = run_backtest(load_strategy(path, {}), market, config, now=NOW)
    reference = _per_step(path, market, config, monkeypatch)
    assert calls and calls[0] is not None, "the trade loop ran"
    handed_over = calls[0][0] < len(market)
    assert handed_over == (min_notional > 0)  # only a rejection sends the run back to the per-step loop
    assert asdict(fast.state) == asdict(reference.state)  # orders, fills, positions, marks, valuations, ids
    assert fast.visited == reference.visited
    statuses = {o.status for o in fast.state.portfolio.all_orders()}
    assert OrderStatus.filled in statuses
    assert (OrderStatus.rejected in statuses) == (min_notional > 0)


def test_an_entry_on_the_last_bar_waits_as_in_the_per_step_loop(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.py"
    path.write_text(HEADER.format(cycle="1m") + '''
def signals(candles, parameters):
    last = candles["close"] * 0.0
    entry = last.copy()
    entry.iloc[-1] = 1.0  # only the last bar signals: the order can never fill
    return {"entry": entry, "exit": last}
''')
    market = _market(500, seed=3)
    config = EngineConfig(execution=ExecutionConfig(fill_timing="next_open"), initial_cash=10_000.0,
                          check_indicator_lookahead=False)
    fast = run_backtest(load_strategy(path, {}), market, config, now=NOW)
    reference = _per_step(path, market, config, monkeypatch)
    assert asdict(fast.state) == asdict(reference.state)
    assert [o.status for o in fast.state.portfolio.all_orders()] == [OrderStatus.created]
    assert fast.visited == reference.visited == 1


def test_the_trade_loop_reports_progress_as_the_per_step_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    market = _market(25_000, seed=4)
    config = EngineConfig(execution=ExecutionConfig(fee=0.001), initial_cash=10_000.0, check_indicator_lookahead=False)
    seen: dict[str, list[int]] = {"trades": [], "steps": []}
    run_backtest(load_strategy(BENCH / "sma_1m_signals.py", {}), market, config, progress=seen["trades"].append)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "visit_signal_trades", lambda *args: None)
        run_backtest(load_strategy(BENCH / "sma_1m_signals.py", {}), market, config, progress=seen["steps"].append)
    for reported in seen.values():
        # Each time the run passes a multiple of 10,000 steps, with the step it got to.
        assert reported == sorted(reported) and len(reported) == 2
        assert 10_000 <= reported[0] < 20_000 <= reported[1] < len(market)


def test_visited_steps_count_a_step_with_a_signal_and_a_fill_once() -> None:
    """The trade loop reports the steps the per-step loop would have visited: the union of the signal steps and the
    fill steps, counted by a search of one for the other (both increasing, distinct) — as np.union1d counts it."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        first = np.unique(rng.integers(0, 60, rng.integers(0, 40)))
        second = np.unique(rng.integers(0, 60, rng.integers(0, 40)))
        assert signal_events._union_size(first, second) == len(np.union1d(first, second))
