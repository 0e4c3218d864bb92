"""The import rules of docs/architecture.md, checked on every module of the package.

A module may import only from layers below its own; parts on one layer (siblings) do not import
each other. Each third-party library that shapes the design is imported through one door only.
The checker is tested on synthetic modules too, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tradeexecutor"

#: The layers, top first: a part may import any part on a lower layer, none on its own or above.
#: A part is a top-level package or module of ``tradeexecutor`` (``__init__`` is the package root).
LAYERS: list[set[str]] = [
    {"cli"},
    {"daemon", "runs", "webhook", "wallboard", "exchange_sim", "drill"},
    {"web", "settings"},
    {"backtest"},
    {"engine"},
    {"strategy"},
    {"ledger"},
    {"data", "venue", "store", "runstate", "stats", "visual", "notify", "cast"},
    {"state"},
    {"config", "layout", "atomic", "control", "kept_rows"},
    {"timeframe", "times", "spill"},
    {"errors", "__init__"},
]

#: Parts the layers place ahead of their code (none now: the venue replaced execution).
PLANNED: set[str] = set()

#: Imports the layers forbid that the code still makes, each with the reason; keyed by
#: (module, imported module). The test fails when one is no longer made, so none outlives its reason.
EXCEPTIONS: dict[tuple[str, str], str] = {}

#: Third-party libraries and the only parts (``daemon``) or modules (``runs/search.py``) that may import them.
DOORS: dict[str, set[str]] = {
    "apscheduler": {"daemon"},
    "pyramid": {"web", "webhook", "wallboard"},
    "webob": {"web", "webhook", "wallboard"},
    "waitress": {"webhook", "exchange_sim"},
    "tblib": {"runstate"},
    "dataclasses_json": {"state", "runstate"},
    "matplotlib": {"visual"},
    "apprise": {"notify"},
    "ccxt": {"venue"},  # the exchange simulator must work without it
    "sqlite3": {"ledger", "runs/registry.py"},
    # Optional extras: only parameter sweeps use them, and only when asked for.
    "distributed": {"runs/sweep_pool.py", "runs/sweep_dask.py"},
    "dask": {"runs/sweep_dask.py"},
    "optuna": {"runs/search.py"},
}


def layer_of(part: str) -> int | None:
    """The index of ``part``'s layer (0 is the top), None for a part no layer names."""
    for index, parts in enumerate(LAYERS):
        if part in parts:
            return index
    return None


def may_import(importer: str, target: str) -> bool:
    """Whether part ``importer`` may import part ``target`` by the layers alone."""
    if importer == target:
        return True
    mine, theirs = layer_of(importer), layer_of(target)
    return mine is not None and theirs is not None and theirs > mine


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _part(relative: str) -> str:
    return relative.split("/")[0].removesuffix(".py")


def _package_of(relative: str) -> list[str]:
    """``tradeexecutor`` plus the folders of ``relative``: what a relative import starts from."""
    folders = relative.split("/")[:-1]
    return ["tradeexecutor", *folders]


def imports(source: str, relative: str) -> list[tuple[int, str]]:
    """Every module ``source`` imports (absolute names; relative imports resolved), with its line.

    ``from tradeexecutor import daemon`` counts as importing ``tradeexecutor.daemon``, so a part
    cannot be reached through the package root. Imports under ``if TYPE_CHECKING:`` count too.
    """
    tree = ast.parse(source, filename=relative)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(relative)
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "tradeexecutor":
                found.extend((node.lineno, f"tradeexecutor.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


def _target_part(module: str) -> str:
    pieces = module.split(".")
    if len(pieces) == 1:
        return "__init__"
    candidate = pieces[1]
    if (PACKAGE / candidate).is_dir() or (PACKAGE / f"{candidate}.py").is_file() or layer_of(candidate) is not None:
        return candidate
    return "__init__"  # a name defined in the package root (``from tradeexecutor import __version__``)


def problems(source: str, relative: str) -> list[str]:
    """What in ``source`` (the module at ``relative`` inside the package) breaks a layer or door rule."""
    part = _part(relative)
    if layer_of(part) is None:
        return [f"top-level part {part!r} has no layer; add it to LAYERS here and to docs/architecture.md"]
    found = []
    for line, module in imports(source, relative):
        root = module.split(".")[0]
        if root == "tradeexecutor":
            target = _target_part(module)
            if not may_import(part, target) and (relative, module) not in EXCEPTIONS:
                where = "a sibling on its layer" if layer_of(part) == layer_of(target) else "a layer above it"
                found.append(f"line {line}: {part} may not import tradeexecutor.{target} ({where})")
        elif root in DOORS and not {part, relative} & DOORS[root]:
            found.append(f"line {line}: only {', '.join(sorted(DOORS[root]))} may import {root}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_module_respects_layers_and_doors(path: Path) -> None:
    relative = _relative(path)
    found = problems(path.read_text(encoding="utf-8"), relative)
    assert not found, f"tradeexecutor/{relative}: " + "; ".join(found)


def test_every_part_has_a_layer_and_every_named_part_exists() -> None:
    parts = {_part(_relative(path)) for path in _modules()}
    named = set().union(*LAYERS)
    assert parts <= named, f"parts without a layer: {sorted(parts - named)}"
    assert named - parts <= PLANNED, f"LAYERS names parts that do not exist: {sorted(named - parts - PLANNED)}"
    assert sum(len(layer) for layer in LAYERS) == len(named), "a part is on two layers"
    for allowed in DOORS.values():
        for where in allowed:
            if where.endswith(".py"):
                assert (PACKAGE / where).is_file(), f"DOORS names a module that does not exist: {where}"
            else:
                assert where in named, f"DOORS names a part no layer holds: {where}"


def test_every_exception_is_still_needed() -> None:
    """An exception whose import is gone must go too, so the table stays the exact rule."""
    made = {(_relative(path), module) for path in _modules()
            for _, module in imports(path.read_text(encoding="utf-8"), _relative(path))}
    stale = set(EXCEPTIONS) - made
    assert not stale, f"EXCEPTIONS lists imports no module makes any more; remove them: {sorted(stale)}"


@pytest.mark.parametrize(("relative", "source", "expected"), [
    # upwards: the engine reaching for the daemon
    ("engine/bad.py", "from tradeexecutor.daemon import loop\n", "engine may not import tradeexecutor.daemon (a layer above"),
    # siblings: runs and daemon are on one layer
    ("runs/bad.py", "from tradeexecutor.daemon.caster import Caster\n", "runs may not import tradeexecutor.daemon (a sibling"),
    ("store/bad.py", "import tradeexecutor.runstate.crash\n", "store may not import tradeexecutor.runstate (a sibling"),
    # through the package root, and by a relative import
    ("state/bad.py", "from tradeexecutor import engine\n", "state may not import tradeexecutor.engine"),
    ("strategy/bad.py", "from ..backtest import runner\n", "strategy may not import tradeexecutor.backtest"),
    ("state/bad.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tradeexecutor.store import x\n",
     "line 3: state may not import tradeexecutor.store"),
    # doors
    ("engine/bad.py", "import apscheduler.schedulers\n", "only daemon may import apscheduler"),
    ("daemon/bad.py", "from pyramid.config import Configurator\n", "may import pyramid"),
    ("exchange_sim/bad.py", "import ccxt\n", "only venue may import ccxt"),
    ("store/bad.py", "import sqlite3\n", "only ledger, runs/registry.py may import sqlite3"),
    ("runs/run.py", "import sqlite3\n", "may import sqlite3"),
    ("runs/sweep.py", "import optuna\n", "only runs/search.py may import optuna"),
    ("runs/search.py", "from dask import delayed\n", "only runs/sweep_dask.py may import dask"),
    ("webhook/bad.py", "import tblib\n", "only runstate may import tblib"),
    ("daemon/bad.py", "import matplotlib.pyplot\n", "only visual may import matplotlib"),
    ("daemon/bad.py", "import apprise\n", "only notify may import apprise"),
    # a part no layer holds
    ("newthing/bad.py", "import os\n", "has no layer"),
])
def test_the_checker_reports_a_violation(relative: str, source: str, expected: str) -> None:
    """The checker itself must be able to fail: each synthetic module breaks one rule and is reported."""
    found = problems(source, relative)
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize(("relative", "source"), [
    ("daemon/ok.py", "from tradeexecutor.store.lock import StateDirLock\nimport apscheduler\n"),
    ("runs/ok.py", "from tradeexecutor.cast.client import put_chart\nfrom tradeexecutor import __version__\n"),
    ("runs/registry.py", "import sqlite3\n"),
    ("runs/search.py", "import optuna\n"),
    ("ledger/ok.py", "import sqlite3\nfrom tradeexecutor.layout import RunFiles\n"),
    ("store/ok.py", "from . import codec\nfrom .journal import Journal\n"),
    ("cli/ok.py", "from tradeexecutor.daemon.runner import Daemon\nfrom tradeexecutor.runs.run import Runs\n"),
    ("errors.py", "import os\n"),
])
def test_the_checker_lets_allowed_imports_pass(relative: str, source: str) -> None:
    """And it must not report what the rules allow, or it would be switched off in frustration."""
    assert problems(source, relative) == []
