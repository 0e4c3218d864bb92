"""Apply fills to positions and cash: the only place money moves.

A position's running figures (quantity, cost basis, realised P&L, fees) change only here, one
fill at a time, and :func:`recompute_from_fills` replays the same arithmetic over the stored
fills, so the figures can always be checked against the fills they came from (bit for bit: the
same float operations in the same order).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from tradeexecutor.state import Fill, Order, OrderSide, OrderStatus, Portfolio, Position, RejectReason, fee_value

#: Quantities below this are treated as zero when deciding a position is closed.
_DUST = 1e-12
#: Enum members bound once (a member looked up on its class is a Python-level __getattr__ call).
_FILLED, _PARTIALLY_FILLED, _REJECTED, _CANCELLED = (
    OrderStatus.filled, OrderStatus.partially_filled, OrderStatus.rejected, OrderStatus.cancelled)
_BUY = OrderSide.buy
_new = object.__new__
_init_fill = Fill.__init__


@dataclass(frozen=True, slots=True)
class Holding:
    """A position's figures as its fills give them."""

    quantity: float
    cost_basis: float
    realised_pnl: float
    fees_paid: float


def reject(order: Order, reason: RejectReason, text: str, at: datetime) -> None:
    """Mark an order rejected with its reason; the position and cash are untouched."""
    order.reject_reason = reason
    order.transition(_REJECTED, at, text)


def cancel(order: Order, text: str, at: datetime) -> None:
    """Cancel an order that has not filled completely; fills it already had stand."""
    order.transition(_CANCELLED, at, text)


def apply_fill(portfolio: Portfolio, position: Position, order: Order, quantity: float, price: float,
               fee: float, at: datetime, *, slippage: float = 0.0, fee_currency: str = "USD",
               venue_trade_id: str | None = None, complete: bool = True, base_asset: str | None = None,
               fee_price: float | None = None, fee_price_source: str | None = None) -> Fill:
    """Record a fill of ``order`` and move the money: a buy pays value and fee, a sell realises P&L at the
    average entry price. ``complete`` says whether the order is now filled (else partially filled).

    A fee in ``base_asset`` (an exchange that takes a buy's fee in the asset bought, Binance's
    default) is not money: the position grows by the net quantity, cash moves by the value only, and
    the fee's value at the fill's price counts as the position's fee (in quote, like every other fee).

    A fee in a third asset (``fee_price`` given: Binance's BNB) is not money either: the fill keeps the
    fee's currency and amount, cash and the quantity move by the trade alone, and the fee's value
    ``fee * fee_price`` (the venue's price of the fee currency, ``fee_price_source`` says which) counts
    as the position's fee and against its P&L.

    Returns the Fill; the position is closed (``closed_at`` set) when a sell brought it to zero.
    """
    fill = _new(Fill)  # Fill(...) without the class call's keyword dict (see engine.engine._new)
    in_base = base_asset is not None and fee_currency == base_asset
    _init_fill(fill, id=portfolio.next_fill_id, order_id=order.id, quantity=quantity, price=price, at=at, fee=fee,
               fee_currency=fee_currency, venue_trade_id=venue_trade_id, slippage=slippage, fee_price=fee_price,
               fee_price_source=fee_price_source, fee_in_base=in_base)
    portfolio.next_fill_id += 1
    order.fills.append(fill)
    order.transition(_FILLED if complete else _PARTIALLY_FILLED, at)
    third = fee_price is not None
    money_fee = fee_value(fee, price, fee_price, False)  # a third asset's fee in quote (a base one: _buy, _sell)
    portfolio.fees_paid += fee_value(fee, price, fee_price, in_base)
    cash_fee = 0.0 if third else fee  # a fee in the base or a third asset takes no cash
    if third and fee_currency in portfolio.fee_asset_balances:  # the account holds that much less of it
        portfolio.fee_asset_balances[fee_currency] -= fee
    if order.side is _BUY:
        fill.realised_pnl = _buy(position, quantity, price, money_fee, in_base)
        portfolio.cash -= quantity * price if in_base else quantity * price + cash_fee
        if position.last_price is None:
            position.last_price = price  # valued from its first fill until the next mark
    else:
        fill.realised_pnl = _sell(position, quantity, price, money_fee, in_base)
        portfolio.cash += quantity * price if in_base else quantity * price - cash_fee
        if position.quantity == 0.0:
            position.closed_at = at
    return fill


def book_quote_fill(portfolio: Portfolio, position: Position, is_buy: bool, quantity: float, price: float,
                    fee: float) -> float:
    """The money apply_fill moves for a fill whose fee is in the quote currency, without the Fill record; returns
    the P&L the fill realised. The same float operations in the same order as apply_fill (a backtest books
    fills with it and makes the records at the end: backtest/lean.py). The caller closes the position
    (``closed_at``) when a sell brought its quantity to 0.0, as apply_fill does."""
    portfolio.fees_paid += fee
    if is_buy:
        realised = _buy(position, quantity, price, fee, False)
        portfolio.cash -= quantity * price + fee
        if position.last_price is None:
            position.last_price = price  # valued from its first fill until the next mark
        return realised
    realised = _sell(position, quantity, price, fee, False)
    portfolio.cash += quantity * price - fee
    return realised


def _buy(holding: Position | _Figures, quantity: float, price: float, fee: float, in_base: bool = False) -> float:
    """A buy fill's effect on the figures; returns what it realised (minus its fee).

    A fee in the base asset leaves the net quantity held at the fill's price; its value is the fee.
    """
    if in_base:
        quantity, fee = quantity - fee, fee_value(fee, price, None, True)
    holding.quantity += quantity
    holding.cost_basis += quantity * price
    holding.fees_paid += fee
    holding.realised_pnl -= fee
    return -fee


def _sell(holding: Position | _Figures, quantity: float, price: float, fee: float, in_base: bool = False) -> float:
    """A sell fill's effect on the figures; returns what it realised, after its fee.

    A fee in the base asset leaves the position on top of the quantity sold; its value is the fee.
    """
    if in_base:
        return _sell(holding, quantity + fee, price, fee_value(fee, price, None, True))
    if quantity - holding.quantity > _DUST:  # more than held: an exchange close also sold earlier closes' dust
        cost_removed = holding.cost_basis  # whose cost was written off already
    else:
        average = holding.cost_basis / holding.quantity if holding.quantity else 0.0
        cost_removed = average * quantity
    pnl = quantity * price - cost_removed - fee
    holding.quantity -= quantity
    holding.cost_basis -= cost_removed
    holding.fees_paid += fee
    holding.realised_pnl += pnl
    if abs(holding.quantity) <= _DUST:
        holding.quantity = 0.0
        holding.cost_basis = 0.0
    return pnl


class _Figures:
    """Mutable figures for the replay in recompute_from_fills."""

    __slots__ = ("cost_basis", "fees_paid", "quantity", "realised_pnl")

    def __init__(self) -> None:
        self.quantity = 0.0
        self.cost_basis = 0.0
        self.realised_pnl = 0.0
        self.fees_paid = 0.0


def write_off_dust(position: Position, at: datetime) -> float:
    """Close a position whose remaining quantity cannot be sold (below one lot or the minimum notional), after a
    close sold every whole lot the account holds: the quantity is kept as ``dust_quantity``, its cost written
    off in realised P&L (no cash moves: the dust stays in the account). A negative remainder is dust of earlier
    closes that this close sold along (its cost was written off then, its proceeds are in this fill's P&L).
    Returns the cost written off."""
    cost = _write_off(position)
    position.closed_at = at
    return cost


def _write_off(holding: Position | _Figures) -> float:
    cost = holding.cost_basis
    if isinstance(holding, Position):
        holding.dust_quantity = holding.quantity
    holding.realised_pnl -= cost
    holding.quantity = 0.0
    holding.cost_basis = 0.0
    return cost


def recompute_from_fills(position: Position, base_assets: Collection[str] = ()) -> Holding:
    """The position's figures replayed from its fills in the order they were applied (by fill id);
    a fill with ``fee_in_base``, or whose fee currency is in ``base_assets`` (a fill recorded before
    ``fee_in_base`` was kept), was applied with its fee in the base asset."""
    figures = _Figures()
    fills = sorted(((f, o.is_buy) for o in position.orders for f in o.fills), key=lambda pair: pair[0].id)
    for fill, is_buy in fills:
        in_base = fill.fee_in_base or fill.fee_currency in base_assets
        fee = fee_value(fill.fee, fill.price, fill.fee_price, False)  # in the base: valued by _buy, _sell
        if is_buy:
            _buy(figures, fill.quantity, fill.price, fee, in_base)
        else:
            _sell(figures, fill.quantity, fill.price, fee, in_base)
    if position.dust_quantity:  # written off after its last fill
        _write_off(figures)
    return Holding(figures.quantity, figures.cost_basis, figures.realised_pnl, figures.fees_paid)


def recompute_cash(initial_cash: float, portfolio: Portfolio, base_assets: Collection[str] = ()) -> float:
    """Cash replayed from every fill of every position, in the order the fills were applied (a fee in
    the base asset, as recompute_from_fills tells it, or in a third asset, moved no cash)."""
    cash = initial_cash
    fills = sorted(((f, o.is_buy) for o in portfolio.all_orders() for f in o.fills), key=lambda pair: pair[0].id)
    for fill, is_buy in fills:
        if fill.fee_in_base or fill.fee_currency in base_assets or fill.fee_price is not None:  # no cash for the fee
            cash += -fill.quantity * fill.price if is_buy else fill.quantity * fill.price
        elif is_buy:
            cash -= fill.quantity * fill.price + fill.fee
        else:
            cash += fill.quantity * fill.price - fill.fee
    return cash


def retire_if_done(portfolio: Portfolio, position: Position) -> bool:
    """Retire ``position`` if it is done: it sold everything (or holds nothing) and every one of its orders has
    ended; whether it was retired now. The one rule for every place that may retire a position.

    Never while an order may still change (an entry resting at the exchange when a close sold what it had
    bought: its later cancel or fill must still find the position), and never twice (a position another
    path already retired is left alone).
    """
    if (position.is_open and position.quantity > 0) or not all(o.is_terminal for o in position.orders):
        return False
    if not any(p is position for p in portfolio.open_positions):
        return False
    retire_position(portfolio, position)
    return True


def retire_position(portfolio: Portfolio, position: Position) -> None:
    """Move a closed position to closed_positions, or one that never filled to failed_positions."""
    if position in portfolio.open_positions:
        portfolio.open_positions.remove(position)
    if position.has_fills():
        portfolio.closed_positions.append(position)
    else:
        if position.closed_at is None:
            last = position.orders[-1] if position.orders else None
            position.closed_at = (last.closed_at if last is not None else None) or position.opened_at
        portfolio.failed_positions.append(position)
