"""The notify service's FastAPI app: the acknowledgement API, ops endpoints, and the background worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.notify import metrics
from services.notify.acks import pending_ack_count
from services.notify.api import router
from services.notify.settings import NotifySettings
from services.notify.worker import NotifyWorker
from shared import request_errors
from shared.bodylimit import BodySizeLimit
from shared.db import make_engine, migrate
from shared.openapi_errors import document_errors
from shared.ops import NotReady, database_check, kafka_check, loops_turning, ops_router
from shared.settings import get_settings
from shared.startup import StartStep, Startup, StartupGate, migrations

MIGRATIONS = Path(__file__).parent / "migrations"


def prepare_database(settings: NotifySettings) -> Engine:
    migrate(settings.database_url, MIGRATIONS, "notify")
    return make_engine(settings.database_url)


def create_app(settings: NotifySettings, engine: Engine | None = None, run_worker: bool = True) -> FastAPI:
    steps = [] if engine is not None else migrations(settings.database_url, MIGRATIONS, "notify")
    engine = engine or make_engine(settings.database_url)
    kafka_ready = kafka_check(settings)
    startup = Startup("notify", pending=bool(steps) or run_worker)

    def pending_acks() -> float:
        with Session(engine) as session:
            return float(pending_ack_count(session))

    metrics.PENDING_ACKS.set_function(pending_acks)

    workers: list[NotifyWorker] = []

    async def worker_check() -> None:
        for worker in workers:
            failed = worker.failed_task()
            if failed:
                raise NotReady(f"background loop {failed} has stopped (its cause is in the log)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_steps: list[StartStep] = []
        if run_worker:
            # A fresh worker per attempt: a stopped one has closed its consumer and channels.
            async def start_worker() -> None:
                worker = NotifyWorker(settings, engine)
                workers.append(worker)
                await worker.start()

            async def stop_workers() -> None:
                for worker in workers:
                    await worker.stop()
                workers.clear()

            worker_steps = [
                StartStep("kafka", kafka_ready),
                StartStep("worker", start_worker, undo=stop_workers),
            ]
        starting = await startup.begin(*steps, *worker_steps)
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            for worker in workers:
                await worker.stop()
            workers.clear()

    app = FastAPI(title="CME Tracker notify", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.dependency_overrides[get_settings] = lambda: settings
    app.include_router(router)
    checks = {
        "start": startup.check(),
        "database": database_check(engine),
        "kafka": kafka_ready,
        "worker": worker_check,
    }

    def turns() -> dict[str, float | None]:
        return {name: turn for worker in workers for name, turn in worker.turns().items()}

    live = {"loops": loops_turning(turns, settings.loop_stalled_after_s, settings.notify_poll_interval_s)}
    app.include_router(ops_router(checks, live_checks=live))
    document_errors(app, {("POST", "/v1/alerts/{alert_id}/ack"): (409,)}, public_prefixes=("/v1/ack/",))
    app.add_middleware(BodySizeLimit)  # before FastAPI buffers a body, even an unauthenticated one
    request_errors.install(app)  # 422 without echoing input (personal data, unencodable surrogates)
    app.add_middleware(StartupGate, startup=startup)
    return app
