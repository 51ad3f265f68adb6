"""HTTP: acknowledge an alert with a bearer token, or through the one-time link in the message.

The link's GET only shows a confirmation page (mail scanners follow links; a GET must not change state);
the form on that page POSTs to acknowledge.
"""

from __future__ import annotations

import asyncio
import html
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from services.notify.acks import AckResult, AlertClosed, AlertNotFound, LinkAlreadyUsed, acknowledge
from services.notify.links import AckLinkClaims, InvalidLink, verify_ack_token
from services.notify.models import NotifyAlert, aware
from services.notify.settings import NotifySettings
from shared.auth import ACKNOWLEDGERS, CurrentPrincipal, Principal
from shared.db import session_scope
from shared.events.envelope import utcnow
from shared.events.internal import AckAction
from shared.events.vocab import ResolutionReason
from shared.logs import get_logger
from shared.topics import ALERT_ACKS

log = get_logger(__name__)


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
    # Required to resolve (a fixed list, audited); resolving stops the alerts, never closes the case.
    resolution_reason: ResolutionReason | None = None

    @model_validator(mode="after")
    def _resolve_needs_reason(self) -> AckRequest:
        if self.action == AckAction.RESOLVED and self.resolution_reason is None:
            raise ValueError("resolving an alert needs resolution_reason (one of the fixed list)")
        if self.action == AckAction.ACKNOWLEDGED and self.resolution_reason is not None:
            raise ValueError("resolution_reason is only for action resolved")
        return self


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
    request = body or AckRequest()
    action = request.action

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
                resolution_reason=request.resolution_reason,
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
    late: bool
    next_step_due_at: datetime | None
    state: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_action: str | None


MAX_OFFSET = 10_000_000  # far beyond any LA's alerts; keeps the offset a database integer
ALERT_ORDER = {
    # Every order ends with alert_id, so offset paging is stable when alerts share a timestamp.
    "newest": (col(NotifyAlert.escalated_at).desc(), col(NotifyAlert.alert_id)),
    "oldest": (col(NotifyAlert.escalated_at), col(NotifyAlert.alert_id)),
    "due": (col(NotifyAlert.next_step_due_at).is_(None), col(NotifyAlert.next_step_due_at),
            col(NotifyAlert.alert_id)),
}  # fmt: skip


def _alert_out(row: NotifyAlert) -> AlertOut:
    data = row.model_dump()
    data["escalated_at"] = aware(row.escalated_at)
    data["next_step_due_at"] = aware(row.next_step_due_at) if row.next_step_due_at else None
    data["acknowledged_at"] = aware(row.acknowledged_at) if row.acknowledged_at else None
    return AlertOut.model_validate(data)


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    principal: Acknowledger,
    engine: EngineDep,
    response: Response,
    state: Annotated[str | None, Query(pattern="^(open|acknowledged|cancelled|superseded)$")] = None,
    case_id: Annotated[uuid.UUID | None, Query(description="Only this case's alerts")] = None,
    level: Annotated[str | None, Query(max_length=32)] = None,
    sort: Annotated[str, Query(pattern="^(newest|oldest|due)$")] = "newest",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[AlertOut]:
    """The caller's LA's alerts, one page at a time (the web inbox and case page); another LA's alerts are
    never listed. ``X-Total-Count`` is the number of alerts the filters match, over all pages."""

    query = AlertQuery(
        state=state,
        case_ids=[case_id] if case_id else None,
        level=level,
        sort=sort,
        offset=offset,
        limit=limit,
    )
    return await _alert_page(engine, principal, query, response)


class AlertQuery(BaseModel):
    """A page of the caller's LA's alerts by the filters; ``case_ids`` (the cases a person or team owns, which
    the web keeps) travel in the body, so any number fit."""

    state: Annotated[str | None, Field(pattern="^(open|acknowledged|cancelled|superseded)$")] = None
    case_ids: list[uuid.UUID] | None = Field(default=None, max_length=50_000, description="Only these cases")
    level: Annotated[str | None, Field(max_length=32)] = None
    sort: Annotated[str, Field(pattern="^(newest|oldest|due)$")] = "newest"
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    limit: int = Field(default=200, ge=1, le=500)


@router.post("/alerts/query", response_model=list[AlertOut])
async def query_alerts(
    body: AlertQuery, principal: Acknowledger, engine: EngineDep, response: Response
) -> list[AlertOut]:
    """As ``GET /v1/alerts``, with the filters in the body (the web inbox's "mine" and "my team's")."""
    return await _alert_page(engine, principal, body, response)


async def _alert_page(
    engine: Engine, principal: Principal, body: AlertQuery, response: Response
) -> list[AlertOut]:
    def load() -> tuple[int, list[NotifyAlert]]:
        with session_scope(engine) as session:
            where: list[Any] = [NotifyAlert.la_code == principal.la_code]
            if body.state is not None:
                where.append(NotifyAlert.state == body.state)
            if body.case_ids is not None:
                where.append(col(NotifyAlert.case_id).in_([str(c) for c in body.case_ids]))
            if body.level is not None:
                where.append(NotifyAlert.level == body.level)
            total = session.exec(select(func.count()).select_from(NotifyAlert).where(*where)).one()
            query = (
                select(NotifyAlert)
                .where(*where)
                .order_by(*ALERT_ORDER[body.sort])
                .offset(body.offset)
                .limit(body.limit)
            )
            return total, list(session.exec(query).all())

    total, rows = await asyncio.to_thread(load)
    response.headers["X-Total-Count"] = str(total)
    return [_alert_out(row) for row in rows]


@router.get("/alerts/{alert_id}", response_model=AlertOut)
async def read_alert(alert_id: uuid.UUID, principal: Acknowledger, engine: EngineDep) -> AlertOut:
    """One alert of the caller's LA, however old (404 for another LA's alert, as for one that never was)."""

    def load() -> NotifyAlert | None:
        with session_scope(engine) as session:
            return session.get(NotifyAlert, str(alert_id))

    row = await asyncio.to_thread(load)
    if row is None or row.la_code != principal.la_code:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    return _alert_out(row)


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
