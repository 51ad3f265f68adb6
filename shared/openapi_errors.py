"""Document the error answers every authenticated endpoint can give, so the OpenAPI document is complete.

FastAPI documents only the success and 422 answers of a route; the 401 (no or bad credentials), 403 (role may
not), 404 (no such object, or another LA's: the same answer) that ``shared.auth`` and the object lookups raise
are missing, and clients and schemathesis then meet undocumented status codes. ``document_errors(app)``
adds them to every ``/v1/`` operation (404 only where the path names an object, 400 where it takes a body),
plus any route-specific codes a service names, all with FastAPI's ``{"detail": ...}`` body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

DESCRIPTIONS = {
    400: "The body could not be read",
    401: "No credentials, or credentials that are forged, malformed or expired",
    403: "The caller's role may not do this",
    404: "No such object in the caller's LA (another LA's object gets the same answer)",
    409: "The object is in a state that does not allow this",
    413: "The body is too large",
    415: "Unsupported content type",
    503: "A dependency (database or broker) is unavailable; retry later",
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {}},
    "required": ["detail"],
    "title": "ErrorDetail",
}


def document_errors(
    app: FastAPI,
    extra: dict[tuple[str, str], tuple[int, ...]] | None = None,
    public_prefixes: tuple[str, ...] = (),
) -> None:
    """Wrap ``app.openapi`` so each ``/v1/`` operation lists 401, 403 (and 404 when its path has a
    parameter), and the codes in ``extra`` keyed by (METHOD, path). Paths under ``public_prefixes`` carry
    their own credential (e.g. a one-time link): they get no 401/403."""
    extra = extra or {}
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in operations.items():
                codes: set[int] = set(extra.get((method.upper(), path), ()))
                if not path.startswith(public_prefixes):
                    codes |= {401, 403}
                if "{" in path:
                    codes.add(404)
                if "requestBody" in operation:
                    codes |= {400, 413}  # unreadable, or over the body limit (shared.bodylimit)
                responses = operation.setdefault("responses", {})
                for code in sorted(codes):
                    responses.setdefault(
                        str(code),
                        {
                            "description": DESCRIPTIONS.get(code, "Error"),
                            "content": {"application/json": {"schema": ERROR_SCHEMA}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
