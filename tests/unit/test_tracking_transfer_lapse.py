"""A transfer that never arrives becomes missing education (issue 14): escalation's transfer clock, decided
on event time, reaches tracking as a case-clock-expired fact dated the due time, which tracking folds with the
child's facts. Dates on the default 2025/26 calendar: a pupil leaves on Mon 3 Nov 2025 for school 108001; the
10th school day after is Mon 17 Nov, so the clock runs out at 23:59:59 that day."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime
from typing import Any

from devtools.samples import sample_event_dict
from services.tracking.cases import ChildRecord, Outcome, apply_child_fact, apply_clock_expired, new_record
from services.tracking.state_machine import EventKind, classify
from services.tracking.stream.case_agent import apply
from shared.case_ids import case_id_for
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope, Source
from shared.events.internal import (
    CaseClockExpired,
    CaseClockExpiredPayload,
    CaseState,
    ChildFact,
    ChildFactPayload,
)

CHILD = str(uuid.uuid4())
LEFT_AT = datetime(2025, 11, 3, 9, 30, tzinfo=UTC)
DUE = datetime(2025, 11, 17, 23, 59, 59, tzinfo=UTC)


def _fact(event_type: str, on: date, **payload: Any) -> ChildFact:
    data = sample_event_dict(event_type, on=on)
    data["payload"].update(payload)
    inbound = decode_inbound(data)
    return ChildFact(
        event_id=inbound.event_id,
        occurred_at=inbound.occurred_at,
        source=Source(system="t", la_code="801"),
        payload=ChildFactPayload(
            child_id=uuid.UUID(CHILD), la_code="801", match="exact", fact=inbound.model_dump(mode="json")
        ),
    )


def _left(on: date = date(2025, 11, 3), school: str = "108001") -> ChildFact:
    return _fact(
        "pupil-left-roll", on, deletion_ground="a", destination={"known": True, "school_urn": school}
    )


def _registered(on: date, school: str = "108001") -> ChildFact:
    return _fact("pupil-registered", on, school_urn=school)


def _expired(started: datetime = LEFT_AT, due: datetime = DUE) -> CaseClockExpired:
    return CaseClockExpired(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"clock:{started.isoformat()}"),
        occurred_at=due,
        source=Source(system="cme-escalation", la_code="801"),
        payload=CaseClockExpiredPayload(
            child_id=uuid.UUID(CHILD),
            case_id=uuid.UUID(case_id_for(CHILD, "801")),
            la_code="801",
            rule_id="transfer_not_registered",
            state=CaseState.TRANSFER_PENDING,
            clock_started_at=started,
            due_at=due,
        ),
    )


def _run(*events: Envelope) -> tuple[ChildRecord, list[Outcome]]:
    record, outs = new_record(CHILD, "801"), []
    for e in events:
        out = apply(record, e)
        record = out.record
        outs.append(out)
    return record, outs


def test_a_transfer_never_registered_becomes_missing_education_at_the_due_time() -> None:
    record, outs = _run(_left(), _expired())
    assert record.case.state == CaseState.MISSING_EDUCATION and record.case.outcome is None
    [t] = outs[1].transitions
    assert (t.payload.from_state, t.payload.to_state) == ("transfer_pending", "missing_education")
    assert t.payload.cause_event_type == "case-clock-expired" and t.payload.cause_occurred_at == DUE
    # Missing education's clocks start at the due time, the transfer's stops.
    assert [d.name for d in t.payload.deadlines_started] == ["missing_education"]
    assert t.payload.deadlines_stopped == ["transfer_pending"]
    assert outs[1].timeline[0].event_kind == EventKind.TRANSFER_LAPSED and outs[1].handovers == []


def test_a_registration_dated_before_the_due_time_wins_when_it_arrives_later() -> None:
    record, _ = _run(_left(), _expired())
    late = apply_child_fact(record, _registered(date(2025, 11, 14)))
    assert late.record.case.state == CaseState.IN_EDUCATION
    assert (late.record.case.outcome, late.record.case.outcome_ref) == ("school", "108001")
    assert late.timeline[0].verdict == "late-applied"
    [t] = late.transitions
    assert (t.payload.from_state, t.payload.to_state) == ("missing_education", "in_education")


def test_a_registration_after_the_due_time_closes_the_missing_case() -> None:
    record, outs = _run(_left(), _expired(), _registered(date(2025, 11, 19)))
    assert record.case.state == CaseState.IN_EDUCATION
    assert [(t.payload.from_state, t.payload.to_state) for t in outs[2].transitions] == [
        ("missing_education", "in_education")
    ]


def test_the_clock_of_an_earlier_wait_does_not_move_a_new_transfer() -> None:
    """Registered at 108001 on Mon 10 Nov, then left it for 108002 on Wed 12 Nov: the clock counted from 3
    Nov is not this wait's (its own runs from 12 Nov); facts in any arrival order agree."""
    events: list[Envelope] = [
        _left(),
        _registered(date(2025, 11, 10)),
        _left(date(2025, 11, 12), school="108002"),
        _expired(),
    ]
    for order in itertools.permutations(events):
        record, _ = _run(*order)
        assert record.case.state == CaseState.TRANSFER_PENDING, [e.event_type for e in order]
        assert record.case.cause_occurred_at == datetime(2025, 11, 12, 9, 30, tzinfo=UTC)
    # The second wait's own clock does move it.
    record, _ = _run(*events, _expired(started=datetime(2025, 11, 12, 9, 30, tzinfo=UTC)))
    assert record.case.state == CaseState.MISSING_EDUCATION


def test_the_same_facts_in_any_arrival_order_give_the_same_case() -> None:
    events: list[Envelope] = [_left(), _expired(), _registered(date(2025, 11, 14))]
    for order in itertools.permutations(events):
        record, _ = _run(*order)
        assert (record.case.state, record.case.outcome_ref) == (CaseState.IN_EDUCATION, "108001")
    for order in itertools.permutations([_left(), _expired(), _registered(date(2025, 11, 19))]):
        record, _ = _run(*order)
        assert record.case.state == CaseState.IN_EDUCATION


def test_a_repeated_clock_is_a_duplicate_and_a_clock_on_another_state_changes_nothing() -> None:
    record, _ = _run(_left(), _expired())
    again = apply_clock_expired(record, _expired())
    assert again.duplicate and again.transitions == []
    # Missing education, in education, no case: the clock is stale there (every state stays).
    lapsed = next(f for f in record.facts if f.event_type == "case-clock-expired")
    assert classify(record.case, lapsed) == EventKind.CLOCK_EXPIRED_STALE
    alone, outs = _run(_expired())  # no record here (purged): nothing recorded, projected or saved
    assert alone.case.state is None and outs[0].duplicate and alone.facts == []


def test_a_wait_a_late_fact_opens_is_dated_when_it_began_so_its_clock_can_move_it() -> None:
    """Registered at 108001 on Mon 3 Nov; the deletion from 108000 for 108001 (Wed 5 Nov) changes nothing
    (already arrived). Late comes 108001's own deletion to an unknown destination on Tue 4 Nov: in event
    order the child was missing, then waited for 108001 from Wed 5 Nov. The transition into the wait is
    dated Wed 5 Nov (when it began), not the late fact's time, so the clock escalation starts from it is
    the one tracking counts as this wait's."""
    record, _ = _run(_registered(date(2025, 11, 3)), _left(date(2025, 11, 5)))
    assert record.case.state == CaseState.IN_EDUCATION
    left_unknown = _fact("pupil-left-roll", date(2025, 11, 4), deletion_ground="i", enquiries_completed=True,
                         school_urn="108001", destination={"known": False})  # fmt: skip
    late = apply_child_fact(record, left_unknown)
    [t] = late.transitions
    began = datetime(2025, 11, 5, 9, 30, tzinfo=UTC)
    assert (t.payload.from_state, t.payload.to_state) == ("in_education", "transfer_pending")
    assert t.payload.cause_occurred_at == began == late.record.case.cause_occurred_at
    lapsed = apply_clock_expired(late.record, _expired(started=t.payload.cause_occurred_at))
    assert lapsed.record.case.state == CaseState.MISSING_EDUCATION
