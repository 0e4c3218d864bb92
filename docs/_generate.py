"""Shared end of the docs generators: write the page, or with --check say whether it is current."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(target: Path, text: str, script: str, argv: list[str] | None = None) -> int:
    """Write ``text`` to ``target``; with ``--check`` only compare, and name the command that regenerates it."""
    args = sys.argv[1:] if argv is None else argv
    root = target.resolve().parent.parent
    if "--check" in args:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target.relative_to(root)} is out of date: run python {script}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target.relative_to(root)}")
    return 0
