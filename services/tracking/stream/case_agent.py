"""Agent on cme.child-events.v1: apply each fact, merge or split to the child's record in the faust table,
project the result into the case store and publish transitions, handovers and forwards."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import faust

from services.tracking.cases import (
    ChildRecord,
    Outcome,
    apply_child_fact,
    apply_merge,
    apply_split,
    new_record,
)
from services.tracking.metrics import EVENTS_PROCESSED, LATENCY, TRANSITIONS
from services.tracking.projection import project
from services.tracking.stream.handling import process_or_dead_letter, send_and_wait
from shared.events.catalogue import decode_event, encode_event
from shared.events.envelope import Envelope
from shared.events.internal import ChildFact, ChildMerged, ChildSplit
from shared.logs import bind_event, get_logger

log = get_logger(__name__)
AGENT = "cases"


def apply(record: ChildRecord, event: Envelope) -> Outcome:
    if isinstance(event, ChildFact):
        return apply_child_fact(record, event)
    if isinstance(event, ChildMerged):
        return apply_merge(record, event)
    if isinstance(event, ChildSplit):
        return apply_split(record, event)
    raise ValueError(f"{event.event_type} does not belong on the child-events topic")


def load_record(raw: Any) -> ChildRecord | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return ChildRecord.model_validate(raw)
    return ChildRecord.model_validate_json(raw if isinstance(raw, bytes | str) else bytes(raw))


def intake_key(event: Envelope) -> bytes:
    child = event.payload.child
    return (child.upn or child.la_child_id or str(event.event_id)).encode()


def register(app: faust.App, ctx: Any) -> None:
    async def handle(event: Any) -> None:
        started = time.perf_counter()
        key: bytes = event.key
        envelope = decode_event(event.value)
        bind_event(envelope)
        child_id = key.decode()
        record = load_record(ctx.children.get(child_id)) or new_record(
            child_id, str(envelope.payload.la_code)
        )
        outcome = apply(record, envelope)
        if outcome.duplicate:
            EVENTS_PROCESSED.labels(AGENT, envelope.event_type, "duplicate").inc()
            return
        # Side effects first (all idempotent), the table last: a crash in between repeats them harmlessly.
        await asyncio.to_thread(project, ctx.engine, outcome)
        for transition in outcome.transitions:
            await send_and_wait(ctx.transitions, key, encode_event(transition))
            p = transition.payload
            TRANSITIONS.labels(str(p.from_state or "no_case"), str(p.to_state)).inc()
            log.info(
                "case_transition",
                event_id=str(p.cause_event_id),
                la_code=p.la_code,
                from_state=str(p.from_state),
                to_state=str(p.to_state),
            )
        for handover in outcome.handovers:
            await send_and_wait(ctx.intake, intake_key(handover), encode_event(handover))
        for child_key, forward in outcome.forwards:
            await send_and_wait(ctx.child_events, child_key.encode(), encode_event(forward))
        ctx.children[child_id] = outcome.record.model_dump_json()
        EVENTS_PROCESSED.labels(AGENT, envelope.event_type, "ok").inc()
        LATENCY.labels(AGENT).observe(time.perf_counter() - started)

    @app.agent(ctx.child_events, name=f"{app.conf.id}-cases")
    async def track(stream: Any) -> None:
        async for event in stream.events():
            ok = await process_or_dead_letter(AGENT, ctx.dead_letter, event, functools.partial(handle, event))
            if not ok:
                EVENTS_PROCESSED.labels(AGENT, "unknown", "dead_letter").inc()
