"""Backtests: drive the engine over history and collect state, trades and a summary."""

from tradeexecutor.backtest.runner import BacktestResult, new_state, run_backtest

__all__ = ["BacktestResult", "new_state", "run_backtest"]
