"""Found anywhere between deployments: the same cross-LA match as ``crossla``, when the two LAs are on
different deployments (docs/TRACKING.md "Between deployments").

Pull with standing queries. When a case of this deployment becomes sought (``crossla.SOUGHT_STATES``) and its
child has a strong identifier, a **query** goes to each peer: the query id, the sought LA, the keyed hashes
of the child's identifiers (``peer_auth.digest``, never a value), the open state and since when, the LA's
contact. The peer keeps it (``tracking_peer_queries``) and answers at once from the hashes of the
identifiers it knows (``tracking_peer_digests``): **known** (the found LA, its latest fact's type and date,
its contact) or **not known**. A fact that names the child in the peer later answers the standing query:
the peer pushes an **answer**. Each side then makes its own half of the link (``TrackingCrossLALink`` with
``peer`` set; the other side's child is an opaque id and its review id empty) and its own review item, and
audits the disclosure in its own LA with the legal basis. A person's **decision** on either side goes to
the other; a confirmation closes the sought case with the found LA as destination (``closing_fact``).

Every message is written to ``tracking_peer_outbox`` in the transaction that decided it and sent by the API
(``peer_api.PeerSender``) until the peer accepts it. Ids are derived from what they name (query: peer and
child; link: query and the found child; message: its kind and subject), so a redelivered query, answer or
decision adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from services.tracking import crossla
from services.tracking.crossla import CROSS_KINDS, LEGAL_BASIS, SOUGHT_STATES, CrossLAMatcher, Named
from services.tracking.metrics import CROSS_LA_MATCHES
from services.tracking.models import (
    TrackingCase,
    TrackingCrossLALink,
    TrackingPeerDigest,
    TrackingPeerOutbox,
    TrackingPeerQuery,
    TrackingReadAudit,
    TrackingReviewItem,
)
from services.tracking.peer_auth import digest
from services.tracking.settings import TrackingSettings
from shared.events.internal import ChildFact, MatchKind
from shared.logs import get_logger

log = get_logger(__name__)
NS = uuid.UUID("0b7e6f52-93c1-4d0e-8f3a-18a0c4185d0f")
LA_CODE = r"^[0-9]{3}$"
IdKind = Literal["upn", "uln", "nhs_number"]
SoughtState = Literal["missing_education", "whereabouts_unknown", "transfer_pending", "handed_over"]
PATHS = {"query": "/v1/peer/queries", "answer": "/v1/peer/answers", "decision": "/v1/peer/decisions"}


# -- messages: hashed identifiers, LA codes, states, fact types, dates and a staff contact; nothing else ----


class PeerDigestIn(BaseModel):
    kind: IdKind
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


class PeerQuery(BaseModel):
    """Does your deployment know this child? (LA ``sought_la_code`` seeks it.)"""

    query_id: uuid.UUID
    sought_la_code: str = Field(pattern=LA_CODE)
    digests: list[PeerDigestIn] = Field(min_length=1, max_length=8)
    sought_state: SoughtState
    missing_since: date | None = None
    contact: str = Field(default="", max_length=200)


class PeerAnswer(BaseModel):
    """Known: LA ``found_la_code`` has the child (its latest fact's type and date)."""

    query_id: uuid.UUID
    link_id: uuid.UUID
    found_la_code: str = Field(pattern=LA_CODE)
    fact_type: str = Field(pattern=r"^[a-z][a-z-]{1,39}$")
    fact_on: date
    identifier_kind: IdKind
    contact: str = Field(default="", max_length=200)


class PeerQueryResult(BaseModel):
    query_id: uuid.UUID
    known: bool
    answers: list[PeerAnswer]


class PeerDecision(BaseModel):
    """A person in LA ``decided_la_code`` confirmed or rejected the match."""

    link_id: uuid.UUID
    decision: Literal["confirm", "reject"]
    decided_la_code: str = Field(pattern=LA_CODE)


@dataclass(frozen=True)
class Peer:
    id: str
    url: str
    secret: str
    las: frozenset[str]


class UnknownSubject(Exception):
    """The message names a query or link this deployment never made with that peer."""


def peers_of(settings: TrackingSettings) -> dict[str, Peer]:
    return {
        name: Peer(name, p.url.rstrip("/"), p.secret.get_secret_value(), frozenset(p.las))
        for name, p in settings.tracking_peers.items()
    }


def query_id_for(peer: str, child_id: str) -> str:
    return str(uuid.uuid5(NS, f"query:{peer}:{child_id}"))


def peer_link_id(query_id: str, found_child_id: str) -> str:
    return str(uuid.uuid5(NS, f"link:{query_id}:{found_child_id}"))


def _opaque(peer: str, what: str) -> str:
    """The other side's child, as this deployment names it: an id derived from the query or link."""
    return str(uuid.uuid5(NS, f"opaque:{peer}:{what}"))


def _day(on: date | None) -> datetime | None:
    return None if on is None else datetime.combine(on, time(), tzinfo=UTC)


class Federation:
    """This deployment's side of the exchange with its peers."""

    def __init__(self, deployment_id: str, peers: dict[str, Peer], matcher: CrossLAMatcher) -> None:
        self.deployment_id = deployment_id
        self.peers = peers
        self.matcher = matcher

    # -- the sought side ---------------------------------------------------------------------------------

    def on_sought(
        self, session: Session, pairs: Sequence[tuple[str, str]], ids: dict[str, list[tuple[str, str]]]
    ) -> int:
        """Queue a query to each peer for each case that has just become sought (in the caller's
        transaction). The same case in the same open spell makes the same message: written once."""
        queued = 0
        for child_id, la_code in pairs:
            mine = [(k, v) for k, v in ids.get(child_id, []) if k in CROSS_KINDS]
            case = session.exec(select(TrackingCase).where(TrackingCase.child_id == child_id)).first()
            if not mine or case is None or case.merged_into is not None or case.state not in SOUGHT_STATES:
                continue
            since = case.cause_occurred_at.date() if case.cause_occurred_at else None
            for peer in self.peers.values():
                query_id = query_id_for(peer.id, child_id)
                message_id = str(uuid.uuid5(NS, f"message:query:{query_id}:{case.state}:{since}"))
                if session.get(TrackingPeerOutbox, message_id) is not None:
                    continue
                body = PeerQuery(
                    query_id=uuid.UUID(query_id),
                    sought_la_code=la_code,
                    digests=[
                        PeerDigestIn(kind=k, digest=digest(peer.secret, k, v)) for k, v in sorted(set(mine))
                    ],  # type: ignore[arg-type]
                    sought_state=str(case.state),  # type: ignore[arg-type]
                    missing_since=since,
                    contact=self.matcher.contact(la_code),
                )
                session.add(
                    TrackingPeerOutbox(
                        message_id=message_id,
                        peer=peer.id,
                        kind="query",
                        query_id=query_id,
                        child_id=child_id,
                        la_code=la_code,
                        body=body.model_dump_json(),
                    )
                )
                _audit(
                    session,
                    la_code,
                    child_id,
                    "cross_la_peer_query",
                    f"asked deployment {peer.id} whether it knows the child (keyed hashes of its "
                    f"identifiers only); told it LA {la_code} seeks the child ({case.state} since {since}) "
                    "and its contact",
                )
                queued += 1
        return queued

    def receive_answer(self, session: Session, peer: Peer, answer: PeerAnswer) -> str:
        """The peer knows the child: this LA's half of the link and its review item (once)."""
        sent = session.exec(
            select(TrackingPeerOutbox).where(
                TrackingPeerOutbox.kind == "query",
                TrackingPeerOutbox.query_id == str(answer.query_id),
                TrackingPeerOutbox.peer == peer.id,
            )
        ).first()
        if sent is None or sent.child_id is None:
            raise UnknownSubject("no such query")
        link_id = str(answer.link_id)
        existing = session.get(TrackingCrossLALink, link_id)
        if existing is not None:
            if existing.peer != peer.id:
                raise UnknownSubject("no such link")
            return "known_already"
        child_id = crossla._surviving(session, sent.child_id)
        case = session.exec(select(TrackingCase).where(TrackingCase.child_id == child_id)).first()
        if (
            case is None
            or not crossla._sought(case, answer.found_la_code)
            or not self.matcher.enabled(case.la_code)
        ):
            return "not_sought"
        fact_at = _day(answer.fact_on)
        assert fact_at is not None
        link = TrackingCrossLALink(
            link_id=link_id,
            sought_la_code=case.la_code,
            sought_child_id=child_id,
            sought_state=str(case.state),
            missing_since=case.cause_occurred_at,
            found_la_code=answer.found_la_code,
            found_child_id=_opaque(peer.id, f"found:{link_id}"),
            event_id=link_id,  # the peer's fact is not named here
            fact_type=answer.fact_type,
            fact_occurred_at=fact_at,
            match=str(MatchKind.EXACT),
            identifier_kind=answer.identifier_kind,
            sought_review_id=crossla.review_id_for(link_id, case.la_code),
            found_review_id="",  # the peer's
            peer=peer.id,
            peer_contact=answer.contact,
        )
        session.add(link)
        how = f"exact on {answer.identifier_kind}"
        session.add(
            TrackingReviewItem(
                review_id=link.sought_review_id,
                la_code=case.la_code,
                kind=crossla.REVIEW_KIND,
                child_id=child_id,
                event_id=link_id,
                detail=crossla._cut(
                    f"possible location: LA {answer.found_la_code} ({answer.fact_type} {answer.fact_on}); "
                    f"{how}; deployment {peer.id}"
                ),
            )
        )
        _audit(
            session,
            case.la_code,
            child_id,
            "cross_la_match",
            f"deployment {peer.id} told LA {case.la_code} that the child may be in LA {answer.found_la_code} "
            f"({answer.fact_type} {answer.fact_on}) and its contact; {how}",
            subject=f"peer:{peer.id}",
        )
        CROSS_LA_MATCHES.labels(str(MatchKind.EXACT), "peer_answer").inc()
        log.info("cross_la_peer_match", link_id=link_id, peer=peer.id, side="sought")
        return "linked"

    # -- the found side ----------------------------------------------------------------------------------

    def receive_query(self, session: Session, peer: Peer, query: PeerQuery) -> PeerQueryResult:
        """Keep the standing query (or refresh its state) and answer from what this deployment knows now."""
        qid = str(query.query_id)
        stored = {
            r.digest: r
            for r in session.exec(select(TrackingPeerQuery).where(TrackingPeerQuery.query_id == qid)).all()
        }
        for d in query.digests:
            row = stored.get(d.digest) or TrackingPeerQuery(
                query_id=qid, peer=peer.id, digest=d.digest, kind=d.kind, sought_la_code=query.sought_la_code,
                sought_state=query.sought_state,
            )  # fmt: skip
            if row.peer != peer.id:
                raise UnknownSubject("no such query")
            row.sought_la_code, row.sought_state = query.sought_la_code, query.sought_state
            row.missing_since, row.contact = _day(query.missing_since), query.contact
            session.add(row)
        session.flush()
        kinds = {d.digest: d.kind for d in query.digests}
        rows = session.exec(
            select(TrackingPeerDigest).where(
                TrackingPeerDigest.peer == peer.id, col(TrackingPeerDigest.digest).in_(set(kinds))
            )
        ).all()
        answers: list[PeerAnswer] = []
        done: set[str] = set()
        for known in sorted(rows, key=lambda r: (r.child_id, r.digest)):
            child_id = crossla._surviving(session, known.child_id)
            if child_id in done or not self.matcher.enabled(known.la_code):
                continue
            done.add(child_id)
            link_id = peer_link_id(qid, child_id)
            link = session.get(TrackingCrossLALink, link_id)
            if link is None:
                case = session.exec(select(TrackingCase).where(TrackingCase.child_id == child_id)).first()
                latest = crossla.latest_entries(session, {child_id}).get(child_id)
                if case is None or case.state in SOUGHT_STATES or latest is None:
                    continue  # not here either (or not yet in the case store: its next fact answers)
                standing = session.exec(
                    select(TrackingPeerQuery).where(
                        TrackingPeerQuery.query_id == qid, TrackingPeerQuery.digest == known.digest
                    )
                ).one()
                fact = (latest.event_id, latest.event_type, latest.occurred_at)
                link = self._found_half(session, peer, standing, link_id, child_id, case.la_code, fact)
            answers.append(_answer(link, qid, self.matcher))
        return PeerQueryResult(query_id=query.query_id, known=bool(answers), answers=answers)

    def on_facts(self, session: Session, facts: Sequence[Named]) -> int:
        """Record the keyed hashes of the batch's strong identifiers for each peer, and answer the peers'
        standing queries they match (in the identity transaction: the answer is queued with the fact)."""
        made = 0
        for peer in self.peers.values():
            named: dict[str, list[tuple[Named, str]]] = {}
            for fact in facts:
                for kind, value in fact.ids:
                    if kind in CROSS_KINDS:
                        named.setdefault(digest(peer.secret, kind, value), []).append((fact, kind))
            if not named:
                continue
            have = {
                (r.digest, r.child_id)
                for r in session.exec(
                    select(TrackingPeerDigest).where(
                        TrackingPeerDigest.peer == peer.id, col(TrackingPeerDigest.digest).in_(set(named))
                    )
                ).all()
            }
            for d, pairs in named.items():
                for fact, kind in pairs:
                    if (d, fact.child_id) not in have:
                        have.add((d, fact.child_id))
                        session.add(
                            TrackingPeerDigest(
                                peer=peer.id,
                                digest=d,
                                kind=kind,
                                child_id=fact.child_id,
                                la_code=fact.la_code,
                            )
                        )
            standing = session.exec(
                select(TrackingPeerQuery)
                .where(TrackingPeerQuery.peer == peer.id, col(TrackingPeerQuery.digest).in_(set(named)))
                .order_by(col(TrackingPeerQuery.id))
            ).all()
            for query in standing:
                for fact, _kind in named[query.digest]:
                    link_id = peer_link_id(query.query_id, fact.child_id)
                    if session.get(TrackingCrossLALink, link_id) is not None:
                        continue
                    named_fact = (fact.event_id, fact.event_type, fact.occurred_at)
                    self._answer_later(session, peer, query, link_id, fact.child_id, fact.la_code, named_fact)
                    made += 1
        return made

    def on_found(self, session: Session, pairs: Sequence[tuple[str, str]]) -> int:
        """Cases just projected into a state that is not sought ((child_id, la_code)): a standing query whose
        hash the child carries, that arrived after the child's fact but before its case was in the case
        store (``receive_query`` answers only a child with a case), is answered now (pushed)."""
        children = {c: la for c, la in pairs}
        made = 0
        for peer in self.peers.values():
            rows = session.exec(
                select(TrackingPeerDigest, TrackingPeerQuery)
                .join(TrackingPeerQuery, col(TrackingPeerQuery.digest) == col(TrackingPeerDigest.digest))
                .where(
                    TrackingPeerDigest.peer == peer.id,
                    TrackingPeerQuery.peer == peer.id,
                    col(TrackingPeerDigest.child_id).in_(set(children)),
                )
                .order_by(col(TrackingPeerQuery.id))
            ).all()
            for known, query in rows:
                link_id = peer_link_id(query.query_id, known.child_id)
                if session.get(TrackingCrossLALink, link_id) is not None:
                    continue
                latest = crossla.latest_entries(session, {known.child_id}).get(known.child_id)
                if latest is None:
                    continue
                fact = (latest.event_id, latest.event_type, latest.occurred_at)
                self._answer_later(
                    session, peer, query, link_id, known.child_id, children[known.child_id], fact
                )
                made += 1
        return made

    def _answer_later(
        self,
        session: Session,
        peer: Peer,
        query: TrackingPeerQuery,
        link_id: str,
        child_id: str,
        la_code: str,
        fact: tuple[str, str, datetime],
    ) -> None:
        """This LA's half of a match with a standing query, and the answer pushed to the peer."""
        link = self._found_half(session, peer, query, link_id, child_id, la_code, fact)
        session.add(
            TrackingPeerOutbox(
                message_id=str(uuid.uuid5(NS, f"message:answer:{link_id}")),
                peer=peer.id,
                kind="answer",
                query_id=query.query_id,
                la_code=la_code,
                body=_answer(link, query.query_id, self.matcher).model_dump_json(),
            )
        )

    def _found_half(
        self,
        session: Session,
        peer: Peer,
        query: TrackingPeerQuery,
        link_id: str,
        child_id: str,
        la_code: str,
        fact: tuple[str, str, datetime],  # this LA's fact the peer is told of: event id, type, time
    ) -> TrackingCrossLALink:
        event_id, event_type, occurred_at = fact
        link = TrackingCrossLALink(
            link_id=link_id,
            sought_la_code=query.sought_la_code,
            sought_child_id=_opaque(peer.id, f"sought:{query.query_id}"),
            sought_state=query.sought_state,
            missing_since=query.missing_since,
            found_la_code=la_code,
            found_child_id=child_id,
            event_id=event_id,
            fact_type=event_type,
            fact_occurred_at=occurred_at,
            match=str(MatchKind.EXACT),
            identifier_kind=query.kind,
            sought_review_id="",  # the peer's
            found_review_id=crossla.review_id_for(link_id, la_code),
            peer=peer.id,
            peer_contact=query.contact,
        )
        session.add(link)
        since = query.missing_since.date().isoformat() if query.missing_since else "unknown"
        how = f"exact on {query.kind}"
        session.add(
            TrackingReviewItem(
                review_id=link.found_review_id,
                la_code=la_code,
                kind=crossla.REVIEW_KIND,
                child_id=child_id,
                event_id=event_id,
                detail=crossla._cut(
                    f"sought by LA {query.sought_la_code} ({query.sought_state} since {since}); {how}; "
                    f"deployment {peer.id}"
                ),
            )
        )
        _audit(
            session,
            la_code,
            child_id,
            "cross_la_match",
            f"told deployment {peer.id} (LA {query.sought_la_code}, which seeks the child: "
            f"{query.sought_state} since {since}) that LA {la_code} knows the child ({event_type} "
            f"{occurred_at.date()}) and its contact; {how}",
            subject=f"peer:{peer.id}",
        )
        CROSS_LA_MATCHES.labels(str(MatchKind.EXACT), "peer_query").inc()
        log.info("cross_la_peer_match", link_id=link_id, peer=peer.id, side="found")
        return link

    # -- decisions, either side ----------------------------------------------------------------------------

    def send_decision(self, session: Session, link: TrackingCrossLALink, decision: str, la_code: str) -> None:
        """Queue a person's decision on a peer link for the peer (in the decision's transaction)."""
        if link.peer is None or link.peer not in self.peers:
            return
        body = PeerDecision(link_id=uuid.UUID(link.link_id), decision=decision, decided_la_code=la_code)  # type: ignore[arg-type]
        session.add(
            TrackingPeerOutbox(
                message_id=str(uuid.uuid5(NS, f"message:decision:{link.link_id}")),
                peer=link.peer,
                kind="decision",
                la_code=la_code,
                body=body.model_dump_json(),
            )
        )

    def receive_decision(self, session: Session, peer: Peer, decision: PeerDecision) -> ChildFact | None:
        """The peer's person decided: take the decision here (once); a confirmation of a match whose sought
        case is here returns the fact that closes it (the caller publishes it, then commits)."""
        link = session.get(TrackingCrossLALink, str(decision.link_id))
        if link is None or link.peer != peer.id:
            raise UnknownSubject("no such link")
        if link.status != "open":
            return None
        closing = (
            self.matcher.closing_fact(session, link, f"peer:{peer.id}")
            if decision.decision == "confirm"
            else None
        )
        crossla.decide(
            session,
            link,
            decision.decision,
            decision.decided_la_code,
            f"peer:{peer.id}",
            f"decided by a person in LA {decision.decided_la_code} (deployment {peer.id})",
        )
        return closing


def _answer(link: TrackingCrossLALink, query_id: str, matcher: CrossLAMatcher) -> PeerAnswer:
    return PeerAnswer(
        query_id=uuid.UUID(query_id),
        link_id=uuid.UUID(link.link_id),
        found_la_code=link.found_la_code,
        fact_type=link.fact_type,
        fact_on=link.fact_occurred_at.date(),
        identifier_kind=link.identifier_kind,  # type: ignore[arg-type]
        contact=matcher.contact(link.found_la_code),
    )


def _audit(
    session: Session, la_code: str, child_id: str, action: str, what: str, subject: str = "cme-tracking"
) -> None:
    session.add(
        TrackingReadAudit(
            subject=subject,
            role="system" if subject == "cme-tracking" else "peer",
            la_code=la_code,
            action=action,
            child_id=child_id,
            reason=crossla._cut(f"{what}. Legal basis: {LEGAL_BASIS}", 500),
        )
    )


def matcher_for(settings: TrackingSettings) -> CrossLAMatcher:
    """The cross-LA matcher of this deployment, with its peers if it has any."""
    matcher = CrossLAMatcher(settings.cross_la_off, settings.tracking_la_contacts)
    peers = peers_of(settings)
    if peers:
        matcher.federation = Federation(settings.tracking_deployment_id, peers, matcher)
    return matcher
