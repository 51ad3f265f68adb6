"""Casework routes: the work queues (my cases, my team's cases, unassigned, all), taking an alert, case owner
and review date, and enquiries and outcomes recorded as facts through the intake.

Filters in queue URLs are codes only (state, reason, vulnerability, a school's URN): never a child's data.
Every action is CSRF-checked, LA-scoped (tracking and notify scope what they return; the web's own rows carry
the LA) and audited in ``web_audit``.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from services.web import allocation, casework, facts, words
from services.web.clients import ServiceError
from services.web.models import WebAlertWork, WebCaseWork
from services.web.pages import PAGE_SIZE, Csrf, Ctx, Reader, posted, render
from shared.auth import Role
from shared.events.envelope import utcnow
from shared.events.vocab import Vulnerability

Code = Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")]
DateField = Annotated[str, Form(pattern=r"^\d{4}-\d{2}-\d{2}$")]
FormId = Annotated[str, Form(min_length=36, max_length=36)]
OUTCOME_FIELDS = frozenset(
    {
        "la_code", "in_education", "provision_type", "school_urn", "expected_start", "fair_access",
        "hours_per_week", "part_time", "special_school", "la_consent_given", "new_la_code", "country",
        "confirmed", "deletion_ground", "reason",
    }
)  # fmt: skip


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(422, "dates are YYYY-MM-DD") from exc


def _refused(request: Request, ctx: Ctx, case_id: uuid.UUID, messages: list[str]) -> HTMLResponse:
    return render(request, "problem.html", ctx, code=422, messages=messages, back=f"/cases/{case_id}")


def build_router() -> APIRouter:
    router = APIRouter()

    # --- work queues ------------------------------------------------------------------------------------

    @router.get("/cases", response_class=HTMLResponse)
    async def queue(
        request: Request,
        ctx: Reader,
        scope: Annotated[str, Query(pattern="^(mine|team|unassigned|all)$")] = "mine",
        state: Code = None,
        reason: Code = None,
        vulnerability: Annotated[Vulnerability | None, Query()] = None,
        school: Annotated[str | None, Query(pattern=r"^([0-9]{6})?$")] = None,
        overdue: Annotated[bool, Query()] = False,
        closed: Annotated[bool, Query()] = False,
        sort: Annotated[str, Query(pattern="^(oldest|newest|surname)$")] = "oldest",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        """A page of the LA's cases for one person, team or nobody, filtered; the count is tracking's."""
        today = date.today()
        la = ctx.who.la_code
        team = casework.team_of(ctx.engine, ctx.who)
        ids: list[str] | None = None
        exclude: list[str] | None = None
        if scope == "mine":
            ids = casework.owned_case_ids(ctx.engine, la, [ctx.who.sub])
        elif scope == "team":
            ids = (
                casework.owned_case_ids(ctx.engine, la, casework.team_owners(ctx.engine, la, team))
                if team
                else []
            )
        elif scope == "unassigned":
            # Allocate first: what is left is what the policy could not allocate, each with its reason.
            await allocation.allocate_la(
                ctx.settings, ctx.engine, request.app.state.policies, la, ctx.transports.get("tracking")
            )
            exclude = casework.owned_case_ids(ctx.engine, la)
        if overdue:
            late = set(casework.overdue_case_ids(ctx.engine, la, today))
            ids = sorted(late if ids is None else late & set(ids))
        body: dict[str, Any] = {
            "reason": "work queue", "open_only": not closed, "sort": sort,
            "offset": (page - 1) * PAGE_SIZE, "limit": PAGE_SIZE,
            "case_ids": ids, "exclude_case_ids": exclude, "states": [state] if state else None,
            "reason_code": reason, "vulnerability": vulnerability.value if vulnerability else None,
            "school_urn": school or None,
        }  # fmt: skip
        try:
            async with ctx.service("tracking") as tracking:
                result = await tracking.call("POST", "/v1/cases/query", json=body)
        except ServiceError as exc:
            raise HTTPException(exc.status_code, "the filters do not fit: check them") from exc
        items = result["items"]
        page_ids = [i["case"]["case_id"] for i in items]
        work = _work(ctx, page_ids)
        calendar = request.app.state.calendars.calendar_for(la)
        rows = [
            {
                "case_id": i["case"]["case_id"],
                "child": casework.summary(i, today, calendar),
                "work": work.get(i["case"]["case_id"]),
            }
            for i in items
        ]
        total = int(result["total"])
        pages = max(1, -(-total // PAGE_SIZE))
        ctx.audit("case_queue", None, "work queue", detail=f"{scope} page {page}: {len(rows)} of {total}")
        filters = {
            "state": state,
            "reason": reason,
            "vulnerability": vulnerability.value if vulnerability else None,
            "school": school,
            "overdue": overdue,
            "closed": closed,
            "sort": sort,
        }
        return render(
            request, "queue.html", ctx, rows=rows, total=total, page=min(page, pages), pages=pages,
            scope=scope, team=team, filters=filters, today=today, states=words.STATES, reasons=words.REASONS,
            vulnerabilities=[v.value for v in Vulnerability],
        )  # fmt: skip

    def _work(ctx: Ctx, case_ids: list[str]) -> dict[str, WebCaseWork]:
        if not case_ids:
            return {}
        from sqlmodel import col, select

        with Session(ctx.engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(WebCaseWork).where(
                    WebCaseWork.la_code == ctx.who.la_code, col(WebCaseWork.case_id).in_(case_ids)
                )
            ).all()
        return {w.case_id: w for w in rows}

    # --- taking an alert: it and its case are mine -------------------------------------------------------

    @router.post("/alerts/{alert_id}/take")
    async def take(alert_id: uuid.UUID, ctx: Reader, csrf_token: Csrf) -> Response:
        posted(ctx, csrf_token)
        try:
            async with ctx.service("notify") as notify:
                alert = await notify.call("GET", f"/v1/alerts/{alert_id}")
        except ServiceError as exc:
            raise HTTPException(exc.status_code, "no such alert") from exc
        case_id = alert["case_id"]
        with Session(ctx.engine) as session:
            work = session.get(WebAlertWork, str(alert_id)) or WebAlertWork(
                alert_id=str(alert_id), la_code=ctx.who.la_code
            )
            if work.la_code != ctx.who.la_code:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
            work.assigned_to, work.assigned_by, work.assigned_at = ctx.who.sub, ctx.who.sub, utcnow()
            session.add(work)
            session.commit()
        ctx.audit("alert_take", str(alert_id))
        current = casework.work_of(ctx.engine, ctx.who.la_code, case_id)
        # The case too, if nobody owns it or only the allocation policy chose its owner: a person's choice
        # beats the policy's; another person's stands (reassigning it is the owner form).
        if current is None or not current.owner or current.owner_source == "policy":
            casework.set_owner(ctx.engine, ctx.who, case_id, ctx.who.sub)
            ctx.audit("case_owner", case_id, detail=f"owner {ctx.who.sub} (took alert {alert_id})")
        return RedirectResponse(f"/cases/{case_id}", status.HTTP_303_SEE_OTHER)

    # --- owner and review date ---------------------------------------------------------------------------

    async def _own_case(ctx: Ctx, case_id: uuid.UUID) -> None:
        """404 unless tracking has this case in the person's LA."""
        async with ctx.service("tracking") as tracking:
            found = await tracking.call(
                "POST",
                "/v1/cases/query",
                json={"reason": "case allocation", "case_ids": [str(case_id)], "limit": 1},
            )
        if found["total"] != 1:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")

    @router.post("/cases/{case_id}/owner")
    async def case_owner(
        case_id: uuid.UUID, ctx: Reader, csrf_token: Csrf, owner: Annotated[str, Form(max_length=133)] = ""
    ) -> Response:
        posted(ctx, csrf_token)
        chosen = ctx.who.sub if owner == "me" else owner.strip() or None
        if chosen is not None and chosen not in casework.people(ctx.engine, ctx.who.la_code):
            raise HTTPException(422, "choose a caseworker or team of your LA")
        await _own_case(ctx, case_id)
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
        due = _day(review_due)
        if due < date.today():
            raise HTTPException(422, "a review date is today or later")
        work = casework.work_of(ctx.engine, ctx.who.la_code, str(case_id))
        owner = work.owner if work else None
        team = casework.team_of(ctx.engine, ctx.who)
        allowed = ctx.who.role == Role.MANAGER or owner == ctx.who.sub or (team and owner == f"team:{team}")
        if not allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "the case's owner (or a manager) sets its review date"
            )
        await _own_case(ctx, case_id)
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

    # --- enquiries and outcomes: facts through the intake ----------------------------------------------

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
                form_id, child, ctx.who.la_code, _day(on), enquiry_type, outcome, contact, note, reason=reason
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
        # The outcome's own fields (which depend on the outcome): short codes, dates and yes/no answers.
        sent = await request.form()
        form = {k: str(v)[:40] for k, v in sent.items() if k in OUTCOME_FIELDS and isinstance(v, str)}
        child = await casework.read_child(ctx, str(case_id), "recording an outcome")
        try:
            recorded = facts.outcome(event_type, form_id, child, ctx.who.la_code, _day(on), form)
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
        sent = await request.form()
        form = {k: str(v)[:40] for k, v in sent.items() if k in OUTCOME_FIELDS and isinstance(v, str)}
        form["outcome"] = outcome
        child = await casework.read_child(ctx, str(case_id), "closing the case")
        try:
            recorded = facts.close(form_id, child, ctx.who.la_code, _day(on), form)
        except facts.FactRefused as exc:
            return _refused(request, ctx, case_id, exc.messages)
        event_id = await casework.submit(ctx, recorded, str(case_id))
        ctx.audit("case_closed", str(case_id), detail=f"{outcome} event {event_id}")
        return RedirectResponse(f"/cases/{case_id}?recorded=outcome", status.HTTP_303_SEE_OTHER)

    return router
