"""The tracking worker as a real process on the real broker and PostgreSQL: one worker, several children."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.samples import child
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS
from tests.e2e.tracking_support import event, make_settings, query, send, tracking_worker, wait_state
from tests.support.kafka import of_type, read_topic, transitions_only, wait_until

pytestmark = pytest.mark.e2e


def kid(serial: int, surname: str, dob: str, **kw: Any) -> dict[str, Any]:
    return child(serial, forename="Robin", surname=surname, date_of_birth=dob, **kw)


@pytest.fixture(scope="module")
def running(
    kafka_bootstrap: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    url, cluster = postgres_server
    db = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}") if cluster else url
    tmp = tmp_path_factory.mktemp("tracking")
    settings = make_settings(kafka_bootstrap, db, tmp)
    with tracking_worker(settings, tmp / "worker.log"):
        yield settings


def transitions_of(settings: Settings, child_id: str, expect: int) -> list[dict[str, object]]:
    records = read_topic(settings, CASE_TRANSITIONS.name(settings), expect, 30, transitions_only)
    payloads = [json.loads(r.value)["payload"] for r in records]
    return [p for p in payloads if p["child_id"] == child_id]


def test_missing_child_journey(running: Settings) -> None:
    k = kid(11, "Journey", "2013-05-07")
    events = [
        event("pupil-left-roll", 11, 3, kid=k),
        event("whereabouts-unknown", 11, 10, kid=k),
        event("child-located", 11, 17, kid=k),
        event("place-offered", 11, 20, kid=k),
        event("provision-started", 11, 24, kid=k),
    ]
    send(running, events)
    case = wait_state(running, events[0].event_id, "in_education", facts=5)
    steps = [(t["from_state"], t["to_state"]) for t in transitions_of(running, case["child_id"], 5)]
    assert steps == [
        (None, "missing_education"),
        ("missing_education", "whereabouts_unknown"),
        ("whereabouts_unknown", "awaiting_provision"),
        ("awaiting_provision", "place_offered"),
        ("place_offered", "in_education"),
    ]
    timeline = query(
        running,
        "SELECT verdict, to_state FROM tracking_timeline WHERE child_id = :c ORDER BY occurred_at",
        c=case["child_id"],
    )
    assert [r["to_state"] for r in timeline][-1] == "in_education" and len(timeline) == 5
    # Redelivery of the whole journey changes nothing.
    send(running, events)
    facts = read_topic(running, CHILD_EVENTS.name(running), expect=10, timeout_s=30)
    assert sum(1 for r in facts if r.key.decode() == case["child_id"]) >= 10
    assert wait_state(running, events[0].event_id, "in_education", facts=5)
    assert len(query(running, "SELECT 1 FROM tracking_timeline WHERE child_id = :c", c=case["child_id"])) == 5


def test_permanent_exclusion_awaits_provision_with_day6_clock(running: Settings) -> None:
    e = event("exclusion-issued", 12, 4, kid=kid(12, "Excluded", "2012-09-12"))
    send(running, [e])
    case = wait_state(running, e.event_id, "awaiting_provision")
    assert "pe_provision_day6" in case["open_deadlines"] and case["reason"] == "excluded"


def test_home_education_notification(running: Settings) -> None:
    k = kid(13, "Homed", "2015-01-20")
    events = [event("pupil-registered", 13, 3, kid=k), event("home-education-notified", 13, 5, kid=k)]
    send(running, events)
    case = wait_state(running, events[0].event_id, "electively_home_educated", facts=2)
    assert case["reason"] == "elective_home_education"


def test_move_to_another_la_hands_the_case_over(running: Settings) -> None:
    k = kid(14, "Mover", "2011-11-30")
    events = [event("pupil-registered", 14, 3, kid=k), event("moved-out-of-area", 14, 6, kid=k)]
    send(running, events)
    # The origin keeps the case, handed over, until 803 confirms it has the child (docs/TRACKING.md).
    case = wait_state(running, events[0].event_id, "handed_over", facts=2)
    assert case["destination_la_code"] == "803" and case["la_code"] == "801" and case["outcome"] is None

    def destination_case() -> list[dict[str, object]]:
        return query(running, "SELECT * FROM tracking_cases WHERE la_code = '803'")

    from tests.support.kafka import wait_until

    there = wait_until(destination_case, what="a case in the destination LA")
    assert there[0]["state"] == "missing_education" and there[0]["child_id"] != case["child_id"]


def test_same_child_from_two_schools_one_without_upn(running: Settings) -> None:
    with_upn = kid(15, "Twoschools", "2014-06-02")
    without_upn = {**with_upn, "upn": None}
    without_upn = {k: v for k, v in without_upn.items() if v is not None}
    first = event("pupil-registered", 15, 3, kid=with_upn)
    second = event("absence-threshold-crossed", 15, 10, kid=without_upn, school_urn="108002")
    send(running, [first])
    wait_state(running, first.event_id, "in_education")
    send(running, [second])
    case = wait_state(running, second.event_id, "on_roll_at_risk", facts=2)
    assert wait_state(running, first.event_id, "on_roll_at_risk")["child_id"] == case["child_id"]
    match = query(
        running, "SELECT match FROM tracking_resolutions WHERE event_id = :e", e=str(second.event_id)
    )
    assert match[0]["match"] == "scored"
    assert len(query(running, "SELECT 1 FROM tracking_children WHERE surname = 'Twoschools'")) == 1


def test_worker_log_has_no_personal_data(running: Settings) -> None:
    log = (Path(running.data_dir) / "worker.log").read_text()
    assert "Journey" not in log and "Twoschools" not in log and "2013-05-07" not in log


def test_progress_marks_follow_the_transitions_they_cover(running: Settings) -> None:
    """Tracking's progress marks (docs/ESCALATION.md "Tracking's lag in the watermark"): on the partition they
    name, after every transition of the facts they cover, and at the child-events partition's end once the
    worker has processed everything."""
    k = kid(19, "Marked", "2013-02-02")
    events = [event("pupil-left-roll", 19, 3, kid=k), event("whereabouts-unknown", 19, 10, kid=k)]
    send(running, events)
    case = wait_state(running, events[0].event_id, "whereabouts_unknown", facts=2)
    facts_topic, transitions_topic = CHILD_EVENTS.name(running), CASE_TRANSITIONS.name(running)

    def marks_at_the_end() -> list[Any] | None:
        ends = end_offsets(running, facts_topic)
        records = read_topic(running, transitions_topic, 0, 30, of_type("tracking-progress"))
        newest = {r.partition: json.loads(r.value)["payload"]["next_offset"] for r in records}
        return records if all(newest.get(p, -1) >= end for p, end in ends.items() if end) else None

    marks = wait_until(marks_at_the_end, timeout_s=30, what="a mark at every child-events partition's end")
    for record in marks:
        assert json.loads(record.value)["payload"]["partition"] == record.partition and record.key is None
    child_facts = [r for r in read_topic(running, facts_topic, 2) if r.key.decode() == case["child_id"]]
    (partition,) = {r.partition for r in child_facts}
    fact_offsets = [r.offset for r in child_facts]
    ours = [
        r
        for r in read_topic(running, transitions_topic, 2, 30, transitions_only)
        if json.loads(r.value)["payload"]["child_id"] == case["child_id"]
    ]
    assert {r.partition for r in ours} == {partition} and len(ours) == 2
    # The first mark that covers the child's last fact comes after each of the child's transitions.
    covering = min(
        r.offset
        for r in marks
        if r.partition == partition and json.loads(r.value)["payload"]["next_offset"] > max(fact_offsets)
    )
    assert all(r.offset < covering for r in ours)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    from shared.kafka import kafka_python_config

    consumer = KafkaConsumer(**kafka_python_config(settings))
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()
