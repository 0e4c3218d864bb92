"""The one table of what each ccxt exception means: complete for the installed ccxt, and right where it matters."""

from __future__ import annotations

import inspect

import pytest

from tradeexecutor.state import OrderSide, RejectReason
from tradeexecutor.venue.ccxt_errors import ERROR_TABLE, Meaning, classify, reject_reason, scrub

ccxt = pytest.importorskip("ccxt")
errors = pytest.importorskip("ccxt.base.errors")


def ccxt_classes() -> list[type]:
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.BaseError) and cls.__module__ == errors.__name__]


def test_every_ccxt_exception_class_has_its_own_row() -> None:
    """A class a ccxt upgrade adds fails here instead of silently taking its parent's meaning."""
    names = {cls.__name__ for cls in ccxt_classes()}
    assert len(names) > 30
    assert names - set(ERROR_TABLE) == set()


@pytest.mark.parametrize(("name", "meaning"), [
    ("RequestTimeout", Meaning.temporary),
    ("NetworkError", Meaning.temporary),
    ("ExchangeNotAvailable", Meaning.temporary),
    ("OnMaintenance", Meaning.temporary),
    ("DDoSProtection", Meaning.temporary),
    ("RateLimitExceeded", Meaning.temporary),
    ("InvalidNonce", Meaning.temporary),
    ("OperationFailed", Meaning.temporary),
    ("InsufficientFunds", Meaning.rejected),
    ("InvalidOrder", Meaning.rejected),
    ("BadRequest", Meaning.rejected),
    ("MarketClosed", Meaning.rejected),
    ("AuthenticationError", Meaning.crash),
    ("PermissionDenied", Meaning.crash),
    ("ExchangeError", Meaning.crash),
    ("NotSupported", Meaning.crash),
    ("DuplicateOrderId", Meaning.crash),
])
def test_what_each_class_means_while_submitting(name: str, meaning: Meaning) -> None:
    assert classify(getattr(ccxt, name)("binance ..."), submitting=True) is meaning


def test_a_refusal_rejects_only_a_submit_and_anything_else_is_a_crash() -> None:
    assert classify(ccxt.InvalidOrder("x"), submitting=False) is Meaning.crash
    assert classify(ccxt.InsufficientFunds("x"), submitting=False) is Meaning.crash
    assert classify(ccxt.RequestTimeout("x"), submitting=False) is Meaning.temporary
    assert classify(ValueError("our own bug"), submitting=True) is Meaning.crash
    assert classify(KeyError("x"), submitting=False) is Meaning.crash


@pytest.mark.parametrize(("message", "side", "reason"), [
    ('binance {"code":-1013,"msg":"Filter failure: NOTIONAL"}', OrderSide.buy, RejectReason.below_min_notional),
    ('binance order amount should be evenly divisible by lot size {"code":-1013,"msg":"Filter failure: LOT_SIZE"}',
     OrderSide.sell, RejectReason.rounds_to_zero),
])
def test_the_exchange_s_filter_names_the_reason(message: str, side: OrderSide, reason: RejectReason) -> None:
    assert reject_reason(ccxt.InvalidOrder(message), side) is reason


def test_insufficient_funds_is_cash_on_a_buy_and_nothing_to_sell_on_a_sell() -> None:
    refused = ccxt.InsufficientFunds("Account has insufficient balance for requested action.")
    assert reject_reason(refused, OrderSide.buy) is RejectReason.insufficient_cash
    assert reject_reason(refused, OrderSide.sell) is RejectReason.nothing_to_sell
    assert reject_reason(ccxt.MarketClosed("Market is closed."), OrderSide.buy) is RejectReason.venue


def test_scrub_drops_signed_query_strings_and_secret_values() -> None:
    text = ("binance GET http://127.0.0.1:9/api/v3/account?timestamp=1&recvWindow=10000&signature=abc123 "
            "key s3cr3tKey in a body apiKey=s3cr3tKey")
    cleaned = scrub(text, ("s3cr3tKey",))
    assert "abc123" not in cleaned and "s3cr3tKey" not in cleaned and "http://127.0.0.1:9/api/v3/account" in cleaned
