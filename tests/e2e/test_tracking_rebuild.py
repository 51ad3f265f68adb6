"""Rebuild from the log: the live worker (a real process) builds its case store from a synthetic term's facts
(some out of event-time order, one unreadable record); ``cme-tracking rebuild`` replays the child-events
topic into a fresh PostgreSQL database and the two stores are equal, every case, timeline row and review
item. A rebuild that crashes after two batches resumes from its checkpoint to the same store."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from devtools.synthetic import generate
from services.tracking.rebuild import COMPARED, OFFSETS, Progress, compare, describe, rebuild
from services.tracking.stream.app import app_id
from shared.db import make_engine
from shared.events import encode_event
from shared.events.catalogue import decode_inbound
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from shared.topics import CHILD_EVENTS, INTAKE, intake_key
from tests.e2e.tracking_support import make_settings, tracking_worker
from tests.support.kafka import produce, wait_until

pytestmark = pytest.mark.e2e


class Crash(Exception):
    pass


def _db(server: tuple[str, PostgresCluster | None]) -> str:
    _, cluster = server
    if cluster is None:
        pytest.skip("needs its own databases on the test cluster")
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def _drained(settings: Settings) -> bool:
    """The worker's group has committed every record of both its input topics: each batch's outputs were
    acknowledged before its offsets, so nothing is still on its way."""
    from kafka import KafkaConsumer, TopicPartition

    from shared.kafka import kafka_python_config

    # Reads the group's committed offsets; it never subscribes, so it does not join the worker's group.
    consumer = KafkaConsumer(
        group_id=app_id(settings), enable_auto_commit=False, **kafka_python_config(settings)
    )
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in (INTAKE.name(settings), CHILD_EVENTS.name(settings))
            for p in range(settings.topic_partitions)
        ]
        ends = consumer.end_offsets(tps)
        return all((consumer.committed(tp) or 0) >= ends[tp] for tp in tps)
    finally:
        consumer.close()


def test_rebuilt_store_equals_live_and_resumes_after_a_crash(
    kafka_bootstrap: str, postgres_server: tuple[str, PostgresCluster | None], tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, _db(postgres_server), tmp_path / "live")
    events = [decode_inbound(e) for e in generate(las=2, pupils_per_la=1000, seed=21).events]
    # Some facts arrive late (shuffled within windows of 12): the rebuild must fold them exactly as live did.
    rng = random.Random(21)
    for start in range(0, len(events), 12):
        window = events[start : start + 12]
        rng.shuffle(window)
        events[start : start + 12] = window
    child_events = CHILD_EVENTS.name(settings)
    with tracking_worker(settings, tmp_path / "live.log"):
        produce(settings, INTAKE.name(settings), [(intake_key(e), encode_event(e)) for e in events])
        # A record nobody can read: the live worker dead-letters it, the rebuild must step over it.
        produce(settings, child_events, [(str(uuid.uuid4()).encode(), b'{"not": "an event"}')])

        wait_until(lambda: _drained(settings), timeout_s=240, what="the live worker to commit every record")
    live = settings.database_url
    late = _count(live, "SELECT count(*) FROM tracking_timeline WHERE verdict LIKE 'late%'")
    assert late > 0, "the shuffled facts should include late ones"

    target = _db(postgres_server)
    report = rebuild(settings, target, batch=500)
    assert report.skipped == 1 and report.resumed_from == 0
    assert report.events == report.total
    differences = compare(live, target)
    assert [d.table for d in differences] == [t for t, *_ in COMPARED]
    assert all(d.equal for d in differences), describe(differences)
    assert all(d.live_rows > 0 for d in differences[:3])  # cases, timeline rows, spells (the reports')
    assert differences[1].live_rows == _count(live, "SELECT count(*) FROM tracking_timeline")

    # A crash after the second committed batch: the next run starts from the checkpoint, not the beginning.
    crashed = _db(postgres_server)
    seen: list[Progress] = []

    def crash_after_two(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == 2:
            raise Crash

    with pytest.raises(Crash):
        rebuild(settings, crashed, batch=100, on_progress=crash_after_two)
    checkpointed = _count(crashed, f"SELECT sum(next_offset) FROM {OFFSETS.name}")
    assert 0 < checkpointed < report.total
    assert not all(d.equal for d in compare(live, crashed))
    resumed = rebuild(settings, crashed, batch=100)
    assert resumed.resumed_from == checkpointed == seen[-1].done
    assert resumed.events == report.total - checkpointed
    differences = compare(live, crashed)
    assert all(d.equal for d in differences), describe(differences)
    # Run again with nothing new in the log: nothing to do, nothing changes.
    again = rebuild(settings, crashed, batch=100)
    assert again.events == 0 and all(d.equal for d in compare(live, crashed))
