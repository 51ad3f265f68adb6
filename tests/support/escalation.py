"""Builders for the escalation service's inputs (transitions, child facts, acks) in tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2
from sqlalchemy.engine import Engine

from devtools.samples import sample_event_dict
from devtools.synthetic import Population
from services.escalation.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound, encode_event
from shared.events.envelope import Source
from shared.events.internal import (
    AckAction,
    AlertAck,
    AlertAckPayload,
    CaseState,
    CaseTransition,
    CaseTransitionPayload,
    ChildFact,
    ChildFactPayload,
    MatchKind,
    tracking_progress,
)
from shared.events.vocab import ResolutionReason, SocialCareStatus
from shared.kafka import kafka_python_config
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS, TopicSpec

LA = "801"


def sqlite_store(folder: Path) -> Iterator[Engine]:
    """A migrated escalation store in SQLite in ``folder``, as a fixture yields it (disposed afterwards)."""
    url = f"sqlite:///{folder / 'esc.db'}"
    migrate(url, MIGRATIONS, "escalation")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def case_id_of(child_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(child_id, "case")


def transition(
    child_id: uuid.UUID,
    to_state: CaseState,
    at: datetime,
    *,
    from_state: CaseState | None = None,
    la: str = LA,
    social_care: SocialCareStatus = SocialCareStatus.NONE,
    has_social_worker: bool = False,
    safeguarding_concern: bool = False,
) -> CaseTransition:
    return CaseTransition(
        event_id=uuid.uuid4(),
        occurred_at=at,
        source=Source(system="cme-tracking", la_code=la),
        payload=CaseTransitionPayload(
            child_id=child_id,
            case_id=case_id_of(child_id),
            la_code=la,
            from_state=from_state,
            to_state=to_state,
            cause_event_id=uuid.uuid4(),
            cause_event_type="test",
            cause_occurred_at=at,
            social_care_status=social_care,
            has_social_worker=has_social_worker,
            safeguarding_concern=safeguarding_concern,
        ),
    )


def child_fact(child_id: uuid.UUID, event_type: str, on: date, la: str = LA, **payload: Any) -> ChildFact:
    fact = sample_event_dict(event_type, on=on, la_code=la)
    fact["payload"].update(payload)
    return ChildFact(
        event_id=uuid.uuid4(),
        occurred_at=datetime.fromisoformat(fact["occurred_at"]),
        source=Source(system="cme-tracking", la_code=la),
        payload=ChildFactPayload(child_id=child_id, la_code=la, match=MatchKind.EXACT, fact=fact),
    )


def ack(
    escalation_id: uuid.UUID, child_id: uuid.UUID, step_index: int, action: AckAction, la: str = LA
) -> AlertAck:
    return AlertAck(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        source=Source(system="cme-notify", la_code=la),
        payload=AlertAckPayload(
            escalation_id=escalation_id, child_id=child_id, la_code=la, step_index=step_index,
            action=action, by_user="officer-17",
            resolution_reason=ResolutionReason.ENQUIRIES_CONTINUING if action == AckAction.RESOLVED else None,
        ),
    )  # fmt: skip


# -- replays of a synthetic school year --------------------------------------------------------------------

REPLAY_NAMESPACE = uuid.UUID("5d0f1b6e-2c47-4e8a-9a53-7b6c1e0f2d22")


@dataclass(frozen=True)
class ReplayInput:
    """One record of escalation's input topics, as tracking would publish it."""

    topic: TopicSpec  # CHILD_EVENTS or CASE_TRANSITIONS
    key: bytes  # the child id
    value: bytes
    event_id: str
    at: datetime  # event time


@dataclass
class Replay:
    inputs: list[ReplayInput]  # in event-time order (per child: each fact, then the transitions it caused)
    states: dict[str, list[tuple[datetime, CaseState]]]  # per child id: (event time, state entered)
    la_of: dict[str, str]  # child id -> LA code
    events: int  # synthetic inbound events the inputs come from


def shuffled_within_children(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The same events in another arrival order: each child's events (by LA and UPN) change places among
    the positions that child's events hold, so a child's facts arrive out of event-time order (late facts,
    as a school reporting late or a backlog loaded out of order gives) while the children interleave as
    before."""
    rng = random.Random(seed)
    positions: dict[tuple[str, str], list[int]] = {}
    for i, raw in enumerate(events):
        positions.setdefault((raw["source"]["la_code"], raw["payload"]["child"]["upn"]), []).append(i)
    arrived = list(events)
    for places in positions.values():
        moved = places[:]
        rng.shuffle(moved)
        for to, frm in zip(places, moved, strict=True):
            arrived[to] = events[frm]
    return arrived


def replay_of(population: Population, events: list[dict[str, Any]] | None = None) -> Replay:
    """What tracking publishes for a synthetic year, computed by tracking's own pure code: each inbound
    event becomes the child fact identity resolution would publish (one child per LA and UPN, an exact
    match) and ``services.tracking.cases.apply_child_fact`` gives the case transitions it causes.

    Hand-overs to another LA (a move) are not replayed as arrivals there: the destination LA's facts are the
    synthetic events sent to it. ``events``: the population's events in another arrival order."""
    # Imported here: only replays need tracking's code.
    from services.tracking.cases import ChildRecord, apply_child_fact, new_record

    records: dict[str, ChildRecord] = {}
    inputs: list[ReplayInput] = []
    states: dict[str, list[tuple[datetime, CaseState]]] = {}
    la_of: dict[str, str] = {}
    for raw in population.events if events is None else events:
        inbound = decode_inbound(raw)
        la = str(inbound.source.la_code)
        child_id = str(uuid.uuid5(REPLAY_NAMESPACE, f"{la}:{raw['payload']['child']['upn']}"))
        key = child_id.encode()
        fact = ChildFact(
            event_id=inbound.event_id,
            occurred_at=inbound.occurred_at,
            source=Source(system="cme-tracking", la_code=la),
            payload=ChildFactPayload(
                child_id=uuid.UUID(child_id),
                la_code=la,
                match=MatchKind.EXACT,
                fact=inbound.model_dump(mode="json"),
            ),
        )
        outcome = apply_child_fact(records.get(child_id) or new_record(child_id, la), fact)
        records[child_id] = outcome.record
        la_of[child_id] = la
        inputs.append(
            ReplayInput(CHILD_EVENTS, key, encode_event(fact), str(fact.event_id), inbound.occurred_at)
        )
        for t in outcome.transitions:
            at = t.payload.cause_occurred_at
            inputs.append(ReplayInput(CASE_TRANSITIONS, key, encode_event(t), str(t.event_id), at))
            states.setdefault(child_id, []).append((at, t.payload.to_state))
    return Replay(inputs, states, la_of, len(population.events))


def replay_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(acks="all", linger_ms=5, **kafka_python_config(settings))


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producers' default partitioner (murmur2, as Kafka's Java client) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def produce_inputs(
    settings: Settings,
    inputs: list[ReplayInput],
    producer: KafkaProducer | None = None,
    *,
    tracking_marks: bool = True,
) -> None:
    """Publish in order, keyed by child id (so a child's records share a partition number on both topics),
    and wait for every acknowledgement (on ``producer`` if given, else a producer of its own).

    ``tracking_marks``: stand in for tracking's progress marks as the case agent sends them (escalation's
    horizon waits for them, docs/ESCALATION.md): after each child fact and the transitions it caused, a
    mark that the fact's partition is folded up to the fact's event time; once all are acknowledged, a mark
    per partition that it is folded to its end (escalation then takes it as caught up at its own now)."""
    own = producer is None
    sender = replay_producer(settings) if producer is None else producer
    transitions = CASE_TRANSITIONS.name(settings)
    try:
        partitions = len(sender.partitions_for(transitions) or ()) if tracking_marks else 0
        futures = []
        folded: dict[int, datetime] = {}  # partition -> the newest fact time (the mark never goes back)
        for n, i in enumerate(inputs):
            futures.append(sender.send(i.topic.name(settings), key=i.key, value=i.value))
            if not tracking_marks:
                continue
            p = partition_of(i.key, partitions)
            if i.topic is CHILD_EVENTS:
                folded[p] = max(folded.get(p, i.at), i.at)
            if p in folded and (n + 1 == len(inputs) or inputs[n + 1].topic is CHILD_EVENTS):
                # After the fact's transitions, as tracking sends it; no offset claimed until all are acked.
                mark = tracking_progress(p, 0, folded[p])
                futures.append(sender.send(transitions, value=encode_event(mark), partition=p))
        sender.flush(timeout=120)
        for future in futures:
            future.get(timeout=30)
        if tracking_marks:
            _send_marks(sender, settings, None)
    finally:
        if own:
            sender.close()


def _send_marks(sender: KafkaProducer, settings: Settings, at: datetime | None) -> None:
    """A mark per partition: folded to the child-events partition's end (and up to ``at``, if given)."""
    transitions = CASE_TRANSITIONS.name(settings)
    consumer = KafkaConsumer(**kafka_python_config(settings))
    try:
        facts = CHILD_EVENTS.name(settings)
        tps = [TopicPartition(facts, p) for p in sorted(consumer.partitions_for_topic(facts) or ())]
        ends = consumer.end_offsets(tps) if tps else {}
    finally:
        consumer.close()
    futures = []
    for p in range(len(sender.partitions_for(transitions) or ())):
        mark = tracking_progress(p, ends.get(TopicPartition(facts, p), 0), at)
        futures.append(sender.send(transitions, value=encode_event(mark), partition=p))
    sender.flush(timeout=60)
    for future in futures:
        future.get(timeout=30)


def tracking_caught_up(settings: Settings, at: datetime | None = None) -> None:
    """Stand in for a tracking that has folded every fact up to ``at`` (default: now, on the real clock) on
    every partition, and every child-events record published so far: a harness that publishes transitions
    itself says so, or escalation's horizon never reaches a due time (docs/ESCALATION.md). Transitions it
    publishes afterwards with older event times are late records to escalation, as they were before."""
    sender = replay_producer(settings)
    try:
        _send_marks(sender, settings, at or datetime.now(UTC))
    finally:
        sender.close()
