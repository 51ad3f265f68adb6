"""The timer's unit of work: :func:`fire_deadline` claims one due deadline (``pending`` -> ``fired``) and
writes the resulting Escalation events to the outbox in the same transaction, so a deadline fires exactly
once however often workers crash or race. Decided on the partition's horizon
(``services.escalation.watermarks``): recorded without alerting anyone when the episode had already ended."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from services.escalation import metrics
from services.escalation.episodes import close_escalation
from services.escalation.ladder import Advance, LadderPosition, StepAlert, advance
from services.escalation.models import (
    NO_CASE,
    WITHHELD_EPISODE_CLOSED,
    DeadlineKind,
    DeadlineStatus,
    EscalationCase,
    EscalationDeadline,
    EscalationOutbox,
    EscalationRecord,
    EscalationStatus,
    EscalationStep,
)
from services.escalation.publishing import publish, publish_cancel
from services.escalation.reviews import schedule_review
from services.escalation.rules import Rule
from services.escalation.unit_of_work import Deps, Outcome, as_utc, derived_id
from services.escalation.watermarks import Horizon
from shared.case_ids import case_id_for
from shared.events.envelope import Source
from shared.events.internal import (
    CaseClockExpired,
    CaseClockExpiredPayload,
    EscalationAction,
)
from shared.logs import get_logger
from shared.outbox import add_to_outbox

log = get_logger(__name__)


def fire_deadline(
    session: Session, deps: Deps, deadline_id: str, now: datetime, horizon: Horizon | None = None
) -> Outcome:
    """Decide one due deadline exactly once: claim it and write what it causes, in the caller's transaction.

    Decided on its partition's horizon (event time): the ladder moves up to the horizon, never past the
    event time a fact ended the episode at; when the episode had ended by the horizon the steps are recorded
    (``withheld='episode_closed'``) and nobody is alerted. No horizon: every partition is caught up with now.
    """
    horizon = horizon or Horizon.caught_up(now)
    deadline = session.get(EscalationDeadline, deadline_id)
    if deadline is None:
        return Outcome("unknown")
    ended = as_utc(deadline.ended_at) if deadline.ended_at is not None else None
    started = deadline.clock_started_at
    as_of = horizon.as_of_deadline(deadline.partition, deadline.due_at, started)
    if as_of is None or not horizon.decidable(deadline.partition, deadline.due_at, ended, started):
        return Outcome("not_decidable")  # its facts up to the due time are not all read yet
    claimed = session.execute(
        update(EscalationDeadline)
        .where(
            col(EscalationDeadline.id) == deadline_id,
            col(EscalationDeadline.status) == DeadlineStatus.PENDING,
        )
        .values(status=DeadlineStatus.FIRED, fired_at=as_utc(now))
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return Outcome("already_fired")  # another worker (or an earlier run) got it
    session.refresh(deadline)
    ended = as_utc(deadline.ended_at) if deadline.ended_at is not None else None
    rule = Rule.model_validate_json(deadline.rule_json)
    calendar = deps.calendars.calendar_for(deadline.la_code)
    due = as_utc(deadline.due_at)
    metrics.TIMER_LAG.observe(max(0.0, (as_utc(now) - due).total_seconds()))
    if deadline.kind == DeadlineKind.RULE:
        case = session.get(EscalationCase, (deadline.child_id, deadline.la_code))
        # The clock may have started from a fact that reached us before tracking's case transition did.
        case_id = deadline.case_id or (
            case.case_id if case else case_id_for(deadline.child_id, deadline.la_code)
        )
        # The case's state as tracking's transitions say, never a guess: a state rule's is the state it
        # watches; an event rule's is the state escalation holds from the transitions, or none when no
        # transition of the child has been read (tracking opens no case for some watched facts).
        if rule.watches.state is not None:
            case_state = rule.watches.state.value
        else:
            case_state = case.state if case is not None else NO_CASE
        esc = EscalationRecord(
            id=derived_id("escalation", deadline.id),
            la_code=deadline.la_code,
            child_id=deadline.child_id,
            case_id=case_id,
            rule_id=rule.id,
            rule_fingerprint=deadline.rule_fingerprint,
            rule_json=deadline.rule_json,
            watch_key=deadline.watch_key,
            case_state=case_state,
            step_index=-1,
            step_due_at=due,
            fired_at=due,
            ended_at=ended,
        )
        session.add(esc)
        session.flush()
    else:
        found = session.get(EscalationRecord, deadline.escalation_id)
        if found is None or found.status != EscalationStatus.OPEN:
            return Outcome("escalation_closed")
        esc = found
    # Only the steps due at this deadline's instant (zero-delay steps go together); a later step, even one
    # already due, gets its own deadline, decided in due order with every other one, so a backlog decides
    # in the order a worker that kept up did (a ladder running out schedules a review, which depends on
    # what ran out first). The episode's end is later than the due time, or the deadline was cancelled.
    limit = due
    withheld = WITHHELD_EPISODE_CLOSED if ended is not None and ended <= as_of else None
    if deadline.kind == DeadlineKind.RULE and rule.moves_case and withheld is None:
        _publish_clock_expired(session, deps, deadline, esc.case_id, rule)
    position = LadderPosition(esc.step_index, as_utc(esc.step_due_at))
    result = advance(rule, position, limit, calendar)
    published = _apply_advance(
        session, deps, esc, rule, result, now, deadline, horizon=horizon, withheld=withheld
    )
    if ended is not None and (result.next_due_at is None or result.next_due_at >= ended):
        # The episode is over: what it alerted is withdrawn, as when the ending fact was applied.
        status = EscalationStatus(deadline.end_status or EscalationStatus.CANCELLED)
        reason = deadline.end_reason or "episode_ended"
        published += publish_cancel(session, deps, esc, reason, now, at=ended)
        close_escalation(session, esc, now, status, reason)
        action = "fired_episode_ended" if withheld is None else "recorded_episode_closed"
        return Outcome(action, published=published)
    if result.next_due_at is None and withheld is None:
        # The ladder has run out with the case still open: it comes back on the review cadence.
        schedule_review(session, deps, esc, at=as_utc(esc.step_due_at), partition=deadline.partition)
    return Outcome("fired", published=published)


def _apply_advance(
    session: Session,
    deps: Deps,
    esc: EscalationRecord,
    rule: Rule,
    result: Advance,
    now: datetime,
    deadline: EscalationDeadline,
    *,
    horizon: Horizon,
    withheld: str | None = None,
) -> int:
    """Record the steps ``result`` alerts (published, or suppressed as a duplicate, or ``withheld``) and the
    next step's deadline, which inherits the partition and the episode's end from ``deadline``."""
    published = 0
    trigger_event_id, order = deadline.trigger_event_id, deadline.rule_order
    ended = as_utc(deadline.ended_at) if deadline.ended_at is not None else None
    for i, alert in enumerate(result.alerts):
        following = result.alerts[i + 1].due_at if i + 1 < len(result.alerts) else result.next_due_at
        if ended is not None and following is not None and following >= ended:
            following = None  # the episode ends before that step
        duplicate_of = _duplicate_of(session, esc, alert) if alert.step_index > 0 and not withheld else None
        send = duplicate_of is None and withheld is None
        late = send and horizon.is_late(alert.due_at)
        session.add(
            EscalationStep(
                escalation_id=esc.id,
                step_index=alert.step_index,
                case_id=esc.case_id,
                level=alert.level.value,
                due_at=alert.due_at,
                alerted_at=as_utc(now),
                published=send,
                duplicate_of=duplicate_of,
                withheld=withheld,
                late=late,
            )
        )
        session.flush()
        labels = {"level": alert.level.value, "rule": rule.id}
        if send:
            publish(
                session,
                deps,
                esc,
                alert.action,
                alert.step_index,
                alert.level.value,
                rule.id,
                alert.due_at,
                following,
                trigger_event_id,
                late=late,
            )
            published += 1
            counter = metrics.RAISED if alert.action == EscalationAction.RAISED else metrics.STEPPED_UP
            counter.labels(**labels).inc()
            if late:
                metrics.LATE.labels(**labels).inc()
        elif duplicate_of is not None:
            metrics.DUPLICATES.labels(**labels).inc()
        else:
            metrics.WITHHELD.labels(**labels).inc()
    esc.step_index, esc.step_due_at = result.position.step_index, result.position.step_due_at
    session.add(esc)
    if result.next_due_at is not None and (ended is None or result.next_due_at < ended):
        next_index = result.position.step_index + 1
        session.add(
            EscalationDeadline(
                id=derived_id("step", esc.id, next_index),
                kind=DeadlineKind.STEP,
                due_at=result.next_due_at,
                la_code=esc.la_code,
                child_id=esc.child_id,
                case_id=esc.case_id,
                rule_id=esc.rule_id,
                watch_key=esc.watch_key,
                trigger_event_id=trigger_event_id,
                escalation_id=esc.id,
                step_index=next_index,
                rule_order=order,
                rule_json=esc.rule_json,
                rule_fingerprint=esc.rule_fingerprint,
                partition=deadline.partition,
                # The clock's start, so that a zero-delay step of an immediate rule is immediate too.
                clock_started_at=deadline.clock_started_at,
                ended_at=deadline.ended_at,
                end_reason=deadline.end_reason,
                end_status=deadline.end_status,
            )
        )
    return published


def _publish_clock_expired(
    session: Session, deps: Deps, deadline: EscalationDeadline, case_id: str, rule: Rule
) -> None:
    """Tell tracking that a clock which moves the case ran out while, by every fact up to its due time, the
    case was still in the watched state. Dated the due time; its id derived from the deadline (itself derived
    from the child, rule and the transition that started it), so a repeat after a crash is the same fact."""
    due = as_utc(deadline.due_at)
    assert rule.watches.state is not None
    event = CaseClockExpired(
        event_id=uuid.UUID(derived_id("clock-expired", deadline.id)),
        occurred_at=due,
        source=Source(system="cme-escalation", la_code=deadline.la_code),
        correlation_id=uuid.UUID(deadline.trigger_event_id),
        payload=CaseClockExpiredPayload(
            child_id=uuid.UUID(deadline.child_id),
            case_id=uuid.UUID(case_id),
            la_code=deadline.la_code,
            rule_id=rule.id,
            state=rule.watches.state,
            # A clock started before this column existed: its due time (tracking then checks the state only).
            clock_started_at=as_utc(deadline.clock_started_at or due),
            due_at=due,
        ),
    )
    add_to_outbox(session, EscalationOutbox, deps.child_events_topic, deadline.child_id, event)
    log.info("clock_expired_published", rule_id=rule.id, la_code=deadline.la_code, due_at=due.isoformat())


def _duplicate_of(session: Session, esc: EscalationRecord, alert: StepAlert) -> str | None:
    """Another open escalation of the same case that alerted the same level at the same instant."""
    stmt = (
        select(EscalationStep.escalation_id)
        .join(EscalationRecord, col(EscalationRecord.id) == col(EscalationStep.escalation_id))
        .where(
            EscalationStep.case_id == esc.case_id,
            EscalationStep.level == alert.level.value,
            col(EscalationStep.due_at) == alert.due_at,
            col(EscalationStep.published).is_(True),
            EscalationStep.escalation_id != esc.id,
            EscalationRecord.status == EscalationStatus.OPEN,
        )
    )
    return session.exec(stmt).first()
