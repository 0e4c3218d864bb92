"""A cycle the exchange's lag holds is decided once the lag clears while its bar is still the newest, and missed for
good once a newer bar or boundary comes first — within one process and across a restart — the daemon as a
subprocess, real ccxt, ``tradeexecutor exchange-sim``.

tests/strategies/live_two_hold_minute.py buys EURUSD and GBPUSD when flat, on 1-minute candles and cycles: a bar
lasts sixty of the cycle job's 1 s retries. The first executor is killed -9 right after the exchange took (and
filled) the GBPUSD entry, before its outcome was committed; the simulator's ``lag`` fault then answers every lookup
of it "does not exist", and the restarted executor (``--exchange-not-found-seconds 3600``) keeps waiting: the cycle
job manages each new bar and fails as an outage before deciding (``ExchangeLagError``). The cycle due at the first
bar it manages so is held (``cycle_held``, ``ExecutorLoop._lag_cycle``). Then:

- the lag clears before the next bar: the held cycle is decided then, once, late on its own bar; nothing is missed —
  not even by the outage's wall-clock boundaries, which pass the held one meanwhile (``_passed_boundaries``);
- the lag outlasts the next bar: the held cycle is journaled ``cycle_missed`` once and never decided;
- a restart while held, the lag cleared, the bar still the newest: the restart decides it, once
  (``ExecutorLoop.lag_held_before`` reads the ``cycle_held`` line back);
- a restart after the next bar came: the held cycle is journaled missed, once, never decided;
- an ordinary outage (maintenance) across the wake-ups that journal the boundaries it passes: the held cycle is not
  journaled missed by it, and is decided when the exchange answers again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from executor_process import Executor
from test_live_faults_e2e import CLEAN, OPERATOR, events, journal, journaled, sim, until
from test_live_lag_jobs import AUTH, KEY, SECRET, gbp_entry_lagging
from tradeexecutor.daemon.loop import LAG_MISSED

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

#: The strategy's candles and cycles.
BAR = pd.Timedelta(minutes=1)


def executor(tmp_path: Path, url: str, state_dir: Path, *args: str, env: dict[str, str] | None = None) -> Executor:
    return Executor(tmp_path, "--cpu", "off", "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                    "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                    "--exchange-not-found-seconds", "3600", "--retry-max-seconds", "1", *args,
                    strategy="live_two_hold_minute.py", window=False, state_dir=state_dir, headers=AUTH,
                    env={**CLEAN, **OPERATOR, "MY_KEY": KEY, "MY_SECRET": SECRET, **(env or {})})


def boundary(line: dict[str, Any]) -> pd.Timestamp:
    """The cycle time a ``cycle_held`` or ``cycle_missed`` line names."""
    return pd.Timestamp(line["fields"]["boundary"])


def decided(lines: list[dict[str, Any]]) -> list[pd.Timestamp]:
    """The cycle times of the journal's ``cycle_completed`` lines, in order."""
    return [pd.Timestamp(e["fields"]["cycle_time"]) for e in lines if e["event"] == "cycle_completed"]


def missed(lines: list[dict[str, Any]]) -> list[pd.Timestamp]:
    """The cycle times of the journal's ``cycle_missed`` lines, in order."""
    return [boundary(e) for e in lines if e["event"] == "cycle_missed"]


def clock_past(second: Executor, moment: pd.Timestamp, what: str) -> None:
    """Wait until the wall clock has passed ``moment`` (the executor still running)."""
    until(second, lambda: pd.Timestamp.now(tz="UTC") > moment, what, timeout=180)


def lag_fault(url: str) -> dict[str, Any]:
    [lag] = [f for f in sim(url, "GET", "status")["faults"] if f["kind"] == "lag"]
    return lag


def held_after(process: Executor, after: pd.Timestamp) -> dict[str, Any] | None:
    """The first ``cycle_held`` line of a boundary after ``after``, None while there is none."""
    return next((e for e in events(process, "cycle_held") if boundary(e) > after), None)


def stop(process: Executor) -> None:
    process.process.send_signal(signal.SIGTERM)
    assert process.wait() == 0, process.output()


@contextmanager
def held_cycle(tmp_path: Path, *, in_outage: bool = False) -> Iterator[tuple[str, Executor, dict[str, Any]]]:
    """The simulator's URL, the restarted executor (running, its GBPUSD entry waiting out the lag) and the
    ``cycle_held`` line of the first cycle the lag held with 40 s of its minute left (a slow start-up's first held
    cycle is let go: the next bar's is held in turn) — time to act on it before the next boundary.
    The first executor is killed as it sends its entries, at the bar after its decision, so the restart's first
    cycle job manages that bar again and holds its cycle as the outage begins. ``in_outage``: the next one instead,
    held by a retry of the outage — a boundary the outage's wake-ups pass (``ExecutorLoop._deferred``), where the
    first held one is not (only the boundaries after the outage began are). The executor is killed on the way out
    if the test left it running."""
    with gbp_entry_lagging(tmp_path, executor) as (url, state_dir, _):
        second = executor(tmp_path / "second", url, state_dir)
        try:
            status = second.wait_status(lambda s: s.get("status") == "running")
            assert status["reconciliation"]["pending"] == 1 and not status["safe_mode"], status
            [began] = journaled(second, "outage_started", lambda e: e["fields"]["job"] == "cycle")
            assert began["fields"]["error_class"] == "ExchangeLagError", began
            after = pd.Timestamp(began["at"]) if in_outage else pd.Timestamp(0, tz="UTC")
            for _ in range(3):  # too little of the held cycle's minute left to act on it: the next one, held in turn
                held = until(second, partial(held_after, second, after), "a cycle held for the lag", timeout=240)
                if pd.Timestamp.now(tz="UTC") < boundary(held) + BAR - pd.Timedelta(seconds=40):
                    break
                after = boundary(held)  # (overtaken by the next bar: journaled missed, as any held cycle it passes)
            assert held["fields"]["reason"].startswith("an order waits out the exchange's lag"), held
            assert pd.Timestamp(held["fields"]["bar_at"]) == boundary(held), held  # its bar closes on it
            assert pd.Timestamp.now(tz="UTC") < boundary(held) + BAR - pd.Timedelta(seconds=20), (
                "the machine is too slow: the held cycle's minute is nearly over")
            assert boundary(held) not in missed(journal(second))
            yield url, second, held
        finally:
            second.kill()


@pytest.mark.timeout(600)
def test_a_held_cycle_is_decided_once_when_the_lag_clears_before_the_next_bar(tmp_path: Path) -> None:
    """The lag held the cycle of the newest bar, a bar a retry of the outage managed; it clears well before the next
    bar, after the outage's wake-ups have passed the held boundary (at it and a quarter of the bar later): the cycle
    is decided then, once, on its own bar, and is never journaled missed — only the cycle held before it, which this
    bar overtook. Fails before: the cycle of a bar managed during the lag was journaled missed at once and never
    decided; and without the newest boundary left open (``_passed_boundaries``) the wake-up at the boundary, before
    its bar came, journaled it missed, so it was never held."""
    with held_cycle(tmp_path, in_outage=True) as (url, second, held):
        at = boundary(held)
        clock_past(second, at + pd.Timedelta(seconds=17), "a wake-up of the cycle job deferred while held")
        sim(url, "DELETE", f"faults/{lag_fault(url)['id']}")
        [completed] = journaled(second, "cycle_completed", lambda e: pd.Timestamp(e["fields"]["cycle_time"]) == at)
        assert completed["fields"]["step"] == held["fields"]["step"], (completed, held)  # its own bar
        assert pd.Timestamp(completed["at"]) < at + BAR, completed  # before the next boundary
        journaled(second, "outage_ended")
        stop(second)
    lines = journal(second)
    assert decided(lines).count(at) == 1, decided(lines)
    held_before = [boundary(e) for e in lines if e["event"] == "cycle_held"]
    assert held_before.pop() == at and at not in held_before, held_before
    assert missed(lines) == held_before, (missed(lines), held_before)  # each overtaken by a newer bar, once


@pytest.mark.timeout(600)
def test_a_held_cycle_a_newer_bar_overtakes_is_missed_once_and_never_decided(tmp_path: Path) -> None:
    """The lag outlasts the next bar: the held cycle is journaled ``cycle_missed`` once (the lag's reason) and never
    decided; the next bar's cycle is held in its turn and decided once the lag clears while it is the newest."""
    with held_cycle(tmp_path) as (url, second, held):
        at = boundary(held)
        [line] = journaled(second, "cycle_missed", lambda e: boundary(e) == at)
        assert line["fields"]["reason"] == LAG_MISSED, line
        assert pd.Timestamp(line["at"]) >= at + BAR, line  # once the next boundary had passed, not before
        [then] = journaled(second, "cycle_held", lambda e: boundary(e) == at + BAR)
        sim(url, "DELETE", f"faults/{lag_fault(url)['id']}")
        journaled(second, "cycle_completed", lambda e: pd.Timestamp(e["fields"]["cycle_time"]) == boundary(then))
        stop(second)
    lines = journal(second)
    assert missed(lines).count(at) == 1 and at not in decided(lines), (missed(lines), decided(lines))
    assert decided(lines).count(at + BAR) == 1 and at + BAR not in missed(lines), (missed(lines), decided(lines))
    assert len(set(missed(lines))) == len(missed(lines)) and not set(missed(lines)) & set(decided(lines))


@pytest.mark.timeout(600)
def test_a_restart_decides_the_held_cycle_once_while_its_bar_is_the_newest(tmp_path: Path) -> None:
    """Stopped while a cycle is held, the lag cleared, restarted before the next bar: the restart reads the
    ``cycle_held`` line back and decides that cycle, once, on its bar; nothing is missed. Fails before: the cycle was
    journaled missed at once, the restart read that back and never decided it."""
    with held_cycle(tmp_path) as (url, second, held):
        at = boundary(held)
        stop(second)
        sim(url, "DELETE", f"faults/{lag_fault(url)['id']}")
        third = executor(tmp_path / "third", url, second.state_dir)
        try:
            [completed] = journaled(third, "cycle_completed",
                                    lambda e: pd.Timestamp(e["fields"]["cycle_time"]) == at)
            assert pd.Timestamp(completed["at"]) < at + BAR, completed
            stop(third)
        finally:
            third.kill()
    lines = journal(third)
    assert decided(lines).count(at) == 1 and at not in missed(lines), (missed(lines), decided(lines))
    assert all(m < at for m in missed(lines)), missed(lines)  # only held cycles the fixture let a newer bar overtake


@pytest.mark.timeout(600)
def test_a_held_cycle_that_went_stale_while_the_executor_was_down_is_missed_after_the_restart(tmp_path: Path) -> None:
    """Stopped while a cycle is held; the next bar closes while the executor is down; the lag cleared, restarted: the
    held cycle is journaled missed once (the lag's reason) and never decided, the newer bar's cycle is decided. Fails
    before ``lag_held_before``: the restart decided the held cycle on its stale bar, as a cycle it had interrupted
    between its two commits."""
    with held_cycle(tmp_path) as (url, second, held):
        at = boundary(held)
        stop(second)
        # The next bar has closed and the exchange serves it (its candles are asked for a moment after the close).
        deadline = time.monotonic() + 180
        while pd.Timestamp.now(tz="UTC") < at + BAR + pd.Timedelta(seconds=2):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sim(url, "DELETE", f"faults/{lag_fault(url)['id']}")
        third = executor(tmp_path / "third", url, second.state_dir)
        try:
            [line] = journaled(third, "cycle_missed", lambda e: boundary(e) == at)
            assert line["fields"]["reason"] == LAG_MISSED, line
            journaled(third, "cycle_completed", lambda e: pd.Timestamp(e["fields"]["cycle_time"]) > at)
            stop(third)
        finally:
            third.kill()
    lines = journal(third)
    assert missed(lines).count(at) == 1 and at not in decided(lines), (missed(lines), decided(lines))
    assert not set(missed(lines)) & set(decided(lines)), (missed(lines), decided(lines))


@pytest.mark.timeout(600)
def test_an_ordinary_outage_does_not_journal_the_held_cycle_missed(tmp_path: Path) -> None:
    """While a cycle is held the exchange goes into maintenance (503 to every GET: an ordinary outage, the lag no
    longer the error) and the lag clears behind it; the cycle job's wake-up at a quarter of the bar passes the held
    boundary meanwhile. The ordinary outage's rule journals each boundary it passes missed — not the held one: when
    the exchange answers again, before the next bar, the held cycle is decided, once, and never journaled missed.
    Fails before: the wake-up journaled it ``cycle_missed``, and it was decided after all."""
    with held_cycle(tmp_path, in_outage=True) as (url, second, held):
        at = boundary(held)
        down = sim(url, "POST", "faults", {"kind": "maintenance", "method": "GET"})
        sim(url, "DELETE", f"faults/{lag_fault(url)['id']}")
        until(second, lambda: ((second.status() or {}).get("outage") or {}).get("error_class") not in (
            None, "ExchangeLagError"), "the outage's error no longer the lag")
        switched = pd.Timestamp.now(tz="UTC")
        quarter = at + (switched - at).ceil("15s") if switched > at else at + pd.Timedelta(seconds=15)
        clock_past(second, quarter + pd.Timedelta(seconds=2), "a wake-up of the cycle job during the maintenance")
        assert pd.Timestamp.now(tz="UTC") < at + BAR - pd.Timedelta(seconds=8), "too slow: the next bar is near"
        sim(url, "DELETE", f"faults/{down['id']}")
        [completed] = journaled(second, "cycle_completed", lambda e: pd.Timestamp(e["fields"]["cycle_time"]) == at)
        assert pd.Timestamp(completed["at"]) < at + BAR, completed
        stop(second)
    lines = journal(second)
    assert decided(lines).count(at) == 1 and at not in missed(lines), (missed(lines), decided(lines))
