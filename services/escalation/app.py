"""The escalation service's FastAPI app: ops endpoints (health, readiness, metrics) and the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from services.escalation.rules import RuleSet
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import TimeSource
from services.escalation.unit_of_work import Deps
from services.escalation.worker import EscalationWorker
from shared.db import make_engine, migrate
from shared.ops import database_check, kafka_check, loops_turning, ops_router
from shared.school_calendar import CalendarRegistry
from shared.settings import get_settings
from shared.startup import StartStep, Startup, StartupGate, migrations
from shared.topics import CHILD_EVENTS, ESCALATIONS

MIGRATIONS = Path(__file__).parent / "migrations"


def prepare_database(settings: EscalationSettings) -> Engine:
    migrate(settings.database_url, MIGRATIONS, "escalation")
    return make_engine(settings.database_url)


def load_deps(settings: EscalationSettings) -> Deps:
    """Rules and calendars, validated now: a bad LA file stops the start, naming the LA, rule and field."""
    return Deps(
        rules=RuleSet.load(overrides_dir=settings.rules_dir),
        calendars=CalendarRegistry(settings.calendars_dir),
        escalations_topic=ESCALATIONS.name(settings),
        child_events_topic=CHILD_EVENTS.name(settings),
    )


def create_app(
    settings: EscalationSettings,
    engine: Engine | None = None,
    time_source: TimeSource | None = None,
    run_worker: bool = True,
) -> FastAPI:
    deps = load_deps(settings)
    steps = [] if engine is not None else migrations(settings.database_url, MIGRATIONS, "escalation")
    engine = engine or make_engine(settings.database_url)
    clock = time_source or settings.time_source()
    kafka_ready = kafka_check(settings)
    startup = Startup("escalation", pending=bool(steps) or run_worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = EscalationWorker(settings, engine, deps, clock) if run_worker else None
        app.state.worker = worker
        worker_steps = (
            [StartStep("kafka", kafka_ready), StartStep("worker", worker.start, undo=worker.stop)]
            if worker
            else []
        )
        starting = await startup.begin(*steps, *worker_steps)
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            if worker is not None:
                await worker.stop()

    app = FastAPI(title="CME Tracker escalation", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.dependency_overrides[get_settings] = lambda: settings
    checks = {"start": startup.check(), "database": database_check(engine), "kafka": kafka_ready}

    def turns() -> dict[str, float | None]:
        worker: EscalationWorker | None = getattr(app.state, "worker", None)
        return worker.turns() if worker is not None else {}

    live = {"loops": loops_turning(turns, settings.loop_stalled_after_s, settings.escalation_tick_s)}
    app.include_router(ops_router(checks, live_checks=live))
    app.add_middleware(StartupGate, startup=startup)
    return app
