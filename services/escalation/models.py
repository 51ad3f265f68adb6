"""The escalation service's tables (all named ``escalation_*``): durable timers, escalations, their steps,
what the service knows of each case, processed event ids and the outbox.

No personal data is stored: only ids, LA codes, states, rule ids and times.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel

from shared.events.envelope import utcnow
from shared.outbox import OutboxBase

# EscalationStep.withheld for a step decided after a fact had already ended its episode (alerting nobody).
WITHHELD_EPISODE_CLOSED = "episode_closed"


class DeadlineKind(StrEnum):
    RULE = "rule"  # a rule's clock: when it runs out, an escalation starts
    STEP = "step"  # the next ladder step of a running escalation


class DeadlineStatus(StrEnum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"


class EscalationStatus(StrEnum):
    OPEN = "open"  # alerting; steps up when its next step falls due
    ACKNOWLEDGED = "acknowledged"  # a person acknowledged an alerted step: no more step-ups
    RESOLVED = "resolved"  # a person resolved it, or the case was resolved
    CANCELLED = "cancelled"  # the case moved on from what the rule watches


def _utc_column(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(DateTime(timezone=True), nullable=nullable)


class EscalationDeadline(SQLModel, table=True):
    """One durable timer. The due-check reads ``status='pending' AND due_at <= now ORDER BY due_at`` through
    the (status, due_at) index, so its cost follows the number due, not the number open."""

    __tablename__ = "escalation_deadlines"
    __table_args__ = (
        Index("ix_escalation_deadlines_status_due", "status", "due_at"),
        Index("ix_escalation_deadlines_child_status", "child_id", "la_code", "status"),
        Index("ix_escalation_deadlines_escalation", "escalation_id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=8)
    status: str = Field(default=DeadlineStatus.PENDING, max_length=10)
    due_at: datetime = Field(sa_column=_utc_column())
    la_code: str = Field(max_length=3)
    child_id: str = Field(max_length=36)
    case_id: str | None = Field(default=None, max_length=36)
    rule_id: str = Field(max_length=64)
    watch_key: str = Field(max_length=64)
    trigger_event_id: str = Field(max_length=36)
    escalation_id: str | None = Field(default=None, max_length=36)
    step_index: int | None = None
    # The rule's place in the LA's rule list: deadlines due at the same instant fire in rule order, so the
    # de-duplication of alerts to the same level is deterministic.
    rule_order: int = 0
    # The rule as it was when the clock started: a later change of the rules file does not alter it.
    rule_json: str = Field(sa_column=Column(Text, nullable=False))
    rule_fingerprint: str = Field(max_length=64)
    # The input partition the child's records arrive on (transitions and child facts are both keyed by
    # child_id, with the same partition count): the deadline is decided only once that partition's
    # watermark has passed its due time (see EscalationWatermark).
    partition: int = 0
    # The event time the clock counted from (the case entered the watched state, the event's start): a rule
    # that moves the case when it runs out (``moves_case``) tells tracking which wait it counted.
    clock_started_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column())
    fired_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    cancelled_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    cancel_reason: str | None = Field(default=None, max_length=64)
    # A fact with event time after due_at ended the watched episode (the case left the state, was resolved,
    # merged, the crossing retracted): the deadline was due while the episode was open, so it stays pending
    # and is decided by event time; when it is decided after ended_at it is recorded but alerts nobody.
    ended_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    end_reason: str | None = Field(default=None, max_length=64)
    end_status: str | None = Field(default=None, max_length=12)  # the EscalationStatus the episode ends in
    # Started by a provisional transition (tracking's fold ahead) whose in-order twin escalation has not read:
    # an in-order transition read before the twin comes before it in the case's order, so its ends leave
    # this clock alone (services/escalation/transitions.py).
    provisional: bool = False


# EscalationRecord.case_state of an event rule's escalation about a child with no case transition read.
NO_CASE = "no_case"


class EscalationRecord(SQLModel, table=True):
    __tablename__ = "escalation_escalations"
    __table_args__ = (Index("ix_escalation_escalations_child_status", "child_id", "la_code", "status"),)

    id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(max_length=3)
    child_id: str = Field(max_length=36)
    case_id: str = Field(max_length=36)
    rule_id: str = Field(max_length=64)
    rule_fingerprint: str = Field(max_length=64)
    rule_json: str = Field(sa_column=Column(Text, nullable=False))
    watch_key: str = Field(max_length=64)
    # The case's state from tracking's transitions; NO_CASE when none of the child's had been read (published
    # as case_state None).
    case_state: str = Field(max_length=32)
    status: str = Field(default=EscalationStatus.OPEN, max_length=12)
    step_index: int = -1  # the last step alerted (-1 before step 0)
    step_due_at: datetime = Field(sa_column=_utc_column())  # when that step was due
    fired_at: datetime = Field(sa_column=_utc_column())
    acknowledged_step: int | None = None
    acknowledged_by: str | None = Field(default=None, max_length=128)  # a staff user id, not personal data
    closed_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    close_reason: str | None = Field(default=None, max_length=64)
    # A fact ended the episode (event time) while a step due before that end was still undecided: the
    # escalation closes once that step is decided, and no longer counts as running for a new episode.
    ended_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class EscalationStep(SQLModel, table=True):
    """Each ladder step alerted (or suppressed as a duplicate of the same level for the same case)."""

    __tablename__ = "escalation_steps"
    __table_args__ = (Index("ix_escalation_steps_case_level", "case_id", "level", "due_at"),)

    escalation_id: str = Field(primary_key=True, max_length=36)
    step_index: int = Field(primary_key=True)
    case_id: str = Field(max_length=36)
    level: str = Field(max_length=32)
    due_at: datetime = Field(sa_column=_utc_column())
    alerted_at: datetime = Field(sa_column=_utc_column())
    published: bool = True
    duplicate_of: str | None = Field(default=None, max_length=36)
    # Why a step that was due was not published although it is no duplicate: "episode_closed" (decided from
    # a backlog after a fact had already ended the episode; recorded for the returns and the audit).
    withheld: str | None = Field(default=None, max_length=32)
    # Published later than the live window after it fell due (a backlog, a worker that was down).
    late: bool = False


class EscalationCase(SQLModel, table=True):
    """The newest state the service has seen for a child's case in an LA (ordered by event time)."""

    __tablename__ = "escalation_cases"

    child_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(primary_key=True, max_length=3)
    case_id: str = Field(max_length=36)
    state: str = Field(max_length=32)
    state_since: datetime = Field(sa_column=_utc_column())
    # What event-watching rules match on, as of the newest transition.
    has_social_worker: bool = False
    social_care_status: str = Field(default="none", max_length=32)
    vulnerabilities: str = Field(default="", max_length=500)  # comma-separated Vulnerability codes
    safeguarding_concern: bool = False
    # Every resolution of the case read so far, by event time (services.escalation.resolutions): a child fact
    # read after the transition that resolved the case later is ended where that resolution ended it.
    resolutions: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # Some of the child's clocks are ``provisional``: an in-order transition asks which once its twin is read.
    provisional: bool = False


class EscalationChild(SQLModel, table=True):
    """What the service knows of a child's social-care context, per child (and LA), whether or not a case is
    open: a child protection status learnt from any fact (a status event, a flag) while no case existed still
    routes a later home-education notice that carries no flag to children's social care."""

    __tablename__ = "escalation_children"

    child_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(primary_key=True, max_length=3)
    has_social_worker: bool = False
    social_care_status: str = Field(default="none", max_length=32)
    vulnerabilities: str = Field(default="", max_length=500)  # comma-separated Vulnerability codes
    safeguarding_concern: bool = False


class EscalationWatermark(SQLModel, table=True):
    """How far escalation has read one input partition, in event time: every fact on the partition with an
    event time up to ``watermark`` has been applied. It moves to the event time of each record read (a
    child's facts arrive in event-time order on its partition) and, when the consumer has read everything
    the partition held at some moment, to that moment. Kept in the database so every worker sharing it
    decides each deadline on the same horizon."""

    __tablename__ = "escalation_watermarks"

    topic: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    watermark: datetime = Field(sa_column=_utc_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column())
    # Tracking's mark only (topic ``tracking:<child-events topic>``): the offset of the child-events partition
    # before which tracking has folded every record; at the partition's end, tracking is caught up.
    next_offset: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class EscalationProcessedEvent(SQLModel, table=True):
    """Event ids already handled: a redelivered record is a no-op."""

    __tablename__ = "escalation_processed_events"

    event_id: str = Field(primary_key=True, max_length=36)
    topic: str = Field(max_length=255)
    processed_at: datetime = Field(default_factory=utcnow, sa_column=_utc_column())


class EscalationOutbox(OutboxBase, table=True):
    __tablename__ = "escalation_outbox"
