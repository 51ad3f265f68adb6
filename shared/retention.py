"""``cme purge``: delete personal data that is past its retention period (docs/RETENTION.md).

Three sweeps, each a real delete (not a flag), each reporting what it removed by table or partition:

- closed cases: a child whose case has been resolved (in education, home educated, left the area, moved
  abroad) and unchanged for ``closed_case_days`` loses every row that names it, in every service's tables: any
  table with a ``child_id`` (or ``other_child_id``) column, rows keyed by that child's case ids, and alert
  deliveries of its alerts. Children merged into a purged child go with it. Tables are found by their columns,
  so a new table that stores a child_id is covered without changing this module.
  Before the rows go, a child-purged event per child is published on the child-events topic (keyed by the
  child) and acknowledged by the broker: tracking then deletes the child's working record from its faust
  table, which writes a tombstone to the table's compacted changelog. If that publish fails, nothing is
  deleted and the next run tries again (the event ids are derived from the child: a repeat is harmless).
- outboxes: an event row already published to Kafka is only a copy; rows published more than
  ``published_outbox_days`` ago are deleted. Outboxes are found by their columns (those of
  ``shared.outbox.OutboxBase``), so a service's new outbox is covered without changing this module.
- topics: records older than ``topic_days`` on the topics that carry personal data are deleted with Kafka's
  DeleteRecords (everything before the first offset at or after the cutoff, per partition).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import MetaData, Table, delete, inspect, select, update
from sqlalchemy.engine import Connection, Engine

from shared.events.catalogue import encode_event
from shared.events.envelope import Source
from shared.events.internal import RESOLVED_STATES, ChildPurged, ChildPurgedPayload
from shared.logs import get_logger
from shared.settings import Settings
from shared.topics import ATTENDANCE, CHILD_EVENTS, DEAD_LETTER, INTAKE, TopicSpec

log = get_logger(__name__)

SERVICE_PREFIXES = ("tracking_", "escalation_", "notify_", "referral_", "attendance_", "web_")
# An outbox is a table with ``shared.outbox.OutboxBase``'s columns, whichever service owns it.
OUTBOX_COLUMNS = frozenset({"event_id", "topic", "key", "value", "created_at", "published_at"})
# Topics whose events carry names, dates of birth, UPNs or addresses (transitions, escalations and acks
# carry ids and codes only).
PERSONAL_DATA_TOPICS: tuple[TopicSpec, ...] = (INTAKE, CHILD_EVENTS, ATTENDANCE, DEAD_LETTER)


@dataclass(frozen=True)
class RetentionPolicy:
    closed_case_days: int = 6 * 365
    published_outbox_days: int = 30
    topic_days: int = 400


@dataclass
class PurgeReport:
    children: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"children purged: {self.children}"]
        out += [f"  {table}: {n} rows" for table, n in sorted(self.rows.items()) if n]
        out += [f"  {tp}: {n} records" for tp, n in sorted(self.records.items()) if n]
        return out


def _tables(conn: Connection) -> dict[str, Table]:
    names = [n for n in inspect(conn).get_table_names() if n.startswith(SERVICE_PREFIXES)]
    meta = MetaData()
    return {n: Table(n, meta, autoload_with=conn) for n in names}


def _as_stored(column: Any, when: datetime) -> datetime:
    """``when`` as the column stores it: aware for a timezone-aware column, naive UTC otherwise."""
    aware = bool(getattr(column.type, "timezone", False))
    return when if aware else when.astimezone(UTC).replace(tzinfo=None)


def children_due(conn: Connection, tables: dict[str, Table], cutoff: datetime) -> tuple[set[str], set[str]]:
    """The child ids (with children merged into them) and case ids whose retention has run out."""
    cases = tables.get("tracking_cases")
    if cases is None:
        return set(), set()
    rows = conn.execute(
        select(cases.c.child_id, cases.c.case_id).where(
            cases.c.state.in_([s.value for s in RESOLVED_STATES]),
            cases.c.updated_at < _as_stored(cases.c.updated_at, cutoff),
            cases.c.merged_into.is_(None),
        )
    ).all()
    # A child still on the register of children not in school (s.436B) is kept whatever its case says: a
    # home-educated child's case is resolved, but the LA's duty to keep the entry lasts while it is on.
    register = tables.get("tracking_register_entries")
    kept: set[str] = set()
    if register is not None and rows:
        kept = set(
            conn.execute(
                select(register.c.child_id).where(
                    register.c.on_register.is_(True), register.c.child_id.in_({r.child_id for r in rows})
                )
            ).scalars()
        )
    child_ids = {r.child_id for r in rows if r.child_id not in kept}
    case_ids = {r.case_id for r in rows if r.child_id not in kept}
    children = tables.get("tracking_children")
    if children is not None and child_ids:
        merged = conn.execute(
            select(children.c.child_id).where(children.c.merged_into.in_(child_ids))
        ).scalars()
        child_ids |= set(merged)
        case_ids |= set(
            conn.execute(select(cases.c.case_id).where(cases.c.child_id.in_(child_ids))).scalars()
        )
    return child_ids, case_ids


PURGE_NAMESPACE = uuid.UUID("0b6f2a5e-3c1d-4e8f-9a7b-5d4c3b2a1f0e")
# Tells the services that keep their own copy of a child (tracking's faust table) to delete it.
Announce = Callable[[Sequence[tuple[str, str]]], None]


def purged_event(child_id: str, la_code: str, now: datetime) -> ChildPurged:
    return ChildPurged(
        event_id=uuid.uuid5(PURGE_NAMESPACE, f"purge:{child_id}"),
        occurred_at=now,
        source=Source(system="cme-purge", la_code=la_code),
        payload=ChildPurgedPayload(child_id=uuid.UUID(child_id), la_code=la_code),
    )


def announce_on_kafka(settings: Settings, now: datetime) -> Announce:
    """Publish child-purged for each (child, LA) and wait for every acknowledgement."""

    def announce(children: Sequence[tuple[str, str]]) -> None:
        from kafka import KafkaProducer

        from shared.kafka import kafka_python_config

        producer = KafkaProducer(acks="all", **kafka_python_config(settings))
        try:
            topic = CHILD_EVENTS.name(settings)
            sent = [
                producer.send(topic, key=child.encode(), value=encode_event(purged_event(child, la, now)))
                for child, la in children
            ]
            for future in sent:
                future.get(timeout=60)  # raises: the transaction rolls back, nothing is deleted
        finally:
            producer.close()

    return announce


def _children_with_la(
    conn: Connection, tables: dict[str, Table], child_ids: set[str]
) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for name in ("tracking_cases", "tracking_children"):
        table = tables.get(name)
        if table is not None:
            rows = conn.execute(
                select(table.c.child_id, table.c.la_code).where(table.c.child_id.in_(child_ids))
            )
            found.update({r.child_id: r.la_code for r in rows})
    return sorted(found.items())


def purge_closed_cases(
    engine: Engine,
    now: datetime,
    policy: RetentionPolicy,
    report: PurgeReport,
    announce: Announce | None = None,
) -> None:
    cutoff = now - timedelta(days=policy.closed_case_days)
    with engine.begin() as conn:  # one transaction: a child is purged everywhere or nowhere
        tables = _tables(conn)
        child_ids, case_ids = children_due(conn, tables, cutoff)
        report.children += len(child_ids)
        if not child_ids:
            return
        if announce is not None:
            announce(_children_with_la(conn, tables, child_ids))
        alerts = tables.get("notify_alert")
        alert_ids = (
            set(conn.execute(select(alerts.c.alert_id).where(alerts.c.child_id.in_(child_ids))).scalars())
            if alerts is not None
            else set()
        )
        # Dependants first (deliveries of the alerts, steps of the cases), the rows naming the child last.
        ordered = sorted(
            tables.values(), key=lambda t: (t.name in ("tracking_children", "tracking_cases"), t.name)
        )
        for table in ordered:
            cols = table.c
            conditions = []
            if "child_id" in cols:
                conditions.append(cols.child_id.in_(child_ids))
            # Rows between two children (a merge's other child, a cross-LA link's sought or found child)
            # go with either of them.
            for name in ("other_child_id", "sought_child_id", "found_child_id"):
                if name in cols:
                    conditions.append(cols[name].in_(child_ids))
            if "case_id" in cols and case_ids:
                conditions.append(cols.case_id.in_(case_ids))
            if "alert_id" in cols and alert_ids and table.name != "notify_alert":
                conditions.append(cols.alert_id.in_(alert_ids))
            for condition in conditions:
                report.rows[str(table.name)] += conn.execute(delete(table).where(condition)).rowcount or 0
            if "matched_child_id" in cols:
                # Another child's resolution that once pointed at this child keeps its row, not the pointer.
                conn.execute(
                    update(table).where(cols.matched_child_id.in_(child_ids)).values(matched_child_id=None)
                )


def purge_outboxes(engine: Engine, now: datetime, policy: RetentionPolicy, report: PurgeReport) -> None:
    cutoff = now - timedelta(days=policy.published_outbox_days)
    with engine.begin() as conn:
        outboxes = [t for t in _tables(conn).values() if set(t.c.keys()) >= OUTBOX_COLUMNS]
        for table in outboxes:
            published = table.c.published_at
            result = conn.execute(
                delete(table).where(published.is_not(None), published < _as_stored(published, cutoff))
            )
            report.rows[str(table.name)] += result.rowcount or 0


def purge_topics(settings: Settings, now: datetime, policy: RetentionPolicy, report: PurgeReport) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    from shared.kafka import kafka_python_config

    cutoff_ms = int((now - timedelta(days=policy.topic_days)).timestamp() * 1000)
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_config(settings))
    admin = KafkaAdminClient(client_id="cme-purge", **kafka_python_config(settings))
    try:
        for spec in PERSONAL_DATA_TOPICS:
            topic = spec.name(settings)
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                continue
            firsts = consumer.beginning_offsets(tps)
            ends = consumer.end_offsets(tps)
            found = consumer.offsets_for_times({tp: cutoff_ms for tp in tps})
            # The first offset at or after the cutoff; none means every record is older: delete to the end.
            upto = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
            todo = {tp: off for tp, off in upto.items() if off > firsts[tp]}
            if todo:
                admin.delete_records(todo)
            for tp, off in todo.items():
                report.records[f"{tp.topic}[{tp.partition}]"] += off - firsts[tp]
    finally:
        consumer.close()
        admin.close()


def purge(
    settings: Settings,
    engine: Engine,
    policy: RetentionPolicy,
    now: datetime | None = None,
    topics: bool = True,
) -> PurgeReport:
    now = now or datetime.now(UTC)
    report = PurgeReport()
    purge_closed_cases(engine, now, policy, report, announce_on_kafka(settings, now) if topics else None)
    purge_outboxes(engine, now, policy, report)
    if topics:
        purge_topics(settings, now, policy, report)
    # Counts only: what was deleted, never whose.
    log.info("purged", children=report.children, rows=dict(report.rows), records=sum(report.records.values()))
    return report
