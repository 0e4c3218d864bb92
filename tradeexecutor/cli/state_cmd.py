"""``tradeexecutor state export|check|migrate``: the executor's ledger from the command line.

Each takes a state directory (``--state-dir`` of ``start``) or a ledger file. Nothing here ever
writes to a ledger it reads: ``export`` and ``check`` open it read-only (a damaged or foreign file
is one line naming it, exit code 3); ``migrate`` writes a new ledger beside the JSON state and
keeps the original files (an older-format ledger is converted too).
"""

from __future__ import annotations

from pathlib import Path

import click

from tradeexecutor.cli.common import user_errors


def _ledger_file(path: Path) -> Path:
    """The ledger file a path names: the file itself, or the ledger of a state directory."""
    from tradeexecutor.layout import RunFiles

    return path if path.is_file() else RunFiles(path).ledger


@click.group("state")
def state_group() -> None:
    """Export, check or migrate an executor's ledger (its state and journal; docs/ledger.md)."""


@state_group.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON to this file (atomically) instead of standard output.")
@user_errors
def export_command(path: Path, output: Path | None) -> None:
    """Print the state of the ledger at PATH as JSON (the dataclasses-json model's State, as /state serves it)."""
    import sys

    from tradeexecutor.atomic import atomic_write_bytes
    from tradeexecutor.errors import StateError
    from tradeexecutor.ledger import Ledger, check_not_legacy

    if path.is_dir():
        check_not_legacy(path)
    ledger = Ledger(_ledger_file(path))
    state = ledger.load()
    if state is None:
        raise StateError(_no_state(ledger.path, path))
    data = ledger.export_json(state)
    if output is not None:
        atomic_write_bytes(output, data)
        click.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _no_state(ledger: Path, path: Path) -> str:
    """Why there is no state to show: no ledger file, or one with no state committed yet."""
    if ledger.exists():
        return f"{ledger} holds no state yet: the executor stopped before its first commit (it starts it as new)"
    return f"{ledger} does not exist: {path} holds no ledger"


@state_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@user_errors
def check_command(path: Path) -> None:
    """Check the ledger at PATH (SQLite's full integrity check, schema, checksums); exit 0 when it is sound."""
    from tradeexecutor.errors import StateError
    from tradeexecutor.ledger import read_ledger
    from tradeexecutor.ledger.files import LedgerFiles

    files = LedgerFiles(_ledger_file(path))
    content = read_ledger(files, full_check=True)
    if content is None and files.path.exists():
        # Sound, but stopped before its first state commit (only start-up journal lines): it starts as new.
        click.echo(f"ok: {files.path}: no state committed yet; the executor starts it as new")
        return
    if content is None:
        raise StateError(_no_state(files.path, path))
    state = content.state
    portfolio = state.portfolio
    orders = list(portfolio.all_orders())
    fills = sum(len(o.fills) for o in orders)
    click.echo(f"ok: {files.path}: job {content.job}, {state.cycles_completed} cycles, "
               f"{len(portfolio.open_positions)} open / {len(portfolio.closed_positions)} closed / "
               f"{len(portfolio.failed_positions)} failed positions, {len(orders)} orders, {fills} fills, "
               f"{len(state.valuations)} "
               f"valuations, {content.journal_lines} journal lines")


@state_group.command("migrate")
@click.argument("state_dir", type=click.Path(file_okay=False, path_type=Path))
@user_errors
def migrate_command(state_dir: Path) -> None:
    """Convert STATE_DIR's state.json + state.log + journal.jsonl, or its older-format ledger, into today's ledger.

    The originals are kept (an older ledger as ledger.sqlite.v1).
    """
    from tradeexecutor.errors import StateError
    from tradeexecutor.ledger import migrate_state_dir
    from tradeexecutor.store.lock import StateDirLock

    if not state_dir.is_dir():
        raise StateError(f"{state_dir} is not a directory: give the executor's state directory")
    # The executor's own lock: a migration beside a running executor (an older version still writing its
    # JSON state) would write a ledger from a state that is about to change.
    locker = StateDirLock(state_dir)
    created = not locker.path.exists()
    lock = locker.acquire()
    try:
        done = migrate_state_dir(state_dir)
    finally:
        if created:  # a refused migration leaves the directory exactly as it was
            locker.path.unlink(missing_ok=True)
        lock.release()
    dropped = f" ({done.journal_dropped} older lines are only in journal.jsonl)" if done.journal_dropped else ""
    click.echo(f"wrote {done.ledger}: {done.positions} positions, {done.journal_lines} journal lines{dropped}; "
               f"{done.kept}")
