"""Alert acknowledgements: an ack stops the step-up; a "resolved" ack closes the escalation."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from services.escalation import metrics
from services.escalation.episodes import cancel_step_deadlines, close_escalation, lock_child_deadlines
from services.escalation.ladder import LadderPosition, acknowledgement_stops
from services.escalation.models import (
    EscalationRecord,
    EscalationStatus,
)
from services.escalation.publishing import publish_cancel
from services.escalation.reviews import schedule_review
from services.escalation.unit_of_work import Deps, Outcome, as_utc
from shared.events.internal import (
    AckAction,
    AlertAck,
)
from shared.logs import get_logger

log = get_logger(__name__)


def handle_ack(session: Session, deps: Deps, event: AlertAck, now: datetime) -> Outcome:
    p = event.payload
    esc = session.get(EscalationRecord, str(p.escalation_id))
    if esc is None or esc.la_code != p.la_code or esc.child_id != str(p.child_id):
        # Unknown, or for another LA's (or child's) escalation: never act across LAs.
        return Outcome("ignored_unknown")
    lock_child_deadlines(session, esc.child_id, esc.la_code)
    position = LadderPosition(
        esc.step_index, as_utc(esc.step_due_at), stopped=esc.status != EscalationStatus.OPEN
    )
    if p.action == AckAction.ACKNOWLEDGED:
        if not acknowledgement_stops(position, p.step_index):
            return Outcome("ignored_not_alerted" if esc.status == EscalationStatus.OPEN else "ignored_closed")
        cancelled = cancel_step_deadlines(session, esc.id, now, "acknowledged")
        esc.status = EscalationStatus.ACKNOWLEDGED
        esc.acknowledged_step, esc.acknowledged_by = p.step_index, p.by_user
        session.add(esc)
        metrics.ACKNOWLEDGED.labels(rule=esc.rule_id).inc()
        schedule_review(session, deps, esc, at=min(as_utc(event.occurred_at), as_utc(now)))
        return Outcome("acknowledged", cancelled=cancelled)
    # Resolved: the escalation ends, whichever step it was at.
    if esc.status in (EscalationStatus.RESOLVED, EscalationStatus.CANCELLED):
        return Outcome("ignored_closed")
    if p.step_index > esc.step_index:
        return Outcome("ignored_not_alerted")
    was_open = esc.status == EscalationStatus.OPEN
    cancelled = cancel_step_deadlines(session, esc.id, now, "resolved")
    # The reason (a fixed list) is kept with the escalation; resolving ends the alerts, never the case.
    reason = f"resolved:{p.resolution_reason.value}" if p.resolution_reason else "resolved_by_user"
    close_escalation(session, esc, now, EscalationStatus.RESOLVED, reason)
    esc.acknowledged_by = esc.acknowledged_by or p.by_user
    published = publish_cancel(session, deps, esc, "resolved_by_user", now) if was_open else 0
    schedule_review(session, deps, esc, at=min(as_utc(event.occurred_at), as_utc(now)))
    return Outcome("resolved", cancelled=cancelled, published=published)
