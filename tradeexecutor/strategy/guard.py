"""Refuse strategy code that could reach past the cycle context to later candles, before any of it runs.

The context a strategy's ``decide(ctx)`` receives holds the whole loaded history so that each
cycle costs an index, not a copy: its private attributes (``ctx._market``, ``ctx._indicators``,
...) reach every candle, later ones included, and so do interpreter frames (the engine's own
locals). Python cannot hide an object from code in the same process, so the loader reads the
strategy's syntax tree and refuses, with the file and line, every way in that code can write
directly:

- private and special attributes: any ``x._name`` or ``x.__name__``-style access except
  ``__name__``, ``__qualname__`` and ``__doc__`` (and private keyword patterns in ``match``);
- frame and traceback attributes (``f_back``, ``f_locals``, ``gi_frame``, ``tb_frame``, ...);
- dynamic attribute access: ``getattr``/``setattr``/``delattr``/``hasattr`` unless the name is a
  public string literal, and ``vars``, ``globals``, ``locals``, ``eval``, ``exec``, ``compile``,
  ``breakpoint``, ``operator.attrgetter``/``methodcaller``, ``string.Formatter.get_field``;
- string literals with a private attribute path (``"{0._market}"``, ``"ctx._market"``);
- names such as ``__builtins__`` and ``__import__``;
- introspection modules (``sys``, ``inspect``, ``gc``, ``ctypes``, ``traceback``, ``types``,
  ``pickle``, ``importlib``, ``builtins``, ...), private modules (``_thread``), and every module
  of tradeexecutor except ``tradeexecutor.strategy.api``.

This is a guard against reaching the future by accident or by a shortcut, not a sandbox:
docs/writing-a-strategy.md says exactly what it does not cover.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tradeexecutor.errors import LookaheadRefusedError

#: Special attributes that say what something is called and nothing more.
HARMLESS_SPECIAL = frozenset({"__name__", "__qualname__", "__doc__"})
#: Module-level special names a strategy may read.
HARMLESS_NAMES = frozenset({"__name__", "__doc__", "__file__"})
#: Attributes of frames, generators, coroutines and tracebacks: each leads to the engine's frames.
FRAME_ATTRIBUTES = frozenset({
    "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "f_trace",
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await",
    "tb_frame", "tb_next",
})
#: Attributes that look other attributes up by a name given as data.
DYNAMIC_ATTRIBUTES = frozenset({"attrgetter", "methodcaller", "get_field"})
#: Builtins that read or run arbitrary attributes, namespaces or code.
DYNAMIC_BUILTINS = frozenset({"vars", "globals", "locals", "eval", "exec", "compile", "breakpoint"})
#: Builtins allowed with a public string literal as the attribute name.
NAMED_ACCESS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
#: Modules that expose frames, objects by reference, or a way around the rules above.
INTROSPECTION_MODULES = frozenset({
    "sys", "inspect", "gc", "ctypes", "traceback", "types", "pickle", "copyreg", "marshal", "importlib",
    "builtins", "dis", "code", "codeop", "pdb", "bdb", "faulthandler", "tracemalloc", "runpy", "weakref",
    "dill", "cloudpickle", "objgraph",
})
#: The one tradeexecutor module a strategy imports.
API_MODULE = "tradeexecutor.strategy.api"

#: A private attribute inside a string, as format fields and expression strings write it: "{0._market}".
_PRIVATE_STRING = re.compile(r"\._")


def check_strategy_code(tree: ast.AST, path: Path | str) -> None:
    """Raise LookaheadRefusedError at the first construct of the strategy's syntax tree that could reach past
    the cycle context (see the module docstring); return quietly otherwise."""
    _Guard(str(path)).visit(tree)


class _Guard(ast.NodeVisitor):
    """Walks a strategy's syntax tree and refuses at the first escape hatch."""

    def __init__(self, where: str):
        self.where = where

    def refuse(self, node: ast.AST, what: str, why: str) -> None:
        line = getattr(node, "lineno", None)
        at = f"{self.where}:{line}" if line else self.where
        raise LookaheadRefusedError(f"{at}: refused: {what} {why}")

    # -- attributes ---------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if name.startswith("_") and name not in HARMLESS_SPECIAL:
            self.refuse(node, f"`.{name}`", "reads a private or special attribute; the cycle context's private "
                        "attributes hold every candle, later ones included: use ctx.close(), ctx.candles(), "
                        "ctx.indicator() and the other public methods")
        if name in FRAME_ATTRIBUTES:
            self.refuse(node, f"`.{name}`", "reaches interpreter frames, which hold the engine's data")
        if name in DYNAMIC_ATTRIBUTES:
            self.refuse(node, f"`.{name}`", "looks attributes up by name at run time; use attributes directly")
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:
            if name.startswith("_") and name not in HARMLESS_SPECIAL:
                self.refuse(node, f"pattern `{name}=`", "reads a private attribute")
        self.generic_visit(node)

    # -- names and calls ----------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("__") and name not in HARMLESS_NAMES:
            self.refuse(node, f"`{name}`", "reaches the interpreter's internals")
        if name in DYNAMIC_BUILTINS or name in NAMED_ACCESS or name in DYNAMIC_ATTRIBUTES:
            self.refuse(node, f"`{name}`", "reads attributes or runs code chosen at run time; "
                        "use attributes by name (getattr only with a public string literal)")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in NAMED_ACCESS:
            if len(node.args) < 2 or not _public_literal(node.args[1]):
                self.refuse(node, f"`{func.id}(...)`", "needs the attribute name as a public string literal")
            for child in [*node.args, *node.keywords]:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring (or a bare string): never evaluated as a path
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _PRIVATE_STRING.search(node.value):
            self.refuse(node, f"the string {node.value[:40]!r}", "names a private attribute")

    # -- imports --------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.refuse(node, "a relative import", "is not allowed in a strategy file")
        module = node.module or ""
        self._check_module(node, module)
        for alias in node.names:
            if alias.name in DYNAMIC_ATTRIBUTES or alias.name in FRAME_ATTRIBUTES or (
                    alias.name.startswith("_") and alias.name not in HARMLESS_SPECIAL):
                self.refuse(node, f"`from {module} import {alias.name}`", "reaches past the cycle context")

    def _check_module(self, node: ast.AST, module: str) -> None:
        top = module.split(".")[0]
        if top == "tradeexecutor" and module != API_MODULE:
            self.refuse(node, f"`import {module}`", f"reaches the engine: a strategy imports only {API_MODULE}")
        if top in INTROSPECTION_MODULES or (top.startswith("_") and top != "__future__"):
            self.refuse(node, f"`import {module}`", "is an introspection module, which reaches the engine's frames "
                        "and objects (and the future candles they hold)")


def _public_literal(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and not node.value.startswith("_")
