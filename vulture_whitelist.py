"""Names vulture reports as unused that are used where it cannot see (read by ``tests/test_dead_code.py``).

Each line names one and says who uses it. Vulture matches by name only, so ``_.name`` stands for
any object's attribute. Dead code does not belong here: remove it instead.
"""

# ruff: noqa
_ = object()

# Called by frameworks, by name or through a protocol.
_.setup  # SweepDataPlugin (runs/sweep_dask.py): Dask's worker calls it when the plugin arrives
_.teardown  # SweepDataPlugin: Dask's worker calls it when the plugin is removed
_.daemon_threads  # socketserver.ThreadingMixIn option (metrics serve)
_.log_message  # http.server hook, silenced (metrics serve)
_.collect  # prometheus_client Collector protocol (webhook/metrics.py, runs/metrics_text.py)
_.auth_tween_factory  # pyramid tween, registered by its dotted name (webhook/auth.py)
_.error_task_class  # waitress HTTPChannel option (webhook/channel.py)
_.start_new_thread  # waitress ThreadedTaskDispatcher hook (webhook/channel.py)
_.channel_class  # waitress server option (webhook/server.py)
_.app_iter  # webob Response body iterator (webhook/files.py)
_.row_factory  # sqlite3 Connection option (runs/registry.py)
_.writeable  # numpy array flag: read-only views (data/market.py, strategy/indicators.py)
_.__call__  # callable objects passed as sinks and callbacks (EventSink, JournalSink, EventBuffer)

# Dataclass fields: serialised (to_dict, JSON, /status), never read by attribute in the package.
_.visualisation_updated_at  # RunState, /status
_.strategy_parameters  # RunState, /status (written by update(strategy_parameters=...))
_.annualised_volatility  # Summary
_.position_count  # Summary
_.buy_and_hold_return  # Summary
_.gzip_size  # PublishedSnapshot: tests/test_webhook_files.py
_.hashed  # PartsDigest: pieces hashed by the last call, tests/test_publish_incremental.py
_.new_runs  # PartsDigest: runs digested by the last call, tests/test_publish_incremental.py

# The strategy API: strategy files call these (strategies/, tests/strategies/, docs/writing-a-strategy.md).
_.average_price  # PositionView
_.bars_available  # CycleContext
_.candles  # CycleContext
_.indicator  # CycleContext
_.indicator_history  # CycleContext
_.has_position  # CycleContext

# Used by scripts outside the package.
_.option_default  # docs/gen_config_reference.py, deploy/generate_env_example.py

# Read by tests and benchmarks to observe what the code did.
_.run_pending  # ExecutorLoop: tests drive the loop without its thread
_.process_step  # Engine: the per-bar reference path tests hold the backtest's fast path against
_.progress_callback  # runs.sweep: scripts and tests follow a sweep point by point
_.set_image  # RunState: tests and bench/bench_scheduler_lag.py set one chart image
_.filled_orders  # Position: tests/test_parity_backtesting_py.py
_.exit_price  # Position: tests/test_parity_backtesting_py.py
_.last_save_bytes  # StateStore: tests and bench/bench_state_store.py
_.save_snapshot  # StateStore (the JSON store, read by state migrate): tests/test_store_state_store.py
_.last_loads  # CpuPinning: tests/test_cpu_affinity.py
_.evicted  # WebhookServer: tests/test_webhook_server_limits.py
_.recompute_from_fills  # engine/accounting.py: tests replay the books from the fills (test_state_orders, test_daemon_e2e)
_.recompute_cash  # engine/accounting.py: the same, for cash
_.fail_next  # InMemoryVenue: tests script venue faults (test_venue_memory.py, test_engine_router.py)
_.packed_bytes  # PackedPositions: bench/bench_heap.py reports the packed blocks' bytes

# Kept ahead of its first user.
_.stop_limit  # OrderType: the persisted order vocabulary (docs/orders.md); the engine sends market orders now
_.ioc  # TimeInForce: the same
_.fok  # TimeInForce: the same
_.TemporaryError  # DESIGN.md's retry class: temporary failures are retried at the loop boundary (venues)
_.last_commit_bytes  # Ledger: tests/test_ledger.py and bench/bench_ledger.py measure a commit
_.reused  # Spill: tests/test_spill.py counts the blocks a restart found in its spill file instead of writing them
_.rejoined  # KeptRows: tests/test_spill.py and bench/bench_late_close.py count the rows a close out of id order copies again
_.queries  # OlderRows: tests/test_valuation_tail.py counts the ledger queries a tail's older rows cost
_.taken_ahead  # DeltaFeed: tests/test_valuation_tail_start.py counts the rows the start-up's pass took ahead for the first delta
