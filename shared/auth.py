"""Signed bearer tokens for people and services, checked the same way by every service.

A token carries who the caller is (subject), their role and the one LA (and school, for school staff) they act
for, and an expiry. It is an HMAC-SHA256 over the claims with the deployment's signing key, so any service can
check it without a call to another. Sign-in (local accounts or an LA's OIDC provider) issues them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from enum import StrEnum
from typing import Annotated

import orjson
from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from shared.settings import Settings, get_settings


class Role(StrEnum):
    CASEWORKER = "caseworker"
    CME_OFFICER = "cme_officer"
    SOCIAL_CARE = "social_care"
    MANAGER = "manager"
    OPS = "ops"
    ADMIN = "admin"
    SERVICE = "service"  # another CME Tracker service


# Roles that may read a child's record (ops and admin see the system, not the children).
CASE_READERS = frozenset({Role.CASEWORKER, Role.CME_OFFICER, Role.SOCIAL_CARE, Role.MANAGER, Role.SERVICE})
# Roles that may see and acknowledge an alert (notify's API and the web's alert pages): people, not services.
ACKNOWLEDGERS = frozenset({Role.CASEWORKER, Role.CME_OFFICER, Role.SOCIAL_CARE, Role.MANAGER})


class Audience(StrEnum):
    """What a token may be presented to. A web session cookie is not a bearer token for the APIs: a stolen
    or signed-out cookie reaches nothing but the web, where sign-out revokes it; the web calls the APIs with
    a short-lived token of their own audience, minted per call."""

    API = "api"
    WEB_SESSION = "web-session"


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    sub: str = Field(min_length=1, max_length=128)
    role: Role
    la_code: str = Field(pattern=r"^[0-9]{3}$")
    exp: int
    aud: Audience = Audience.API


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(
    settings: Settings,
    sub: str,
    role: Role,
    la_code: str,
    ttl_s: int = 8 * 3600,
    audience: Audience = Audience.API,
) -> str:
    claims = Principal(sub=sub, role=role, la_code=la_code, exp=int(time.time()) + ttl_s, aud=audience)
    body = _b64(orjson.dumps(claims.model_dump(mode="json")))
    sig = hmac.new(settings.signing_key.get_secret_value().encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(sig)}"


class InvalidToken(Exception):
    pass


def verify_token(settings: Settings, token: str, audience: Audience = Audience.API) -> Principal:
    try:
        body, sig = token.split(".", 1)
        expected = hmac.new(
            settings.signing_key.get_secret_value().encode(), body.encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, _unb64(sig)):
            raise InvalidToken("bad signature")
        principal = Principal.model_validate(orjson.loads(_unb64(body)))
    except InvalidToken:
        raise
    except Exception as exc:  # malformed base64, JSON or claims: all the same to the caller
        raise InvalidToken("malformed token") from exc
    if principal.exp < time.time():
        raise InvalidToken("token expired")
    if principal.aud != audience:
        raise InvalidToken("token not meant for this service")
    return principal


def bearer_principal(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Principal:
    """FastAPI dependency: the caller named by ``Authorization: Bearer <token>``. Never a cookie: a browser
    sends cookies by itself, so an API that took them would need CSRF defences it does not have."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "authentication required", {"WWW-Authenticate": "Bearer"}
        )
    try:
        return verify_token(settings, token)
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), {"WWW-Authenticate": "Bearer"}) from exc


CurrentPrincipal = Annotated[Principal, Depends(bearer_principal)]


def require_case_reader(principal: CurrentPrincipal) -> Principal:
    if principal.role not in CASE_READERS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"role {principal.role} may not read children's records"
        )
    return principal


CaseReader = Annotated[Principal, Depends(require_case_reader)]
