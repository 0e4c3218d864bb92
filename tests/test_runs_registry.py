"""The run registry: WAL SQLite, unique refs, transactions, and many runner commands at once."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tradeexecutor.runs.registry import (
    RUN_ID_PATTERN,
    Registry,
    RegistryError,
    RunRecord,
    RunsError,
    check_ref,
)
from tradeexecutor.runs.run import Runs, new_run_id

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "strategies" / "specs" / "sma_crossover_backtest.yaml"


def record(run_id: str, ref: str | None = None, status: str = "new") -> RunRecord:
    return RunRecord(id=run_id, ref=ref, name="SMA", mode="backtest", status=status,
                     created_at="2024-05-01T12:00:00+00:00")


def test_run_ids_are_short_sortable_and_distinct() -> None:
    ids = [new_run_id() for _ in range(200)]
    assert all(RUN_ID_PATTERN.match(run_id) and len(run_id) == 21 for run_id in ids)
    assert len(set(ids)) > 190
    from datetime import UTC, datetime

    early, late = new_run_id(datetime(2024, 1, 2, tzinfo=UTC)), new_run_id(datetime(2024, 1, 10, tzinfo=UTC))
    assert early < late and early.startswith("r20240102-000000-")


def test_rows_refs_and_lookups(tmp_path: Path) -> None:
    with Registry(tmp_path) as registry:
        with registry.transaction():
            registry.insert(record("r20240501-120000-aaaa", "sma"))
            registry.insert(record("r20240501-120001-bbbb"))
        assert registry.resolve("sma").id == "r20240501-120000-aaaa"
        assert registry.resolve("r20240501-120001-bbbb").ref is None
        assert [r.id for r in registry.all()] == ["r20240501-120000-aaaa", "r20240501-120001-bbbb"]
        with pytest.raises(RunsError, match="ref 'sma' is taken by run r20240501-120000-aaaa"):
            registry.insert(record("r20240501-120002-cccc", "sma"))
        with pytest.raises(RunsError, match=r"no run with id or ref 'nope' .*runs ls"):
            registry.resolve("nope")
        with registry.transaction():
            registry.update("r20240501-120001-bbbb", status="running", pid=123, port=8000, updated_at="x")
        assert registry.get("r20240501-120001-bbbb") == RunRecord(
            id="r20240501-120001-bbbb", ref=None, name="SMA", mode="backtest", status="running",
            created_at="2024-05-01T12:00:00+00:00", updated_at="x", pid=123, port=8000)
        with pytest.raises(RunsError, match="is taken by another run"):
            registry.update("r20240501-120001-bbbb", ref="sma")


def test_the_database_is_wal_with_a_busy_timeout_and_unique_refs(tmp_path: Path) -> None:
    with Registry(tmp_path) as registry:
        registry.all()
        conn = registry._connect()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    raw = sqlite3.connect(tmp_path / "registry.sqlite")
    raw.execute("INSERT INTO runs (id, ref, name, mode, status, created_at, updated_at) "
                "VALUES ('a', 'x', 'n', 'replay', 'new', 't', 't')")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO runs (id, ref, name, mode, status, created_at, updated_at) "
                    "VALUES ('b', 'x', 'n', 'replay', 'new', 't', 't')")
    raw.close()


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with Registry(tmp_path) as registry:
        with pytest.raises(RuntimeError), registry.transaction():
            registry.insert(record("r20240501-120000-aaaa", "sma"))
            with registry.transaction():  # nested: joins the outer one
                registry.insert(record("r20240501-120001-bbbb"))
            raise RuntimeError("boom")
        assert registry.all() == []


def test_refs_are_checked(tmp_path: Path) -> None:
    assert check_ref("sma-2024_v1.2") == "sma-2024_v1.2"
    for bad in ("", "1abc", "has space", "a/b", "x" * 65):
        with pytest.raises(RunsError, match="is not valid"):
            check_ref(bad)
    with pytest.raises(RunsError, match="looks like a run id"):
        check_ref("r20240501-120000-aaaa")


def test_a_file_that_is_not_a_registry_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "registry.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match=re.escape("registry.sqlite")):
        Registry(tmp_path).all()


def test_a_held_write_lock_makes_others_wait_not_fail(tmp_path: Path) -> None:
    holder = Registry(tmp_path)
    waiter = Registry(tmp_path)
    waiter.all()
    with holder.transaction():
        holder.insert(record("r20240501-120000-aaaa", "a"))
        assert waiter.all() == []  # readers are not blocked by the writer (WAL)
    with waiter.transaction():
        waiter.insert(record("r20240501-120001-bbbb", "b"))
    assert [r.ref for r in holder.all()] == ["a", "b"]
    holder.close()
    waiter.close()


def _create_two(runs_dir: str, index: int, start_at: float, results: multiprocessing.Queue) -> None:
    """One runner process: a run with its own ref and one that races for a shared ref."""
    runs = Runs(Path(runs_dir), env={})
    time.sleep(max(0.0, start_at - time.time()))
    outcome: list[str] = []
    try:
        record, _ = runs.create(SPEC, ref=f"p{index}")
        outcome.append(f"ok:{record.id}")
        try:
            runs.create(SPEC, ref="shared")
            outcome.append("shared")
        except RunsError as exc:
            assert "is taken by run" in str(exc)
            outcome.append("lost")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        outcome.append(f"error:{type(exc).__name__}: {exc}")
    results.put((index, outcome))


def test_eight_processes_creating_runs_at_once(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 1.0
    workers = [context.Process(target=_create_two, args=(str(runs_dir), i, start_at, results)) for i in range(8)]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    errors = [item for outcome in outcomes.values() for item in outcome if item.startswith("error")]
    assert errors == []
    assert sum(outcome.count("shared") for outcome in outcomes.values()) == 1
    with Registry(runs_dir) as registry:
        rows = registry.all()
        refs = [row.ref or "" for row in rows]
        assert sorted(refs) == sorted([f"p{i}" for i in range(8)] + ["shared"])
        assert len({row.id for row in rows}) == 9
        conn = registry._connect()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    folders = sorted(p.name for p in runs_dir.iterdir() if p.is_dir())
    assert folders == sorted(row.id for row in rows)  # no half-built or orphaned folder
    for row in rows:
        assert (runs_dir / row.id / "metadata.json").is_file()
