"""Undo what escalation derived from a case's transitions after a moment, so that a re-fold's history
(tracking's ``CaseHistory``: a late fact or a correction) can be replayed in event-time order in its place.

Escalation's clocks are a function of each case's event-time state history, not of the order transitions
arrived in: when tracking re-folds a case it sends the history from the late fact on; escalation rewinds
the state-rule clocks it started from that moment (and the ends it applied from then on) and replays the
history's transitions through the ordinary transition handling, with the ids tracking gives them in order.
So the deadlines, escalation ids and steps are the ones in-order facts give.

What alerted somebody stays (an alert is not unsent): a clock that fired beyond the watermark for an
episode the history no longer has is ended at the event time the history says. What was only recorded for
an episode a transition had closed, alerting nobody, is decided again when the history lifts that end (a
correction of the fact that closed it): the child is still in the watched state (docs/ESCALATION.md,
"Facts behind the watermark").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from services.escalation.episodes import TRANSITION_ENDS, already_running, rule_order, start_clock
from services.escalation.models import (
    WITHHELD_EPISODE_CLOSED,
    DeadlineKind,
    DeadlineStatus,
    EscalationCase,
    EscalationDeadline,
    EscalationRecord,
    EscalationStep,
)
from services.escalation.resolutions import forget_from
from services.escalation.rules import Rule
from services.escalation.unit_of_work import OPEN_STATUSES, Deps, as_utc, derived_id
from shared.events.internal import RESOLVED_STATES, CaseHistory


def _is_state_clock(deadline: EscalationDeadline) -> bool:
    """A clock a transition started (a rule watching a state), not an event rule's or a review's."""
    if deadline.kind != DeadlineKind.RULE:
        return False
    return Rule.model_validate_json(deadline.rule_json).watches.state is not None


def _closed_by_transitions(session: Session, child: str, la: str) -> list[EscalationRecord]:
    """The child's escalations a transition's end closed: the ones a re-fold may have to reconsider."""
    closed = session.exec(
        select(EscalationRecord).where(
            EscalationRecord.child_id == child,
            EscalationRecord.la_code == la,
            col(EscalationRecord.status).not_in(OPEN_STATUSES),
        )
    ).all()
    return [e for e in closed if (e.close_reason or "").startswith(TRANSITION_ENDS)]


def _reopen_closed_unalerted(session: Session, child: str, la: str, since: datetime) -> int:
    """Undo the escalations recorded for an episode a transition ended from ``since`` on, that alerted
    nobody (every step withheld as ``episode_closed``): their end is lifted with the rest, so they are
    decided again on the history, as if it had been read before the timer decided (docs/ESCALATION.md). The
    rule clock goes back to pending under its own id (a state clock started from ``since`` on is removed, to
    be derived again from the history); its steps, ladder deadlines and escalation are removed. Nothing was
    published for them, so nothing is unsent. Deadlines are changed before escalations (the lock order)."""
    closed = _closed_by_transitions(session, child, la)
    if not closed:
        return 0
    clocks = session.exec(
        select(EscalationDeadline).where(
            EscalationDeadline.child_id == child,
            EscalationDeadline.la_code == la,
            EscalationDeadline.kind == DeadlineKind.RULE,
        )
    ).all()
    clock_of = {derived_id("escalation", d.id): d for d in clocks}
    reopened = 0
    for esc in closed:
        clock = clock_of.get(esc.id)
        steps = session.exec(select(EscalationStep).where(EscalationStep.escalation_id == esc.id)).all()
        if clock is None or not steps or any(s.withheld != WITHHELD_EPISODE_CLOSED for s in steps):
            continue
        ladder = session.exec(
            select(EscalationDeadline).where(EscalationDeadline.escalation_id == esc.id)
        ).all()
        ends = [
            as_utc(d.ended_at)
            for d in (clock, *ladder)
            if d.ended_at is not None and (d.end_reason or "").startswith(TRANSITION_ENDS)
        ]
        if not ends or min(ends) < since:
            continue  # ended before the re-fold's time: the history does not touch that end
        for d in ladder:
            session.delete(d)
        started = as_utc(clock.clock_started_at) if clock.clock_started_at is not None else None
        if started is not None and started >= since and _is_state_clock(clock):
            session.delete(clock)
        else:
            clock.status, clock.fired_at = DeadlineStatus.PENDING, None
            clock.cancelled_at, clock.cancel_reason = None, None
            clock.ended_at, clock.end_reason, clock.end_status = None, None, None
            session.add(clock)
        session.flush()
        for step in steps:
            session.delete(step)
        session.delete(esc)
        session.flush()
        reopened += 1
    return reopened


@dataclass(frozen=True)
class Withdrawn:
    """An escalation that alerted somebody and was withdrawn (``cancelled``) at an end a re-fold lifts."""

    escalation_id: str
    ended_at: datetime


def _withdrawn_at_lifted_ends(session: Session, child: str, la: str, since: datetime) -> list[Withdrawn]:
    """The escalations that alerted somebody and were closed by a transition's end at or after ``since``
    (the end is kept on their ladder's deadlines). Notify never restarts a cancelled escalation, so what the
    history leaves open again is resumed under a new clock (:func:`resume_withdrawn`)."""
    found: list[Withdrawn] = []
    for esc in _closed_by_transitions(session, child, la):
        alerted = session.exec(
            select(EscalationStep.step_index).where(
                EscalationStep.escalation_id == esc.id, col(EscalationStep.published).is_(True)
            )
        ).first()
        if alerted is None:
            continue
        ends = session.exec(
            select(EscalationDeadline.ended_at).where(
                EscalationDeadline.escalation_id == esc.id, col(EscalationDeadline.ended_at).is_not(None)
            )
        ).all()
        if ends and min(as_utc(e) for e in ends if e is not None) >= since:
            found.append(Withdrawn(esc.id, min(as_utc(e) for e in ends if e is not None)))
    return found


def resume_withdrawn(session: Session, deps: Deps, withdrawn: list[Withdrawn]) -> list[str]:
    """After the history is replayed: an escalation withdrawn at an end the history no longer has, whose
    episode is still open (the case in the state its rule watches; for an event rule, not resolved), starts
    its rule again under a new clock due at that end's time, unless the rule already runs for the child
    (the history started it again). Its ladder starts over: the people told the child was found are told
    the child is not. The rule ids started."""
    started: list[str] = []
    for w in withdrawn:
        esc = session.get(EscalationRecord, w.escalation_id)
        case = session.get(EscalationCase, (esc.child_id, esc.la_code)) if esc is not None else None
        if esc is None or case is None:
            continue
        rule = Rule.model_validate_json(esc.rule_json)
        if rule.watches.state is not None:
            still_open = case.state == esc.watch_key
        else:
            still_open = case.state not in {s.value for s in RESOLVED_STATES}
        if not still_open or already_running(session, esc.child_id, esc.la_code, rule):
            continue
        start_clock(
            session,
            rule,
            rule_order(deps.rules, esc.la_code).get(rule.id, 0),
            child=esc.child_id,
            la=esc.la_code,
            case_id=esc.case_id,
            trigger_event_id=derived_id("resumed", esc.id),
            due_at=w.ended_at,
            watch_key=esc.watch_key,
            clock_started_at=w.ended_at,
        )
        started.append(rule.id)
    return started


def rewind(
    session: Session, child: str, la: str, case_id: str, history: CaseHistory
) -> tuple[int, list[Withdrawn]]:
    """Put the child's clocks and case back as they were before ``history.since`` by event time, as far as
    transitions made them: state clocks started from then on (not fired) are removed, to be derived again
    from the history; ends applied from then on are lifted, and what was only recorded for an episode such an
    end closed is undone, to be decided again. Returns the number of clocks removed (or reopened) and the
    escalations withdrawn at a lifted end, for :func:`resume_withdrawn` once the history is replayed."""
    since = as_utc(history.since)
    withdrawn = _withdrawn_at_lifted_ends(session, child, la, since)
    removed = _reopen_closed_unalerted(session, child, la, since)
    deadlines = session.exec(
        select(EscalationDeadline).where(
            EscalationDeadline.child_id == child,
            EscalationDeadline.la_code == la,
            col(EscalationDeadline.status) != DeadlineStatus.FIRED,
        )
    ).all()
    open_escalations = {
        e.id: e
        for e in session.exec(
            select(EscalationRecord).where(
                EscalationRecord.child_id == child,
                EscalationRecord.la_code == la,
                col(EscalationRecord.status).in_(OPEN_STATUSES),
            )
        ).all()
    }
    for d in deadlines:
        started = as_utc(d.clock_started_at) if d.clock_started_at is not None else None
        if started is not None and started >= since and _is_state_clock(d):
            session.delete(d)
            removed += 1
            continue
        ended = as_utc(d.ended_at) if d.ended_at is not None else None
        if ended is None or ended < since or not (d.end_reason or "").startswith(TRANSITION_ENDS):
            continue
        if d.status == DeadlineStatus.CANCELLED:
            if d.kind == DeadlineKind.STEP and d.escalation_id not in open_escalations:
                continue  # its escalation closed (and said so): what was published stays
            d.status, d.cancelled_at, d.cancel_reason = DeadlineStatus.PENDING, None, None
        d.ended_at, d.end_reason, d.end_status = None, None, None
        session.add(d)
    session.flush()
    for esc in open_escalations.values():
        if esc.ended_at is not None and as_utc(esc.ended_at) >= since:
            esc.ended_at = None  # the history ends it again where it ends
            session.add(esc)
    case = session.get(EscalationCase, (child, la))
    if case is not None:
        forget_from(case, since)
    base = history.base
    if base is None:
        if case is not None:
            session.delete(case)
    else:
        entered = as_utc(base.entered_at)
        case = case or EscalationCase(
            child_id=child, la_code=la, case_id=case_id, state=base.state, state_since=entered
        )
        case.state, case.state_since = base.state.value, as_utc(base.entered_at)
        case.has_social_worker = base.has_social_worker
        case.social_care_status = base.social_care_status.value
        case.vulnerabilities = ",".join(sorted(v.value for v in base.vulnerabilities))
        case.safeguarding_concern = base.safeguarding_concern
        session.add(case)
    session.flush()
    return removed, withdrawn
