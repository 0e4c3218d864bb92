"""``tradeexecutor reconcile``: the executor's ledger against the exchange, by hand, while the executor is stopped.

The same reconciliation an executor runs before its first decision (``engine/reconcile.py``):
every order the exchange may know is asked about by client order id and brought up to date (the
fills the exchange reports are applied), the exchange's open orders are sorted into ours and
others' — an open order of ours that the ledger does not hold at all (a restored backup's) is adopted:
recorded in its position with its fills, journaled ``order_adopted`` — and the balances are compared
with the positions. A mismatch changes nothing. An order
whose submit never got a reply and that the exchange does not know is reported ``unsent`` and left
as it is: nothing is sent (the executor, once started, sends it only after the exchange's answer has
lasted, or adopts it).

The result goes to ``reconciliation.json`` in the state directory and to the journal. Exit code:
0 clean, 1 mismatch, 2 bad options or a missing credential, 3 a state directory that cannot be
used (another process holds it, or it is damaged), 4 the exchange could not be reached (temporary:
try again).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tradeexecutor.cli.common import user_errors
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import CcxtVenueConfig

#: Exit code when the exchange could not be reached.
TEMPORARY_EXIT_CODE = 4


@click.command("reconcile")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The executor's state directory (its --state-dir); the executor must be stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print reconciliation.json instead of a summary.")
@config_options(CcxtVenueConfig)
@user_errors
def reconcile_command(state_dir: Path, as_json: bool, **options: Any) -> None:
    """Reconcile the ledger in --state-dir with the exchange (the --exchange* settings); exit 0 clean, 1 mismatch."""
    from tradeexecutor.config import build_config
    from tradeexecutor.daemon.journal import JournalSink
    from tradeexecutor.engine.reconcile import reconcile, write_reconciliation
    from tradeexecutor.errors import StateError, TemporaryError
    from tradeexecutor.layout import RunFiles
    from tradeexecutor.ledger import Ledger, check_not_legacy
    from tradeexecutor.store.lock import StateDirLock
    from tradeexecutor.venue.ccxt_venue import CcxtVenue

    files = RunFiles(state_dir)
    if not files.ledger.is_file():
        raise StateError(f"{files.ledger} does not exist: {state_dir} holds no executor's ledger")
    lock = StateDirLock(state_dir).acquire()  # StateLockedError while the executor runs
    try:
        check_not_legacy(state_dir)
        ledger = Ledger(files.ledger, mirror=files.journal)
        state = ledger.load()
        if state is None:
            click.echo(f"{files.ledger} holds no state yet: nothing to reconcile")
            return
        quotes = sorted({instrument.quote_currency for instrument in state.instruments})
        symbols = tuple(instrument.symbol for instrument in state.instruments)
        config = build_config(CcxtVenueConfig, config_values(CcxtVenueConfig, options),
                              quote=quotes[0] if quotes else None, symbols=symbols)
        venue = CcxtVenue(config)
        journal = JournalSink(ledger, ledger.now)
        try:
            with ledger.begin_job("reconcile", ledger.now()) as job:
                result = reconcile(state, venue, commit=lambda: job.commit(state), now=ledger.now, at_start=False,
                                   journal=journal)
        except TemporaryError as error:
            click.echo(f"error: {config.exchange} could not be reached, nothing was changed: {error}; try again",
                       err=True)
            sys.exit(TEMPORARY_EXIT_CODE)
        finally:
            ledger.close()
        path = write_reconciliation(result, files.reconciliation)
    finally:
        lock.release()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        for line in _summary(result):
            click.echo(line)
        click.echo(f"wrote {path}")
    sys.exit(0 if result.clean else 1)


def _summary(result: Any) -> list[str]:
    """A short report: the outcome, each order asked about, each balance, each mismatch."""
    lines = [f"reconciliation with {result.venue}: {result.outcome}"]
    lines += [f"  order {o.client_order_id} ({o.symbol}): {o.before} -> {o.after} ({o.action}, "
              f"{o.fills_applied} fill(s) applied)" for o in result.orders]
    lines += [f"  {o.action}: open order {o.client_order_id} ({o.symbol}, {o.side})"
              + (f" into position {o.position_id}, {o.fills_applied} fill(s) applied" if o.action == "adopted" else "")
              + (f": {o.reason}" if o.reason else "") for o in result.exchange_orders]
    lines += [f"  balance {b.asset}: ours {b.ours:g}, venue {b.venue:g}{_bounds(b)} ({'ok' if b.ok else 'MISMATCH'})"
              for b in result.balances]
    lines += [f"  note: {note}" for note in result.notes]
    lines += [f"  mismatch: {m.what}" for m in result.mismatches]
    return lines


def _bounds(check: Any) -> str:
    """Where the venue's figure had to be when an order's fills not yet booked moved it (``BalanceCheck.low``)."""
    if check.low is None:
        return ""
    if check.high is None:
        return f", expected at least {check.low:g}"
    return f", expected {check.low:g} to {check.high:g}"
