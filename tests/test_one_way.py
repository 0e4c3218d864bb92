"""One way to do each thing, checked on every module: file names come from layout.py, whole files are
replaced through atomic.py, a setting's default is written only where the setting is declared.

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


#: Parameters named like a setting with its default, keyed by (module, name), with the reason they are no copy.
ALLOWED_DEFAULTS: dict[tuple[str, str], str] = {
    ("webhook/server.py", "threads"): "one server class for the webhook, the wallboard and the exchange simulator, "
                                      "whose configs each declare their own thread count",
    ("data/synthetic.py", "start_price"): "the synthetic-candle generator's own parameter (tests and benchmarks "
                                          "call it directly)",
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


def _literal(node: ast.expr | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def declared_defaults(source: str) -> dict[str, object]:
    """``name → default`` of the settings a module declares (``name: T = setting(DEFAULT, ...)``), numbers other
    than 0 and 1 only: those are the values worth copying by mistake."""
    found: dict[str, object] = {}
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(node.value, ast.Call)
                and _dotted(node.value.func) == "setting" and node.value.args):
            value = _literal(node.value.args[0])
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value not in (0, 1):
                found[node.target.id] = value
    return found


def copied_defaults(source: str, declared: dict[str, object]) -> set[str]:
    """Parameters and dataclass fields of a module named like a declared setting and defaulting to its value."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[str, ast.expr | None]] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            positional = [*arguments.posonlyargs, *arguments.args]
            pairs += list(zip([a.arg for a in positional[len(positional) - len(arguments.defaults):]],
                              arguments.defaults, strict=True))
            pairs += [(a.arg, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            pairs.append((node.target.id, node.value))
        for name, default in pairs:
            value = _literal(default)
            if name in declared and value is not None and not isinstance(value, bool) and value == declared[name]:
                found.add(name)
    return found


def test_setting_defaults_are_written_only_where_declared() -> None:
    sources = {_relative(path): path.read_text(encoding="utf-8") for path in _modules()}
    declared_in = {module: declared_defaults(source) for module, source in sources.items()}
    declared = {name: value for defaults in declared_in.values() for name, value in defaults.items()}
    assert {"port", "watchdog_seconds", "crash_serve_seconds", "publish_seconds", "threads"} <= set(declared)
    copies = {(module, name) for module, source in sources.items()
              for name in copied_defaults(source, {k: v for k, v in declared.items()
                                                   if k not in declared_in[module]})}
    unlisted = sorted(copies - set(ALLOWED_DEFAULTS))
    assert not unlisted, f"{unlisted} repeat a setting's default: take it from the config (or list it with a reason)"
    stale = sorted(set(ALLOWED_DEFAULTS) - copies)
    assert not stale, f"{stale} no longer repeat a default: remove them from ALLOWED_DEFAULTS"


def test_the_checkers_find_violations() -> None:
    names = layout_names()
    assert spelled_names('PATH = root / "ledger.sqlite"\n', names) == {"ledger.sqlite"}
    assert spelled_names('"""Writes ledger.sqlite."""\nx = f"{root}/x"\n', names) == set()
    assert file_calls("import os\nos.replace(a, b)\nos.fsync(fd)\n") == {"os.replace", "os.fsync"}
    assert file_calls("import os\nx = 'a'.replace('a', 'b')\n") == set()
    declared = declared_defaults('class C:\n    crash_serve_seconds: float = setting(300.0, help="x")\n')
    assert declared == {"crash_serve_seconds": 300.0}
    assert copied_defaults("def f(a, crash_serve_seconds=300.0): pass\n", declared) == {"crash_serve_seconds"}
    assert copied_defaults("def f(*, crash_serve_seconds: float = 300): pass\n", declared) == {"crash_serve_seconds"}
    assert copied_defaults("class O:\n    crash_serve_seconds: float = 300.0\n", declared) == {"crash_serve_seconds"}
    assert copied_defaults("def f(crash_serve_seconds=5.0): pass\n", declared) == set()


def test_an_environment_variable_has_one_default_across_the_commands() -> None:
    """Two commands reading the same variable with different defaults would make one setting mean two things."""
    import click

    #: (variable, command) pairs whose default differs on purpose, with the reason.
    allowed = {("TRADEEXECUTOR_RUNS_DIR", "wallboard"): "the wallboard shows runs only when told where they are"}

    from tradeexecutor.cli.main import cli

    seen: dict[str, set[tuple[str, str]]] = {}

    def walk(command: click.Command, path: str) -> None:
        for parameter in command.params:
            envvar = parameter.envvar
            names: list[str] = [envvar] if isinstance(envvar, str) else list(envvar or [])
            for name in names:
                if (name, path) not in allowed:
                    default = parameter.default
                    seen.setdefault(name, set()).add((repr(str(default) if isinstance(default, Path) else default),
                                                      path))
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is not None:
                    walk(sub, f"{path} {name}".strip())

    walk(cli, "")
    assert "TRADEEXECUTOR_CLIENT_TIMEOUT" in seen and all(name in seen for name, _ in allowed)
    differing = {name: sorted(uses) for name, uses in seen.items() if len({default for default, _ in uses}) > 1}
    assert not differing, f"one variable, several defaults: {differing}"
