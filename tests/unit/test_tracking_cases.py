"""Applying child events to a child's record: idempotence, late facts, merges and splits (no Kafka)."""

from __future__ import annotations

import uuid
from datetime import date

from devtools.samples import sample_event, sample_event_dict
from services.tracking.cases import ChildRecord, apply_child_fact, apply_merge, apply_split, new_record
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope, Source, utcnow
from shared.events.internal import (
    ChildFact,
    ChildFactPayload,
    ChildMerged,
    ChildMergedPayload,
    ChildSplit,
    ChildSplitPayload,
)

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
    assert late_wu.timeline[0].verdict == "late"
    assert late_wu.record.case.state == "awaiting_provision"
    # No change of state, but an episode of unknown whereabouts (days 10 to 20) the case's history did not
    # have: one same-state transition carries the history from the late fact on, for escalation's clocks.
    [carrier] = late_wu.transitions
    assert carrier.payload.from_state == carrier.payload.to_state == "awaiting_provision"
    assert carrier.payload.history is not None and carrier.payload.history.base is not None
    assert carrier.payload.history.base.state == "missing_education"
    assert [(s.to_state, s.cause_occurred_at.day) for s in carrier.payload.history.steps] == [
        ("whereabouts_unknown", 10),
        ("awaiting_provision", 20),
    ]
    late_abroad = apply_child_fact(late_wu.record, _cf(A, "moved-abroad", 25))  # newer: a normal step
    assert late_abroad.record.case.state == "moved_abroad"
    record2, _ = _run(new_record(A, "801"), _cf(A, "pupil-left-roll", 5))
    earlier_registration = apply_child_fact(record2, _cf(A, "pupil-registered", 1))
    # Registered before leaving: still missing education, from day 5 as before; the history says so.
    assert earlier_registration.record.case.state == "missing_education"
    [carrier] = earlier_registration.transitions
    assert carrier.payload.history is not None
    assert [s.to_state for s in carrier.payload.history.steps][-1] == "missing_education"


def test_late_fact_that_changes_the_outcome_publishes_one_transition() -> None:
    record, _ = _run(new_record(A, "801"), _cf(A, "pupil-left-roll", 3))
    late = apply_child_fact(record, _cf(A, "moved-out-of-area", 2))  # moved away the day before the deletion
    # Handed over the day before, the deletion is refused in event-time order: the case waits for 803.
    assert late.record.case.state == "handed_over" and late.timeline[0].verdict == "late-applied"
    assert [(t.payload.from_state, t.payload.to_state) for t in late.transitions] == [
        ("missing_education", "handed_over")
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


def _in(la: str, child_id: str, event: Envelope) -> ChildFact:
    return ChildFact(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        source=Source(system="t", la_code=la),
        payload=ChildFactPayload(
            child_id=uuid.UUID(child_id), la_code=la, match="exact", fact=event.model_dump(mode="json")
        ),
    )


def test_a_transfer_to_another_la_closes_in_both_only_when_the_child_registers() -> None:
    """Left 801's school for a named school in 803 (Mon 3 Nov 2025): 801 waits and hands 803 the child;
    803's school registers the child (Mon 10 Nov); 803 tells 801, which closes with the URN."""
    left = sample_event_dict("pupil-left-roll", on=date(2025, 11, 3))
    left["payload"].update(
        deletion_ground="a", destination={"known": True, "school_urn": "140001", "la_code": "803"}
    )
    origin = apply_child_fact(new_record(A, "801"), _in("801", A, decode_inbound(left)))
    assert origin.record.case.state == "transfer_pending"
    [handover] = origin.handovers
    assert handover.event_type == "moved-out-of-area" and handover.source.la_code == "803"
    assert handover.payload.new_school_urn == "140001" and handover.payload.from_la_code == "801"  # type: ignore[attr-defined]
    destination = apply_child_fact(new_record(B, "803"), _in("803", B, handover))
    assert destination.record.case.state == "transfer_pending" and destination.handovers == []
    registered_data = sample_event_dict("pupil-registered", on=date(2025, 11, 10), la_code="803")
    registered_data["payload"]["school_urn"] = "140001"
    registered = decode_inbound(registered_data)
    arrived = apply_child_fact(destination.record, _in("803", B, registered))
    assert arrived.record.case.state == "in_education"
    [confirmation] = arrived.handovers
    assert confirmation.event_type == "handover-confirmed" and confirmation.source.la_code == "801"
    assert confirmation.payload.how == "registered" and confirmation.payload.school_urn == "140001"  # type: ignore[attr-defined]
    closed = apply_child_fact(origin.record, _in("801", A, confirmation))
    assert closed.record.case.state == "in_education"
    [t] = closed.transitions
    assert (t.payload.from_state, t.payload.to_state) == ("transfer_pending", "in_education")
    assert (t.payload.outcome, t.payload.outcome_ref) == ("school", "140001")
    # A redelivered registration at 803 tells 801 nothing more.
    assert apply_child_fact(arrived.record, _in("803", B, registered)).handovers == []


def test_a_move_to_an_la_outside_the_deployment_waits_for_a_person() -> None:
    moved = _cf(A, "moved-out-of-area", 3)  # to 803
    out = apply_child_fact(new_record(A, "801"), moved, deployment=frozenset({"801", "802"}))
    assert out.record.case.state == "awaiting_la_confirmation" and out.handovers == []
    [t] = out.transitions
    assert t.payload.destination_la_code == "803" and t.payload.deadlines_started[0].name == (
        "awaiting_la_confirmation"
    )


def test_a_handover_that_arrives_after_the_registration_confirms_as_of_the_registration() -> None:
    """803's school registers the child (Mon 10 Nov 2025) before 801's handover of the move (Mon 3 Nov)
    reaches 803 (a late fact): 803 tells 801 the child is here as of the registration, the same confirmation
    time as when the facts arrive in order. (The scale-out test found the move's date used instead.)"""
    left = sample_event_dict("pupil-left-roll", on=date(2025, 11, 3))
    left["payload"].update(
        deletion_ground="a", destination={"known": True, "school_urn": "140001", "la_code": "803"}
    )
    [handover] = apply_child_fact(new_record(A, "801"), _in("801", A, decode_inbound(left))).handovers
    registered_data = sample_event_dict("pupil-registered", on=date(2025, 11, 10), la_code="803")
    registered_data["payload"]["school_urn"] = "140001"
    registered = decode_inbound(registered_data)

    in_order = apply_child_fact(
        apply_child_fact(new_record(B, "803"), _in("803", B, handover)).record, _in("803", B, registered)
    )
    first = apply_child_fact(new_record(B, "803"), _in("803", B, registered))
    late = apply_child_fact(first.record, _in("803", B, handover))
    [a] = in_order.handovers
    [b] = late.handovers
    assert a.occurred_at == b.occurred_at == registered.occurred_at
    assert a.payload.confirmed_on == b.payload.confirmed_on == date(2025, 11, 10)  # type: ignore[attr-defined]
