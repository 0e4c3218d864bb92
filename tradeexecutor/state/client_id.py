"""Deterministic client order ids: the same decision always yields the same id, so an order is never sent twice.

An id is ``te<run8>-<time>-<seq><letter>``: ``run8`` is 8 characters of a hash of the run's
identity (strategy name and the state's creation time), ``time`` the decision's time in epoch
milliseconds in base 36, ``seq`` the intent's index among that decision's intents in their
execution order (base 36, at least two digits) and ``letter`` the order's purpose. An order a
trigger (or an operator's close) created uses the position id instead of an intent index, written
``p<position>``, so it cannot meet a cycle's ids. Ids stay within 36 characters of ``[A-Za-z0-9_-]``, which Binance
accepts as ``newClientOrderId``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from tradeexecutor.state.order import OrderPurpose

__all__ = ["CLIENT_ORDER_ID_PATTERN", "ClientOrderIdParts", "client_order_id", "client_order_id_ms", "client_order_ids_ms",
           "parse_client_order_id", "run_key"]

#: What every client order id matches (Binance: ``^[.A-Z:/a-z0-9_-]{1,36}$``; we use a subset).
CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,36}$")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
#: Every two-digit base-36 number, "00" to "zz".
_PAIRS = [high + low for high in _DIGITS for low in _DIGITS]
#: 36 ** 4, and the number above the last four digits written last, with its text.
_FOUR = 36**4
_high = (-1, "")


def _base36(number: int) -> str:
    """``number`` in base 36, two digits at a time (ids are made on a backtest's hot path).

    A decision time in epoch milliseconds has eight digits whose first four change every 19
    days: those are written once and kept (``_high``), the last four come from two lookups.
    """
    global _high
    if number >= _FOUR:
        high, low = divmod(number, _FOUR)
        if high != _high[0]:
            _high = (high, _base36(high))
        pair, last = divmod(low, 1296)
        return _high[1] + _PAIRS[pair] + _PAIRS[last]
    if number < 0:
        raise ValueError(f"cannot write a negative number {number} in a client order id")
    if number < 36:
        return _DIGITS[number]
    text = ""
    while number:
        number, pair = divmod(number, 1296)
        text = _PAIRS[pair] + text
    return text.lstrip("0")


def run_key(name: str, created_at: datetime | None) -> str:
    """Eight characters naming one run of one strategy: the same state always gives the same key."""
    stamp = created_at.isoformat() if created_at is not None else ""
    return hashlib.sha256(f"{name}\x00{stamp}".encode()).hexdigest()[:8]


def client_order_id(run: str, at: datetime, seq: int, purpose: OrderPurpose, *,
                    position_id: int | None = None) -> str:
    """The id of the ``seq``-th order decided at ``at`` (or of a trigger exit of ``position_id``)."""
    since = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH
    return client_order_id_ms(run, since // timedelta(milliseconds=1), seq, purpose, position_id=position_id)


def client_order_id_ms(run: str, ms: int, seq: int, purpose: OrderPurpose, *, position_id: int | None = None) -> str:
    """client_order_id with the decision time given as epoch milliseconds (the engine's hot path has them)."""
    which = f"p{_base36(position_id)}" if position_id is not None else (_base36(seq) if seq >= 36 else f"0{_DIGITS[seq]}")
    text = f"te{run}-{_base36(ms)}-{which}{_LETTERS[purpose]}"
    if len(text) > 36 or len(run) != 8:  # every other character is [0-9a-z-] by construction
        raise ValueError(f"client order id {text!r} is longer than 36 characters or its run key is not 8 characters")
    return text


#: The letter of each purpose, looked up without the enum's (slow) ``value`` property.
_LETTERS = {purpose: purpose.value[0] for purpose in OrderPurpose}


#: The purpose of each letter: the other way round, for reading an id back (parse_client_order_id).
_PURPOSES = {letter: purpose for purpose, letter in _LETTERS.items()}
#: What an id of ours looks like: run key, time, then a position's exit (``p<position>``, always a close) or an intent
#: index (two digits below 36, else no leading zero), and the purpose's letter.
_PARTS = re.compile(r"^te([0-9a-f]{8})-([1-9a-z][0-9a-z]*)-(?:p([1-9a-z][0-9a-z]*)(?=c$)|(0[0-9a-z]|[1-9a-z][0-9a-z]+))"
                    r"([oirc])$")


@dataclass(frozen=True, slots=True)
class ClientOrderIdParts:
    """What an id of ours says of its order: reconciliation reads an order it finds on the exchange with it."""

    #: The run's key (``run_key``).
    run: str
    #: The decision's (or trigger's) time.
    at: datetime
    #: The order's purpose, from the id's last letter.
    purpose: OrderPurpose
    #: The position a trigger's or an operator's exit sells (``p<position>``); None for a cycle's order.
    position_id: int | None
    #: The intent's index among its decision's intents; None for a position's exit.
    seq: int | None


def parse_client_order_id(text: str) -> ClientOrderIdParts | None:
    """The parts of an id ``client_order_id`` made, or None when it is not one of ours.

    An intent index of 900 and more (``p0`` in base 36) with a close's letter reads as a position's exit: the one
    place the format is ambiguous, which no strategy's decision of that many intents ever reaches.
    """
    found = _PARTS.match(text)
    if found is None:
        return None
    run, time, position, seq, letter = found.groups()
    at = _EPOCH + timedelta(milliseconds=int(time, 36))
    return ClientOrderIdParts(run=run, at=at, purpose=_PURPOSES[letter],
                              position_id=int(position, 36) if position is not None else None,
                              seq=int(seq, 36) if seq is not None else None)


#: The code point of each purpose's letter (client_order_ids_ms).
_LETTER_CODES = {purpose: ord(letter) for purpose, letter in _LETTERS.items()}
#: Code points of the base-36 digits, indexed by digit (client_order_ids_ms).
_DIGIT_CODES = np.frombuffer(_DIGITS.encode("ascii"), dtype=np.uint8).astype(np.uint32)


def client_order_ids_ms(run: str, ms: Sequence[int], seqs: Sequence[int], purposes: Sequence[OrderPurpose]) -> list[str]:
    """client_order_id_ms of many cycle orders at once, text for text the same (a backtest's records are made in
    batches of thousands: one numpy pass over a table of code points instead of a string built per id).

    Ids whose time has another number of digits than the batch's largest, or whose intent index needs more
    than two digits, are written one by one.
    """
    count = len(ms)
    if count == 0:
        return []
    try:
        times = np.fromiter(ms, dtype=np.int64, count=count)
        order = np.fromiter(seqs, dtype=np.int64, count=count)
    except OverflowError:  # beyond 64 bits: one by one, which refuses it as too long
        return [client_order_id_ms(run, m, seq, purpose) for m, seq, purpose in zip(ms, seqs, purposes, strict=True)]
    largest = int(times.max())
    digits = len(_base36(largest))
    # "te" run "-" time "-" two-digit index, letter: one fixed width for the whole batch.
    probe = client_order_id_ms(run, largest, 0, OrderPurpose.open)
    width = len(probe)
    codes = np.empty((count, width), dtype=np.uint32)
    head = np.frombuffer(f"te{run}-".encode("ascii"), dtype=np.uint8)
    codes[:, :len(head)] = head
    at = len(head)
    rest = times.copy()
    for place in range(digits - 1, -1, -1):
        codes[:, at + place] = _DIGIT_CODES[rest % 36]
        rest //= 36
    at += digits
    codes[:, at] = ord("-")
    codes[:, at + 1] = _DIGIT_CODES[order // 36 % 36]
    codes[:, at + 2] = _DIGIT_CODES[order % 36]
    codes[:, at + 3] = np.fromiter(map(_LETTER_CODES.__getitem__, purposes), dtype=np.uint32, count=count)
    texts: list[str] = codes.view(f"<U{width}").ravel().tolist()
    odd = np.flatnonzero((times < 0) | (order < 0) | (order >= 36) | (times < 36 ** (digits - 1)))
    for index in odd.tolist():  # negative numbers raise there, as one by one
        texts[index] = client_order_id_ms(run, int(times[index]), int(order[index]), purposes[index])
    return texts
