"""Liveness of the services' background loops: a loop stuck in an await that never returns (escalation's
timer, which decides every statutory clock; notify's dispatcher, which sends every alert; an outbox relay; a
consumer) makes /health/live answer 503 naming it, so the supervisor restarts the process. A loop that keeps
turning, failing or not, keeps it live: a dependency away is readiness's to report, and a restart would not
bring it back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from services.escalation import metrics
from services.escalation.app import create_app, load_deps
from services.escalation.models import EscalationOutbox
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.worker import EscalationWorker
from services.notify.dispatcher import Dispatcher
from services.notify.settings import NotifySettings
from services.referral.app import create_app as referral_app
from services.web import worker as web_worker
from services.web.settings import WebSettings
from shared.ops import NotReady, loops_turning, ops_router, stalled
from shared.outbox import OutboxRelay
from shared.settings import Settings
from tests.support.escalation import sqlite_store
from tests.unit.test_escalation_tracking_mark import NOW

STALLED_AFTER_S = 0.3


@pytest.fixture
def settings(tmp_path: Path) -> EscalationSettings:
    return EscalationSettings(
        topic_prefix="t-",
        database_url=f"sqlite:///{tmp_path / 'esc.db'}",
        escalation_tick_s=0.02,
        loop_stalled_after_s=STALLED_AFTER_S,
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
    stalled_now = stalled(worker.turns(), STALLED_AFTER_S)
    worker._stop.set()
    worker._wake.set()
    timer.cancel()
    await asyncio.gather(timer, return_exceptions=True)
    return stalled_now


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
    assert stalled(worker.turns(), STALLED_AFTER_S) == []  # not started: nothing to judge
    worker._consumers = [worker._loop]
    worker._timer_turn = time.monotonic()
    worker._loop.last_turn = time.monotonic() - STALLED_AFTER_S * 2
    assert stalled(worker.turns(), STALLED_AFTER_S) == ["escalation-consumer"]
    worker._loop.last_turn = time.monotonic()
    assert stalled(worker.turns(), STALLED_AFTER_S) == []


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


class IdleProducer:
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def run_relay_for(relay: OutboxRelay, seconds: float) -> list[str]:
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(seconds)
    stalled_now = stalled({"outbox-relay": relay.last_turn}, STALLED_AFTER_S)
    stop.set()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    return stalled_now


async def test_an_idle_relay_keeps_turning_and_one_stuck_reading_its_outbox_is_stalled(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = OutboxRelay(engine, EscalationOutbox, IdleProducer, idle_s=0.05)
    assert await run_relay_for(relay, STALLED_AFTER_S * 3) == []  # nothing to publish: it still turns
    relay = OutboxRelay(engine, EscalationOutbox, IdleProducer, idle_s=0.05)
    monkeypatch.setattr(relay, "_load", lambda: threading.Event().wait(STALLED_AFTER_S * 10) and [])
    assert await run_relay_for(relay, STALLED_AFTER_S * 3) == ["outbox-relay"]


async def test_a_dispatcher_stuck_sending_is_stalled(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = NotifySettings(database_url=f"sqlite:///{tmp_path / 'notify.db'}", notify_poll_interval_s=0.02)
    dispatcher = Dispatcher(notify, engine, {}, "dead-letters")
    never = asyncio.Event()

    async def nothing_due() -> int:
        return 0

    async def hangs() -> int:
        await never.wait()  # e.g. a channel that never answers
        return 0

    monkeypatch.setattr(dispatcher, "run_once", nothing_due)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await asyncio.sleep(STALLED_AFTER_S * 2)
    assert stalled({"dispatcher": dispatcher.last_turn}, STALLED_AFTER_S) == []  # idle, turning
    monkeypatch.setattr(dispatcher, "run_once", hangs)
    dispatcher.wake.set()
    await asyncio.sleep(STALLED_AFTER_S * 3)
    assert stalled({"dispatcher": dispatcher.last_turn}, STALLED_AFTER_S) == ["dispatcher"]
    stop.set()
    never.set()
    await asyncio.wait_for(running, 5)


def test_referral_is_not_live_while_its_relay_is_stuck(tmp_path: Path) -> None:
    """Accepted events wait in the outbox until the relay publishes them: a stuck relay holds them all."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'referral.db'}", loop_stalled_after_s=60)
    app = referral_app(settings, background=False)
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        app.state.referral.relay.last_turn = time.monotonic() - 120
        answer = client.get("/health/live")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"loops": "not ready: stalled: outbox-relay"}


async def test_a_loop_set_to_wait_longer_than_the_limit_is_not_taken_for_stuck() -> None:
    """An operator's interval above CME_LOOP_STALLED_AFTER_S (an allocation every 10 minutes) must not
    restart the process between two turns: the limit is at least three of the longest waits."""
    turned = {"allocator": time.monotonic() - 400}
    await loops_turning(lambda: turned, after_s=300, longest_wait_s=600)()
    with pytest.raises(NotReady, match="stalled: allocator"):
        await loops_turning(lambda: turned, after_s=300, longest_wait_s=60)()


async def test_an_allocation_round_over_many_las_is_moving_not_stuck(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A national web allocates LA after LA in one round: a round longer than the limit is still moving."""
    monkeypatch.setattr(web_worker, "las_to_allocate", lambda *_: ["801", "802", "803", "804", "805"])

    async def slow_la(*_: object) -> dict[str, int]:
        await asyncio.sleep(STALLED_AFTER_S * 0.6)
        return {}

    monkeypatch.setattr(web_worker, "allocate_la", slow_la)
    turns: dict[str, float | None] = {}
    stop = asyncio.Event()
    settings = WebSettings(web_allocation_interval_s=60)
    running = asyncio.create_task(web_worker.run_allocator(settings, engine, {}, {}, stop, None, turns))
    for _ in range(4):  # well past the limit since the round began, a turn per LA
        await asyncio.sleep(STALLED_AFTER_S * 0.6)
        assert stalled(turns, STALLED_AFTER_S) == []
    stop.set()
    await asyncio.wait_for(running, 5)
