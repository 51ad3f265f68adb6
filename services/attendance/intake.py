"""Marks as schools send them in bulk (flat JSON objects or CSV rows) turned into validated events.

A row has ``upn, school_urn, la_code, date, session, code`` and optionally ``recorded_at`` (when the mark was
recorded or last changed in the MIS; default: now) and ``version`` (the MIS's edit counter). A JSON item with
an ``event_type`` is taken as a complete attendance-mark envelope instead. Errors name the row (1-based, as a
person counts the lines of data) and the field, never the values (they may be personal data).
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from shared.events.attendance import AttendanceMark

SOURCE_SYSTEM = "attendance-upload"
ROW_FIELDS = ("upn", "school_urn", "la_code", "date", "session", "code", "recorded_at", "version")
# Namespace of the ids given to flat rows: the same row uploaded twice is the same event.
ROW_NAMESPACE = uuid.UUID("0c9e8d1e-58a4-4c1b-8d8b-3a0b7f6a2e21")


class RowError(dict[str, Any]):
    """{"row": n, "field": "payload.code", "error": "..."}."""


def mark_from_row(
    row: dict[str, Any], system: str = SOURCE_SYSTEM, now: datetime | None = None
) -> AttendanceMark:
    if "event_type" in row:
        return AttendanceMark.model_validate(row)
    unknown = set(row) - set(ROW_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    recorded = row.get("recorded_at") or (now or datetime.now(UTC)).isoformat()
    version = row.get("version") or 0
    name = "|".join(str(row.get(f, "")) for f in ROW_FIELDS[:6]) + f"|{recorded}|{version}"
    return AttendanceMark.model_validate(
        {
            "event_id": str(uuid.uuid5(ROW_NAMESPACE, name)),
            "occurred_at": recorded,
            "source": {"system": system, "la_code": row.get("la_code"), "school_urn": row.get("school_urn")},
            "payload": {
                "upn": row.get("upn"),
                "school_urn": row.get("school_urn"),
                "date": row.get("date"),
                "session": row.get("session"),
                "code": row.get("code"),
                "version": version,
            },
        }
    )


def _errors(row_number: int, exc: Exception) -> list[RowError]:
    if isinstance(exc, ValidationError):
        return [
            RowError(row=row_number, field=".".join(str(p) for p in e["loc"]) or "<row>", error=e["msg"])
            for e in exc.errors(include_input=False, include_url=False)
        ]
    return [RowError(row=row_number, field="<row>", error=str(exc))]


def parse_rows(rows: list[Any], la_code: str | None = None) -> tuple[list[AttendanceMark], list[RowError]]:
    """Validate every row; with ``la_code`` each mark must belong to that LA (the caller's)."""
    marks: list[AttendanceMark] = []
    errors: list[RowError] = []
    now = datetime.now(UTC)
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            errors.append(RowError(row=n, field="<row>", error="expected an object"))
            continue
        try:
            mark = mark_from_row(row, now=now)
        except (ValidationError, ValueError) as exc:
            errors.extend(_errors(n, exc))
            continue
        if la_code is not None and mark.source.la_code != la_code:
            errors.append(RowError(row=n, field="la_code", error="not the LA your token acts for"))
            continue
        marks.append(mark)
    return marks, errors


def rows_from_json(body: bytes) -> list[Any]:
    data = orjson.loads(body)
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of marks")
    return data


def rows_from_csv(body: bytes) -> list[Any]:
    reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
    missing = set(ROW_FIELDS[:6]) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"CSV header lacks columns {sorted(missing)}")
    return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
