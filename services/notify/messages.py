"""What an alert says: the least that lets a person act (level, reason code, due time, case link, ack link).

Content policy: no child's name, date of birth, UPN, address or notes anywhere (subject, body, webhook
payload, links). The case link carries only the case UUID; the person reads the details after signing in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notify.links import AckLinkClaims, make_ack_token
from services.notify.models import NotifyAlert, NotifyDelivery, aware
from services.notify.settings import NotifySettings

LEVEL_LABELS = {
    "caseworker": "caseworker",
    "senior_cme_officer": "senior CME officer",
    "childrens_social_care": "children's social care (MASH)",
    "police": "police liaison",
}


@dataclass(frozen=True)
class AlertMessage:
    delivery_id: str
    address: str
    subject: str
    body: str
    case_url: str
    ack_url: str
    # Used as GOV.UK Notify template personalisation and as the webhook payload.
    fields: dict[str, str | int | None]


def case_url(settings: NotifySettings, case_id: str) -> str:
    return f"{settings.notify_case_base_url.rstrip('/')}/{case_id}"


def ack_url(settings: NotifySettings, alert: NotifyAlert, delivery: NotifyDelivery) -> str:
    # Deterministic per delivery (expiry counted from the alert's creation): a resend is the same message.
    claims = AckLinkClaims(
        alert_id=alert.alert_id,
        token_id=delivery.delivery_id,
        recipient=delivery.recipient,
        expires_at=aware(alert.created_at) + timedelta(seconds=settings.notify_link_ttl_s),
    )
    token = make_ack_token(settings.signing_key.get_secret_value(), claims)
    return f"{settings.notify_public_base_url.rstrip('/')}/v1/ack/{token}"


def build_message(settings: NotifySettings, alert: NotifyAlert, delivery: NotifyDelivery) -> AlertMessage:
    level = LEVEL_LABELS.get(alert.level, alert.level)
    due = _fmt(alert.next_step_due_at)
    case_link = case_url(settings, alert.case_id)
    ack_link = ack_url(settings, alert, delivery)
    fell_due = _fmt(alert.escalated_at)
    late = "[late] " if alert.late else ""
    subject = f"CME Tracker: {late}escalation for {level} - action needed ({alert.reason_code})"
    lines = [
        f"A child missing education case needs action at {level} level.",
        "",
        f"Reason: {alert.reason_code}",
        f"Escalation step: {alert.step_index + 1}",
        f"Fell due: {fell_due}",
    ]
    if alert.late:
        # Said plainly: the reader must know this is not a new event, and that the case is still open.
        lines.append(
            "This alert is late: it fell due before CME Tracker could act on it (the facts reached it late,"
            " or it was catching up on a backlog). The case was still open when this was sent."
        )
    if due:
        lines.append(f"If not acknowledged, it steps up at: {due}")
    if delivery.on_behalf_of:
        lines.append("You receive this as cover for a colleague who is away.")
    lines += [
        "",
        f"Open the case (sign-in required): {case_link}",
        f"Acknowledge this alert: {ack_link}",
        "",
        "This message contains no personal details by design. Do not reply to it.",
    ]
    fields: dict[str, str | int | None] = {
        "delivery_id": delivery.delivery_id,
        "alert_id": alert.alert_id,
        "escalation_id": alert.escalation_id,
        "case_id": alert.case_id,
        "la_code": alert.la_code,
        "level": alert.level,
        "step_index": alert.step_index,
        "reason_code": alert.reason_code,
        "case_state": alert.case_state,
        "fell_due_at": fell_due,
        "late": "yes" if alert.late else "no",
        "next_step_due_at": due,
        "case_url": case_link,
        "ack_url": ack_link,
    }
    return AlertMessage(
        delivery_id=delivery.delivery_id,
        address=delivery.address,
        subject=subject,
        body="\n".join(lines) + "\n",
        case_url=case_link,
        ack_url=ack_link,
        fields=fields,
    )


def _fmt(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value else None
