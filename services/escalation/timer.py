"""The timer's queries: which deadlines the horizon lets us decide, in (due_at, rule_order, id) order, and
the loop that decides them one at a time (each by :func:`services.escalation.firing.fire_deadline`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from services.escalation.firing import fire_deadline
from services.escalation.models import (
    DeadlineStatus,
    EscalationDeadline,
)
from services.escalation.unit_of_work import Deps, Outcome, as_utc
from services.escalation.watermarks import Horizon
from shared.logs import get_logger

log = get_logger(__name__)


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
            in_partition = col(EscalationDeadline.partition) == partition
            started = col(EscalationDeadline.clock_started_at)
            # Due at the instant its clock started: decided once it exists (Horizon.as_of_deadline).
            immediate = and_(in_partition, started.is_not(None), due <= started)
            if horizon.live(partition):
                per_partition.append(and_(in_partition, due <= as_of))
                per_partition.append(immediate)
            else:
                # A backlog: what a fact already ended (recorded, alerting nobody), and an immediate deadline
                # whose episode began within the live window (Horizon.fresh).
                ended = col(EscalationDeadline.ended_at)
                per_partition.append(and_(in_partition, due <= as_of, ended <= as_of))
                per_partition.append(and_(immediate, started >= horizon.now - horizon.live_window))
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
