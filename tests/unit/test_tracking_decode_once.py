"""The embedded fact of a ChildFact is decoded once per record (issue 13): a caller that has it decoded (a
replay) passes it down and nothing decodes it again; the payload is dumped once for the compact fact and the
register details, which stay what they were (None fields left out at every depth)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest

from devtools.samples import sample_event, sample_event_dict
from services.tracking import cases
from services.tracking.cases import apply_child_fact, new_record, register_details
from shared.events.catalogue import ALL_EVENT_CLASSES, decode_inbound
from shared.events.envelope import Envelope, Source
from shared.events.internal import ChildFact, ChildFactPayload

CHILD = str(uuid.uuid4())
REGISTER_EVENTS = ("not-in-school-notice", "education-provider-return", "register-entry-recorded")


def _child_fact(inbound: Envelope) -> ChildFact:
    return ChildFact(
        event_id=inbound.event_id,
        occurred_at=inbound.occurred_at,
        source=Source(system="t", la_code="801"),
        payload=ChildFactPayload(
            child_id=uuid.UUID(CHILD), la_code="801", match="new", fact=inbound.model_dump(mode="json")
        ),
    )


def test_a_decoded_fact_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = sample_event("pupil-left-roll", on=date(2025, 11, 3))
    expected = apply_child_fact(new_record(CHILD, "801"), _child_fact(inbound))

    def refuse(data: Any) -> Envelope:
        raise AssertionError("the embedded fact was decoded again")

    monkeypatch.setattr(cases, "decode_inbound", refuse)
    out = apply_child_fact(new_record(CHILD, "801"), _child_fact(inbound), inbound=inbound)
    assert out.record == expected.record
    assert out.timeline == expected.timeline
    assert [t.payload for t in out.transitions] == [t.payload for t in expected.transitions]


def test_the_payload_is_dumped_once_per_record(monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = sample_event("not-in-school-notice", on=date(2025, 11, 3))
    payload_cls = type(inbound.payload)
    dumps = 0
    original = payload_cls.model_dump

    def counting(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal dumps
        dumps += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(payload_cls, "model_dump", counting)
    apply_child_fact(new_record(CHILD, "801"), _child_fact(inbound), inbound=inbound)
    assert dumps == 1


@pytest.mark.parametrize("event_type", REGISTER_EVENTS)
def test_register_details_leave_out_none_as_before(event_type: str) -> None:
    data = sample_event_dict(event_type, on=date(2025, 11, 3))
    if event_type == "register-entry-recorded":
        # Nested models with None fields: a parent without hours, a provider without addresses.
        data["payload"]["parents"] = [{"name": "Sam", "home_address": "1 Example Street, Bristol"}]
        data["payload"]["providers"] = [{"name": "Tutors Ltd", "provider_type": "individual_tutor"}]
        data["payload"]["note"] = "seen at home"
    inbound = decode_inbound(data)
    before = inbound.payload.model_dump(mode="json", exclude_none=True)  # what the details were built from
    details = register_details(event_type, inbound.payload.model_dump(mode="json"))
    assert details is not None
    for key, value in details.items():
        assert value == (before.get(key) if key not in ("address", "postcode") else before["child"][key])
    assert not any(v is None for p in details.get("parents", []) for v in p.values())


def test_other_facts_carry_no_register_details() -> None:
    types = [c.model_fields["event_type"].default for c in ALL_EVENT_CLASSES]
    assert "pupil-registered" in types
    inbound = sample_event("pupil-registered", on=date(2025, 11, 3))
    assert register_details("pupil-registered", inbound.payload.model_dump(mode="json")) is None
