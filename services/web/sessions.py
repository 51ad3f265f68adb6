"""The session: a cookie carrying the shared.auth bearer token, a per-session CSRF token, and sign-out.

- Cookie ``cme_session``: HttpOnly (scripts cannot read it), SameSite=Strict (not sent on cross-site
  requests), Secure when ``web_cookie_secure`` (production, behind TLS), Path=/.
- CSRF: every POST form carries ``csrf_token`` = HMAC(signing key, "csrf:" + session token); a form from
  another site cannot know it. The sign-in form, before there is a session, uses a double-submit cookie.
- Sign-out records the token's hash in web_revoked_sessions until it would have expired.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from fastapi import Request, Response
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from services.web.models import WebRevokedSession
from services.web.settings import WebSettings
from shared.auth import Audience, InvalidToken, Principal, verify_token

SESSION_COOKIE = "cme_session"
LOGIN_CSRF_COOKIE = "cme_login_csrf"


class SignInRequired(Exception):
    """No valid session: the page handler turns this into a redirect to the sign-in page."""


class CsrfFailed(Exception):
    pass


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(settings: WebSettings, session_token: str) -> str:
    key = settings.signing_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def check_csrf(settings: WebSettings, session_token: str, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(csrf_token_for(settings, session_token), submitted):
        raise CsrfFailed()


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def check_login_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise CsrfFailed()


def set_session_cookie(response: Response, settings: WebSettings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.web_session_ttl_s,
        httponly=True,
        samesite="strict",
        secure=settings.web_cookie_secure,
        path="/",
    )


def current_session(request: Request, settings: WebSettings, engine: Engine) -> tuple[Principal, str]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired()
    try:
        principal = verify_token(settings, token, Audience.WEB_SESSION)
    except InvalidToken as exc:
        raise SignInRequired() from exc
    with Session(engine) as session:
        if session.get(WebRevokedSession, _token_hash(token)) is not None:
            raise SignInRequired()
    return principal, token


def revoke(engine: Engine, token: str, principal: Principal) -> None:
    with Session(engine) as session:
        now = datetime.now(UTC)
        session.exec(delete(WebRevokedSession).where(col(WebRevokedSession.expires_at) < now))  # type: ignore[call-overload]
        if session.get(WebRevokedSession, _token_hash(token)) is None:
            session.add(
                WebRevokedSession(
                    token_hash=_token_hash(token), expires_at=datetime.fromtimestamp(principal.exp, UTC)
                )
            )
        session.commit()
