"""The web's pages: sign-in, alert inbox, case page, search, review queue, reports and ops.

Every page needs a session (else: redirect to /sign-in); every POST checks the CSRF token; children's data is
fetched from tracking and notify with the person's own token, so those services apply the LA scope; personal
data (UPN, names, dates of birth, notes) is only ever in POST bodies and pages, never in URLs or logs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.web import casework, charts, facts, metrics, opsview, reports, words
from services.web.clients import ServiceClient, ServiceError
from services.web.identity import IdentityProvider
from services.web.models import WebAlertNote, WebAlertWork, WebAudit
from services.web.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    check_login_csrf,
    csrf_token_for,
    current_session,
    new_login_csrf,
    revoke,
    set_session_cookie,
)
from services.web.settings import WebSettings
from shared.auth import ACKNOWLEDGERS, CASE_READERS, Audience, Principal, Role, issue_token
from shared.events.envelope import utcnow
from shared.events.vocab import ResolutionReason
from shared.logs import get_logger
from shared.school_calendar import CalendarRegistry, SchoolCalendar

log = get_logger(__name__)
templates = Jinja2Templates(
    env=Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(str(Path(__file__).parent / "templates")),
                # GOV.UK Design System components: {% from "govuk_frontend_jinja/components/.../macro.html" %}
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=True,
    )
)
templates.env.filters.update(
    state_words=words.state_words, reason_words=words.reason_words, fact_words=words.fact_words,
    in_words=words.in_words,
)  # fmt: skip
# Resolving an alert needs one of these (audited); it stops the alerts and never closes the case.
templates.env.globals["RESOLUTION_REASONS"] = [
    (r.value, words.in_words(r.value, words.RESOLUTIONS)) for r in ResolutionReason
]
OPS_ROLES = frozenset({Role.OPS, Role.ADMIN})
Reason = Annotated[str, Form(min_length=3, max_length=500)]
Csrf = Annotated[str, Form()]
# Where an action returns to: the inbox (with its page and filters) or a case page; never another site.
BACK_PATTERN = r"^/(inbox|cases)(/[0-9a-f-]{36})?(\?[A-Za-z0-9=&_-]*)?$"
API_TOKEN_TTL_S = (
    120  # long enough for one page's calls to the services, short enough to be useless if leaked
)
WEB_SERVICE_SUBJECT = "cme-web"  # the subject referral's intake accepts as the web (services/referral/api.py)
PAGE_SIZE = 50


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


def posted(ctx: Ctx, csrf: str) -> None:
    check_csrf(ctx.settings, ctx.token, csrf)


def render(request: Request, name: str, ctx: Ctx | None, code: int = 200, **values: Any) -> HTMLResponse:
    metrics.PAGE_VIEWS.labels(page=name.removesuffix(".html")).inc()
    values.update(ctx=ctx, who=ctx.who if ctx else None, csrf=ctx.csrf if ctx else None)
    return templates.TemplateResponse(request, name, values, status_code=code)


def home_for(who: Principal) -> str:
    return "/ops" if who.role in OPS_ROLES else "/inbox"


def build_router(identity: IdentityProvider) -> APIRouter:
    router = APIRouter()

    # --- sign-in and sign-out ---------------------------------------------------------------------------

    @router.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        try:
            ctx = signed_in(request)
        except Exception:
            return RedirectResponse("/sign-in", status.HTTP_303_SEE_OTHER)
        return RedirectResponse(home_for(ctx.who), status.HTTP_303_SEE_OTHER)

    @router.get("/sign-in", response_class=HTMLResponse)
    def sign_in_page(request: Request, error: str | None = None) -> HTMLResponse:
        token = new_login_csrf()
        response = render(request, "sign_in.html", None, login_csrf=token, error=error)
        settings = get_web_settings(request)
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=settings.web_cookie_secure
        )
        return response

    @router.post("/sign-in")
    def sign_in(
        request: Request,
        username: Annotated[str, Form(max_length=128)],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Csrf,
    ) -> Response:
        check_login_csrf(request, csrf_token)
        settings, engine = get_web_settings(request), get_engine(request)
        person = identity.password_sign_in(username, password)
        if person is None:
            metrics.SIGN_INS.labels(outcome="refused").inc()
            log.info("sign_in_refused")
            return RedirectResponse("/sign-in?error=1", status.HTTP_303_SEE_OTHER)
        token = issue_token(
            settings,
            person.subject,
            person.role,
            person.la_code,
            settings.web_session_ttl_s,
            Audience.WEB_SESSION,
        )
        metrics.SIGN_INS.labels(outcome="ok").inc()
        with Session(engine) as session:
            session.add(
                WebAudit(subject=person.subject, role=person.role, la_code=person.la_code, action="sign_in")
            )
            session.commit()
        who = Principal(sub=person.subject, role=person.role, la_code=person.la_code, exp=0)
        response = RedirectResponse(home_for(who), status.HTTP_303_SEE_OTHER)
        set_session_cookie(response, settings, token)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @router.post("/sign-out")
    def sign_out(ctx: AnyPerson, csrf_token: Csrf) -> Response:
        posted(ctx, csrf_token)
        revoke(ctx.engine, ctx.token, ctx.who)
        ctx.audit("sign_out")
        response = RedirectResponse("/sign-in", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- alert inbox ------------------------------------------------------------------------------------

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
        await _with_cases(ctx, alerts, "alert inbox", calendar)
        _with_alert_work(ctx, alerts)
        pages = max(1, -(-total // PAGE_SIZE))
        return render(
            request, "inbox.html", ctx, alerts=alerts, total=total, waiting=waiting, show=show, sort=sort,
            page=min(page, pages), pages=pages, page_size=PAGE_SIZE, level=level or "", levels=words.LEVELS,
            whose=whose, team=team,
        )  # fmt: skip

    async def _with_cases(
        ctx: Ctx, alerts: list[dict[str, Any]], reason: str, calendar: SchoolCalendar | None = None
    ) -> None:
        """Each alert gets its child's name, age, school, state and owner (one call to tracking per page)."""
        case_ids = sorted({a["case_id"] for a in alerts})
        found: dict[str, dict[str, Any]] = {}
        if case_ids:
            async with ctx.service("tracking") as tracking:
                result = await tracking.call(
                    "POST", "/v1/cases/query",
                    json={"reason": reason, "case_ids": case_ids, "limit": len(case_ids)},
                )  # fmt: skip
            found = {item["case"]["case_id"]: item for item in result["items"]}
        owners = casework.owners(ctx.engine, ctx.who.la_code, case_ids)
        today = date.today()
        for alert in alerts:
            item = found.get(alert["case_id"])
            alert["child"] = casework.summary(item, today, calendar) if item else None
            alert["owner"] = owners.get(alert["case_id"])

    def _with_alert_work(ctx: Ctx, alerts: list[dict[str, Any]]) -> None:
        ids = [a["alert_id"] for a in alerts]
        with Session(ctx.engine) as session:
            work = {
                w.alert_id: w
                for w in session.exec(
                    select(WebAlertWork).where(
                        col(WebAlertWork.alert_id).in_(ids), WebAlertWork.la_code == ctx.who.la_code
                    )
                ).all()
            }
            notes: dict[str, list[WebAlertNote]] = {}
            for note in session.exec(
                select(WebAlertNote)
                .where(col(WebAlertNote.alert_id).in_(ids), WebAlertNote.la_code == ctx.who.la_code)
                .order_by(col(WebAlertNote.at))
            ).all():
                notes.setdefault(note.alert_id, []).append(note)
        for alert in alerts:
            w = work.get(alert["alert_id"])
            alert["assigned_to"] = w.assigned_to if w else None
            alert["resolved"] = bool(w and w.resolved_at) or alert.get("ack_action") == "resolved"
            alert["notes"] = notes.get(alert["alert_id"], [])
            alert["form_id"] = str(uuid.uuid4())  # a note sent twice is one fact

    def _alert_work(session: Session, alert_id: str, la_code: str) -> WebAlertWork:
        work = session.get(WebAlertWork, alert_id)
        if work is None:
            work = WebAlertWork(alert_id=alert_id, la_code=la_code)
        elif work.la_code != la_code:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
        return work

    async def _own_alert(ctx: Ctx, alert_id: str) -> dict[str, Any]:
        """The alert, however old, if it is of the person's LA (404 otherwise: notify scopes it)."""
        try:
            async with ctx.service("notify") as notify:
                found: dict[str, Any] = await notify.call("GET", f"/v1/alerts/{alert_id}")
        except ServiceError as exc:
            raise HTTPException(exc.status_code, "no such alert") from exc
        return found

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
        with Session(ctx.engine) as session:
            work = _alert_work(session, str(alert_id), ctx.who.la_code)
            work.resolved_by, work.resolved_at = ctx.who.sub, utcnow()
            session.add(work)
            session.commit()
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
        await _own_alert(ctx, str(alert_id))
        with Session(ctx.engine) as session:
            work = _alert_work(session, str(alert_id), ctx.who.la_code)
            work.assigned_to = assignee.strip() or None
            work.assigned_by, work.assigned_at = ctx.who.sub, utcnow()
            session.add(work)
            session.commit()
        ctx.audit("alert_assign", str(alert_id))
        return RedirectResponse(back or "/inbox", status.HTTP_303_SEE_OTHER)

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
        alert = await _own_alert(ctx, str(alert_id))
        # The note is a fact on the child's timeline (through intake, like any source's), and stays listed
        # with the alert it was written on.
        child = await casework.read_child(ctx, alert["case_id"], "note on an alert")
        try:
            recorded = facts.note(form_id or str(uuid.uuid4()), child, ctx.who.la_code, text)
        except facts.FactRefused as exc:
            raise HTTPException(422, "; ".join(exc.messages)) from exc
        event_id = await casework.submit(ctx, recorded, alert["case_id"])
        with Session(ctx.engine) as session:
            session.add(
                WebAlertNote(alert_id=str(alert_id), la_code=ctx.who.la_code, author=ctx.who.sub, text=text)
            )
            session.commit()
        ctx.audit("alert_note", str(alert_id), detail=f"event {event_id}")
        return RedirectResponse(back or "/inbox", status.HTTP_303_SEE_OTHER)

    # --- case page: ask why, then show ------------------------------------------------------------------

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
        _with_alert_work(ctx, alerts)
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

    # --- search -------------------------------------------------------------------------------------------

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
        body: dict[str, Any] = {"reason": reason}
        if upn.strip():
            body["upn"] = upn.strip()
        elif surname.strip() and date_of_birth:
            body.update(surname=surname.strip(), date_of_birth=date_of_birth)
        else:
            return render(request, "search.html", ctx, code=422, results=None,
                          error="Give a UPN, or a surname and a date of birth.")  # fmt: skip
        async with ctx.service("tracking") as tracking:
            results = await tracking.call("POST", "/v1/children/search", json=body)
            # The children found, named as in the inbox (an audited read at tracking, for the same reason).
            case_ids = [r["case_id"] for r in results]
            found: dict[str, dict[str, Any]] = {}
            if case_ids:
                page = await tracking.call(
                    "POST", "/v1/cases/query",
                    json={"reason": reason, "case_ids": case_ids, "limit": min(500, len(case_ids))},
                )  # fmt: skip
                found = {item["case"]["case_id"]: item for item in page["items"]}
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

    # --- possible-duplicate review queue ---------------------------------------------------------------

    @router.get("/review", response_class=HTMLResponse)
    async def review_queue(request: Request, ctx: Reader) -> HTMLResponse:
        async with ctx.service("tracking") as tracking:
            items = await tracking.call("GET", "/v1/review-items")
            linked = await tracking.call("GET", "/v1/review-items", params={"status": "linked"})
            cross_la = await tracking.call("GET", "/v1/cross-la/status")
        return render(request, "review.html", ctx, items=items, linked=linked, cross_la=cross_la)

    @router.post("/review/{review_id}")
    async def review_decision(
        review_id: uuid.UUID,
        ctx: Reader,
        csrf_token: Csrf,
        reason: Reason,
        decision: Annotated[str, Form(pattern="^(link|not_link|confirm|reject)$")],
    ) -> Response:
        posted(ctx, csrf_token)
        try:
            async with ctx.service("tracking") as tracking:
                await tracking.call(
                    "POST",
                    f"/v1/review-items/{review_id}/decision",
                    json={"decision": decision, "reason": reason},
                )
        except ServiceError as exc:
            raise HTTPException(exc.status_code, exc.detail) from exc
        ctx.audit(f"review_{decision}", str(review_id), reason)
        return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)

    @router.post("/review/{review_id}/undo")
    async def review_undo(review_id: uuid.UUID, ctx: Reader, csrf_token: Csrf, reason: Reason) -> Response:
        """Undo a link a person made: the two records become two children again."""
        posted(ctx, csrf_token)
        try:
            async with ctx.service("tracking") as tracking:
                await tracking.call("POST", f"/v1/review-items/{review_id}/undo", json={"reason": reason})
        except ServiceError as exc:
            raise HTTPException(exc.status_code, exc.detail) from exc
        ctx.audit("review_undo_link", str(review_id), reason)
        return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)

    # --- reports ----------------------------------------------------------------------------------------

    async def _histories(ctx: Ctx, reason: str) -> list[reports.CaseHistory]:
        async with ctx.service("tracking") as tracking:
            data = await tracking.call("GET", "/v1/reports/history", params={"reason": reason})
        return [reports.CaseHistory.model_validate(h) for h in data]

    def _date(value: str | None) -> date:
        if not value:
            return date.today()
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise HTTPException(422, "dates are YYYY-MM-DD") from exc

    @router.get("/reports", response_class=HTMLResponse)
    async def reports_page(request: Request, ctx: Reader, on: str | None = None) -> HTMLResponse:
        day = _date(on)
        histories = await _histories(ctx, "LA snapshot report")
        calendars: CalendarRegistry = request.app.state.calendars
        population = request.app.state.populations.get(ctx.who.la_code)
        snap = reports.snapshot(histories, day, calendars.calendar_for(ctx.who.la_code), population)
        points = reports.trends(histories, day)
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
            request, "reports.html", ctx, snap=snap, svg=svg, points=points,
            rate=reports.cme_rate_per_1000(snap),
        )  # fmt: skip

    @router.post("/reports/not-in-full-time-education.csv")
    async def not_in_fte_csv(
        ctx: Reader, csrf_token: Csrf, reason: Reason, on: Annotated[str, Form()] = ""
    ) -> Response:
        posted(ctx, csrf_token)
        day = _date(on)
        rows = reports.not_in_full_time_education(await _histories(ctx, reason), day)
        return _download(ctx, "not_in_full_time_education", day, reason, reports.NOT_IN_FTE_HEADER, rows)

    @router.post("/reports/dfe-cme-return.csv")
    async def dfe_csv(
        ctx: Reader, csrf_token: Csrf, reason: Reason, on: Annotated[str, Form()] = ""
    ) -> Response:
        posted(ctx, csrf_token)
        day = _date(on)
        rows = reports.dfe_return(await _histories(ctx, reason), day)
        return _download(ctx, "dfe_cme_return", day, reason, reports.DFE_HEADER, rows)

    @router.post("/reports/dfe-termly-return.csv")
    async def dfe_termly_csv(
        ctx: Reader, csrf_token: Csrf, reason: Reason, on: Annotated[str, Form()] = ""
    ) -> Response:
        """Both halves of the DfE termly collection: elective home education and CME."""
        posted(ctx, csrf_token)
        day = _date(on)
        rows = reports.termly_return(await _histories(ctx, reason), day)
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
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )

    # --- ops --------------------------------------------------------------------------------------------

    @router.get("/ops", response_class=HTMLResponse)
    async def ops_page(request: Request, ctx: Ops) -> HTMLResponse:
        own = opsview.ServiceStatus(
            name="web", url=f"http://127.0.0.1:{ctx.settings.web_port}", ready="ready"
        )
        own.figures, own.by_label = opsview.summarise("web", generate_latest(REGISTRY).decode())
        statuses = await opsview.all_statuses(ctx.settings, own)
        return render(
            request, "ops.html", ctx, statuses=statuses, now=datetime.now().isoformat(timespec="seconds")
        )

    return router
