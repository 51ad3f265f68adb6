"""Signed webhooks: how CME Tracker signs a delivery and how an LA's receiver verifies it.

The signature is HMAC-SHA256 with the endpoint's shared secret over ``"<timestamp>.<delivery id>.<body>"``
(the delivery id is signed too, so a captured request cannot be replayed under a fresh delivery id), sent as
``X-CME-Signature: v1=<hex>`` with ``X-CME-Timestamp`` (Unix seconds) and ``X-CME-Delivery`` (a UUID that is
the same on every attempt of one delivery). A receiver must:

1. recompute the signature and compare in constant time (rejects forgeries and altered bodies);
2. reject a timestamp outside the tolerance (rejects old captured requests);
3. reject a delivery id it has already processed (rejects replays within the tolerance window; to CME Tracker
   a 409 for a seen delivery id means "already delivered", so a resend after a crash is not counted twice).

This module depends only on the standard library so an LA can copy it into its own system.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from typing import Protocol

SIGNATURE_HEADER = "X-CME-Signature"
TIMESTAMP_HEADER = "X-CME-Timestamp"
DELIVERY_HEADER = "X-CME-Delivery"
DEFAULT_TOLERANCE_S = 300


class WebhookRejected(Exception):
    """Why a webhook request was refused; ``replay`` tells a seen delivery id from a bad request."""

    def __init__(self, reason: str, *, replay: bool = False) -> None:
        super().__init__(reason)
        self.replay = replay


def sign(secret: str, timestamp: int, delivery_id: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{delivery_id}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def signed_headers(secret: str, delivery_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, delivery_id, body),
    }


class ReplayGuard(Protocol):
    def first_use(self, delivery_id: str, now: float) -> bool:
        """Record ``delivery_id``; True the first time, False if it was seen before."""


class MemoryReplayGuard:
    """Delivery ids seen within the tolerance window (older ones are refused by their timestamp anyway).

    A receiver with several processes should use a shared store (a UNIQUE column in its database).
    """

    def __init__(self, tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
        self._seen: dict[str, float] = {}
        self._keep_s = 2 * tolerance_s
        self._lock = threading.Lock()

    def first_use(self, delivery_id: str, now: float) -> bool:
        with self._lock:
            for old, at in list(self._seen.items()):
                if now - at > self._keep_s:
                    del self._seen[old]
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    guard: ReplayGuard,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a received webhook; returns its delivery id, or raises :class:`WebhookRejected`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    current = time.time() if now is None else now
    delivery_id = lowered.get(DELIVERY_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    try:
        timestamp = int(lowered.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError as exc:
        raise WebhookRejected("missing or malformed timestamp") from exc
    if not delivery_id or not signature:
        raise WebhookRejected("missing delivery id or signature")
    if not hmac.compare_digest(sign(secret, timestamp, delivery_id, body), signature):
        raise WebhookRejected("bad signature")
    if abs(current - timestamp) > tolerance_s:
        raise WebhookRejected("stale timestamp")
    if not guard.first_use(delivery_id, current):
        raise WebhookRejected("delivery id already processed", replay=True)
    return delivery_id
