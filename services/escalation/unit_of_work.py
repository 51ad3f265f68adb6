"""What every unit of work shares: its dependencies, its outcome, derived ids, the input partition
of the record being handled and the processed-event guard. Every function takes ``now`` from the caller
(the service's time source), never from the system clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session

from services.escalation.models import (
    EscalationProcessedEvent,
    EscalationStatus,
)
from services.escalation.rules import RuleSet
from shared.events.envelope import Envelope
from shared.events.internal import CaseTransition
from shared.logs import get_logger
from shared.school_calendar import CalendarRegistry

log = get_logger(__name__)


SERVICE = "escalation"
NAMESPACE = uuid.UUID("0b6f3c52-7d4e-4a8b-9e31-5c2f8d7a6e19")
OPEN_STATUSES = (EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED)


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


def children_by_la(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """A batch's (child, LA) pairs as the children of each LA: the batch's reads go one LA at a time."""
    by_la: dict[str, list[str]] = {}
    for child, la in keys:
        by_la.setdefault(la, []).append(child)
    return by_la


def set_record_partition(session: Session, partition: int) -> None:
    """Tell the units of work which input partition the record they handle came from: the clocks they start
    are decided on that partition's horizon (the worker sets it; a caller that never does gets 0)."""
    session.info["partition"] = partition


def record_partition(session: Session) -> int:
    return int(session.info.get("partition", 0))


def processed_id(event: Envelope) -> str:
    """The id a record is remembered by, so that a redelivery is not applied again. A provisional transition
    (folded ahead on tracking's urgent lane) has the id of the in-order transition that follows it; each is
    applied once, so it is remembered under an id of its own."""
    if isinstance(event, CaseTransition) and event.payload.provisional:
        return derived_id("provisional", event.event_id)
    return str(event.event_id)


def mark_processed(session: Session, event_id: uuid.UUID, topic: str) -> bool:
    """Record the event id; False when it was already handled (a redelivery)."""
    if session.get(EscalationProcessedEvent, str(event_id)) is not None:
        return False
    session.add(EscalationProcessedEvent(event_id=str(event_id), topic=topic))
    return True
