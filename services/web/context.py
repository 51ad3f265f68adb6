"""Who is asking, for every page: the signed-in person, their session token, the page's CSRF token, and the
calls they may make to the services (each with a short-lived API token for the same person).

Every page needs a session (else: redirect to /sign-in); children's data is fetched from tracking and notify
with the person's own token, so those services apply the LA scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.web.clients import ServiceClient
from services.web.models import WebAudit
from services.web.sessions import csrf_token_for, current_session
from services.web.settings import WebSettings
from shared.auth import CASE_READERS, Principal, Role, issue_token

OPS_ROLES = frozenset({Role.OPS, Role.ADMIN})
API_TOKEN_TTL_S = (
    120  # long enough for one page's calls to the services, short enough to be useless if leaked
)
WEB_SERVICE_SUBJECT = "cme-web"  # the subject referral's intake accepts as the web (services/referral/api.py)


@dataclass(frozen=True)
class Ctx:
    """The signed-in person, their session token (for calls to the services) and the page's CSRF token."""

    who: Principal
    token: str
    csrf: str
    settings: WebSettings
    engine: Engine
    transports: dict[str, httpx.AsyncBaseTransport]

    def service(self, name: str) -> ServiceClient:
        # The session token is for the web only; the service gets a short-lived API token for the same person.
        api_token = issue_token(self.settings, self.who.sub, self.who.role, self.who.la_code, API_TOKEN_TTL_S)
        return ServiceClient(self.settings, name, api_token, self.transports.get(name))

    def intake(self) -> ServiceClient:
        """The referral service's intake, as the web's own service client for this person's LA: facts people
        record here go in as any source's do (who recorded one is in web_audit)."""
        token = issue_token(
            self.settings, WEB_SERVICE_SUBJECT, Role.SERVICE, self.who.la_code, API_TOKEN_TTL_S
        )
        return ServiceClient(self.settings, "referral", token, self.transports.get("referral"))

    def audit(
        self, action: str, target: str | None = None, reason: str | None = None, detail: str | None = None
    ) -> None:
        with Session(self.engine) as session:
            session.add(
                WebAudit(
                    subject=self.who.sub,
                    role=self.who.role,
                    la_code=self.who.la_code,
                    action=action,
                    target=target,
                    reason=reason,
                    detail=detail,
                )
            )
            session.commit()


def get_web_settings(request: Request) -> WebSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def signed_in(request: Request) -> Ctx:
    settings, engine = get_web_settings(request), get_engine(request)
    who, token = current_session(request, settings, engine)
    transports = request.app.state.transports
    return Ctx(who, token, csrf_token_for(settings, token), settings, engine, transports)


def case_reader(ctx: Annotated[Ctx, Depends(signed_in)]) -> Ctx:
    if ctx.who.role not in CASE_READERS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "your role does not read children's records")
    return ctx


def ops_person(ctx: Annotated[Ctx, Depends(signed_in)]) -> Ctx:
    if ctx.who.role not in OPS_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the ops page is for the ops and admin roles")
    return ctx


AnyPerson = Annotated[Ctx, Depends(signed_in)]
Reader = Annotated[Ctx, Depends(case_reader)]
Ops = Annotated[Ctx, Depends(ops_person)]


def home_for(who: Principal) -> str:
    return "/ops" if who.role in OPS_ROLES else "/inbox"
