"""The metric names an executor exports at /metrics: a contract with deploy/prometheus/alerts.yml and
the Grafana dashboard (deploy/grafana/dashboards/tradeexecutor.json).

Sample names as Prometheus stores them (counters with their ``_total``). Alert rules and dashboard
panels may use only these (tests/test_deploy.py checks both); the /metrics tests check the live
endpoint exports every one. Renaming one breaks deployed alerts: add a new name instead.
"""

from __future__ import annotations

#: Every metric name the deployment may rely on, with its labels in the comment.
METRIC_NAMES: frozenset[str] = frozenset({
    "tradeexecutor_info",                            # {executor_id, strategy, mode, version}, always 1
    "tradeexecutor_status",                          # {status}: 1 for the run's status, 0 for the others
    "tradeexecutor_up",                              # 1 while the executor's loop runs
    "tradeexecutor_crashed",                         # 1 after a crash in this process
    "tradeexecutor_healthy",                         # 1 when /healthz answers 200
    "tradeexecutor_safe_mode",                       # 1 after a crash loop: strategy not called
    "tradeexecutor_paused",                          # 1 while an operator paused it
    "tradeexecutor_risk_paused",                     # 1 while a risk limit keeps entries paused
    "tradeexecutor_orders_fills_missing",            # live: ended orders whose trades have not added up (followed)
    "tradeexecutor_risk_drawdown",                   # fraction below the equity peak
    "tradeexecutor_risk_daily_loss",                 # fraction below the UTC day's starting equity
    "tradeexecutor_risk_losing_streak",              # positions closed at a loss in a row
    "tradeexecutor_cycles_total",                    # counter, this process
    "tradeexecutor_position_trigger_checks_total",   # counter, this process
    "tradeexecutor_position_revaluations_total",     # counter, this process
    "tradeexecutor_crashes_total",                   # counter, this state directory (survives restarts)
    "tradeexecutor_recent_crashes",                  # {window="30m|24h"}, this state directory, at scrape time
    "tradeexecutor_last_crash_timestamp_seconds",    # wall time, this state directory
    "tradeexecutor_cycle_interval_seconds",          # wall seconds between cycles (alert thresholds)
    "tradeexecutor_last_cycle_duration_seconds",
    "tradeexecutor_last_cycle_lag_seconds",
    "tradeexecutor_last_cycle_wall_timestamp_seconds",
    "tradeexecutor_last_cycle_bar_timestamp_seconds",  # the cycle's time on the data's timeline
    "tradeexecutor_last_cycle_timestamp_seconds",    # deprecated: same as _bar_ (kept for existing rules)
    "tradeexecutor_next_cycle_overdue_seconds",      # at scrape time
    "tradeexecutor_market_data_feed_lag_seconds",    # at scrape time
    "tradeexecutor_outage",                          # 1 while a temporarily failed job is retried
    "tradeexecutor_outage_seconds",                  # how long the current temporary failure has lasted
    "tradeexecutor_outage_retries",                  # failed retries of the current one
    "tradeexecutor_temporary_failures_total",        # counter, this process
    "tradeexecutor_portfolio_value",
    "tradeexecutor_cash",
    "tradeexecutor_unrealised_pnl",
    "tradeexecutor_open_positions",
    "tradeexecutor_orders",                          # {state}
    "tradeexecutor_fees_paid",
    "tradeexecutor_exchange_clock_offset_seconds",   # {exchange}, paper and live: the exchange's clock minus ours
    "tradeexecutor_exchange_requests_total",         # {exchange}, counter, this process
    "tradeexecutor_exchange_held_back_seconds",      # {exchange}: until a 429/418 wait ends
    "tradeexecutor_exchange_held_back_seconds_total",  # {exchange}, counter: seconds held back by 429/418
    "tradeexecutor_exchange_rate_share",             # {exchange}: configured share of the address's budget
    "tradeexecutor_exchange_rate_share_used",        # {exchange}: fraction of the share used over the last minute
    "process_resident_memory_bytes",                 # prometheus_client's process collector
})

#: Series Prometheus writes itself for every target, which the rules and the dashboard may use too.
SCRAPE_SERIES: frozenset[str] = frozenset({"up"})

#: Labels the deployment adds or relies on beyond the metrics' own (job/instance from Prometheus,
#: executor from the scrape configs).
LABELS: frozenset[str] = frozenset({"executor_id", "strategy", "mode", "version", "state", "status", "window",
                                    "job", "instance", "executor", "exchange"})
