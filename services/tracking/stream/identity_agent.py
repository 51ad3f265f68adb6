"""Agent on the intake topic: resolve which child a fact is about and publish it re-keyed by child_id."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Any

import faust

from services.tracking.identity import IdentityResolver
from services.tracking.metrics import EVENTS_PROCESSED, LATENCY, MATCHES
from services.tracking.stream.handling import process_or_dead_letter, send_and_wait
from shared.events.catalogue import decode_inbound, encode_event
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.logs import bind_event, get_logger

log = get_logger(__name__)
AGENT = "identity"


def register(app: faust.App, ctx: Any) -> None:
    resolver = IdentityResolver(ctx.engine)

    async def handle(event: Any) -> None:
        started = time.perf_counter()
        inbound = decode_inbound(event.value)
        bind_event(inbound)
        resolution = await asyncio.to_thread(resolver.resolve, inbound)
        la_code = str(inbound.source.la_code)
        # event_id equals the inbound event's: the referral service marks the fact processed by it.
        fact = ChildFact(
            event_id=inbound.event_id,
            occurred_at=inbound.occurred_at,
            source=Source(system="cme-tracking", la_code=la_code),
            correlation_id=inbound.correlation_id or inbound.event_id,
            payload=ChildFactPayload(
                child_id=uuid.UUID(resolution.child_id),
                la_code=la_code,
                match=resolution.match,
                match_score=resolution.score,
                fact=inbound.model_dump(mode="json"),
            ),
        )
        await send_and_wait(ctx.child_events, resolution.child_id.encode(), encode_event(fact))
        MATCHES.labels(resolution.match).inc()
        EVENTS_PROCESSED.labels(AGENT, inbound.event_type, "ok").inc()
        LATENCY.labels(AGENT).observe(time.perf_counter() - started)
        log.info("identity_resolved", **inbound.log_fields(), match=str(resolution.match))

    @app.agent(ctx.intake, name=f"{app.conf.id}-identity")
    async def resolve(stream: Any) -> None:
        async for event in stream.events():
            ok = await process_or_dead_letter(AGENT, ctx.dead_letter, event, functools.partial(handle, event))
            if not ok:
                EVENTS_PROCESSED.labels(AGENT, "unknown", "dead_letter").inc()
