"""The transition table: every (state, event kind) pair, allowed and refused, plus classification and
folding."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.tracking.facts import fact_from_inbound
from services.tracking.state_machine import (
    ALL_STATES,
    TRANSITIONS,
    Action,
    Case,
    EventKind,
    Fact,
    Verdict,
    classify,
    fold,
    step,
)
from shared.events.internal import CaseState
from shared.samples import sample_event

S = CaseState
NO = None
M, ST, R = Verdict.MOVE, Verdict.STAY, Verdict.REFUSE
STATES = [
    NO,
    S.ON_ROLL_AT_RISK,
    S.MISSING_EDUCATION,
    S.WHEREABOUTS_UNKNOWN,
    S.AWAITING_PROVISION,
    S.PLACE_OFFERED,
    S.IN_EDUCATION,
    S.ELECTIVELY_HOME_EDUCATED,
    S.LEFT_AREA,
    S.MOVED_ABROAD,
]
IE, ME, WU, AP, PO = (
    S.IN_EDUCATION,
    S.MISSING_EDUCATION,
    S.WHEREABOUTS_UNKNOWN,
    S.AWAITING_PROVISION,
    S.PLACE_OFFERED,
)
EHE, LA, AB, RISK = S.ELECTIVELY_HOME_EDUCATED, S.LEFT_AREA, S.MOVED_ABROAD, S.ON_ROLL_AT_RISK

# The expected table, written out independently of the code: one entry per state in STATES order.
# A state name = MOVE to that state; "stay" / "REFUSE" = the other verdicts.
stay, REF = "stay", "REFUSE"
# fmt: off
EXPECTED: dict[EventKind, list[object]] = {
    EventKind.REGISTERED:                [IE, IE, IE, IE, IE, IE, stay, IE, IE, IE],
    EventKind.LEFT_ROLL_UNKNOWN:         [ME, ME, stay, stay, stay, stay, ME, REF, REF, REF],
    EventKind.LEFT_ROLL_ELSEWHERE:       [IE, IE, IE, IE, IE, IE, stay, IE, REF, REF],
    EventKind.LEFT_ROLL_HOME_EDUCATION:  [EHE, EHE, EHE, EHE, EHE, EHE, EHE, stay, REF, REF],
    EventKind.LEFT_ROLL_EXCLUDED:        [AP, AP, AP, stay, stay, AP, AP, REF, REF, REF],
    EventKind.LEFT_ROLL_OTHER_LA:        [LA, LA, LA, LA, LA, LA, LA, LA, stay, REF],
    EventKind.LEFT_ROLL_ABROAD:          [ME, ME, stay, stay, ME, ME, ME, ME, REF, stay],
    EventKind.LEFT_ROLL_OUT_OF_SCOPE:    [REF] * 10,
    EventKind.ABSENCE_CROSSED:           [RISK, stay, REF, REF, REF, RISK, RISK, REF, REF, REF],
    EventKind.ABSENCE_CROSSED_ALREADY_RETRACTED: [stay] * 10,
    EventKind.ABSENCE_RETRACTED_CLEARS:  [stay, IE, stay, stay, stay, stay, stay, stay, stay, stay],
    EventKind.ABSENCE_RETRACTED_PARTIAL: [stay] * 10,
    EventKind.EXCLUSION_PERMANENT:       [AP, AP, REF, stay, stay, AP, AP, REF, REF, REF],
    EventKind.EXCLUSION_SUSPENSION:      [stay, stay, stay, stay, stay, stay, stay, REF, REF, REF],
    EventKind.PLACE_OFFERED:             [PO, PO, PO, PO, PO, stay, stay, PO, REF, REF],
    EventKind.PROVISION_STARTED:         [IE, IE, IE, IE, IE, IE, stay, IE, IE, IE],
    EventKind.LOCATED:                   [AP, stay, AP, AP, stay, stay, stay, stay, AP, AP],
    EventKind.LOCATED_IN_EDUCATION:      [IE, IE, IE, IE, IE, IE, stay, IE, IE, IE],
    EventKind.LOCATED_OTHER_LA:          [LA, LA, LA, LA, LA, LA, REF, LA, stay, LA],
    EventKind.WHEREABOUTS_UNKNOWN:       [WU, WU, WU, stay, WU, WU, REF, WU, REF, REF],
    EventKind.HOME_EDUCATION:            [EHE, EHE, EHE, EHE, EHE, EHE, EHE, stay, REF, REF],
    EventKind.HOME_EDUCATION_NEEDS_CONSENT: [REF] * 10,
    EventKind.MOVED_OUT:                 [LA, LA, LA, LA, LA, LA, LA, LA, stay, LA],
    EventKind.MOVED_IN:                  [ME, stay, stay, stay, stay, stay, stay, stay, ME, ME],
    EventKind.MOVED_IN_WITH_SCHOOL:      [PO, stay, PO, PO, PO, stay, stay, stay, PO, PO],
    EventKind.MOVED_ABROAD_CONFIRMED:    [AB, AB, AB, AB, AB, AB, AB, AB, AB, stay],
    EventKind.MOVED_ABROAD_UNCONFIRMED:  [ME, ME, stay, stay, ME, ME, ME, ME, REF, stay],
    EventKind.REFERRAL:                  [ME, stay, stay, stay, stay, stay, stay, stay, stay, stay],
    EventKind.ENQUIRY:                   [REF, stay, stay, stay, stay, stay, stay, stay, stay, stay],
    EventKind.SOCIAL_CARE:               [stay] * 10,
    EventKind.SICKNESS_NOTICE:           [stay] * 10,
    EventKind.FAIR_ACCESS_REFERRED:      [stay] * 10,
}
# fmt: on

PAIRS = list(itertools.product(EventKind, STATES))


def test_table_names_every_state_for_every_event_kind() -> None:
    assert set(TRANSITIONS) == set(EventKind) == set(EXPECTED)
    assert list(ALL_STATES) == STATES
    for kind, row in TRANSITIONS.items():
        assert set(row) == set(STATES), kind


@pytest.mark.parametrize(("kind", "state"), PAIRS, ids=[f"{k.value}|{s or 'no_case'}" for k, s in PAIRS])
def test_every_pair(kind: EventKind, state: CaseState | None) -> None:
    rule = TRANSITIONS[kind][state]
    expected = EXPECTED[kind][STATES.index(state)]
    if expected == stay:
        assert rule.verdict == ST and rule.to_state is None
    elif expected == REF:
        assert rule.verdict == R and Action.FLAG_FOR_REVIEW in rule.actions
    else:
        assert rule.verdict == M and rule.to_state == expected
        assert rule.to_state != state, "a move to the same state must be written as stay"


def _fact(event_type: str, days: int = 0, **attrs: Any) -> Fact:
    return Fact(
        event_id=f"e-{event_type}-{days}-{sorted(attrs.items())}",
        event_type=event_type,
        occurred_at=datetime(2025, 11, 3, 9, tzinfo=UTC) + timedelta(days=days),
        la_code="801",
        attrs=attrs,
    )


def test_classification_of_real_sample_events() -> None:
    case = Case(la_code="801")
    expected = {
        "pupil-registered": EventKind.REGISTERED,
        "pupil-left-roll": EventKind.LEFT_ROLL_UNKNOWN,
        "absence-threshold-crossed": EventKind.ABSENCE_CROSSED,
        "absence-threshold-retracted": EventKind.ABSENCE_RETRACTED_PARTIAL,
        "exclusion-issued": EventKind.EXCLUSION_PERMANENT,
        "place-offered": EventKind.PLACE_OFFERED,
        "provision-started": EventKind.PROVISION_STARTED,
        "child-located": EventKind.LOCATED,
        "whereabouts-unknown": EventKind.WHEREABOUTS_UNKNOWN,
        "home-education-notified": EventKind.HOME_EDUCATION,
        "moved-out-of-area": EventKind.MOVED_OUT,
        "moved-abroad": EventKind.MOVED_ABROAD_CONFIRMED,
        "referral-received": EventKind.REFERRAL,
        "enquiry-recorded": EventKind.ENQUIRY,
        "social-care-status-changed": EventKind.SOCIAL_CARE,
        "sickness-absence-notified": EventKind.SICKNESS_NOTICE,
        "fair-access-referred": EventKind.FAIR_ACCESS_REFERRED,
    }
    for event_type, kind in expected.items():
        assert classify(case, fact_from_inbound(sample_event(event_type))) == kind, event_type


def test_left_roll_variants() -> None:
    case = Case(la_code="801")
    base: dict[str, Any] = {"deletion_ground": "i", "destination_known": False}
    assert classify(case, _fact("pupil-left-roll", **base)) == EventKind.LEFT_ROLL_UNKNOWN
    assert classify(case, _fact("pupil-left-roll", deletion_ground="f")) == EventKind.LEFT_ROLL_HOME_EDUCATION
    assert classify(case, _fact("pupil-left-roll", deletion_ground="o")) == EventKind.LEFT_ROLL_EXCLUDED
    assert classify(case, _fact("pupil-left-roll", deletion_ground="k")) == EventKind.LEFT_ROLL_OUT_OF_SCOPE
    assert (
        classify(case, _fact("pupil-left-roll", deletion_ground="a", destination_school_urn="100000"))
        == EventKind.LEFT_ROLL_ELSEWHERE
    )
    assert (
        classify(case, _fact("pupil-left-roll", deletion_ground="g", destination_la_code="803"))
        == EventKind.LEFT_ROLL_OTHER_LA
    )
    assert (
        classify(case, _fact("pupil-left-roll", deletion_ground="g", destination_la_code="801"))
        == EventKind.LEFT_ROLL_UNKNOWN
    )
    assert (
        classify(case, _fact("pupil-left-roll", deletion_ground="g", destination_country="PL"))
        == EventKind.LEFT_ROLL_ABROAD
    )


def test_the_missing_child_journey_and_its_clocks() -> None:
    facts = [
        _fact("pupil-left-roll", 0, deletion_ground="i"),
        _fact("whereabouts-unknown", 10),
        _fact("child-located", 20, located_la_code="801"),
        _fact("place-offered", 25, provision_type="school", fair_access=True),
        _fact("provision-started", 30, provision_type="school"),
    ]
    case, steps = fold("801", facts)
    assert [s.after.state for s in steps] == [ME, WU, AP, PO, IE]
    assert steps[0].deadlines_started == ("missing_education",)
    assert steps[1].deadlines_started == ("whereabouts_unknown",)
    assert steps[1].deadlines_stopped == ("missing_education",)
    assert steps[3].deadlines_started == ("place_offered", "fair_access_20_days")
    assert set(steps[4].deadlines_stopped) == {"place_offered", "fair_access_20_days"}
    assert case.open_deadlines == [] and case.reason is None
    assert steps[1].after.reason == "whereabouts_unknown"


def test_permanent_exclusion_keeps_day6_clock_until_in_education() -> None:
    case, steps = fold(
        "801",
        [
            _fact("exclusion-issued", 0, exclusion_type="permanent"),
            _fact("place-offered", 3, provision_type="pupil_referral_unit"),
            _fact("provision-started", 8, provision_type="pupil_referral_unit"),
        ],
    )
    assert steps[0].after.state == AP and set(steps[0].deadlines_started) == {
        "awaiting_provision",
        "pe_provision_day6",
    }
    assert steps[0].after.reason == "excluded"
    assert "pe_provision_day6" in steps[1].after.open_deadlines  # still owed until provision starts
    assert "pe_provision_day6" in steps[2].deadlines_stopped and case.state == IE


def test_move_out_hands_over_with_destination() -> None:
    s = step(Case(la_code="801", state=IE), _fact("moved-out-of-area", 0, new_la_code="803"))
    assert s.after.state == LA and s.after.destination_la_code == "803" and s.handover_to == "803"
    arrived = step(Case(la_code="803"), _fact("moved-out-of-area", 0, new_la_code="803"))
    assert arrived.kind == EventKind.MOVED_IN and arrived.after.state == ME and arrived.handover_to is None


def test_retraction_undoes_only_the_last_open_crossing() -> None:
    a = _fact("absence-threshold-crossed", 0, rule="r1")
    b = _fact("absence-threshold-crossed", 1, rule="r2")
    undo_a = _fact("absence-threshold-retracted", 2, retracts_event_id=a.event_id)
    undo_b = _fact("absence-threshold-retracted", 3, retracts_event_id=b.event_id)
    case, steps = fold("801", [a, b, undo_a])
    assert case.state == RISK and steps[2].kind == EventKind.ABSENCE_RETRACTED_PARTIAL
    case, steps = fold("801", [a, b, undo_a, undo_b])
    assert case.state == IE and steps[3].kind == EventKind.ABSENCE_RETRACTED_CLEARS


def test_context_updates_even_when_the_state_stays() -> None:
    s = step(
        Case(la_code="801", state=ME),
        _fact("social-care-status-changed", 0, status="child_protection_plan", has_social_worker=True),
    )
    assert s.rule.verdict == ST and s.after.has_social_worker
    assert (
        "child_protection_plan" in s.after.vulnerabilities
        and s.after.social_care_status == "child_protection_plan"
    )


def test_refused_fact_keeps_state_and_is_flagged() -> None:
    s = step(Case(la_code="801", state=IE), _fact("whereabouts-unknown", 0))
    assert s.flagged and s.after.state == IE and not s.changes


def test_fold_is_independent_of_arrival_order() -> None:
    facts = [
        _fact("pupil-left-roll", 0, deletion_ground="i"),
        _fact("whereabouts-unknown", 5),
        _fact("child-located", 9, located_la_code="801"),
    ]
    for perm in itertools.permutations(facts):
        assert fold("801", perm)[0].state == AP
