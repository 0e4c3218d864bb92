"""The import rules of docs/architecture.md, checked on every module of the package.

A module may import only the packages its layer is allowed to; each third-party library that
shapes the design is imported through one door only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tradeexecutor"

#: What each top-level part of the package may import from the package (besides itself).
ALLOWED: dict[str, set[str]] = {
    "cli": {"*"},
    "daemon": {"engine", "backtest", "strategy", "data", "execution", "store", "ledger", "runstate", "stats", "visual",
               "notify", "state", "config", "errors", "timeframe", "cast", "atomic", "layout", "__init__"},
    "webhook": {"layout", "web", "runstate", "store", "stats", "state", "config", "errors", "timeframe", "cast", "atomic",
                "__init__"},
    "wallboard": {"web", "cast", "config", "errors", "__init__"},
    "web": {"errors"},
    "runs": {"daemon", "backtest", "engine", "strategy", "data", "execution", "store", "ledger", "runstate", "stats",
             "visual", "state", "config", "errors", "timeframe", "cast", "atomic", "layout", "__init__"},
    "exchange_sim": {"data", "state", "config", "errors", "timeframe", "__init__"},
    "backtest": {"engine", "strategy", "data", "execution", "stats", "state", "config", "errors", "timeframe"},
    "engine": {"strategy", "data", "execution", "state", "config", "errors", "timeframe"},
    "strategy": {"data", "state", "config", "errors", "timeframe"},
    "data": {"state", "config", "errors", "timeframe"},
    "execution": {"state", "config", "errors", "timeframe"},
    "store": {"state", "config", "errors", "timeframe", "atomic", "layout", "__init__"},
    # Layer 6: replaces store as the executor's home; uses store's JSON codec and journal line format.
    "ledger": {"state", "store", "config", "errors", "timeframe", "atomic", "layout", "__init__"},
    "runstate": {"state", "config", "errors", "timeframe", "atomic", "layout", "__init__"},
    "stats": {"state", "config", "errors", "timeframe", "atomic", "layout", "__init__"},
    "notify": {"state", "config", "errors", "timeframe"},
    "visual": {"state", "config", "errors", "timeframe"},
    "state": set(),
    "config": {"errors", "timeframe"},
    "errors": set(),
    "timeframe": {"errors"},
    "cast": {"errors", "config"},
    "atomic": set(),
    "layout": set(),
    "__init__": set(),
}

#: Third-party libraries and the only parts of the package that may import them.
DOORS: dict[str, set[str]] = {
    "apscheduler": {"daemon"},
    "pyramid": {"webhook", "wallboard", "web"},
    "waitress": {"webhook", "exchange_sim"},
    "webob": {"webhook", "wallboard", "web"},
    "tblib": {"runstate"},
    "dataclasses_json": {"state", "store", "runstate"},
    "matplotlib": {"visual"},
    "ccxt": {"venue"},  # the exchange simulator must work without it
    "apprise": {"notify"},
    "distributed": {"runs"},  # optional extras: only sweeps use them, and only when asked (runs.sweep_pool, runs.search)
    "dask": {"runs"},
    "optuna": {"runs"},
    "sqlite3": {"ledger", "runs"},  # runs: the run registry
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_respects_layers_and_doors(path: Path) -> None:
    part = _part(path)
    assert part in ALLOWED, f"{path}: top-level part {part!r} has no layer; add it to docs/architecture.md and here"
    problems = []
    for line, name in _imports(path):
        root = name.split(".")[0]
        if root == "tradeexecutor":
            pieces = name.split(".")
            target = pieces[1] if len(pieces) > 1 else "__init__"
            if target != part and "*" not in ALLOWED[part] and target not in ALLOWED[part]:
                problems.append(f"line {line}: {part} may not import tradeexecutor.{target}")
        elif root in DOORS and part not in DOORS[root]:
            problems.append(f"line {line}: only {', '.join(sorted(DOORS[root]))} may import {root}")
    assert not problems, f"{path.relative_to(PACKAGE.parent)}: " + "; ".join(problems)


def test_the_rule_table_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself must be able to fail: an engine module importing the daemon is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from tradeexecutor.daemon import loop\nimport apscheduler\n")
    imports = _imports(bad)
    assert (1, "tradeexecutor.daemon") in imports and (2, "apscheduler") in imports
    assert "daemon" not in ALLOWED["engine"]
    assert "engine" not in DOORS["apscheduler"]
