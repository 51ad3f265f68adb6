"""Cross-LA matching (services/tracking/crossla.py): a child whose case is open in LA 801 and who is named
by a fact in LA 803 is linked across the two LAs, with one review item for each, audited in both with the
legal basis; a confirmation closes 801's case with outcome other_la_accepted naming 803. Dates on the school
calendar: whereabouts unknown in 801 on Mon 3 Nov 2025, registered at a school in 803 on Mon 1 Dec 2025."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.samples import child, sample_event_dict
from services.tracking.cases import apply_child_fact, new_record
from services.tracking.crossla import LEGAL_BASIS, REVIEW_KIND, CrossLAMatcher, decide
from services.tracking.identity import IdentityResolver
from services.tracking.models import (
    TrackingCase,
    TrackingCrossLALink,
    TrackingReadAudit,
    TrackingReviewItem,
    TrackingTimelineEntry,
)
from services.tracking.stream.app import MIGRATIONS
from services.tracking.stream.identity_agent import child_fact
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.events.internal import CaseState

MISSING_ON = date(2025, 11, 3)  # Monday
FOUND_ON = date(2025, 12, 1)  # Monday, four school weeks later
KID = child(1, "801")  # UPN issued by 801; the same child registered in 803 keeps it for life


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    migrate(url, MIGRATIONS, "tracking")
    return make_engine(url)


def _event(event_type: str, la_code: str, on: date, kid: dict[str, Any]) -> Envelope:
    return decode_inbound(sample_event_dict(event_type, on=on, la_code=la_code, kid=kid))


def _open_case(
    engine: Engine, resolver: IdentityResolver, state: CaseState, **case: Any
) -> tuple[str, Envelope]:
    """801's child, resolved there, with its case in ``state`` (what the case agent would have stored)."""
    missing = _event("whereabouts-unknown", "801", MISSING_ON, KID)
    child_id = resolver.resolve(missing).child_id
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()),
                child_id=child_id,
                la_code="801",
                state=str(state),
                cause_occurred_at=missing.occurred_at,
                **case,
            )
        )
        session.commit()
    return child_id, missing


def _rows(engine: Engine, model: Any) -> list[Any]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(model)).all())


def test_exact_match_links_both_las_with_a_review_item_each_and_audits_both(engine: Engine) -> None:
    resolver = IdentityResolver(engine, cross_la=CrossLAMatcher(contacts={"801": "cme@801.invalid"}))
    sought_child, _ = _open_case(engine, resolver, CaseState.WHEREABOUTS_UNKNOWN)
    registered = _event("pupil-registered", "803", FOUND_ON, KID)
    labels = {"match": "exact", "direction": "found_by_fact"}
    before = REGISTRY.get_sample_value("cme_tracking_cross_la_matches_total", labels) or 0
    found_child = resolver.resolve(registered).child_id
    assert REGISTRY.get_sample_value("cme_tracking_cross_la_matches_total", labels) == before + 1
    assert found_child != sought_child  # identity stays per LA: 803 has its own child

    [link] = _rows(engine, TrackingCrossLALink)
    assert (link.sought_la_code, link.sought_child_id, link.found_la_code, link.found_child_id) == (
        "801",
        sought_child,
        "803",
        found_child,
    )
    assert (link.match, link.identifier_kind, link.fact_type, link.status) == (
        "exact",
        "upn",
        "pupil-registered",
        "open",
    )
    assert link.fact_occurred_at.date() == FOUND_ON and link.missing_since.date() == MISSING_ON
    items = {i.la_code: i for i in _rows(engine, TrackingReviewItem) if i.kind == REVIEW_KIND}
    assert set(items) == {"801", "803"}
    assert items["801"].child_id == sought_child and items["803"].child_id == found_child
    assert items["801"].detail.startswith("possible location: LA 803 (pupil-registered 2025-12-01)")
    assert items["803"].detail.startswith("sought by LA 801 (whereabouts_unknown since 2025-11-03)")
    for item in items.values():  # codes, LA numbers and dates only: nothing of the child
        assert KID["upn"] not in item.detail and KID["surname"] not in item.detail
        assert item.other_child_id is None
    audits = [a for a in _rows(engine, TrackingReadAudit) if a.action == "cross_la_match"]
    assert {(a.la_code, a.child_id) for a in audits} == {("801", sought_child), ("803", found_child)}
    assert all(LEGAL_BASIS in a.reason and KID["upn"] not in a.reason for a in audits)

    # Redelivery and a second fact of the same child in 803 raise nothing new.
    resolver.resolve(registered)
    resolver.resolve(_event("absence-threshold-crossed", "803", date(2025, 12, 8), KID))
    assert len(_rows(engine, TrackingCrossLALink)) == 1


def test_confirmation_closes_the_sought_case_with_the_found_la(engine: Engine) -> None:
    matcher = CrossLAMatcher()
    resolver = IdentityResolver(engine, cross_la=matcher)
    sought_child, missing = _open_case(engine, resolver, CaseState.WHEREABOUTS_UNKNOWN)
    resolver.resolve(_event("pupil-registered", "803", FOUND_ON, KID))
    with Session(engine, expire_on_commit=False) as session:
        link = session.exec(select(TrackingCrossLALink)).one()
        closing = matcher.closing_fact(session, link, "caseworker-801")
        decide(session, link, "confirm", "801", "caseworker-801", "school confirmed by phone")
        session.commit()
    assert closing is not None and str(closing.payload.child_id) == sought_child
    assert {i.status for i in _rows(engine, TrackingReviewItem) if i.kind == REVIEW_KIND} == {"confirmed"}
    decisions = [a for a in _rows(engine, TrackingReadAudit) if a.action == "cross_la_confirm"]
    assert {a.la_code for a in decisions} == {"801", "803"}

    # The case logic takes the confirmation like any fact: 801's case closes, the outcome names 803.
    record = new_record(sought_child, "801")
    for fact in (child_fact(missing, resolver.resolve(missing)), closing):
        out = apply_child_fact(record, fact)
        record = out.record
    assert record.case.state == CaseState.LEFT_AREA
    assert out.transitions[-1].payload.outcome == "other_la_accepted"
    assert out.transitions[-1].payload.outcome_ref == "803"


def test_scored_match_across_las_goes_to_review_in_both_never_linked(engine: Engine) -> None:
    resolver = IdentityResolver(engine, cross_la=CrossLAMatcher())
    no_upn = {k: v for k, v in KID.items() if k not in ("upn", "postcode")}
    missing = _event("whereabouts-unknown", "801", MISSING_ON, no_upn)
    sought_child = resolver.resolve(missing).child_id
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()),
                child_id=sought_child,
                la_code="801",
                state=str(CaseState.MISSING_EDUCATION),
                cause_occurred_at=missing.occurred_at,
            )
        )
        session.commit()
    # A GP's referral in 803: no UPN, the same names, date of birth and sex, a new postcode.
    referral = _event("referral-received", "803", FOUND_ON, {**no_upn, "postcode": "NE1 4ST"})
    resolution = resolver.resolve(referral)
    assert resolution.created  # a new child in 803: across LAs a score never links by itself
    [link] = _rows(engine, TrackingCrossLALink)
    assert link.match == "scored" and link.score is not None and 0.75 <= link.score < 1
    assert link.fields_agreed.split(",") == ["surname", "forename", "date_of_birth", "sex"]
    items = [i for i in _rows(engine, TrackingReviewItem) if i.kind == REVIEW_KIND]
    assert sorted(i.la_code for i in items) == ["801", "803"]  # both LAs' queues, and no other LA's
    assert all(f"scored {link.score}" in (i.detail or "") for i in items)


def test_no_link_for_a_closed_case_a_handover_to_that_la_or_an_la_that_switched_off(engine: Engine) -> None:
    registered = _event("pupil-registered", "803", FOUND_ON, KID)
    resolver = IdentityResolver(engine, cross_la=CrossLAMatcher(off={"801"}))
    _open_case(engine, resolver, CaseState.WHEREABOUTS_UNKNOWN)
    resolver.resolve(registered)
    assert _rows(engine, TrackingCrossLALink) == []  # 801 switched off: behaves as before


@pytest.mark.parametrize(
    ("state", "case"),
    [
        (CaseState.IN_EDUCATION, {}),  # nothing sought
        (CaseState.HANDED_OVER, {"destination_la_code": "803"}),  # the handover's confirmation closes it
    ],
)
def test_no_link_unless_sought(engine: Engine, state: CaseState, case: dict[str, Any]) -> None:
    resolver = IdentityResolver(engine, cross_la=CrossLAMatcher())
    _open_case(engine, resolver, state, **case)
    resolver.resolve(_event("pupil-registered", "803", FOUND_ON, KID))
    assert _rows(engine, TrackingCrossLALink) == []


def test_without_a_matcher_identity_stays_within_each_la(engine: Engine) -> None:
    resolver = IdentityResolver(engine)
    _open_case(engine, resolver, CaseState.WHEREABOUTS_UNKNOWN)
    resolver.resolve(_event("pupil-registered", "803", FOUND_ON, KID))
    assert _rows(engine, TrackingCrossLALink) == []


def test_the_other_direction_a_case_that_becomes_sought_finds_the_child_another_la_already_has(
    engine: Engine,
) -> None:
    """The usual order of a move without a CTF: 803's school registers the child (Mon 1 Dec), then 801's
    school deletes the child with an unknown destination and 801 records whereabouts unknown (Mon 8 Dec).
    The case agent asks once 801's case has become sought; 803's latest fact is the found one."""
    matcher = CrossLAMatcher()
    resolver = IdentityResolver(engine, cross_la=matcher)
    registered = _event("pupil-registered", "803", FOUND_ON, KID)
    found_child = resolver.resolve(registered).child_id
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()), child_id=found_child, la_code="803", state="in_education",
                cause_occurred_at=registered.occurred_at,
            )
        )  # fmt: skip
        session.add(
            TrackingTimelineEntry(
                child_id=found_child, la_code="803", event_id=str(registered.event_id),
                event_type="pupil-registered", occurred_at=registered.occurred_at, verdict="move",
                to_state="in_education",
            )
        )  # fmt: skip
        session.commit()
    missing = _event("whereabouts-unknown", "801", date(2025, 12, 8), KID)
    sought_child = resolver.resolve(missing).child_id
    assert _rows(engine, TrackingCrossLALink) == []  # 801's case is not sought yet when identity runs
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()), child_id=sought_child, la_code="801", state="whereabouts_unknown",
                cause_occurred_at=missing.occurred_at,
            )
        )  # fmt: skip
        session.commit()
    assert matcher.match_sought(engine, [(sought_child, "801")]) == 1
    [link] = _rows(engine, TrackingCrossLALink)
    assert (link.sought_child_id, link.found_child_id, link.found_la_code) == (
        sought_child,
        found_child,
        "803",
    )
    assert (link.fact_type, link.fact_occurred_at.date(), link.identifier_kind) == (
        "pupil-registered",
        FOUND_ON,
        "upn",
    )
    assert sorted(i.la_code for i in _rows(engine, TrackingReviewItem) if i.kind == REVIEW_KIND) == [
        "801",
        "803",
    ]
    assert matcher.match_sought(engine, [(sought_child, "801")]) == 0  # once
    assert CrossLAMatcher(off={"803"}).match_sought(engine, [(sought_child, "801")]) == 0


def test_cases_projected_in_the_order_neither_check_sees_are_still_matched(engine: Engine) -> None:
    """801's fact and 803's fact are resolved before either case is in the case store (identity sees no
    sought case); 801's case is projected first (``match_sought``: 803's case is not there yet); then
    803's case is projected: ``match_found`` links them, once."""
    matcher = CrossLAMatcher()
    resolver = IdentityResolver(engine, cross_la=matcher)
    missing = _event("whereabouts-unknown", "801", MISSING_ON, KID)
    sought_child = resolver.resolve(missing).child_id
    registered = _event("pupil-registered", "803", FOUND_ON, KID)
    found_child = resolver.resolve(registered).child_id
    assert _rows(engine, TrackingCrossLALink) == []
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()),
                child_id=sought_child,
                la_code="801",
                state=str(CaseState.WHEREABOUTS_UNKNOWN),
                cause_occurred_at=missing.occurred_at,
            )
        )
        session.commit()
    assert matcher.match_sought(engine, [(sought_child, "801")]) == 0
    assert matcher.match_found(engine, [(found_child, "803")]) == 0  # 803's case is not there yet either
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()),
                child_id=found_child,
                la_code="803",
                state=str(CaseState.IN_EDUCATION),
                cause_occurred_at=registered.occurred_at,
            )
        )
        session.add(
            TrackingTimelineEntry(
                child_id=found_child,
                la_code="803",
                event_id=str(registered.event_id),
                event_type=registered.event_type,
                occurred_at=registered.occurred_at,
                verdict="move",
            )
        )
        session.commit()
    assert matcher.match_found(engine, [(found_child, "803")]) == 1
    assert matcher.match_found(engine, [(found_child, "803")]) == 0  # again: nothing more
    [link] = _rows(engine, TrackingCrossLALink)
    assert (link.sought_child_id, link.found_child_id, link.fact_type) == (
        sought_child,
        found_child,
        "pupil-registered",
    )
    items = {i.la_code: i for i in _rows(engine, TrackingReviewItem) if i.kind == REVIEW_KIND}
    assert items["801"].detail.startswith("possible location: LA 803 (pupil-registered 2025-12-01)")
    assert items["803"].detail.startswith("sought by LA 801 (whereabouts_unknown since 2025-11-03)")


def test_candidates_are_their_surviving_children_however_long_the_chain_of_merges(engine: Engine) -> None:
    """A child merged into one that was merged again is matched as the last survivor; a cycle (never written
    by the merge code) ends where it turns back; a child the store does not have is itself."""
    from services.tracking.crossla import _survivors
    from services.tracking.models import TrackingChild

    merges = {"a": "b", "b": "c", "c": None, "d": None, "p": "q", "q": "p"}
    with Session(engine) as session:
        for child_id, into in merges.items():
            session.add(
                TrackingChild(child_id=child_id, la_code="803", merged_into=into, created_by_event_id="e")
            )
        session.commit()
        survivors = _survivors(session, {"a", "b", "d", "p", "x"})
    assert survivors == {"a": "c", "b": "c", "d": "d", "p": "p", "x": "x"}
