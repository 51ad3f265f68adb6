"""Reviews of open cases: a case whose alert was acknowledged, resolved or ran out of steps comes back to
its caseworker on the LA's review cadence."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from services.escalation.episodes import rule_order, start_clock
from services.escalation.models import (
    DeadlineStatus,
    EscalationCase,
    EscalationDeadline,
    EscalationRecord,
)
from services.escalation.rules import CASE_REVIEW
from services.escalation.unit_of_work import Deps, as_utc, derived_id
from shared.events.internal import (
    RESOLVED_STATES,
)
from shared.logs import get_logger

log = get_logger(__name__)


def schedule_review(
    session: Session, deps: Deps, esc: EscalationRecord, *, at: datetime, partition: int | None = None
) -> bool:
    """ "Enquiries inconclusive" never closes a case: an open case whose alert was acknowledged, resolved or
    ran out of steps comes back to its caseworker on the LA's review cadence (the rule watching
    ``case-review``), one review at a time, counted from ``at``, until the case leaves the state (its
    watch key) or an outcome resolves it. False when nothing was scheduled."""
    case = session.get(EscalationCase, (esc.child_id, esc.la_code))
    if case is None or case.state in RESOLVED_STATES:
        return False
    if as_utc(case.state_since) > as_utc(at):
        # By event time the case left the state it was in at ``at`` (a backlog read the facts after it before
        # deciding): that state's review would have stopped there, so none starts; the same facts give the
        # same reviews however far behind escalation was.
        return False
    rules = [r for r in deps.rules.rules_for(esc.la_code) if r.watches.event == CASE_REVIEW]
    if not rules:
        return False  # the LA disabled reviews
    pending = session.exec(
        select(EscalationDeadline.id).where(
            EscalationDeadline.child_id == esc.child_id,
            EscalationDeadline.la_code == esc.la_code,
            EscalationDeadline.status == DeadlineStatus.PENDING,
            col(EscalationDeadline.rule_id).in_([r.id for r in rules]),
            col(EscalationDeadline.ended_at).is_(None),  # an ended one only waits to be recorded
        )
    ).first()
    if pending is not None:
        return False
    rule = rules[0]
    start_clock(
        session,
        rule,
        rule_order(deps.rules, esc.la_code).get(rule.id, 0),
        child=esc.child_id,
        la=esc.la_code,
        case_id=esc.case_id,
        trigger_event_id=derived_id("review", esc.id),
        due_at=rule.clock.due_at(at, deps.calendars.calendar_for(esc.la_code)),
        watch_key=case.state,
        partition=partition,
        clock_started_at=at,
    )
    return True
