"""The referral service against the real broker: accepted events reach cme.intake.v1 exactly once (retries and
duplicates included), rejected ones never do, Kafka outages only delay publishing, and Postgres works too."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import create_app
from services.referral.clients import create_client
from services.referral.models import ClientKind
from shared.events import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload, MatchKind
from shared.settings import Settings
from shared.topics import CHILD_EVENTS, INTAKE
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0, what: str = "condition"
) -> Any:
    """Poll an async condition until it holds (the app's relay runs on this same loop: never block it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app with its lifespan (outbox relay and status consumer) on this loop."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://r") as http,
    ):
        yield http, app


def school_client(app: Any) -> dict[str, str]:
    _, key = create_client(
        app.state.referral.engine,
        kind=ClientKind.SCHOOL,
        name="Hill",
        la_code=DEMO_LA,
        school_urn=DEMO_SCHOOL_URN,
    )
    return {"Authorization": f"Bearer {key}"}


async def intake_records(settings: Settings, expect: int) -> list[Any]:
    return await asyncio.to_thread(read_topic, settings, INTAKE.name(settings), expect, 20.0)


async def all_published(http: httpx.AsyncClient, headers: dict[str, str], event_ids: list[str]) -> bool:
    for event_id in event_ids:
        r = await http.get(f"/v1/events/{event_id}", headers=headers)
        if r.json()["status"] == "accepted":
            return False
    return True


async def test_accepted_events_reach_the_intake_topic_exactly_once(kafka_settings: Settings) -> None:
    async with running(kafka_settings) as (http, app):
        school = school_client(app)
        _, agency_key = create_client(
            app.state.referral.engine, kind=ClientKind.AGENCY, name="Health", la_code=DEMO_LA
        )
        agency = {"Authorization": f"Bearer {agency_key}"}
        a, b = (
            sample_event_dict("pupil-left-roll", child_serial=1),
            sample_event_dict("exclusion-issued", child_serial=2),
        )
        rejected = sample_event_dict("pupil-registered", child_serial=3)
        rejected["payload"]["entry_date"] = "2999-09-01"
        forbidden = sample_event_dict("pupil-left-roll", child_serial=4, school_urn="108001")

        assert (await http.post("/v1/events", json=a, headers=school)).status_code == 202
        assert (await http.post("/v1/events", json=a, headers=school)).status_code == 202  # a retry
        batch = await http.post(
            "/v1/events/batch", json={"events": [b, a, rejected, forbidden, b]}, headers=school
        )
        assert [x["outcome"] for x in batch.json()["results"]] == [
            "accepted", "duplicate", "rejected", "forbidden", "duplicate"
        ]  # fmt: skip
        referral = {
            "child": {"surname": "Example", "date_of_birth": "2013-02-02"},
            "referrer_type": "police",
            "concern": "x",
        }
        key = {**agency, "Idempotency-Key": "case-77"}
        first = await http.post("/v1/referrals", json=referral, headers=key)
        assert (await http.post("/v1/referrals", json=referral, headers=key)).json() == first.json()
        r_id = first.json()["event_id"]

        await eventually(
            lambda: all_published(http, school, [a["event_id"], b["event_id"]]), what="published"
        )
        await eventually(lambda: all_published(http, agency, [r_id]), what="referral published")
        # After publishing, a late retry is still answered from the idempotency record, and not re-sent.
        assert (await http.post("/v1/events", json=a, headers=school)).status_code == 202

        records = await intake_records(kafka_settings, expect=3)
        counts = Counter(orjson.loads(r.value)["event_id"] for r in records)
        assert counts == Counter({a["event_id"]: 1, b["event_id"]: 1, r_id: 1})
        by_id = {orjson.loads(r.value)["event_id"]: r for r in records}
        assert by_id[a["event_id"]].key.decode() == a["payload"]["child"]["upn"]  # keyed by the child's UPN
        published = decode_inbound(by_id[a["event_id"]].value)
        assert published.source.client_id is not None and published.source.school_urn == DEMO_SCHOOL_URN
        assert decode_inbound(by_id[r_id].value).event_type == "referral-received"

        # tracking resolves the event to a child: the sender sees it processed
        fact = ChildFact(
            event_id=uuid.UUID(a["event_id"]),
            occurred_at=datetime.now(UTC),
            source=Source(system="tracking", la_code=DEMO_LA),
            payload=ChildFactPayload(child_id=uuid.uuid4(), la_code=DEMO_LA, match=MatchKind.EXACT, fact=a),
        )
        topic = CHILD_EVENTS.name(kafka_settings)
        await asyncio.to_thread(produce, kafka_settings, topic, [(b"child", fact.model_dump_json().encode())])

        async def processed() -> dict[str, Any] | None:
            body = (await http.get(f"/v1/events/{a['event_id']}", headers=school)).json()
            return body if body["status"] == "processed" else None

        status = await eventually(processed, what="processed status")
        assert status["child_id"] == str(fact.payload.child_id)


async def test_kafka_down_accepts_into_the_outbox_and_publishes_when_it_returns(
    kafka_settings: Settings,
) -> None:
    broker_away = kafka_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    event = sample_event_dict("pupil-left-roll")
    async with running(broker_away) as (http, app):
        headers = school_client(app)
        r = await http.post("/v1/events", json=event, headers=headers)
        assert r.status_code == 202  # durable in the outbox, although Kafka cannot be reached
        assert app.state.referral.intake.outbox_depth() == 1
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"
    # The broker is back (same database, reachable bootstrap): the relay drains what was accepted.
    async with running(kafka_settings) as (http, app):
        await eventually(
            lambda: all_published(http, headers, [event["event_id"]]), what="published after outage"
        )
        assert app.state.referral.intake.outbox_depth() == 0
        assert (await http.get("/health/ready")).status_code == 200
    records = await intake_records(kafka_settings, expect=1)
    assert [orjson.loads(r.value)["event_id"] for r in records] == [event["event_id"]]


async def test_postgres_path_publishes_batches_exactly_once(pg_settings: Settings) -> None:
    async with running(pg_settings) as (http, app):
        headers = school_client(app)
        events = [sample_event_dict("pupil-left-roll", child_serial=n) for n in range(1, 41)]
        # the same batch sent three times at once: the unique event_id settles the race, none is queued twice
        results = await asyncio.gather(
            *(http.post("/v1/events/batch", json={"events": events}, headers=headers) for _ in range(3))
        )
        assert [x.status_code for x in results] == [200, 200, 200]
        assert sum(x.json()["accepted"] for x in results) == 40
        assert sum(x.json()["duplicates"] for x in results) == 80
        ids = [e["event_id"] for e in events]
        await eventually(lambda: all_published(http, headers, ids), what="batch published")
    records = await intake_records(pg_settings, expect=40)
    assert Counter(orjson.loads(r.value)["event_id"] for r in records) == Counter(ids)
