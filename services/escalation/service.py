"""What the escalation service does with each input, as database units of work (no Kafka, no HTTP).

* A case transition starts the clocks of the state rules that match the new state, cancels the clocks and
  escalations of state rules watching states the case has left, and a resolved state ends everything.
* A child fact starts the clocks of event rules (permanent exclusion, absence thresholds); a retraction of an
  absence crossing cancels what that crossing started.
* An alert acknowledgement stops the step-up; a "resolved" ack closes the escalation.
* :func:`fire_deadline` is the timer's unit of work: it claims one due deadline (``pending`` -> ``fired``)
  and writes the resulting Escalation events to the outbox in the same transaction, so a deadline fires
  exactly once however often workers crash or race.

Clocks run on event time: a fact that ends an episode cancels only the deadlines due after the fact's event
time; one due before it was due while the episode was open and is decided by the timer on the partition's
horizon (``services.escalation.watermarks``), recorded without alerting anyone when the episode had already
ended by then.

Every function takes ``now`` from the caller (the service's time source), never from the system clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from services.escalation import metrics
from services.escalation.ladder import Advance, LadderPosition, StepAlert, acknowledgement_stops, advance
from services.escalation.models import (
    DeadlineKind,
    DeadlineStatus,
    EscalationCase,
    EscalationChild,
    EscalationDeadline,
    EscalationOutbox,
    EscalationProcessedEvent,
    EscalationRecord,
    EscalationStatus,
    EscalationStep,
)
from services.escalation.rules import CASE_REVIEW, MatchContext, Rule, RuleSet
from services.escalation.watermarks import Horizon
from shared.case_ids import case_id_for
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope, Source
from shared.events.internal import (
    RESOLVED_STATES,
    AckAction,
    AlertAck,
    CaseClockExpired,
    CaseClockExpiredPayload,
    CaseState,
    CaseTransition,
    ChildFact,
    ChildMerged,
    Escalation,
    EscalationAction,
    EscalationPayload,
)
from shared.events.vocab import AbsenceRule, DeletionGround, ExclusionType
from shared.logs import get_logger
from shared.outbox import add_to_outbox
from shared.school_calendar import LONDON, CalendarRegistry, SchoolCalendar

log = get_logger(__name__)

SERVICE = "escalation"
NAMESPACE = uuid.UUID("0b6f3c52-7d4e-4a8b-9e31-5c2f8d7a6e19")
OPEN_STATUSES = (EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED)
# The state tracking moves a case to on each watched event, used when no transition has been seen yet.
EVENT_CASE_STATE: dict[str, CaseState] = {
    "exclusion-issued": CaseState.AWAITING_PROVISION,
    "absence-threshold-crossed": CaseState.ON_ROLL_AT_RISK,
    "pupil-left-roll": CaseState.MISSING_EDUCATION,
    "sickness-absence-notified": CaseState.ON_ROLL_AT_RISK,  # on a roll; the LA owes education (s.19)
    "fair-access-referred": CaseState.AWAITING_PROVISION,
    "home-education-notified": CaseState.ON_ROLL_AT_RISK,  # refused for a child under child protection
    "not-in-school-notice": CaseState.ON_ROLL_AT_RISK,  # the same, for a parent's notice to the register
    "review-date-set": CaseState.ELECTIVELY_HOME_EDUCATED,
}


@dataclass(frozen=True)
class Deps:
    rules: RuleSet
    calendars: CalendarRegistry
    escalations_topic: str
    # Where a clock that moves the case (Rule.moves_case) tells tracking it ran out.
    child_events_topic: str = "cme.child-events.v1"


@dataclass
class Outcome:
    action: str
    started: list[str] = field(default_factory=list)  # rule ids whose clocks started
    cancelled: int = 0  # deadlines and escalations cancelled
    published: int = 0  # Escalation events written to the outbox


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def derived_id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts)))


def set_record_partition(session: Session, partition: int) -> None:
    """Tell the units of work which input partition the record they handle came from: the clocks they start
    are decided on that partition's horizon (the worker sets it; a caller that never does gets 0)."""
    session.info["partition"] = partition


def _record_partition(session: Session) -> int:
    return int(session.info.get("partition", 0))


def mark_processed(session: Session, event_id: uuid.UUID, topic: str) -> bool:
    """Record the event id; False when it was already handled (a redelivery)."""
    if session.get(EscalationProcessedEvent, str(event_id)) is not None:
        return False
    session.add(EscalationProcessedEvent(event_id=str(event_id), topic=topic))
    return True


# ----------------------------------------------------------------------------------------------------
# Case transitions
# ----------------------------------------------------------------------------------------------------


def _known_context(case: EscalationCase, reason: str | None) -> MatchContext:
    """What escalation last heard of the child's context, from its copy of the case."""
    return MatchContext(
        has_social_worker=case.has_social_worker,
        social_care_status=case.social_care_status,
        reason=reason,
        vulnerabilities=frozenset(v for v in case.vulnerabilities.split(",") if v),
        safeguarding_concern=case.safeguarding_concern,
    )


def _child_context(session: Session, child: str, la: str) -> MatchContext | None:
    """What escalation knows of the child's social-care context, per child, case or no case."""
    row = session.get(EscalationChild, (child, la))
    if row is None:
        return None
    return MatchContext(
        has_social_worker=row.has_social_worker,
        social_care_status=row.social_care_status,
        vulnerabilities=frozenset(v for v in row.vulnerabilities.split(",") if v),
        safeguarding_concern=row.safeguarding_concern,
    )


def _remember_child(session: Session, child: str, la: str, ctx: MatchContext) -> None:
    row = session.get(EscalationChild, (child, la)) or EscalationChild(child_id=child, la_code=la)
    row.has_social_worker = ctx.has_social_worker
    row.social_care_status = ctx.social_care_status or "none"
    row.vulnerabilities = ",".join(sorted(ctx.vulnerabilities))
    row.safeguarding_concern = ctx.safeguarding_concern
    session.add(row)


def handle_transition(session: Session, deps: Deps, event: CaseTransition, now: datetime) -> Outcome:
    p = event.payload
    child, la = str(p.child_id), p.la_code
    case = session.get(EscalationCase, (child, la))
    occurred = as_utc(p.cause_occurred_at)
    follows = case is not None and p.from_state is not None and p.from_state.value == case.state
    if case is not None and occurred < as_utc(case.state_since) and not follows:
        # Out of order: a newer transition was already applied; event time decides, not arrival. A transition
        # from the state we hold is tracking's next step even when dated earlier: a late fact re-folded (a
        # registration dated before a transfer clock ran out undoes the move to missing education).
        return Outcome("stale")
    # Same state, new context (a social worker allocated while missing): only the rules the new context adds
    # start; those already matched before have run (or been acknowledged or resolved) and must not repeat.
    earlier: MatchContext | None = None
    if case is not None and p.from_state == p.to_state and case.state == p.to_state.value:
        earlier = _known_context(case, p.reason.value if p.reason is not None else None)
    if case is None:
        case = EscalationCase(
            child_id=child, la_code=la, case_id=str(p.case_id), state=p.to_state, state_since=occurred
        )
    case.case_id, case.state, case.state_since = str(p.case_id), p.to_state.value, occurred
    case.has_social_worker = p.has_social_worker
    case.social_care_status = p.social_care_status.value
    case.vulnerabilities = ",".join(sorted(v.value for v in p.vulnerabilities))
    case.safeguarding_concern = p.safeguarding_concern
    session.add(case)
    _remember_child(session, child, la, MatchContext.from_transition(p))
    if p.cause_event_type == CaseClockExpired.model_fields["event_type"].default and p.from_state is not None:
        _carry_over(session, deps, child, la, p.from_state.value, p.to_state.value)

    outcome = Outcome("applied")
    if p.to_state in RESOLVED_STATES:
        outcome.cancelled, outcome.published = _cancel(
            session,
            deps,
            child,
            la,
            now,
            reason=f"case_resolved:{p.to_state.value}",
            close=EscalationStatus.RESOLVED,
            at=occurred,
        )
        return outcome
    # The case left every state other than to_state: rules watching those states no longer apply.
    left = [s.value for s in CaseState if s != p.to_state]
    outcome.cancelled, outcome.published = _cancel(
        session, deps, child, la, now, reason=f"case_moved_on:{p.to_state.value}", watch_keys=left,
        at=occurred,
    )  # fmt: skip
    ctx = MatchContext.from_transition(p, safeguarding_concern=p.safeguarding_concern)
    rules = deps.rules.match_rules(la, p.to_state.value, ctx)
    started_at = as_utc(p.cause_occurred_at)
    if earlier is not None:
        matched_before = {r.id for r in deps.rules.match_rules(la, p.to_state.value, earlier)}
        rules = [r for r in rules if r.id not in matched_before]
    order = _rule_order(deps.rules, la)
    calendar = deps.calendars.calendar_for(la)
    for rule in rules:
        if _already_running(session, child, la, rule):
            continue
        _start_clock(
            session,
            rule,
            order.get(rule.id, 0),
            child=child,
            la=la,
            case_id=str(p.case_id),
            trigger_event_id=str(event.event_id),
            due_at=rule.clock.due_at(p.cause_occurred_at, calendar),
            clock_started_at=started_at,
        )
        outcome.started.append(rule.id)
    return outcome


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


# ----------------------------------------------------------------------------------------------------
# Child facts (event-watching rules)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactWatch:
    """One way a child fact is watched: the watch key, the rule-matching reason, when the clock starts and
    whether an acknowledged escalation of the same rule still counts as running (the fact repeats a duty
    already being worked on rather than starting a new one)."""

    key: str
    reason: str | None
    start: datetime
    acknowledged_counts: bool = False
    enquiries_completed: bool | None = None


def first_school_day_start(on: date, calendar: SchoolCalendar) -> datetime:
    """00:00 London on the first school day on or after ``on``: day 1 of a statutory count of school days
    (an exclusion starting on a Saturday or in half term has its first school day afterwards)."""
    return datetime.combine(calendar.add_school_days(on, 0), time(0), tzinfo=LONDON)


def fact_watches(fact: Envelope, occurred_at: datetime, calendar: SchoolCalendar) -> list[FactWatch]:
    """The watches one inbound fact feeds, with the reason and clock start rules of each."""
    payload: Any = fact.payload
    if fact.event_type == "exclusion-issued":
        # The exclusion's first school day is day 1 of the statutory count, whenever the school reported it.
        return [
            FactWatch(
                "exclusion-issued",
                str(payload.exclusion_type),
                first_school_day_start(payload.start_date, calendar),
            )
        ]
    if fact.event_type == "absence-threshold-crossed":
        crossed = [FactWatch("absence-threshold-crossed", str(payload.rule), occurred_at)]
        if payload.rule == AbsenceRule.SICKNESS_15_DAYS:
            # 15 school days already missed through sickness: the school's notice (due when it became clear
            # the pupil WOULD miss them) never came, or came and is being worked on. The LA's duty is the
            # same, so the rules watching the notice start from the crossing unless one is already running.
            crossed.append(
                FactWatch("sickness-absence-notified", None, occurred_at, acknowledged_counts=True)
            )
        return crossed
    if fact.event_type == "fair-access-referred":
        # The Code counts from the day the LA agreed to consider the child under its protocol.
        agreed = datetime.combine(payload.agreed_on, time(0), tzinfo=LONDON)
        return [FactWatch("fair-access-referred", None, agreed)]
    if fact.event_type == "pupil-left-roll":
        ground = str(payload.deletion_ground)
        watches = [
            FactWatch(
                "pupil-left-roll", ground, occurred_at, enquiries_completed=bool(payload.enquiries_completed)
            )
        ]
        if payload.deletion_ground == DeletionGround.PERMANENTLY_EXCLUDED:
            # A deletion under ground (o) is a permanent exclusion to the rules watching exclusions: the day-6
            # duty holds whether or not exclusion-issued was ever sent. Counted from the leaving date (the
            # first day the LA knows of), and never a second clock while the exclusion's own escalation is
            # still being worked on.
            watches.append(
                FactWatch(
                    "exclusion-issued",
                    ExclusionType.PERMANENT.value,
                    first_school_day_start(payload.leaving_date, calendar),
                    acknowledged_counts=True,
                )
            )
        return watches
    if fact.event_type == "review-date-set":
        # The LA's own review date (home education, part-time provision): alerted at the close of that day.
        return [FactWatch("review-date-set", None, first_school_day_start(payload.review_on, calendar))]
    if fact.event_type == "register-entry-recorded" and payload.review_on is not None:
        # A caseworker's review of a register entry (s.436B-436G) sets the next review, as review-date-set.
        return [
            FactWatch(fact.event_type, None, occurred_at),
            FactWatch("review-date-set", None, first_school_day_start(payload.review_on, calendar)),
        ]
    return [FactWatch(fact.event_type, None, occurred_at)]


def fact_context(base: MatchContext, fact: Envelope, watch: FactWatch) -> MatchContext:
    """The context an event rule reads: what escalation knows of the child, plus what this fact itself says
    (its vulnerability flags, a safeguarding concern, a social-care status), so a flag on the very event that
    starts a clock is never missed because tracking's transition has not arrived yet."""
    payload: Any = fact.payload
    status_change = fact.event_type == "social-care-status-changed"
    ctx = base.with_fact(
        vulnerabilities=[v.value for v in payload.child.vulnerabilities],
        safeguarding_concern=bool(getattr(payload, "safeguarding_concern", False)),
        social_care_status=str(payload.status) if status_change else None,
        has_social_worker=bool(payload.has_social_worker) if status_change else None,
    )
    return replace(ctx, reason=watch.reason, enquiries_completed=watch.enquiries_completed)


def handle_child_fact(session: Session, deps: Deps, event: ChildFact, now: datetime) -> Outcome:
    fact = decode_inbound(event.payload.fact)
    child, la = str(event.payload.child_id), event.payload.la_code
    if fact.event_type == "absence-threshold-retracted":
        retracted = str(fact.payload.retracts_event_id)
        cancelled, published = _cancel(
            session, deps, child, la, now, reason="absence_retracted", trigger_event_id=retracted,
            at=as_utc(fact.occurred_at),
        )  # fmt: skip
        return Outcome("retraction", cancelled=cancelled, published=published)
    calendar = deps.calendars.calendar_for(la)
    occurred = as_utc(fact.occurred_at)
    case = session.get(EscalationCase, (child, la))
    # Per child, case or no case: a status or flag learnt now still counts for a later fact that has none.
    known = _child_context(session, child, la) or (_known_context(case, None) if case else MatchContext())
    _remember_child(session, child, la, fact_context(known, fact, FactWatch(fact.event_type, None, occurred)))
    ended = sorted({r.watches.key for r in deps.rules.rules_for(la) if fact.event_type in r.ends_on})
    ending = (0, 0)
    if ended:
        # A place allocated ends the fair access clock (ends_on), at the fact's event time.
        ending = _cancel(
            session, deps, child, la, now, reason=f"ended_by:{fact.event_type}", watch_keys=ended, at=occurred
        )
    watched = {r.watches.event for r in deps.rules.rules_for(la)}
    watches = [w for w in fact_watches(fact, occurred, calendar) if w.key in watched]
    if not watches:
        return Outcome("ended" if ended else "not_watched", cancelled=ending[0], published=ending[1])
    if case is not None and case.state in RESOLVED_STATES and as_utc(case.state_since) >= occurred:
        return Outcome("already_resolved")  # the case was resolved after this fact happened
    outcome = Outcome("applied")
    order = _rule_order(deps.rules, la)
    for watch in watches:
        for rule in deps.rules.match_rules(la, watch.key, fact_context(known, fact, watch)):
            if _already_running(session, child, la, rule, acknowledged_counts=watch.acknowledged_counts):
                continue
            _start_clock(
                session,
                rule,
                order.get(rule.id, 0),
                child=child,
                la=la,
                case_id=case.case_id if case else None,
                trigger_event_id=str(fact.event_id),
                due_at=rule.clock.due_at(watch.start, calendar),
                clock_started_at=watch.start,
            )
            outcome.started.append(rule.id)
    return outcome


# ----------------------------------------------------------------------------------------------------
# Merges
# ----------------------------------------------------------------------------------------------------


def handle_merge(session: Session, deps: Deps, event: ChildMerged, now: datetime) -> Outcome:
    """A person linked two records of one child: the merged child's clocks stop, or the child would be
    alerted on twice. The survivor's re-folded case arrives as its own transition; undoing the merge
    re-opens the merged child's case with a transition of its own, which starts its clocks again."""
    p = event.payload
    if p.facts:
        return Outcome("not_watched")  # tracking's forward of the merge to the survivor: nothing to stop
    # A person's decision takes effect when it is made, and never after this service's present: on simulated
    # time (tests, a replay) the decision's wall-clock time can lie ahead of the clock, and an end in the
    # future would keep the merged child's steps due before it "to be decided" while its clocks must stop.
    cancelled, published = _cancel(
        session, deps, str(p.merged_child_id), p.la_code, now, reason="merged_into_another_child",
        at=min(as_utc(event.occurred_at), as_utc(now)),
    )  # fmt: skip
    return Outcome("merged", cancelled=cancelled, published=published)


# ----------------------------------------------------------------------------------------------------
# Acknowledgements
# ----------------------------------------------------------------------------------------------------


def handle_ack(session: Session, deps: Deps, event: AlertAck, now: datetime) -> Outcome:
    p = event.payload
    esc = session.get(EscalationRecord, str(p.escalation_id))
    if esc is None or esc.la_code != p.la_code or esc.child_id != str(p.child_id):
        # Unknown, or for another LA's (or child's) escalation: never act across LAs.
        return Outcome("ignored_unknown")
    position = LadderPosition(
        esc.step_index, as_utc(esc.step_due_at), stopped=esc.status != EscalationStatus.OPEN
    )
    if p.action == AckAction.ACKNOWLEDGED:
        if not acknowledgement_stops(position, p.step_index):
            return Outcome("ignored_not_alerted" if esc.status == EscalationStatus.OPEN else "ignored_closed")
        cancelled = _cancel_step_deadlines(session, esc.id, now, "acknowledged")
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
    cancelled = _cancel_step_deadlines(session, esc.id, now, "resolved")
    # The reason (a fixed list) is kept with the escalation; resolving ends the alerts, never the case.
    reason = f"resolved:{p.resolution_reason.value}" if p.resolution_reason else "resolved_by_user"
    _close(session, esc, now, EscalationStatus.RESOLVED, reason)
    esc.acknowledged_by = esc.acknowledged_by or p.by_user
    published = _publish_cancel(session, deps, esc, "resolved_by_user", now) if was_open else 0
    schedule_review(session, deps, esc, at=min(as_utc(event.occurred_at), as_utc(now)))
    return Outcome("resolved", cancelled=cancelled, published=published)


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
    _start_clock(
        session,
        rule,
        _rule_order(deps.rules, esc.la_code).get(rule.id, 0),
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


# ----------------------------------------------------------------------------------------------------
# The timer
# ----------------------------------------------------------------------------------------------------


def due_deadline_ids(
    session: Session, now: datetime, limit: int, horizon: Horizon | None = None
) -> list[str]:
    """The oldest deadlines the horizon lets us decide (see :meth:`Horizon.decidable`), served by the
    (status, due_at) index: cost follows what is due. No horizon: every partition is caught up with now."""
    horizon = horizon or Horizon.caught_up(now)
    due = col(EscalationDeadline.due_at)
    if horizon.partitions is None:
        decidable = due <= horizon.now
    else:
        per_partition = []
        for partition in sorted(horizon.partitions):
            as_of = horizon.as_of(partition)
            assert as_of is not None
            where = [col(EscalationDeadline.partition) == partition, due <= as_of]
            if not horizon.live(partition):
                # A backlog: only what a fact already ended (recorded, alerting nobody) is decided now.
                where.append(col(EscalationDeadline.ended_at) <= as_of)
            per_partition.append(and_(*where))
        if not per_partition:
            return []
        decidable = or_(*per_partition)
    stmt = (
        select(EscalationDeadline.id)
        .where(EscalationDeadline.status == DeadlineStatus.PENDING, due <= horizon.now, decidable)
        .order_by(
            col(EscalationDeadline.due_at), col(EscalationDeadline.rule_order), col(EscalationDeadline.id)
        )
        .limit(limit)
    )
    return list(session.exec(stmt).all())


def next_due_at(session: Session) -> datetime | None:
    stmt = (
        select(EscalationDeadline.due_at)
        .where(EscalationDeadline.status == DeadlineStatus.PENDING)
        .order_by(col(EscalationDeadline.due_at))
        .limit(1)
    )
    found = session.exec(stmt).first()
    return as_utc(found) if found is not None else None


def decide_due(
    session: Session, deps: Deps, now: datetime, horizon: Horizon | None, limit: int
) -> list[tuple[str, Outcome]]:
    """Decide up to ``limit`` deadlines, strictly in the order (due_at, rule_order, id) over everything the
    horizon lets us decide, re-reading the first after each: a deadline one decision creates (the next
    ladder step, a review) that falls due before the others is decided before them, as it would have been
    at its due time, so a backlog decides in the same order as a worker that kept up (which step of two
    escalations alerting the same level at the same instant is the duplicate depends on it)."""
    decided: list[tuple[str, Outcome]] = []
    while len(decided) < limit:
        found = due_deadline_ids(session, now, 1, horizon)
        if not found or (decided and decided[-1][0] == found[0]):
            break
        decided.append((found[0], fire_deadline(session, deps, found[0], now, horizon)))
    return decided


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
    as_of = horizon.as_of(deadline.partition)
    if as_of is None or not horizon.decidable(deadline.partition, deadline.due_at, ended):
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
        if case is not None and rule.watches.state is None:
            case_state = case.state
        else:
            case_state = rule.watches.key if rule.watches.state else EVENT_CASE_STATE[rule.watches.key].value
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
    withheld = "episode_closed" if ended is not None and ended <= as_of else None
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
        published += _publish_cancel(session, deps, esc, reason, now, at=ended)
        _close(session, esc, now, status, reason)
        action = "fired_episode_ended" if withheld is None else "recorded_episode_closed"
        return Outcome(action, published=published)
    if result.next_due_at is None and withheld is None:
        # The ladder has run out with the case still open: it comes back on the review cadence.
        schedule_review(session, deps, esc, at=as_utc(esc.step_due_at), partition=deadline.partition)
    return Outcome("fired", published=published)


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _rule_order(rules: RuleSet, la: str) -> dict[str, int]:
    return {r.id: i for i, r in enumerate(rules.rules_for(la))}


def _already_running(
    session: Session, child: str, la: str, rule: Rule, *, acknowledged_counts: bool = False
) -> bool:
    """A pending clock or a live escalation of this rule for the child. For a state rule an acknowledged
    escalation still counts (the child is still in that state); a new event (a second exclusion) starts
    afresh once the earlier escalation was acknowledged, unless the caller says the fact repeats the duty
    (``acknowledged_counts``: a ground (o) deletion after the exclusion itself)."""
    rule_id = rule.id
    ack_counts = acknowledged_counts or rule.watches.state is not None
    statuses = OPEN_STATUSES if ack_counts else (EscalationStatus.OPEN,)
    pending = session.exec(
        select(EscalationDeadline.id).where(
            EscalationDeadline.child_id == child,
            EscalationDeadline.la_code == la,
            EscalationDeadline.status == DeadlineStatus.PENDING,
            EscalationDeadline.rule_id == rule_id,
            EscalationDeadline.kind == DeadlineKind.RULE,
            col(EscalationDeadline.ended_at).is_(None),  # an ended episode's clock waits only to be decided
        )
    ).first()
    if pending is not None:
        return True
    running = session.exec(
        select(EscalationRecord.id).where(
            EscalationRecord.child_id == child,
            EscalationRecord.la_code == la,
            col(EscalationRecord.status).in_(statuses),
            EscalationRecord.rule_id == rule_id,
            col(EscalationRecord.ended_at).is_(None),
        )
    ).first()
    return running is not None


def _start_clock(
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
) -> None:
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
            partition=_record_partition(session) if partition is None else partition,
            clock_started_at=as_utc(clock_started_at) if clock_started_at is not None else None,
        )
    )
    session.flush()
    log.info("clock_started", rule_id=rule.id, la_code=la, due_at=as_utc(due_at).isoformat())


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
            _publish(
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


def _publish(
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
            case_state=esc.case_state,  # type: ignore[arg-type]
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


def _publish_cancel(
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
    _publish(session, deps, esc, action, step_index, level, reason, moment, None, None)
    metrics.CANCELLED.labels(level=level, rule=esc.rule_id).inc()
    return 1


def _close(
    session: Session, esc: EscalationRecord, now: datetime, status: EscalationStatus, reason: str
) -> None:
    esc.status, esc.closed_at, esc.close_reason = status.value, as_utc(now), reason
    session.add(esc)


def _cancel_step_deadlines(session: Session, escalation_id: str, now: datetime, reason: str) -> int:
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


def _cancel(
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
) -> tuple[int, int]:
    """End the child's episodes (all, or those of the watches / trigger named) at event time ``at`` (else
    now): pending deadlines due at or after ``at`` are cancelled (they never fell due while the episode was
    open); those due before it stay pending, marked with the end, for the timer to decide by event time.
    Open escalations close, publishing ``cancelled`` when they alerted somebody so notify withdraws pending
    sends, unless a step due before the end is still undecided: then they close when it is decided.
    Deadlines are updated before escalations, the same order the timer locks them in."""
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
    result = session.execute(
        update(EscalationDeadline)
        .where(*where, col(EscalationDeadline.due_at) >= end)
        .values(status=DeadlineStatus.CANCELLED, cancelled_at=as_utc(now), cancel_reason=reason)
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
            published += _publish_cancel(session, deps, esc, reason, now, at=end)
        _close(session, esc, now, close, reason)
        cancelled += 1
    return cancelled, published
