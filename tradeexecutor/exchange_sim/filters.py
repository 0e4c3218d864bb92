"""Symbol filters: exchangeInfo's description of a market's rules, and the checks that refuse an order with -1013.

Checked in Binance's order: PRICE_FILTER (limit orders), LOT_SIZE, NOTIONAL (market orders at
the last price), MAX_NUM_ORDERS.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.config import MarketSpec
from tradeexecutor.exchange_sim.numbers import ZERO, fmt, on_step


def describe(market: MarketSpec) -> list[dict[str, Any]]:
    """The market's ``filters`` array as exchangeInfo sends it."""
    return [
        {"filterType": "PRICE_FILTER", "minPrice": fmt(market.tick_size), "maxPrice": fmt(market.max_price),
         "tickSize": fmt(market.tick_size)},
        {"filterType": "LOT_SIZE", "minQty": fmt(market.step_size), "maxQty": fmt(market.max_qty),
         "stepSize": fmt(market.step_size)},
        {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(ZERO), "maxQty": fmt(market.max_qty), "stepSize": fmt(ZERO)},
        {"filterType": "NOTIONAL", "minNotional": fmt(market.min_notional), "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": market.max_open_orders},
    ]


def check_order(market: MarketSpec, *, quantity: Decimal, price: Decimal | None, reference: Decimal,
                open_orders: int) -> None:
    """Raise -1013 naming the first filter the order fails.

    ``price`` is the limit price (None for a market order); ``reference`` the price a market
    order's notional is measured at.
    """
    if price is not None and not (market.tick_size <= price <= market.max_price and on_step(price, market.tick_size)):
        raise errors.filter_failure("PRICE_FILTER")
    if not (market.step_size <= quantity <= market.max_qty and on_step(quantity, market.step_size)):
        raise errors.filter_failure("LOT_SIZE")
    if quantity * (price if price is not None else reference) < market.min_notional:
        raise errors.filter_failure("NOTIONAL")
    if open_orders >= market.max_open_orders:
        raise errors.filter_failure("MAX_NUM_ORDERS")
