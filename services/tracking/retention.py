"""What ``cme purge`` deletes in tracking (``shared.retention``): tracking owns the cases, so it also says
which children are due (resolved and unchanged past the period, not on the register of children not in
school, with the children merged into them) and in which LA each is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from shared.events.internal import RESOLVED_STATES
from shared.retention import Ids, PurgeHook, Tables, as_stored


def children_due(conn: Connection, tables: Tables, cutoff: datetime) -> Ids:
    """The child ids (with children merged into them) and case ids whose retention has run out."""
    cases = tables.get("tracking_cases")
    if cases is None:
        return {"child": set(), "case": set()}
    rows = conn.execute(
        select(cases.c.child_id, cases.c.case_id).where(
            cases.c.state.in_([s.value for s in RESOLVED_STATES]),
            cases.c.updated_at < as_stored(cases.c.updated_at, cutoff),
            cases.c.merged_into.is_(None),
        )
    ).all()
    # A child still on the register of children not in school (s.436B) is kept whatever its case says: a
    # home-educated child's case is resolved, but the LA's duty to keep the entry lasts while it is on.
    register = tables.get("tracking_register_entries")
    kept: set[str] = set()
    if register is not None and rows:
        kept = set(
            conn.execute(
                select(register.c.child_id).where(
                    register.c.on_register.is_(True), register.c.child_id.in_({r.child_id for r in rows})
                )
            ).scalars()
        )
    child_ids = {r.child_id for r in rows if r.child_id not in kept}
    case_ids = {r.case_id for r in rows if r.child_id not in kept}
    children = tables.get("tracking_children")
    if children is not None and child_ids:
        merged = conn.execute(
            select(children.c.child_id).where(children.c.merged_into.in_(child_ids))
        ).scalars()
        child_ids |= set(merged)
        case_ids |= set(
            conn.execute(select(cases.c.case_id).where(cases.c.child_id.in_(child_ids))).scalars()
        )
    return {"child": child_ids, "case": case_ids}


def children_with_la(conn: Connection, tables: Tables, child_ids: set[str]) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for name in ("tracking_cases", "tracking_children"):
        table = tables.get(name)
        if table is not None:
            rows = conn.execute(
                select(table.c.child_id, table.c.la_code).where(table.c.child_id.in_(child_ids))
            )
            found.update({r.child_id: r.la_code for r in rows})
    return sorted(found.items())


CHILD = {"child_id": "child"}
PURGE = PurgeHook(
    service="tracking",
    deletes={
        "tracking_children": CHILD,
        "tracking_cases": {"child_id": "child", "case_id": "case"},
        "tracking_identifiers": CHILD,
        "tracking_resolutions": CHILD,
        "tracking_timeline": CHILD,
        "tracking_spells": CHILD,
        # Rows between two children (a merge's other child, a cross-LA link's sought or found child) go with
        # either of them.
        "tracking_review_items": {"child_id": "child", "other_child_id": "child"},
        "tracking_cross_la_links": {"sought_child_id": "child", "found_child_id": "child"},
        "tracking_read_audit": CHILD,
        "tracking_register_entries": CHILD,
        "tracking_register_history": CHILD,
        "tracking_peer_digests": CHILD,
        "tracking_peer_outbox": CHILD,
    },
    # Another child's resolution that once pointed at a purged child keeps its row, not the pointer.
    unlinks={"tracking_resolutions": {"matched_child_id": "child"}},
    last=frozenset({"tracking_children", "tracking_cases"}),
    due=children_due,
    located=children_with_la,
)
