"""A child who moves to Wales (or leaves for a school there) stays in sight: the case waits for a person to
record the Welsh LA's confirmation (awaiting_la_confirmation), and the transition that says so, with the Welsh
LA as its destination, is one escalation and the case store can read. Before, the transition's payload only
took an English LA number: applying the fact raised, the worker dead-lettered it and the case did not move."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from devtools.samples import sample_event_dict
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from shared.events.catalogue import decode_event, decode_inbound, encode_event
from shared.events.envelope import Envelope, Source
from shared.events.internal import CaseState, ChildFact, ChildFactPayload

LA = "801"
CHILD = str(uuid.uuid4())


def _apply(record: ChildRecord, data: dict[str, object]) -> tuple[ChildRecord, list[Envelope]]:
    inbound = decode_inbound(data)
    fact = ChildFact(
        event_id=inbound.event_id,
        occurred_at=inbound.occurred_at,
        source=Source(system="t", la_code=LA),
        payload=ChildFactPayload(
            child_id=uuid.UUID(CHILD), la_code=LA, match="exact", fact=inbound.model_dump(mode="json")
        ),
    )
    out = apply_child_fact(record, fact)
    return out.record, list(out.transitions)


def _to_wales(event_type: str, on: date) -> dict[str, object]:
    data = sample_event_dict(event_type, on=on)
    data["source"]["la_code"] = LA
    if event_type == "moved-out-of-area":
        data["payload"]["new_la_code"] = "662"
    else:
        data["payload"]["deletion_ground"] = "g"
        data["payload"]["destination"] = {"known": True, "la_code": "662"}
    return data


@pytest.mark.parametrize("event_type", ["moved-out-of-area", "pupil-left-roll"])
def test_a_move_to_wales_waits_for_a_person_and_escalation_can_read_it(event_type: str) -> None:
    record, transitions = _apply(new_record(CHILD, LA), _to_wales(event_type, date(2025, 11, 3)))
    assert record.case.state == CaseState.AWAITING_LA_CONFIRMATION
    assert record.case.destination_la_code == "662"
    (transition,) = transitions
    assert transition.payload.destination_la_code == "662"  # type: ignore[attr-defined]
    assert decode_event(encode_event(transition)) == transition  # as escalation reads it


def test_a_late_fact_before_a_move_to_wales_carries_it_in_the_history() -> None:
    record, _ = _apply(new_record(CHILD, LA), _to_wales("moved-out-of-area", date(2025, 11, 10)))
    earlier = sample_event_dict("pupil-registered", on=date(2025, 11, 3))
    earlier["source"]["la_code"] = LA
    record, transitions = _apply(record, earlier)  # late: re-folded, the history from it on is published
    assert record.case.state == CaseState.AWAITING_LA_CONFIRMATION
    (transition,) = transitions
    history = transition.payload.history  # type: ignore[attr-defined]
    assert history is not None and [s.destination_la_code for s in history.steps][-1] == "662"
    assert decode_event(encode_event(transition)) == transition
