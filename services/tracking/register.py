"""Whether a child is on the LA's register of children not in school, and how (Education Act 1996 s.436B-436G,
inserted by the Children's Wellbeing and Schools Act 2026 s.38).

Pure: ``update`` is called by the state machine's ``step`` with the case before and after each fact, so the
register status is part of the fold of the child's facts in event time, like the case state: a late fact,
a correction, a merge or a split gives the same register as the facts in order would. The personal detail the
Act asks for (parents, providers, addresses) is not here: the projection keeps it in the register's rows.

Who is on it (s.436B(5), as far as the case knows it):
- not a registered pupil: home education (a parent's notice or a ground (f) deletion), education otherwise
  than at school, and the children the LA is looking for an education for (missing education, whereabouts
  unknown, awaiting provision, a place offered), with education "unknown" (or "unsuitable" when the LA found
  it so); a child handed to another LA stays on until that LA confirms (never in no LA's hands);
- registered but educated elsewhere by the school's arrangement (s.436B(5)(b)): part-time provision, or a
  parent's notice saying so;
- a child moving in, or whose home education ended, with a school named but not registered yet;
- a child the LA only hears of through the register's own inputs (a provider's return, a caseworker's entry).
A child leaves it when registered at a school (with the URN) or in full-time provision, when another LA
accepts the child, when confirmed abroad, or out of scope. Condition B (compulsory school age) is not checked
here: the facts tracking receives are about children of that age.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from shared.events.internal import CaseState
from shared.events.vocab import EducationArrangement, EducationSuitability, MissingReason

S = CaseState
# States in which a child is on the register; the category says why.
CATEGORY_BY_STATE: dict[CaseState, str] = {
    S.ELECTIVELY_HOME_EDUCATED: "elective_home_education",
    S.MISSING_EDUCATION: "missing_education",
    S.WHEREABOUTS_UNKNOWN: "missing_education",
    S.AWAITING_PROVISION: "missing_education",
    S.PLACE_OFFERED: "missing_education",
    S.PART_TIME_PROVISION: "part_time_provision",
    S.HANDED_OVER: "handed_over",
    S.AWAITING_LA_CONFIRMATION: "handed_over",
}
# Entering one of these takes the child off the register, with why and what names it.
LEAVES: dict[CaseState, str] = {
    S.IN_EDUCATION: "registered_at_school",
    S.LEFT_AREA: "other_la_accepted",
    S.MOVED_ABROAD: "moved_abroad",
    S.OUT_OF_SCOPE: "out_of_scope",
}
# Case states in which the LA has no confirmed education for the child.
EDUCATION_UNKNOWN_STATES = frozenset(
    {S.MISSING_EDUCATION, S.WHEREABOUTS_UNKNOWN, S.AWAITING_PROVISION, S.PLACE_OFFERED}
)
# Facts that put a child waiting for a named school's registration on the register (a mover, home education
# ended, located "in education" with no school named); a leaver to a named school is in a school's hands.
AWAITING_KINDS = frozenset(
    {
        "moved-out-of-area:arrived-here-school-named",
        "home-education-ended:school-named",
        "child-located:in-education-no-school-named",
    }
)
# The register's own inputs: they put a child on it whatever the case says.
REGISTER_KINDS = frozenset(
    {
        "not-in-school-notice",
        "not-in-school-notice:registered-educated-elsewhere",
        "education-provider-return",
        "register-entry-recorded",
        "register-entry-recorded:education-unknown",
        "register-entry-recorded:unsuitable",
    }
)
CATEGORIES = (
    "elective_home_education",
    "otherwise_than_at_school",
    "registered_educated_elsewhere",
    "part_time_provision",
    "missing_education",
    "handed_over",
    "awaiting_registration",
    "reported_by_provider",
    "recorded_by_la",
)


class RegisterStatus(BaseModel):
    """One child's place on one LA's register, as the fold of its facts leaves it (codes only)."""

    on: bool = False
    category: str | None = None
    education: EducationSuitability | None = None
    arrangement: EducationArrangement | None = None
    ehe_reason: str | None = None
    since: datetime | None = None  # event time the child (last) came onto the register
    changed_at: datetime | None = None  # event time of the last change to the entry
    left_at: datetime | None = None
    left_reason: str | None = None
    left_ref: str | None = None  # the school's URN, the accepting LA, the country, the deletion ground
    review_on: date | None = None
    handed_to: str | None = None
    school_urn: str | None = None  # registered_educated_elsewhere: the school whose roll the child is on


def update(
    status: RegisterStatus,
    *,
    kind: str,
    before: CaseState | None,
    after: CaseState | None,
    changed: bool,
    outcome: str | None,
    outcome_ref: str | None,
    reason: MissingReason | None,
    destination_la: str | None,
    attrs: dict[str, Any],
    occurred_at: datetime,
) -> RegisterStatus:
    """The register status after one fact (``kind`` is the state machine's event kind of it); ``status``
    itself when the fact changes nothing (most facts: the fold calls this for every one)."""
    if (
        not status.on
        and after not in CATEGORY_BY_STATE
        and kind not in REGISTER_KINDS
        and kind not in AWAITING_KINDS
        and not attrs.get("arrangement")
        and not attrs.get("ehe_reason")
    ):
        return status  # not on the register, and this fact does not put the child there
    new = status.model_copy()
    if attrs.get("arrangement"):
        new.arrangement = EducationArrangement(attrs["arrangement"])
    if attrs.get("ehe_reason"):
        new.ehe_reason = str(attrs["ehe_reason"])
    if (kind in REGISTER_KINDS or kind == "review-date-set") and attrs.get("review_on"):
        new.review_on = date.fromisoformat(str(attrs["review_on"]))
    if changed and after in LEAVES:
        return _leave(new, after, outcome, outcome_ref, occurred_at) if status.on else new
    category = _category(new, kind, after)
    if category is None:
        return status if new == status else new.model_copy(update={"changed_at": occurred_at})
    if not new.on:
        new.on, new.since = True, occurred_at
        new.left_at = new.left_reason = new.left_ref = None
    new.category = category
    new.education = _education(new, kind, after, changed, reason, attrs)
    new.handed_to = destination_la if after in (S.HANDED_OVER, S.AWAITING_LA_CONFIRMATION) else None
    if category == "registered_educated_elsewhere" and attrs.get("school_urn"):
        new.school_urn = str(attrs["school_urn"])
    if new == status and kind not in REGISTER_KINDS:  # the register's own inputs always update the entry
        return status
    new.changed_at = occurred_at
    return new


def _category(status: RegisterStatus, kind: str, state: CaseState | None) -> str | None:
    """Why the child is on the register after this fact, or None if this fact does not put it there."""
    if state in CATEGORY_BY_STATE:
        category = CATEGORY_BY_STATE[state]
        if category == "elective_home_education" and status.arrangement == "otherwise_than_at_school":
            return "otherwise_than_at_school"
        return category
    if state == S.TRANSFER_PENDING:
        if status.on:
            return "awaiting_registration"
        return "awaiting_registration" if kind in AWAITING_KINDS else None
    if kind in REGISTER_KINDS or status.on:
        if status.arrangement == EducationArrangement.REGISTERED_EDUCATED_ELSEWHERE:
            return "registered_educated_elsewhere"
        if status.on and status.category:
            return status.category
        return "reported_by_provider" if kind == "education-provider-return" else "recorded_by_la"
    return None


def _education(
    status: RegisterStatus,
    kind: str,
    state: CaseState | None,
    changed: bool,
    reason: MissingReason | None,
    attrs: dict[str, Any],
) -> EducationSuitability:
    if kind.startswith("register-entry-recorded") and attrs.get("suitability"):
        return EducationSuitability(attrs["suitability"])  # the LA's own view
    if state in EDUCATION_UNKNOWN_STATES:
        if reason == MissingReason.HOME_EDUCATION_UNSUITABLE:
            return EducationSuitability.UNSUITABLE
        return EducationSuitability.UNKNOWN
    if changed and state in (S.ELECTIVELY_HOME_EDUCATED, S.PART_TIME_PROVISION):
        return EducationSuitability.NOT_YET_ASSESSED  # new arrangements: the LA has yet to look
    return status.education or EducationSuitability.NOT_YET_ASSESSED


def _leave(
    status: RegisterStatus, state: CaseState, outcome: str | None, ref: str | None, occurred_at: datetime
) -> RegisterStatus:
    why = "full_time_provision" if outcome == "provision" else LEAVES[state]
    return status.model_copy(
        update={
            "on": False,
            "left_at": occurred_at,
            "left_reason": why,
            "left_ref": ref,
            "changed_at": occurred_at,
            "handed_to": None,
        }
    )
