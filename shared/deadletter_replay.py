"""``cme dead-letters list|replay``: read the dead-letter topic and re-submit a dead-lettered record.

A dead letter keeps the original record's bytes, key, topic, partition and offset (shared/deadletter.py).
Once the cause is fixed (a missing directory entry loaded, a handler corrected), ``replay`` publishes the
original bytes again, unchanged, to the original topic (or another one): the consumer sees the same event_id,
so a replay of something that was in fact handled is a no-op, and a replay that fails again is dead-lettered
again under a new dead-letter id (its offset differs). The replay itself is logged by dead-letter id, never
with the payload (which may carry personal data).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from shared.events.catalogue import decode_event
from shared.events.internal import DeadLetter
from shared.kafka import kafka_python_config
from shared.logs import get_logger
from shared.settings import Settings
from shared.topics import DEAD_LETTER

log = get_logger(__name__)


@dataclass(frozen=True)
class Replayed:
    dead_letter_id: str
    topic: str
    partition: int
    offset: int


def read_dead_letters(settings: Settings, idle_s: float = 1.0, timeout_s: float = 30.0) -> list[DeadLetter]:
    """Every dead letter on the topic, oldest first (per partition), read by assignment (no consumer group,
    so listing never moves anybody's offsets). Duplicates of one dead letter (an outbox relay that published
    twice) are returned once."""
    topic = DEAD_LETTER.name(settings)
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_config(settings))
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        letters: dict[str, DeadLetter] = {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=int(idle_s * 1000)).values():
                for record in batch:
                    try:
                        event = decode_event(record.value)
                    except Exception:  # noqa: S112 - not a dead letter: nothing to list or replay
                        continue
                    if isinstance(event, DeadLetter):
                        letters.setdefault(str(event.event_id), event)
        return list(letters.values())
    finally:
        consumer.close()


def find_dead_letter(settings: Settings, event_id: str) -> DeadLetter | None:
    return next((d for d in read_dead_letters(settings) if str(d.event_id) == event_id), None)


def replay(settings: Settings, letter: DeadLetter, to_topic: str | None = None) -> Replayed:
    """Publish the dead-lettered record's original key and bytes to its original topic (or ``to_topic``),
    and wait for the broker's acknowledgement (acks=all)."""
    p = letter.payload
    topic = to_topic or p.original_topic
    producer = KafkaProducer(acks="all", enable_idempotence=True, **kafka_python_config(settings))
    try:
        metadata = producer.send(
            topic,
            key=p.key.encode() if p.key is not None else None,
            value=base64.b64decode(p.value_base64),
        ).get(timeout=30)
    finally:
        producer.close()
    log.info(
        "dead_letter_replayed",
        dead_letter_id=str(letter.event_id),
        original_topic=p.original_topic,
        original_partition=p.partition,
        original_offset=p.offset,
        topic=topic,
        partition=metadata.partition,
        offset=metadata.offset,
    )
    return Replayed(str(letter.event_id), topic, metadata.partition, metadata.offset)


def format_dead_letter(letter: DeadLetter) -> str:
    """One line for the list: ids, where it came from and why, never the payload itself."""
    p = letter.payload
    return (
        f"{letter.event_id}  {letter.occurred_at.isoformat()}  service={p.service}  "
        f"from={p.original_topic}[{p.partition}]@{p.offset}  attempts={p.attempts}  "
        f"{_printable(p.error_type)}: {_printable(p.error)}"
    )


def _printable(text: str) -> str:
    # An error message can quote input: never let it forge extra lines or terminal escapes in the listing.
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
