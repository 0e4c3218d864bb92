"""The interface every state store implements, so the engine and the tests do not care which one they get."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tradeexecutor.state import State

__all__ = ["StateStoreProtocol"]


@runtime_checkable
class StateStoreProtocol(Protocol):
    """Durable (or in-memory) home of one State.

    Only one thread may call ``save``/``save_snapshot``/``load`` on a store; the daemon's loop
    thread owns it. Errors are StateError subclasses: StateCorruptError when what is stored
    cannot be read (and then nothing is ever written over it), SchemaVersionError when a newer
    tradeexecutor wrote it.
    """

    def exists(self) -> bool:
        """True when there is a stored state to load."""
        ...

    def load(self) -> State | None:
        """The stored state, or None when nothing has been stored yet."""
        ...

    def save(self, state: State) -> None:
        """Store ``state`` durably before returning; cheap to call once per cycle."""
        ...

    def save_snapshot(self, state: State) -> None:
        """Store ``state`` as one full snapshot (at the end of a run, before an upgrade)."""
        ...
