"""Search for a child by UPN, or by surname and date of birth: POSTed (nothing personal in a URL), with a
reason; the search and each child shown are audited."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from services.web import casework
from services.web.context import Reader
from services.web.pages.common import Csrf, Reason, posted, render

router = APIRouter()


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, ctx: Reader) -> HTMLResponse:
    return render(request, "search.html", ctx, results=None)


@router.post("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    ctx: Reader,
    csrf_token: Csrf,
    reason: Reason,
    upn: Annotated[str, Form(max_length=13)] = "",
    surname: Annotated[str, Form(max_length=100)] = "",
    date_of_birth: Annotated[str, Form(max_length=10)] = "",
) -> HTMLResponse:
    posted(ctx, csrf_token)
    body = casework.search_body(reason, upn, surname, date_of_birth)
    if body is None:
        return render(request, "search.html", ctx, code=422, results=None,
                      error="Give a UPN, or a surname and a date of birth.")  # fmt: skip
    async with ctx.service("tracking") as tracking:
        results = await tracking.call("POST", "/v1/children/search", json=body)
    # The children found, named as in the inbox (an audited read at tracking, for the same reason).
    case_ids = [r["case_id"] for r in results]
    found = await casework.cases_by_id(ctx, reason, case_ids)
    ctx.audit("search", None, reason, detail=f"{len(results)} found")
    today = date.today()
    calendar = request.app.state.calendars.calendar_for(ctx.who.la_code)
    owners = casework.owners(ctx.engine, ctx.who.la_code, case_ids)
    rows = []
    for r in results:
        item = found.get(r["case_id"])
        ctx.audit("search_result", r["case_id"], reason)  # who saw which child's name, and why
        rows.append(
            {
                "case_id": r["case_id"],
                "child": casework.summary(item, today, calendar) if item else None,
                "date_of_birth": item.get("date_of_birth") if item else None,
                "state": r["state"],
                "reason": r.get("reason"),
                "owner": owners.get(r["case_id"]),
            }
        )
    return render(request, "search.html", ctx, results=rows)
