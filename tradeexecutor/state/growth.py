"""ListTail: the items appended to a list since the last look, for the state's lists that only grow.

Closed and failed positions never change once moved to their lists, so work done on them (order
counts, chart fills) can be done once per position instead of once per cycle. A ListTail
remembers how far it got in one list; when the list was replaced or shrank (another state was
loaded) it starts over from the first item and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from tradeexecutor.kept_rows import grown

__all__ = ["ListTail"]

T = TypeVar("T")


class ListTail(Generic[T]):
    """Hands out each item of a growing list once, in order."""

    __slots__ = ("items", "last", "restarted", "seen")

    def __init__(self) -> None:
        self.items: Sequence[T] | None = None
        self.seen = 0
        self.last: T | None = None
        #: True when the last ``new_items`` call started over (new list, or one that shrank or changed).
        self.restarted = False

    def new_items(self, items: Sequence[T]) -> Sequence[T]:
        """The items appended since the last call (all of them after a restart)."""
        same = grown(items, self.items, self.seen, self.last)
        self.restarted = not same
        if not same:
            self.items = items
            self.seen = 0
        # From the start: the list itself, not a copy (a PackedPositions' copy would be every position as objects).
        new = items[self.seen:] if self.seen else items
        self.seen = len(items)
        self.last = items[-1] if items else None
        return new
