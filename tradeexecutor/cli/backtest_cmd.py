"""``tradeexecutor backtest``: run a strategy over history and write state, trades and a summary."""

from __future__ import annotations

from pathlib import Path

import click

from tradeexecutor.cli.common import check_times, env, parse_overrides, split_sources, user_errors, write_json
from tradeexecutor.config import FILL_TIMINGS, EngineConfig, ExecutionConfig

#: Runs with at least this many bars show a progress bar (when stderr is a terminal).
PROGRESS_THRESHOLD = 100_000


@click.command("backtest")
@click.argument("strategy_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run spec (YAML) naming the strategy file and config, instead of STRATEGY_FILE; "
                   "TRADEEXECUTOR_* variables override its values, options it holds are refused.")
@click.option("--data", "data", multiple=True, envvar=env("DATA"), show_envvar=True,
              help="Bundled dataset (stocks-daily, eurusd-hourly) or candle files (CSV, CSV.gz, Parquet); "
                   "repeat or comma-separate. Default: the bundled dataset holding the strategy's symbols.")
@click.option("--start", envvar=env("START"), show_envvar=True, help="First bar to use (ISO date or time, UTC).")
@click.option("--end", envvar=env("END"), show_envvar=True, help="Last bar close to use (ISO date or time, UTC).")
@click.option("-p", "--param", "params", multiple=True, envvar=env("PARAMS"), show_envvar=True,
              help="Override a strategy parameter: -p fast=5 -p slow=20.")
@click.option("--cash", type=float, default=10_000.0, show_default=True, envvar=env("CASH"), show_envvar=True,
              help="Starting cash.")
@click.option("--fee", type=float, default=0.0, show_default=True, envvar=env("FEE"), show_envvar=True,
              help="Fee per fill as a fraction of traded value (0.002 = 0.2 %).")
@click.option("--slippage-bps", type=float, default=0.0, show_default=True, envvar=env("SLIPPAGE_BPS"),
              show_envvar=True, help="Adverse price move per fill in basis points.")
@click.option("--fill-timing", type=click.Choice(FILL_TIMINGS), default="next_open", show_default=True,
              envvar=env("FILL_TIMING"), show_envvar=True,
              help="next_open: decisions after bar T closes fill at bar T+1's open; close: at bar T's close.")
@click.option("--min-notional", type=float, default=0.0, show_default=True, envvar=env("MIN_NOTIONAL"),
              show_envvar=True, help="Reject orders worth less than this.")
@click.option("--trigger-data", multiple=True, envvar=env("TRIGGER_DATA"), show_envvar=True,
              help="Finer candles to check stop-loss and take-profit against (same sources as --data).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar=env("OUTPUT"), show_envvar=True,
              help="Folder for state.json, trades.csv and summary.json. Default: output/<strategy name>.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@user_errors
def backtest_command(strategy_file: Path | None, spec_file: Path | None, data: tuple[str, ...], start: str | None,
                     end: str | None,
                     params: tuple[str, ...], cash: float, fee: float, slippage_bps: float, fill_timing: str,
                     min_notional: float, trigger_data: tuple[str, ...], output: Path | None,
                     progress: bool | None) -> None:
    """Backtest STRATEGY_FILE (or --spec RUN_SPEC) on historical candles and print its summary."""
    from tradeexecutor.backtest import run_backtest
    from tradeexecutor.data.source import load_market
    from tradeexecutor.stats import compute_summary, summary_table, write_trades_csv
    from tradeexecutor.store.atomic import atomic_write_bytes
    from tradeexecutor.store.codec import dumps_state
    from tradeexecutor.strategy.loader import check_universe, load_strategy

    from tradeexecutor.cli.runs_cmd import spec_for_command

    # Everything is validated before anything is written.
    check_times(start, end)
    spec = spec_for_command(spec_file, strategy_file)
    if spec is not None:  # the spec and the TRADEEXECUTOR_* variables decide
        data, start, end = spec.environment.data, spec.environment.start, spec.environment.end
        cash, fee, slippage_bps = spec.core.cash, spec.core.fee, spec.core.slippage_bps
        fill_timing, min_notional = spec.core.fill_timing, spec.core.min_notional
    strategy = (spec.load_strategy() if spec is not None
                else load_strategy(strategy_file, parse_overrides(params)))  # type: ignore[arg-type]
    config = spec.engine_config() if spec is not None else EngineConfig(
        execution=ExecutionConfig(fee=fee, slippage_bps=slippage_bps, fill_timing=fill_timing,
                                  min_notional=min_notional),
        initial_cash=cash,
    )
    market, selection = load_market(split_sources(data), strategy.instruments,
                                    bar_frequency=strategy.bar_frequency, start=start, end=end)
    check_universe(strategy, selection.available)
    trigger_market = None
    if trigger_data:
        trigger_market, _ = load_market(split_sources(trigger_data), strategy.instruments, start=start, end=end)

    bar = _progress_bar(len(market), progress)
    try:
        result = run_backtest(strategy, market, config, trigger_market=trigger_market,
                              progress=(lambda done: bar.update(done - bar.n)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()

    prices = {symbol: market.close_series(symbol) for symbol in market.symbols}
    summary = compute_summary(result.state, benchmark_prices=prices)
    folder = output or Path("output") / strategy.path.stem
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "state.json", dumps_state(result.state))
    write_trades_csv(result.state, folder / "trades.csv")
    write_json(folder / "summary.json", {
        "strategy": strategy.describe(),
        "data": {"dataset": selection.dataset, "files": [str(f) for f in selection.files],
                 "start": str(market.step_time(0)), "end": str(market.step_time(len(market) - 1))},
        "config": {"initial_cash": cash, "fee": fee, "slippage_bps": slippage_bps, "fill_timing": fill_timing,
                   "min_notional": min_notional},
        "run": {"bars": result.bars, "cycles": result.cycles, "seconds": round(result.seconds, 3)},
        "summary": summary.to_dict(),
    })
    click.echo(f"{strategy.name} — {strategy.path.name} ({strategy.version[:12]})")
    click.echo(f"{result.bars} bars, {result.cycles} cycles in {result.seconds:.2f}s "
               f"({result.bars_per_second:,.0f} bars/s)")
    click.echo(summary_table(summary))
    click.echo(f"wrote {folder / 'state.json'}, {folder / 'trades.csv'}, {folder / 'summary.json'}")


def _progress_bar(total: int, forced: bool | None):  # type: ignore[no-untyped-def]
    """A tqdm bar on long runs; tqdm hides itself when stderr is not a terminal unless forced."""
    if forced is False or (forced is None and total < PROGRESS_THRESHOLD):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="bar", unit_scale=True, desc="backtest", disable=None if forced is None else False)
