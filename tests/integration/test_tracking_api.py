"""The read API on a real database and broker: LA scoping, audit of reads, search by body, review
decisions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from devtools.samples import child, sample_event
from services.tracking.app import create_app
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import IdentityResolver
from services.tracking.models import TrackingReadAudit, TrackingReviewItem
from services.tracking.projection import project
from services.tracking.stream.app import MIGRATIONS
from shared.auth import Role, issue_token
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.settings import Settings
from shared.topics import CHILD_EVENTS
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration


def _ingest(settings: Settings, events: list) -> list[str]:  # type: ignore[type-arg]
    """Resolve and apply facts in-process, as the two agents do, and project them."""
    engine = make_engine(settings.database_url)
    resolver, ids = IdentityResolver(engine), []
    records: dict[str, ChildRecord] = {}
    for e in events:
        r = resolver.resolve(e)
        record = records.get(r.child_id) or new_record(r.child_id, "801")
        fact = ChildFact(
            event_id=e.event_id,
            occurred_at=e.occurred_at,
            source=Source(system="t", la_code="801"),
            payload=ChildFactPayload(
                child_id=uuid.UUID(r.child_id), la_code="801", match=r.match, fact=e.model_dump(mode="json")
            ),
        )
        outcome = apply_child_fact(record, fact)
        project(engine, outcome)
        records[r.child_id] = outcome.record
        ids.append(r.child_id)
    return ids


@pytest.fixture
def api(pg_settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    migrate(pg_settings.database_url, MIGRATIONS, "tracking")
    with TestClient(create_app(pg_settings)) as client:
        yield client, pg_settings


def _auth(settings: Settings, la: str = "801", role: Role = Role.CASEWORKER) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, 'worker-1', role, la)}"}


def test_child_case_timeline_scoped_and_audited(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    kid = child(31, forename="Ash", surname="Reader", date_of_birth="2013-04-04")
    ids = _ingest(
        settings,
        [
            sample_event("pupil-left-roll", kid=kid, on=date(2025, 11, 3)),
            sample_event("whereabouts-unknown", kid=kid, on=date(2025, 11, 10)),
        ],
    )
    cid = ids[0]
    assert client.get(f"/v1/children/{cid}", params={"reason": "case review"}).status_code == 401
    ops = client.get(
        f"/v1/children/{cid}", params={"reason": "case review"}, headers=_auth(settings, role=Role.OPS)
    )
    assert ops.status_code == 403
    other = client.get(
        f"/v1/children/{cid}", params={"reason": "case review"}, headers=_auth(settings, la="803")
    )
    assert other.status_code == 404
    body = client.get(f"/v1/children/{cid}", params={"reason": "case review"}, headers=_auth(settings)).json()
    assert body["case"]["state"] == "whereabouts_unknown"
    assert [t["to_state"] for t in body["timeline"]] == ["missing_education", "whereabouts_unknown"]
    with Session(make_engine(settings.database_url)) as s:
        audit = s.exec(select(TrackingReadAudit)).all()
    assert [(a.subject, a.child_id, a.reason) for a in audit] == [("worker-1", cid, "case review")]

    listed = client.get("/v1/cases", params={"state": "whereabouts_unknown"}, headers=_auth(settings)).json()
    assert [c["child_id"] for c in listed] == [cid]
    assert (
        client.get(
            "/v1/cases", params={"state": "whereabouts_unknown"}, headers=_auth(settings, "803")
        ).json()
        == []
    )

    by_upn = client.post(
        "/v1/children/search", json={"upn": kid["upn"], "reason": "phone call"}, headers=_auth(settings)
    ).json()
    by_name = client.post(
        "/v1/children/search",
        json={"surname": "READER", "date_of_birth": "2013-04-04", "reason": "phone call"},
        headers=_auth(settings),
    ).json()
    assert [c["child_id"] for c in by_upn] == [cid] == [c["child_id"] for c in by_name]


def test_possible_duplicate_decided_link_publishes_merge(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    a = child(32, forename="Bea", surname="Double", date_of_birth="2012-03-05")
    b = {k: v for k, v in {**a, "upn": None, "postcode": None, "surname": "Dubble"}.items() if v is not None}
    ids = _ingest(
        settings, [sample_event("pupil-left-roll", kid=a), sample_event("referral-received", kid=b)]
    )
    assert ids[0] != ids[1]
    items = client.get("/v1/review-items", headers=_auth(settings)).json()
    dup = [i for i in items if i["kind"] == "possible_duplicate"]
    assert len(dup) == 1 and {dup[0]["child_id"], dup[0]["other_child_id"]} == set(ids)
    assert client.get("/v1/review-items", headers=_auth(settings, "803")).json() == []
    r = client.post(
        f"/v1/review-items/{dup[0]['review_id']}/decision",
        json={"decision": "link", "reason": "same"},
        headers=_auth(settings),
    )
    assert r.status_code == 200 and r.json()["status"] == "linked"
    again = client.post(
        f"/v1/review-items/{dup[0]['review_id']}/decision",
        json={"decision": "link", "reason": "same"},
        headers=_auth(settings),
    )
    assert again.status_code == 409
    merged = [json.loads(m.value) for m in read_topic(settings, CHILD_EVENTS.name(settings), expect=1)]
    assert merged[0]["event_type"] == "child-merged"
    assert {merged[0]["payload"]["surviving_child_id"], merged[0]["payload"]["merged_child_id"]} == set(ids)
    with Session(make_engine(settings.database_url)) as s:
        assert s.exec(select(TrackingReviewItem)).first().status == "linked"  # type: ignore[union-attr]


def test_a_link_can_be_undone_once_and_publishes_a_split(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    a = child(33, forename="Cal", surname="Undone", date_of_birth="2011-07-08")
    b = {k: v for k, v in {**a, "upn": None, "postcode": None, "surname": "Undon"}.items() if v is not None}
    first, second = sample_event("pupil-left-roll", kid=a), sample_event("referral-received", kid=b)
    ids = _ingest(settings, [first, second])
    [item] = [
        i for i in client.get("/v1/review-items", headers=_auth(settings)).json() if i["child_id"] in ids
    ]
    undo = f"/v1/review-items/{item['review_id']}/undo"
    assert (
        client.post(undo, json={"reason": "wrong"}, headers=_auth(settings)).status_code == 409
    )  # not linked
    link = {"decision": "link", "reason": "same child"}
    decided = client.post(
        f"/v1/review-items/{item['review_id']}/decision", json=link, headers=_auth(settings)
    )
    assert decided.status_code == 200
    survivor, gone = sorted(ids)
    # After the link, a fact with the merged child's identifiers resolves to the survivor...
    later = sample_event("whereabouts-unknown", kid=b if gone == ids[1] else a)
    assert _ingest(settings, [later]) == [survivor]

    assert client.post(undo, json={"reason": "wrong"}, headers=_auth(settings, "803")).status_code == 404
    assert (
        client.post(undo, json={"reason": "x"}, headers=_auth(settings)).status_code == 422
    )  # reason too short
    r = client.post(undo, json={"reason": "different children"}, headers=_auth(settings))
    assert r.status_code == 200 and r.json()["status"] == "split"
    assert (
        client.post(undo, json={"reason": "different children"}, headers=_auth(settings)).status_code == 409
    )

    events = [json.loads(m.value) for m in read_topic(settings, CHILD_EVENTS.name(settings), expect=2)]
    [split] = [e for e in events if e["event_type"] == "child-split"]
    assert split["payload"]["child_id"] == survivor and split["payload"]["new_child_id"] == gone
    # ...so the split moves it back with the merged child's own fact.
    gone_event = first if ids[0] == gone else second
    assert sorted(split["payload"]["moved_event_ids"]) == sorted(
        [str(gone_event.event_id), str(later.event_id)]
    )
    # The merged child's identifiers name it again.
    assert _ingest(settings, [sample_event("child-located", kid=b if gone == ids[1] else a)]) == [gone]
    with Session(make_engine(settings.database_url)) as s:
        actions = [a.action for a in s.exec(select(TrackingReadAudit)).all()]
    assert actions[-2:] == ["review_link", "review_undo_link"]


def test_a_closed_case_names_where_the_childs_education_is(api: tuple[TestClient, Settings]) -> None:
    """Left for a named school on Mon 3 Nov 2025 (open, waiting), registered there on Thu 6 Nov: the case
    store and the API say the case closed with that school's URN."""
    client, settings = api
    kid = child(32, forename="Bo", surname="Arrives", date_of_birth="2013-05-05")
    left = sample_event("pupil-left-roll", kid=kid, on=date(2025, 11, 3))
    left_data = left.model_dump(mode="json")
    left_data["payload"].update(deletion_ground="a", destination={"known": True, "school_urn": "108001"})
    registered = sample_event("pupil-registered", kid=kid, on=date(2025, 11, 6)).model_dump(mode="json")
    registered["payload"]["school_urn"] = "108001"
    [cid] = set(_ingest(settings, [decode_inbound(left_data)]))
    waiting = client.get(f"/v1/children/{cid}", params={"reason": "transfer check"}, headers=_auth(settings))
    assert waiting.status_code == 200, waiting.text
    case = waiting.json()["case"]
    assert (case["state"], case["outcome"], case["open_deadlines"]) == (
        "transfer_pending",
        None,
        ["transfer_pending"],
    )
    _ingest(settings, [decode_inbound(left_data), decode_inbound(registered)])  # the worker's record, again
    closed = client.get(f"/v1/children/{cid}", params={"reason": "transfer check"}, headers=_auth(settings))
    case = closed.json()["case"]
    assert (case["state"], case["outcome"], case["outcome_ref"]) == ("in_education", "school", "108001")
