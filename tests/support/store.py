"""A running pipeline's case store, read in a test: rows of a query, the child and case an event made."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import text

from shared.db import make_engine


class HasDatabase(Protocol):
    database_url: str


def rows(pipeline: HasDatabase, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = make_engine(pipeline.database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def resolved(pipeline: HasDatabase, event_id: str) -> str | None:
    """The child tracking resolved an event to, once it has."""
    found = rows(pipeline, "SELECT child_id FROM tracking_resolutions WHERE event_id = :e", e=event_id)
    return found[0]["child_id"] if found else None


def case(pipeline: HasDatabase, child_id: str) -> dict[str, Any] | None:
    found = rows(pipeline, "SELECT * FROM tracking_cases WHERE child_id = :c", c=child_id)
    return found[0] if found else None
