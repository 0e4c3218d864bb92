"""The account's balances per asset, free and locked, moved only by whole operations that cannot overdraw.

An open order locks what it may spend; a fill spends from the lock and credits what it brings;
a cancel unlocks the rest. A method that would take more than is there raises
:class:`Overdrawn` before changing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from tradeexecutor.exchange_sim.numbers import ZERO


class Overdrawn(Exception):
    """An operation asked for more of an asset than is free (or locked)."""


@dataclass
class Balance:
    """One asset's amounts."""

    free: Decimal = ZERO
    locked: Decimal = ZERO


class Accounts:
    """The one account the simulator serves; not thread-safe (the simulator holds its lock)."""

    def __init__(self, initial: Mapping[str, Decimal], assets: tuple[str, ...] = ()):
        self._balances: dict[str, Balance] = {}
        self.reset(initial, assets)

    def reset(self, initial: Mapping[str, Decimal], assets: tuple[str, ...] = ()) -> None:
        """Back to ``initial`` free balances (every asset in ``assets`` listed, at zero if not given)."""
        self._balances = {asset: Balance() for asset in assets}
        for asset, amount in initial.items():
            self._balances[asset] = Balance(free=Decimal(amount))

    def get(self, asset: str) -> Balance:
        """The balance of ``asset`` (zero when never held)."""
        return self._balances.setdefault(asset, Balance())

    def free(self, asset: str) -> Decimal:
        """What can be spent or locked now."""
        return self.get(asset).free

    def lock(self, asset: str, amount: Decimal) -> None:
        """Move ``amount`` from free to locked."""
        balance = self.get(asset)
        if amount > balance.free:
            raise Overdrawn(asset)
        balance.free -= amount
        balance.locked += amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        """Move ``amount`` from locked back to free."""
        balance = self.get(asset)
        if amount > balance.locked:
            raise Overdrawn(asset)
        balance.locked -= amount
        balance.free += amount

    def spend_locked(self, asset: str, amount: Decimal) -> None:
        """Take ``amount`` out of the locked part (a fill paid from an order's lock)."""
        balance = self.get(asset)
        if amount > balance.locked:
            raise Overdrawn(asset)
        balance.locked -= amount

    def spend(self, asset: str, amount: Decimal) -> None:
        """Take ``amount`` out of the free part (a market order's payment)."""
        balance = self.get(asset)
        if amount > balance.free:
            raise Overdrawn(asset)
        balance.free -= amount

    def credit(self, asset: str, amount: Decimal) -> None:
        """Add ``amount`` to the free part (what a fill brings in)."""
        self.get(asset).free += amount

    def set_free(self, asset: str, amount: Decimal) -> None:
        """Set the free part outright (the control API's "set balance"); locked amounts stay."""
        if amount < 0:
            raise Overdrawn(asset)
        self.get(asset).free = amount

    def snapshot(self) -> dict[str, Balance]:
        """A copy of every balance, sorted by asset."""
        return {asset: Balance(b.free, b.locked) for asset, b in sorted(self._balances.items())}
