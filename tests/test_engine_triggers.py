"""Hand-computed protective orders: stop-loss, take-profit, their percentage forms, the trailing
stop, the stop-first rule for bars that touch both, finer trigger candles, and cancellation of
orders pending for a position a trigger closed.

Daily bars from 2024-01-01; the strategy (scripted, written to tmp_path) opens at the cycle after
bar 0, so the entry fills at bar 1's open and bar 1 is the first bar checked for triggers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from scripted import START, after, bar_close, bar_open, ohlc, run
from tradeexecutor.backtest.runner import BacktestResult
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine import triggers
from tradeexecutor.state import OrderStatus, Position
from tradeexecutor.strategy.api import increase, open_long, reduce


def closed_position(result: BacktestResult) -> Position:
    portfolio = result.state.portfolio
    assert not portfolio.open_positions, "expected a trigger to close the position"
    (position,) = portfolio.closed_positions
    return position


def open_at_100(tmp_path: Path, later_bars: list, **open_args) -> BacktestResult:
    """Bar 0 and bar 1 at 100 (bar 1 flat), then ``later_bars``; buy 100 shares at bar 1's open."""
    frame = ohlc("AAA", [100, 100, *later_bars])
    return run(tmp_path, frame, {after(0): [open_long(fraction=1.0, **open_args)]})


# ---------------------------------------------------------------------------------------------
# stop-loss


def test_stop_loss_hit_intrabar_fills_at_the_stop(tmp_path: Path) -> None:
    # Bar 2 opens 98 above the stop 95 and trades down to 94: sell 100 at 95.
    result = open_at_100(tmp_path, [(98, 99, 94, 96), 96], stop_loss=95)
    position = closed_position(result)
    entry, exit_trade = position.orders
    assert entry.signed_filled_quantity == 100
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.trigger_price == 95
    assert exit_trade.average_fill_price == 95
    assert exit_trade.signed_filled_quantity == -100
    assert exit_trade.purpose == "close"
    assert exit_trade.status == OrderStatus.filled
    assert exit_trade.filled_at == bar_close(2)  # intrabar: stamped at the bar's close
    assert position.closed_at == bar_close(2)
    # 100 * 95 = 9500; loss 500.
    assert result.state.portfolio.cash == 9500
    assert position.realised_pnl == -500


def test_stop_loss_gapped_through_fills_at_the_open(tmp_path: Path) -> None:
    # Bar 2 opens at 93, below the stop 95: the stop cannot be had; sell at the open 93.
    result = open_at_100(tmp_path, [(93, 96, 90, 95), 95], stop_loss=95)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.trigger_price == 95
    assert exit_trade.average_fill_price == 93
    assert exit_trade.filled_at == bar_open(2)
    assert result.state.portfolio.cash == 9300


def test_stop_not_touched_keeps_the_position(tmp_path: Path) -> None:
    result = open_at_100(tmp_path, [(98, 99, 95.01, 96), 96], stop_loss=95)
    (position,) = result.state.portfolio.open_positions
    assert position.quantity == 100 and len(position.orders) == 1


def test_stop_loss_pays_slippage(tmp_path: Path) -> None:
    # 10 bps: entry at 100.1 → floor(10000 / 100.1) = 99 shares; the stop sells at 95 * 0.999 = 94.905.
    frame = ohlc("AAA", [100, 100, (98, 99, 94, 96)])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0, stop_loss=95)]}, slippage_bps=10)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger_price == 95
    assert exit_trade.average_fill_price == pytest.approx(94.905)
    assert exit_trade.signed_filled_quantity == -99


# ---------------------------------------------------------------------------------------------
# take-profit


def test_take_profit_hit_intrabar_fills_at_the_level(tmp_path: Path) -> None:
    result = open_at_100(tmp_path, [(105, 112, 104, 108), 108], take_profit=110)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "take_profit"
    assert exit_trade.trigger_price == 110
    assert exit_trade.average_fill_price == 110
    assert exit_trade.filled_at == bar_close(2)
    assert result.state.portfolio.cash == 11_000


def test_take_profit_gapped_up_fills_at_the_open(tmp_path: Path) -> None:
    result = open_at_100(tmp_path, [(115, 118, 113, 116), 116], take_profit=110)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "take_profit"
    assert exit_trade.trigger_price == 110
    assert exit_trade.average_fill_price == 115
    assert exit_trade.filled_at == bar_open(2)
    assert result.state.portfolio.cash == 11_500


def test_a_bar_opening_beyond_the_take_profit_takes_profit_at_the_open_even_if_it_later_trades_through_the_stop(
        tmp_path: Path) -> None:
    # Bar 2 opens at 112, above the take-profit 110, then falls to 90, through the stop 95. The open is
    # the one price known to come first: take profit at the open 112 (docs/writing-a-strategy.md, rule 2).
    result = open_at_100(tmp_path, [(112, 113, 90, 91), 91], stop_loss=95, take_profit=110)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "take_profit"
    assert exit_trade.trigger_price == 110 and exit_trade.average_fill_price == 112
    assert exit_trade.filled_at == bar_open(2)
    assert result.state.portfolio.cash == 11_200


def test_a_bar_opening_through_the_stop_stops_out_at_the_open_even_if_it_later_reaches_the_take_profit(
        tmp_path: Path) -> None:
    # The mirror case: bar 2 opens at 93, below the stop 95, then rallies to 115: stopped out at the open 93.
    result = open_at_100(tmp_path, [(93, 115, 92, 114), 114], stop_loss=95, take_profit=110)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.average_fill_price == 93 and exit_trade.filled_at == bar_open(2)
    assert result.state.portfolio.cash == 9_300


def test_bar_touching_both_takes_the_stop(tmp_path: Path) -> None:
    # Bar 2 ranges 94..112, through both the stop 95 and the take-profit 110: the stop is assumed first.
    result = open_at_100(tmp_path, [(100, 112, 94, 111), 111], stop_loss=95, take_profit=110)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.average_fill_price == 95
    assert result.state.portfolio.cash == 9500


# ---------------------------------------------------------------------------------------------
# percentages resolved from the entry fill


def test_pct_triggers_resolve_from_the_entry_fill_price(tmp_path: Path) -> None:
    # 10 bps slippage: entry fills at 100.1 (not the 100 reference), so
    # stop = 100.1 * 0.95 = 95.095 and take-profit = 100.1 * 1.10 = 110.11.
    frame = ohlc("AAA", [100, 100, (100, 110.1, 95.1, 100), (100, 111, 99, 110)])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0, stop_loss_pct=0.05, take_profit_pct=0.10)]},
                 slippage_bps=10)
    position = closed_position(result)
    assert position.stop_loss == pytest.approx(95.095)
    assert position.take_profit == pytest.approx(110.11)
    # Bar 2 (95.1..110.1) touches neither (a take-profit computed from the 100 reference, 110,
    # would fire there); bar 3 reaches 111 >= 110.11: the take-profit fills at its level with no
    # slippage.
    exit_trade = position.orders[-1]
    assert exit_trade.trigger == "take_profit"
    assert exit_trade.filled_at == bar_close(3)
    assert exit_trade.average_fill_price == pytest.approx(110.11)
    # 99 shares: cash 10000 - 99 * 100.1 + 99 * 110.11 = 10990.99.
    assert result.state.portfolio.cash == pytest.approx(10990.99)


def test_stop_loss_pct_fires_at_its_resolved_level(tmp_path: Path) -> None:
    frame = ohlc("AAA", [100, (102, 103, 101, 102), (100, 100, 96.8, 97)])
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0, stop_loss_pct=0.05)]})
    # Entry at bar 1's open 102: stop = 102 * 0.95 = 96.9; bar 2's low 96.8 hits it.
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.trigger_price == pytest.approx(96.9)
    assert exit_trade.average_fill_price == pytest.approx(96.9)


# ---------------------------------------------------------------------------------------------
# trailing stop


def test_trailing_stop_follows_the_highest_high(tmp_path: Path) -> None:
    rows = [
        100,
        (100, 105, 99, 104),   # entry bar: high water 100 → stop 90 untouched; high water → 105
        (110, 120, 109, 118),  # stop 94.5 untouched; high water → 120
        (119, 130, 116, 125),  # stop from the high BEFORE this bar: 108, low 116 safe; then → 130
        (124, 125, 115, 116),  # stop 130 * 0.9 = 117; low 115 hits it: sell at 117
        116,
    ]
    frame = ohlc("AAA", rows)
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0, trailing_stop_pct=0.1)]})
    position = closed_position(result)
    exit_trade = position.orders[-1]
    assert exit_trade.trigger == "trailing_stop"
    assert exit_trade.trigger_price == pytest.approx(117)
    assert exit_trade.average_fill_price == pytest.approx(117)
    assert exit_trade.filled_at == bar_close(4)
    assert position.high_water == 130
    # 100 shares: 10000 - 10000 + 11700.
    assert result.state.portfolio.cash == pytest.approx(11_700)


def test_trailing_stop_gapped_through_fills_at_the_open(tmp_path: Path) -> None:
    rows = [100, (100, 120, 100, 119), (105, 106, 104, 105), 105]
    frame = ohlc("AAA", rows)
    result = run(tmp_path, frame, {after(0): [open_long(fraction=1.0, trailing_stop_pct=0.1)]})
    exit_trade = closed_position(result).orders[-1]
    # High water 120 → stop 108; bar 2 opens at 105 below it.
    assert exit_trade.trigger == "trailing_stop"
    assert exit_trade.trigger_price == pytest.approx(108)
    assert exit_trade.average_fill_price == 105
    assert exit_trade.filled_at == bar_open(2)


def test_higher_of_stop_loss_and_trailing_stop_applies() -> None:
    position = Position(id=1, instrument_id=1, opened_at=START.to_pydatetime(), quantity=1,
                        stop_loss=100.0, trailing_stop_pct=0.1, high_water=120.0)
    # Trailing 108 is above the fixed 100.
    assert triggers.stop_level(position) == (pytest.approx(108.0), "trailing_stop")
    position.stop_loss = 110.0
    assert triggers.stop_level(position) == (110.0, "stop_loss")
    assert triggers.check_bar(position, 112.0, 113.0, 109.0) == ("stop_loss", 110.0, 110.0)
    assert triggers.check_bar(position, 112.0, 113.0, 111.0) is None


# ---------------------------------------------------------------------------------------------
# finer trigger candles


def _hourly_day_with_spikes(tp_hour: int, stop_hour: int, stop_open: float | None = None) -> pd.DataFrame:
    """Three days of hourly bars at 100; on day 1 a spike to 112 at ``tp_hour`` and a drop to 94
    at ``stop_hour`` (opening at ``stop_open`` when given)."""
    rows: list = [100.0] * 72
    rows[24 + tp_hour] = (100, 112, 100, 100)
    rows[24 + stop_hour] = (100, 100, 94, 96) if stop_open is None else (stop_open, stop_open, 92, 94)
    return ohlc("AAA", rows, freq="h")


def _daily_and_hourly(hourly: pd.DataFrame) -> tuple[MarketData, MarketData]:
    daily = MarketData.from_long_frame(hourly, frequency=timedelta(days=1), asset_types={"AAA": "equity"})
    fine = MarketData.from_long_frame(hourly, asset_types={"AAA": "equity"})
    assert len(daily) == 3 and len(fine) == 72
    return daily, fine


def test_finer_candles_decide_which_trigger_came_first(tmp_path: Path) -> None:
    # Day 1's daily bar ranges 94..112. Alone it says "stop first"; the hourly bars show the
    # take-profit spike at 05:00-06:00, long before the drop at 15:00-16:00.
    hourly = _hourly_day_with_spikes(tp_hour=5, stop_hour=15)
    daily, fine = _daily_and_hourly(hourly)
    script = {after(0): [open_long(fraction=1.0, stop_loss=95, take_profit=110)]}

    coarse = run(tmp_path, hourly, script, market=daily)
    exit_trade = closed_position(coarse).orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.filled_at == bar_close(1)

    detailed = run(tmp_path, hourly, script, market=daily, trigger_market=fine)
    exit_trade = closed_position(detailed).orders[-1]
    assert exit_trade.trigger == "take_profit"
    assert exit_trade.average_fill_price == 110
    assert exit_trade.filled_at == pd.Timestamp("2024-01-02 06:00", tz="UTC")  # the hourly bar's close
    assert detailed.state.portfolio.cash == 11_000


def test_finer_candles_stop_fires_at_the_fine_bars_time(tmp_path: Path) -> None:
    hourly = _hourly_day_with_spikes(tp_hour=20, stop_hour=9)
    daily, fine = _daily_and_hourly(hourly)
    script = {after(0): [open_long(fraction=1.0, stop_loss=95)]}
    result = run(tmp_path, hourly, script, market=daily, trigger_market=fine)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.trigger == "stop_loss"
    assert exit_trade.average_fill_price == 95
    assert exit_trade.filled_at == pd.Timestamp("2024-01-02 10:00", tz="UTC")


def test_finer_candles_gap_fills_at_the_fine_bars_open(tmp_path: Path) -> None:
    hourly = _hourly_day_with_spikes(tp_hour=20, stop_hour=9, stop_open=93)
    daily, fine = _daily_and_hourly(hourly)
    script = {after(0): [open_long(fraction=1.0, stop_loss=95)]}
    result = run(tmp_path, hourly, script, market=daily, trigger_market=fine)
    exit_trade = closed_position(result).orders[-1]
    assert exit_trade.average_fill_price == 93
    assert exit_trade.filled_at == pd.Timestamp("2024-01-02 09:00", tz="UTC")


# ---------------------------------------------------------------------------------------------
# pending orders of a position a trigger closed


@pytest.mark.parametrize("intent", [increase(value=1000), reduce(fraction=0.5)], ids=["increase", "reduce"])
def test_pending_order_cancelled_when_a_trigger_closes_the_position(tmp_path: Path, intent) -> None:
    # Hourly bars, 1h cycle at HH:30. The 05:30 order cannot fill at the 05:00 open (before the
    # decision), so it is pending while bar 05:00-06:00 drops to 90 and hits the stop at 95.
    rows: list = [100.0] * 10
    rows[5] = (100, 100, 90, 92)
    frame = ohlc("AAA", rows, freq="h")
    t = lambda hhmm: pd.Timestamp(f"2024-01-01 {hhmm}", tz="UTC")  # noqa: E731
    script = {t("01:30"): [open_long(value=5000, stop_loss=95)], t("05:30"): [intent]}
    result = run(tmp_path, frame, script, cycle="1h", offset=1800)
    position = closed_position(result)
    entry, pending, exit_trade = sorted(position.orders, key=lambda trade: trade.id)
    # The entry decided at 01:30 filled at the 02:00 open: 50 shares.
    assert entry.filled_at == t("02:00") and entry.signed_filled_quantity == 50
    assert exit_trade.trigger == "stop_loss" and exit_trade.average_fill_price == 95
    assert exit_trade.filled_at == t("06:00")
    assert pending.status == OrderStatus.cancelled
    assert pending.status_reason is not None
    assert "cancelled" in pending.status_reason and "stop_loss" in pending.status_reason
    assert pending.signed_filled_quantity == 0
    # 10000 - 50 * 100 + 50 * 95 = 9750; the cancelled order moved no money.
    assert result.state.portfolio.cash == 9750


def test_set_triggers_in_the_same_cycle_as_open_long_applies_to_the_new_position(tmp_path: Path) -> None:
    # set_triggers() is ordered after open_long() within a cycle, so the stop reaches the new position.
    # Entry at bar 1's open (100) with all 10,000 cash: 100 shares; bar 2 trades down to 94 through 95.
    from tradeexecutor.strategy.api import set_triggers

    frame = ohlc("AAA", [100, 100, (98, 99, 94, 96), 96])
    result = run(tmp_path, frame, {after(0): [set_triggers(stop_loss=95), open_long(value=10_000)]})
    position = closed_position(result)
    assert position.stop_loss == 95
    assert position.orders[-1].trigger == "stop_loss"
    assert position.orders[-1].average_fill_price == 95
