"""``tradeexecutor start`` whose price feed plays an exchange that is down while a marker file exists.

The exchange lies outside the machine, so its outage is the one thing faked: while the file named
by ``TE_TEST_OUTAGE_FILE`` exists, delivering the next bar raises TemporaryError with the words a
ccxt venue would give (a signed URL's query string included, which must be scrubbed before it
reaches /status, /metrics or the journal). Everything else is the real executor process.
"""

from __future__ import annotations

import os
from pathlib import Path

from tradeexecutor.cli.main import main
from tradeexecutor.data.feed import ReplayFeed
from tradeexecutor.errors import TemporaryError

MARKER = Path(os.environ["TE_TEST_OUTAGE_FILE"])
#: What the outage says: a 503 from an exchange, with a signed URL (its signature is a test value).
MESSAGE = ("binance: ExchangeNotAvailable: 503 Service Unavailable GET "
           "https://api.binance.com/api/v3/klines?symbol=GOOG&signature=0badc0ffee0badc0ffee")

_advance = ReplayFeed.advance


def _advance_unless_down(self: ReplayFeed) -> int | None:
    if MARKER.exists():
        raise TemporaryError(MESSAGE)
    return _advance(self)


ReplayFeed.advance = _advance_unless_down  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
