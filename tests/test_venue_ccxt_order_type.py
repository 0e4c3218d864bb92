"""The ccxt venue's order type: Binance's own type where ccxt's unified one loses the stop, the unified one elsewhere.

ccxt maps Binance's ``STOP_LOSS_LIMIT`` to ``limit``, so the venue reads Binance's raw ``info.type`` to adopt a stop
order of ours with its stop price. Another exchange's raw type means something else (HTX sends ``buy-limit``), so
there the unified type is the one read: reading the raw one left HTX's limit orders typeless, and an order of ours
found open after a crash became a mismatch (safe mode) instead of being adopted.
"""

from __future__ import annotations

import pytest

from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.state import OrderType
from tradeexecutor.venue.ccxt_venue import CcxtVenue

ccxt = pytest.importorskip("ccxt")

KEYS = {"TRADEEXECUTOR_EXCHANGE_API_KEY": "k", "TRADEEXECUTOR_EXCHANGE_API_SECRET": "s"}


def test_an_htx_limit_order_keeps_its_unified_type() -> None:
    market = {"symbol": "BTC/USDT", "id": "btcusdt", "base": "BTC", "quote": "USDT", "type": "spot", "spot": True}
    raw = {"id": 13997833014, "symbol": "btcusdt", "account-id": 3398321, "client-order-id": "te1-x",
           "amount": "0.0008", "price": "20000", "created-at": 1640549994642, "type": "buy-limit",
           "field-amount": "0.0", "field-cash-amount": "0.0", "field-fees": "0.0", "source": "spot-api",
           "state": "submitted"}
    unified = ccxt.htx().parse_order(raw, market)
    assert unified["type"] == "limit", unified
    venue = CcxtVenue(CcxtVenueConfig(exchange="htx"), environ=KEYS)
    report = venue._report(unified)
    assert (report.type, report.limit_price, report.stop_price) == (OrderType.limit, 20000.0, None)


def test_a_binance_stop_loss_limit_order_is_a_stop_limit_with_its_stop_price() -> None:
    market = {"symbol": "BTC/USDT", "id": "BTCUSDT", "base": "BTC", "quote": "USDT", "type": "spot", "spot": True,
              "linear": None, "inverse": None, "contract": False}
    raw = {"symbol": "BTCUSDT", "orderId": 28, "clientOrderId": "te1-y", "price": "96.00", "origQty": "1.0",
           "executedQty": "0.0", "cummulativeQuoteQty": "0.0", "status": "NEW", "timeInForce": "GTC",
           "type": "STOP_LOSS_LIMIT", "side": "SELL", "stopPrice": "98.00", "time": 1640549994642,
           "updateTime": 1640549994642, "isWorking": False}
    unified = ccxt.binance().parse_order(raw, market)
    assert unified["type"] == "limit", unified  # ccxt's unified type loses the stop: why the raw one is read
    venue = CcxtVenue(CcxtVenueConfig(exchange="binance"), environ=KEYS)
    report = venue._report(unified)
    assert (report.type, report.limit_price, report.stop_price) == (OrderType.stop_limit, 96.0, 98.0)
