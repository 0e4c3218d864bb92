"""Constraints between strategy parameters (``fast < slow``): parsed once, checked without ``eval``, honoured by every search.

A constraint is a small expression over parameter names::

    fast < slow
    slow >= 2 * fast and slow - fast <= 40
    not (symbol == "FB" and fast < 10)
    0.5 <= allocation <= 1

Allowed: parameter names, numbers, strings, ``true``/``false`` (or ``True``/``False``),
``+ - * / // %``, comparisons (chains too), ``and``, ``or``, ``not`` and parentheses. The text
is parsed by Python's own parser (:mod:`ast`, so precedence and chained comparisons behave as
people expect), and then *only* those node types are accepted and interpreted here; anything
else — calls, attributes, subscripts, lambdas, comprehensions — is refused when the constraint
is read. Nothing is ever evaluated by Python itself.

Constraints are declared once, in the run spec (``optimize: constraints: [...]``) and/or with
``--constraint``; the grid skips the points that break one, and random and TPE search never
evaluate such a point (:mod:`tradeexecutor.runs.search`).
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tradeexecutor.errors import ConfigError

__all__ = ["Constraint", "first_broken", "parse_constraint", "parse_constraints"]

#: Longest constraint text accepted (a constraint is a line, not a program).
MAX_LENGTH = 500

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_LITERALS = {"true": True, "false": False, "True": True, "False": False}


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint: its text, the parameters it reads, and its checked syntax tree."""

    text: str
    names: frozenset[str]
    tree: ast.expr

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when ``values`` (every parameter the constraint names) satisfy it; ConfigError if it cannot be computed."""
        try:
            result = _evaluate(self.tree, values)
        except ZeroDivisionError:
            raise ConfigError(f"constraint {self.text!r}: division by zero at {_label(values, self.names)}") from None
        except TypeError:
            raise ConfigError(f"constraint {self.text!r}: cannot compare or combine the values "
                              f"{_label(values, self.names)} (a number with a text?)") from None
        return bool(result)


def parse_constraint(text: str, parameters: Collection[str], where: str = "--constraint") -> Constraint:
    """Parse and check one constraint over the named ``parameters``; a one-line ConfigError naming ``where`` otherwise."""
    source = " ".join(str(text).split())
    if not source:
        raise ConfigError(f"{where}: empty constraint; write one such as 'fast < slow'")
    if len(source) > MAX_LENGTH:
        raise ConfigError(f"{where}: constraint longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise ConfigError(f"{where}: {source!r} is not a valid constraint{column}; write one such as "
                          "'fast < slow' or 'slow >= 2 * fast'") from None
    names: set[str] = set()
    _check(tree, source, where, set(parameters), names)
    if not isinstance(tree, (ast.Compare, ast.BoolOp)) and not (isinstance(tree, ast.UnaryOp)
                                                               and isinstance(tree.op, ast.Not)):
        raise ConfigError(f"{where}: {source!r} is not a condition; a constraint compares parameters, "
                          "such as 'fast < slow'")
    return Constraint(source, frozenset(names), tree)


def parse_constraints(texts: Sequence[tuple[str, str]], parameters: Collection[str]) -> tuple[Constraint, ...]:
    """Parse ``(text, where)`` pairs; duplicates (same text) count once."""
    result: dict[str, Constraint] = {}
    for text, where in texts:
        constraint = parse_constraint(text, parameters, where)
        result.setdefault(constraint.text, constraint)
    return tuple(result.values())


def first_broken(constraints: Sequence[Constraint], values: Mapping[str, Any]) -> Constraint | None:
    """The first constraint ``values`` break, or None when they satisfy all of them."""
    for constraint in constraints:
        if not constraint.holds(values):
            return constraint
    return None


def _label(values: Mapping[str, Any], names: Collection[str]) -> str:
    return ", ".join(f"{name}={values.get(name)!r}" for name in sorted(names))


def _check(node: ast.AST, source: str, where: str, parameters: set[str], names: set[str]) -> None:
    """Refuse every node type outside the small language; collect the parameter names used."""
    if isinstance(node, ast.Name):
        if node.id in _LITERALS:
            return
        if node.id not in parameters:
            close = difflib.get_close_matches(node.id, sorted(parameters), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{where}: {source!r}: {node.id!r} is not a parameter of the strategy{hint} "
                              f"(known: {', '.join(sorted(parameters)) or 'none'})")
        names.add(node.id)
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (bool, int, float, str)):
            return
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, source, where, parameters, names)
        return
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        _check(node.operand, source, where, parameters, names)
        return
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _check(node.left, source, where, parameters, names)
        _check(node.right, source, where, parameters, names)
        return
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        _check(node.left, source, where, parameters, names)
        for comparator in node.comparators:
            _check(comparator, source, where, parameters, names)
        return
    snippet = ast.get_source_segment(source, node) or type(node).__name__
    raise ConfigError(f"{where}: {source!r}: {snippet!r} is not allowed in a constraint (use parameter names, "
                      "numbers, + - * / // %, comparisons, and, or, not)")


def _evaluate(node: ast.AST, values: Mapping[str, Any]) -> Any:
    """Interpret a checked tree: only the node types :func:`_check` lets through reach here."""
    if isinstance(node, ast.Name):
        return _LITERALS[node.id] if node.id in _LITERALS else values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(value, values) for value in node.values)
        return any(_evaluate(value, values) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not operand
        if not isinstance(operand, (int, float)):
            raise TypeError("sign of a text")
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, values), _evaluate(node.right, values)
        if not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
            raise TypeError("arithmetic on a text")  # "a" * 10**12 must not allocate a terabyte
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover - _check refuses it
