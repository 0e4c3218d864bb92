"""``tradeexecutor state export|check|migrate`` as a user runs them: real files, the real command line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import cast

import orjson
from dataclasses_json import DataClassJsonMixin

from test_store_state_store import new_state, run_cycle
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import State
from tradeexecutor.store import StateStore, dumps_state
from tradeexecutor.store.journal import Journal


def tradeexecutor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "state", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def json_state_dir(folder: Path, cycles: int = 30) -> State:
    """A state directory of the layout before the ledger: state.json + state.log + journal.jsonl."""
    store = StateStore(folder)
    journal = Journal(folder / "journal.jsonl")
    state = new_state()
    for i in range(cycles):
        run_cycle(state, i)
        store.save(state)
        journal.append("cycle_completed", {"cycle": i})
    with open(folder / "journal.jsonl", "ab") as f:
        f.write(b'{"at": "2024-01-01T00:00:00+00:00", "event": "old_shape", "level": 3}\n{"torn')
    return state


def test_migrate_then_export_gives_the_same_state_and_keeps_the_originals(tmp_path: Path) -> None:
    state = json_state_dir(tmp_path)
    before = digest(tmp_path)
    result = tradeexecutor("migrate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "31 journal lines" in result.stdout
    assert {name: value for name, value in digest(tmp_path).items() if name in before} == before
    exported = tradeexecutor("export", str(tmp_path))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.encode() == dumps_state(state)
    model = cast("type[DataClassJsonMixin]", State)  # @dataclass_json adds from_json at run time
    assert model.from_json(exported.stdout) == state  # the dataclasses-json model reads the export
    check = tradeexecutor("check", str(tmp_path / "ledger.sqlite"))
    assert check.returncode == 0 and check.stdout.startswith("ok: ") and "31 journal lines" in check.stdout
    again = tradeexecutor("migrate", str(tmp_path))
    assert again.returncode == 3 and "already exists" in again.stderr


def test_the_migrated_journal_keeps_its_lines_and_shapes_old_ones(tmp_path: Path) -> None:
    json_state_dir(tmp_path, cycles=3)
    assert tradeexecutor("migrate", str(tmp_path)).returncode == 0
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.load() is not None
    import sqlite3

    rows = sqlite3.connect(tmp_path / "ledger.sqlite").execute("SELECT event, level, line FROM journal").fetchall()
    assert [event for event, _, _ in rows] == ["cycle_completed"] * 3 + ["old_shape"]
    assert orjson.loads(rows[-1][2])["fields"] == {"level": 3} and rows[-1][1] == "info"


def test_a_damaged_ledger_is_one_line_exit_3_and_untouched(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    state = new_state()
    run_cycle(state, 0)
    ledger.save(state)
    ledger.close()
    data = bytearray((tmp_path / "ledger.sqlite").read_bytes())
    del data[len(data) - 100:]
    (tmp_path / "ledger.sqlite").write_bytes(bytes(data))
    before = digest(tmp_path)
    for command in ("check", "export"):
        result = tradeexecutor(command, str(tmp_path))
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(tmp_path / "ledger.sqlite") in lines[0] and "truncated" in lines[0]
        assert "Traceback" not in result.stderr
    assert digest(tmp_path) == before


def test_a_json_state_dir_is_pointed_at_migrate(tmp_path: Path) -> None:
    json_state_dir(tmp_path, cycles=2)
    result = tradeexecutor("export", str(tmp_path))
    assert result.returncode == 3 and "tradeexecutor state migrate" in result.stderr
    assert not (tmp_path / "ledger.sqlite").exists()


def test_nothing_there_is_one_line(tmp_path: Path) -> None:
    result = tradeexecutor("check", str(tmp_path))
    assert result.returncode == 3 and "holds no ledger" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_ledger_with_no_state_yet_is_sound_not_missing(tmp_path: Path) -> None:
    """An executor stopped between its ``started`` line and its first state leaves a sound ledger with no state:
    ``check`` says so and exits 0, ``export`` says there is no state yet (not that the file does not exist)."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.append("started", {"cursor": -1})
    ledger.flush()
    ledger.close()
    assert (tmp_path / "ledger.sqlite").exists()
    before = digest(tmp_path)
    checked = tradeexecutor("check", str(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert "no state committed yet" in checked.stdout and "does not exist" not in checked.stdout
    exported = tradeexecutor("export", str(tmp_path))
    assert exported.returncode == 3 and "holds no state yet" in exported.stderr, exported.stderr
    assert "does not exist" not in exported.stderr
    assert digest(tmp_path) == before


def test_migrate_refuses_a_state_dir_an_executor_holds(tmp_path: Path) -> None:
    from tradeexecutor.store.lock import StateDirLock

    json_state_dir(tmp_path)
    lock = StateDirLock(tmp_path).acquire()  # a running executor (an older version still writing its JSON state)
    try:
        before = digest(tmp_path)
        result = tradeexecutor("migrate", str(tmp_path))
        assert result.returncode == 3 and "in use by another executor" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert digest(tmp_path) == before and not (tmp_path / "ledger.sqlite").exists()
    finally:
        lock.release()
    assert tradeexecutor("migrate", str(tmp_path)).returncode == 0  # once it has stopped


def test_migrate_of_a_missing_dir_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = tradeexecutor("migrate", str(missing))
    assert result.returncode == 3 and "is not a directory" in result.stderr, result.stderr
    assert not missing.exists()
