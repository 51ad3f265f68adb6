"""Sign-in and sign-out: a password sign-in through the app's identity provider (``app.state.identity``), the
session cookie, and the home page for the person's role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from services.web import metrics
from services.web.context import AnyPerson, get_engine, get_web_settings, home_for, signed_in
from services.web.identity import IdentityProvider
from services.web.models import WebAudit
from services.web.pages.common import Csrf, posted, render
from services.web.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    check_login_csrf,
    new_login_csrf,
    revoke,
    set_session_cookie,
)
from shared.auth import Audience, Principal, issue_token
from shared.logs import get_logger

log = get_logger(__name__)
router = APIRouter()


@router.get("/", include_in_schema=False)
def root(request: Request) -> RedirectResponse:
    try:
        ctx = signed_in(request)
    except Exception:
        return RedirectResponse("/sign-in", status.HTTP_303_SEE_OTHER)
    return RedirectResponse(home_for(ctx.who), status.HTTP_303_SEE_OTHER)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, error: str | None = None) -> HTMLResponse:
    token = new_login_csrf()
    response = render(request, "sign_in.html", None, login_csrf=token, error=error)
    settings = get_web_settings(request)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=settings.web_cookie_secure
    )
    return response


@router.post("/sign-in")
def sign_in(
    request: Request,
    username: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Csrf,
) -> Response:
    check_login_csrf(request, csrf_token)
    settings, engine = get_web_settings(request), get_engine(request)
    identity: IdentityProvider = request.app.state.identity
    person = identity.password_sign_in(username, password)
    if person is None:
        metrics.SIGN_INS.labels(outcome="refused").inc()
        log.info("sign_in_refused")
        return RedirectResponse("/sign-in?error=1", status.HTTP_303_SEE_OTHER)
    token = issue_token(
        settings,
        person.subject,
        person.role,
        person.la_code,
        settings.web_session_ttl_s,
        Audience.WEB_SESSION,
    )
    metrics.SIGN_INS.labels(outcome="ok").inc()
    with Session(engine) as session:
        session.add(
            WebAudit(subject=person.subject, role=person.role, la_code=person.la_code, action="sign_in")
        )
        session.commit()
    who = Principal(sub=person.subject, role=person.role, la_code=person.la_code, exp=0)
    response = RedirectResponse(home_for(who), status.HTTP_303_SEE_OTHER)
    set_session_cookie(response, settings, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/sign-out")
def sign_out(ctx: AnyPerson, csrf_token: Csrf) -> Response:
    posted(ctx, csrf_token)
    revoke(ctx.engine, ctx.token, ctx.who)
    ctx.audit("sign_out")
    response = RedirectResponse("/sign-in", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
