"""Tests for tradeexecutor.visual: every chart variant renders, decodes to the right size and theme."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from state_builders import make_order
from tradeexecutor.state import Position, State
from tradeexecutor.visual import FORMATS, SIZES, THEMES, render_all, render_charts
from tradeexecutor.visual.charts import MAX_POINTS, _downsample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_PIXELS = {"small": (300, 600), "large": (800, 1200)}  # (height, width)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def traded_state(days: int = 60, symbols: tuple[str, ...] = ("GOOG", "MSFT")) -> tuple[State, dict[str, pd.Series]]:
    """A state with daily valuations and a buy and a sell fill per symbol, plus its close prices."""
    state = State(name="chart test", initial_cash=10_000.0)
    index = pd.date_range(T0, periods=days, freq="D", tz="UTC")
    rng = np.random.default_rng(7)
    equity = 10_000 * np.cumprod(1 + rng.normal(0, 0.01, days))
    state.valuations.extend(list(index.as_unit("ms").asi8), equity.tolist(), equity.tolist(), [0.5] * days)
    prices: dict[str, pd.Series] = {}
    trade_id = 1
    for k, symbol in enumerate(symbols):
        instrument = state.add_instrument(symbol, "equity", 1.0)
        closes = pd.Series(100 * (k + 1) * np.cumprod(1 + rng.normal(0, 0.01, days)), index=index)
        prices[symbol] = closes
        position = Position(id=k + 1, instrument_id=instrument.id, opened_at=T0)
        for day, quantity in ((5, 3.0), (40, -3.0)):
            at = T0 + timedelta(days=day)
            position.orders.append(make_order(
                trade_id, position.id, instrument.id, "open" if quantity > 0 else "close", at,
                quantity=abs(quantity), fill_price=float(closes.iloc[day]),
            ))
            trade_id += 1
        state.portfolio.closed_positions.append(position)
    return state, prices


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes to an (h, w, channels) float array."""
    assert data.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(data), format="png")


def check_image(data: bytes, size: str, fmt: str) -> None:
    """PNG decodes to about the expected pixel size; SVG parses as XML with an svg root."""
    if fmt == "png":
        pixels = decode_png(data)
        height, width = EXPECTED_PIXELS[size]
        assert abs(pixels.shape[0] - height) <= 5 and abs(pixels.shape[1] - width) <= 5, pixels.shape
    else:
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")


def luminance(pixel: np.ndarray) -> float:
    """Mean of the RGB channels, 0 (black) to 1 (white)."""
    return float(np.mean(pixel[:3]))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("theme", list(THEMES))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_combination_renders(size: str, theme: str, fmt: str) -> None:
    state, prices = traded_state()
    check_image(render_charts(state, prices, size=size, theme=theme, fmt=fmt), size, fmt)


def test_render_all_returns_eight_charts() -> None:
    state, prices = traded_state(symbols=("A", "B", "C", "D", "E"))  # only 4 panels are drawn
    charts = render_all(state, prices)
    assert set(charts) == {(s, t, f) for s in SIZES for t in THEMES for f in FORMATS}
    assert len(charts) == 8
    for (size, _theme, fmt), data in charts.items():
        check_image(data, size, fmt)


def test_dark_background_is_dark_and_light_is_light() -> None:
    state, prices = traded_state()
    for size in SIZES:
        dark = decode_png(render_charts(state, prices, size=size, theme="dark"))
        light = decode_png(render_charts(state, prices, size=size, theme="light"))
        assert luminance(dark[0, 0]) < 0.2
        assert luminance(dark[-1, -1]) < 0.2
        assert luminance(light[0, 0]) > 0.9


def test_empty_state_renders_no_data_chart() -> None:
    charts = render_all(State(), {})
    for (size, _theme, fmt), data in charts.items():
        check_image(data, size, fmt)
    # matplotlib's SVG draws text as glyph paths and keeps the string in a comment
    assert b"no data yet" in charts[("small", "light", "svg")]
    dark = decode_png(charts[("large", "dark", "png")])
    assert luminance(dark[0, 0]) < 0.2


def test_traded_symbol_without_prices_still_renders() -> None:
    state, prices = traded_state()
    del prices["MSFT"]
    check_image(render_charts(state, prices), "large", "png")


@pytest.mark.parametrize(
    ("options", "allowed"),
    [
        ({"size": "huge"}, "small, large"),
        ({"theme": "blue"}, "light, dark"),
        ({"fmt": "jpg"}, "png, svg"),
    ],
)
def test_invalid_options_name_allowed_values(options: dict[str, str], allowed: str) -> None:
    state, prices = traded_state()
    with pytest.raises(ValueError, match=allowed):
        render_charts(state, prices, **options)


def test_downsample_keeps_extremes_and_bounds_points() -> None:
    n = 1_000_003
    x = np.arange(n, dtype=np.int64)
    y = np.sin(np.arange(n) / 1000.0)
    y[123_456] = 50.0
    y[654_321] = -50.0
    xs, ys = _downsample(x, y, MAX_POINTS)
    assert len(xs) <= MAX_POINTS
    assert xs[0] == 0 and xs[-1] == n - 1
    assert ys.max() == 50.0 and ys.min() == -50.0
    assert np.all(np.diff(xs) > 0)


def test_rendering_from_threads() -> None:
    state, prices = traded_state()
    results: list[bytes] = []
    errors: list[Exception] = []

    def work(theme: str) -> None:
        try:
            results.append(render_charts(state, prices, size="small", theme=theme))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(theme,)) for theme in ("light", "dark") * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for data in results:
        check_image(data, "small", "png")


def test_no_pyplot() -> None:
    code = (
        "import sys, tradeexecutor.visual; "
        "from tradeexecutor.state import State; "
        "tradeexecutor.visual.render_all(State(), {}); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_render_formats_draws_once_and_matches_single_renders() -> None:
    from tradeexecutor.visual import render_formats

    state, prices = traded_state()
    images = render_formats(state, prices, size="large", theme="dark", formats=("png", "svg"))
    check_image(images["png"], "large", "png")
    check_image(images["svg"], "large", "svg")
    # The same drawing as a single-format render (element ids differ between figures, the drawing does not).
    single = render_charts(state, prices, size="large", theme="dark", fmt="svg")
    for element in (b"<path", b"<use", b"<text", b"<g "):
        assert images["svg"].count(element) == single.count(element), element


@pytest.mark.parametrize("days", [2, 45, 100, 400, 1000, 1500, 1600, 2000, 3650])
def test_date_axis_picks_ticks_for_any_span_without_warnings(days: int) -> None:
    """Spans of 4-5 years (common backtests) used to make AutoDateLocator warn and fall back to a default."""
    import warnings

    state, prices = traded_state(days=days, symbols=("GOOG",) if days > 40 else ())  # fills fall on days 5 and 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = render_charts(state, prices, size="large", theme="light", fmt="png")
    check_image(images, "large", "png")
