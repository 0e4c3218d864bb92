"""Drills: named fault scenarios run against the exchange simulator with a real executor process.

``tradeexecutor drill NAME`` (cli/drill_cmd.py) stages the simulator and ``tradeexecutor start
--mode live`` against it (:mod:`harness`), injects the drill's fault through the simulator's
control API, watches the executor's webhook, journal and ledger (:mod:`scenarios`), checks what
it did against what issue 13 expects (:mod:`checks`) and writes ``drills/NAME.json`` (:mod:`run`).
"""

from tradeexecutor.drill.run import run_drill
from tradeexecutor.drill.scenarios import DRILLS

__all__ = ["DRILLS", "run_drill"]
