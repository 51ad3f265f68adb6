"""The stale alert that tracking's mark prevents (docs/ESCALATION.md, "Tracking's lag in the watermark"), with
the real tracking worker as a process and escalation on simulated time, on the real broker and PostgreSQL.

A child leaves the roll (3 Nov 2025): missing education, a 10-school-day clock. Tracking stops. A fact that
the child was registered at a school on 10 Nov reaches the child-events topic (escalation reads it there)
while tracking is down, and the clock falls due. Escalation has read both of its inputs to their end, but
tracking has not folded the registration into the transition that ends the episode: the clock waits (without
the mark it fired, alerting about a child already back in school). Tracking comes back, folds the fact, and
the clock is ended by the registration before its due time: nobody is alerted."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from devtools.samples import child
from services.escalation.app import load_deps, prepare_database
from services.escalation.models import (
    EscalationDeadline,
    EscalationProcessedEvent,
    EscalationRecord,
    EscalationWatermark,
)
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.watermarks import tracking_mark_topic
from services.escalation.worker import EscalationWorker
from services.tracking.identity import Resolution
from services.tracking.stream.identity_agent import child_fact
from shared.events import encode_event
from shared.events.internal import MatchKind
from shared.topics import CHILD_EVENTS
from tests.e2e.tracking_support import event, make_settings, send, tracking_worker, wait_state
from tests.support.kafka import produce, wait_until

pytestmark = pytest.mark.e2e

RULE = "missing_education_no_outcome"
START = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)


async def test_a_due_clock_waits_while_tracking_is_down_and_a_fact_it_has_not_folded_ends_it(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, postgres_url, tmp_path)
    esc_settings = EscalationSettings(**{**settings.model_dump(), "escalation_tick_s": 0.2})
    engine = await asyncio.to_thread(prepare_database, esc_settings)
    clock = SimulatedTime(START)
    worker = EscalationWorker(esc_settings, engine, load_deps(esc_settings), clock)
    await worker.start()

    def clock_of(child_id: str) -> EscalationDeadline | None:
        with Session(engine) as session:
            stmt = select(EscalationDeadline).where(
                EscalationDeadline.child_id == child_id, EscalationDeadline.rule_id == RULE
            )
            return session.exec(stmt).first()

    def tracking_mark(partition: int) -> datetime | None:
        with Session(engine) as session:
            row = session.get(
                EscalationWatermark, (tracking_mark_topic(CHILD_EVENTS.name(settings)), partition)
            )
            return None if row is None else row.watermark.astimezone(UTC)

    def read(event_id: uuid.UUID) -> bool:
        with Session(engine) as session:
            return session.get(EscalationProcessedEvent, str(event_id)) is not None

    def alerts(child_id: str) -> list[EscalationRecord]:
        with Session(engine) as session:
            stmt = select(EscalationRecord).where(
                EscalationRecord.child_id == child_id, EscalationRecord.rule_id == RULE
            )
            return list(session.exec(stmt).all())

    async def wait(predicate: object, what: str) -> None:
        await asyncio.to_thread(wait_until, predicate, 90, 0.1, what)

    try:
        kid = child(41, forename="Robin", surname="Lagging", date_of_birth="2013-04-09")
        left = event("pupil-left-roll", 41, 3, kid=kid)
        with tracking_worker(settings, tmp_path / "tracking-1.log"):
            await asyncio.to_thread(send, settings, [left])
            case = await asyncio.to_thread(wait_state, settings, left.event_id, "missing_education")
            child_id = case["child_id"]
            await wait(lambda: clock_of(child_id) is not None, "the 10-day clock started")
            started = clock_of(child_id)
            assert started is not None and started.status == "pending"
            # Tracking has folded everything: its mark is caught up at escalation's now.
            await wait(lambda: tracking_mark(started.partition) == START, "tracking's mark caught up")
        due = started.due_at.astimezone(UTC)

        # Tracking is down. Identity resolution had already put the registration on the child-events topic.
        registered = event("pupil-registered", 41, 10, kid=kid)
        fact = child_fact(registered, Resolution(child_id, MatchKind.EXACT, None, created=False))
        await asyncio.to_thread(
            produce, settings, CHILD_EVENTS.name(settings), [(child_id.encode(), encode_event(fact))]
        )
        clock.set(due + timedelta(seconds=30))  # due, and within the live window
        await wait(lambda: read(fact.event_id), "escalation read the registration")
        for _ in range(5):  # both of escalation's inputs read to their end: before the mark, the clock fired
            await worker.run_due_check()
        assert clock_of(child_id).status == "pending"  # type: ignore[union-attr]
        assert tracking_mark(started.partition) == START

        # Tracking comes back and folds the registration: the episode ended on 10 Nov, before the due time.
        with tracking_worker(settings, tmp_path / "tracking-2.log"):
            await asyncio.to_thread(wait_state, settings, left.event_id, "in_education", 2)
            await wait(lambda: clock_of(child_id).status != "pending", "the clock decided")  # type: ignore[union-attr]
            await wait(
                lambda: (tracking_mark(started.partition) or START) > START, "tracking's mark moved on"
            )
        assert clock_of(child_id).status == "cancelled"  # type: ignore[union-attr]
        assert alerts(child_id) == []  # nobody told about a child already back in school
    finally:
        await worker.stop()
        engine.dispose()
