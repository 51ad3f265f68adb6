"""The background half of the service: the escalation consumer, the dispatcher (``dispatcher``) and the outbox
relay, started together by ``NotifyWorker``.

The escalation consumer takes one database transaction per record, offsets committed after it, on the shared
consumer loop and its dead-letter policy (``shared.consumer``). A crash after the transaction and before the
commit redelivers the record; the handler is idempotent (processed event ids, the alert's unique step, the
ledger's unique delivery tuple), so nothing is doubled. A record that cannot be decoded is poison:
dead-lettered (through the outbox, in its own transaction) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.engine import Engine

from services.notify.channels.base import ChannelSender
from services.notify.channels.email_smtp import SmtpSender
from services.notify.channels.govuk_notify import GovukNotifySender
from services.notify.channels.webhook import WebhookSender
from services.notify.dispatcher import AfterSend, Dispatcher
from services.notify.models import Channel, NotifyOutbox
from services.notify.service import SERVICE, Outcome, SourceRecord, handle_escalation
from services.notify.settings import NotifySettings
from shared.consumer import ConsumerLoop, Record, add_dead_letter, new_consumer, outbox_dead_letter
from shared.db import session_scope
from shared.events.catalogue import decode_event
from shared.events.envelope import utcnow
from shared.events.internal import Escalation
from shared.kafka import ensure_topics
from shared.logs import bind_event, get_logger
from shared.outbox import OutboxRelay, new_producer
from shared.topics import ALERT_ACKS, DEAD_LETTER, ESCALATIONS

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

    @property
    def last_turn(self) -> float | None:
        return self._loop.last_turn

    async def _handle(self, records: Sequence[Record]) -> None:
        if len(records) == 1:
            await asyncio.to_thread(self.handle_record, records[0])
        else:
            await asyncio.to_thread(self.handle_records, list(records))

    def handle_records(self, records: list[Record]) -> list[Outcome]:
        """A partition's records in order, in one transaction (a step's alert and ledger rows, as one record
        alone writes them; a redelivered record is a no-op). Any failure, an undecodable record's included,
        rolls the batch back and the loop goes one record at a time (``handle_record``), so only the failing
        record is retried or dead-lettered."""
        read: list[tuple[SourceRecord, Escalation]] = []
        for record in records:
            event = decode_event(record.value)
            if not isinstance(event, Escalation):
                raise TypeError(f"unexpected event type {event.event_type} on {record.topic}")
            source = SourceRecord(record.topic, record.partition, record.offset, record.key, record.value)
            read.append((source, event))
        now = utcnow()
        with session_scope(self._engine) as session:
            outcomes = [
                handle_escalation(session, event, source, self._dead_letter_topic, now)
                for source, event in read
            ]
        for (_, event), outcome in zip(read, outcomes, strict=True):
            bind_event(event)
            self._log_handled(event, outcome)
        return outcomes

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
        self._log_handled(event, outcome)
        return outcome

    @staticmethod
    def _log_handled(event: Escalation, outcome: Outcome) -> None:
        log.info(
            "escalation_handled",
            outcome=outcome.action,
            deliveries=outcome.deliveries,
            escalation_id=str(event.payload.escalation_id),
            step_index=event.payload.step_index,
            action=event.payload.action.value,
            **event.log_fields(),
        )

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


def default_channels(settings: NotifySettings) -> dict[Channel, ChannelSender]:
    channels: dict[Channel, ChannelSender] = {
        Channel.SMTP: SmtpSender(settings),
        Channel.WEBHOOK: WebhookSender(settings),
    }
    if settings.notify_govuk_api_key is not None and settings.notify_govuk_template_id:
        channels[Channel.GOVUK_NOTIFY] = GovukNotifySender(settings)
    return channels


class NotifyWorker:
    def __init__(
        self,
        settings: NotifySettings,
        engine: Engine,
        channels: dict[Channel, ChannelSender] | None = None,
        after_send: AfterSend | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.channels = channels if channels is not None else default_channels(settings)
        self.dispatcher = Dispatcher(settings, engine, self.channels, DEAD_LETTER.name(settings), after_send)
        self.consumer = EscalationConsumer(settings, engine, on_alerted=self.dispatcher.wake.set)
        self.relay = OutboxRelay(engine, NotifyOutbox, lambda: new_producer(settings, "cme-notify"))
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self, consume: bool = True, dispatch: bool = True, relay: bool = True) -> None:
        self._stop.clear()
        await asyncio.to_thread(ensure_topics, self.settings, (ESCALATIONS, ALERT_ACKS, DEAD_LETTER))
        if relay:
            self._tasks.append(
                self._watch(asyncio.create_task(self.relay.run(self._stop), name="outbox-relay"))
            )
        if consume:
            await self.consumer.start()
            self._tasks.append(
                self._watch(asyncio.create_task(self.consumer.run(self._stop), name="escalation-consumer"))
            )
        if dispatch:
            self._tasks.append(
                self._watch(asyncio.create_task(self.dispatcher.run(self._stop), name="dispatcher"))
            )
        log.info("notify_worker_started", consume=consume, dispatch=dispatch, relay=relay)

    def _watch(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """A background loop that ends before ``stop`` says why in the log (readiness then reports it)."""

        def ended(done: asyncio.Task[Any]) -> None:
            if self._stop.is_set() or done.cancelled():
                return
            error = done.exception()
            log.error(
                "background_loop_stopped",
                loop=done.get_name(),
                error_type=type(error).__name__ if error else None,
                error=str(error)[:200] if error else None,
            )

        task.add_done_callback(ended)
        return task

    def turns(self) -> dict[str, float | None]:
        """Each loop's latest turn (liveness, ``shared.ops.loops_turning``): the consumer, the dispatcher
        that sends every alert, and the relay. None: not running here."""
        return {
            "escalation-consumer": self.consumer.last_turn,
            "dispatcher": self.dispatcher.last_turn,
            "outbox-relay": self.relay.last_turn,
        }

    def failed_task(self) -> str | None:
        """The name of a background loop that has died (readiness reports it), or None."""
        if self._stop.is_set():
            return None
        for task in self._tasks:
            if task.done():
                return task.get_name()
        return None

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()
        await self.consumer.stop()
        for channel in self.channels.values():
            await channel.aclose()
        log.info("notify_worker_stopped")
