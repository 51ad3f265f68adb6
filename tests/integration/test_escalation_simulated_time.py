"""Simulated time on the real broker and PostgreSQL: a child goes missing on Mon 3 Nov 2025; the alerts fire
on the expected school days, step up when nobody acknowledges, and stop when acknowledged or resolved."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.escalation.app import load_deps, prepare_database
from services.escalation.models import EscalationDeadline, EscalationRecord
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.worker import EscalationWorker
from shared.events.catalogue import decode_event, encode_event
from shared.events.envelope import Envelope
from shared.events.internal import AckAction, CaseState, Escalation
from shared.settings import Settings
from shared.topics import ALERT_ACKS, CASE_TRANSITIONS, ESCALATIONS
from tests.support.escalation import ack, tracking_caught_up, transition
from tests.support.kafka import produce, read_topic, wait_until

pytestmark = pytest.mark.integration


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@dataclass
class Running:
    settings: EscalationSettings
    engine: Engine
    clock: SimulatedTime
    worker: EscalationWorker

    async def publish(self, topic: str, event: Envelope, child_id: uuid.UUID) -> None:
        await asyncio.to_thread(
            produce, self.settings, topic, [(str(child_id).encode(), encode_event(event))]
        )

    async def escalations(self, expect: int) -> list[Escalation]:
        records = await asyncio.to_thread(
            read_topic, self.settings, ESCALATIONS.name(self.settings), expect, 30.0
        )
        events = [decode_event(r.value) for r in records]
        return sorted(
            (e for e in events if isinstance(e, Escalation)),
            key=lambda e: (e.occurred_at, e.payload.step_index),
        )

    async def move_time(self, moment: datetime) -> int:
        """Set simulated time and run a due-check now (the background timer also runs: counts of 0 are exact,
        anything else may have been fired by it a moment earlier)."""
        self.clock.set(moment)
        return await self.worker.run_due_check()

    def escalation(self, escalation_id: uuid.UUID) -> EscalationRecord | None:
        with Session(self.engine) as session:
            return session.get(EscalationRecord, str(escalation_id))


@pytest.fixture
async def running(pg_settings: Settings) -> AsyncIterator[Running]:
    settings = EscalationSettings(**{**pg_settings.model_dump(), "escalation_tick_s": 0.2})
    engine = await asyncio.to_thread(prepare_database, settings)
    clock = SimulatedTime(utc(2025, 11, 3, 8, 0))
    worker = EscalationWorker(settings, engine, load_deps(settings), clock)
    await worker.start()
    await asyncio.to_thread(tracking_caught_up, settings)  # no tracking here: its mark, caught up
    try:
        yield Running(settings, engine, clock, worker)
    finally:
        await worker.stop()
        engine.dispose()


def brief(events: list[Escalation]) -> list[tuple[str, str, int, datetime]]:
    return [
        (e.payload.action.value, e.payload.level.value, e.payload.step_index, e.occurred_at) for e in events
    ]


async def wait_for(predicate: object, what: str) -> None:
    await asyncio.to_thread(wait_until, predicate, 30.0, 0.1, what)


async def test_missing_child_alerts_step_up_and_stop_when_acknowledged(running: Running) -> None:
    child = uuid.uuid4()
    transitions = CASE_TRANSITIONS.name(running.settings)
    await running.publish(
        transitions, transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10, 0)), child
    )
    # The immediate rule fires once simulated time reaches the event time, not before.
    await wait_for(lambda: _pending_rules(running) == 1, "clock started")
    assert await running.move_time(utc(2025, 11, 3, 9, 59)) == 0
    await running.move_time(utc(2025, 11, 3, 10, 0))
    events = await running.escalations(1)
    assert brief(events) == [("raised", "caseworker", 0, utc(2025, 11, 3, 10, 0))]
    assert events[0].payload.next_step_due_at == utc(2025, 11, 10, 23, 59, 59)
    # A week of simulated time: nothing until the end of the 5th school day (Mon 10 Nov).
    assert await running.move_time(utc(2025, 11, 10, 23, 59)) == 0
    await running.move_time(utc(2025, 11, 11, 0, 0))  # the background timer may fire it first
    events = await running.escalations(2)
    assert brief(events)[-1] == ("stepped_up", "senior_cme_officer", 1, utc(2025, 11, 10, 23, 59, 59))
    escalation_id = events[0].payload.escalation_id
    await running.publish(
        ALERT_ACKS.name(running.settings), ack(escalation_id, child, 1, AckAction.ACKNOWLEDGED), child
    )
    await wait_for(
        lambda: (e := running.escalation(escalation_id)) and e.status == "acknowledged", "acknowledged"
    )
    # The social care step (end of Mon 17 Nov) never comes. The case, still open, comes back to its
    # caseworker for review 10 school days after the acknowledgement (Tue 11 Nov): the end of Tue 25 Nov.
    assert await running.move_time(utc(2025, 11, 25, 23, 59)) == 0
    await running.move_time(utc(2025, 12, 1, 9, 0))
    events = await running.escalations(3)
    assert [e.payload.escalation_id for e in events].count(escalation_id) == 2
    review = events[-1].payload
    assert (review.rule_id, review.action.value, review.level.value) == (
        "open_case_review",
        "raised",
        "caseworker",
    )
    assert events[-1].occurred_at == utc(2025, 11, 25, 23, 59, 59)


async def test_resolution_stops_the_ladder(running: Running) -> None:
    child = uuid.uuid4()
    transitions = CASE_TRANSITIONS.name(running.settings)
    await running.move_time(utc(2025, 11, 3, 10, 0))
    await running.publish(
        transitions, transition(child, CaseState.MISSING_EDUCATION, utc(2025, 11, 3, 10, 0)), child
    )
    await wait_for(lambda: _pending_rules(running) == 1, "clock started")
    # 10 school days from Mon 3 Nov: the end of Mon 17 Nov.
    assert await running.move_time(utc(2025, 11, 17, 23, 59)) == 0
    await running.move_time(utc(2025, 11, 18, 8, 0))
    events = await running.escalations(1)
    assert brief(events) == [("raised", "caseworker", 0, utc(2025, 11, 17, 23, 59, 59))]
    placed = transition(
        child, CaseState.IN_EDUCATION, utc(2025, 11, 19, 9, 0), from_state=CaseState.MISSING_EDUCATION
    )
    running.clock.set(utc(2025, 11, 19, 9, 0))
    await running.publish(transitions, placed, child)
    events = await running.escalations(2)
    assert brief(events)[-1][:3] == ("cancelled", "caseworker", 0)
    assert events[-1].payload.reason_code == "case_resolved:in_education"
    assert await running.move_time(utc(2026, 2, 1)) == 0
    assert len(await running.escalations(2)) == 2


def _pending_rules(running: Running) -> int:
    with Session(running.engine) as session:
        return len(
            session.exec(select(EscalationDeadline.id).where(EscalationDeadline.status == "pending")).all()
        )
