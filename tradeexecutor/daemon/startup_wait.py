"""Start-up with the exchange down: wait for it in-process, as the loop waits out an outage, instead of exiting.

Paper and live mode read the exchange before the first decision (markets, warm-up candles, fee,
and live mode's reconciliation with the account), so an exchange that is down, in maintenance,
rate-limiting or unreachable at start-up raised :class:`~tradeexecutor.errors.TemporaryError` out
of ``build_daemon``, and the process exited 1 for a restart policy to try again. That is a
temporary failure, not a crash, and is now handled as the loop handles one (``daemon/outage.py``):

- the build is tried again after the same capped, doubling backoff (``--retry-max-seconds``, or
  longer when the exchange named a ``Retry-After``); every try starts from nothing (``build_daemon``
  writes nothing and releases the state directory's lock when it fails), so a retry is as safe as
  a restart;
- meanwhile a webhook serves a RunState of its own: ``/status`` shows ``"status": "starting"`` and
  the ``outage`` record (job ``start-up``, since, retries, the scrubbed error, the next try),
  ``/metrics`` the outage figures, and ``/healthz`` answers 200 until ``--outage-grace-seconds``
  have passed, then 503 with the reason (``runstate/health.py``); ``/ping`` answers throughout, so
  a liveness probe does not restart the process;
- nothing reaches crash.json: a long outage at start-up never counts towards crash-loop safe mode;
- a stop signal ends the wait at once (exit 0, nothing started);
- when the exchange answers, the waiting webhook stops and ``start`` goes on as usual (the real
  webhook binds the same port).

Anything else ``build_daemon`` raises is not retried: bad credentials (Binance -2015/-1022, ccxt's
``AuthenticationError``: a ``VenueFailure``), a missing variable, a bad symbol stay one line and a
non-zero exit, since waiting would not fix them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from tradeexecutor.daemon.outage import Outage
from tradeexecutor.daemon.paper import prices_description
from tradeexecutor.daemon.signals import StopSignals
from tradeexecutor.errors import TemporaryError
from tradeexecutor.runstate import RunState
from tradeexecutor.settings import EXCHANGE_MODES, DaemonConfig

__all__ = ["STARTUP_JOB", "build_when_reachable"]

logger = logging.getLogger("tradeexecutor.daemon")

#: The job name of a start-up outage in /status, /healthz and the log.
STARTUP_JOB = "start-up"

T = TypeVar("T")


class Server(Protocol):
    """The waiting webhook (the CLI builds it; this module does not import the webhook)."""

    def stop(self, timeout: float | None = None) -> None: ...


def build_when_reachable(config: DaemonConfig, build: Callable[[], T], serve: Callable[[RunState], Server],
                         signals: StopSignals, *, now: Callable[[], datetime] | None = None) -> T:
    """``build()``, tried again while it fails temporarily, with ``serve(runstate)``'s webhook up meanwhile.

    Raises StopRequested when a stop signal comes during the wait, and whatever non-temporary error a try
    raised.
    """
    clock = now or (lambda: datetime.now(UTC))
    if config.mode not in EXCHANGE_MODES:  # a replay reads files: nothing outside to wait for
        return build()
    try:
        return build()
    except TemporaryError as first:
        error: TemporaryError = first
    runstate = RunState.create(config.strategy_file.stem, mode=config.mode, strategy_name=config.strategy_file.stem,
                               now=clock())
    runstate.update(prices=prices_description(config))
    outage = Outage(runstate, clock, cap_seconds=config.retry_max_seconds)
    record, _ = outage.failed(STARTUP_JOB, error)
    logger.warning("%s cannot be reached at start-up; waiting for it in-process (/healthz turns 503 after %g s)",
                   runstate.prices, config.health.outage_grace_seconds)
    server = serve(runstate)
    try:
        while True:
            signals.requested.wait(max(0.0, (record.next_retry_at - clock()).total_seconds()))
            signals.check(f"waiting for {config.exchange.exchange} at start-up")
            try:
                built = build()
            except TemporaryError as again:
                record, _ = outage.failed(STARTUP_JOB, again)
                continue
            ended = outage.succeeded(STARTUP_JOB)
            if ended is not None:
                logger.info("%s answered after %.1f s of start-up retries; starting",
                            runstate.prices, (clock() - ended.since).total_seconds())
            return built
    finally:
        server.stop()
