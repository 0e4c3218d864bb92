"""One exception tree for the whole package; the loop boundary decides retry versus stop.

::

    TradeExecutorError              base of everything we raise on purpose
    ├── UserInputError              bad input from a person: exit code 2, nothing written
    │   ├── ConfigError             an option, environment variable or run spec is wrong
    │   ├── DataError               a candle file is missing, malformed or inconsistent
    │   ├── StrategyLoadError       a strategy module cannot be loaded or fails validation
    │   │   └── LookaheadRefusedError   its indicators or code would reach past the cycle time
    │   ├── ParameterError          a strategy parameter override is wrong
    │   └── NotFoundError           a thing a person named does not exist (an unknown run)
    ├── StateError                  the persisted state cannot be used
    │   ├── StateCorruptError       the file exists but cannot be read; never overwritten
    │   ├── SchemaVersionError      the file was written by a newer schema
    │   └── StateLockedError        another process holds the state lock
    ├── LookaheadError              a strategy asked for data from the future (LookaheadRefusedError too)
    ├── TemporaryError              transient failure (feed timeout); the loop may retry
    │   └── ExchangeLagError        the exchange does not know an order yet, not for long enough to believe it
    └── InvariantError              the code broke its own rule (an illegal order transition): a bug

An order that cannot be filled is *not* an exception: it becomes a rejected order with
its reason kept on the order.
"""

from __future__ import annotations


class TradeExecutorError(Exception):
    """Base class for every error tradeexecutor raises on purpose."""


class UserInputError(TradeExecutorError):
    """Input a person gave us is wrong; the message says what, where and how to fix it."""

    exit_code = 2


class ConfigError(UserInputError):
    """An option, environment variable or run spec value is invalid."""


class DataError(UserInputError):
    """Market data cannot be loaded or fails validation."""


class StrategyLoadError(UserInputError):
    """A strategy module is missing, does not compile or declares something invalid."""


class ParameterError(UserInputError):
    """A strategy parameter override does not match the declared parameters."""


class NotFoundError(UserInputError):
    """A thing a person named (a run's id or ref) does not exist: an HTTP API answers 404, not 400."""


class StateError(TradeExecutorError):
    """The persisted state cannot be used as it is."""

    exit_code = 3


class StateCorruptError(StateError):
    """A state file exists but cannot be parsed; it is left untouched for inspection."""


class SchemaVersionError(StateError):
    """A state file was written by a newer schema than this version understands."""


class StateLockedError(StateError):
    """Another process holds the exclusive lock on this state."""


class LookaheadError(TradeExecutorError):
    """A strategy or indicator tried to use data from after the cycle's timestamp."""


class TemporaryError(TradeExecutorError):
    """A transient failure (a feed that timed out); the loop may retry the job later."""


class ExchangeLagError(TemporaryError):
    """The exchange answers "does not exist" for an order whose submit never got a reply (or that it held), and that
    answer has not lasted long enough to be believed (``NotFoundAnswers``): most likely its lag right after accepting
    an order, not an outage. Only the jobs that decide something new wait on it (the cycle); the jobs that protect
    the other positions (trigger checks, revaluation and the risk check, an operator's close) go on meanwhile —
    while a real outage (a plain TemporaryError) fails them as it always did."""


class LookaheadRefusedError(StrategyLoadError, LookaheadError):
    """A strategy refused before it runs because it would see the future: an indicator whose past values
    change when later candles are left out, or code that reaches past the cycle context (exit code 2)."""


class InvariantError(TradeExecutorError):
    """A rule the code itself must keep was broken (an illegal order transition): a bug, so the loop crashes."""


def network_reason(exc: BaseException) -> str:
    """Why a network call failed, as one short line: ``connection refused``, ``timed out``, ...

    For journal lines and error answers about a peer that did not answer (the wallboard a cast
    goes to, an executor the wallboard polls): urllib wraps the OSError in ``reason``; its
    strerror is the plainest wording, and no traceback or URL is included.
    """
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    return (str(reason).strip() or type(reason).__name__).splitlines()[0]
