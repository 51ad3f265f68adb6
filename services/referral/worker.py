"""Background work of the referral service: the outbox relay onto the intake topic, and the consumer of
child facts that tells a sender its event was processed into a case."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from services.referral.metrics import EVENTS_PUBLISHED, OUTBOX_DEPTH
from services.referral.models import ReferralOutbox
from services.referral.service import Intake
from services.referral.settings import ReferralSettings
from shared.consumer import ConsumerLoop, Record, new_consumer, outbox_dead_letter
from shared.outbox import OutboxRelay, new_producer
from shared.topics import CHILD_EVENTS, DEAD_LETTER


def outbox_relay(settings: ReferralSettings, intake: Intake) -> OutboxRelay:
    """The shared outbox relay on ``referral_outbox``, under the intake's write lock (SQLite's one writer)."""
    return OutboxRelay(
        intake.engine,
        ReferralOutbox,
        lambda: new_producer(settings, "cme-referral"),
        idle_s=settings.referral_relay_idle_s,  # the API sets ``wakeup`` on every accepted submission
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


def status_consumer(settings: ReferralSettings, intake: Intake) -> ConsumerLoop:
    """The consumer of cme.child-events.v1 that marks the submissions tracking has resolved to a child (on the
    shared consumer loop: a database outage is retried; records that are not ours are skipped, not
    dead-lettered)."""

    async def handle(records: Sequence[Record]) -> None:
        await asyncio.to_thread(intake.mark_processed, child_facts([r.value for r in records if r.value]))

    return ConsumerLoop(
        "status-consumer",
        lambda: new_consumer(
            settings,
            [CHILD_EVENTS.name(settings)],
            f"{settings.topic_prefix}cme-referral-status",
            "cme-referral",
        ),
        handle,
        outbox_dead_letter(intake.engine, ReferralOutbox, DEAD_LETTER.name(settings), "referral"),
        max_records=settings.referral_status_batch,
    )


async def track_processed(loop: ConsumerLoop, stop: asyncio.Event) -> None:
    """Run the status consumer until ``stop``."""
    try:
        await loop.run(stop)
    finally:
        await loop.stop()
