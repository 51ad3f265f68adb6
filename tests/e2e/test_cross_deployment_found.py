"""Found anywhere between two deployments (issue 18): two stacks on the same broker and PostgreSQL cluster,
each with its own topic prefix and database, peers of each other through the signed LA-to-LA interface.

Deployment A serves LA 801, deployment B serves LA 803. A child's whereabouts are unknown in 801 from Mon
3 Nov 2025: A asks B (a standing query carrying keyed hashes of the UPN, never the UPN); B does not know
the child. On Mon 1 Dec 2025 a school in 803 registers a child with the same UPN: B answers the standing
query; both LAs get their review item; 801 confirms; 801's case closes with destination 803 and B's side
takes the confirmation. The other order (B has the child before A loses it) is answered at once. A wrong
signature, an unknown peer, a replayed or stale request and a peer speaking for an LA it does not serve
are refused (401/403) and audited; a redelivered query or answer adds nothing; neither deployment holds or
shows the other's child, case or timeline; nothing personal is in the messages, the stored queries, the
audit or the logs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.samples import child, sample_event_dict
from services.tracking.crossla import LEGAL_BASIS
from services.tracking.peer_auth import sign
from shared.auth import Role, issue_token
from shared.events.envelope import utcnow
from shared.kafka import ensure_topics
from shared.localstack.net import free_port
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import SIGNING_KEY, Pipeline, start_smtp
from tests.support.store import case as _case
from tests.support.store import resolved as _resolved
from tests.support.store import rows as _rows

pytestmark = pytest.mark.e2e

SECRET = "secret-agreed-by-deployments-a-and-b-0123456789"
CONTACTS = '{"801": "cme.team@801.test", "803": "cme.team@803.test"}'


@dataclass
class Stacks:
    a: Pipeline
    b: Pipeline


def _pipeline(
    kafka: Settings, db: str, tmp: Path, me: str, port: int, peer: str, peer_port: int, las: str
) -> Pipeline:
    peers = {peer: {"url": f"http://127.0.0.1:{peer_port}", "secret": SECRET, "las": [las]}}
    env = {
        "CME_TRACKING_DEPLOYMENT_ID": me,
        "CME_TRACKING_PEERS": json.dumps(peers),
        "CME_TRACKING_LA_CONTACTS": CONTACTS,
        "CME_TRACKING_PEER_POLL_S": "0.2",
    }
    pipeline = Pipeline(kafka, db, tmp, start_smtp(), services=("referral", "tracking"), extra_env=env)
    pipeline.ports["tracking"] = port
    pipeline.env["CME_TRACKING_PORT"] = str(port)
    return pipeline


@pytest.fixture
def stacks(
    kafka_settings: Settings,
    postgres_url: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path: Path,
) -> Iterator[Stacks]:
    _, cluster = postgres_server
    if cluster is None:
        pytest.skip("two deployments need a second database on the local test cluster")
    kafka_b = kafka_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}-"})
    ensure_topics(kafka_b)
    db_b = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
    port_a, port_b = free_port(), free_port()
    made: list[Pipeline] = []
    try:
        made.append(
            _pipeline(kafka_settings, postgres_url, tmp_path / "a", "dep-a", port_a, "dep-b", port_b, "803")
        )
        made.append(_pipeline(kafka_b, db_b, tmp_path / "b", "dep-b", port_b, "dep-a", port_a, "801"))
        for pipeline in made:
            pipeline.start()
        yield Stacks(*made)
    finally:
        for pipeline in made:
            pipeline.stop()
            pipeline.smtp.stop()


def _api(pipeline: Pipeline, la: str) -> httpx.Client:
    token = issue_token(Settings(signing_key=SIGNING_KEY), f"cw-{la}", Role.CASEWORKER, la)
    return httpx.Client(
        base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _items(api: httpx.Client, status: str = "open") -> list[dict[str, Any]]:
    answer = api.get("/v1/review-items", params={"status": status})
    assert answer.status_code == 200, answer.text
    return [i for i in answer.json() if i["kind"] == "cross_la_match"]


def _counts(pipeline: Pipeline) -> tuple[int, ...]:
    tables = (
        "tracking_cross_la_links",
        "tracking_review_items",
        "tracking_peer_queries",
        "tracking_peer_outbox",
    )
    counts = [_rows(pipeline, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables]
    audit = "SELECT count(*) AS n FROM tracking_read_audit WHERE action LIKE 'cross_la_%'"
    return (*counts, _rows(pipeline, audit)[0]["n"])


def _post_signed(
    pipeline: Pipeline, path: str, body: bytes, sender: str = "dep-a", secret: str = SECRET, **kw: Any
) -> tuple[httpx.Response, dict[str, str]]:
    headers = sign(secret, "POST", path, body, sender, kw.pop("now", utcnow()))
    headers = {**headers, **kw.pop("override", {}), "Content-Type": "application/json"}
    return httpx.post(pipeline.url("tracking") + path, content=body, headers=headers, timeout=10), headers


def test_found_in_another_deployment(stacks: Stacks) -> None:
    a, b = stacks.a, stacks.b
    kid = child(71, forename="Tamsin", surname="Wolvercote", date_of_birth="2013-02-11")
    school_b = b.create_api_key("--kind", "school", "--name", "803 school", "--urn", "140001", la="803")
    unknown = sample_event_dict("whereabouts-unknown", kid=kid, on=date(2025, 11, 3), school_urn=None)
    with a.referral_client(a.team_key) as team:
        a.submit_with_retry(team, unknown)
    sought = wait_until(lambda: _resolved(a, unknown["event_id"]), timeout_s=60, what="A's child")
    # A asks B (a standing query); B does not know the child yet: it keeps the query, hashes only.
    wait_until(
        lambda: _rows(a, "SELECT 1 FROM tracking_peer_outbox WHERE kind = 'query' AND sent_at IS NOT NULL"),
        timeout_s=60,
        what="A's query taken by B",
    )
    [standing] = _rows(b, "SELECT * FROM tracking_peer_queries")
    assert (standing["peer"], standing["sought_la_code"], standing["kind"]) == ("dep-a", "801", "upn")
    assert standing["sought_state"] == "whereabouts_unknown" and standing["missing_since"].date() == date(
        2025, 11, 3
    )
    assert kid["upn"] not in json.dumps(standing, default=str)
    api_801, api_803 = _api(a, "801"), _api(b, "803")
    assert _items(api_801) == [] and _items(api_803) == []

    # A school in B's LA 803 registers the same UPN: B answers the standing query, both LAs get their task.
    registered = sample_event_dict(
        "pupil-registered", kid=kid, on=date(2025, 12, 1), la_code="803", school_urn="140001"
    )
    registered["payload"]["school_urn"] = "140001"
    with b.referral_client(school_b) as school:
        b.submit_with_retry(school, registered)
    found = wait_until(lambda: _resolved(b, registered["event_id"]), timeout_s=60, what="B's child")
    [item_803] = wait_until(lambda: _items(api_803), timeout_s=30, what="B's task")
    [item_801] = wait_until(lambda: _items(api_801), timeout_s=30, what="A's task")
    assert (item_801["child_id"], item_803["child_id"]) == (sought, found)
    assert item_801["detail"].startswith("possible location: LA 803 (pupil-registered 2025-12-01)")
    assert item_803["detail"].startswith("sought by LA 801 (whereabouts_unknown since 2025-11-03)")
    [mine] = api_801.get(f"/v1/children/{sought}", params={"reason": "peer e2e"}).json()["cross_la"]
    assert (mine["other_la_code"], mine["other_la_contact"], mine["fact_type"]) == (
        "803", "cme.team@803.test", "pupil-registered"
    )  # fmt: skip

    # Neither deployment holds the other's child, nor shows it to the other LA's caseworker.
    assert not _rows(b, "SELECT 1 FROM tracking_children WHERE child_id = :c", c=sought)
    assert not _rows(a, "SELECT 1 FROM tracking_children WHERE child_id = :c", c=found)
    assert not _rows(a, "SELECT 1 FROM tracking_timeline WHERE la_code = '803'")
    assert not _rows(b, "SELECT 1 FROM tracking_timeline WHERE la_code = '801'")
    case_a, case_b = _case(a, sought), _case(b, found)
    assert case_a is not None and case_b is not None
    for pipeline, la, child_id, case_id in (
        (a, "803", sought, case_a["case_id"]),
        (b, "801", found, case_b["case_id"]),
    ):
        with _api(pipeline, la) as other:
            assert other.get(f"/v1/children/{child_id}", params={"reason": "peek"}).status_code == 404
            assert other.get(f"/v1/cases/{case_id}", params={"reason": "peek"}).status_code == 404

    # A redelivered query (a fresh signature, the same message) and a redelivered answer add nothing.
    before = (_counts(a), _counts(b))
    [query_row] = _rows(a, "SELECT body FROM tracking_peer_outbox WHERE kind = 'query'")
    again, _ = _post_signed(b, "/v1/peer/queries", query_row["body"].encode())
    assert again.status_code == 200 and again.json()["known"] is True, again.text
    [answer_row] = _rows(b, "SELECT body FROM tracking_peer_outbox WHERE kind = 'answer'")
    again, _ = _post_signed(a, "/v1/peer/answers", answer_row["body"].encode(), sender="dep-b")
    assert again.status_code == 200 and again.json()["status"] == "known_already", again.text
    assert (_counts(a), _counts(b)) == before

    # 801 confirms: its case closes with destination 803; B's side takes the confirmation.
    confirmed = api_801.post(
        f"/v1/review-items/{item_801['review_id']}/decision",
        json={"decision": "confirm", "reason": "803's CME team confirmed the registration by phone"},
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed", confirmed.text
    closed = wait_until(
        lambda: (c := _case(a, sought)) and c["state"] == "left_area" and c,
        timeout_s=60,
        what="801's case closed",
    )
    assert (closed["outcome"], closed["outcome_ref"]) == ("other_la_accepted", "803")
    wait_until(lambda: len(_items(api_803, "confirmed")) == 1, timeout_s=30, what="B takes the confirmation")
    assert _items(api_803) == [] and _case(b, found)["state"] == "in_education"  # type: ignore[index]

    # The other order: B registers a child, then A loses the same UPN: B answers the query at once.
    mover = child(72, forename="Lowenna", surname="Penhallow", date_of_birth="2012-08-23")
    arrived = sample_event_dict(
        "pupil-registered", kid=mover, on=date(2025, 12, 1), la_code="803", school_urn="140001"
    )
    arrived["payload"]["school_urn"] = "140001"
    with b.referral_client(school_b) as school:
        b.submit_with_retry(school, arrived)
    mover_b = wait_until(lambda: _resolved(b, arrived["event_id"]), timeout_s=60, what="B's mover")
    wait_until(lambda: _case(b, mover_b), timeout_s=60, what="B's mover's case")
    gone = sample_event_dict("whereabouts-unknown", kid=mover, on=date(2025, 12, 8), school_urn=None)
    with a.referral_client(a.team_key) as team:
        a.submit_with_retry(team, gone)
    mover_a = wait_until(lambda: _resolved(a, gone["event_id"]), timeout_s=60, what="A's mover")
    [late_801] = wait_until(lambda: _items(api_801), timeout_s=60, what="A's task, the other order")
    [late_803] = _items(api_803)
    assert (late_801["child_id"], late_803["child_id"]) == (mover_a, mover_b)
    assert late_801["detail"].startswith("possible location: LA 803 (pupil-registered 2025-12-01)")
    assert late_803["detail"].startswith("sought by LA 801 (whereabouts_unknown since 2025-12-08)")

    # Refused and audited: an unknown peer, a wrong signature, a replay, a stale request, a peer speaking
    # for an LA it does not serve, a user's token instead of a signature.
    probe = {**json.loads(query_row["body"]), "digests": [{"kind": "upn", "digest": "0" * 64}]}
    body = json.dumps({**probe, "query_id": str(uuid.uuid4())}).encode()
    assert _post_signed(b, "/v1/peer/queries", body, sender="dep-x")[0].status_code == 401
    assert (
        _post_signed(b, "/v1/peer/queries", body, secret="another-secret-0123456789abcdef0123")[0].status_code
        == 401
    )
    stale = utcnow() - timedelta(minutes=10)
    assert _post_signed(b, "/v1/peer/queries", body, now=stale)[0].status_code == 401
    ok, headers = _post_signed(b, "/v1/peer/queries", body)
    assert ok.status_code == 200 and ok.json()["known"] is False, ok.text
    replay = httpx.post(b.url("tracking") + "/v1/peer/queries", content=body, headers=headers, timeout=10)
    assert replay.status_code == 401
    other_la = json.dumps({**probe, "query_id": str(uuid.uuid4()), "sought_la_code": "805"}).encode()
    assert _post_signed(b, "/v1/peer/queries", other_la)[0].status_code == 403
    assert api_803.post("/v1/peer/queries", content=body).status_code == 401
    refused = _rows(
        b,
        "SELECT subject, la_code, reason FROM tracking_read_audit WHERE action = 'peer_refused' ORDER BY id",
    )
    assert [r["reason"].split(": ", 1)[1] for r in refused] == [
        "401 unknown peer",
        "401 bad signature",
        "401 timestamp outside the window",
        "401 replayed request",
        "403 LA 805 is not served by this peer",
        "401 unknown peer",
    ]
    assert {r["subject"] for r in refused} == {"peer:dep-x", "peer:dep-a", "peer:?"}

    # Every disclosure audited in both deployments with its legal basis; nothing personal anywhere.
    audit_a = _rows(a, "SELECT action, reason FROM tracking_read_audit WHERE action LIKE 'cross_la_%'")
    audit_b = _rows(b, "SELECT action, reason FROM tracking_read_audit WHERE action LIKE 'cross_la_%'")
    assert sorted(r["action"] for r in audit_a) == sorted(
        ["cross_la_peer_query"] * 2 + ["cross_la_match"] * 2 + ["cross_la_confirm"]
    )
    assert sorted(r["action"] for r in audit_b) == sorted(["cross_la_match"] * 2 + ["cross_la_confirm"])
    assert all(LEGAL_BASIS in r["reason"] for r in audit_a + audit_b)
    personal = [
        s
        for k in (kid, mover)
        for s in (k["upn"], k["forename"], k["surname"], k["date_of_birth"], k["postcode"])
    ]
    stored = [
        json.dumps(r, default=str)
        for p in (a, b)
        for sql in (
            "SELECT * FROM tracking_peer_outbox",
            "SELECT * FROM tracking_peer_queries",
            "SELECT * FROM tracking_peer_digests",
            "SELECT * FROM tracking_read_audit",
        )
        for r in _rows(p, sql)
    ]
    for blob in stored:
        assert not [p for p in personal if p in blob], blob
    for name, log in {**a.logs(), **{f"b-{k}": v for k, v in b.logs().items()}}.items():
        assert not [p for p in personal if p in log], f"{name} logged a child's data"
