"""Event schemas: the envelope every event carries and the typed payloads of each event type."""

from shared.events.catalogue import (
    INBOUND_EVENT_TYPES,
    AnyEvent,
    InboundEvent,
    decode_event,
    decode_inbound,
    encode_event,
    event_class,
)
from shared.events.envelope import Envelope, Source

__all__ = [
    "INBOUND_EVENT_TYPES",
    "AnyEvent",
    "Envelope",
    "InboundEvent",
    "Source",
    "decode_event",
    "decode_inbound",
    "encode_event",
    "event_class",
]
