"""Identifier rules from the DfE and NHS specifications, with the worked examples of DOMAIN.md."""

from __future__ import annotations

import pytest

from shared.identifiers import (
    ascii_digits,
    is_temporary_upn,
    upn_check_letter,
    validate_destination_la_code,
    validate_la_code,
    validate_nhs_number,
    validate_postcode,
    validate_uln,
    validate_upn,
    validate_urn,
)


@pytest.mark.parametrize("upn", ["B801200005001", "P207000016049", "b801200005001 "])
def test_worked_upn_examples_are_valid(upn: str) -> None:
    assert validate_upn(upn) == upn.strip().upper()


def test_p207000016049_is_p_not_q() -> None:
    with pytest.raises(ValueError, match="check letter does not match") as info:
        validate_upn("Q207000016049")
    assert "207000016049" not in str(info.value) and "P" not in str(info.value).split()


def _upn(la: str) -> str:
    body = la + "2000" + "14" + "001"
    return upn_check_letter(body) + body


@pytest.mark.parametrize(
    "la",
    [
        "909",  # Cumbria, until 2023
        "928",  # Northamptonshire, until 2021
        "835",  # Bournemouth, until 2019
        "836",  # Dorset, until 2019
        "837",  # Poole, until 2019
        "820",  # Bedfordshire, until 2009
        "875",  # Cheshire, until 2009
        "660",  # Isle of Anglesey (Wales)
        "681",  # Cardiff (Wales)
        "702",  # a DfE pseudo-LA (service children's schools)
        "942",  # Cumberland, since 2023
    ],
)
def test_upns_issued_by_former_welsh_and_pseudo_las_are_valid(la: str) -> None:
    """A UPN keeps the number of the LA that issued it for life (DfE census rule 1530's list)."""
    assert validate_upn(_upn(la)) == _upn(la)


def test_upn_of_an_la_number_never_issued_is_refused() -> None:
    with pytest.raises(ValueError, match="not the number of any LA") as info:
        validate_upn(_upn("999"))
    assert "999" not in str(info.value)


@pytest.mark.parametrize(
    ("upn", "message"),
    [
        ("B80120000500", "13 characters"),
        ("B80120000500!", "check letter, 11 digits"),
        ("18012000050011"[:13], "check letter, 11 digits"),
        ("A999200005001", "not the number of any LA"),
        ("A801200005001", "check letter does not match"),
    ],
)
def test_bad_upns_say_which_rule(upn: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_upn(upn)


def test_temporary_upn_ends_in_a_letter_and_is_checked() -> None:
    for final in "AZ":
        body = "8012000050" + "0" + final  # LA, establishment, year, two serial digits and a letter
        upn = upn_check_letter(body) + body
        assert validate_upn(upn) == upn
        assert is_temporary_upn(upn)
    with pytest.raises(ValueError, match="I, O or S"):
        validate_upn("A80120000500I")


def test_uln() -> None:
    assert validate_uln("9276308686") == "9276308686"
    with pytest.raises(ValueError, match="check digit"):
        validate_uln("9276308687")
    with pytest.raises(ValueError, match="cannot start with 0"):
        validate_uln("0276308686")


def test_nhs_number() -> None:
    assert validate_nhs_number("943 476 5919") == "9434765919"
    with pytest.raises(ValueError, match="check digit"):
        validate_nhs_number("9434765918")


def test_urn_la_and_postcode() -> None:
    assert validate_urn("100000") == "100000"
    with pytest.raises(ValueError):
        validate_urn("12345")
    assert validate_la_code("942") == "942"  # Cumberland, since 2023
    with pytest.raises(ValueError, match="not a current"):
        validate_la_code("909")
    assert validate_postcode("bs15tr") == "BS1 5TR"
    with pytest.raises(ValueError):
        validate_postcode("NOT A CODE")


@pytest.mark.parametrize("la", ["909", "928", "836", "681"])
def test_a_moved_childs_attendance_mark_leaver_and_referral_are_accepted(la: str) -> None:
    """The children who moved are exactly those whose UPN names a former or another country's LA."""
    from devtools.samples import child, sample_event
    from shared.events.attendance import AttendanceMark

    upn = _upn(la)
    mark = AttendanceMark.model_validate(
        {
            "event_id": "5f0c3d5e-8d0e-4a53-9a55-6f1d8d7b2a01",
            "occurred_at": "2025-11-03T09:00:00+00:00",
            "source": {"system": "SIMS", "la_code": "801", "school_urn": "108000"},
            "payload": {
                "upn": upn,
                "school_urn": "108000",
                "date": "2025-11-03",
                "session": "AM",
                "code": "N",
            },
        }
    )
    assert mark.payload.upn == upn
    for event_type in ("pupil-left-roll", "referral-received"):
        assert sample_event(event_type, kid=child(1, upn=upn)).payload.child.upn == upn


# Each valid in ASCII; the same digits in another script must be refused, not stored as a second identifier.
ASCII_VALID = [
    (validate_urn, "123456"),
    (validate_uln, "9276308686"),
    (validate_nhs_number, "9434765919"),
    (validate_la_code, "801"),
    (validate_destination_la_code, "801"),
    (validate_upn, "B801200005001"),
]
OTHER_SCRIPTS = {
    "arabic-indic": str.maketrans(
        "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
    ),
    "full-width": str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"),
    "devanagari": str.maketrans("0123456789", "\u0966\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f"),
    "superscript": str.maketrans(
        "0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
    ),
}


@pytest.mark.parametrize("script", sorted(OTHER_SCRIPTS))
@pytest.mark.parametrize(("validate", "value"), ASCII_VALID, ids=lambda v: getattr(v, "__name__", v))
def test_identifiers_take_ascii_digits_only(validate, value: str, script: str) -> None:  # type: ignore[no-untyped-def]
    """A URN, ULN, NHS number or LA number written in another script's digits is refused with the field's own
    message (before: int() took them, so one school or child could be stored under two identifiers, and a
    superscript digit raised Python's own error quoting the character)."""
    assert validate(value) == value
    for position in range(len(value)):
        if not value[position].isdigit():
            continue
        mixed = value[:position] + value[position].translate(OTHER_SCRIPTS[script]) + value[position + 1 :]
        with pytest.raises(ValueError) as info:
            validate(mixed)
        assert "invalid literal" not in str(info.value)
    assert ascii_digits(value[1:]) and not ascii_digits(value[1:].translate(OTHER_SCRIPTS[script]))


def test_a_fact_from_a_school_urn_in_full_width_digits_is_refused_with_the_field() -> None:
    """Through the inbound model, as intake sees it: the school's URN in the source and in the payload."""
    from pydantic import ValidationError

    from devtools.samples import DEMO_SCHOOL_URN, sample_event_dict
    from shared.events.catalogue import decode_inbound

    wide = DEMO_SCHOOL_URN.translate(OTHER_SCRIPTS["full-width"])
    event = sample_event_dict("pupil-registered")
    event["payload"]["school_urn"] = wide
    with pytest.raises(ValidationError, match="URN must be 6 digits") as info:
        decode_inbound(event)
    assert [e["loc"][-1] for e in info.value.errors()] == ["school_urn"]
    event = sample_event_dict("pupil-registered", school_urn=wide)
    with pytest.raises(ValidationError, match="URN must be 6 digits"):
        decode_inbound(event)
