"""/metrics over real HTTP: every tradeexecutor_* name, values equal to RunState, promtool-clean, own registry.

Also the portfolio figures behind the portfolio metrics (runstate.figures), computed from a real
backtest's State, and their incremental counter.
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.data.source import load_market
from tradeexecutor.runstate import CrashHistory, HealthLimits, RunState
from tradeexecutor.runstate.figures import FigureCounter, PortfolioFigures, figures_from_state
from tradeexecutor.state import OrderStatus, Position, State
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.metrics import METRIC_NAMES
from tradeexecutor.webhook.options import WebhookOptions

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
#: The bar time of the fixture's last cycle: a replay of 2006 data, run in 2024.
BAR = datetime(2006, 3, 1, tzinfo=UTC)

#: Sample → value, labels as a sorted tuple of pairs.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def backtest_state() -> State:
    strategy = load_strategy(ROOT / "strategies" / "sma_crossover.py")
    market, _ = load_market([], strategy.instruments)
    return run_backtest(strategy, market).state


def scrape(server: WebhookServer) -> tuple[str, str]:
    """(Content-Type, body text) of GET /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read().decode("utf-8")
        assert response.status == 200, body
        return response.getheader("Content-Type", ""), body
    finally:
        connection.close()


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def runstate(backtest_state: State) -> RunState:
    runstate = RunState.create(
        "exec-metrics", mode="replay", strategy_name="sma_crossover",
        version={"package": "1.2.3", "git_commit": "abc"}, now=T0,
    )
    now = datetime.now(UTC)
    runstate.apply_crash_history(CrashHistory(crash_count=2, recent_crashes=[now - timedelta(hours=25),
                                                                             now - timedelta(hours=2)],
                                              last_crashed_at=now - timedelta(hours=2)))
    runstate.update(
        status="running", executor_running=True, safe_mode=True, paused=False,
        started_at=now - timedelta(minutes=1),  # after the restored crashes: not crashed in this process
        position_trigger_checks=17, position_revaluations=23,
        last_cycle_duration=0.125, last_cycle_lag=1.5, market_data_feed_lag=42.0,
        market_data_at=now - timedelta(seconds=42), cycle_interval_seconds=86400.0,
        next_cycle_at=now + timedelta(minutes=5),
        portfolio=figures_from_state(backtest_state, now=T0),
        risk={"drawdown": 0.125, "daily_loss": 0.03, "losing_streak": 2},
    )
    runstate.update_complete_cycle(BAR, now=T0)
    return runstate


@pytest.fixture
def server(runstate: RunState) -> Iterator[WebhookServer]:
    options = WebhookOptions(health_limits=HealthLimits(grace_seconds=60))
    with WebhookServer(create_app(runstate, options=options), port=0) as running:
        yield running


def test_every_metric_name_is_exported_with_the_prometheus_content_type(server: WebhookServer) -> None:
    content_type, text = scrape(server)
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    names = {name for name, _ in samples(text)}
    missing = sorted(set(METRIC_NAMES) - names)
    assert not missing, f"metrics missing: {missing}"
    assert "process_resident_memory_bytes" in names
    assert "process_cpu_seconds_total" in names


def test_values_match_the_runstate(server: WebhookServer, runstate: RunState, backtest_state: State) -> None:
    found = samples(scrape(server)[1])
    assert value(found, "tradeexecutor_info", executor_id="exec-metrics", strategy="sma_crossover",
                 mode="replay", version="1.2.3") == 1
    assert value(found, "tradeexecutor_up") == 1
    assert value(found, "tradeexecutor_crashed") == 0
    assert value(found, "tradeexecutor_healthy") == 0  # safe mode fails /healthz: it needs an operator
    assert value(found, "tradeexecutor_safe_mode") == 1
    assert value(found, "tradeexecutor_paused") == 0
    assert value(found, "tradeexecutor_risk_paused") == 0
    assert value(found, "tradeexecutor_risk_drawdown") == 0.125
    assert value(found, "tradeexecutor_risk_daily_loss") == 0.03
    assert value(found, "tradeexecutor_risk_losing_streak") == 2
    assert value(found, "tradeexecutor_cycles_total") == 1
    assert value(found, "tradeexecutor_position_trigger_checks_total") == 17
    assert value(found, "tradeexecutor_position_revaluations_total") == 23
    assert value(found, "tradeexecutor_crashes_total") == 2
    assert value(found, "tradeexecutor_recent_crashes", window="30m") == 0
    assert value(found, "tradeexecutor_recent_crashes", window="24h") == 1
    crashed_at = runstate.snapshot().crashed_at
    assert crashed_at is not None
    assert value(found, "tradeexecutor_last_crash_timestamp_seconds") == crashed_at.timestamp()
    assert value(found, "tradeexecutor_status", status="running") == 1
    assert sum(v for (name, _), v in found.items() if name == "tradeexecutor_status") == 1
    assert {dict(labels)["status"] for name, labels in found if name == "tradeexecutor_status"} == {
        "new", "starting", "running", "complete", "stopped", "error"}
    assert value(found, "tradeexecutor_cycle_interval_seconds") == 86400
    assert value(found, "tradeexecutor_last_cycle_duration_seconds") == 0.125
    assert value(found, "tradeexecutor_last_cycle_lag_seconds") == 1.5
    assert value(found, "tradeexecutor_last_cycle_wall_timestamp_seconds") == T0.timestamp()
    assert value(found, "tradeexecutor_last_cycle_bar_timestamp_seconds") == BAR.timestamp()
    assert value(found, "tradeexecutor_last_cycle_timestamp_seconds") == BAR.timestamp()  # the old name: bar time
    assert value(found, "tradeexecutor_next_cycle_overdue_seconds") == 0
    assert 42 <= value(found, "tradeexecutor_market_data_feed_lag_seconds") < 42 + 60

    portfolio = backtest_state.portfolio
    figures = runstate.snapshot().portfolio
    assert value(found, "tradeexecutor_portfolio_value") == pytest.approx(portfolio.equity())
    assert value(found, "tradeexecutor_cash") == pytest.approx(portfolio.cash)
    assert value(found, "tradeexecutor_unrealised_pnl") == pytest.approx(
        sum(p.unrealised_pnl for p in portfolio.open_positions))
    assert value(found, "tradeexecutor_open_positions") == len(portfolio.open_positions)
    assert backtest_state.quote_currency() == "USD"
    assert value(found, "tradeexecutor_fees_paid", currency="USD") == pytest.approx(portfolio.fees_paid)
    trades = list(portfolio.all_orders())
    for state, status in (("planned", OrderStatus.created), ("filled", OrderStatus.filled),
                          ("rejected", OrderStatus.rejected)):
        expected = sum(1 for t in trades if t.status == status)
        assert value(found, "tradeexecutor_orders", state=state) == expected
    assert figures.orders_filled == sum(1 for t in trades if t.status == OrderStatus.filled) > 0


def test_values_follow_the_runstate_at_scrape_time(server: WebhookServer, runstate: RunState) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        runstate.set_fail(exc)
    runstate.update(paused=True, next_cycle_at=datetime.now(UTC) - timedelta(seconds=120), risk_paused=True)
    found = samples(scrape(server)[1])
    assert value(found, "tradeexecutor_risk_paused") == 1
    assert value(found, "tradeexecutor_up") == 0
    assert value(found, "tradeexecutor_crashed") == 1
    assert value(found, "tradeexecutor_healthy") == 0
    assert value(found, "tradeexecutor_paused") == 1
    assert value(found, "tradeexecutor_crashes_total") == 3
    assert value(found, "tradeexecutor_recent_crashes", window="30m") == 1
    assert value(found, "tradeexecutor_recent_crashes", window="24h") == 2
    assert value(found, "tradeexecutor_status", status="error") == 1
    assert value(found, "tradeexecutor_status", status="running") == 0
    assert 119 <= value(found, "tradeexecutor_next_cycle_overdue_seconds") < 200


def test_the_fees_name_their_currency_and_a_mix_of_quotes_says_so(server: WebhookServer, runstate: RunState) -> None:
    """One series, labelled with the fees' currency; a state trading in two quotes sums their fees, and its label
    joins both names so no rule reads the sum as one of them (fails before: no label)."""
    figures = runstate.snapshot().portfolio
    runstate.update(portfolio=dataclasses.replace(figures, fees_paid=3.5, fee_currency="USD/USDT"))
    found = samples(scrape(server)[1])
    fees = {labels: v for (name, labels), v in found.items() if name == "tradeexecutor_fees_paid"}
    assert fees == {(("currency", "USD/USDT"),): 3.5}


def test_time_dependent_values_are_computed_at_scrape_time(server: WebhookServer, runstate: RunState) -> None:
    """A loop stuck in a job writes nothing: the feed lag and crash windows must still move."""
    now = datetime.now(UTC)
    runstate.update(market_data_at=now - timedelta(minutes=8), market_data_feed_lag=0.002,
                    recent_crashes=(now - timedelta(minutes=31), now - timedelta(minutes=29, seconds=59)))
    found = samples(scrape(server)[1])
    assert 8 * 60 <= value(found, "tradeexecutor_market_data_feed_lag_seconds") < 8 * 60 + 60
    assert value(found, "tradeexecutor_recent_crashes", window="30m") == 1
    assert value(found, "tradeexecutor_recent_crashes", window="24h") == 2


def test_unknown_values_are_left_out_not_nan() -> None:
    runstate = RunState.create("fresh", version={"package": "0", "git_commit": None}, now=T0)
    with WebhookServer(create_app(runstate), port=0) as server:
        text = scrape(server)[1]
    found = samples(text)
    names = {name for name, _ in found}
    assert "NaN" not in text
    for absent in ("tradeexecutor_last_cycle_duration_seconds", "tradeexecutor_portfolio_value",
                   "tradeexecutor_orders", "tradeexecutor_market_data_feed_lag_seconds"):
        assert absent not in names
        assert f"# TYPE {absent} gauge" in text  # still declared
    assert value(found, "tradeexecutor_healthy") == 0  # the loop is not running yet
    assert value(found, "tradeexecutor_next_cycle_overdue_seconds") == 0


def _promtool() -> str | None:
    path = shutil.which("promtool")
    if path is None and os.environ.get("CI"):
        pytest.fail("promtool is required in CI (apt-get install prometheus) but was not found")
    if path is None:
        pytest.skip("promtool not installed (install the prometheus package); required when CI is set")
    return path


def test_promtool_check_metrics_passes(server: WebhookServer) -> None:
    promtool = _promtool()
    assert promtool is not None
    text = scrape(server)[1]
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool:\n{result.stdout}{result.stderr}"
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_each_app_has_its_own_registry_and_the_global_one_is_untouched(backtest_state: State) -> None:
    before = {m.name for m in REGISTRY.collect()}
    one = RunState.create("one", version={"package": "0", "git_commit": None}, now=T0)
    two = RunState.create("two", version={"package": "0", "git_commit": None}, now=T0)
    two.update(position_revaluations=5)
    with WebhookServer(create_app(one), port=0) as s1, WebhookServer(create_app(two), port=0) as s2:
        f1, f2 = samples(scrape(s1)[1]), samples(scrape(s2)[1])
    assert value(f1, "tradeexecutor_position_revaluations_total") == 0
    assert value(f2, "tradeexecutor_position_revaluations_total") == 5
    after = {m.name for m in REGISTRY.collect()}
    assert after == before
    assert not any(name.startswith("tradeexecutor") for name in after)


# -- portfolio figures ---------------------------------------------------------------------------


def _expected(state: State) -> PortfolioFigures:
    trades = list(state.portfolio.all_orders())
    return PortfolioFigures(
        portfolio_value=state.portfolio.equity(),
        cash=state.portfolio.cash,
        unrealised_pnl=sum(p.unrealised_pnl for p in state.portfolio.open_positions),
        open_positions=len(state.portfolio.open_positions),
        orders_planned=sum(1 for t in trades if t.status == OrderStatus.created),
        orders_filled=sum(1 for t in trades if t.status == OrderStatus.filled),
        orders_rejected=sum(1 for t in trades if t.status == OrderStatus.rejected),
        fees_paid=state.portfolio.fees_paid,
        fee_currency="USD",  # the backtest's instruments are quoted in USD
        updated_at=T0,
    )


def test_figures_from_state_match_a_full_count(backtest_state: State) -> None:
    figures = figures_from_state(backtest_state, now=T0)
    assert figures == _expected(backtest_state)
    assert figures.orders_filled > 0 and figures.open_positions == len(backtest_state.portfolio.open_positions)


class _CountingList(list[Position]):
    """A closed-position list that counts how many items are read by iteration or slicing."""

    reads = 0

    def __getitem__(self, index):
        result = super().__getitem__(index)
        _CountingList.reads += len(result) if isinstance(index, slice) else 1
        return result

    def __iter__(self):
        for item in super().__iter__():
            _CountingList.reads += 1
            yield item


def test_figure_counter_counts_each_closed_position_once(backtest_state: State) -> None:
    state = copy.deepcopy(backtest_state)
    closed = state.portfolio.closed_positions
    held_back = closed[len(closed) // 2:]
    state.portfolio.closed_positions = _CountingList(closed[: len(closed) // 2])
    counter = FigureCounter()

    _CountingList.reads = 0
    counter.figures(state, now=T0)
    first_reads = _CountingList.reads
    assert first_reads >= len(state.portfolio.closed_positions)

    _CountingList.reads = 0
    counter.figures(state, now=T0)
    assert _CountingList.reads <= 2  # nothing new: only the last item is looked at

    state.portfolio.closed_positions.extend(held_back)  # positions close: only they are counted
    _CountingList.reads = 0
    figures = counter.figures(state, now=T0)
    assert _CountingList.reads <= len(held_back) + 2  # the new ones, plus the last-item checks
    assert figures == _expected(backtest_state)


def test_figure_counter_starts_over_when_the_list_is_replaced(backtest_state: State) -> None:
    state = copy.deepcopy(backtest_state)
    counter = FigureCounter()
    counter.figures(state, now=T0)
    state.portfolio.closed_positions = state.portfolio.closed_positions[:3]  # e.g. a reloaded state
    assert counter.figures(state, now=T0) == _expected(state)
