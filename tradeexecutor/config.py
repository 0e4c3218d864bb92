"""Frozen, validated settings objects and the metadata every setting carries; pure, no I/O.

Each component has one frozen config dataclass (the engine's here, the notifier's in
``notify.config``, the executor's ``settings.DaemonConfig`` composing them all). A field
that a person may set is declared with :func:`setting`, which keeps everything about it beside
the field: its help text, command-line flag, environment variable, run-spec key, unit, bounds and
whether it is a secret. From that one declaration come the CLI options (``cli.options``), their
``TRADEEXECUTOR_*`` variables, the run spec's ``core``/``environment`` keys (``runs.spec``), the
configuration reference (docs/gen_config_reference.py) and ``deploy/compose/env.example``, so a
new setting is one edit. Values are checked once, in ``__post_init__``, by :func:`check_settings`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any
from urllib.parse import urlsplit

from tradeexecutor.errors import ConfigError

#: How market orders fill: at the next bar's open, or at the deciding bar's close.
FILL_TIMINGS = ("next_open", "close")
#: Where a field's :class:`Setting` sits in its ``dataclasses.field`` metadata.
SETTING = "setting"
#: Every environment variable of a setting starts with this (the CLI reads them, run specs are overridden by them).
ENV_PREFIX = "TRADEEXECUTOR_"


@dataclass(frozen=True)
class Setting:
    """Everything outside the code needs to know about one config field, declared beside it."""

    #: One or two sentences for ``--help``, the configuration reference and env.example.
    help: str
    #: The long option, such as ``--cash``; empty: ``--`` and the field name with dashes.
    flag: str = ""
    #: A short alias such as ``-p``.
    short: str = ""
    #: The off switch of an on/off flag, such as ``--no-source``.
    negation: str = ""
    #: The environment variable without ``TRADEEXECUTOR_``; empty: the flag in capitals; None: no variable.
    env: str | None = ""
    #: The run-spec key path (``core.cash``); empty: specs cannot set it.
    spec: str = ""
    #: Unit of a number, shown in the reference (seconds, bps, ...).
    unit: str = ""
    #: Inclusive lower bound, exclusive lower bound and inclusive upper bound of a number.
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    #: Said after a bound is broken: what the edge values mean (``0 disables``).
    hint: str = ""
    #: The allowed values of a text setting.
    choices: tuple[str, ...] = ()
    #: A credential: never shown in a repr, only ever given through its environment variable.
    secret: bool = False
    #: Text (or the tuple of a repeatable option) → field value, for settings typed as text; raises ConfigError.
    parse: Callable[[Any], Any] | None = None
    #: The default as a person types it, for settings with ``parse`` (``all``, ``00:00``).
    text_default: str | None = None
    #: The option's default when it differs from the field's: None means "decided at run time".
    computed_default: bool = False
    #: Several values: the option may repeat and its variable takes them separated by spaces.
    multiple: bool = False
    #: The value's type where the default (None) does not tell it, such as ``float`` for an optional number.
    kind: type | None = None
    #: How ``--help`` names the value (``K``, ``NAME=VALUES``); empty: click's name for the type.
    metavar: str = ""
    #: Left out of a run spec's config fingerprint while at its default: set on settings added after runs and
    #: sweeps were first matched by fingerprint, so a config that does not use one keeps its fingerprint.
    fingerprint_when_set: bool = False

    def option(self, name: str) -> str:
        """The long option of the field ``name``."""
        return self.flag or "--" + name.replace("_", "-")

    def variable(self, name: str) -> str:
        """The environment variable of the field ``name``, without the prefix; empty when it has none."""
        if self.env is None:
            return ""
        return self.env or self.option(name).lstrip("-").replace("-", "_").upper()


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **about: Any) -> Any:
    """A dataclass field carrying its :class:`Setting` (``about`` are its attributes; ``help`` is required).

    Example::

        grace_seconds: float = setting(60.0, help="/healthz fails when ...", unit="seconds", minimum=0)
    """
    meta = {SETTING: Setting(**about)}
    repr_ = not about.get("secret", False)
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=repr_)
    return field(default=default, metadata=meta, repr=repr_)


def setting_of(item: Field[Any]) -> Setting | None:
    """The Setting declared on a dataclass field, None for plain fields."""
    about = item.metadata.get(SETTING)
    return about if isinstance(about, Setting) else None


@dataclass(frozen=True)
class SettingPath:
    """One setting found by :func:`walk_settings`: where it is in the tree and what it says of itself."""

    #: Field names from the root config down to this field, such as ``("engine", "execution", "fee")``.
    path: tuple[str, ...]
    about: Setting
    #: The field's default (the factory's value for fields with a factory).
    default: Any

    @property
    def name(self) -> str:
        """The field's own name."""
        return self.path[-1]

    @property
    def option(self) -> str:
        return self.about.option(self.name)

    @property
    def variable(self) -> str:
        return self.about.variable(self.name)

    @property
    def param(self) -> str:
        """The Python name of the option's value: the flag without dashes (``--cash`` → ``cash``)."""
        return self.option.lstrip("-").replace("-", "_")


def walk_settings(config: type[Any], prefix: tuple[str, ...] = ()) -> Iterator[SettingPath]:
    """Every setting of a config class and of the config classes it composes, in declaration order.

    A field is a setting when declared with :func:`setting`; a plain field whose default is a
    config dataclass is a part, walked in turn; other plain fields (the strategy file, say) are
    given by the program, not by a person.
    """
    for item in fields(config):
        default = item.default_factory() if item.default_factory is not MISSING else item.default
        about = setting_of(item)
        if about is not None:
            yield SettingPath((*prefix, item.name), about, None if default is MISSING else default)
        elif is_dataclass(default) and not isinstance(default, type):
            yield from walk_settings(type(default), (*prefix, item.name))


def build_config(config: type[Any], values: Mapping[tuple[str, ...], Any], **given: Any) -> Any:
    """An instance of ``config`` from values keyed by setting path (parts built bottom-up); ``given`` are
    the root's plain fields. Parts validate themselves, so the first bad value raises its ConfigError."""
    return _build(config, (), values, given)


#: :func:`_declared`'s answers, by class.
_DECLARED: dict[type, tuple[tuple[tuple[Field[Any], Setting | None], ...], tuple[tuple[str, Setting, str], ...],
                            dict[str, str]]] = {}


def _declared(config: type[Any]) -> tuple[tuple[tuple[Field[Any], Setting | None], ...],
                                          tuple[tuple[str, Setting, str], ...], dict[str, str]]:
    """A config class's fields with their Settings; (name, Setting, option) of each setting; name → option.

    Read once per class: the declarations are code and do not change while the process runs, and walking them
    on every config built was a third of reading a run spec (a sweep reads one per full run: docs/benchmarks.md).
    """
    known = _DECLARED.get(config)
    if known is None:
        items = tuple((item, setting_of(item)) for item in fields(config))
        declared = tuple((item.name, about, about.option(item.name)) for item, about in items if about is not None)
        known = _DECLARED[config] = (items, declared, {name: label for name, _, label in declared})
    return known


def _build(config: type[Any], prefix: tuple[str, ...], values: Mapping[tuple[str, ...], Any],
           given: Mapping[str, Any]) -> Any:
    kwargs: dict[str, Any] = dict(given)
    for item, about in _declared(config)[0]:
        path = (*prefix, item.name)
        if path in values:
            kwargs[item.name] = values[path]
        elif about is None and item.name not in kwargs:
            default = item.default_factory() if item.default_factory is not MISSING else item.default
            if (is_dataclass(default) and not isinstance(default, type)
                    and any(key[:len(path)] == path for key in values)):
                kwargs[item.name] = _build(type(default), path, values, {})
    return config(**kwargs)


def check_settings(config: Any) -> None:
    """The checks every setting declares: numbers finite and within their bounds, text among its choices.

    Called first in each config's ``__post_init__``; errors name the option (``--port 70000 must be
    between 0 and 65535``), which is how run specs map them back to their key.
    """
    _, declared, labels = _declared(type(config))
    check_finite_fields(config, labels)
    for name, about, label in declared:
        value = getattr(config, name)
        if value is None:
            continue
        hint = f" ({about.hint})" if about.hint else ""
        if about.choices and value not in about.choices:
            raise ConfigError(f"{label} {value!r} is not one of {', '.join(about.choices)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high = about.minimum, about.maximum
        if low is not None and high is not None and not low <= value <= high:
            raise ConfigError(f"{label} {value} must be between {_plain(low)} and {_plain(high)}{hint}")
        if low is not None and value < low:
            rule = "must not be negative" if low == 0 else f"must be at least {_plain(low)}"
            raise ConfigError(f"{label} {value} {rule}{hint}")
        if high is not None and value > high:
            raise ConfigError(f"{label} {value} must be at most {_plain(high)}{hint}")
        if about.above is not None and not value > about.above:
            rule = "must be positive" if about.above == 0 else f"must be above {_plain(about.above)}"
            raise ConfigError(f"{label} {value} {rule}{hint}")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def split_list(values: Any) -> tuple[str, ...]:
    """Repeated and comma-separated values as one tuple (``("a,b", "c")`` → ``("a", "b", "c")``)."""
    items = [values] if isinstance(values, str) else list(values or ())
    return tuple(part.strip() for value in items for part in str(value).split(",") if part.strip())


def offset_seconds(text: Any) -> float:
    """``0``, ``90`` (seconds) or a duration such as ``8m`` → seconds; ConfigError naming ``--cycle-offset``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        try:
            seconds = float(str(text).strip())
        except ValueError:
            from tradeexecutor.timeframe import parse_duration  # pandas: only when a duration is given

            return parse_duration(str(text).strip()).total_seconds()
    try:
        finite_number(seconds)
    except ValueError as exc:
        raise ConfigError(f"--cycle-offset {exc}") from None
    if seconds < 0:
        raise ConfigError(f"--cycle-offset {text} must not be negative")
    return seconds


def finite_number(value: Any) -> float:
    """``value`` as a float when it is a finite number; ValueError saying so for NaN and infinities.

    The one check every number a person gives passes, wherever it comes from: options and their
    environment variables, run specs, strategy parameters, optimize grids and the config objects
    below. Range checks alone let NaN through (``nan < 0`` is False) and infinity through the
    lower bounds, and either then hangs a loop or poisons every later sum.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value} is not a finite number: give an ordinary number such as 0.5 or 10000")
    return number


def check_finite_fields(config: Any, labels: Mapping[str, str] | None = None) -> None:
    """ConfigError for the first float field of a config dataclass that is NaN or infinite.

    The error names the field as its command-line option (``--trigger-seconds``, or ``labels[name]``
    where the option is called otherwise), which is how run specs map it back to their own key.
    """
    for item, _ in _declared(type(config))[0]:
        value = getattr(config, item.name)
        if isinstance(value, float):
            try:
                finite_number(value)
            except ValueError as exc:
                label = (labels or {}).get(item.name) or "--" + item.name.replace("_", "-")
                raise ConfigError(f"{label} {exc}") from None


@dataclass(frozen=True)
class ExecutionConfig:
    """How simulated orders fill and what they cost."""

    fee: float = setting(0.0, spec="core.fee", help="Fee per fill as a fraction of traded value (0.002 = 0.2 %).")
    slippage_bps: float = setting(0.0, spec="core.slippage_bps", unit="bps",
                                  help="Adverse price move per fill in basis points: buys pay more, sells get less.")
    fill_timing: str = setting("next_open", spec="core.fill_timing", choices=FILL_TIMINGS,
                               help="next_open: decisions after bar T closes fill at bar T+1's open; close: at bar "
                                    "T's close.")
    min_notional: float = setting(0.0, spec="core.min_notional", minimum=0,
                                  help="Reject orders worth less than this (closing a position is always allowed).")

    def __post_init__(self) -> None:
        check_settings(self)
        if not 0 <= self.fee < 0.1:
            raise ConfigError(f"fee {self.fee} must be a fraction of traded value between 0 and 0.1 (0.002 = 0.2 %)")
        if not 0 <= self.slippage_bps < 1000:
            raise ConfigError(f"slippage {self.slippage_bps} bps must be between 0 and 1000")


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the cycle engine shared by backtest, replay, paper and live."""

    #: How orders fill and what they cost.
    execution: ExecutionConfig = ExecutionConfig()
    initial_cash: float = setting(10_000.0, flag="--cash", spec="core.cash", above=0,
                                  help="Starting cash of a new state.")
    cycle_offset_seconds: float = setting(0.0, flag="--cycle-offset", spec="core.cycle_offset_seconds",
                                          parse=offset_seconds, text_default="0", unit="seconds", minimum=0,
                                          help="Cycles fire this long after each boundary: seconds or a duration "
                                               "such as 8m.")
    #: Refuse indicators whose past values change when later candles are added.
    check_indicator_lookahead: bool = True

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class WebhookConfig:
    """Who may read the webhook and how many threads answer it; the credentials never show in a repr."""

    username: str | None = setting(None, flag="--webhook-username", secret=True,
                                   help="Turns on basic auth for every route but /ping and /healthz (with the "
                                        "password).")
    password: str | None = setting(None, flag="--webhook-password", secret=True,
                                   help="Basic-auth password; give it through the environment variable, not the "
                                        "command line.")
    cors_origins: tuple[str, ...] = setting((), flag="--cors-origin", env="CORS_ORIGINS", multiple=True,
                                            parse=split_list,
                                            help="Origin allowed to read the webhook from a browser; repeat or "
                                                 "comma-separate. Default: none.")
    threads: int = setting(4, flag="--webhook-threads", minimum=1, maximum=64,
                           help="Worker threads of the webhook server (fewer leave more room for the loop under "
                                "heavy polling).")
    source_enabled: bool = setting(True, flag="--source", negation="--no-source", env="SOURCE",
                                   help="Serve the strategy source at /source (off for closed-source strategies).")

    def __post_init__(self) -> None:
        check_settings(self)
        if bool(self.username) != bool(self.password):
            raise ConfigError("webhook auth needs both TRADEEXECUTOR_WEBHOOK_USERNAME and "
                              "TRADEEXECUTOR_WEBHOOK_PASSWORD")


@dataclass(frozen=True)
class RiskConfig:
    """Risk limits: when one is hit the executor stops opening positions until an operator resumes it.

    Every limit is off at 0. The loop checks the first three after each job that values the
    portfolio (``engine/risk.py``); the engine refuses an entry or increase that would take a
    position past ``max_position_value``. Their definitions are in docs/production.md#risk-limits.
    """

    max_drawdown: float = setting(0.0, spec="core.max_drawdown", fingerprint_when_set=True, minimum=0, maximum=1,
                                  hint="0 disables",
                                  help="Pause entries when equity falls this fraction below its highest value "
                                       "(0.2 = 20 % drawdown from the peak); 0 disables.")
    max_daily_loss: float = setting(0.0, spec="core.max_daily_loss", fingerprint_when_set=True, minimum=0, maximum=1,
                                    hint="0 disables",
                                    help="Pause entries when equity falls this fraction below the day's starting "
                                         "equity (the last valuation before the bar's UTC day began); 0 disables.")
    max_losing_streak: int = setting(0, spec="core.max_losing_streak", fingerprint_when_set=True, minimum=0,
                                     hint="0 disables",
                                     help="Pause entries after this many positions in a row closed with a negative "
                                          "realised P&L; 0 disables.")
    max_position_value: float = setting(0.0, spec="core.max_position_value", fingerprint_when_set=True, minimum=0,
                                        unit="quote currency", hint="0 disables",
                                        help="Refuse an entry or increase that would take one position's value "
                                             "above this (journaled as intent_ignored with the reason); 0 "
                                             "disables.")
    risk_close_positions: bool = setting(False, spec="core.risk_close_positions", fingerprint_when_set=True,
                                         help="When a limit pauses entries, also close every open position at the "
                                              "bar's close, as a stop-loss would.")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class HealthLimits:
    """How late and how stale the executor may be before it counts as unhealthy."""

    grace_seconds: float = setting(60.0, flag="--health-grace-seconds", unit="seconds", minimum=0,
                                   help="/healthz fails when the next cycle is this many seconds overdue.")
    data_stale_seconds: float = setting(0.0, flag="--data-stale-seconds", unit="seconds", minimum=0,
                                        hint="0 disables",
                                        help="/healthz fails when market data is older than this; 0 disables.")
    outage_grace_seconds: float = setting(120.0, flag="--outage-grace-seconds", unit="seconds", minimum=0,
                                          help="/healthz fails when a temporary failure (network, exchange down "
                                               "or in maintenance, rate limit) has lasted this long; the loop "
                                               "keeps retrying with backoff meanwhile.")

    def __post_init__(self) -> None:
        check_settings(self)


#: Where the exchange API key and secret are read from unless the config names other variables.
KEY_VARIABLE = "TRADEEXECUTOR_EXCHANGE_API_KEY"
SECRET_VARIABLE = "TRADEEXECUTOR_EXCHANGE_API_SECRET"

_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass(frozen=True)
class CcxtVenueConfig:
    """How the ccxt venue reaches one exchange (venue/ccxt_connection.py builds the client from it).

    It lives here, not in ``venue``, so that the settings tree holds it without importing the
    venue (and the state model under it) when a command merely parses its options. ``quote`` and
    ``symbols`` come from the strategy's instruments, not from a person.
    """

    exchange: str | None = setting(None, flag="--exchange", kind=str, spec="environment.exchange",
                                   fingerprint_when_set=True,
                                   help="The exchange whose prices paper mode trades on and whose markets live mode sends "
                                        "real orders to: any ccxt exchange id (binance, kraken, ...); spot markets "
                                        "only. Paper and live need it; replay and backtest ignore it.")
    url: str | None = setting(None, flag="--exchange-url", kind=str, spec="environment.exchange_url",
                              fingerprint_when_set=True,
                              help="Point every API base URL of the exchange at this scheme and host, paths kept: "
                                   "the exchange simulator, a proxy or a testnet. Default: the exchange itself.")
    key_variable: str = setting(KEY_VARIABLE, flag="--exchange-key-variable", spec="core.exchange_key_variable",
                                fingerprint_when_set=True,
                                help="Environment variable holding the exchange API key (its name: the value is "
                                     "never shown, logged or stored).")
    secret_variable: str = setting(SECRET_VARIABLE, flag="--exchange-secret-variable",
                                   spec="core.exchange_secret_variable", fingerprint_when_set=True,
                                   help="Environment variable holding the exchange API secret (its name).")
    rate_share: float = setting(1.0, flag="--exchange-rate-share", spec="core.exchange_rate_share",
                                fingerprint_when_set=True, minimum=0, above=0, maximum=1,
                                hint="0.25 = a quarter of the address's budget",
                                help="This executor's share of the exchange's request budget, for fleets behind "
                                     "one IP address: ccxt's rate limit is stretched by 1/share.")
    timeout_seconds: float = setting(10.0, flag="--exchange-timeout-seconds", spec="core.exchange_timeout_seconds",
                                     fingerprint_when_set=True, unit="seconds", minimum=0, above=0,
                                     maximum=300,
                                     help="Seconds to wait for one exchange reply; an order whose reply does not "
                                          "come in time is asked about by its client order id, never resent.")
    not_found_seconds: float = setting(60.0, flag="--exchange-not-found-seconds",
                                       spec="core.exchange_not_found_seconds", fingerprint_when_set=True,
                                       unit="seconds", minimum=0, above=0, maximum=3600,
                                       help="How long the exchange's \"order does not exist\" must last (3 answers in "
                                            "a row over at least this) before it is believed: an order it had "
                                            "accepted is then lost, one whose reply never came is sent again. "
                                            "Binance answers it for moments after it accepted an order; a minute is "
                                            "far past that. Lower only for an exchange without that lag (a "
                                            "simulator). Used by a running executor (`start`, `runs start`) only: `check` "
                                            "and `reconcile` look once and send nothing.")
    fills_missing_seconds: float = setting(300.0, flag="--exchange-fills-missing-seconds",
                                           spec="core.exchange_fills_missing_seconds", fingerprint_when_set=True,
                                           unit="seconds", minimum=0, above=0, maximum=86400,
                                           help="How long an order the exchange says ended may have fewer trades "
                                                "listed than it says filled (3 answers in a row over at least "
                                                "this) before it is reported: journaled order_fills_missing, in "
                                                "/status, /healthz and /metrics. It is followed either way, never "
                                                "ended short. Binance's trade list trails an order's status by "
                                                "moments; five minutes is far past that.")
    #: Quote asset of symbols written without one (``EUR`` → ``EUR/USD`` when quote is USD).
    quote: str | None = None
    #: Symbols whose orders and trades are looked through for ids this process did not send itself.
    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_settings(self)
        if self.exchange is not None and not re.fullmatch(r"[a-z0-9_]+", self.exchange):
            raise ConfigError(f"--exchange {self.exchange!r} must be a ccxt exchange id such as binance")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ConfigError(f"--exchange-url {self.url!r} must be scheme and host only, such as "
                                  "http://127.0.0.1:9000")
        for flag, name in (("--exchange-key-variable", self.key_variable),
                           ("--exchange-secret-variable", self.secret_variable)):
            if not _VARIABLE.match(name):
                raise ConfigError(f"{flag} {name!r} must be an environment variable name such as {KEY_VARIABLE}")
