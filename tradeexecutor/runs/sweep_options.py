"""SweepOptions: how ``tradeexecutor optimize`` sweeps a spec, each option declared once; light to import.

The CLI generates the optimize command's options from these fields when any command starts, so
this module imports nothing heavy (the sweep itself, numpy and the data load, live in
``runs.sweep``). Values are checked here where a field alone decides (choices, at least 1); the
checks that need the spec or the data run in :func:`~tradeexecutor.runs.sweep.plan_sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeexecutor.config import check_settings, setting

__all__ = ["DEFAULT_BEST", "DEFAULT_HOLDOUT", "DEFAULT_TRIALS", "REPORT_MODES", "SEARCHES", "SweepOptions"]

#: How points are chosen: every admissible grid point, or --trials points drawn by Optuna.
SEARCHES = ("grid", "random", "tpe")
#: What ``reports`` may be: full runs for the best N points, for every point, or for none.
REPORT_MODES = ("best", "all", "none")
#: Default N of ``reports="best"``.
DEFAULT_BEST = 5
#: Default --trials of random and TPE search.
DEFAULT_TRIALS = 100
#: Default fraction of the bars kept out of the search.
DEFAULT_HOLDOUT = 0.3


@dataclass(frozen=True)
class SweepOptions:
    """How to sweep a spec: what ``tradeexecutor optimize`` parses; the spec-dependent checks are plan_sweep's."""

    params: tuple[str, ...] = setting(
        flag="--param", env=None, multiple=True, metavar="NAME=VALUES",
        help="Values of one strategy parameter: a range FIRST..LAST:STEP (inclusive), a list a,b,c or one value; "
             "repeat for each parameter swept.")
    constraints: tuple[str, ...] = setting(
        (), flag="--constraint", env=None, multiple=True, metavar="EXPR",
        help="A condition every point must meet, such as 'fast < slow' (parameter names, numbers, + - * / // %, "
             "comparisons, and, or, not); repeatable, added to the spec's optimize.constraints. No search ever "
             "evaluates a point that breaks one.")
    search: str = setting("grid", env=None, choices=SEARCHES,
                          help="grid: every admissible point; random or tpe: --trials points chosen by Optuna (pip "
                               "install \"tradeexecutor[search]\").")
    trials: int | None = setting(None, env=None, kind=int, minimum=1,
                                 help=f"Distinct points a random or TPE search evaluates. Default: {DEFAULT_TRIALS}.")
    seed: int = setting(0, env=None,
                        help="Seed of random and TPE search: the same seed gives the same trials and result.")
    rank_by: str = setting("sharpe", env=None,
                           help="Summary statistic to rank by (sharpe, sortino, total_return, cagr, max_drawdown, "
                                "...); drawdown, volatility, fees and rejections rank lowest first.")
    holdout: float = setting(DEFAULT_HOLDOUT, env=None,
                             help="Last fraction of the bars kept out of the search: points are ranked in-sample and "
                                  "shown out-of-sample beside it. 0 ranks on the whole period.")
    walk_forward: int = setting(1, env=None, minimum=1, metavar="K",
                                help="Split the out-of-sample part into K anchored folds: each picks its best point "
                                     "on all the bars before its test window; their test windows chained are the "
                                     "combined out-of-sample curve.")
    reports: str = setting("best", env=None, choices=REPORT_MODES,
                           help="Which points also become full runs with state, journal and report, and whether "
                                "the sweep keeps its charts' data (drawn on demand: tradeexecutor report "
                                "SWEEP_FOLDER): the --best N (default), all, or none (every point "
                                "always gets its row, figures and fingerprints). A sweep made with none makes them "
                                "later with --resume --reports best, which runs no point again.")
    best: int = setting(DEFAULT_BEST, env=None, minimum=1,
                        help="How many of the best points get full runs with --reports best (the default).")
    processes: int | None = setting(None, env=None, kind=int, minimum=1,
                                    help="Local worker processes. Default: every core.")
    #: A Dask scheduler address: run the points on that cluster instead (``--cluster``, read from
    #: Dask's own DASK_SCHEDULER_ADDRESS, so it is declared by the command).
    cluster: str | None = None
    ref_prefix: str | None = setting(None, env=None,
                                     help="Give the full runs refs PREFIX-001, PREFIX-002, ... (by point).")

    def __post_init__(self) -> None:
        check_settings(self)
