"""Build states of a chosen size from a real backtest's history, for tests and benchmarks of large states."""

from __future__ import annotations

import copy

from tradeexecutor.state import State


def resized(base: State, positions: int) -> State:
    """A copy of ``base`` holding ``positions`` positions: its open ones plus closed ones cycled from its history."""
    state = copy.deepcopy(base)
    portfolio = state.portfolio
    template = base.portfolio.closed_positions
    closed = []
    trade_id = 1
    for i in range(positions - len(portfolio.open_positions)):
        position = copy.deepcopy(template[i % len(template)])
        position.id = i + 1
        for trade in position.trades:
            trade.id, trade.position_id = trade_id, position.id
            trade_id += 1
        closed.append(position)
    for j, position in enumerate(portfolio.open_positions):
        position.id = len(closed) + j + 1
        for trade in position.trades:
            trade.id, trade.position_id = trade_id, position.id
            trade_id += 1
    portfolio.closed_positions = closed
    portfolio.failed_positions = []
    portfolio.next_position_id = positions + 1
    portfolio.next_trade_id = trade_id
    return state
