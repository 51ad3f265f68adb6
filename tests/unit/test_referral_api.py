"""The referral API without a broker: authentication and authorisation, idempotency, limits, atomicity."""

from __future__ import annotations

import io
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, col, func, select

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import create_app
from services.referral.clients import create_client, list_clients, revoke_client, rotate_key
from services.referral.keycache import KEY_CACHE_TTL_S
from services.referral.main import main as cli_main
from services.referral.models import ClientKind, ReferralOutbox, Submission
from shared.db import make_engine
from shared.settings import Settings, get_settings


@dataclass
class Api:
    http: httpx.AsyncClient
    app: Any
    keys: dict[str, str]
    ids: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def count(self, model: Any, event_id: str | None = None) -> int:
        with Session(self.app.state.referral.engine) as session:
            stmt = select(func.count()).select_from(model)
            if event_id:
                stmt = stmt.where(col(model.event_id) == event_id)
            return int(session.exec(stmt).one())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'referral.db'}", kafka_bootstrap="127.0.0.1:1")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings, background=False)
    engine = app.state.referral.engine
    keys: dict[str, str] = {}
    ids: dict[str, str] = {}
    for who, kind, la, urn, rate in (
        ("school", ClientKind.SCHOOL, DEMO_LA, DEMO_SCHOOL_URN, 1000.0),
        ("other_school", ClientKind.SCHOOL, DEMO_LA, "108001", 1000.0),
        ("agency", ClientKind.AGENCY, DEMO_LA, None, 1000.0),
        ("other_la", ClientKind.AGENCY, "803", None, 1000.0),
        ("slow", ClientKind.AGENCY, DEMO_LA, None, 0.5),
    ):
        client, key = create_client(
            engine,
            kind=kind,
            name=who,
            la_code=la,
            school_urn=urn,
            rate_per_s=rate,
            burst=2 if who == "slow" else 1000,
        )
        keys[who], ids[who] = key, client.id
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://referral") as http:
        yield Api(http, app, keys, ids)


def leaver(**kwargs: Any) -> dict[str, Any]:
    return sample_event_dict("pupil-left-roll", **kwargs)


# --- authentication ---------------------------------------------------------------------------------------


async def test_missing_key_is_401(api: Api) -> None:
    r = await api.http.post("/v1/events", json=leaver())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["errors"][0] == {
        "field": "Authorization",
        "rule": "api_key_required",
        "message": "send your API key",
    }


@pytest.mark.parametrize("token", ["nonsense", "cmek_deadbeef_secret", "cmek__", "Basic abc"])
async def test_invalid_key_is_401(api: Api, token: str) -> None:
    r = await api.http.post("/v1/events", json=leaver(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["errors"][0]["rule"] == "api_key_invalid"


async def test_right_key_id_with_wrong_secret_is_401(api: Api) -> None:
    key_id = api.keys["school"].split("_")[1]
    r = await api.http.post(
        "/v1/events", json=leaver(), headers={"Authorization": f"Bearer cmek_{key_id}_guess"}
    )
    assert r.status_code == 401


def key_cache_expired(api: Api) -> None:
    """Move the API key cache's clock past its lifetime: what happens KEY_CACHE_TTL_S seconds later."""
    cache = api.app.state.referral.clients
    cache.clock = lambda: time.monotonic() + KEY_CACHE_TTL_S


async def test_revoked_key_is_401_within_the_key_cache_lifetime(api: Api) -> None:
    assert (await api.http.post("/v1/events", json=leaver(), headers=api.auth("school"))).status_code == 202
    assert revoke_client(api.app.state.referral.engine, api.ids["school"])
    key_cache_expired(api)
    r = await api.http.post("/v1/events", json=leaver(), headers=api.auth("school"))
    assert r.status_code == 401 and r.json()["errors"][0]["rule"] == "api_key_invalid"


async def test_rotated_key_replaces_the_old_one(api: Api) -> None:
    assert (await api.http.post("/v1/events", json=leaver(), headers=api.auth("school"))).status_code == 202
    new_key = rotate_key(api.app.state.referral.engine, api.ids["school"])
    key_cache_expired(api)
    assert (await api.http.post("/v1/events", json=leaver(), headers=api.auth("school"))).status_code == 401
    r = await api.http.post("/v1/events", json=leaver(), headers={"Authorization": f"Bearer {new_key}"})
    assert r.status_code == 202


async def test_only_the_key_hash_is_stored(api: Api) -> None:
    secret = api.keys["school"].split("_", 2)[2]
    with Session(api.app.state.referral.engine) as session:
        dump = str(session.exec(text("SELECT * FROM referral_api_clients")).all())  # type: ignore[call-overload]
    assert secret not in dump


# --- authorisation ----------------------------------------------------------------------------------------


async def test_school_cannot_submit_for_another_school(api: Api) -> None:
    r = await api.http.post("/v1/events", json=leaver(), headers=api.auth("other_school"))
    assert r.status_code == 403
    assert {e["rule"] for e in r.json()["errors"]} == {"client_school"}
    assert api.count(ReferralOutbox) == 0


async def test_agency_cannot_submit_for_another_la(api: Api) -> None:
    event = sample_event_dict("referral-received", school_urn=None)
    r = await api.http.post("/v1/events", json=event, headers=api.auth("other_la"))
    assert r.status_code == 403 and r.json()["errors"][0] == {
        "field": "source.la_code",
        "rule": "client_la",
        "message": "source.la_code is not this client's LA",
    }
    ok = await api.http.post("/v1/events", json=event, headers=api.auth("agency"))
    assert ok.status_code == 202


async def test_a_client_sees_only_its_own_events(api: Api) -> None:
    event = leaver()
    await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    own = await api.http.get(f"/v1/events/{event['event_id']}", headers=api.auth("school"))
    assert own.status_code == 200 and own.json()["status"] == "accepted"
    for who in ("other_school", "agency"):
        r = await api.http.get(f"/v1/events/{event['event_id']}", headers=api.auth(who))
        assert r.status_code == 404


# --- validation -------------------------------------------------------------------------------------------


async def test_rejection_names_field_and_rule_and_publishes_nothing(api: Api) -> None:
    event = leaver()
    event["payload"]["leaving_date"] = "2999-01-01"
    r = await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    assert r.status_code == 422
    assert r.json() == {
        "errors": [
            {
                "field": "payload.leaving_date",
                "rule": "not_in_future",
                "message": "leaving_date is after today",
            }
        ]
    }
    assert api.count(ReferralOutbox) == 0 and api.count(Submission) == 0


async def test_body_that_is_not_json_is_422(api: Api) -> None:
    r = await api.http.post("/v1/events", content=b"{not json", headers=api.auth("school"))
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "json_invalid"


# --- idempotency ------------------------------------------------------------------------------------------


async def test_retry_returns_the_first_result_and_queues_once(api: Api) -> None:
    event = leaver()
    first = await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    again = await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() and first.json()["event_id"] == event["event_id"]
    assert api.count(ReferralOutbox, event["event_id"]) == 1


async def test_same_event_id_with_a_different_body_is_409(api: Api) -> None:
    event = leaver()
    await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    changed = leaver(event_id=uuid.UUID(event["event_id"]))
    changed["payload"]["deletion_ground"] = "f"
    r = await api.http.post("/v1/events", json=changed, headers=api.auth("school"))
    assert r.status_code == 409 and r.json()["errors"][0]["rule"] == "event_id_reused"
    assert api.count(ReferralOutbox) == 1


async def test_another_clients_event_id_is_409(api: Api) -> None:
    event = sample_event_dict("referral-received", school_urn=None)
    await api.http.post("/v1/events", json=event, headers=api.auth("agency"))
    other = sample_event_dict("pupil-left-roll", event_id=uuid.UUID(event["event_id"]))
    r = await api.http.post("/v1/events", json=other, headers=api.auth("school"))
    assert r.status_code == 409


async def test_batch_reports_each_item_and_deduplicates(api: Api) -> None:
    good, bad = leaver(), leaver()
    bad["payload"]["child"]["date_of_birth"] = "1990-01-01"
    r = await api.http.post(
        "/v1/events/batch", json={"events": [good, bad, good]}, headers=api.auth("school")
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 1)
    assert [x["outcome"] for x in body["results"]] == ["accepted", "rejected", "duplicate"]
    assert body["results"][1]["errors"][0]["field"] == "payload.child.date_of_birth"
    assert api.count(ReferralOutbox) == 1


async def test_batch_shape_is_checked(api: Api) -> None:
    too_many = {"events": [leaver() for _ in range(501)]}
    assert (
        await api.http.post("/v1/events/batch", json=too_many, headers=api.auth("school"))
    ).status_code == 422
    assert (
        await api.http.post("/v1/events/batch", json=[leaver()], headers=api.auth("school"))
    ).status_code == 422


async def test_referral_with_idempotency_key_is_one_event(api: Api) -> None:
    body = {
        "child": {"forename": "Sam", "surname": "Example", "date_of_birth": "2015-05-01"},
        "referrer_type": "member_of_public",
        "concern": "Not seen at school since the summer.",
    }
    headers = {**api.auth("agency"), "Idempotency-Key": "web-form-4411"}
    first = await api.http.post("/v1/referrals", json=body, headers=headers)
    again = await api.http.post("/v1/referrals", json=body, headers=headers)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert api.count(ReferralOutbox) == 1
    changed = await api.http.post("/v1/referrals", json={**body, "concern": "Other"}, headers=headers)
    assert changed.status_code == 409
    other_key = await api.http.post(
        "/v1/referrals", json=body, headers={**headers, "Idempotency-Key": "web-form-4412"}
    )
    assert other_key.status_code == 202 and other_key.json()["event_id"] != first.json()["event_id"]


async def test_referral_child_outside_school_age_is_422(api: Api) -> None:
    body = {
        "child": {"surname": "Example", "date_of_birth": "1980-01-01"},
        "referrer_type": "police",
        "concern": "x",
    }
    r = await api.http.post("/v1/referrals", json=body, headers=api.auth("agency"))
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "school_age"


async def test_referral_body_errors_have_the_service_shape(api: Api) -> None:
    r = await api.http.post("/v1/referrals", json={"child": {}, "concern": "x"}, headers=api.auth("agency"))
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert "referrer_type" in fields and all(
        set(e) == {"field", "rule", "message"} for e in r.json()["errors"]
    )


async def test_processed_status_carries_the_child(api: Api) -> None:
    event = leaver()
    await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    child_id = str(uuid.uuid4())
    assert api.app.state.referral.intake.mark_processed({event["event_id"]: child_id}) == 1
    r = await api.http.get(f"/v1/events/{event['event_id']}", headers=api.auth("school"))
    assert r.json()["status"] == "processed" and r.json()["child_id"] == child_id


# --- limits -----------------------------------------------------------------------------------------------


async def test_rate_limit_is_429_with_retry_after(api: Api) -> None:
    event = sample_event_dict("referral-received", school_urn=None)
    codes = [
        (await api.http.post("/v1/events", json=event, headers=api.auth("slow"))).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]
    r = await api.http.post("/v1/events", json=event, headers=api.auth("slow"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # other clients have their own bucket
    assert (await api.http.post("/v1/events", json=leaver(), headers=api.auth("school"))).status_code == 202


async def test_body_over_the_limit_is_413(api: Api) -> None:
    big = b'{"pad": "' + b"x" * 300_000 + b'"}'
    r = await api.http.post("/v1/events", content=big, headers=api.auth("school"))
    assert r.status_code == 413 and r.json()["errors"][0]["rule"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 10_000

    r = await api.http.post("/v1/events", content=chunks(), headers=api.auth("school"))
    assert r.status_code == 413


# --- durability -------------------------------------------------------------------------------------------


async def test_database_failure_is_503_and_nothing_is_half_written(api: Api) -> None:
    engine = api.app.state.referral.engine
    with engine.begin() as conn:  # the outbox insert will fail after the submission insert
        conn.execute(text("ALTER TABLE referral_outbox RENAME TO referral_outbox_away"))
    event = leaver()
    r = await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["errors"][0]["rule"] == "database_unavailable"
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE referral_outbox_away RENAME TO referral_outbox"))
    assert api.count(Submission, event["event_id"]) == 0  # rolled back with the failed outbox row
    retry = await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    assert retry.status_code == 202 and api.count(ReferralOutbox, event["event_id"]) == 1


async def test_database_unreachable_is_503(api: Api) -> None:
    state = api.app.state.referral
    good = state.engine
    state.engine = state.intake.engine = make_engine(
        "postgresql://nobody@127.0.0.1:1/none", pool_pre_ping=False
    )
    try:
        r = await api.http.post("/v1/events", json=leaver(), headers=api.auth("school"))
        assert r.status_code == 503 and "retry-after" in r.headers
    finally:
        state.engine = state.intake.engine = good


# --- observability ----------------------------------------------------------------------------------------


async def test_metrics_and_logs_carry_no_personal_data(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.logs import configure_logging

    # The log configuration keeps the stream it is given: give it one that outlives this test.
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("referral-test")
    event = leaver()
    await api.http.post("/v1/events", json=event, headers=api.auth("school"))
    bad = leaver()
    bad["payload"]["child"]["date_of_birth"] = "1990-01-01"
    await api.http.post("/v1/events", json=bad, headers=api.auth("school"))
    metrics = (await api.http.get("/metrics")).text
    assert 'cme_referral_events_accepted_total{event_type="pupil-left-roll"}' in metrics
    assert 'cme_referral_events_rejected_total{reason="school_age"}' in metrics
    logs = stream.getvalue()
    assert "events_submitted" in logs
    for personal in (event["payload"]["child"]["upn"], "Example", "2014-03-01", "1990-01-01"):
        assert personal not in metrics and personal not in logs


async def test_openapi_documents_the_v1_api(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    assert {
        "/v1/events",
        "/v1/events/batch",
        "/v1/referrals",
        "/v1/events/{event_id}",
        "/v1/imports/ctf",
    } <= set(spec["paths"])
    assert (
        "InboundEvent" in spec["components"]["schemas"] and "PupilLeftRoll" in spec["components"]["schemas"]
    )
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # every /v1 operation names the key (their one dependency reads it itself: services.referral.openapi)
    operations = [op for path, ops in spec["paths"].items() if path.startswith("/v1/") for op in ops.values()]
    assert len(operations) == 7 and all(op["security"] == [{"HTTPBearer": []}] for op in operations)


def _validator(spec: dict[str, Any], name: str) -> Any:
    """A JSON Schema validator for one component of the OpenAPI document (its $refs resolved in place)."""
    import jsonschema  # schemathesis' dependency

    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_openapi_states_the_identity_rule_and_identifier_shapes(api: Api) -> None:
    """The rule the code enforces (a UPN, ULN, NHS number or LA id, else a surname and date of birth) is in
    the schema, so generated clients and fuzzers know it; so are the identifiers' shapes."""
    spec = (await api.http.get("/openapi.json")).json()
    referral = _validator(spec, "ReferralRequest")
    base = {"referrer_type": "health", "concern": "not at school"}
    for child in ({}, {"forename": "Alex"}, {"surname": "Example"}, {"upn": None, "surname": "Example"}):
        assert not referral.is_valid({**base, "child": child}), child
        r = await api.http.post("/v1/referrals", json={**base, "child": child}, headers=api.auth("agency"))
        assert r.status_code == 422, child  # the service agrees with its schema
    for child in (
        {"upn": "B801200005001"},
        {"uln": "9276308686"},
        {"nhs_number": "943 476 5919"},
        {"la_child_id": "C-1"},
        {"surname": "Example", "date_of_birth": "2014-03-01"},
    ):
        assert referral.is_valid({**base, "child": child}), child
    event = _validator(spec, "InboundEvent")
    shapes = leaver()
    shapes["payload"]["child"]["upn"] = "B80120000500"  # 12 characters
    assert not event.is_valid(shapes)
    shapes = leaver()
    shapes["payload"]["school_urn"] = "12345"
    assert not event.is_valid(shapes)
    assert event.is_valid(leaver())


async def test_openapi_links_an_accepted_event_to_its_status(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    accepted = spec["paths"]["/v1/events"]["post"]["responses"]["202"]
    assert accepted["links"]["EventStatus"]["operationId"] == "event_status"
    assert spec["paths"]["/v1/events/{event_id}"]["get"]["operationId"] == "event_status"


# --- correcting a leaver's destination ------------------------------------------------------------------

TO_HILLSIDE: dict[str, Any] = {
    "destination": {"known": True, "school_urn": "108001", "la_code": "801"},
    "deletion_ground": "a",
}


def outbox_event(api: Api, event_id: str) -> dict[str, Any]:
    import orjson

    with Session(api.app.state.referral.engine) as session:
        value = session.exec(select(ReferralOutbox.value).where(ReferralOutbox.event_id == event_id)).one()
    return dict(orjson.loads(value))


async def test_a_leavers_destination_is_corrected_by_a_new_event_naming_it(api: Api) -> None:
    school = api.auth("school")
    original = leaver()
    assert (await api.http.post("/v1/events", json=original, headers=school)).status_code == 202
    # Resending it with the new destination is a conflict: the event_id names the first version...
    resent = {**original, "payload": {**original["payload"], **TO_HILLSIDE}}
    conflict = await api.http.post("/v1/events", json=resent, headers=school)
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["rule"] == "event_id_reused"
    # ...the correction is a new event that names it.
    r = await api.http.post(f"/v1/events/{original['event_id']}/correction", json=TO_HILLSIDE, headers=school)
    assert r.status_code == 202, r.text
    correction_id = r.json()["event_id"]
    assert correction_id != original["event_id"]
    corrected = outbox_event(api, correction_id)
    assert corrected["payload"]["corrects_event_id"] == original["event_id"]
    assert corrected["payload"]["destination"] == {**TO_HILLSIDE["destination"], "ctf_destination": None,
                                                   "country": None, "school_estab": None}  # fmt: skip
    assert corrected["payload"]["deletion_ground"] == "a"
    assert corrected["payload"]["child"] == outbox_event(api, original["event_id"])["payload"]["child"]
    assert corrected["occurred_at"] == outbox_event(api, original["event_id"])["occurred_at"]
    # A retry of the same correction is the same event; another correction of the original is refused.
    again = await api.http.post(
        f"/v1/events/{original['event_id']}/correction", json=TO_HILLSIDE, headers=school
    )
    assert again.status_code == 202 and again.json()["event_id"] == correction_id
    assert api.count(ReferralOutbox) == 2
    other = {"destination": {"known": False, "ctf_destination": "MMMMMMM"}, "deletion_ground": "n"}
    twice = await api.http.post(f"/v1/events/{original['event_id']}/correction", json=other, headers=school)
    assert twice.status_code == 409 and twice.json()["errors"][0]["rule"] == "already_corrected"
    assert correction_id in twice.json()["errors"][0]["message"]
    status = (await api.http.get(f"/v1/events/{original['event_id']}", headers=school)).json()
    assert status["corrected_by"] == correction_id
    # The correction can itself be corrected: the chain has one end.
    chained = await api.http.post(f"/v1/events/{correction_id}/correction", json=other, headers=school)
    assert chained.status_code == 202, chained.text
    assert outbox_event(api, chained.json()["event_id"])["payload"]["corrects_event_id"] == correction_id


async def test_only_a_clients_own_leaver_is_corrected(api: Api) -> None:
    original = leaver()
    await api.http.post("/v1/events", json=original, headers=api.auth("school"))
    url = f"/v1/events/{original['event_id']}/correction"
    assert (await api.http.post(url, json=TO_HILLSIDE, headers=api.auth("other_school"))).status_code == 404
    assert (await api.http.post(f"/v1/events/{uuid.uuid4()}/correction", json=TO_HILLSIDE,
                                headers=api.auth("school"))).status_code == 404  # fmt: skip
    referral = sample_event_dict("referral-received", school_urn=None)
    assert (await api.http.post("/v1/events", json=referral, headers=api.auth("agency"))).status_code == 202
    r = await api.http.post(f"/v1/events/{referral['event_id']}/correction", json=TO_HILLSIDE,
                            headers=api.auth("agency"))  # fmt: skip
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "not_a_leaver"
    bad = await api.http.post(url, json={"destination": {"known": 0}}, headers=api.auth("school"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "destination.known"


async def test_a_correction_sent_as_an_event_must_name_a_leaver_of_this_client(api: Api) -> None:
    school = api.auth("school")
    stray = leaver()
    stray["payload"]["corrects_event_id"] = str(uuid.uuid4())
    r = await api.http.post("/v1/events", json=stray, headers=school)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "corrects_unknown_event"
    original = leaver()
    await api.http.post("/v1/events", json=original, headers=school)
    correction = leaver()
    correction["payload"].update(TO_HILLSIDE, corrects_event_id=original["event_id"])
    assert (await api.http.post("/v1/events", json=correction, headers=school)).status_code == 202
    assert api.count(ReferralOutbox) == 2


async def test_once_the_original_is_purged_the_correction_goes_to_post_events(api: Api) -> None:
    original = leaver()
    await api.http.post("/v1/events", json=original, headers=api.auth("school"))
    with Session(
        api.app.state.referral.engine
    ) as session:  # retention: published outbox rows go after 30 days
        session.execute(text("DELETE FROM referral_outbox"))
        session.commit()
    r = await api.http.post(f"/v1/events/{original['event_id']}/correction", json=TO_HILLSIDE,
                            headers=api.auth("school"))  # fmt: skip
    assert r.status_code == 410 and "POST /v1/events" in r.json()["errors"][0]["message"]


# --- CLI --------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("CME_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_creates_lists_and_revokes_clients(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli_main(
            ["clients", "create", "--kind", "school", "--urn", "108000", "--la", "801", "--name", "Hill"]
        )
        == 0
    )
    out = capsys.readouterr().out
    client_id = out.split("client id:")[1].split()[0]
    assert "api key:   cmek_" in out
    assert cli_main(["clients", "list"]) == 0
    assert client_id in capsys.readouterr().out
    assert cli_main(["clients", "revoke", client_id]) == 0
    engine = make_engine(cli_env.database_url)
    assert [c.revoked_at is not None for c in list_clients(engine)] == [True]
    assert cli_main(["clients", "create", "--kind", "school", "--la", "801", "--name", "No URN"]) == 2
    assert cli_main(["clients", "create", "--kind", "agency", "--la", "999", "--name", "Bad LA"]) == 2
