"""The ladder across two services on the real broker and PostgreSQL: the escalation service (simulated time)
raises and steps up, notify delivers each step by email and takes the acknowledgement back. An unacknowledged
alert climbs to children's social care; an acknowledged one stops."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.message import Message

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.escalation.app import load_deps
from services.escalation.app import prepare_database as prepare_escalation_db
from services.escalation.models import EscalationDeadline, EscalationOutbox, EscalationRecord
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.worker import EscalationWorker
from services.notify.app import create_app, prepare_database
from services.notify.models import NotifyProcessedEvent
from services.notify.worker import NotifyWorker
from shared.events import encode_event
from shared.events.internal import CaseState
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, ESCALATIONS
from tests.integration.test_notify_acks import DIRECTORY
from tests.integration.test_notify_support import SmtpSink, notify_settings, seed_directory
from tests.support.escalation import case_id_of, tracking_caught_up, transition
from tests.support.kafka import Pending, produce, wait_until

pytestmark = pytest.mark.integration

CASEWORKER = "jo.smith@la801.example.gov.uk"
SENIOR = "aisha.khan@la801.example.gov.uk"
MASH = "mash.duty@la801.example.gov.uk"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


class Stack:
    def __init__(self, pg_settings: Settings, smtp: SmtpSink) -> None:
        self.escalation_settings = EscalationSettings(
            **{**pg_settings.model_dump(), "escalation_tick_s": 0.2}
        )
        self.notify_settings = notify_settings(pg_settings, smtp)
        self.smtp = smtp
        self.clock = SimulatedTime(utc(2025, 11, 3, 8, 0))

    async def start(self) -> None:
        self.escalation_engine = await asyncio.to_thread(prepare_escalation_db, self.escalation_settings)
        self.notify_engine: Engine = await asyncio.to_thread(prepare_database, self.notify_settings)
        seed_directory(self.notify_engine, DIRECTORY)
        self.escalation = EscalationWorker(
            self.escalation_settings, self.escalation_engine, load_deps(self.escalation_settings), self.clock
        )
        self.notify = NotifyWorker(self.notify_settings, self.notify_engine)
        await self.escalation.start()
        await self.notify.start()
        # No tracking here: its mark, caught up (escalation's horizon waits for it).
        await asyncio.to_thread(tracking_caught_up, self.escalation_settings)

    async def stop(self) -> None:
        await self.notify.stop()
        await self.escalation.stop()
        self.notify_engine.dispose()
        self.escalation_engine.dispose()

    async def move_time(self, moment: datetime) -> None:
        self.clock.set(moment)
        await self.escalation.run_due_check()

    def emails_to(self, address: str) -> list[Message]:
        return self.smtp.to(address)

    def escalation_status(self, case_id: uuid.UUID) -> str | None:
        with Session(self.escalation_engine) as session:
            record = session.exec(
                select(EscalationRecord).where(EscalationRecord.case_id == str(case_id))
            ).first()
            return record.status if record else None

    def escalations_published(self) -> int:
        with Session(self.escalation_engine) as session:
            rows = session.exec(select(EscalationOutbox)).all()
            return sum(
                1 for r in rows if r.published_at is not None and r.topic.endswith(ESCALATIONS.base_name)
            )

    def escalations_seen(self) -> int:
        with Session(self.notify_engine) as session:
            return len(session.exec(select(NotifyProcessedEvent)).all())

    def pending_rules(self) -> int:
        with Session(self.escalation_engine) as session:
            stmt = select(EscalationDeadline.id).where(EscalationDeadline.status == "pending")
            return len(session.exec(stmt).all())


@pytest.fixture
async def stack(pg_settings: Settings, smtp: SmtpSink) -> AsyncIterator[Stack]:
    s = Stack(pg_settings, smtp)
    await s.start()
    yield s
    await s.stop()


async def wait_for(predicate: object, what: str) -> object:
    return await asyncio.to_thread(wait_until, predicate, 30.0, 0.1, what)


def body(message: Message) -> str:
    return message.get_payload(decode=True).decode()  # type: ignore[union-attr]


def for_case(messages: list[Message], case_id: uuid.UUID) -> list[Message]:
    return [m for m in messages if f"/cases/{case_id}" in body(m)]


async def test_unacknowledged_alert_climbs_the_ladder_and_acknowledged_one_stops(stack: Stack) -> None:
    acked_child, ignored_child = uuid.uuid4(), uuid.uuid4()
    acked_case, ignored_case = case_id_of(acked_child), case_id_of(ignored_child)
    topic = CASE_TRANSITIONS.name(stack.escalation_settings)
    produce(
        stack.escalation_settings,
        topic,
        [
            (
                str(child).encode(),
                encode_event(transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10))),
            )
            for child in (acked_child, ignored_child)
        ],
    )
    await wait_for(lambda: stack.pending_rules() == 2, "both clocks started")

    # Mon 3 Nov 10:00: the caseworker is alerted about both children.
    await stack.move_time(utc(2025, 11, 3, 10, 0))
    await wait_for(lambda: len(stack.emails_to(CASEWORKER)) == 2, "two caseworker emails")

    # Nobody acknowledges for 5 school days: both step up to the senior CME officer.
    await stack.move_time(utc(2025, 11, 11, 0, 0))
    await wait_for(lambda: len(stack.emails_to(SENIOR)) == 2, "two senior officer emails")

    # The senior officer acknowledges one child's alert with the link in the email.
    (message,) = for_case(stack.emails_to(SENIOR), acked_case)
    match = re.search(r"https://notify\.example\.gov\.uk(/v1/ack/\S+)", body(message))
    assert match
    app = create_app(stack.notify_settings, stack.notify_engine, run_worker=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://x") as client:
        assert (await client.post(match.group(1))).status_code == 200
    await wait_for(
        lambda: stack.escalation_status(acked_case) == "acknowledged", "the escalation service stops"
    )

    # 5 more school days (end of Mon 17 Nov): only the unacknowledged one reaches children's social care.
    await stack.move_time(utc(2025, 11, 18, 8, 0))
    await wait_for(lambda: stack.emails_to(MASH), "the MASH email")
    await stack.move_time(utc(2025, 12, 1, 9, 0))

    # Everything the escalation service published (2 raised, 3 stepped up) has reached notify, and no more.
    def all_escalations() -> bool | Pending:
        published, seen = stack.escalations_published(), stack.escalations_seen()
        # Says the counts when it times out (a bare False did not: seen once on a loaded machine).
        done = published == seen == 5
        return done or Pending(f"escalation published {published}, notify saw {seen}; 5 each")

    await wait_for(all_escalations, "all escalations")

    mash = stack.emails_to(MASH)
    assert len(mash) == 1 and for_case(mash, ignored_case) == mash
    assert sorted(m["To"] for m in for_case(stack.smtp.received(), acked_case)) == [SENIOR, CASEWORKER]
    assert len(stack.smtp.received()) == 5
    assert stack.escalation_status(ignored_case) == "open"
