"""Turning an escalation event into alerts and ledger rows, in one database transaction.

Idempotent: an event seen before (by event_id) does nothing; an (escalation, step) already alerted gets no
new recipients, and the ledger's UNIQUE (escalation_id, step_index, recipient, channel) makes a second row
for the same delivery impossible even if two workers race.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from services.notify import metrics
from services.notify.directory import DirectoryError, Recipient, resolve_recipients
from services.notify.directory_store import load_directory
from services.notify.models import (
    AlertState,
    DeliveryState,
    NotifyAlert,
    NotifyAudit,
    NotifyDelivery,
    NotifyEscalation,
    NotifyOutbox,
    NotifyProcessedEvent,
    aware,
)
from shared.deadletter import dead_letter_for
from shared.events.internal import Escalation, EscalationAction
from shared.logs import get_logger
from shared.outbox import add_to_outbox

log = get_logger(__name__)
# An event rule's alert about a child with no case (EscalationPayload.case_state None).
NO_CASE = "no_case"
NOTIFY_NAMESPACE = uuid.UUID("1d7b3c52-5a0e-4c1b-8f0c-3b2f4e6a9d11")
SERVICE = "notify"


def alert_id_for(escalation_id: uuid.UUID | str, step_index: int) -> str:
    return str(uuid.uuid5(NOTIFY_NAMESPACE, f"alert:{escalation_id}:{step_index}"))


def delivery_id_for(escalation_id: str, step_index: int, recipient: str, channel: str) -> str:
    return str(uuid.uuid5(NOTIFY_NAMESPACE, f"delivery:{escalation_id}:{step_index}:{recipient}:{channel}"))


@dataclass(frozen=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Outcome:
    action: str  # "duplicate", "cancelled", "ignored", "superseded", "alerted", "unroutable"
    deliveries: int = 0


def handle_escalation(
    session: Session, event: Escalation, source: SourceRecord, dead_letter_topic: str, now: datetime
) -> Outcome:
    p = event.payload
    if session.get(NotifyProcessedEvent, str(event.event_id)) is not None:
        return Outcome("duplicate")
    session.add(NotifyProcessedEvent(event_id=str(event.event_id), processed_at=now))
    escalation = _upsert_escalation(session, event, now)

    if p.action is EscalationAction.CANCELLED:
        return _cancel(session, escalation, event, now)
    if escalation.cancelled_at is not None:
        # A cancelled escalation never restarts (the escalation service opens a new one instead).
        _audit(session, p.la_code, "cme-escalation", "ignored_after_cancel", None, str(p.escalation_id), now)
        return Outcome("ignored")

    alert_id = alert_id_for(p.escalation_id, p.step_index)
    if session.get(NotifyAlert, alert_id) is not None:
        return Outcome("duplicate")  # this step was alerted already: recipients are fixed at first sight
    acked_at = escalation.acknowledged_at
    superseded = (
        p.action is EscalationAction.STEPPED_UP
        and acked_at is not None
        and event.occurred_at <= aware(acked_at)
    )
    alert = NotifyAlert(
        alert_id=alert_id,
        escalation_id=str(p.escalation_id),
        step_index=p.step_index,
        la_code=p.la_code,
        child_id=str(p.child_id),
        case_id=str(p.case_id),
        level=p.level.value,
        rule_id=p.rule_id,
        reason_code=p.reason_code,
        case_state=p.case_state.value if p.case_state is not None else NO_CASE,
        next_step_due_at=p.next_step_due_at,
        source_event_id=str(event.event_id),
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        escalated_at=event.occurred_at,
        late=p.late,
        created_at=now,
        state=AlertState.SUPERSEDED.value if superseded else AlertState.OPEN.value,
    )
    session.add(alert)
    session.flush()
    if superseded:
        # Decided before someone acknowledged: the ladder has stopped, do not wake the next level.
        _audit(
            session,
            p.la_code,
            "cme-escalation",
            "step_superseded_by_ack",
            alert_id,
            str(p.escalation_id),
            now,
        )
        return Outcome("superseded")

    recipients = _recipients(session, event, now)
    if not recipients:
        metrics.UNROUTABLE.inc()
        log.error(
            "escalation_unroutable",
            escalation_id=str(p.escalation_id),
            level=p.level.value,
            **event.log_fields(),
        )
        error = LookupError(f"no recipient for LA {p.la_code} level {p.level.value}")
        dead = dead_letter_for(
            service=SERVICE,
            la_code=p.la_code,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            key=source.key,
            value=source.value,
            error=error,
        )
        add_to_outbox(
            session, NotifyOutbox, dead_letter_topic, source.key.decode() if source.key else None, dead
        )
        _audit(session, p.la_code, "cme-notify", "unroutable", alert_id, str(p.escalation_id), now)
        # Forget that this event and step were seen: once the directory is fixed, a replay of the dead letter
        # (same event_id, same alert_id) must be alerted, not dropped as a duplicate.
        session.delete(alert)
        processed = session.get(NotifyProcessedEvent, str(event.event_id))
        if processed is not None:
            session.delete(processed)
        return Outcome("unroutable")

    inserted = insert_deliveries(session, alert, recipients, now)
    return Outcome("alerted", inserted)


def insert_deliveries(
    session: Session, alert: NotifyAlert, recipients: list[Recipient], now: datetime
) -> int:
    """Write the ledger rows (ON CONFLICT DO NOTHING on the unique delivery tuple); returns the new ones."""
    rows = [
        {
            "delivery_id": delivery_id_for(alert.escalation_id, alert.step_index, r.key, r.channel.value),
            "alert_id": alert.alert_id,
            "escalation_id": alert.escalation_id,
            "step_index": alert.step_index,
            "recipient": r.key,
            "channel": r.channel.value,
            "la_code": alert.la_code,
            "on_behalf_of": r.on_behalf_of,
            "address": r.address,
            "secret_env": r.secret_env,
            "state": DeliveryState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for r in recipients
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Any = NotifyDelivery.__table__  # type: ignore[attr-defined]  # the Core table: a plain INSERT .. ON CONFLICT, not the ORM bulk path
    stmt = (
        insert(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["escalation_id", "step_index", "recipient", "channel"])
        .returning(table.c.id)
    )
    return len(session.execute(stmt).all())


def _recipients(session: Session, event: Escalation, now: datetime) -> list[Recipient]:
    directory = load_directory(session, event.payload.la_code)
    if directory is None:
        return []
    try:
        return resolve_recipients(directory, event.payload.level, now)
    except DirectoryError as exc:
        log.error("directory_error", error=str(exc), **event.log_fields())
        return []


def _upsert_escalation(session: Session, event: Escalation, now: datetime) -> NotifyEscalation:
    p = event.payload
    row = session.get(NotifyEscalation, str(p.escalation_id), with_for_update=True)
    if row is None:
        row = NotifyEscalation(
            escalation_id=str(p.escalation_id),
            la_code=p.la_code,
            child_id=str(p.child_id),
            case_id=str(p.case_id),
            rule_id=p.rule_id,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    return row


def _cancel(session: Session, escalation: NotifyEscalation, event: Escalation, now: datetime) -> Outcome:
    p = event.payload
    if escalation.cancelled_at is None:
        escalation.cancelled_at = now
        escalation.cancel_reason = p.reason_code
        escalation.updated_at = now
        session.add(escalation)
    session.execute(
        update(NotifyAlert)
        .where(
            col(NotifyAlert.escalation_id) == str(p.escalation_id),
            col(NotifyAlert.state) == AlertState.OPEN.value,
        )
        .values(state=AlertState.CANCELLED.value)
    )
    withdrawn = withdraw_pending(
        session, NotifyDelivery.escalation_id == str(p.escalation_id), "escalation cancelled"
    )
    _audit(
        session,
        p.la_code,
        "cme-escalation",
        "cancelled",
        None,
        str(p.escalation_id),
        now,
        detail=f"reason={p.reason_code}; withdrawn={withdrawn}",
    )
    return Outcome("cancelled", withdrawn)


def withdraw_pending(session: Session, condition: object, why: str) -> int:
    """Withdraw deliveries not yet claimed for sending (one claimed is in flight and finishes)."""
    result = session.execute(
        update(NotifyDelivery)
        .where(condition, col(NotifyDelivery.state) == DeliveryState.PENDING.value)  # type: ignore[arg-type]
        .values(state=DeliveryState.WITHDRAWN.value, last_error=why)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _audit(
    session: Session,
    la_code: str,
    actor: str,
    action: str,
    alert_id: str | None,
    escalation_id: str | None,
    now: datetime,
    detail: str | None = None,
) -> None:
    session.add(
        NotifyAudit(
            at=now,
            la_code=la_code,
            actor=actor,
            action=action,
            alert_id=alert_id,
            escalation_id=escalation_id,
            detail=detail,
        )
    )
