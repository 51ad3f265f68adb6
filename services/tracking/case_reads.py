"""What the LA's people read of its cases and children: one child's record, a page of cases for a work queue,
a search, the cases in a state. Every read is scoped to the caller's LA (another LA's record is not found) and
the audited ones are written to the read audit in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import literal
from sqlmodel import Session, col, func, select

from services.tracking.audit import audit_read
from services.tracking.crossla import CrossLAMatcher
from services.tracking.errors import NotFound, Unprocessable
from services.tracking.history import Spell, spells
from services.tracking.identity import IdentityResolver
from services.tracking.matching import normalise_name
from services.tracking.models import (
    TrackingCase,
    TrackingChild,
    TrackingCrossLALink,
    TrackingIdentifier,
    TrackingTimelineEntry,
)
from services.tracking.schemas import (
    CaseOut,
    CasePage,
    CaseQuery,
    CaseSummaryOut,
    ChildOut,
    CrossLAOut,
    IdentifierOut,
    SearchIn,
    SpellOut,
    TimelineOut,
)
from shared.auth import Principal
from shared.events.internal import RESOLVED_STATES, CaseState
from shared.events.vocab import Vulnerability

QUERY_ORDER = {
    "oldest": (col(TrackingCase.cause_occurred_at), col(TrackingCase.case_id)),
    "newest": (col(TrackingCase.cause_occurred_at).desc(), col(TrackingCase.case_id)),
    "surname": (col(TrackingChild.surname_norm), col(TrackingCase.case_id)),
}


def case_out(row: TrackingCase) -> CaseOut:
    data: dict[str, Any] = row.model_dump()
    data["vulnerabilities"] = [v for v in row.vulnerabilities.split(",") if v]
    data["open_deadlines"] = [d for d in row.open_deadlines.split(",") if d]
    return CaseOut.model_validate(data)


def vulnerability_flags(case: TrackingCase) -> list[Vulnerability]:
    return [Vulnerability(v) for v in case.vulnerabilities.split(",") if v]


def cross_la_out(link: TrackingCrossLALink, la_code: str, matcher: CrossLAMatcher) -> CrossLAOut:
    """One side of a cross-LA match, as ``la_code`` may see it: never the other LA's child, case or
    timeline."""
    sought = link.sought_la_code == la_code
    other = link.found_la_code if sought else link.sought_la_code
    return CrossLAOut(
        link_id=link.link_id,
        review_id=link.sought_review_id if sought else link.found_review_id,
        side="possible_location" if sought else "sought_by",
        other_la_code=other,
        other_la_contact=link.peer_contact or matcher.contact(other),
        fact_type=link.fact_type if sought else None,
        fact_on=link.fact_occurred_at.date() if sought else None,
        sought_state=None if sought else link.sought_state,
        missing_since=None if sought or link.missing_since is None else link.missing_since.date(),
        match=link.match,
        identifier_kind=link.identifier_kind,
        score=link.score,
        fields_agreed=[f for f in link.fields_agreed.split(",") if f],
        status=link.status,
        decided_la_code=link.decided_la_code,
    )


def read_child(
    session: Session, who: Principal, child_id: uuid.UUID, reason: str, matcher: CrossLAMatcher
) -> ChildOut:
    """The child's record: name, identifiers, case, timeline and this LA's side of its cross-LA matches.
    Audited as ``read_child``."""
    child = session.get(TrackingChild, str(child_id))
    if child is None or child.la_code != who.la_code:
        raise NotFound("no such child")
    case = session.exec(select(TrackingCase).where(TrackingCase.child_id == child.child_id)).first()
    rows = session.exec(
        select(TrackingTimelineEntry)
        .where(TrackingTimelineEntry.child_id == child.child_id)
        .order_by(col(TrackingTimelineEntry.occurred_at), col(TrackingTimelineEntry.id))
    ).all()
    identifiers = session.exec(
        select(TrackingIdentifier)
        .where(TrackingIdentifier.child_id == child.child_id, TrackingIdentifier.la_code == who.la_code)
        .order_by(col(TrackingIdentifier.id))
    ).all()
    links = session.exec(
        select(TrackingCrossLALink)
        .where(
            (
                (col(TrackingCrossLALink.sought_child_id) == child.child_id)
                & (col(TrackingCrossLALink.sought_la_code) == who.la_code)
            )
            | (
                (col(TrackingCrossLALink.found_child_id) == child.child_id)
                & (col(TrackingCrossLALink.found_la_code) == who.la_code)
            )
        )
        .order_by(col(TrackingCrossLALink.created_at))
    ).all()
    audit_read(session, who, "read_child", child.child_id, reason)
    return ChildOut(
        child_id=child.child_id,
        forename=child.forename,
        surname=child.surname,
        date_of_birth=child.date_of_birth,
        sex=child.sex,
        identifiers=[IdentifierOut(kind=i.kind, value=i.value) for i in identifiers],
        case=case_out(case) if case else None,
        timeline=[TimelineOut.model_validate(r.model_dump()) for r in rows],
        cross_la=[cross_la_out(link, who.la_code, matcher) for link in links],
    )


def child_of_case(session: Session, who: Principal, case_id: uuid.UUID) -> uuid.UUID:
    """The child a case (in the caller's LA) is about: alert messages link to a case id."""
    case = session.get(TrackingCase, str(case_id))
    if case is None or case.la_code != who.la_code:
        raise NotFound("no such case")
    return uuid.UUID(case.child_id)


def cases_in_state(session: Session, who: Principal, state: CaseState, limit: int) -> list[CaseOut]:
    """The LA's cases in ``state``, oldest cause first (not audited: no names)."""
    rows = session.exec(
        select(TrackingCase)
        .where(
            TrackingCase.la_code == who.la_code,
            TrackingCase.state == state,
            col(TrackingCase.merged_into).is_(None),
        )
        .order_by(col(TrackingCase.cause_occurred_at))
        .limit(limit)
    ).all()
    return [case_out(r) for r in rows]


def _opened_at(case_spells: list[Spell]) -> datetime | None:
    """The start of the case's current run of open (not resolved) states; None when it is resolved now."""
    opened = None
    for spell in reversed(case_spells):
        if spell.state in RESOLVED_STATES:
            break
        opened = spell.start
    return opened


def _filters(body: CaseQuery, la_code: str) -> list[Any]:
    where: list[Any] = [TrackingCase.la_code == la_code, col(TrackingCase.merged_into).is_(None)]
    if body.case_ids is not None:
        where.append(col(TrackingCase.case_id).in_([str(i) for i in body.case_ids]))
    if body.exclude_case_ids:
        where.append(col(TrackingCase.case_id).not_in([str(i) for i in body.exclude_case_ids]))
    if body.states:
        where.append(col(TrackingCase.state).in_([str(s) for s in body.states]))
    if body.open_only:
        where.append(col(TrackingCase.state).not_in([str(s) for s in RESOLVED_STATES]))
    if body.reason_code:
        where.append(TrackingCase.reason == body.reason_code)
    if body.vulnerability:
        # Codes are comma-separated: match a whole code, not a prefix of another.
        padded = literal(",").concat(col(TrackingCase.vulnerabilities)).concat(",")
        where.append(padded.like(f"%,{body.vulnerability.value},%"))
    if body.school_urn:
        where.append(
            col(TrackingCase.child_id).in_(
                select(TrackingTimelineEntry.child_id).where(
                    TrackingTimelineEntry.la_code == la_code,
                    TrackingTimelineEntry.school_urn == body.school_urn,
                )
            )
        )
    return where


def _summary(
    case: TrackingCase, child: TrackingChild, timeline: list[TrackingTimelineEntry]
) -> CaseSummaryOut:
    case_spells = spells(timeline, vulnerability_flags(case))
    opened = _opened_at(case_spells)
    return CaseSummaryOut(
        case=case_out(case),
        forename=child.forename,
        surname=child.surname,
        date_of_birth=child.date_of_birth,
        school_urn=next((r.school_urn for r in reversed(timeline) if r.school_urn), None),
        opened_at=opened,
        opening_school_urn=next(
            (
                r.school_urn
                for r in reversed(timeline)
                if r.school_urn and opened is not None and r.occurred_at <= opened
            ),
            None,
        ),
        spells=[SpellOut(**vars(s)) for s in case_spells],
    )


def query_cases(session: Session, who: Principal, body: CaseQuery) -> CasePage:
    """A page of the LA's cases with the child's name, latest school and state spells: the web's work queues
    (filters by ids, which the web keeps for ownership, and by the case's own fields). Audited as
    ``case_list``."""
    where = _filters(body, who.la_code)
    joined = select(TrackingCase, TrackingChild).join(
        TrackingChild, col(TrackingChild.child_id) == col(TrackingCase.child_id)
    )
    total = session.exec(select(func.count()).select_from(TrackingCase).where(*where)).one()
    page = session.exec(
        joined.where(*where).order_by(*QUERY_ORDER[body.sort]).offset(body.offset).limit(body.limit)
    ).all()
    ids = [case.child_id for case, _ in page]
    rows: dict[str, list[TrackingTimelineEntry]] = {}
    for row in session.exec(
        select(TrackingTimelineEntry).where(col(TrackingTimelineEntry.child_id).in_(ids))
    ).all():
        rows.setdefault(row.child_id, []).append(row)
    items = [
        _summary(case, child, sorted(rows.get(case.child_id, []), key=lambda r: (r.occurred_at, r.event_id)))
        for case, child in page
    ]
    audit_read(session, who, "case_list", None, body.reason)
    return CasePage(total=total, items=items)


def search_children(session: Session, who: Principal, body: SearchIn) -> list[CaseOut]:
    """The cases of the children with this UPN, or this surname and date of birth (followed to the child a
    merge kept). Audited as ``search``."""
    if body.upn:
        ids = session.exec(
            select(TrackingIdentifier.child_id).where(
                TrackingIdentifier.la_code == who.la_code,
                TrackingIdentifier.kind == "upn",
                TrackingIdentifier.value == body.upn.strip().upper(),
            )
        ).all()
    elif body.surname and body.date_of_birth:
        ids = session.exec(
            select(TrackingChild.child_id).where(
                TrackingChild.la_code == who.la_code,
                TrackingChild.date_of_birth == body.date_of_birth,
                TrackingChild.surname_norm == normalise_name(body.surname),
            )
        ).all()
    else:
        # FastAPI's documented 422 shape (a list of {loc, msg, type}), like its own validation errors.
        problem = {"loc": ["body"], "msg": "give a UPN, or a surname and a date of birth"}
        raise Unprocessable([{**problem, "type": "value_error"}])
    survivors = sorted({IdentityResolver.surviving(session, i) for i in ids})
    rows = session.exec(
        select(TrackingCase).where(
            col(TrackingCase.child_id).in_(survivors), TrackingCase.la_code == who.la_code
        )
    ).all()
    audit_read(session, who, "search", None, body.reason)
    return [case_out(r) for r in rows]
