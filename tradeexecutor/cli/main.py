"""Entry point of the ``tradeexecutor`` command; every option also reads an environment variable."""

from __future__ import annotations

from tradeexecutor.cli.early import hold_stop_signals, settle_heap

hold_stop_signals()  # `start` only: SIGTERM is a graceful stop even while the commands load (cli/early.py)
settle_heap()  # `start` only: one malloc arena, set before pyarrow's import starts threads that take one (cli/early.py)

import click

from tradeexecutor.cli.backtest_cmd import backtest_command
from tradeexecutor.cli.check_cmd import check_command
from tradeexecutor.cli.client_cmd import logs_command, status_command
from tradeexecutor.cli.control_cmd import control_command
from tradeexecutor.cli.drill_cmd import drill_command
from tradeexecutor.cli.exchange_sim_cmd import exchange_sim_command
from tradeexecutor.cli.metrics_cmd import metrics_group, report_command
from tradeexecutor.cli.optimize_cmd import optimize_command
from tradeexecutor.cli.reconcile_cmd import reconcile_command
from tradeexecutor.cli.runs_cmd import runs_command
from tradeexecutor.cli.start_cmd import start_command
from tradeexecutor.cli.state_cmd import state_group
from tradeexecutor.cli.wallboard_cmd import wallboard_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tradeexecutor", prog_name="tradeexecutor")  # looked up only for --version
def cli() -> None:
    """tradeexecutor: run one trading strategy unattended, or backtest it on history."""


cli.add_command(backtest_command)
cli.add_command(start_command)
cli.add_command(status_command)
cli.add_command(logs_command)
cli.add_command(control_command)
cli.add_command(metrics_group)
cli.add_command(report_command)
cli.add_command(check_command)
cli.add_command(runs_command)
cli.add_command(optimize_command)
cli.add_command(exchange_sim_command)
cli.add_command(wallboard_command)
cli.add_command(state_group)
cli.add_command(reconcile_command)
cli.add_command(drill_command)


def main() -> None:
    """Console script entry point."""
    cli(prog_name="tradeexecutor")


if __name__ == "__main__":
    main()
