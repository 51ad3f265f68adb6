"""Rebuild tracking's case store from the log: replay ``cme.child-events.v1`` into a fresh database.

The child-events topic is the record of what the case agent was given: every resolved fact (keyed by
child_id), every merge, split, forward and purge, in each child's order. Applying it again with the case
agent's own code (``case_agent.apply``: the same state machine, fold and ordering rule) and projecting with
``projection.project_into`` gives the case store the live worker built: ``tracking_cases``,
``tracking_timeline``, ``tracking_spells`` and the ``refused_transition`` review items. Nothing is
published: every output of the live run (transitions, handovers, forwards) is already on its topic, and the
forwards are replayed where they sit in the log; so an in-order fact's transitions and handovers are not even
built (``publishing=False``).

Resumable: the target keeps, in the same transaction as each batch's rows, the next offset of every
partition (``tracking_rebuild_offsets``) and the records of the children the batch changed
(``tracking_rebuild_records``, the faust table's values). A crash loses at most the batch in flight; the
next run starts where the last commit left off.

``compare`` checks a rebuilt store against the live one, table by table in key order (streamed, not held in
memory), leaving out the wall-clock columns (``updated_at``, ``recorded_at``, ``created_at``), the
autoincrement ``id`` and what a person decided on a review item (status, by whom, when: not in the log).

Not rebuilt here: the identity index (``tracking_children``, ``tracking_identifiers``,
``tracking_resolutions``, possible-duplicate review items), which identity resolution derives from the
intake topic, and the read audit, which is not in any log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, delete, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from services.tracking.cases import ChildRecord, Outcome, new_record
from services.tracking.models import (
    TrackingCase,
    TrackingRegisterEntry,
    TrackingRegisterHistory,
    TrackingReviewItem,
    TrackingSpell,
    TrackingTimelineEntry,
)
from services.tracking.projection import project_into
from services.tracking.stream.app import migrate_store
from services.tracking.stream.case_agent import apply, load_record
from shared.consumer import POISON
from shared.db import make_engine, session_scope
from shared.events.catalogue import decode_event
from shared.gc_policy import collected_per_batch
from shared.logs import get_logger
from shared.settings import Settings
from shared.topics import CHILD_EVENTS

log = get_logger(__name__)

# The rebuild's own bookkeeping, in the target store only (not part of the live schema).
REBUILD_META = MetaData()
OFFSETS = Table(
    "tracking_rebuild_offsets",
    REBUILD_META,
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", Integer, nullable=False),
)
RECORDS = Table(
    "tracking_rebuild_records",
    REBUILD_META,
    Column("child_id", String(36), primary_key=True),
    Column("record", Text, nullable=False),
)


@dataclass
class Progress:
    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        share = f"{100 * self.done / self.total:.1f}%" if self.total else "100%"
        eta = "-" if self.eta_s is None else _duration(self.eta_s)
        return f"rebuild: {self.done:,}/{self.total:,} events ({share}), {self.rate:,.0f} events/s, ETA {eta}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@dataclass
class RebuildReport:
    events: int = 0  # records of the log applied in this run
    skipped: int = 0  # records the live worker dead-lettered too (unreadable, or refused by the case logic)
    duplicates: int = 0  # redeliveries, as the live worker saw them
    purged: int = 0
    resumed_from: int = 0  # records already rebuilt by an earlier run
    total: int = 0  # records up to the log's end when this run started
    seconds: float = 0.0
    skipped_at: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset), no content


def prepare_target(url: str) -> Engine:
    """Migrate the target to tracking's schema (its spells marked current: the rebuild's projection writes
    them) and add the rebuild's bookkeeping tables."""
    migrate_store(url)
    engine = make_engine(url)
    REBUILD_META.create_all(engine)
    return engine


def _checkpoint(conn: Connection, topic: str) -> dict[int, int]:
    rows = conn.execute(select(OFFSETS.c.partition, OFFSETS.c.next_offset).where(OFFSETS.c.topic == topic))
    return {int(p): int(o) for p, o in rows}


def _load_records(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS.c.child_id, RECORDS.c.record))
        return {str(child_id): str(raw) for child_id, raw in rows if raw is not None}


def _delete_child(session: Session, child_id: str) -> None:
    """What ``cme purge`` deleted from the live case store before it announced the purge."""
    session.execute(delete(TrackingTimelineEntry).where(TrackingTimelineEntry.child_id == child_id))  # type: ignore[arg-type]
    session.execute(delete(TrackingSpell).where(TrackingSpell.child_id == child_id))  # type: ignore[arg-type]
    session.execute(
        delete(TrackingReviewItem).where(
            or_(TrackingReviewItem.child_id == child_id, TrackingReviewItem.other_child_id == child_id)  # type: ignore[arg-type]
        )
    )
    session.execute(delete(TrackingCase).where(TrackingCase.child_id == child_id))  # type: ignore[arg-type]
    for register_table in (TrackingRegisterEntry, TrackingRegisterHistory):
        session.execute(delete(register_table).where(register_table.child_id == child_id))  # type: ignore[arg-type]
    session.execute(delete(RECORDS).where(RECORDS.c.child_id == child_id))


def _upsert(session: Session, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert or replace ``rows``: one cached statement, executed for many rows (the driver batches them;
    psycopg's text arrays would escape every character of the records' JSON, three times slower)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    pg = session.get_bind().dialect.name == "postgresql"
    stmt: Any = postgresql.insert(table) if pg else sqlite.insert(table)
    others = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=others), rows)


class _Applier:
    """The case agent's per-batch logic (``case_agent.register``'s ``handle``) without its publishing: apply
    in order, a later event of a child starting from the earlier one's result, then project."""

    def __init__(self, records: dict[str, str], deployment: frozenset[str] | None) -> None:
        # Each child's record between batches as the JSON its checkpoint row holds, not as model objects: a
        # national year's ~3 million children in a fifth of the memory (1.2 KB each instead of ~6), and not
        # scanned by the garbage collector; a batch parses only the children it touches.
        self.records = records
        self.deployment = deployment

    def _record(self, working: dict[str, ChildRecord], child_id: str, la_code: str) -> ChildRecord:
        record = working.get(child_id)
        if record is None:
            record = load_record(self.records.get(child_id)) or new_record(child_id, la_code)
            working[child_id] = record
        return record

    def batch(self, session: Session, messages: Sequence[Any], report: RebuildReport) -> None:
        working: dict[str, ChildRecord] = {}  # the batch's children, as the batch has left them so far
        changed: set[str] = set()
        segment: list[Outcome] = []
        for message in messages:
            try:
                envelope = decode_event(message.value)
                child_id = message.key.decode()
                record = self._record(working, child_id, str(envelope.payload.la_code))
                outcome = apply(record, envelope, self.deployment, publishing=False)  # published live
            except POISON:
                # The live worker dead-lettered this record (same code, same input): it changed nothing.
                report.skipped += 1
                report.skipped_at.append((message.partition, message.offset))
                continue
            if outcome.duplicate:
                report.duplicates += 1
                working[child_id] = outcome.record
                continue
            if outcome.purged:
                project_into(session, segment)  # what came before the purge, then the purge itself
                segment = []
                _delete_child(session, child_id)
                working.pop(child_id, None)
                self.records.pop(child_id, None)
                changed.discard(child_id)
                report.purged += 1
                continue
            working[child_id] = outcome.record
            changed.add(child_id)
            segment.append(outcome)
        project_into(session, segment)
        saved = {child_id: record.model_dump_json() for child_id, record in working.items()}
        self.records.update(saved)
        _upsert(
            session,
            RECORDS,
            [{"child_id": c, "record": saved[c]} for c in sorted(changed)],
            ("child_id",),
        )


def rebuild(
    settings: Settings,
    target_url: str,
    *,
    batch: int = 2000,
    deployment: frozenset[str] | None = None,
    partitions: Sequence[int] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RebuildReport:
    """Replay the child-events topic, from the target's checkpoint (or the beginning) to the end it has now,
    into the store at ``target_url``. ``on_progress`` is called after every committed batch.

    ``partitions``: only these (default all). A child's records are all on one partition, so processes
    given disjoint partitions can rebuild into the same target at once, each with its own checkpoints."""
    from kafka import KafkaConsumer, TopicPartition

    from shared.kafka import kafka_python_config

    topic = CHILD_EVENTS.name(settings)
    engine = prepare_target(target_url)
    report = RebuildReport()
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=batch,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **kafka_python_config(settings),
    )
    started = time.perf_counter()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if partitions is not None:
            unknown = set(partitions) - set(parts)
            if unknown:
                raise ValueError(f"topic {topic} has no partitions {sorted(unknown)}")
            parts = sorted(set(partitions))
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            raise ValueError(f"topic {topic} not found")
        firsts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        with engine.connect() as conn:
            saved = _checkpoint(conn, topic)
        start = {tp: max(saved.get(tp.partition, firsts[tp]), firsts[tp]) for tp in tps}
        report.resumed_from = sum(start[tp] - firsts[tp] for tp in tps)
        report.total = sum(ends[tp] - firsts[tp] for tp in tps)
        todo = [tp for tp in tps if start[tp] < ends[tp]]
        applier = _Applier(_load_records(engine) if saved else {}, deployment)
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, start[tp])
        position = dict(start)
        # Every child's record stays in memory for the run: collected per batch, not by CPython's schedule.
        with collected_per_batch() as after_batch:
            while any(position[tp] < ends[tp] for tp in todo):
                polled = consumer.poll(timeout_ms=1000, max_records=batch)
                messages = [
                    m for tp, ms in polled.items() for m in ms if m.offset < ends[tp]
                ]  # what arrived after the start is the live worker's, not this run's
                # The consumer's position, not the last record's offset + 1: it also steps over offsets that
                # hold no record for us (transaction markers, compacted gaps), which would otherwise never be
                # reached.
                moved = {tp: min(consumer.position(tp), ends[tp]) for tp in todo}
                moved = {tp: p for tp, p in moved.items() if p != position[tp]}
                if not moved and not messages:
                    continue
                position.update(moved)
                with session_scope(engine) as session:
                    applier.batch(session, messages, report)
                    _upsert(
                        session,
                        OFFSETS,
                        [
                            {"topic": topic, "partition": tp.partition, "next_offset": p}
                            for tp, p in moved.items()
                        ],
                        ("topic", "partition"),
                    )
                report.events += len(messages)
                done = report.resumed_from + sum(min(position[tp], ends[tp]) - start[tp] for tp in tps)
                if on_progress is not None:
                    on_progress(Progress(done, report.total, time.perf_counter() - started))
                after_batch()
        if engine.dialect.name == "postgresql":
            # The planner's statistics of the tables just filled (autovacuum would come later): without them
            # a report's count on a fresh store can pick a plan a thousand times slower.
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
    finally:
        consumer.close()
        engine.dispose()
    report.seconds = time.perf_counter() - started
    log.info(
        "rebuilt",
        events=report.events,
        resumed_from=report.resumed_from,
        skipped=report.skipped,
        purged=report.purged,
        seconds=round(report.seconds, 1),
    )
    return report


def printer(every_s: float = 1.0) -> Callable[[Progress], None]:
    """A progress line on stderr, at most every ``every_s`` seconds and at the end."""
    last = [0.0]

    def show(progress: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or progress.done >= progress.total:
            last[0] = now
            print(progress.line(), file=sys.stderr, flush=True)

    return show


# The tables compared, with their keys and the columns left out (wall clock, autoincrement ids, a person's
# decisions). Review items: only those the case logic writes.
COMPARED: tuple[tuple[str, tuple[str, ...], frozenset[str], str], ...] = (
    ("tracking_cases", ("case_id",), frozenset({"updated_at"}), ""),
    ("tracking_timeline", ("child_id", "event_id"), frozenset({"id", "recorded_at"}), ""),
    # The spells the reports count, replayed from the timeline whenever a case is projected (spells.py).
    ("tracking_spells", ("child_id", "seq"), frozenset(), ""),
    (
        "tracking_review_items",
        ("review_id",),
        frozenset({"created_at", "status", "decided_by", "decided_at"}),
        "kind = 'refused_transition'",
    ),
    # The register of children not in school, folded with the case (register.py).
    ("tracking_register_entries", ("child_id",), frozenset({"updated_at"}), ""),
    ("tracking_register_history", ("child_id", "event_id"), frozenset({"id", "recorded_at"}), ""),
)


@dataclass
class Difference:
    table: str
    live_rows: int
    rebuilt_rows: int
    differing_keys: list[tuple[Any, ...]]  # ids only (no personal data), the first few
    only_live: int
    only_rebuilt: int
    changed: int

    @property
    def equal(self) -> bool:
        return not (self.only_live or self.only_rebuilt or self.changed)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    return value


def _rows(
    conn: Connection, table: str, keys: Sequence[str], leave_out: frozenset[str], where: str
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    meta = MetaData()
    t = Table(table, meta, autoload_with=conn)
    columns = [c for c in t.c if c.name not in leave_out]
    names = [c.name for c in columns]
    # Byte order on both sides, as Python compares the keys (PostgreSQL's locale order ignores dashes); a
    # number (a spell's place) sorts as a number on both.
    collate = conn.dialect.name == "postgresql"
    query = select(*columns).order_by(
        *(t.c[k].collate("C") if collate and isinstance(t.c[k].type, String) else t.c[k] for k in keys)
    )
    if where:
        query = query.where(text(where))
    key_at = [names.index(k) for k in keys]
    for row in conn.execution_options(yield_per=5000).execute(query):
        values = tuple(_plain(v) for v in row)
        yield tuple(values[i] for i in key_at), values


def compare(live_url: str, rebuilt_url: str, show: int = 5) -> list[Difference]:
    """Each compared table of the two stores, merged in key order (the keys are ids and codes)."""
    live, rebuilt = make_engine(live_url), make_engine(rebuilt_url)
    out: list[Difference] = []
    try:
        with live.connect() as a, rebuilt.connect() as b:
            for table, keys, leave_out, where in COMPARED:
                diff = Difference(table, 0, 0, [], 0, 0, 0)
                left, right = _rows(a, table, keys, leave_out, where), _rows(b, table, keys, leave_out, where)
                x, y = next(left, None), next(right, None)
                while x is not None or y is not None:
                    if y is None or (x is not None and x[0] < y[0]):
                        assert x is not None
                        diff.live_rows += 1
                        diff.only_live += 1
                        key = x[0]
                        x = next(left, None)
                    elif x is None or y[0] < x[0]:
                        diff.rebuilt_rows += 1
                        diff.only_rebuilt += 1
                        key = y[0]
                        y = next(right, None)
                    else:
                        diff.live_rows += 1
                        diff.rebuilt_rows += 1
                        same = x[1] == y[1]
                        key = x[0]
                        x, y = next(left, None), next(right, None)
                        if same:
                            continue
                        diff.changed += 1
                    if len(diff.differing_keys) < show:
                        diff.differing_keys.append(key)
                out.append(diff)
    finally:
        live.dispose()
        rebuilt.dispose()
    return out


def describe(differences: Sequence[Difference]) -> list[str]:
    lines = []
    for d in differences:
        verdict = (
            "equal"
            if d.equal
            else (
                f"DIFFERENT: {d.changed} changed, {d.only_live} only live, {d.only_rebuilt} only rebuilt; "
                f"first keys {d.differing_keys}"
            )
        )
        lines.append(f"{d.table}: live {d.live_rows:,} rows, rebuilt {d.rebuilt_rows:,} rows: {verdict}")
    return lines
