"""Batched processing on the real broker: the worker (a real process, RocksDB store) takes marks in batches.
A batch holding poison records dead-letters only those; the events on the intake topic are exactly those that
one-by-one processing of the same records gives (same ids and payloads, same order per pupil, none twice); and
the same marks delivered again change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services.attendance.settings import AttendanceSettings
from services.attendance.worker import app_id
from shared.events.catalogue import decode_event
from shared.events.internal import DeadLetter
from shared.kafka import kafka_python_config
from shared.settings import PROJECT_ROOT
from shared.topics import ATTENDANCE, DEAD_LETTER, INTAKE
from tests.support.attendance_feed import Record, feed, one_by_one, without_recorded_at
from tests.support.kafka import read_topic, wait_until

pytestmark = pytest.mark.integration

BATCH_MAX = 40


def produce(settings: AttendanceSettings, records: list[Record]) -> list[tuple[int, int]]:
    """Send in order; the (partition, offset) each record got."""
    producer = KafkaProducer(acks="all", enable_idempotence=True, **kafka_python_config(settings))
    try:
        futures = [producer.send(ATTENDANCE.name(settings), key=k, value=v) for k, v in records]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def committed(settings: AttendanceSettings) -> int:
    """Offsets the worker's group has committed on the marks topic (read without joining the group)."""
    consumer = KafkaConsumer(
        group_id=app_id(settings), enable_auto_commit=False, **kafka_python_config(settings)
    )
    try:
        topic = ATTENDANCE.name(settings)
        parts = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        consumer.close()


def start_worker(settings: AttendanceSettings, stderr: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CME_DATA_DIR": str(settings.data_dir),
        "CME_ATTENDANCE_STORE": "rocksdb",
        "CME_ATTENDANCE_BATCH_MAX": str(BATCH_MAX),
        # Long enough that the records already on the topic come in full batches, poison among the rest.
        "CME_ATTENDANCE_BATCH_LINGER_S": "0.5",
        "CME_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.attendance.main", "worker"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"),
    )  # fmt: skip


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def per_pupil(events: list[dict[str, Any]]) -> dict[bytes, list[dict[str, Any]]]:
    out: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        out[event["key"]].append(event)
    return dict(out)


def test_batches_dead_letter_only_the_poison_and_emit_what_one_by_one_would(
    kafka_settings: Any, tmp_path: Path
) -> None:
    settings = AttendanceSettings(**kafka_settings.model_dump())
    good = feed(seed=2, pupils=10, days=40)  # ~900 marks: 24 crossings and 6 retractions
    expected, _ = one_by_one(good)
    assert len(expected) >= 20
    # Poison in the middle of the pupils' own partitions: unreadable JSON, a mark keyed to another pupil, a
    # code that is not a 2024 code. Each must go to the dead-letter topic alone.
    first, other = good[0][0], next(k for k, _ in good if k != good[0][0])
    valid = orjson.loads(good[3][1])
    poison: dict[int, Record] = {
        25: (first, b'{"event_type": "attendance-mark", "payload": '),
        130: (other, good[0][1]),
        610: (first, orjson.dumps({**valid, "payload": {**valid["payload"], "code": "H"}})),
    }
    records = list(good)
    for index in sorted(poison):
        records.insert(index, poison[index])
    positions = produce(settings, records)
    poison_at = {positions[i] for i in poison}

    worker = start_worker(settings, tmp_path / "worker-1.log")
    try:
        letters = read_topic(settings, DEAD_LETTER.name(settings), expect=len(poison), timeout_s=120)
        wait_until(lambda: committed(settings) >= len(records), timeout_s=120, what="every mark committed")
        intake = read_topic(settings, INTAKE.name(settings), expect=len(expected), timeout_s=30)
    finally:
        stop(worker)

    dead = [d for d in map(decode_event, (r.value for r in letters)) if isinstance(d, DeadLetter)]
    assert len(dead) == len(letters) == len(poison)
    assert {(d.payload.partition, d.payload.offset) for d in dead} == poison_at
    assert sorted(d.payload.error_type for d in dead) == ["ValidationError", "ValidationError", "ValueError"]
    got = [without_recorded_at(r.key, r.value) for r in intake]
    assert len(got) == len(expected)  # none missing, none twice
    assert per_pupil(got) == per_pupil([without_recorded_at(e.key, e.value) for e in expected])
    log = (tmp_path / "worker-1.log").read_text()
    assert "batch_one_by_one" in log  # the poison came inside batches, which fell back to one at a time
    assert "Traceback" not in log, log[-3000:]

    # The same marks again (a producer retrying, a school re-uploading): nothing new comes out.
    produce(settings, good)
    worker = start_worker(settings, tmp_path / "worker-2.log")
    try:
        total = len(records) + len(good)
        wait_until(
            lambda: committed(settings) >= total, timeout_s=120, what="the redelivered marks committed"
        )
    finally:
        stop(worker)
    intake_after = read_topic(settings, INTAKE.name(settings), expect=len(expected), timeout_s=30)
    letters_after = read_topic(settings, DEAD_LETTER.name(settings), expect=len(poison), timeout_s=10)
    assert (len(intake_after), len(letters_after)) == (len(expected), len(poison))
