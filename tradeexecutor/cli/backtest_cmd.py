"""``tradeexecutor backtest``: run a strategy over history and write state, trades and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tradeexecutor.cli.common import check_times, env, user_errors, write_json
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import EngineConfig, SettingPath, build_config, split_list
from tradeexecutor.layout import BacktestFiles
from tradeexecutor.settings import DaemonConfig

#: Runs with at least this many bars show a progress bar (when stderr is a terminal).
PROGRESS_THRESHOLD = 100_000


def backtest_settings(item: SettingPath) -> bool:
    """The executor's settings a backtest takes: its data, parameters, cash and fills (no cycle offset)."""
    return item.path in (("feed", "data"), ("feed", "start"), ("feed", "end"), ("params",)) \
        or item.path[:2] == ("engine", "execution") or item.path == ("engine", "initial_cash")


@click.command("backtest")
@click.argument("strategy_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run spec (YAML) naming the strategy file and config, instead of STRATEGY_FILE; "
                   "TRADEEXECUTOR_* variables override its values, options it holds are refused.")
@config_options(DaemonConfig, select=backtest_settings)
@click.option("--trigger-data", multiple=True, envvar=env("TRIGGER_DATA"), show_envvar=True,
              help="Finer candles to check stop-loss and take-profit against (same sources as --data).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar=env("OUTPUT"), show_envvar=True,
              help="Folder for state.json, trades.csv and summary.json. Default: output/<strategy name>.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off.")
@user_errors
def backtest_command(strategy_file: Path | None, spec_file: Path | None, trigger_data: tuple[str, ...],
                     output: Path | None, progress: bool | None, **options: Any) -> None:
    """Backtest STRATEGY_FILE (or --spec RUN_SPEC) on historical candles and print its summary."""
    from tradeexecutor.atomic import atomic_write_bytes
    from tradeexecutor.backtest.session import open_session, run_session
    from tradeexecutor.cli.runs_cmd import spec_for_command
    from tradeexecutor.data.source import load_market
    from tradeexecutor.stats import summary_table, write_trades_csv
    from tradeexecutor.store.codec import dumps_state

    # Everything is validated before anything is written.
    values = config_values(DaemonConfig, options, select=backtest_settings)
    start, end = values.get(("feed", "start")), values.get(("feed", "end"))
    check_times(start, end)
    spec = spec_for_command(spec_file, strategy_file)
    if spec is not None:  # the spec and the TRADEEXECUTOR_* variables decide
        values = {**spec.config_values(), ("params",): spec.strategy}
        start, end, strategy_file = values[("feed", "start")], values[("feed", "end")], spec.strategy_file
    config: EngineConfig = build_config(EngineConfig, {path[1:]: value for path, value in values.items()
                                                       if path[0] == "engine"})
    session = open_session(strategy_file, values[("params",)], values[("feed", "data")], start, end)  # type: ignore[arg-type]
    strategy, market, selection = session.strategy, session.market, session.selection
    assert selection is not None
    trigger_market = None
    if trigger_data:
        trigger_market, _ = load_market(list(split_list(trigger_data)), strategy.instruments, start=start, end=end)

    bar = _progress_bar(len(market), progress)
    try:
        outcome = run_session(session, config, trigger_market=trigger_market,
                              progress=(lambda done: bar.update(done - bar.n)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    result, summary = outcome.backtest, outcome.summary

    files = BacktestFiles(output or Path("output") / strategy.path.stem)
    files.root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(files.state, dumps_state(result.state))
    write_trades_csv(result.state, files.trades)
    write_json(files.summary, {
        "strategy": strategy.describe(),
        "data": {"dataset": selection.dataset, "files": [str(f) for f in selection.files],
                 "start": str(market.step_time(0)), "end": str(market.step_time(len(market) - 1))},
        "config": {"initial_cash": config.initial_cash, "fee": config.execution.fee,
                   "slippage_bps": config.execution.slippage_bps, "fill_timing": config.execution.fill_timing,
                   "min_notional": config.execution.min_notional},
        "run": {"bars": result.bars, "cycles": result.cycles, "seconds": round(result.seconds, 3)},
        "summary": summary.to_dict(),
    })
    click.echo(f"{strategy.name} — {strategy.path.name} ({strategy.version[:12]})")
    click.echo(f"{result.bars} bars, {result.cycles} cycles in {result.seconds:.2f}s "
               f"({result.bars_per_second:,.0f} bars/s)")
    click.echo(summary_table(summary))
    click.echo(f"wrote {files.state}, {files.trades}, {files.summary}")


def _progress_bar(total: int, forced: bool | None):  # type: ignore[no-untyped-def]
    """A tqdm bar on long runs; tqdm hides itself when stderr is not a terminal unless forced."""
    if forced is False or (forced is None and total < PROGRESS_THRESHOLD):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="bar", unit_scale=True, desc="backtest", disable=None if forced is None else False)
