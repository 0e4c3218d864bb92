"""Which points a sweep evaluates: every grid point, or Optuna's random or TPE trials — all under the same constraints.

A search hands out points in batches and is told each point's objective (the ranking statistic
over the in-sample window) before it hands out the next batch:

- :class:`GridSearch`: one batch, every grid point that satisfies the constraints;
- :class:`OptunaSearch`: ``--search random`` (Optuna's ``RandomSampler``) or ``--search tpe``
  (``TPESampler``, multivariate), over the same axes as the grid: integer ranges as integers,
  decimal ranges by position (so every value tried is one the grid would try), lists as
  categories. Batches have a fixed size (:data:`BATCH`), asked in order and told in order after
  the batch completes, so **the same seed gives the same trials and the same result** however
  many processes or workers evaluate them, and a resumed sweep replays the same trials.

Constraints: a trial whose values break one is told ``PRUNED`` and never evaluated, and another
is asked instead. A trial that repeats an evaluated point is answered from what is known and
does not count. ``--trials N`` is the number of distinct points evaluated; it is capped at the
number of admissible points when the space is small enough to count, and a sampler that keeps
proposing nothing new (:data:`MAX_IDLE_ASKS` times in a row) ends the search early with a note.

Optuna is imported only here, only when a random or TPE search starts; without it the error says
which extra to install.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.constraints import Constraint, first_broken
from tradeexecutor.runs.optimize import Axis, grid_size, iter_grid
from tradeexecutor.runs.sweep_eval import canonical_values
from tradeexecutor.runs.sweep_options import SEARCHES

__all__ = ["BATCH", "SEARCHES", "GridSearch", "OptunaSearch", "Search", "require_optuna"]

#: Points handed out per batch by random and TPE search (fixed, so results do not depend on the worker count).
BATCH = 16
#: Asks in a row that bring no new admissible point before a random or TPE search gives up.
MAX_IDLE_ASKS = 2_000
#: Spaces up to this many points are counted, to cap --trials at the admissible points.
COUNTABLE_SPACE = 200_000

INSTALL_HINT = 'pip install "tradeexecutor[search]"'


class Search(Protocol):
    """Hands out batches of points and learns each one's objective."""

    #: How many points it means to evaluate (for the progress bar).
    total: int
    #: Why it stopped early, when it did.
    note: str

    def batches(self) -> Iterator[list[dict[str, Any]]]: ...

    def tell(self, values: Mapping[str, Any], objective: float | None) -> None: ...


class GridSearch:
    """Every admissible grid point, in one batch."""

    def __init__(self, points: Sequence[Mapping[str, Any]]) -> None:
        self.points = [dict(point) for point in points]
        self.total = len(self.points)
        self.note = ""

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        yield list(self.points)

    def tell(self, values: Mapping[str, Any], objective: float | None) -> None:
        """A grid does not learn."""


def require_optuna(search: str) -> Any:
    """The optuna module; ConfigError naming the extra when it is not installed."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"--search {search} needs Optuna, which is not installed: {INSTALL_HINT}") from None
    return optuna


class OptunaSearch:
    """Random or TPE search over the axes with Optuna's ask-and-tell interface (module docstring)."""

    def __init__(self, kind: str, axes: Sequence[Axis], constraints: Sequence[Constraint], base: Mapping[str, Any], *,
                 trials: int, seed: int, higher_is_better: bool) -> None:
        if kind not in ("random", "tpe"):
            raise ConfigError(f"--search {kind!r}: use one of {', '.join(SEARCHES)}")
        if trials < 1:
            raise ConfigError(f"--trials {trials}: give at least 1")
        self.optuna = require_optuna(kind)
        self.kind = kind
        self.axes = list(axes)
        self.constraints = tuple(constraints)
        self.base = dict(base)
        self.seed = seed
        self.higher_is_better = higher_is_better
        self.note = ""
        self.total = trials
        admissible = self._admissible()
        if admissible == 0:
            raise ConfigError(f"no point of the space satisfies the constraints "
                              f"({'; '.join(c.text for c in self.constraints)}); widen the --param values")
        if admissible is not None and admissible < trials:
            self.total = admissible
            self.note = f"--trials {trials} capped at the {admissible} admissible points of the space"
        self._objectives: dict[str, float | None] = {}

    def _admissible(self) -> int | None:
        """How many points of the space satisfy the constraints, when it is small enough to count."""
        if grid_size(self.axes) > COUNTABLE_SPACE:
            return None
        return sum(1 for point in iter_grid(self.axes) if first_broken(self.constraints, {**self.base, **point}) is None)

    def _study(self) -> Any:
        optuna = self.optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate TPE is flagged experimental
            if self.kind == "random":
                sampler = optuna.samplers.RandomSampler(seed=self.seed)
            else:
                sampler = optuna.samplers.TPESampler(seed=self.seed, multivariate=True, constant_liar=True)
        return optuna.create_study(direction="maximize" if self.higher_is_better else "minimize", sampler=sampler)

    def _distributions(self) -> dict[str, Any]:
        distributions = self.optuna.distributions
        result: dict[str, Any] = {}
        for axis in self.axes:
            if axis.kind == "int":
                result[axis.name] = distributions.IntDistribution(int(axis.values[0]), int(axis.values[-1]),
                                                                  step=axis.step)
            elif axis.kind == "index":
                result[axis.name] = distributions.IntDistribution(0, len(axis.values) - 1)
            else:
                result[axis.name] = distributions.CategoricalDistribution(list(axis.values))
        return result

    def _decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for axis in self.axes:
            raw = params[axis.name]
            values[axis.name] = axis.values[int(raw)] if axis.kind == "index" else raw
        return values

    def tell(self, values: Mapping[str, Any], objective: float | None) -> None:
        self._objectives[canonical_values(values)] = objective

    def _finish(self, study: Any, trial: Any, objective: float | None) -> None:
        if objective is None:
            study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, objective)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        study = self._study()
        distributions = self._distributions()
        pruned = self.optuna.trial.TrialState.PRUNED
        evaluated = 0
        idle = 0
        while evaluated < self.total:
            batch: list[tuple[Any, dict[str, Any]]] = []
            keys: set[str] = set()
            while len(batch) < BATCH and evaluated + len(batch) < self.total:
                if idle >= MAX_IDLE_ASKS:
                    break
                trial = study.ask(distributions)
                values = self._decode(trial.params)
                key = canonical_values(values)
                if first_broken(self.constraints, {**self.base, **values}) is not None:
                    study.tell(trial, state=pruned)  # never evaluated
                    idle += 1
                elif key in self._objectives:
                    self._finish(study, trial, self._objectives[key])  # known: tell it again, do not count it
                    idle += 1
                elif key in keys:
                    study.tell(trial, state=pruned)  # already in this batch
                    idle += 1
                else:
                    idle = 0
                    keys.add(key)
                    batch.append((trial, values))
            if not batch:
                self.note = (f"the {self.kind} sampler proposed no new admissible point in {MAX_IDLE_ASKS} tries; "
                             f"stopped after {evaluated} of {self.total} trials")
                return
            yield [values for _, values in batch]
            for trial, values in batch:  # told in ask order, whatever order the results came in
                self._finish(study, trial, self._objectives.get(canonical_values(values)))
            evaluated += len(batch)
