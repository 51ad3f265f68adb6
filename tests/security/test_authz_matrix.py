"""Authorisation matrix: every endpoint of every bearer-token service against every role, against no, forged
and expired credentials, and against a caller of another LA (function-level and object-level access).

The endpoint list comes from each app's own routes: an endpoint without an expectation here fails
``test_every_endpoint_has_an_expectation``, so a new endpoint cannot escape the matrix. Each service runs
in-process on the real broker and a fresh PostgreSQL database, seeded with one child (and alert) of LA 801;
a caller of LA 803 must never see anything of it: 404 for an object, nothing of it in a list.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session
from starlette.routing import Route

from shared.auth import Principal, Role, issue_token
from shared.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.integration]

LA, OTHER_LA = "801", "803"
SIGNING_KEY = "authz-matrix-signing-key-0123456789abcdef"
ALL_ROLES = tuple(Role)
CASE_READERS = frozenset({Role.CASEWORKER, Role.CME_OFFICER, Role.SOCIAL_CARE, Role.MANAGER, Role.SERVICE})
ACKNOWLEDGERS = frozenset({Role.CASEWORKER, Role.CME_OFFICER, Role.SOCIAL_CARE, Role.MANAGER})
UPLOADERS = frozenset({Role.SERVICE, Role.MANAGER, Role.CME_OFFICER})


@dataclass
class Seed:
    """The LA-801 objects the requests name, and strings that must never reach an LA-803 caller."""

    child_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    case_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    review_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # LA 801's side of a cross-LA match with an LA-803 child (issue 18): 803 has its own side, never this.
    cross_review_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    alert_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    upn: str = "A801999900001"
    surname: str = "Zephyrine"

    def secrets(self) -> list[str]:
        return [
            self.child_id,
            self.case_id,
            self.review_id,
            self.cross_review_id,
            self.alert_id,
            self.upn,
            self.surname,
        ]


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None


@dataclass(frozen=True)
class Expect:
    """Who may call an endpoint, and how another LA's caller is kept out of LA 801's data.

    roles: None = open (ops endpoints, API docs, one-time links that carry their own signed token).
    scope: "object" = another LA gets 404 for LA 801's object; "list" = another LA gets a success without
    any of LA 801's data; "own" = another LA's write is refused (4xx); "none" = nothing of a child involved.
    """

    roles: frozenset[Role] | None
    request: Callable[[Seed], Req]
    scope: str = "none"


PEER, PEER_SECRET = "dep-peer", "matrix-peer-secret-0123456789abcdef0123"


def _query(s: Seed, la: str = OTHER_LA) -> dict[str, Any]:
    """A peer's query for the seed child's UPN (as the peer hashes it), on behalf of ``la``."""
    from services.tracking.peer_auth import digest

    return {
        "query_id": str(uuid.uuid4()),
        "sought_la_code": la,
        "digests": [{"kind": "upn", "digest": digest(PEER_SECRET, "upn", s.upn)}],
        "sought_state": "whereabouts_unknown",
        "missing_since": "2025-11-03",
    }


def _get(path: str, **params: Any) -> Callable[[Seed], Req]:
    return lambda s: Req("GET", path.format(**vars(s)), params or None)


READ = {"reason": "authorisation matrix"}
# Lists of counts only: no child of either LA is named, so there is no LA-801 id to find in them.
COUNTS_ONLY = frozenset(
    {"/v1/reports/cross-la", "/v1/cross-la/status", "/v1/reports/counts", "/v1/reports/return"}
)
TODAY = {"on": datetime.now(UTC).date().isoformat()}  # the seed's facts happen now

EXPECTATIONS: dict[str, dict[tuple[str, str], Expect]] = {
    "tracking": {
        ("GET", "/v1/children/{child_id}"): Expect(
            CASE_READERS, _get("/v1/children/{child_id}", **READ), "object"
        ),
        ("GET", "/v1/cases/{case_id}"): Expect(CASE_READERS, _get("/v1/cases/{case_id}", **READ), "object"),
        ("GET", "/v1/reports/history"): Expect(CASE_READERS, _get("/v1/reports/history", **READ), "list"),
        ("GET", "/v1/reports/counts"): Expect(
            CASE_READERS, _get("/v1/reports/counts", **READ, **TODAY), "list"
        ),
        ("GET", "/v1/reports/return"): Expect(
            CASE_READERS,
            _get("/v1/reports/return", **READ, **TODAY, ehe_from="2024-09-01", ehe_to="2025-08-31"),
            "list",
        ),
        ("GET", "/v1/reports/not-in-full-time-education"): Expect(
            CASE_READERS, _get("/v1/reports/not-in-full-time-education", **READ, **TODAY), "list"
        ),
        ("GET", "/v1/reports/cross-la"): Expect(CASE_READERS, _get("/v1/reports/cross-la", **READ), "list"),
        ("GET", "/v1/cross-la/status"): Expect(CASE_READERS, _get("/v1/cross-la/status"), "list"),
        ("GET", "/v1/cases"): Expect(CASE_READERS, _get("/v1/cases", state="whereabouts_unknown"), "list"),
        ("POST", "/v1/cases/query"): Expect(
            CASE_READERS, lambda s: Req("POST", "/v1/cases/query", json={"reason": "matrix queue"}), "list"
        ),
        ("POST", "/v1/children/search"): Expect(
            CASE_READERS,
            lambda s: Req("POST", "/v1/children/search", json={"upn": s.upn, "reason": "matrix search"}),
            "list",
        ),
        ("GET", "/v1/review-items"): Expect(CASE_READERS, _get("/v1/review-items"), "list"),
        # The register of children not in school (s.436B-436G): the seed child is on LA 801's register.
        ("POST", "/v1/register/query"): Expect(
            CASE_READERS,
            lambda s: Req("POST", "/v1/register/query", json={"reason": "matrix register"}),
            "list",
        ),
        ("GET", "/v1/register/{child_id}"): Expect(
            CASE_READERS, _get("/v1/register/{child_id}", **READ), "object"
        ),
        ("POST", "/v1/review-items/{review_id}/decision"): Expect(
            CASE_READERS,
            lambda s: Req(
                "POST",
                f"/v1/review-items/{s.review_id}/decision",
                json={"decision": "not_link", "reason": "different children"},
            ),
            "object",
        ),
        ("POST", "/v1/review-items/{review_id}/undo"): Expect(
            CASE_READERS,
            lambda s: Req("POST", f"/v1/review-items/{s.review_id}/undo", json={"reason": "two children"}),
            "object",
        ),
        # Between deployments: a peer's signature is the credential; no user or service token opens them.
        ("POST", "/v1/peer/queries"): Expect(
            frozenset(), lambda s: Req("POST", "/v1/peer/queries", json=_query(s)), "peer"
        ),
        ("POST", "/v1/peer/answers"): Expect(
            frozenset(),
            lambda s: Req(
                "POST",
                "/v1/peer/answers",
                json={
                    "query_id": str(uuid.uuid4()),
                    "link_id": str(uuid.uuid4()),
                    "found_la_code": OTHER_LA,
                    "fact_type": "pupil-registered",
                    "fact_on": "2025-12-01",
                    "identifier_kind": "upn",
                },
            ),
            "peer",
        ),
        ("POST", "/v1/peer/decisions"): Expect(
            frozenset(),
            lambda s: Req(
                "POST",
                "/v1/peer/decisions",
                json={"link_id": str(uuid.uuid4()), "decision": "confirm", "decided_la_code": OTHER_LA},
            ),
            "peer",
        ),
    },
    "notify": {
        ("GET", "/v1/alerts"): Expect(ACKNOWLEDGERS, _get("/v1/alerts"), "list"),
        ("GET", "/v1/alerts/{alert_id}"): Expect(ACKNOWLEDGERS, _get("/v1/alerts/{alert_id}"), "object"),
        ("POST", "/v1/alerts/query"): Expect(
            ACKNOWLEDGERS,
            lambda s: Req("POST", "/v1/alerts/query", json={"case_ids": [s.case_id], "limit": 50}),
            "list",
        ),
        ("POST", "/v1/alerts/{alert_id}/ack"): Expect(
            ACKNOWLEDGERS, lambda s: Req("POST", f"/v1/alerts/{s.alert_id}/ack", json={}), "object"
        ),
        # One-time links: the signed token in the path is the credential (tested in test_hostile_input).
        ("GET", "/v1/ack/{token}"): Expect(None, _get("/v1/ack/not-a-valid-token")),
        ("POST", "/v1/ack/{token}"): Expect(None, lambda s: Req("POST", "/v1/ack/not-a-valid-token")),
    },
    "attendance": {
        ("POST", "/v1/attendance/marks"): Expect(
            UPLOADERS,
            lambda s: Req(
                "POST",
                "/v1/attendance/marks",
                json=[
                    {
                        "upn": s.upn,
                        "school_urn": "108000",
                        "la_code": LA,
                        "date": "2025-11-03",
                        "session": "AM",
                        "code": "N",
                    }
                ],
            ),
            "own",
        ),
    },
    "escalation": {},
}
OPEN_ROUTES = {
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers: from its routing table (included routers flattened, routes
    hidden from the schema too) and from its OpenAPI document, so neither can hide an endpoint."""
    found: set[tuple[str, str]] = set()

    def add(path: str, methods: Any) -> None:
        found.update((m, path) for m in methods or () if m not in ("HEAD", "OPTIONS"))

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI >= 0.16x: lazy included routers
        if contexts is not None:
            for ctx in contexts():
                add(ctx.path, getattr(ctx.original_route, "methods", None))
        elif isinstance(route, APIRoute | Route):
            add(route.path, route.methods)
    for path, operations in app.openapi().get("paths", {}).items():
        add(path, [m.upper() for m in operations])
    return found


# -- the apps, seeded -------------------------------------------------------------------------------------


def _settings(pg_settings: Settings) -> dict[str, Any]:
    return {**pg_settings.model_dump(), "signing_key": SIGNING_KEY}


def _tracking(pg_settings: Settings, seed: Seed) -> FastAPI:
    from services.tracking.app import create_app
    from services.tracking.models import (
        TrackingCase,
        TrackingChild,
        TrackingCrossLALink,
        TrackingIdentifier,
        TrackingPeerDigest,
        TrackingRegisterEntry,
        TrackingReviewItem,
        TrackingTimelineEntry,
    )
    from services.tracking.peer_auth import digest
    from services.tracking.settings import TrackingSettings
    from services.tracking.spells import refresh_all
    from services.tracking.stream.app import MIGRATIONS
    from shared.db import make_engine, migrate

    peers = {PEER: {"url": "http://127.0.0.1:9", "secret": PEER_SECRET, "las": [OTHER_LA]}}
    settings = TrackingSettings(
        **_settings(pg_settings), tracking_deployment_id="dep-matrix", tracking_peers=peers
    )
    migrate(settings.database_url, MIGRATIONS, "tracking")
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        session.add(
            TrackingChild(
                child_id=seed.child_id,
                la_code=LA,
                forename="Ysolde",
                surname=seed.surname,
                date_of_birth=date(2014, 3, 9),
                created_by_event_id=str(uuid.uuid4()),
            )
        )
        session.add(
            TrackingIdentifier(
                la_code=LA,
                kind="upn",
                value=seed.upn,
                child_id=seed.child_id,
                first_event_id=str(uuid.uuid4()),
            )
        )
        session.add(
            TrackingCase(
                case_id=seed.case_id, child_id=seed.child_id, la_code=LA, state="whereabouts_unknown"
            )
        )
        session.add(
            TrackingPeerDigest(
                peer=PEER,
                digest=digest(PEER_SECRET, "upn", seed.upn),
                kind="upn",
                child_id=seed.child_id,
                la_code=LA,
            )
        )
        session.add(
            TrackingTimelineEntry(
                child_id=seed.child_id,
                la_code=LA,
                event_id=str(uuid.uuid4()),
                event_type="pupil-left-roll",
                event_kind="pupil-left-roll:unknown-destination",  # the reports replay kinds into spells
                occurred_at=now,
                verdict="move",
                to_state="whereabouts_unknown",
            )
        )
        session.add(
            TrackingReviewItem(
                review_id=seed.review_id,
                la_code=LA,
                kind="possible_duplicate",
                child_id=seed.child_id,
                other_child_id=str(uuid.uuid4()),
                event_id=str(uuid.uuid4()),
            )
        )
        # A cross-LA match of the seed child with a child of LA 803: each LA has its own side.
        found_child, found_review, fact_id = (str(uuid.uuid4()) for _ in range(3))
        session.add(
            TrackingCrossLALink(
                link_id=str(uuid.uuid4()),
                sought_la_code=LA,
                sought_child_id=seed.child_id,
                sought_state="whereabouts_unknown",
                missing_since=now - timedelta(days=30),
                found_la_code=OTHER_LA,
                found_child_id=found_child,
                event_id=fact_id,
                fact_type="pupil-registered",
                fact_occurred_at=now,
                match="exact",
                identifier_kind="upn",
                sought_review_id=seed.cross_review_id,
                found_review_id=found_review,
            )
        )
        for review_id, la_code, child_id in (
            (seed.cross_review_id, LA, seed.child_id),
            (found_review, OTHER_LA, found_child),
        ):
            session.add(
                TrackingReviewItem(
                    review_id=review_id,
                    la_code=la_code,
                    kind="cross_la_match",
                    child_id=child_id,
                    event_id=fact_id,
                    detail="cross-LA match",
                )
            )
        session.add(
            TrackingRegisterEntry(
                child_id=seed.child_id,
                la_code=LA,
                on_register=True,
                category="missing_education",
                education="unknown",
                since=now,
            )
        )
        session.flush()
        refresh_all(session)  # the case's spells, as projection writes them (the reports count these)
        session.commit()
    engine.dispose()
    return create_app(settings)


def _notify(pg_settings: Settings, seed: Seed) -> FastAPI:
    from services.notify.app import create_app, prepare_database
    from services.notify.models import NotifyAlert
    from services.notify.settings import NotifySettings

    settings = NotifySettings(**_settings(pg_settings))
    engine = prepare_database(settings)
    with Session(engine) as session:
        session.add(
            NotifyAlert(
                alert_id=seed.alert_id,
                escalation_id=str(uuid.uuid4()),
                step_index=0,
                la_code=LA,
                child_id=seed.child_id,
                case_id=seed.case_id,
                level="caseworker",
                rule_id="r",
                reason_code="r",
                case_state="whereabouts_unknown",
                source_event_id=str(uuid.uuid4()),
                source_topic="t",
                source_partition=0,
                source_offset=0,
                escalated_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
        session.commit()
    return create_app(settings, engine=engine, run_worker=False)


def _attendance(pg_settings: Settings, seed: Seed) -> FastAPI:
    from services.attendance.app import create_app

    return create_app(Settings(**_settings(pg_settings)))


def _escalation(pg_settings: Settings, seed: Seed) -> FastAPI:
    from services.escalation.app import create_app
    from services.escalation.settings import EscalationSettings

    return create_app(EscalationSettings(**_settings(pg_settings)), run_worker=False)


APPS: dict[str, Callable[[Settings, Seed], FastAPI]] = {
    "tracking": _tracking,
    "notify": _notify,
    "attendance": _attendance,
    "escalation": _escalation,
}


@pytest.fixture(params=sorted(APPS))
def service(request: pytest.FixtureRequest, pg_settings: Settings) -> Iterator[tuple[str, TestClient, Seed]]:
    seed = Seed()
    app = APPS[request.param](pg_settings, seed)
    with TestClient(app) as client:  # runs the lifespan (migrations, producers)
        yield request.param, client, seed


def _token(role: Role, la: str = LA, ttl_s: int = 3600) -> str:
    return issue_token(Settings(signing_key=SIGNING_KEY), f"matrix-{role}", role, la, ttl_s=ttl_s)


def _forged(role: Role) -> str:
    """A well-formed token signed with another key: claims anyone could write."""
    return issue_token(Settings(signing_key="an-attacker-key-0123456789abcdef"), "mallory", role, LA)


def _web(la: str) -> str:
    """The web's service token for an LA, as the web mints it for the intake."""
    return issue_token(Settings(signing_key=SIGNING_KEY), "cme-web", Role.SERVICE, la, ttl_s=120)


def _forged_web(la: str) -> str:
    return issue_token(Settings(signing_key="an-attacker-key-0123456789abcdef"), "cme-web", Role.SERVICE, la)


def _call(client: TestClient, req: Req, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.request(req.method, req.path, params=req.params, json=req.json, headers=headers)


def test_every_endpoint_has_an_expectation(service: tuple[str, TestClient, Seed]) -> None:
    name, client, _ = service
    routes = routes_of(client.app)  # type: ignore[arg-type]
    missing = routes - set(EXPECTATIONS[name]) - OPEN_ROUTES
    assert not missing, f"{name}: endpoints with no authorisation expectation: {sorted(missing)}"
    stale = set(EXPECTATIONS[name]) - routes
    assert not stale, f"{name}: expectations for endpoints that no longer exist: {sorted(stale)}"


def test_open_routes_hold_no_personal_data(service: tuple[str, TestClient, Seed]) -> None:
    _, client, seed = service
    for method, path in OPEN_ROUTES & routes_of(client.app):  # type: ignore[arg-type]
        response = client.request(method, path)
        assert response.status_code < 500, (path, response.status_code)
        for secret in seed.secrets():
            assert secret not in response.text, f"{path} shows {secret!r}"


def test_matrix(service: tuple[str, TestClient, Seed]) -> None:
    name, client, seed = service
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    for (method, path), rule in sorted(EXPECTATIONS[name].items()):
        req = rule.request(seed)
        label = f"{method} {path}"
        if rule.roles is None:
            r = _call(client, req, None)
            expect(r.status_code < 500, f"{label} open: {r.status_code}")
            continue
        if rule.scope == "peer":  # signed by a peer deployment: any token, of any role or LA, is 401
            tokens = [None, "garbage", _forged(Role.ADMIN)] + [
                _token(role, la) for role in ALL_ROLES for la in (LA, OTHER_LA)
            ]
            for token in tokens:
                r = _call(client, req, token)
                expect(r.status_code == 401, f"{label} with a user token: {r.status_code}")
                expect(not [x for x in seed.secrets() if x in r.text], f"{label} shows LA 801's data")
            continue
        # No credentials, forged and expired credentials: 401, whatever the role claimed.
        for token, what in (
            (None, "no token"),
            ("garbage", "garbage token"),
            (_forged(Role.ADMIN), "forged token"),
            (_token(Role.MANAGER, ttl_s=-10), "expired"),
        ):
            r = _call(client, req, token)
            expect(r.status_code == 401, f"{label} {what}: {r.status_code}")
        # Function level: a role outside the endpoint's set is refused; a role inside is let through.
        for role in ALL_ROLES:
            if role in rule.roles:
                continue
            r = _call(client, req, _token(role))
            expect(r.status_code == 403, f"{label} as {role}: {r.status_code} (want 403)")
        # Object level: an allowed role of another LA never reaches LA 801's data.
        for role in sorted(rule.roles):
            r = _call(client, req, _token(role, OTHER_LA))
            leaked = [s for s in seed.secrets() if s in r.text]
            expect(not leaked, f"{label} as {role} of LA {OTHER_LA} sees {leaked}")
            if rule.scope == "object":
                expect(
                    r.status_code == 404, f"{label} as {role} of LA {OTHER_LA}: {r.status_code} (want 404)"
                )
            elif rule.scope == "list":
                expect(r.status_code == 200, f"{label} as {role} of LA {OTHER_LA}: {r.status_code}")
            elif rule.scope == "own":
                expect(400 <= r.status_code < 500, f"{label} as {role} of LA {OTHER_LA}: {r.status_code}")
        # Finally the allowed roles of the right LA (after the refusals: some of these calls change state).
        for role in sorted(rule.roles):
            r = _call(client, req, _token(role))
            expect(
                r.status_code not in (401, 403, 404) and r.status_code < 500,
                f"{label} as {role}: {r.status_code} {r.text[:200]}",
            )
            listed = method == "GET" or path in ("/v1/cases/query", "/v1/alerts/query")
            if (
                rule.scope == "list"
                and r.status_code == 200
                and listed
                and "review" not in path
                and path not in COUNTS_ONLY
            ):
                expect(
                    any(s in r.text for s in (seed.child_id, seed.alert_id, seed.case_id)),
                    f"{label} as {role}: LA 801's own data missing",
                )
    assert not problems, "\n".join(problems)


def test_peer_interface(pg_settings: Settings) -> None:
    """The LA-to-LA interface, signed as the peer: it reaches nothing of LA 801 (a child sought here is not
    "known" to a peer; it may not speak for 801); another key, another peer or a replay is 401; a message
    about a query or link it never had is 404; every refusal is audited."""
    import json

    from sqlalchemy import text

    from services.tracking.peer_auth import sign
    from shared.db import make_engine
    from shared.events.envelope import utcnow

    seed = Seed()
    app = _tracking(pg_settings, seed)

    def post(client: TestClient, path: str, body: dict[str, Any], **kw: Any) -> Any:
        raw = json.dumps(body).encode()
        headers = kw.get("headers") or sign(
            kw.get("secret", PEER_SECRET), "POST", path, raw, kw.get("peer", PEER), utcnow()
        )
        return client.post(
            path, content=raw, headers={**headers, "Content-Type": "application/json"}
        ), headers

    with TestClient(app) as client:
        query = _query(seed)
        known, headers = post(client, "/v1/peer/queries", query)
        assert known.status_code == 200 and known.json()["known"] is False, known.text
        assert not [x for x in seed.secrets() if x in known.text]
        assert post(client, "/v1/peer/queries", query, headers=headers)[0].status_code == 401  # replay
        assert post(client, "/v1/peer/queries", _query(seed, LA))[0].status_code == 403
        other_key = "another-secret-0123456789abcdef0123456"
        assert post(client, "/v1/peer/queries", _query(seed), secret=other_key)[0].status_code == 401
        assert post(client, "/v1/peer/queries", _query(seed), peer="dep-nobody")[0].status_code == 401
        answer = EXPECTATIONS["tracking"][("POST", "/v1/peer/answers")].request(seed).json
        assert post(client, "/v1/peer/answers", answer)[0].status_code == 404
        decision = EXPECTATIONS["tracking"][("POST", "/v1/peer/decisions")].request(seed).json
        assert post(client, "/v1/peer/decisions", decision)[0].status_code == 404
    engine = make_engine(pg_settings.database_url)
    with engine.connect() as conn:
        refused = conn.execute(
            text("SELECT subject, reason FROM tracking_read_audit WHERE action = 'peer_refused' ORDER BY id")
        ).all()
    engine.dispose()
    assert [(subject, reason.split(": ", 1)[1]) for subject, reason in refused] == [
        ("peer:dep-peer", "401 replayed request"),
        ("peer:dep-peer", f"403 LA {LA} is not served by this peer"),
        ("peer:dep-peer", "401 bad signature"),
        ("peer:dep-nobody", "401 unknown peer"),
    ]


def test_principal_la_is_three_digits() -> None:
    """An LA code is exactly three digits: no wildcard or empty LA can be signed into a token."""
    for bad in ("", "*", "80", "8011", "80a"):
        with pytest.raises(ValueError):
            Principal(sub="x", role=Role.MANAGER, la_code=bad, exp=0)


# -- the referral service: API keys, not bearer tokens ---------------------------------------------------

# Every referral endpoint and who may call it: "any" client of the LA, or "school" clients only.
REFERRAL: dict[tuple[str, str], str] = {
    ("POST", "/v1/events"): "any",
    ("POST", "/v1/events/batch"): "any",
    ("POST", "/v1/referrals"): "any",
    ("GET", "/v1/events/{event_id}"): "any",
    ("POST", "/v1/events/{event_id}/correction"): "any",  # a client's own leaver (404 for anyone else's)
    ("POST", "/v1/imports/leavers-csv"): "school",
    ("POST", "/v1/imports/ctf"): "school",
}


def test_referral_api_key_matrix(pg_settings: Settings) -> None:
    from devtools.samples import sample_event_dict
    from services.referral.app import create_app
    from services.referral.clients import create_client
    from services.referral.models import ClientKind

    app = create_app(pg_settings.model_copy(update={"signing_key": SecretStr(SIGNING_KEY)}), background=False)
    routes = routes_of(app)
    missing = routes - set(REFERRAL) - OPEN_ROUTES
    assert not missing, f"referral endpoints with no expectation: {sorted(missing)}"
    engine = app.state.referral.engine

    def key(kind: ClientKind, la: str, urn: str | None = None) -> str:
        return create_client(
            engine, kind=kind, name=f"{kind}-{la}", la_code=la, school_urn=urn, rate_per_s=1000, burst=1000
        )[1]

    school, agency = key(ClientKind.SCHOOL, LA, "108000"), key(ClientKind.AGENCY, LA)
    other_la = key(ClientKind.AGENCY, OTHER_LA)
    problems: list[str] = []
    with TestClient(app) as client:
        event = sample_event_dict("whereabouts-unknown", la_code=LA, school_urn=None)
        accepted = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {agency}"})
        assert accepted.status_code == 202, accepted.text
        bodies: dict[str, Any] = {"/v1/events": event, "/v1/events/batch": [event], "/v1/referrals": {}}
        for (method, path), who in sorted(REFERRAL.items()):
            url = path.replace("{event_id}", event["event_id"])
            send = {"json": bodies.get(path)} if method == "POST" else {}
            for credential, what in (
                (None, "no key"),
                ("cme_garbage.key", "garbage key"),
                (_token(Role.ADMIN), "a staff bearer token"),
                (_token(Role.CASEWORKER), "a caseworker's bearer token"),
                (_token(Role.SERVICE), "another service's token"),
                (_forged_web(LA), "a forged web token"),
            ):
                headers = {"Authorization": f"Bearer {credential}"} if credential else {}
                r = client.request(method, url, headers=headers, **send)
                if r.status_code != 401:
                    problems.append(f"{method} {path} with {what}: {r.status_code}")
            # The web's service token (facts caseworkers record in the web) is a client of its LA.
            r = client.request(method, url, headers={"Authorization": f"Bearer {_web(LA)}"}, **send)
            if who == "school" and r.status_code != 403:
                problems.append(f"{method} {path} as the web: {r.status_code} (school files only)")
            if who == "any" and r.status_code in (401, 403):
                problems.append(f"{method} {path} as the web of the LA: {r.status_code}")
            r = client.request(method, url, headers={"Authorization": f"Bearer {agency}"}, **send)
            if who == "school" and r.status_code != 403:
                problems.append(f"{method} {path} as an agency: {r.status_code} (school files only)")
            if who == "any" and r.status_code in (401, 403):
                problems.append(f"{method} {path} as an agency of the LA: {r.status_code}")
        # Object level: another LA's client learns nothing about LA 801's event, not even that it exists.
        r = client.get(f"/v1/events/{event['event_id']}", headers={"Authorization": f"Bearer {other_la}"})
        if r.status_code != 404:
            problems.append(f"event status for another LA's client: {r.status_code}")
        # The web of another LA can neither see LA 801's events nor submit facts for LA 801's children.
        r = client.get(
            f"/v1/events/{event['event_id']}", headers={"Authorization": f"Bearer {_web(OTHER_LA)}"}
        )
        if r.status_code != 404:
            problems.append(f"event status for another LA's web: {r.status_code}")
        mine = sample_event_dict("whereabouts-unknown", la_code=LA, school_urn=None)
        r = client.post("/v1/events", json=mine, headers={"Authorization": f"Bearer {_web(OTHER_LA)}"})
        if r.status_code not in (403, 422):
            problems.append(f"the web of LA {OTHER_LA} submitting for LA {LA}: {r.status_code}")
        # An event about another LA's child is refused at the door (the key fixes the LA).
        foreign = sample_event_dict("whereabouts-unknown", la_code=OTHER_LA, school_urn=None)
        r = client.post("/v1/events", json=foreign, headers={"Authorization": f"Bearer {school}"})
        if r.status_code not in (403, 422):
            problems.append(f"an LA {LA} school submitting for LA {OTHER_LA}: {r.status_code}")
    assert not problems, "\n".join(problems)


# -- the web service: sessions, not bearer headers ---------------------------------------------------------

# Routes anybody may reach: the landing redirect and sign-in (plus OPEN_ROUTES and static files).
WEB_PUBLIC = {("GET", "/"), ("GET", "/sign-in"), ("POST", "/sign-in")}


def test_web_refuses_anonymous_and_forged_sessions(tmp_path: Path) -> None:
    """Function level for the web UI: every page and form needs a real session. Without one, or with a
    cookie holding a forged or expired token, the answer is the sign-in redirect or a refusal, never the
    page. (Per-role checks of the web pages are the web service's own tests.)"""
    from services.web.app import create_app
    from services.web.settings import WebSettings

    settings = WebSettings(
        database_url=f"sqlite:///{tmp_path / 'web.db'}", signing_key=SIGNING_KEY, web_lag_interval_s=0,
        data_dir=tmp_path,
    )  # fmt: skip
    app = create_app(settings)
    routes = {(m, p) for m, p in routes_of(app) if not p.startswith("/static")}
    protected = sorted(routes - WEB_PUBLIC - OPEN_ROUTES)
    assert protected, "no web routes found"
    forged = issue_token(Settings(signing_key="an-attacker-key-0123456789abcdef"), "m", Role.ADMIN, LA)
    expired = _token(Role.MANAGER, ttl_s=-10)
    problems: list[str] = []
    with TestClient(app, follow_redirects=False) as client:
        for method, path in protected:
            url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            for cookie in (None, forged, expired, "not-a-token"):
                client.cookies.clear()
                if cookie:
                    client.cookies.set("cme_session", cookie)
                r = client.request(
                    method, url, data={"csrf_token": "x", "reason": "probe"} if method == "POST" else None
                )
                to_sign_in = r.status_code in (302, 303, 307) and "/sign-in" in r.headers.get("location", "")
                if not (to_sign_in or r.status_code in (401, 403)):
                    problems.append(f"{method} {path} with session {cookie and cookie[:8]}: {r.status_code}")
    assert not problems, "\n".join(problems)
