"""Read API of the case store and the review decisions, scoped to the caller's LA: thin handlers over
``case_reads``, ``reports`` and ``review`` (each takes a session; this module opens it, commits it and turns
their refusals into status codes). Every read of a child's record is audited. Handlers are plain ``def``:
FastAPI runs them in its thread pool, off the event loop."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import AfterValidator

from services.tracking import case_reads, reports, review
from services.tracking.deps import EngineDep, MatcherDep, PublishDep, ReasonQuery
from services.tracking.errors import Conflict, NotFound, Unprocessable
from services.tracking.schemas import (
    CaseOut,
    CasePage,
    CaseQuery,
    ChildOut,
    CrossLAReport,
    Decision,
    HistoryOut,
    NotInFTEPage,
    ReportCounts,
    ReturnCounts,
    SearchIn,
    Undo,
)
from shared.auth import CaseReader
from shared.db import session_scope
from shared.events.internal import REPORT_FIRST_DAY, REPORT_LAST_DAY, CaseState

router = APIRouter(prefix="/v1", tags=["cases"])


@contextmanager
def refusals_as_http() -> Iterator[None]:
    """A service's refusal as the HTTP status it stands for (raised after the session rolled back)."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except Unprocessable as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.detail) from exc


@router.get("/children/{child_id}")
def read_child(
    child_id: uuid.UUID, who: CaseReader, engine: EngineDep, matcher: MatcherDep, reason: ReasonQuery
) -> ChildOut:
    with refusals_as_http(), session_scope(engine) as session:
        return case_reads.read_child(session, who, child_id, reason, matcher)


@router.get("/cases/{case_id}")
def read_case(
    case_id: uuid.UUID, who: CaseReader, engine: EngineDep, matcher: MatcherDep, reason: ReasonQuery
) -> ChildOut:
    """The child's record by case id (the id alert messages link to); audited like read_child."""
    with refusals_as_http(), session_scope(engine) as session:
        child_id = case_reads.child_of_case(session, who, case_id)
        return case_reads.read_child(session, who, child_id, reason, matcher)


@router.get("/reports/history")
def case_history(who: CaseReader, engine: EngineDep, reason: ReasonQuery) -> list[HistoryOut]:
    """Every case of the LA with its states over event time (replayed from the timeline) and the
    provision/exclusion codes its facts carried: reports compute "as of a date" from this."""
    with session_scope(engine) as session:
        return reports.case_histories(session, who, reason)


def _reportable(day: date) -> date:
    """A report's day within what any case can hold: 0001-01-01 less twelve months overflowed into a 500."""
    if not REPORT_FIRST_DAY <= day <= REPORT_LAST_DAY:
        raise ValueError(f"a day from {REPORT_FIRST_DAY} to {REPORT_LAST_DAY}")
    return day


Day = Annotated[
    date,
    AfterValidator(_reportable),
    Query(
        description=f"A day (YYYY-MM-DD, {REPORT_FIRST_DAY} to {REPORT_LAST_DAY}): counts as at its end,"
        " in event time"
    ),
]


@router.get("/reports/counts")
def report_counts(
    who: CaseReader,
    engine: EngineDep,
    reason: ReasonQuery,
    on: Day,
    months: Annotated[int, Query(ge=1, le=36)] = 12,
) -> ReportCounts:
    """The reports page's figures on a day, counted from the cases' spells: by state and reason, the days
    the missing went missing, vulnerable groups, and the month-end trend. Names no child."""
    with session_scope(engine) as session:
        return reports.report_counts(session, who, on, months, reason)


@router.get("/reports/return")
def return_counts(
    who: CaseReader, engine: EngineDep, reason: ReasonQuery, on: Day, ehe_from: Day, ehe_to: Day
) -> ReturnCounts:
    """The DfE termly return's counts on census day ``on`` (home education at any time from ``ehe_from`` to
    ``ehe_to``). Names no child."""
    with session_scope(engine) as session:
        return reports.return_counts(session, who, on, ehe_from, ehe_to, reason)


@router.get("/reports/not-in-full-time-education", response_model=NotInFTEPage)
def not_in_full_time_education(
    who: CaseReader,
    engine: EngineDep,
    reason: ReasonQuery,
    on: Day,
    after: Annotated[uuid.UUID | None, Query(description="The last child id of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 5000,
) -> Response:
    """A page of the children missing education or possibly in part-time provision on a day, with what the
    Ofsted list needs of each. Serialised once here (the page is built of validated models: FastAPI's own
    check of thousands of nested rows again cost as much as reading them)."""
    with session_scope(engine) as session:
        page = reports.not_in_fte(session, who, on, str(after) if after else None, limit, reason)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/cases")
def cases_by_state(
    who: CaseReader, engine: EngineDep, state: CaseState, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[CaseOut]:
    with session_scope(engine) as session:
        return case_reads.cases_in_state(session, who, state, limit)


@router.post("/cases/query")
def query_cases(body: CaseQuery, who: CaseReader, engine: EngineDep) -> CasePage:
    """A page of the LA's cases with the child's name, latest school and state spells: the web's work
    queues (filters by ids, which the web keeps for ownership, and by the case's own fields). Audited."""
    with session_scope(engine) as session:
        return case_reads.query_cases(session, who, body)


@router.post("/children/search")
def search(body: SearchIn, who: CaseReader, engine: EngineDep) -> list[CaseOut]:
    """By UPN, or by surname and date of birth; personal data only in the body, never in the URL."""
    with refusals_as_http(), session_scope(engine) as session:
        return case_reads.search_children(session, who, body)


@router.get("/review-items")
def review_items(
    who: CaseReader, engine: EngineDep, status_: Annotated[str, Query(alias="status")] = "open"
) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        return review.review_items(session, who, status_)


@router.post("/review-items/{review_id}/decision")
def decide(
    review_id: uuid.UUID,
    body: Decision,
    who: CaseReader,
    engine: EngineDep,
    matcher: MatcherDep,
    publish: PublishDep,
) -> dict[str, Any]:
    """A person's decision on a possible duplicate (link publishes ChildMerged; not_link closes the item) or
    on a cross-LA match (confirm, reject)."""
    with refusals_as_http(), session_scope(engine) as session:
        return review.decide(session, who, review_id, body.decision, body.reason, matcher, publish)


@router.post("/review-items/{review_id}/undo")
def undo_link(
    review_id: uuid.UUID, body: Undo, who: CaseReader, engine: EngineDep, publish: PublishDep
) -> dict[str, Any]:
    """Undo a person's link of two children: publishes ChildSplit, which gives the merged child back its
    facts and re-folds both cases."""
    with refusals_as_http(), session_scope(engine) as session:
        return review.undo_link(session, who, review_id, body.reason, publish)


@router.get("/cross-la/status")
def cross_la_status(who: CaseReader, matcher: MatcherDep) -> dict[str, Any]:
    """Whether cross-LA matching is on for the caller's LA (CME_TRACKING_CROSS_LA_OFF): what the review
    page tells its caseworkers. Names no child."""
    return {"la_code": who.la_code, "matching_enabled": matcher.enabled(who.la_code)}


@router.get("/reports/cross-la")
def cross_la_report(
    who: CaseReader, engine: EngineDep, matcher: MatcherDep, reason: ReasonQuery
) -> CrossLAReport:
    """Counts of this LA's children found in other LAs and of other LAs' children found here, and the
    days from missing to found (event time) of those confirmed. No child is named. Audited."""
    with session_scope(engine) as session:
        return reports.cross_la_report(session, who, reason, matcher.enabled(who.la_code))
