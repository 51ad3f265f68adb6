"""Starting and ending clocks. Clocks run on event time: a fact that ends an episode cancels only the
deadlines due after the fact's event time; one due before it was due while the episode was open and is
decided by the timer on the partition's horizon."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import or_, union_all, update
from sqlmodel import Session, col, select

from services.escalation.models import (
    DeadlineKind,
    DeadlineStatus,
    EscalationDeadline,
    EscalationRecord,
    EscalationStatus,
)
from services.escalation.publishing import publish_cancel
from services.escalation.rules import Rule, RuleSet
from services.escalation.unit_of_work import (
    OPEN_STATUSES,
    Deps,
    as_utc,
    children_by_la,
    derived_id,
    record_partition,
)
from shared.logs import get_logger
from shared.sql import any_of

log = get_logger(__name__)


# Ends a transition applies (end_episodes' reasons); others (a retraction, a place offered, a merge) are
# child facts or decisions, not part of the case's history.
TRANSITION_ENDS = ("case_moved_on:", "case_resolved:")


ACTIVE_OR_ENDED = (DeadlineStatus.PENDING, DeadlineStatus.CANCELLED)


def rule_order(rules: RuleSet, la: str) -> dict[str, int]:
    return {r.id: i for i, r in enumerate(rules.rules_for(la))}


def already_running(
    session: Session,
    child: str,
    la: str,
    rule: Rule,
    *,
    acknowledged_counts: bool = False,
    as_of: datetime | None = None,
) -> bool:
    """A pending clock or a live escalation of this rule for the child. For a state rule an acknowledged
    escalation still counts (the child is still in that state); a new event (a second exclusion) starts
    afresh once the earlier escalation was acknowledged, unless the caller says the fact repeats the duty
    (``acknowledged_counts``: a ground (o) deletion after the exclusion itself).

    ``as_of``: judged as of that event time, for a child fact read after a transition dated after it (two
    topics): a clock or escalation a transition ended at or after ``as_of`` was still running then, as it is
    when the fact is read before that transition."""
    rule_id = rule.id
    ack_counts = acknowledged_counts or rule.watches.state is not None
    statuses = OPEN_STATUSES if ack_counts else (EscalationStatus.OPEN,)
    # An ended episode's clock waits only to be decided: it no longer runs.
    clock_running = col(EscalationDeadline.status) == DeadlineStatus.PENDING
    clock_running &= col(EscalationDeadline.ended_at).is_(None)
    escalation_running = col(EscalationRecord.status).in_(statuses) & col(EscalationRecord.ended_at).is_(None)
    if as_of is not None:
        ended_later = (col(EscalationDeadline.ended_at) >= as_of) & or_(
            *(col(EscalationDeadline.end_reason).startswith(prefix) for prefix in TRANSITION_ENDS)
        )
        clock_running |= col(EscalationDeadline.status).in_(ACTIVE_OR_ENDED) & ended_later
        closed_later = (col(EscalationRecord.ended_at) >= as_of) & or_(
            *(col(EscalationRecord.close_reason).startswith(prefix) for prefix in TRANSITION_ENDS),
            col(EscalationRecord.status).in_(statuses),
        )
        escalation_running |= closed_later
    pending = session.exec(
        select(EscalationDeadline.id).where(
            EscalationDeadline.child_id == child,
            EscalationDeadline.la_code == la,
            EscalationDeadline.rule_id == rule_id,
            EscalationDeadline.kind == DeadlineKind.RULE,
            clock_running,
        )
    ).first()
    if pending is not None:
        return True
    running = session.exec(
        select(EscalationRecord.id).where(
            EscalationRecord.child_id == child,
            EscalationRecord.la_code == la,
            EscalationRecord.rule_id == rule_id,
            escalation_running,
        )
    ).first()
    return running is not None


IDLE = "escalation_idle_children"


def load_idle(session: Session, keys: Collection[tuple[str, str]]) -> None:
    """Of a batch's children (child, LA), those with no pending deadline and no running escalation, in one
    statement per LA: ending their episodes or locking their deadlines finds nothing, so it is skipped
    (most children of a roll load have never been alerted on). In a consumer's transaction only
    ``start_clock`` gives such a child a pending deadline (the timer's steps follow escalations, which these
    children have none of), and it takes the child off the set; the caller leaves out a child whose history a
    batch re-folds, whose alert is acknowledged or who is merged (those may re-open what had ended)."""
    by_la = children_by_la(keys)
    idle: set[tuple[str, str]] = session.info.setdefault(IDLE, set())
    for la, children in by_la.items():
        pending = select(EscalationDeadline.child_id).where(
            col(EscalationDeadline.la_code) == la,
            any_of(session, col(EscalationDeadline.child_id), children),
            col(EscalationDeadline.status) == DeadlineStatus.PENDING,
        )
        running = select(EscalationRecord.child_id).where(
            col(EscalationRecord.la_code) == la,
            any_of(session, col(EscalationRecord.child_id), children),
            col(EscalationRecord.status).in_(OPEN_STATUSES),
            col(EscalationRecord.ended_at).is_(None),
        )
        # One round trip, not two: small batches pay a statement's fixed cost many times a second.
        busy = set(session.execute(union_all(pending, running)).scalars().all())
        idle.update((child, la) for child in children if child not in busy)


def is_idle(session: Session, child: str, la: str) -> bool:
    return (child, la) in session.info.get(IDLE, ())


def lock_child_deadlines(session: Session, child: str, la: str) -> None:
    """Lock the child's pending deadlines in the timer's order, (due_at, rule_order, id), before changing any.
    The timer claims deadlines in that order, several per transaction; an UPDATE of many rows locks them in
    table order, so without this a consumer and another instance's timer could each hold one deadline the
    other waits for (PostgreSQL "deadlock detected"). SQLite has no row locks and ignores it."""
    if is_idle(session, child, la):
        return  # none to lock
    session.exec(
        select(EscalationDeadline.id)
        .where(
            EscalationDeadline.child_id == child,
            EscalationDeadline.la_code == la,
            EscalationDeadline.status == DeadlineStatus.PENDING,
        )
        .order_by(
            col(EscalationDeadline.due_at), col(EscalationDeadline.rule_order), col(EscalationDeadline.id)
        )
        .with_for_update()
    ).all()


def start_clock(
    session: Session,
    rule: Rule,
    order: int,
    *,
    child: str,
    la: str,
    case_id: str | None,
    trigger_event_id: str,
    due_at: datetime,
    watch_key: str | None = None,
    partition: int | None = None,
    clock_started_at: datetime | None = None,
    provisional: bool = False,
) -> None:
    """``provisional``: started by a transition folded ahead, until its in-order twin is read."""
    session.info.get(IDLE, set()).discard((child, la))  # it has a clock from now on
    deadline_id = derived_id("rule", child, la, rule.id, trigger_event_id)
    if session.get(EscalationDeadline, deadline_id) is not None:
        return
    session.add(
        EscalationDeadline(
            id=deadline_id,
            kind=DeadlineKind.RULE,
            due_at=as_utc(due_at),
            la_code=la,
            child_id=child,
            case_id=case_id,
            rule_id=rule.id,
            watch_key=watch_key or rule.watches.key,
            trigger_event_id=trigger_event_id,
            rule_order=order,
            rule_json=rule.canonical_json,
            rule_fingerprint=rule.fingerprint,
            partition=record_partition(session) if partition is None else partition,
            clock_started_at=as_utc(clock_started_at) if clock_started_at is not None else None,
            provisional=provisional,
        )
    )
    session.flush()
    log.info("clock_started", rule_id=rule.id, la_code=la, due_at=as_utc(due_at).isoformat())


def close_escalation(
    session: Session, esc: EscalationRecord, now: datetime, status: EscalationStatus, reason: str
) -> None:
    esc.status, esc.closed_at, esc.close_reason = status.value, as_utc(now), reason
    session.add(esc)


def cancel_step_deadlines(session: Session, escalation_id: str, now: datetime, reason: str) -> int:
    result = session.execute(
        update(EscalationDeadline)
        .where(
            col(EscalationDeadline.escalation_id) == escalation_id,
            col(EscalationDeadline.status) == DeadlineStatus.PENDING,
        )
        .values(status=DeadlineStatus.CANCELLED, cancelled_at=as_utc(now), cancel_reason=reason)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    return count


def end_episodes(
    session: Session,
    deps: Deps,
    child: str,
    la: str,
    now: datetime,
    *,
    reason: str,
    watch_keys: Sequence[str] | None = None,
    trigger_event_id: str | None = None,
    close: EscalationStatus = EscalationStatus.CANCELLED,
    at: datetime | None = None,
    started_before: datetime | None = None,
    spare_trigger: str | None = None,
    spare_provisional: bool = False,
) -> tuple[int, int]:
    """End the child's episodes (all, or those of the watches / trigger named) at event time ``at`` (else
    now): pending deadlines due at or after ``at`` are cancelled (they never fell due while the episode was
    open); those due before it stay pending, marked with the end, for the timer to decide by event time.
    Open escalations close, publishing ``cancelled`` when they alerted somebody so notify withdraws pending
    sends, unless a step due before the end is still undecided: then they close when it is decided.
    Deadlines are updated before escalations, the same order the timer locks them in. The end is kept on
    every deadline it touched (cancelled or not), so a re-fold can undo it (``reconcile``).

    ``started_before``: only the clocks started (by event time) by that moment, and their escalations: a
    re-fold replays a case's history after facts that arrived earlier started later clocks.

    ``spare_trigger``: the fact that caused this end; the clocks it started itself are not ended by it (a
    notice of home education that resolves the case still alerts social care for a child under protection).

    ``spare_provisional``: an in-order transition read before the twin of a provisional one comes before it
    in the case's order, so the clocks the provisional one started at or after ``at`` are left alone."""
    if is_idle(session, child, la):
        return 0, 0  # no pending deadline, no running escalation: nothing to end
    end = as_utc(at) if at is not None else as_utc(now)
    reason = reason[:64]
    where = [
        col(EscalationDeadline.child_id) == child,
        col(EscalationDeadline.la_code) == la,
        col(EscalationDeadline.status) == DeadlineStatus.PENDING,
    ]
    if watch_keys is not None:
        where.append(col(EscalationDeadline.watch_key).in_(watch_keys))
    if trigger_event_id is not None:
        where.append(col(EscalationDeadline.trigger_event_id) == trigger_event_id)
    later: set[str] = set()  # escalations left alone: of clocks started after started_before, or spared
    if spare_trigger is not None:
        where.append(col(EscalationDeadline.trigger_event_id) != spare_trigger)
        own = session.exec(
            select(EscalationDeadline.id).where(
                EscalationDeadline.child_id == child,
                EscalationDeadline.la_code == la,
                EscalationDeadline.kind == DeadlineKind.RULE,
                EscalationDeadline.trigger_event_id == spare_trigger,
            )
        ).all()
        later = {derived_id("escalation", deadline_id) for deadline_id in own}
    later_than = []  # the clocks that come after this end in the case's order
    if started_before is not None:
        later_than.append(col(EscalationDeadline.clock_started_at) > as_utc(started_before))
    if spare_provisional:
        later_than.append(
            col(EscalationDeadline.provisional).is_(True) & (col(EscalationDeadline.clock_started_at) >= end)
        )
    if later_than:
        later_clocks = session.exec(
            select(EscalationDeadline.id).where(
                EscalationDeadline.child_id == child,
                EscalationDeadline.la_code == la,
                EscalationDeadline.kind == DeadlineKind.RULE,
                or_(*later_than),
            )
        ).all()
        later |= {derived_id("escalation", deadline_id) for deadline_id in later_clocks}
        where.append(col(EscalationDeadline.id).not_in(list(later_clocks)))
        where.append(
            or_(
                col(EscalationDeadline.escalation_id).is_(None),
                col(EscalationDeadline.escalation_id).not_in(list(later)),
            )
        )
    result = session.execute(
        update(EscalationDeadline)
        .where(*where, col(EscalationDeadline.due_at) >= end)
        .values(
            status=DeadlineStatus.CANCELLED,
            cancelled_at=as_utc(now),
            cancel_reason=reason,
            ended_at=end,
            end_reason=reason,
            end_status=close.value,
        )
    )
    cancelled = int(result.rowcount)  # type: ignore[attr-defined]
    session.execute(
        update(EscalationDeadline)
        .where(*where, col(EscalationDeadline.due_at) < end, col(EscalationDeadline.ended_at).is_(None))
        .values(ended_at=end, end_reason=reason, end_status=close.value)
    )
    stmt = select(EscalationRecord).where(
        EscalationRecord.child_id == child,
        EscalationRecord.la_code == la,
        col(EscalationRecord.status).in_(OPEN_STATUSES),
        col(EscalationRecord.ended_at).is_(None),
    )
    if watch_keys is not None:
        stmt = stmt.where(col(EscalationRecord.watch_key).in_(watch_keys))
    published = 0
    escalations = list(session.exec(stmt).all())
    if trigger_event_id is not None:
        started = session.exec(
            select(EscalationDeadline.id).where(
                EscalationDeadline.trigger_event_id == trigger_event_id,
                EscalationDeadline.kind == DeadlineKind.RULE,
            )
        ).all()
        fired = {derived_id("escalation", deadline_id) for deadline_id in started}
        escalations = [e for e in escalations if e.id in fired]
    escalations = [e for e in escalations if e.id not in later]
    for esc in escalations:
        undecided = session.exec(
            select(EscalationDeadline.id).where(
                EscalationDeadline.escalation_id == esc.id,
                EscalationDeadline.status == DeadlineStatus.PENDING,
            )
        ).first()
        if undecided is not None:
            esc.ended_at = end  # a step due before the end is still to be decided; it closes the escalation
            session.add(esc)
            continue
        if esc.status == EscalationStatus.OPEN:
            published += publish_cancel(session, deps, esc, reason, now, at=end)
        esc.ended_at = end  # kept: as of an earlier event time it was still running (already_running)
        close_escalation(session, esc, now, close, reason)
        cancelled += 1
    return cancelled, published
