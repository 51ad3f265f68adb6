"""The topic registry: every topic's name, key, partitions, retention and the events it carries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from shared.events.attendance import AttendanceMark
from shared.events.envelope import Envelope
from shared.events.inbound import INBOUND_EVENT_CLASSES
from shared.events.internal import (
    AlertAck,
    CaseClockExpired,
    CaseTransition,
    ChildFact,
    ChildMerged,
    ChildPurged,
    ChildSplit,
    DeadLetter,
    Escalation,
    TrackingProgress,
)
from shared.events.urgency import is_urgent
from shared.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    base_name: str
    key: str
    producer: str
    consumers: tuple[str, ...]
    description: str
    events: tuple[type[Envelope], ...]
    retention_ms: int = -1  # Kafka is the system of record: keep facts unless a policy says otherwise
    cleanup_policy: str = "delete"
    # The partition key, where it is computed from the event (one function for every producer of the topic).
    key_of: Callable[[Envelope], bytes] | None = None

    def name(self, settings: Settings) -> str:
        return settings.topic(self.base_name)

    def key_for(self, event: Envelope) -> bytes:
        """The record key of ``event`` on this topic (what keeps one child's records in order)."""
        if self.key_of is None:
            raise TypeError(f"{self.base_name} has no key function: its producer names the key")
        return self.key_of(event)

    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


def intake_key(event: Envelope) -> bytes:
    """Intake is keyed by the source's child identifier (UPN, else LA id, else event_id), so one child's facts
    from every producer (referral, tracking's handovers, attendance) stay in order on one partition."""
    child = event.payload.child  # type: ignore[attr-defined]
    return str(child.upn or child.la_child_id or event.event_id).encode()


INTAKE = TopicSpec(
    "cme.intake.v1",
    key="source child identifier (UPN, else LA id, else event_id)",
    key_of=intake_key,
    producer="referral",
    consumers=("tracking",),
    description="Validated inbound facts as received from schools and agencies.",
    events=INBOUND_EVENT_CLASSES,
)
# Intake's twin (same key, producer, consumer and events): only the facts that cannot wait go here.
URGENT_INTAKE = replace(
    INTAKE,
    base_name="cme.intake-urgent.v1",
    description="Inbound facts that say a child may be at risk now (a safeguarding concern, whereabouts"
    " unknown: shared/events/urgency.py), on a lane of their own so that they do not wait behind a bulk load"
    " on the intake topic.",
)
CHILD_EVENTS = TopicSpec(
    "cme.child-events.v1",
    key="child_id",
    producer="tracking (identity resolution); escalation (case-clock-expired)",
    consumers=("tracking (state machine)",),
    description="Facts about one resolved child, merges and splits of children, purges at retention, and the"
    " clocks escalation decided ran out while the case was still in the state they watch.",
    events=(ChildFact, ChildMerged, ChildSplit, ChildPurged, CaseClockExpired),
)
# The urgent lane's facts again, once resolved: folded ahead from the child's record as it stands, so the
# transition they cause reaches escalation before the facts queued ahead of them on child-events are folded.
# A copy: the record of each fact stays on child-events (identity publishes it there too): a week is enough.
URGENT_CHILD_EVENTS = replace(
    CHILD_EVENTS,
    base_name="cme.child-events-urgent.v1",
    producer="tracking (identity resolution of the urgent intake lane)",
    consumers=("tracking (fold ahead)",),
    description="Copies of the child facts resolved on the urgent intake lane (each is on cme.child-events.v1"
    ' too), folded ahead of the queue into provisional case transitions (docs/TRACKING.md, "The urgent lane'
    ' through the case fold").',
    events=(ChildFact,),
    retention_ms=7 * DAY_MS,
)
CASE_TRANSITIONS = TopicSpec(
    "cme.case-transitions.v1",
    key="child_id",
    producer="tracking",
    consumers=("escalation", "projections"),
    description="Case state changes with their cause and the statutory clocks they start or stop; and"
    " tracking's progress marks (keyless, sent to each partition explicitly: how far tracking has folded the"
    " same partition of cme.child-events.v1), which every reader but escalation's horizon ignores.",
    events=(CaseTransition, TrackingProgress),
)
# The fold ahead's provisional transitions, on a topic of their own so that escalation reads them without
# waiting behind the bulk's transitions (docs/ESCALATION.md, "Immediate deadlines and the urgent lane"). The
# record of every transition is cme.case-transitions.v1 (the fold in order publishes each one there): a week.
URGENT_TRANSITIONS = replace(
    CASE_TRANSITIONS,
    base_name="cme.case-transitions-urgent.v1",
    producer="tracking (fold ahead)",
    consumers=("escalation (a consumer of its own)",),
    description="Provisional case transitions: the urgent lane's facts folded ahead of the queue on"
    ' cme.child-events.v1 (docs/TRACKING.md, "The urgent lane through the case fold"). The same'
    " transitions follow on cme.case-transitions.v1 from the fold in order.",
    events=(CaseTransition,),
    retention_ms=7 * DAY_MS,
)
ESCALATIONS = TopicSpec(
    "cme.escalations.v1",
    key="child_id",
    producer="escalation",
    consumers=("notify", "projections"),
    description="Escalations raised, stepped up the ladder, or cancelled.",
    events=(Escalation,),
)
ALERT_ACKS = TopicSpec(
    "cme.alert-acks.v1",
    key="child_id",
    producer="notify",
    consumers=("escalation",),
    description="A person acknowledged or resolved an alert.",
    events=(AlertAck,),
)
ATTENDANCE = TopicSpec(
    "cme.attendance.v1",
    key="UPN",
    producer="attendance (upload API) and schools' MIS (attendance client)",
    consumers=("attendance",),
    description="Session attendance marks (2024 codes), with corrections ordered by occurred_at.",
    events=(AttendanceMark,),
)
DEAD_LETTER = TopicSpec(
    "cme.dead-letter.v1",
    key="original key",
    producer="any service",
    consumers=("ops tooling",),
    description="Messages a handler could not process, with the error and where they came from; never lost.",
    events=(DeadLetter,),
    retention_ms=90 * DAY_MS,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    INTAKE,
    URGENT_INTAKE,
    CHILD_EVENTS,
    URGENT_CHILD_EVENTS,
    CASE_TRANSITIONS,
    URGENT_TRANSITIONS,
    ESCALATIONS,
    ALERT_ACKS,
    DEAD_LETTER,
    ATTENDANCE,
)


def intake_for(event: Envelope) -> TopicSpec:
    """The intake topic an inbound fact goes on: the urgent lane or the ordinary one."""
    return URGENT_INTAKE if is_urgent(event) else INTAKE
