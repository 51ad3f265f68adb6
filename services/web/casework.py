"""Casework helpers shared by the inbox, the case page and the work queues: case owners and review dates (the
web's own table, LA-scoped), a case's alerts from notify (every page of them), a child's summary line for a
table, and facts submitted to the intake.

Ownership is kept by the web (``web_case_work``) because it is the LA's allocation of its own work, not a fact
about the child: it needs no event and no other service reads it. Every change is audited in ``web_audit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, status
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.web import facts, reports, words
from services.web.clients import ServiceError
from services.web.models import WebAudit, WebCaseWork, WebRecordedFact, WebUser
from shared.auth import CASE_READERS, Principal
from shared.school_calendar import SchoolCalendar

if TYPE_CHECKING:
    from services.web.pages import Ctx

TEAM_PREFIX = "team:"
REASON_REMEMBERED = timedelta(minutes=30)  # a case reopened within this time keeps the reason given
ALERTS_PER_CALL = 500  # notify's largest page


@dataclass(frozen=True)
class ChildLine:
    """A child as a row of a table: what a caseworker needs to tell the cases apart and see the urgency."""

    name: str
    age: int | None
    school_urn: str | None
    state: str
    state_code: str | None
    reason: str
    days_missing: int | None
    vulnerabilities: list[str]
    destination_la_code: str | None


def age_on(dob: date | None, on: date) -> int | None:
    if dob is None:
        return None
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))


def summary(item: dict[str, Any], today: date, calendar: SchoolCalendar | None = None) -> ChildLine:
    """One case of tracking's ``/v1/cases/query`` as a table row. Days missing run from the start of the
    child's unbroken run of CME states (its state spells): school days on the LA's calendar, as the statutory
    clocks and the DfE return count them (calendar days without one)."""
    case = item["case"]
    dob = date.fromisoformat(item["date_of_birth"]) if item.get("date_of_birth") else None
    history = reports.CaseHistory(
        child_id=case["child_id"], case_id=case["case_id"], state=case["state"], spells=item["spells"]
    )
    since = reports.missing_since(history, today)
    name = " ".join(p for p in (item.get("forename"), item.get("surname")) if p) or "Name not known"
    return ChildLine(
        name=name,
        age=age_on(dob, today),
        school_urn=item.get("school_urn"),
        state=words.state_words(case["state"]),
        state_code=case["state"],
        reason=words.reason_words(case["reason"]) if case.get("reason") else "—",
        days_missing=_days(since.date(), today, calendar) if since else None,
        vulnerabilities=[words.in_words(v) for v in case.get("vulnerabilities", [])],
        destination_la_code=case.get("destination_la_code"),
    )


def _days(since: date, today: date, calendar: SchoolCalendar | None) -> int:
    if calendar is None:
        return max(0, (today - since).days)
    return max(0, calendar.school_days_between(since, today))


# --- owners and review dates ---------------------------------------------------------------------------


def owners(engine: Engine, la_code: str, case_ids: list[str]) -> dict[str, str]:
    if not case_ids:
        return {}
    with Session(engine) as session:
        rows = session.exec(
            select(WebCaseWork.case_id, WebCaseWork.owner).where(
                WebCaseWork.la_code == la_code, col(WebCaseWork.case_id).in_(case_ids)
            )
        ).all()
    return {case_id: owner for case_id, owner in rows if owner}


def work_of(engine: Engine, la_code: str, case_id: str) -> WebCaseWork | None:
    with Session(engine, expire_on_commit=False) as session:
        work = session.get(WebCaseWork, case_id)
    return work if work is not None and work.la_code == la_code else None


def people(engine: Engine, la_code: str) -> list[str]:
    """Who a case can be given to: the LA's caseworking accounts and their teams ("team:<name>")."""
    with Session(engine) as session:
        users = session.exec(
            select(WebUser).where(WebUser.la_code == la_code, col(WebUser.disabled).is_(False))
        ).all()
    names = sorted(u.username for u in users if u.role in CASE_READERS)
    teams = sorted({f"{TEAM_PREFIX}{u.team}" for u in users if u.team and u.role in CASE_READERS})
    return names + teams


def team_of(engine: Engine, who: Principal) -> str | None:
    with Session(engine) as session:
        user = session.get(WebUser, who.sub)
    return user.team if user is not None and user.la_code == who.la_code else None


def team_owners(engine: Engine, la_code: str, team: str) -> list[str]:
    """The owner values that mean "my team": the team itself and each of its members."""
    with Session(engine) as session:
        members = session.exec(
            select(WebUser.username).where(WebUser.la_code == la_code, WebUser.team == team)
        ).all()
    return [f"{TEAM_PREFIX}{team}", *members]


def owned_case_ids(
    engine: Engine, la_code: str, owned_by: list[str] | None = None, overdue_on: date | None = None
) -> list[str]:
    """Case ids of the LA: owned by any of ``owned_by`` (None: by anybody), with a review due before
    ``overdue_on`` when given."""
    where: list[Any] = [WebCaseWork.la_code == la_code]
    if owned_by is not None:
        where.append(col(WebCaseWork.owner).in_(owned_by))
    else:
        where.append(col(WebCaseWork.owner).is_not(None))
    if overdue_on is not None:
        where.append(col(WebCaseWork.review_due) < overdue_on)
    with Session(engine) as session:
        return list(session.exec(select(WebCaseWork.case_id).where(*where)).all())


def overdue_case_ids(engine: Engine, la_code: str, on: date) -> list[str]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(WebCaseWork.case_id).where(
                    WebCaseWork.la_code == la_code, col(WebCaseWork.review_due) < on
                )
            ).all()
        )


def set_owner(engine: Engine, who: Principal, case_id: str, owner: str | None) -> None:
    with Session(engine) as session:
        work = session.get(WebCaseWork, case_id) or WebCaseWork(case_id=case_id, la_code=who.la_code)
        if work.la_code != who.la_code:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
        work.owner, work.owner_set_by, work.owner_set_at = owner, who.sub, datetime.now(UTC)
        # A person's choice; "nobody" hands the case back to the allocation policy, which decides afresh.
        work.owner_source = "person" if owner else None
        work.allocation_problem = None
        session.add(work)
        session.commit()


def set_review(engine: Engine, who: Principal, case_id: str, due: date | None) -> None:
    with Session(engine) as session:
        work = session.get(WebCaseWork, case_id) or WebCaseWork(case_id=case_id, la_code=who.la_code)
        if work.la_code != who.la_code:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
        work.review_due, work.review_set_by, work.review_set_at = due, who.sub, datetime.now(UTC)
        session.add(work)
        session.commit()


def recent_reason(engine: Engine, who: Principal, case_id: str) -> str | None:
    """The reason this person gave when they last opened the case, if that was a short while ago."""
    since = datetime.now(UTC) - REASON_REMEMBERED
    with Session(engine) as session:
        row = session.exec(
            select(WebAudit)
            .where(
                WebAudit.subject == who.sub,
                WebAudit.la_code == who.la_code,
                WebAudit.action == "case_read",
                WebAudit.target == case_id,
                col(WebAudit.at) >= since,
            )
            .order_by(col(WebAudit.at).desc())
            .limit(1)
        ).first()
    return row.reason if row is not None else None


# --- calls to the services -------------------------------------------------------------------------------


async def case_alerts(ctx: Ctx, case_id: str) -> list[dict[str, Any]]:
    """Every alert of the case, oldest first (its ladder history), however many the LA has."""
    found: list[dict[str, Any]] = []
    async with ctx.service("notify") as notify:
        while True:
            params = {"case_id": case_id, "sort": "oldest", "offset": len(found), "limit": ALERTS_PER_CALL}
            page, total = await notify.page("/v1/alerts", params=params)
            found.extend(page)
            if not page or len(found) >= total:
                return found


async def read_child(ctx: Ctx, case_id: str, reason: str) -> dict[str, Any]:
    """The child's record by case id (an audited read at tracking); 404 for another LA's case."""
    try:
        async with ctx.service("tracking") as tracking:
            child: dict[str, Any] = await tracking.call(
                "GET", f"/v1/cases/{case_id}", params={"reason": reason}
            )
    except ServiceError as exc:
        raise HTTPException(
            exc.status_code, "no such case" if exc.status_code == 404 else exc.detail
        ) from exc
    return child


async def submit(ctx: Ctx, recorded: facts.Recorded, case_id: str) -> str:
    """Send the fact to intake; its event id. A resent form is a duplicate there: same id, no new fact."""
    try:
        async with ctx.intake() as intake:
            await intake.call("POST", "/v1/events", json=recorded.body)
    except ServiceError as exc:
        if exc.status_code in (status.HTTP_403_FORBIDDEN, status.HTTP_409_CONFLICT, 422):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "intake refused the fact") from exc
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "intake did not take the fact: try again",
            {"Retry-After": "10"},
        ) from exc
    event_id = str(recorded.event.event_id)
    with Session(ctx.engine) as session:
        if session.get(WebRecordedFact, event_id) is None:  # a resent form: recorded once
            session.add(
                WebRecordedFact(
                    event_id=event_id, case_id=case_id, la_code=ctx.who.la_code,
                    event_type=recorded.event.event_type, recorded_by=ctx.who.sub, summary=recorded.summary,
                )
            )  # fmt: skip
            session.commit()
    return event_id


def recorded_here(engine: Engine, la_code: str, event_ids: list[str]) -> dict[str, WebRecordedFact]:
    """What people recorded in the web for these timeline rows (by event id)."""
    if not event_ids:
        return {}
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(WebRecordedFact).where(
                WebRecordedFact.la_code == la_code, col(WebRecordedFact.event_id).in_(event_ids)
            )
        ).all()
    return {r.event_id: r for r in rows}
