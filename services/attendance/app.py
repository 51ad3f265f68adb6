"""The attendance bulk upload API: POST /v1/attendance/marks (JSON array or CSV), plus health and metrics.

Callers carry a ``shared.auth`` bearer token (role service, manager or cme_officer) and may send marks of
their own LA only. Schools' MIS integrations authenticate with API keys held by the referral service; until
the upload moves there (or the referral service forwards it), a school's data processor gets a service token.
A batch is all or nothing: any invalid row and nothing is produced (422 naming each row and field); otherwise
every mark is produced to cme.attendance.v1 with acks=all and 202 is answered only after the broker has
acknowledged them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

from services.attendance import metrics
from services.attendance.intake import parse_rows, rows_from_csv, rows_from_json
from services.attendance.settings import AttendanceSettings, attendance_settings
from shared.auth import CurrentPrincipal, Principal, Role
from shared.events.catalogue import encode_event
from shared.identifiers import ascii_digits
from shared.kafka import aiokafka_config
from shared.logs import get_logger
from shared.openapi_errors import document_errors
from shared.ops import kafka_check, ops_router
from shared.settings import Settings, get_settings
from shared.startup import StartStep, Startup, StartupGate
from shared.topics import ATTENDANCE

log = get_logger(__name__)
UPLOAD_ROLES = frozenset({Role.SERVICE, Role.MANAGER, Role.CME_OFFICER})


def require_uploader(principal: CurrentPrincipal) -> Principal:
    if principal.role not in UPLOAD_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role} may not upload marks")
    return principal


Uploader = Annotated[Principal, Depends(require_uploader)]


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if ascii_digits(declared) and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    return bytes(body)


def upload_router(cfg: AttendanceSettings) -> APIRouter:
    router = APIRouter(prefix="/v1/attendance", tags=["attendance"])

    @router.post("/marks", status_code=status.HTTP_202_ACCEPTED)
    async def upload_marks(request: Request, principal: Uploader) -> JSONResponse:
        try:
            body = await _read_limited(request, cfg.attendance_upload_max_bytes)
        except HTTPException:
            metrics.UPLOAD_REJECTED.labels("too_large").inc()
            raise
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "text/csv":
                rows = rows_from_csv(body)
            elif content_type in ("application/json", ""):
                rows = rows_from_json(body)
            else:
                raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send JSON or text/csv")
        except (ValueError, UnicodeDecodeError) as exc:
            metrics.UPLOAD_REJECTED.labels("unreadable").inc()
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unreadable: {type(exc).__name__}") from exc
        if len(rows) > cfg.attendance_upload_max_marks:
            metrics.UPLOAD_REJECTED.labels("too_many").inc()
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"over {cfg.attendance_upload_max_marks} marks"
            )
        marks, errors = parse_rows(rows, la_code=principal.la_code)
        if errors:
            metrics.UPLOAD_REJECTED.labels("invalid").inc()
            return JSONResponse({"accepted": 0, "errors": errors[:1000]}, status_code=422)
        producer: AIOKafkaProducer = request.app.state.producer
        topic = ATTENDANCE.name(cfg)
        pending = [
            await producer.send(topic, key=m.payload.upn.encode(), value=encode_event(m)) for m in marks
        ]
        await asyncio.gather(*pending)  # every mark acknowledged by the broker (acks=all) before we answer
        metrics.UPLOADED.inc(len(marks))
        log.info("marks_uploaded", count=len(marks), la_code=principal.la_code, sub=principal.sub)
        return JSONResponse({"accepted": len(marks), "errors": []}, status.HTTP_202_ACCEPTED)

    return router


def create_app(settings: Settings) -> FastAPI:
    cfg = attendance_settings(settings)
    startup = Startup("attendance")
    kafka_ready = kafka_check(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producers: list[AIOKafkaProducer] = []

        async def start_producer() -> None:
            producer = AIOKafkaProducer(
                acks="all", enable_idempotence=True, linger_ms=10, **aiokafka_config(cfg)
            )
            producers.append(producer)
            await producer.start()
            app.state.producer = producer

        async def stop_producers() -> None:
            for producer in producers:
                await producer.stop()
            producers.clear()

        starting = await startup.begin(
            StartStep("kafka", kafka_ready), StartStep("producer", start_producer, stop_producers)
        )
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await stop_producers()

    app = FastAPI(title="CME Tracker attendance", version="1", lifespan=lifespan)
    app.dependency_overrides[get_settings] = lambda: cfg
    app.include_router(upload_router(cfg))
    app.include_router(ops_router({"start": startup.check(), "kafka": kafka_ready}))
    document_errors(app, {("POST", "/v1/attendance/marks"): (400, 413, 415)})
    app.add_middleware(StartupGate, startup=startup)
    return app
