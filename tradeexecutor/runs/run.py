"""Run folders: create, pin, fingerprint, edit, copy and reset runs, and record their lifecycle.

The folder layout is a contract (the metrics and report writers rely on it)::

    <runs_dir>/registry.sqlite         every run, its unique ref and status (runs.registry)
    <runs_dir>/<run_id>/
        run_spec.yaml     the spec, resolved: every key, data paths absolute, strategy_file: strategy.py
                          (folders made before 0.2 call it spec.yaml; they are read as they are)
        strategy.py       the pinned strategy source; the run always executes this copy
        metadata.json     run_id, ref, name, mode, status, timeline [{event, at}], created_at, started_at,
                          stopped_at, strategy_version, fingerprints {config, data {file: sha256}, code,
                          package_version}, source, copied_from, executor {pid, port, url}, summary, error
        journal.jsonl     the run's journal: lifecycle events (and a backtest's order events)
        state/            the executor's state dir: ledger.sqlite, journal.jsonl, crash.json, public/ and the last
                          reconciliation.json (every executor start writes one; a backtest has none)
        executor.log      stdout and stderr of a replay or paper run's executor
        orders.csv, metrics.json, metrics.prom, report.md, report.html, charts/, readiness.json

Lifecycle: ``new → starting → running → complete | stopped | error``. Every change goes through
:meth:`Runs.record` inside the registry's ``BEGIN IMMEDIATE`` transaction, so metadata.json, the
registry row and the journal stay in step even with several runner commands at once; every file
is written crash-safely (temp file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import yaml

import tradeexecutor
from tradeexecutor.atomic import atomic_write_bytes, atomic_write_text, deferred_directory_fsyncs, fsync_directory
from tradeexecutor.errors import ConfigError
from tradeexecutor.layout import STRATEGY_FILE, RunPaths
from tradeexecutor.runs.registry import Registry, RunRecord, RunsError, check_ref
from tradeexecutor.store.journal import Journal, encode_entry

if TYPE_CHECKING:
    from tradeexecutor.runs.spec import RunSpec

__all__ = [
    "ACTIVE_STATUSES",
    "STATUSES",
    "Runs",
    "StagedRun",
    "data_fingerprints",
    "default_runs_dir",
    "iso_time",
    "new_run_id",
    "process_alive",
    "read_metadata",
    "record_in_folder",
    "remove_abandoned_staging",
]

#: Every status a run can have, in lifecycle order.
STATUSES = ("new", "starting", "running", "complete", "stopped", "error")
#: Statuses during which a process works on the run.
ACTIVE_STATUSES = ("starting", "running")
#: Environment variable naming the runs folder.
RUNS_DIR_ENV = "TRADEEXECUTOR_RUNS_DIR"
#: Spec keys ``runs set`` may change (besides every key of environment, strategy and core).
SETTABLE_TOP_KEYS = ("mode", "name")
#: The status a step of a new folder's timeline set, as its journal entry says (record() writes the same).
_JOURNAL_STATUS = {"created": "new", "start_requested": "starting", "started": "running"}


def default_runs_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$TRADEEXECUTOR_RUNS_DIR`` or ``./runs``."""
    return Path(env.get(RUNS_DIR_ENV) or "runs")


def new_run_id(now: datetime | None = None) -> str:
    """``r`` + UTC date and time + 4 random hex digits: short, unique enough, sortable by creation."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"r{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _now() -> datetime:
    return datetime.now(UTC)


def iso_time(moment: datetime) -> str:
    """A run's timeline time: UTC ISO 8601 with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")



def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprints(spec: RunSpec, instruments: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every data file the run reads (a bundled dataset by its file), by path."""
    from tradeexecutor.data.bundled import BUNDLED_DATASETS, bundled_for_symbols

    sources = list(spec.environment.data)
    if not sources:
        bundled = bundled_for_symbols(list(instruments))
        sources = [bundled] if bundled else []
    result: dict[str, str] = {}
    for source in sources:
        path = BUNDLED_DATASETS[source].path if source in BUNDLED_DATASETS else Path(source)
        if path.is_file():
            result[str(path)] = sha256_file(path)
    return result


def process_alive(pid: int | None) -> bool:
    """True while ``pid`` is a live (not zombie) process that looks like ours."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            try:
                os.waitpid(pid, os.WNOHANG)  # our own child: reap it
            except ChildProcessError:
                pass
            return False
        try:
            command = " ".join(process.cmdline())
        except (psutil.AccessDenied, psutil.ZombieProcess):
            return True
        return "tradeexecutor" in command or "python" in command.lower() or not command
    except psutil.NoSuchProcess:
        return False


#: A ``.creating-RUN`` folder with no readable metadata.json is abandoned once it is this old (its first files are
#: written within milliseconds of the folder).
STAGING_GRACE_SECONDS = 3600.0


def remove_abandoned_staging(runs_dir: Path) -> list[str]:
    """Remove the hidden ``.creating-RUN`` folders (:meth:`Runs.stage`) whose builder is gone; their names.

    A sweep's full run is built there and renamed into place when finished; a ``kill -9`` (or a pool
    worker stopped on Ctrl+C) leaves it behind, never listed. One is abandoned when the process that
    staged it (its metadata's executor pid) is no longer alive — another sweep still building into the
    same runs folder keeps its own — or, without readable metadata, when it is older than
    :data:`STAGING_GRACE_SECONDS`.
    """
    removed: list[str] = []
    try:
        folders = [path for path in Path(runs_dir).iterdir() if path.name.startswith(".creating-") and path.is_dir()]
    except FileNotFoundError:
        return removed
    for folder in sorted(folders):
        try:
            meta = json.loads(RunPaths(folder).metadata.read_text(encoding="utf-8"))
            pid = meta["executor"]["pid"]
            abandoned = not process_alive(pid if isinstance(pid, int) else None)
        except (OSError, ValueError, KeyError, TypeError):
            try:
                abandoned = datetime.now(UTC).timestamp() - folder.stat().st_mtime > STAGING_GRACE_SECONDS
            except FileNotFoundError:
                continue
        if abandoned and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _spec_text(spec: RunSpec, header: str) -> str:
    data = spec.to_dict()
    data["strategy_file"] = STRATEGY_FILE
    from tradeexecutor.runs.spec import dump_spec

    body = dump_spec(data)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


def write_json(path: Path, payload: Any) -> None:
    """JSON, crash-safely."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def read_metadata(paths: RunPaths, run_id: str) -> dict[str, Any]:
    """A run folder's metadata.json (RunsError when it is missing or damaged)."""
    path = paths.metadata
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise RunsError(f"run {run_id}: {path} is missing; the run folder is incomplete") from None
    except ValueError as exc:
        raise RunsError(f"run {run_id}: {path} is not valid JSON: {exc}") from None


def record_in_folder(paths: RunPaths, run_id: str, event: str, *, at: str, status: str | None = None,
                     level: str = "info", detail: str | None = None, pid: int | str | None = "keep",
                     port: int | str | None = "keep", preceded_by: Sequence[tuple[str, str | None]] = (),
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What :meth:`Runs.record` writes into the run's folder (metadata.json, one journal append); the new metadata.

    Also used on a staged run's hidden folder (runs.sweep_runs), whose registry row comes later.
    """
    meta = read_metadata(paths, run_id)
    timeline = meta.setdefault("timeline", [])
    timeline.extend({"event": earlier, "at": at} for earlier, _ in preceded_by)
    entry: dict[str, Any] = {"event": event, "at": at}
    if detail:
        entry["detail"] = detail
    timeline.append(entry)
    if status is not None:
        meta["status"] = status
    if event == "started":
        meta["started_at"] = at
    if status in ("complete", "stopped", "error"):
        meta["stopped_at"] = at
    if status == "error" and detail:
        meta["error"] = detail
    executor = dict(meta.get("executor") or {})
    if pid != "keep":
        executor["pid"] = pid
    if port != "keep":
        executor["port"] = port
    if executor:
        meta["executor"] = executor
    meta.update(metadata or {})
    write_json(paths.metadata, meta)
    fields: dict[str, Any] = {"run_id": run_id}
    if status is not None:
        fields["status"] = status
    if detail:
        fields["detail"] = detail
    lines = [encode_entry(earlier, {"run_id": run_id, **({"status": was} if was else {})})
             for earlier, was in preceded_by]
    lines.append(encode_entry(event, fields, level=level))
    Journal(paths.journal).append_encoded(b"".join(lines))  # one fsync
    return meta


@dataclass(frozen=True)
class StagedRun:
    """A run built out of sight by :meth:`Runs.stage`: its future registry row and its hidden folder."""

    record: RunRecord
    paths: RunPaths
    #: The pinned spec as :func:`~tradeexecutor.runs.spec.load_spec` reads it back from the folder (its strategy file
    #: the pinned ``strategy.py``): the staged run's backtest runs it without parsing and validating the file again,
    #: which would load the strategy module twice more (tests/test_runs_optimize.py reads every one back to compare).
    spec: RunSpec = field(compare=False, repr=False)


class Runs:
    """The runs of one runs folder: the registry plus each run's folder."""

    def __init__(self, runs_dir: Path, *, env: Mapping[str, str] = os.environ,
                 clock: Callable[[], datetime] = _now) -> None:
        #: The runs folder, absolute: a replay or paper run's supervisor and executor run inside the run's folder,
        #: where a relative ``runs`` would name another folder.
        self.runs_dir = Path(runs_dir).absolute()
        #: Environment variables that override spec values at creation.
        self.env = env
        self.clock = clock
        self.registry = Registry(self.runs_dir)

    def close(self) -> None:
        self.registry.close()

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs_dir / run_id)

    # -- reading ---------------------------------------------------------------------------------

    def metadata(self, run_id: str) -> dict[str, Any]:
        """The run's metadata.json."""
        return read_metadata(self.paths(run_id), run_id)

    def resolve(self, ref_or_id: str) -> RunRecord:
        """The run with this id or ref, its status brought up to date."""
        return self.reconcile(self.registry.resolve(ref_or_id))

    def all(self) -> list[RunRecord]:
        """Every run, oldest first, statuses brought up to date."""
        return [self.reconcile(record) for record in self.registry.all()]

    def load_run_spec(self, run_id: str) -> RunSpec:
        """The run's pinned spec (running its pinned strategy.py); environment variables do not apply."""
        from tradeexecutor.runs.spec import load_spec

        return load_spec(self.paths(run_id).spec, env={})

    def reconcile(self, record: RunRecord) -> RunRecord:
        """A run that says it is starting or running but whose process is gone ended in error."""
        if record.status not in ACTIVE_STATUSES or record.pid is None or process_alive(record.pid):
            return record
        with self.registry.transaction():
            fresh = self.registry.get(record.id)
            if fresh is None or fresh.status not in ACTIVE_STATUSES or fresh.pid != record.pid:
                return fresh or record
            self.record(record.id, "error", status="error", level="error", pid=None,
                        detail=f"the process running it (pid {record.pid}) ended without recording an outcome")
            return self.registry.get(record.id) or record

    def journal_entries(self, run_id: str, *, since: datetime | None = None, limit: int = 100,
                        level: str | None = None) -> list[dict[str, Any]]:
        """The newest entries of the run's journal and its executor's journal, merged by time, oldest first."""
        paths = self.paths(run_id)
        entries = Journal(paths.journal).read(since=since, limit=limit, level=level)
        if paths.state_files.journal.exists():
            entries += Journal(paths.state_files.journal).read(since=since, limit=limit, level=level)
            entries.sort(key=lambda entry: str(entry.get("at", "")))
        return entries[-limit:]

    # -- recording -------------------------------------------------------------------------------

    @contextmanager
    def locked(self, ref_or_id: str) -> Iterator[RunRecord]:
        """The run, with the registry's write lock held until the block ends."""
        with self.registry.transaction():
            yield self.registry.resolve(ref_or_id)

    def record(self, run_id: str, event: str, *, status: str | None = None, level: str = "info",
               detail: str | None = None, pid: int | str | None = "keep", port: int | str | None = "keep",
               when: datetime | None = None, preceded_by: Sequence[tuple[str, str | None]] = (),
               **metadata: Any) -> dict[str, Any]:
        """Append ``event`` to the timeline and the journal, set the status and metadata fields; one transaction.

        ``when`` (default now) lets a caller that wrote artifacts of this moment first record the same time.
        ``preceded_by``: (event, status) steps that happened at the same moment just before ``event``,
        recorded in the same transaction, metadata.json write and journal append (an in-process
        backtest's ``start_requested`` before ``started``); the status ends as ``status``.
        """
        with self.registry.transaction():
            at = iso_time(when or self.clock())
            meta = record_in_folder(self.paths(run_id), run_id, event, at=at, status=status, level=level,
                                    detail=detail, pid=pid, port=port, preceded_by=preceded_by, metadata=metadata)
            row: dict[str, Any] = {"updated_at": at}
            if status is not None:
                row["status"] = status
            if pid != "keep":
                row["pid"] = pid
            if port != "keep":
                row["port"] = port
            for key in ("name", "mode", "ref"):
                if key in metadata:
                    row[key] = metadata[key]
            self.registry.update(run_id, **row)
            return meta

    def journal(self, run_id: str, event: str, fields: Mapping[str, Any] | None = None, /, *,
                level: str = "info") -> None:
        """Append one entry to the run's journal (no status change); ``fields`` may use any names."""
        Journal(self.paths(run_id).journal).append(event, {"run_id": run_id, **(fields or {})}, level=level)

    # -- create ----------------------------------------------------------------------------------

    def create(self, spec_path: Path, *, ref: str | None = None, upsert: bool = False,
               then: tuple[str, str] | None = None,
               **metadata: Any) -> tuple[RunRecord, bool]:
        """A new run from the spec file (or, with ``upsert``, the new run holding ``ref`` updated); (run, created).

        Everything is validated before anything is written; a failure leaves no folder behind.
        ``then`` (event, detail) and ``metadata`` are recorded as a :meth:`record` right after
        ``created`` would, but in the new folder's own writes (a sweep's ``swept`` with its point).
        """
        from tradeexecutor.runs.spec import load_spec

        if ref is not None:
            check_ref(ref)
        if upsert and ref is None:
            raise RunsError("--upsert needs --ref: it updates the run holding that ref while it is new")
        spec = load_spec(spec_path, env=self.env)
        strategy = spec.load_strategy()
        name = spec.name or strategy.name
        source_info = {"spec": str(Path(spec_path).resolve()), "strategy_file": str(spec.strategy_file)}
        fingerprints = self._fingerprints(spec, strategy.source, strategy.instruments)
        header = (f"Run spec pinned from {source_info['spec']}\n"
                  f"(strategy {source_info['strategy_file']}; environment overrides applied at creation).")
        with self.registry.transaction():
            existing = self.registry.find_ref(ref) if ref is not None else None
            if existing is not None:
                if not upsert:
                    raise RunsError(f"ref {ref!r} is taken by run {existing.id} ({existing.status}); choose another "
                                    "ref, or pass --upsert to update that run while it is new")
                if existing.status != "new":
                    raise RunsError(f"run {ref} is {existing.status}: only a new run can be updated; reset it "
                                    f"(runs reset {ref}) or make another with a new ref")
                paths = self.paths(existing.id)
                atomic_write_text(paths.strategy, strategy.source)
                atomic_write_text(paths.spec, _spec_text(spec, header))
                self.record(existing.id, "updated", detail=f"from {source_info['spec']}", name=name,
                            mode=spec.mode, strategy_name=strategy.name, strategy_version=strategy.version,
                            fingerprints=fingerprints, source=source_info)
                if then is not None:
                    self.record(existing.id, then[0], detail=then[1], **metadata)
                return self.registry.get(existing.id) or existing, False
            run_id = self._free_id()
            meta = self._initial_metadata(run_id, ref, name, spec.mode, strategy, fingerprints, source_info, then=then,
                                          started_by=None, metadata=metadata)
            self._write_folder(run_id, meta, spec_text=_spec_text(spec, header),
                               strategy_bytes=strategy.source.encode("utf-8"))
            record = RunRecord(id=run_id, ref=ref, name=name, mode=spec.mode, status=meta["status"],
                               created_at=meta["created_at"], updated_at=meta["created_at"])
            self._insert(record)
            return record, True

    def stage(self, spec_path: Path, *, ref: str | None = None, then: tuple[str, str] | None = None,
              started_by: int, **metadata: Any) -> StagedRun:
        """The folder :meth:`create` would make, already started by process ``started_by``, built as ``.creating-RUN``.

        Neither renamed into place nor registered: for a sweep's full runs (runs.sweep_runs). The
        timeline goes on with ``start_requested`` and ``started`` at the moment of ``created`` (and
        ``then``), as a start in this process would record them; the backtest runs into the hidden folder, which
        :meth:`commit_staged` renames into place with its registry row once it is finished and
        fsynced, so a crash leaves no half run — only a hidden folder no command lists.
        """
        from tradeexecutor.runs.spec import load_spec

        if ref is not None:
            check_ref(ref)
            owner = self.registry.find_ref(ref)
            if owner is not None:
                raise RunsError(f"ref {ref!r} is taken by run {owner.id} ({owner.status}); choose another ref")
        spec = load_spec(spec_path, env=self.env)
        strategy = spec.load_strategy()
        name = spec.name or strategy.name
        source_info = {"spec": str(Path(spec_path).resolve()), "strategy_file": str(spec.strategy_file)}
        fingerprints = self._fingerprints(spec, strategy.source, strategy.instruments)
        header = (f"Run spec pinned from {source_info['spec']}\n"
                  f"(strategy {source_info['strategy_file']}; environment overrides applied at creation).")
        run_id = self._free_id()
        meta = self._initial_metadata(run_id, ref, name, spec.mode, strategy, fingerprints, source_info, then=then,
                                      started_by=started_by, metadata=metadata)
        building = self._build_folder(run_id, meta, spec_text=_spec_text(spec, header),
                                      strategy_bytes=strategy.source.encode("utf-8"))
        record = RunRecord(id=run_id, ref=ref, name=name, mode=spec.mode, status=meta["status"],
                           created_at=meta["created_at"], updated_at=meta["created_at"], pid=started_by)
        pinned = replace(spec, strategy_file=building.strategy.resolve(), source=building.spec)
        return StagedRun(record=record, paths=building, spec=pinned)

    def commit_staged(self, staged: Sequence[StagedRun]) -> list[tuple[StagedRun, str | None]]:
        """Rename finished staged folders into place, then register them all in one transaction; (run, error) each.

        The folders must be complete and fsynced (runs.sweep_runs builds them inside
        :func:`tradeexecutor.atomic.deferred_fsyncs`). The runs folder is fsynced once, after the
        renames and before the rows: a row never names a folder a power cut could lose. A run whose
        ref was taken meanwhile is removed, with its error.
        """
        placed: list[StagedRun] = []
        outcomes: list[tuple[StagedRun, str | None]] = []
        for run in staged:
            try:
                os.rename(run.paths.root, self.runs_dir / run.record.id)
                placed.append(run)
            except OSError as exc:
                shutil.rmtree(run.paths.root, ignore_errors=True)
                outcomes.append((run, f"cannot move {run.paths.root} into place: {exc}"))
        if not placed:
            return outcomes
        fsync_directory(self.runs_dir)
        with self.registry.transaction():
            for run in placed:
                try:
                    self.registry.insert(run.record)
                    outcomes.append((run, None))
                except Exception as exc:  # noqa: BLE001 - a taken ref (or id): no folder stays without its row
                    shutil.rmtree(self.runs_dir / run.record.id, ignore_errors=True)
                    outcomes.append((run, str(exc)))
        return outcomes

    def _initial_metadata(self, run_id: str, ref: str | None, name: str, mode: str, strategy: Any,
                          fingerprints: dict[str, Any], source_info: dict[str, Any], *, then: tuple[str, str] | None,
                          started_by: int | None, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """A new run's metadata.json: created, then ``then`` and, with ``started_by``, already started (see create)."""
        meta = self._new_metadata(run_id, ref, name, mode, self.clock(), strategy.name, strategy.version,
                                  fingerprints, source_info, copied_from=None)
        if then is not None:
            meta["timeline"].append({"event": then[0], "at": meta["created_at"], "detail": then[1]})
            meta.update(metadata)
        if started_by is not None:
            meta["timeline"] += [{"event": "start_requested", "at": meta["created_at"]},
                                 {"event": "started", "at": meta["created_at"]}]
            meta.update(status="running", started_at=meta["created_at"],
                        executor={**meta["executor"], "pid": started_by})
        return meta

    def _fingerprints(self, spec: RunSpec, source: str, instruments: tuple[str, ...]) -> dict[str, Any]:
        from tradeexecutor.strategy.loader import strategy_version

        return {"config": spec.config_fingerprint(), "data": data_fingerprints(spec, instruments),
                "code": strategy_version(source), "package_version": tradeexecutor.__version__}

    def _free_id(self) -> str:
        while True:
            run_id = new_run_id(self.clock())
            if self.registry.get(run_id) is None and not (self.runs_dir / run_id).exists():
                return run_id

    def _new_metadata(self, run_id: str, ref: str | None, name: str, mode: str, created: datetime,
                      strategy_name: str, version: str, fingerprints: dict[str, Any], source: dict[str, Any],
                      copied_from: str | None) -> dict[str, Any]:
        at = iso_time(created)
        timeline: list[dict[str, Any]] = [{"event": "created", "at": at}]
        if copied_from:
            timeline[0]["detail"] = f"copy of {copied_from}"
        return {
            "run_id": run_id, "ref": ref, "name": name, "mode": mode, "status": "new", "timeline": timeline,
            "created_at": at, "started_at": None, "stopped_at": None, "strategy_name": strategy_name,
            "strategy_version": version, "fingerprints": fingerprints, "source": source, "copied_from": copied_from,
            "executor": {"pid": None, "port": None, "url": None}, "summary": None, "error": None,
        }

    def _write_folder(self, run_id: str, meta: dict[str, Any], *, spec_text: str, strategy_bytes: bytes) -> None:
        """Build the folder under a temporary name and rename it into place: all or nothing."""
        building = self._build_folder(run_id, meta, spec_text=spec_text, strategy_bytes=strategy_bytes)
        try:
            os.rename(building.root, self.runs_dir / run_id)
        except BaseException:
            shutil.rmtree(building.root, ignore_errors=True)
            raise
        fsync_directory(self.runs_dir)

    def _build_folder(self, run_id: str, meta: dict[str, Any], *, spec_text: str, strategy_bytes: bytes) -> RunPaths:
        """The run's folder as ``.creating-RUN`` (spec, strategy, metadata, journal, empty state/), fsynced."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        building = RunPaths(self.runs_dir / f".creating-{run_id}")
        building.root.mkdir()
        try:
            with deferred_directory_fsyncs():  # the folder is fsynced once, before it is renamed into place
                atomic_write_text(building.spec, spec_text)
                atomic_write_bytes(building.strategy, strategy_bytes)
                write_json(building.metadata, meta)
                building.state.mkdir()
                # created (and what create was told came then), with the status each step set, as record() writes it
                lines = [encode_entry(entry["event"], {"run_id": run_id,
                                                       **({"status": _JOURNAL_STATUS[entry["event"]]}
                                                          if entry["event"] in _JOURNAL_STATUS else {}),
                                                       **({"detail": entry["detail"]} if entry.get("detail") else {})})
                         for entry in meta["timeline"]]
                Journal(building.journal).append_encoded(b"".join(lines))
        except BaseException:
            shutil.rmtree(building.root, ignore_errors=True)
            raise
        return building

    def _insert(self, record: RunRecord) -> None:
        try:
            self.registry.insert(record)
        except BaseException:  # a taken ref or id (or anything else): no folder without its row
            shutil.rmtree(self.runs_dir / record.id, ignore_errors=True)
            raise

    # -- edit, copy, reset -----------------------------------------------------------------------

    def set_values(self, ref_or_id: str, assignments: list[str]) -> RunRecord:
        """Change spec keys (``core.fee=0.002``, ``strategy.fast=5``, ``mode=replay``) of a run that is still new."""
        from tradeexecutor.runs.spec import spec_from_dict

        if not assignments:
            raise RunsError("give at least one key=value, such as core.fee=0.002 or strategy.fast=5")
        with self.locked(ref_or_id) as record:
            if record.status != "new":
                raise RunsError(f"run {record.label} is {record.status}: its config was pinned when it started; "
                                f"copy it (runs copy {record.label}) and change the copy")
            paths = self.paths(record.id)
            data = yaml.safe_load(paths.spec.read_text(encoding="utf-8")) or {}
            for assignment in assignments:
                key, sep, text = assignment.partition("=")
                key = key.strip()
                if not sep or not key:
                    raise RunsError(f"{assignment!r} must look like key=value, such as core.fee=0.002")
                _assign(data, key, yaml.safe_load(text) if text.strip() else None)
            spec = spec_from_dict(data, base_dir=paths.root, env={}, source=paths.spec)
            strategy = spec.load_strategy()
            header = paths.spec.read_text(encoding="utf-8").split("\n", 2)
            comment = "\n".join(line[2:] for line in header[:2] if line.startswith("# "))
            atomic_write_text(paths.spec, _spec_text(spec, comment or "Run spec"))
            meta = self.metadata(record.id)
            fingerprints = {**meta.get("fingerprints", {}),
                            **{k: v for k, v in self._fingerprints(spec, strategy.source, strategy.instruments).items()
                               if k in ("config", "data")}}
            name = spec.name or strategy.name
            self.record(record.id, "updated", detail=" ".join(assignments), name=name, mode=spec.mode,
                        fingerprints=fingerprints)
            return self.registry.get(record.id) or record

    def copy(self, ref_or_id: str, *, ref: str | None = None) -> RunRecord:
        """A new run with the same pinned strategy and config (status new, new id)."""
        from tradeexecutor.runs.spec import load_spec

        if ref is not None:
            check_ref(ref)
        source = self.registry.resolve(ref_or_id)
        source_paths = self.paths(source.id)
        spec_bytes = source_paths.spec.read_bytes()
        strategy_bytes = source_paths.strategy.read_bytes()
        spec = load_spec(source_paths.spec, env={})  # the copy must be valid as it is
        strategy = spec.load_strategy()
        old = self.metadata(source.id)
        fingerprints = self._fingerprints(spec, strategy.source, strategy.instruments)
        with self.registry.transaction():
            run_id = self._free_id()
            meta = self._new_metadata(run_id, ref, source.name, source.mode, self.clock(), strategy.name,
                                      strategy.version, fingerprints, dict(old.get("source") or {}),
                                      copied_from=source.id)
            self._write_folder(run_id, meta, spec_text=spec_bytes.decode("utf-8"), strategy_bytes=strategy_bytes)
            record = RunRecord(id=run_id, ref=ref, name=source.name, mode=source.mode, status="new",
                               created_at=meta["created_at"], updated_at=meta["created_at"])
            self._insert(record)
        self.journal(source.id, "copied", {"to": run_id})
        return record

    def reset(self, ref_or_id: str) -> RunRecord:
        """Clear a backtest's, replay's or paper run's results (state/, artifacts) so it can start fresh; refused for live."""
        with self.locked(ref_or_id) as record:
            record = self.reconcile(record)
            if record.mode == "live":
                raise RunsError(f"run {record.label} is a live run: reset is refused, its state records real "
                                "positions; copy it to start a new run")
            if record.status in ACTIVE_STATUSES:
                raise RunsError(f"run {record.label} is {record.status}; stop it first (runs stop {record.label})")
            paths = self.paths(record.id)
            trash = paths.root / f".reset-{secrets.token_hex(4)}"
            trash.mkdir()
            for target in paths.results:
                if target.exists():
                    os.rename(target, trash / target.name)
            paths.state.mkdir()
            fsync_directory(paths.root)
            self.record(record.id, "reset", status="new", started_at=None, stopped_at=None, summary=None, error=None,
                        pid=None, port=None, executor={"pid": None, "port": None, "url": None})
        shutil.rmtree(trash, ignore_errors=True)
        return self.registry.get(record.id) or record

    # -- pinning ---------------------------------------------------------------------------------

    def check_pinned(self, record: RunRecord) -> list[str]:
        """Refuse a run whose pinned strategy.py changed since creation; notes about an edited original file."""
        from tradeexecutor.strategy.loader import strategy_version

        paths = self.paths(record.id)
        meta = self.metadata(record.id)
        pinned = (meta.get("fingerprints") or {}).get("code")
        try:
            current = strategy_version(paths.strategy.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunsError(f"run {record.label}: its pinned strategy {paths.strategy} is missing") from None
        if pinned and current != pinned:
            raise RunsError(
                f"run {record.label}: its pinned strategy {paths.strategy} no longer matches the version the run "
                f"was created with (sha256 {pinned[:12]}, now {current[:12]}); a run never changes its code: "
                f"copy it to a new run (tradeexecutor runs copy {record.label}) to run the edited strategy")
        notes = []
        original = Path((meta.get("source") or {}).get("strategy_file") or "")
        if original.name and original.is_file():
            try:
                if strategy_version(original.read_text(encoding="utf-8")) != current:
                    notes.append(f"note: {original} changed since run {record.label} was created; the run keeps its "
                                 f"pinned copy ({current[:12]}); create a new run to use the edited file")
            except (OSError, UnicodeDecodeError):
                pass
        return notes


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``section.key`` (or a top-level key) in a spec dict, refusing the keys that are pinned."""
    parts = key.split(".")
    if parts[0] == "strategy_file":
        raise RunsError("strategy_file cannot change: a run pins its strategy; create a new run from a spec")
    if len(parts) == 1:
        if parts[0] not in SETTABLE_TOP_KEYS:
            raise ConfigError(f"{key}: not a settable key; use mode, name or a section key such as core.fee, "
                              "environment.start or strategy.fast")
        data[parts[0]] = value
        return
    if len(parts) != 2 or parts[0] not in ("environment", "strategy", "core"):
        raise ConfigError(f"{key}: unknown key; use mode, name, environment.<key>, strategy.<parameter> or "
                          "core.<key>")
    section = data.get(parts[0])
    if not isinstance(section, dict):
        section = data[parts[0]] = {}
    section[parts[1]] = value
