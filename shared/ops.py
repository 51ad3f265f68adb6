"""Health, readiness and Prometheus metrics endpoints that every service mounts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

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


class NotReady(RuntimeError):
    """A readiness check's own explanation (no dependency's message, which may carry a connection string)."""


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


def ops_router(checks: dict[str, ReadinessCheck], registry: CollectorRegistry = REGISTRY) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready", responses=READY_503)  # type: ignore[arg-type]
    async def ready() -> JSONResponse:
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

    @router.get("/metrics", response_class=PlainTextResponse)  # documents the text exposition format
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
