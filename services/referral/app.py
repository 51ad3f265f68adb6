"""``create_app(settings)``: the referral service's app, migrations, outbox relay and status consumer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.referral.api import ApiError, ReferralState, authenticate, bearer, router, validation_problems
from services.referral.groupcommit import GroupCommit
from services.referral.keycache import ClientCache
from services.referral.metrics import EVENTS_REJECTED
from services.referral.middleware import LatencyMetrics, body_limit_for, too_large_problem
from services.referral.models import Problem
from services.referral.openapi import install_openapi
from services.referral.ratelimit import RateLimiter
from services.referral.service import Intake
from services.referral.settings import referral_settings
from services.referral.worker import outbox_relay, status_consumer, track_processed
from shared.bodylimit import BodySizeLimit
from shared.db import make_engine
from shared.logs import get_logger
from shared.ops import database_check, kafka_check, loops_turning, ops_router
from shared.settings import Settings
from shared.startup import StartStep, Startup, StartupGate, migrations, stop_background
from shared.topics import INTAKE, URGENT_INTAKE

log = get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
DB_RETRY_AFTER_S = "5"
SHUTDOWN_GRACE_S = 5.0


def literal_path_methods(path: str) -> set[str]:
    """The methods of the service's routes whose path is exactly ``path`` (no parameters in it)."""
    methods: set[str] = set()
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and "{" not in route.path:
            methods |= route.methods or set()
    return methods


def create_app(settings: Settings, *, background: bool = True) -> FastAPI:
    """The app; ``background=False`` leaves out the relay and the status consumer (tests without a broker)."""
    settings = referral_settings(settings)
    steps = migrations(settings.database_url, MIGRATIONS, "referral")
    startup = Startup("referral", pending=bool(steps) or background)
    engine = make_engine(settings.database_url)
    intake = Intake(engine, INTAKE.name(settings), URGENT_INTAKE.name(settings))
    relay = outbox_relay(settings, intake)
    status = status_consumer(settings, intake)
    state = ReferralState(
        engine=engine,
        intake=intake,
        limiter=RateLimiter(),
        relay=relay,
        settings=settings,
        clients=ClientCache(engine),
        writer=GroupCommit(intake),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []

        async def start_background() -> None:
            # Both loops wait for Kafka themselves (the relay keeps what it cannot publish in the outbox).
            tasks.append(asyncio.create_task(relay.run(stop)))
            tasks.append(asyncio.create_task(track_processed(status, stop)))

        background_steps = [StartStep("background", start_background)] if background else []
        starting = await startup.begin(*steps, *background_steps)
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            relay.wakeup.set()
            await stop_background(tasks, stop, SHUTDOWN_GRACE_S)
            engine.dispose()

    app = FastAPI(
        title="CME Tracker referral service",
        version="1.0.0",
        description=(
            "The front door for schools' MIS integrations and agencies: inbound facts about children, "
            "checked, accepted durably and published to the intake topic exactly once per event_id."
        ),
        lifespan=lifespan,
    )
    app.state.referral = state
    # No dependency_overrides here: with any override, FastAPI re-inspects every dependency's signature on
    # every request (a third of a single event's CPU, measured); the routes read settings from the state.
    app.include_router(router)
    checks = {"start": startup.check(), "database": database_check(engine), "kafka": kafka_check(settings)}

    def turns() -> dict[str, float | None]:
        return {"outbox-relay": relay.last_turn, status.name: status.last_turn}

    live = {"loops": loops_turning(turns, settings.loop_stalled_after_s)}
    app.include_router(ops_router(checks, live_checks=live))
    install_openapi(app, secured=(router.routes, authenticate, bearer))
    app.add_middleware(BodySizeLimit, limit_for=body_limit_for, problem=too_large_problem)
    app.add_middleware(LatencyMetrics)
    app.add_middleware(StartupGate, startup=startup)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework answers (unknown path, wrong method) in the same shape as the service's own.
        problem = Problem(field="request", rule=f"http_{exc.status_code}", message=str(exc.detail))
        return ApiError(exc.status_code, [problem], dict(exc.headers or {})).response()

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        allowed = literal_path_methods(request.url.path)
        if allowed and request.method not in allowed:
            # GET /v1/events/batch: the path is a route of its own (POST), not an event id failing to parse.
            problem = Problem(field="request", rule="http_405", message="Method Not Allowed")
            return ApiError(405, [problem], {"Allow": ", ".join(sorted(allowed))}).response()
        problems = validation_problems(exc)
        EVENTS_REJECTED.labels(problems[0].rule if problems else "invalid").inc()
        return ApiError(422, problems).response()

    @app.exception_handler(DBAPIError)
    async def database_unavailable(_: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, IntegrityError):
            raise exc
        # The transaction was rolled back as a whole: nothing was accepted, so a retry is safe.
        log.warning("database_unavailable", error=type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        problem = Problem(field="service", rule="database_unavailable", message="try again shortly")
        return ApiError(503, [problem], {"Retry-After": DB_RETRY_AFTER_S}).response()

    return app
