"""Notifications through real apprise channels to a loopback JSON endpoint: content, switches, rate limit, queue, failures.

Every message travels the real way: Notifier → policy → a sender thread → apprise's ``json://``
plugin → HTTP on 127.0.0.1 → the endpoint of tests/notify_endpoint.py. Time for the rate limit
comes from a FakeClock, so windows open and close when the test says.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from notify_endpoint import LoopbackEndpoint
from tradeexecutor.daemon import FakeClock
from tradeexecutor.errors import ConfigError
from tradeexecutor.notify import (
    CHANNEL_KINDS,
    EVENT_KINDS,
    JOURNAL_EVENT_KINDS,
    Decision,
    Message,
    Notifier,
    NotifyConfig,
    Policy,
    channels_from_env,
    format_event,
    parse_event_switches,
    parse_summary_time,
)
from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.metrics import NOTIFICATION_METRIC_NAMES
from tradeexecutor.webhook.options import WebhookOptions

VARIABLE = "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL"
TOKEN = "tok3n-9f8e7d6c5b4a"


def notifier(url: str, clock: FakeClock | None = None, **config: Any) -> Notifier:
    """A started notifier sending to ``url`` (the webhook channel)."""
    clock = clock or FakeClock()
    built = Notifier(NotifyConfig(**config), channels_from_env({VARIABLE: url}), source="exec1",
                     monotonic=clock.monotonic, tick_seconds=3600)
    built.start()
    return built


@pytest.fixture
def endpoint() -> Iterator[LoopbackEndpoint]:
    with LoopbackEndpoint(token=TOKEN) as running:
        yield running


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- what each event says ---------------------------------------------------------------------


EVENTS: list[tuple[str, dict[str, Any], str, list[str], str]] = [
    ("crashed", {"job": "cycle", "exception": "strategies.x.StrategyBoom", "message": "cannot price GOOG",
                 "where": "strategies/x.py:42 in decide"},
     "exec1 crashed: StrategyBoom",
     ["strategies.x.StrategyBoom: cannot price GOOG", "where: strategies/x.py:42 in decide", "job: cycle",
      "status: http://te.example:3456/status"], "failure"),
    ("safe_mode", {"reason": "3 crashes within 10 minutes"}, "exec1 entered safe mode",
     ["reason: 3 crashes within 10 minutes"], "warning"),
    ("health_degraded", {"reasons": ["next cycle is 90 s overdue (grace 60 s)"]}, "exec1 health degraded",
     ["- next cycle is 90 s overdue (grace 60 s)"], "warning"),
    ("health_recovered", {}, "exec1 health recovered", ["passes again"], "success"),
    ("order_filled", {"order_id": 7, "symbol": "GOOG", "purpose": "open", "quantity": 12.5, "price": 101.25,
                      "fee": 0.25}, "exec1: open GOOG filled", ["order 7: bought 12.5 at 101.25", "fee: 0.25"], "info"),
    ("order_filled", {"order_id": 9, "symbol": "AAA", "purpose": "open", "quantity": 10.0, "price": 100.0, "fee": 0.01,
                      "fee_currency": "AAA", "fee_value": 1.0, "fee_value_currency": "USD"},  # taken in the base asset
     "exec1: open AAA filled", ["order 9: bought 10 at 100", "fee: 0.01 AAA (1.00 USD)"], "info"),
    ("order_filled", {"order_id": 10, "symbol": "AAA", "purpose": "increase", "quantity": 10.0, "price": 100.0,
                      "fee": 0.004, "fee_currency": "BNB", "fee_value": 1.0, "fee_value_currency": "USD"},  # in BNB
     "exec1: increase AAA filled", ["fee: 0.004 BNB (1.00 USD)"], "info"),
    ("order_filled", {"order_id": 11, "symbol": "AAA", "purpose": "close", "quantity": -10.0, "price": 100.0,
                      "fee": 1.0, "fee_currency": "USD"}, "exec1: close AAA filled", ["fee: 1 USD"], "info"),
    ("order_rejected", {"order_id": 8, "symbol": "AAPL", "purpose": "open", "reason": "below minimum notional"},
     "exec1: open AAPL rejected", ["reason: below minimum notional"], "warning"),
    ("trigger_fired", {"position_id": 3, "symbol": "GOOG", "trigger": "stop_loss", "trigger_price": 95.0,
                       "price": 94.8, "quantity": 12.5}, "exec1: stop_loss fired on GOOG",
     ["position 3: sold 12.5 at 94.8", "trigger level: 95"], "warning"),
    ("reconciliation_mismatch", {"symbol": "GOOG", "ours": 12.5, "venue": 10.0},
     "exec1: reconciliation mismatch on GOOG", ["ours: 12.5", "venue: 10.0", "nothing was changed"], "failure"),
    ("risk_limit_hit", {"limit": "max_drawdown", "value": 0.21, "threshold": 0.2}, "exec1: max_drawdown hit",
     ["New entries are paused", "value: 0.21", "threshold: 0.2"], "failure"),
    ("complete", {"reason": "the replay reached the end of the data", "cycles": 250}, "exec1: run completed",
     ["the replay reached the end of the data", "cycles this run: 250"], "success"),
    ("daily_summary", {"date": "2024-05-02", "equity": 10234.5, "change": -65.5, "change_pct": -0.64,
                       "trades": 3, "open_positions": 1, "since": "2024-05-01T00:00"},
     "exec1: daily summary 2024-05-02",
     ["equity: 10,234.50", "change: -65.50 (-0.64 %) since 2024-05-01T00:00", "trades: 3", "open positions: 1"],
     "info"),
]


def test_every_event_kind_arrives_with_its_content(endpoint: LoopbackEndpoint) -> None:
    sender = notifier(endpoint.url, cooldown_seconds=0, public_url="http://te.example:3456/")
    try:
        for event, fields, _, _, _ in EVENTS:
            sender(event, "info", fields)
        posts = endpoint.wait_for(lambda posts: len(posts) >= len(EVENTS), what="one message per event")
    finally:
        sender.close()
    by_title = {post["title"]: post for post in posts}
    assert len(posts) == len(EVENTS), [post["title"] for post in posts]
    for event, _, title, lines, severity in EVENTS:
        post = by_title.get(title)
        assert post is not None, f"{event}: no message titled {title!r}; got {sorted(by_title)}"
        for line in lines:
            assert line in post["message"], f"{event}: {line!r} not in {post['message']!r}"
        assert post["type"] == severity, (event, post["type"])
    assert set(JOURNAL_EVENT_KINDS.values()) == set(EVENT_KINDS), "every kind has a journal event, and back"
    counts = sender.counts()
    assert sum(n for (channel, _, outcome), n in counts.items() if outcome == "sent") == len(EVENTS)
    assert {kind for (_, kind, _) in counts} == set(EVENT_KINDS)


def test_events_without_a_kind_never_notify_and_missing_fields_never_raise() -> None:
    for event in ("cycle_completed", "revalued", "order_planned", "started", "paused"):
        assert format_event(event, {"anything": 1}, source="x") is None
    for event in JOURNAL_EVENT_KINDS:
        message = format_event(event, {}, source="x")  # a field missing is shown as "?", never KeyError
        assert message is not None and message.title.startswith("x")


# -- switches ---------------------------------------------------------------------------------


def test_event_switches_parse_all_none_lists_and_exclusions() -> None:
    assert parse_event_switches("all") == frozenset(EVENT_KINDS)
    assert parse_event_switches("none") == frozenset()
    assert parse_event_switches("crash, health") == {"crash", "health"}
    assert parse_event_switches("all,-order_filled -trigger_fired") == set(EVENT_KINDS) - {"order_filled",
                                                                                           "trigger_fired"}
    with pytest.raises(ConfigError, match=r"unknown event 'fills'.*order_filled"):
        parse_event_switches("crash,fills")
    assert parse_summary_time("07:30").isoformat() == "07:30:00"
    for bad in ("7", "25:00", "noon"):
        with pytest.raises(ConfigError, match="--notify-summary-time"):
            parse_summary_time(bad)
    with pytest.raises(ConfigError, match="--notify-queue-size"):
        NotifyConfig(queue_size=0)
    with pytest.raises(ConfigError, match="--notify-cooldown-seconds"):
        NotifyConfig(cooldown_seconds=-1)


def test_a_switched_off_event_is_not_sent(endpoint: LoopbackEndpoint) -> None:
    sender = notifier(endpoint.url, events=parse_event_switches("all,-order_filled"))
    try:
        sender("order_filled", "info", {"symbol": "GOOG", "purpose": "open"})
        sender("crashed", "error", {"exception": "ValueError", "message": "boom"})
        endpoint.wait_for(lambda posts: len(posts) >= 1)
        assert sender.wait_idle(30)
    finally:
        sender.close()
    assert endpoint.titles() == ["exec1 crashed: ValueError"]
    assert not any(kind == "order_filled" for (_, kind, _) in sender.counts())


# -- rate limit -------------------------------------------------------------------------------


def _flap(i: int) -> Message:
    healthy = i % 2 == 1
    return Message("health", "", f"x health {'recovered' if healthy else 'degraded'}", "", "info")


def test_policy_sends_one_per_window_and_a_digest_at_its_end_however_fast_it_flaps() -> None:
    clock = FakeClock()
    policy = Policy(frozenset(EVENT_KINDS), cooldown_seconds=60, monotonic=clock.monotonic)
    sent = [policy.decide(_flap(0))]
    for i in range(1, 200):  # 200 flaps in 4 seconds
        clock.advance(0.02)
        sent.append(policy.decide(_flap(i)))
    assert sent.count(Decision.send) == 1 and sent.count(Decision.suppressed) == 199
    assert policy.due() == []  # the window is still open
    clock.advance(60)
    (digest,) = policy.due()
    assert "199 more similar events suppressed" in digest.body and "x health recovered" in digest.body
    # flapping on for ten minutes, 0.7 s apart: one digest per window, nothing else
    digests = 0
    for _ in range(int(600 / 0.7)):
        clock.advance(0.7)
        assert policy.decide(_flap(1)) == "suppressed"
        digests += len(policy.due())
    assert digests in (9, 10)  # at most one per 60 s window
    # quiet for two windows: the last digest goes out, then the key is forgotten and the next event is sent
    clock.advance(60)
    policy.due()
    clock.advance(60)
    assert policy.due() == []
    assert policy.decide(_flap(0)) == "send"
    # a different subject has its own window
    assert policy.decide(Message("order_filled", "GOOG", "t", "")) == "send"
    assert policy.decide(Message("order_filled", "AAPL", "t", "")) == "send"
    assert policy.decide(Message("order_filled", "GOOG", "t", "")) == "suppressed"


def test_close_sends_the_digests_still_held_back(endpoint: LoopbackEndpoint) -> None:
    sender = notifier(endpoint.url, cooldown_seconds=3600, flush_seconds=120)
    for _ in range(5):
        sender("order_rejected", "warning", {"symbol": "GOOG", "reason": "no cash"})
    sender.close()  # within flush_seconds (generous: close() returns as soon as both are sent)
    titles = endpoint.wait_for(lambda posts: len(posts) >= 2)
    assert [post["title"] for post in titles] == ["exec1: order GOOG rejected",
                                                  "exec1: order GOOG rejected (and 4 more similar)"]


# -- the queue ----------------------------------------------------------------------------------


def _msg(kind: str, n: int) -> Message:
    return Message(kind, str(n), f"{kind} {n}", "")


def test_a_full_queue_drops_the_oldest_low_priority_message_first() -> None:
    with LoopbackEndpoint() as slow:
        # Held until the test ends (not a 3 s delay the submits below had to beat on a busy machine).
        slow.hold()
        sender = notifier(slow.url, cooldown_seconds=0, queue_size=3, flush_seconds=0.2)
        (channel,) = sender.senders
        try:
            sender.submit(_msg("order_filled", 0))  # taken by the thread, stuck on the held endpoint
            deadline = time.monotonic() + 30
            while channel.queued() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert channel.queued() == 0 and channel.pending() == 1, sender.counts()
            for n in (1, 2, 3):
                sender.submit(_msg("order_filled", n))
            sender.submit(_msg("crash", 1))  # full: the oldest fill (1) makes room
            sender.submit(_msg("crash", 2))  # fill 2 goes
            sender.submit(_msg("crash", 3))  # fill 3 goes; now only crashes wait
            sender.submit(_msg("order_filled", 4))  # a low-priority newcomer to a queue of crashes: dropped itself
            sender.submit(_msg("crash", 4))  # all high: the oldest crash (1) goes
            counts = sender.counts()
            assert counts[("webhook", "order_filled", "dropped")] == 4
            assert counts[("webhook", "crash", "dropped")] == 1
            assert channel.queued() == 3
        finally:
            sender.close()  # flush deadline 0.2 s: the three queued crashes are left and counted
    assert sender.counts()[("webhook", "crash", "dropped")] == 4


def test_a_message_being_sent_at_the_shutdown_deadline_is_counted_once_as_dropped() -> None:
    """The race behind test_a_slow_channel_never_holds_up_the_loop: a message taken off the queue and
    still unanswered when close()'s deadline passes used to be counted nowhere until (and unless) the
    send ended later; now close counts it as dropped and the late answer adds nothing."""
    with LoopbackEndpoint() as slow:
        slow.hold()
        sender = notifier(slow.url, cooldown_seconds=0, flush_seconds=0)
        (channel,) = sender.senders
        sender.submit(_msg("order_filled", 0))
        deadline = time.monotonic() + 60
        while channel.queued() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert channel.queued() == 0 and channel.pending() == 1  # taken by the thread, unanswered
        sender.close()
        assert sender.counts() == {("webhook", "order_filled", "dropped"): 1}  # counted at once, not later
        slow.release()  # now the endpoint answers the request close() gave up on
        assert channel.wait_idle(60)
        assert slow.wait_for(lambda posts: len(posts) == 1, what="the late request")
    assert sender.counts() == {("webhook", "order_filled", "dropped"): 1}  # and still exactly once


# -- failures -----------------------------------------------------------------------------------


def _scrape(counts_source: Notifier) -> str:
    options = WebhookOptions(notification_counts=counts_source.counts)
    with WebhookServer(create_app(RunState.create("x", version={}), options=options), port=0) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
        try:
            connection.request("GET", "/metrics")
            return connection.getresponse().read().decode()
        finally:
            connection.close()


@pytest.mark.parametrize("fault", ["http 500", "connection refused"])
def test_a_failing_channel_is_counted_in_metrics_and_logged_without_its_url(
        fault: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every library's debug lines too: none may show the token
    with LoopbackEndpoint(status=500, token=TOKEN) as broken:
        url = broken.url if fault == "http 500" else f"json://127.0.0.1:{closed_port()}/{TOKEN}"
        sender = notifier(url, cooldown_seconds=0)
        try:
            sender("crashed", "error", {"exception": "ValueError", "message": "boom"})
            sender("order_filled", "info", {"symbol": "GOOG"})
            assert sender.wait_idle(30)
        finally:
            sender.close()
        if fault == "http 500":
            assert len(broken.received()) == 2 and broken.paths == [f"/{TOKEN}"] * 2  # the token was really used
    counts = sender.counts()
    sender.counters.add("", "health", "suppressed", 3)  # so the suppressed family has a sample to show
    assert counts[("webhook", "crash", "failed")] == 1 and counts[("webhook", "order_filled", "failed")] == 1
    assert not any(outcome == "sent" for (_, _, outcome) in counts)

    text = _scrape(sender)
    assert 'tradeexecutor_notifications_total{channel="webhook",event="crash",outcome="failed"} 1.0' in text
    assert 'tradeexecutor_notifications_total{channel="webhook",event="order_filled",outcome="failed"} 1.0' in text
    for name in NOTIFICATION_METRIC_NAMES:
        assert f"# TYPE {name} counter" in text
    assert 'tradeexecutor_notifications_suppressed_total{event="health"} 3.0' in text

    failures = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failures) == 2 and all(VARIABLE in line and "(JSON)" in line for line in failures), failures
    expected = "error=500" if fault == "http 500" else "Connection error"
    assert all(expected in line for line in failures), failures
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert TOKEN not in logged, "the channel's token reached a log record"


def test_a_failing_endpoint_never_raises_into_the_caller() -> None:
    sender = notifier(f"json://127.0.0.1:{closed_port()}/{TOKEN}", cooldown_seconds=0)
    try:
        for n in range(20):
            sender("order_filled", "info", {"symbol": f"S{n}"})  # returns at once, whatever the channel does
        assert sender.wait_idle(60)
    finally:
        sender.close()
    assert sender.counts()[("webhook", "order_filled", "failed")] == 20


def test_no_channel_means_declared_families_without_samples() -> None:
    text = _scrape(Notifier(NotifyConfig(), [], source="x"))
    assert "# TYPE tradeexecutor_notifications_total counter" in text
    assert "tradeexecutor_notifications_total{" not in text


# -- channel configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    (f"not a url {TOKEN}", "is not a JSON URL apprise understands"),
    (f"json://{TOKEN}:x:y/", "is not a JSON URL apprise understands"),
    (f"tgram://123456789:{TOKEN}/12315544", "holds a Telegram URL, not a JSON one"),
])
def test_a_bad_url_is_refused_naming_the_variable_never_the_value(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        channels_from_env({VARIABLE: value})
    text = str(refused.value)
    assert VARIABLE in text and message in text and "json://host:port/path" in text
    assert TOKEN not in text


def test_each_channel_variable_accepts_its_service_and_is_shown_by_name_only() -> None:
    urls = {
        "TRADEEXECUTOR_NOTIFY_TELEGRAM_URL": f"tgram://123456789:{TOKEN}/12315544",
        "TRADEEXECUTOR_NOTIFY_DISCORD_URL": f"discord://4174216298/{TOKEN}",
        "TRADEEXECUTOR_NOTIFY_SLACK_URL": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "TRADEEXECUTOR_NOTIFY_EMAIL_URL": f"mailtos://user:{TOKEN}@smtp.example.com?to=ops@example.com",
        VARIABLE: f"json://127.0.0.1:9/{TOKEN}",
        "TRADEEXECUTOR_NOTIFY_UNKNOWN_URL": "ignored",
        "TRADEEXECUTOR_NOTIFY_SLACK_URL_EMPTY": "",
    }
    channels = channels_from_env(urls)
    assert [c.name for c in channels] == [kind.name for kind in CHANNEL_KINDS]
    assert [c.service for c in channels] == ["Telegram", "Discord", "Slack", "E-Mail", "JSON"]
    described = Notifier(NotifyConfig(), channels, source="x").describe()
    assert described[0] == "TRADEEXECUTOR_NOTIFY_TELEGRAM_URL (Telegram)"
    for channel in channels[:2] + channels[3:]:
        assert TOKEN not in repr(channel) and TOKEN not in channel.redact(f"GET /bot{TOKEN}/send")
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in channels[2].redact("POST /TIiajkdnlazkcOXrIdevi7FQ failed")
    assert channels_from_env({VARIABLE: "  "}) == []


@pytest.mark.parametrize(("action", "first_line"), [
    ("entries paused", "New entries are paused; open positions are still managed."),
    ("entries paused, positions closed", "New entries are paused; every open position was closed."),
])
def test_a_risk_message_says_whether_the_positions_were_closed(action: str, first_line: str) -> None:
    message = format_event("risk_limit_hit", {"limit": "max_drawdown", "value": 0.21, "threshold": 0.2,
                                              "action": action}, source="exec1")
    assert message is not None
    assert message.body.splitlines()[0] == first_line


def test_a_trigger_whose_exit_did_not_fill_says_so_not_sold_zero() -> None:
    """Live: a stop-loss's exit refused, filled in part or of unknown outcome is journaled without a price."""
    fields = {"position_id": 4, "symbol": "GOOG", "trigger": "stop_loss", "trigger_price": 95.0, "price": None,
              "quantity": 2.5, "client_order_id": "te-abc-1", "status": "unknown"}
    message = format_event("trigger_fired", fields, source="exec1")
    assert message is not None
    assert "position 4: exit order te-abc-1 is unknown, 2.5 sold so far; the position stays protected" in message.body
    assert "sold 0 at ?" not in message.body and "at ?" not in message.body
