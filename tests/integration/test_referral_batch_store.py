"""Intake's store, batched (one transaction, COPY on PostgreSQL) and one event at a time, gives the same
answer for every event: new, duplicate (the first answer replayed), conflicting (409), corrections, on SQLite
and on the real PostgreSQL; a race lost to another writer is settled event by event."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import MIGRATIONS
from services.referral.clients import create_client
from services.referral.models import ApiClient, ClientKind, ReferralOutbox, Submission
from services.referral.service import Intake, Item, Outcome, check
from shared.db import make_engine, migrate
from shared.events.envelope import Envelope

pytestmark = pytest.mark.integration

TO_HILLSIDE: dict[str, Any] = {
    "destination": {"known": True, "school_urn": "108001", "la_code": "801"},
    "deletion_ground": "a",
}


def _engine(url: str) -> Engine:
    migrate(url, MIGRATIONS, "referral")
    return make_engine(url)


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two empty referral databases of the same kind: one for the batch, one for one-by-one."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"]
    else:
        server = request.getfixturevalue("postgres_url")
        names = [f"t_batch_{uuid.uuid4().hex[:10]}" for _ in range(2)]
        admin = make_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        base = make_url(server.replace("postgresql://", "postgresql+psycopg://", 1))
        urls = [base.set(database=n).render_as_string(hide_password=False) for n in names]
    engines = [_engine(u) for u in urls]
    yield engines[0], engines[1]
    for e in engines:
        e.dispose()
    if request.param == "postgres":
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _clients(engine: Engine) -> tuple[ApiClient, ApiClient]:
    school, _ = create_client(
        engine, kind=ClientKind.SCHOOL, name="s", la_code=DEMO_LA, school_urn=DEMO_SCHOOL_URN
    )
    agency, _ = create_client(engine, kind=ClientKind.AGENCY, name="a", la_code=DEMO_LA)
    return school, agency


def _mix() -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """(seed, batch): who sends what. The seed is stored first; the batch then holds every kind of item."""
    stored = sample_event_dict("pupil-left-roll", child_serial=1)
    stored_leaver = sample_event_dict("pupil-left-roll", child_serial=2)
    other = copy.deepcopy(stored)
    other["payload"]["leaving_date"] = "2025-11-04"  # same event_id, other content
    new = [
        sample_event_dict(t, child_serial=10 + n)
        for n, t in enumerate(("pupil-registered", "exclusion-issued"))
    ]
    fresh_leaver = sample_event_dict("pupil-left-roll", child_serial=3)
    correction = sample_event_dict("pupil-left-roll", child_serial=3)
    correction["payload"].update(TO_HILLSIDE, corrects_event_id=fresh_leaver["event_id"])
    second_correction = sample_event_dict("pupil-left-roll", child_serial=3)
    second_correction["payload"].update(TO_HILLSIDE, corrects_event_id=fresh_leaver["event_id"])
    old_correction = sample_event_dict("pupil-left-roll", child_serial=2)
    old_correction["payload"].update(TO_HILLSIDE, corrects_event_id=stored_leaver["event_id"])
    in_batch_conflict = copy.deepcopy(new[0])
    in_batch_conflict["payload"]["entry_date"] = "2025-10-01"
    referral = sample_event_dict("referral-received", school_urn=None, child_serial=20)
    agency_reuses_id = sample_event_dict("referral-received", school_urn=None, child_serial=21)
    agency_reuses_id["event_id"] = stored["event_id"]
    seed = [("school", stored), ("school", stored_leaver)]
    batch = [
        ("school", new[0]),
        ("school", stored),  # duplicate of a stored event: its first answer
        ("school", other),  # 409: the id is taken by other content
        ("school", new[1]),
        ("school", new[0]),  # duplicate inside the batch
        ("school", in_batch_conflict),  # 409 inside the batch
        ("agency", agency_reuses_id),  # another client's event id: 409
        ("school", fresh_leaver),
        ("school", correction),  # corrects a leaver of this same batch
        ("school", second_correction),  # 409: already corrected
        ("school", old_correction),  # corrects a stored leaver
        ("agency", referral),
    ]
    return seed, batch


def _checked(clients: dict[str, ApiClient], sends: list[tuple[str, dict[str, Any]]]) -> list[Item]:
    items = []
    for who, data in sends:
        event = check(clients[who], copy.deepcopy(data))
        assert isinstance(event, Envelope), event
        items.append(Item.of(clients[who], event))
    return items


def _answer(o: Outcome) -> tuple[Any, ...]:
    return (o.outcome, o.status_code, orjson.dumps(o.body, option=orjson.OPT_SORT_KEYS))


def _rows(engine: Engine) -> tuple[list[tuple[Any, ...]], list[str]]:
    with Session(engine) as session:
        subs = session.exec(select(Submission).order_by(col(Submission.event_id))).all()
        outbox = session.exec(select(ReferralOutbox).order_by(col(ReferralOutbox.event_id))).all()
        return (
            [
                (s.event_id, s.event_type, s.request_hash, s.response_code, s.response_body, s.corrected_by)
                for s in subs
            ],
            [orjson.loads(r.value)["event_id"] for r in outbox],
        )


def test_a_batch_answers_each_event_as_one_by_one_would(two_stores: tuple[Engine, Engine]) -> None:
    batch_engine, single_engine = two_stores
    answers = []
    seed, batch = _mix()
    for engine, batched in ((batch_engine, True), (single_engine, False)):
        school, agency = _clients(engine)
        # the same client ids in both stores, so the bodies and rows can be compared as they are
        clients = {"school": school, "agency": agency}
        intake = Intake(engine, "intake")
        for item in _checked(clients, seed):
            intake.store_items([item])
        items = _checked(clients, batch)
        outcomes = intake.store_items(items) if batched else [intake.store_items([i])[0] for i in items]
        answers.append(([_answer(o) for o in outcomes], engine))
    (in_batch, _), (one_by_one, _) = answers
    assert in_batch == one_by_one  # outcome, status and body (the replayed first answer) of every event
    kinds = [a[0].value for a in in_batch]
    assert kinds == [
        "accepted", "duplicate", "conflict", "accepted", "duplicate", "conflict", "conflict",
        "accepted", "accepted", "conflict", "accepted", "accepted",
    ]  # fmt: skip
    assert [a[1] for a in in_batch] == [202, 202, 409, 202, 202, 409, 409, 202, 202, 409, 202, 202]


def test_the_batch_stores_the_same_rows_as_one_by_one(two_stores: tuple[Engine, Engine]) -> None:
    batch_engine, single_engine = two_stores
    seed, batch = _mix()
    rows = []
    for engine, batched in ((batch_engine, True), (single_engine, False)):
        school, agency = _clients(engine)
        clients = {"school": school, "agency": agency}
        intake = Intake(engine, "intake")
        for item in _checked(clients, seed):
            intake.store_items([item])
        items = _checked(clients, batch)
        outcomes = intake.store_items(items) if batched else [intake.store_items([i])[0] for i in items]
        # the replayed answer of a duplicate is the first answer, byte for byte
        assert outcomes[1].body == intake.store_items(_checked(clients, [seed[0]]))[0].body
        subs, outbox = _rows(engine)
        rows.append(([s[:2] + s[3:4] + (s[5] is not None,) for s in subs], outbox))
        for s in subs:
            assert s[4]["event_id"] == s[0] and s[4]["status"] == "accepted"
    assert rows[0] == rows[1]
    assert len(rows[0][1]) == 2 + 6  # the seed and the six accepted events, each once in the outbox


def test_a_race_lost_to_another_writer_is_settled_event_by_event(
    two_stores: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = two_stores
    school, _agency = _clients(engine)
    intake = Intake(engine, "intake")
    first = sample_event_dict("pupil-registered", child_serial=5)
    winner = _checked({"school": school}, [("school", first)])
    intake.store_items(winner)
    # the idempotency read misses the winner's row, as when it commits between our read and our insert:
    # the insert (COPY on PostgreSQL) hits the unique event_id and every event is settled on its own
    real_among = intake._among
    calls = {"n": 0}

    def blind_once(ids: list[str]) -> Any:
        calls["n"] += 1
        return real_among([str(uuid.uuid4())] if calls["n"] == 1 else ids)

    monkeypatch.setattr(intake, "_among", blind_once)
    other = sample_event_dict("pupil-registered", child_serial=6)
    outcomes = intake.store_items(_checked({"school": school}, [("school", other), ("school", first)]))
    assert [(o.outcome.value, o.status_code) for o in outcomes] == [("accepted", 202), ("duplicate", 202)]
    assert calls["n"] == 3  # the blind batch, then each event on its own
    assert len(_rows(engine)[1]) == 2


@pytest.mark.parametrize("stale_reads", [1, 2], ids=["lost-once", "lost-twice"])
def test_a_leaver_corrected_by_another_writer_since_the_read_is_not_corrected_twice(
    two_stores: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch, stale_reads: int
) -> None:
    """Replicas each accept a correction of the same leaver: this one's read (the leaver not yet corrected) is
    older than a rival's commit. Its update must not replace the rival's correction, and its group must not
    fail: it is settled event by event, and the correction is refused (409). With three replicas the settling
    read can be stale too (lost twice): it is settled again, since each lost race means a rival committed."""
    engine, _ = two_stores
    school, _agency = _clients(engine)
    intake = Intake(engine, "intake")
    leaver = sample_event_dict("pupil-left-roll", child_serial=3)
    intake.store_items(_checked({"school": school}, [("school", leaver)]))
    first, second = (sample_event_dict("pupil-left-roll", child_serial=3) for _ in range(2))
    for correction in (first, second):
        correction["payload"].update(TO_HILLSIDE, corrects_event_id=leaver["event_id"])
    with engine.connect() as connection:
        stale = {row.event_id: row for row in intake._known(connection, [leaver["event_id"]])}
    intake.store_items(_checked({"school": school}, [("school", first)]))  # a rival replica's commit
    real_known = intake._known
    left = {"stale": stale_reads}

    def read_before_the_rival(connection: Any, ids: list[str]) -> list[Any]:
        if leaver["event_id"] in ids and left["stale"] > 0:  # the group's read, then its settling read
            left["stale"] -= 1
            return [stale[i] for i in ids if i in stale]
        return real_known(connection, ids)

    monkeypatch.setattr(intake, "_known", read_before_the_rival)
    other = sample_event_dict("pupil-registered", child_serial=6)
    outcomes = intake.store_items(_checked({"school": school}, [("school", other), ("school", second)]))
    assert left["stale"] == 0
    assert [(o.outcome.value, o.status_code) for o in outcomes] == [("accepted", 202), ("conflict", 409)]
    assert outcomes[1].errors[0].rule == "already_corrected"
    with Session(engine) as session:
        row = session.exec(select(Submission).where(Submission.event_id == leaver["event_id"])).one()
    assert row.corrected_by == first["event_id"]
    assert sorted(_rows(engine)[1]) == sorted([leaver["event_id"], first["event_id"], other["event_id"]])
