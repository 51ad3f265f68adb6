"""OpenAPI pieces the routes cannot infer: request bodies read raw (so every rejection has the service's own
shape), the inbound event schemas from ``shared.events``, and the documented error responses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from services.referral.imports import CSV_MEDIA_TYPES, CTF_MEDIA_TYPES
from services.referral.models import Accepted, CorrectionRequest, ErrorResponse, ReferralRequest
from shared.events.catalogue import InboundEvent

_REF = "#/components/schemas/{model}"
INBOUND_EVENT_REF = {"$ref": "#/components/schemas/InboundEvent"}

EVENT_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": INBOUND_EVENT_REF}},
}
BATCH_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["events"],
                "additionalProperties": False,
                "properties": {
                    "events": {"type": "array", "minItems": 1, "maxItems": 500, "items": INBOUND_EVENT_REF}
                },
            }
        }
    },
}
REFERRAL_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReferralRequest"}}},
}
CORRECTION_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CorrectionRequest"}}},
}
CSV_BODY: dict[str, Any] = {
    "required": True,
    "content": {media: {"schema": {"type": "string"}} for media in CSV_MEDIA_TYPES},
}
CTF_BODY: dict[str, Any] = {
    "required": True,
    "content": {media: {"schema": {"type": "string"}} for media in CTF_MEDIA_TYPES},
}

# 202 with the accepted event's id, linked to its status (schemathesis' stateful phase follows the link).
ACCEPTED_RESPONSE: dict[str, Any] = {
    "description": "Accepted: in the durable outbox, to be published to the intake topic",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
    "links": {
        "EventStatus": {
            "operationId": "event_status",
            "parameters": {"event_id": "$response.body#/event_id"},
            "description": "Where the accepted event has got to",
        }
    },
}

_ERROR_TEXT = {
    400: "The file cannot be read (not XML, or a DTD / entity / external reference)",
    401: "Missing, invalid or revoked API key",
    403: "Outside this client's school or LA",
    404: "No such event from this client",
    409: "The event_id was already used for a different event (or the event was already corrected)",
    410: "The original event is no longer held (retention): send the correction to POST /v1/events",
    405: "This path does not take this method",
    413: "The body is too large",
    415: "The body is not of the media type the route reads (its Content-Type)",
    422: "A field broke a rule: each error names the field and the rule",
    429: "Rate limit: retry after the Retry-After seconds",
    503: "The database is unavailable: nothing was written; retry after Retry-After seconds",
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
ALWAYS = (401, 429, 503)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"description": _ERROR_TEXT[code], "content": _ERROR_CONTENT}
        for code in sorted({*codes, *ALWAYS})
    }


def document_security(
    schema: dict[str, Any], routes: Sequence[BaseRoute], dependency: Callable[..., Any], scheme: SecurityBase
) -> None:
    """Name ``scheme`` on every route that depends on ``dependency``, as FastAPI would if the scheme were a
    dependency of it: the routes' one dependency calls the scheme itself (fewer dependencies to solve on every
    request), so FastAPI cannot see it."""
    name = scheme.scheme_name
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[name] = jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
    for route in routes:
        if isinstance(route, APIRoute) and any(d.call is dependency for d in route.dependant.dependencies):
            for method in route.methods or ():
                schema["paths"][route.path_format][method.lower()]["security"] = [{name: []}]


def install_openapi(
    app: FastAPI, secured: tuple[Sequence[BaseRoute], Callable[..., Any], SecurityBase] | None = None
) -> None:
    """Generate the schema once, with the inbound event union and the error model among its components;
    ``secured``: the routes, the dependency that authenticates and the scheme it reads (document_security)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        if secured is not None:
            document_security(schema, *secured)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        event_schema = TypeAdapter(InboundEvent).json_schema(ref_template=_REF)
        components.update(event_schema.pop("$defs", {}))
        components["InboundEvent"] = event_schema
        for model in (Accepted, CorrectionRequest, ErrorResponse, ReferralRequest):
            model_schema = model.model_json_schema(ref_template=_REF)
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
