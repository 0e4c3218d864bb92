"""A fast executor stand-in for kill -9 tests: jobs of real fills committed to a real ledger, forever.

``python tests/ledger_writer.py LEDGER`` loads the ledger (or starts a new state), then runs
cycle after cycle: every cycle opens, adds to or closes a position with fills whose money moves
exactly as the engine's accounting moves it, journals ``order_filled`` per fill and
``cycle_completed`` per cycle, and commits the cycle in one ``Ledger.save``. It prints ``ready``
once it has loaded, and runs until it is killed.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from tradeexecutor.engine.accounting import apply_fill, retire_position
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import Order, OrderPurpose, OrderSide, OrderStatus, Position, State, client_order_id

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CASH = 1_000_000.0


def fill(state: State, position: Position, quantity: float, price: float, at: datetime, purpose: str) -> Order:
    """A market order of ``quantity`` (unsigned), sent and filled at ``price`` with a fee by engine.accounting."""
    portfolio = state.portfolio
    kind = OrderPurpose(purpose)
    fee = round(quantity * price * 0.001, 6)
    order = Order(id=portfolio.next_order_id, client_order_id=client_order_id("killtest", at, 0, kind),
                  position_id=position.id, instrument_id=position.instrument_id, purpose=kind,
                  side=OrderSide.buy if kind in (OrderPurpose.open, OrderPurpose.increase) else OrderSide.sell,
                  created_at=at, quantity=quantity, reference_price=price)
    portfolio.next_order_id += 1
    position.orders.append(order)
    order.transition(OrderStatus.submitting, at)
    order.transition(OrderStatus.open, at)
    apply_fill(portfolio, position, order, quantity, price, fee, at)
    return order


def cycle(state: State, ledger: Ledger, i: int) -> None:
    """Cycle ``i``: one fill, journaled, then the cycle's completion; committed by the caller."""
    portfolio = state.portfolio
    at = T0 + timedelta(minutes=i)
    price = 100.0 + (i % 17) * 0.25
    if not portfolio.open_positions:
        position = Position(id=portfolio.next_position_id, instrument_id=1, opened_at=at)
        portfolio.next_position_id += 1
        portfolio.open_positions.append(position)
        order = fill(state, position, 10.0, price, at, "open")
    else:
        position = portfolio.open_positions[0]
        if i % 3:
            order = fill(state, position, 5.0, price, at, "increase")
        else:
            order = fill(state, position, position.quantity, price, at, "close")
            retire_position(portfolio, position)
    for open_position in portfolio.open_positions:
        open_position.last_price = price
        open_position.last_valued_at = at
    ledger.append("order_filled", {"order_id": order.id, "quantity": order.filled_quantity, "cycle": i}, at=at)
    state.valuations.append(int(at.timestamp() * 1000), portfolio.equity(), portfolio.cash, 0.0)
    state.last_completed_cycle = at
    state.cycles_completed += 1
    ledger.append("cycle_completed", {"cycle": i}, at=at)


def main(path: str) -> None:
    ledger = Ledger(path)
    state = ledger.load()
    if state is None:
        state = State(name="kill test", created_at=T0, initial_cash=CASH)
        state.portfolio.cash = CASH
        state.add_instrument("GOOG", "equity", 1.0)
        ledger.append("started", {"new": True}, at=T0)
        ledger.save(state)
    print("ready", flush=True)
    while True:
        cycle(state, ledger, state.cycles_completed)
        ledger.save(state)


if __name__ == "__main__":
    main(sys.argv[1])
