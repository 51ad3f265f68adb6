"""Event schemas: every type validates, round-trips through JSON, and rejections name the field."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import ValidationError

from devtools.samples import child, sample_event, sample_event_dict
from shared.events import INBOUND_EVENT_TYPES, decode_event, decode_inbound, encode_event


@pytest.mark.parametrize("event_type", INBOUND_EVENT_TYPES)
def test_every_inbound_type_round_trips_through_json(event_type: str) -> None:
    event = sample_event(event_type)
    assert decode_inbound(encode_event(event)) == event
    assert decode_event(encode_event(event)) == event


def _error_locations(data: dict) -> list[str]:
    with pytest.raises(ValidationError) as info:
        decode_inbound(data)
    return [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]


def test_bad_upn_check_letter_names_the_field() -> None:
    data = sample_event_dict("pupil-left-roll", kid=child(upn="C801200005001"))
    with pytest.raises(ValidationError) as info:
        decode_inbound(data)
    assert "payload.child.upn" in str(info.value)
    assert "check letter does not match the digits" in str(info.value)
    messages = " ".join(e["msg"] for e in info.value.errors(include_input=False))
    assert "801200005001" not in messages  # the digits sent are never echoed


def test_unknown_field_is_rejected_not_dropped() -> None:
    data = sample_event_dict("child-located")
    data["payload"]["favourite_colour"] = "blue"
    assert any(loc.endswith("payload.favourite_colour") for loc in _error_locations(data))


def test_unknown_event_type_is_rejected() -> None:
    data = sample_event_dict("child-located")
    data["event_type"] = "child-teleported"
    with pytest.raises(ValidationError, match="child-teleported"):
        decode_inbound(data)


def test_naive_timestamp_is_rejected() -> None:
    data = sample_event_dict("child-located")
    data["occurred_at"] = "2025-11-03T09:30:00"
    assert any(loc.endswith("occurred_at") for loc in _error_locations(data))


def test_registered_elsewhere_needs_destination_school() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["deletion_ground"] = "a"
    with pytest.raises(ValidationError, match=r"needs destination\.school_urn"):
        decode_inbound(data)


def test_known_destination_needs_detail() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["destination"] = {"known": True}
    with pytest.raises(ValidationError, match="known destination needs"):
        decode_inbound(data)


def test_suspension_needs_length_and_is_capped() -> None:
    data = sample_event_dict("exclusion-issued")
    data["payload"]["exclusion_type"] = "suspension"
    with pytest.raises(ValidationError, match="suspension needs school_days"):
        decode_inbound(data)
    data["payload"]["school_days"] = 46
    assert any(loc.endswith("payload.school_days") for loc in _error_locations(data))


def test_child_without_identifier_or_name_and_dob_is_rejected() -> None:
    data = sample_event_dict("referral-received", kid={"forename": "Sam"})
    with pytest.raises(ValidationError, match="needs a UPN"):
        decode_inbound(data)


def test_inbound_event_needs_an_la() -> None:
    data = sample_event_dict("child-located")
    data["source"].pop("la_code")
    with pytest.raises(ValidationError, match="la_code is required"):
        decode_inbound(data)


def test_unknown_la_code_is_rejected() -> None:
    data = sample_event_dict("child-located")
    data["source"]["la_code"] = "909"  # Cumbria, abolished in 2023
    with pytest.raises(ValidationError, match="not a current DfE LA number"):
        decode_inbound(data)


def test_log_fields_carry_no_personal_data() -> None:
    event = sample_event("referral-received")
    fields = event.log_fields()
    flat = " ".join(str(v) for v in fields.values())
    kid = event.payload.child
    for personal in (kid.upn, kid.forename, kid.surname, str(kid.date_of_birth), kid.postcode):
        assert personal not in flat
    assert fields["event_id"] == str(event.event_id)
    uuid.UUID(fields["event_id"])


@pytest.mark.parametrize("value", [0, 1, "no", "yes", "Y", "N", "off", "on", "true", "false", "0", 1.0])
@pytest.mark.parametrize(
    ("event_type", "path"),
    [
        ("pupil-left-roll", ("destination", "known")),
        ("pupil-left-roll", ("enquiries_completed",)),
        ("referral-received", ("safeguarding_concern",)),
        ("moved-abroad", ("confirmed",)),
        ("child-located", ("in_education",)),
    ],
)
def test_booleans_are_json_booleans_only(event_type: str, path: tuple[str, ...], value: object) -> None:
    """0, "no", "Y", "off" are not booleans: a school's export that sends them is refused, not guessed at."""
    data = sample_event_dict(event_type)
    target = data["payload"]
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        decode_inbound(data)
    assert [e["type"] for e in info.value.errors()] == ["bool_type"]
    for raw in (orjson.dumps(data),):  # the same over JSON, as the API and the bus read it
        with pytest.raises(ValidationError):
            decode_inbound(raw)


def test_a_json_boolean_is_still_a_boolean() -> None:
    data = sample_event_dict("moved-abroad")
    data["payload"]["confirmed"] = True
    assert decode_inbound(orjson.dumps(data)).payload.confirmed is True
