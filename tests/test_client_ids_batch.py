"""client_order_ids_ms (a backtest's ids made a batch at a time) writes exactly what client_order_id_ms writes."""

from __future__ import annotations

import random

import pytest

from tradeexecutor.state.client_id import CLIENT_ORDER_ID_PATTERN, client_order_id_ms, client_order_ids_ms
from tradeexecutor.state.order import OrderPurpose


def test_a_batch_writes_each_id_as_one_by_one() -> None:
    pick = random.Random(15)
    now = 1_764_720_000_000  # 2025-12: eight base-36 digits
    ms = [pick.choice([now + pick.randrange(10**9), pick.randrange(36**7), 35, 36, 0]) for _ in range(3_000)]
    seqs = [pick.choice([0, 1, 35, 36, 1295, 1296]) for _ in ms]  # one, two and three digits
    purposes = [pick.choice(list(OrderPurpose)) for _ in ms]
    batch = client_order_ids_ms("0a1b2c3d", ms, seqs, purposes)
    assert batch == [client_order_id_ms("0a1b2c3d", m, s, p) for m, s, p in zip(ms, seqs, purposes, strict=True)]
    assert all(CLIENT_ORDER_ID_PATTERN.match(cid) for cid in batch)
    assert client_order_ids_ms("0a1b2c3d", [], [], []) == []


def test_a_batch_refuses_what_one_by_one_refuses() -> None:
    with pytest.raises(ValueError, match="negative"):
        client_order_ids_ms("0a1b2c3d", [1_000, -5], [0, 0], [OrderPurpose.open, OrderPurpose.close])
    with pytest.raises(ValueError, match="36 characters"):
        client_order_ids_ms("0a1b2c3d", [36**25], [0], [OrderPurpose.open])
