"""Background work of the referral service: the outbox relay onto the intake topic, and the consumer of
child facts that tells a sender its event was processed into a case."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import update
from sqlmodel import Session, col, select

from services.referral.metrics import EVENTS_PUBLISHED, OUTBOX_DEPTH
from services.referral.models import ReferralOutbox
from services.referral.service import Intake, table_of
from shared.events.envelope import utcnow
from shared.kafka import aiokafka_config
from shared.logs import get_logger
from shared.settings import Settings
from shared.topics import CHILD_EVENTS

log = get_logger(__name__)
RETRY_S = 1.0
LINGER_S = 0.02


async def _start_with_retry(make: Callable[[], Any], stop: asyncio.Event, what: str) -> Any | None:
    """Start a Kafka client, retrying while the broker is away; None if asked to stop first."""
    while not stop.is_set():
        client = make()
        try:
            await client.start()
            return client
        except Exception as exc:
            log.warning("kafka_unavailable", client=what, error=type(exc).__name__)
            await client.stop()
            await _wait(stop, RETRY_S)
    return None


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=timeout_s)


class OutboxRelay:
    """Drains ``referral_outbox`` in id order: sends a batch, waits for every ack (acks=all, idempotent
    producer), then marks the batch published. A crash between the two re-sends (at least once); consumers
    are idempotent on event_id."""

    def __init__(self, settings: Settings, intake: Intake, batch: int = 500) -> None:
        self.settings = settings
        self.intake = intake
        self.batch = batch
        self.wakeup = asyncio.Event()

    def _load(self) -> list[ReferralOutbox]:
        with Session(self.intake.engine) as session:
            stmt = (
                select(ReferralOutbox)
                .where(col(ReferralOutbox.published_at).is_(None))
                .order_by(col(ReferralOutbox.id))
                .limit(self.batch)
            )
            return list(session.exec(stmt).all())

    def _mark(self, ids: list[int]) -> None:
        table = table_of(ReferralOutbox)
        with self.intake.write_lock, self.intake.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id.in_(ids)).values(published_at=utcnow()))

    async def relay_once(self, producer: AIOKafkaProducer) -> int:
        rows = await asyncio.to_thread(self._load)
        if not rows:
            return 0
        acks: list[Awaitable[Any]] = []
        for row in rows:
            key = row.key.encode() if row.key else None
            acks.append(await producer.send(row.topic, row.value, key=key))
        await asyncio.gather(*acks)
        await asyncio.to_thread(self._mark, [r.id for r in rows if r.id is not None])
        EVENTS_PUBLISHED.inc(len(rows))
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        def make() -> AIOKafkaProducer:
            return AIOKafkaProducer(
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=15000,
                **aiokafka_config(self.settings),
            )

        producer = await _start_with_retry(make, stop, "outbox-producer")
        if producer is None:
            return
        gauge_due = 0.0
        try:
            while not stop.is_set():
                self.wakeup.clear()
                try:
                    published = await self.relay_once(producer)
                    if time.monotonic() >= gauge_due:
                        OUTBOX_DEPTH.set(await asyncio.to_thread(self.intake.outbox_depth))
                        gauge_due = time.monotonic() + 1.0
                except Exception as exc:
                    log.warning("outbox_relay_failed", error=type(exc).__name__)
                    # A failed batch can leave the idempotent producer unusable for good (after a broker
                    # restart: OutOfOrderSequenceNumber on every later send). Start a fresh one (new producer
                    # id); the unmarked rows are sent again and consumers deduplicate them by event_id.
                    await producer.stop()
                    producer = await _start_with_retry(make, stop, "outbox-producer")
                    if producer is None:
                        return
                    await _wait(stop, RETRY_S)
                    continue
                if published < self.batch:
                    await _wait(self.wakeup, 0.5)
                    # Let a burst of single submissions gather: one cycle (load, send, mark) for many rows.
                    await _wait(stop, LINGER_S)
        finally:
            if producer is not None:  # None: asked to stop while starting a fresh producer
                await producer.stop()


def child_facts(values: list[bytes]) -> dict[str, str]:
    """event_id -> child_id of the child-fact events among these records (other events are not ours)."""
    facts: dict[str, str] = {}
    for value in values:
        try:
            data = orjson.loads(value)
            if data.get("event_type") == "child-fact":
                facts[str(data["event_id"])] = str(data["payload"]["child_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue  # not a record this service can read: tracking dead-letters its own output, not us
    return facts


async def track_processed(settings: Settings, intake: Intake, stop: asyncio.Event) -> None:
    """Consume cme.child-events.v1 and mark the submissions tracking has resolved to a child."""
    consumer = await _start_with_retry(
        lambda: AIOKafkaConsumer(
            CHILD_EVENTS.name(settings),
            group_id=f"{settings.topic_prefix}cme-referral-status",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **aiokafka_config(settings),
        ),
        stop,
        "status-consumer",
    )
    if consumer is None:
        return
    try:
        while not stop.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                values = [r.value for records in batches.values() for r in records if r.value is not None]
                if values:
                    await asyncio.to_thread(intake.mark_processed, child_facts(values))
                if batches:
                    await consumer.commit()
            except Exception as exc:
                log.warning("status_consumer_failed", error=type(exc).__name__)
                await _wait(stop, RETRY_S)
    finally:
        await consumer.stop()
