"""Runs: a run spec becomes a run folder (pinned strategy, metadata, state, journal) plus its artifacts, metrics and reports.

Modules, one job each:

``spec``
    the YAML run spec, validated once into a frozen :class:`~tradeexecutor.runs.spec.RunSpec`.
``registry``
    the SQLite registry of a runs folder: ids, unique refs, statuses (WAL, ``BEGIN IMMEDIATE``).
``run``
    run folders: create, pin, fingerprint, edit, copy, reset, and the lifecycle record.
``executor``
    a backtest run executed in this process.
``runner``
    start and stop runs; a replay or paper run is a detached, supervised ``tradeexecutor start --spec``.

The metrics, reports, optimisation and readiness checks built on these live beside them.

Nothing is imported here, so ``tradeexecutor runs ls`` stays quick.
"""
