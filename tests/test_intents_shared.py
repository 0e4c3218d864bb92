"""The backtest hot path's shortcuts give what the plain code gives (issue 15, item 5).

``open_long``/``close`` hand out a shared immutable Intent for repeated plain arguments, still
checking every argument; client order ids write the high base-36 digits of a time once and keep
them. Both must be indistinguishable from building everything afresh.
"""

from __future__ import annotations

import numpy as np
import pytest

from tradeexecutor.state.client_id import _base36
from tradeexecutor.strategy import intents
from tradeexecutor.strategy.intents import Intent, close, open_long


def test_a_shared_plain_entry_equals_one_built_afresh_and_arguments_are_still_checked() -> None:
    first = open_long("SYN", fraction=0.5, note="cross")
    again = open_long("SYN", fraction=0.5, note="cross")
    assert again == first
    assert first == Intent("open", "SYN", equity_fraction=0.5, stop_loss=None, stop_loss_pct=None, take_profit=None,
                           take_profit_pct=None, trailing_stop_pct=None, note="cross")
    assert close("SYN") == close("SYN") == Intent("close", "SYN")
    # An integer fraction equal to a remembered float one is built, not taken from the cache: its field stays an int.
    assert type(open_long("SYN", fraction=1).equity_fraction) is int
    with pytest.raises(ValueError, match="fraction must be a fraction"):
        open_long("SYN", fraction=1.5)
    with pytest.raises(ValueError, match="needs exactly one of value, fraction"):
        open_long("SYN")
    with pytest.raises(ValueError, match="needs exactly one of value, fraction"):
        open_long("SYN", value=100.0, fraction=0.5)


def test_the_shared_intents_stay_bounded_when_every_trade_has_its_own_note() -> None:
    for number in range(3 * intents._REMEMBERED):
        open_long("SYN", fraction=0.5, note=f"trade {number}")
        close("SYN", note=f"trade {number}")
    assert len(intents._PLAIN_OPENS) <= intents._REMEMBERED
    assert len(intents._CLOSES) <= intents._REMEMBERED


def test_base36_with_the_kept_high_digits_matches_a_plain_conversion() -> None:
    four = 36**4
    numbers = [0, 1, 35, 36, 1295, 1296, four - 1, four, four + 1, 2 * four - 1, 1_764_633_600_000,
               1_764_633_600_000 + four, 36**8 - 1, 36**8, 36**12 + 7]
    # Alternating between far-apart times changes the kept high digits at every call.
    for number in numbers + numbers[::-1] + [n * 7919 for n in range(2000)]:
        assert _base36(number) == np.base_repr(number, 36).lower()
