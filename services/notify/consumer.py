"""The escalation consumer: one database transaction per record, offsets committed after it, on the shared
consumer loop and its dead-letter policy (``shared.consumer``).

A crash after the transaction and before the commit redelivers the record; the handler is idempotent
(processed event ids, the alert's unique step, the ledger's unique delivery tuple), so nothing is doubled.
A record that cannot be decoded is poison: dead-lettered (through the outbox, in its own transaction) at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import ConsumerRecord
from sqlalchemy.engine import Engine

from services.notify.config import NotifySettings
from services.notify.models import NotifyOutbox
from services.notify.service import SERVICE, Outcome, SourceRecord, handle_escalation
from shared.consumer import ConsumerLoop, Record, add_dead_letter, new_consumer, outbox_dead_letter
from shared.db import session_scope
from shared.events.catalogue import decode_event
from shared.events.envelope import utcnow
from shared.events.internal import Escalation
from shared.logs import bind_event, get_logger
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
        self._loop = ConsumerLoop(
            "escalation-consumer",
            lambda: new_consumer(settings, [self._topic], group_id(settings), "cme-notify"),
            self._handle,
            outbox_dead_letter(engine, NotifyOutbox, self._dead_letter_topic, SERVICE),
            after_poll=on_alerted,
        )

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def run(self, stop: asyncio.Event) -> None:
        await self._loop.run(stop)

    async def _handle(self, records: Sequence[Record]) -> None:
        # One transaction per record, as before batching: a redelivered record is a no-op.
        for record in records:
            await asyncio.to_thread(self.handle_record, record)

    def handle_record(self, record: ConsumerRecord | Record) -> Outcome:  # type: ignore[type-arg]
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
        record = Record(source.topic, source.partition, source.offset, source.key, source.value)
        with session_scope(self._engine) as session:
            add_dead_letter(session, NotifyOutbox, self._dead_letter_topic, SERVICE, record, exc, 1)
        log.error(
            "escalation_dead_lettered",
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            error_type=type(exc).__name__,
        )
