"""Signed webhooks to LA case-management systems (see ``services.notify.webhook_signing``).

Every attempt of one delivery carries the same delivery id, freshly timestamped and signed. A receiver answers
409 to a delivery id it has already processed: to us that means "delivered", so a resend after a crash is
harmless and the receiver acts once.
"""

from __future__ import annotations

import os

import httpx
import orjson

from services.notify.channels.base import PermanentFailure, Sent, TransientFailure
from services.notify.messages import AlertMessage
from services.notify.models import NotifyDelivery
from services.notify.settings import NotifySettings
from services.notify.webhook_signing import signed_headers


class WebhookSender:
    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(timeout=settings.notify_http_timeout_s)

    async def send(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent:
        secret = os.environ.get(delivery.secret_env or "")
        if not secret:
            raise PermanentFailure(f"webhook secret {delivery.secret_env!r} is not set")
        body = orjson.dumps({"type": "cme.alert", **message.fields})
        try:
            response = await self._client.post(
                message.address, content=body, headers=signed_headers(secret, message.delivery_id, body)
            )
        except httpx.HTTPError as exc:
            raise TransientFailure(f"webhook: {type(exc).__name__}") from exc
        if 200 <= response.status_code < 300:
            return Sent(provider_ref=message.delivery_id)
        if response.status_code == 409:
            return Sent(provider_ref=message.delivery_id, already=True)
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise TransientFailure(f"webhook {response.status_code}")
        raise PermanentFailure(f"webhook {response.status_code}")

    async def find_previous(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent | None:
        return None  # resending is safe: the receiver deduplicates on the delivery id (409)

    async def aclose(self) -> None:
        await self._client.aclose()
