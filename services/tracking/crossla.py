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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.tracking.matching import REVIEW_THRESHOLD, Person, fields_agreed, score
from services.tracking.metrics import CROSS_LA_MATCHES
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
from shared.events.envelope import Source, utcnow
from shared.events.inbound import CaseOutcomeRecorded, CaseOutcomeRecordedPayload, ChildIdentity
from shared.events.internal import CaseState, ChildFact, ChildFactPayload, MatchKind
from shared.events.vocab import CaseOutcome
from shared.logs import get_logger
from shared.sql import any_of

if TYPE_CHECKING:
    from services.tracking.peers import Federation

log = get_logger(__name__)
T = TypeVar("T")
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


def retrying_link_races(engine: Engine, work: Callable[[Session], T], attempts: int = 3) -> T:
    """``work`` in one transaction, again in a new one when it loses a race on a link: a link made at the
    same moment by identity or another worker (the same deterministic id) is seen on the next attempt."""
    for attempt in range(1, attempts + 1):
        try:
            with Session(engine, expire_on_commit=False) as session:
                result = work(session)
                session.commit()
                return result
        except IntegrityError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


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
        # Other deployments (``peers``): set by ``peers.matcher_for``; None: this deployment alone.
        self.federation: Federation | None = None

    def enabled(self, la_code: str) -> bool:
        return la_code not in self.off

    def contact(self, la_code: str) -> str:
        return self.contacts.get(la_code) or f"the CME team of LA {la_code}"

    def match(self, session: Session, named: Sequence[Named]) -> list[TrackingCrossLALink]:
        """Find, link and record (in ``session``, uncommitted) the cross-LA matches of a resolved batch: a few
        queries for the whole batch (identifiers known elsewhere; other LAs' sought children born on the
        batch's dates; the candidates' cases; the links made before), then each fact in order."""
        facts = [f for f in named if self.enabled(f.la_code)]
        if not facts:
            return []
        if self.federation is not None:
            self.federation.on_facts(session, facts)  # peers' standing queries, and the hashes they ask by
        found = self._exact(session, facts)
        scored_for = [
            f
            for f in facts
            if not found.get(f.event_id) and f.created and f.person.surname and f.person.date_of_birth
        ]
        for event_id, candidates in self._scored(session, scored_for).items():
            found.setdefault(event_id, []).extend(candidates)
        wanted = {c.child_id for candidates in found.values() for c in candidates}
        if not wanted:
            return []
        cases = _cases_of(session, wanted)
        seen = _links_made(
            session, {link_id_for(c.child_id, f.child_id) for f in facts for c in found.get(f.event_id, [])}
        )
        made: list[TrackingCrossLALink] = []
        for fact in facts:
            for candidate in found.get(fact.event_id, []):
                link_id = link_id_for(candidate.child_id, fact.child_id)
                case = cases.get(candidate.child_id)
                if link_id in seen or case is None or not _sought(case, fact.la_code):
                    continue
                seen.add(link_id)
                made.append(self._link(session, fact, candidate, case, link_id))
                CROSS_LA_MATCHES.labels(str(candidate.match), "found_by_fact").inc()
        return made

    def _exact(self, session: Session, facts: Sequence[Named]) -> dict[str, list[_Candidate]]:
        """Per fact, the children of other LAs its strong identifiers name (one query for the batch)."""
        ids = {(k, v) for f in facts for k, v in f.ids if k in CROSS_KINDS}
        if not ids:
            return {}
        rows = session.exec(
            select(
                TrackingIdentifier.child_id,
                TrackingIdentifier.la_code,
                TrackingIdentifier.kind,
                TrackingIdentifier.value,
            ).where(
                any_of(session, col(TrackingIdentifier.value), {v for _, v in ids}),
                any_of(session, col(TrackingIdentifier.kind), {k for k, _ in ids}),
            )
        ).all()
        by_id: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for child_id, la_code, kind, value in sorted(rows):
            if (kind, value) in ids and self.enabled(la_code):
                by_id.setdefault((kind, value), []).append((la_code, child_id))
        survivors = _survivors(session, {c for named in by_id.values() for _, c in named})
        out: dict[str, list[_Candidate]] = {}
        for fact in facts:
            chosen: dict[str, _Candidate] = {}
            for kind, value in fact.ids:
                for la_code, child_id in by_id.get((kind, value), []):
                    if la_code != fact.la_code:
                        survivor = survivors[child_id]
                        chosen.setdefault(
                            survivor, _Candidate(survivor, la_code, MatchKind.EXACT, kind, None, ())
                        )
            if chosen:
                out[fact.event_id] = list(chosen.values())
        return out

    def _scored(self, session: Session, facts: Sequence[Named]) -> dict[str, list[_Candidate]]:
        """Per fact, the sought children of other LAs whose details score REVIEW_THRESHOLD or more. Only
        children with a case in a sought state are read: one query for the batch, one for their UPNs."""
        dates = {f.event_id: _near(f.person.date_of_birth) for f in facts}
        every = {d for near in dates.values() for d in near}
        if not every:
            return {}
        rows = [
            row
            for row in session.exec(
                select(TrackingChild)
                .join(TrackingCase, col(TrackingCase.child_id) == col(TrackingChild.child_id))
                .where(
                    any_of(session, col(TrackingChild.date_of_birth), every),
                    col(TrackingChild.merged_into).is_(None),
                    any_of(session, col(TrackingCase.state), [str(s) for s in SOUGHT_STATES]),
                )
            ).all()
            if self.enabled(row.la_code)
        ]
        upns: dict[str, set[str]] = {}
        if rows:
            for child_id, upn in session.exec(
                select(TrackingIdentifier.child_id, TrackingIdentifier.value).where(
                    any_of(session, col(TrackingIdentifier.child_id), {r.child_id for r in rows}),
                    TrackingIdentifier.kind == "upn",
                )
            ).all():
                upns.setdefault(child_id, set()).add(upn)
        out: dict[str, list[_Candidate]] = {}
        for fact in facts:
            for row in rows:
                if row.la_code == fact.la_code or row.date_of_birth not in dates[fact.event_id]:
                    continue
                other = Person(
                    row.forename,
                    row.surname,
                    row.date_of_birth,
                    row.sex,
                    row.postcode,
                    frozenset(upns.get(row.child_id, ())),
                )
                value = score(fact.person, other)
                if value >= REVIEW_THRESHOLD:
                    agreed = tuple(fields_agreed(fact.person, other))
                    out.setdefault(fact.event_id, []).append(
                        _Candidate(row.child_id, row.la_code, MatchKind.SCORED, None, value, agreed)
                    )
        return out

    def match_sought(self, engine: Engine, sought: Sequence[tuple[str, str]], attempts: int = 3) -> int:
        """The other direction: cases that just became sought ((child_id, la_code), after the case agent
        projected them) whose child another LA already knows by a strong identifier, with a case there that
        is not itself sought (the other LA has the child). ``after_projection`` in a transaction of its own;
        returns the links made."""
        return self._in_transaction(engine, sought, (), attempts)

    def match_found(self, engine: Engine, found: Sequence[tuple[str, str]], attempts: int = 3) -> int:
        """The race between the two: cases just projected into a state that is not sought ((child_id,
        la_code)) whose child another LA seeks. ``after_projection`` in a transaction of its own; returns
        the links made."""
        return self._in_transaction(engine, (), found, attempts)

    def _in_transaction(
        self,
        engine: Engine,
        sought: Sequence[tuple[str, str]],
        found: Sequence[tuple[str, str]],
        attempts: int,
    ) -> int:
        return retrying_link_races(
            engine, lambda session: self.after_projection(session, sought, found), attempts
        )

    def after_projection(
        self, session: Session, sought: Sequence[tuple[str, str]], found: Sequence[tuple[str, str]]
    ) -> int:
        """Both checks the case agent makes after projecting a batch, in the caller's transaction, with one
        set of queries for the batch (identifiers, the children other LAs know by them, their cases, their
        latest facts, the links raised before). Returns the links made.

        - ``sought``: cases that have just become sought ((child_id, la_code)). The child may be one another
          LA already has (by a strong identifier, with a case there that is not itself sought: registered at
          a school, at risk, in provision); the other LA's latest fact is the "found" fact.
        - ``found``: cases just projected into a state that is not sought. Identity matched another LA's fact
          only if the sought case was already in the case store, and the check above matches only a child
          whose case here already was: when both cases were projected in the other order, neither saw the
          other. This LA's latest fact is the "found" fact.

        Exact matches only (strong identifiers)."""
        sought_pairs = sorted({(c, la) for c, la in sought if self.enabled(la)})
        found_pairs = sorted({(c, la) for c, la in found if self.enabled(la)})
        if not sought_pairs and not found_pairs:
            return 0
        ids = _identifiers_of(session, {c for c, _ in [*sought_pairs, *found_pairs]})
        if self.federation is not None:
            if sought_pairs:
                self.federation.on_sought(session, sought_pairs, ids)
            if found_pairs:
                self.federation.on_found(session, found_pairs)  # peers' standing queries it now answers
        # Keyed by child id: a child in both lists (two transitions in the batch) is looked up once.
        candidates = self._exact(session, _named([*sought_pairs, *found_pairs], ids))
        if not candidates:  # most children have no namesake in another LA
            return 0
        sought_here = [(c, la) for c, la in sought_pairs if c in candidates]
        found_here = [(c, la) for c, la in found_pairs if c in candidates]
        others = {o.child_id for c, _ in [*sought_here, *found_here] for o in candidates[c]}
        cases = _cases_of(session, others | {c for c, _ in sought_here})
        latest = latest_entries(
            session, {o.child_id for c, _ in sought_here for o in candidates[c]} | {c for c, _ in found_here}
        )
        seen = _links_made(
            session,
            {link_id_for(c, o.child_id) for c, _ in sought_here for o in candidates[c]}
            | {link_id_for(o.child_id, c) for c, _ in found_here for o in candidates[c]},
        )
        made = 0
        for child_id, la_code in sought_here:
            case = cases.get(child_id)
            for other in candidates[child_id]:
                there = cases.get(other.child_id)
                entry = latest.get(other.child_id)
                link_id = link_id_for(child_id, other.child_id)
                if (
                    case is None
                    or not _sought(case, other.la_code)
                    or there is None
                    or there.state in SOUGHT_STATES
                    or entry is None
                    or link_id in seen
                ):
                    continue
                seen.add(link_id)
                sought_side = _Candidate(child_id, la_code, MatchKind.EXACT, other.identifier_kind, None, ())
                self._link(session, _found_fact(entry, other.la_code), sought_side, case, link_id)
                CROSS_LA_MATCHES.labels(str(MatchKind.EXACT), "case_became_sought").inc()
                made += 1
        for child_id, la_code in found_here:
            entry = latest.get(child_id)
            for other in candidates[child_id]:
                link_id = link_id_for(other.child_id, child_id)
                case = cases.get(other.child_id)
                if case is None or not _sought(case, la_code) or link_id in seen or entry is None:
                    continue
                seen.add(link_id)
                self._link(session, _found_fact(entry, la_code), other, case, link_id)
                CROSS_LA_MATCHES.labels(str(MatchKind.EXACT), "case_projected").inc()
                made += 1
        return made

    def _link(
        self, session: Session, fact: Named, candidate: _Candidate, case: TrackingCase, link_id: str
    ) -> TrackingCrossLALink:
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
    """One audit row in each LA of this deployment: what crossed, between whom, on which legal basis. (A
    link with a peer has one side here, the one with a review item; the peer audits its own.)"""
    for la_code, child_id, review_id in (
        (link.sought_la_code, link.sought_child_id, link.sought_review_id),
        (link.found_la_code, link.found_child_id, link.found_review_id),
    ):
        if not review_id:
            continue
        role = (
            "system" if subject == "cme-tracking" else "peer" if subject.startswith("peer:") else "caseworker"
        )
        session.add(
            TrackingReadAudit(
                subject=subject,
                role=role,
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


def _sought(case: TrackingCase, found_la: str) -> bool:
    """Whether the case is open in a state another LA's fact may answer."""
    if case.merged_into is not None or case.state not in SOUGHT_STATES:
        return False
    # Handed over to that very LA: the handover's own confirmation closes the case already.
    return not (case.state == CaseState.HANDED_OVER and case.destination_la_code == found_la)


def _near(dob: date | None) -> set[date]:
    """Birth dates a keying error could turn ``dob`` into: a day either side, day and month transposed."""
    if dob is None:
        return set()
    near = {dob, dob - timedelta(days=1), dob + timedelta(days=1)}
    if dob.day <= 12:
        near.add(date(dob.year, dob.day, dob.month))
    return near


def _survivors(session: Session, child_ids: set[str]) -> dict[str, str]:
    """Each child's surviving child, merges followed: one query for the batch per link of the longest chain
    (a primary-key lookup per candidate was 7.5% of the tracking worker's samples under a roll load)."""
    merged_into: dict[str, str | None] = {}
    wanted = set(child_ids)
    while wanted:
        rows = dict(
            session.exec(
                select(TrackingChild.child_id, TrackingChild.merged_into).where(
                    any_of(session, col(TrackingChild.child_id), wanted)
                )
            ).all()
        )
        merged_into.update({c: rows.get(c) for c in wanted})
        wanted = {m for m in rows.values() if m is not None and m not in merged_into}

    def follow(child_id: str) -> str:
        seen: set[str] = set()
        while child_id not in seen:  # a cycle (never written, but never followed forever either)
            seen.add(child_id)
            nxt = merged_into.get(child_id)
            if nxt is None:
                return child_id
            child_id = nxt
        return child_id

    return {c: follow(c) for c in child_ids}


def _identifiers_of(session: Session, child_ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """Each child's strong identifiers ((kind, value)) that mean the same in every LA: one query."""
    by_child: dict[str, list[tuple[str, str]]] = {}
    for child_id, kind, value in session.exec(
        select(TrackingIdentifier.child_id, TrackingIdentifier.kind, TrackingIdentifier.value).where(
            any_of(session, col(TrackingIdentifier.child_id), child_ids),
            any_of(session, col(TrackingIdentifier.kind), CROSS_KINDS),
        )
    ).all():
        by_child.setdefault(child_id, []).append((kind, value))
    return by_child


def _named(pairs: Sequence[tuple[str, str]], ids: dict[str, list[tuple[str, str]]]) -> list[Named]:
    """Cases ((child_id, la_code)) as facts to look up by their identifiers, keyed by child id (``_exact``
    answers per ``event_id``); a child without a strong identifier cannot be matched exactly: left out."""
    return [
        Named(child_id, "", utcnow(), la_code, child_id, False, ids[child_id], Person())
        for child_id, la_code in pairs
        if child_id in ids
    ]


def _cases_of(session: Session, child_ids: set[str]) -> dict[str, TrackingCase]:
    if not child_ids:
        return {}
    rows = session.exec(select(TrackingCase).where(any_of(session, col(TrackingCase.child_id), child_ids)))
    return {case.child_id: case for case in rows.all()}


def latest_entries(session: Session, child_ids: set[str]) -> dict[str, TrackingTimelineEntry]:
    """Each child's latest timeline entry (by occurred_at, then id): one query for the batch."""
    if not child_ids:
        return {}
    entry = TrackingTimelineEntry
    newest_first = (col(entry.occurred_at).desc(), col(entry.id).desc())
    ranked = (
        select(
            col(entry.id).label("id"),
            func.row_number().over(partition_by=col(entry.child_id), order_by=newest_first).label("rank"),
        )
        .where(any_of(session, col(entry.child_id), child_ids))
        .subquery()
    )
    rows = session.exec(select(entry).join(ranked, ranked.c.id == col(entry.id)).where(ranked.c.rank == 1))
    return {row.child_id: row for row in rows.all()}


def _links_made(session: Session, link_ids: set[str]) -> set[str]:
    """The links among ``link_ids`` raised before (open, confirmed or rejected): not raised again."""
    if not link_ids:
        return set()
    rows = session.exec(
        select(TrackingCrossLALink.link_id).where(any_of(session, col(TrackingCrossLALink.link_id), link_ids))
    )
    return set(rows.all())


def _found_fact(entry: TrackingTimelineEntry, la_code: str) -> Named:
    """The found side of a link made when a case is projected: the found child's latest fact."""
    return Named(
        entry.event_id, entry.event_type, entry.occurred_at, la_code, entry.child_id, False, (), Person()
    )


def _surviving(session: Session, child_id: str) -> str:
    return _survivors(session, {child_id})[child_id]


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
