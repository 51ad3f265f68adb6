"""Agent on cme.child-events.v1: apply each fact, merge or split to the child's record in the faust table,
project the result into the case store and publish transitions, handovers and forwards.

Records come in micro-batches (``shared.stream_batching``): applied in order (several events of one
child see each other's result), projected in one transaction, their outputs published and acknowledged
together, then the table written, and only then are the offsets released. Between the two, tracking's
progress mark for each partition of the batch goes out on the transitions topic (``progress``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.tracking.cases import (
    ChildRecord,
    Outcome,
    apply_child_fact,
    apply_clock_expired,
    apply_merge,
    apply_purge,
    apply_split,
    new_record,
)
from services.tracking.crossla import SOUGHT_STATES, CrossLAMatcher, retrying_link_races
from services.tracking.metrics import EVENTS_PROCESSED, LATENCY, TRANSITIONS
from services.tracking.peers import matcher_for
from services.tracking.projection import project_into
from services.tracking.stream import progress as marks
from services.tracking.stream.handling import run_in_batches, send_all
from shared.events.catalogue import decode_event, encode_event
from shared.events.envelope import Envelope
from shared.events.internal import CaseClockExpired, ChildFact, ChildMerged, ChildPurged, ChildSplit
from shared.logs import bind_event, get_logger
from shared.stream_batching import current
from shared.topics import CHILD_EVENTS, INTAKE

log = get_logger(__name__)
AGENT = "cases"


def apply(
    record: ChildRecord, event: Envelope, deployment: frozenset[str] | None = None, *, publishing: bool = True
) -> Outcome:
    """One child-events record applied to the child's record; not ``publishing``: see ``apply_child_fact``."""
    if isinstance(event, ChildFact):
        return apply_child_fact(record, event, deployment, publishing=publishing)
    if isinstance(event, ChildMerged):
        return apply_merge(record, event)
    if isinstance(event, ChildSplit):
        return apply_split(record, event)
    if isinstance(event, ChildPurged):
        return apply_purge(record, event)
    if isinstance(event, CaseClockExpired):
        return apply_clock_expired(record, event, publishing=publishing)
    raise ValueError(f"{event.event_type} does not belong on the child-events topic")


def load_record(raw: Any) -> ChildRecord | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return ChildRecord.model_validate(raw)
    return ChildRecord.model_validate_json(raw if isinstance(raw, bytes | str) else bytes(raw))


@dataclass
class _Applied:
    event: Any
    envelope: Envelope
    outcome: Outcome


def project_and_match(
    engine: Engine, cross_la: CrossLAMatcher, projected: Sequence[Outcome], attempts: int = 3
) -> None:
    """Project a batch's outcomes into the case store and, in the same transaction, match across LAs the
    cases it moved (crossla.py ``after_projection``): a case that has just become sought may be a child
    another LA already has; one just projected in a state that is not sought may be the child another LA
    seeks, when the two cases reached the case store in the order in which neither check saw the other. A
    link made at the same moment by identity (the same deterministic id) is seen on retry; projecting again
    is idempotent."""
    if not projected:
        return
    transitions = [t.payload for o in projected for t in o.transitions]
    became_sought = [
        (str(p.child_id), p.la_code)
        for p in transitions
        if p.to_state in SOUGHT_STATES and p.from_state != p.to_state
    ]
    now_here = [(str(p.child_id), p.la_code) for p in transitions if p.to_state not in SOUGHT_STATES]

    def project_then_match(session: Session) -> None:
        project_into(session, projected)
        cross_la.after_projection(session, became_sought, now_here)

    retrying_link_races(engine, project_then_match, attempts)


def register(app: faust.App, ctx: Any) -> None:
    cross_la = matcher_for(ctx.settings)
    progress = marks.ProgressMarks(interval_s=ctx.settings.tracking_progress_interval_s)
    marks.watch(app, CHILD_EVENTS.name(ctx.settings), ctx.transitions, progress)

    def record_of(event: Any, child_id: str, la_code: str) -> ChildRecord:
        current(event)  # the table reads the partition of the current event: this child's
        return load_record(ctx.children.get(child_id)) or new_record(child_id, la_code)

    async def handle(events: Sequence[Any]) -> None:
        started = time.perf_counter()
        # Apply in order; a later event of the same child in the batch starts from the earlier one's result.
        records: dict[str, ChildRecord] = {}  # child_id -> the record as the batch has left it so far
        changed: dict[str, Any] = {}  # child_id -> the last event of the batch that changed its record
        deleted: set[str] = set()  # children whose record the batch leaves purged (retention)
        applied: list[_Applied] = []
        newest: dict[int, datetime] = {}  # partition -> the newest event time read (duplicates included)
        for event in events:
            envelope = decode_event(event.value)
            partition = event.message.partition
            newest[partition] = max(newest.get(partition, envelope.occurred_at), envelope.occurred_at)
            child_id = event.key.decode()
            record = records.get(child_id)
            if record is None:
                record = record_of(event, child_id, str(envelope.payload.la_code))
            outcome = apply(record, envelope, ctx.settings.deployment_las)
            records[child_id] = outcome.record
            if outcome.duplicate:
                EVENTS_PROCESSED.labels(AGENT, envelope.event_type, "duplicate").inc()
                continue
            if outcome.purged:
                records[child_id] = new_record(child_id, record.la_code)  # a later event starts afresh
                deleted.add(child_id)
            else:
                deleted.discard(child_id)
            changed[child_id] = event
            applied.append(_Applied(event, envelope, outcome))
        if not applied:
            progress.folded(newest)
            return
        # Side effects first (all idempotent), the table last: a crash in between repeats them harmlessly.
        # A purged child's rows were deleted by `cme purge`: projecting it would bring them back.
        projected = [a.outcome for a in applied if not a.outcome.purged]
        await asyncio.to_thread(project_and_match, ctx.engine, cross_la, projected)
        messages: list[tuple[Any, bytes | None, bytes]] = []
        for a in applied:
            key: bytes = a.event.key
            messages += [(ctx.transitions, key, encode_event(t)) for t in a.outcome.transitions]
            messages += [(ctx.intake, INTAKE.key_for(h), encode_event(h)) for h in a.outcome.handovers]
            messages += [(ctx.child_events, k.encode(), encode_event(f)) for k, f in a.outcome.forwards]
        await send_all(AGENT, messages)
        progress.folded(newest)  # folded and acknowledged: the mark may say so (it is sent before release)
        for child_id, event in changed.items():
            current(event)
            if child_id not in deleted:
                ctx.children[child_id] = records[child_id].model_dump_json()
            elif child_id in ctx.children:
                del ctx.children[child_id]  # a tombstone on the changelog: no copy outlives retention
        seconds = time.perf_counter() - started
        for a in applied:
            bind_event(a.envelope)
            for transition in a.outcome.transitions:
                p = transition.payload
                TRANSITIONS.labels(str(p.from_state or "no_case"), str(p.to_state)).inc()
                log.info(
                    "case_transition",
                    event_id=str(p.cause_event_id),
                    la_code=p.la_code,
                    from_state=str(p.from_state),
                    to_state=str(p.to_state),
                )
            EVENTS_PROCESSED.labels(AGENT, a.envelope.event_type, "ok").inc()
            LATENCY.labels(AGENT).observe(seconds)

    async def mark_progress(events: Sequence[Any]) -> None:
        # Tracking's progress mark, after the batch's transitions and before its offsets are committed.
        progress.processed((e.message.partition, e.message.offset) for e in events)
        partitions = {e.message.partition for e in events}
        await marks.send_marks(ctx.transitions, progress.due(partitions), progress)

    @app.agent(ctx.child_events, name=f"{app.conf.id}-cases")
    async def track(stream: Any) -> None:
        await run_in_batches(stream, ctx, AGENT, handle, before_release=mark_progress)
