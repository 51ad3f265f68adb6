"""create_app(settings) -> FastAPI: the caseworker and ops web, its ops endpoints and the lag exporter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from services.web import metrics
from services.web.allocation import load_policies
from services.web.identity import IdentityProvider, LocalAccounts
from services.web.pages import ROUTERS
from services.web.reports import load_populations
from services.web.sessions import CsrfFailed, SignInRequired
from services.web.settings import WebSettings
from services.web.worker import run_allocator, run_lag_exporter
from shared.bodylimit import BodySizeLimit
from shared.db import make_engine, migrate
from shared.logs import get_logger
from shared.ops import database_check, kafka_check, loops_turning, ops_router
from shared.school_calendar import CalendarRegistry
from shared.settings import get_settings
from shared.startup import Startup, StartupGate, migrations

MIGRATIONS = Path(__file__).parent / "migrations"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


log = get_logger(__name__)


def prepare_database(settings: WebSettings) -> Engine:
    migrate(settings.database_url, MIGRATIONS, "web")
    return make_engine(settings.database_url)


FORM_BODY_LIMIT = 64 * 1024


def create_app(
    settings: WebSettings,
    identity: IdentityProvider | None = None,
    transports: dict[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """``transports`` routes calls to a service in-process (unit tests); by default they go over HTTP."""
    steps = migrations(settings.database_url, MIGRATIONS, "web")
    engine = make_engine(settings.database_url)
    startup = Startup("web", pending=bool(steps))
    stop = asyncio.Event()
    policies = load_policies(settings.web_allocation_file)  # a bad file stops the start, saying why
    turns: dict[str, float | None] = {}  # each background loop's latest turn (liveness)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = await startup.begin(*steps)
        task = (
            asyncio.create_task(run_lag_exporter(settings, stop, turns))
            if settings.web_lag_interval_s > 0
            else None
        )
        allocator = (
            asyncio.create_task(
                run_allocator(settings, engine, policies, app.state.transports, stop, startup.done, turns)
            )
            if settings.web_allocation_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            stop.set()
            for running in (task, allocator):
                if running is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(running, 10)
            engine.dispose()

    app = FastAPI(title="CME Tracker web", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.engine = engine
    app.state.transports = transports or {}
    app.state.policies = policies
    app.state.calendars = CalendarRegistry(settings.calendars_dir)
    app.state.populations = load_populations(
        str(settings.web_population_file) if settings.web_population_file else None
    )
    app.dependency_overrides[get_settings] = lambda: settings
    app.state.identity = identity or LocalAccounts(engine)
    for router in ROUTERS:
        app.include_router(router)
    checks = {"start": startup.check(), "database": database_check(engine), "kafka": kafka_check(settings)}
    longest_wait_s = max(settings.web_lag_interval_s, settings.web_allocation_interval_s)
    live = {"loops": loops_turning(lambda: turns, settings.loop_stalled_after_s, longest_wait_s)}
    app.include_router(ops_router(checks, live_checks=live))
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse("/sign-in", 303)

    @app.exception_handler(httpx.TransportError)
    async def service_unreachable(request: Request, exc: httpx.TransportError) -> Response:
        # Tracking or notify not answering is an outage to wait out, not a server error of the web's own.
        log.warning("backend_unreachable", error=type(exc).__name__)
        page = "<h1>Temporarily unavailable</h1><p>A service this page needs is not answering. Try again.</p>"
        return HTMLResponse(page, 503, headers={"Retry-After": "10"})

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        metrics.CSRF_REFUSED.inc()
        return HTMLResponse("<h1>Form expired</h1><p>Go back, reload the page and try again.</p>", 403)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path not in ("/metrics",) and not request.url.path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # Forms are a few hundred bytes: refuse a large body before it is read, even before sign-in.
    app.add_middleware(BodySizeLimit, limit=FORM_BODY_LIMIT)
    app.add_middleware(StartupGate, startup=startup)
    return app
