"""Where each fact a benchmark sent stands along the pipeline, read from the services' tables: what a
timed-out wait prints, so a fact that never reached its alert says at which service it stopped.

Per fact: accepted by referral (and relayed), resolved by tracking, on the child's timeline (its verdict),
the child's case state, escalation's deadlines and escalations for the child, and notify's alerts and
deliveries for the case. Then escalation's watermarks (the horizon a pending deadline waits for). Only ids,
states and times: no personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.case_ids import case_id_for
from shared.db import make_engine

UNREADABLE = "unreadable"


def _rows(conn: Connection, sql: str, **params: Any) -> list[tuple[str, ...]]:
    """The rows as text; a table a part did not create gives one row saying so (and the report goes on)."""
    try:
        return [tuple(map(str, row)) for row in conn.execute(text(sql), params)]
    except Exception as exc:
        conn.rollback()
        return [(f"{UNREADABLE}: {type(exc).__name__}",)]


def _line(conn: Connection, label: str, sql: str, **params: Any) -> str:
    return f"  {label}: {_rows(conn, sql, **params)}"


def _fact_lines(conn: Connection, event_id: str, la_code: str) -> list[str]:
    lines = [
        f"fact {event_id}:",
        _line(
            conn,
            "referral (type, in the outbox, published)",
            "SELECT s.event_type, o.id IS NOT NULL, o.published_at IS NOT NULL FROM referral_submissions s"
            " LEFT JOIN referral_outbox o ON o.event_id = s.event_id WHERE s.event_id = :e",
            e=event_id,
        ),
    ]
    resolved = _rows(conn, "SELECT child_id, match FROM tracking_resolutions WHERE event_id = :e", e=event_id)
    if not resolved or resolved[0][0].startswith(UNREADABLE):
        return [*lines, f"  tracking: not resolved {resolved}"]
    child_id, match = resolved[0]
    case_id = case_id_for(child_id, la_code)
    return [
        *lines,
        f"  tracking: resolved to child {child_id} ({match}), case {case_id}",
        _line(
            conn,
            "timeline",
            "SELECT event_type, verdict, from_state, to_state, occurred_at FROM tracking_timeline"
            " WHERE child_id = :c ORDER BY id",
            c=child_id,
        ),
        _line(
            conn, "case", "SELECT state, open_deadlines FROM tracking_cases WHERE child_id = :c", c=child_id
        ),
        _line(
            conn,
            "escalation deadlines",
            "SELECT rule_id, step_index, status, due_at, clock_started_at, partition, ended_at, end_reason,"
            " cancel_reason, fired_at, provisional FROM escalation_deadlines WHERE child_id = :c"
            " ORDER BY due_at",
            c=child_id,
        ),
        _line(
            conn,
            "escalations",
            "SELECT rule_id, status, step_index, case_state, close_reason FROM escalation_escalations"
            " WHERE child_id = :c",
            c=child_id,
        ),
        _line(
            conn,
            "notify",
            "SELECT a.level, a.state, d.recipient, d.state, d.attempts, d.last_error FROM notify_alert a"
            " LEFT JOIN notify_delivery d ON d.alert_id = a.alert_id WHERE a.case_id = :k",
            k=case_id,
        ),
    ]


def report(database_url: str, event_ids: Iterable[str], la_code: str, limit: int = 10) -> str:
    """What the tables say of (at most ``limit`` of) ``event_ids``, and escalation's watermarks."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            lines: list[str] = []
            for event_id in list(event_ids)[:limit]:
                lines += _fact_lines(conn, event_id, la_code)
            marks = _rows(
                conn,
                "SELECT topic, partition, watermark, next_offset FROM escalation_watermarks"
                " ORDER BY topic, partition",
            )
            lines.append("escalation watermarks (topic, partition, watermark, next offset):")
            lines += [f"  {mark}" for mark in marks]
    finally:
        engine.dispose()
    return "\n".join(lines)
