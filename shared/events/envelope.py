"""The envelope: what every event on the bus carries, whatever its type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from shared.identifiers import validate_destination_la_code, validate_la_code, validate_urn

# Shapes in the schema; the validators also check the lists a pattern cannot hold (current LA numbers).
URN = Annotated[
    str, AfterValidator(validate_urn), WithJsonSchema({"type": "string", "pattern": "^[1-4][0-9]{5}$"})
]
LACode = Annotated[
    str,
    AfterValidator(validate_la_code),
    WithJsonSchema(
        {"type": "string", "pattern": "^[0-9]{3}$", "description": "A current DfE LA number (3 digits)"}
    ),
]


# Where a child went (a leaver's destination, a move): any current English LA, or a Welsh one.
DestinationLACode = Annotated[
    str,
    AfterValidator(validate_destination_la_code),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{3}$",
            "description": "A current DfE LA number of England, or a Welsh LA number (660-681)",
        }
    ),
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class StrictModel(BaseModel):
    """Unknown fields are an error, not silently dropped: a typo in a school's feed must be seen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Source(StrictModel):
    """Who sent the fact: the sending system, the school (if any) and the LA it belongs to."""

    system: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 ._:/-]+$")]
    la_code: LACode | None = Field(
        default=None, description="Required on inbound facts; internal events may omit"
    )
    school_urn: URN | None = None
    client_id: Annotated[str | None, Field(max_length=64)] = None


def _event_type_required(schema: dict[str, Any]) -> None:
    """Each event class defaults its ``event_type``, but a message without one cannot be told apart (the
    catalogue's unions are discriminated by it): the schema says it is required."""
    required = schema.setdefault("required", [])
    if "event_type" not in required:
        required.insert(0, "event_type")


class Envelope(StrictModel):
    """Fields every event carries. Subclasses fix ``event_type`` and type ``payload``."""

    model_config = ConfigDict(json_schema_extra=_event_type_required)

    event_id: uuid.UUID = Field(description="Idempotency key: the same fact always carries the same event_id")
    event_type: str
    schema_version: int = Field(default=1, ge=1)
    occurred_at: AwareDatetime = Field(description="Event time, as the school or agency saw it")
    recorded_at: AwareDatetime = Field(default_factory=utcnow, description="When CME Tracker recorded it")
    source: Source
    correlation_id: uuid.UUID | None = None
    payload: Any

    def log_fields(self) -> dict[str, Any]:
        """The fields of an event that are safe to log: identifiers of the event, never of the child."""
        return {
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "correlation_id": str(self.correlation_id) if self.correlation_id else None,
            "la_code": self.source.la_code,
            "school_urn": self.source.school_urn,
        }


def _la_code_required(schema: dict[str, Any]) -> None:
    _event_type_required(schema)
    source = schema["properties"]["source"]
    schema["properties"]["source"] = {
        "allOf": [source, {"required": ["la_code"], "properties": {"la_code": {"not": {"type": "null"}}}}]
    }


class InboundEnvelope(Envelope):
    """An inbound fact: it must say which LA it belongs to."""

    model_config = ConfigDict(json_schema_extra=_la_code_required)

    @model_validator(mode="after")
    def _la_known(self) -> InboundEnvelope:
        if self.source.la_code is None:
            raise ValueError("source.la_code is required on an inbound event")
        return self
