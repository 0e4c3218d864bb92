"""The executors of a runs folder, for the wallboard: its replay, paper and live runs that run, start or crashed.

Read-only: the registry is read with :func:`~tradeexecutor.runs.registry.read_rows` (a missing
registry is an empty folder, never created) and each run's metadata.json is only read. A run that ended in error
stays listed, so a crash shows on the board until the run is reset or started again; runs that
completed or were stopped drop off (they are not executors any more). A backtest never has an
executor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradeexecutor.layout import RunPaths
from tradeexecutor.runs.registry import read_rows
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


def _metadata(paths: RunPaths) -> dict[str, Any]:
    try:
        meta = json.loads(paths.metadata.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def fleet_runs(runs_dir: Path) -> list[FleetRun]:
    """The replay, paper and live runs of ``runs_dir`` in FLEET_STATUSES, oldest first."""
    found = []
    for row in read_rows(Path(runs_dir), ("id", "ref", "name", "mode", "status", "port")):
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
