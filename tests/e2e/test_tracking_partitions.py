"""Intake records on the "wrong" partition: a foreign producer (librdkafka, as kcat and most non-Java clients
use it) partitions keys with CRC32, the project's producers with murmur2 (the Java client's rule), so one
child's facts can arrive on two partitions of cme.intake.v1, in any order. Tracking must still end in the
right case: identity is resolved in the database (race-free across partitions), the resolved fact is
re-keyed by child_id onto cme.child-events.v1, and the case is the fold of the child's facts in event time.
The tracking worker runs as a real process on the real broker and PostgreSQL."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from kafka.partitioner.default import murmur2

from devtools.samples import child
from shared.events import encode_event
from shared.events.envelope import Envelope
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from shared.topics import INTAKE, intake_key
from tests.e2e.tracking_support import event, make_settings, query, send, tracking_worker, wait_state
from tests.support.kafka import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(
    kafka_bootstrap: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    url, cluster = postgres_server
    db = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}") if cluster else url
    tmp = tmp_path_factory.mktemp("partitions")
    settings = make_settings(kafka_bootstrap, db, tmp)  # two intake partitions
    with tracking_worker(settings, tmp / "worker.log"):
        yield settings


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Where the project's producers (kafka-python, aiokafka, the Java client) put a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random) for a non-empty key: CRC32 of the key. Used only
    to pick a test child; where records really go is what librdkafka reports."""
    return zlib.crc32(key) % partitions


def send_with_librdkafka(settings: Settings, events: list[Envelope]) -> list[int]:
    """Produce as a foreign client does: librdkafka with its default partitioner, keyed by the child's UPN.
    Returns the partition librdkafka chose for each record."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    chosen: list[int] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        chosen.append(int(msg.partition() or 0))

    for e in events:
        producer.produce(
            INTAKE.name(settings), key=intake_key(e), value=encode_event(e), on_delivery=delivered
        )
        producer.flush(30)
    assert len(chosen) == len(events)
    return chosen


def a_child_that_librdkafka_misplaces(settings: Settings, first_serial: int) -> tuple[int, dict[str, Any]]:
    """A child whose UPN librdkafka's CRC32 puts on another partition than murmur2 does."""
    for serial in range(first_serial, first_serial + 50):
        kid = child(serial)
        probe = event("whereabouts-unknown", serial, 10, kid=kid)
        key = intake_key(probe)
        if crc32_partition(key, settings.topic_partitions) != murmur2_partition(
            key, settings.topic_partitions
        ):
            return serial, kid
    raise AssertionError("no UPN that the two partitioners place apart")


def resolved_children(settings: Settings, events: list[Envelope]) -> set[str]:
    rows = query(
        settings,
        "SELECT DISTINCT child_id FROM tracking_resolutions WHERE event_id = ANY(:ids)",
        ids=[str(e.event_id) for e in events],
    )
    return {str(r["child_id"]) for r in rows}


def test_a_later_fact_first_on_the_wrong_partition_still_folds_in_event_time(running: Settings) -> None:
    serial, kid = a_child_that_librdkafka_misplaces(running, 301)
    left = event("pupil-left-roll", serial, 3, kid=kid)  # 3 November: left for an unknown destination
    unknown = event("whereabouts-unknown", serial, 10, kid=kid)  # 10 November: whereabouts unknown
    key = intake_key(unknown)
    [partition] = send_with_librdkafka(running, [unknown])
    assert partition != murmur2_partition(key, running.topic_partitions)  # the "wrong" partition, really
    wait_state(running, unknown.event_id, "whereabouts_unknown", facts=1)
    send(running, [left])  # the earlier fact, later, on the project's partition (murmur2)
    case = wait_state(running, left.event_id, "whereabouts_unknown", facts=2)
    assert resolved_children(running, [left, unknown]) == {str(case["child_id"])}  # one child, one case
    timeline = query(
        running,
        "SELECT event_id, verdict FROM tracking_timeline WHERE child_id = :c ORDER BY occurred_at",
        c=case["child_id"],
    )
    assert [(r["event_id"], r["verdict"]) for r in timeline] == [
        (str(left.event_id), "late"),  # folded before the later fact: the state it gives stays
        (str(unknown.event_id), "move"),
    ]


def test_one_childs_facts_on_both_partitions_at_once_make_one_child(running: Settings) -> None:
    """Sent together, each on its own partition: the identity agents resolve them concurrently, and the
    database's unique identifiers make them one child; the fold orders them by event time."""
    serial, kid = a_child_that_librdkafka_misplaces(running, 401)
    left = event("pupil-left-roll", serial, 3, kid=kid)
    registered = event("pupil-registered", serial, 12, kid=kid)  # 12 November: on a roll again
    send(running, [left])
    send_with_librdkafka(running, [registered])
    case = wait_state(running, registered.event_id, "in_education", facts=2)
    wait_until(
        lambda: resolved_children(running, [left, registered]) == {str(case["child_id"])},
        timeout_s=30,
        what="both facts resolved to one child",
    )
