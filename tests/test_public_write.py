"""The disk writer of a running executor's public files: the same bytes, written piece by piece, only what changed.

``write_public_files`` with the writer's memory (name → ETag last written) skips a file whose
ETag did not change and writes the others from their pieces (never joined in memory) through
the same crash-safe sequence as every whole-file write: temp → fsync → rename → fsync dir.
Writes are counted (the names returned, and each rewritten file's new inode), never timed.
"""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import orjson

from test_trades_csv import grow
from tradeexecutor.atomic import atomic_write_pieces, remove_temp_files
from tradeexecutor.layout import RunFiles
from tradeexecutor.state import State
from tradeexecutor.stats.summary import write_trades_csv
from tradeexecutor.stats.trades_csv import TradesCsv
from tradeexecutor.store.publish import PublicFile, PublishCache, public_files, publish, write_public_files

NAMES = ("state.json", "state.json.gz", "positions.json", "orders.csv", "metadata.json")
AT = datetime(2024, 1, 1, tzinfo=UTC)
META = {"name": "disk", "mode": "replay"}


def _inodes(files: RunFiles) -> dict[str, int]:
    return {name: (files.public / name).stat().st_ino for name in NAMES}


def _busy_state(cycles: int) -> State:
    state = State(name="disk")
    state.add_instrument("SYN", "crypto", 0.001)
    rng = random.Random(5)
    for cycle in range(cycles):
        grow(state, rng, cycle)
    return state


def test_only_the_files_whose_bytes_changed_are_rewritten_and_each_equals_a_whole_publication(tmp_path: Path) -> None:
    """A first write puts every file; then each write renames exactly the files whose ETag changed, bytes exact.

    Compared with :func:`publish` (every file built whole and written at once): state.json,
    positions.json and orders.csv byte for byte, state.json.gz decompresses to state.json,
    metadata.json names state.json's ETag. Files left alone keep their inode (not renamed over).
    """
    state = _busy_state(600)  # enough finished positions for kept chunks of several pieces
    cache, csv = PublishCache(), TradesCsv()
    written: dict[str, str] = {}
    files, fresh = RunFiles(tmp_path / "live"), RunFiles(tmp_path / "fresh")

    def write(now: datetime) -> list[str]:
        documents = public_files(state, files, metadata=META, orders_csv=csv.parts, cache=cache, now=now)
        names = write_public_files(files, documents, written)
        publish(state, fresh, metadata=META, orders_csv_writer=write_trades_csv, now=now)
        for name in ("state.json", "positions.json", "orders.csv"):
            assert (files.public / name).read_bytes() == (fresh.public / name).read_bytes() \
                == documents[name].data(), name
        assert gzip.decompress((files.public / "state.json.gz").read_bytes()) == fresh.state_snapshot.read_bytes()
        assert (files.public / "state.json.gz").read_bytes() == documents["state.json.gz"].data()
        metadata = orjson.loads((files.public / "metadata.json").read_bytes())
        assert metadata["etag"] == documents["state.json"].etag and metadata["published_at"] == now.isoformat()
        assert written == {name: document.etag for name, document in documents.items()}
        return names

    assert sorted(write(AT)) == sorted(NAMES)  # a new writer writes everything
    assert len(state.portfolio.closed_positions) > 200
    before = _inodes(files)
    assert write(AT.replace(minute=1)) == ["metadata.json"]  # nothing in the state changed: only published_at
    after = _inodes(files)
    assert {name for name in NAMES if after[name] != before[name]} == {"metadata.json"}

    state.cycles_completed += 1  # state.json changes; the positions and orders do not
    assert write(AT.replace(minute=2)) == ["state.json", "state.json.gz", "metadata.json"]
    again = _inodes(files)
    assert {name for name in NAMES if again[name] != after[name]} == {"state.json", "state.json.gz", "metadata.json"}

    rng = random.Random(9)
    while len(state.portfolio.closed_positions) == 0 or not state.portfolio.open_positions:
        grow(state, rng, 700)
    grow(state, rng, 701)  # opens or closes: every file changes
    assert sorted(write(AT.replace(minute=3))) == sorted(NAMES)


def test_a_file_that_failed_to_be_written_is_written_again_by_the_next_write(tmp_path: Path) -> None:
    """The writer's memory takes a file only after its rename: a failed rename (a directory in the way) is retried."""
    state = _busy_state(50)
    files = RunFiles(tmp_path / "run")
    written: dict[str, str] = {}
    documents = public_files(state, files, metadata=META, orders_csv=TradesCsv().parts, cache=PublishCache(), now=AT)
    files.public.mkdir(parents=True)
    files.orders_csv.mkdir()  # os.replace of a file over a directory fails
    try:
        write_public_files(files, documents, written)
    except OSError:
        pass
    else:
        raise AssertionError("a rename over a directory succeeded")
    assert "orders.csv" not in written and "metadata.json" not in written  # metadata.json goes last
    assert not [path for path in files.public.iterdir() if path.name.endswith(".tmp")]  # no temporary file left
    files.orders_csv.rmdir()
    assert write_public_files(files, documents, written) == ["orders.csv", "metadata.json"]
    assert files.orders_csv.read_bytes() == documents["orders.csv"].data()


def test_a_file_read_before_the_write_is_written_from_its_joined_bytes() -> None:
    """A webhook may join a file before the writer takes it: pieces() then gives the joined bytes, no second copy."""
    parts = [b"a" * 5000, b"b", b"c" * 7000]
    document = PublicFile("x", '"t"', lambda: parts)
    assert document.pieces() is parts  # not joined by the writer
    data = document.data()
    assert data == b"".join(parts) and document.pieces() == [data] and document.pieces()[0] is data


def test_a_kill_between_the_temporary_file_and_the_rename_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """kill -9 after the pieces are written and fsynced, before the rename: the target holds the old bytes whole.

    A child process writes a file piece by piece and is killed (SIGKILL, by itself) at the instant
    it calls os.replace. The old file is intact, the temporary file is complete (it was fsynced
    before the rename), the owner's start-up clears it, and the next write installs the new bytes.
    """
    target = tmp_path / "public" / "state.json"
    target.parent.mkdir()
    old, new = [b"{" + b"o" * 9000, b"}\n"], [b"[" + b"n" * 20000, b"x" * 5000, b"]\n"]
    atomic_write_pieces(target, old)
    script = textwrap.dedent(f"""
        import os, signal, sys
        from tradeexecutor.atomic import atomic_write_pieces
        os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # dies where the rename would happen
        atomic_write_pieces(sys.argv[1], {new!r})
    """)
    child = subprocess.run([sys.executable, "-c", script, str(target)], timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"".join(old)
    leftovers = [path for path in target.parent.iterdir() if path != target]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == b"".join(new)
    assert remove_temp_files(target.parent) == leftovers
    atomic_write_pieces(target, new)
    assert target.read_bytes() == b"".join(new) and os.listdir(target.parent) == ["state.json"]
