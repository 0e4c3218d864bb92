"""Hand-computed accounting of the engine: fees, lot rounding, rejections, slippage, sells before
buys, partial reduces and increases, set_triggers. Every expected number is worked out in a comment.

The strategy is a scripted one written to tmp_path: decide() returns SCRIPT[cycle time], where a
value may be a list of intents or a callable ``f(ctx) -> list``. Bars are daily from 2024-01-01,
so the cycle "after bar i" runs at 2024-01-01 + (i + 1) days and, with the default ``next_open``
fill timing, its orders fill at the open of bar i + 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scripted import SCRIPTED, after, bar_open, ohlc, run
from state_builders import make_order
from tradeexecutor.backtest.runner import BacktestResult, new_state
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine import CycleReport, Engine
from tradeexecutor.engine.accounting import apply_fill, recompute_cash, recompute_from_fills
from tradeexecutor.engine.schedule import cycle_times
from tradeexecutor.state import Order, OrderStatus, Portfolio, Position, RejectReason
from tradeexecutor.strategy.api import close, increase, open_long, reduce, set_triggers
from tradeexecutor.strategy.loader import load_strategy


def only_position(result: BacktestResult) -> Position:
    positions = list(result.state.portfolio.all_positions())
    assert len(positions) == 1
    return positions[0]


# ---------------------------------------------------------------------------------------------
# (i) fees


def test_fee_on_buy_and_sell(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 110, 110, 110])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0)], after(1): [close()]}, fee=0.002)
    portfolio = result.state.portfolio
    position = only_position(result)
    assert position in portfolio.closed_positions
    buy, sell = position.orders
    # Buy all-in at bar 1's open 100 with a 0.2 % fee: one share costs 100 * 1.002 = 100.2,
    # q = floor(10000 / 100.2) = floor(99.80) = 99; fee = 99 * 100 * 0.002 = 19.8;
    # cash after = 10000 - 99 * 100 - 19.8 = 80.2.
    assert buy.filled_at == bar_open(1)
    assert buy.average_fill_price == 100.0
    assert buy.signed_filled_quantity == 99
    assert buy.fees == pytest.approx(19.8)
    assert buy.realised_pnl == pytest.approx(-19.8)
    assert result.state.valuations.cash[1] == pytest.approx(80.2)
    # Sell 99 at bar 2's open 110: proceeds 99 * 110 = 10890, fee 10890 * 0.002 = 21.78;
    # cash = 80.2 + 10890 - 21.78 = 10948.42.
    assert sell.filled_at == bar_open(2)
    assert sell.average_fill_price == 110.0
    assert sell.signed_filled_quantity == -99
    assert sell.fees == pytest.approx(21.78)
    # Realised on the sell: 10890 - 9900 - 21.78 = 968.22.
    assert sell.realised_pnl == pytest.approx(968.22)
    assert portfolio.cash == pytest.approx(10948.42)
    # Position: proceeds - cost - both fees = 10890 - 9900 - 21.78 - 19.8 = 948.42 = cash gained.
    assert position.realised_pnl == pytest.approx(948.42)
    assert position.realised_pnl == pytest.approx(portfolio.cash - 10_000)
    assert position.fees_paid == pytest.approx(41.58)
    assert portfolio.fees_paid == pytest.approx(19.8 + 21.78)
    assert position.quantity == 0 and position.cost_basis == 0
    assert position.closed_at == bar_open(2)
    assert result.state.valuations.equity[-1] == pytest.approx(10948.42)


def test_equity_while_holding_is_marked_at_the_close(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, (100, 106, 99, 105), 110])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0)]}, fee=0.002)
    valuations = result.state.valuations
    # Step 1 (bar 1 closes at 105): cash 80.2 + 99 * 105 = 10475.2; exposure 10395 / 10475.2.
    assert valuations.equity[1] == pytest.approx(10475.2)
    assert valuations.exposure[1] == pytest.approx(10395 / 10475.2)
    # Step 2: 80.2 + 99 * 110 = 10970.2.
    assert valuations.equity[2] == pytest.approx(10970.2)
    assert valuations.equity[0] == valuations.cash[0] == 10_000


def test_equity_at_the_fill_step_with_close_timing(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0)]}, fill_timing="close")
    # Bought 100 at bar 0's close 100, no fee: equity stays 10000 at step 0, cash 0, exposure 1.
    valuations = result.state.valuations
    assert valuations.cash[0] == pytest.approx(0.0)
    assert valuations.equity[0] == pytest.approx(10_000)
    assert valuations.exposure[0] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# (ii) lot rounding


@pytest.mark.parametrize(
    "asset_type, quantity, cash_after",
    [
        # 1000 / 3 = 333.33...: whole shares 333 cost 999 → cash 9001.
        ("equity", 333.0, 9001.0),
        # fx lots of 0.01: 333.33 cost 999.99 → cash 9000.01.
        ("fx", 333.33, 9000.01),
        # crypto lots of 1e-8: 333.33333333 cost 999.99999999 → cash 9000.00000001.
        ("crypto", 333.33333333, 9000.00000001),
    ],
)
def test_lot_rounding_by_asset_type(tmp_path: Path, asset_type: str, quantity: float, cash_after: float) -> None:
    frame = ohlc("XXX", [3.0, 3.0, 3.0])
    result = run(tmp_path, frame, {after(0): [open_long(value=1000)]}, asset_types={"XXX": asset_type})
    instrument = result.state.instrument_by_symbol("XXX")
    assert instrument is not None and instrument.asset_type == asset_type
    position = only_position(result)
    assert position.quantity == pytest.approx(quantity, abs=1e-12)
    assert result.state.portfolio.cash == pytest.approx(cash_after, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# (iii) rejected orders


def test_order_that_rounds_to_zero_is_rejected_and_the_run_continues(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100, 100])
    # 50 / 100 = 0.5 share → rounds down to 0 whole shares.
    result = run(tmp_path, frame, {after(0): [open_long(value=50)], after(2): [open_long(value=1000)]})
    portfolio = result.state.portfolio
    assert len(portfolio.failed_positions) == 1
    failed = portfolio.failed_positions[0]
    (trade,) = failed.orders
    assert trade.status == OrderStatus.rejected
    assert "rounds to zero" in (trade.status_reason or "") and trade.reject_reason is RejectReason.rounds_to_zero
    assert trade.average_fill_price is None and trade.signed_filled_quantity == 0
    assert trade.closed_at == bar_open(1) and not trade.fills
    assert failed.closed_at is not None and failed.quantity == 0
    # The run went on: the second open bought 10 shares with untouched cash.
    (opened,) = portfolio.open_positions
    assert opened.quantity == 10
    assert opened.id != failed.id
    assert result.state.valuations.cash[1] == 10_000
    assert portfolio.cash == 9_000
    assert portfolio.fees_paid == 0


def test_increase_without_cash_is_rejected(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100])
    # All-in: 100 shares at 100, cash 0; then increase by 500 has no cash for one share.
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0)], after(1): [increase(value=500)]})
    position = only_position(result)
    assert position.is_open and position.quantity == 100
    opening, more = position.orders
    assert opening.status == OrderStatus.filled
    assert more.status == OrderStatus.rejected
    assert more.purpose == "increase"
    assert "not enough cash" in (more.status_reason or "")
    assert result.state.portfolio.cash == 0


def test_buy_larger_than_cash_is_downsized_not_rejected(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100])
    # open_long(value=20000) with 10,000 cash: floor(10000 / 100) = 100 shares.
    result = run(tmp_path, frame, {after(0): [open_long(value=20_000)]})
    assert only_position(result).quantity == 100
    assert result.state.portfolio.cash == 0


def test_min_notional_rejections(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100, 50, 50, 50])
    script = {
        after(0): [open_long("AAA", value=500)],    # 5 shares = 500 < 1000: rejected
        after(1): [open_long("AAA", value=1200)],   # 12 shares = 1200: fills
        after(2): [reduce(quantity=5)],             # 5 * 100 = 500 < 1000: rejected
        after(4): [close()],                        # 12 * 50 = 600 < 1000, but closing is always allowed
    }
    result = run(tmp_path, frame, script, min_notional=1000)
    portfolio = result.state.portfolio
    (failed,) = portfolio.failed_positions
    assert failed.orders[0].status_reason == "below minimum notional: 500.00 < 1000.00"
    assert failed.orders[0].reject_reason is RejectReason.below_min_notional
    (closed,) = portfolio.closed_positions
    opening, small_reduce, closing = closed.orders
    assert opening.signed_filled_quantity == 12
    assert small_reduce.status == OrderStatus.rejected
    assert "below minimum notional" in (small_reduce.status_reason or "")
    assert closing.status == OrderStatus.filled
    assert closing.signed_filled_quantity == -12 and closing.average_fill_price == 50
    # 10000 - 1200 + 600 = 9400.
    assert portfolio.cash == 9400
    instrument = result.state.instrument_by_symbol("AAA")
    assert instrument is not None and instrument.min_notional == 1000


def test_close_before_the_entry_fills_cancels_it(tmp_path: Path) -> None:
    # Hourly bars, 1h cycle at HH:30: the 01:30 entry cannot fill at the 01:00 open, so it is
    # still pending when the 02:30 cycle closes the position.
    frame = ohlc("AAA", [100] * 6, freq="h")
    t = lambda hhmm: pd.Timestamp(f"2024-01-01 {hhmm}", tz="UTC")  # noqa: E731
    script = {t("01:30"): [open_long(value=5000)],
              t("02:30"): lambda ctx: [close()] if ctx.has_position() and ctx.position().quantity == 0 else []}
    result = run(tmp_path, frame, script, cycle="1h", offset=1800)
    portfolio = result.state.portfolio
    assert not portfolio.open_positions and not portfolio.closed_positions
    (failed,) = portfolio.failed_positions
    (entry,) = failed.orders
    assert entry.status == OrderStatus.cancelled and entry.reject_reason is None
    assert "cancelled" in (entry.status_reason or "")
    assert portfolio.cash == 10_000


# ---------------------------------------------------------------------------------------------
# (iv) slippage


def test_slippage_on_buy_and_sell(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 110, 110])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0)], after(1): [close()]}, slippage_bps=10)
    buy, sell = only_position(result).orders
    # Buy at 100 * (1 + 0.001) = 100.1: q = floor(10000 / 100.1) = floor(99.90) = 99;
    # cost 99 * 100.1 = 9909.9 → cash 90.1; slippage 99 * 0.1 = 9.9.
    assert buy.average_fill_price == pytest.approx(100.1)
    assert buy.signed_filled_quantity == 99
    assert buy.slippage == pytest.approx(9.9)
    assert result.state.valuations.cash[1] == pytest.approx(90.1)
    # Sell at 110 * (1 - 0.001) = 109.89: proceeds 99 * 109.89 = 10879.11 → cash 10969.21;
    # slippage 99 * 0.11 = 10.89.
    assert sell.average_fill_price == pytest.approx(109.89)
    assert sell.slippage == pytest.approx(10.89)
    assert result.state.portfolio.cash == pytest.approx(10969.21)
    # realised = 10879.11 - 9909.9 = 969.21.
    assert only_position(result).realised_pnl == pytest.approx(969.21)


def test_slippage_and_fee_together(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100])
    result = run(tmp_path, frame, {after(0): [open_long(value=5000)]}, slippage_bps=50, fee=0.01)
    (buy,) = only_position(result).orders
    # price 100.5; wanted floor(5000 / 100.5) = 49; 49 * 100.5 * 1.01 = 4973.745 fits in cash;
    # fee = 49 * 100.5 * 0.01 = 49.245; cash = 10000 - 4924.5 - 49.245 = 5026.255.
    assert buy.signed_filled_quantity == 49
    assert buy.fees == pytest.approx(49.245)
    assert result.state.portfolio.cash == pytest.approx(5026.255)


# ---------------------------------------------------------------------------------------------
# (v) sells before buys


@pytest.mark.parametrize("fill_timing", ["next_open", "close"])
def test_rotation_sells_first_and_buys_with_the_proceeds(tmp_path: Path, fill_timing: str) -> None:
    frame = pd.concat([ohlc("AAA", [100, 100, 100, 100]), ohlc("BBB", [50, 50, 50, 50])]).sort_index(kind="stable")
    # The buy is listed first; the engine must still sell A before buying B.
    script = {after(0): [open_long("AAA", fraction=1.0)],
              after(1): [open_long("BBB", fraction=1.0), close("AAA")]}
    result = run(tmp_path, frame, script, fill_timing=fill_timing)
    portfolio = result.state.portfolio
    (a,) = portfolio.closed_positions
    (b,) = portfolio.open_positions
    assert result.state.instrument(a.instrument_id).symbol == "AAA"
    assert result.state.instrument(b.instrument_id).symbol == "BBB"
    # A: 100 shares bought at 100 with all 10,000; sold for 10,000; B bought with it: 10000 / 50 = 200.
    assert a.orders[0].signed_filled_quantity == 100
    assert a.orders[1].signed_filled_quantity == -100
    assert b.orders[0].status == OrderStatus.filled
    assert b.quantity == 200
    assert portfolio.cash == 0
    # The sell was planned (and numbered) before the buy, and filled no later.
    assert a.orders[1].id < b.orders[0].id
    assert a.orders[1].filled_at == b.orders[0].filled_at


# ---------------------------------------------------------------------------------------------
# (vi) reduce by fraction / quantity / value, increase by value


def test_reduce_and_increase(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100, 120, 120, 130, 130])
    script = {
        after(0): [open_long(value=5000)],       # bar 1 @100: 50 shares, cash 5000, cost 5000
        after(1): [reduce(fraction=0.25)],       # 12.5 → 12 @100: 38 left, cash 6200
        after(2): [reduce(quantity=8)],          # 8 @100: 30 left, cash 7000, cost 3000
        after(3): [increase(value=1000)],        # bar 4 @120: floor(8.33) = 8, cost 3960, 38 held, cash 6040
        after(4): [reduce(value=1500)],          # 1500 / 120 = 12.5 → 12 @120: 26 left, cash 7480
        after(5): [close()],                     # 26 @130 = 3380: cash 10860
    }
    result = run(tmp_path, frame, script)
    position = only_position(result)
    quantities = [t.signed_filled_quantity for t in position.orders]
    assert quantities == [50, -12, -8, 8, -12, -26]
    assert [t.purpose for t in position.orders] == ["open", "reduce", "reduce", "increase", "reduce", "close"]
    assert all(t.status == OrderStatus.filled for t in position.orders)
    cash = result.state.valuations.cash
    assert cash[1:7] == pytest.approx([5000, 6200, 7000, 6040, 7480, 10860])
    # Realised at the average price: the value-reduce sells 12 of 38 whose cost is 3960:
    # 12 * 120 - 12 * 3960 / 38 = 1440 - 1250.526... = 189.4737; the close 26 * 130 - 26 * 3960 / 38.
    reduce_by_value = position.orders[4]
    assert reduce_by_value.realised_pnl == pytest.approx(1440 - 12 * 3960 / 38)
    assert position.orders[5].realised_pnl == pytest.approx(3380 - 26 * 3960 / 38)
    assert position.realised_pnl == pytest.approx(860)
    assert result.state.portfolio.cash == pytest.approx(10860)


def test_reduce_larger_than_the_position_sells_it_all(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100])
    result = run(tmp_path, frame, {after(0): [open_long(value=1000)], after(1): [reduce(quantity=25)]})
    position = only_position(result)
    assert position in result.state.portfolio.closed_positions
    assert position.orders[1].signed_filled_quantity == -10
    assert result.state.portfolio.cash == 10_000


def test_intents_without_a_position_are_ignored(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100])
    result = run(tmp_path, frame, {after(0): [close(), reduce(fraction=0.5), increase(value=100),
                                              set_triggers(stop_loss=90)]})
    assert list(result.state.portfolio.all_positions()) == []
    assert result.state.portfolio.cash == 10_000


def test_second_open_is_ignored(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100])
    result = run(tmp_path, frame, {after(0): [open_long(value=1000)], after(1): [open_long(value=1000)]})
    position = only_position(result)
    assert len(position.orders) == 1 and position.quantity == 10


# ---------------------------------------------------------------------------------------------
# (vii) set_triggers


def test_set_triggers_modifies_the_position(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, (104, 104, 100, 102), 102, (101, 101, 94, 95)])
    snapshots: list[tuple] = []

    def snap(intents):
        def action(ctx):
            p = ctx.position()
            snapshots.append((p.stop_loss, p.take_profit, p.trailing_stop_pct, p.high_water))
            return intents
        return action

    script = {
        after(1): snap([set_triggers(stop_loss=90, take_profit=150)]),
        after(2): snap([set_triggers(stop_loss=None)]),                  # TP kept
        after(3): snap([set_triggers(trailing_stop_pct=0.05)]),          # high water = last close 102
        after(4): snap([set_triggers(trailing_stop_pct=None, stop_loss=96)]),
    }
    script[after(0)] = [open_long(value=1000)]
    result = run(tmp_path, frame, script)
    assert snapshots == [
        (None, None, None, None),
        (90, 150, None, None),
        (None, 150, None, None),
        (None, 150, 0.05, 102),
    ]
    position = only_position(result)
    # The stop set last (96) fires on bar 5 (low 94): 10 shares at 96.
    assert position in result.state.portfolio.closed_positions
    exit_trade = position.orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.trigger_price == 96
    assert exit_trade.average_fill_price == 96
    assert position.take_profit == 150 and position.trailing_stop_pct is None
    # 10000 - 1000 + 960 = 9960.
    assert result.state.portfolio.cash == 9960


def test_rotation_sells_first_even_when_the_sold_instrument_has_a_gap(tmp_path: Path) -> None:
    a = ohlc("AAA", [100, 100, 100, 100, 100]).drop(index=[bar_open(2)])  # AAA does not trade on day 2
    b = ohlc("BBB", [50, 50, 50, 50, 50])
    frame = pd.concat([a, b]).sort_index(kind="stable")
    script = {after(0): [open_long("AAA", fraction=1.0)],
              after(1): [open_long("BBB", fraction=1.0), close("AAA")]}
    result = run(tmp_path, frame, script)
    portfolio = result.state.portfolio
    (a_position,) = portfolio.closed_positions
    assert a_position.orders[1].filled_at == bar_open(3)  # AAA's next bar after the decision
    (b_position,) = portfolio.open_positions
    # Bought with AAA's 10,000 proceeds: 200 shares of BBB, not before the sale.
    assert b_position.quantity == 200
    bought, sold = b_position.orders[0].filled_at, a_position.orders[1].filled_at
    assert bought is not None and sold is not None and bought >= sold


def test_cash_limited_buy_never_overspends_by_float_noise() -> None:
    # cash = 3 lots * 100 * 1.002 * (1 - 1e-11): a hair short of 3 lots, so only 2 may be bought.
    from tradeexecutor.config import ExecutionConfig as _Config
    from tradeexecutor.state import Instrument
    from tradeexecutor.venue.simulated import SimulatedVenue

    execution = SimulatedVenue(_Config(fee=0.002))
    instrument = Instrument(id=1, symbol="AAA", asset_type="equity", quantity_step=1.0)
    cash = 3 * 100 * 1.002 * (1 - 1e-11)
    fill = execution.buy(instrument, 100.0, value=cash, quantity=None, cash_available=cash)
    assert fill.quantity == 2
    assert fill.quantity * fill.price + fill.fee <= cash


# ---------------------------------------------------------------------------------------------
# the cycle report: what one cycle planned, filled and rejected


def _cycle_reports(tmp_path: Path, frame: pd.DataFrame, script: dict[pd.Timestamp, Any],
                   fill_timing: str) -> dict[pd.Timestamp, CycleReport]:
    """Drive an Engine step by step as the daemon does and keep every cycle's report."""
    path = tmp_path / f"report_{fill_timing}.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    strategy.decide.__globals__["SCRIPT"].update(script)
    market = MarketData.from_long_frame(frame, asset_types={"AAA": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fill_timing=fill_timing))
    engine = Engine(strategy, market, new_state(strategy, config), config=config)
    due = cycle_times(market.timeline_ns, strategy.cycle_duration)
    reports = {}
    for step in range(len(market)):
        report = engine.process_step(step, int(due[step]) or None)
        if report is not None:
            reports[report.cycle_time] = report
    return reports


def test_the_cycle_report_counts_fills_and_rejections_at_the_close(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, 100, 100, 100])
    # Cycle 0: 50 / 100 rounds to zero shares, rejected at once; cycle 1: 10 shares fill at the close.
    reports = _cycle_reports(tmp_path, frame, {after(0): [open_long(value=50)], after(1): [open_long(value=1000)]},
                             "close")
    assert (reports[after(0)].planned, reports[after(0)].executed, reports[after(0)].rejected) == (1, 0, 1)
    assert (reports[after(1)].planned, reports[after(1)].executed, reports[after(1)].rejected) == (1, 1, 0)
    assert (reports[after(2)].decisions, reports[after(2)].executed, reports[after(2)].rejected) == (0, 0, 0)


def test_with_next_open_fills_the_cycle_report_counts_none(tmp_path: Path) -> None:
    """Orders planned for the next open fill at a later step: not within the cycle that planned them."""
    frame = ohlc("AAA", [100, 100, 100, 100])
    reports = _cycle_reports(tmp_path, frame, {after(0): [open_long(value=1000)]}, "next_open")
    assert (reports[after(0)].planned, reports[after(0)].executed, reports[after(0)].rejected) == (1, 0, 0)



# ---------------------------------------------------------------------------------------------
# a fee taken in the base asset (Binance's default: a buy's fee in the asset bought)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sent(id: int, purpose: str) -> Order:
    order = make_order(id, 1, 1, purpose, T0, status="created", quantity=10.0, reference_price=1.25)
    order.transition(OrderStatus.submitting, T0)
    order.transition(OrderStatus.open, T0)
    return order


def _opened() -> tuple[Portfolio, Position]:
    portfolio = Portfolio(cash=10_000.0)
    position = Position(id=1, instrument_id=1, opened_at=T0)
    portfolio.open_positions.append(position)
    return portfolio, position


def test_a_buy_fee_in_the_base_asset_books_the_net_quantity_and_its_value_as_the_fee() -> None:
    portfolio, position = _opened()
    start = portfolio.cash
    buy = _sent(1, "open")
    position.orders.append(buy)
    # Buy 10 EUR at 1.25 with a 0.01 EUR fee: 9.99 EUR held, 12.5 USD paid, the fee worth 0.01 * 1.25 = 0.0125 USD.
    fill = apply_fill(portfolio, position, buy, 10.0, 1.25, 0.01, T0, fee_currency="EUR", base_asset="EUR")
    assert position.quantity == pytest.approx(9.99)
    assert portfolio.cash == start - 12.5
    assert position.cost_basis == pytest.approx(9.99 * 1.25)  # the average entry stays the fill's price
    assert position.fees_paid == pytest.approx(0.0125) and portfolio.fees_paid == pytest.approx(0.0125)
    assert fill.realised_pnl == pytest.approx(-0.0125) and fill.fee == 0.01 and fill.fee_currency == "EUR"
    # Sell the 9.99 at 1.5 with a 0.015 USD fee (the received asset is the quote): the usual arithmetic.
    sell = _sent(2, "close")
    position.orders.append(sell)
    apply_fill(portfolio, position, sell, 9.99, 1.5, 0.015, T0, fee_currency="USD", base_asset="EUR")
    assert position.quantity == 0.0 and position.closed_at == T0
    assert portfolio.cash == pytest.approx(start - 12.5 + 9.99 * 1.5 - 0.015)
    # Realised: 9.99 * (1.5 - 1.25) - 0.015 - 0.0125, which is exactly the cash gained.
    assert position.realised_pnl == pytest.approx(9.99 * 0.25 - 0.015 - 0.0125)
    assert position.realised_pnl == pytest.approx(portfolio.cash - start)
    # The replay, told which fee currencies are base assets, gives the same figures bit for bit.
    again = recompute_from_fills(position, base_assets={"EUR"})
    assert (again.quantity, again.cost_basis, again.realised_pnl, again.fees_paid) == (
        position.quantity, position.cost_basis, position.realised_pnl, position.fees_paid)
    assert recompute_cash(start, portfolio, base_assets={"EUR"}) == portfolio.cash


def test_a_fee_in_a_third_asset_keeps_its_currency_counts_its_value_and_takes_no_cash() -> None:
    portfolio, position = _opened()
    portfolio.fee_asset_balances["BNB"] = 1.0
    start = portfolio.cash
    buy, sell = _sent(1, "open"), _sent(2, "close")
    position.orders += [buy, sell]
    # Buy 10 EUR at 1.25, the fee 0.00005 BNB at 250 USD a BNB: worth 0.0125 USD; 12.5 USD paid, 10 EUR held.
    fill = apply_fill(portfolio, position, buy, 10.0, 1.25, 0.00005, T0, fee_currency="BNB", base_asset=None,
                      fee_price=250.0, fee_price_source="binance ticker BNB/USD last")
    assert (fill.fee, fill.fee_currency, fill.fee_price) == (0.00005, "BNB", 250.0)
    assert position.quantity == 10.0 and portfolio.cash == start - 12.5
    assert position.fees_paid == pytest.approx(0.0125) and portfolio.fees_paid == pytest.approx(0.0125)
    assert fill.realised_pnl == pytest.approx(-0.0125)
    apply_fill(portfolio, position, sell, 10.0, 1.5, 0.00006, T0, fee_currency="BNB", fee_price=250.0)
    assert position.quantity == 0.0 and portfolio.cash == pytest.approx(start - 12.5 + 15.0)
    assert position.realised_pnl == pytest.approx(10 * 0.25 - 0.0125 - 0.015)
    assert portfolio.fee_asset_balances == {"BNB": pytest.approx(1.0 - 0.00011)}
    again = recompute_from_fills(position)
    assert (again.quantity, again.cost_basis, again.realised_pnl, again.fees_paid) == (
        position.quantity, position.cost_basis, position.realised_pnl, position.fees_paid)
    assert recompute_cash(start, portfolio) == portfolio.cash


def test_a_sell_fee_in_the_base_asset_leaves_the_position_on_top_of_the_quantity_sold() -> None:
    portfolio, position = _opened()
    start = portfolio.cash
    buy, sell = _sent(1, "open"), _sent(2, "close")
    position.orders.extend([buy, sell])
    apply_fill(portfolio, position, buy, 10.0, 1.25, 0.0, T0, fee_currency="USD", base_asset="EUR")
    # Sell 9.99 EUR at 1.5 with a 0.01 EUR fee: 10 EUR leave, 14.985 USD arrive, the fee worth 0.015 USD.
    apply_fill(portfolio, position, sell, 9.99, 1.5, 0.01, T0, fee_currency="EUR", base_asset="EUR")
    assert position.quantity == 0.0
    assert portfolio.cash == pytest.approx(start - 12.5 + 14.985)
    assert position.realised_pnl == pytest.approx(portfolio.cash - start)
    assert position.fees_paid == pytest.approx(0.015)


def test_a_fee_in_the_quote_currency_is_unchanged_by_naming_the_base_asset() -> None:
    figures = []
    for base in (None, "EUR"):
        portfolio, position = _opened()
        buy = _sent(1, "open")
        position.orders.append(buy)
        apply_fill(portfolio, position, buy, 10.0, 1.25, 0.0125, T0, fee_currency="USD", base_asset=base)
        figures.append((position.quantity, position.cost_basis, position.fees_paid, portfolio.cash))
    assert figures[0] == figures[1]
    assert figures[0][:3] == (10.0, 12.5, 0.0125)


def test_dust_a_close_leaves_is_written_off_and_a_later_close_that_sells_it_realises_it() -> None:
    from tradeexecutor.engine.accounting import write_off_dust

    # Position 1: bought 9.99 (net of its EUR fee) at 1.25, the close sold the whole lots, 9.9: 0.09 is dust.
    portfolio, first = _opened()
    start = portfolio.cash
    buy, sell = _sent(1, "open"), _sent(2, "close")
    first.orders.extend([buy, sell])
    apply_fill(portfolio, first, buy, 10.0, 1.25, 0.01, T0, fee_currency="EUR", base_asset="EUR")
    apply_fill(portfolio, first, sell, 9.9, 1.5, 0.01485, T0, fee_currency="USD", base_asset="EUR")
    assert first.quantity == pytest.approx(0.09) and first.closed_at is None
    assert write_off_dust(first, T0) == pytest.approx(0.09 * 1.25)
    assert first.dust_quantity == pytest.approx(0.09) and first.quantity == 0.0 and first.cost_basis == 0.0
    assert first.closed_at == T0
    # Realised: exactly the cash it gained (14.85 - 0.01485 - 12.5): the dust's cost is written off, not held.
    assert first.realised_pnl == pytest.approx(portfolio.cash - start)
    assert first.realised_pnl == pytest.approx(2.33515)
    again = recompute_from_fills(first, base_assets={"EUR"})
    assert (again.quantity, again.cost_basis, again.realised_pnl) == (0.0, 0.0, first.realised_pnl)
    # Position 2: 10 held at 2.0; the account's whole lots are 10.09 with the dust, and the close sells them all.
    second = Position(id=2, instrument_id=1, opened_at=T0)
    buy, sell = _sent(3, "open"), _sent(4, "close")
    second.orders.extend([buy, sell])
    apply_fill(portfolio, second, buy, 10.0, 2.0, 0.0, T0, base_asset="EUR")
    cash = portfolio.cash
    pnl = apply_fill(portfolio, second, sell, 10.09, 2.0, 0.0, T0, base_asset="EUR").realised_pnl
    # The dust's proceeds are profit (its cost was written off with position 1); no cost beyond the 20 it held.
    assert pnl == pytest.approx(0.09 * 2.0) and portfolio.cash == pytest.approx(cash + 20.18)
    assert second.quantity == pytest.approx(-0.09) and second.cost_basis == 0.0
    assert write_off_dust(second, T0) == 0.0
    assert second.dust_quantity == pytest.approx(-0.09) and second.quantity == 0.0
    assert first.dust_quantity + second.dust_quantity == pytest.approx(0.0)  # the account holds no EUR now
    again = recompute_from_fills(second, base_assets={"EUR"})
    assert (again.quantity, again.cost_basis, again.realised_pnl) == (0.0, 0.0, second.realised_pnl)
