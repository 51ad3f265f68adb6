"""A client for a GOV.UK Notify-style API: POST /v2/notifications/email with a JWT bearer.

As GOV.UK Notify does: the API key is ``<key name>-<service id>-<secret>`` (two UUIDs at the end); each
request carries a fresh HS256 JWT with ``iss`` = service id and ``iat`` = now, signed with the secret. The
delivery id goes in ``reference``, and after a crash mid-send ``GET /v2/notifications?reference=`` tells
whether the earlier attempt was accepted, so the resend is skipped: exactly once as Notify sees it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson

from services.notify.channels.base import PermanentFailure, Sent, TransientFailure
from services.notify.messages import AlertMessage
from services.notify.models import NotifyDelivery
from services.notify.settings import NotifySettings

UUID_LEN = 36


def split_api_key(api_key: str) -> tuple[str, str]:
    """(service id, secret) from a Notify API key."""
    if len(api_key) < 2 * UUID_LEN + 2:
        raise ValueError("not a Notify API key")
    secret = api_key[-UUID_LEN:]
    service_id = api_key[-(2 * UUID_LEN + 1) : -(UUID_LEN + 1)]
    return service_id, secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jwt(service_id: str, secret: str, now: float | None = None) -> str:
    header = _b64(orjson.dumps({"typ": "JWT", "alg": "HS256"}))
    claims = _b64(orjson.dumps({"iss": service_id, "iat": int(time.time() if now is None else now)}))
    signing_input = f"{header}.{claims}".encode()
    signature = _b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


class GovukNotifySender:
    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient | None = None) -> None:
        if settings.notify_govuk_api_key is None or not settings.notify_govuk_template_id:
            raise ValueError(
                "CME_NOTIFY_GOVUK_API_KEY and CME_NOTIFY_GOVUK_TEMPLATE_ID are required for govuk_notify"
            )
        self._service_id, self._secret = split_api_key(settings.notify_govuk_api_key.get_secret_value())
        self._template_id = settings.notify_govuk_template_id
        self._base = settings.notify_govuk_base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=settings.notify_http_timeout_s)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {make_jwt(self._service_id, self._secret)}",
            "User-Agent": "cme-notify",
        }

    async def send(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent:
        personalisation = {k: ("" if v is None else str(v)) for k, v in message.fields.items()}
        personalisation["subject"] = message.subject
        body: dict[str, Any] = {
            "email_address": message.address,
            "template_id": self._template_id,
            "personalisation": personalisation,
            "reference": message.delivery_id,
        }
        response = await self._request("POST", "/v2/notifications/email", json=body)
        if response.status_code == 201:
            return Sent(provider_ref=str(response.json().get("id")))
        raise _failure(response)

    async def find_previous(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent | None:
        response = await self._request("GET", "/v2/notifications", params={"reference": message.delivery_id})
        if response.status_code != 200:
            raise _failure(response)
        found = response.json().get("notifications", [])
        return Sent(provider_ref=str(found[0].get("id")), already=True) if found else None

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, self._base + path, headers=self._headers(), **kwargs)
        except httpx.HTTPError as exc:
            raise TransientFailure(f"Notify API: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _failure(response: httpx.Response) -> Exception:
    # Notify's error text can echo the address: keep the status only.
    if response.status_code == 429 or response.status_code >= 500:
        return TransientFailure(f"Notify API {response.status_code}")
    return PermanentFailure(f"Notify API {response.status_code}")
