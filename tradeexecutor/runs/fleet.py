"""The executors of a runs folder, for the wallboard: its paper and live runs that run, start or crashed.

Read-only: the registry is opened with SQLite's ``mode=ro`` (a missing registry is an empty
folder, never created) and each run's metadata.json is only read. A run that ended in error
stays listed, so a crash shows on the board until the run is reset or started again; runs that
completed or were stopped drop off (they are not executors any more). A backtest never has an
executor.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradeexecutor.layout import RunPaths
from tradeexecutor.runs.registry import BUSY_TIMEOUT_MS, REGISTRY_NAME, RegistryError
from tradeexecutor.runs.runner import spec_host

__all__ = ["FLEET_STATUSES", "FleetRun", "fleet_runs"]

#: Run statuses whose executor the wallboard shows.
FLEET_STATUSES = ("starting", "running", "error")


@dataclass(frozen=True)
class FleetRun:
    """One run with an executor."""

    run_id: str
    #: The ref, else the id.
    label: str
    name: str
    mode: str
    status: str
    #: The executor's webhook, None when no port is known yet.
    url: str | None
    #: The recorded error of a run that ended in error.
    error: str | None


def _rows(runs_dir: Path) -> list[dict[str, Any]]:
    path = runs_dir / REGISTRY_NAME
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise RegistryError(f"{path}: cannot open the run registry: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, ref, name, mode, status, port FROM runs ORDER BY id").fetchall()
        return [dict(row) for row in rows]
    except sqlite3.Error as exc:
        raise RegistryError(f"{path}: cannot read the run registry: {exc}") from None
    finally:
        conn.close()


def _metadata(paths: RunPaths) -> dict[str, Any]:
    try:
        meta = json.loads(paths.metadata.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def fleet_runs(runs_dir: Path) -> list[FleetRun]:
    """The paper and live runs of ``runs_dir`` in FLEET_STATUSES, oldest first."""
    found = []
    for row in _rows(Path(runs_dir)):
        if row["mode"] == "backtest" or row["status"] not in FLEET_STATUSES:
            continue
        paths = RunPaths(Path(runs_dir) / row["id"])
        meta = _metadata(paths)
        url = (meta.get("executor") or {}).get("url")
        if not url and row["port"]:
            url = f"http://{spec_host(paths)}:{row['port']}"
        error = meta.get("error") if row["status"] == "error" else None
        found.append(FleetRun(run_id=row["id"], label=row["ref"] or row["id"], name=row["name"], mode=row["mode"],
                              status=row["status"], url=url, error=str(error) if error else None))
    return found
