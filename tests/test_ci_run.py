"""`.ci/run` runs every step with the interpreter it is given ($PYTHON) or python3 — never a bare `python`,
which Debian and Ubuntu do not have (their python3 is externally managed, so the README passes a venv's)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Stands in for an interpreter: writes its name and arguments to $CALLS and succeeds.
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
"""


def _bin(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text(RECORDER)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder


def _run(tmp_path: Path, env: dict[str, str]) -> list[str]:
    calls = tmp_path / "calls.txt"
    shell = shutil.which("bash")
    assert shell is not None
    result = subprocess.run([shell, str(ROOT / ".ci" / "run"), "--co", "-q"], capture_output=True, text=True,
                            timeout=60, env={**env, "CALLS": str(calls)}, check=False)
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def _base_path(tmp_path: Path) -> str:
    """A PATH of only what the script needs: chromium, promtool and prometheus stubs (so no apt-get) and
    links to the shell tools it calls. No python of any name: the test gives the script exactly one."""
    tools = _bin(tmp_path / "tools", "chromium", "promtool", "prometheus")
    for needed in ("bash", "dirname", "id", "basename"):
        found = shutil.which(needed)
        assert found is not None, needed
        (tools / needed).symlink_to(found)
    return str(tools)


EXPECTED = ['-m pip install -q setuptools>=68,<82 wheel', '-m pip install -q -e .[test]',
            '-m pytest -q -p no:cacheprovider -n 4 --dist loadfile --no-loadscope-reorder --co -q']


def test_ci_run_uses_the_interpreter_python_names(tmp_path: Path) -> None:
    venv = _bin(tmp_path / "venv" / "bin", "python")
    calls = _run(tmp_path, {"PATH": _base_path(tmp_path), "PYTHON": str(venv / "python"), "HOME": str(tmp_path)})
    assert calls == [f"python {args}" for args in EXPECTED]


def test_ci_run_falls_back_to_python3_where_there_is_no_python(tmp_path: Path) -> None:
    only_python3 = _bin(tmp_path / "usr-bin", "python3")
    assert not (only_python3 / "python").exists()
    calls = _run(tmp_path, {"PATH": os.pathsep.join([str(only_python3), _base_path(tmp_path)]),
                            "HOME": str(tmp_path)})
    assert calls == [f"python3 {args}" for args in EXPECTED]


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_the_install_commands_make_a_virtualenv_first(page: str) -> None:
    """pip into Debian's system Python fails (externally managed): every pip and tradeexecutor is the venv's."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/tradeexecutor start" in text
    assert "PYTHON=.venv/bin/python bash .ci/run" in text
