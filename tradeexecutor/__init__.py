"""tradeexecutor: a long-running trade-executor daemon, with the backtester that shares its engine.

``__version__`` is looked up on first use: reading the installed package's metadata imports
``importlib.metadata`` (about 25 ms), which every command would otherwise pay before it starts,
``tradeexecutor --help`` included.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["__version__", "lazy_exports"]

# pyramid 2.x imports pkg_resources, which setuptools deprecates with a UserWarning that every start of the
# webhook, the wallboard and the exchange simulator printed into the operator's log: nothing an operator (or
# we, short of replacing pyramid) can act on. Only that one message is silenced; the pin on setuptools in
# pyproject.toml keeps pkg_resources installed.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning)


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each re-exported name from its submodule on first use.

    ``exports`` maps a name to the submodule holding it. The packages whose modules pull in heavy
    libraries (``daemon``, ``store``, ``stats``) re-export this way, so importing one light module
    of theirs — the stop signals, the journal, the number formatting — does not import pandas,
    apscheduler or dataclasses-json first: every command starts faster, ``--help`` included.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # found directly next time
        return value

    return __getattr__


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
