"""Guards the strategy-facing API: what tradeexecutor.strategy.api exports, that every export is
documented, and that the bundled strategies import nothing else from tradeexecutor."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import tradeexecutor.strategy.api as api

EXPECTED = [
    "BarFrequency",
    "Boolean",
    "Choice",
    "CycleContext",
    "Decimal",
    "Integer",
    "Intent",
    "LookaheadError",
    "Parameters",
    "PositionView",
    "Symbol",
    "Text",
    "close",
    "increase",
    "open_long",
    "reduce",
    "set_triggers",
]

STRATEGIES = Path(__file__).resolve().parents[1] / "strategies"
ALLOWED = "tradeexecutor.strategy.api"


def test_all_is_the_expected_list() -> None:
    assert list(api.__all__) == EXPECTED


def test_all_has_no_duplicates() -> None:
    assert len(set(api.__all__)) == len(api.__all__)


@pytest.mark.parametrize("name", EXPECTED)
def test_export_exists_and_is_documented(name: str) -> None:
    assert hasattr(api, name), f"tradeexecutor.strategy.api has no {name}"
    obj = getattr(api, name)
    doc = inspect.getdoc(obj)
    assert doc and doc.strip(), f"{name} has no docstring"
    # A dataclass without a docstring gets an auto-generated one like "Name(field, ...)": refuse it.
    assert not doc.startswith(f"{name}("), f"{name} has only the dataclass-generated docstring"


def test_module_docstring_documents_the_contract() -> None:
    doc = api.__doc__ or ""
    for word in ("decide(ctx)", "indicators(candles, parameters)", "LookaheadError", "next_open", "rejected"):
        assert word in doc


def test_star_import_gives_exactly_all() -> None:
    namespace: dict = {}
    exec("from tradeexecutor.strategy.api import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(EXPECTED)


def _strategy_files() -> list[Path]:
    return sorted(STRATEGIES.glob("*.py"))


def test_there_are_strategies_to_scan() -> None:
    assert _strategy_files(), f"no strategies in {STRATEGIES}"


def _bad_imports(source: str) -> list[str]:
    """Imports of tradeexecutor modules other than the strategy API, as readable strings."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.name == "tradeexecutor" or alias.name.startswith("tradeexecutor.")) and alias.name != ALLOWED:
                    bad.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                bad.append(f"line {node.lineno}: relative import from {'.' * node.level}{module}")
            elif (module == "tradeexecutor" or module.startswith("tradeexecutor.")) and module != ALLOWED:
                bad.append(f"line {node.lineno}: from {module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            # importlib.import_module("tradeexecutor.x") / __import__("tradeexecutor.x")
            fname = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if fname in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("tradeexecutor") \
                        and arg.value != ALLOWED:
                    bad.append(f"line {node.lineno}: {fname}({arg.value!r})")
    return bad


@pytest.mark.parametrize("path", _strategy_files(), ids=lambda p: p.name)
def test_strategy_imports_only_the_api(path: Path) -> None:
    assert _bad_imports(path.read_text()) == []


def test_scanner_catches_forbidden_imports() -> None:
    source = "\n".join([
        "from tradeexecutor.strategy.api import close",
        "import tradeexecutor.strategy.api",
        "import tradeexecutor.state",
        "from tradeexecutor.engine.engine import Engine",
        "from tradeexecutor import errors",
        "import tradeexecutor",
        "from . import helper",
        "import importlib",
        "importlib.import_module('tradeexecutor.config')",
        "import numpy as np",
        "from tradeexecutorx import y",
    ])
    assert _bad_imports(source) == [
        "line 3: import tradeexecutor.state",
        "line 4: from tradeexecutor.engine.engine import ...",
        "line 5: from tradeexecutor import ...",
        "line 6: import tradeexecutor",
        "line 7: relative import from .",
        "line 9: import_module('tradeexecutor.config')",
    ]
