"""The LA-to-LA interface between deployments (``peers``): the routes a peer calls, signed (``peer_auth``),
and the sender that delivers this deployment's queued messages to its peers.

Routes (no user token: a peer's signature is its credential; anything else is 401 and audited):
- ``POST /v1/peer/queries``: a standing query; answers known (with the answers) or not known;
- ``POST /v1/peer/answers``: a fact in the peer answered one of this deployment's queries;
- ``POST /v1/peer/decisions``: a person in the peer confirmed or rejected a match.
A peer that names an LA it does not serve is refused with 403 (audited); a message about a query or link
this deployment never had with that peer is 404.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.tracking.deps import EngineDep, PublishDep
from services.tracking.models import TrackingPeerNonce, TrackingPeerOutbox, TrackingReadAudit
from services.tracking.peer_auth import PEER_HEADER, WINDOW_S, sign, verify
from services.tracking.peers import (
    PATHS,
    Federation,
    Peer,
    PeerAnswer,
    PeerDecision,
    PeerQuery,
    PeerQueryResult,
    UnknownSubject,
)
from shared.events.envelope import utcnow
from shared.logs import get_logger

log = get_logger(__name__)
PEER_ID = re.compile(r"^[a-z0-9-]{1,64}$")
# A refused message is kept (unsent, with the reason) for a person to look at; these statuses are worth
# retrying: the peer is down, overloaded, or our clocks or keys are being fixed.
RETRY = frozenset({401, 408, 425, 429})


def _refuse(engine: Engine, request: Request, peer_id: str, code: int, why: str) -> HTTPException:
    """Audit a refused peer request (who claimed to call, which route, why: no content) and the error."""
    claimed = peer_id if PEER_ID.match(peer_id) else "?"
    with Session(engine) as session:
        session.add(
            TrackingReadAudit(
                subject=f"peer:{claimed}",
                role="peer",
                la_code="",
                action="peer_refused",
                reason=f"{request.method} {request.url.path}: {code} {why}",
            )
        )
        session.commit()
    log.warning("peer_refused", peer=claimed, path=request.url.path, status=code, why=why)
    return HTTPException(code, why)


def get_federation(request: Request) -> Federation | None:
    return request.app.state.matcher.federation  # type: ignore[no-any-return]


FederationDep = Annotated[Federation | None, Depends(get_federation)]


def _take_nonce(engine: Engine, peer: Peer, nonce: str) -> bool:
    """Record the request's nonce; False when it was seen before (a replayed request)."""
    try:
        with Session(engine) as session:
            session.add(TrackingPeerNonce(peer=peer.id, nonce=nonce))
            session.commit()
    except IntegrityError:
        return False
    return True


async def authenticate(request: Request, federation: FederationDep, engine: EngineDep) -> Peer:
    """The calling peer, by its signature over the request (once: a nonce is taken only once). Database work
    runs in a thread, off the event loop."""
    body = await request.body()
    peer_id = request.headers.get(PEER_HEADER, "")
    peer = federation.peers.get(peer_id) if federation is not None else None
    if peer is None:
        raise await asyncio.to_thread(_refuse, engine, request, peer_id, 401, "unknown peer")
    headers = {k.lower(): v for k, v in request.headers.items()}
    verdict = verify(peer.secret, request.method, request.url.path, body, headers, utcnow())
    if not verdict.ok:
        raise await asyncio.to_thread(_refuse, engine, request, peer_id, 401, verdict.reason)
    if not await asyncio.to_thread(_take_nonce, engine, peer, headers["x-cme-nonce"]):
        raise await asyncio.to_thread(_refuse, engine, request, peer_id, 401, "replayed request")
    return peer


SignedPeer = Annotated[Peer, Depends(authenticate)]


def _speaks_for(engine: Engine, request: Request, peer: Peer, la_code: str) -> None:
    if la_code not in peer.las:
        raise _refuse(engine, request, peer.id, 403, f"LA {la_code} is not served by this peer")


def _known(federation: Federation | None) -> Federation:
    assert federation is not None  # authenticate() let a peer through: there is a federation
    return federation


router = APIRouter(prefix="/v1/peer", tags=["peers"])


@router.post("/queries")
def queries(
    query: PeerQuery, request: Request, peer: SignedPeer, federation: FederationDep, engine: EngineDep
) -> PeerQueryResult:
    """A peer's LA seeks a child (keyed hashes of its identifiers): known here, or not known."""
    _speaks_for(engine, request, peer, query.sought_la_code)
    with Session(engine, expire_on_commit=False) as session:
        try:
            result = _known(federation).receive_query(session, peer, query)
        except UnknownSubject as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        session.commit()
    return result


@router.post("/answers")
def answers(
    answer: PeerAnswer, request: Request, peer: SignedPeer, federation: FederationDep, engine: EngineDep
) -> dict[str, str]:
    """A fact in the peer named a child this deployment asked about."""
    _speaks_for(engine, request, peer, answer.found_la_code)
    with Session(engine, expire_on_commit=False) as session:
        try:
            outcome = _known(federation).receive_answer(session, peer, answer)
        except UnknownSubject as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        session.commit()
    return {"link_id": str(answer.link_id), "status": outcome}


@router.post("/decisions")
def decisions(
    decision: PeerDecision,
    request: Request,
    peer: SignedPeer,
    federation: FederationDep,
    engine: EngineDep,
    publish: PublishDep,
) -> dict[str, str]:
    """A person in the peer confirmed or rejected a match; a confirmation closes the case here."""
    _speaks_for(engine, request, peer, decision.decided_la_code)
    with Session(engine, expire_on_commit=False) as session:
        try:
            closing = _known(federation).receive_decision(session, peer, decision)
        except UnknownSubject as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        if closing is not None:
            publish(session, closing)  # in the decision's transaction (the outbox): both or neither
        session.commit()
    return {"link_id": str(decision.link_id), "status": "taken"}


class PeerSender:
    """Delivers the outbox to the peers: each message until the peer accepts it (a 2xx), in the order
    written; a query's answer is taken as if the peer had pushed it. Several API instances may send the
    same message: the peer takes it once."""

    def __init__(self, engine: Engine, federation: Federation, poll_s: float) -> None:
        self.engine = engine
        self.federation = federation
        self.poll_s = poll_s

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.send_due)
            except Exception as exc:  # e.g. tables not migrated yet: try again next round
                log.warning("peer_send_failed", error=type(exc).__name__)
            await asyncio.sleep(self.poll_s)

    def send_due(self) -> int:
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(TrackingPeerOutbox)
                .where(
                    col(TrackingPeerOutbox.sent_at).is_(None),
                    col(TrackingPeerOutbox.last_error).is_(None)
                    | ~col(TrackingPeerOutbox.last_error).startswith("refused"),
                )
                .order_by(col(TrackingPeerOutbox.created_at), col(TrackingPeerOutbox.message_id))
                .limit(100)
            ).all()
            session.execute(
                delete(TrackingPeerNonce).where(
                    col(TrackingPeerNonce.at) < utcnow() - timedelta(seconds=4 * WINDOW_S)
                )
            )
            session.commit()
        sent = 0
        with httpx.Client(timeout=10) as client:
            for row in rows:
                sent += self._send(client, row)
        return sent

    def _send(self, client: httpx.Client, row: TrackingPeerOutbox) -> int:
        peer = self.federation.peers.get(row.peer)
        if peer is None:
            return 0
        path = PATHS[row.kind]
        body = row.body.encode()
        headers = sign(peer.secret, "POST", path, body, self.federation.deployment_id, utcnow())
        error: str | None = None
        try:
            answer = client.post(
                peer.url + path, content=body, headers={**headers, "Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            answer, error = None, type(exc).__name__
        with Session(self.engine, expire_on_commit=False) as session:
            current = session.get(TrackingPeerOutbox, row.message_id)
            if current is None or current.sent_at is not None:
                return 0
            if answer is not None and answer.is_success:
                if row.kind == "query":
                    result = PeerQueryResult.model_validate_json(answer.content)
                    for one in result.answers:
                        if one.found_la_code in peer.las and one.query_id == result.query_id:
                            try:
                                self.federation.receive_answer(session, peer, one)
                            except UnknownSubject:
                                log.warning("peer_answer_unknown", peer=peer.id)
                current.sent_at, current.last_error = utcnow(), None
            else:
                code = answer.status_code if answer is not None else None
                current.attempts += 1
                current.last_error = (
                    f"refused: HTTP {code}" if code is not None and 400 <= code < 500 and code not in RETRY
                    else f"HTTP {code}" if code is not None else error
                )  # fmt: skip
                log.warning("peer_message_not_taken", peer=peer.id, kind=row.kind, error=current.last_error)
            session.add(current)
            session.commit()
        return 1 if current.sent_at is not None else 0
