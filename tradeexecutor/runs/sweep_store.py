"""A sweep's folder: its definition (``sweep.json``) and one line per finished point (``points.jsonl``), so a sweep resumes.

Layout of the ``--output`` folder::

    sweep.json      what was swept and over what: spec, strategy and data fingerprints, axes,
                    constraints, search, seed, trials, ranking, windows — and its fingerprint
    points.jsonl    one JSON row per finished point, appended as it arrives (PointResult.to_json)
    reports.json    point (canonical values) → the full run made for it (reports of the best N)
    results.csv, results.md, charts/, specs/     written when the sweep ends (runs.sweep_report)

Rows are appended and flushed one by one as points finish, and fsynced at least every
:data:`SYNC_SECONDS` and when the sweep ends or is interrupted: a Ctrl+C or a killed process
keeps every finished point (the operating system has the bytes); a power cut may lose the last
second, which ``--resume`` simply runs again.

``--resume`` reopens the folder only when its definition fingerprint equals the new sweep's — the
same spec, strategy, data, axes, constraints, search and windows — and skips every point whose
row is complete or error (a point whose worker was lost is run again). A last line cut short by
an interrupted write is dropped; any other unreadable line is refused with the file's name,
leaving the file untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from tradeexecutor.atomic import atomic_write_text
from tradeexecutor.errors import ConfigError
from tradeexecutor.layout import SweepFiles
from tradeexecutor.runs.sweep_eval import PointResult, canonical_values

__all__ = ["SYNC_SECONDS", "SweepFolder", "definition_fingerprint"]

#: Longest time finished rows may sit in the page cache before an fsync.
SYNC_SECONDS = 1.0


def definition_fingerprint(definition: Mapping[str, Any]) -> str:
    """sha256 of the definition's canonical JSON."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SweepFolder:
    """The ``--output`` folder of one sweep: open it (new or resumed), append rows, close it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: The names of its files.
        self.files = SweepFiles(self.path)
        self.points_path = self.files.points
        self.definition_path = self.files.definition
        self.reports_path = self.files.reports
        self._handle: IO[str] | None = None
        self._synced = 0.0

    def check(self, definition: Mapping[str, Any], *, resume: bool) -> dict[str, PointResult]:
        """Refuse a folder that holds another sweep (or nothing to resume); the rows already done, by point key.

        Reads only: nothing is written until :meth:`open`.
        """
        exists = self.definition_path.exists() or self.points_path.exists()
        if not resume:
            if exists:
                raise ConfigError(f"{self.path} already holds a sweep; add --resume to carry it on, or choose "
                                  "another --output")
            return {}
        if not exists:
            raise ConfigError(f"{self.path}: nothing to resume (no {self.definition_path.name}); run the sweep without --resume")
        try:
            stored = json.loads(self.definition_path.read_text(encoding="utf-8"))
            old = stored["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.definition_path}: not a readable sweep definition; left as it is") from None
        new = definition_fingerprint(definition)
        if old != new:
            before = stored.get("definition") or {}
            after = json.loads(json.dumps(dict(definition), default=str))
            changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
            raise ConfigError(f"{self.path} holds a different sweep (changed: {', '.join(changed) or 'definition'}); "
                              "resume with the same spec, data and options, or choose another --output")
        return self.kept()

    def kept(self) -> dict[str, PointResult]:
        """The points points.jsonl holds, done (not lost), by point key: what ``--resume`` skips."""
        done: dict[str, PointResult] = {}
        if not self.points_path.exists():
            return done
        raw = self.points_path.read_bytes()
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = PointResult.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                if number == len(lines) and not raw.endswith(b"\n"):
                    continue  # the last write was cut short: that point simply runs again
                raise ConfigError(f"{self.points_path}:{number}: not a point row; the file is left as it is "
                                  "(move it away to start the sweep afresh)") from None
            if row.status != "lost":
                done[canonical_values(row.values)] = row
        return done

    def open(self, definition: Mapping[str, Any], about: Mapping[str, Any] | None = None) -> None:
        """Create the folder, write sweep.json (once; ``about`` is kept beside the definition, not fingerprinted)
        and open points.jsonl for appending."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot make the sweep's folder ({exc.strerror or exc}); "
                              "choose another --output") from None
        if not self.definition_path.exists():
            atomic_write_text(self.definition_path, json.dumps(
                {"fingerprint": definition_fingerprint(definition), "definition": definition, **(about or {})},
                indent=2, sort_keys=True, default=str) + "\n")
        if self.points_path.exists():
            raw = self.points_path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # drop a torn last line before appending after it
                with open(self.points_path, "r+b") as handle:
                    handle.truncate(raw.rfind(b"\n") + 1)
        self._handle = open(self.points_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the sweep, closed by close()
        self._synced = time.monotonic()

    def append(self, row: PointResult) -> None:
        """Add one finished point (flushed now, fsynced at least every SYNC_SECONDS)."""
        assert self._handle is not None, "open() first"
        self._handle.write(json.dumps(row.to_json(), separators=(",", ":"), allow_nan=False) + "\n")
        self._handle.flush()
        if time.monotonic() - self._synced >= SYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        if self._handle is not None:
            self.sync()
            self._handle.close()
            self._handle = None

    def reports(self) -> dict[str, str]:
        """Point key → run id of the full runs already made for this sweep."""
        try:
            data = json.loads(self.reports_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise ConfigError(f"{self.reports_path}: not readable; left as it is") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save_reports(self, runs: Mapping[str, str]) -> None:
        atomic_write_text(self.reports_path, json.dumps(dict(runs), indent=2, sort_keys=True) + "\n")
