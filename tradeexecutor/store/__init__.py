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

from typing import TYPE_CHECKING

from tradeexecutor import lazy_exports

if TYPE_CHECKING:
    from tradeexecutor.store.atomic import atomic_write_bytes, atomic_write_text, fsync_append, fsync_directory
    from tradeexecutor.store.codec import dumps_state, loads_state, state_from_dict, state_to_dict
    from tradeexecutor.store.protocol import StateStoreProtocol
    from tradeexecutor.store.state_store import InMemoryStateStore, StateStore

#: Where each re-exported name lives. Imported on first use: ``tradeexecutor.store.journal`` (what
#: ``runs logs`` needs) must not pay for the state model and dataclasses-json (~0.3 s).
_EXPORTS = {
    "atomic_write_bytes": "atomic", "atomic_write_text": "atomic", "fsync_append": "atomic",
    "fsync_directory": "atomic",
    "dumps_state": "codec", "loads_state": "codec", "state_from_dict": "codec", "state_to_dict": "codec",
    "StateStoreProtocol": "protocol",
    "InMemoryStateStore": "state_store", "StateStore": "state_store",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


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
