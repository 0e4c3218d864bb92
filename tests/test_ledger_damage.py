"""A damaged, foreign or swapped ledger is refused naming the file, with every file left as it was; or it loads as before.

Real files: a clean ledger (closed, WAL checkpointed away) and a ledger whose writer died with
its WAL pending (a child process that commits and leaves with ``os._exit``, as kill -9 would
leave it: WAL and -shm in place). Each damage is applied to a copy; every file of the folder is
hashed before and after the load, and the folder must hold no new file.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from test_store_state_store import new_state, run_cycle
from tradeexecutor.errors import SchemaVersionError, StateCorruptError
from tradeexecutor.ledger import Ledger
from tradeexecutor.ledger.files import _checksum
from tradeexecutor.ledger.schema import LEDGER_FORMAT
from tradeexecutor.store import dumps_state

NAME = "ledger.sqlite"

_WRITER = """
import os, sys
sys.path.insert(0, sys.argv[3])
from test_store_state_store import new_state, run_cycle
from tradeexecutor.ledger import Ledger
ledger = Ledger(sys.argv[1])
state = new_state()
for i in range(int(sys.argv[2])):
    run_cycle(state, i)
    ledger.append("cycle_completed", {"i": i})
    ledger.save(state)
sys.stdout.flush()
os._exit(0)  # no close, no checkpoint: the WAL and -shm stay, as after kill -9
"""


def expected_json(cycles: int) -> bytes:
    state = new_state()
    for i in range(cycles):
        run_cycle(state, i)
    return dumps_state(state)


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed ledger of 400 cycles (about 130 positions, several hundred pages)."""
    folder = tmp_path_factory.mktemp("clean")
    ledger = Ledger(folder / NAME)
    state = new_state()
    for i in range(400):
        run_cycle(state, i)
        ledger.save(state)
    ledger.close()
    assert sorted(p.name for p in folder.iterdir()) == [NAME]
    return folder


def write_pending(folder: Path, cycles: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tests = Path(__file__).resolve().parent
    subprocess.run([sys.executable, "-c", _WRITER, str(folder / NAME), str(cycles), str(tests)], check=True,
                   timeout=120)
    assert sorted(p.name for p in folder.iterdir()) == [NAME, f"{NAME}-shm", f"{NAME}-wal"]
    return folder


@pytest.fixture(scope="module")
def pending(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger whose writer died after 60 commits: they live in its WAL."""
    return write_pending(tmp_path_factory.mktemp("pending") / "a", 60)


def copy_of(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def outcome(folder: Path, expected: bytes, refusal: str = "") -> str:
    """'refused' or 'same'; fails when the ledger loads differently, or a file was changed or added.

    A refusal is one line naming the file (and matching ``refusal`` when given).
    """
    before = hashes(folder)
    try:
        state = Ledger(folder / NAME).load()
    except (StateCorruptError, SchemaVersionError) as error:
        message = str(error)
        assert NAME in message and "\n" not in message and refusal in message, message
        result = "refused"
    else:
        assert state is not None and dumps_state(state) == expected, "loaded something other than what was committed"
        result = "same"
    assert hashes(folder) == before, "a file was changed or created"
    return result


def test_the_clean_and_pending_ledgers_load_as_committed(clean: Path, pending: Path, tmp_path: Path) -> None:
    assert outcome(copy_of(clean, tmp_path / "c"), expected_json(400)) == "same"
    assert outcome(copy_of(pending, tmp_path / "p"), expected_json(60)) == "same"


@pytest.mark.parametrize("content, what", [
    (b"", "empty"),
    (b"hello, I am a text file\n" * 10, "not a SQLite database"),
])
def test_an_empty_or_non_sqlite_file_is_refused(tmp_path: Path, content: bytes, what: str) -> None:
    (tmp_path / NAME).write_bytes(content)
    assert outcome(tmp_path, b"", what) == "refused"
    assert (tmp_path / NAME).read_bytes() == content and len(list(tmp_path.iterdir())) == 1


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / NAME)
    conn.execute("CREATE TABLE head (id INTEGER PRIMARY KEY, json BLOB)")
    conn.commit()
    conn.close()
    assert outcome(tmp_path, b"", "not a tradeexecutor ledger") == "refused"


def test_a_newer_format_is_refused_as_such(clean: Path, tmp_path: Path) -> None:
    folder = copy_of(clean, tmp_path / "c")
    data = bytearray((folder / NAME).read_bytes())
    data[60:64] = (LEDGER_FORMAT + 1).to_bytes(4, "big")
    (folder / NAME).write_bytes(bytes(data))
    with pytest.raises(SchemaVersionError, match="upgrade tradeexecutor"):
        Ledger(folder / NAME).load()


def test_truncation_at_and_inside_every_page_boundary_is_refused(clean: Path, tmp_path: Path) -> None:
    data = (clean / NAME).read_bytes()
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    assert pages > 20
    folder = tmp_path / "t"
    folder.mkdir()
    cuts = sorted({k * page for k in range(pages)} | {k * page + d for k in range(pages) for d in (1, 100, page - 1)})
    for size in cuts:
        (folder / NAME).write_bytes(data[:size])
        assert outcome(folder, b"") == "refused", f"a ledger cut to {size} bytes was accepted"


def test_bit_flips_anywhere_are_refused_or_change_nothing(clean: Path, tmp_path: Path) -> None:
    data = (clean / NAME).read_bytes()
    expected = expected_json(400)
    rng = random.Random(12)
    folder = tmp_path / "f"
    folder.mkdir()
    results = {"refused": 0, "same": 0}
    offsets = list(range(100)) + [rng.randrange(len(data)) for _ in range(400)]
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 1 << rng.randrange(8)
        (folder / NAME).write_bytes(bytes(damaged))
        results[outcome(folder, expected)] += 1
    assert results["refused"] > 100, results  # most flips land in data the checks cover


def test_an_edit_without_its_checksum_is_refused(clean: Path, tmp_path: Path) -> None:
    folder = copy_of(clean, tmp_path / "e")
    conn = sqlite3.connect(folder / NAME)
    conn.execute("UPDATE positions SET json = replace(json, '\"quantity\":10.0', '\"quantity\":11.0') "
                 "WHERE id = (SELECT min(id) FROM positions)")
    conn.commit()
    conn.close()
    with pytest.raises(StateCorruptError, match=r"position .* is damaged"):
        Ledger(folder / NAME).load()


def test_a_deleted_wal_is_refused(pending: Path, tmp_path: Path) -> None:
    folder = copy_of(pending, tmp_path / "d")
    (folder / f"{NAME}-wal").unlink()
    assert outcome(folder, b"", "committed transactions were deleted") == "refused"


def test_a_deleted_ledger_beside_its_wal_is_refused(pending: Path, tmp_path: Path) -> None:
    folder = copy_of(pending, tmp_path / "d")
    (folder / NAME).unlink()
    with pytest.raises(StateCorruptError, match="missing"):
        Ledger(folder / NAME).load()
    assert sorted(p.name for p in folder.iterdir()) == [f"{NAME}-shm", f"{NAME}-wal"]


@pytest.mark.parametrize("order", ["<", ">"])
def test_the_wal_checksum_is_sqlites_loop(order: str) -> None:
    """The vectorised checksum equals SQLite's word loop (walChecksumBytes) on pages of random and of all-ones
    words (the largest sums), continued from random states and over lengths of one to 600 pairs."""
    def loop(data: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(f"{order}{len(data) // 4}I", data)
        for i in range(0, len(words), 2):
            s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    rng = random.Random(11)
    for size in (8, 24, 4096, 4104, 8 * rng.randrange(1, 600), 8 * rng.randrange(1, 600)):
        for data in (rng.randbytes(size), b"\xff" * size):
            s0, s1 = rng.getrandbits(32), rng.getrandbits(32)
            assert _checksum(data, s0, s1, order) == loop(data, s0, s1), (size, order)


def test_a_truncated_wal_is_refused_where_committed_frames_are_cut(pending: Path, tmp_path: Path) -> None:
    wal = (pending / f"{NAME}-wal").read_bytes()
    page = int.from_bytes(wal[8:12], "big")
    frames = (len(wal) - 32) // (24 + page)
    folder = copy_of(pending, tmp_path / "w")
    for cut in sorted({32 + k * (24 + page) + d for k in range(frames) for d in (0, 10, 24 + page // 2)}):
        (folder / f"{NAME}-wal").write_bytes(wal[:cut])
        assert outcome(folder, b"") == "refused", f"a WAL cut to {cut} bytes was accepted"


def test_wal_bit_flips_are_refused_or_change_nothing(pending: Path, tmp_path: Path) -> None:
    wal = (pending / f"{NAME}-wal").read_bytes()
    expected = expected_json(60)
    rng = random.Random(5)
    folder = copy_of(pending, tmp_path / "w")
    results = {"refused": 0, "same": 0}
    for offset in list(range(32)) + [rng.randrange(32, len(wal)) for _ in range(120)]:
        damaged = bytearray(wal)
        damaged[offset] ^= 1 << rng.randrange(8)
        (folder / f"{NAME}-wal").write_bytes(bytes(damaged))
        results[outcome(folder, expected)] += 1
    assert results["refused"] > 100, results


def test_swapped_files_are_refused(pending: Path, tmp_path: Path) -> None:
    other = write_pending(tmp_path / "other", 30)
    # Another ledger's WAL (and its -shm) beside this file.
    folder = copy_of(pending, tmp_path / "s1")
    for suffix in ("-wal", "-shm"):
        shutil.copyfile(other / f"{NAME}{suffix}", folder / f"{NAME}{suffix}")
    assert outcome(folder, b"") == "refused"
    # Another ledger's WAL with this file's -shm.
    folder = copy_of(pending, tmp_path / "s2")
    shutil.copyfile(other / f"{NAME}-wal", folder / f"{NAME}-wal")
    assert outcome(folder, b"") == "refused"
