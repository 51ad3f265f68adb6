"""Background work of the referral service: the outbox relay onto the intake topic, and the consumer of
child facts that tells a sender its event was processed into a case."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer

from services.referral.metrics import EVENTS_PUBLISHED, OUTBOX_DEPTH
from services.referral.models import ReferralOutbox
from services.referral.service import Intake
from shared.kafka import RETRY_S, aiokafka_config, start_with_retry, wait_for_event
from shared.logs import get_logger
from shared.outbox import OutboxRelay, new_producer
from shared.settings import Settings
from shared.topics import CHILD_EVENTS

log = get_logger(__name__)


def outbox_relay(settings: Settings, intake: Intake) -> OutboxRelay:
    """The shared outbox relay on ``referral_outbox``, under the intake's write lock (SQLite's one writer)."""
    return OutboxRelay(
        intake.engine,
        ReferralOutbox,
        lambda: new_producer(settings, "cme-referral"),
        idle_s=0.5,  # the API sets ``wakeup`` on every accepted submission
        write_lock=intake.write_lock,
        on_published=EVENTS_PUBLISHED.inc,
        on_depth=OUTBOX_DEPTH.set,
    )


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
    consumer = await start_with_retry(
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
                await wait_for_event(stop, RETRY_S)
    finally:
        await consumer.stop()
