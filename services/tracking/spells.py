"""A case's spells kept as rows (``tracking_spells``): the replay of history.py done when the child's case is
projected, once per fact, instead of once per case in every report.

Spells are derived from the child's timeline and the case's current vulnerability flags only, so they are
rewritten whole for every child a projection touches (a new fact, a late fact's re-fold, a merge or split, a
rebuild): the same facts give the same rows however and whenever they arrived. The reports count "as of a
date" from these rows in SQL (reports.py), one table alone: so a child merged into another has no rows (it is
counted once, in the surviving child), and each row carries the case's flags."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, select
from sqlmodel import Session, col

from services.tracking.bulk import among, insert_rows
from services.tracking.history import spells
from services.tracking.models import TrackingCase, TrackingDerived, TrackingSpell, TrackingTimelineEntry
from shared.db import make_engine
from shared.events.internal import CME_STATES
from shared.events.vocab import Vulnerability
from shared.logs import get_logger

CHUNK = 1000  # children per query (SQLite's limit on bound parameters)
# Raise it when the replay (history.py) derives different rows from the same timeline: every store then
# rebuilds its spells once, at its next start (``ensure_current``).
SPELLS_VERSION = 1

log = get_logger(__name__)


class _Fact(NamedTuple):
    """The timeline columns the replay reads."""

    la_code: str
    occurred_at: datetime
    event_id: str
    event_kind: str | None
    verdict: str
    to_state: str | None
    codes: dict[str, str] | None


def flags_of(vulnerabilities: str) -> list[Vulnerability]:
    """The case row's comma-separated flags, as the reports read them (case_reads.vulnerability_flags)."""
    return [Vulnerability(v) for v in vulnerabilities.split(",") if v]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def spell_rows(
    child_id: str, la_code: str, timeline: Iterable[_Fact], vulnerabilities: str
) -> list[dict[str, Any]]:
    """The rows of one case: each spell with the next one's start as its end, and for a missing-education
    spell the day its unbroken run of missing-education spells began (what "missing since" reports)."""
    replay = spells(timeline, flags_of(vulnerabilities))
    rows: list[dict[str, Any]] = []
    run: datetime | None = None
    for i, spell in enumerate(replay):
        start = _utc(spell.start)
        run = (run or start) if spell.state in CME_STATES else None
        rows.append(
            {
                "child_id": child_id,
                "seq": i,
                "la_code": la_code,
                "starts_at": start,
                "ends_at": _utc(replay[i + 1].start) if i + 1 < len(replay) else None,
                "state": spell.state,
                "reason": spell.reason,
                "cme_since": run.date() if run else None,
                "vulnerabilities": vulnerabilities,
            }
        )
    return rows


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for at in range(0, len(ids), CHUNK):
        yield ids[at : at + CHUNK]


class CaseKey(NamedTuple):
    """What the spells take from the case row."""

    la_code: str
    vulnerabilities: str  # comma-separated, as on the row
    merged_into: str | None


def refresh(session: Session, cases: Mapping[str, CaseKey]) -> None:
    """Rewrite the spells of ``cases`` (by child_id) from their timelines as stored in the session's
    transaction; a case merged into another gets none."""
    ids = sorted(cases)
    facts: dict[str, list[_Fact]] = {}
    t = TrackingTimelineEntry
    for chunk in _chunks(ids):
        chunk_has = among(session, chunk)
        for row in session.execute(
            select(
                col(t.child_id),
                col(t.la_code),
                col(t.occurred_at),
                col(t.event_id),
                col(t.event_kind),
                col(t.verdict),
                col(t.to_state),
                col(t.codes),
            ).where(chunk_has(col(t.child_id)))
        ):
            facts.setdefault(row[0], []).append(_Fact(*row[1:]))
        session.execute(delete(TrackingSpell).where(chunk_has(col(TrackingSpell.child_id))))
    rows: list[dict[str, Any]] = []
    for child_id in ids:
        case = cases[child_id]
        if case.merged_into is not None:
            continue
        own = [f for f in facts.get(child_id, []) if f.la_code == case.la_code]  # as the reports read them
        rows += spell_rows(child_id, case.la_code, own, case.vulnerabilities)
    insert_rows(session, TrackingSpell, rows)


def refresh_all(session: Session) -> int:
    """Every case's spells from its timeline (a store whose spells are missing, or were derived by an older
    replay): returns the number of cases."""
    c = TrackingCase
    cases = {
        child_id: CaseKey(la_code, vulnerabilities, merged_into)
        for child_id, la_code, vulnerabilities, merged_into in session.execute(
            select(col(c.child_id), col(c.la_code), col(c.vulnerabilities), col(c.merged_into))
        )
    }
    ids = sorted(cases)
    for chunk in _chunks(ids):
        refresh(session, {c: cases[c] for c in chunk})
    return len(ids)


def ensure_current(database_url: str) -> int | None:
    """Rebuild every case's spells when the store's were derived by another replay version, or never (a store
    migrated from before the table): run after the migrations, under their lock. Returns the number of cases
    refreshed, None when the rows were already current."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            known = session.get(TrackingDerived, TrackingSpell.__tablename__)
            if known is not None and known.version == SPELLS_VERSION:
                return None
            cases = refresh_all(session)
            session.merge(
                TrackingDerived(
                    name=TrackingSpell.__tablename__, version=SPELLS_VERSION, refreshed_at=datetime.now(UTC)
                )
            )
            session.commit()
    finally:
        engine.dispose()
    log.info("derived_rows_refreshed", table=TrackingSpell.__tablename__, version=SPELLS_VERSION, cases=cases)
    return cases
