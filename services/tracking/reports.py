"""The LA's reports from the case store, named no child beyond what the report needs: every case's history
over event time (what the web's "as of a date" returns are computed from) and the cross-LA counts. Both are
audited in the caller's transaction."""

from __future__ import annotations

from sqlmodel import Session, col, select

from services.tracking.audit import audit_read
from services.tracking.case_reads import vulnerability_flags
from services.tracking.history import spells
from services.tracking.models import (
    TrackingCase,
    TrackingChild,
    TrackingCrossLALink,
    TrackingIdentifier,
    TrackingTimelineEntry,
)
from services.tracking.schemas import CrossLACounts, CrossLAReport, DetailOut, HistoryOut, SpellOut
from shared.auth import Principal


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
