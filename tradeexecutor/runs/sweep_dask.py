"""Sweep points as tasks on an existing Dask cluster (``tradeexecutor optimize --cluster tcp://scheduler:8786``).

Imported only when ``--cluster`` (or ``DASK_SCHEDULER_ADDRESS``) asks for a cluster, so the default
needs no extra.

**The data travels to each worker once, as a worker plugin** (:class:`SweepDataPlugin`): the
scheduler keeps it and hands it to every worker, and to every worker that joins later (a nanny's
replacement for a dead worker included), before that worker runs any task; each point's task then
carries only the sweep's token, the point's index and its values. A scattered future with
``broadcast=True`` was the obvious way and is not one: Dask's active memory manager
(``ReduceReplicas``, on by default) drops the replicas it thinks are not needed, so a worker could
be sent the data again mid-sweep — and a worker that joins later gets no replica at all.

A point whose worker dies is rescheduled by the scheduler on another worker (up to
``distributed.scheduler.allowed-failures`` times, 3 by default) — a point already finished whose
result died with it before it was read too: ``as_completed`` hands it out, Dask marks it ``lost``
meanwhile and computes it again, so it is waited for again — and an exception is retried
(:data:`DASK_RETRIES`); a point that still fails is a ``lost`` row. Every worker must run the
same tradeexecutor version as this process (checked on connecting). The plugin is removed when
the sweep ends, and with it the data from every worker's memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from distributed import WorkerPlugin

from tradeexecutor import __version__
from tradeexecutor.errors import ConfigError, TradeExecutorError
from tradeexecutor.runs.sweep_eval import PointResult, SweepData, evaluate, one_line
from tradeexecutor.runs.sweep_pool import require_distributed

__all__ = ["DASK_RETRIES", "DaskCluster", "SweepDataPlugin", "evaluate_shared"]

#: Times Dask retries a point whose task raised (a point's own failure is a row, not an exception).
DASK_RETRIES = 2
#: Seconds to wait for the scheduler to answer, and for a first worker to join.
CONNECT_SECONDS = 10.0
WORKER_WAIT_SECONDS = 60.0

#: On a worker: sweep token → that sweep's data, installed by its plugin.
_SHARED: dict[str, SweepData] = {}


class SweepDataPlugin(WorkerPlugin):  # type: ignore[misc]  # distributed ships no type information
    """Gives every worker, present and future, one sweep's data; takes it back at the sweep's end."""

    def __init__(self, data: SweepData) -> None:
        self.data = data
        self.token = data.token
        #: Unique per sweep, so two sweeps on one cluster never replace each other's data.
        self.name = plugin_name(data.token)

    def setup(self, worker: Any) -> None:
        _SHARED[self.token] = self.data

    def teardown(self, worker: Any) -> None:
        _SHARED.pop(self.token, None)


def plugin_name(token: str) -> str:
    return f"tradeexecutor-sweep-{token}"


def evaluate_shared(token: str, index: int, values: Mapping[str, Any]) -> PointResult:
    """A point's task on a worker: the sweep's data from its plugin, then :func:`evaluate`."""
    data = _SHARED.get(token)
    if data is None:  # the plugin failed to install here: an exception, so Dask retries it elsewhere
        raise TradeExecutorError(f"this worker has no data for sweep {token} (its plugin did not install)")
    return evaluate(data, index, values)


def _package_version() -> str:
    """Run on each worker: the tradeexecutor version it imports."""
    import tradeexecutor

    return str(tradeexecutor.__version__)


class DaskCluster:
    """Points run as tasks on the workers of an existing Dask cluster."""

    def __init__(self, data: SweepData, address: str) -> None:
        distributed = require_distributed()
        self._distributed = distributed
        try:
            self.client = distributed.Client(address, timeout=f"{CONNECT_SECONDS:g}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"--cluster {address}: cannot reach the Dask scheduler ({one_line(exc)}); "
                              "is it running, and is the address tcp://HOST:PORT?") from None
        self._token = data.token
        self._plugin: str | None = None
        self._pending: dict[str, tuple[Any, int, dict[str, Any]]] = {}
        try:
            self._check_workers(address)
            self._install(data)
        except BaseException:
            self.close()
            raise

    def _check_workers(self, address: str) -> None:
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except TimeoutError:
            raise ConfigError(f"--cluster {address}: no worker joined the scheduler within "
                              f"{WORKER_WAIT_SECONDS:g} s; start workers with: dask worker {address}") from None
        versions = self.client.run(_package_version)
        wrong = {worker: version for worker, version in versions.items() if version != __version__}
        if wrong:
            listed = ", ".join(f"{worker} has {version}" for worker, version in sorted(wrong.items()))
            raise ConfigError(f"--cluster {address}: workers must run tradeexecutor {__version__} like this process "
                              f"({listed}); install the same version everywhere")
        count = len(versions)
        self.description = f"Dask cluster {address} ({count} worker{'s' if count != 1 else ''})"

    def _install(self, data: SweepData) -> None:
        """Send the data to every worker; returns once each has it (a worker's failure raises here)."""
        plugin = SweepDataPlugin(data)
        self._plugin = plugin.name  # before sending: close() takes back whatever part arrived
        self.client.register_plugin(plugin)

    def submit(self, index: int, values: Mapping[str, Any]) -> None:
        point = dict(values)
        key = f"tradeexecutor-point-{self._token}-{index}"
        future = self.client.submit(evaluate_shared, self._token, index, point, key=key, pure=False,
                                    retries=DASK_RETRIES)
        self._pending[key] = (future, index, point)

    def results(self) -> Iterator[PointResult]:
        if not self._pending:
            return
        pending = [future for future, _, _ in self._pending.values()]
        completed = self._distributed.as_completed(pending, loop=self.client.loop)
        for future in completed:
            if future.status == "lost":  # finished, then its worker died before it was read: computed again
                completed.add(future)
                continue
            _, index, values = self._pending.pop(future.key)
            if future.status == "finished":
                row: PointResult = future.result()
            else:
                try:
                    reason = one_line(future.exception())
                except BaseException as exc:  # noqa: BLE001 - a cancelled future raises instead of answering
                    reason = one_line(exc)
                row = PointResult(index, values, "lost", None, error=f"failed on the cluster: {reason}")
            future.release()
            yield row

    def close(self) -> None:
        """Cancel what has not run, take the data back from every worker, disconnect."""
        pending = [future for future, _, _ in self._pending.values()]
        self._pending.clear()
        try:
            if pending:
                self.client.cancel(pending)
            if self._plugin is not None:
                try:
                    self.client.unregister_worker_plugin(self._plugin)
                except ValueError:  # the scheduler never got it (registering failed on the way): nothing to take back
                    pass
        finally:
            self.client.close()
