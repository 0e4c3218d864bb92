"""An ordinary outage (the exchange in maintenance: 503 to every GET) never journals a cycle missed and then decides
it: the newest cycle boundary it passes stays open — decided late, on its own bar, if the exchange answers again
before the next boundary — and an older one is journaled ``cycle_missed`` once (``OUTAGE_MISSED``) and never decided
(``ExecutorLoop._passed_boundaries``, ``_miss_for_good``). The daemon as a subprocess in live mode, real ccxt,
``tradeexecutor exchange-sim``.

tests/strategies/live_idle_two_minute.py decides nothing on 2-minute cycles over 1-minute candles: the cycle job's
poll for the candle between two boundaries is the first request the maintenance fails, so the outage begins after a
cycle was decided and before the next boundary, and the cycle job wakes every 15 s meanwhile (``_deferred``).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from exchange_sim_helpers import simulator_process
from executor_process import Executor
from test_daemon_lag_held import boundary, clock_past, decided, missed
from test_live_faults_e2e import CLEAN, OPERATOR, journal, journaled, sim, until
from test_live_lag_jobs import AUTH
from tradeexecutor.daemon.loop import OUTAGE_MISSED

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "LiveOutageBoundaryKey0123456789"
SECRET = "live-outage-boundary-secret-0123456789"
#: The strategy's cycles, and its candles.
CYCLE, BAR = pd.Timedelta(minutes=2), pd.Timedelta(minutes=1)


def cycle_time(line: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(line["fields"]["cycle_time"])


@contextmanager
def down_after_a_cycle(tmp_path: Path) -> Iterator[tuple[str, Executor, pd.Timestamp, dict[str, Any]]]:
    """The simulator's URL, the running executor, the cycle time ``C`` it decided last before the exchange went
    into maintenance (GET 503), and that fault — injected before the candle between ``C`` and the next boundary
    closed, so the outage begins at that candle's poll, mid-cycle. Killed on the way out if left running."""
    with simulator_process("--random-walk", "7", "--volatility", "0", "--symbols", "EUR/USD", "--balance", "USD=10000",
                           "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET}) as url:
        executor = Executor(tmp_path, "--cpu", "off", "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                            "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                            "--retry-max-seconds", "1", strategy="live_idle_two_minute.py", window=False,
                            state_dir=tmp_path / "state", headers=AUTH,
                            env={**CLEAN, **OPERATOR, "MY_KEY": KEY, "MY_SECRET": SECRET})
        try:
            # A decided cycle with time left to go down before the candle after it closes (else the next cycle's).
            last = until(executor, lambda: next((e for e in reversed(journal(executor)) if e["event"] ==
                                                 "cycle_completed" and pd.Timestamp.now(tz="UTC") <
                                                 cycle_time(e) + BAR - pd.Timedelta(seconds=10)), None),
                         "a decided cycle early enough to go down before its next candle", timeout=300)
            at = cycle_time(last)
            down = sim(url, "POST", "faults", {"kind": "maintenance", "method": "GET"})
            [began] = journaled(executor, "outage_started")
            assert began["fields"]["job"] == "cycle", began
            assert at + BAR <= pd.Timestamp(began["at"]) < at + CYCLE, (at, began)  # at the candle between
            yield url, executor, at, down
        finally:
            executor.kill()


def stop(executor: Executor) -> None:
    executor.process.send_signal(signal.SIGTERM)
    assert executor.wait() == 0, executor.output()


@pytest.mark.timeout(720)
def test_an_outage_across_one_boundary_decides_its_cycle_late_and_journals_nothing_missed(tmp_path: Path) -> None:
    """Down from the candle between two boundaries until after the next boundary (and wake-ups of the cycle job past
    it), back well before the boundary after: that cycle is decided once, late, on its own bar, and nothing is
    journaled missed. Fails before: the wake-ups journaled the boundary ``cycle_missed``, and the cycle was decided
    after all when the exchange answered again."""
    with down_after_a_cycle(tmp_path) as (url, executor, at, down):
        then = at + CYCLE
        clock_past(executor, then + pd.Timedelta(seconds=32), "wake-ups of the cycle job after the boundary")
        assert pd.Timestamp.now(tz="UTC") < then + CYCLE - pd.Timedelta(seconds=50), "too slow: the next boundary is near"
        sim(url, "DELETE", f"faults/{down['id']}")
        [completed] = journaled(executor, "cycle_completed", lambda e: cycle_time(e) == then)
        assert pd.Timestamp(completed["at"]) > then + pd.Timedelta(seconds=30), completed  # late: after the outage
        assert pd.Timestamp(completed["at"]) < then + CYCLE, completed  # before the next boundary
        journaled(executor, "outage_ended")
        stop(executor)
    lines = journal(executor)
    assert decided(lines).count(then) == 1, decided(lines)
    assert missed(lines) == [], [e for e in lines if e["event"] == "cycle_missed"]


@pytest.mark.timeout(720)
def test_an_outage_across_two_boundaries_misses_the_older_once_and_decides_the_newest(tmp_path: Path) -> None:
    """Down until after two boundaries have passed: the older is journaled ``cycle_missed`` once (the outage's
    reason, once the newer had passed) and never decided — not even by the catch-up's bars once the exchange answers
    again; the newer, still current when it does, is decided once, late, on its own bar, never journaled missed.
    Fails before: both were journaled missed, and both decided by the catch-up."""
    with down_after_a_cycle(tmp_path) as (url, executor, at, down):
        older, newer = at + CYCLE, at + 2 * CYCLE
        until(executor, lambda: pd.Timestamp.now(tz="UTC") > newer + pd.Timedelta(seconds=17),
              "a wake-up of the cycle job after the newer boundary", timeout=420)
        [line] = journaled(executor, "cycle_missed", lambda e: boundary(e) == older)
        assert line["fields"].get("reason") == OUTAGE_MISSED, line
        assert pd.Timestamp(line["at"]) >= newer, line  # once the newer boundary had passed, not before
        assert pd.Timestamp.now(tz="UTC") < newer + CYCLE - pd.Timedelta(seconds=75), "too slow: the next boundary is near"
        sim(url, "DELETE", f"faults/{down['id']}")
        [completed] = journaled(executor, "cycle_completed", lambda e: cycle_time(e) == newer)
        assert pd.Timestamp(completed["at"]) < newer + CYCLE, completed
        journaled(executor, "outage_ended")
        stop(executor)
    lines = journal(executor)
    assert missed(lines) == [older], missed(lines)
    assert older not in decided(lines) and decided(lines).count(newer) == 1, decided(lines)
