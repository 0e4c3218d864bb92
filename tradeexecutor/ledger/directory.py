"""The ledger of a state directory: where it is, and the one way readers load the state from it."""

from __future__ import annotations

import os
from pathlib import Path

from tradeexecutor.errors import StateError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger.ledger import Ledger
from tradeexecutor.state import State

__all__ = ["check_not_legacy", "load_state"]


def check_not_legacy(state_dir: str | os.PathLike[str]) -> None:
    """Refuse a directory that still holds only the JSON state of the layout before the ledger."""
    files = RunFiles(Path(state_dir))
    if files.legacy_state.exists() and not files.ledger.exists():
        raise StateError(
            f"{files.legacy_state} is a state in the layout before the ledger; convert it once with "
            f"`tradeexecutor state migrate {state_dir}` (the original files are kept), then start again")


def load_state(state_dir: str | os.PathLike[str]) -> State | None:
    """The committed state of a state directory (checked; StateError names the file), None when it has none."""
    check_not_legacy(state_dir)
    return Ledger(RunFiles(Path(state_dir)).ledger).load()
