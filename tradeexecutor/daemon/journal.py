"""The loop's journal sink: every engine and loop event goes to the run's journal (the ledger) and the log.

The daemon hands it the Ledger: a line is committed with the job's next state commit (or alone
when the loop flushes after the job), so the journal never claims what the state did not commit.

With a plain journal file, an event is handed to ``notify`` once written; the daemon instead gives
the notifier to the ledger (``Ledger(on_commit=...)``), which hands it each line once committed.
Either way the journal is the one place events flow through, and a notification never claims what
the journal did not record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tradeexecutor.ledger import Ledger

__all__ = ["CommittedAtOnce", "EventListener", "JournalSink", "JournalWriter", "event_level"]


class JournalWriter(Protocol):
    """Where journal lines go: the Ledger (committed with the job) or a plain ``store.journal.Journal`` file."""

    def append(self, event: str, fields: Mapping[Any, Any] | None = None, /, *, level: str = "info",
               at: datetime | None = None) -> object: ...

class CommittedAtOnce:
    """A JournalWriter over the ledger whose every line commits at once, apart from the running job.

    For the watchdog's ``crashed`` line (``Ledger.append_apart``): the hung job never commits, so
    its pending lines are no place for the one line that says why the executor exits.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def append(self, event: str, fields: Mapping[Any, Any] | None = None, /, *, level: str = "info",
               at: datetime | None = None) -> None:
        self.ledger.append_apart(event, fields, level=level, at=at)


#: Receives each event after the journal wrote it: (event name, level, fields).
EventListener = Callable[[str, str, Mapping[str, Any]], None]

logger = logging.getLogger("tradeexecutor.journal")

#: Events that deserve more than ``info``; everything else is info.
_LEVELS = {
    "order_rejected": "warning",
    "order_unknown": "warning",
    "order_expired": "warning",
    "intent_ignored": "warning",
    "safe_mode": "warning",
    "risk_limit_hit": "warning",
    "stop_requested": "warning",
    "cast_failed": "warning",
    "operator_refused": "warning",
    "outage_started": "warning",
    "cycle_missed": "warning",
    "cycle_held": "warning",
    "temporary_failure": "warning",
    "reconciliation_mismatch": "warning",
    "order_fills_missing": "warning",
    "exit_waiting": "warning",
    "order_lost": "error",
    "crashed": "error",
    "error": "error",
}

#: Events too frequent for the technical log at info level (they stay in the journal).
_QUIET = {"cycle_completed", "revalued", "order_planned"}
#: Routine events: journaled at ``debug``, so ``/logs?level=info`` (the dashboard's default view, ``logs
#: --level info``) shows what an operator cares about — orders, fills, triggers, crashes, state changes.
_ROUTINE = {"revalued"}
#: Fields of ``cycle_completed`` that make a cycle more than routine when any is non-empty.
_DECISION_FIELDS = ("decisions", "planned", "executed", "rejected", "ignored")


def event_level(event: str, fields: Mapping[str, Any] | None = None) -> str:
    """The journal level of an event: warning/error for trouble, debug for routine, info otherwise.

    A ``cycle_completed`` is routine when the strategy decided nothing (most cycles of most
    strategies); one that planned, executed, rejected or ignored something is info.
    """
    if event in _LEVELS:
        return _LEVELS[event]
    if event in _ROUTINE:
        return "debug"
    if event == "cycle_completed" and not any((fields or {}).get(name) for name in _DECISION_FIELDS):
        return "debug"
    return "info"


class JournalSink:
    """An EventSink that appends each event to the journal and logs it.

    Called on the loop's thread only. Without a journal it only logs: ``start --mode backtest``
    logs its engine events that way, since an fsynced line per fill would dominate a long
    backtest (orders.csv and the state hold them all). ``notify`` hears every event once it is written.
    """

    def __init__(self, journal: JournalWriter | None, now: Callable[[], datetime], *,
                 notify: EventListener | None = None) -> None:
        self.journal = journal
        self._now = now
        self.notify = notify

    def __call__(self, event: str, /, **fields: Any) -> None:
        level = event_level(event, fields)
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        log_level = logging.DEBUG if event in _QUIET else getattr(logging, level.upper())
        logger.log(log_level, "%s %s", event, text)
        if self.journal is not None:
            self.journal.append(event, fields, level=level, at=self._now())
        if self.notify is not None:
            self.notify(event, level, fields)
