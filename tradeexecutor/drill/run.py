"""Run one drill: stage it, play it, check it, and write ``drills/NAME.json`` whatever happened.

The report is written even when the drill cannot be staged or a step times out (the check that
could not be made fails with the reason), so an operator always finds what was injected, when,
what the executor did — journal, /healthz changes, processes, the simulator's orders beside the
ledger's — the expected behaviour and each check's verdict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tradeexecutor.atomic import atomic_write_text
from tradeexecutor.drill.checks import Checks, order_checks, order_rows
from tradeexecutor.drill.harness import DrillError, Stage, now_iso
from tradeexecutor.drill.scenarios import DRILLS, EXECUTOR_OPTIONS, STRATEGIES
from tradeexecutor.layout import DrillFiles

__all__ = ["run_drill"]


def run_drill(name: str, folder: Path, exchange_url: str | None = None,
              credentials: tuple[str, str] | None = None) -> tuple[bool, Path]:
    """Run drill ``name`` with its files in ``folder``: (passed, the report's path)."""
    drill = DRILLS[name]
    files = DrillFiles(folder)
    started, clock = now_iso(), time.monotonic()
    checks = Checks()
    report: dict[str, Any] = {"drill": name, "summary": drill.summary, "expected": list(drill.expected),
                              "strategy": drill.strategy, "started_at": started,
                              "executor_options": list(EXECUTOR_OPTIONS)}
    stage: Stage | None = None
    try:
        stage = Stage(files, STRATEGIES[drill.strategy], exchange_url, credentials)
        report["exchange_url"] = stage.url
        for fault in drill.faults:
            stage.inject(fault)
        stage.start_executor(EXECUTOR_OPTIONS, env=drill.env)
        drill.play(stage, checks)
        if stage.executor is not None and stage.executor.poll() is None:
            code = stage.stop_executor()
            checks.expect("stops cleanly", code == 0, f"SIGTERM: exit code {code}")
        sim_orders, ledger_orders = stage.sim_orders(), stage.ledger_orders()
        order_checks(checks, sim_orders, ledger_orders)
        report["orders"] = order_rows(sim_orders, ledger_orders)
    except DrillError as exc:
        checks.expect("drill completed", False, str(exc))
    finally:
        if stage is not None:
            stage.close()
            report.update(stage.record)
            report["journal"] = _journal(stage)
            leaked = stage.files_holding_credentials()
            checks.expect("no credential written", not leaked, f"the API key or secret is in {leaked}" if leaked else
                          "neither the API key nor the secret is in any file of the run folder (logs, ledger, "
                          "journal, published state)")
    report.update(finished_at=now_iso(), duration_seconds=round(time.monotonic() - clock, 1),
                  checks=checks.items, passed=checks.passed)
    files.drills.mkdir(parents=True, exist_ok=True)
    atomic_write_text(files.report(name), json.dumps(report, indent=2, default=str) + "\n")
    return checks.passed, files.report(name)


def _journal(stage: Stage) -> list[dict[str, Any]]:
    try:
        return stage.journal()
    except OSError:
        return []
