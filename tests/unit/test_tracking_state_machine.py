"""The transition table: every (state, event kind) pair, allowed and refused, plus classification and
folding."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.samples import sample_event
from services.tracking.facts import fact_from_inbound
from services.tracking.state_machine import (
    ALL_STATES,
    STATE_DEADLINES,
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
from shared.events.internal import RESOLVED_STATES, CaseState

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
    S.TRANSFER_PENDING,
    S.HANDED_OVER,
    S.AWAITING_LA_CONFIRMATION,
    S.PART_TIME_PROVISION,
    S.IN_EDUCATION,
    S.ELECTIVELY_HOME_EDUCATED,
    S.LEFT_AREA,
    S.MOVED_ABROAD,
    S.OUT_OF_SCOPE,
]
IE, ME, WU, AP, PO = (
    S.IN_EDUCATION,
    S.MISSING_EDUCATION,
    S.WHEREABOUTS_UNKNOWN,
    S.AWAITING_PROVISION,
    S.PLACE_OFFERED,
)
EHE, LA, AB, RISK = S.ELECTIVELY_HOME_EDUCATED, S.LEFT_AREA, S.MOVED_ABROAD, S.ON_ROLL_AT_RISK
TP, HO, ALC, PT, OOS = (
    S.TRANSFER_PENDING,
    S.HANDED_OVER,
    S.AWAITING_LA_CONFIRMATION,
    S.PART_TIME_PROVISION,
    S.OUT_OF_SCOPE,
)

# The expected table, written out independently of the code: one entry per state in STATES order.
# A state name = MOVE to that state; "stay" / "REFUSE" = the other verdicts.
stay, REF = "stay", "REFUSE"
N = len(STATES)
# fmt: off
#                                      NO    RISK  ME    WU    AP    PO    TP    HO    ALC   PT    IE    EHE   LA    AB    OOS  # noqa: E501
EXPECTED: dict[EventKind, list[object]] = {
    EventKind.REGISTERED:             [IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   stay, IE,   IE,   IE,   IE],  # noqa: E501
    EventKind.LEFT_ROLL_UNKNOWN:      [ME,   ME,   stay, stay, stay, stay, ME,   REF,  REF,  ME,   ME,   REF,  REF,  REF,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_ELSEWHERE:    [TP,   TP,   TP,   TP,   TP,   TP,   stay, REF,  REF,  TP,   TP,   TP,   REF,  REF,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_ALREADY_ARRIVED: [stay] * N,
    EventKind.LEFT_ROLL_ELSEWHERE_OTHER_LA:
                                      [TP,   TP,   TP,   TP,   TP,   TP,   stay, REF,  TP,   TP,   TP,   TP,   REF,  REF,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_HOME_EDUCATION:
                                      [EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  REF,  REF,  EHE,  EHE,  stay, REF,  REF,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_HOME_EDUCATION_BLOCKED:
                                      [ME,   ME,   REF,  REF,  REF,  REF,  ME,   REF,  REF,  ME,   ME,   ME,   REF,  REF,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_EXCLUDED:     [AP,   AP,   AP,   stay, stay, AP,   AP,   REF,  REF,  AP,   AP,   REF,  REF,  REF,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_OTHER_LA:     [HO,   HO,   HO,   HO,   HO,   HO,   HO,   stay, HO,   HO,   HO,   HO,   stay, REF,  REF],  # noqa: E501
    EventKind.HANDOVER_OUTSIDE:       [ALC,  ALC,  ALC,  ALC,  ALC,  ALC,  ALC,  ALC,  stay, ALC,  ALC,  ALC,  ALC,  ALC,  REF],  # noqa: E501
    EventKind.LEFT_ROLL_ABROAD:       [ME,   ME,   stay, stay, ME,   ME,   ME,   REF,  REF,  ME,   ME,   ME,   REF,  stay, REF],  # noqa: E501
    EventKind.LEFT_ROLL_OUT_OF_SCOPE: [REF] * N,
    EventKind.ABSENCE_CROSSED:        [RISK, stay, REF,  REF,  REF,  RISK, stay, REF,  REF,  stay, RISK, REF,  REF,  REF,  REF],  # noqa: E501
    EventKind.ABSENCE_CROSSED_ALREADY_RETRACTED: [stay] * N,
    EventKind.ABSENCE_RETRACTED_CLEARS:
                                      [stay, IE,   stay, stay, stay, stay, stay, stay, stay, stay, stay, stay, stay, stay, stay],  # noqa: E501
    EventKind.ABSENCE_RETRACTED_PARTIAL: [stay] * N,
    EventKind.EXCLUSION_PERMANENT:    [AP,   AP,   REF,  stay, stay, AP,   AP,   REF,  REF,  AP,   AP,   REF,  REF,  REF,  REF],  # noqa: E501
    EventKind.EXCLUSION_SUSPENSION:   [stay, stay, stay, stay, stay, stay, stay, REF,  REF,  stay, stay, REF,  REF,  REF,  REF],  # noqa: E501
    EventKind.PLACE_OFFERED:          [PO,   PO,   PO,   PO,   PO,   stay, PO,   REF,  REF,  PO,   stay, PO,   REF,  REF,  REF],  # noqa: E501
    EventKind.PROVISION_STARTED:      [IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   stay, IE,   IE,   IE,   IE],  # noqa: E501
    EventKind.PROVISION_PART_TIME:    [PT,   PT,   PT,   PT,   PT,   PT,   PT,   PT,   PT,   stay, PT,   PT,   PT,   PT,   PT],  # noqa: E501
    EventKind.LOCATED:                [AP,   stay, AP,   AP,   stay, stay, AP,   AP,   AP,   stay, stay, stay, AP,   AP,   REF],  # noqa: E501
    EventKind.LOCATED_IN_EDUCATION:   [IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   stay, IE,   IE,   IE,   IE],  # noqa: E501
    EventKind.LOCATED_EDUCATION_UNCONFIRMED:
                                      [TP,   stay, TP,   TP,   TP,   stay, stay, TP,   TP,   stay, stay, stay, TP,   TP,   REF],  # noqa: E501
    EventKind.LOCATED_OTHER_LA:       [HO,   HO,   HO,   HO,   HO,   HO,   HO,   stay, HO,   HO,   REF,  HO,   stay, HO,   REF],  # noqa: E501
    EventKind.WHEREABOUTS_UNKNOWN:    [WU,   WU,   WU,   stay, WU,   WU,   WU,   WU,   WU,   WU,   REF,  WU,   REF,  REF,  REF],  # noqa: E501
    EventKind.HOME_EDUCATION:         [EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  REF,  REF,  EHE,  EHE,  stay, REF,  REF,  REF],  # noqa: E501
    EventKind.HOME_EDUCATION_NEEDS_CONSENT: [REF] * N,
    EventKind.HOME_EDUCATION_BLOCKED: [RISK, REF,  REF,  REF,  REF,  REF,  REF,  REF,  REF,  REF,  RISK, REF,  REF,  REF,  REF],  # noqa: E501
    EventKind.HOME_EDUCATION_UNSUITABLE:
                                      [ME,   stay, stay, stay, stay, stay, stay, stay, stay, stay, REF,  ME,   REF,  REF,  REF],  # noqa: E501
    EventKind.HOME_EDUCATION_ENDED:   [ME,   stay, stay, stay, stay, stay, stay, stay, stay, stay, stay, ME,   REF,  REF,  REF],  # noqa: E501
    EventKind.HOME_EDUCATION_ENDED_SCHOOL_NAMED:
                                      [TP,   stay, stay, stay, stay, stay, stay, stay, stay, stay, stay, TP,   REF,  REF,  REF],  # noqa: E501
    EventKind.REVIEW_DATE_SET:        [REF, *([stay] * (N - 1))],
    EventKind.MOVED_OUT:              [HO,   HO,   HO,   HO,   HO,   HO,   HO,   stay, HO,   HO,   HO,   HO,   HO,   HO,   REF],  # noqa: E501
    EventKind.MOVED_IN:               [ME,   stay, stay, stay, stay, stay, stay, ME,   ME,   stay, stay, stay, ME,   ME,   REF],  # noqa: E501
    EventKind.MOVED_IN_WITH_SCHOOL:   [TP,   stay, TP,   TP,   TP,   stay, stay, TP,   TP,   stay, stay, stay, TP,   TP,   REF],  # noqa: E501
    EventKind.MOVED_ABROAD_CONFIRMED: [AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   stay, AB],  # noqa: E501
    EventKind.MOVED_ABROAD_UNCONFIRMED:
                                      [ME,   ME,   stay, stay, ME,   ME,   ME,   REF,  REF,  ME,   ME,   ME,   REF,  stay, REF],  # noqa: E501
    EventKind.HANDOVER_CONFIRMED:     [REF,  LA,   LA,   LA,   LA,   LA,   LA,   LA,   LA,   LA,   stay, stay, stay, stay, stay],  # noqa: E501
    EventKind.HANDOVER_CONFIRMED_REGISTERED:
                                      [REF,  IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   stay, stay, IE,   stay, stay],  # noqa: E501
    EventKind.HANDOVER_ACCEPTED_HERE: [REF, *([stay] * (N - 1))],
    EventKind.OUTCOME_SCHOOL:         [REF,  IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   stay, IE,   IE,   IE,   IE],  # noqa: E501
    EventKind.OUTCOME_PROVISION:      [REF,  IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   IE,   stay, IE,   IE,   IE,   IE],  # noqa: E501
    EventKind.OUTCOME_HOME_EDUCATION: [REF,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  stay, EHE,  EHE,  EHE],  # noqa: E501
    EventKind.OUTCOME_OTHER_LA:       [REF,  LA,   LA,   LA,   LA,   LA,   LA,   LA,   LA,   LA,   LA,   LA,   stay, LA,   LA],  # noqa: E501
    EventKind.OUTCOME_ABROAD:         [REF,  AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   AB,   stay, AB],  # noqa: E501
    EventKind.OUTCOME_OUT_OF_SCOPE:   [REF,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  OOS,  stay],  # noqa: E501
    EventKind.REFERRAL:               [ME, *([stay] * (N - 1))],
    EventKind.ENQUIRY:                [REF, *([stay] * (N - 1))],
    EventKind.SOCIAL_CARE:            [stay] * N,
    EventKind.SICKNESS_NOTICE:        [stay] * N,
    EventKind.FAIR_ACCESS_REFERRED:   [stay] * N,
    EventKind.NOT_IN_SCHOOL_NOTICE:   [EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  EHE,  REF,  REF,  EHE,  EHE,  stay, REF,  REF,  REF],  # noqa: E501
    EventKind.NOT_IN_SCHOOL_NOTICE_ON_ROLL: [stay] * N,
    EventKind.PROVIDER_RETURN:        [stay] * N,
    EventKind.ENTRY_RECORDED:         [stay] * N,
    EventKind.ENTRY_EDUCATION_UNKNOWN: [ME,  stay, stay, stay, stay, stay, stay, stay, stay, stay, stay, ME,   stay, stay, stay],  # noqa: E501
    EventKind.ENTRY_UNSUITABLE:       [ME,   stay, stay, stay, stay, stay, stay, stay, stay, stay, REF,  ME,   REF,  REF,  REF],  # noqa: E501
    EventKind.TRANSFER_LAPSED:        [stay, stay, stay, stay, stay, stay, ME,   stay, stay, stay, stay, stay, stay, stay, stay],  # noqa: E501
    EventKind.CLOCK_EXPIRED_STALE:    [stay] * N,
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
    assert s.after.state == HO and s.after.destination_la_code == "803" and s.handover_to == "803"
    assert s.after.reason == "left_la" and s.deadlines_started == ("handed_over",) and s.after.outcome is None
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


# --- issue 14: no child leaves sight until their education is confirmed -------------------------------------
# Literal dates: 2025-11-03 is the Monday of week 2 of the autumn half-term block (autumn term 2025).

# A fact of each kind that can move a case, with what the kind needs (for the outcome check below).
KIND_FACTS: dict[EventKind, tuple[str, dict[str, Any]]] = {
    EventKind.REGISTERED: ("pupil-registered", {"school_urn": "100001"}),
    EventKind.LOCATED_IN_EDUCATION: (
        "child-located",
        {"located_la_code": "801", "in_education": True, "school_urn": "100002"},
    ),
    EventKind.ABSENCE_RETRACTED_CLEARS: (
        "absence-threshold-retracted",
        {"school_urn": "100003", "retracts_event_id": "crossing-1"},
    ),
    EventKind.PROVISION_STARTED: ("provision-started", {"provision_type": "tuition", "full_time": True}),
    EventKind.HOME_EDUCATION: ("home-education-notified", {}),
    EventKind.NOT_IN_SCHOOL_NOTICE: ("not-in-school-notice", {"arrangement": "home_education"}),
    EventKind.LEFT_ROLL_HOME_EDUCATION: ("pupil-left-roll", {"deletion_ground": "f"}),
    EventKind.MOVED_ABROAD_CONFIRMED: ("moved-abroad", {"country": "PL", "confirmed": True}),
    EventKind.HANDOVER_CONFIRMED: (
        "handover-confirmed",
        {"origin_la_code": "801", "accepting_la_code": "803", "how": "located"},
    ),
    EventKind.HANDOVER_CONFIRMED_REGISTERED: (
        "handover-confirmed",
        {"origin_la_code": "801", "accepting_la_code": "803", "how": "registered", "school_urn": "120000"},
    ),
    EventKind.OUTCOME_SCHOOL: ("case-outcome-recorded", {"outcome": "school", "school_urn": "100004"}),
    EventKind.OUTCOME_PROVISION: (
        "case-outcome-recorded",
        {"outcome": "provision", "provision_type": "pupil_referral_unit"},
    ),
    EventKind.OUTCOME_HOME_EDUCATION: ("case-outcome-recorded", {"outcome": "registered_home_education"}),
    EventKind.OUTCOME_OTHER_LA: ("case-outcome-recorded", {"outcome": "other_la_accepted", "la_code": "803"}),
    EventKind.OUTCOME_ABROAD: ("case-outcome-recorded", {"outcome": "confirmed_abroad", "country": "RO"}),
    EventKind.OUTCOME_OUT_OF_SCOPE: (
        "case-outcome-recorded",
        {"outcome": "out_of_scope", "deletion_ground": "k"},
    ),
}


def test_every_move_into_a_resolved_state_names_the_childs_education() -> None:
    """No (state, kind) pair closes a case without an outcome: the kinds that close have one, and every other
    kind's moves go to open states."""
    closing = {k for k, row in TRANSITIONS.items() for r in row.values() if r.to_state in RESOLVED_STATES}
    assert closing == set(KIND_FACTS), "a kind that closes cases needs an outcome (and a fact in KIND_FACTS)"
    for kind, (event_type, attrs) in KIND_FACTS.items():
        for state, rule in TRANSITIONS[kind].items():
            if rule.verdict != M:
                continue
            case = Case(la_code="801", state=state, open_crossings=["crossing-1"])
            s = step(case, _fact(event_type, 0, **attrs))
            assert s.kind == kind and s.after.state in RESOLVED_STATES, (kind, state)
            assert s.after.outcome is not None, (kind, state)
            if s.after.outcome != "registered_home_education":
                assert s.after.outcome_ref, (kind, state)
    every_open = [s for s in CaseState if s not in RESOLVED_STATES]
    assert all(s in STATE_DEADLINES for s in every_open), "every open state runs a clock"


def test_leaver_to_a_named_school_waits_for_the_registration() -> None:
    left = _fact("pupil-left-roll", 0, deletion_ground="a", destination_school_urn="100005")
    case, steps = fold("801", [_fact("pupil-registered", -30, school_urn="100009"), left])
    assert case.state == TP and case.outcome is None and steps[1].deadlines_started == ("transfer_pending",)
    assert case.reason is None  # not counted as missing education while the transfer is in time
    arrived, steps = fold("801", [left, _fact("pupil-registered", 4, school_urn="100005")])
    assert arrived.state == IE and (arrived.outcome, arrived.outcome_ref) == ("school", "100005")
    assert steps[1].deadlines_stopped == ("transfer_pending",)


def test_deletion_after_the_new_school_registered_the_child_changes_nothing() -> None:
    """Reg 9(1)(a): the old school deletes because the child is registered at the new one."""
    registered = _fact("pupil-registered", 0, school_urn="100005")
    left = _fact("pupil-left-roll", 1, deletion_ground="a", destination_school_urn="100005")
    case, steps = fold("801", [registered, left])
    assert steps[1].kind == EventKind.LEFT_ROLL_ALREADY_ARRIVED and case.state == IE
    assert case.outcome_ref == "100005"
    # Arriving in the other order (event time decides): the same end.
    assert fold("801", [left, registered])[0].state == IE


def test_leaver_to_a_school_in_another_la_is_handed_over_and_the_origin_keeps_watching() -> None:
    left = _fact(
        "pupil-left-roll", 0, deletion_ground="a", destination_school_urn="120000", destination_la_code="803"
    )
    s = step(Case(la_code="801", state=IE), left)
    assert s.kind == EventKind.LEFT_ROLL_ELSEWHERE_OTHER_LA and s.after.state == TP and s.handover_to == "803"
    confirmed = _fact(
        "handover-confirmed",
        6,
        origin_la_code="801",
        accepting_la_code="803",
        how="registered",
        school_urn="120000",
    )
    done = step(s.after, confirmed)
    assert done.after.state == IE and (done.after.outcome, done.after.outcome_ref) == ("school", "120000")


def test_destination_outside_the_deployment_waits_for_a_person() -> None:
    moved = _fact("moved-out-of-area", 0, new_la_code="909", destination_outside=True)
    s = step(Case(la_code="801", state=ME), moved)
    assert s.kind == EventKind.HANDOVER_OUTSIDE and s.after.state == ALC and s.handover_to is None
    assert s.after.destination_la_code == "909" and s.deadlines_started == ("awaiting_la_confirmation",)
    by_contact = _fact(
        "handover-confirmed", 3, origin_la_code="801", accepting_la_code="909", how="confirmed_by_contact"
    )
    closed = step(s.after, by_contact)
    assert closed.after.state == LA and (closed.after.outcome, closed.after.outcome_ref) == (
        "other_la_accepted",
        "909",
    )


def test_destination_la_tells_the_origin_once_it_has_the_child() -> None:
    handed = _fact("moved-out-of-area", 0, new_la_code="803", from_la_code="801", new_school_urn="120000")
    s = step(Case(la_code="803"), handed)
    assert s.after.state == TP and s.after.handed_from == "801" and s.confirms_handover_to is None
    registered = step(s.after, _fact("pupil-registered", 5, school_urn="120000"))
    assert registered.confirms_handover_to == "801" and registered.after.handover_confirmed
    # Later moves here do not tell the origin again.
    again = step(registered.after, _fact("exclusion-issued", 9, exclusion_type="permanent"))
    assert again.confirms_handover_to is None
    # A caseworker here may accept a handed-in case before anything else is known of the child.
    missing = step(Case(la_code="803"), _fact("moved-out-of-area", 0, new_la_code="803", from_la_code="801"))
    assert missing.after.state == ME and missing.confirms_handover_to is None
    accepted = step(
        missing.after,
        _fact("handover-confirmed", 2, origin_la_code="801", accepting_la_code="803", how="accepted"),
    )
    assert accepted.kind == EventKind.HANDOVER_ACCEPTED_HERE and accepted.after.state == ME
    assert accepted.confirms_handover_to == "801"


def test_home_education_is_monitored_and_can_become_missing_education() -> None:
    ehe = _fact("home-education-notified", 0)
    review = _fact("review-date-set", 1, review_on="2026-01-12")
    unsuitable = _fact("home-education-unsuitable", 40)
    case, steps = fold("801", [ehe, review, unsuitable])
    assert steps[0].after.state == EHE and steps[0].after.outcome == "registered_home_education"
    assert steps[1].rule.verdict == ST and steps[1].after.state == EHE
    assert case.state == ME and case.reason == "home_education_unsuitable" and case.outcome is None
    assert steps[2].deadlines_started == ("missing_education",)
    ended, _ = fold("801", [ehe, _fact("home-education-ended", 20, new_school_urn="100006")])
    assert ended.state == TP


@pytest.mark.parametrize(
    ("status", "flags"),
    [("child_protection_plan", []), ("child_protection_enquiry", []), ("none", ["child_protection_plan"])],
)
def test_home_education_refused_for_a_child_under_child_protection(status: str, flags: list[str]) -> None:
    facts = [
        _fact("pupil-registered", -20, school_urn="100001"),
        _fact("social-care-status-changed", -10, status=status, has_social_worker=status != "none"),
    ]
    notice = Fact(
        event_id="e-ehe",
        event_type="home-education-notified",
        occurred_at=datetime(2025, 11, 3, 9, tzinfo=UTC),
        la_code="801",
        attrs={},
        vulnerabilities=flags,  # type: ignore[arg-type]
    )
    case, steps = fold("801", [*facts, notice])
    assert steps[-1].kind == EventKind.HOME_EDUCATION_BLOCKED and steps[-1].flagged
    assert case.state == RISK and case.outcome is None  # on roll, at risk: never home educated
    blocked_deletion = _fact("pupil-left-roll", 1, deletion_ground="f")
    s = step(case, blocked_deletion)
    assert s.kind == EventKind.LEFT_ROLL_HOME_EDUCATION_BLOCKED and s.after.state == ME and s.flagged


def test_part_time_provision_is_open_and_keeps_the_sixth_day_clock() -> None:
    case, steps = fold(
        "801",
        [
            _fact("exclusion-issued", 0, exclusion_type="permanent"),
            _fact(
                "provision-started",
                2,
                provision_type="alternative_provision",
                full_time=False,
                hours_per_week=10,
            ),
        ],
    )
    assert steps[1].kind == EventKind.PROVISION_PART_TIME and case.state == PT
    assert "pe_provision_day6" in case.open_deadlines and "part_time_provision" in case.open_deadlines
    assert case.outcome is None and case.reason is None
    full, steps = fold(
        "801",
        [
            _fact("exclusion-issued", 0, exclusion_type="permanent"),
            _fact("provision-started", 2, provision_type="alternative_provision", full_time=False),
            _fact("provision-started", 9, provision_type="pupil_referral_unit", full_time=True),
        ],
    )
    assert full.state == IE and full.open_deadlines == [] and full.outcome == "provision"


def test_located_in_education_without_a_school_waits_for_the_registration() -> None:
    s = step(
        Case(la_code="801", state=WU), _fact("child-located", 0, located_la_code="801", in_education=True)
    )
    assert s.kind == EventKind.LOCATED_EDUCATION_UNCONFIRMED and s.after.state == TP


def test_out_of_scope_deletion_waits_for_a_person_to_record_the_outcome() -> None:
    s = step(Case(la_code="801", state=IE), _fact("pupil-left-roll", 0, deletion_ground="k"))
    assert s.flagged and s.after.state == IE
    closed = step(s.after, _fact("case-outcome-recorded", 1, outcome="out_of_scope", deletion_ground="k"))
    assert closed.after.state == OOS and (closed.after.outcome, closed.after.outcome_ref) == (
        "out_of_scope",
        "k",
    )


def test_new_events_classify_from_real_payloads() -> None:
    case = Case(la_code="801", state=EHE)
    expected = {
        "home-education-unsuitable": EventKind.HOME_EDUCATION_UNSUITABLE,
        "home-education-ended": EventKind.HOME_EDUCATION_ENDED,
        "review-date-set": EventKind.REVIEW_DATE_SET,
        "handover-confirmed": EventKind.HANDOVER_CONFIRMED,
        "case-outcome-recorded": EventKind.OUTCOME_SCHOOL,
    }
    for event_type, kind in expected.items():
        assert classify(case, fact_from_inbound(sample_event(event_type))) == kind, event_type
    outside = fact_from_inbound(sample_event("moved-out-of-area"), deployment=frozenset({"801"}))
    assert outside.attrs["destination_outside"] and classify(case, outside) == EventKind.HANDOVER_OUTSIDE


@pytest.mark.parametrize("event_type", ["moved-out-of-area", "pupil-left-roll"])
def test_a_child_who_moves_to_wales_is_never_handed_to_an_la_nobody_reads(event_type: str) -> None:
    """A Welsh LA is a real destination (accepted at intake) but never an LA of this deployment: the origin's
    case waits for a person to record the Welsh LA's confirmation, whatever the deployment setting."""
    from devtools.samples import sample_event_dict
    from shared.events.catalogue import decode_inbound

    event = sample_event_dict(event_type)
    if event_type == "moved-out-of-area":
        event["payload"]["new_la_code"] = "662"
    else:
        event["payload"]["deletion_ground"] = "g"
        event["payload"]["destination"] = {"known": True, "la_code": "662"}
    fact = fact_from_inbound(decode_inbound(event))  # deployment None: every English LA
    assert fact.attrs["destination_outside"]
    assert classify(Case(la_code="801", state=None), fact) == EventKind.HANDOVER_OUTSIDE


def test_a_source_la_must_be_english_but_a_destination_may_be_welsh() -> None:
    from pydantic import ValidationError

    from devtools.samples import sample_event_dict
    from shared.events.catalogue import decode_inbound

    event = sample_event_dict("moved-out-of-area")
    event["payload"]["new_la_code"] = "681"
    assert decode_inbound(event).payload.new_la_code == "681"  # type: ignore[attr-defined]
    event["source"]["la_code"] = "681"
    with pytest.raises(ValidationError):
        decode_inbound(event)
    event["source"]["la_code"] = "801"
    event["payload"]["new_la_code"] = "999"
    with pytest.raises(ValidationError):
        decode_inbound(event)
