"""Decide whether a bar crosses a position's stop-loss, trailing stop or take-profit, and at what price."""

from __future__ import annotations

from tradeexecutor.state import Position, TriggerKind


def stop_level(position: Position) -> tuple[float | None, str | None]:
    """The effective stop for a long: the higher of the stop-loss and the trailing stop."""
    level: float | None = position.stop_loss
    kind: str | None = TriggerKind.stop_loss.value if level is not None else None
    if position.trailing_stop_pct is not None and position.high_water is not None:
        trailing = position.high_water * (1.0 - position.trailing_stop_pct)
        if level is None or trailing > level:
            level, kind = trailing, TriggerKind.trailing_stop.value
    return level, kind


def check_bar(position: Position, open_: float, high: float, low: float) -> tuple[str, float, float] | None:
    """Test one bar against a long position's protective orders.

    Returns ``(trigger kind, level, fill price)`` or None. Rules, in order:

    1. the bar opens at or below the stop (a gap through it): exit at the open;
    2. the bar opens at or above the take-profit: exit at the open;
    3. the low reaches the stop: exit at the stop;
    4. the high reaches the take-profit: exit at the take-profit.

    When a bar reaches both, the stop is assumed to come first: the conservative reading of a
    bar whose path inside is unknown. The trailing stop uses the highest price seen *before*
    this bar; update_high_water() then raises it with this bar's high.
    """
    stop, stop_kind = stop_level(position)
    take = position.take_profit
    if stop is not None and open_ <= stop:
        return stop_kind or TriggerKind.stop_loss.value, stop, open_
    if take is not None and open_ >= take:
        return TriggerKind.take_profit.value, take, open_
    if stop is not None and low <= stop:
        return stop_kind or TriggerKind.stop_loss.value, stop, stop
    if take is not None and high >= take:
        return TriggerKind.take_profit.value, take, take
    return None


def update_high_water(position: Position, high: float) -> None:
    """Raise the trailing stop's reference to this bar's high."""
    if position.trailing_stop_pct is not None and (position.high_water is None or high > position.high_water):
        position.high_water = high


def has_triggers(position: Position) -> bool:
    """True when the position has any protective order to check."""
    return position.stop_loss is not None or position.take_profit is not None or position.trailing_stop_pct is not None
