"""A child's case page (ask why, then show; every read audited) and the casework forms on it: the case's
owner and review date, and enquiries, outcomes and closing recorded as facts through the intake.

Every action is CSRF-checked, LA-scoped (tracking and notify scope what they return; the web's own rows carry
the LA) and audited in ``web_audit``."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web import casework, facts, words
from services.web.clients import ServiceError
from services.web.context import Ctx, Reader
from services.web.pages.common import Csrf, Reason, day_of, posted, render

DateField = Annotated[str, Form(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
FormId = Annotated[str, Form(min_length=36, max_length=36)]
router = APIRouter()


# --- the case page: ask why, then show ---------------------------------------------------------------------


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_reason(
    request: Request,
    case_id: uuid.UUID,
    ctx: Reader,
    recorded: Annotated[str | None, Query(pattern="^(enquiry|outcome|note)$")] = None,
) -> HTMLResponse:
    # Back on a case this person opened a short while ago (after recording something on it): the reason
    # they gave then still holds, and is recorded again for this read.
    reason = casework.recent_reason(ctx.engine, ctx.who, str(case_id))
    if reason is not None:
        return await _show_case(request, ctx, case_id, reason, recorded)
    return render(request, "case_reason.html", ctx, case_id=str(case_id))


@router.post("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(
    request: Request, case_id: uuid.UUID, ctx: Reader, csrf_token: Csrf, reason: Reason
) -> HTMLResponse:
    posted(ctx, csrf_token)
    return await _show_case(request, ctx, case_id, reason)


async def _show_case(
    request: Request, ctx: Ctx, case_id: uuid.UUID, reason: str, recorded: str | None = None
) -> HTMLResponse:
    try:
        async with ctx.service("tracking") as tracking:
            child = await tracking.call("GET", f"/v1/cases/{case_id}", params={"reason": reason})
    except ServiceError as exc:
        ctx.audit("case_read_refused", str(case_id), reason, detail=str(exc.status_code))
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            return render(request, "not_found.html", ctx, code=404)
        raise HTTPException(exc.status_code, exc.detail) from exc
    ctx.audit("case_read", str(case_id), reason)
    alerts = await casework.case_alerts(ctx, str(case_id))
    casework.with_alert_work(ctx.engine, ctx.who.la_code, alerts)
    work = casework.work_of(ctx.engine, ctx.who.la_code, str(case_id))
    here = casework.recorded_here(ctx.engine, ctx.who.la_code, [t["event_id"] for t in child["timeline"]])
    return render(
        request, "case.html", ctx, child=child, alerts=alerts, work=work, case_id=str(case_id),
        people=casework.people(ctx.engine, ctx.who.la_code), today=date.today().isoformat(),
        form_id=str(uuid.uuid4()), enquiry_types=words.ENQUIRY_TYPES,
        enquiry_outcomes=words.ENQUIRY_OUTCOMES, outcomes=facts.OUTCOMES,
        provision_types=facts.PROVISION_TYPES, back=f"/cases/{case_id}", here=here, recorded=recorded,
        closing=facts.CLOSING_OUTCOMES if facts.supported(facts.CLOSE) else None,
        closing_words={code: label for code, (label, _) in facts.CLOSING_OUTCOMES.items()},
        with_reason={t for t in ("enquiry-recorded", *facts.OUTCOMES) if facts.allows_reason(t)},
        reasons=words.REASONS,
    )  # fmt: skip


def _refused(request: Request, ctx: Ctx, case_id: uuid.UUID, messages: list[str]) -> HTMLResponse:
    return render(request, "problem.html", ctx, code=422, messages=messages, back=f"/cases/{case_id}")


# --- owner and review date ---------------------------------------------------------------------------------


@router.post("/cases/{case_id}/owner")
async def case_owner(
    case_id: uuid.UUID, ctx: Reader, csrf_token: Csrf, owner: Annotated[str, Form(max_length=133)] = ""
) -> Response:
    posted(ctx, csrf_token)
    chosen = ctx.who.sub if owner == "me" else owner.strip() or None
    if chosen is not None and chosen not in casework.people(ctx.engine, ctx.who.la_code):
        raise HTTPException(422, "choose a caseworker or team of your LA")
    await casework.own_case(ctx, str(case_id))
    casework.set_owner(ctx.engine, ctx.who, str(case_id), chosen)
    ctx.audit("case_owner", str(case_id), detail=f"owner {chosen or 'none'}")
    return RedirectResponse(f"/cases/{case_id}", status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/review", response_model=None)
async def case_review(
    request: Request,
    case_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    review_due: DateField,
    form_id: Annotated[str, Form(max_length=36)] = "",
) -> Response:
    """The owner's next review date: kept with the case's work, and a review-date-set fact on the child's
    timeline through the intake (escalation alerts when the day comes)."""
    posted(ctx, csrf_token)
    due = day_of(review_due)
    if due < date.today():
        raise HTTPException(422, "a review date is today or later")
    if not casework.may_set_review(ctx.engine, ctx.who, str(case_id)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the case's owner (or a manager) sets its review date")
    await casework.own_case(ctx, str(case_id))
    event_id = None
    if facts.supported(facts.REVIEW):
        child = await casework.read_child(ctx, str(case_id), "setting the review date")
        try:
            recorded = facts.review(form_id or str(uuid.uuid4()), child, ctx.who.la_code, due)
        except facts.FactRefused as exc:
            return _refused(request, ctx, case_id, exc.messages)
        event_id = await casework.submit(ctx, recorded, str(case_id))
    casework.set_review(ctx.engine, ctx.who, str(case_id), due)
    ctx.audit("case_review", str(case_id), detail=f"review due {due.isoformat()} event {event_id}")
    return RedirectResponse(f"/cases/{case_id}", status.HTTP_303_SEE_OTHER)


# --- enquiries, outcomes and closing: facts through the intake -----------------------------------------


@router.post("/cases/{case_id}/enquiry", response_model=None)
async def record_enquiry(
    request: Request,
    case_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    form_id: FormId,
    on: DateField,
    enquiry_type: Annotated[str, Form(max_length=40)],
    outcome: Annotated[str, Form(max_length=40)],
    contact: Annotated[str, Form(max_length=200)] = "",
    note: Annotated[str, Form(max_length=3500)] = "",
    reason: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    posted(ctx, csrf_token)
    child = await casework.read_child(ctx, str(case_id), "recording an enquiry")
    try:
        recorded = facts.enquiry(
            form_id, child, ctx.who.la_code, day_of(on), enquiry_type, outcome, contact, note, reason=reason
        )
    except facts.FactRefused as exc:
        return _refused(request, ctx, case_id, exc.messages)
    event_id = await casework.submit(ctx, recorded, str(case_id))
    ctx.audit("enquiry_recorded", str(case_id), detail=f"{enquiry_type}/{outcome} event {event_id}")
    return RedirectResponse(f"/cases/{case_id}?recorded=enquiry", status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/outcome", response_model=None)
async def record_outcome(
    request: Request,
    case_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    form_id: FormId,
    on: DateField,
    event_type: Annotated[str, Form(max_length=40)],
) -> Response:
    posted(ctx, csrf_token)
    form = facts.outcome_fields(await request.form())
    child = await casework.read_child(ctx, str(case_id), "recording an outcome")
    try:
        recorded = facts.outcome(event_type, form_id, child, ctx.who.la_code, day_of(on), form)
    except facts.FactRefused as exc:
        return _refused(request, ctx, case_id, exc.messages)
    event_id = await casework.submit(ctx, recorded, str(case_id))
    ctx.audit("outcome_recorded", str(case_id), detail=f"{event_type} event {event_id}")
    return RedirectResponse(f"/cases/{case_id}?recorded=outcome", status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/close", response_model=None)
async def close_case(
    request: Request,
    case_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    form_id: FormId,
    on: DateField,
    outcome: Annotated[str, Form(max_length=40)],
) -> Response:
    """Close the case with where the child's education is confirmed: a fact through the intake."""
    posted(ctx, csrf_token)
    form = facts.outcome_fields(await request.form())
    form["outcome"] = outcome
    child = await casework.read_child(ctx, str(case_id), "closing the case")
    try:
        recorded = facts.close(form_id, child, ctx.who.la_code, day_of(on), form)
    except facts.FactRefused as exc:
        return _refused(request, ctx, case_id, exc.messages)
    event_id = await casework.submit(ctx, recorded, str(case_id))
    ctx.audit("case_closed", str(case_id), detail=f"{outcome} event {event_id}")
    return RedirectResponse(f"/cases/{case_id}?recorded=outcome", status.HTTP_303_SEE_OTHER)
