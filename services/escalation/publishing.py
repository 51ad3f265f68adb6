"""Escalation events to the outbox: a step alerted, or the withdrawal (``cancelled``) of an escalation
that alerted somebody."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Session, col, select

from services.escalation import metrics
from services.escalation.models import (
    NO_CASE,
    EscalationOutbox,
    EscalationRecord,
    EscalationStep,
)
from services.escalation.rules import Rule
from services.escalation.unit_of_work import Deps, as_utc
from shared.events.envelope import Source
from shared.events.internal import (
    Escalation,
    EscalationAction,
    EscalationPayload,
)
from shared.logs import get_logger
from shared.outbox import add_to_outbox

log = get_logger(__name__)


def publish(
    session: Session,
    deps: Deps,
    esc: EscalationRecord,
    action: EscalationAction,
    step_index: int,
    level: str,
    reason_code: str,
    occurred_at: datetime,
    next_due: datetime | None,
    trigger_event_id: str | None,
    *,
    late: bool = False,
) -> None:
    event = Escalation(
        event_id=uuid.uuid5(uuid.UUID(esc.id), f"{action.value}:{step_index}"),
        occurred_at=occurred_at,
        source=Source(system="cme-escalation", la_code=esc.la_code),
        correlation_id=uuid.UUID(trigger_event_id) if trigger_event_id else None,
        payload=EscalationPayload(
            escalation_id=uuid.UUID(esc.id),
            child_id=uuid.UUID(esc.child_id),
            case_id=uuid.UUID(esc.case_id),
            la_code=esc.la_code,
            rule_id=esc.rule_id,
            rule_fingerprint=esc.rule_fingerprint,
            action=action,
            level=level,  # type: ignore[arg-type]
            step_index=step_index,
            case_state=None if esc.case_state == NO_CASE else esc.case_state,  # type: ignore[arg-type]
            reason_code=reason_code,
            next_step_due_at=next_due,
            late=late,
        ),
    )
    add_to_outbox(session, EscalationOutbox, deps.escalations_topic, esc.child_id, event)
    log.info(
        "escalation_event",
        action=action.value,
        rule_id=esc.rule_id,
        step_index=step_index,
        level=level,
        escalation_id=esc.id,
        la_code=esc.la_code,
    )


def _last_alerted(session: Session, escalation_id: str) -> int | None:
    """The last step of the escalation that was published (not every recorded step is: see
    EscalationStep.withheld and duplicate_of), or None when nobody was alerted."""
    stmt = (
        select(EscalationStep.step_index)
        .where(EscalationStep.escalation_id == escalation_id, col(EscalationStep.published).is_(True))
        .order_by(col(EscalationStep.step_index).desc())
        .limit(1)
    )
    return session.exec(stmt).first()


def publish_cancel(
    session: Session,
    deps: Deps,
    esc: EscalationRecord,
    reason: str,
    now: datetime,
    *,
    at: datetime | None = None,
) -> int:
    """Publish ``cancelled`` for an escalation that alerted somebody, at the last step it alerted (``at``: the
    event time of what ended it, else now)."""
    step_index = _last_alerted(session, esc.id) if esc.step_index >= 0 else None
    if step_index is None:
        return 0  # nothing was ever alerted
    level = Rule.model_validate_json(esc.rule_json).ladder[step_index].level.value
    action, moment = EscalationAction.CANCELLED, as_utc(at or now)
    publish(session, deps, esc, action, step_index, level, reason, moment, None, None)
    metrics.CANCELLED.labels(level=level, rule=esc.rule_id).inc()
    return 1
