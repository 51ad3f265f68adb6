"""Found anywhere between deployments (services/tracking/peers.py, peer_auth.py), the logic in process: two
deployments as two SQLite databases, the messages handed over by hand (the wire, signatures and sender are
in tests/e2e/test_cross_deployment_found.py). Deployment A serves LA 801 (whereabouts unknown on Mon 3 Nov
2025), deployment B serves LA 803 (registered at a school on Mon 1 Dec 2025)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.samples import child, sample_event_dict
from services.tracking.crossla import REVIEW_KIND, decide
from services.tracking.identity import IdentityResolver
from services.tracking.models import (
    TrackingCase,
    TrackingCrossLALink,
    TrackingPeerDigest,
    TrackingPeerOutbox,
    TrackingPeerQuery,
    TrackingReadAudit,
    TrackingReviewItem,
    TrackingTimelineEntry,
)
from services.tracking.peer_auth import digest, sign, verify
from services.tracking.peers import (
    Federation,
    PeerAnswer,
    PeerDecision,
    PeerQuery,
    UnknownSubject,
    matcher_for,
)
from services.tracking.settings import TrackingSettings
from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.events.internal import CaseState, ChildFact

SECRET = "secret-agreed-by-deployments-a-and-b-0123456789"
KID = child(1, "801")
NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


def _deployment(tmp_path: Path, me: str, peer: str, las: str) -> tuple[Engine, Federation]:
    url = f"sqlite:///{tmp_path / f'{me}.db'}"
    migrate(url, MIGRATIONS, "tracking")
    settings = TrackingSettings(
        database_url=url,
        tracking_deployment_id=me,
        tracking_peers={peer: {"url": "http://127.0.0.1:1", "secret": SECRET, "las": [las]}},  # type: ignore[dict-item]
        tracking_la_contacts={"801": "cme@801.invalid", "803": "cme@803.invalid"},
    )
    matcher = matcher_for(settings)
    assert matcher.federation is not None
    return make_engine(url), matcher.federation


def _event(event_type: str, la_code: str, on: date) -> Envelope:
    return decode_inbound(sample_event_dict(event_type, on=on, la_code=la_code, kid=KID))


def _rows(engine: Engine, model: Any) -> list[Any]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(model)).all())


def _case(engine: Engine, child_id: str, la_code: str, state: CaseState, at: datetime) -> None:
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()),
                child_id=child_id,
                la_code=la_code,
                state=str(state),
                cause_occurred_at=at,
            )
        )
        session.commit()


def _payload(fact: ChildFact) -> dict[str, Any]:
    payload = fact.payload.fact["payload"]
    assert isinstance(payload, dict)
    return payload


def _outbox(engine: Engine, kind: str) -> list[TrackingPeerOutbox]:
    return [r for r in _rows(engine, TrackingPeerOutbox) if r.kind == kind]


def test_signature_timestamp_and_digest() -> None:
    body = b'{"query_id": "x"}'
    headers = {k.lower(): v for k, v in sign(SECRET, "POST", "/v1/peer/queries", body, "dep-a", NOW).items()}
    assert verify(SECRET, "POST", "/v1/peer/queries", body, headers, NOW).ok
    assert verify(SECRET, "POST", "/v1/peer/queries", body + b" ", headers, NOW).reason == "bad signature"
    assert verify(SECRET, "POST", "/v1/peer/answers", body, headers, NOW).reason == "bad signature"
    assert verify(
        "another-secret-0123456789abcdef01", "POST", "/v1/peer/queries", body, headers, NOW
    ).reason == ("bad signature")
    late = NOW + timedelta(minutes=6)
    assert (
        verify(SECRET, "POST", "/v1/peer/queries", body, headers, late).reason
        == "timestamp outside the window"
    )
    assert not verify(SECRET, "POST", "/v1/peer/queries", body, {}, NOW).ok
    # The keyed hash: the same for both sides of a pair, another for another pair; never the value.
    mine = digest(SECRET, "upn", KID["upn"])
    assert mine == digest(SECRET, "upn", KID["upn"].lower()) and KID["upn"] not in mine
    assert mine != digest("another-secret-0123456789abcdef01", "upn", KID["upn"])
    assert mine != digest(SECRET, "uln", KID["upn"])


def test_standing_query_answered_by_a_later_fact_then_confirmed(tmp_path: Path) -> None:
    engine_a, a = _deployment(tmp_path, "dep-a", "dep-b", "803")
    engine_b, b = _deployment(tmp_path, "dep-b", "dep-a", "801")
    resolver_a = IdentityResolver(engine_a, cross_la=a.matcher)
    resolver_b = IdentityResolver(engine_b, cross_la=b.matcher)

    # A: 801's child becomes whereabouts unknown: one query to B, hashes only, audited with the basis.
    missing = _event("whereabouts-unknown", "801", date(2025, 11, 3))
    sought = resolver_a.resolve(missing).child_id
    _case(engine_a, sought, "801", CaseState.WHEREABOUTS_UNKNOWN, missing.occurred_at)
    a.matcher.match_sought(engine_a, [(sought, "801")])
    a.matcher.match_sought(engine_a, [(sought, "801")])  # the same spell again: the same message
    [sent] = _outbox(engine_a, "query")
    assert KID["upn"] not in sent.body and KID["surname"] not in sent.body
    query = PeerQuery.model_validate_json(sent.body)
    assert [d.digest for d in query.digests] == [digest(SECRET, "upn", KID["upn"])]

    # B: not known yet; the query stands.
    peer_a, peer_b = b.peers["dep-a"], a.peers["dep-b"]
    with Session(engine_b) as session:
        result = b.receive_query(session, peer_a, query)
        session.commit()
    assert result.known is False and result.answers == []
    assert len(_rows(engine_b, TrackingPeerQuery)) == 1

    # B: a school in 803 registers the same UPN: B's half, B's task, an answer queued for A.
    found = resolver_b.resolve(_event("pupil-registered", "803", date(2025, 12, 1))).child_id
    resolver_b.resolve(_event("pupil-registered", "803", date(2025, 12, 1)))  # redelivered: nothing more
    [half_b] = _rows(engine_b, TrackingCrossLALink)
    assert (half_b.found_child_id, half_b.sought_la_code, half_b.peer, half_b.sought_review_id) == (
        found, "801", "dep-a", ""
    )  # fmt: skip
    [item_b] = [i for i in _rows(engine_b, TrackingReviewItem) if i.kind == REVIEW_KIND]
    assert item_b.detail.startswith("sought by LA 801 (whereabouts_unknown since 2025-11-03)")
    assert {d.child_id for d in _rows(engine_b, TrackingPeerDigest)} == {found}
    [answer_row] = _outbox(engine_b, "answer")
    answer = PeerAnswer.model_validate_json(answer_row.body)
    assert (answer.found_la_code, answer.fact_type, answer.fact_on, answer.contact) == (
        "803", "pupil-registered", date(2025, 12, 1), "cme@803.invalid"
    )  # fmt: skip

    # A: the answer makes A's half and A's task; a redelivered answer adds nothing; a stranger's is refused.
    for expected in ("linked", "known_already"):
        with Session(engine_a) as session:
            assert a.receive_answer(session, peer_b, answer) == expected
            session.commit()
    with Session(engine_a) as session, pytest.raises(UnknownSubject):
        a.receive_answer(session, peer_b, answer.model_copy(update={"query_id": uuid.uuid4()}))
    [half_a] = _rows(engine_a, TrackingCrossLALink)
    assert (half_a.link_id, half_a.sought_child_id, half_a.found_la_code, half_a.found_review_id) == (
        half_b.link_id, sought, "803", ""
    )  # fmt: skip
    assert half_a.peer_contact == "cme@803.invalid"
    [item_a] = [i for i in _rows(engine_a, TrackingReviewItem) if i.kind == REVIEW_KIND]
    assert item_a.detail.startswith("possible location: LA 803 (pupil-registered 2025-12-01)")

    # 801 confirms in A: the closing fact for A's case, the decision queued for B; B takes it once.
    with Session(engine_a, expire_on_commit=False) as session:
        link = session.get(TrackingCrossLALink, half_a.link_id)
        assert link is not None
        closing = a.matcher.closing_fact(session, link, "cw-801")
        decide(session, link, "confirm", "801", "cw-801", "confirmed by phone")
        a.send_decision(session, link, "confirm", "801")
        session.commit()
    assert closing is not None
    assert _payload(closing)["la_code"] == "803"
    decision = PeerDecision.model_validate_json(_outbox(engine_a, "decision")[0].body)
    for _ in range(2):
        with Session(engine_b) as session:
            assert b.receive_decision(session, peer_a, decision) is None  # nothing of A's to close in B
            session.commit()
    [half_b] = _rows(engine_b, TrackingCrossLALink)
    assert (half_b.status, half_b.decided_la_code) == ("confirmed", "801")
    audit_b = [r for r in _rows(engine_b, TrackingReadAudit) if r.action.startswith("cross_la_")]
    assert sorted((r.action, r.la_code) for r in audit_b) == [
        ("cross_la_confirm", "803"),
        ("cross_la_match", "803"),
    ]
    audit_a = [r for r in _rows(engine_a, TrackingReadAudit) if r.action.startswith("cross_la_")]
    assert sorted(r.action for r in audit_a) == ["cross_la_confirm", "cross_la_match", "cross_la_peer_query"]
    assert all(r.la_code == "801" and KID["upn"] not in r.reason for r in audit_a)


def test_a_known_child_is_answered_at_once_and_a_decision_from_the_peer_closes_here(tmp_path: Path) -> None:
    engine_a, a = _deployment(tmp_path, "dep-a", "dep-b", "803")
    engine_b, b = _deployment(tmp_path, "dep-b", "dep-a", "801")
    registered = _event("pupil-registered", "803", date(2025, 12, 1))
    found = IdentityResolver(engine_b, cross_la=b.matcher).resolve(registered).child_id
    # B's case store has the child (the case agent's projection, as the e2e test runs it for real).
    _case(engine_b, found, "803", CaseState.IN_EDUCATION, registered.occurred_at)
    with Session(engine_b) as session:
        session.add(
            TrackingTimelineEntry(
                child_id=found,
                la_code="803",
                event_id=str(registered.event_id),
                event_type=registered.event_type,
                occurred_at=registered.occurred_at,
                verdict="move",
            )
        )
        session.commit()
    missing = _event("whereabouts-unknown", "801", date(2025, 12, 8))
    sought = IdentityResolver(engine_a, cross_la=a.matcher).resolve(missing).child_id
    _case(engine_a, sought, "801", CaseState.WHEREABOUTS_UNKNOWN, missing.occurred_at)
    a.matcher.match_sought(engine_a, [(sought, "801")])
    query = PeerQuery.model_validate_json(_outbox(engine_a, "query")[0].body)
    with Session(engine_b) as session:
        result = b.receive_query(session, b.peers["dep-a"], query)
        session.commit()
    assert result.known is True and [x.found_la_code for x in result.answers] == ["803"]
    with Session(engine_b) as session:  # redelivered: the same answer, nothing new
        assert b.receive_query(session, b.peers["dep-a"], query) == result
        session.commit()
    assert len(_rows(engine_b, TrackingCrossLALink)) == 1 and _outbox(engine_b, "answer") == []
    with Session(engine_a) as session:
        assert a.receive_answer(session, a.peers["dep-b"], result.answers[0]) == "linked"
        session.commit()
    # A person in B confirms: A's case gets the closing fact naming 803.
    decision = PeerDecision(link_id=result.answers[0].link_id, decision="confirm", decided_la_code="803")
    with Session(engine_a) as session:
        closing = a.receive_decision(session, a.peers["dep-b"], decision)
        session.commit()
    assert closing is not None and str(closing.payload.child_id) == sought
    assert (_payload(closing)["outcome"], _payload(closing)["la_code"]) == ("other_la_accepted", "803")
    with Session(engine_a) as session:
        assert a.receive_decision(session, a.peers["dep-b"], decision) is None  # redelivered: taken once
    [link] = _rows(engine_a, TrackingCrossLALink)
    assert (link.status, link.decided_la_code, link.decided_by) == ("confirmed", "803", "peer:dep-b")


def test_a_query_that_arrives_before_the_childs_case_is_answered_once_the_case_is_there(
    tmp_path: Path,
) -> None:
    engine_a, a = _deployment(tmp_path, "dep-a", "dep-b", "803")
    engine_b, b = _deployment(tmp_path, "dep-b", "dep-a", "801")
    registered = _event("pupil-registered", "803", date(2025, 12, 1))
    found = IdentityResolver(engine_b, cross_la=b.matcher).resolve(registered).child_id  # no case yet
    missing = _event("whereabouts-unknown", "801", date(2025, 12, 8))
    sought = IdentityResolver(engine_a, cross_la=a.matcher).resolve(missing).child_id
    _case(engine_a, sought, "801", CaseState.WHEREABOUTS_UNKNOWN, missing.occurred_at)
    a.matcher.match_sought(engine_a, [(sought, "801")])
    query = PeerQuery.model_validate_json(_outbox(engine_a, "query")[0].body)
    with Session(engine_b) as session:
        assert b.receive_query(session, b.peers["dep-a"], query).known is False  # B's case is not there yet
        session.commit()
    _case(engine_b, found, "803", CaseState.IN_EDUCATION, registered.occurred_at)
    with Session(engine_b) as session:
        session.add(
            TrackingTimelineEntry(
                child_id=found,
                la_code="803",
                event_id=str(registered.event_id),
                event_type=registered.event_type,
                occurred_at=registered.occurred_at,
                verdict="move",
            )
        )
        session.commit()
    b.matcher.match_found(engine_b, [(found, "803")])  # the case agent, after projecting B's case
    b.matcher.match_found(engine_b, [(found, "803")])  # again: nothing more
    [half_b] = _rows(engine_b, TrackingCrossLALink)
    assert (half_b.found_child_id, half_b.sought_la_code, half_b.fact_type) == (
        found,
        "801",
        "pupil-registered",
    )
    [answer_row] = _outbox(engine_b, "answer")
    with Session(engine_a) as session:
        answer = PeerAnswer.model_validate_json(answer_row.body)
        assert a.receive_answer(session, a.peers["dep-b"], answer) == "linked"
        session.commit()
