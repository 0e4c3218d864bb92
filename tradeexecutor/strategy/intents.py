"""Trade intents: what a strategy's decide() returns, turned into orders by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Sentinel meaning "leave this trigger as it is" in set_triggers().
KEEP: Any = object()


@dataclass(frozen=True, slots=True)
class Intent:
    """One wish of the strategy for one instrument; built with the helper functions below."""

    #: open, increase, reduce, close or set_triggers.
    action: str
    #: Symbol; None means the strategy's only instrument.
    symbol: str | None = None
    #: Cash value to buy (open, increase) or sell (reduce).
    value: float | None = None
    #: Fraction of portfolio equity to buy (open, increase).
    equity_fraction: float | None = None
    #: Quantity to sell (reduce).
    quantity: float | None = None
    #: Fraction of the position to sell (reduce).
    position_fraction: float | None = None
    stop_loss: Any = KEEP
    stop_loss_pct: Any = KEEP
    take_profit: Any = KEEP
    take_profit_pct: Any = KEEP
    trailing_stop_pct: Any = KEEP
    #: Free text kept on the trade.
    note: str | None = None

    @property
    def is_buy(self) -> bool:
        """Opening and increasing intents buy; the engine executes sells first."""
        return self.action in ("open", "increase")


def _positive(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _fraction(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}")


def _pct(name: str, value: Any) -> None:
    if value is KEEP or value is None:
        return
    if not (isinstance(value, (int, float)) and 0 < value < 1):
        raise ValueError(f"{name} must be a fraction in (0, 1) such as 0.05 for 5 %, got {value!r}")


def _exactly_one(action: str, **sizes: float | None) -> None:
    given = [name for name, value in sizes.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"{action}() needs exactly one of {', '.join(sizes)}; got {', '.join(given) or 'none'}")


def _trigger_args(stop_loss: Any, stop_loss_pct: Any, take_profit: Any, take_profit_pct: Any, trailing_stop_pct: Any) -> None:
    if stop_loss is not KEEP and stop_loss is not None:
        _positive("stop_loss", stop_loss)
    if take_profit is not KEEP and take_profit is not None:
        _positive("take_profit", take_profit)
    _pct("stop_loss_pct", stop_loss_pct)
    _pct("take_profit_pct", take_profit_pct)
    _pct("trailing_stop_pct", trailing_stop_pct)
    if stop_loss not in (KEEP, None) and stop_loss_pct not in (KEEP, None):
        raise ValueError("give stop_loss or stop_loss_pct, not both")
    if take_profit not in (KEEP, None) and take_profit_pct not in (KEEP, None):
        raise ValueError("give take_profit or take_profit_pct, not both")


def open_long(
    symbol: str | None = None,
    *,
    value: float | None = None,
    fraction: float | None = None,
    stop_loss: float | None = None,
    stop_loss_pct: float | None = None,
    take_profit: float | None = None,
    take_profit_pct: float | None = None,
    trailing_stop_pct: float | None = None,
    note: str | None = None,
) -> Intent:
    """Open a long position worth ``value`` in cash, or ``fraction`` of portfolio equity.

    Triggers may be absolute prices (``stop_loss=95.0``) or fractions of the entry fill price
    (``stop_loss_pct=0.05`` is 5 % below the fill). ``trailing_stop_pct`` follows the highest
    price seen since the entry.

    >>> open_long("GOOG", fraction=1.0, stop_loss_pct=0.05)  # doctest: +ELLIPSIS
    Intent(action='open', symbol='GOOG', ...)
    """
    if (value is None and stop_loss is None and stop_loss_pct is None and take_profit is None
            and take_profit_pct is None and trailing_stop_pct is None):
        # The common entry, sized by a fraction of equity and nothing else: an Intent is immutable, so the
        # same one is handed out again (a backtest makes one per entry; building and checking it cost
        # ~2 µs).
        key = (symbol, fraction, note)
        found = _PLAIN_OPENS.get(key)
        if found is not None and type(fraction) is float:
            return found
        _fraction("fraction", fraction)
        if fraction is None:
            _exactly_one("open_long", value=value, fraction=fraction)
        intent = Intent("open", symbol, equity_fraction=fraction, stop_loss=None, stop_loss_pct=None,
                        take_profit=None, take_profit_pct=None, trailing_stop_pct=None, note=note)
        if type(fraction) is float and (symbol is None or type(symbol) is str) and (note is None or type(note) is str):
            _remember(_PLAIN_OPENS, key, intent)
        return intent
    _exactly_one("open_long", value=value, fraction=fraction)
    _positive("value", value)
    _fraction("fraction", fraction)
    _trigger_args(stop_loss, stop_loss_pct, take_profit, take_profit_pct, trailing_stop_pct)
    return Intent(
        "open", symbol, value=value, equity_fraction=fraction,
        stop_loss=stop_loss, stop_loss_pct=stop_loss_pct, take_profit=take_profit,
        take_profit_pct=take_profit_pct, trailing_stop_pct=trailing_stop_pct, note=note,
    )


def increase(symbol: str | None = None, *, value: float | None = None, fraction: float | None = None,
             note: str | None = None) -> Intent:
    """Buy more of an open position: ``value`` in cash or ``fraction`` of portfolio equity (ignored, with the reason,
    while the position's close has not filled)."""
    _exactly_one("increase", value=value, fraction=fraction)
    _positive("value", value)
    _fraction("fraction", fraction)
    return Intent("increase", symbol, value=value, equity_fraction=fraction, note=note)


def reduce(symbol: str | None = None, *, quantity: float | None = None, fraction: float | None = None,
           value: float | None = None, note: str | None = None) -> Intent:
    """Sell part of an open position: a ``quantity``, a ``fraction`` of it, or a cash ``value``."""
    _exactly_one("reduce", quantity=quantity, fraction=fraction, value=value)
    _positive("quantity", quantity)
    _positive("value", value)
    _fraction("fraction", fraction)
    return Intent("reduce", symbol, quantity=quantity, position_fraction=fraction, value=value, note=note)


def close(symbol: str | None = None, *, note: str | None = None) -> Intent:
    """Sell the whole open position. Live, its entries and increases still resting at the exchange are cancelled
    first, and what they filled meanwhile is sold too; until the exchange confirms those cancels the cycle is
    retried, its strategy asked again (elsewhere an increase from an earlier cycle still waiting fills first and is
    sold with the rest)."""
    key = (symbol, note)
    found = _CLOSES.get(key)
    if found is not None:
        return found  # immutable: the same close again (see open_long)
    intent = Intent("close", symbol, note=note)
    if (symbol is None or type(symbol) is str) and (note is None or type(note) is str):
        _remember(_CLOSES, key, intent)
    return intent


#: Plain entries and closes already built, by their arguments (an Intent is frozen, so one can be shared).
_PLAIN_OPENS: dict[tuple[Any, ...], Intent] = {}
_CLOSES: dict[tuple[Any, ...], Intent] = {}
#: Entries kept at most per cache: a strategy that writes a note per trade must not grow it without bound.
_REMEMBERED = 1024


def _remember(cache: dict[tuple[Any, ...], Intent], key: tuple[Any, ...], intent: Intent) -> None:
    if len(cache) >= _REMEMBERED:
        cache.clear()
    cache[key] = intent


def set_triggers(
    symbol: str | None = None,
    *,
    stop_loss: Any = KEEP,
    take_profit: Any = KEEP,
    trailing_stop_pct: Any = KEEP,
    note: str | None = None,
) -> Intent:
    """Attach, move or remove (with None) the protective orders of an open position."""
    _trigger_args(stop_loss, KEEP, take_profit, KEEP, trailing_stop_pct)
    return Intent("set_triggers", symbol, stop_loss=stop_loss, take_profit=take_profit,
                  trailing_stop_pct=trailing_stop_pct, note=note)
