"""Casework helpers shared by the inbox, the case page and the work queues: case owners and review dates (the
web's own table, LA-scoped), a case's alerts from notify (every page of them), a child's summary line for a
table, and facts submitted to the intake.

Ownership is kept by the web (``web_case_work``) because it is the LA's allocation of its own work, not a fact
about the child: it needs no event and no other service reads it. Every change is audited in ``web_audit``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, status
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.web import facts, reports, words
from services.web.clients import ServiceError
from services.web.models import WebAlertNote, WebAlertWork, WebAudit, WebCaseWork, WebRecordedFact, WebUser
from shared.auth import CASE_READERS, Principal, Role
from shared.events.envelope import utcnow
from shared.school_calendar import SchoolCalendar

if TYPE_CHECKING:
    from services.web.context import Ctx

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


def work_for(engine: Engine, la_code: str, case_ids: list[str]) -> dict[str, WebCaseWork]:
    """The web's work rows (owner, review date) of these cases of the LA, by case id."""
    if not case_ids:
        return {}
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(WebCaseWork).where(WebCaseWork.la_code == la_code, col(WebCaseWork.case_id).in_(case_ids))
        ).all()
    return {w.case_id: w for w in rows}


def taking_alert_takes_case(current: WebCaseWork | None) -> bool:
    """Taking an alert takes its case too if nobody owns it or only the allocation policy chose its owner: a
    person's choice beats the policy's; another person's stands (reassigning it is the owner form)."""
    return current is None or not current.owner or current.owner_source == "policy"


def may_set_review(engine: Engine, who: Principal, case_id: str) -> bool:
    """The case's owner (the person, or their team) or a manager sets its review date."""
    work = work_of(engine, who.la_code, case_id)
    owner = work.owner if work else None
    team = team_of(engine, who)
    return who.role == Role.MANAGER or owner == who.sub or bool(team and owner == f"{TEAM_PREFIX}{team}")


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


def recent_reason(engine: Engine, who: Principal, target: str, action: str = "case_read") -> str | None:
    """The reason this person gave when they last opened the case (or, with ``action="register_read"``, the
    register entry), if that was a short while ago."""
    since = datetime.now(UTC) - REASON_REMEMBERED
    with Session(engine) as session:
        row = session.exec(
            select(WebAudit)
            .where(
                WebAudit.subject == who.sub,
                WebAudit.la_code == who.la_code,
                WebAudit.action == action,
                WebAudit.target == target,
                col(WebAudit.at) >= since,
            )
            .order_by(col(WebAudit.at).desc())
            .limit(1)
        ).first()
    return row.reason if row is not None else None


# --- work on alerts: who it is assigned to, whether it is resolved, notes (the web's own rows) -----------


def _alert_work(session: Session, alert_id: str, la_code: str) -> WebAlertWork:
    work = session.get(WebAlertWork, alert_id)
    if work is None:
        work = WebAlertWork(alert_id=alert_id, la_code=la_code)
    elif work.la_code != la_code:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    return work


def assign_alert(engine: Engine, who: Principal, alert_id: str, assignee: str | None) -> None:
    with Session(engine) as session:
        work = _alert_work(session, alert_id, who.la_code)
        work.assigned_to = assignee
        work.assigned_by, work.assigned_at = who.sub, utcnow()
        session.add(work)
        session.commit()


def mark_alert_resolved(engine: Engine, who: Principal, alert_id: str) -> None:
    with Session(engine) as session:
        work = _alert_work(session, alert_id, who.la_code)
        work.resolved_by, work.resolved_at = who.sub, utcnow()
        session.add(work)
        session.commit()


def add_alert_note(engine: Engine, who: Principal, alert_id: str, text: str) -> None:
    with Session(engine) as session:
        session.add(WebAlertNote(alert_id=alert_id, la_code=who.la_code, author=who.sub, text=text))
        session.commit()


def with_alert_work(engine: Engine, la_code: str, alerts: list[dict[str, Any]]) -> None:
    """Each alert gets who it is assigned to, whether it is resolved, its notes, and a fresh form id."""
    ids = [a["alert_id"] for a in alerts]
    with Session(engine) as session:
        work = {
            w.alert_id: w
            for w in session.exec(
                select(WebAlertWork).where(
                    col(WebAlertWork.alert_id).in_(ids), WebAlertWork.la_code == la_code
                )
            ).all()
        }
        notes: dict[str, list[WebAlertNote]] = {}
        for note in session.exec(
            select(WebAlertNote)
            .where(col(WebAlertNote.alert_id).in_(ids), WebAlertNote.la_code == la_code)
            .order_by(col(WebAlertNote.at))
        ).all():
            notes.setdefault(note.alert_id, []).append(note)
    for alert in alerts:
        w = work.get(alert["alert_id"])
        alert["assigned_to"] = w.assigned_to if w else None
        alert["resolved"] = bool(w and w.resolved_at) or alert.get("ack_action") == "resolved"
        alert["notes"] = notes.get(alert["alert_id"], [])
        alert["form_id"] = str(uuid.uuid4())  # a note sent twice is one fact


# --- calls to the services -------------------------------------------------------------------------------


async def cases_by_id(ctx: Ctx, reason: str, case_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Tracking's case items for these case ids (one audited read, for ``reason``), by case id."""
    if not case_ids:
        return {}
    async with ctx.service("tracking") as tracking:
        page = await tracking.call(
            "POST", "/v1/cases/query",
            json={"reason": reason, "case_ids": case_ids, "limit": min(500, len(case_ids))},
        )  # fmt: skip
    return {item["case"]["case_id"]: item for item in page["items"]}


async def with_children(
    ctx: Ctx, alerts: list[dict[str, Any]], reason: str, calendar: SchoolCalendar | None = None
) -> None:
    """Each alert gets its child's name, age, school, state and owner (one call to tracking per page)."""
    case_ids = sorted({a["case_id"] for a in alerts})
    found = await cases_by_id(ctx, reason, case_ids)
    owned = owners(ctx.engine, ctx.who.la_code, case_ids)
    today = date.today()
    for alert in alerts:
        item = found.get(alert["case_id"])
        alert["child"] = summary(item, today, calendar) if item else None
        alert["owner"] = owned.get(alert["case_id"])


async def own_alert(ctx: Ctx, alert_id: str) -> dict[str, Any]:
    """The alert, however old, if it is of the person's LA (404 otherwise: notify scopes it)."""
    try:
        async with ctx.service("notify") as notify:
            found: dict[str, Any] = await notify.call("GET", f"/v1/alerts/{alert_id}")
    except ServiceError as exc:
        raise HTTPException(exc.status_code, "no such alert") from exc
    return found


async def own_case(ctx: Ctx, case_id: str) -> None:
    """404 unless tracking has this case in the person's LA."""
    async with ctx.service("tracking") as tracking:
        found = await tracking.call(
            "POST", "/v1/cases/query", json={"reason": "case allocation", "case_ids": [case_id], "limit": 1}
        )
    if found["total"] != 1:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")


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


def search_body(reason: str, upn: str, surname: str, date_of_birth: str) -> dict[str, Any] | None:
    """Tracking's children search for a UPN, else a surname and a date of birth; None if neither was given."""
    body: dict[str, Any] = {"reason": reason}
    if upn.strip():
        body["upn"] = upn.strip()
    elif surname.strip() and date_of_birth:
        body.update(surname=surname.strip(), date_of_birth=date_of_birth)
    else:
        return None
    return body
