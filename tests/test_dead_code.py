"""No dead code in the package: vulture finds unused functions, classes, methods and variables.

Its configuration is ``[tool.vulture]`` in pyproject.toml; what it cannot see being used (click
commands, framework hooks, the strategy API, dataclass fields) is listed in vulture_whitelist.py
with who uses it. The check is tested on a synthetic module too, so a configuration that hides
everything would be noticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _vulture(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vulture", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_package_has_no_dead_code() -> None:
    result = _vulture()
    assert result.returncode == 0 and not result.stdout, (
        "vulture found unused code; remove it, or if something outside its view uses it, add it to "
        "vulture_whitelist.py saying who:\n" + result.stdout + result.stderr
    )


def test_vulture_reports_an_unused_function(tmp_path: Path) -> None:
    module = tmp_path / "dead.py"
    module.write_text("def used() -> int:\n    return 1\n\n\ndef never_called() -> int:\n    return used()\n")
    result = _vulture(str(module), "--min-confidence", "60")
    assert result.returncode != 0
    assert "unused function 'never_called'" in result.stdout
