"""What any inbound fact tells tracking about the child, whatever its type: social-care flags are a status,
a safeguarding concern can come on any event, and a sender may state the reason the child is missing
education where the event allows it (referrals, enquiries, located)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.samples import child, sample_event
from services.tracking.facts import fact_from_inbound
from services.tracking.state_machine import Case, Fact, fold, step
from shared.events.internal import CaseState
from shared.events.vocab import MissingReason, SocialCareStatus, Vulnerability

S = CaseState


def _fact(event_type: str, days: int = 0, vulnerabilities: list[str] | None = None, **attrs: Any) -> Fact:
    return Fact(
        event_id=f"e-{event_type}-{days}-{sorted(attrs.items())}",
        event_type=event_type,
        occurred_at=datetime(2025, 11, 3, 9, tzinfo=UTC) + timedelta(days=days),
        la_code="801",
        attrs=attrs,
        vulnerabilities=[Vulnerability(v) for v in vulnerabilities or []],
    )


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        (["child_protection_plan"], SocialCareStatus.CHILD_PROTECTION_PLAN),
        (["looked_after", "ehcp"], SocialCareStatus.LOOKED_AFTER),
        (["child_in_need", "looked_after"], SocialCareStatus.LOOKED_AFTER),  # the strongest wins
        (["child_in_need"], SocialCareStatus.CHILD_IN_NEED),
        (["ehcp"], SocialCareStatus.NONE),
    ],
)
def test_a_social_care_flag_on_any_event_is_the_social_care_status(
    flags: list[str], status: SocialCareStatus
) -> None:
    s = step(Case(la_code="801"), _fact("whereabouts-unknown", vulnerabilities=flags))
    assert s.after.state == S.WHEREABOUTS_UNKNOWN
    assert s.after.social_care_status == status


def test_the_social_care_event_still_decides_and_can_end_a_status() -> None:
    facts = [
        _fact("whereabouts-unknown", 0, vulnerabilities=["child_protection_plan"]),
        _fact("social-care-status-changed", 1, status="none", has_social_worker=False),
    ]
    case, _ = fold("801", facts)
    assert case.social_care_status == SocialCareStatus.NONE
    assert "child_protection_plan" not in case.vulnerabilities


def test_a_safeguarding_concern_on_any_event_is_kept() -> None:
    kid = child(3)
    event = sample_event("whereabouts-unknown", kid=kid)
    flagged = event.model_copy(
        update={"payload": event.payload.model_copy(update={"safeguarding_concern": True})}
    )
    fact = fact_from_inbound(flagged)
    assert fact.attrs["safeguarding_concern"] is True
    case, _ = fold("801", [fact, _fact("enquiry-recorded", 1, enquiry_type="home_visit", outcome="note")])
    assert case.safeguarding_concern  # a later event without the flag does not clear it


def test_a_stated_reason_replaces_the_default_category_where_the_state_allows() -> None:
    # A referral opening a case: "not_recorded" unless the referrer says why.
    assert fold("801", [_fact("referral-received", 0)])[0].reason == MissingReason.NOT_RECORDED
    stated = fold("801", [_fact("referral-received", 0, reason="health")])[0]
    assert stated.state == S.MISSING_EDUCATION and stated.reason == MissingReason.HEALTH
    # An enquiry (a stay) can say more once the case is open...
    case, _ = fold(
        "801",
        [
            _fact("referral-received", 0),
            _fact("enquiry-recorded", 1, enquiry_type="health", outcome="note", reason="sen"),
        ],
    )
    assert case.reason == MissingReason.SEN
    # ...and a located child awaiting a place can be a failed transition.
    case, _ = fold(
        "801",
        [
            _fact("referral-received", 0),
            _fact("child-located", 2, located_la_code="801", reason="failed_to_enrol_or_transition"),
        ],
    )
    assert case.state == S.AWAITING_PROVISION and case.reason == MissingReason.FAILED_TO_ENROL_OR_TRANSITION
    # Whereabouts unknown is its own category: a stated reason does not hide it.
    case, _ = fold(
        "801",
        [
            _fact("whereabouts-unknown", 0),
            _fact("enquiry-recorded", 1, enquiry_type="police", outcome="note", reason="other"),
        ],
    )
    assert case.reason == MissingReason.WHEREABOUTS_UNKNOWN


def test_every_reason_category_is_reachable() -> None:
    reached: set[MissingReason] = set()
    for reason in MissingReason:
        case, _ = fold("801", [_fact("referral-received", 0, reason=reason.value)])
        assert case.reason is not None
        reached.add(case.reason)
    assert reached == set(MissingReason)


def test_a_sickness_notice_changes_no_state() -> None:
    event = sample_event("sickness-absence-notified")
    fact = fact_from_inbound(event)
    assert fact.attrs["expected_school_days"] == 30
    s = step(Case(la_code="801", state=S.IN_EDUCATION), fact)
    assert s.after.state == S.IN_EDUCATION and not s.changes and not s.flagged


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (_fact("social-care-status-changed", 0, status="child_protection_enquiry", has_social_worker=True),
         SocialCareStatus.CHILD_PROTECTION_ENQUIRY),
        (_fact("sickness-absence-notified", 0, vulnerabilities=["child_protection_plan"]),
         SocialCareStatus.CHILD_PROTECTION_PLAN),
    ],
)  # fmt: skip
def test_a_child_protection_status_learnt_with_no_case_refuses_a_later_unflagged_notice(
    first: Fact, status: SocialCareStatus
) -> None:
    """The status (a status event, or the plan's flag on a fact that opens no case) is the child's, kept
    with no case open and after a case closes: a later home-education notice with no flag is refused as a
    transition and flagged, and the child is owned (on roll, at risk); a re-fold in any order agrees."""
    notice = _fact("home-education-notified", 4)
    known = step(Case(la_code="801"), first)
    assert known.after.state is None and known.after.social_care_status == status
    refused = step(known.after, notice)
    assert refused.flagged and refused.after.state == S.ON_ROLL_AT_RISK
    assert refused.after.social_care_status == status
    closed, _ = fold("801", [first, _fact("pupil-registered", 1, school_urn="100000")])
    assert closed.state == S.IN_EDUCATION and closed.social_care_status == status
    again = step(closed, notice)
    assert again.flagged and again.after.state == S.ON_ROLL_AT_RISK
    case, steps = fold("801", [notice, first, _fact("pupil-registered", 1, school_urn="100000")])
    assert case.state == S.ON_ROLL_AT_RISK and steps[-1].flagged
