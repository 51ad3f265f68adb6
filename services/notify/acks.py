"""Acknowledging an alert: record who and when, audit it, publish one AlertAck through the outbox.

One alert yields at most one AlertAck: its event_id is derived from the alert id, the alert row is locked
while it is decided, and the outbox ignores an event_id it already holds. A later acknowledgement of the same
alert is audited and answered "already acknowledged"; it publishes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from services.notify import metrics
from services.notify.models import (
    AlertState,
    NotifyAlert,
    NotifyAudit,
    NotifyDelivery,
    NotifyEscalation,
    NotifyLinkUse,
    NotifyOutbox,
    aware,
)
from services.notify.service import NOTIFY_NAMESPACE, withdraw_pending
from shared.events.envelope import Source
from shared.events.internal import AckAction, AlertAck, AlertAckPayload
from shared.events.vocab import ResolutionReason
from shared.outbox import add_to_outbox


class AlertNotFound(Exception):
    pass


class AlertClosed(Exception):
    """The alert was cancelled (or superseded): there is nothing to acknowledge."""


class LinkAlreadyUsed(Exception):
    pass


@dataclass(frozen=True)
class AckResult:
    alert_id: str
    escalation_id: str
    step_index: int
    acknowledged_at: datetime
    acknowledged_by: str
    action: str
    already: bool


def ack_event_id(alert_id: str) -> uuid.UUID:
    return uuid.uuid5(NOTIFY_NAMESPACE, f"ack:{alert_id}")


def acknowledge(
    session: Session,
    *,
    alert_id: str,
    by_user: str,
    via: str,
    action: AckAction,
    now: datetime,
    acks_topic: str,
    la_code: str | None = None,
    link_token_id: str | None = None,
    resolution_reason: ResolutionReason | None = None,
) -> AckResult:
    """Acknowledge in the caller's transaction. ``la_code`` scopes the lookup (an alert of another LA is
    "not found"); ``link_token_id`` marks a one-time link as used (a second use raises LinkAlreadyUsed)."""
    alert = session.get(NotifyAlert, alert_id, with_for_update=True)
    if alert is None or (la_code is not None and alert.la_code != la_code):
        raise AlertNotFound(alert_id)
    if link_token_id is not None:
        if session.get(NotifyLinkUse, link_token_id) is not None:
            raise LinkAlreadyUsed(link_token_id)
        session.add(NotifyLinkUse(token_id=link_token_id, alert_id=alert_id, used_at=now))
    if alert.state == AlertState.ACKNOWLEDGED.value:
        _audit(session, alert, by_user, f"ack_repeat_{via}", now)
        return _result(alert, already=True)
    if alert.state != AlertState.OPEN.value:
        raise AlertClosed(alert.state)

    alert.state = AlertState.ACKNOWLEDGED.value
    alert.acknowledged_at = now
    alert.acknowledged_by = by_user
    alert.ack_action = action.value
    alert.ack_via = via
    session.add(alert)
    escalation = session.get(NotifyEscalation, alert.escalation_id, with_for_update=True)
    if escalation is not None and escalation.acknowledged_at is None:
        escalation.acknowledged_at = now
        escalation.updated_at = now
        session.add(escalation)
    # Someone is acting: the alert's deliveries not yet sent (retries to colleagues) are no longer needed.
    withdraw_pending(session, NotifyDelivery.alert_id == alert_id, "alert acknowledged")
    event = AlertAck(
        event_id=ack_event_id(alert_id),
        occurred_at=now,
        source=Source(system="cme-notify", la_code=alert.la_code),
        payload=AlertAckPayload(
            escalation_id=uuid.UUID(alert.escalation_id),
            child_id=uuid.UUID(alert.child_id),
            la_code=alert.la_code,
            step_index=alert.step_index,
            action=action,
            by_user=by_user,
            resolution_reason=resolution_reason,
        ),
    )
    add_to_outbox(session, NotifyOutbox, acks_topic, alert.child_id, event)
    reason = f"resolution_reason={resolution_reason.value}" if resolution_reason else None
    _audit(session, alert, by_user, f"{action.value}_{via}", now, detail=reason)
    metrics.ACKS.labels(via=via).inc()
    return _result(alert, already=False)


def pending_ack_count(session: Session) -> int:
    stmt = (
        select(func.count()).select_from(NotifyAlert).where(col(NotifyAlert.state) == AlertState.OPEN.value)
    )
    return int(session.exec(stmt).one())


def _audit(
    session: Session, alert: NotifyAlert, actor: str, action: str, now: datetime, detail: str | None = None
) -> None:
    session.add(
        NotifyAudit(
            at=now,
            la_code=alert.la_code,
            actor=actor,
            action=action,
            alert_id=alert.alert_id,
            escalation_id=alert.escalation_id,
            detail=detail,
        )
    )


def _result(alert: NotifyAlert, already: bool) -> AckResult:
    assert alert.acknowledged_at is not None and alert.acknowledged_by is not None
    return AckResult(
        alert_id=alert.alert_id,
        escalation_id=alert.escalation_id,
        step_index=alert.step_index,
        acknowledged_at=aware(alert.acknowledged_at),
        acknowledged_by=alert.acknowledged_by,
        action=alert.ack_action or AckAction.ACKNOWLEDGED.value,
        already=already,
    )
