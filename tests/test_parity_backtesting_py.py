"""Parity with backtesting.py: the same SMA crossover on the same GOOG candles must give the same trades.

backtesting.py (kernc/backtesting.py) is an engine nobody here wrote, so agreeing with it to the
cent is an independent check of our fills, sizing, fees and valuation. Both engines get the
identical OHLCV numbers and the same rules:

- decisions at a bar's close, market orders fill at the next bar's open
  (ours: fill timing ``next_open``; backtesting.py: ``trade_on_close=False``);
- 0.2 % fee on every fill (ours: ``fee=0.002``; backtesting.py: ``commission=0.002``);
- whole shares, all-in by cash: q = floor(cash / (open * (1 + fee))). Ours: ``open_long(fraction=1.0)``.
  backtesting.py sizes a fractional order as
  ``int((margin_available * leverage * size) // (price + commission(size, price) / size))``
  (``_Broker._process_orders``); with no open trade ``margin_available`` is the cash, so
  ``size=0.999999999`` gives the same floor unless cash / unit cost lies within ~1e-9 relative of an
  integer. The test checks every entry size against the exact rational floor as well, so such a
  near-tie would show up as a failure, not pass silently;
- exit by closing the whole position (``close()`` / ``self.position.close()``);
- crossover: fast[-2] < slow[-2] and fast[-1] > slow[-1] (backtesting.lib.crossover), both
  averages ``close.rolling(n).mean()`` of the same close column.

A position still open at the end: backtesting.py's ``finalize_trades=True`` closes it with an
extra order that fills at the *last bar's open* and pays the exit fee (the "re-run broker one last
time" step of ``Backtest.run``), which is not "value at the last close". So the main comparison runs
backtesting.py with ``finalize_trades=False``: its final equity is cash plus the open trade marked at
the last close, exactly what our last valuation is, and its open trade is compared with our open
position. A second test checks the ``finalize_trades=True`` numbers against ours closed by hand the
way backtesting.py closes them.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest, Strategy
from backtesting.lib import crossover

from tradeexecutor.backtest.runner import BacktestResult, run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data import load_bundled
from tradeexecutor.data.market import MarketData
from tradeexecutor.state import OrderStatus
from tradeexecutor.strategy.loader import load_strategy

STRATEGY = Path(__file__).parent / "strategies" / "sma_parity.py"
CASH = 10_000.0
FEE = 0.002
#: backtesting.py order size meaning "all available cash" (a fraction must be < 1).
ALL_IN = 0.999999999
#: (fast, slow) pairs; each gives 25+ round trips on GOOG 2004-2013.
PAIRS = [(10, 30), (5, 20), (15, 40)]
CENT = 0.005
PRICE_TOL = 1e-9


@pytest.fixture(scope="module")
def goog() -> pd.DataFrame:
    """GOOG daily candles, the one input frame both engines read."""
    frame = load_bundled("stocks-daily")
    return frame[frame["symbol"] == "GOOG"]


def run_ours(goog: pd.DataFrame, fast: int, slow: int) -> BacktestResult:
    strategy = load_strategy(STRATEGY, {"fast": fast, "slow": slow})
    market = MarketData.from_long_frame(goog, asset_types={"GOOG": "equity"})
    config = EngineConfig(execution=ExecutionConfig(fee=FEE, fill_timing="next_open"), initial_cash=CASH)
    return run_backtest(strategy, market, config)


def run_theirs(goog: pd.DataFrame, fast: int, slow: int, *, finalize: bool) -> pd.Series:
    ohlcv = pd.DataFrame(
        {
            "Open": goog["open"].to_numpy(),
            "High": goog["high"].to_numpy(),
            "Low": goog["low"].to_numpy(),
            "Close": goog["close"].to_numpy(),
            "Volume": goog["volume"].to_numpy(),
        },
        index=goog.index.tz_localize(None),
    )

    class SmaCross(Strategy):
        def init(self):
            close = pd.Series(np.asarray(self.data.Close, dtype=np.float64))
            self.fast = self.I(lambda: close.rolling(fast).mean().to_numpy(), name="fast")
            self.slow = self.I(lambda: close.rolling(slow).mean().to_numpy(), name="slow")

        def next(self):
            if not self.position:
                if crossover(self.fast, self.slow):
                    self.buy(size=ALL_IN)
            elif crossover(self.slow, self.fast):
                self.position.close()

    bt = Backtest(ohlcv, SmaCross, cash=CASH, commission=FEE, trade_on_close=False, hedging=False,
                  exclusive_orders=False, finalize_trades=finalize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bt.run()


def our_round_trips(result: BacktestResult) -> tuple[list[dict], dict | None]:
    """Closed positions as trade rows, and the open position (if any) as one without an exit."""
    portfolio = result.state.portfolio
    closed = []
    for position in sorted(portfolio.closed_positions, key=lambda p: p.id):
        trades = position.filled_orders()
        assert len(trades) == 2, f"position {position.id} has {len(trades)} fills, expected entry and exit"
        entry, exit_ = trades
        closed.append({
            "size": entry.signed_filled_quantity,
            "entry_time": pd.Timestamp(entry.filled_at).tz_convert(None),
            "exit_time": pd.Timestamp(exit_.filled_at).tz_convert(None),
            "entry_price": entry.average_fill_price,
            "exit_price": exit_.average_fill_price,
            "pnl": position.realised_pnl,
            "fees": position.fees_paid,
            "exit_quantity": exit_.signed_filled_quantity,
        })
    still_open = None
    held = [p for p in portfolio.open_positions if p.quantity > 0]
    assert len(held) <= 1
    assert not portfolio.failed_positions, "no order should be rejected in this run"
    if held:
        position = held[0]
        (entry,) = position.filled_orders()
        still_open = {
            "size": entry.signed_filled_quantity,
            "entry_time": pd.Timestamp(entry.filled_at).tz_convert(None),
            "entry_price": entry.average_fill_price,
            "fees": position.fees_paid,
        }
    return closed, still_open


def exact_all_in_size(cash: float, price: float) -> int:
    """floor(cash / (price * (1 + fee))) in exact rational arithmetic of the float inputs."""
    return math.floor(Fraction(cash) / (Fraction(price) * (1 + Fraction(FEE))))


@pytest.mark.parametrize("fast,slow", PAIRS)
def test_trades_and_equity_match_backtesting_py(goog: pd.DataFrame, fast: int, slow: int) -> None:
    ours = run_ours(goog, fast, slow)
    theirs = run_theirs(goog, fast, slow, finalize=False)
    closed, still_open = our_round_trips(ours)
    their_trades = theirs["_trades"]
    their_open = list(theirs["_strategy"].trades)

    # Same number of round trips, and a meaningful number of them.
    assert len(closed) == len(their_trades) >= 20
    assert (still_open is None) == (not their_open)

    cash = CASH
    for k, (mine, row) in enumerate(zip(closed, their_trades.itertuples(index=False))):
        where = f"trade {k} (fast={fast}, slow={slow}, entry {row.EntryTime.date()})"
        assert mine["entry_time"] == row.EntryTime, where
        assert mine["exit_time"] == row.ExitTime, where
        assert mine["size"] == row.Size, where
        assert mine["exit_quantity"] == -row.Size, where
        assert abs(mine["entry_price"] - row.EntryPrice) <= PRICE_TOL, where
        assert abs(mine["exit_price"] - row.ExitPrice) <= PRICE_TOL, where
        assert abs(mine["pnl"] - row.PnL) < CENT, where
        assert abs(mine["fees"] - row.Commission) < CENT, where
        # Both sized the entry as the exact all-in floor of the cash before it.
        assert row.Size == exact_all_in_size(cash, row.EntryPrice), where
        cash += row.PnL

    if still_open is not None:
        (trade,) = their_open
        assert still_open["entry_time"] == trade.entry_time
        assert still_open["size"] == trade.size == exact_all_in_size(cash, trade.entry_price)
        assert abs(still_open["entry_price"] - trade.entry_price) <= PRICE_TOL

    # Final equity: cash plus any open position at the last close.
    our_final = ours.state.valuations.equity[-1]
    assert abs(our_final - theirs["Equity Final [$]"]) < CENT
    last_close = float(goog["close"].iloc[-1])
    if still_open is not None:
        assert abs(our_final - (ours.state.portfolio.cash + still_open["size"] * last_close)) < 1e-6

    # The whole equity curve agrees bar by bar, not only at the end.
    their_curve = theirs["_equity_curve"]["Equity"].to_numpy()
    our_curve = np.asarray(ours.state.valuations.equity)
    assert len(our_curve) == len(their_curve) == len(goog)
    assert np.max(np.abs(our_curve - their_curve)) < CENT


@pytest.mark.parametrize("fast,slow", PAIRS)
def test_finalize_trades_closes_at_last_open(goog: pd.DataFrame, fast: int, slow: int) -> None:
    """backtesting.py's finalize_trades=True exits an open trade at the last bar's open, less the fee."""
    ours = run_ours(goog, fast, slow)
    theirs = run_theirs(goog, fast, slow, finalize=True)
    closed, still_open = our_round_trips(ours)
    their_trades = theirs["_trades"]
    if still_open is None:
        assert len(their_trades) == len(closed)
        assert abs(ours.state.valuations.equity[-1] - theirs["Equity Final [$]"]) < CENT
        return
    assert len(their_trades) == len(closed) + 1
    last = their_trades.iloc[-1]
    last_open = float(goog["open"].iloc[-1])
    assert last.EntryTime == still_open["entry_time"] and last.Size == still_open["size"]
    assert last.ExitTime == goog.index[-1].tz_convert(None)
    assert abs(last.ExitPrice - last_open) <= PRICE_TOL
    proceeds = still_open["size"] * last_open
    expected_final = ours.state.portfolio.cash + proceeds * (1 - FEE)
    assert abs(expected_final - theirs["Equity Final [$]"]) < CENT
    expected_pnl = proceeds - still_open["size"] * still_open["entry_price"] - still_open["fees"] - proceeds * FEE
    assert abs(expected_pnl - last.PnL) < CENT


def test_every_entry_fill_is_the_exact_all_in_floor(goog: pd.DataFrame) -> None:
    """Our sizing alone, against the rule written in rational arithmetic: no near-tie was rounded up."""
    ours = run_ours(goog, 10, 30)
    portfolio = ours.state.portfolio
    cash = CASH
    trades = sorted(
        (t for p in portfolio.closed_positions + portfolio.open_positions for t in p.orders
         if t.status == OrderStatus.filled),
        key=lambda t: t.id,
    )
    assert len(trades) >= 40
    for trade in trades:
        price = trade.average_fill_price
        assert price is not None
        notional = abs(trade.signed_filled_quantity) * price
        if trade.signed_filled_quantity > 0:
            assert trade.signed_filled_quantity == exact_all_in_size(cash, price)
            cash -= notional + trade.fees
            assert cash >= 0
        else:
            cash += notional - trade.fees
        assert trade.fees == pytest.approx(notional * FEE, rel=1e-12)
    assert cash == pytest.approx(portfolio.cash, abs=1e-6)


def _buy_once_theirs(goog: pd.DataFrame, size: float) -> int:
    """backtesting.py buys ``size`` on its first bar and holds; the units it bought."""

    class BuyOnce(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            if not self.position and not self.orders:
                self.buy(size=size)

    ohlcv = goog.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]].iloc[:10]
    ohlcv.index = ohlcv.index.tz_convert(None)
    bt = Backtest(ohlcv, BuyOnce, cash=CASH, commission=FEE, trade_on_close=False, finalize_trades=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    (trade,) = stats["_strategy"].trades
    return int(trade.size)


def _buy_once_ours(goog: pd.DataFrame, fraction: float, tmp_path: Path) -> float:
    """We buy ``fraction`` of equity at the cycle after bar 1 (backtesting.py's first next()), fill at bar 2's open."""
    from scripted import run

    frame = goog.iloc[:10].copy()
    frame.index = pd.DatetimeIndex(frame.index)
    cycle = frame.index[1] + pd.Timedelta(days=1)  # the close of bar 1: its orders fill at bar 2's open
    from tradeexecutor.strategy.api import open_long

    result = run(tmp_path, frame, {cycle: [open_long(fraction=fraction)]}, fee=FEE, cash=CASH)
    (position,) = result.state.portfolio.open_positions
    return position.quantity


def test_sizing_by_fraction_puts_the_fee_on_top_where_backtesting_py_puts_it_inside(
        goog: pd.DataFrame, tmp_path: Path) -> None:
    """open_long(fraction=f) buys f of equity worth of shares and pays the fee on top; backtesting.py's
    buy(size=f) spends f of the cash on shares *and* fee. fraction=f / (1 + fee) buys what buy(size=f) buys;
    at f = 1 both are all the cash, fee included (docs/writing-a-strategy.md, "Sizing")."""
    price = float(goog["open"].iloc[2])
    fraction = 45.05 * price / CASH  # worth 45.05 shares before the fee: 45 shares, or 44.96 with it inside
    theirs = _buy_once_theirs(goog, fraction)
    assert theirs == math.floor(Fraction(CASH * fraction) / (Fraction(price) * (1 + Fraction(FEE)))) == 44
    ours = _buy_once_ours(goog, fraction, tmp_path)
    assert ours == math.floor(CASH * fraction / price) == 45
    assert _buy_once_ours(goog, fraction / (1 + FEE), tmp_path) == theirs
    assert _buy_once_ours(goog, 1.0, tmp_path) == _buy_once_theirs(goog, ALL_IN) == exact_all_in_size(CASH, price)
