"""Rule-based strategies as vectorised entry and exit signals, executed exactly as the same rules in decide().

A strategy may define ``signals(candles, parameters)`` instead of ``decide(ctx)``: a dict with an
``entry`` and an ``exit`` series of booleans aligned with the candles (like ``indicators``). The
rule it stands for is fixed and simple — at a cycle, for each instrument, *exit* closes a held
position and *entry* opens one when none is held — so it is executed by a decide() built here
(:func:`signal_decide`), through the same engine: the same fills, fees, sizing and triggers as
the hand-written decide() of the same rule, to the cent. The signals are computed once, with the
indicators, and checked for lookahead like them. How an entry is sized and protected comes from
the module's ``signal_order``: the keyword arguments of ``open_long`` (default: all cash split
evenly across the instruments, ``fraction=1/N``).

Because a cycle whose instruments signal nothing returns no intents, a backtest visits only the
bars where something happens: a signal, a pending fill, or an open position with a protective
order to check (:func:`signal_steps`, backtest.runner).

Example::

    cycle_duration = "1m"
    parameters = {"symbol": Symbol("SYN"), "fast": Integer(10), "slow": Integer(30)}
    signal_order = {"fraction": 1.0, "stop_loss_pct": 0.02}

    def signals(candles, parameters):
        fast = candles["close"].rolling(parameters.fast).mean()
        slow = candles["close"].rolling(parameters.slow).mean()
        above = fast > slow
        before = above.shift(1, fill_value=False)
        return {"entry": above & ~before, "exit": ~above & before}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tradeexecutor.data.market import MarketData
from tradeexecutor.strategy.indicators import IndicatorStore
from tradeexecutor.strategy.intents import Intent, close, open_long

__all__ = ["ENTRY", "EXIT", "SIGNAL_NAMES", "combined_indicators", "signal_decide", "signal_intents", "signal_steps"]

ENTRY = "entry"
EXIT = "exit"
#: The names signals() returns; also the indicator names decide() and the context read them by.
SIGNAL_NAMES = (ENTRY, EXIT)


def combined_indicators(indicators: Callable[..., Mapping[str, Any]] | None,
                        signals: Callable[..., Mapping[str, Any]], where: str) -> Callable[..., dict[str, Any]]:
    """One indicator function computing the strategy's indicators and its signals (checked together for lookahead)."""

    def both(candles: Any, parameters: Any) -> dict[str, Any]:
        values = dict(indicators(candles, parameters)) if indicators is not None else {}
        clash = [name for name in SIGNAL_NAMES if name in values]
        if clash:
            raise ValueError(f"indicators() returns {clash[0]!r}, a name signals() uses; rename the indicator")
        produced = signals(candles, parameters)
        if not isinstance(produced, Mapping) or set(produced) != set(SIGNAL_NAMES):
            got = sorted(produced) if isinstance(produced, Mapping) else type(produced).__name__
            raise ValueError(f"signals() must return a dict with exactly 'entry' and 'exit' series, got {got}")
        for name in SIGNAL_NAMES:
            values[name] = produced[name]
        return values

    both.__qualname__ = f"signals of {where}"
    return both


def signal_decide(order: Mapping[str, Any], instruments: tuple[str, ...]) -> Callable[[Any], list[Intent]]:
    """The decide() a signals() strategy stands for: exit closes a held position, entry opens one."""
    options = dict(order)
    if "fraction" not in options and "value" not in options:
        options["fraction"] = 1.0 / len(instruments)
    # Intents are immutable: each instrument's entry and exit are built once (a bad signal_order fails when the
    # strategy loads, not at a cycle) and handed out at every signal.
    entries = {symbol: open_long(symbol, **options) for symbol in instruments}
    exits = {symbol: close(symbol) for symbol in instruments}

    if len(instruments) == 1:
        entry, exit_ = entries[instruments[0]], exits[instruments[0]]

        def decide_one(ctx: Any) -> list[Intent]:
            # The context's one-instrument accessors (no symbol): the same values, without the symbol lookups.
            if ctx.has_position():
                return [exit_] if ctx.indicator(EXIT) > 0 else []
            return [entry] if ctx.indicator(ENTRY) > 0 else []

        # What the backtest's trade loop (backtest.signal_events) needs to run this rule without calling it.
        decide_one._signal_intents = (entry, exit_)  # type: ignore[attr-defined]
        return decide_one

    def decide(ctx: Any) -> list[Intent]:
        intents = []
        for symbol in ctx.symbols:
            if ctx.has_position(symbol):
                if ctx.indicator(EXIT, symbol) > 0:
                    intents.append(exits[symbol])
            elif ctx.indicator(ENTRY, symbol) > 0:
                intents.append(entries[symbol])
        return intents

    return decide


def signal_intents(decide: Callable[..., Any]) -> tuple[Intent, Intent] | None:
    """The entry and exit intents of a one-instrument decide() built by :func:`signal_decide`; None for any other."""
    return getattr(decide, "_signal_intents", None)


def signal_steps(store: IndicatorStore, market: MarketData, due: np.ndarray) -> np.ndarray:
    """Timeline steps where a cycle is due and some instrument's last closed bar signals entry or exit."""
    hits = np.zeros(len(due), dtype=bool)
    for symbol, values in store.values.items():
        if symbol not in market.last_closed:
            continue
        either = (values[ENTRY] > 0) | (values[EXIT] > 0)
        last = market.last_closed[symbol]
        # Each step's last closed bar's signal (a step before the first bar reads bar 0 by ``clip``, then is
        # masked out): no 8-byte-a-step temporary of clipped indices, as np.maximum(last, 0) made.
        signalled = either.take(last, mode="clip")
        signalled &= last >= 0
        hits |= signalled
    hits &= due != 0
    return np.flatnonzero(hits)
