"""The work queues: my cases, my team's cases, the unassigned ones, all; filtered by codes in the URL (never a
child's data), a page at a time. Which cases a queue holds is ``services.web.queue``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from services.web import allocation, casework, words
from services.web import queue as queues
from services.web.clients import ServiceError
from services.web.context import Reader
from services.web.pages.common import PAGE_SIZE, pages_of, render
from shared.events.vocab import Vulnerability

Code = Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")]
router = APIRouter()


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
    if scope == "unassigned":
        # Allocate first: what is left is what the policy could not allocate, each with its reason.
        await allocation.allocate_la(
            ctx.settings, ctx.engine, request.app.state.policies, la, ctx.transports.get("tracking")
        )
    ids, exclude = queues.case_ids_for(ctx.engine, ctx.who, scope, team, overdue, today)
    body = queues.query_body(
        ids, exclude, state=state, reason=reason, vulnerability=vulnerability, school=school, closed=closed,
        sort=sort, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
    )  # fmt: skip
    try:
        async with ctx.service("tracking") as tracking:
            result = await tracking.call("POST", "/v1/cases/query", json=body)
    except ServiceError as exc:
        raise HTTPException(exc.status_code, "the filters do not fit: check them") from exc
    items = result["items"]
    work = casework.work_for(ctx.engine, la, [i["case"]["case_id"] for i in items])
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
    pages = pages_of(total)
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
