"""The reports page (the LA's snapshot, charts and trend on a day) and the CSV returns (downloads audited with
their reason). The figures are ``services.web.reports``, from tracking's counts of the cases' spells as of the
day (counted in SQL there) and, for the list of children, the columns it needs a page at a time."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from services.web import charts, metrics, reports
from services.web.context import Ctx, Reader
from services.web.pages.common import Csrf, Reason, day_of, posted, render
from shared.events.internal import REPORT_FIRST_DAY, REPORT_LAST_DAY
from shared.school_calendar import CalendarRegistry

router = APIRouter()


NOT_IN_FTE_PAGE = 5000  # children per call to tracking


async def _counts(ctx: Ctx, day: date, reason: str) -> reports.ReportCounts:
    async with ctx.service("tracking") as tracking:
        data = await tracking.call(
            "GET", "/v1/reports/counts", params={"on": day.isoformat(), "months": 12, "reason": reason}
        )
    return reports.ReportCounts.model_validate(data)


async def _return(ctx: Ctx, day: date, reason: str) -> reports.ReturnCounts:
    first, last = reports.academic_year_before(day)
    params = {
        "on": day.isoformat(),
        "ehe_from": first.isoformat(),
        "ehe_to": last.isoformat(),
        "reason": reason,
    }
    async with ctx.service("tracking") as tracking:
        data = await tracking.call("GET", "/v1/reports/return", params=params)
    return reports.ReturnCounts.model_validate(data)


async def _not_in_fte(ctx: Ctx, day: date, reason: str) -> list[reports.FTEChild]:
    """The children the list may name, page by page (tracking decides who is a candidate on the day)."""
    out: list[reports.FTEChild] = []
    params: dict[str, str | int] = {"on": day.isoformat(), "reason": reason, "limit": NOT_IN_FTE_PAGE}
    async with ctx.service("tracking") as tracking:
        while True:
            raw = await tracking.raw("GET", "/v1/reports/not-in-full-time-education", params=params)
            page = reports.NotInFTEPage.model_validate_json(raw)
            out += page.rows
            if not page.next_after:
                return out
            params["after"] = page.next_after


def _date(value: str | None) -> date:
    day = day_of(value) if value else date.today()
    if not REPORT_FIRST_DAY <= day <= REPORT_LAST_DAY:
        raise HTTPException(422, f"reports cover days from {REPORT_FIRST_DAY} to {REPORT_LAST_DAY}")
    return day


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request, ctx: Reader, on: str | None = None) -> HTMLResponse:
    day = _date(on)
    counts = await _counts(ctx, day, "LA snapshot report")
    calendars: CalendarRegistry = request.app.state.calendars
    population = request.app.state.populations.get(ctx.who.la_code)
    snap = reports.snapshot_from(counts, calendars.calendar_for(ctx.who.la_code), population)
    points = reports.trends_from(counts)
    ctx.audit("report_snapshot", day.isoformat(), "LA snapshot report")
    svg = {
        "state": charts.bar_chart("Children by case state", list(snap.by_state.items())),
        "reason": charts.bar_chart("Children missing education by reason", list(snap.by_reason.items())),
        "days": charts.bar_chart("School days missing", list(snap.school_days_missing.items())),
        "trend": charts.line_chart(
            "Children missing education by month",
            [p.on.strftime("%b %y") for p in points],
            [
                ("missing education", [p.cme for p in points]),
                ("whereabouts unknown", [p.whereabouts_unknown for p in points]),
                ("new in month", [p.new_cme for p in points]),
            ],
        ),
    }
    return render(
        request, "reports.html", ctx, snap=snap, svg=svg, points=points, rate=reports.cme_rate_per_1000(snap)
    )


@router.post("/reports/not-in-full-time-education.csv")
async def not_in_fte_csv(
    ctx: Reader, csrf_token: Csrf, reason: Reason, on: Annotated[str, Form()] = ""
) -> Response:
    posted(ctx, csrf_token)
    day = _date(on)
    rows = reports.not_in_fte_from(await _not_in_fte(ctx, day, reason), day)
    return _download(ctx, "not_in_full_time_education", day, reason, reports.NOT_IN_FTE_HEADER, rows)


@router.post("/reports/dfe-cme-return.csv")
async def dfe_csv(ctx: Reader, csrf_token: Csrf, reason: Reason, on: Annotated[str, Form()] = "") -> Response:
    posted(ctx, csrf_token)
    day = _date(on)
    rows = reports.dfe_return_from(await _return(ctx, day, reason))
    return _download(ctx, "dfe_cme_return", day, reason, reports.DFE_HEADER, rows)


@router.post("/reports/dfe-termly-return.csv")
async def dfe_termly_csv(
    ctx: Reader, csrf_token: Csrf, reason: Reason, on: Annotated[str, Form()] = ""
) -> Response:
    """Both halves of the DfE termly collection: elective home education and CME."""
    posted(ctx, csrf_token)
    day = _date(on)
    rows = reports.termly_return_from(await _return(ctx, day, reason))
    return _download(ctx, "dfe_termly_return", day, reason, reports.DFE_HEADER, rows)


def _download(
    ctx: Ctx, report: str, day: date, reason: str, header: tuple[str, ...], rows: list[tuple[str, ...]]
) -> Response:
    ctx.audit("download_csv", f"{report}:{day.isoformat()}", reason, detail=f"{len(rows)} rows")
    metrics.DOWNLOADS.labels(report=report).inc()
    filename = f"{report}_{ctx.who.la_code}_{day.isoformat()}.csv"
    return Response(
        reports.to_csv(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
