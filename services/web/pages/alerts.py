"""The alert inbox and what a caseworker does with an alert: acknowledge, resolve (with a reason), assign,
take (the alert and its case become mine), and write a note (a fact on the child's timeline).

Alerts are notify's (fetched with the person's own token, so notify scopes them to the LA); the web keeps who
an alert is assigned to and its notes (``casework``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web import casework, facts, words
from services.web.clients import ServiceError
from services.web.context import Ctx, Reader
from services.web.pages.common import BACK_PATTERN, PAGE_SIZE, Csrf, pages_of, posted, render
from shared.auth import ACKNOWLEDGERS
from shared.events.vocab import ResolutionReason

router = APIRouter()


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(
    request: Request,
    ctx: Reader,
    show: Annotated[str, Query(pattern="^(open|acknowledged|all)$")] = "open",
    sort: Annotated[str, Query(pattern="^(newest|oldest|due)$")] = "newest",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    level: Annotated[str | None, Query(pattern="^[a-z_]{0,32}$")] = None,
    whose: Annotated[str, Query(pattern="^(all|mine|team)$")] = "all",
) -> HTMLResponse:
    """The LA's alerts, a page at a time, as a table naming the child; the counts are notify's own. "Mine"
    and "my team's" are the alerts of the cases the person (or their team or a member) owns."""
    params: dict[str, Any] = {"sort": sort, "offset": (page - 1) * PAGE_SIZE, "limit": PAGE_SIZE}
    if show != "all":
        params["state"] = show
    if level:
        params["level"] = level
    team = casework.team_of(ctx.engine, ctx.who)
    async with ctx.service("notify") as notify:
        if whose == "all":
            alerts, total = await notify.page("/v1/alerts", params=params)
            _, waiting = await notify.page("/v1/alerts", params={"state": "open", "limit": 1})
        else:
            owners = [ctx.who.sub] if whose == "mine" else (
                casework.team_owners(ctx.engine, ctx.who.la_code, team) if team else []
            )  # fmt: skip
            case_ids = casework.owned_case_ids(ctx.engine, ctx.who.la_code, owners)
            query = "/v1/alerts/query"
            alerts, total = await notify.page(query, "POST", json={**params, "case_ids": case_ids})
            _, waiting = await notify.page(
                query, "POST", json={"state": "open", "limit": 1, "case_ids": case_ids}
            )
    calendar = request.app.state.calendars.calendar_for(ctx.who.la_code)
    await casework.with_children(ctx, alerts, "alert inbox", calendar)
    casework.with_alert_work(ctx.engine, ctx.who.la_code, alerts)
    pages = pages_of(total)
    return render(
        request, "inbox.html", ctx, alerts=alerts, total=total, waiting=waiting, show=show, sort=sort,
        page=min(page, pages), pages=pages, page_size=PAGE_SIZE, level=level or "", levels=words.LEVELS,
        whose=whose, team=team,
    )  # fmt: skip


async def _ack(
    ctx: Ctx, alert_id: str, action: str, resolution_reason: ResolutionReason | None = None
) -> None:
    if ctx.who.role not in ACKNOWLEDGERS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "your role does not acknowledge alerts")
    body = {"action": action}
    if resolution_reason is not None:
        body["resolution_reason"] = resolution_reason.value
    try:
        async with ctx.service("notify") as notify:
            await notify.call("POST", f"/v1/alerts/{alert_id}/ack", json=body)
    except ServiceError as exc:
        if exc.status_code != status.HTTP_409_CONFLICT:  # already closed: nothing left to stop
            raise HTTPException(exc.status_code, exc.detail) from exc


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(
    alert_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    back: Annotated[str | None, Form(pattern=BACK_PATTERN)] = None,
) -> Response:
    posted(ctx, csrf_token)
    await _ack(ctx, str(alert_id), "acknowledged")
    ctx.audit("alert_ack", str(alert_id))
    return RedirectResponse(back or "/inbox", status.HTTP_303_SEE_OTHER)


@router.post("/alerts/{alert_id}/resolve")
async def resolve(
    alert_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    resolution_reason: Annotated[ResolutionReason, Form()],
) -> Response:
    """Resolve needs a reason from the fixed list (audited here and in notify); the case stays open."""
    posted(ctx, csrf_token)
    await _ack(ctx, str(alert_id), "resolved", resolution_reason)
    casework.mark_alert_resolved(ctx.engine, ctx.who, str(alert_id))
    ctx.audit("alert_resolve", str(alert_id), detail=f"resolution_reason={resolution_reason.value}")
    return RedirectResponse("/inbox", status.HTTP_303_SEE_OTHER)


@router.post("/alerts/{alert_id}/assign")
async def assign(
    alert_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    assignee: Annotated[str, Form(max_length=128)],
    back: Annotated[str | None, Form(pattern=BACK_PATTERN)] = None,
) -> Response:
    posted(ctx, csrf_token)
    await casework.own_alert(ctx, str(alert_id))
    casework.assign_alert(ctx.engine, ctx.who, str(alert_id), assignee.strip() or None)
    ctx.audit("alert_assign", str(alert_id))
    return RedirectResponse(back or "/inbox", status.HTTP_303_SEE_OTHER)


@router.post("/alerts/{alert_id}/take")
async def take(alert_id: uuid.UUID, ctx: Reader, csrf_token: Csrf) -> Response:
    """Taking an alert: it is assigned to me, and its case too unless another person owns it."""
    posted(ctx, csrf_token)
    alert = await casework.own_alert(ctx, str(alert_id))
    case_id = alert["case_id"]
    casework.assign_alert(ctx.engine, ctx.who, str(alert_id), ctx.who.sub)
    ctx.audit("alert_take", str(alert_id))
    if casework.taking_alert_takes_case(casework.work_of(ctx.engine, ctx.who.la_code, case_id)):
        casework.set_owner(ctx.engine, ctx.who, case_id, ctx.who.sub)
        ctx.audit("case_owner", case_id, detail=f"owner {ctx.who.sub} (took alert {alert_id})")
    return RedirectResponse(f"/cases/{case_id}", status.HTTP_303_SEE_OTHER)


@router.post("/alerts/{alert_id}/note")
async def add_note(
    alert_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    text: Annotated[str, Form(min_length=1, max_length=4000)],
    form_id: Annotated[str, Form(max_length=36)] = "",
    back: Annotated[str | None, Form(pattern=BACK_PATTERN)] = None,
) -> Response:
    posted(ctx, csrf_token)
    alert = await casework.own_alert(ctx, str(alert_id))
    # The note is a fact on the child's timeline (through intake, like any source's), and stays listed
    # with the alert it was written on.
    child = await casework.read_child(ctx, alert["case_id"], "note on an alert")
    try:
        recorded = facts.note(form_id or str(uuid.uuid4()), child, ctx.who.la_code, text)
    except facts.FactRefused as exc:
        raise HTTPException(422, "; ".join(exc.messages)) from exc
    event_id = await casework.submit(ctx, recorded, alert["case_id"])
    casework.add_alert_note(ctx.engine, ctx.who, str(alert_id), text)
    ctx.audit("alert_note", str(alert_id), detail=f"event {event_id}")
    return RedirectResponse(back or "/inbox", status.HTTP_303_SEE_OTHER)
