"""The LA's reports from the case store, named no child beyond what the report needs: the counts "as of a
date" from the cases' spells in SQL (``tracking_spells``: the reports page and the DfE return), the children
not in full-time education on a date (the columns that list needs, a page at a time), every case's whole
history over event time (the replay the counts are tested against) and the cross-LA counts. All are audited
in the caller's transaction.

"As of" a day is event time: a spell is in force at the end of the day (UTC) if it started before midnight
and the next one did not, so a report for a past day shows what the facts said then, late ones included."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    and_,
    func,
    literal,
    or_,
    union_all,
)
from sqlalchemy import case as when
from sqlalchemy import select as sa_select  # more columns than sqlmodel's select is typed for
from sqlmodel import Session, col, select
from sqlmodel.sql.sqltypes import UTCDateTime

from services.tracking.audit import audit_read
from services.tracking.bulk import among
from services.tracking.case_reads import vulnerability_flags
from services.tracking.history import spells
from services.tracking.models import (
    TrackingCase,
    TrackingChild,
    TrackingCrossLALink,
    TrackingIdentifier,
    TrackingSpell,
    TrackingTimelineEntry,
)
from services.tracking.schemas import (
    CrossLACounts,
    CrossLAReport,
    DetailOut,
    HistoryOut,
    MonthCount,
    NotInFTEPage,
    ReportCounts,
    ReturnCounts,
    ReturnGroup,
    SinceCount,
    SpellOut,
    StateCount,
)
from shared.auth import Principal
from shared.events.internal import CME_STATES
from shared.school_calendar import month_ends


def case_histories(session: Session, who: Principal, reason: str) -> list[HistoryOut]:
    """Every case of the LA with its states over event time (replayed from the timeline) and the
    provision/exclusion codes its facts carried. Audited as ``report_history``."""
    cases = session.exec(
        select(TrackingCase).where(
            TrackingCase.la_code == who.la_code, col(TrackingCase.merged_into).is_(None)
        )
    ).all()
    children = {
        c.child_id: c
        for c in session.exec(select(TrackingChild).where(TrackingChild.la_code == who.la_code)).all()
    }
    upns: dict[str, str] = {}
    for child_id, value in session.exec(
        select(TrackingIdentifier.child_id, TrackingIdentifier.value).where(
            TrackingIdentifier.la_code == who.la_code, TrackingIdentifier.kind == "upn"
        )
    ).all():
        upns.setdefault(child_id, value)
    rows: dict[str, list[TrackingTimelineEntry]] = {}
    for row in session.exec(
        select(TrackingTimelineEntry).where(TrackingTimelineEntry.la_code == who.la_code)
    ).all():
        rows.setdefault(row.child_id, []).append(row)
    out: list[HistoryOut] = []
    for case in cases:
        child = children.get(case.child_id)
        flags = vulnerability_flags(case)
        timeline = rows.get(case.child_id, [])
        out.append(
            HistoryOut(
                child_id=case.child_id,
                case_id=case.case_id,
                upn=upns.get(case.child_id),
                date_of_birth=child.date_of_birth if child else None,
                sex=child.sex if child else None,
                vulnerabilities=[str(f) for f in flags],
                state=case.state,
                spells=[SpellOut(**vars(s)) for s in spells(timeline, flags)],
                details=[
                    DetailOut(occurred_at=r.occurred_at, event_kind=r.event_kind, codes=codes)
                    for r in sorted(timeline, key=lambda r: (r.occurred_at, r.event_id))
                    if (codes := r.codes or {}) or (r.event_kind or "").endswith("permanently-excluded")
                ],
            )
        )
    audit_read(session, who, "report_history", None, reason)
    return out


EHE = "electively_home_educated"
PART_TIME = "part_time_provision"
IN_EDUCATION = "in_education"
S = TrackingSpell
TIMELINE = TrackingTimelineEntry.__table__  # type: ignore[attr-defined]  # its JSON column, for a key test


def end_of(on: date) -> datetime:
    """Midnight (UTC) after ``on``: what happened before it had happened "on" that day."""
    return datetime.combine(on + timedelta(days=1), time(0), tzinfo=UTC)


def _in_force(starts: Any, ends: Any, cutoff: Any) -> ColumnElement[bool]:
    """The spell that started before ``cutoff`` and was not followed by another before it."""
    return and_(starts < cutoff, or_(ends.is_(None), ends >= cutoff))


def _la_cases(la_code: str) -> tuple[ColumnElement[bool], ...]:
    """The LA's cases as the reports count them: one table, no join for the planner to get wrong (a child
    merged into another has no spells: it is counted once, there)."""
    return (col(S.la_code) == la_code,)


def _on(la_code: str, on: date) -> tuple[ColumnElement[bool], ...]:
    return (*_la_cases(la_code), _in_force(col(S.starts_at), col(S.ends_at), end_of(on)))


def report_counts(session: Session, who: Principal, on: date, months: int, reason: str) -> ReportCounts:
    """The reports page's figures on ``on`` (snapshot and trend), counted in SQL. Audited as
    ``report_counts``."""
    la = who.la_code
    cme = col(S.state).in_(CME_STATES)
    by_state = [
        StateCount(state=state, reason=why, count=n)
        for state, why, n in session.exec(
            select(col(S.state), col(S.reason), func.count())
            .where(*_on(la, on))
            .group_by(col(S.state), col(S.reason))
        ).all()
    ]
    since = [
        SinceCount(since=day, count=n)
        for day, n in session.exec(
            select(col(S.cme_since), func.count()).where(*_on(la, on), cme).group_by(col(S.cme_since))
        ).all()
    ]
    flags: Counter[str] = Counter()
    for vulnerabilities, n in session.exec(
        select(col(S.vulnerabilities), func.count()).where(*_on(la, on), cme).group_by(col(S.vulnerabilities))
    ).all():
        for flag in {v for v in vulnerabilities.split(",") if v}:
            flags[flag] += n
    audit_read(session, who, "report_counts", None, reason)
    return ReportCounts(
        on=on,
        by_state=by_state,
        cme_since=since,
        cme_by_vulnerability=dict(sorted(flags.items())),
        months=_months(session, la, month_ends(on, months)),
    )


def _months(session: Session, la_code: str, ends: Sequence[date]) -> list[MonthCount]:
    """Missing education, whereabouts unknown and newly missing at each month end: one query over the spells,
    joined to the month ends."""
    m = union_all(
        *(
            select(
                literal(end, Date).label("on"),
                literal(end_of(end), UTCDateTime()).label("cutoff"),
                literal(end.replace(day=1), Date).label("first"),
            )
            for end in ends
        )
    ).cte("month_ends")
    rows = session.exec(
        select(
            m.c.on,
            func.count(),
            func.sum(when((col(S.state) == "whereabouts_unknown", 1), else_=0)),
            func.sum(when((col(S.cme_since) >= m.c.first, 1), else_=0)),
        )
        .select_from(S)
        .join(m, _in_force(col(S.starts_at), col(S.ends_at), m.c.cutoff))
        .where(*_la_cases(la_code), col(S.state).in_(CME_STATES))
        .group_by(m.c.on)
    ).all()
    found = {_day(on): (int(n), int(unknown or 0), int(new or 0)) for on, n, unknown, new in rows}
    return [
        MonthCount(on=end, cme=c, whereabouts_unknown=u, new_cme=n)
        for end in ends
        for c, u, n in [found.get(end, (0, 0, 0))]
    ]


def _day(value: date | str) -> date:
    """A date selected from a literal (SQLite returns the text it was bound as)."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def _children(la_code: str) -> Any:
    """The LA's child row of a spell's case, where there is one (a rebuilt store has none: no sex or date of
    birth then)."""
    return and_(col(TrackingChild.child_id) == col(S.child_id), col(TrackingChild.la_code) == la_code)


def return_counts(
    session: Session, who: Principal, on: date, ehe_from: date, ehe_to: date, reason: str
) -> ReturnCounts:
    """The DfE termly return's counts on census day ``on``. Audited as ``report_return``."""
    la = who.la_code
    cutoff = end_of(on)
    child = TrackingChild
    cme = [
        ReturnGroup(sex=sex, date_of_birth=dob, reason=why, since=day, count=n)
        for sex, dob, why, day, n in session.execute(
            sa_select(col(child.sex), col(child.date_of_birth), col(S.reason), col(S.cme_since), func.count())
            .select_from(S)
            .outerjoin(child, _children(la))
            .where(*_on(la, on), col(S.state).in_(CME_STATES))
            .group_by(col(child.sex), col(child.date_of_birth), col(S.reason), col(S.cme_since))
        ).all()
    ]
    previous = _ever(session, la, CME_STATES, cutoff - timedelta(days=366), cutoff)
    ehe_children = session.exec(
        select(col(S.child_id), col(child.sex), col(child.date_of_birth))
        .select_from(S)
        .outerjoin(child, _children(la))
        .where(*_on(la, on), col(S.state) == EHE)
    ).all()
    stated = _latest_ehe_reasons(session, [c for c, _, _ in ehe_children], la, cutoff)
    ehe_groups: Counter[tuple[str | None, date | None, str | None]] = Counter(
        (sex, dob, stated.get(c)) for c, sex, dob in ehe_children
    )
    audit_read(session, who, "report_return", None, reason)
    return ReturnCounts(
        on=on,
        cme=cme,
        cme_in_previous_year=previous,
        ehe=[
            ReturnGroup(sex=sex, date_of_birth=dob, reason=why, since=None, count=n)
            for (sex, dob, why), n in ehe_groups.items()
        ],
        ehe_in_window=_ever(session, la, (EHE,), end_of(ehe_from - timedelta(days=1)), end_of(ehe_to)),
    )


def _ever(session: Session, la_code: str, states: Sequence[str], after: datetime, before: datetime) -> int:
    """Cases in one of ``states`` at any moment after ``after`` and before ``before``."""
    return int(
        session.exec(
            select(func.count(func.distinct(S.child_id))).where(
                *_la_cases(la_code),
                col(S.state).in_(states),
                col(S.starts_at) < before,
                or_(col(S.ends_at).is_(None), col(S.ends_at) > after),
            )
        ).one()
    )


def _details(
    session: Session,
    page: Callable[[Any], ColumnElement[bool]],
    wanted: set[str],
    la_code: str,
    cutoff: datetime,
) -> dict[str, list[Any]]:
    """Each child's timeline rows before ``cutoff`` that the list reads (a provision start or an exclusion
    with its codes, or a permanent exclusion), in event order: (child_id, occurred_at, event_id, event_kind,
    codes)."""
    t = TrackingTimelineEntry
    codes: Any = TIMELINE.c.codes
    out: dict[str, list[Any]] = {}
    for *row, la in session.execute(
        sa_select(
            col(t.child_id),
            col(t.occurred_at),
            col(t.event_id),
            col(t.event_kind),
            col(t.codes),
            col(t.la_code),
        ).where(
            page(col(t.child_id)),
            col(t.occurred_at) < cutoff,
            or_(
                and_(
                    codes.is_not(None),
                    or_(
                        col(t.event_kind).like("provision-started%"),
                        codes["exclusion_type"].as_string().is_not(None),
                    ),
                ),
                col(t.event_kind).like("%permanently-excluded"),
            ),
        )
    ).all():
        if la == la_code and row[0] in wanted and (row[4] or (row[3] or "").endswith("permanently-excluded")):
            out.setdefault(row[0], []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: (r[1], r[2]))
    return out


def _latest_ehe_reasons(
    session: Session, child_ids: Sequence[str], la_code: str, cutoff: datetime
) -> dict[str, str]:
    """The parent's reason for home education as each child's latest fact before ``cutoff`` stated it."""
    out: dict[str, str] = {}
    if not child_ids:
        return out
    t = TrackingTimelineEntry
    theirs = among(session, child_ids)
    rows = session.execute(
        sa_select(col(t.child_id), col(t.occurred_at), col(t.event_id), col(t.codes), col(t.la_code)).where(
            theirs(col(t.child_id)), col(t.occurred_at) < cutoff, col(t.codes).is_not(None)
        )
    ).all()
    for child_id, _, _, codes, la in sorted(rows, key=lambda r: (r[1], r[2])):
        if la == la_code and (stated := (codes or {}).get("ehe_reason")):
            out[child_id] = stated
    return out


def not_in_fte(
    session: Session, who: Principal, on: date, after: str | None, limit: int, reason: str
) -> NotInFTEPage:
    """A page (by child id) of the children who on ``on`` are missing education, in part-time provision, or
    in education with a provision start recorded by then (which may be part time): the columns the Ofsted
    list needs. Audited as ``report_not_in_fte`` (each page)."""
    la, cutoff = who.la_code, end_of(on)
    t = TrackingTimelineEntry
    # Uncorrelated, so the planner hashes it once (a correlated EXISTS took seconds on a store without
    # statistics).
    provision = select(col(t.child_id)).where(
        col(t.la_code) == la, col(t.occurred_at) < cutoff, col(t.event_kind).like("provision-started%")
    )
    query = (
        select(col(S.child_id), col(S.starts_at), col(S.state), col(S.reason))
        .where(
            *_on(la, on),
            or_(
                col(S.state).in_((*CME_STATES, PART_TIME)),
                and_(col(S.state) == IN_EDUCATION, col(S.child_id).in_(provision)),
            ),
        )
        .order_by(col(S.child_id))
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(col(S.child_id) > after)
    found = session.exec(query).all()
    page, more = found[:limit], len(found) > limit
    ids = [r[0] for r in page]
    # Only the child id in the statements that read the page's children (the LA is checked here): on a store
    # without planner statistics, an LA condition made PostgreSQL intersect the LA's whole index once per
    # child (4 s for 4,600 children).
    wanted, page_ids = set(ids), among(session, ids)
    upns: dict[str, str] = {}
    born: dict[str, date | None] = {}
    if ids:
        i = TrackingIdentifier
        for child_id, value, its_la, kind in session.exec(
            select(col(i.child_id), col(i.value), col(i.la_code), col(i.kind))
            .where(page_ids(col(i.child_id)))
            .order_by(col(i.id))
        ).all():
            if child_id in wanted and its_la == la and kind == "upn":
                upns.setdefault(child_id, value)
        for child_id, dob, its_la in session.exec(
            select(
                col(TrackingChild.child_id), col(TrackingChild.date_of_birth), col(TrackingChild.la_code)
            ).where(page_ids(col(TrackingChild.child_id)))
        ).all():
            if child_id in wanted and its_la == la:
                born[child_id] = dob
    details = _details(session, page_ids, wanted, la, cutoff)
    audit_read(session, who, "report_not_in_fte", None, reason)
    return NotInFTEPage(
        rows=[
            (
                child_id,
                upns.get(child_id),
                born.get(child_id),
                start,
                state,
                why,
                [
                    (occurred_at, kind, codes or {})
                    for _, occurred_at, _, kind, codes in details.get(child_id, [])
                ],
            )
            for child_id, start, state, why in page
        ],
        next_after=ids[-1] if more else None,
    )


def _median(days: list[int]) -> float | None:
    if not days:
        return None
    ordered = sorted(days)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def cross_la_report(session: Session, who: Principal, reason: str, matching_enabled: bool) -> CrossLAReport:
    """Counts of this LA's children found in other LAs and of other LAs' children found here, and the days
    from missing to found (event time) of those confirmed. No child is named. Audited as
    ``report_cross_la``."""
    links = session.exec(
        select(TrackingCrossLALink).where(
            (col(TrackingCrossLALink.sought_la_code) == who.la_code)
            | (col(TrackingCrossLALink.found_la_code) == who.la_code)
        )
    ).all()
    found, sought_by = CrossLACounts(), CrossLACounts()
    days: list[int] = []
    for link in links:
        counts = found if link.sought_la_code == who.la_code else sought_by
        setattr(counts, link.status, getattr(counts, link.status) + 1)
        if counts is found and link.status == "confirmed" and link.missing_since is not None:
            days.append((link.fact_occurred_at - link.missing_since).days)
    audit_read(session, who, "report_cross_la", None, reason)
    days.sort()
    return CrossLAReport(
        la_code=who.la_code,
        matching_enabled=matching_enabled,
        found_elsewhere=found,
        sought_by_others=sought_by,
        days_missing_to_found=days,
        median_days_missing_to_found=_median(days),
    )
