"""Convert a state directory from the JSON layout (state.json + state.log + journal.jsonl) to a ledger.

The old files are read with the JSON store's strict reader (a damaged one is refused, naming it)
and left exactly as they were; the ledger gets the state and the journal's newest lines
(``journal_keep``) in one transaction, so a migration that is interrupted leaves no ledger.
Journal lines are kept byte for byte, so ``journal.jsonl`` stays the ledger's published copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from tradeexecutor.errors import StateError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger.ledger import DEFAULT_JOURNAL_KEEP, Ledger
from tradeexecutor.state.timestamps import decode_datetime
from tradeexecutor.store.journal import LEVELS, encode_entry, entry_from_json
from tradeexecutor.store.state_store import StateStore

__all__ = ["Migration", "migrate_state_dir"]


@dataclass(frozen=True)
class Migration:
    """What a migration wrote."""

    ledger: Path
    positions: int
    journal_lines: int
    journal_dropped: int


def _journal_lines(path: Path) -> list[bytes]:
    """The journal's complete, readable lines as they are on disk (each ending in a newline)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = []
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n") or not line.strip():
            continue  # a torn last line, or an empty one
        try:
            entry = entry_from_json(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a torn line the journal's readers skip too
        if entry is None or not isinstance(entry.get("event"), str) or not isinstance(entry.get("at"), str):
            continue
        if entry.keys() != {"at", "level", "event", "fields"} or line != orjson.dumps(entry) + b"\n":
            # An old-shape line: stored in today's shape so the ledger's columns agree with it.
            level, fields = entry["level"], dict(entry["fields"])
            if not (isinstance(level, str) and level.lower() in LEVELS):
                fields["level"], level = level, "info"  # an event field that had overwritten the level
            line = encode_entry(entry["event"], fields, level=level.lower(), at=decode_datetime(entry["at"]))
        lines.append(line)
    return lines


def migrate_state_dir(state_dir: str | os.PathLike[str], *, journal_keep: int = DEFAULT_JOURNAL_KEEP) -> Migration:
    """Write ``state_dir``'s ledger from its JSON state and journal; the originals are kept untouched."""
    files = RunFiles(Path(state_dir))
    if files.ledger.exists():
        raise StateError(f"{files.ledger} already exists: {state_dir} was migrated already (nothing changed)")
    if not files.legacy_state.exists():
        raise StateError(f"{files.legacy_state} does not exist: {state_dir} holds no JSON state to migrate")
    state = StateStore(files.root).load()
    if state is None:
        raise StateError(f"{files.legacy_state} holds no state to migrate")
    lines = _journal_lines(files.journal)
    kept = lines[-journal_keep:]
    ledger = Ledger(files.ledger, journal_keep=journal_keep)
    ledger.commit(state, kept)
    ledger.close()
    positions = sum(1 for _ in state.portfolio.all_positions())
    return Migration(ledger=files.ledger, positions=positions, journal_lines=len(kept),
                     journal_dropped=len(lines) - len(kept))
