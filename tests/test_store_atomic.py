"""Crash-safe writes: whole-file replacement leaves old or new bytes, appends are fsynced."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tradeexecutor import atomic
from tradeexecutor.atomic import atomic_write_bytes, atomic_write_text, fsync_append, install_temp_file, temp_path_for


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record which files and directories get fsynced (by path), still really fsyncing them."""
    calls: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    return calls


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    atomic_write_bytes(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_fsyncs_the_file_then_the_directory(tmp_path: Path, synced: list[str]) -> None:
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(".a.json.")  # the temporary file, before the rename
    assert synced[1] == str(tmp_path)


def test_install_fsyncs_a_file_another_writer_filled_then_renames_it_and_fsyncs_the_directory(
    tmp_path: Path, synced: list[str]
) -> None:
    target = tmp_path / "ledger.sqlite"
    target.write_bytes(b"old")
    tmp = temp_path_for(target)
    Path(tmp).write_bytes(b"new")  # as SQLite fills a new ledger
    install_temp_file(tmp, target)
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["ledger.sqlite"]
    assert len(synced) == 2
    if os.path.exists("/proc/self/fd"):
        assert synced[0] == tmp and synced[1] == str(tmp_path)  # the file before the rename, then the directory


def test_a_failed_install_removes_the_temporary_file_and_leaves_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ledger.sqlite"
    target.write_bytes(b"old")
    tmp = temp_path_for(target)
    Path(tmp).write_bytes(b"new")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        install_temp_file(tmp, target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ledger.sqlite"]


def test_text_is_written_as_utf8(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "t.txt", "päivää ✓\n")
    assert (tmp_path / "t.txt").read_bytes() == "päivää ✓\n".encode()


def test_failure_leaves_the_target_untouched_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_failed_fsync_leaves_the_target_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_existing_permissions_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_bytes(b"old")
    target.chmod(0o600)
    atomic_write_bytes(target, b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "new.json", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


def test_large_writes_are_complete(tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)
    atomic_write_bytes(tmp_path / "big", data)
    assert (tmp_path / "big").read_bytes() == data


def test_append_creates_appends_and_returns_the_size(tmp_path: Path) -> None:
    log = tmp_path / "state.log"
    assert fsync_append(log, b"a\n") == 2
    assert fsync_append(str(log), b"bc\n") == 3
    assert log.read_bytes() == b"a\nbc\n"


def test_append_fsyncs_the_directory_only_when_it_creates_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directories: list[str] = []
    monkeypatch.setattr(atomic, "fsync_directory", lambda d: directories.append(os.fspath(d)))
    log = tmp_path / "state.log"
    fsync_append(log, b"1\n")
    fsync_append(log, b"2\n")
    fsync_append(log, b"3\n")
    assert directories == [str(tmp_path)]


def test_append_fsyncs_the_file(tmp_path: Path, synced: list[str]) -> None:
    log = tmp_path / "state.log"
    log.write_bytes(b"")
    fsync_append(log, b"x\n")
    assert len(synced) == 1
    if os.path.exists("/proc/self/fd"):
        assert synced[0] == str(log)


def test_a_deferring_block_fsyncs_each_file_at_once_and_each_directory_once_at_its_end(
        tmp_path: Path, synced: list[str]) -> None:
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    other = tmp_path / "reports"
    other.mkdir()
    with atomic.deferred_directory_fsyncs():
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        atomic_write_text(tmp_path / "b.md", "b")
        fsync_append(other / "journal.jsonl", b"x\n")  # a new log: its directory is owed too
        with atomic.deferred_directory_fsyncs():  # nested: joins the outer block
            atomic_write_bytes(other / "c.json", b"{}")
        assert [os.path.basename(path) for path in synced] == [
            os.path.basename(synced[0]), os.path.basename(synced[1]), "journal.jsonl", os.path.basename(synced[3])]
        assert not {str(tmp_path), str(other)} & set(synced), "no directory fsynced inside the block"
    assert synced[4:] == [str(tmp_path), str(other)], "each directory once, in first-touched order, at the end"
    assert (tmp_path / "a.json").read_bytes() == b"{}" and (other / "c.json").read_bytes() == b"{}"
    synced.clear()
    atomic_write_bytes(tmp_path / "a.json", b"[]")  # outside a block: the directory right after the rename
    assert synced[1:] == [str(tmp_path)]


def test_a_deferring_block_that_raises_still_fsyncs_the_directories_it_touched(
        tmp_path: Path, synced: list[str]) -> None:
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    with pytest.raises(RuntimeError), atomic.deferred_directory_fsyncs():
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        raise RuntimeError("the writer failed half-way")
    assert synced[-1] == str(tmp_path)


def test_deferred_fsyncs_syncs_nothing_inside_then_each_file_once_then_each_directory(
        tmp_path: Path, synced: list[str]) -> None:
    """A folder built out of sight (a sweep's full run): no fsync while it is written; at the end one pass — every
    file written (by its final name, once, however often written), then every directory touched, each group's
    fsyncs issued together from several threads."""
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    state = tmp_path / "state"
    state.mkdir()
    ledger = temp_path_for(state / "ledger.sqlite")
    Path(ledger).write_bytes(b"sqlite")
    with atomic.deferred_fsyncs():
        atomic_write_bytes(tmp_path / "metadata.json", b"{}")
        fsync_append(tmp_path / "journal.jsonl", b"created\n")
        install_temp_file(ledger, state / "ledger.sqlite")
        with atomic.deferred_fsyncs():  # nested: joins the outer block
            atomic_write_text(tmp_path / "metadata.json", "{\"status\": \"complete\"}")
            fsync_append(tmp_path / "journal.jsonl", b"complete\n")
        assert synced == [], "nothing fsynced inside the block"
    # Each file once, then each directory once; within each group in any order (the pass fsyncs from several threads).
    assert len(synced) == 5
    assert set(synced[:3]) == {str(tmp_path / "metadata.json"), str(tmp_path / "journal.jsonl"),
                               str(state / "ledger.sqlite")}
    assert set(synced[3:]) == {str(tmp_path), str(state)}
    assert (tmp_path / "journal.jsonl").read_bytes() == b"created\ncomplete\n"
    synced.clear()
    atomic_write_bytes(tmp_path / "metadata.json", b"[]")  # outside: as ever, the file then its directory
    assert len(synced) == 2 and synced[1] == str(tmp_path)


def test_deferred_fsyncs_that_raises_still_makes_what_was_written_durable(tmp_path: Path, synced: list[str]) -> None:
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    with pytest.raises(RuntimeError), atomic.deferred_fsyncs():
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        atomic_write_bytes(tmp_path / "gone.json", b"{}")
        os.unlink(tmp_path / "gone.json")  # removed before the pass: skipped
        raise RuntimeError("the writer failed half-way")
    assert synced == [str(tmp_path / "a.json"), str(tmp_path)]


def test_a_folder_removed_inside_a_deferring_block_is_skipped_by_its_pass(tmp_path: Path) -> None:
    """Ctrl+C while a sweep builds its full runs: the staged folder is removed, then the pass runs on the way out —
    the KeyboardInterrupt comes through (exit 130, "interrupted"), not a FileNotFoundError for the folder."""
    building = tmp_path / ".creating-r1"
    for deferring in (atomic.deferred_fsyncs, atomic.deferred_directory_fsyncs):
        with pytest.raises(KeyboardInterrupt), deferring():
            (building / "state").mkdir(parents=True)
            atomic_write_bytes(building / "state" / "ledger.sqlite", b"sqlite")
            atomic_write_bytes(building / "metadata.json", b"{}")
            shutil.rmtree(building)
            raise KeyboardInterrupt
        assert not building.exists()


@pytest.fixture
def renames(monkeypatch: pytest.MonkeyPatch, synced: list[str]) -> list[str]:
    """Record each rename into place among the fsyncs (``rename:`` and the target), still really renaming."""
    real_replace = os.replace

    def recording_replace(source: str, target: str) -> None:
        synced.append(f"rename:{target}")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    return synced


def test_files_written_together_are_each_fsynced_before_any_rename_then_each_folder_once(
        tmp_path: Path, renames: list[str]) -> None:
    """Several files replaced at once (a sweep's point specs, its closing files): every temporary file fsynced first
    (one pass), then the renames in the order given, then each folder once — not a file and a folder per file."""
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    (tmp_path / "specs").mkdir()
    (tmp_path / "results.csv").write_bytes(b"old")
    os.chmod(tmp_path / "results.csv", 0o600)
    files: list[tuple[str | os.PathLike[str], bytes]] = [
        (tmp_path / "specs" / "point-001.yaml", b"one"), (tmp_path / "results.csv", b"two"),
        (str(tmp_path / "results.md"), b"three")]
    atomic.atomic_write_files(files)
    for path, data in files:
        assert Path(path).read_bytes() == data
    assert stat.S_IMODE((tmp_path / "results.csv").stat().st_mode) == 0o600  # an existing file's bits are kept
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.md", "specs"]
    assert os.listdir(tmp_path / "specs") == ["point-001.yaml"]
    assert len(renames) == 3 + 3 + 2
    fsynced_first = renames[:3]
    assert sorted(os.path.basename(path).split(".")[1] for path in fsynced_first) == ["point-001", "results", "results"]
    assert all(os.path.basename(path).startswith(".") and path.endswith(".tmp") for path in fsynced_first)
    assert renames[3:6] == [f"rename:{path}" for path, _ in files]
    assert sorted(renames[6:]) == sorted([str(tmp_path / "specs"), str(tmp_path)])


def test_files_written_together_in_a_deferring_block_are_its_pass(tmp_path: Path, synced: list[str]) -> None:
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    with atomic.deferred_fsyncs():
        atomic.atomic_write_files([(tmp_path / "a", b"a"), (tmp_path / "b", b"b")])
        assert synced == []
    assert sorted(synced[:2]) == [str(tmp_path / "a"), str(tmp_path / "b")] and synced[2:] == [str(tmp_path)]


def test_files_written_together_that_fail_before_the_renames_touch_no_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One file that cannot be written (its folder is missing), or an fsync that fails: no target is replaced, no
    temporary file stays."""
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        atomic.atomic_write_files([(tmp_path / "a", b"new"), (tmp_path / "missing" / "b", b"b")])
    assert os.listdir(tmp_path) == ["a"] and (tmp_path / "a").read_bytes() == b"old"

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        atomic.atomic_write_files([(tmp_path / "a", b"new"), (tmp_path / "c", b"c")])
    assert os.listdir(tmp_path) == ["a"] and (tmp_path / "a").read_bytes() == b"old"


def test_a_finished_folder_is_fsynced_in_the_background_before_the_deferring_block_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sync_finished: a folder built and done with inside a deferred_fsyncs block (a sweep's full run) has its part of the
    pass started at once, on another thread, while the block goes on; the block's end waits for it and fsyncs the rest.
    Every file and directory still once; outside a block, nothing to do."""
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    import threading

    done = tmp_path / "done"
    calls: list[tuple[str, str]] = []
    early = threading.Event()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls.append((path, threading.current_thread().name))
        if path == str(done):
            early.set()
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    with atomic.deferred_fsyncs():
        done.mkdir()
        atomic_write_bytes(done / "metadata.json", b"{}")
        atomic_write_bytes(tmp_path / "later.json", b"{}")
        atomic.sync_finished(done)
        assert early.wait(60), "the finished folder's fsyncs started inside the block"
        during = list(calls)
    assert {path for path, _ in during} == {str(done / "metadata.json"), str(done)}
    assert all(name.startswith("fsync-early") or name.startswith("fsync-pass") for _, name in during)
    assert sorted(path for path, _ in calls) == sorted([str(done / "metadata.json"), str(done),
                                                        str(tmp_path / "later.json"), str(tmp_path)])
    calls.clear()
    atomic.sync_finished(done)  # outside a block: nothing is owed
    assert calls == []


def test_a_failed_early_fsync_is_raised_when_the_deferring_block_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block's end waits for the early syncs and raises the first that failed, after the rest of the pass ran."""
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    done = tmp_path / "done"
    done.mkdir()
    synced: list[str] = []
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path == str(done / "a.json"):
            raise OSError(5, "Input/output error")
        synced.append(path)
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"), atomic.deferred_fsyncs():
        atomic_write_bytes(done / "a.json", b"{}")
        atomic.sync_finished(done)
        atomic_write_bytes(tmp_path / "b.json", b"{}")
    assert str(tmp_path / "b.json") in synced and str(tmp_path) in synced
