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

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = str(body.get("detail") or body.get("errors") or "")
            except (ValueError, AttributeError):
                detail = response.text[:200]
            raise ServiceError(response.status_code, detail)
        return response

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._request(method, path, **kwargs)).json()

    async def raw(self, method: str, path: str, **kwargs: Any) -> bytes:
        """The response body as sent (for a model to validate straight from JSON: large pages)."""
        return (await self._request(method, path, **kwargs)).content

    async def page(self, path: str, method: str = "GET", **kwargs: Any) -> tuple[list[Any], int]:
        """One page of a list and the count over all pages (the service's ``X-Total-Count``)."""
        response = await self._request(method, path, **kwargs)
        items: list[Any] = response.json()
        return items, int(response.headers.get("X-Total-Count", len(items)))
