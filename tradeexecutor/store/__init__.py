"""Persistence of the state: crash-safe files, a fast JSON codec and a store whose per-cycle write stays small.

Layer 5: imports only ``tradeexecutor.state``, ``tradeexecutor.errors``, the standard library and
third-party libraries.

Example::

    from tradeexecutor.store import StateStore

    store = StateStore("/var/lib/tradeexecutor/my-strategy")
    state = store.load() or State(name="my-strategy")
    ...                     # one cycle mutates state
    store.save(state)       # one fsynced log record, whatever the history size
"""

from __future__ import annotations

from tradeexecutor.store.atomic import atomic_write_bytes, atomic_write_text, fsync_append, fsync_directory
from tradeexecutor.store.codec import dumps_state, loads_state, state_from_dict, state_to_dict
from tradeexecutor.store.protocol import StateStoreProtocol
from tradeexecutor.store.state_store import InMemoryStateStore, StateStore

__all__ = [
    "InMemoryStateStore",
    "StateStore",
    "StateStoreProtocol",
    "atomic_write_bytes",
    "atomic_write_text",
    "dumps_state",
    "fsync_append",
    "fsync_directory",
    "loads_state",
    "state_from_dict",
    "state_to_dict",
]
