"""Calls to the other services' HTTP APIs with the signed-in person's token: each service checks the token
and scopes what it returns to that person's LA itself."""

from __future__ import annotations

from typing import Any

import httpx

from services.web.settings import WebSettings


class ServiceError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class ServiceClient:
    def __init__(
        self, settings: WebSettings, name: str, token: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=settings.service_url(name),
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.web_http_timeout_s,
        )

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", ""))
            except ValueError:
                detail = response.text[:200]
            raise ServiceError(response.status_code, detail)
        return response.json()
