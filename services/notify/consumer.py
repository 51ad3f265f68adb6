"""The escalation consumer: one database transaction per record, then a manual offset commit.

A crash after the transaction and before the commit redelivers the record; the handler is idempotent
(processed event ids, the alert's unique step, the ledger's unique delivery tuple), so nothing is doubled.
A record that cannot be decoded is dead-lettered (through the outbox, in its own transaction) and skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy.engine import Engine

from services.notify.config import NotifySettings
from services.notify.models import NotifyOutbox
from services.notify.service import SERVICE, Outcome, SourceRecord, handle_escalation
from shared.db import session_scope
from shared.deadletter import dead_letter_for
from shared.events.catalogue import decode_event
from shared.events.envelope import utcnow
from shared.events.internal import Escalation
from shared.kafka import aiokafka_config
from shared.logs import bind_event, get_logger
from shared.outbox import add_to_outbox
from shared.topics import DEAD_LETTER, ESCALATIONS

log = get_logger(__name__)


def group_id(settings: NotifySettings) -> str:
    return f"{settings.topic_prefix}cme-notify"


class EscalationConsumer:
    def __init__(
        self, settings: NotifySettings, engine: Engine, on_alerted: Callable[[], None] | None = None
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._on_alerted = on_alerted
        self._topic = ESCALATIONS.name(settings)
        self._dead_letter_topic = DEAD_LETTER.name(settings)
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self._topic,
            group_id=group_id(self._settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="cme-notify",
            **aiokafka_config(self._settings),
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None, "start() first"
        while not stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=500, max_records=200)
            for tp, records in batches.items():
                for record in records:
                    try:
                        await asyncio.to_thread(self.handle_record, record)
                    except Exception:
                        # The database is unavailable (or similar): read the record again, later.
                        log.exception(
                            "escalation_handling_failed", partition=tp.partition, offset=record.offset
                        )
                        self._consumer.seek(tp, record.offset)
                        await asyncio.sleep(1.0)
                        break
                    # Commit after the transaction: at worst a record is handled twice, and that is a no-op.
                    await self._consumer.commit({TopicPartition(tp.topic, tp.partition): record.offset + 1})
            if batches and self._on_alerted is not None:
                self._on_alerted()

    def handle_record(self, record: ConsumerRecord) -> Outcome:  # type: ignore[type-arg]
        source = SourceRecord(record.topic, record.partition, record.offset, record.key, record.value)
        try:
            event = decode_event(record.value)
            bind_event(event)
            if not isinstance(event, Escalation):
                raise TypeError(f"unexpected event type {event.event_type} on {record.topic}")
        except Exception as exc:  # undecodable: keep it on the dead-letter topic, move on
            self._dead_letter(source, exc)
            return Outcome("dead_lettered")
        with session_scope(self._engine) as session:
            outcome = handle_escalation(session, event, source, self._dead_letter_topic, utcnow())
        log.info(
            "escalation_handled",
            outcome=outcome.action,
            deliveries=outcome.deliveries,
            escalation_id=str(event.payload.escalation_id),
            step_index=event.payload.step_index,
            action=event.payload.action.value,
            **event.log_fields(),
        )
        return outcome

    def _dead_letter(self, source: SourceRecord, exc: Exception) -> None:
        dead = dead_letter_for(
            service=SERVICE,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            key=source.key,
            value=source.value,
            error=exc,
        )
        with session_scope(self._engine) as session:
            add_to_outbox(
                session,
                NotifyOutbox,
                self._dead_letter_topic,
                source.key.decode(errors="replace") if source.key else None,
                dead,
            )
        log.error(
            "escalation_dead_lettered",
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            error_type=type(exc).__name__,
        )
