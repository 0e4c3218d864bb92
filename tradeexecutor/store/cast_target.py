"""Where an executor casts its charts: ``<state dir>/cast.json``, written by ``runs cast`` or the executor itself.

The file survives restarts: an executor reads it at start-up, and again whenever it changed
(a stat per job), so a target set while the executor was down, starting, or unreachable over
HTTP is still taken up. ``{"target": null}`` (or no file) means not casting::

    {"target": "/wallboard/page1/chart1", "set_at": "2024-05-01T12:00:00+00:00", "by": "runs cast"}

Written crash-safely (temp file, fsync, rename). A file that cannot be read is refused with its
name and never overwritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tradeexecutor.atomic import atomic_write_text
from tradeexecutor.errors import StateCorruptError

__all__ = ["CastTarget", "CastTargetFile"]


@dataclass(frozen=True)
class CastTarget:
    """The recorded target."""

    #: A wallboard path or URL; None: not casting.
    target: str | None
    #: When it was set (ISO text, UTC), "" when unknown.
    set_at: str = ""
    #: Who set it: "runs cast", "control", ...
    by: str = ""


class CastTargetFile:
    """The cast.json of one state directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def signature(self) -> tuple[int, int, int] | None:
        """(mtime ns, size, inode) of the file, None when it does not exist: cheap change detection."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def read(self) -> CastTarget | None:
        """The recorded target, None without a file; StateCorruptError naming the file when it is damaged."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateCorruptError(f"{self.path}: cannot read the cast target: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateCorruptError(f"{self.path}: not valid JSON ({exc}); fix or delete it") from None
        target = data.get("target") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not (target is None or isinstance(target, str)):
            raise StateCorruptError(f"{self.path}: expected {{\"target\": <path, URL or null>}}; fix or delete it")
        return CastTarget(target or None, str(data.get("set_at") or ""), str(data.get("by") or ""))

    def write(self, target: str | None, by: str, now: datetime | None = None) -> CastTarget:
        """Record ``target`` (None: stop); refuses (StateCorruptError) to replace a file it cannot read."""
        self.read()  # never overwrite what could not be read
        record = CastTarget(target, (now or datetime.now(UTC)).astimezone(UTC).isoformat(), by)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"target": record.target, "set_at": record.set_at,
                                                 "by": record.by}, indent=2) + "\n")
        return record
