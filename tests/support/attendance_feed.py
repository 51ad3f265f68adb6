"""A messy attendance feed for tests, and what one-record-at-a-time handling makes of it (the reference the
batched worker must match)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from devtools.samples import make_upn
from services.attendance.fold import Emitted, MarkHandler, Record
from services.attendance.rules import AttendanceRules
from services.attendance.state import AttendanceEngine
from shared.events.attendance import AttendanceMark
from shared.events.catalogue import encode_event
from shared.events.envelope import Source
from shared.school_calendar import CalendarRegistry

SCHOOLS = (("801", "108000"), ("801", "108001"), ("802", "109000"))
CODES = "NNNNOOGIIC/\\/\\XDU"
FIRST = date(2024, 9, 2)  # two INSET days, then autumn term; weekends and half term fall in the window


def handler() -> MarkHandler:
    return MarkHandler(AttendanceEngine(CalendarRegistry(), AttendanceRules()))


def mark_record(
    upn: str, la: str, urn: str, d: date, session: str, code: str, at: datetime, version: int = 0
) -> Record:
    mark = AttendanceMark(
        event_id=uuid.uuid4(),
        occurred_at=at,
        source=Source(system="test-mis", la_code=la, school_urn=urn),
        payload={
            "upn": upn,
            "school_urn": urn,
            "date": d,
            "session": session,
            "code": code,
            "version": version,
        },
    )
    return upn.encode(), encode_event(mark)


def feed(seed: int, pupils: int = 4, days: int = 45) -> list[Record]:
    """A messy feed: streaks of absence, marks a little out of order, corrections recorded later, exact
    redeliveries, older versions arriving late (some under another LA), weekend and holiday marks, and
    pupils with marks at a second school."""
    rng = random.Random(seed)
    planned: list[tuple[float, tuple[Any, ...]]] = []
    for n in range(pupils):
        upn = make_upn("801", 2000, 14, n + 1)
        code = "/"
        for i in range(days):
            if rng.random() < 0.1:
                code = rng.choice(CODES)  # codes come in streaks, as absences do
            d = FIRST + timedelta(days=i)
            la, urn = SCHOOLS[0] if rng.random() < 0.9 else rng.choice(SCHOOLS[1:])
            for session in ("AM", "PM"):
                at = datetime.combine(d, time(9 if session == "AM" else 13, 30), tzinfo=UTC)
                planned.append((i + rng.gauss(0, 2), (upn, la, urn, d, session, code, at)))
    planned.sort(key=lambda p: p[0])  # day by day across pupils, a little out of order
    sent: list[tuple[Record, tuple[Any, ...]]] = []
    out: list[Record] = []
    for _, fields in planned:
        record = mark_record(*fields)
        out.append(record)
        sent.append((record, fields))
        roll = rng.random()
        if roll < 0.05:
            out.append(rng.choice(sent)[0])  # redelivered as it was
        elif roll < 0.15:
            upn, la, urn, d, session, _code, at = rng.choice(sent)[1]
            later = rng.random() < 0.7  # a correction, or an older version arriving late
            at = at + timedelta(days=rng.randint(1, 20)) if later else at - timedelta(hours=1)
            if not later and rng.random() < 0.5:
                la = "802" if la == "801" else "801"  # a stale mark must leave the state exactly as it was
            fields = (upn, la, urn, d, session, rng.choice(CODES), at)
            record = mark_record(*fields)
            out.append(record)
            sent.append((record, fields))
    return out


def comparable(emitted: list[Emitted]) -> list[dict[str, Any]]:
    """Events as sent, without recorded_at (the wall clock at encoding)."""
    return [without_recorded_at(e.key, e.value) for e in emitted]


def without_recorded_at(key: bytes, value: bytes) -> dict[str, Any]:
    event = orjson.loads(value)
    del event["recorded_at"]
    return {"key": key, **event}


def one_by_one(records: list[Record]) -> tuple[list[Emitted], dict[bytes, bytes]]:
    h = handler()
    table: dict[bytes, bytes] = {}
    emitted: list[Emitted] = []
    for key, value in records:
        handled = h.handle(key, value, table.get(key))
        emitted += handled.emitted
        if handled.state is not None:
            table[key] = handled.state
    return emitted, table
