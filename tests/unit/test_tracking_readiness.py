"""A tracking replica is ready only once its worker has joined its group and recovered its table; the API's
probe, on its own thread and loop, never touches the faust app."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.tracking.settings import TrackingSettings
from services.tracking.stream import readiness
from services.tracking.stream.app import create_faust_app


class _Event:
    def __init__(self, done: bool) -> None:
        self.done = done

    def is_set(self) -> bool:
        return self.done


def _app(rebalancing: bool = False, in_recovery: bool = False, recovered: bool = True) -> Any:
    recovery = SimpleNamespace(completed=_Event(recovered))
    return SimpleNamespace(
        rebalancing=rebalancing, in_recovery=in_recovery, tables=SimpleNamespace(recovery=recovery)
    )


def _probe(check: readiness.ReadinessCheck) -> str:
    """Run the probe as the API does: on another thread with its own running event loop."""
    outcome: list[str] = []

    async def probe() -> None:
        await check()

    def run() -> None:
        try:
            asyncio.run(probe())
            outcome.append("ready")
        except RuntimeError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.mark.parametrize(
    ("app", "ready"),
    [
        (_app(recovered=False), False),
        (_app(rebalancing=True), False),
        (_app(in_recovery=True), False),
        (_app(), True),
    ],
)
def test_the_worker_assesses_its_own_state(app: Any, ready: bool) -> None:
    assert readiness.assess(app)[0] is ready


@pytest.fixture(autouse=True)
def _no_snapshot() -> Any:
    readiness.reset()
    yield
    readiness.reset()


def test_not_ready_until_the_worker_reports() -> None:
    assert _probe(readiness.worker_check()) == "the worker has not started"


def test_ready_follows_the_workers_last_report() -> None:
    readiness.report(False, "the worker is joining its group or recovering its table")
    assert _probe(readiness.worker_check()) == "the worker is joining its group or recovering its table"
    readiness.report(True)
    assert _probe(readiness.worker_check()) == "ready"


def test_a_silent_worker_is_not_ready() -> None:
    readiness.report(True)
    assert _probe(readiness.worker_check(stale_after_s=-1)).startswith("the worker has not reported")


def test_probing_before_the_worker_runs_binds_nothing_to_the_api_loop(tmp_path: Path) -> None:
    """The crash of issue 20: a probe at the first millisecond, from the API thread, made faust's table
    manager take the API thread's loop; the worker then failed with "Future attached to a different loop"."""
    settings = TrackingSettings(tracking_store="memory", data_dir=tmp_path, database_url="sqlite://")
    app = create_faust_app(settings, prepare=False)
    readiness.watch(app)

    assert _probe(readiness.worker_check()) == "the worker has not started"

    # Nothing of faust's got a loop from the probe: the worker's own loop is the first one they will see.
    tables: Any = app.tables
    assert tables._loop is None
    assert tables._recovery is None
    assert app._loop is None
