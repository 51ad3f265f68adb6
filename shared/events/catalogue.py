"""The event catalogue: every event type, and how to turn events into bytes and back."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from shared.events.attendance import ATTENDANCE_EVENT_CLASSES
from shared.events.envelope import Envelope
from shared.events.inbound import INBOUND_EVENT_CLASSES
from shared.events.internal import INTERNAL_EVENT_CLASSES

ALL_EVENT_CLASSES: tuple[type[Envelope], ...] = (
    INBOUND_EVENT_CLASSES + INTERNAL_EVENT_CLASSES + ATTENDANCE_EVENT_CLASSES
)


def _tagged_union(classes: tuple[type[Envelope], ...]) -> Any:
    """A union of event classes told apart by ``event_type``, built from the one list of each module."""
    return Annotated[Union[classes], Field(discriminator="event_type")]  # noqa: UP007


# The inbound facts a school or agency may send, and every event on the bus.
InboundEvent: Any = _tagged_union(INBOUND_EVENT_CLASSES)
AnyEvent: Any = _tagged_union(ALL_EVENT_CLASSES)
INBOUND_EVENT_TYPES: tuple[str, ...] = tuple(
    cls.model_fields["event_type"].default for cls in INBOUND_EVENT_CLASSES
)


@cache
def _inbound_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(InboundEvent)


@cache
def _any_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(AnyEvent)


def event_class(event_type: str) -> type[Envelope]:
    for cls in ALL_EVENT_CLASSES:
        if cls.model_fields["event_type"].default == event_type:
            return cls
    raise KeyError(f"unknown event type {event_type!r}")


def encode_event(event: Envelope) -> bytes:
    return event.model_dump_json().encode()


def decode_inbound(data: bytes | str | dict[str, Any]) -> Envelope:
    """Parse and validate an inbound fact; raises pydantic.ValidationError naming the field."""
    adapter = _inbound_adapter()
    if isinstance(data, dict):
        return adapter.validate_python(data)  # type: ignore[no-any-return]
    return adapter.validate_json(data)  # type: ignore[no-any-return]


def decode_event(data: bytes | str | dict[str, Any]) -> Envelope:
    """Parse and validate any event of the catalogue."""
    adapter = _any_adapter()
    if isinstance(data, dict):
        return adapter.validate_python(data)  # type: ignore[no-any-return]
    return adapter.validate_json(data)  # type: ignore[no-any-return]
