"""The rebuild's batch logic on SQLite (no broker): it folds like the case agent (a late fact re-folded, a
redelivery a duplicate), a purge in the log deletes the child's rows and record again, an unreadable record
is stepped over, and the check finds a changed, a missing and an extra row while ignoring wall-clock columns.
Dates are school days of the autumn term 2025."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select, text, update
from sqlmodel import Session, col

from devtools.samples import sample_event
from devtools.synthetic import generate
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.models import TrackingCase, TrackingTimelineEntry
from services.tracking.projection import project_many
from services.tracking.rebuild import RECORDS, Progress, RebuildReport, _Applier, compare, prepare_target
from shared.db import make_engine
from shared.events import INBOUND_EVENT_TYPES, encode_event
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope, Source
from shared.events.internal import ChildFact, ChildFactPayload, MatchKind
from shared.retention import purged_event

LA = "801"


@dataclass
class Message:
    """What the rebuild reads of a Kafka record."""

    key: bytes
    value: bytes
    partition: int = 0
    offset: int = 0


def _fact(child_id: uuid.UUID, inbound: Envelope) -> ChildFact:
    return ChildFact(
        event_id=inbound.event_id,
        occurred_at=inbound.occurred_at,
        source=Source(system="cme-tracking", la_code=LA),
        payload=ChildFactPayload(
            child_id=child_id, la_code=LA, match=MatchKind.EXACT, fact=inbound.model_dump(mode="json")
        ),
    )


def _log() -> tuple[uuid.UUID, uuid.UUID, list[ChildFact]]:
    a, b = uuid.uuid4(), uuid.uuid4()
    left = sample_event("pupil-left-roll", child_serial=1, on=date(2025, 11, 3), la_code=LA)
    unknown = sample_event("whereabouts-unknown", child_serial=1, on=date(2025, 11, 12), la_code=LA)
    # Older than the whereabouts-unknown fact already applied: late, folded again in event-time order.
    located = sample_event("child-located", child_serial=1, on=date(2025, 11, 10), la_code=LA)
    registered = sample_event("pupil-registered", child_serial=2, on=date(2025, 11, 4), la_code=LA)
    return a, b, [_fact(a, left), _fact(a, unknown), _fact(a, located), _fact(b, registered)]


def _messages(facts: list[tuple[uuid.UUID, bytes]]) -> list[Message]:
    return [Message(str(c).encode(), v, offset=i) for i, (c, v) in enumerate(facts)]


def test_batch_folds_like_the_case_agent_and_purges_again(tmp_path: Path) -> None:
    a, b, facts = _log()
    # The case agent's own path, one fact at a time: the reference store.
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    live = prepare_target(live_url)
    records = {a: new_record(str(a), LA), b: new_record(str(b), LA)}
    for fact in facts:
        out = apply_child_fact(records[fact.payload.child_id], fact)
        records[fact.payload.child_id] = out.record
        project_many(live, [out])
    with Session(live) as session:
        verdicts = session.exec(select(TrackingTimelineEntry.verdict)).scalars().all()  # type: ignore[call-overload,attr-defined]
    assert any(v.startswith("late") for v in verdicts)

    target_url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    target = prepare_target(target_url)
    applier, report = _Applier({}, None), RebuildReport()
    log = [(f.payload.child_id, encode_event(f)) for f in facts]
    log.append((a, encode_event(facts[0])))  # a redelivery
    log.append((b, b'{"not": "an event"}'))  # unreadable: the live worker dead-lettered it
    with Session(target) as session:
        applier.batch(session, _messages(log), report)
        session.commit()
    assert (report.duplicates, report.skipped, report.skipped_at) == (1, 1, [(0, 5)])
    assert all(d.equal for d in compare(live_url, target_url))
    with target.connect() as conn:
        assert conn.execute(
            select(RECORDS.c.child_id).order_by(RECORDS.c.child_id)
        ).scalars().all() == sorted([str(a), str(b)])

    # child-purged for a: its rows and record go, b's stay.
    purge = purged_event(str(a), LA, datetime(2032, 1, 5, tzinfo=UTC))
    with Session(target) as session:
        applier.batch(session, _messages([(a, encode_event(purge))]), report)
        session.commit()
    assert report.purged == 1 and str(a) not in applier.records
    with target.connect() as conn:
        children = conn.execute(text("SELECT DISTINCT child_id FROM tracking_timeline")).scalars().all()
        assert children == [str(b)]
        spelled = conn.execute(text("SELECT DISTINCT child_id FROM tracking_spells")).scalars().all()
        assert spelled == [str(b)]
        assert conn.execute(select(RECORDS.c.child_id)).scalars().all() == [str(b)]
        assert conn.execute(text("SELECT child_id FROM tracking_cases")).scalars().all() == [str(b)]


def test_a_record_kept_between_batches_folds_as_one_kept_in_memory(tmp_path: Path) -> None:
    """Between batches a child's record is kept as its checkpoint's JSON: a fact per batch (every record
    parsed again) leaves the store one batch of them all leaves."""
    _, _, facts = _log()
    log = [(f.payload.child_id, encode_event(f)) for f in facts]
    stores = []
    for name, batches in (("one", [log]), ("each", [[entry] for entry in log])):
        url = f"sqlite:///{tmp_path / name}.db"
        engine, applier, report = prepare_target(url), _Applier({}, None), RebuildReport()
        for offset, batch in enumerate(batches):
            with Session(engine) as session:
                applier.batch(session, [Message(str(c).encode(), v, offset=offset) for c, v in batch], report)
                session.commit()
        assert all(isinstance(saved, str) for saved in applier.records.values())
        stores.append(url)
    assert all(d.equal for d in compare(stores[0], stores[1]))


def test_compare_finds_changed_missing_and_extra_rows_not_wall_clock(tmp_path: Path) -> None:
    a, b, facts = _log()
    urls = [f"sqlite:///{tmp_path / n}.db" for n in ("live", "rebuilt")]
    for url in urls:
        engine = prepare_target(url)
        with Session(engine) as session:
            _Applier({}, None).batch(
                session, _messages([(f.payload.child_id, encode_event(f)) for f in facts]), RebuildReport()
            )
            session.commit()
    live, rebuilt = (make_engine(u) for u in urls)
    with Session(rebuilt) as session:  # wall clock only: still equal
        session.execute(update(TrackingCase).values(updated_at=datetime(2030, 1, 1, tzinfo=UTC)))
        session.execute(update(TrackingTimelineEntry).values(recorded_at=datetime(2030, 1, 1, tzinfo=UTC)))
        session.commit()
    assert all(d.equal for d in compare(urls[0], urls[1]))
    with Session(rebuilt) as session:
        session.execute(
            update(TrackingCase).where(col(TrackingCase.child_id) == str(a)).values(state="in_education")
        )  # type: ignore[arg-type]
        session.execute(text("DELETE FROM tracking_timeline WHERE child_id = :c"), {"c": str(b)})
        session.commit()
    with Session(live) as session:
        session.execute(text("DELETE FROM tracking_cases WHERE child_id = :c"), {"c": str(b)})
        session.commit()
    cases, timeline, spells, reviews, register, register_history = compare(urls[0], urls[1])
    assert (cases.changed, cases.only_live, cases.only_rebuilt) == (1, 0, 1)
    assert (timeline.changed, timeline.only_live, timeline.only_rebuilt) == (0, 1, 0)
    assert timeline.differing_keys[0][0] == str(b)
    assert spells.equal and reviews.equal and register.equal and register_history.equal
    with Session(rebuilt) as session:  # a spell that differs is found too
        session.execute(
            text("UPDATE tracking_spells SET state = 'out_of_scope' WHERE child_id = :c"), {"c": str(a)}
        )
        session.commit()
    spells = compare(urls[0], urls[1])[2]
    assert spells.table == "tracking_spells" and spells.changed > 0 and spells.rebuilt_rows > 0


def test_progress_line() -> None:
    line = Progress(done=120_000, total=3_900_000, seconds=60.0).line()
    assert line == "rebuild: 120,000/3,900,000 events (3.1%), 2,000 events/s, ETA 31m 30s"
    assert Progress(0, 10, 0.0).eta_s is None


def test_the_live_store_is_never_the_target(tmp_path: Path) -> None:
    from services.tracking.main import _same_store, run_rebuild
    from services.tracking.settings import TrackingSettings

    live = "postgresql://cme:secret@db.internal:5432/cme"
    assert _same_store(live, "postgresql+psycopg://other@db.internal/cme")
    assert not _same_store(live, "postgresql://cme@db.internal:5432/cme_rebuilt")
    settings = TrackingSettings(database_url=live)
    assert run_rebuild(settings, "rebuild", "postgresql+psycopg://cme@db.internal/cme", 100, False) == 2
    assert run_rebuild(settings, "rebuild-check", None, 100, False) == 2


def _child_of(inbound: Envelope) -> uuid.UUID:
    """A child is its UPN here (one LA, no identity resolution)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, str(inbound.payload.child.upn))  # type: ignore[attr-defined]


def test_a_rebuild_applies_without_publishing_to_the_same_record_timeline_and_register() -> None:
    """The rebuild builds no transitions or handovers (the live run published them): every other part of each
    outcome is what the live agent's is: over a synthetic LA's year (moves, handovers), every inbound type as
    a child's first fact (register facts, refusals), and a late fact folded again."""
    year = [decode_inbound(data) for data in generate(las=1, pupils_per_la=400, seed=5).events]
    each_type = [sample_event(t, child_serial=500 + i, la_code=LA) for i, t in enumerate(INBOUND_EVENT_TYPES)]
    facts = [_fact(_child_of(e), e) for e in [*year, *each_type]]
    facts += _log()[2][:3]  # one child's leaving, whereabouts unknown, and a late child-located
    records: dict[str, tuple[ChildRecord, ChildRecord]] = {}
    kinds: Counter[str] = Counter()
    published = unpublished = 0
    for fact in facts:
        child_id = fact.payload.child_id
        live, rebuilt = records.get(str(child_id)) or (new_record(str(child_id), LA),) * 2
        one = apply_child_fact(live, fact)
        other = apply_child_fact(rebuilt, fact, publishing=False)
        assert other.record.model_dump_json() == one.record.model_dump_json()
        assert (other.timeline, other.refused, other.register_details, other.register_before) == (
            one.timeline, one.refused, one.register_details, one.register_before,
        )  # fmt: skip
        kinds[one.timeline[0].verdict] += 1
        kinds["refused"] += len(one.refused)
        kinds["register details"] += one.register_details is not None
        if not one.timeline[0].verdict.startswith(("late", "correction")):
            assert (other.transitions, other.handovers) == ([], [])
        published += len(one.transitions) + len(one.handovers)
        unpublished += len(other.transitions) + len(other.handovers)
        records[str(child_id)] = (one.record, other.record)
    # Every path was taken: moves, stays, a late fact (its transition still built), refusals, register facts.
    assert published > 100 and unpublished == 1
    assert kinds["move"] and kinds["stay"] and kinds["late"] == 1, kinds
    assert kinds["refused"] and kinds["register details"]
