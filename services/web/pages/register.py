"""Pages of the LA's register of children not in school (s.436B-436G): list and filter it, open an entry,
record a review.

Every read goes to tracking's register API with the person's own short-lived token and a reason (tracking
audits it; the web audits it too), searches are POSTed (nothing personal in a URL), and a review is a fact
like any other: a ``register-entry-recorded`` sent through referral's intake with the web's service token."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web import casework, facts, words
from services.web.clients import ServiceError
from services.web.context import Ctx, Reader
from services.web.pages.common import Csrf, Reason, posted, render

READ = "register_read"  # the audit action of a read of an entry (its reason is remembered a short while)
router = APIRouter()


@router.get("/register", response_class=HTMLResponse)
def register_form(request: Request, ctx: Reader) -> HTMLResponse:
    return render(request, "register.html", ctx, page=None, chosen={}, words=words)


@router.post("/register", response_class=HTMLResponse)
async def register_list(
    request: Request,
    ctx: Reader,
    csrf_token: Csrf,
    reason: Reason,
    category: Annotated[str, Form(max_length=40)] = "",
    education: Annotated[str, Form(max_length=24)] = "",
    review_due_by: Annotated[str, Form(max_length=10)] = "",
    left: Annotated[str, Form(max_length=3)] = "",
) -> HTMLResponse:
    posted(ctx, csrf_token)
    body: dict[str, Any] = {"reason": reason, "on_register": left != "yes", "limit": 200}
    if category:
        body["categories"] = [category]
    if education:
        body["education"] = [education]
    if review_due_by:
        body["review_due_by"] = review_due_by
    try:
        async with ctx.service("tracking") as tracking:
            page = await tracking.call("POST", "/v1/register/query", json=body)
    except ServiceError as exc:
        raise HTTPException(exc.status_code, "check the filters") from exc
    ctx.audit("register_list", None, reason, detail=f"{page['total']} entries")
    chosen = {"category": category, "education": education, "review_due_by": review_due_by,
              "left": left, "reason": reason}  # fmt: skip
    return render(request, "register.html", ctx, page=page, chosen=chosen, words=words)


@router.get("/register/{child_id}", response_class=HTMLResponse)
async def entry_reason(
    request: Request, child_id: uuid.UUID, ctx: Reader, recorded: str | None = None
) -> HTMLResponse:
    reason = casework.recent_reason(ctx.engine, ctx.who, str(child_id), READ)
    if reason is not None:
        return await _show_entry(request, ctx, child_id, reason, recorded == "review")
    return render(request, "register_reason.html", ctx, child_id=str(child_id))


@router.post("/register/{child_id}", response_class=HTMLResponse)
async def entry_page(
    request: Request, child_id: uuid.UUID, ctx: Reader, csrf_token: Csrf, reason: Reason
) -> HTMLResponse:
    posted(ctx, csrf_token)
    return await _show_entry(request, ctx, child_id, reason)


async def _read(ctx: Ctx, child_id: uuid.UUID, reason: str) -> dict[str, Any]:
    try:
        async with ctx.service("tracking") as tracking:
            entry: dict[str, Any] = await tracking.call(
                "GET", f"/v1/register/{child_id}", params={"reason": reason}
            )
    except ServiceError as exc:
        ctx.audit("register_read_refused", str(child_id), reason, detail=str(exc.status_code))
        raise HTTPException(exc.status_code, "no such register entry") from exc
    ctx.audit(READ, str(child_id), reason)
    return entry


async def _show_entry(
    request: Request, ctx: Ctx, child_id: uuid.UUID, reason: str, recorded: bool = False
) -> HTMLResponse:
    try:
        entry = await _read(ctx, child_id, reason)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            return render(request, "not_found.html", ctx, code=404)
        raise
    return render(
        request, "register_entry.html", ctx, entry=entry, words=words, form_id=str(uuid.uuid4()),
        today=date.today().isoformat(), recorded=recorded, education_choices=words.EDUCATION,
    )  # fmt: skip


@router.post("/register/{child_id}/review")
async def record_review(
    request: Request,
    child_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    form_id: Annotated[str, Form(max_length=36)],
    suitability: Annotated[str, Form(max_length=24)],
    review_on: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    posted(ctx, csrf_token)
    reason = casework.recent_reason(ctx.engine, ctx.who, str(child_id), READ) or "recording a register review"
    entry = await _read(ctx, child_id, reason)
    try:
        recorded = facts.register_review(form_id, entry, ctx.who.la_code, suitability, review_on, note)
    except facts.FactRefused as exc:
        return render(request, "problem.html", ctx, code=422, messages=exc.messages,
                      back=f"/register/{child_id}")  # fmt: skip
    event_id = await casework.submit(ctx, recorded, str(child_id))
    ctx.audit("register_review", str(child_id), reason, detail=f"event {event_id}")
    return RedirectResponse(f"/register/{child_id}?recorded=review", status.HTTP_303_SEE_OTHER)
