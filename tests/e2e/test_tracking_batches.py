"""The tracking worker's micro-batches on the real broker and PostgreSQL.

Records are on the topics before the worker starts (and the batch linger is long), so each agent takes them
in one batch. A batch holding a poison record dead-letters that record alone and processes the others; several
events of one child in one batch end where applying them one by one ends (state, timeline, transitions).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.samples import child
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import Resolution
from services.tracking.stream.identity_agent import child_fact
from shared.deadletter_replay import read_dead_letters
from shared.events import encode_event
from shared.events.envelope import Envelope
from shared.events.internal import ChildFact, MatchKind
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS, INTAKE
from tests.e2e.tracking_support import event, make_settings, query, send, tracking_worker, wait_state
from tests.support.kafka import produce, read_topic, transitions_only, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(
    kafka_bootstrap: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    url, cluster = postgres_server
    db = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}") if cluster else url
    # A long linger: what is on the topics when the worker starts is taken as one batch per agent.
    monkeypatch.setenv("CME_TRACKING_BATCH_WITHIN_S", "2")
    return make_settings(kafka_bootstrap, db, tmp_path)


@pytest.fixture
def worker_log(settings: Settings) -> Iterator[Path]:
    yield Path(settings.data_dir) / "worker.log"


def as_fact(inbound: Envelope, child_id: str) -> ChildFact:
    return child_fact(inbound, Resolution(child_id, MatchKind.NEW, None, created=True))


def one_by_one(facts: list[ChildFact]) -> tuple[ChildRecord, list[tuple[str | None, str]]]:
    """The record and the transitions (from, to) of applying the facts one at a time, as the state machine
    does for a worker that takes one record at a time."""
    record = new_record(str(facts[0].payload.child_id), facts[0].payload.la_code)
    transitions: list[tuple[str | None, str]] = []
    for fact in facts:
        outcome = apply_child_fact(record, fact)
        record = outcome.record
        transitions += [
            (str(t.payload.from_state) if t.payload.from_state else None, str(t.payload.to_state))
            for t in outcome.transitions
        ]
    return record, transitions


def misplaced_event(fact: ChildFact, child_id: str) -> bytes:
    """A valid event of the catalogue that does not belong on the child-events topic: a case transition."""
    outcome = apply_child_fact(new_record(child_id, fact.payload.la_code), fact)
    return encode_event(outcome.transitions[0])


def tracking_dead_letters(settings: Settings, expect: int) -> list[Any] | None:
    letters = [d for d in read_dead_letters(settings) if d.payload.service == "tracking"]
    return letters if len(letters) >= expect else None


def test_a_poison_record_in_a_batch_is_dead_lettered_alone(settings: Settings, worker_log: Path) -> None:
    k = child(51, forename="Rowan", surname="Batch", date_of_birth="2013-03-03")
    other = child(52, forename="Sage", surname="Batch", date_of_birth="2012-02-02")
    healthy = [
        event("pupil-left-roll", 51, 3, kid=k),
        event("whereabouts-unknown", 51, 10, kid=k),
        event("pupil-left-roll", 52, 4, kid=other),
    ]
    poison_intake = b'{"event_id": "not an event"}'
    # On the child-events topic: a fact for a child with a case-transition in the middle of its facts
    # (valid JSON, an event that does not belong there: the case agent cannot apply it).
    direct_child = str(uuid.uuid4())
    direct = [
        event("pupil-left-roll", 53, 3, kid=child(53, surname="Direct")),
        event("child-located", 53, 12, kid=child(53, surname="Direct")),
    ]
    direct_facts = [as_fact(e, direct_child) for e in direct]
    misplaced = misplaced_event(direct_facts[0], direct_child)
    key = k["upn"].encode()
    produce(
        settings,
        INTAKE.name(settings),
        [(key, encode_event(healthy[0])), (key, poison_intake), (key, encode_event(healthy[1]))],
    )
    send(settings, [healthy[2]])
    produce(
        settings,
        CHILD_EVENTS.name(settings),
        [
            (direct_child.encode(), encode_event(direct_facts[0])),
            (direct_child.encode(), misplaced),
            (direct_child.encode(), encode_event(direct_facts[1])),
        ],
    )
    with tracking_worker(settings, worker_log):
        # Everything healthy around the poison went through.
        wait_state(settings, healthy[0].event_id, "whereabouts_unknown", facts=2)
        wait_state(settings, healthy[2].event_id, "missing_education", facts=1)

        direct_case = wait_until(lambda: case_with(settings, direct_child, 2), timeout_s=60, what="2 facts")
        assert direct_case["state"] == "awaiting_provision"
        letters = wait_until(
            lambda: tracking_dead_letters(settings, 2), timeout_s=60, what="the dead letters"
        )
    by_topic = {d.payload.original_topic: d for d in letters}
    assert len(letters) == 2 and set(by_topic) == {INTAKE.name(settings), CHILD_EVENTS.name(settings)}
    assert base64.b64decode(by_topic[INTAKE.name(settings)].payload.value_base64) == poison_intake
    assert base64.b64decode(by_topic[CHILD_EVENTS.name(settings)].payload.value_base64) == misplaced
    assert by_topic[INTAKE.name(settings)].payload.error_type == "ValidationError"
    assert by_topic[CHILD_EVENTS.name(settings)].payload.error_type == "ValueError"
    # They came in batches that fell back to one at a time (not single records from the start).
    log = worker_log.read_text()
    assert log.count("batch_one_by_one") >= 2, log[-3000:]


def test_events_of_one_child_in_one_batch_end_as_one_by_one(settings: Settings, worker_log: Path) -> None:
    kid_a = child(61, forename="Quinn", surname="Sameb", date_of_birth="2013-08-08")
    kid_b = child(62, forename="Remy", surname="Sameb", date_of_birth="2012-08-08")
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    a_events = [
        event("pupil-left-roll", 61, 3, kid=kid_a),
        event("whereabouts-unknown", 61, 10, kid=kid_a),
        event("child-located", 61, 17, kid=kid_a),
        event("place-offered", 61, 20, kid=kid_a),
        event("pupil-registered", 61, 6, kid=kid_a),  # late: before the newest applied
        event("provision-started", 61, 24, kid=kid_a),
    ]
    b_events = [
        event("pupil-registered", 62, 3, kid=kid_b),
        event("home-education-notified", 62, 5, kid=kid_b),
    ]
    a_facts = [as_fact(e, a_id) for e in a_events]
    b_facts = [as_fact(e, b_id) for e in b_events]
    # Interleaved, with a redelivery of one of A's facts inside the batch.
    order = [a_facts[0], b_facts[0], a_facts[1], a_facts[2], a_facts[1], b_facts[1], *a_facts[3:]]
    produce(
        settings,
        CHILD_EVENTS.name(settings),
        [(str(f.payload.child_id).encode(), encode_event(f)) for f in order],
    )
    expected = {a_id: one_by_one(a_facts), b_id: one_by_one(b_facts)}
    with tracking_worker(settings, worker_log):
        for child_id, (record, _) in expected.items():
            case = wait_until(
                lambda c=child_id, n=len(record.facts): case_with(settings, c, n),
                timeout_s=60,
                what="the case",
            )
            assert case["state"] == record.case.state
            assert case["cause_event_id"] == record.case.cause_event_id
            assert case["open_deadlines"] == ",".join(record.case.open_deadlines)
        # The table holds the batch's result: one more fact for A goes on from it.
        extra = as_fact(event("pupil-left-roll", 61, 26, kid=kid_a), a_id)
        produce(settings, CHILD_EVENTS.name(settings), [(a_id.encode(), encode_event(extra))])
        after, more = one_by_one([*a_facts, extra])
        case = wait_until(lambda: case_with(settings, a_id, len(after.facts)), timeout_s=60, what="one more")
        assert case["state"] == after.case.state
        transitions = read_topic(settings, CASE_TRANSITIONS.name(settings), len(more), 30, transitions_only)
    for child_id, (record, expected_transitions) in expected.items():
        timeline = query(settings, "SELECT verdict FROM tracking_timeline WHERE child_id = :c", c=child_id)
        assert len(timeline) == len(record.facts) + (child_id == a_id)  # the redelivery added nothing
        published = [
            (p["from_state"], p["to_state"])
            for p in (json.loads(r.value)["payload"] for r in transitions)
            if p["child_id"] == child_id
        ]
        assert published == (more if child_id == a_id else expected_transitions)
    assert "batch_one_by_one" not in worker_log.read_text()


def case_with(settings: Settings, child_id: str, facts: int) -> dict[str, Any] | None:
    rows = query(settings, "SELECT * FROM tracking_cases WHERE child_id = :c", c=child_id)
    return rows[0] if rows and rows[0]["facts_applied"] == facts else None
