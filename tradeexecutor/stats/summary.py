"""Compute a run's performance statistics and trade list from its State, for reports and the webhook.

Every statistic is defined precisely in ``docs/statistics.md``; the short version:

* returns are period-to-period simple returns of ``state.valuations.equity``;
* wins and losses are counted per *closed* position, using ``Position.realised_pnl`` (net of fees);
* anything that is mathematically undefined (no rows, zero variance, no losing position, ...)
  is ``None``, never NaN or infinity, so :meth:`Summary.to_dict` is always valid JSON.

The return statistics are vectorised with numpy: a million valuation rows take tens of
milliseconds, most of it converting the state's Python lists to arrays.

:func:`trades_frame` and :func:`write_trades_csv` produce the one trade table shared by the
backtest's trades CSV and the daemon's orders CSV; its columns are :data:`TRADE_COLUMNS`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeexecutor.state import Order, OrderStatus, State
from tradeexecutor.stats.formatting import SUMMARY_ROWS, format_figure

__all__ = [
    "TRADE_COLUMNS",
    "Summary",
    "compute_summary",
    "instrument_labels",
    "order_counts",
    "summarise_windows",
    "summary_table",
    "trade_record",
    "trades_frame",
    "write_trades_csv",
]

#: The Unix epoch, for turning epoch milliseconds into datetimes exactly.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Milliseconds in one day.
_MS_PER_DAY = 86_400_000.0
#: Days in the year used for CAGR and for inferring periods per year.
DAYS_PER_YEAR = 365.25
#: Milliseconds in one year of DAYS_PER_YEAR days.
_MS_PER_YEAR = DAYS_PER_YEAR * _MS_PER_DAY

#: Columns of the trades table, one row per order, in order. The backtest's trades CSV and the daemon's
#: orders CSV both use exactly these; add new columns at the end and never rename one. (The names
#: date from schema 1, when an order and its fill were one "trade": ``trade_id`` is the order id,
#: ``kind`` its purpose, ``planned_*`` what was asked, ``executed_*`` what its fills gave.)
TRADE_COLUMNS: tuple[str, ...] = (
    "trade_id",
    "position_id",
    "symbol",
    "kind",
    "status",
    "side",
    "planned_at",
    "executed_at",
    "planned_quantity",
    "executed_quantity",
    "executed_price",
    "value",
    "fee",
    "slippage",
    "realised_pnl",
    "trigger",
    "trigger_price",
    "reject_reason",
    "note",
    "client_order_id",
    "reject_code",
    "fee_currency",
)


@dataclass(frozen=True, slots=True)
class Summary:
    """Headline statistics of one run; see ``docs/statistics.md`` for each definition.

    Fractions are plain fractions (0.21 = 21 %); money is in the quote currency; ``None`` means
    the statistic is undefined for this run.
    """

    #: Time of the first valuation row, ISO 8601 UTC; None without valuations.
    start: str | None
    #: Time of the last valuation row, ISO 8601 UTC; None without valuations.
    end: str | None
    #: ``State.initial_cash``.
    initial_cash: float | None
    #: Equity at the last valuation row (current portfolio equity when there is none).
    final_equity: float | None
    #: final_equity / base - 1, base being initial_cash when positive, else the first equity row.
    total_return: float | None
    #: Compound annual growth rate over the valuation span, in years of 365.25 days.
    cagr: float | None
    #: Sample standard deviation of period returns times sqrt(periods_per_year).
    annualised_volatility: float | None
    #: Annualised Sharpe ratio of period returns in excess of the risk-free rate.
    sharpe: float | None
    #: Annualised Sortino ratio (downside deviation over all periods).
    sortino: float | None
    #: Largest peak-to-trough fall of equity, as a positive fraction of the peak.
    max_drawdown: float | None
    #: Longest time, in days, from an equity peak until equity regains it (or the run ends).
    max_drawdown_duration: float | None
    #: Closed positions with realised_pnl > 0, divided by closed positions.
    win_rate: float | None
    #: Sum of winning realised_pnl divided by the absolute sum of losing realised_pnl.
    profit_factor: float | None
    #: Mean realised_pnl of winning closed positions (positive).
    average_win: float | None
    #: Mean realised_pnl of losing closed positions (negative).
    average_loss: float | None
    #: Executed trades in every position.
    trade_count: int
    #: Closed positions.
    position_count: int
    #: Rejected trades in every position.
    rejected_trade_count: int
    #: Fraction of valuation rows with exposure > 0.
    exposure_time: float | None
    #: ``Portfolio.fees_paid``.
    fees_paid: float
    #: Equal-weighted mean of each benchmark series' first-to-last close return over the span.
    buy_and_hold_return: float | None
    #: Open positions now.
    open_positions: int
    #: Return periods per year used to annualise (given, or inferred from the rows).
    periods_per_year: float | None
    #: The currency ``fees_paid`` (and every money figure) is in: the instruments' quote currency
    #: (``State.quote_currency``; a fee in the base asset or in BNB is valued in it); None without instruments.
    fee_currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: NaN and infinities become None, so ``json.dumps`` never fails."""
        result: dict[str, Any] = {}
        for key in _SUMMARY_FIELDS:  # every field is a scalar: no deep copy (asdict) after each cycle
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            result[key] = value
        return result


#: Summary's field names, in declaration order.
_SUMMARY_FIELDS = tuple(item.name for item in fields(Summary))


# ---------------------------------------------------------------------------------------------
# Summary


def order_counts(orders: Iterable[Order]) -> tuple[int, int]:
    """(orders with fills, rejected orders without any): the summary's trade and rejection counts."""
    filled = rejected = 0
    for order in orders:
        if order.fills:
            filled += 1
        elif order.status is OrderStatus.rejected:
            rejected += 1
    return filled, rejected


def compute_summary(
    state: State,
    *,
    benchmark_prices: dict[str, pd.Series] | None = None,
    periods_per_year: float | None = None,
    risk_free_rate: float = 0.0,
    window: tuple[int, int] | None = None,
) -> Summary:
    """Summarise a run's performance from its state, so every report uses one set of definitions.

    ``benchmark_prices`` maps a symbol to its close prices (a Series with a DatetimeIndex,
    UTC or naive-as-UTC); when given, ``buy_and_hold_return`` is their equal-weighted
    first-to-last return over the valuation span. ``periods_per_year`` annualises volatility,
    Sharpe and Sortino; when None it is inferred as *return periods / years spanned*
    (about 252 for weekday-only daily stocks, 365 for daily crypto, ~6,200 for hourly FX).
    ``risk_free_rate`` is an annual rate, converted per period as ``(1 + rf)**(1/ppy) - 1``.

    ``window`` — ``(first_ms, last_ms)``, inclusive epoch milliseconds — summarises one stretch
    of the run, as a parameter sweep's in-sample and out-of-sample figures do: the valuation
    rows inside it, with returns, drawdown and the base of ``total_return`` starting from the
    row just before it (its equity is the window's ``initial_cash``; the run's own initial cash
    when the window starts at the first row), and the trades, fees and closed positions of the
    bars inside it; ``open_positions`` are those open at its end. A window covering every row
    gives the same figures as no window. Pass the whole run's ``periods_per_year`` so that
    windows are annualised alike, or use :func:`summarise_windows`, which does.

    >>> compute_summary(state).to_dict()["sharpe"]  # doctest: +SKIP
    """
    return _summarise(_Run(state), benchmark_prices, periods_per_year, risk_free_rate, window)


def summarise_windows(
    state: State,
    windows: Sequence[tuple[int, int]],
    *,
    benchmark_prices: dict[str, pd.Series] | None = None,
    risk_free_rate: float = 0.0,
) -> tuple[Summary, list[Summary]]:
    """The whole run's summary and one per window, annualised alike, reading the state once.

    Equal to ``compute_summary(state)`` and ``compute_summary(state, window=w,
    periods_per_year=<the whole run's>)`` for each window, without converting the state's
    columns and trades again for each.
    """
    run = _Run(state)
    whole = _summarise(run, benchmark_prices, None, risk_free_rate, None)
    return whole, [_summarise(run, benchmark_prices, whole.periods_per_year, risk_free_rate, window)
                   for window in windows]


class _Run:
    """A state's valuation columns as arrays, and its trades' and positions' times in epoch ms (made on demand)."""

    def __init__(self, state: State) -> None:
        valuations = state.valuations
        self.state = state
        self.timestamps = np.asarray(valuations.timestamp, dtype=np.int64)
        self.equity = np.asarray(valuations.equity, dtype=np.float64)
        self.exposure = np.asarray(valuations.exposure, dtype=np.float64)

    @functools.cached_property
    def trades(self) -> list[tuple[bool, int | None, int | None, float]]:
        """(rejected, last fill ms, created ms, fees) of every order."""
        rejected = OrderStatus.rejected
        return [(o.status is rejected, _ms(o.fills[-1].at) if o.fills else None, _ms(o.created_at), o.fees)
                for o in self.state.portfolio.all_orders()]

    @functools.cached_property
    def closes(self) -> list[tuple[int | None, float]]:
        """(closed ms, realised P&L) of every closed position."""
        return [(_ms(p.closed_at) if p.closed_at else None, p.realised_pnl)
                for p in self.state.portfolio.closed_positions]

    @functools.cached_property
    def spans(self) -> list[tuple[int, int | None]]:
        """(opened ms, closed ms) of every open and closed position."""
        portfolio = self.state.portfolio
        return [(_ms(p.opened_at), _ms(p.closed_at) if p.closed_at else None)
                for p in (*portfolio.open_positions, *portfolio.closed_positions)]


def _summarise(run: _Run, benchmark_prices: dict[str, pd.Series] | None, periods_per_year: float | None,
               risk_free_rate: float, window: tuple[int, int] | None) -> Summary:
    """compute_summary's definitions over a prepared run (and optionally one window of it)."""
    timestamps, equity, exposure = run.timestamps, run.equity, run.exposure
    portfolio = run.state.portfolio
    initial_cash = float(run.state.initial_cash)
    if window is not None and len(timestamps) and window[0] <= timestamps[0] and window[1] >= timestamps[-1]:
        window = None  # the whole run: its own figures exactly (fees as the portfolio summed them)
    #: Trades, fills and closes strictly after ``after_ms`` and at or before ``until_ms`` belong to the window.
    after_ms = -(1 << 62)
    until_ms = 1 << 62
    rows_from = 0
    if window is not None:
        first = int(np.searchsorted(timestamps, window[0], side="left"))
        last = int(np.searchsorted(timestamps, window[1], side="right"))
        until_ms = int(window[1])
        exposure = exposure[first:last]
        if first > 0:  # the row before the window is where its returns and its base start
            after_ms = int(timestamps[first - 1])
            initial_cash = float(equity[first - 1])
            timestamps, equity = timestamps[first - 1:last], equity[first - 1:last]
            rows_from = 1
        else:
            timestamps, equity = timestamps[:last], equity[:last]
    rows = len(timestamps) - rows_from

    start = _iso_ms(int(timestamps[rows_from])) if rows > 0 else None
    end = _iso_ms(int(timestamps[-1])) if rows > 0 else None
    if rows > 0:
        final_equity = float(equity[-1])
    else:
        final_equity = initial_cash if window is not None else float(portfolio.equity())
    base = initial_cash if initial_cash > 0 else (float(equity[0]) if len(equity) else 0.0)
    years = (int(timestamps[-1]) - int(timestamps[0])) / _MS_PER_YEAR if len(timestamps) >= 2 else 0.0

    total_return = _safe(final_equity / base - 1.0) if base > 0 else None
    cagr = compound_annual_growth(final_equity, base, years)

    if periods_per_year is None and len(timestamps) >= 2 and years > 0:
        periods_per_year = (len(timestamps) - 1) / years
    ppy = float(periods_per_year) if periods_per_year and periods_per_year > 0 else None

    returns = _period_returns(equity)
    volatility, sharpe, sortino = _return_ratios(returns, ppy, risk_free_rate)
    max_drawdown, max_drawdown_duration = _drawdowns(timestamps, equity)

    def inside(ms: int | None) -> bool:
        return ms is not None and after_ms < ms <= until_ms

    if window is None:
        pnls = [p.realised_pnl for p in portfolio.closed_positions]
        trade_count, rejected = order_counts(portfolio.all_orders())
        fees_paid = float(portfolio.fees_paid)
        open_positions = len(portfolio.open_positions)
    else:
        pnls = [pnl for closed_ms, pnl in run.closes if inside(closed_ms)]
        fills = [fee for _, filled_ms, _, fee in run.trades if inside(filled_ms)]
        trade_count = len(fills)
        rejected = sum(1 for was_rejected, _, created_ms, _ in run.trades if was_rejected and inside(created_ms))
        fees_paid = math.fsum(fills)
        open_positions = sum(1 for opened_ms, closed_ms in run.spans
                             if opened_ms <= until_ms and (closed_ms is None or closed_ms > until_ms))

    wins = [pnl for pnl in pnls if pnl > 0]
    losses = [pnl for pnl in pnls if pnl < 0]
    closed = len(pnls)
    win_rate = len(wins) / closed if closed else None
    losing_total = -math.fsum(losses)
    profit_factor = math.fsum(wins) / losing_total if losing_total > 0 else None
    average_win = math.fsum(wins) / len(wins) if wins else None
    average_loss = math.fsum(losses) / len(losses) if losses else None

    exposure_time = float(np.count_nonzero(exposure > 0)) / len(exposure) if len(exposure) else None
    buy_and_hold = (_buy_and_hold(benchmark_prices, timestamps[rows_from:])
                    if benchmark_prices else None)

    return Summary(
        start=start,
        end=end,
        initial_cash=initial_cash,
        final_equity=_safe(final_equity),
        total_return=total_return,
        cagr=cagr,
        annualised_volatility=volatility,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_drawdown,
        max_drawdown_duration=max_drawdown_duration,
        win_rate=win_rate,
        profit_factor=_safe(profit_factor),
        average_win=_safe(average_win),
        average_loss=_safe(average_loss),
        trade_count=trade_count,
        position_count=closed,
        rejected_trade_count=rejected,
        exposure_time=exposure_time,
        fees_paid=fees_paid,
        buy_and_hold_return=buy_and_hold,
        open_positions=open_positions,
        periods_per_year=ppy,
        fee_currency=run.state.quote_currency(),
    )


def _period_returns(equity: np.ndarray) -> np.ndarray:
    """Simple returns e[i]/e[i-1] - 1, dropping periods that start at zero or are not finite."""
    if len(equity) < 2:
        return np.empty(0, dtype=np.float64)
    previous = equity[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = equity[1:] / previous - 1.0
    keep = np.isfinite(returns) & (previous != 0)
    result: np.ndarray = returns if keep.all() else returns[keep]
    return result


def _return_ratios(
    returns: np.ndarray, ppy: float | None, risk_free_rate: float
) -> tuple[float | None, float | None, float | None]:
    """Annualised volatility, Sharpe and Sortino of period returns; None where undefined."""
    if ppy is None or len(returns) == 0:
        return None, None, None
    rf_per_period = (1.0 + risk_free_rate) ** (1.0 / ppy) - 1.0
    excess = returns - rf_per_period
    mean_excess = float(excess.mean())
    root = math.sqrt(ppy)

    volatility = sharpe = None
    if len(returns) >= 2:
        std = float(returns.std(ddof=1))  # equals the std of excess returns
        volatility = _safe(std * root)
        if std > 0:
            sharpe = _safe(mean_excess / std * root)

    downside = np.minimum(excess, 0.0)
    downside_dev = math.sqrt(float(np.dot(downside, downside)) / len(downside))
    sortino = _safe(mean_excess / downside_dev * root) if downside_dev > 0 else None
    return volatility, sharpe, sortino


def _drawdowns(timestamps: np.ndarray, equity: np.ndarray) -> tuple[float | None, float | None]:
    """Maximum drawdown (positive fraction) and longest drawdown in days.

    A row is a "high" when equity is at or above every earlier row. A drawdown episode starts at
    a high that is followed by a lower row and ends at the next high, or at the last row when
    equity never recovers; its duration is the time between those two rows.
    """
    if len(equity) == 0:
        return None, None
    peaks = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(peaks > 0, (peaks - equity) / peaks, 0.0)
    max_drawdown = float(np.nanmax(depth)) if len(depth) else 0.0

    highs = np.flatnonzero(equity >= peaks)
    if len(highs) == 0:  # only when the first row is NaN
        return _safe(max_drawdown), None
    # Episodes between consecutive highs with at least one lower row in between.
    gaps = np.diff(highs) > 1
    durations = (timestamps[highs[1:]] - timestamps[highs[:-1]])[gaps]
    longest_ms = int(durations.max()) if len(durations) else 0
    if highs[-1] < len(equity) - 1:  # still under water at the end
        longest_ms = max(longest_ms, int(timestamps[-1] - timestamps[highs[-1]]))
    return _safe(max_drawdown), longest_ms / _MS_PER_DAY


def _buy_and_hold(prices: dict[str, pd.Series], timestamps: np.ndarray) -> float | None:
    """Equal-weighted mean of each series' first-to-last close return inside the valuation span.

    Only closes at or after the first valuation and at or before the last count; a series with
    fewer than one usable close, or a non-positive first close, is left out.
    """
    if len(timestamps) == 0:
        return None
    first, last = int(timestamps[0]), int(timestamps[-1])
    results: list[float] = []
    for series in prices.values():
        if series is None or len(series) == 0:
            continue
        stamps = _index_ms(series.index)
        values = np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
        mask = (stamps >= first) & (stamps <= last) & np.isfinite(values)
        inside = values[mask]
        if len(inside) == 0 or inside[0] <= 0:
            continue
        results.append(float(inside[-1] / inside[0] - 1.0))
    return _safe(math.fsum(results) / len(results)) if results else None


# ---------------------------------------------------------------------------------------------
# Terminal table


def summary_table(summary: Summary) -> str:
    """Format a Summary as an aligned two-column plain-text table for the terminal.

    Every figure as :mod:`tradeexecutor.stats.formatting` writes it (fractions as percentages,
    undefined values as ``n/a``).
    """
    values = summary.to_dict()
    lines = [(label, format_figure(values[name], kind)) for name, label, kind in SUMMARY_ROWS]
    label_width = max(len(label) for label, _ in lines)
    value_width = max(len(text) for _, text in lines)
    return "\n".join(f"{label:<{label_width}}  {text:>{value_width}}" for label, text in lines)




# ---------------------------------------------------------------------------------------------
# Trades table


def trades_frame(state: State) -> pd.DataFrame:
    """One row per order of every status, sorted by order id (``trade_id``): the trades/orders CSV as a frame.

    Columns are :data:`TRADE_COLUMNS`. ``status`` is the order's status (``filled``, ``rejected``,
    ``cancelled``, ``created`` ...); ``side`` is ``buy`` or ``sell``; quantities are signed (sells
    negative); ``value`` is the absolute filled value for orders with fills and the value asked
    (``value``, or ``quantity * reference_price``) for the others, NaN when unknown;
    ``executed_price`` is the average fill price; ``reject_reason`` holds the words of a rejection
    or cancellation and ``reject_code`` the machine reason of a rejection. ``planned_at`` (created)
    and ``executed_at`` (its last fill, NaT without one) are ``datetime64[us, UTC]``.
    """
    symbols = instrument_labels(state)
    orders = sorted(state.portfolio.all_orders(), key=lambda o: o.id)
    records = [trade_record(order, symbols) for order in orders]
    frame = pd.DataFrame.from_records(records, columns=list(TRADE_COLUMNS))
    for column in ("planned_at", "executed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    numeric = (
        "planned_quantity",
        "executed_quantity",
        "executed_price",
        "value",
        "fee",
        "slippage",
        "realised_pnl",
        "trigger_price",
    )
    for column in numeric:
        frame[column] = frame[column].astype("float64")
    for column in ("trade_id", "position_id"):
        frame[column] = frame[column].astype("int64")
    return frame


def write_trades_csv(state: State, path: str | os.PathLike[str]) -> Path:
    """Write trades_frame(state) as CSV, atomically, so a reader never sees a half-written file.

    Times are ISO 8601 (``2024-01-02T00:00:00+00:00``); missing values are empty cells. The rows
    are formatted by :class:`~tradeexecutor.stats.trades_csv.TradesCsv` (the same bytes as the
    frame's ``to_csv``), which a running executor keeps between publications. Returns the path written.
    """
    from tradeexecutor.stats.trades_csv import TradesCsv  # it builds on this module's trade_record

    return TradesCsv()(state, path)


def instrument_labels(state: State) -> dict[int, tuple[str, str]]:
    """Instrument id → (symbol, quote currency), what the trades table names each order's instrument and fee by."""
    return {instrument.id: (instrument.symbol, instrument.quote_currency) for instrument in state.instruments}


def trade_record(order: Order, symbols: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """The TRADE_COLUMNS values of one order (times as aware datetimes, None where missing); ``symbols`` as
    :func:`instrument_labels` gives them. ``fee`` is the order's fees in its instrument's quote currency
    (``Order.fees``: a fee in the base asset or a third one valued at the fill), ``fee_currency`` names it."""
    symbol, quote = symbols.get(order.instrument_id, ("", ""))
    sign = 1.0 if order.is_buy else -1.0
    if order.fills:
        value: float | None = order.filled_value
    elif order.value is not None:
        value = abs(order.value)
    elif order.quantity and order.reference_price is not None:
        value = order.quantity * order.reference_price
    else:
        value = None
    status = order.status
    return {
        "trade_id": order.id,
        "position_id": order.position_id,
        "symbol": symbol,
        "kind": order.purpose.value,
        "status": status.value,
        "side": order.side.value,
        "planned_at": _utc(order.created_at),
        "executed_at": _utc(order.filled_at),
        "planned_quantity": sign * order.quantity if order.quantity else 0.0,
        "executed_quantity": order.signed_filled_quantity,
        "executed_price": order.average_fill_price,
        "value": value,
        "fee": order.fees,
        "slippage": order.slippage,
        "realised_pnl": order.realised_pnl,
        "trigger": order.trigger.value if order.trigger is not None else None,
        "trigger_price": order.trigger_price,
        "reject_reason": order.status_reason if status in (OrderStatus.rejected, OrderStatus.cancelled) else None,
        "note": order.note,
        "client_order_id": order.client_order_id,
        "reject_code": order.reject_reason.value if order.reject_reason is not None else None,
        "fee_currency": quote or None,
    }


# ---------------------------------------------------------------------------------------------
# Small helpers


def compound_annual_growth(final_equity: float, base: float, years: float) -> float | None:
    """CAGR, or None when it is undefined (no base, no time, negative equity) or beyond a float.

    Float powers raise OverflowError instead of returning inf (a 1e12x gain over a few hours is
    ``1e12 ** 8760``), and a summary must never crash on an extreme but honest equity curve.
    """
    if not (base > 0 and years > 0 and final_equity >= 0):
        return None
    try:
        return _safe((final_equity / base) ** (1.0 / years) - 1.0)
    except OverflowError:
        return None


def _safe(value: float | None) -> float | None:
    """The value as a float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _utc(value: datetime | None) -> datetime | None:
    """A datetime in UTC; naive values are taken as UTC, as the state's codec does."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ms(moment: datetime) -> int:
    """A datetime as epoch milliseconds; naive values are taken as UTC, as the state's codec does."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC text."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat()


def _index_ms(index: pd.Index) -> np.ndarray:
    """Epoch milliseconds (int64) of a DatetimeIndex; a naive index is taken as UTC."""
    stamps: np.ndarray = pd.DatetimeIndex(index).as_unit("ms").asi8
    return stamps
