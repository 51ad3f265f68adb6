"""Agents on the intake topics (the ordinary lane and the urgent one): resolve which child a fact is about and
publish it re-keyed by child_id.

Records come in micro-batches (``shared.stream_batching``): a batch is resolved in one transaction, its
child facts are published together and acknowledged by the broker, and only then are its offsets released."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import faust

from services.tracking.identity import IdentityResolver, Resolution
from services.tracking.metrics import EVENTS_PROCESSED, LATENCY, MATCHES
from services.tracking.peers import matcher_for
from services.tracking.stream.handling import run_in_batches, send_all
from shared.events.catalogue import decode_inbound, encode_event
from shared.events.envelope import Envelope, Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.logs import bind_event, get_logger

log = get_logger(__name__)
AGENT = "identity"
URGENT_AGENT = "identity-urgent"  # the agent of the urgent intake lane


def child_fact(inbound: Envelope, resolution: Resolution) -> ChildFact:
    la_code = str(inbound.source.la_code)
    # event_id equals the inbound event's: the referral service marks the fact processed by it.
    return ChildFact(
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


def register(app: faust.App, ctx: Any) -> None:
    """One identity agent per intake lane. The urgent lane has an agent (its own stream and buffer) so that
    a fact on it is resolved while the ordinary lane works through a bulk load; both share the resolver,
    whose batches are race-free against each other as against another worker's (advisory locks)."""
    resolver = IdentityResolver(ctx.engine, cross_la=matcher_for(ctx.settings))
    _lane(app, ctx, resolver, ctx.intake, AGENT, (ctx.child_events,))
    # The urgent lane's facts go on child-events, the record every reader folds in order, and again on the
    # urgent child-events topic, where the fold ahead turns them into transitions without waiting for the
    # facts queued ahead of them (fold_ahead_agent.py).
    _lane(app, ctx, resolver, ctx.urgent_intake, URGENT_AGENT, (ctx.child_events, ctx.urgent_child_events))


def _lane(
    app: faust.App, ctx: Any, resolver: IdentityResolver, source: Any, agent: str, targets: tuple[Any, ...]
) -> None:
    async def handle(events: Sequence[Any]) -> None:
        started = time.perf_counter()
        inbounds = [decode_inbound(event.value) for event in events]
        resolutions = await asyncio.to_thread(resolver.resolve_batch, inbounds)
        facts = [
            (resolution.child_id.encode(), encode_event(child_fact(inbound, resolution)))
            for inbound, resolution in zip(inbounds, resolutions, strict=True)
        ]
        await send_all(agent, [(target, key, value) for target in targets for key, value in facts])
        seconds = time.perf_counter() - started
        for inbound, resolution in zip(inbounds, resolutions, strict=True):
            bind_event(inbound)
            MATCHES.labels(resolution.match).inc()
            EVENTS_PROCESSED.labels(agent, inbound.event_type, "ok").inc()
            LATENCY.labels(agent).observe(seconds)
            log.info("identity_resolved", **inbound.log_fields(), match=str(resolution.match))

    @app.agent(source, name=f"{app.conf.id}-{agent}")
    async def resolve(stream: Any) -> None:
        await run_in_batches(stream, ctx, agent, handle)
