"""The web's tables (web_*): local accounts, revoked sessions, the audit of what people did and read, the
inbox's own bookkeeping of alerts (assignment, notes, resolution) next to notify's alert rows, and case
ownership and review dates next to tracking's cases."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel

from shared.events.envelope import utcnow


def _ts(index: bool = False, nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(DateTime(timezone=True), index=index, nullable=nullable)


class WebUser(SQLModel, table=True):
    __tablename__ = "web_users"

    username: str = Field(primary_key=True, max_length=128)
    la_code: str = Field(index=True, max_length=3)
    role: str = Field(max_length=32)
    password_hash: str = Field(max_length=200)  # argon2id
    team: str | None = Field(default=None, max_length=64)  # the caseworker's team, for "my team's cases"
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class WebRevokedSession(SQLModel, table=True):
    """A signed-out session token (by its hash): refused until it would have expired anyway."""

    __tablename__ = "web_revoked_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_column=_ts(index=True, nullable=False))


class WebAudit(SQLModel, table=True):
    """Who did or read what, when and why (case reads, searches, downloads, alert actions, sign-ins)."""

    __tablename__ = "web_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts(index=True, nullable=False))
    subject: str = Field(max_length=128)
    role: str = Field(max_length=32)
    la_code: str = Field(index=True, max_length=3)
    action: str = Field(max_length=40)
    target: str | None = Field(default=None, max_length=80)  # a case, alert or report id: never personal data
    reason: str | None = Field(default=None, max_length=500)
    detail: str | None = Field(default=None, max_length=200)


class WebAlertWork(SQLModel, table=True):
    """The inbox's state of an alert beyond notify's: who it is assigned to, and whether it is resolved."""

    __tablename__ = "web_alert_work"

    alert_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    assigned_to: str | None = Field(default=None, max_length=128)
    assigned_by: str | None = Field(default=None, max_length=128)
    assigned_at: datetime | None = Field(default=None, sa_column=_ts())
    resolved_by: str | None = Field(default=None, max_length=128)
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())


class WebAlertNote(SQLModel, table=True):
    """An enquiry note on an alert (free text: personal data; shown to the LA, never logged)."""

    __tablename__ = "web_alert_notes"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = Field(index=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    author: str = Field(max_length=128)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))


class WebCaseWork(SQLModel, table=True):
    """Who owns an LA's case and when it is next reviewed: the web's casework, next to tracking's case.

    The owner is a person (their username) or a team ("team:<name>"), set by a person (``owner_source``
    "person") or by the LA's allocation policy ("policy", services/web/allocation.py). A case the policy could
    not allocate keeps no owner and says why (``allocation_problem``). Every change is audited in web_audit
    (case_owner, case_owner_auto, case_allocation_failed, case_review) with who made it and when."""

    __tablename__ = "web_case_work"

    case_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    owner: str | None = Field(default=None, index=True, max_length=128)
    owner_set_by: str | None = Field(default=None, max_length=128)
    owner_set_at: datetime | None = Field(default=None, sa_column=_ts())
    owner_source: str | None = Field(default=None, max_length=16)  # "person" or "policy"
    allocation_problem: str | None = Field(default=None, max_length=200)  # why the policy gave no owner
    allocation_tried_at: datetime | None = Field(default=None, sa_column=_ts())
    review_due: date | None = Field(default=None, index=True)
    review_set_by: str | None = Field(default=None, max_length=128)
    review_set_at: datetime | None = Field(default=None, sa_column=_ts())


class WebRecordedFact(SQLModel, table=True):
    """A fact a person recorded in the web (enquiry, note, outcome), sent to intake: who recorded it, and what
    they wrote, shown against the timeline row tracking keeps for the same event id (personal data: shown to
    the LA, never logged)."""

    __tablename__ = "web_recorded_facts"

    event_id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(index=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    event_type: str = Field(max_length=40)
    recorded_by: str = Field(max_length=128)
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    summary: str = Field(sa_column=Column(Text, nullable=False))
