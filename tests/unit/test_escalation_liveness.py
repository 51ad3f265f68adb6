"""Escalation's liveness: a worker loop stuck in an await that never returns (the timer, which decides every
statutory clock, or a consumer) makes /health/live answer 503, so the supervisor restarts the process; a loop
that keeps turning, failing or not, keeps it live. Readiness is unchanged: it reports dependencies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from services.escalation import metrics
from services.escalation.app import create_app, load_deps
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.worker import EscalationWorker
from shared.ops import ops_router
from tests.support.escalation import sqlite_store
from tests.unit.test_escalation_tracking_mark import NOW

STALLED_AFTER_S = 0.3


@pytest.fixture
def settings(tmp_path: Path) -> EscalationSettings:
    return EscalationSettings(
        topic_prefix="t-",
        database_url=f"sqlite:///{tmp_path / 'esc.db'}",
        escalation_tick_s=0.02,
        escalation_stalled_after_s=STALLED_AFTER_S,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from sqlite_store(tmp_path)


def make_worker(settings: EscalationSettings, engine: Engine) -> EscalationWorker:
    return EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(NOW))


async def run_timer_for(worker: EscalationWorker, seconds: float) -> list[str]:
    """Run the worker's timer for ``seconds``, then say which loops are stalled."""
    timer = asyncio.create_task(worker._timer())
    worker._timer_turn = time.monotonic()  # as start() does
    await asyncio.sleep(seconds)
    stalled = worker.stalled(STALLED_AFTER_S)
    worker._stop.set()
    worker._wake.set()
    timer.cancel()
    await asyncio.gather(timer, return_exceptions=True)
    return stalled


async def test_a_timer_that_keeps_turning_is_live_and_says_when_it_completed(
    settings: EscalationSettings, engine: Engine
) -> None:
    worker = make_worker(settings, engine)
    before = time.time()
    assert await run_timer_for(worker, STALLED_AFTER_S * 3) == []
    assert metrics.DUE_CHECK_COMPLETED._value.get() >= before  # type: ignore[attr-defined]


async def test_a_timer_whose_due_check_keeps_failing_is_still_live(
    settings: EscalationSettings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database away fails every due-check: a restart would not bring it back (readiness reports it)."""
    worker = make_worker(settings, engine)

    async def fails() -> int:
        raise ConnectionError("database away")

    monkeypatch.setattr(worker, "run_due_check", fails)
    assert await run_timer_for(worker, STALLED_AFTER_S * 3) == []


async def test_a_timer_stuck_in_its_due_check_is_stalled(
    settings: EscalationSettings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(settings, engine)
    never = asyncio.Event()

    async def hangs() -> int:
        await never.wait()  # e.g. a lock or a connection that never answers
        return 0

    monkeypatch.setattr(worker, "run_due_check", hangs)
    assert await run_timer_for(worker, STALLED_AFTER_S * 3) == ["timer"]


def test_a_consumer_that_stopped_turning_is_stalled(settings: EscalationSettings, engine: Engine) -> None:
    worker = make_worker(settings, engine)
    assert worker.stalled(STALLED_AFTER_S) == []  # not started: nothing to judge
    worker._consumers = [worker._loop]
    worker._timer_turn = time.monotonic()
    worker._loop.last_turn = time.monotonic() - STALLED_AFTER_S * 2
    assert worker.stalled(STALLED_AFTER_S) == ["escalation-consumer"]
    worker._loop.last_turn = time.monotonic()
    assert worker.stalled(STALLED_AFTER_S) == []


def test_health_live_answers_503_naming_the_stalled_loop(
    settings: EscalationSettings, engine: Engine
) -> None:
    app = create_app(settings, engine=engine, time_source=SimulatedTime(NOW), run_worker=False)
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        worker = make_worker(settings, engine)
        worker._timer_turn = time.monotonic() - STALLED_AFTER_S * 2
        app.state.worker = worker
        answer = client.get("/health/live")
        assert answer.status_code == 503
        assert answer.json()["checks"] == {"loops": "not ready: stalled: timer"}
        worker._timer_turn = time.monotonic()
        assert client.get("/health/live").status_code == 200


def test_a_service_without_live_checks_is_live_as_before() -> None:
    app = FastAPI()
    app.include_router(ops_router({}))
    with TestClient(app) as client:
        answer = client.get("/health/live")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
