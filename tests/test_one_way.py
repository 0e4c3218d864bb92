"""One way to do each thing, checked on every module: file names come from layout.py, whole files are
replaced through atomic.py.

A module that spells a state-directory or run-folder file name itself (``"ledger.sqlite"``), or
renames and fsyncs files on its own, would be the second place that knows it; these checks find
one. Moves and fsyncs that are not a whole-file write (a directory renamed into place, a tally
block written in place) are listed with their reason, and the list fails once one is no longer
made. The checkers are fed synthetic modules too, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tradeexecutor"

#: Calls that move or fsync files, by the dotted name they are called with.
FILE_CALLS = frozenset({"os.replace", "os.rename", "os.fsync", "os.link", "shutil.move"})

#: Such calls made outside atomic.py, keyed by (module, call), with the reason they are not a whole-file write.
ALLOWED_FILE_CALLS: dict[tuple[str, str], str] = {
    ("runstate/crash.py", "os.fsync"): "the crash tally is one fixed-size block rewritten in place, which a full "
                                       "disk cannot refuse (a replace would need room for a second copy)",
    ("runstate/crash.py", "os.replace"): "an unreadable crash.json is moved aside, never overwritten",
    ("store/state_store.py", "os.fsync"): "a torn record is cut off the end of the JSON store's log in place",
    ("store/state_store.py", "os.link"): "state.json.bak is a hard link to the current snapshot",
    ("store/state_store.py", "os.replace"): "the link is renamed to state.json.bak; the snapshot write that "
                                            "follows fsyncs the directory",
    ("runs/sweep_store.py", "os.fsync"): "a sweep's points.jsonl stays open and is fsynced once a second, not "
                                         "once a row as atomic.fsync_append would",
    ("runs/run.py", "os.rename"): "a run folder built under a temporary name is renamed into place whole, and "
                                  "a reset moves the results aside: directories, not files",
}


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def file_calls(source: str) -> set[str]:
    """The FILE_CALLS a module's source makes."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FILE_CALLS:
                found.add(name)
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose may name a file)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def layout_names() -> set[str]:
    """Every file or folder name layout.py defines (the string constants of its code)."""
    tree = ast.parse((PACKAGE / "layout.py").read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    names = {node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs}
    return {name for name in names if "." in name and " " not in name and not name.startswith("__")}


def spelled_names(source: str, names: set[str]) -> set[str]:
    """The names of ``names`` a module's code spells as a whole string (prose in docstrings and messages aside)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and node.value in names}


def test_layout_names_are_found() -> None:
    names = layout_names()
    assert {"ledger.sqlite", "crash.json", "journal.jsonl", "executor.lock", "run_spec.yaml", "strategy.py",
            "metadata.json", "orders.csv"} <= names


@pytest.mark.parametrize("path", [p for p in _modules() if p.name != "layout.py"], ids=_relative)
def test_file_names_are_spelled_only_in_layout(path: Path) -> None:
    spelled = spelled_names(path.read_text(encoding="utf-8"), layout_names())
    assert not spelled, f"{_relative(path)} spells {sorted(spelled)}: take the path from tradeexecutor.layout"


def test_files_are_moved_and_fsynced_only_through_atomic() -> None:
    made = {(_relative(path), call) for path in _modules() if path.name != "atomic.py" or path.parent != PACKAGE
            for call in file_calls(path.read_text(encoding="utf-8"))}
    unlisted = sorted(made - set(ALLOWED_FILE_CALLS))
    assert not unlisted, (f"{unlisted}: write whole files with tradeexecutor.atomic (atomic_write_bytes, or "
                          "install_temp_file for a file another writer filled), or list the call with its reason")
    stale = sorted(set(ALLOWED_FILE_CALLS) - made)
    assert not stale, f"{stale} are no longer made: remove them from ALLOWED_FILE_CALLS"


def test_the_checkers_find_violations() -> None:
    names = layout_names()
    assert spelled_names('PATH = root / "ledger.sqlite"\n', names) == {"ledger.sqlite"}
    assert spelled_names('"""Writes ledger.sqlite."""\nx = f"{root}/x"\n', names) == set()
    assert file_calls("import os\nos.replace(a, b)\nos.fsync(fd)\n") == {"os.replace", "os.fsync"}
    assert file_calls("import os\nx = 'a'.replace('a', 'b')\n") == set()
