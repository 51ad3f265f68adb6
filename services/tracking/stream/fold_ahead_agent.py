"""Agent on cme.child-events-urgent.v1: the urgent lane's facts folded ahead of the queue.

A fact that says a child may be at risk now (shared/events/urgency.py) is resolved on the urgent intake lane
and published twice: on child-events, where the case agent folds it in order with everything else, and here.
Under a bulk load the case agent can be thousands of records behind. This agent applies the fact at once to
the child's record as the table holds it and publishes the case transitions it causes, marked
``provisional``, on cme.case-transitions-urgent.v1, which escalation reads with a consumer of its own: it
can tell social care and the police without waiting for the bulk in tracking or in its own reading.

It writes nothing else: not the table, not the case store, no handovers or forwards. The fold in order does
all of that and publishes the same transitions again (same event ids); where the facts queued ahead of this
one change the outcome (another from-state, another context), escalation applies the in-order one as well
(docs/TRACKING.md, "The urgent lane through the case fold"). Only in-order steps are folded ahead: a fact the
record has already seen, or one older than the record's newest fact (a re-fold), is left to the fold in order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from services.tracking.cases import ChildRecord, new_record
from services.tracking.metrics import EVENTS_PROCESSED, LATENCY
from services.tracking.stream.case_agent import apply, load_record
from services.tracking.stream.handling import run_in_batches, send_all
from shared.events.catalogue import decode_event, encode_event
from shared.events.internal import CaseTransition, ChildFact
from shared.logs import bind_event, get_logger
from shared.stream_batching import current

log = get_logger(__name__)
AGENT = "fold-ahead"


def provisional(transition: CaseTransition) -> CaseTransition:
    payload = transition.payload.model_copy(update={"provisional": True})
    return transition.model_copy(update={"payload": payload})


@dataclass(frozen=True)
class FoldedAhead:
    fact: ChildFact
    result: str  # provisional | no_transition | left_to_fold
    transitions: list[CaseTransition]


def fold_ahead(
    facts: Sequence[tuple[str, ChildFact]],
    stored: Mapping[str, ChildRecord | None],
    deployment: frozenset[str] | None = None,
) -> list[FoldedAhead]:
    """A batch's (child_id, fact) in order, each applied to the child's record as ``stored`` holds it (a later
    fact of the same child goes on from the earlier one's result): the provisional transitions of each."""
    records = dict(stored)
    out = []
    for child_id, fact in facts:
        record = records.get(child_id) or new_record(child_id, str(fact.payload.la_code))
        outcome = apply(record, fact, deployment)
        records[child_id] = outcome.record
        if outcome.duplicate or any(t.payload.history is not None for t in outcome.transitions):
            out.append(FoldedAhead(fact, "left_to_fold", []))
            continue
        transitions = [provisional(t) for t in outcome.transitions]
        out.append(FoldedAhead(fact, "provisional" if transitions else "no_transition", transitions))
    return out


def register(app: faust.App, ctx: Any) -> None:
    async def handle(events: Sequence[Any]) -> None:
        started = time.perf_counter()
        facts: list[tuple[str, ChildFact]] = []
        stored: dict[str, ChildRecord | None] = {}
        for event in events:
            fact = decode_event(event.value)
            if not isinstance(fact, ChildFact):
                raise ValueError(f"{fact.event_type} does not belong on the urgent child-events topic")
            child_id = event.key.decode()
            if child_id not in stored:
                current(event)  # the table reads the partition of the current event: this child's
                stored[child_id] = load_record(ctx.children.get(child_id))
            facts.append((child_id, fact))
        folded = fold_ahead(facts, stored, ctx.settings.deployment_las)
        await send_all(
            AGENT,
            [
                (ctx.urgent_transitions, child_id.encode(), encode_event(t))
                for (child_id, _), f in zip(facts, folded, strict=True)
                for t in f.transitions
            ],
        )
        seconds = time.perf_counter() - started
        for f in folded:
            bind_event(f.fact)
            EVENTS_PROCESSED.labels(AGENT, f.fact.event_type, f.result).inc()
            LATENCY.labels(AGENT).observe(seconds)
            log.info("folded_ahead", result=f.result, la_code=f.fact.payload.la_code)

    @app.agent(ctx.urgent_child_events, name=f"{app.conf.id}-{AGENT}")
    async def fold_ahead_agent(stream: Any) -> None:
        await run_in_batches(stream, ctx, AGENT, handle)
