"""Health, readiness and Prometheus metrics endpoints that every service mounts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared.settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]
READY_503 = {
    503: {
        "description": "Not ready: a dependency (database, Kafka, the worker, the service's own start) is "
        "not up; each check says ok or why not. Liveness is separate: a starting service is live, not ready.",
        "content": {
            "application/json": {
                "example": {
                    "status": "unavailable",
                    "checks": {"database": "ok", "kafka": "error: KafkaConnectionError"},
                }
            }
        },
    }
}


LIVE_503 = {
    503: {
        "description": "Not live: one of the process's own loops has stopped turning (restart the process)",
        "content": {
            "application/json": {
                "example": {"status": "unavailable", "checks": {"loops": "not ready: stalled: timer"}}
            }
        },
    }
}


class NotReady(RuntimeError):
    """A readiness check's own explanation (no dependency's message, which may carry a connection string)."""


def stalled(turns: Mapping[str, float | None], after_s: float) -> list[str]:
    """The loops whose latest turn (``time.monotonic()``; None: not running) is more than ``after_s`` ago."""
    now = time.monotonic()
    return [name for name, turn in turns.items() if turn is not None and now - turn > after_s]


def loops_turning(
    turns: Callable[[], Mapping[str, float | None]], after_s: float, longest_wait_s: float = 0.0
) -> ReadinessCheck:
    """A liveness check: every background loop of the process has turned within ``after_s``, or three of
    its longest configured waits between turns (``longest_wait_s``: an interval set above ``after_s`` must
    not read as stuck). A loop that stopped turning is stuck in an await that never returns, and a restart
    helps; one that turns and fails (a dependency away) stays live: a restart would not bring it back."""
    limit = max(after_s, 3 * longest_wait_s)

    async def check() -> None:
        names = stalled(turns(), limit)
        if names:
            raise NotReady(f"stalled: {', '.join(names)}")

    return check


def database_check(engine: Engine) -> ReadinessCheck:
    async def check() -> None:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        await asyncio.to_thread(ping)

    return check


def kafka_check(settings: Settings) -> ReadinessCheck:
    """Ready only when the broker answers a metadata request for our topics."""
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.kafka import aiokafka_config

    async def check() -> None:
        admin = AIOKafkaAdminClient(request_timeout_ms=3000, **aiokafka_config(settings))
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    return check


async def run_checks(checks: dict[str, ReadinessCheck]) -> JSONResponse:
    """Every check's result by name; 200 when all are ok, else 503."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=5)
            results[name] = "ok"
        except NotReady as exc:
            results[name] = f"not ready: {exc}"
        except Exception as exc:  # any failure means not ready; say which dependency and why
            results[name] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in results.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results}, 200 if ok else 503)


def ops_router(
    checks: dict[str, ReadinessCheck],
    registry: CollectorRegistry = REGISTRY,
    live_checks: dict[str, ReadinessCheck] | None = None,
) -> APIRouter:
    """``live_checks``: what must hold for the process to be worth keeping (a loop that stopped turning);
    a failing one makes ``/health/live`` answer 503, so a supervisor restarts the process. Dependencies
    (a database or broker away) belong in ``checks``: a restart does not bring them back."""
    router = APIRouter(tags=["ops"])
    liveness = live_checks or {}

    @router.get("/health/live", responses=LIVE_503)  # type: ignore[arg-type]
    async def live() -> JSONResponse:
        if not liveness:
            return JSONResponse({"status": "ok"})
        return await run_checks(liveness)

    @router.get("/health/ready", responses=READY_503)  # type: ignore[arg-type]
    async def ready() -> JSONResponse:
        return await run_checks(checks)

    @router.get("/metrics", response_class=PlainTextResponse)  # documents the text exposition format
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
