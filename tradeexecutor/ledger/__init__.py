"""The executor's durable home: one SQLite ledger per executor, each job committed in one transaction.

Layer 6: imports ``state``, ``store`` (the JSON codec and the journal's line format), ``errors``
and the standard library's ``sqlite3`` (the only package besides ``runs`` that may).
docs/ledger.md documents the file and its tables.

Example::

    from tradeexecutor.ledger import Ledger

    ledger = Ledger("/var/lib/tradeexecutor/my-strategy/ledger.sqlite")
    state = ledger.load() or State(name="my-strategy")   # refuses a damaged or foreign file
    with ledger.begin_job("cycle", now) as job:
        ...                                               # the engine mutates state
        job.journal("order_filled", "info", {"order_id": 7})
        job.commit(state)                                 # what changed, and the line, in one transaction
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradeexecutor import lazy_exports

if TYPE_CHECKING:
    from tradeexecutor.ledger.directory import check_not_legacy, load_state
    from tradeexecutor.ledger.ledger import DEFAULT_JOURNAL_KEEP, Job, Ledger
    from tradeexecutor.ledger.migrate import Migration, migrate_state_dir
    from tradeexecutor.ledger.read import LedgerContent, read_ledger

_EXPORTS = {"DEFAULT_JOURNAL_KEEP": "ledger", "Job": "ledger", "Ledger": "ledger",
            "LedgerContent": "read", "read_ledger": "read",
            "check_not_legacy": "directory", "load_state": "directory", "Migration": "migrate",
            "migrate_state_dir": "migrate"}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DEFAULT_JOURNAL_KEEP",
    "Job",
    "Ledger",
    "LedgerContent",
    "Migration",
    "check_not_legacy",
    "load_state",
    "migrate_state_dir",
    "read_ledger",
]
