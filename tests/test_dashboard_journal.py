"""The dashboard's journal table in real headless Chromium: what an operator cares about by default, every
event on demand, and rows that stay one short block each on a 420 px wide screen.

The journal is written the way the executor writes it (daemon.journal.JournalSink), so the levels are
the loop's own: routine events (cycles that decided nothing, revaluations) are debug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chromium import Chromium, Page, browser, chromium_path, keep_screenshot  # noqa: F401 - the fixtures
from test_dashboard_browser import Served, backtest_runstate, serve  # noqa: F401 - serve is a fixture
from tradeexecutor.daemon.journal import JournalSink
from tradeexecutor.layout import RunFiles
from tradeexecutor.store.journal import Journal
from tradeexecutor.webhook import create_app
from tradeexecutor.webhook.options import WebhookOptions

pytestmark = pytest.mark.slow

ROUTINE: dict[str, dict[str, Any]] = {
    "cycle_completed": {"decisions": 0, "planned": 0, "executed": 0, "rejected": 0, "ignored": [], "duration": 0.0012},
    "revalued": {"step": 0, "equity": 10_000.0},
}
#: What the operator should see by default, oldest first.
NOTABLE = ["started", "cycle_completed", "order_planned", "order_filled", "trigger_fired", "order_rejected", "crashed"]


def _clock(start: datetime) -> Callable[[], datetime]:
    moments: Iterator[datetime] = (start + timedelta(seconds=second) for second in range(100_000))
    return lambda: next(moments)


def _write_journal(files: RunFiles) -> None:
    """A replay run's journal: a few events that matter among many routine ones."""
    sink = JournalSink(Journal(files.journal), _clock(datetime.now(UTC) - timedelta(hours=2)))

    def routine(times: int) -> None:
        for step in range(times):
            sink("cycle_completed", cycle_time=datetime(2010, 1, 1, tzinfo=UTC) + timedelta(days=step), step=step,
                 **ROUTINE["cycle_completed"])
            sink("revalued", **ROUTINE["revalued"])

    sink("started", cursor=-1, cycles_completed=0)
    routine(40)
    sink("cycle_completed", cycle_time=datetime(2010, 3, 1, tzinfo=UTC), step=41, decisions=1, planned=1,
         executed=0, ignored=[], duration=0.004)
    sink("order_planned", trade_id=1, position_id=1, symbol="GOOG", kind="open", value=9000.0, quantity=0.0)
    routine(10)
    sink("order_filled", trade_id=1, position_id=1, symbol="GOOG", kind="open", quantity=31.0, price=290.12,
         fee=0.0)
    routine(10)
    sink("trigger_fired", position_id=1, symbol="GOOG", trigger="stop_loss", trigger_price=275.0)
    sink("order_rejected", trade_id=2, position_id=2, symbol="GOOG", reason="below minimum notional 100.0; "
         "raise the fraction or lower --min-notional")
    routine(5)
    sink("crashed", job="cycle", exception="builtins.NameError",
         message="strategy.py, line 26, in exit_rules, cycle 2010-05-01 00:00 UTC: NameError: name 'clsoe' is "
                 "not defined")
    routine(5)


@pytest.fixture
def served(serve: Callable[..., Served], tmp_path: Path) -> Served:
    from tradeexecutor.webhook.app import ROUTE_MODULES

    files = RunFiles(tmp_path / "state")
    files.root.mkdir(parents=True)
    _write_journal(files)
    includes = [name for name in ("tradeexecutor.webhook.files", "tradeexecutor.webhook.logs")
                if name not in ROUTE_MODULES]
    return serve(create_app(backtest_runstate("journal"), options=WebhookOptions(files=files),
                            extra_includes=includes))


def _shown(page: Page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('[data-field=journal] tbody tr')].map(r => r.dataset.event)")


def test_the_journal_shows_orders_fills_triggers_crashes_and_state_changes_not_routine_cycles(
        browser: Chromium, served: Served) -> None:
    everything = served.get_json("/logs?limit=1000")["entries"]
    assert len(everything) > 100 and sum(entry["level"] == "debug" for entry in everything) == 2 * 70
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    assert _shown(page) == list(reversed(NOTABLE))
    assert page.evaluate("document.querySelector('[data-field=journal]').dataset.view") == "notable"
    assert page.evaluate("document.getElementById('journal-routine').checked") is False

    # Every event, on demand: the newest 20 of the whole journal.
    page.evaluate("document.getElementById('journal-routine').click()")
    page.wait_refreshes(2)
    shown = _shown(page)
    assert shown == [entry["event"] for entry in reversed(everything[-20:])]
    assert {"cycle_completed", "revalued"} <= set(shown) and "crashed" in shown
    assert page.evaluate("document.querySelector('[data-field=journal]').dataset.view") == "all"
    assert page.errors() == []


def test_journal_all_in_the_address_shows_every_event_from_the_start(browser: Chromium, served: Served) -> None:
    page = browser.new_page()
    page.goto(served.url + "/?journal=all")
    page.wait_refreshes(1)
    assert page.evaluate("document.getElementById('journal-routine').checked") is True
    assert _shown(page)[0] == "revalued"


def test_on_a_420_px_screen_each_journal_row_is_a_short_block(browser: Chromium, served: Served,
                                                              tmp_path: Path) -> None:
    """Four columns at 420 px left the details a sliver and rows 400 px tall; now the details span the width."""
    page = browser.new_page(width=420, height=900)
    page.goto(served.url + "/?journal=all")
    page.wait_refreshes(1)
    rows = page.evaluate("""[...document.querySelectorAll('[data-field=journal] tbody tr')].map(row => {
        const details = row.lastElementChild.getBoundingClientRect();
        return {event: row.dataset.event, height: row.getBoundingClientRect().height, width: details.width,
                table: row.closest('table').getBoundingClientRect().width};
    })""")
    assert len(rows) == 20
    keep_screenshot(page.screenshot(), "dashboard-journal-420.png", tmp_path)
    for row in rows:
        assert row["width"] >= 0.9 * row["table"], row  # the details use the whole width
        assert row["height"] <= 150, row  # a line of time, level and event, then a few lines of details
    assert page.evaluate("document.documentElement.scrollWidth") <= 420, "nothing sticks out sideways"
