"""Tables of the referral service (all named ``referral_*``) and the models of its HTTP API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictBool
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.events.envelope import utcnow
from shared.events.inbound import ChildIdentity, Destination, FreeText
from shared.events.vocab import DeletionGround, MissingReason, ReferrerType
from shared.outbox import OutboxBase

# ---------------------------------------------------------------- tables


class ClientKind(StrEnum):
    SCHOOL = "school"  # a school's MIS integration: scoped to its URN and LA
    AGENCY = "agency"  # an agency or the LA's own front door: scoped to one LA


class ApiClient(SQLModel, table=True):
    """A caller of the API. Only a hash of its key is kept; the key itself is shown once, at creation."""

    __tablename__ = "referral_api_clients"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    la_code: str = Field(max_length=3, index=True)
    school_urn: str | None = Field(default=None, max_length=6)
    school_estab: str | None = Field(default=None, max_length=4)  # DfE establishment number, as in CTF files
    key_id: str = Field(max_length=32, unique=True, index=True)
    key_hash: str = Field(max_length=64)
    rate_per_s: float = Field(default=50.0)
    burst: int = Field(default=1000)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class SubmissionStatus(StrEnum):
    ACCEPTED = "accepted"  # validated and safely in the outbox
    PUBLISHED = "published"  # on the intake topic
    PROCESSED = "processed"  # tracking resolved it to a child and its case


class Submission(SQLModel, table=True):
    """One accepted event: the idempotency record (first response) and where the event has got to."""

    __tablename__ = "referral_submissions"
    __table_args__ = (UniqueConstraint("event_id", name="uq_referral_submissions_event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36)
    client_id: str = Field(max_length=36, index=True)
    event_type: str = Field(max_length=64)
    request_hash: str = Field(max_length=64)
    response_code: int
    response_body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    accepted_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None
    child_id: str | None = Field(default=None, max_length=36)
    # The event that corrected this one (a pupil-left-roll with corrects_event_id): one correction per event,
    # so a chain of corrections has one end.
    corrected_by: str | None = Field(default=None, max_length=36)


class ReferralOutbox(OutboxBase, table=True):
    __tablename__ = "referral_outbox"


# ---------------------------------------------------------------- API models


class Problem(BaseModel):
    """One broken rule: which field, which rule, and a sentence a data officer can act on."""

    field: str
    rule: str
    message: str


class ErrorResponse(BaseModel):
    errors: list[Problem]


class Accepted(BaseModel):
    event_id: uuid.UUID
    event_type: str
    status: SubmissionStatus = SubmissionStatus.ACCEPTED
    status_url: str
    warnings: list[Problem] = PydanticField(
        default_factory=list,
        description=(
            "Accepted, but something is still owed: e.g. a deletion under ground (h) or (i) without the joint"
            " enquiries with the LA (rule joint_enquiries_required)"
        ),
    )


class ItemOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the same event was accepted before: nothing published again
    REJECTED = "rejected"
    CONFLICT = "conflict"  # the event_id was used before for a different event
    FORBIDDEN = "forbidden"  # outside this client's school or LA


class ItemResult(BaseModel):
    index: int = PydanticField(
        description="Position in the batch (0-based) or row number in a file (1-based)"
    )
    event_id: uuid.UUID | None = None
    outcome: ItemOutcome
    status_code: int
    errors: list[Problem] = PydanticField(default_factory=list)


class BatchRequest(BaseModel):
    events: Annotated[list[dict[str, Any]], PydanticField(min_length=1, max_length=500)]


class BatchResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ItemResult]


class ReferralRequest(BaseModel):
    """A referral from an agency or a member of the public (through the LA's front door)."""

    model_config = ConfigDict(extra="forbid")

    child: ChildIdentity
    referrer_type: ReferrerType
    referrer_organisation: Annotated[str | None, PydanticField(max_length=200)] = None
    concern: FreeText
    safeguarding_concern: StrictBool = False
    reason: MissingReason | None = PydanticField(
        default=None,
        description="Why the child is missing education, as the referrer knows it (DfE category)",
    )
    occurred_at: AwareDatetime | None = PydanticField(
        default=None, description="When the concern arose; now if absent"
    )
    correlation_id: uuid.UUID | None = None


class CorrectionRequest(BaseModel):
    """A correction of a leaver (pupil-left-roll) this client sent: the new destination, and the ground or
    leaving date if they change with it. Everything else is the original's."""

    model_config = ConfigDict(extra="forbid")

    destination: Destination
    deletion_ground: DeletionGround | None = None
    leaving_date: date | None = None
    enquiries_completed: StrictBool | None = None


class EventStatus(BaseModel):
    event_id: uuid.UUID
    event_type: str
    status: SubmissionStatus
    accepted_at: datetime
    published_at: datetime | None = None
    processed_at: datetime | None = None
    child_id: uuid.UUID | None = None
    corrected_by: uuid.UUID | None = PydanticField(
        default=None, description="The event that corrected this one, if a correction replaced it"
    )


class ApiClientPublic(BaseModel):
    id: str
    name: str
    kind: ClientKind
    la_code: str
    school_urn: str | None
    created_at: datetime
    revoked_at: datetime | None
