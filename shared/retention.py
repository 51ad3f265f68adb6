"""``cme purge``: delete personal data that is past its retention period (docs/RETENTION.md).

Three sweeps, each a real delete (not a flag), each reporting what it removed by table or partition:

- closed cases: a child whose case has been resolved (in education, home educated, left the area, moved
  abroad) and unchanged for ``closed_case_days`` loses every row that names it, in every service's tables.
  Each service says what that means for its own tables in ``services/<svc>/retention.py`` (``PURGE``, a
  ``PurgeHook``): the tables and columns that name a child, a case or another id it derives (notify: the
  child's alerts), the columns only unlinked, and, for tracking (which owns the cases), which children are due
  and in which LA. This module names no service's table; ``service_hooks()`` finds the hooks, and
  tests/unit/test_retention_hooks.py fails when a table with a child's id is declared by no hook.
  Children merged into a purged child go with it.
  Before the rows go, a child-purged event per child is published on the child-events topic (keyed by the
  child) and acknowledged by the broker: tracking then deletes the child's working record from its faust
  table, which writes a tombstone to the table's compacted changelog. If that publish fails, nothing is
  deleted and the next run tries again (the event ids are derived from the child: a repeat is harmless).
- outboxes: an event row already published to Kafka is only a copy; rows published more than
  ``published_outbox_days`` ago are deleted. Outboxes are found by their columns (those of
  ``shared.outbox.OutboxBase``) among the tables of the services with a hook, so a service's new outbox is
  covered without changing this module.
- topics: records older than ``topic_days`` on the topics that carry personal data are deleted with Kafka's
  DeleteRecords (everything before the first offset at or after the cutoff, per partition).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import MetaData, Table, delete, inspect, update
from sqlalchemy.engine import Connection, Engine

from shared.events.catalogue import encode_event
from shared.events.envelope import Source
from shared.events.internal import ChildPurged, ChildPurgedPayload
from shared.logs import get_logger
from shared.settings import Settings
from shared.topics import (
    ATTENDANCE,
    CHILD_EVENTS,
    DEAD_LETTER,
    INTAKE,
    URGENT_CHILD_EVENTS,
    URGENT_INTAKE,
    TopicSpec,
)

log = get_logger(__name__)

# An outbox is a table with ``shared.outbox.OutboxBase``'s columns, whichever service owns it.
OUTBOX_COLUMNS = frozenset({"event_id", "topic", "key", "value", "created_at", "published_at"})
# Topics whose events carry names, dates of birth, UPNs or addresses (transitions, escalations and acks
# carry ids and codes only).
PERSONAL_DATA_TOPICS: tuple[TopicSpec, ...] = (
    INTAKE,
    URGENT_INTAKE,
    CHILD_EVENTS,
    URGENT_CHILD_EVENTS,
    ATTENDANCE,
    DEAD_LETTER,
)


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


# The ids of what goes with the purged children, by kind: "child" and "case" (from the hook that says which
# children are due), and any kind a service derives from them ("alert": notify's alerts of those children).
Ids = dict[str, set[str]]
Tables = dict[str, Table]


@dataclass(frozen=True)
class PurgeHook:
    """What one service's purge deletes, declared in its own package (``services/<svc>/retention.py`` as
    ``PURGE``). Tables are named by the service that owns them; a table missing from the store (a service
    not deployed) is skipped."""

    service: str  # its tables are named ``<service>_...``
    # table -> {column: id kind}: a row goes when any of these columns holds a purged id of that kind.
    deletes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # table -> {column: id kind}: the column is set to NULL (the row is another child's and stays).
    unlinks: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Tables deleted after every other (the rows the others were found by).
    last: frozenset[str] = frozenset()
    # Further ids this service knows for the purged ones (read before anything is deleted).
    derive: Callable[[Connection, Tables, Ids], Ids] | None = None
    # The owner of the cases only: the children (with children merged into them) and cases due at a cutoff,
    # and each child's LA (for the child-purged announcement).
    due: Callable[[Connection, Tables, datetime], Ids] | None = None
    located: Callable[[Connection, Tables, set[str]], list[tuple[str, str]]] | None = None

    def columns(self) -> dict[str, set[str]]:
        """table -> every column the hook deletes or unlinks by (what names a child there)."""
        out: dict[str, set[str]] = {}
        for table, cols in [*self.deletes.items(), *self.unlinks.items()]:
            out.setdefault(table, set()).update(cols)
        return out


def service_hooks() -> list[PurgeHook]:
    """Every service's ``PURGE`` (``services.<svc>.retention``), by service name: a new service's hook is
    found without changing this module."""
    import services

    hooks = []
    for module in sorted(m.name for m in pkgutil.iter_modules(services.__path__)):
        name = f"services.{module}.retention"
        if importlib.util.find_spec(f"services.{module}") and importlib.util.find_spec(name):
            hook = getattr(importlib.import_module(name), "PURGE", None)
            if isinstance(hook, PurgeHook):
                hooks.append(hook)
    return hooks


def _tables(conn: Connection, hooks: Sequence[PurgeHook]) -> Tables:
    prefixes = tuple(f"{h.service}_" for h in hooks)
    names = [n for n in inspect(conn).get_table_names() if n.startswith(prefixes)]
    meta = MetaData()
    return {n: Table(n, meta, autoload_with=conn) for n in names}


def as_stored(column: Any, when: datetime) -> datetime:
    """``when`` as the column stores it: aware for a timezone-aware column, naive UTC otherwise."""
    aware = bool(getattr(column.type, "timezone", False))
    return when if aware else when.astimezone(UTC).replace(tzinfo=None)


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


def _owner(hooks: Sequence[PurgeHook]) -> PurgeHook | None:
    owners = [h for h in hooks if h.due is not None]
    if len(owners) > 1:
        raise ValueError(f"more than one service says which children are due: {[h.service for h in owners]}")
    return owners[0] if owners else None


def purge_closed_cases(
    engine: Engine,
    now: datetime,
    policy: RetentionPolicy,
    report: PurgeReport,
    announce: Announce | None = None,
    hooks: Sequence[PurgeHook] | None = None,
) -> None:
    hooks = service_hooks() if hooks is None else hooks
    owner = _owner(hooks)
    if owner is None or owner.due is None:
        return
    cutoff = now - timedelta(days=policy.closed_case_days)
    with engine.begin() as conn:  # one transaction: a child is purged everywhere or nowhere
        tables = _tables(conn, hooks)
        ids = owner.due(conn, tables, cutoff)
        child_ids = ids.get("child", set())
        report.children += len(child_ids)
        if not child_ids:
            return
        if announce is not None and owner.located is not None:
            announce(owner.located(conn, tables, child_ids))
        for hook in hooks:  # every derived id is read before anything is deleted
            if hook.derive is not None:
                for kind, more in hook.derive(conn, tables, ids).items():
                    ids.setdefault(kind, set()).update(more)
        last = frozenset().union(*(h.last for h in hooks))
        deletes = {t: cols for h in hooks for t, cols in h.deletes.items() if t in tables}
        # Dependants first (deliveries of the alerts, steps of the cases), the rows naming the child last.
        for name in sorted(deletes, key=lambda t: (t in last, t)):
            table = tables[name]
            for column, kind in deletes[name].items():
                if ids.get(kind):
                    result = conn.execute(delete(table).where(table.c[column].in_(ids[kind])))
                    report.rows[name] += result.rowcount or 0
        unlinks = {t: cols for h in hooks for t, cols in h.unlinks.items() if t in tables}
        for name, cols in unlinks.items():
            for column, kind in cols.items():
                if ids.get(kind):
                    # Another child's row that once pointed at this child keeps its row, not the pointer.
                    target = tables[name]
                    conn.execute(update(target).where(target.c[column].in_(ids[kind])).values({column: None}))


def purge_outboxes(
    engine: Engine,
    now: datetime,
    policy: RetentionPolicy,
    report: PurgeReport,
    hooks: Sequence[PurgeHook] | None = None,
) -> None:
    hooks = service_hooks() if hooks is None else hooks
    cutoff = now - timedelta(days=policy.published_outbox_days)
    with engine.begin() as conn:
        outboxes = [t for t in _tables(conn, hooks).values() if set(t.c.keys()) >= OUTBOX_COLUMNS]
        for table in outboxes:
            published = table.c.published_at
            result = conn.execute(
                delete(table).where(published.is_not(None), published < as_stored(published, cutoff))
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
    hooks = service_hooks()
    announce = announce_on_kafka(settings, now) if topics else None
    purge_closed_cases(engine, now, policy, report, announce, hooks)
    purge_outboxes(engine, now, policy, report, hooks)
    if topics:
        purge_topics(settings, now, policy, report)
    # Counts only: what was deleted, never whose.
    log.info("purged", children=report.children, rows=dict(report.rows), records=sum(report.records.values()))
    return report
