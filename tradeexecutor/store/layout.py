"""Where a run's files live in its state directory; shared by the writer (loop) and readers (webhook)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one executor's state directory.

    The loop writes them (crash-safely); the webhook only reads them. Files under ``public/`` are
    snapshots published after each change so that requests serve bytes, never serialise.
    """

    #: The state directory itself.
    root: Path

    @property
    def journal(self) -> Path:
        """JSON lines of what happened to the job: the ledger's committed journal, published."""
        return self.root / "journal.jsonl"

    @property
    def ledger(self) -> Path:
        """The executor's SQLite ledger: state and journal, one transaction per job (docs/ledger.md)."""
        return self.root / "ledger.sqlite"

    @property
    def legacy_state(self) -> Path:
        """The JSON state of the layout before the ledger (``state.json`` + ``state.log``); see ``state migrate``."""
        return self.root / "state.json"

    @property
    def crash(self) -> Path:
        """The last crash record and the crash counter."""
        return self.root / "crash.json"

    @property
    def cast(self) -> Path:
        """Where the executor casts its charts (store.cast_target); survives restarts."""
        return self.root / "cast.json"

    @property
    def lock(self) -> Path:
        """Held exclusively by the executor that owns this state."""
        return self.root / "executor.lock"

    @property
    def public(self) -> Path:
        """Snapshots served by the webhook."""
        return self.root / "public"

    @property
    def state_snapshot(self) -> Path:
        """The whole state as JSON, published after each change."""
        return self.public / "state.json"

    @property
    def state_snapshot_gz(self) -> Path:
        """The same bytes gzip-compressed, for clients that accept gzip."""
        return self.public / "state.json.gz"

    @property
    def orders_csv(self) -> Path:
        """Every order of the run, with the backtest trades CSV's columns."""
        return self.public / "orders.csv"

    @property
    def positions(self) -> Path:
        """Open and closed positions as a JSON list, for paged reads."""
        return self.public / "positions.json"

    @property
    def metadata(self) -> Path:
        """Name, description, mode, strategy version, started_at and key figures."""
        return self.public / "metadata.json"
