"""tradeexecutor: a long-running trade-executor daemon, with the backtester that shares its engine.

``__version__`` is looked up on first use: reading the installed package's metadata imports
``importlib.metadata`` (about 25 ms), which every command would otherwise pay before it starts,
``tradeexecutor --help`` included.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """The package version, read once from its metadata (``0.0.0+unknown`` in a source tree without an install)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("tradeexecutor")
    except PackageNotFoundError:  # running from a source tree without an install
        value = "0.0.0+unknown"
    globals()["__version__"] = value
    return value
