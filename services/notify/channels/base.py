"""What every channel offers the dispatcher, and how a send can fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.notify.messages import AlertMessage
from services.notify.models import NotifyDelivery


class TransientFailure(Exception):
    """Worth retrying later (timeouts, 5xx, 429, a refused connection, a 4xx SMTP reply)."""


class PermanentFailure(Exception):
    """Retrying cannot help (a rejected address, a 400 from an API, a missing secret): dead-letter now."""


@dataclass(frozen=True)
class Sent:
    provider_ref: str | None
    already: bool = False  # the channel already had this delivery (found by its idempotency key)


class ChannelSender(Protocol):
    async def send(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent:
        """Deliver once; raise TransientFailure or PermanentFailure."""

    async def find_previous(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent | None:
        """After a crash mid-send: the earlier attempt if the channel can tell it happened, else None."""

    async def aclose(self) -> None:
        """Release connections."""
