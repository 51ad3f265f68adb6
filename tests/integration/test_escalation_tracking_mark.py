"""Tracking's lag in escalation's horizon, on the real broker and PostgreSQL (docs/ESCALATION.md,
"Tracking's lag in the watermark"): children whose whereabouts are unknown, on the two partitions; tracking
has folded one partition to its end but is held back on the other, where a child fact is still to fold.
Escalation reads both of its input topics to their end: the clock on the caught-up partition fires; on the
held partition, the clock of an episode that began five minutes ago waits (without tracking's mark it fires:
escalation's own inputs are caught up), and fires once tracking's mark reaches the partition's end; the
clock of an episode that began 20 s ago fires at once, as nothing the backlog holds can end it
("Immediate deadlines and the urgent lane")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from kafka import KafkaProducer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.escalation.app import load_deps, prepare_database
from services.escalation.models import DeadlineKind, EscalationDeadline, EscalationWatermark
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.watermarks import tracking_mark_topic
from services.escalation.worker import EscalationWorker
from shared.events.catalogue import encode_event
from shared.events.internal import CaseState, tracking_progress
from shared.kafka import kafka_python_config
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS
from tests.support.escalation import child_fact, partition_of, transition
from tests.support.kafka import produce, wait_until

pytestmark = pytest.mark.integration

MISSING_AT = datetime(2025, 11, 3, 10, 0, tzinfo=UTC)
NOW = MISSING_AT + timedelta(seconds=20)  # the immediate alert is due: live, within the window
HELD_AT = NOW - timedelta(minutes=5)  # an episode older than the live window: it waits for a backlog


@dataclass
class Running:
    settings: EscalationSettings
    engine: Engine
    worker: EscalationWorker


@pytest.fixture
async def running(pg_settings: Settings) -> AsyncIterator[Running]:
    settings = EscalationSettings(**{**pg_settings.model_dump(), "escalation_tick_s": 0.2})
    engine = await asyncio.to_thread(prepare_database, settings)
    worker = EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(NOW))
    await worker.start()
    try:
        yield Running(settings, engine, worker)
    finally:
        await worker.stop()
        engine.dispose()


def child_on(partition: int, partitions: int) -> uuid.UUID:
    while partition_of(str(child := uuid.uuid4()).encode(), partitions) != partition:
        pass
    return child


def clock_status(engine: Engine, child: uuid.UUID) -> str | None:
    with Session(engine) as session:
        stmt = select(EscalationDeadline.status).where(
            EscalationDeadline.child_id == str(child), EscalationDeadline.kind == DeadlineKind.RULE
        )
        return session.exec(stmt).first()


def read_to_the_end(run: Running, partition: int) -> bool:
    """Escalation has read both topics of ``partition`` to their end (each caught up at now), and tracking's
    mark of it."""
    s = run.settings
    topics = [CASE_TRANSITIONS.name(s), CHILD_EVENTS.name(s), tracking_mark_topic(CHILD_EVENTS.name(s))]
    with Session(run.engine) as session:
        rows = session.exec(
            select(EscalationWatermark).where(
                col(EscalationWatermark.topic).in_(topics), EscalationWatermark.partition == partition
            )
        ).all()
    found = {r.topic: r for r in rows}
    return (
        len(found) == 3
        and found[CHILD_EVENTS.name(s)].watermark >= NOW
        and found[CASE_TRANSITIONS.name(s)].watermark >= MISSING_AT
    )


def mark(settings: Settings, partition: int, next_offset: int, folded_to: datetime | None) -> None:
    """What tracking's case agent sends (``services.tracking.stream.progress``)."""
    producer = KafkaProducer(acks="all", **kafka_python_config(settings))
    try:
        value = encode_event(tracking_progress(partition, next_offset, folded_to))
        producer.send(CASE_TRANSITIONS.name(settings), value=value, partition=partition).get(timeout=30)
    finally:
        producer.close()


async def test_a_due_clock_waits_for_tracking_held_back_on_its_partition(running: Running) -> None:
    s = running.settings
    held, fresh, caught_up = (
        child_on(0, s.topic_partitions),
        child_on(0, s.topic_partitions),
        child_on(1, s.topic_partitions),
    )
    transitions, facts = CASE_TRANSITIONS.name(s), CHILD_EVENTS.name(s)
    for child, at in ((held, HELD_AT), (fresh, MISSING_AT), (caught_up, MISSING_AT)):
        key = str(child).encode()
        missing = transition(child, CaseState.WHEREABOUTS_UNKNOWN, at)
        await asyncio.to_thread(produce, s, transitions, [(key, encode_event(missing))])
    # A fact about the held child that tracking has not folded yet (its offset 0 on partition 0).
    fact = child_fact(held, "whereabouts-unknown", date(2025, 11, 3))
    await asyncio.to_thread(produce, s, facts, [(str(held).encode(), encode_event(fact))])
    # Tracking: partition 1 folded to its end (empty); partition 0 up to a minute before the held child's
    # episode, not its record: a backlog (more than the live window behind now).
    await asyncio.to_thread(mark, s, 1, 0, None)
    await asyncio.to_thread(mark, s, 0, 0, HELD_AT - timedelta(minutes=1))

    await asyncio.to_thread(wait_until, lambda: clock_status(running.engine, caught_up) == "fired", 30, 0.1,
                            "the caught-up partition's clock fired")  # fmt: skip
    await asyncio.to_thread(wait_until, lambda: read_to_the_end(running, 0), 30, 0.1, "partition 0 read")
    for _ in range(5):  # the due-checks after both inputs were read to their end decide nothing there
        await running.worker.run_due_check()
    assert clock_status(running.engine, held) == "pending"
    assert clock_status(running.engine, fresh) == "fired"  # began 20 s ago: not held by the backlog

    # Tracking folds the fact: its mark reaches the partition's end, and the clock is decided.
    await asyncio.to_thread(mark, s, 0, 1, fact.occurred_at)
    await asyncio.to_thread(wait_until, lambda: clock_status(running.engine, held) == "fired", 30, 0.1,
                            "the held partition's clock fired")  # fmt: skip
