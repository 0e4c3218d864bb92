"""The code meets the lint rules of pyproject.toml's ``[tool.ruff.lint]`` (pyflakes, pycodestyle, isort,
bugbear, pyupgrade, simplify, comprehensions, ruff's own): ``ruff check`` over the repository finds nothing.

The check is tested on a synthetic module too, so a configuration that selects nothing would be noticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_repository_passes_ruff_check() -> None:
    result = _ruff(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_reports_what_the_configured_rules_forbid(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os\nimport sys\n\n\ndef f(items=[]):\n    return sys.argv\n")
    result = _ruff("--config", str(ROOT / "pyproject.toml"), str(module))
    assert result.returncode != 0
    assert "F401" in result.stdout  # os imported, never used (pyflakes)
    assert "B006" in result.stdout  # a mutable default argument (bugbear)
