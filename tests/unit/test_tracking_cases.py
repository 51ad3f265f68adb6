"""Applying child events to a child's record: idempotence, late facts, merges and splits (no Kafka)."""

from __future__ import annotations

import uuid
from datetime import date

from services.tracking.cases import ChildRecord, apply_child_fact, apply_merge, apply_split, new_record
from shared.events.envelope import Source, utcnow
from shared.events.internal import (
    ChildFact,
    ChildFactPayload,
    ChildMerged,
    ChildMergedPayload,
    ChildSplit,
    ChildSplitPayload,
)
from shared.samples import sample_event

A, B = str(uuid.uuid4()), str(uuid.uuid4())


def _cf(child_id: str, event_type: str, day: int, **kw: object) -> ChildFact:
    e = sample_event(event_type, on=date(2025, 11, day), **kw)  # type: ignore[arg-type]
    return ChildFact(
        event_id=e.event_id,
        occurred_at=e.occurred_at,
        source=Source(system="t", la_code="801"),
        payload=ChildFactPayload(
            child_id=uuid.UUID(child_id), la_code="801", match="new", fact=e.model_dump(mode="json")
        ),
    )


def _run(record: ChildRecord, *facts: ChildFact) -> tuple[ChildRecord, list]:  # type: ignore[type-arg]
    transitions: list = []  # type: ignore[type-arg]
    for f in facts:
        out = apply_child_fact(record, f)
        record, transitions = out.record, transitions + out.transitions
    return record, transitions


def test_redelivered_fact_is_a_duplicate() -> None:
    f = _cf(A, "pupil-left-roll", 3)
    record, _ = _run(new_record(A, "801"), f)
    out = apply_child_fact(record, f)
    assert out.duplicate and not out.transitions and not out.timeline


def test_late_fact_applied_only_where_it_changes_the_outcome() -> None:
    left, located = _cf(A, "pupil-left-roll", 3), _cf(A, "child-located", 20)
    record, _ = _run(new_record(A, "801"), left, located)
    assert record.case.state == "awaiting_provision"
    late_wu = apply_child_fact(record, _cf(A, "whereabouts-unknown", 10))
    assert late_wu.transitions == [] and late_wu.timeline[0].verdict == "late"
    assert late_wu.record.case.state == "awaiting_provision"
    late_abroad = apply_child_fact(late_wu.record, _cf(A, "moved-abroad", 25))  # newer: a normal step
    assert late_abroad.record.case.state == "moved_abroad"
    record2, _ = _run(new_record(A, "801"), _cf(A, "pupil-left-roll", 5))
    earlier_registration = apply_child_fact(record2, _cf(A, "pupil-registered", 1))
    assert earlier_registration.transitions == []  # registered before leaving: still missing education


def test_late_fact_that_changes_the_outcome_publishes_one_transition() -> None:
    record, _ = _run(new_record(A, "801"), _cf(A, "pupil-left-roll", 3))
    late = apply_child_fact(record, _cf(A, "moved-out-of-area", 2))  # moved away the day before the deletion
    assert late.record.case.state == "left_area" and late.timeline[0].verdict == "late-applied"
    assert [(t.payload.from_state, t.payload.to_state) for t in late.transitions] == [
        ("missing_education", "left_area")
    ]
    assert len(late.handovers) == 1 and late.handovers[0].source.la_code == "803"


def test_merge_moves_facts_to_survivor_and_split_gives_them_back() -> None:
    a, _ = _run(new_record(A, "801"), _cf(A, "pupil-left-roll", 3, child_serial=1))
    b, _ = _run(new_record(B, "801"), _cf(B, "child-located", 10, child_serial=2))
    merge = ChildMerged(
        event_id=uuid.uuid4(),
        occurred_at=utcnow(),
        source=Source(system="t", la_code="801"),
        payload=ChildMergedPayload(
            surviving_child_id=uuid.UUID(A), merged_child_id=uuid.UUID(B), la_code="801", decided_by="officer"
        ),
    )
    at_b = apply_merge(b, merge)
    assert at_b.record.merged_into == A and len(at_b.forwards) == 1
    key, forward = at_b.forwards[0]
    assert key == A
    at_a = apply_merge(a, forward)  # type: ignore[arg-type]
    assert at_a.record.case.state == "awaiting_provision" and len(at_a.record.facts) == 2
    assert [(t.payload.from_state, t.payload.to_state) for t in at_a.transitions] == [
        ("missing_education", "awaiting_provision")
    ]
    assert apply_merge(at_a.record, forward).duplicate  # type: ignore[arg-type]

    moved = [uuid.UUID(f.event_id) for f in at_a.record.facts if f.event_type == "child-located"]
    split = ChildSplit(
        event_id=uuid.uuid4(),
        occurred_at=utcnow(),
        source=Source(system="t", la_code="801"),
        payload=ChildSplitPayload(
            child_id=uuid.UUID(A),
            new_child_id=uuid.UUID(B),
            la_code="801",
            moved_event_ids=moved,
            decided_by="officer",
        ),
    )
    back_a = apply_split(at_a.record, split)
    assert back_a.record.case.state == "missing_education"
    key, forward_split = back_a.forwards[0]
    back_b = apply_split(at_b.record, forward_split)  # type: ignore[arg-type]
    assert key == B and back_b.record.merged_into is None and back_b.record.case.state == "awaiting_provision"
    # Both cases announce where they now stand; the restored one opens afresh (escalation stopped its clocks
    # at the merge), even though its state is the one it had before.
    assert [(t.payload.from_state, t.payload.to_state) for t in back_a.transitions] == [
        ("awaiting_provision", "missing_education")
    ]
    assert [(t.payload.from_state, t.payload.to_state) for t in back_b.transitions] == [
        (None, "awaiting_provision")
    ]
    assert back_b.transitions[0].payload.case_id == uuid.UUID(back_b.record.case_id)


def test_fact_for_a_merged_child_is_forwarded() -> None:
    b = new_record(B, "801").model_copy(update={"merged_into": A})
    out = apply_child_fact(b, _cf(B, "whereabouts-unknown", 4))
    assert out.forwards[0][0] == A and out.forwards[0][1].payload.child_id == uuid.UUID(A)


def test_new_context_in_the_same_open_state_is_published_for_escalation() -> None:
    record, _ = _run(new_record(A, "801"), _cf(A, "pupil-left-roll", 3), _cf(A, "whereabouts-unknown", 4))
    allocated = apply_child_fact(record, _cf(A, "social-care-status-changed", 5))
    [t] = allocated.transitions
    assert (t.payload.from_state, t.payload.to_state) == ("whereabouts_unknown", "whereabouts_unknown")
    assert t.payload.has_social_worker and t.payload.social_care_status == "child_in_need"
    assert t.payload.deadlines_started == [] and t.payload.deadlines_stopped == []
    # Nothing new the second time, and nothing for a closed case.
    assert apply_child_fact(allocated.record, _cf(A, "social-care-status-changed", 6)).transitions == []
    closed, _ = _run(new_record(B, "801"), _cf(B, "pupil-registered", 3))
    assert apply_child_fact(closed, _cf(B, "social-care-status-changed", 5)).transitions == []
