"""HTTP: acknowledge an alert with a bearer token, or through the one-time link in the message.

The link's GET only shows a confirmation page (mail scanners follow links; a GET must not change state);
the form on that page POSTs to acknowledge.
"""

from __future__ import annotations

import asyncio
import html
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from services.notify.acks import AckResult, AlertClosed, AlertNotFound, LinkAlreadyUsed, acknowledge
from services.notify.config import NotifySettings
from services.notify.links import AckLinkClaims, InvalidLink, verify_ack_token
from services.notify.models import NotifyAlert, aware
from shared.auth import CurrentPrincipal, Principal, Role
from shared.db import session_scope
from shared.events.envelope import utcnow
from shared.events.internal import AckAction
from shared.logs import get_logger
from shared.topics import ALERT_ACKS

log = get_logger(__name__)
ACKNOWLEDGERS = frozenset({Role.CASEWORKER, Role.CME_OFFICER, Role.SOCIAL_CARE, Role.MANAGER})


def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def get_notify_settings(request: Request) -> NotifySettings:
    return request.app.state.settings  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[NotifySettings, Depends(get_notify_settings)]


def require_acknowledger(principal: CurrentPrincipal) -> Principal:
    if principal.role not in ACKNOWLEDGERS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role} may not acknowledge alerts")
    return principal


Acknowledger = Annotated[Principal, Depends(require_acknowledger)]


class AckRequest(BaseModel):
    action: AckAction = AckAction.ACKNOWLEDGED


class AckResponse(BaseModel):
    alert_id: str
    escalation_id: str
    step_index: int
    action: str
    acknowledged_at: datetime
    acknowledged_by: str
    already_acknowledged: bool


def _response(result: AckResult) -> AckResponse:
    return AckResponse(
        alert_id=result.alert_id,
        escalation_id=result.escalation_id,
        step_index=result.step_index,
        action=result.action,
        acknowledged_at=result.acknowledged_at,
        acknowledged_by=result.acknowledged_by,
        already_acknowledged=result.already,
    )


router = APIRouter(prefix="/v1", tags=["alerts"])


@router.post("/alerts/{alert_id}/ack", response_model=AckResponse)
async def ack_alert(
    alert_id: str,
    principal: Acknowledger,
    engine: EngineDep,
    settings: SettingsDep,
    body: Annotated[AckRequest | None, Body()] = None,
) -> AckResponse:
    action = (body or AckRequest()).action

    def run() -> AckResult:
        with session_scope(engine) as session:
            return acknowledge(
                session,
                alert_id=alert_id,
                by_user=principal.sub,
                via="api",
                action=action,
                now=utcnow(),
                acks_topic=ALERT_ACKS.name(settings),
                la_code=principal.la_code,
            )

    try:
        result = await asyncio.to_thread(run)
    except AlertNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert") from exc
    except AlertClosed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"alert is {exc}") from exc
    log.info(
        "alert_acknowledged", alert_id=alert_id, via="api", la_code=principal.la_code, already=result.already
    )
    return _response(result)


class AlertOut(BaseModel):
    """An alert as the caseworker inbox lists it: codes and ids only, no personal data."""

    alert_id: str
    escalation_id: str
    step_index: int
    child_id: str
    case_id: str
    level: str
    rule_id: str
    reason_code: str
    case_state: str
    escalated_at: datetime
    next_step_due_at: datetime | None
    state: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_action: str | None


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    principal: Acknowledger,
    engine: EngineDep,
    state: Annotated[str | None, Query(pattern="^(open|acknowledged|cancelled|superseded)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[AlertOut]:
    """The caller's LA's alerts, newest first (the web inbox); another LA's alerts are never listed."""

    def load() -> list[NotifyAlert]:
        with session_scope(engine) as session:
            query = select(NotifyAlert).where(NotifyAlert.la_code == principal.la_code)
            if state is not None:
                query = query.where(NotifyAlert.state == state)
            return list(session.exec(query.order_by(col(NotifyAlert.escalated_at).desc()).limit(limit)).all())

    rows = await asyncio.to_thread(load)
    out = []
    for row in rows:
        data = row.model_dump()
        data["escalated_at"] = aware(row.escalated_at)
        data["next_step_due_at"] = aware(row.next_step_due_at) if row.next_step_due_at else None
        data["acknowledged_at"] = aware(row.acknowledged_at) if row.acknowledged_at else None
        out.append(AlertOut.model_validate(data))
    return out


def _claims(settings: NotifySettings, token: str) -> AckLinkClaims:
    try:
        return verify_ack_token(settings.signing_key.get_secret_value(), token, utcnow())
    except InvalidLink as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this link is not valid or has expired") from exc


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer"></head>
<body><main><h1>{title}</h1>{content}</main></body></html>"""


def _page(title: str, content: str, code: int = 200) -> HTMLResponse:
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
    return HTMLResponse(_PAGE.format(title=html.escape(title), content=content), code, headers=headers)


@router.get("/ack/{token}", response_class=HTMLResponse)
async def ack_link_confirm(token: str, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    """A confirmation page only: nothing changes until the form is posted."""
    claims = _claims(settings, token)

    def load() -> NotifyAlert | None:
        with session_scope(engine) as session:
            return session.get(NotifyAlert, claims.alert_id)

    alert = await asyncio.to_thread(load)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this link is not valid or has expired")
    if alert.state != "open":
        return _page("Alert already closed", f"<p>This alert is {html.escape(alert.state)}.</p>")
    form = (
        f"<p>Escalation step {alert.step_index + 1}, "
        f"reason <code>{html.escape(alert.reason_code)}</code>.</p>"
        f'<form method="post" action="/v1/ack/{html.escape(token)}">'
        '<button type="submit">Acknowledge this alert</button></form>'
    )
    return _page("Acknowledge alert", form)


@router.post("/ack/{token}", response_class=HTMLResponse)
async def ack_link_submit(token: str, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    claims = _claims(settings, token)

    def run() -> AckResult:
        with session_scope(engine) as session:
            return acknowledge(
                session,
                alert_id=claims.alert_id,
                by_user=claims.recipient,
                via="link",
                action=AckAction.ACKNOWLEDGED,
                now=utcnow(),
                acks_topic=ALERT_ACKS.name(settings),
                link_token_id=claims.token_id,
            )

    try:
        result = await asyncio.to_thread(run)
    except (AlertNotFound, LinkAlreadyUsed) as exc:
        # A used link looks like any invalid one: it must not tell whether it ever worked.
        raise HTTPException(status.HTTP_410_GONE, "this link has already been used or is not valid") from exc
    except AlertClosed as exc:
        return _page("Alert already closed", f"<p>This alert is {html.escape(str(exc))}.</p>", 409)
    log.info("alert_acknowledged", alert_id=claims.alert_id, via="link", already=result.already)
    if result.already:
        return _page("Already acknowledged", "<p>Someone has already acknowledged this alert. Thank you.</p>")
    return _page(
        "Acknowledged", "<p>Thank you: the alert is acknowledged and will not be escalated further.</p>"
    )
