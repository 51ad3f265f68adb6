"""The per-child case state machine: one explicit table of (state, event kind) -> (verdict, state, actions).

Pure Python, no Kafka and no database: the faust agent feeds it facts and publishes what it returns, and the
unit tests walk every (state, event kind) pair of the table.

An inbound event is first *classified* into an event kind (``classify``): the same event type can mean
different things (leaving the roll for a known school is not leaving for an unknown destination). The table
then says, for the case's current state, one of three verdicts:

- MOVE: the case moves to the new state (a CaseTransition is published);
- STAY: the fact is recorded in the timeline and updates the case's context (flags, social care);
- REFUSE: the fact contradicts the case: it is kept in the timeline and flagged for a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.tracking import register
from services.tracking.register import RegisterStatus
from shared.events.internal import RESOLVED_STATES, CaseState
from shared.events.vocab import (
    CHILD_PROTECTION_STATUSES,
    CaseOutcome,
    DeletionGround,
    EducationArrangement,
    EducationSuitability,
    HandoverConfirmation,
    MissingReason,
    SocialCareStatus,
    Vulnerability,
)

NO_CASE: CaseState | None = None  # the state of a child the LA has no case for yet


class EventKind(StrEnum):
    REGISTERED = "pupil-registered"
    LEFT_ROLL_UNKNOWN = "pupil-left-roll:unknown-destination"
    LEFT_ROLL_ELSEWHERE = "pupil-left-roll:registered-elsewhere"
    LEFT_ROLL_ELSEWHERE_OTHER_LA = "pupil-left-roll:registered-elsewhere-other-la"
    LEFT_ROLL_ALREADY_ARRIVED = "pupil-left-roll:registered-elsewhere-already-arrived"
    LEFT_ROLL_HOME_EDUCATION_BLOCKED = "pupil-left-roll:home-education-child-protection"
    LEFT_ROLL_HOME_EDUCATION = "pupil-left-roll:home-education"
    LEFT_ROLL_EXCLUDED = "pupil-left-roll:permanently-excluded"
    LEFT_ROLL_OTHER_LA = "pupil-left-roll:other-la"
    LEFT_ROLL_ABROAD = "pupil-left-roll:abroad"
    LEFT_ROLL_OUT_OF_SCOPE = "pupil-left-roll:out-of-scope"  # detained, died, over compulsory school age
    ABSENCE_CROSSED = "absence-threshold-crossed"
    ABSENCE_CROSSED_ALREADY_RETRACTED = "absence-threshold-crossed:already-retracted"
    ABSENCE_RETRACTED_CLEARS = "absence-threshold-retracted:clears"
    ABSENCE_RETRACTED_PARTIAL = "absence-threshold-retracted:others-open"
    EXCLUSION_PERMANENT = "exclusion-issued:permanent"
    EXCLUSION_SUSPENSION = "exclusion-issued:suspension"
    PLACE_OFFERED = "place-offered"
    PROVISION_STARTED = "provision-started"
    PROVISION_PART_TIME = "provision-started:part-time"
    LOCATED = "child-located"
    LOCATED_IN_EDUCATION = "child-located:in-education"
    LOCATED_EDUCATION_UNCONFIRMED = "child-located:in-education-no-school-named"
    LOCATED_OTHER_LA = "child-located:other-la"
    WHEREABOUTS_UNKNOWN = "whereabouts-unknown"
    HOME_EDUCATION = "home-education-notified"
    HOME_EDUCATION_NEEDS_CONSENT = "home-education-notified:special-school-without-consent"
    HOME_EDUCATION_BLOCKED = "home-education-notified:child-protection"
    HOME_EDUCATION_UNSUITABLE = "home-education-unsuitable"
    HOME_EDUCATION_ENDED = "home-education-ended"
    HOME_EDUCATION_ENDED_SCHOOL_NAMED = "home-education-ended:school-named"
    REVIEW_DATE_SET = "review-date-set"
    HANDOVER_OUTSIDE = "handover:la-outside-deployment"
    HANDOVER_CONFIRMED = "handover-confirmed"
    HANDOVER_CONFIRMED_REGISTERED = "handover-confirmed:registered"
    HANDOVER_ACCEPTED_HERE = "handover-confirmed:accepted-here"
    OUTCOME_SCHOOL = "case-outcome-recorded:school"
    OUTCOME_PROVISION = "case-outcome-recorded:provision"
    OUTCOME_HOME_EDUCATION = "case-outcome-recorded:registered_home_education"
    OUTCOME_OTHER_LA = "case-outcome-recorded:other_la_accepted"
    OUTCOME_ABROAD = "case-outcome-recorded:confirmed_abroad"
    OUTCOME_OUT_OF_SCOPE = "case-outcome-recorded:out_of_scope"
    MOVED_OUT = "moved-out-of-area"
    MOVED_IN = "moved-out-of-area:arrived-here"
    MOVED_IN_WITH_SCHOOL = "moved-out-of-area:arrived-here-school-named"
    MOVED_ABROAD_CONFIRMED = "moved-abroad:confirmed"
    MOVED_ABROAD_UNCONFIRMED = "moved-abroad:unconfirmed"
    REFERRAL = "referral-received"
    ENQUIRY = "enquiry-recorded"
    SOCIAL_CARE = "social-care-status-changed"
    SICKNESS_NOTICE = "sickness-absence-notified"
    FAIR_ACCESS_REFERRED = "fair-access-referred"
    # The register of children not in school (s.436B-436G): a parent's notice, a provider's return and a
    # caseworker's entry (register.py keeps the register; these rows keep the case).
    NOT_IN_SCHOOL_NOTICE = "not-in-school-notice"
    NOT_IN_SCHOOL_NOTICE_ON_ROLL = "not-in-school-notice:registered-educated-elsewhere"
    PROVIDER_RETURN = "education-provider-return"
    ENTRY_RECORDED = "register-entry-recorded"
    ENTRY_EDUCATION_UNKNOWN = "register-entry-recorded:education-unknown"
    ENTRY_UNSUITABLE = "register-entry-recorded:unsuitable"
    # Escalation's transfer clock ran out (case-clock-expired), the case still waiting since the clock began.
    TRANSFER_LAPSED = "case-clock-expired:transfer-not-registered"
    # ... or no longer waiting for that transfer by the due time (registered, moved on, a new transfer).
    CLOCK_EXPIRED_STALE = "case-clock-expired:case-moved-on"


class Verdict(StrEnum):
    MOVE = "move"
    STAY = "stay"
    REFUSE = "refuse"


class Action(StrEnum):
    HANDOVER = "handover"  # open a case for the destination LA: a child is never in no LA's hands
    # (a case handed in from another LA tells that LA once it has the child: Step.confirms_handover_to)
    START_PE_DAY6 = "start_pe_provision_day6"  # LA provides full-time education from the 6th school day
    START_FAIR_ACCESS = "start_fair_access_20_days"  # a place within 20 school days under fair access
    FLAG_FOR_REVIEW = "flag_for_review"


@dataclass(frozen=True)
class Rule:
    verdict: Verdict
    to_state: CaseState | None = None
    actions: tuple[Action, ...] = ()


ALL_STATES: tuple[CaseState | None, ...] = (NO_CASE, *CaseState)
S = CaseState  # short alias for the table below

STAY = Rule(Verdict.STAY)
REFUSE = Rule(Verdict.REFUSE, actions=(Action.FLAG_FOR_REVIEW,))


def _row(
    moves: dict[CaseState | None, CaseState],
    stay: Iterable[CaseState | None] = (),
    refuse: Iterable[CaseState | None] = (),
    actions: tuple[Action, ...] = (),
) -> dict[CaseState | None, Rule]:
    """One event kind's row: every state must be named exactly once (checked here, at import)."""
    stay, refuse = list(stay), list(refuse)
    named = list(moves) + stay + refuse
    assert sorted(map(str, named)) == sorted(map(str, ALL_STATES)), f"row must name every state once: {named}"
    row: dict[CaseState | None, Rule] = {s: Rule(Verdict.MOVE, to, actions) for s, to in moves.items()}
    row.update({s: STAY for s in stay})
    row.update({s: REFUSE for s in refuse})
    return row


def _all_to(target: CaseState, actions: tuple[Action, ...] = ()) -> dict[CaseState | None, Rule]:
    return _row({s: target for s in ALL_STATES if s != target}, stay=[target], actions=actions)


OPEN = (S.ON_ROLL_AT_RISK, S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.AWAITING_PROVISION, S.PLACE_OFFERED)
# Open while the child is out of this LA's sight: the education somewhere else is not confirmed yet.
WATCHING = (S.TRANSFER_PENDING, S.HANDED_OVER, S.AWAITING_LA_CONFIRMATION)
PT = S.PART_TIME_PROVISION
GONE = (S.HANDED_OVER, S.AWAITING_LA_CONFIRMATION, S.LEFT_AREA, S.MOVED_ABROAD)  # not (or no longer) here
EVERY_STATE_STAYS = _row({}, stay=ALL_STATES)


def _all_but_no_case(target: CaseState) -> dict[CaseState | None, Rule]:
    """A person's decision about an existing case: moves it from any state; there is nothing to decide
    without a case."""
    return _row({s: target for s in CaseState if s != target}, stay=[target], refuse=[NO_CASE])


# fmt: off
TRANSITIONS: dict[EventKind, dict[CaseState | None, Rule]] = {
    EventKind.REGISTERED: _all_to(S.IN_EDUCATION),
    EventKind.LEFT_ROLL_UNKNOWN: _row(
        {s: S.MISSING_EDUCATION for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.IN_EDUCATION, S.TRANSFER_PENDING, PT)},  # noqa: E501
        stay=[S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.AWAITING_PROVISION, S.PLACE_OFFERED],
        refuse=[S.ELECTIVELY_HOME_EDUCATED, *GONE, S.OUT_OF_SCOPE]),
    # A named school: the case waits for that school's (or any school's) registration of the child.
    EventKind.LEFT_ROLL_ELSEWHERE: _row(
        {s: S.TRANSFER_PENDING for s in (NO_CASE, *OPEN, S.IN_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, PT)},
        stay=[S.TRANSFER_PENDING], refuse=[*GONE, S.OUT_OF_SCOPE]),
    # Deletion under reg 9(1)(a) after the new school's registration was already applied: nothing to wait for.
    EventKind.LEFT_ROLL_ALREADY_ARRIVED: EVERY_STATE_STAYS,
    # A named school in another LA of this deployment: that LA is handed the child and waits too.
    EventKind.LEFT_ROLL_ELSEWHERE_OTHER_LA: _row(
        {s: S.TRANSFER_PENDING for s in (NO_CASE, *OPEN, S.IN_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, PT,
                                         S.AWAITING_LA_CONFIRMATION)},
        stay=[S.TRANSFER_PENDING], refuse=[S.HANDED_OVER, S.LEFT_AREA, S.MOVED_ABROAD, S.OUT_OF_SCOPE],
        actions=(Action.HANDOVER,)),
    EventKind.LEFT_ROLL_HOME_EDUCATION: _row(
        {s: S.ELECTIVELY_HOME_EDUCATED for s in (NO_CASE, *OPEN, S.IN_EDUCATION, S.TRANSFER_PENDING, PT)},
        stay=[S.ELECTIVELY_HOME_EDUCATED], refuse=[*GONE, S.OUT_OF_SCOPE]),
    # Deleted for home education while on a child protection plan or under an enquiry: not home education
    # (Children's Wellbeing and Schools Act 2026); off roll with no confirmed education, so missing education.
    EventKind.LEFT_ROLL_HOME_EDUCATION_BLOCKED: _row(
        {s: S.MISSING_EDUCATION for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.IN_EDUCATION, S.TRANSFER_PENDING, PT,
                                          S.ELECTIVELY_HOME_EDUCATED)},
        refuse=[S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.AWAITING_PROVISION, S.PLACE_OFFERED, *GONE,
                S.OUT_OF_SCOPE], actions=(Action.FLAG_FOR_REVIEW,)),
    EventKind.LEFT_ROLL_EXCLUDED: _row(
        {s: S.AWAITING_PROVISION for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.IN_EDUCATION, S.MISSING_EDUCATION,
                                           S.PLACE_OFFERED, S.TRANSFER_PENDING, PT)},
        stay=[S.AWAITING_PROVISION, S.WHEREABOUTS_UNKNOWN],
        refuse=[S.ELECTIVELY_HOME_EDUCATED, *GONE, S.OUT_OF_SCOPE], actions=(Action.START_PE_DAY6,)),
    EventKind.LEFT_ROLL_OTHER_LA: _row(
        {s: S.HANDED_OVER for s in (NO_CASE, *OPEN, S.IN_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, PT,
                                    S.TRANSFER_PENDING, S.AWAITING_LA_CONFIRMATION)},
        stay=[S.HANDED_OVER, S.LEFT_AREA], refuse=[S.MOVED_ABROAD, S.OUT_OF_SCOPE], actions=(Action.HANDOVER,)),  # noqa: E501
    # Leaving, moving or found in an LA outside this deployment: nobody here can hand over, a person must.
    EventKind.HANDOVER_OUTSIDE: _row(
        {s: S.AWAITING_LA_CONFIRMATION for s in ALL_STATES
         if s not in (S.AWAITING_LA_CONFIRMATION, S.OUT_OF_SCOPE)},
        stay=[S.AWAITING_LA_CONFIRMATION], refuse=[S.OUT_OF_SCOPE]),
    EventKind.LEFT_ROLL_ABROAD: _row(
        {s: S.MISSING_EDUCATION for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.IN_EDUCATION, S.AWAITING_PROVISION,
                                          S.PLACE_OFFERED, S.ELECTIVELY_HOME_EDUCATED, S.TRANSFER_PENDING, PT)},  # noqa: E501
        stay=[S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.MOVED_ABROAD],
        refuse=[S.HANDED_OVER, S.AWAITING_LA_CONFIRMATION, S.LEFT_AREA, S.OUT_OF_SCOPE]),
    EventKind.LEFT_ROLL_OUT_OF_SCOPE: _row({}, refuse=ALL_STATES),
    EventKind.ABSENCE_CROSSED: _row(
        {NO_CASE: S.ON_ROLL_AT_RISK, S.IN_EDUCATION: S.ON_ROLL_AT_RISK, S.PLACE_OFFERED: S.ON_ROLL_AT_RISK},
        stay=[S.ON_ROLL_AT_RISK, S.TRANSFER_PENDING, PT],
        refuse=[S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.AWAITING_PROVISION, S.ELECTIVELY_HOME_EDUCATED,
                *GONE, S.OUT_OF_SCOPE]),
    EventKind.ABSENCE_CROSSED_ALREADY_RETRACTED: EVERY_STATE_STAYS,
    EventKind.ABSENCE_RETRACTED_CLEARS: _row(
        {S.ON_ROLL_AT_RISK: S.IN_EDUCATION}, stay=[s for s in ALL_STATES if s != S.ON_ROLL_AT_RISK]),
    EventKind.ABSENCE_RETRACTED_PARTIAL: EVERY_STATE_STAYS,
    EventKind.EXCLUSION_PERMANENT: _row(
        {s: S.AWAITING_PROVISION for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.IN_EDUCATION, S.PLACE_OFFERED, PT,
                                           S.TRANSFER_PENDING)},
        stay=[S.AWAITING_PROVISION, S.WHEREABOUTS_UNKNOWN],
        refuse=[S.MISSING_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, *GONE, S.OUT_OF_SCOPE],
        actions=(Action.START_PE_DAY6,)),
    EventKind.EXCLUSION_SUSPENSION: _row(
        {}, stay=[NO_CASE, *OPEN, S.IN_EDUCATION, S.TRANSFER_PENDING, PT],
        refuse=[S.ELECTIVELY_HOME_EDUCATED, *GONE, S.OUT_OF_SCOPE]),
    EventKind.PLACE_OFFERED: _row(
        {s: S.PLACE_OFFERED for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN,
                                      S.AWAITING_PROVISION, S.ELECTIVELY_HOME_EDUCATED, S.TRANSFER_PENDING, PT)},  # noqa: E501
        stay=[S.PLACE_OFFERED, S.IN_EDUCATION], refuse=[*GONE, S.OUT_OF_SCOPE]),
    EventKind.PROVISION_STARTED: _all_to(S.IN_EDUCATION),
    # Part-time or reduced provision is not the full-time education s.7 and s.19(3A) require: a case of its own.  # noqa: E501
    EventKind.PROVISION_PART_TIME: _all_to(PT),
    EventKind.LOCATED_IN_EDUCATION: _all_to(S.IN_EDUCATION),
    # Said to be in education, but no school named: wait for a registration, as for a transfer.
    EventKind.LOCATED_EDUCATION_UNCONFIRMED: _row(
        {s: S.TRANSFER_PENDING for s in (NO_CASE, S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN,
                                         S.AWAITING_PROVISION, *GONE)},
        stay=[S.ON_ROLL_AT_RISK, S.PLACE_OFFERED, S.TRANSFER_PENDING, PT, S.IN_EDUCATION,
              S.ELECTIVELY_HOME_EDUCATED],
        refuse=[S.OUT_OF_SCOPE]),
    EventKind.LOCATED: _row(
        {s: S.AWAITING_PROVISION for s in (NO_CASE, S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.TRANSFER_PENDING,  # noqa: E501
                                           *GONE)},
        stay=[S.ON_ROLL_AT_RISK, S.AWAITING_PROVISION, S.PLACE_OFFERED, S.IN_EDUCATION, PT,
              S.ELECTIVELY_HOME_EDUCATED],
        refuse=[S.OUT_OF_SCOPE]),
    EventKind.LOCATED_OTHER_LA: _row(
        {s: S.HANDED_OVER for s in (NO_CASE, *OPEN, S.ELECTIVELY_HOME_EDUCATED, S.MOVED_ABROAD, S.TRANSFER_PENDING,  # noqa: E501
                                    PT, S.AWAITING_LA_CONFIRMATION)},
        stay=[S.HANDED_OVER, S.LEFT_AREA], refuse=[S.IN_EDUCATION, S.OUT_OF_SCOPE], actions=(Action.HANDOVER,)),  # noqa: E501
    EventKind.WHEREABOUTS_UNKNOWN: _row(
        {s: S.WHEREABOUTS_UNKNOWN for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.MISSING_EDUCATION,
                                            S.AWAITING_PROVISION, S.PLACE_OFFERED, S.ELECTIVELY_HOME_EDUCATED,
                                            *WATCHING, PT)},
        stay=[S.WHEREABOUTS_UNKNOWN], refuse=[S.IN_EDUCATION, S.LEFT_AREA, S.MOVED_ABROAD, S.OUT_OF_SCOPE]),
    EventKind.HOME_EDUCATION: _row(
        {s: S.ELECTIVELY_HOME_EDUCATED for s in (NO_CASE, *OPEN, S.IN_EDUCATION, S.TRANSFER_PENDING, PT)},
        stay=[S.ELECTIVELY_HOME_EDUCATED], refuse=[*GONE, S.OUT_OF_SCOPE]),
    EventKind.HOME_EDUCATION_NEEDS_CONSENT: _row({}, refuse=ALL_STATES),
    # A notice of home education for a child on a child protection plan or under an enquiry: refused as a
    # transition (flagged); a child with no open case gets one, on roll and at risk, so somebody owns it.
    EventKind.HOME_EDUCATION_BLOCKED: _row(
        {NO_CASE: S.ON_ROLL_AT_RISK, S.IN_EDUCATION: S.ON_ROLL_AT_RISK},
        refuse=[s for s in CaseState if s != S.IN_EDUCATION], actions=(Action.FLAG_FOR_REVIEW,)),
    # The LA assessed home education as unsuitable: missing education (DfE EHE guidance 2025).
    EventKind.HOME_EDUCATION_UNSUITABLE: _row(
        {NO_CASE: S.MISSING_EDUCATION, S.ELECTIVELY_HOME_EDUCATED: S.MISSING_EDUCATION},
        stay=[*OPEN, *WATCHING, PT], refuse=[S.IN_EDUCATION, S.LEFT_AREA, S.MOVED_ABROAD, S.OUT_OF_SCOPE]),
    EventKind.HOME_EDUCATION_ENDED: _row(
        {NO_CASE: S.MISSING_EDUCATION, S.ELECTIVELY_HOME_EDUCATED: S.MISSING_EDUCATION},
        stay=[*OPEN, *WATCHING, PT, S.IN_EDUCATION], refuse=[S.LEFT_AREA, S.MOVED_ABROAD, S.OUT_OF_SCOPE]),
    EventKind.HOME_EDUCATION_ENDED_SCHOOL_NAMED: _row(
        {NO_CASE: S.TRANSFER_PENDING, S.ELECTIVELY_HOME_EDUCATED: S.TRANSFER_PENDING},
        stay=[*OPEN, *WATCHING, PT, S.IN_EDUCATION], refuse=[S.LEFT_AREA, S.MOVED_ABROAD, S.OUT_OF_SCOPE]),
    EventKind.REVIEW_DATE_SET: _row({}, stay=CaseState, refuse=[NO_CASE]),
    EventKind.MOVED_OUT: _row(
        {s: S.HANDED_OVER for s in ALL_STATES if s not in (S.HANDED_OVER, S.OUT_OF_SCOPE)},
        stay=[S.HANDED_OVER], refuse=[S.OUT_OF_SCOPE], actions=(Action.HANDOVER,)),
    EventKind.MOVED_IN: _row(
        {s: S.MISSING_EDUCATION for s in (NO_CASE, *GONE)},
        stay=[*OPEN, S.IN_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, S.TRANSFER_PENDING, PT],
        refuse=[S.OUT_OF_SCOPE]),
    # Moved in with a school named: wait for that school's registration.
    EventKind.MOVED_IN_WITH_SCHOOL: _row(
        {s: S.TRANSFER_PENDING for s in (NO_CASE, *GONE, S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN,
                                         S.AWAITING_PROVISION)},
        stay=[S.PLACE_OFFERED, S.IN_EDUCATION, S.ON_ROLL_AT_RISK, S.ELECTIVELY_HOME_EDUCATED, S.TRANSFER_PENDING,  # noqa: E501
              PT],
        refuse=[S.OUT_OF_SCOPE]),
    EventKind.MOVED_ABROAD_CONFIRMED: _all_to(S.MOVED_ABROAD),
    EventKind.MOVED_ABROAD_UNCONFIRMED: _row(
        {s: S.MISSING_EDUCATION for s in (NO_CASE, S.ON_ROLL_AT_RISK, S.IN_EDUCATION, S.AWAITING_PROVISION,
                                          S.PLACE_OFFERED, S.ELECTIVELY_HOME_EDUCATED, S.TRANSFER_PENDING, PT)},  # noqa: E501
        stay=[S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.MOVED_ABROAD],
        refuse=[S.HANDED_OVER, S.AWAITING_LA_CONFIRMATION, S.LEFT_AREA, S.OUT_OF_SCOPE]),
    # The LA the child was handed to confirms it has the child: the origin closes (another LA's acceptance,
    # or the school the child registered at).
    EventKind.HANDOVER_CONFIRMED: _row(
        {s: S.LEFT_AREA for s in (*OPEN, *WATCHING, PT)},
        stay=[S.LEFT_AREA, S.IN_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, S.MOVED_ABROAD, S.OUT_OF_SCOPE],
        refuse=[NO_CASE]),
    EventKind.HANDOVER_CONFIRMED_REGISTERED: _row(
        {s: S.IN_EDUCATION for s in (*OPEN, *WATCHING, PT, S.LEFT_AREA)},
        stay=[S.IN_EDUCATION, S.ELECTIVELY_HOME_EDUCATED, S.MOVED_ABROAD, S.OUT_OF_SCOPE], refuse=[NO_CASE]),
    # This LA's caseworker accepts a child handed in: the state stays, the origin is told (Step.confirms).
    EventKind.HANDOVER_ACCEPTED_HERE: _row({}, stay=CaseState, refuse=[NO_CASE]),
    EventKind.OUTCOME_SCHOOL: _all_but_no_case(S.IN_EDUCATION),
    EventKind.OUTCOME_PROVISION: _all_but_no_case(S.IN_EDUCATION),
    EventKind.OUTCOME_HOME_EDUCATION: _all_but_no_case(S.ELECTIVELY_HOME_EDUCATED),
    EventKind.OUTCOME_OTHER_LA: _all_but_no_case(S.LEFT_AREA),
    EventKind.OUTCOME_ABROAD: _all_but_no_case(S.MOVED_ABROAD),
    EventKind.OUTCOME_OUT_OF_SCOPE: _all_but_no_case(S.OUT_OF_SCOPE),
    EventKind.REFERRAL: _row({NO_CASE: S.MISSING_EDUCATION}, stay=CaseState),
    EventKind.ENQUIRY: _row({}, stay=CaseState, refuse=[NO_CASE]),
    EventKind.SOCIAL_CARE: EVERY_STATE_STAYS,
    EventKind.SICKNESS_NOTICE: EVERY_STATE_STAYS,  # on a roll and sick: the LA's s.19 duty, not a new state
    EventKind.FAIR_ACCESS_REFERRED: EVERY_STATE_STAYS,  # escalation runs the 20-day clock to a place
    # A parent's notice that the child is educated otherwise than at school: home education, as the notice
    # of deregistration is (the register entry carries the detail); refused under child protection the same
    # way (classify gives HOME_EDUCATION_BLOCKED).
    EventKind.NOT_IN_SCHOOL_NOTICE: _row(
        {s: S.ELECTIVELY_HOME_EDUCATED for s in (NO_CASE, *OPEN, S.IN_EDUCATION, S.TRANSFER_PENDING, PT)},
        stay=[S.ELECTIVELY_HOME_EDUCATED], refuse=[*GONE, S.OUT_OF_SCOPE]),
    # On a school's roll and educated elsewhere by its arrangement (s.436B(5)(b)): on the register, no case.
    EventKind.NOT_IN_SCHOOL_NOTICE_ON_ROLL: EVERY_STATE_STAYS,
    EventKind.PROVIDER_RETURN: EVERY_STATE_STAYS,
    EventKind.ENTRY_RECORDED: EVERY_STATE_STAYS,  # suitable or not yet assessed: the case is as it was
    # The LA cannot tell what education a child on its register receives: a case (s.436A), also for a child
    # it had as home educated.
    EventKind.ENTRY_EDUCATION_UNKNOWN: _row(
        {NO_CASE: S.MISSING_EDUCATION, S.ELECTIVELY_HOME_EDUCATED: S.MISSING_EDUCATION},
        stay=[s for s in CaseState if s != S.ELECTIVELY_HOME_EDUCATED]),
    # Unsuitable: missing education, as home-education-unsuitable.
    EventKind.ENTRY_UNSUITABLE: _row(
        {NO_CASE: S.MISSING_EDUCATION, S.ELECTIVELY_HOME_EDUCATED: S.MISSING_EDUCATION},
        stay=[*OPEN, *WATCHING, PT], refuse=[S.IN_EDUCATION, S.LEFT_AREA, S.MOVED_ABROAD, S.OUT_OF_SCOPE]),
    # No registration within the LA's school days (escalation's transfer_not_registered clock, event time):
    # the transfer failed and the child is missing education, with that state's clocks from the due time.
    EventKind.TRANSFER_LAPSED: _row(
        {S.TRANSFER_PENDING: S.MISSING_EDUCATION}, stay=[s for s in ALL_STATES if s != S.TRANSFER_PENDING]),
    EventKind.CLOCK_EXPIRED_STALE: EVERY_STATE_STAYS,
}
# fmt: on

# The statutory clocks that run while a case is in a state (the escalation service applies the LA's rules).
STATE_DEADLINES: dict[CaseState, str] = {
    S.ON_ROLL_AT_RISK: "on_roll_at_risk",
    S.MISSING_EDUCATION: "missing_education",
    S.WHEREABOUTS_UNKNOWN: "whereabouts_unknown",
    S.AWAITING_PROVISION: "awaiting_provision",
    S.PLACE_OFFERED: "place_offered",
    S.TRANSFER_PENDING: "transfer_pending",
    S.HANDED_OVER: "handed_over",
    S.AWAITING_LA_CONFIRMATION: "awaiting_la_confirmation",
    S.PART_TIME_PROVISION: "part_time_provision",
}
# Where a case handed in from another LA counts as found here: that LA is told and closes its case.
CONFIRMS_ARRIVAL = frozenset(
    {
        S.ON_ROLL_AT_RISK,
        S.AWAITING_PROVISION,
        S.PLACE_OFFERED,
        S.PART_TIME_PROVISION,
        S.IN_EDUCATION,
        S.ELECTIVELY_HOME_EDUCATED,
    }
)
OUTCOME_KINDS: dict[str, EventKind] = {
    CaseOutcome.SCHOOL: EventKind.OUTCOME_SCHOOL,
    CaseOutcome.PROVISION: EventKind.OUTCOME_PROVISION,
    CaseOutcome.HOME_EDUCATION: EventKind.OUTCOME_HOME_EDUCATION,
    CaseOutcome.OTHER_LA: EventKind.OUTCOME_OTHER_LA,
    CaseOutcome.ABROAD: EventKind.OUTCOME_ABROAD,
    CaseOutcome.OUT_OF_SCOPE: EventKind.OUTCOME_OUT_OF_SCOPE,
}
ACTION_DEADLINES: dict[Action, str] = {
    Action.START_PE_DAY6: "pe_provision_day6",
    Action.START_FAIR_ACCESS: "fair_access_20_days",
}

SOCIAL_CARE_VULNERABILITY: dict[SocialCareStatus, Vulnerability] = {
    SocialCareStatus.CHILD_IN_NEED: Vulnerability.CHILD_IN_NEED,
    SocialCareStatus.CHILD_PROTECTION_PLAN: Vulnerability.CHILD_PROTECTION_PLAN,
    SocialCareStatus.LOOKED_AFTER: Vulnerability.LOOKED_AFTER,
}
# The strongest social-care status a flag says, first match wins: a flag on any event is a status too.
SOCIAL_CARE_BY_FLAG: tuple[tuple[Vulnerability, SocialCareStatus], ...] = (
    (Vulnerability.LOOKED_AFTER, SocialCareStatus.LOOKED_AFTER),
    (Vulnerability.CHILD_PROTECTION_PLAN, SocialCareStatus.CHILD_PROTECTION_PLAN),
    (Vulnerability.CHILD_IN_NEED, SocialCareStatus.CHILD_IN_NEED),
)
# States whose reason category a sender may state (the state itself does not already say why).
STATED_REASON_STATES = frozenset({S.MISSING_EDUCATION, S.AWAITING_PROVISION, S.PLACE_OFFERED})
OUT_OF_SCOPE_GROUNDS = frozenset(
    {DeletionGround.DETAINED, DeletionGround.DIED, DeletionGround.OVER_COMPULSORY_AGE}
)


class Fact(BaseModel):
    """What the state machine needs of an inbound fact: no names, dates of birth or addresses."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: str
    occurred_at: datetime
    la_code: str  # the LA the sender belongs to
    attrs: dict[str, Any] = Field(default_factory=dict)
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)

    def sort_key(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)


class Case(BaseModel):
    """The state of one child's case in one LA, as the fold of its facts leaves it."""

    la_code: str
    state: CaseState | None = None
    cause_event_id: str | None = None
    cause_event_type: str | None = None
    cause_occurred_at: datetime | None = None
    last_occurred_at: datetime | None = None  # event time of the newest fact applied
    reason: MissingReason | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    social_care_status: SocialCareStatus = SocialCareStatus.NONE
    has_social_worker: bool = False
    safeguarding_concern: bool = False
    destination_la_code: str | None = None
    # Set on entering a resolved state: where the child's education is confirmed, and what names it.
    outcome: CaseOutcome | None = None
    outcome_ref: str | None = None
    # A case handed in by another LA: that LA keeps its case open until this one confirms it has the child.
    handed_from: str | None = None
    handover_confirmed: bool = False
    open_deadlines: list[str] = Field(default_factory=list)
    open_crossings: list[str] = Field(default_factory=list)  # absence crossings not retracted
    retracted: list[str] = Field(default_factory=list)  # event ids named by a retraction
    # The child's place on the LA's register of children not in school (register.py), folded with the case.
    register_status: RegisterStatus = Field(default_factory=RegisterStatus)


@dataclass(frozen=True)
class Step:
    """What applying one fact did: the rule that matched, the case after it, and the clocks it touched."""

    kind: EventKind
    rule: Rule
    before: Case
    after: Case
    deadlines_started: tuple[str, ...] = ()
    deadlines_stopped: tuple[str, ...] = ()
    changes: bool = field(default=False)
    fact_id: str = ""

    confirms_handover_to: str | None = None  # the origin LA to tell that this LA has the child

    @property
    def flagged(self) -> bool:
        return self.rule.verdict == Verdict.REFUSE or Action.FLAG_FOR_REVIEW in self.rule.actions

    @property
    def handover_to(self) -> str | None:
        return (
            self.after.destination_la_code if Action.HANDOVER in self.rule.actions and self.changes else None
        )


def classify(case: Case, fact: Fact) -> EventKind:
    """Which event kind of the table a fact is, given the case it lands on."""
    a, t = fact.attrs, fact.event_type
    if t == "pupil-registered":
        return EventKind.REGISTERED
    if t == "pupil-left-roll":
        ground = DeletionGround(a["deletion_ground"])
        if ground in OUT_OF_SCOPE_GROUNDS:
            return EventKind.LEFT_ROLL_OUT_OF_SCOPE
        if ground == DeletionGround.ELECTIVE_HOME_EDUCATION:
            if _child_protection(case, fact):
                return EventKind.LEFT_ROLL_HOME_EDUCATION_BLOCKED
            return EventKind.LEFT_ROLL_HOME_EDUCATION
        if ground == DeletionGround.PERMANENTLY_EXCLUDED:
            return EventKind.LEFT_ROLL_EXCLUDED
        dest_la = a.get("destination_la_code")
        elsewhere = dest_la and dest_la != case.la_code
        if elsewhere and a.get("destination_outside"):
            return EventKind.HANDOVER_OUTSIDE
        if a.get("destination_school_urn"):
            if elsewhere:
                return EventKind.LEFT_ROLL_ELSEWHERE_OTHER_LA
            if case.state == S.IN_EDUCATION and case.outcome_ref == a["destination_school_urn"]:
                return EventKind.LEFT_ROLL_ALREADY_ARRIVED
            return EventKind.LEFT_ROLL_ELSEWHERE
        if elsewhere:
            return EventKind.LEFT_ROLL_OTHER_LA
        country = a.get("destination_country")
        if country and country != "GB":
            return EventKind.LEFT_ROLL_ABROAD
        return EventKind.LEFT_ROLL_UNKNOWN
    if t == "absence-threshold-crossed":
        if fact.event_id in case.retracted:
            return EventKind.ABSENCE_CROSSED_ALREADY_RETRACTED
        return EventKind.ABSENCE_CROSSED
    if t == "absence-threshold-retracted":
        target = a["retracts_event_id"]
        remaining = [e for e in case.open_crossings if e != target]
        if target in case.open_crossings and not remaining:
            return EventKind.ABSENCE_RETRACTED_CLEARS
        return EventKind.ABSENCE_RETRACTED_PARTIAL
    if t == "exclusion-issued":
        return (
            EventKind.EXCLUSION_PERMANENT
            if a["exclusion_type"] == "permanent"
            else EventKind.EXCLUSION_SUSPENSION
        )
    if t == "place-offered":
        return EventKind.PLACE_OFFERED
    if t == "provision-started":
        return EventKind.PROVISION_STARTED if a.get("full_time", True) else EventKind.PROVISION_PART_TIME
    if t == "child-located":
        if a["located_la_code"] != case.la_code:
            return EventKind.HANDOVER_OUTSIDE if a.get("destination_outside") else EventKind.LOCATED_OTHER_LA
        if not a.get("in_education"):
            return EventKind.LOCATED
        return (
            EventKind.LOCATED_IN_EDUCATION if a.get("school_urn") else EventKind.LOCATED_EDUCATION_UNCONFIRMED
        )
    if t == "whereabouts-unknown":
        return EventKind.WHEREABOUTS_UNKNOWN
    if t == "home-education-notified":
        if _child_protection(case, fact):
            return EventKind.HOME_EDUCATION_BLOCKED
        if a.get("special_school") and not a.get("la_consent_given"):
            return EventKind.HOME_EDUCATION_NEEDS_CONSENT
        return EventKind.HOME_EDUCATION
    if t == "home-education-unsuitable":
        return EventKind.HOME_EDUCATION_UNSUITABLE
    if t == "home-education-ended":
        return (
            EventKind.HOME_EDUCATION_ENDED_SCHOOL_NAMED
            if a.get("new_school_urn")
            else EventKind.HOME_EDUCATION_ENDED
        )
    if t == "review-date-set":
        return EventKind.REVIEW_DATE_SET
    if t == "handover-confirmed":
        if a["accepting_la_code"] == case.la_code:
            return EventKind.HANDOVER_ACCEPTED_HERE
        if a["how"] == HandoverConfirmation.REGISTERED:
            return EventKind.HANDOVER_CONFIRMED_REGISTERED
        return EventKind.HANDOVER_CONFIRMED
    if t == "case-outcome-recorded":
        return OUTCOME_KINDS[a["outcome"]]
    if t == "moved-out-of-area":
        if a["new_la_code"] == case.la_code:
            return EventKind.MOVED_IN_WITH_SCHOOL if a.get("new_school_urn") else EventKind.MOVED_IN
        return EventKind.HANDOVER_OUTSIDE if a.get("destination_outside") else EventKind.MOVED_OUT
    if t == "moved-abroad":
        return EventKind.MOVED_ABROAD_CONFIRMED if a.get("confirmed") else EventKind.MOVED_ABROAD_UNCONFIRMED
    if t == "referral-received":
        return EventKind.REFERRAL
    if t == "enquiry-recorded":
        return EventKind.ENQUIRY
    if t == "social-care-status-changed":
        return EventKind.SOCIAL_CARE
    if t == "sickness-absence-notified":
        return EventKind.SICKNESS_NOTICE
    if t == "fair-access-referred":
        return EventKind.FAIR_ACCESS_REFERRED
    if t == "not-in-school-notice":
        if a["arrangement"] == EducationArrangement.REGISTERED_EDUCATED_ELSEWHERE:
            return EventKind.NOT_IN_SCHOOL_NOTICE_ON_ROLL
        if _child_protection(case, fact):
            return EventKind.HOME_EDUCATION_BLOCKED
        return EventKind.NOT_IN_SCHOOL_NOTICE
    if t == "education-provider-return":
        return EventKind.PROVIDER_RETURN
    if t == "register-entry-recorded":
        if a["suitability"] == EducationSuitability.UNSUITABLE:
            return EventKind.ENTRY_UNSUITABLE
        if a["suitability"] == EducationSuitability.UNKNOWN:
            return EventKind.ENTRY_EDUCATION_UNKNOWN
        return EventKind.ENTRY_RECORDED
    if t == "case-clock-expired":
        return EventKind.TRANSFER_LAPSED if _still_waiting(case, fact) else EventKind.CLOCK_EXPIRED_STALE
    raise ValueError(f"no event kind for event type {t!r}")


def _still_waiting(case: Case, fact: Fact) -> bool:
    """A transfer clock that ran out applies only to the wait it counted: the case is in the state the clock
    watched and entered it (by event time) no later than the clock started. A case that was registered, or
    left for another school after the clock began, is a different wait with its own clock."""
    a = fact.attrs
    if a.get("state") != S.TRANSFER_PENDING or case.state != S.TRANSFER_PENDING:
        return False
    started = datetime.fromisoformat(str(a["clock_started_at"]))
    return case.cause_occurred_at is not None and case.cause_occurred_at <= started


def _child_protection(case: Case, fact: Fact) -> bool:
    """On a child protection plan or under a child protection enquiry, as the case or the fact says."""
    return (
        case.social_care_status in CHILD_PROTECTION_STATUSES
        or Vulnerability.CHILD_PROTECTION_PLAN in case.vulnerabilities
        or Vulnerability.CHILD_PROTECTION_PLAN in fact.vulnerabilities
    )


def _outcome(kind: EventKind, fact: Fact) -> tuple[CaseOutcome | None, str | None]:
    """Where the child's education is confirmed, for a fact that moves a case into a resolved state."""
    a = fact.attrs
    if kind in (
        EventKind.REGISTERED,
        EventKind.LOCATED_IN_EDUCATION,
        EventKind.ABSENCE_RETRACTED_CLEARS,
        EventKind.HANDOVER_CONFIRMED_REGISTERED,
        EventKind.OUTCOME_SCHOOL,
    ):
        return CaseOutcome.SCHOOL, a.get("school_urn")
    if kind in (EventKind.PROVISION_STARTED, EventKind.OUTCOME_PROVISION):
        if a.get("school_urn"):
            return CaseOutcome.SCHOOL, a["school_urn"]
        return CaseOutcome.PROVISION, a.get("provision_type")
    if kind in (
        EventKind.HOME_EDUCATION,
        EventKind.NOT_IN_SCHOOL_NOTICE,
        EventKind.LEFT_ROLL_HOME_EDUCATION,
        EventKind.OUTCOME_HOME_EDUCATION,
    ):
        return CaseOutcome.HOME_EDUCATION, None
    if kind == EventKind.HANDOVER_CONFIRMED:
        return CaseOutcome.OTHER_LA, a.get("accepting_la_code")
    if kind == EventKind.OUTCOME_OTHER_LA:
        return CaseOutcome.OTHER_LA, a.get("la_code")
    if kind == EventKind.MOVED_ABROAD_CONFIRMED:
        return CaseOutcome.ABROAD, a.get("country")
    if kind == EventKind.OUTCOME_ABROAD:
        return CaseOutcome.ABROAD, a.get("country")
    if kind == EventKind.OUTCOME_OUT_OF_SCOPE:
        return CaseOutcome.OUT_OF_SCOPE, a.get("deletion_ground")
    return None, None


def _reason(
    state: CaseState | None, kind: EventKind, vulnerabilities: list[Vulnerability]
) -> MissingReason | None:
    """The LA-return reason category for a case in ``state``, entered through ``kind``."""
    if state is None or state in (S.IN_EDUCATION, S.OUT_OF_SCOPE, S.TRANSFER_PENDING, S.PART_TIME_PROVISION):
        return None  # in education, out of scope, or not (yet) missing: a transfer or part-time provision
    if state == S.ELECTIVELY_HOME_EDUCATED:
        return MissingReason.ELECTIVE_HOME_EDUCATION
    if state in (S.LEFT_AREA, S.HANDED_OVER, S.AWAITING_LA_CONFIRMATION):
        return MissingReason.LEFT_LA
    if kind in (EventKind.HOME_EDUCATION_UNSUITABLE, EventKind.ENTRY_UNSUITABLE):
        return MissingReason.HOME_EDUCATION_UNSUITABLE
    if state == S.WHEREABOUTS_UNKNOWN:
        return MissingReason.WHEREABOUTS_UNKNOWN
    if state == S.MOVED_ABROAD or kind in (EventKind.LEFT_ROLL_ABROAD, EventKind.MOVED_ABROAD_UNCONFIRMED):
        return MissingReason.MOVED_ABROAD
    if kind in (EventKind.EXCLUSION_PERMANENT, EventKind.LEFT_ROLL_EXCLUDED):
        return MissingReason.EXCLUDED
    if state in (S.AWAITING_PROVISION, S.PLACE_OFFERED) or kind in (
        EventKind.MOVED_IN,
        EventKind.MOVED_IN_WITH_SCHOOL,
    ):
        return MissingReason.AWAITING_PLACE
    if state == S.ON_ROLL_AT_RISK:
        return None  # on a roll: not missing education yet
    if Vulnerability.GYPSY_ROMA_TRAVELLER in vulnerabilities:
        return MissingReason.GYPSY_ROMA_TRAVELLER
    if Vulnerability.PREGNANT_OR_YOUNG_PARENT in vulnerabilities:
        return MissingReason.PREGNANT_OR_YOUNG_PARENT
    return MissingReason.NOT_RECORDED


def _stated_reason(state: CaseState | None, fact: Fact) -> MissingReason | None:
    """The reason category the sender stated (referrals, enquiries, located), where the state allows one."""
    stated = fact.attrs.get("reason")
    return MissingReason(stated) if stated and state in STATED_REASON_STATES else None


def _context(case: Case, fact: Fact) -> dict[str, Any]:
    """Context every fact updates whatever the verdict: flags, social care, absence crossings (the fields to
    update; the step makes one copy of the case with these and the move's own)."""
    a = fact.attrs
    flags = set(case.vulnerabilities) | set(fact.vulnerabilities)
    status, has_sw = case.social_care_status, case.has_social_worker
    if fact.event_type == "social-care-status-changed":
        status, has_sw = SocialCareStatus(a["status"]), bool(a["has_social_worker"])
        flags -= set(SOCIAL_CARE_VULNERABILITY.values())
    if status in SOCIAL_CARE_VULNERABILITY:
        flags.add(SOCIAL_CARE_VULNERABILITY[status])
    elif status == SocialCareStatus.NONE and fact.event_type != "social-care-status-changed":
        status = next((st for flag, st in SOCIAL_CARE_BY_FLAG if flag in flags), status)
    reason = case.reason
    if a.get("reason") and case.state in STATED_REASON_STATES:
        reason = MissingReason(a["reason"])  # the sender says why: more precise than the state's default
    crossings, retracted = list(case.open_crossings), list(case.retracted)
    if fact.event_type == "absence-threshold-crossed" and fact.event_id not in retracted:
        crossings.append(fact.event_id)
    if fact.event_type == "absence-threshold-retracted":
        retracted.append(a["retracts_event_id"])
        crossings = [e for e in crossings if e != a["retracts_event_id"]]
    return {
        "vulnerabilities": sorted(flags),
        "social_care_status": status,
        "has_social_worker": has_sw,
        "safeguarding_concern": case.safeguarding_concern or bool(a.get("safeguarding_concern")),
        "reason": reason,
        "open_crossings": crossings,
        "retracted": retracted,
        "last_occurred_at": max(filter(None, (case.last_occurred_at, fact.occurred_at))),
    }


def _destination(kind: EventKind, fact: Fact) -> str | None:
    a = fact.attrs
    if kind == EventKind.MOVED_OUT:
        return str(a["new_la_code"])
    if kind in (EventKind.LEFT_ROLL_OTHER_LA, EventKind.LEFT_ROLL_ELSEWHERE_OTHER_LA):
        return str(a["destination_la_code"])
    if kind == EventKind.LOCATED_OTHER_LA:
        return str(a["located_la_code"])
    if kind == EventKind.HANDOVER_OUTSIDE:
        return str(a.get("destination_la_code") or a.get("new_la_code") or a.get("located_la_code"))
    return None


def step(case: Case, fact: Fact) -> Step:
    """Apply one fact to a case: classify it, look the pair up in the table, update state, context, clocks
    and the child's place on the register of children not in school."""
    s = _case_step(case, fact)
    status = register.update(
        case.register_status,
        kind=str(s.kind),
        before=case.state,
        after=s.after.state,
        changed=s.changes,
        outcome=_text(s.after.outcome),
        outcome_ref=s.after.outcome_ref,
        reason=s.after.reason,
        destination_la=s.after.destination_la_code,
        attrs=fact.attrs,
        occurred_at=fact.occurred_at,
    )
    if status is s.after.register_status:
        return s  # most facts leave the register as it was: no copy of the case
    return replace(s, after=s.after.model_copy(update={"register_status": status}))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _case_step(case: Case, fact: Fact) -> Step:
    kind = classify(case, fact)
    rule = TRANSITIONS[kind][case.state]
    actions = rule.actions
    if kind == EventKind.PLACE_OFFERED and fact.attrs.get("fair_access") and rule.verdict == Verdict.MOVE:
        actions = (*actions, Action.START_FAIR_ACCESS)
        rule = Rule(rule.verdict, rule.to_state, actions)
    update = _context(case, fact)
    update.update(_handed_in(case, fact))
    if rule.verdict != Verdict.MOVE:
        after = case.model_copy(update=update)
        return _confirming(Step(kind, rule, case, after, fact_id=fact.event_id))
    assert rule.to_state is not None
    wanted = [STATE_DEADLINES[rule.to_state]] if rule.to_state in STATE_DEADLINES else []
    wanted += [ACTION_DEADLINES[x] for x in actions if x in ACTION_DEADLINES]
    started = tuple(d for d in wanted if d not in case.open_deadlines)
    # A clock started by an action (day-6 provision) keeps running until the child is back in education.
    kept = [
        d for d in case.open_deadlines if d in ACTION_DEADLINES.values() and rule.to_state != S.IN_EDUCATION
    ]
    stopped = tuple(d for d in case.open_deadlines if d not in wanted and d not in kept)
    # The move's fields over the context's (one copy of the case; the reason is the state's, from the
    # flags as the context left them).
    update.update(
        {
            "state": rule.to_state,
            "cause_event_id": fact.event_id,
            "cause_event_type": fact.event_type,
            "cause_occurred_at": fact.occurred_at,
            "reason": _stated_reason(rule.to_state, fact)
            or _reason(rule.to_state, kind, update["vulnerabilities"]),
            "destination_la_code": _destination(kind, fact),
            "open_deadlines": sorted(set(wanted) | set(kept)),
            **_outcome_fields(rule.to_state, kind, fact),
        }
    )
    after = case.model_copy(update=update)
    return _confirming(Step(kind, rule, case, after, started, stopped, changes=True, fact_id=fact.event_id))


def _outcome_fields(state: CaseState, kind: EventKind, fact: Fact) -> dict[str, Any]:
    """A resolved state is entered only with an outcome naming the child's education; an open one has none."""
    if state not in RESOLVED_STATES:
        return {"outcome": None, "outcome_ref": None}
    outcome, ref = _outcome(kind, fact)
    if outcome is None:
        raise ValueError(f"{kind} moves a case to {state} without an outcome")  # a table error: tests walk it
    return {"outcome": outcome, "outcome_ref": ref}


def _handed_in(case: Case, fact: Fact) -> dict[str, Any]:
    """A handover from another LA (tracking's moved-out-of-area naming this LA and the origin): remember the
    origin, which waits for this LA to confirm it has the child (the fields to update)."""
    a = fact.attrs
    if fact.event_type == "moved-out-of-area" and a.get("from_la_code") and a["new_la_code"] == case.la_code:
        return {"handed_from": a["from_la_code"], "handover_confirmed": False}
    return {}


def _confirming(s: Step) -> Step:
    """A case handed in that is now found here (or accepted by a caseworker here): tell the origin, once."""
    after = s.after
    if after.handed_from is None or after.handover_confirmed:
        return s
    if s.kind == EventKind.HANDOVER_ACCEPTED_HERE or (s.changes and after.state in CONFIRMS_ARRIVAL):
        confirmed = after.model_copy(update={"handover_confirmed": True})
        return replace(s, after=confirmed, confirms_handover_to=after.handed_from)
    return s


def corrected_ids(facts: Iterable[Fact]) -> set[str]:
    """Facts named by another's ``corrects_event_id``: a school's correction of a leaver's destination, ground
    or date replaces the fact it names."""
    return {str(f.attrs["corrects_event_id"]) for f in facts if f.attrs.get("corrects_event_id")}


def fold(la_code: str, facts: Iterable[Fact]) -> tuple[Case, list[Step]]:
    """The case its facts produce in event-time order (ties broken by event id, so any replay agrees)."""
    facts = list(facts)
    corrected = corrected_ids(facts)
    case = Case(la_code=la_code)
    steps: list[Step] = []
    for fact in sorted(facts, key=Fact.sort_key):
        if fact.event_id in corrected:
            continue  # replaced by a correction (corrects_event_id), which is folded in its place
        s = step(case, fact)
        steps.append(s)
        case = s.after
    return case, steps


def clock_start(fact: Fact) -> date:
    return fact.occurred_at.date()
