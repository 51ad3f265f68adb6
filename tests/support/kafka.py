"""Kafka helpers for tests: produce and read back over real connections, waiting on conditions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from shared.kafka import kafka_python_config
from shared.settings import Settings


def produce(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(acks="all", enable_idempotence=True, **kafka_python_config(settings))
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def of_type(*event_types: str) -> Callable[[Any], bool]:
    """A ``read_topic`` filter: records whose value is an event of one of ``event_types``."""

    def keep(record: Any) -> bool:
        try:
            return json.loads(record.value).get("event_type") in event_types  # type: ignore[no-any-return]
        except (ValueError, TypeError, AttributeError):
            return False

    return keep


# The case transitions on cme.case-transitions.v1, without tracking's progress marks (docs/ESCALATION.md).
transitions_only = of_type("case-transition")


def read_topic(
    settings: Settings,
    topic: str,
    expect: int,
    timeout_s: float = 30.0,
    keep: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """Every record of a topic from the beginning: all that were on it when called, and at least ``expect``
    (waiting up to ``timeout_s`` for them to arrive). ``keep``: only the records it accepts are returned
    and counted (``transitions_only``: a topic that also carries other records, such as tracking's marks).

    Reads by assignment (no consumer group), so tests do not disturb the services' groups. It reads to the
    partitions' end offsets, not to a count: one poll returns at most ``max_poll_records``, and a reader that
    stopped at ``expect`` (``expect=0`` included) saw only the first one or two polls of a large topic.
    """
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_config(settings))
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps) if tps else {}
        records: list[Any] = []
        at_end = not ends
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(r for r in batch if keep is None or keep(r))
            at_end = all(consumer.position(tp) >= end for tp, end in ends.items())
            if at_end and len(records) >= expect:
                # One more short poll: a duplicate arriving just behind would otherwise go unseen.
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(r for r in batch if keep is None or keep(r))
                break
        # Fewer than expected is the caller's to assert; a part of what was there must not pass for all of it.
        assert at_end, f"read {len(records)} records of {topic}, not yet its end after {timeout_s:g}s"
        return records
    finally:
        consumer.close()


@dataclass(frozen=True)
class Pending:
    """A predicate's "not yet" that says what is still missing, so a timeout explains itself."""

    reason: str
    progress: int = 0  # how much is done so far: wait_while_progressing waits as long as it grows

    def __bool__(self) -> bool:
        return False


def wait_until(
    predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last value: {last!r})")


def wait_while_progressing(
    predicate: Any, stall_s: float, interval_s: float = 2.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, failing only when its ``Pending.progress`` has
    not grown for ``stall_s``: on a loaded machine a big run is slow, and only a stall is a failure."""
    last: Any = None
    best = -1
    stalled_since = time.monotonic()
    while True:
        last = predicate()
        if last:
            return last
        progress = last.progress if isinstance(last, Pending) else 0
        if progress > best:
            best, stalled_since = progress, time.monotonic()
        elif time.monotonic() - stalled_since > stall_s:
            raise AssertionError(f"no progress for {stall_s:.0f}s waiting for {what} (last value: {last!r})")
        time.sleep(interval_s)
