"""The shared consumer loop's dead-letter policy, one test per decision, on the real broker: a transient error
is retried until it passes (nothing dead-lettered), a poison record is dead-lettered once with its reason and
the partition keeps flowing, and a record that keeps failing is dead-lettered after the attempts allowed.

Dead letters go the way every service sends them: into an outbox table, published by the shared relay onto the
real dead-letter topic, and read back from there."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, select

from services.escalation.models import EscalationOutbox
from shared.consumer import MAX_ATTEMPTS, ConsumerLoop, Record, new_consumer, outbox_dead_letter
from shared.db import make_engine
from shared.deadletter_replay import read_dead_letters
from shared.events.catalogue import decode_event
from shared.events.internal import DeadLetter
from shared.outbox import OutboxRelay, new_producer
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, DEAD_LETTER
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration

KEY = (
    b"one-child"  # every record on one partition: the order and the flow of that partition are what is tested
)


@dataclass
class Handler:
    """Records what it handled; ``fail`` says which error a value raises, and how many times."""

    fail: dict[bytes, tuple[Callable[[], BaseException], int]] = field(default_factory=dict)
    handled: list[bytes] = field(default_factory=list)
    tries: dict[bytes, int] = field(default_factory=dict)

    async def __call__(self, records: Sequence[Record]) -> None:
        for record in records:  # a batch is all or nothing, as one transaction would be
            failing = self.fail.get(record.value)
            if failing is not None:
                self.tries[record.value] = self.tries.get(record.value, 0) + 1
                make, times = failing
                if self.tries[record.value] <= times:
                    raise make()
        self.handled.extend(r.value for r in records)


@dataclass
class Running:
    settings: Settings
    handler: Handler
    engine: Engine

    def queued_dead_letters(self) -> int:
        with Session(self.engine) as session:
            return len(session.exec(select(EscalationOutbox)).all())


@pytest.fixture
async def running(kafka_settings: Settings) -> AsyncIterator[Running]:
    settings = kafka_settings
    engine = make_engine(settings.database_url)
    SQLModel.metadata.create_all(engine, tables=[EscalationOutbox.__table__])  # type: ignore[attr-defined]
    handler = Handler()
    loop = ConsumerLoop(
        "test-consumer",
        lambda: new_consumer(
            settings, [CASE_TRANSITIONS.name(settings)], f"{settings.topic_prefix}loop-test", "test"
        ),
        handler,
        outbox_dead_letter(engine, EscalationOutbox, DEAD_LETTER.name(settings), "test"),
        max_attempts=3,
    )
    relay = OutboxRelay(engine, EscalationOutbox, lambda: new_producer(settings, "test"), idle_s=0.05)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)), asyncio.create_task(relay.run(stop))]
    try:
        yield Running(settings, handler, engine)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await loop.stop()
        engine.dispose()


async def until(predicate: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def send(settings: Settings, *values: bytes) -> None:
    produce(settings, CASE_TRANSITIONS.name(settings), [(KEY, v) for v in values])


async def dead_letters(settings: Settings, expect: int) -> list[DeadLetter]:
    """The records on the dead-letter topic (raw: a second copy of one dead letter would show)."""
    records = await asyncio.to_thread(read_topic, settings, DEAD_LETTER.name(settings), expect)
    letters = [decode_event(r.value) for r in records]
    assert all(isinstance(d, DeadLetter) for d in letters)
    return letters  # type: ignore[return-value]


async def test_a_transient_error_is_retried_until_it_passes(running: Running) -> None:
    # The database is away for more tries than the attempts allowed: an outage never dead-letters a record.
    running.handler.fail[b"a"] = (lambda: OperationalError("SELECT 1", {}, Exception("db away")), 4)
    send(running.settings, b"a", b"b")
    await until(lambda: running.handler.handled[-2:] == [b"a", b"b"], "a then b handled")
    assert running.handler.tries[b"a"] == 5 and running.handler.handled.count(b"a") == 1
    assert running.queued_dead_letters() == 0
    assert read_dead_letters(running.settings, timeout_s=1.0) == []


async def test_a_poison_record_is_dead_lettered_once_with_its_reason_and_the_partition_flows(
    running: Running,
) -> None:
    running.handler.fail[b"poison"] = (lambda: ValueError("not an event"), 1_000)
    send(running.settings, b"before", b"poison", b"after")
    await until(lambda: b"after" in running.handler.handled, "the record behind the poison one handled")
    assert running.handler.handled == [b"before", b"after"]
    # Tried once in its batch and once alone: poison is never retried.
    assert running.handler.tries[b"poison"] == 2
    (dead,) = await dead_letters(running.settings, 1)
    assert dead.payload.error_type == "ValueError" and dead.payload.error == "not an event"
    assert dead.payload.attempts == 1 and dead.payload.service == "test"
    assert base64.b64decode(dead.payload.value_base64) == b"poison"
    assert dead.payload.original_topic == CASE_TRANSITIONS.name(running.settings)
    # Once: more records later bring no second dead letter.
    send(running.settings, b"later")
    await until(lambda: b"later" in running.handler.handled, "a later record handled")
    assert running.queued_dead_letters() == 1
    assert len(await dead_letters(running.settings, 1)) == 1


async def test_a_record_that_keeps_failing_is_dead_lettered_after_the_attempts_allowed(
    running: Running,
) -> None:
    running.handler.fail[b"bug"] = (lambda: RuntimeError("a bug"), 1_000)
    send(running.settings, b"bug", b"next")
    await until(lambda: b"next" in running.handler.handled, "the record behind the failing one handled")
    (dead,) = await dead_letters(running.settings, 1)
    assert dead.payload.error_type == "RuntimeError" and dead.payload.attempts == 3
    assert running.handler.handled == [b"next"]


def test_the_default_attempts_are_five() -> None:
    assert MAX_ATTEMPTS == 5
