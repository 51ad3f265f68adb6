"""The directory as stored and read back for each alert (SQLite, notify's migrations): a process keeps its
copy of an LA's directory while the stored version matches, so an alert costs one read of it instead of
seven; a directory stored again (a new caseworker, an absence with cover) is what the very next alert reads,
in this process or another."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.notify.app import MIGRATIONS
from services.notify.directory import parse_directory, resolve_recipients
from services.notify.directory_store import load_directory, store_directory
from shared.db import make_engine, migrate, session_scope
from shared.events.internal import LadderLevel
from tests.support.statements import statements_sent

ON_A_MONDAY = datetime(2026, 11, 23, 9, tzinfo=UTC)


def directory(caseworker: str, away: bool = False) -> dict[str, Any]:
    jo: dict[str, Any] = {"id": "jo", "email": "jo@la.example"}
    if away:
        jo["absences"] = [{"from": "2026-11-20", "until": "2026-11-30", "cover": "ravi"}]
    people = [jo, {"id": "ravi", "email": "ravi@la.example"}, {"id": "sam", "email": "sam@la.example"}]
    return {"las": {"801": {"people": people, "roles": {"caseworker": [f"person:{caseworker}"]}}}}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    migrate(url, MIGRATIONS, "notify")
    eng = make_engine(url)
    yield eng
    eng.dispose()


def store(engine: Engine, doc: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        store_directory(session, parse_directory(doc))


def caseworkers(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        found = load_directory(session, "801")
    assert found is not None
    return [r.address for r in resolve_recipients(found, LadderLevel.CASEWORKER, ON_A_MONDAY)]


def statements(engine: Engine, read: Any) -> int:
    """The SELECTs ``read`` sends."""
    with statements_sent(engine) as sent:
        read()
    return len([s for s in sent if s.lstrip().upper().startswith("SELECT")])


def test_a_directory_stored_again_is_what_the_next_alert_reads(engine: Engine) -> None:
    store(engine, directory("jo"))
    assert caseworkers(engine) == ["jo@la.example"]
    assert caseworkers(engine) == ["jo@la.example"]  # the copy
    store(engine, directory("sam"))  # a new caseworker
    assert caseworkers(engine) == ["sam@la.example"]
    store(engine, directory("jo", away=True))  # back to jo, who is away: ravi covers
    assert caseworkers(engine) == ["ravi@la.example"]


def test_an_unchanged_directory_is_read_as_one_row(engine: Engine) -> None:
    store(engine, directory("jo"))
    first = statements(engine, lambda: caseworkers(engine))
    again = statements(engine, lambda: caseworkers(engine))
    assert (first, again) == (7, 1)


def test_a_directory_stored_before_versions_is_read_every_time(engine: Engine) -> None:
    """A row with no version (stored by an earlier release) is never taken for the copy."""
    store(engine, directory("jo"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE notify_la SET version = ''"))
    assert caseworkers(engine) == ["jo@la.example"]
    with engine.begin() as conn:  # changed behind the process's back, as only an old release would
        conn.execute(text("UPDATE notify_role_member SET member = 'person:sam'"))
    assert caseworkers(engine) == ["sam@la.example"]
    assert statements(engine, lambda: caseworkers(engine)) == 7


def test_an_la_without_a_directory_has_none(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert load_directory(session, "802") is None
