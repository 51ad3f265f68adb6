"""Insert many rows of one table in one statement, without building ORM objects.

On PostgreSQL the rows go as one JSON document (``INSERT ... SELECT ... FROM json_populate_recordset(...)``):
the statement is short and the same whatever the number of rows, so the driver parses it once, and it is one
round trip. JSON rather than one array per column: orjson writes the rows in C, where psycopg escapes each
item of a text array in Python (2,000 timeline rows: 2-4 ms of the client's CPU instead of 25-27 ms, the
server's work about the same; docs/PERFORMANCE.md, "Rebuild from the log").
Elsewhere (SQLite) a Core insert (an upsert with SQLite's ON CONFLICT). The models' Python-side defaults are
not applied: the rows carry every column but a generated id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, String, Table, any_, bindparam, func, insert, text
from sqlmodel import Session, SQLModel


def _recordset(table: Table, columns: Sequence[str]) -> str:
    """The rows of the ``:rows`` JSON parameter as records of ``table``'s row type, ``columns`` of each; a key
    is read as its column's type (a timestamp's ISO text with its offset, a JSON column's value as JSON)."""
    names = ", ".join(columns)
    return f"SELECT {names} FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json))"  # noqa: S608


def _rows_json(rows: Sequence[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


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
    session.execute(
        # Names from our own table metadata, values as the parameter.
        text(f"INSERT INTO {table.name} ({', '.join(columns)}) {_recordset(table, columns)}"),
        {"rows": _rows_json(rows)},
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
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in update)
        session.execute(
            text(  # names from our own table metadata, values as the parameter
                f"INSERT INTO {table.name} ({', '.join(columns)}) {_recordset(table, columns)} "
                f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
            ),
            {"rows": _rows_json(rows)},
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
