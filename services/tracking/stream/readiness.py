"""Readiness of the faust worker in this process (``cme-tracking serve``): joined its group, tables recovered.

The API answers from the case store whether or not the worker runs, but a replica is only ready to take its
share of the load once its worker can process: not while it rebalances or replays its table's changelog."""

from __future__ import annotations

from typing import Any

from shared.ops import ReadinessCheck

_worker: Any = None  # the faust.App of this process, once run_worker has built it


def watch(app: Any) -> None:
    global _worker
    _worker = app


def worker_check() -> ReadinessCheck:
    async def check() -> None:
        app = _worker
        if app is None:
            raise RuntimeError("the worker has not started")
        if app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():
            raise RuntimeError("the worker is joining its group or recovering its table")

    return check
