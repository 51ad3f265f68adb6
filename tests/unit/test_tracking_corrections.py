"""A school corrects a leaver's destination: the correction (a pupil-left-roll with corrects_event_id) is
folded in place of the fact it names, whichever arrives first (no Kafka)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from devtools.samples import sample_event_dict
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload

CHILD = str(uuid.uuid4())
LEFT_ON = date(2025, 11, 3)  # a Monday in the autumn term


def leaver(destination: dict[str, Any], ground: str, corrects: uuid.UUID | None = None) -> ChildFact:
    data = sample_event_dict("pupil-left-roll", on=LEFT_ON)
    data["payload"].update(destination=destination, deletion_ground=ground)
    if corrects is not None:
        data["payload"]["corrects_event_id"] = str(corrects)
    e = decode_inbound(data)
    return ChildFact(
        event_id=e.event_id,
        occurred_at=e.occurred_at,
        source=Source(system="t", la_code="801"),
        payload=ChildFactPayload(
            child_id=uuid.UUID(CHILD), la_code="801", match="new", fact=e.model_dump(mode="json")
        ),
    )


TO_BATH = {"known": True, "la_code": "800"}  # said to have moved to Bath and North East Somerset
UNKNOWN = {"known": False, "ctf_destination": "XXXXXXX"}


def run(*facts: ChildFact) -> tuple[ChildRecord, list[Any], list[Any]]:
    record = new_record(CHILD, "801")
    transitions: list[Any] = []
    timeline: list[Any] = []
    for f in facts:
        out = apply_child_fact(record, f)
        record, transitions, timeline = out.record, transitions + out.transitions, timeline + out.timeline
    return record, transitions, timeline


def test_a_correction_replaces_the_destination_it_names() -> None:
    """Left for another LA, then corrected to unknown: as a plain step from the handed-over state an unknown
    destination would be refused; as a correction the facts are folded again without the wrong one."""
    wrong = leaver(TO_BATH, "g")
    record, _, _ = run(wrong)
    handed = record.case.state
    assert handed != "missing_education" and record.case.destination_la_code == "800"
    plain = apply_child_fact(record, leaver(UNKNOWN, "i"))  # a second leaving, not a correction
    assert plain.refused and plain.record.case.state == handed
    correction = leaver(UNKNOWN, "i", corrects=wrong.event_id)
    out = apply_child_fact(record, correction)
    assert out.record.case.state == "missing_education"
    [transition] = out.transitions
    assert (transition.payload.from_state, transition.payload.to_state) == (handed, "missing_education")
    assert str(transition.payload.cause_event_id) == str(correction.event_id)
    assert out.timeline[0].verdict == "correction-applied" and not out.refused
    assert out.record.case.cause_event_id == str(correction.event_id)


def test_a_correction_that_changes_nothing_is_recorded_only() -> None:
    wrong = leaver(UNKNOWN, "i")
    same_state = leaver({"known": False, "ctf_destination": "XXXXXXX"}, "h", corrects=wrong.event_id)
    record, transitions, timeline = run(wrong, same_state)
    assert record.case.state == "missing_education"
    # No new state; the history from the corrected fact on (a new cause and reason) goes to escalation.
    assert [(t.payload.from_state, t.payload.to_state) for t in transitions] == [
        (None, "missing_education"),
        ("missing_education", "missing_education"),
    ]
    assert transitions[1].payload.history is not None
    assert [row.verdict for row in timeline] == ["move", "correction"]


def test_the_corrected_fact_arriving_after_its_correction_changes_nothing() -> None:
    wrong = leaver(TO_BATH, "g")
    correction = leaver(UNKNOWN, "i", corrects=wrong.event_id)
    record, transitions, timeline = run(correction, wrong)
    assert record.case.state == "missing_education"
    assert [(t.payload.from_state, t.payload.to_state) for t in transitions] == [(None, "missing_education")]
    assert [row.verdict for row in timeline] == ["move", "superseded"]
    assert not any(h for h in apply_child_fact(new_record(CHILD, "801"), correction).handovers)


def test_corrections_chain_the_last_one_wins() -> None:
    first = leaver(UNKNOWN, "i")
    second = leaver(TO_BATH, "g", corrects=first.event_id)
    third = leaver(UNKNOWN, "i", corrects=second.event_id)
    record, _, _ = run(first, second, third)
    assert record.case.state == "missing_education"
    assert record.case.cause_event_id == str(third.event_id)
