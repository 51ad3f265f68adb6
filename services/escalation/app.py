"""The escalation service's FastAPI app: ops endpoints (health, readiness, metrics) and the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from services.escalation.config import EscalationSettings
from services.escalation.rules import RuleSet
from services.escalation.service import Deps
from services.escalation.timesource import TimeSource
from services.escalation.worker import EscalationWorker
from shared.db import make_engine, migrate
from shared.ops import database_check, kafka_check, ops_router
from shared.school_calendar import CalendarRegistry
from shared.settings import get_settings
from shared.topics import ESCALATIONS

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
    )


def create_app(
    settings: EscalationSettings,
    engine: Engine | None = None,
    time_source: TimeSource | None = None,
    run_worker: bool = True,
) -> FastAPI:
    deps = load_deps(settings)
    engine = engine or prepare_database(settings)
    clock = time_source or settings.time_source()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = EscalationWorker(settings, engine, deps, clock) if run_worker else None
        app.state.worker = worker
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()

    app = FastAPI(title="CME Tracker escalation", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.dependency_overrides[get_settings] = lambda: settings
    app.include_router(ops_router({"database": database_check(engine), "kafka": kafka_check(settings)}))
    return app
