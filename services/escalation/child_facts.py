"""Child facts: the inbound facts that start event rules' clocks (permanent exclusion, absence thresholds,
fair access, reviews); a retraction of an absence crossing cancels what that crossing started."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any

from sqlmodel import Session

from services.escalation.child_context import case_context, case_of, child_context, remember_child
from services.escalation.episodes import (
    already_running,
    end_episodes,
    lock_child_deadlines,
    rule_order,
    start_clock,
)
from services.escalation.models import EscalationStatus
from services.escalation.resolutions import first_resolution
from services.escalation.rules import MatchContext
from services.escalation.unit_of_work import Deps, Outcome, as_utc
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.events.internal import ChildFact
from shared.events.vocab import AbsenceRule, DeletionGround, ExclusionType
from shared.logs import get_logger
from shared.school_calendar import LONDON, SchoolCalendar

log = get_logger(__name__)


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


RETRACTION = "absence-threshold-retracted"


def remembers(fact: Envelope) -> bool:
    """Whether the fact is remembered (everything escalation knows of the child): every fact but a
    retraction, which only cancels what the crossing it retracts started."""
    return fact.event_type != RETRACTION


def handle_child_fact(
    session: Session, deps: Deps, event: ChildFact, now: datetime, fact: Envelope | None = None
) -> Outcome:
    """``fact``: the inbound fact the event carries, when the caller has decoded it already."""
    fact = fact if fact is not None else decode_inbound(event.payload.fact)
    child, la = str(event.payload.child_id), event.payload.la_code
    if not remembers(fact):
        lock_child_deadlines(session, child, la)
        retracted = str(fact.payload.retracts_event_id)
        cancelled, published = end_episodes(
            session, deps, child, la, now, reason="absence_retracted", trigger_event_id=retracted,
            at=as_utc(fact.occurred_at),
        )  # fmt: skip
        return Outcome("retraction", cancelled=cancelled, published=published)
    calendar = deps.calendars.calendar_for(la)
    occurred = as_utc(fact.occurred_at)
    # What the LA's rules make of this kind of fact (its ends, the clocks it may start), known before any
    # database work: most facts (a roll load's registrations) neither end nor start anything.
    rules = deps.rules.rules_for(la)
    ended = sorted({r.watches.key for r in rules if fact.event_type in r.ends_on})
    watched = {r.watches.event for r in rules}
    watches = [w for w in fact_watches(fact, occurred, calendar) if w.key in watched]
    if not ended and not watches:
        # Only what the fact says of the child is kept (compared first: most say nothing new), for a later
        # fact or transition to read; no clock is touched, so none is locked.
        _remember(session, child, la, fact, occurred)
        return Outcome("not_watched")
    lock_child_deadlines(session, child, la)
    known = _remember(session, child, la, fact, occurred)
    case = case_of(session, child, la)
    ending = (0, 0)
    if ended:
        # A place allocated ends the fair access clock (ends_on), at the fact's event time.
        ending = end_episodes(
            session, deps, child, la, now, reason=f"ended_by:{fact.event_type}", watch_keys=ended, at=occurred
        )
    if not watches:
        return Outcome("ended", cancelled=ending[0], published=ending[1])
    # A transition read before this fact may have resolved the case after it (two topics, read in whatever
    # interleaving): the clocks start, and end at once where that resolution ends them when read after the
    # fact, so the timer decides them as it would have in that order (docs/ESCALATION.md).
    resolution = first_resolution(case, occurred, spare=str(fact.event_id))
    outcome = Outcome("applied")
    order = rule_order(deps.rules, la)
    for watch in watches:
        for rule in deps.rules.match_rules(la, watch.key, fact_context(known, fact, watch)):
            # As of the fact's event time when a transition read before it resolved the case later.
            as_of = occurred if resolution is not None else None
            if already_running(
                session, child, la, rule, acknowledged_counts=watch.acknowledged_counts, as_of=as_of
            ):
                continue
            start_clock(
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
    if resolution is not None and outcome.started:
        outcome.action = "applied_resolved"
        outcome.cancelled, outcome.published = end_episodes(
            session, deps, child, la, now, reason=f"case_resolved:{resolution.state}",
            trigger_event_id=str(fact.event_id), close=EscalationStatus.RESOLVED, at=resolution.at,
        )  # fmt: skip
    return outcome


def _remember(session: Session, child: str, la: str, fact: Envelope, occurred: datetime) -> MatchContext:
    """Keep what the fact says of the child with what escalation knew of it (per child, case or no case: a
    status or flag learnt now still counts for a later fact that has none); returns what it knew before."""
    known = child_context(session, child, la)
    if known is None:
        case = case_of(session, child, la)
        known = case_context(case, None) if case else MatchContext()
    remember_child(session, child, la, fact_context(known, fact, FactWatch(fact.event_type, None, occurred)))
    return known
