"""Insert many rows of one table in one statement, without building ORM objects.

On PostgreSQL the rows go as one array per column (``INSERT ... SELECT * FROM unnest(...)``): the statement is
short and the same whatever the number of rows, so the driver parses it once, and it is one round trip.
Elsewhere (SQLite) a Core insert (an upsert with SQLite's ON CONFLICT). The models' Python-side defaults are
not applied: the rows carry every column but a generated id."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, ColumnElement, String, Table, any_, bindparam, func, insert, text
from sqlmodel import Session, SQLModel


def _arrays(table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """One array per column; a JSON column's values as JSON text (cast to ``json[]`` in the statement)."""
    out: dict[str, list[Any]] = {}
    for c in columns:
        values = [row[c] for row in rows]
        if isinstance(table.c[c].type, JSON):
            values = [None if v is None else json.dumps(v) for v in values]
        out[c] = values
    return out


def insert_rows(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys: every column but the generated id; the model's Python-side
    defaults are not applied) into the model's table, within the session's transaction."""
    if not rows:
        return
    table = SQLModel.metadata.tables[str(model.__tablename__)]
    columns = list(rows[0])
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        session.execute(insert(table), list(rows))
        return
    arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
    session.execute(
        # Names from our own table metadata, values as parameters.
        text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"),  # noqa: S608
        _arrays(table, columns, rows),
    )


def upsert_rows(
    session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]], key: str, update: Sequence[str]
) -> None:
    """Insert ``rows``, or where a row with the same ``key`` exists set its ``update`` columns from the row:
    one statement. The rows must have distinct keys (a statement may not touch a row twice)."""
    if not rows:
        return
    table = SQLModel.metadata.tables[str(model.__tablename__)]
    columns = list(rows[0])
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in update)
        session.execute(
            text(  # names from our own table metadata, values as parameters
                f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "  # noqa: S608
                f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
            ),
            _arrays(table, columns, rows),
        )
        return
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    stmt = sqlite_insert(table).values(list(rows))
    session.execute(
        stmt.on_conflict_do_update(index_elements=[key], set_={c: stmt.excluded[c] for c in update})
    )


def among(session: Session, ids: Sequence[str]) -> Callable[[Any], ColumnElement[bool]]:
    """``column`` is one of ``ids`` (ids without commas: UUIDs). On PostgreSQL one text parameter the server
    splits: a short statement, compiled and planned once however many ids (an IN list of thousands compiles a
    bind each; a driver array escapes each item). Elsewhere an IN list (SQLite: tests)."""
    if session.get_bind().dialect.name == "postgresql":
        split = func.string_to_array(bindparam("ids", ",".join(ids), type_=String()), ",")
        return lambda column: column == any_(split)
    return lambda column: column.in_(ids)
