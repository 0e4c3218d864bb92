"""The quick start as a new user meets it: the sample output matches what the command prints, and a replay
that has ended says how to replay again (in its log and in /status)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from executor_process import Executor, free_port
from test_daemon_e2e import executors  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: A log line: date, time, level, then the text the quick start shows.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<text>(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s.*)$")


def _sample_block() -> list[str]:
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    section = text[text.index("## What you see"):]
    block = re.search(r"```text\n(.*?)```", section, flags=re.DOTALL)
    assert block, "docs/quickstart.md lost its sample output"
    return block.group(1).strip().splitlines()


def test_the_quickstart_sample_output_is_what_the_command_prints(tmp_path: Path) -> None:
    """`tradeexecutor start strategies/sma_crossover.py` from a fresh folder, up to the first fill."""
    sample = _sample_block()
    assert sample[-1].startswith("INFO    tradeexecutor.journal: order_filled ")
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(ROOT / "strategies" / "sma_crossover.py"),
         "--port", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**environment, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    filled = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            match = LOG_LINE.match(raw.rstrip("\n"))
            if match is None:
                continue  # a third-party warning, not a log line of ours
            text = match.group("text")
            text = text.replace(f"127.0.0.1:{port}", "127.0.0.1:3456")  # the documented default port
            text = re.sub(r"pinned to CPU \d+", "pinned to CPU 0", text)  # whichever CPU was least busy
            # the run's part of a client order id: a hash of the state's creation time, new for each fresh state
            text = re.sub(r"client_order_id=te[0-9a-f]{8}-", "client_order_id=te43f61e90-", text)
            lines.append(text)
            if "order_filled" in text:
                filled.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert filled.wait(300), "no fill within 300 s:\n" + "\n".join(lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
        reader.join(10)
    first_fill = next(index for index, line in enumerate(lines) if "order_filled" in line)
    assert lines[:first_fill + 1] == sample
    assert process.returncode == 0


def test_a_replay_that_ended_says_how_to_replay_again(tmp_path: Path, executors: list) -> None:
    executor = Executor(tmp_path, "--replay-seconds", "0.01", "--complete-serve-seconds", "60")
    executors.append(executor)
    status = executor.wait_status(lambda s: s["status"] == "complete", timeout=300)
    hint = status["extra"]["replay_again"]
    assert f"move {executor.state_dir} aside" in hint and "--state-dir" in hint and "runs reset" in hint
    executor.process.send_signal(signal.SIGTERM)
    assert executor.wait() == 0
    assert f"executor complete: the replay reached the end of the data; {hint}" in executor.output()

    again = Executor(tmp_path / "again", "--replay-seconds", "0.01", state_dir=executor.state_dir)
    executors.append(again)
    assert again.wait() == 0
    assert f"the replay reached the end of the data; {hint}" in again.output(), "a restart as it is says it too"
