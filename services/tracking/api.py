"""Read API of the case store, scoped to the caller's LA; every read of a child's record is audited."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import literal
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from services.tracking import crossla
from services.tracking.crossla import CrossLAMatcher
from services.tracking.history import provision_codes, spells
from services.tracking.identity import IdentityResolver
from services.tracking.matching import normalise_name
from services.tracking.models import (
    TrackingCase,
    TrackingChild,
    TrackingCrossLALink,
    TrackingIdentifier,
    TrackingReadAudit,
    TrackingResolution,
    TrackingReviewItem,
    TrackingTimelineEntry,
)
from shared.auth import CaseReader, Principal
from shared.events.envelope import Source, utcnow
from shared.events.internal import (
    RESOLVED_STATES,
    CaseState,
    ChildFact,
    ChildMerged,
    ChildMergedPayload,
    ChildSplit,
    ChildSplitPayload,
)
from shared.events.vocab import Vulnerability

Reason = Annotated[str, Field(min_length=3, max_length=500, description="Why the record is being read")]


def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]
# Queues a review decision's event in the decision's session (the caller commits both together).
Publish = Callable[[Session, ChildMerged | ChildSplit | ChildFact], None]


class CaseOut(BaseModel):
    case_id: str
    child_id: str
    la_code: str
    state: str | None
    reason: str | None
    cause_event_id: str | None
    cause_event_type: str | None
    cause_occurred_at: datetime | None
    vulnerabilities: list[str]
    social_care_status: str
    has_social_worker: bool
    safeguarding_concern: bool
    destination_la_code: str | None
    outcome: str | None = None  # where a closed case's child is educated (CaseOutcome), and its reference
    outcome_ref: str | None = None
    open_deadlines: list[str]
    merged_into: str | None


class TimelineOut(BaseModel):
    event_id: str
    event_type: str
    event_kind: str | None
    occurred_at: datetime
    verdict: str
    from_state: str | None
    to_state: str | None
    school_urn: str | None
    note: str | None


class IdentifierOut(BaseModel):
    kind: str  # upn, uln, nhs_number, la_child_id
    value: str


class CrossLAOut(BaseModel):
    """One side of a cross-LA match, as this LA may see it: never the other LA's child, case or timeline."""

    link_id: str
    review_id: str  # this LA's review item (confirm or reject there)
    side: str  # possible_location (this LA seeks the child), sought_by (another LA seeks this child)
    other_la_code: str
    other_la_contact: str
    fact_type: str | None  # possible_location: the other LA's fact that named the child, and its date
    fact_on: date | None
    sought_state: str | None  # sought_by: the other LA's open state and since when
    missing_since: date | None
    match: str  # exact, scored
    identifier_kind: str | None
    score: float | None
    fields_agreed: list[str]
    status: str  # open, confirmed, rejected
    decided_la_code: str | None


class ChildOut(BaseModel):
    child_id: str
    forename: str | None
    surname: str | None
    date_of_birth: date | None
    sex: str | None = None
    # The child's strong identifiers: what a fact recorded from the web names the child by, so it resolves to
    # this child exactly (identity resolution, as for any source).
    identifiers: list[IdentifierOut] = []
    case: CaseOut | None
    timeline: list[TimelineOut]
    # Cross-LA matches of this child (docs/TRACKING.md "Found anywhere"), this LA's side only.
    cross_la: list[CrossLAOut] = []


class SpellOut(BaseModel):
    start: datetime
    state: str
    reason: str | None
    event_kind: str | None


class DetailOut(BaseModel):
    occurred_at: datetime
    event_kind: str | None
    codes: dict[str, str]


class HistoryOut(BaseModel):
    """One child's case over event time, for the LA's reports."""

    child_id: str
    case_id: str
    upn: str | None
    date_of_birth: date | None
    sex: str | None
    vulnerabilities: list[str]
    state: str | None
    spells: list[SpellOut]
    details: list[DetailOut]


class CaseQuery(BaseModel):
    """A page of the LA's cases for a work queue, filtered; ``total`` counts every case the filters match."""

    reason: Reason
    case_ids: list[uuid.UUID] | None = Field(default=None, max_length=50_000, description="Only these cases")
    exclude_case_ids: list[uuid.UUID] | None = Field(default=None, max_length=50_000)
    states: list[CaseState] | None = None
    open_only: bool = Field(default=False, description="Leave out cases in a resolved state")
    reason_code: str | None = Field(default=None, max_length=40)
    vulnerability: Vulnerability | None = None
    school_urn: str | None = Field(default=None, pattern=r"^[0-9]{6}$", description="A fact from this school")
    sort: Annotated[str, Field(pattern="^(oldest|newest|surname)$")] = "oldest"
    offset: int = Field(default=0, ge=0, le=10_000_000)  # far beyond any LA's cases; a database integer
    limit: int = Field(default=50, ge=1, le=500)


class CaseSummaryOut(BaseModel):
    case: CaseOut
    forename: str | None
    surname: str | None
    date_of_birth: date | None
    school_urn: str | None  # the school of the child's latest fact that named one
    # Since when the case has been open (event time: the start of its current run of open states) and the
    # school of the latest fact, by then, that named one: facts that do not move with later arrivals, which
    # the web's allocation policy decides on.
    opened_at: datetime | None = None
    opening_school_urn: str | None = None
    spells: list[SpellOut]


def _opened_at(case_spells: list[Any]) -> datetime | None:
    """The start of the case's current run of open (not resolved) states; None when it is resolved now."""
    opened = None
    for spell in reversed(case_spells):
        if spell.state in RESOLVED_STATES:
            break
        opened = spell.start
    return opened


class CasePage(BaseModel):
    total: int
    items: list[CaseSummaryOut]


QUERY_ORDER = {
    "oldest": (col(TrackingCase.cause_occurred_at), col(TrackingCase.case_id)),
    "newest": (col(TrackingCase.cause_occurred_at).desc(), col(TrackingCase.case_id)),
    "surname": (col(TrackingChild.surname_norm), col(TrackingCase.case_id)),
}


class SearchIn(BaseModel):
    reason: Reason
    upn: str | None = Field(default=None, max_length=13)  # a UPN is 13 characters
    surname: str | None = Field(default=None, max_length=100)
    date_of_birth: date | None = None


class Decision(BaseModel):
    # link / not_link: a possible duplicate in the LA; confirm / reject: a cross-LA match (cross_la_match).
    decision: Annotated[str, Field(pattern="^(link|not_link|confirm|reject)$")]
    reason: Reason


class Undo(BaseModel):
    reason: Reason


def _merge_pair(item: TrackingReviewItem) -> tuple[str, str]:
    """(surviving, merged) child of a linked review item: the same choice the link made."""
    assert item.other_child_id is not None
    survivor, gone = sorted((item.child_id, item.other_child_id))
    return survivor, gone


def _facts_of(session: Session, la_code: str, child_id: str) -> list[uuid.UUID]:
    """The inbound facts that belong to a merged child: resolved to it before the merge, or matched one of
    its identifiers afterwards (identity then followed the merge to the survivor)."""
    rows = session.exec(
        select(TrackingResolution.event_id).where(
            TrackingResolution.la_code == la_code,
            (col(TrackingResolution.child_id) == child_id)
            | (col(TrackingResolution.matched_child_id) == child_id),
        )
    ).all()
    return sorted(uuid.UUID(r) for r in rows)


class CrossLACounts(BaseModel):
    open: int = 0
    confirmed: int = 0
    rejected: int = 0


class CrossLAReport(BaseModel):
    """Children found across LAs, from this LA's side, and how long its children were missing before."""

    la_code: str
    matching_enabled: bool  # off: this LA's children are neither sought elsewhere nor found for others
    found_elsewhere: CrossLACounts  # this LA's sought children named by a fact in another LA
    sought_by_others: CrossLACounts  # this LA's records of children another LA seeks
    # Confirmed found elsewhere: days from the start of the missing spell to the other LA's fact (event time).
    days_missing_to_found: list[int]
    median_days_missing_to_found: float | None


def _cross_la_out(link: TrackingCrossLALink, la_code: str, matcher: CrossLAMatcher) -> CrossLAOut:
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


def _case_out(row: TrackingCase) -> CaseOut:
    data: dict[str, Any] = row.model_dump()
    data["vulnerabilities"] = [v for v in row.vulnerabilities.split(",") if v]
    data["open_deadlines"] = [d for d in row.open_deadlines.split(",") if d]
    return CaseOut.model_validate(data)


def _audit(session: Session, who: Principal, action: str, child_id: str | None, reason: str) -> None:
    session.add(
        TrackingReadAudit(
            subject=who.sub,
            role=who.role,
            la_code=who.la_code,
            action=action,
            child_id=child_id,
            reason=reason,
        )
    )


def build_router(publish: Publish, matcher: CrossLAMatcher | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["cases"])
    cross = matcher or CrossLAMatcher()

    @router.get("/children/{child_id}")
    def read_child(
        child_id: uuid.UUID,
        who: CaseReader,
        engine: EngineDep,
        reason: Annotated[str, Query(min_length=3, max_length=500)],
    ) -> ChildOut:
        with Session(engine, expire_on_commit=False) as session:
            child = session.get(TrackingChild, str(child_id))
            if child is None or child.la_code != who.la_code:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such child")
            case = session.exec(select(TrackingCase).where(TrackingCase.child_id == child.child_id)).first()
            rows = session.exec(
                select(TrackingTimelineEntry)
                .where(TrackingTimelineEntry.child_id == child.child_id)
                .order_by(col(TrackingTimelineEntry.occurred_at), col(TrackingTimelineEntry.id))
            ).all()
            identifiers = session.exec(
                select(TrackingIdentifier)
                .where(
                    TrackingIdentifier.child_id == child.child_id, TrackingIdentifier.la_code == who.la_code
                )
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
            _audit(session, who, "read_child", child.child_id, reason)
            session.commit()
            return ChildOut(
                child_id=child.child_id,
                forename=child.forename,
                surname=child.surname,
                date_of_birth=child.date_of_birth,
                sex=child.sex,
                identifiers=[IdentifierOut(kind=i.kind, value=i.value) for i in identifiers],
                case=_case_out(case) if case else None,
                timeline=[TimelineOut.model_validate(r.model_dump()) for r in rows],
                cross_la=[_cross_la_out(link, who.la_code, cross) for link in links],
            )

    @router.get("/cases/{case_id}")
    def read_case(
        case_id: uuid.UUID,
        who: CaseReader,
        engine: EngineDep,
        reason: Annotated[str, Query(min_length=3, max_length=500)],
    ) -> ChildOut:
        """The child's record by case id (the id alert messages link to); audited like read_child."""
        with Session(engine) as session:
            case = session.get(TrackingCase, str(case_id))
            if case is None or case.la_code != who.la_code:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
            child_id = uuid.UUID(case.child_id)
        return read_child(child_id, who, engine, reason)

    @router.get("/reports/history")
    def case_history(
        who: CaseReader, engine: EngineDep, reason: Annotated[str, Query(min_length=3, max_length=500)]
    ) -> list[HistoryOut]:
        """Every case of the LA with its states over event time (replayed from the timeline) and the
        provision/exclusion codes its facts carried: reports compute "as of a date" from this."""
        with Session(engine, expire_on_commit=False) as session:
            cases = session.exec(
                select(TrackingCase).where(
                    TrackingCase.la_code == who.la_code, col(TrackingCase.merged_into).is_(None)
                )
            ).all()
            children = {
                c.child_id: c
                for c in session.exec(select(TrackingChild).where(TrackingChild.la_code == who.la_code)).all()
            }
            upns: dict[str, str] = {}
            for child_id, value in session.exec(
                select(TrackingIdentifier.child_id, TrackingIdentifier.value).where(
                    TrackingIdentifier.la_code == who.la_code, TrackingIdentifier.kind == "upn"
                )
            ).all():
                upns.setdefault(child_id, value)
            rows: dict[str, list[TrackingTimelineEntry]] = {}
            for row in session.exec(
                select(TrackingTimelineEntry).where(TrackingTimelineEntry.la_code == who.la_code)
            ).all():
                rows.setdefault(row.child_id, []).append(row)
            out: list[HistoryOut] = []
            for case in cases:
                child = children.get(case.child_id)
                flags = [Vulnerability(v) for v in case.vulnerabilities.split(",") if v]
                timeline = rows.get(case.child_id, [])
                out.append(
                    HistoryOut(
                        child_id=case.child_id,
                        case_id=case.case_id,
                        upn=upns.get(case.child_id),
                        date_of_birth=child.date_of_birth if child else None,
                        sex=child.sex if child else None,
                        vulnerabilities=[str(f) for f in flags],
                        state=case.state,
                        spells=[SpellOut(**vars(s)) for s in spells(timeline, flags)],
                        details=[
                            DetailOut(occurred_at=r.occurred_at, event_kind=r.event_kind, codes=codes)
                            for r in sorted(timeline, key=lambda r: (r.occurred_at, r.event_id))
                            if (codes := provision_codes(r.note))
                            or (r.event_kind or "").endswith("permanently-excluded")
                        ],
                    )
                )
            _audit(session, who, "report_history", None, reason)
            session.commit()
            return out

    @router.get("/cases")
    def cases_by_state(
        who: CaseReader, engine: EngineDep, state: CaseState, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> list[CaseOut]:
        with Session(engine, expire_on_commit=False) as session:
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
            return [_case_out(r) for r in rows]

    @router.post("/cases/query")
    def query_cases(body: CaseQuery, who: CaseReader, engine: EngineDep) -> CasePage:
        """A page of the LA's cases with the child's name, latest school and state spells: the web's work
        queues (filters by ids, which the web keeps for ownership, and by the case's own fields). Audited."""
        where: list[Any] = [TrackingCase.la_code == who.la_code, col(TrackingCase.merged_into).is_(None)]
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
                        TrackingTimelineEntry.la_code == who.la_code,
                        TrackingTimelineEntry.school_urn == body.school_urn,
                    )
                )
            )
        joined = select(TrackingCase, TrackingChild).join(
            TrackingChild, col(TrackingChild.child_id) == col(TrackingCase.child_id)
        )
        with Session(engine, expire_on_commit=False) as session:
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
            items = []
            for case, child in page:
                timeline = sorted(rows.get(case.child_id, []), key=lambda r: (r.occurred_at, r.event_id))
                flags = [Vulnerability(v) for v in case.vulnerabilities.split(",") if v]
                case_spells = spells(timeline, flags)
                opened = _opened_at(case_spells)
                items.append(
                    CaseSummaryOut(
                        case=_case_out(case),
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
                )
            _audit(session, who, "case_list", None, body.reason)
            session.commit()
        return CasePage(total=total, items=items)

    @router.post("/children/search")
    def search(body: SearchIn, who: CaseReader, engine: EngineDep) -> list[CaseOut]:
        """By UPN, or by surname and date of birth; personal data only in the body, never in the URL."""
        with Session(engine, expire_on_commit=False) as session:
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
                raise HTTPException(422, [{**problem, "type": "value_error"}])
            survivors = sorted({IdentityResolver.surviving(session, i) for i in ids})
            rows = session.exec(
                select(TrackingCase).where(
                    col(TrackingCase.child_id).in_(survivors), TrackingCase.la_code == who.la_code
                )
            ).all()
            _audit(session, who, "search", None, body.reason)
            session.commit()
            return [_case_out(r) for r in rows]

    @router.get("/review-items")
    def review_items(
        who: CaseReader,
        engine: EngineDep,
        status_: Annotated[str, Query(alias="status")] = "open",
    ) -> list[dict[str, Any]]:
        with Session(engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(TrackingReviewItem)
                .where(TrackingReviewItem.la_code == who.la_code, TrackingReviewItem.status == status_)
                .order_by(col(TrackingReviewItem.created_at))
            ).all()
            return [r.model_dump(mode="json") for r in rows]

    @router.post("/review-items/{review_id}/decision")
    def decide(review_id: uuid.UUID, body: Decision, who: CaseReader, engine: EngineDep) -> dict[str, Any]:
        """A person's decision on a possible duplicate: link publishes ChildMerged; not_link closes the
        item."""
        with Session(engine, expire_on_commit=False) as session:
            item = session.get(TrackingReviewItem, str(review_id))
            if item is None or item.la_code != who.la_code:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
            if item.status != "open":
                raise HTTPException(status.HTTP_409_CONFLICT, f"already decided: {item.status}")
            if (item.kind == crossla.REVIEW_KIND) != (body.decision in ("confirm", "reject")):
                raise HTTPException(
                    422,
                    "a cross-LA match is confirmed or rejected; other items are linked or not linked",
                )
            if item.kind == crossla.REVIEW_KIND:
                link = session.exec(
                    select(TrackingCrossLALink).where(
                        (col(TrackingCrossLALink.sought_review_id) == item.review_id)
                        | (col(TrackingCrossLALink.found_review_id) == item.review_id)
                    )
                ).first()
                if link is None or link.status != "open":
                    raise HTTPException(status.HTTP_409_CONFLICT, "the match was decided already")
                closing = cross.closing_fact(session, link, who.sub) if body.decision == "confirm" else None
                crossla.decide(session, link, body.decision, who.la_code, who.sub, body.reason)
                if link.peer is not None and cross.federation is not None:
                    # The other LA is on another deployment: it learns the decision by a signed message.
                    cross.federation.send_decision(session, link, body.decision, who.la_code)
                _audit(session, who, f"review_{body.decision}", item.child_id, body.reason)
                if closing is not None:
                    publish(session, closing)  # in the decision's transaction (outbox), as for a merge
                session.commit()
                return {"review_id": str(review_id), "status": link.status}
            merged: ChildMerged | None = None
            if body.decision == "link":
                if item.other_child_id is None:
                    raise HTTPException(422, "this review item names one child: nothing to link")
                survivor, gone = _merge_pair(item)  # deterministic, either is fine
                merged = ChildMerged(
                    event_id=uuid.uuid5(review_id, "merge"),
                    occurred_at=utcnow(),
                    source=Source(system="cme-tracking", la_code=who.la_code),
                    payload=ChildMergedPayload(
                        surviving_child_id=uuid.UUID(survivor),
                        merged_child_id=uuid.UUID(gone),
                        la_code=who.la_code,
                        decided_by=who.sub,
                        review_item_id=review_id,
                    ),
                )
                child = session.get(TrackingChild, gone)
                if child is not None:
                    child.merged_into = (
                        survivor  # new facts for either child's identifiers now resolve to one
                    )
                    session.add(child)
            item.status = "linked" if merged else "not_linked"
            item.decided_by, item.decided_at = who.sub, utcnow()
            session.add(item)
            _audit(session, who, f"review_{body.decision}", item.child_id, body.reason)
            if merged is not None:
                # Queued in the decision's transaction: the decision and its event are committed together or
                # not at all (the event id is derived from the review item: a republish is deduplicated).
                publish(session, merged)
            session.commit()
        return {"review_id": str(review_id), "status": "linked" if merged else "not_linked"}

    @router.get("/cross-la/status")
    def cross_la_status(who: CaseReader) -> dict[str, Any]:
        """Whether cross-LA matching is on for the caller's LA (CME_TRACKING_CROSS_LA_OFF): what the review
        page tells its caseworkers. Names no child."""
        return {"la_code": who.la_code, "matching_enabled": cross.enabled(who.la_code)}

    @router.get("/reports/cross-la")
    def cross_la_report(
        who: CaseReader, engine: EngineDep, reason: Annotated[str, Query(min_length=3, max_length=500)]
    ) -> CrossLAReport:
        """Counts of this LA's children found in other LAs and of other LAs' children found here, and the
        days from missing to found (event time) of those confirmed. No child is named. Audited."""
        with Session(engine, expire_on_commit=False) as session:
            links = session.exec(
                select(TrackingCrossLALink).where(
                    (col(TrackingCrossLALink.sought_la_code) == who.la_code)
                    | (col(TrackingCrossLALink.found_la_code) == who.la_code)
                )
            ).all()
            found, sought_by = CrossLACounts(), CrossLACounts()
            days: list[int] = []
            for link in links:
                counts = found if link.sought_la_code == who.la_code else sought_by
                setattr(counts, link.status, getattr(counts, link.status) + 1)
                if counts is found and link.status == "confirmed" and link.missing_since is not None:
                    days.append((link.fact_occurred_at - link.missing_since).days)
            _audit(session, who, "report_cross_la", None, reason)
            session.commit()
        days.sort()
        middle = len(days) // 2
        median = (
            None
            if not days
            else float(days[middle])
            if len(days) % 2
            else (days[middle - 1] + days[middle]) / 2
        )
        return CrossLAReport(
            la_code=who.la_code,
            matching_enabled=cross.enabled(who.la_code),
            found_elsewhere=found,
            sought_by_others=sought_by,
            days_missing_to_found=days,
            median_days_missing_to_found=median,
        )

    @router.post("/review-items/{review_id}/undo")
    def undo_link(review_id: uuid.UUID, body: Undo, who: CaseReader, engine: EngineDep) -> dict[str, Any]:
        """Undo a person's link of two children: publishes ChildSplit, which gives the merged child back its
        facts and re-folds both cases. New facts with the merged child's identifiers resolve to it again."""
        with Session(engine, expire_on_commit=False) as session:
            item = session.get(TrackingReviewItem, str(review_id))
            if item is None or item.la_code != who.la_code:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
            if item.status != "linked":
                raise HTTPException(
                    status.HTTP_409_CONFLICT, f"only a linked item can be undone: {item.status}"
                )
            survivor, gone = _merge_pair(item)
            surviving_child = session.get(TrackingChild, survivor)
            if surviving_child is not None and surviving_child.merged_into is not None:
                # Its facts now sit with a third child: undo that later merge first.
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    "the surviving child was merged again since: undo that merge first",
                )
            split = ChildSplit(
                event_id=uuid.uuid5(review_id, "split"),
                occurred_at=utcnow(),
                source=Source(system="cme-tracking", la_code=who.la_code),
                payload=ChildSplitPayload(
                    child_id=uuid.UUID(survivor),
                    new_child_id=uuid.UUID(gone),
                    la_code=who.la_code,
                    moved_event_ids=_facts_of(session, who.la_code, gone),
                    decided_by=who.sub,
                ),
            )
            merged_child = session.get(TrackingChild, gone)
            if merged_child is not None:
                merged_child.merged_into = None  # its identifiers name it again
                session.add(merged_child)
            item.status = "split"
            item.decided_by, item.decided_at = who.sub, utcnow()
            session.add(item)
            _audit(session, who, "review_undo_link", item.child_id, body.reason)
            publish(session, split)  # in the decision's transaction (outbox), as for the link
            session.commit()
        return {
            "review_id": str(review_id),
            "status": "split",
            "moved_facts": len(split.payload.moved_event_ids),
        }

    return router
