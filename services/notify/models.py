"""Notify's tables (all ``notify_*``): the LA directory, alerts, the delivery ledger, link uses, the audit
trail and the outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.events.envelope import utcnow
from shared.outbox import OutboxBase


def _ts(index: bool = False, nullable: bool = True) -> Column:  # type: ignore[type-arg]
    # Timezone-aware everywhere: Postgres stores timestamptz, SQLite keeps the offset in the text.
    return Column(DateTime(timezone=True), index=index, nullable=nullable)


class Channel(StrEnum):
    SMTP = "smtp"
    GOVUK_NOTIFY = "govuk_notify"
    WEBHOOK = "webhook"


class DeliveryState(StrEnum):
    PENDING = "pending"  # decided, waiting for its (next) attempt
    SENDING = "sending"  # claimed by a worker; if the lease runs out the worker is presumed dead
    SENT = "sent"
    DEAD = "dead"  # last retry failed: dead-lettered and alerted to ops
    WITHDRAWN = "withdrawn"  # escalation cancelled or alert acknowledged before it was sent


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # a step-up that crossed an acknowledgement in flight: not delivered


# --- the LA directory -------------------------------------------------------------------------------------


class NotifyLA(SQLModel, table=True):
    __tablename__ = "notify_la"
    la_code: str = Field(primary_key=True, max_length=3)
    email_channel: str = Field(default=Channel.SMTP.value, max_length=32)
    # New each time the LA's directory is stored (the whole directory is replaced at once): a process's copy
    # of the directory is the stored one while this matches. Empty for a directory stored before it existed.
    version: str = Field(default="", max_length=32)


class NotifyPerson(SQLModel, table=True):
    __tablename__ = "notify_person"
    la_code: str = Field(primary_key=True, max_length=3)
    person_id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    email: str = Field(max_length=320)


class NotifyTeam(SQLModel, table=True):
    __tablename__ = "notify_team"
    la_code: str = Field(primary_key=True, max_length=3)
    team_id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)  # a shared inbox (e.g. the MASH duty inbox)


class NotifyTeamMember(SQLModel, table=True):
    __tablename__ = "notify_team_member"
    la_code: str = Field(primary_key=True, max_length=3)
    team_id: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(primary_key=True, max_length=64)


class NotifyRoleMember(SQLModel, table=True):
    __tablename__ = "notify_role_member"
    la_code: str = Field(primary_key=True, max_length=3)
    role: str = Field(primary_key=True, max_length=32)  # a LadderLevel
    member: str = Field(primary_key=True, max_length=80)  # "person:<id>" or "team:<id>"
    position: int = 0


class NotifyAbsence(SQLModel, table=True):
    __tablename__ = "notify_absence"
    id: int | None = Field(default=None, primary_key=True)
    la_code: str = Field(index=True, max_length=3)
    person_id: str = Field(max_length=64)
    starts_at: datetime = Field(sa_column=_ts(nullable=False))
    ends_at: datetime = Field(sa_column=_ts(nullable=False))
    cover_person_id: str = Field(max_length=64)


class NotifyWebhook(SQLModel, table=True):
    __tablename__ = "notify_webhook"
    la_code: str = Field(primary_key=True, max_length=3)
    webhook_id: str = Field(primary_key=True, max_length=64)
    url: str = Field(max_length=2000)
    # The name of the environment variable holding the shared secret: secrets never sit in the database.
    secret_env: str = Field(max_length=128)
    levels: str = Field(max_length=200)  # comma-separated LadderLevels this endpoint receives


# --- escalations, alerts and the ledger ---------------------------------------------------------------------


class NotifyEscalation(SQLModel, table=True):
    __tablename__ = "notify_escalation"
    escalation_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    child_id: str = Field(max_length=36)
    case_id: str = Field(max_length=36)
    rule_id: str = Field(max_length=128)
    cancelled_at: datetime | None = Field(default=None, sa_column=_ts())
    cancel_reason: str | None = Field(default=None, max_length=128)
    acknowledged_at: datetime | None = Field(default=None, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class NotifyAlert(SQLModel, table=True):
    """One step of one escalation, as delivered to that level's recipients; what people acknowledge."""

    __tablename__ = "notify_alert"
    __table_args__ = (UniqueConstraint("escalation_id", "step_index", name="uq_notify_alert_step"),)
    alert_id: str = Field(primary_key=True, max_length=36)
    escalation_id: str = Field(index=True, max_length=36)
    step_index: int
    la_code: str = Field(index=True, max_length=3)
    child_id: str = Field(max_length=36)
    case_id: str = Field(index=True, max_length=36)  # a case page's alerts; the inbox's "Mine"
    level: str = Field(max_length=32)
    rule_id: str = Field(max_length=128)
    reason_code: str = Field(max_length=128)
    case_state: str = Field(max_length=32)
    next_step_due_at: datetime | None = Field(default=None, sa_column=_ts())
    source_event_id: str = Field(max_length=36)
    source_topic: str = Field(max_length=255)
    source_partition: int
    source_offset: int
    escalated_at: datetime = Field(sa_column=_ts(nullable=False))  # the escalation event's occurred_at
    # Sent from a backlog: the step fell due (escalated_at) well before escalation could decide it.
    late: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    state: str = Field(default=AlertState.OPEN.value, index=True, max_length=16)
    acknowledged_at: datetime | None = Field(default=None, sa_column=_ts())
    acknowledged_by: str | None = Field(default=None, max_length=128)
    ack_action: str | None = Field(default=None, max_length=16)
    ack_via: str | None = Field(default=None, max_length=16)


class NotifyDelivery(SQLModel, table=True):
    """The delivery ledger: one row per (escalation, step, recipient, channel), never two."""

    __tablename__ = "notify_delivery"
    __table_args__ = (
        UniqueConstraint("escalation_id", "step_index", "recipient", "channel", name="uq_notify_delivery"),
    )
    id: int | None = Field(default=None, primary_key=True)
    # Derived from the unique tuple; the idempotency key the channel sees (webhook delivery id, Notify
    # reference, SMTP Message-ID), so a resend after a crash is recognisable as the same message.
    delivery_id: str = Field(unique=True, max_length=36)
    alert_id: str = Field(index=True, max_length=36)
    escalation_id: str = Field(max_length=36)
    step_index: int
    recipient: str = Field(max_length=80)  # "person:<id>", "team:<id>", "webhook:<id>"
    channel: str = Field(max_length=16)
    la_code: str = Field(index=True, max_length=3)
    on_behalf_of: str | None = Field(default=None, max_length=80)  # the absent person a cover receives for
    address: str = Field(max_length=2000)  # email address or webhook URL
    secret_env: str | None = Field(default=None, max_length=128)
    state: str = Field(default=DeliveryState.PENDING.value, index=True, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=_ts(index=True, nullable=False))
    lease_until: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    provider_ref: str | None = Field(default=None, max_length=255)
    last_error: str | None = Field(default=None, max_length=500)


class NotifyProcessedEvent(SQLModel, table=True):
    __tablename__ = "notify_processed_event"
    event_id: str = Field(primary_key=True, max_length=36)
    processed_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class NotifyLinkUse(SQLModel, table=True):
    """A one-time acknowledgement link that has been used (its token id can never be used again)."""

    __tablename__ = "notify_link_use"
    token_id: str = Field(primary_key=True, max_length=36)
    alert_id: str = Field(max_length=36)
    used_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class NotifyAudit(SQLModel, table=True):
    """Who did what to which alert, and when (acknowledgements, cancellations, dead letters)."""

    __tablename__ = "notify_audit"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    la_code: str = Field(index=True, max_length=3)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64)
    alert_id: str | None = Field(default=None, index=True, max_length=36)
    escalation_id: str | None = Field(default=None, max_length=36)
    detail: str | None = Field(default=None, max_length=500)


class NotifyOutbox(OutboxBase, table=True):
    __tablename__ = "notify_outbox"


def aware(value: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; every timestamp here is UTC."""
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
