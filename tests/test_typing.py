"""The package and its tests stay mypy-clean: types are part of the documentation and catch real bugs
(Parameters.values in the package; in the tests, helpers that returned ``object`` and hid typos behind
``type: ignore``). One mypy run covers both, with the project's configuration (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_package_and_tests_type_check_with_mypy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), "tradeexecutor",
         "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
