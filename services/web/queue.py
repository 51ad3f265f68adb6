"""Which cases a work queue shows: my cases, my team's, the unassigned ones (what the allocation policy could
not allocate) or all, filtered by codes only (state, reason, vulnerability, a school's URN): never a child's
data. The list itself is tracking's (``/v1/cases/query``, LA-scoped); the web adds who owns what."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.engine import Engine

from services.web import casework
from shared.auth import Principal
from shared.events.vocab import Vulnerability

SCOPES = ("mine", "team", "unassigned", "all")


def case_ids_for(
    engine: Engine, who: Principal, scope: str, team: str | None, overdue: bool, today: date
) -> tuple[list[str] | None, list[str] | None]:
    """The case ids the queue is limited to (None: any) and those it leaves out (None: none). For
    "unassigned", run the allocation first: what is left is what the policy could not allocate."""
    la = who.la_code
    ids: list[str] | None = None
    exclude: list[str] | None = None
    if scope == "mine":
        ids = casework.owned_case_ids(engine, la, [who.sub])
    elif scope == "team":
        ids = casework.owned_case_ids(engine, la, casework.team_owners(engine, la, team)) if team else []
    elif scope == "unassigned":
        exclude = casework.owned_case_ids(engine, la)
    if overdue:
        late = set(casework.overdue_case_ids(engine, la, today))
        ids = sorted(late if ids is None else late & set(ids))
    return ids, exclude


def query_body(
    ids: list[str] | None, exclude: list[str] | None, *, state: str | None, reason: str | None,
    vulnerability: Vulnerability | None, school: str | None, closed: bool, sort: str, offset: int, limit: int,
) -> dict[str, Any]:  # fmt: skip
    """Tracking's case query for one page of the queue."""
    return {
        "reason": "work queue", "open_only": not closed, "sort": sort, "offset": offset, "limit": limit,
        "case_ids": ids, "exclude_case_ids": exclude, "states": [state] if state else None,
        "reason_code": reason, "vulnerability": vulnerability.value if vulnerability else None,
        "school_urn": school or None,
    }  # fmt: skip
