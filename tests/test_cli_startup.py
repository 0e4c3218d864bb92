"""What a command imports before it does anything: `--help` and the light commands never load the heavy
libraries (a structural check; the time it takes is bench/bench_cli_startup.py's job, not a test's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

#: Libraries that cost a command tenths of a second to import.
HEAVY = ("pandas", "numpy", "matplotlib", "pyramid", "waitress", "apscheduler", "pyarrow", "scipy",
         "dataclasses_json", "tblib", "ccxt", "apprise", "optuna", "distributed")

#: Runs the CLI in-process with the given arguments, then prints which HEAVY modules got imported.
PROBE = f"""
import json, sys
from tradeexecutor.cli.main import main
sys.argv = ["tradeexecutor", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)), file=sys.stderr)
"""


def _command_paths() -> list[str]:
    """Every command and group of the CLI, as typed ("" for tradeexecutor itself): a new command is covered too."""
    from tradeexecutor.cli.main import cli

    paths: list[str] = []

    def walk(command: click.Command, path: str) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())

    walk(cli, "")
    return paths


COMMANDS = _command_paths()


def imported(*args: str, cwd: Path | None = None) -> list[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                            cwd=cwd, env=environment)
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command or "tradeexecutor")
def test_help_imports_no_heavy_library(command: str) -> None:
    assert imported(*command.split(), "--help") == []


def test_version_imports_no_heavy_library() -> None:
    assert imported("--version") == []


def test_reading_runs_and_clients_import_no_heavy_library(tmp_path: Path) -> None:
    """runs ls/show/logs read a registry and JSON files; status and logs talk HTTP: none needs pandas."""
    assert imported("runs", "ls", cwd=tmp_path) == []
    assert imported("runs", "show", "nothing", cwd=tmp_path) == []
    assert imported("runs", "logs", "nothing", cwd=tmp_path) == []
    assert imported("status", "http://127.0.0.1:9", "--timeout", "0.5") == []
    assert imported("logs", "http://127.0.0.1:9", "--timeout", "0.5") == []
    assert imported("control", "http://127.0.0.1:9", "close", "3", "--timeout", "0.5") == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The check can fail: a command that needs the engine does import pandas."""
    assert "pandas" in imported("backtest", "no-such-strategy.py")


def test_the_web_servers_start_without_a_deprecation_warning_from_pyramid() -> None:
    """pyramid imports pkg_resources, whose UserWarning every webhook, wallboard and simulator start printed."""
    def stderr_of(code: str) -> str:
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=environment).stderr

    assert "pkg_resources is deprecated" in stderr_of("import pyramid.asset")  # the warning this is about
    assert stderr_of("import tradeexecutor.webhook.app, tradeexecutor.wallboard.app, "
                     "tradeexecutor.exchange_sim.app") == ""
