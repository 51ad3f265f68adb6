"""Delivery on the real broker, PostgreSQL, a real SMTP server and real HTTP receivers: exactly one message
per recipient (also on redelivery), the crash guarantee per channel, retries, dead letters, cancel, cover."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.notify.app import prepare_database
from services.notify.channels.base import ChannelSender, Sent
from services.notify.channels.email_smtp import SmtpSender
from services.notify.channels.govuk_notify import GovukNotifySender
from services.notify.channels.webhook import WebhookSender
from services.notify.dispatcher import Dispatcher
from services.notify.messages import AlertMessage
from services.notify.models import (
    Channel,
    DeliveryState,
    NotifyAlert,
    NotifyDelivery,
    NotifyOutbox,
    NotifyProcessedEvent,
)
from services.notify.settings import NotifySettings
from services.notify.worker import EscalationConsumer
from shared.consumer import Record
from shared.events import encode_event
from shared.events.catalogue import decode_event
from shared.events.internal import DeadLetter, EscalationAction, LadderLevel
from shared.settings import Settings
from shared.topics import DEAD_LETTER, ESCALATIONS
from tests.integration.test_notify_support import (
    NOTIFY_API_KEY,
    TEMPLATE_ID,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_ENV,
    FakeNotifyApi,
    SmtpSink,
    WebhookReceiver,
    escalation,
    notify_settings,
    seed_directory,
    step,
)
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration

PEOPLE = [
    {"id": "jsmith", "email": "jo.smith@la801.example.gov.uk"},
    {"id": "rpatel", "email": "ravi.patel@la801.example.gov.uk"},
    {"id": "akhan", "email": "aisha.khan@la801.example.gov.uk"},
]
DIRECTORY: dict[str, Any] = {
    "las": {
        "801": {
            "people": PEOPLE,
            "teams": [{"id": "mash", "email": "mash.duty@la801.example.gov.uk"}],
            "roles": {
                "caseworker": ["person:jsmith"],
                "senior_cme_officer": ["person:akhan"],
                "childrens_social_care": ["team:mash", "person:akhan"],
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
def engine(settings: NotifySettings) -> Iterator[Engine]:
    engine = prepare_database(settings)
    seed_directory(engine, DIRECTORY)
    yield engine
    engine.dispose()


def deliveries(engine: Engine) -> list[NotifyDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(NotifyDelivery).order_by(NotifyDelivery.id)).all())  # type: ignore[arg-type]


async def wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def drain(dispatcher: Dispatcher, engine: Engine, timeout_s: float = 20.0) -> None:
    """Run the dispatcher until no delivery is pending or in flight."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await dispatcher.run_once()
        states = {d.state for d in await asyncio.to_thread(deliveries, engine)}
        if not states & {DeliveryState.PENDING.value, DeliveryState.SENDING.value}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries still open: {[(d.recipient, d.state) for d in deliveries(engine)]}")


@pytest.fixture
async def worker(settings: NotifySettings, engine: Engine) -> AsyncIterator[Any]:
    from services.notify.worker import NotifyWorker

    w = NotifyWorker(settings, engine)
    await w.start()
    yield w
    await w.stop()


async def test_one_escalation_one_email_per_recipient_also_when_delivered_twice(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink, worker: Any
) -> None:
    event = escalation(level=LadderLevel.CHILDRENS_SOCIAL_CARE)
    same_step_new_event = step(event)  # the escalation service re-publishing the same step
    topic = ESCALATIONS.name(settings)
    key = str(event.payload.child_id).encode()
    produce(
        settings,
        topic,
        [(key, encode_event(event)), (key, encode_event(event)), (key, encode_event(same_step_new_event))],
    )

    await wait_for(lambda: len(smtp.received()) >= 2, what="two emails")

    def processed() -> int:
        with Session(engine) as session:
            return len(session.exec(select(NotifyProcessedEvent)).all())

    await wait_for(lambda: processed() == 2, what="both distinct events consumed")
    # The record handled again after a crash before the offset commit (Kafka redelivers it): a no-op.
    records = read_topic(settings, topic, expect=3)
    consumer = EscalationConsumer(settings, engine)
    assert {(await asyncio.to_thread(consumer.handle_record, r)).action for r in records} == {"duplicate"}
    await worker.dispatcher.run_once()

    messages = smtp.received()
    assert sorted(m["To"] for m in messages) == [
        "aisha.khan@la801.example.gov.uk",
        "mash.duty@la801.example.gov.uk",
    ]
    assert len({m["Message-ID"] for m in messages}) == 2
    rows = deliveries(engine)
    assert [r.state for r in rows] == [DeliveryState.SENT.value] * 2
    assert all(r.attempts == 1 for r in rows)
    body = messages[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert f"https://cme.example.gov.uk/cases/{event.payload.case_id}" in body
    assert "whereabouts_unknown" in messages[0]["Subject"]
    assert str(event.payload.child_id) not in body + messages[0]["Subject"]


async def test_a_late_step_is_mailed_as_late_with_the_time_it_fell_due(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink, worker: Any
) -> None:
    fell_due = datetime(2024, 10, 7, 9, tzinfo=UTC)
    on_time = escalation(occurred_at=datetime.now(UTC))
    late = escalation(occurred_at=fell_due)
    late = late.model_copy(update={"payload": late.payload.model_copy(update={"late": True})})
    produce(
        settings,
        ESCALATIONS.name(settings),
        [(str(e.payload.child_id).encode(), encode_event(e)) for e in (on_time, late)],
    )

    await wait_for(lambda: len(smtp.received()) >= 2, what="both emails")
    subjects = sorted(m["Subject"] for m in smtp.received())
    assert [s.startswith("CME Tracker: [late] ") for s in subjects].count(True) == 1
    (late_mail,) = [m for m in smtp.received() if "[late]" in m["Subject"]]
    body = late_mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Fell due: 2024-10-07T09:00:00+00:00" in body and "This alert is late" in body
    with Session(engine) as session:
        stored = {str(a.escalation_id): a.late for a in session.exec(select(NotifyAlert)).all()}
    assert stored == {str(on_time.payload.escalation_id): False, str(late.payload.escalation_id): True}


async def test_worker_killed_between_send_and_ledger_commit(
    pg_settings: Settings, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMTP: at least once, the copies share one Message-ID. Notify API and webhook: exactly once."""
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET)
    notify_api = FakeNotifyApi().start()
    receiver = WebhookReceiver().start()
    try:
        settings = notify_settings(
            pg_settings,
            smtp,
            notify_send_lease_s=0.5,
            notify_send_batch=1,
            notify_govuk_base_url=notify_api.url,
            notify_govuk_api_key=NOTIFY_API_KEY,
            notify_govuk_template_id=TEMPLATE_ID,
        )
        engine = prepare_database(settings)
        seed_directory(
            engine,
            {
                "las": {
                    "801": {
                        "people": PEOPLE,
                        "roles": {"caseworker": ["person:jsmith", "person:rpatel"]},
                        "webhooks": [
                            {"id": "cms", "url": f"{receiver.url}/hook", "secret_env": WEBHOOK_SECRET_ENV}
                        ],
                    },
                    "802": {
                        "email_channel": "govuk_notify",
                        "people": [{"id": "lee", "email": "lee@la802.example.gov.uk"}],
                        "roles": {"caseworker": ["person:lee"]},
                    },
                }
            },
        )
        consumer = EscalationConsumer(settings, engine)
        topic = ESCALATIONS.name(settings)
        events = [escalation(la_code="801"), escalation(la_code="802")]
        produce(settings, topic, [(str(e.payload.child_id).encode(), encode_event(e)) for e in events])
        for record in read_topic(settings, topic, expect=2):
            consumer.handle_record(record)
        assert len(deliveries(engine)) == 4  # 801: two people + the webhook; 802: one person via Notify

        channels: dict[Channel, ChannelSender] = {
            Channel.SMTP: SmtpSender(settings),
            Channel.WEBHOOK: WebhookSender(settings),
            Channel.GOVUK_NOTIFY: GovukNotifySender(settings),
        }

        class WorkerKilled(BaseException):
            pass

        def crash(_: NotifyDelivery) -> None:
            raise WorkerKilled  # after the channel accepted, before the ledger records it

        doomed = Dispatcher(settings, engine, channels, DEAD_LETTER.name(settings), after_send=crash)
        for _ in range(4):
            with pytest.raises(WorkerKilled):
                await doomed.run_once()
        rows = deliveries(engine)
        assert {r.state for r in rows} == {DeliveryState.SENDING.value}
        assert (
            len(smtp.received()) == 2 and len(notify_api.notifications) == 1 and len(receiver.accepted) == 1
        )

        fresh = Dispatcher(settings, engine, channels, DEAD_LETTER.name(settings))
        await drain(fresh, engine)

        rows = deliveries(engine)
        assert {r.state for r in rows} == {DeliveryState.SENT.value}
        assert all(r.attempts == 2 for r in rows)
        # GOV.UK Notify: the earlier attempt was found by its reference; no second notification.
        assert len(notify_api.notifications) == 1
        assert notify_api.notifications[0]["reference"] == next(
            r.delivery_id for r in rows if r.la_code == "802"
        )
        # Webhook: resent under the same delivery id; the receiver acted once and answered 409 to the resend.
        assert len(receiver.accepted) == 1 and receiver.rejected == ["delivery id already processed"]
        # SMTP: resent; each person has two copies with one Message-ID (at least once, duplicates detectable).
        for address in ("jo.smith@la801.example.gov.uk", "ravi.patel@la801.example.gov.uk"):
            copies = smtp.to(address)
            assert len(copies) == 2 and len({m["Message-ID"] for m in copies}) == 1
        for channel in channels.values():
            await channel.aclose()
        engine.dispose()
    finally:
        notify_api.stop()
        receiver.stop()


class HoldingSender:
    """Accepts the message for one address at once; every other send holds a thread of the loop's default
    pool until released (a slow SMTP relay)."""

    def __init__(self, quick_address: str) -> None:
        self.quick_address = quick_address
        self.release = threading.Event()

    async def send(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent:
        if message.address != self.quick_address:
            await asyncio.to_thread(self.release.wait, 30)
        return Sent(provider_ref=f"ref-{delivery.delivery_id}")

    async def find_previous(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent | None:
        return None

    async def aclose(self) -> None:
        return None


async def test_an_accepted_message_is_recorded_while_slow_sends_hold_every_shared_thread(
    settings: NotifySettings, engine: Engine
) -> None:
    """Between the channel accepting and the ledger recording, a crash means a resend (for SMTP a second
    copy): the recording must not wait for the batch's other sends to free a thread."""
    consumer = EscalationConsumer(settings, engine)
    event = escalation(level=LadderLevel.CHILDRENS_SOCIAL_CARE)  # to the MASH team and to akhan
    produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(event))])
    for record in await asyncio.to_thread(read_topic, settings, ESCALATIONS.name(settings), 1):
        consumer.handle_record(record)
    quick = "person:akhan"
    sender = HoldingSender("aisha.khan@la801.example.gov.uk")

    async def dispatch_while_one_send_holds_the_shared_pool() -> dict[str, str]:
        # On a loop of its own, whose default pool (one thread) the slow send holds all of.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        dispatcher = Dispatcher(settings, engine, {Channel.SMTP: sender}, "unused")
        sending = asyncio.create_task(dispatcher.run_once())
        try:
            deadline = time.monotonic() + 20
            while True:
                states = {d.recipient: d.state for d in deliveries(engine)}
                if states.get(quick) == DeliveryState.SENT.value or time.monotonic() > deadline:
                    return states
                await asyncio.sleep(0.05)
        finally:
            sender.release.set()
            await sending
            dispatcher.close()

    states = await asyncio.to_thread(asyncio.run, dispatch_while_one_send_holds_the_shared_pool())
    assert states == {quick: DeliveryState.SENT.value, "team:mash": DeliveryState.SENDING.value}, (
        f"the accepted message was not recorded while another send held the shared threads: {states}"
    )
    assert {d.state for d in deliveries(engine)} == {DeliveryState.SENT.value}


async def test_transient_failures_retry_with_backoff_then_dead_letter(
    pg_settings: Settings, smtp: SmtpSink
) -> None:
    dead_port_settings = notify_settings(pg_settings, None, notify_max_attempts=3)  # nothing listens there
    engine = prepare_database(dead_port_settings)
    seed_directory(engine, DIRECTORY)
    from services.notify.worker import NotifyWorker

    worker = NotifyWorker(dead_port_settings, engine)
    dead_before = REGISTRY.get_sample_value("cme_notify_dead_lettered_total", {"channel": "smtp"}) or 0.0
    retries_before = REGISTRY.get_sample_value("cme_notify_retries_total", {"channel": "smtp"}) or 0.0
    await worker.start()
    try:
        event = escalation()
        produce(dead_port_settings, ESCALATIONS.name(dead_port_settings), [(b"k", encode_event(event))])
        (row,) = await wait_for(
            lambda: [d for d in deliveries(engine) if d.state == DeliveryState.DEAD.value],
            what="dead delivery",
        )
        assert row.attempts == 3 and row.last_error and "SMTP connection" in row.last_error
        (record,) = await asyncio.to_thread(
            read_topic, dead_port_settings, DEAD_LETTER.name(dead_port_settings), 1
        )
        dead = decode_event(record.value)
        assert isinstance(dead, DeadLetter)
        assert dead.payload.service == "notify" and dead.payload.attempts == 3
        assert dead.payload.original_topic == ESCALATIONS.name(dead_port_settings)
        assert orjson.loads(base64.b64decode(dead.payload.value_base64))["delivery_id"] == row.delivery_id
        assert "@" not in dead.payload.error  # no address in the dead letter's error text
        # The ops alert: the dead-letter counter (and an error log line); two retries before it.
        assert (
            REGISTRY.get_sample_value("cme_notify_dead_lettered_total", {"channel": "smtp"})
            == dead_before + 1
        )
        assert (
            REGISTRY.get_sample_value("cme_notify_retries_total", {"channel": "smtp"}) == retries_before + 2
        )
    finally:
        await worker.stop()
        engine.dispose()


async def test_refused_recipient_is_dead_lettered_without_retrying(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink
) -> None:
    smtp.refuse.add("jo.smith@la801.example.gov.uk")
    consumer = EscalationConsumer(settings, engine)
    produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(escalation()))])
    (record,) = read_topic(settings, ESCALATIONS.name(settings), expect=1)
    consumer.handle_record(record)
    await drain(
        Dispatcher(settings, engine, {Channel.SMTP: SmtpSender(settings)}, DEAD_LETTER.name(settings)), engine
    )
    (row,) = deliveries(engine)
    assert (row.state, row.attempts, row.last_error) == (
        DeliveryState.DEAD.value,
        1,
        "recipient refused (SMTP [550])",
    )


async def test_webhook_receiver_verifies_the_signature_and_rejects_a_replay(
    settings: NotifySettings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET)
    receiver = WebhookReceiver().start()
    try:
        hook = {
            "id": "cms",
            "url": f"{receiver.url}/hook",
            "secret_env": WEBHOOK_SECRET_ENV,
            "levels": ["police"],
        }
        seed_directory(engine, {"las": {"801": {"people": PEOPLE, "webhooks": [hook]}}})
        event = escalation(level=LadderLevel.POLICE, step_index=3)
        produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(event))])
        (record,) = read_topic(settings, ESCALATIONS.name(settings), expect=1)
        EscalationConsumer(settings, engine).handle_record(record)
        sender = WebhookSender(settings)
        await drain(
            Dispatcher(settings, engine, {Channel.WEBHOOK: sender}, DEAD_LETTER.name(settings)), engine
        )
        await sender.aclose()

        ((delivery_id, payload),) = receiver.accepted
        assert payload["case_id"] == str(event.payload.case_id) and payload["level"] == "police"
        assert "child_id" not in payload
        captured, body = receiver.raw[0]
        headers = {k: v for k, v in captured.items() if k.lower().startswith("x-cme-")}
        async with httpx.AsyncClient() as client:
            replay = await client.post(f"{receiver.url}/hook", content=body, headers=headers)
            tampered = await client.post(
                f"{receiver.url}/hook",
                content=body.replace(b"police", b"caseworker"),
                headers={**headers, "X-CME-Delivery": "another"},
            )
        assert replay.status_code == 409
        assert tampered.status_code == 401
        assert len(receiver.accepted) == 1
        assert deliveries(engine)[0].delivery_id == delivery_id
    finally:
        receiver.stop()


async def test_cancelled_escalation_withdraws_pending_sends(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink
) -> None:
    from services.notify.worker import NotifyWorker

    consume_only = NotifyWorker(settings, engine)
    await consume_only.start(dispatch=False)
    try:
        raised = escalation(level=LadderLevel.CHILDRENS_SOCIAL_CARE)
        cancelled = step(raised, action=EscalationAction.CANCELLED, reason_code="child_located")
        produce(
            settings,
            ESCALATIONS.name(settings),
            [(b"k", encode_event(raised)), (b"k", encode_event(cancelled))],
        )
        await wait_for(
            lambda: {d.state for d in deliveries(engine)} == {DeliveryState.WITHDRAWN.value}, what="withdrawn"
        )
    finally:
        await consume_only.stop()
    assert await Dispatcher(settings, engine, {Channel.SMTP: SmtpSender(settings)}, "unused").run_once() == 0
    assert smtp.received() == []
    assert len(deliveries(engine)) == 2


async def test_cover_receives_when_the_caseworker_is_away(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink, worker: Any
) -> None:
    now = datetime.now(UTC)
    away = {"from": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(days=1)).isoformat()}
    people = [{**PEOPLE[0], "absences": [{**away, "cover": "rpatel"}]}, *PEOPLE[1:]]
    seed_directory(engine, {"las": {"801": {"people": people, "roles": {"caseworker": ["person:jsmith"]}}}})
    produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(escalation()))])
    (message,) = await wait_for(lambda: smtp.received(), what="an email")
    assert message["To"] == "ravi.patel@la801.example.gov.uk"
    assert "cover for a colleague" in message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    (row,) = deliveries(engine)
    assert (row.recipient, row.on_behalf_of) == ("person:rpatel", "person:jsmith")


async def test_unroutable_and_undecodable_escalations_are_dead_lettered(
    settings: NotifySettings, engine: Engine
) -> None:
    no_directory = escalation(la_code="802")  # no directory for this LA: nobody to tell
    produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(no_directory)), (b"k", b"{not json")])
    records = await asyncio.to_thread(read_topic, settings, ESCALATIONS.name(settings), 2)
    consumer = EscalationConsumer(settings, engine)
    assert [consumer.handle_record(r).action for r in records] == ["unroutable", "dead_lettered"]
    with Session(engine) as session:
        outbox = session.exec(select(NotifyOutbox)).all()
    letters = [decode_event(row.value) for row in outbox]
    assert {row.topic for row in outbox} == {DEAD_LETTER.name(settings)}
    assert sorted(d.payload.error_type for d in letters) == ["LookupError", "ValidationError"]
    assert deliveries(engine) == []


async def test_two_dispatchers_never_send_the_same_row(
    settings: NotifySettings, engine: Engine, smtp: SmtpSink
) -> None:
    consumer = EscalationConsumer(settings, engine)
    events = [escalation(level=LadderLevel.CHILDRENS_SOCIAL_CARE) for _ in range(10)]
    produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(e)) for e in events])
    for record in await asyncio.to_thread(read_topic, settings, ESCALATIONS.name(settings), 10):
        consumer.handle_record(record)
    small_batches = settings.model_copy(update={"notify_send_batch": 3})
    a, b = (
        Dispatcher(small_batches, engine, {Channel.SMTP: SmtpSender(settings)}, "unused") for _ in range(2)
    )
    while any(d.state != DeliveryState.SENT.value for d in deliveries(engine)):
        await asyncio.gather(a.run_once(), b.run_once())
    ids = [m["Message-ID"] for m in smtp.received()]
    assert len(ids) == 20 and len(set(ids)) == 20


async def test_notify_api_timeout_after_acceptance_is_not_sent_twice(pg_settings: Settings) -> None:
    notify_api = FakeNotifyApi().start()
    try:
        settings = notify_settings(
            pg_settings,
            None,
            notify_http_timeout_s=0.5,
            notify_govuk_base_url=notify_api.url,
            notify_govuk_api_key=NOTIFY_API_KEY,
            notify_govuk_template_id=TEMPLATE_ID,
        )
        engine = prepare_database(settings)
        seed_directory(
            engine,
            {
                "las": {
                    "802": {
                        "email_channel": "govuk_notify",
                        "people": [{"id": "lee", "email": "lee@la802.example.gov.uk"}],
                        "roles": {"caseworker": ["person:lee"]},
                    }
                }
            },
        )
        produce(settings, ESCALATIONS.name(settings), [(b"k", encode_event(escalation(la_code="802")))])
        (record,) = await asyncio.to_thread(read_topic, settings, ESCALATIONS.name(settings), 1)
        EscalationConsumer(settings, engine).handle_record(record)
        notify_api.stall_next_reply_s = 1.5
        sender = GovukNotifySender(settings)
        await drain(Dispatcher(settings, engine, {Channel.GOVUK_NOTIFY: sender}, "unused"), engine)
        await sender.aclose()
        (row,) = deliveries(engine)
        (notification,) = notify_api.notifications  # the retry found the first one by reference
        assert (row.state, row.attempts, row.provider_ref) == (
            DeliveryState.SENT.value,
            2,
            notification["id"],
        )
        assert notification["personalisation"]["case_url"].startswith("https://cme.example.gov.uk/cases/")
        engine.dispose()
    finally:
        notify_api.stop()


def ledger_of(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """What the consumer wrote, without processing times or database ids."""
    with Session(engine) as session:
        alerts = session.exec(select(NotifyAlert)).all()
        rows = session.exec(select(NotifyDelivery)).all()
        outbox = session.exec(select(NotifyOutbox)).all()
        processed = session.exec(select(NotifyProcessedEvent)).all()
    return {
        "alerts": sorted((a.alert_id, a.level, a.state, a.step_index) for a in alerts),
        "deliveries": sorted((d.delivery_id, d.recipient, d.address, d.state) for d in rows),
        "outbox": sorted((o.topic, decode_event(o.value).payload.error_type) for o in outbox),  # type: ignore[attr-defined]
        "processed": sorted((p.event_id,) for p in processed),
    }


async def test_a_partitions_records_in_one_transaction_write_what_they_write_one_at_a_time(
    settings: NotifySettings, engine: Engine, tmp_path: Any
) -> None:
    """The consumer's batch (one transaction for a partition's records) against the same records one at a
    time on a second store: a step and its step-up, a redelivery, an escalation raised and cancelled in the
    same batch, one nobody can be told of, and a step after it was acknowledged elsewhere."""
    reference_settings = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'one.db'}"})
    reference = prepare_database(reference_settings)
    seed_directory(reference, DIRECTORY)
    raised = escalation()
    stepped = step(
        raised, step_index=1, level=LadderLevel.SENIOR_CME_OFFICER, action=EscalationAction.STEPPED_UP
    )
    urgent = escalation(level=LadderLevel.CHILDRENS_SOCIAL_CARE)
    cancelled = step(urgent, action=EscalationAction.CANCELLED, reason_code="child_located")
    events = [raised, stepped, raised, urgent, cancelled, escalation(la_code="802"), escalation()]
    topic = ESCALATIONS.name(settings)
    records = [Record(topic, 0, offset, b"k", encode_event(e)) for offset, e in enumerate(events)]
    batch = await asyncio.to_thread(EscalationConsumer(settings, engine).handle_records, records)
    alone = EscalationConsumer(reference_settings, reference)
    one_by_one = [await asyncio.to_thread(alone.handle_record, record) for record in records]
    assert [o.action for o in batch] == [o.action for o in one_by_one] == [
        "alerted", "alerted", "duplicate", "alerted", "cancelled", "unroutable", "alerted",
    ]  # fmt: skip
    assert ledger_of(engine) == ledger_of(reference)
    assert len(ledger_of(engine)["deliveries"]) == 5  # jsmith, akhan; mash and akhan (withdrawn); jsmith
    reference.dispose()


async def test_an_undecodable_record_fails_the_batch_before_anything_is_written(
    settings: NotifySettings, engine: Engine
) -> None:
    """The loop then goes one record at a time, and only that record is dead-lettered (shared/consumer.py)."""
    topic = ESCALATIONS.name(settings)
    records = [Record(topic, 0, 0, b"k", encode_event(escalation())), Record(topic, 0, 1, b"k", b"{not json")]
    with pytest.raises(ValueError):
        EscalationConsumer(settings, engine).handle_records(records)
    assert ledger_of(engine) == {"alerts": [], "deliveries": [], "outbox": [], "processed": []}
