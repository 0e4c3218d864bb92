"""Persistence of the state: a fast JSON codec and a store whose per-cycle write stays small.

Files are written through :mod:`tradeexecutor.atomic` and named by :mod:`tradeexecutor.layout`.

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
    from tradeexecutor.store.codec import dumps_state, loads_state, state_from_dict, state_to_dict
    from tradeexecutor.store.protocol import StateStoreProtocol
    from tradeexecutor.store.state_store import InMemoryStateStore, StateStore

#: Where each re-exported name lives. Imported on first use: ``tradeexecutor.store.journal`` (what
#: ``runs logs`` needs) must not pay for the state model and dataclasses-json (~0.3 s).
_EXPORTS = {
    "dumps_state": "codec", "loads_state": "codec", "state_from_dict": "codec", "state_to_dict": "codec",
    "StateStoreProtocol": "protocol",
    "InMemoryStateStore": "state_store", "StateStore": "state_store",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "InMemoryStateStore",
    "StateStore",
    "StateStoreProtocol",
    "dumps_state",
    "loads_state",
    "state_from_dict",
    "state_to_dict",
]
