"""Deployment promises checked against the real executor: the image's HEALTHCHECK and the state lock."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from test_daemon_e2e import Executor
from test_deploy import dockerfile_healthcheck_command

pytestmark = pytest.mark.slow


def run_healthcheck(port: int) -> subprocess.CompletedProcess[bytes]:
    """Run the Dockerfile's HEALTHCHECK command as Docker would (``sh -c``), pointed at ``port``."""
    env = {**os.environ, "TRADEEXECUTOR_PORT": str(port)}
    return subprocess.run(["sh", "-c", dockerfile_healthcheck_command()], env=env, capture_output=True, timeout=30)


def test_dockerfile_healthcheck_passes_on_a_running_executor_and_fails_once_it_stopped(tmp_path: Path) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.5")
    try:
        executor.wait_status(lambda s: s["status"] == "running" and s["cycles"] >= 1)
        assert run_healthcheck(executor.port).returncode == 0
    finally:
        executor.process.send_signal(signal.SIGTERM)
    assert executor.wait() == 0
    result = run_healthcheck(executor.port)
    assert result.returncode != 0, "the healthcheck must fail when nothing answers"


def test_dockerfile_healthcheck_fails_while_the_executor_shows_a_crash(tmp_path: Path) -> None:
    executor = Executor(tmp_path, "--crash-policy", "serve", "--crash-serve-seconds", "30",
                        strategy="daemon_crash.py")
    try:
        executor.wait_status(lambda s: s["status"] == "error")
        result = run_healthcheck(executor.port)
        assert result.returncode != 0
        assert b"503" in result.stderr or b"Service Unavailable" in result.stderr
    finally:
        executor.process.send_signal(signal.SIGTERM)
        executor.wait()


def test_a_second_executor_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "shared-state"
    first = Executor(tmp_path, "--replay-seconds", "0.5", state_dir=state_dir)
    try:
        first.wait_status(lambda s: s["status"] == "running")
        second = Executor(tmp_path, "--replay-seconds", "0.5", state_dir=state_dir)
        code = second.wait(timeout=30)
        output = second.output()
        assert code == 3, output
        assert "executor.lock" in output or "another" in output, output
        assert first.process.poll() is None, "the first executor must keep running"
        status = first.status()
        assert status is not None and status["status"] == "running"
    finally:
        first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0
