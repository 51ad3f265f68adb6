"""Each rejection rule of the referral service names the field and the rule it broke."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.models import ClientKind
from services.referral.validation import (
    Scope,
    age_on,
    parse_event,
    scope_problems,
    service_rule_problems,
    weekdays_between,
)
from shared.identifiers import upn_check_letter

NOW = datetime(2025, 11, 10, 12, 0, tzinfo=UTC)
SCHOOL = Scope(ClientKind.SCHOOL, DEMO_LA, DEMO_SCHOOL_URN)
AGENCY = Scope(ClientKind.AGENCY, DEMO_LA)


def rules_of(data: dict[str, Any], scope: Scope | None = None) -> set[tuple[str, str]]:
    event, problems = parse_event(data)
    if event is not None:
        problems = scope_problems(event, scope) if scope else service_rule_problems(event, NOW)
    return {(p.field, p.rule) for p in problems}


def test_valid_events_pass_the_service_rules() -> None:
    for event_type in ("pupil-left-roll", "pupil-registered", "exclusion-issued", "referral-received"):
        assert rules_of(sample_event_dict(event_type)) == set()
    absence = sample_event_dict("absence-threshold-crossed")
    # devtools.samples puts 10 school days between one first and last date; a real crossing spans two weeks
    absence["payload"].update(first_absent_date="2025-10-20", last_absent_date="2025-10-31")
    assert rules_of(absence) == set()


# --- schema rules (shared schemas), reported against the field -------------------------------------------


def test_upn_with_a_wrong_check_letter_is_named() -> None:
    data = sample_event_dict("pupil-left-roll")
    upn = data["payload"]["child"]["upn"]
    data["payload"]["child"]["upn"] = ("B" if upn[0] != "B" else "C") + upn[1:]
    assert rules_of(data) == {("payload.child.upn", "value_error")}


def test_temporary_upn_is_accepted() -> None:
    data = sample_event_dict("pupil-registered")
    body = "801200014999"[
        :11
    ]  # LA, establishment, year, first two serial digits; a letter ends a temporary UPN
    upn = upn_check_letter(body + "A") + body + "A"
    data["payload"]["child"]["upn"] = upn
    assert rules_of(data) == set()
    data["payload"]["child"]["upn"] = upn[:-1] + "I"  # I, O and S are never used
    assert ("payload.child.upn", "value_error") in rules_of(data)


def test_unknown_deletion_ground_is_named() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["deletion_ground"] = "z"
    assert rules_of(data) == {("payload.deletion_ground", "enum")}


def test_unknown_field_is_an_error_not_dropped() -> None:
    data = sample_event_dict("pupil-registered")
    data["payload"]["entry_dat"] = "2025-11-03"
    assert ("payload.entry_dat", "extra_forbidden") in rules_of(data)


def test_unknown_event_type_is_named() -> None:
    data = sample_event_dict("pupil-registered")
    data["event_type"] = "pupil-vanished"
    assert rules_of(data) == {("event_type", "union_tag_invalid")}


def test_exclusion_type_rules_come_from_the_schema() -> None:
    data = sample_event_dict("exclusion-issued")
    data["payload"].update(exclusion_type="suspension")  # a suspension needs its length in school days
    assert rules_of(data) == {("payload", "value_error")}


def test_la_code_must_be_a_current_dfe_number() -> None:
    data = sample_event_dict("pupil-registered")
    data["source"]["la_code"] = "909"  # Cumbria, split in 2023
    assert rules_of(data) == {("source.la_code", "value_error")}


def test_personal_values_are_not_echoed_in_problems() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["child"]["surname"] = ""
    data["payload"]["child"]["upn"] = "NOT-A-UPN-123"
    event, problems = parse_event(data)
    assert event is None and problems
    assert all("NOT-A-UPN" not in p.message for p in problems)


# --- service rules --------------------------------------------------------------------------------------


def test_event_in_the_future_beyond_the_clock_tolerance_is_refused() -> None:
    data = sample_event_dict("pupil-registered", on=NOW.date())
    data["occurred_at"] = (NOW + timedelta(minutes=4)).isoformat()
    assert rules_of(data) == set()  # a drifting MIS clock is tolerated
    data["occurred_at"] = (NOW + timedelta(minutes=6)).isoformat()
    assert rules_of(data) == {("occurred_at", "not_in_future")}


def test_leaving_date_after_today_is_refused() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["leaving_date"] = (NOW.date() + timedelta(days=1)).isoformat()
    assert rules_of(data) == {("payload.leaving_date", "not_in_future")}


def test_expected_start_of_a_place_may_be_in_the_future() -> None:
    data = sample_event_dict("place-offered")
    data["payload"]["expected_start"] = (NOW.date() + timedelta(days=30)).isoformat()
    assert rules_of(data) == set()


def test_a_review_date_is_ahead() -> None:
    data = sample_event_dict("review-date-set")
    data["payload"]["review_on"] = (NOW.date() + timedelta(days=70)).isoformat()
    assert rules_of(data) == set()


@pytest.mark.parametrize(
    ("dob", "ok"), [("2007-11-11", True), ("2006-11-02", False), ("2021-11-03", True), ("2022-01-01", False)]
)
def test_date_of_birth_must_be_near_compulsory_school_age(dob: str, ok: bool) -> None:
    data = sample_event_dict("pupil-registered")  # event on 2025-11-03
    data["payload"]["child"]["date_of_birth"] = dob
    assert rules_of(data) == (set() if ok else {("payload.child.date_of_birth", "school_age")})


def test_absence_threshold_needs_the_rule_minimum() -> None:
    data = sample_event_dict("absence-threshold-crossed")
    data["payload"].update(first_absent_date="2025-10-20", last_absent_date="2025-10-31", school_days=9)
    assert rules_of(data) == {("payload.school_days", "threshold_not_met")}


def test_absence_days_cannot_exceed_the_weekdays_in_the_span() -> None:
    data = sample_event_dict("absence-threshold-crossed")
    data["payload"].update(first_absent_date="2025-10-27", last_absent_date="2025-11-03", school_days=10)
    assert rules_of(data) == {("payload.school_days", "more_days_than_weekdays")}


def test_persistent_absence_needs_a_percentage() -> None:
    data = sample_event_dict("absence-threshold-crossed")
    data["payload"].update(rule="persistent_10_percent", first_absent_date="2025-09-01", percentage=8.5)
    assert rules_of(data) == {("payload.percentage", "threshold_not_met")}


def test_destination_cannot_be_the_school_being_left() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"].update(deletion_ground="a", destination={"known": True, "school_urn": DEMO_SCHOOL_URN})
    assert rules_of(data) == {("payload.destination.school_urn", "destination_is_leaving_school")}


def test_ctf_unknown_destination_cannot_be_known() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["destination"] = {"known": True, "la_code": "803", "ctf_destination": "XXXXXXX"}
    assert rules_of(data) == {("payload.destination.ctf_destination", "unknown_destination_code")}


def test_ground_l_needs_a_pupil_of_school_leaving_age() -> None:
    data = sample_event_dict("pupil-left-roll")  # child born 2014: 11 at leaving
    data["payload"]["deletion_ground"] = "l"
    assert rules_of(data) == {("payload.deletion_ground", "ground_l_needs_school_leaving_age")}


def test_ground_a_needs_the_destination_school() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"].update(deletion_ground="a", destination={"known": True, "la_code": "803"})
    assert rules_of(data) == {("payload", "value_error")}


def test_move_out_of_area_must_name_another_la() -> None:
    data = sample_event_dict("moved-out-of-area", school_urn=None)
    data["payload"]["new_la_code"] = DEMO_LA
    assert rules_of(data) == {("payload.new_la_code", "new_la_is_this_la")}


# --- authorisation (scope) rules --------------------------------------------------------------------------


def test_school_cannot_submit_for_another_school() -> None:
    data = sample_event_dict("pupil-left-roll", school_urn="108001")
    assert ("source.school_urn", "client_school") in rules_of(data, SCHOOL)


def test_school_reports_only_pupils_on_its_own_register() -> None:
    data = sample_event_dict("pupil-left-roll")
    data["payload"]["school_urn"] = "108001"
    assert rules_of(data, SCHOOL) == {("payload.school_urn", "client_school")}


def test_client_cannot_submit_for_another_la() -> None:
    data = sample_event_dict("referral-received", la_code="803", school_urn=None)
    assert rules_of(data, AGENCY) == {("source.la_code", "client_la")}


def test_school_cannot_send_agency_event_types() -> None:
    data = sample_event_dict("child-located")
    assert rules_of(data, SCHOOL) == {("event_type", "event_type_not_permitted")}


def test_agency_submits_without_a_school_urn() -> None:
    assert rules_of(sample_event_dict("referral-received", school_urn=None), AGENCY) == set()
    with_school = sample_event_dict("referral-received")
    assert rules_of(with_school, AGENCY) == {("source.school_urn", "agency_not_school")}


# --- helpers ----------------------------------------------------------------------------------------------


def test_age_and_weekday_arithmetic() -> None:
    assert age_on(date(2014, 3, 1), date(2025, 2, 28)) == 10
    assert age_on(date(2014, 3, 1), date(2025, 3, 1)) == 11
    assert weekdays_between(date(2025, 11, 3), date(2025, 11, 16)) == 10  # two school weeks
    assert weekdays_between(date(2025, 11, 8), date(2025, 11, 9)) == 0  # a weekend
