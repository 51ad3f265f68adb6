"""Acknowledgements on the real broker and PostgreSQL: the API and the one-time link in the email each publish
exactly one AlertAck; a GET never acknowledges; an acknowledged escalation does not wake the next level."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.notify.app import create_app, prepare_database
from services.notify.models import AlertState, NotifyAlert, NotifyAudit, NotifyOutbox
from services.notify.settings import NotifySettings
from services.notify.worker import NotifyWorker
from shared.auth import Role, issue_token
from shared.events import encode_event
from shared.events.catalogue import decode_event
from shared.events.internal import AlertAck, EscalationAction, LadderLevel
from shared.settings import Settings
from shared.topics import ALERT_ACKS, ESCALATIONS
from tests.integration.test_notify_support import SmtpSink, escalation, notify_settings, seed_directory, step
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration

DIRECTORY: dict[str, Any] = {
    "las": {
        "801": {
            "people": [
                {"id": "jsmith", "email": "jo.smith@la801.example.gov.uk"},
                {"id": "akhan", "email": "aisha.khan@la801.example.gov.uk"},
            ],
            "teams": [{"id": "mash", "email": "mash.duty@la801.example.gov.uk"}],
            "roles": {
                "caseworker": ["person:jsmith"],
                "senior_cme_officer": ["person:akhan"],
                "childrens_social_care": ["team:mash"],
            },
        }
    }
}


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(pg_settings: Settings, smtp: SmtpSink) -> NotifySettings:
    return notify_settings(pg_settings, smtp)


@pytest.fixture
async def engine(settings: NotifySettings) -> AsyncIterator[Engine]:
    engine = prepare_database(settings)
    seed_directory(engine, DIRECTORY)
    worker = NotifyWorker(settings, engine)
    await worker.start()
    yield engine
    await worker.stop()
    engine.dispose()


@pytest.fixture
async def client(settings: NotifySettings, engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine, run_worker=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://notify.example.gov.uk") as c:
        yield c


async def wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alert_of(engine: Engine, step_index: int = 0) -> NotifyAlert:
    with Session(engine) as session:
        (alert,) = session.exec(select(NotifyAlert).where(NotifyAlert.step_index == step_index)).all()
        return alert


def alert_state(engine: Engine, step_index: int) -> str | None:
    with Session(engine) as session:
        alert = session.exec(select(NotifyAlert).where(NotifyAlert.step_index == step_index)).first()
        return alert.state if alert else None


def audit(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(a.actor, a.action) for a in session.exec(select(NotifyAudit).order_by(NotifyAudit.id)).all()]  # type: ignore[arg-type]


async def acks_on_the_bus(settings: NotifySettings, engine: Engine, expect: int) -> list[AlertAck]:
    def outbox_drained() -> bool:
        with Session(engine) as session:
            rows = session.exec(select(NotifyOutbox)).all()
            return bool(rows) and all(r.published_at is not None for r in rows)

    await wait_for(outbox_drained, what="the outbox relay")
    records = await asyncio.to_thread(read_topic, settings, ALERT_ACKS.name(settings), expect)
    events = [decode_event(r.value) for r in records]
    assert all(isinstance(e, AlertAck) for e in events)
    return events  # type: ignore[return-value]


def bearer(settings: NotifySettings, role: Role = Role.CASEWORKER, la_code: str = "801") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, 'user-42', role, la_code)}"}


async def raise_and_deliver(settings: NotifySettings, smtp: SmtpSink, **kwargs: Any) -> Any:
    event = escalation(**kwargs)
    produce(
        settings, ESCALATIONS.name(settings), [(str(event.payload.child_id).encode(), encode_event(event))]
    )
    await wait_for(lambda: smtp.received(), what="the alert email")
    return event


async def test_ack_api_publishes_exactly_one_alert_ack_scoped_to_the_callers_la(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink, client: httpx.AsyncClient
) -> None:
    event = await raise_and_deliver(settings, smtp)
    alert = alert_of(engine)
    url = f"/v1/alerts/{alert.alert_id}/ack"

    assert (await client.post(url)).status_code == 401
    assert (await client.post(url, headers=bearer(settings, Role.OPS))).status_code == 403
    assert (await client.post(url, headers=bearer(settings, la_code="802"))).status_code == 404
    first = await client.post(url, headers=bearer(settings))
    again = await client.post(url, headers=bearer(settings), json={"action": "acknowledged"})
    assert first.status_code == again.status_code == 200
    assert (first.json()["already_acknowledged"], again.json()["already_acknowledged"]) == (False, True)
    assert first.json()["acknowledged_by"] == "user-42"

    (ack,) = await acks_on_the_bus(settings, engine, expect=1)
    assert ack.payload.escalation_id == event.payload.escalation_id
    assert ack.payload.child_id == event.payload.child_id
    assert (ack.payload.step_index, ack.payload.by_user, ack.payload.la_code) == (0, "user-42", "801")
    assert alert_of(engine).state == AlertState.ACKNOWLEDGED.value
    assert audit(engine) == [("user-42", "acknowledged_api"), ("user-42", "ack_repeat_api")]


async def test_ack_link_get_only_confirms_post_acknowledges_once(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink, client: httpx.AsyncClient
) -> None:
    await raise_and_deliver(settings, smtp)
    body = smtp.received()[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    match = re.search(r"https://notify\.example\.gov\.uk(/v1/ack/\S+)", body)
    assert match, body
    path = match.group(1)

    # A mail scanner following the link changes nothing.
    for _ in range(2):
        page = await client.get(path)
        assert page.status_code == 200 and 'method="post"' in page.text
    assert alert_of(engine).state == AlertState.OPEN.value and audit(engine) == []

    done = await client.post(path)
    assert done.status_code == 200 and "Thank you" in done.text
    assert (await client.post(path)).status_code == 410  # single use
    assert (await client.post(path[:-3] + "AAA")).status_code == 404  # tampered
    assert "already closed" in (await client.get(path)).text

    (ack,) = await acks_on_the_bus(settings, engine, expect=1)
    assert ack.payload.by_user == "person:jsmith"
    assert audit(engine) == [("person:jsmith", "acknowledged_link")]


async def test_unacknowledged_steps_up_and_acknowledged_does_not(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink, client: httpx.AsyncClient
) -> None:
    raised = await raise_and_deliver(settings, smtp)
    topic = ESCALATIONS.name(settings)
    key = str(raised.payload.child_id).encode()

    # Nobody acknowledged: the escalation service steps up, and the next level is alerted.
    stepped = step(
        raised, action=EscalationAction.STEPPED_UP, level=LadderLevel.SENIOR_CME_OFFICER, step_index=1
    )
    produce(settings, topic, [(key, encode_event(stepped))])
    await wait_for(lambda: smtp.to("aisha.khan@la801.example.gov.uk"), what="the senior officer's email")

    # The senior officer acknowledges. A step-up decided before that (its occurred_at is earlier: it crossed
    # the ack in flight) is not delivered; the escalation service, having the ack, stops the ladder.
    crossing = step(
        raised, action=EscalationAction.STEPPED_UP, level=LadderLevel.CHILDRENS_SOCIAL_CARE, step_index=2
    )
    acked = await client.post(
        f"/v1/alerts/{alert_of(engine, 1).alert_id}/ack", headers=bearer(settings, Role.CME_OFFICER)
    )
    assert acked.status_code == 200
    produce(settings, topic, [(key, encode_event(crossing))])
    await wait_for(lambda: alert_state(engine, 2) == AlertState.SUPERSEDED.value, what="the crossing step")

    (ack,) = await acks_on_the_bus(settings, engine, expect=1)
    assert (ack.payload.step_index, ack.payload.escalation_id) == (1, raised.payload.escalation_id)
    assert smtp.to("mash.duty@la801.example.gov.uk") == []
    assert sorted(m["To"] for m in smtp.received()) == [
        "aisha.khan@la801.example.gov.uk",
        "jo.smith@la801.example.gov.uk",
    ]


async def test_health_and_metrics(
    settings: NotifySettings, engine: Engine, client: httpx.AsyncClient
) -> None:
    live = await client.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok", "checks": {"loops": "ok"}})
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    metrics = (await client.get("/metrics")).text
    assert "cme_notify_pending_acks" in metrics and "cme_notify_deliveries_total" in metrics
