"""Readiness of the faust worker in this process (``cme-tracking serve``): joined its group, tables recovered.

The API answers from the case store whether or not the worker runs, but a replica is only ready to take its
share of the load once its worker can process: not while it rebalances or replays its table's changelog.

The API runs on its own thread and event loop, so it must never touch the faust app: faust's services bind to
the event loop of whichever thread first asks for their ``loop``. An API readiness probe that read
``app.tables.recovery`` before the worker did created the table manager's recovery service on the API's loop,
and the worker then crashed at start ("Future attached to a different loop" in
``TableManager.wait_until_tables_registered``). Instead the worker reports its own state from its own loop,
and the API reads that plain snapshot."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

from shared.ops import NotReady, ReadinessCheck

REPORT_INTERVAL_S = 0.25
# A snapshot older than this means the worker's loop is blocked or the worker has stopped.
STALE_AFTER_S = 10.0


@dataclass(frozen=True)
class WorkerState:
    ready: bool
    reason: str
    reported_at: float  # time.monotonic() of the worker's last report


_lock = threading.Lock()
_state: WorkerState | None = None


def report(ready: bool, reason: str = "") -> None:
    """Called on the worker's loop: the only writer of the snapshot."""
    global _state
    with _lock:
        _state = WorkerState(ready=ready, reason=reason, reported_at=time.monotonic())


def reset() -> None:
    global _state
    with _lock:
        _state = None


def current() -> WorkerState | None:
    with _lock:
        return _state


def assess(app: Any) -> tuple[bool, str]:
    """The worker's own view of whether it can process (run on the worker's loop only)."""
    if app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():
        return False, "the worker is joining its group or recovering its table"
    return True, ""


def watch(app: Any) -> None:
    """Make the worker report its readiness from its own loop. faust starts app tasks after the first
    recovery, so until then the snapshot stays "not started"; then it keeps reporting through rebalances."""
    reset()

    async def report_readiness() -> None:
        while not app.should_stop:
            report(*assess(app))
            await asyncio.sleep(REPORT_INTERVAL_S)

    app.task(report_readiness)


def worker_check(stale_after_s: float = STALE_AFTER_S) -> ReadinessCheck:
    async def check() -> None:
        state = current()
        if state is None:
            raise NotReady("the worker has not started")
        if time.monotonic() - state.reported_at > stale_after_s:
            raise NotReady(f"the worker has not reported for over {stale_after_s:.0f} s")
        if not state.ready:
            raise NotReady(state.reason)

    return check
