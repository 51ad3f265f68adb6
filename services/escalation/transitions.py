"""A case transition from tracking: it starts the clocks of the state rules that match the new state, ends
the episodes of state rules watching states the case has left, and a resolved state ends everything."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from services.escalation.child_context import case_context, case_made, case_of, remember_child
from services.escalation.episodes import (
    already_running,
    end_episodes,
    lock_child_deadlines,
    rule_order,
    start_clock,
)
from services.escalation.models import (
    DeadlineStatus,
    EscalationCase,
    EscalationDeadline,
    EscalationRecord,
    EscalationStatus,
)
from services.escalation.refold import resume_withdrawn, rewind
from services.escalation.resolutions import record_resolution
from services.escalation.rules import MatchContext
from services.escalation.unit_of_work import OPEN_STATUSES, Deps, Outcome, as_utc
from shared.events.internal import (
    RESOLVED_STATES,
    CaseClockExpired,
    CaseState,
    CaseTransition,
)
from shared.logs import get_logger

log = get_logger(__name__)


def handle_transition(session: Session, deps: Deps, event: CaseTransition, now: datetime) -> Outcome:
    p = event.payload
    lock_child_deadlines(session, str(p.child_id), p.la_code)
    if p.history is not None:
        return _reconcile(session, deps, event, now)
    child, la = str(p.child_id), p.la_code
    case = case_of(session, child, la)
    occurred = as_utc(p.cause_occurred_at)
    follows = case is not None and p.from_state is not None and p.from_state.value == case.state
    # An in-order transition read while a provisional one's twin is still to come comes before it in the
    # case's order (tracking folds the urgent fact after the facts queued ahead of it), whatever it is dated.
    before_provisional = case is not None and case.provisional and not p.provisional
    if case is not None and occurred < as_utc(case.state_since) and not (follows or before_provisional):
        # Out of order: a newer transition was already applied; event time decides, not arrival. A transition
        # from the state we hold is tracking's next step even when dated earlier: a late fact re-folded (a
        # registration dated before a transfer clock ran out undoes the move to missing education).
        return Outcome("stale")
    return _apply(session, deps, event, now)


def _reconcile(session: Session, deps: Deps, event: CaseTransition, now: datetime) -> Outcome:
    """A re-fold (a late fact, a correction): the case's clocks become those its event-time history gives.
    What transitions derived from ``history.since`` on is rewound, then the history's transitions are applied
    in event-time order, each under the id tracking gives it when the facts arrive in order, so the clocks,
    escalation ids and steps are the ones in-order facts give. Ends apply only to clocks started before them
    (facts read earlier may have started later event clocks). What already fired stays fired."""
    p = event.payload
    history = p.history
    assert history is not None
    child, la = str(p.child_id), p.la_code
    removed, withdrawn = rewind(session, child, la, str(p.case_id), history)
    outcome = Outcome("reconciled", cancelled=removed)
    for step in history.steps:
        fields = step.model_dump(exclude={"event_id"})
        payload = p.model_copy(
            update={**fields, "history": None, "deadlines_started": [], "deadlines_stopped": []}
        )
        # The transition tracking publishes in order: its id, its cause as correlation (not the late fact).
        replayed = event.model_copy(
            update={
                "event_id": step.event_id,
                "occurred_at": step.cause_occurred_at,
                "correlation_id": step.cause_event_id,
                "payload": payload,
            }
        )
        applied = _apply(session, deps, replayed, now, ends_started_before=True)
        outcome.started += applied.started
        outcome.cancelled += applied.cancelled
        outcome.published += applied.published
    outcome.started += resume_withdrawn(session, deps, withdrawn)
    log.info("case_history_reconciled", la_code=la, steps=len(history.steps), removed=removed)
    return outcome


def _apply(
    session: Session, deps: Deps, event: CaseTransition, now: datetime, *, ends_started_before: bool = False
) -> Outcome:
    """One transition in event-time order: its ends, then the clocks it starts."""
    p = event.payload
    child, la = str(p.child_id), p.la_code
    case = case_of(session, child, la)
    occurred = as_utc(p.cause_occurred_at)
    started_before = occurred if ends_started_before else None
    # Same state, new context (a social worker allocated while missing): only the rules the new context adds
    # start; those already matched before have run (or been acknowledged or resolved) and must not repeat.
    earlier: MatchContext | None = None
    if case is not None and p.from_state == p.to_state and case.state == p.to_state.value:
        earlier = case_context(case, p.reason.value if p.reason is not None else None)
    if case is None:
        case = EscalationCase(
            child_id=child, la_code=la, case_id=str(p.case_id), state=p.to_state, state_since=occurred
        )
        case_made(session, child, la)
    elif case.provisional and not p.provisional:
        case.provisional = confirm_provisional(session, child, la, str(event.event_id))
    # The clocks of a provisional transition whose twin is still to come: this in-order one's ends spare them.
    spare_provisional = case.provisional and not p.provisional
    case.case_id, case.state, case.state_since = str(p.case_id), p.to_state.value, occurred
    case.has_social_worker = p.has_social_worker
    case.social_care_status = p.social_care_status.value
    case.vulnerabilities = ",".join(sorted(v.value for v in p.vulnerabilities))
    case.safeguarding_concern = p.safeguarding_concern
    session.add(case)
    remember_child(session, child, la, MatchContext.from_transition(p))
    if p.cause_event_type == CaseClockExpired.model_fields["event_type"].default and p.from_state is not None:
        _carry_over(session, deps, child, la, p.from_state.value, p.to_state.value)

    outcome = Outcome("applied")
    if p.to_state in RESOLVED_STATES:
        record_resolution(case, occurred, p.to_state, str(p.cause_event_id))
        session.add(case)
        outcome.cancelled, outcome.published = end_episodes(
            session,
            deps,
            child,
            la,
            now,
            reason=f"case_resolved:{p.to_state.value}",
            close=EscalationStatus.RESOLVED,
            at=occurred,
            started_before=started_before,
            spare_trigger=str(p.cause_event_id),
            spare_provisional=spare_provisional,
        )
        return outcome
    # The case left every state other than to_state: rules watching those states no longer apply.
    left = [s.value for s in CaseState if s != p.to_state]
    outcome.cancelled, outcome.published = end_episodes(
        session, deps, child, la, now, reason=f"case_moved_on:{p.to_state.value}", watch_keys=left,
        at=occurred, started_before=started_before, spare_provisional=spare_provisional,
    )  # fmt: skip
    ctx = MatchContext.from_transition(p, safeguarding_concern=p.safeguarding_concern)
    rules = deps.rules.match_rules(la, p.to_state.value, ctx)
    started_at = as_utc(p.cause_occurred_at)
    if earlier is not None:
        matched_before = {r.id for r in deps.rules.match_rules(la, p.to_state.value, earlier)}
        rules = [r for r in rules if r.id not in matched_before]
    order = rule_order(deps.rules, la)
    calendar = deps.calendars.calendar_for(la)
    for rule in rules:
        if already_running(session, child, la, rule):
            continue
        start_clock(
            session,
            rule,
            order.get(rule.id, 0),
            child=child,
            la=la,
            case_id=str(p.case_id),
            trigger_event_id=str(event.event_id),
            due_at=rule.clock.due_at(p.cause_occurred_at, calendar),
            clock_started_at=started_at,
            provisional=p.provisional,
        )
        outcome.started.append(rule.id)
    if p.provisional and outcome.started:
        case.provisional = True
        session.add(case)
    return outcome


def confirm_provisional(session: Session, child: str, la: str, event_id: str) -> bool:
    """The in-order twin of a provisional transition is read: the clocks that one started are ordinary clocks
    from now on. Returns whether the child still has clocks of another provisional transition whose twin is
    still to come."""
    session.execute(
        update(EscalationDeadline)
        .where(
            col(EscalationDeadline.child_id) == child,
            col(EscalationDeadline.la_code) == la,
            col(EscalationDeadline.trigger_event_id) == event_id,
            col(EscalationDeadline.provisional).is_(True),
        )
        .values(provisional=False)
    )
    left = session.exec(
        select(EscalationDeadline.id).where(
            EscalationDeadline.child_id == child,
            EscalationDeadline.la_code == la,
            col(EscalationDeadline.provisional).is_(True),
        )
    ).first()
    return left is not None


def _carry_over(session: Session, deps: Deps, child: str, la: str, left: str, entered: str) -> None:
    """A case moved by its own clock (a transfer not registered in time, now missing education): the alert
    that clock raised is the news of the move, so it carries over to the state it led to (its ladder goes on
    there, its review follows that state) instead of being withdrawn as a case that moved on."""
    moving = [r.id for r in deps.rules.rules_for(la) if r.moves_case and r.watches.key == left]
    if not moving:
        return
    escalations = session.exec(
        select(EscalationRecord).where(
            EscalationRecord.child_id == child,
            EscalationRecord.la_code == la,
            EscalationRecord.watch_key == left,
            col(EscalationRecord.rule_id).in_(moving),
            col(EscalationRecord.status).in_(OPEN_STATUSES),
            col(EscalationRecord.ended_at).is_(None),
        )
    ).all()
    for esc in escalations:
        esc.watch_key = entered
        session.add(esc)
        session.execute(
            update(EscalationDeadline)
            .where(
                col(EscalationDeadline.escalation_id) == esc.id,
                col(EscalationDeadline.status) == DeadlineStatus.PENDING,
            )
            .values(watch_key=entered)
        )
