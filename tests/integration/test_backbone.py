"""The backbone on the real broker: every event type round-trips, and a faust agent transforms a stream."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from devtools.samples import sample_event
from shared.events import INBOUND_EVENT_TYPES, decode_inbound, encode_event
from shared.kafka import ensure_topics, kafka_python_config
from shared.settings import PROJECT_ROOT, Settings
from shared.topics import ALL_TOPICS, INTAKE
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration


def test_topics_are_created_once_with_their_config(kafka_settings: Settings) -> None:
    assert ensure_topics(kafka_settings) == []  # the fixture created them; a second call creates nothing
    admin = KafkaAdminClient(**kafka_python_config(kafka_settings))
    try:
        names = set(admin.list_topics())
        assert {spec.name(kafka_settings) for spec in ALL_TOPICS} <= names
    finally:
        admin.close()


def test_every_event_type_round_trips_through_kafka(kafka_settings: Settings) -> None:
    events = [sample_event(t, child_serial=i) for i, t in enumerate(INBOUND_EVENT_TYPES, start=1)]
    topic = INTAKE.name(kafka_settings)
    produce(kafka_settings, topic, [(e.payload.child.upn.encode(), encode_event(e)) for e in events])
    records = read_topic(kafka_settings, topic, expect=len(events))
    received = {decoded.event_id: decoded for decoded in (decode_inbound(r.value) for r in records)}
    assert len(records) == len(events)
    for event in events:
        assert received[event.event_id] == event
        assert type(received[event.event_id]) is type(event)


def test_kafka_python_to_faust_agent_to_another_topic(kafka_settings: Settings, tmp_path: Path) -> None:
    out_topic = f"{kafka_settings.topic_prefix}probe-out"
    admin = KafkaAdminClient(**kafka_python_config(kafka_settings))
    admin.create_topics([NewTopic(out_topic, num_partitions=2, replication_factor=1)])
    admin.close()
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": str(kafka_settings.topic_partitions),
        "CME_DATA_DIR": str(tmp_path),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.integration.faust_probe", "worker", "-l", "warn",
         "--without-web"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        events = [sample_event("pupil-left-roll", child_serial=i) for i in range(1, 6)]
        produce(
            kafka_settings,
            INTAKE.name(kafka_settings),
            [(e.payload.child.upn.encode(), encode_event(e)) for e in events],
        )
        records = read_topic(kafka_settings, out_topic, expect=len(events), timeout_s=90)
        summaries = [orjson.loads(r.value) for r in records]
        assert sorted(s["event_id"] for s in summaries) == sorted(str(e.event_id) for e in events)
        assert {s["event_type"] for s in summaries} == {"pupil-left-roll"}
        assert {r.key for r in records} == {b"801"}
        uuid.UUID(summaries[0]["event_id"])
    finally:
        worker.terminate()
        try:
            _, err = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, err = worker.communicate()
        assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]


def test_reading_a_topic_back_returns_every_record_not_one_poll(kafka_settings: Settings) -> None:
    # More than two polls' worth (kafka-python returns at most 500 a poll): the scale-out test read its
    # escalations with expect=0 and saw exactly 1,000 of them, which hid every step after the thousandth.
    topic = INTAKE.name(kafka_settings)
    count = 1_234
    produce(kafka_settings, topic, [(str(i % 7).encode(), str(i).encode()) for i in range(count)])
    for expect in (0, 10):
        values = sorted(int(r.value) for r in read_topic(kafka_settings, topic, expect=expect))
        assert values == list(range(count))
