"""Message content policy: a case link and a reason code, never the child's details."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.notify.channels.email_smtp import SmtpSender, message_id
from services.notify.dispatcher import backoff
from services.notify.links import verify_ack_token
from services.notify.messages import build_message
from services.notify.models import NotifyAlert, NotifyDelivery
from services.notify.settings import NotifySettings

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SETTINGS = NotifySettings(
    notify_case_base_url="https://cme.example.gov.uk/cases/",
    notify_public_base_url="https://notify.example.gov.uk",
    signing_key="k",  # type: ignore[arg-type]
    notify_backoff_base_s=30,
    notify_backoff_max_s=600,
)


def _alert() -> NotifyAlert:
    return NotifyAlert(
        alert_id=str(uuid.uuid4()),
        escalation_id=str(uuid.uuid4()),
        step_index=1,
        la_code="801",
        child_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        level="senior_cme_officer",
        rule_id="whereabouts_unknown",
        reason_code="whereabouts_unknown",
        case_state="whereabouts_unknown",
        next_step_due_at=NOW + timedelta(days=2),
        source_event_id=str(uuid.uuid4()),
        source_topic="t",
        source_partition=0,
        source_offset=5,
        escalated_at=NOW,
        created_at=NOW,
    )


def _delivery(alert: NotifyAlert) -> NotifyDelivery:
    return NotifyDelivery(
        delivery_id=str(uuid.uuid4()),
        alert_id=alert.alert_id,
        escalation_id=alert.escalation_id,
        step_index=1,
        recipient="person:akhan",
        channel="smtp",
        la_code="801",
        address="aisha@example.gov.uk",
        on_behalf_of="person:jsmith",
    )


def test_message_has_the_case_link_reason_and_a_working_ack_link() -> None:
    alert = _alert()
    delivery = _delivery(alert)
    msg = build_message(SETTINGS, alert, delivery)
    assert msg.case_url == f"https://cme.example.gov.uk/cases/{alert.case_id}"
    assert msg.case_url in msg.body and msg.ack_url in msg.body
    assert "whereabouts_unknown" in msg.subject
    assert "senior CME officer" in msg.subject
    assert "cover for a colleague" in msg.body
    token = msg.ack_url.removeprefix("https://notify.example.gov.uk/v1/ack/")
    claims = verify_ack_token("k", token, NOW)
    assert (claims.alert_id, claims.token_id, claims.recipient) == (
        alert.alert_id,
        delivery.delivery_id,
        "person:akhan",
    )


def test_message_is_the_same_on_every_attempt() -> None:
    alert = _alert()
    delivery = _delivery(alert)
    assert build_message(SETTINGS, alert, delivery) == build_message(SETTINGS, alert, delivery)


def test_message_names_no_child_and_carries_no_child_id() -> None:
    alert = _alert()
    msg = build_message(SETTINGS, alert, _delivery(alert))
    text = msg.subject + msg.body + " ".join(str(v) for v in msg.fields.values())
    assert alert.child_id not in text  # the case UUID is the handle; the child's id is not needed
    for forbidden in ("forename", "surname", "date_of_birth", "upn", "postcode"):
        assert forbidden not in text.lower()


def test_email_has_a_stable_message_id_from_the_delivery_id() -> None:
    alert = _alert()
    delivery = _delivery(alert)
    email = SmtpSender(SETTINGS).build(build_message(SETTINGS, alert, delivery))
    assert (
        email["Message-ID"]
        == message_id(delivery.delivery_id)
        == f"<{delivery.delivery_id}@cme-tracker.notify>"
    )
    assert email["To"] == "aisha@example.gov.uk"


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(SETTINGS, n).total_seconds() for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]


def test_a_late_alert_says_when_it_fell_due_and_that_it_is_late() -> None:
    alert = _alert()
    alert.escalated_at = NOW - timedelta(days=20)
    on_time = build_message(SETTINGS, alert, _delivery(alert))
    assert "[late]" not in on_time.subject and "late" not in on_time.body
    assert on_time.fields["late"] == "no"

    alert.late = True
    late = build_message(SETTINGS, alert, _delivery(alert))
    assert late.subject.startswith("CME Tracker: [late] escalation")
    assert "Fell due: 2026-11-03T12:00:00+00:00" in late.body
    assert "This alert is late" in late.body and "still open" in late.body
    assert late.fields["late"] == "yes" and late.fields["fell_due_at"] == "2026-11-03T12:00:00+00:00"
