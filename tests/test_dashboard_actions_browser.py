"""The dashboard's operator buttons in real headless Chromium against a real executor subprocess.

Each button opens a confirmation that says what will happen in this mode; cancelling sends
nothing, confirming sends the action and shows the executor's answer. The executor is
``tradeexecutor start`` (replay mode, a slow replay of tests/strategies/daemon_operator.py) with
basic auth; the browser answers the auth challenge as a user typing into the prompt would (the
test's handler does, while the test waits on the page: it must not wait on plain HTTP alone
while the page has a request in flight).
Without auth configured, or when nothing runs, the buttons are not shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chromium import (  # noqa: F401 - browser and chromium_path are fixtures
    Chromium,
    Page,
    browser,
    chromium_path,
)
from executor_process import Executor
from test_control_e2e import CREDENTIALS, PASSWORD, USER, http, positions, wait_for, wait_status
from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

pytestmark = pytest.mark.slow

#: Names the visible action buttons, in page order.
VISIBLE_BUTTONS = "[...document.querySelectorAll('#actions button[data-action]')].filter(b => !b.hidden).map(b => b.dataset.action)"


@contextmanager
def signed_in(browser: Chromium, page: Page) -> Iterator[None]:
    """Answer the page's basic-auth challenges with the executor's credentials."""

    def continue_request(event: dict[str, Any]) -> None:
        if event.get("sessionId") == page.session:
            page.call("Fetch.continueRequest", {"requestId": event["params"]["requestId"]})

    def answer_challenge(event: dict[str, Any]) -> None:
        if event.get("sessionId") == page.session:
            page.call("Fetch.continueWithAuth", {"requestId": event["params"]["requestId"], "authChallengeResponse": {
                "response": "ProvideCredentials", "username": USER, "password": PASSWORD}})

    browser.handlers["Fetch.requestPaused"] = continue_request
    browser.handlers["Fetch.authRequired"] = answer_challenge
    try:
        page.call("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]})
        yield
    finally:
        page.call("Fetch.disable")
        browser.handlers.pop("Fetch.requestPaused", None)
        browser.handlers.pop("Fetch.authRequired", None)


def click(page: Page, selector: str) -> None:
    page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


def dialog(page: Page) -> dict[str, Any]:
    """The open confirmation: its title and text (waits for it to open)."""
    page.wait_for("document.getElementById('confirm').open")
    return {"title": page.field("confirm-title")["text"], "text": page.field("confirm-text")["text"]}


def answer(page: Page, confirm: bool) -> None:
    click(page, "#confirm-ok" if confirm else "#confirm-cancel")
    page.wait_for("!document.getElementById('confirm').open")


def result(page: Page, outcome: str) -> str:
    """The executor's answer under the buttons once it came, which must be ``outcome`` (done or refused)."""
    try:
        got = page.wait_for("['done', 'refused'].find(o => o === document.querySelector('[data-field=action-result]')"
                            ".dataset.outcome)", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; shown: {page.field('action-result')}; page errors: {page.errors()}") from None
    text = str(page.field("action-result")["text"])
    assert got == outcome, text
    return text


def test_each_button_confirms_what_happens_in_this_mode_then_acts(browser: Chromium, tmp_path: Path) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "1.0", "--publish-seconds", "0.2",
                        strategy="daemon_operator.py", env=CREDENTIALS)
    try:
        wait_status(executor, lambda s: s["status"] == "running")
        wait_for(executor, lambda: len([p for p in positions(executor, "open") if p["quantity"] > 0]) == 2,
                 "both entries to fill")
        page = browser.new_page()
        with signed_in(browser, page):
            page.goto(f"http://127.0.0.1:{executor.port}/?refresh=1")
            page.wait_for("document.querySelectorAll('[data-field=positions] button[data-close]').length === 2", 60)
            assert page.evaluate(VISIBLE_BUTTONS) == ["pause", "close-all", "reload-params"]

            # Pause: the confirmation says what pausing does; cancelling sends nothing, confirming pauses.
            click(page, "[data-action=pause]")
            shown = dialog(page)
            assert shown["title"] == "Pause entries" and "no new positions" in shown["text"]
            answer(page, confirm=False)
            assert not http(executor, "GET", "/status")[1]["paused"]
            click(page, "[data-action=pause]")
            dialog(page)
            answer(page, confirm=True)
            result(page, "done")  # (waiting on the page also lets the browser's requests through the auth handler)
            wait_status(executor, lambda s: s["paused"])
            page.wait_for("!document.querySelector('[data-action=resume]').hidden", 30)

            # Close one position from its row: the text says it is a simulated close in replay mode.
            first = sorted(p["id"] for p in positions(executor, "open"))[0]
            click(page, f"button[data-close='{first}']")
            shown = dialog(page)
            assert shown["title"] == f"Close position {first}"
            assert "replay mode" in shown["text"] and "simulated close at the current bar's price" in shown["text"]
            answer(page, confirm=False)
            assert len(positions(executor, "open")) == 2  # cancelled: nothing sent
            click(page, f"button[data-close='{first}']")
            dialog(page)
            answer(page, confirm=True)
            assert f"closed position {first}" in result(page, "done")
            assert [p["id"] for p in positions(executor, "closed")] == [first]

            # Close all.
            page.wait_for("document.querySelectorAll('[data-field=positions] button[data-close]').length === 1", 30)
            click(page, "[data-action=close-all]")
            shown = dialog(page)
            assert "All 1 open position(s) will be closed now" in shown["text"] and "replay mode" in shown["text"]
            answer(page, confirm=True)
            assert "closed 1 position(s)" in result(page, "done")
            assert positions(executor, "open") == []
            page.wait_for("document.querySelector('[data-action=close-all]').disabled", 30)

            # Reload parameters: the dialog holds the running values; a refused value shows the reason.
            click(page, "[data-action=reload-params]")
            dialog(page)
            shown_params = json.loads(page.evaluate("document.getElementById('confirm-params').value"))
            assert shown_params["window"] == 3 and shown_params["entries"] is True
            page.evaluate("document.getElementById('confirm-params').value = JSON.stringify({window: 1})")
            answer(page, confirm=True)
            assert "below the minimum 2" in result(page, "refused")
            assert http(executor, "GET", "/status")[1]["strategy_parameters"]["window"] == 3
            click(page, "[data-action=reload-params]")
            dialog(page)
            page.evaluate("document.getElementById('confirm-params').value = JSON.stringify({window: 6})")
            answer(page, confirm=True)
            assert "window 3 -> 6" in result(page, "done")
            wait_status(executor, lambda s: s["strategy_parameters"]["window"] == 6)

            # Resume.
            click(page, "[data-action=resume]")
            assert "new positions again" in dialog(page)["text"]
            answer(page, confirm=True)
            result(page, "done")
            wait_status(executor, lambda s: not s["paused"])
            assert page.errors() == []
    finally:
        executor.kill()


@pytest.fixture
def served() -> Iterator[list[WebhookServer]]:
    servers: list[WebhookServer] = []
    yield servers
    for server in servers:
        server.stop()


def test_without_auth_the_buttons_are_not_shown_and_the_page_says_why(
        browser: Chromium, served: list[WebhookServer]) -> None:
    runstate = RunState.create("no-auth", mode="replay", version={"package": "0", "git_commit": None})
    runstate.update(status="running", executor_running=True)
    server = WebhookServer(create_app(runstate, options=WebhookOptions()), port=0)
    server.start()
    served.append(server)
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.effective_port}/")
    page.wait_refreshes(1)
    assert page.evaluate(VISIBLE_BUTTONS) == []
    assert "Operator actions are off: control needs authentication" in (page.note("actions") or "")
    assert page.errors() == []
