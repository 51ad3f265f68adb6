"""Found anywhere: a child sought by one LA (an open case) who is named by a fact in another LA of this
deployment.

Identity is resolved per LA (``identity``); after a batch is resolved, in the same transaction, each fact is
looked up in the other LAs: by its strong identifiers (UPN or former UPN, ULN, NHS number: exact), or, for a
fact that made a new child and named no identifier known elsewhere, by names, date of birth and sex (scored,
``matching.score`` >= REVIEW_THRESHOLD; never linked without a person). A match against a child whose case in
another LA is open as missing education, whereabouts unknown, transfer pending or handed over (not to this
LA: the handover's own confirmation closes that) makes one ``TrackingCrossLALink`` and a review item for each
LA (kind ``cross_la_match``): the sought LA reads "possible location: LA B" with the fact's type and date, the
found LA reads "sought by LA A" with the state and since when; each with the other LA's contact, the match
kind, and for a scored match the score and the names of the fields that agreed. Nothing else crosses: neither
LA reads the other's child, case or timeline. Each disclosure is written to both LAs' audit with its legal
basis. A person in either LA confirms (the sought LA's case closes with outcome other_la_accepted naming the
found LA, through the case logic like any fact) or rejects (both keep their own records; the pair is not
raised again). An LA in ``CME_TRACKING_CROSS_LA_OFF`` takes no part either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session, col, select

from services.tracking.matching import REVIEW_THRESHOLD, Person, fields_agreed, score
from services.tracking.models import (
    TrackingCase,
    TrackingChild,
    TrackingCrossLALink,
    TrackingIdentifier,
    TrackingReadAudit,
    TrackingResolution,
    TrackingReviewItem,
)
from shared.events.envelope import Source, utcnow
from shared.events.inbound import CaseOutcomeRecorded, CaseOutcomeRecordedPayload, ChildIdentity
from shared.events.internal import CaseState, ChildFact, ChildFactPayload, MatchKind
from shared.events.vocab import CaseOutcome
from shared.logs import get_logger

log = get_logger(__name__)
NAMESPACE = uuid.UUID("5d0f3b8e-2a61-4c1e-9a0b-7c1e18a0c418")
REVIEW_KIND = "cross_la_match"
# What the law allows to cross: the minimum needed to find the child (that a match exists, the fact's type
# and date, the other LA's contact), for safeguarding and the CME duty.
LEGAL_BASIS = (
    "DPA 2018 Sch. 1 para 18 (safeguarding of children); Education Act 1996 s.436A (duty to identify "
    "children missing education)"
)
# The open cases another LA's fact may be the answer to.
SOUGHT_STATES = frozenset(
    {
        CaseState.MISSING_EDUCATION,
        CaseState.WHEREABOUTS_UNKNOWN,
        CaseState.TRANSFER_PENDING,
        CaseState.HANDED_OVER,
    }
)
CROSS_KINDS = ("upn", "uln", "nhs_number")  # an LA's own child id means nothing in another LA


def link_id_for(sought_child_id: str, found_child_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"link:{sought_child_id}:{found_child_id}"))


def review_id_for(link_id: str, la_code: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"review:{link_id}:{la_code}"))


@dataclass(frozen=True)
class Named:
    """A resolved fact, as cross-LA matching needs it."""

    event_id: str
    event_type: str
    occurred_at: datetime
    la_code: str
    child_id: str
    created: bool  # identity made a new child for it (no match in its own LA)
    ids: Sequence[tuple[str, str]]
    person: Person


@dataclass(frozen=True)
class _Candidate:
    child_id: str
    la_code: str
    match: MatchKind
    identifier_kind: str | None
    score: float | None
    agreed: tuple[str, ...]


class CrossLAMatcher:
    def __init__(self, off: Iterable[str] = (), contacts: dict[str, str] | None = None) -> None:
        self.off = frozenset(off)
        self.contacts = dict(contacts or {})

    def enabled(self, la_code: str) -> bool:
        return la_code not in self.off

    def contact(self, la_code: str) -> str:
        return self.contacts.get(la_code) or f"the CME team of LA {la_code}"

    def match(self, session: Session, named: Sequence[Named]) -> list[TrackingCrossLALink]:
        """Find, link and record (in ``session``, uncommitted) the cross-LA matches of a resolved batch."""
        made: list[TrackingCrossLALink] = []
        seen: set[str] = set()
        for fact in named:
            if not self.enabled(fact.la_code):
                continue
            for candidate in self._candidates(session, fact):
                link_id = link_id_for(candidate.child_id, fact.child_id)
                if link_id in seen or session.get(TrackingCrossLALink, link_id) is not None:
                    continue  # raised before (open, confirmed or rejected): not again
                seen.add(link_id)
                link = self._link(session, fact, candidate, link_id)
                if link is not None:
                    made.append(link)
        return made

    def _candidates(self, session: Session, fact: Named) -> list[_Candidate]:
        ids = [(k, v) for k, v in fact.ids if k in CROSS_KINDS]
        found: dict[str, _Candidate] = {}
        if ids:
            rows = session.exec(
                select(
                    TrackingIdentifier.child_id,
                    TrackingIdentifier.la_code,
                    TrackingIdentifier.kind,
                    TrackingIdentifier.value,
                ).where(
                    col(TrackingIdentifier.la_code) != fact.la_code,
                    col(TrackingIdentifier.kind).in_({k for k, _ in ids}),
                    col(TrackingIdentifier.value).in_({v for _, v in ids}),
                )
            ).all()
            wanted = set(ids)
            for child_id, la_code, kind, value in sorted(rows):
                if (kind, value) not in wanted or not self.enabled(la_code):
                    continue
                survivor = _surviving(session, child_id)
                found.setdefault(survivor, _Candidate(survivor, la_code, MatchKind.EXACT, kind, None, ()))
        if not found and fact.created and fact.person.surname and fact.person.date_of_birth:
            for candidate in self._scored(session, fact):
                found.setdefault(candidate.child_id, candidate)
        return [c for c in found.values() if self._sought(session, c.child_id, fact.la_code) is not None]

    def _scored(self, session: Session, fact: Named) -> list[_Candidate]:
        dob = fact.person.date_of_birth
        assert dob is not None
        dates = {dob, dob - timedelta(days=1), dob + timedelta(days=1)}
        if dob.day <= 12:
            dates.add(date(dob.year, dob.day, dob.month))  # day and month transposed
        rows = session.exec(
            select(TrackingChild).where(
                col(TrackingChild.date_of_birth).in_(dates),
                col(TrackingChild.la_code) != fact.la_code,
                col(TrackingChild.merged_into).is_(None),
            )
        ).all()
        out: list[_Candidate] = []
        for row in rows:
            if not self.enabled(row.la_code):
                continue
            upns = frozenset(
                session.exec(
                    select(TrackingIdentifier.value).where(
                        TrackingIdentifier.child_id == row.child_id, TrackingIdentifier.kind == "upn"
                    )
                ).all()
            )
            other = Person(row.forename, row.surname, row.date_of_birth, row.sex, row.postcode, upns)
            value = score(fact.person, other)
            if value >= REVIEW_THRESHOLD:
                agreed = tuple(fields_agreed(fact.person, other))
                out.append(_Candidate(row.child_id, row.la_code, MatchKind.SCORED, None, value, agreed))
        return out

    @staticmethod
    def _sought(session: Session, child_id: str, found_la: str) -> TrackingCase | None:
        case = session.exec(select(TrackingCase).where(TrackingCase.child_id == child_id)).first()
        if case is None or case.merged_into is not None or case.state not in SOUGHT_STATES:
            return None
        if case.state == CaseState.HANDED_OVER and case.destination_la_code == found_la:
            return None  # handed over to that very LA: its confirmation closes the case already
        return case

    def _link(
        self, session: Session, fact: Named, candidate: _Candidate, link_id: str
    ) -> TrackingCrossLALink | None:
        case = self._sought(session, candidate.child_id, fact.la_code)
        if case is None:
            return None
        sought_la, found_la = candidate.la_code, fact.la_code
        link = TrackingCrossLALink(
            link_id=link_id,
            sought_la_code=sought_la,
            sought_child_id=candidate.child_id,
            sought_state=str(case.state),
            missing_since=case.cause_occurred_at,
            found_la_code=found_la,
            found_child_id=fact.child_id,
            event_id=fact.event_id,
            fact_type=fact.event_type,
            fact_occurred_at=fact.occurred_at,
            match=str(candidate.match),
            identifier_kind=candidate.identifier_kind,
            score=candidate.score,
            fields_agreed=",".join(candidate.agreed),
            sought_review_id=review_id_for(link_id, sought_la),
            found_review_id=review_id_for(link_id, found_la),
        )
        how = (
            f"exact on {candidate.identifier_kind}"
            if candidate.match == MatchKind.EXACT
            else f"scored {candidate.score}, agreed: {','.join(candidate.agreed) or 'none'}"
        )
        fact_day = fact.occurred_at.date().isoformat()
        since = case.cause_occurred_at.date().isoformat() if case.cause_occurred_at else "unknown"
        session.add(link)
        session.add(
            TrackingReviewItem(
                review_id=link.sought_review_id,
                la_code=sought_la,
                kind=REVIEW_KIND,
                child_id=candidate.child_id,
                event_id=fact.event_id,
                score=candidate.score,
                detail=_cut(f"possible location: LA {found_la} ({fact.event_type} {fact_day}); {how}"),
            )
        )
        session.add(
            TrackingReviewItem(
                review_id=link.found_review_id,
                la_code=found_la,
                kind=REVIEW_KIND,
                child_id=fact.child_id,
                event_id=fact.event_id,
                score=candidate.score,
                detail=_cut(f"sought by LA {sought_la} ({case.state} since {since}); {how}"),
            )
        )
        told_found = f"that LA {sought_la} seeks the child ({case.state} since {since}), its contact"
        told_sought = f"that the child may be in LA {found_la} ({fact.event_type} {fact_day}), its contact"
        _audit_both(
            session,
            link,
            "cross_la_match",
            f"told LA {found_la} {told_found}; told LA {sought_la} {told_sought}; {how}",
        )
        log.info(
            "cross_la_match",
            link_id=link_id,
            sought_la_code=sought_la,
            found_la_code=found_la,
            match=str(candidate.match),
            event_type=fact.event_type,
        )
        return link

    def closing_fact(self, session: Session, link: TrackingCrossLALink, decided_by: str) -> ChildFact | None:
        """The fact a confirmation sends to the sought LA's case: outcome other_la_accepted naming the found
        LA, recorded now by the person (its event id derived from the link: a retry sends the same fact).
        None if that case is closed already (nothing to close)."""
        case = session.exec(select(TrackingCase).where(TrackingCase.child_id == link.sought_child_id)).first()
        if case is None or case.state not in SOUGHT_STATES:
            return None
        now = utcnow()
        event_id = uuid.uuid5(uuid.UUID(link.link_id), "confirm")
        identity = _identity(session, link.sought_child_id)
        if identity is None:
            return None
        inbound = CaseOutcomeRecorded(
            event_id=event_id,
            occurred_at=now,
            source=Source(system="cme-tracking", la_code=link.sought_la_code),
            payload=CaseOutcomeRecordedPayload(
                child=identity,
                outcome=CaseOutcome.OTHER_LA,
                recorded_on=now.date(),
                la_code=link.found_la_code,
            ),
        )
        if session.get(TrackingResolution, str(event_id)) is None:
            # Resolved to the sought child like any fact (an undo of a merge moves it with the child).
            session.add(
                TrackingResolution(
                    event_id=str(event_id),
                    child_id=link.sought_child_id,
                    la_code=link.sought_la_code,
                    match=str(MatchKind.EXACT),
                    matched_child_id=link.sought_child_id,
                )
            )
        return ChildFact(
            event_id=event_id,
            occurred_at=now,
            source=Source(system="cme-tracking", la_code=link.sought_la_code),
            correlation_id=uuid.UUID(link.link_id),
            payload=ChildFactPayload(
                child_id=uuid.UUID(link.sought_child_id),
                la_code=link.sought_la_code,
                match=MatchKind.EXACT,
                match_score=None,
                fact=inbound.model_dump(mode="json"),
            ),
        )


def decide(
    session: Session, link: TrackingCrossLALink, decision: str, la_code: str, subject: str, reason: str
) -> None:
    """Record a person's confirmation or rejection on the link and both LAs' review items, audited in both
    LAs (the decision itself is told to the other LA)."""
    now = utcnow()
    link.status = "confirmed" if decision == "confirm" else "rejected"
    link.decided_by, link.decided_la_code, link.decided_at = subject, la_code, now
    session.add(link)
    for review_id in (link.sought_review_id, link.found_review_id):
        item = session.get(TrackingReviewItem, review_id)
        if item is not None:
            item.status = link.status
            item.decided_by, item.decided_at = subject, now
            session.add(item)
    _audit_both(
        session,
        link,
        f"cross_la_{decision}",
        f"LA {la_code} {link.status} the match of LA {link.sought_la_code}'s sought child with LA "
        f"{link.found_la_code}'s record; reason given: {reason}",
        subject=subject,
    )


def _audit_both(
    session: Session, link: TrackingCrossLALink, action: str, what: str, subject: str = "cme-tracking"
) -> None:
    """One audit row in each LA: what crossed, between whom, on which legal basis."""
    for la_code, child_id in (
        (link.sought_la_code, link.sought_child_id),
        (link.found_la_code, link.found_child_id),
    ):
        session.add(
            TrackingReadAudit(
                subject=subject,
                role="system" if subject == "cme-tracking" else "caseworker",
                la_code=la_code,
                action=action,
                child_id=child_id,
                reason=_cut(f"{what}. Legal basis: {LEGAL_BASIS}", 500),
            )
        )


def _identity(session: Session, child_id: str) -> ChildIdentity | None:
    """What names the sought child in its own LA (a strong identifier, else surname and date of birth)."""
    ids = dict(
        session.exec(
            select(TrackingIdentifier.kind, TrackingIdentifier.value)
            .where(TrackingIdentifier.child_id == child_id)
            .order_by(col(TrackingIdentifier.id))
        ).all()
    )
    if ids:
        return ChildIdentity(
            upn=ids.get("upn"),
            uln=ids.get("uln"),
            nhs_number=ids.get("nhs_number"),
            la_child_id=ids.get("la_child_id"),
        )
    child = session.get(TrackingChild, child_id)
    if child is None or not child.surname or child.date_of_birth is None:
        return None
    return ChildIdentity(surname=child.surname, date_of_birth=child.date_of_birth)


def _surviving(session: Session, child_id: str) -> str:
    seen: set[str] = set()
    while child_id not in seen:
        seen.add(child_id)
        row = session.get(TrackingChild, child_id)
        if row is None or row.merged_into is None:
            return child_id
        child_id = row.merged_into
    return child_id


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
