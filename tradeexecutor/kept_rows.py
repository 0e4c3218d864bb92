"""Encoded rows kept between publications, so a file of the whole history is rebuilt at the cost of what changed.

A running executor publishes files that list every order or position of its run (``orders.csv``,
``positions.json``). Positions that are closed or failed never change again, so their rows are
encoded once and kept here; each publication encodes only the live rows (open positions) and
splices them in by id. :class:`Appended` tells what was appended to a list since the last look,
and notices a list that was replaced or cut (a reloaded state), so the caller starts over.

>>> kept = KeptRows()
>>> kept.add(1, b"a\\n"); kept.add(3, b"c\\n")
>>> kept.joined([(2, b"b\\n")])
b'a\\nb\\nc\\n'
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = ["Appended", "KeptRows"]

T = TypeVar("T")


class Appended(Generic[T]):
    """Follows a list that only grows at its end, by identity, length and last item."""

    def __init__(self) -> None:
        self._items: list[T] | None = None
        self._count = 0
        self._last: T | None = None

    def appended(self, items: list[T]) -> tuple[bool, list[T]]:
        """(True, the items appended since the last call) when ``items`` is the list followed, as it was;
        otherwise (False, every item), and ``items`` is followed from now on."""
        count, last = self._count, self._last
        followed = items is self._items and len(items) >= count and (not count or items[count - 1] is last)
        self._items, self._count, self._last = items, len(items), items[-1] if items else None
        return (True, items[count:]) if followed else (False, items)


class KeptRows:
    """Encoded rows by integer id, joined in id order; live rows are spliced in without copying the kept ones twice."""

    def __init__(self) -> None:
        self._ids: list[int] = []  # sorted
        self._rows: dict[int, bytes] = {}
        self._blob = bytearray()  # the rows joined in id order
        self._offsets = [0]  # where each row starts in _blob, and where the last ends

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: int, row: bytes) -> None:
        """Keep a row; appended when its id is the largest, otherwise the joined bytes are rebuilt (rare)."""
        if key not in self._rows and (not self._ids or key > self._ids[-1]):
            self._rows[key] = row
            self._ids.append(key)
            self._blob += row
            self._offsets.append(len(self._blob))
            return
        if key not in self._rows:
            insort(self._ids, key)
        self._rows[key] = row
        rows = [self._rows[i] for i in self._ids]
        self._blob = bytearray(b"".join(rows))
        offsets = [0]
        for row_bytes in rows:
            offsets.append(offsets[-1] + len(row_bytes))
        self._offsets = offsets

    def joined(self, live: Sequence[tuple[int, bytes]] = (), separator: bytes = b"") -> bytes:
        """Every kept row and the ``live`` ones (sorted by id; a live id replaces a kept one), in id order.

        With a ``separator`` (``b","`` for a JSON array) rows are separated by it; kept rows must
        then have been added with the separator in front (``b"," + row``), which is dropped for the first.
        """
        blob, offsets, ids = self._blob, self._offsets, self._ids
        parts: list[bytes | bytearray] = []
        start = 0
        for key, row in live:
            at = bisect_left(ids, key, lo=start)
            parts.append(blob[offsets[start]:offsets[at]])
            parts.append(separator + row)
            start = at + 1 if at < len(ids) and ids[at] == key else at
        parts.append(blob[offsets[start]:])
        if separator:
            first = next((i for i, part in enumerate(parts) if part), None)
            if first is not None:
                parts[first] = parts[first][len(separator):]
        return b"".join(parts)
