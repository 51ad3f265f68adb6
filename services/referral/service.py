"""Intake: check an event, then record it and queue it for Kafka in one transaction, idempotently.

The event_id is the idempotency key. The first accepted submission of an event_id stores its response; a
retry with the same content gets that response again and queues nothing; the same event_id with different
content is a conflict. The submission row and the outbox row are written in one transaction, so an event is
either fully accepted (and will be published by the relay) or not at all.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON, ColumnElement, String, Table, any_, bindparam, func, insert, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from services.referral.models import (
    Accepted,
    ApiClient,
    ClientKind,
    EventStatus,
    ItemOutcome,
    Problem,
    ReferralOutbox,
    Submission,
    SubmissionStatus,
)
from services.referral.validation import (
    Scope,
    advisories,
    parse_event,
    scope_problems,
    service_rule_problems,
)
from shared.events.envelope import Envelope, utcnow
from shared.topics import INTAKE, URGENT_INTAKE, intake_for

# Namespace for event_ids the server derives from a client's Idempotency-Key or from file rows.
IDEMPOTENCY_NAMESPACE = uuid.UUID("0d6c4c1e-7a53-4b8e-9a57-52f1a5a0c3d2")


def derived_event_id(client_id: str, key: str) -> uuid.UUID:
    """The same client and key give the same event_id: a retried referral or re-sent file is one event."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{client_id}\n{key}")


def partition_key(event: Envelope) -> str:
    """The event's key on the intake topic (the topic's spec names it), as the outbox row stores it."""
    return INTAKE.key_for(event).decode()


def corrects(event: Envelope) -> str | None:
    """The event a correction names (a pupil-left-roll's ``corrects_event_id``), if it is one."""
    target = getattr(event.payload, "corrects_event_id", None)
    return str(target) if target is not None else None


def _correction_refused(
    client: ApiClient, target: Submission | _NewRow | None, event_id: str
) -> Outcome | None:
    """A correction must name a pupil-left-roll this client sent that no other correction replaced."""
    field = "payload.corrects_event_id"
    if target is None or target.client_id != client.id or target.event_type != "pupil-left-roll":
        problem = Problem(
            field=field,
            rule="corrects_unknown_event",
            message="a correction names a pupil-left-roll this client sent (its event_id)",
        )
        return rejection(422, [problem])
    if target.corrected_by is not None and target.corrected_by != event_id:
        problem = Problem(
            field=field,
            rule="already_corrected",
            message=f"that event was already corrected by event {target.corrected_by}: correct that one",
        )
        return rejection(409, [problem], ItemOutcome.CONFLICT)
    if target.event_id == event_id:
        problem = Problem(field=field, rule="corrects_itself", message="an event cannot correct itself")
        return rejection(422, [problem])
    return None


def content_hash(event: Envelope) -> str:
    """What makes two submissions 'the same event': everything the sender said (not when we recorded it)."""
    data = event.model_dump(mode="json", exclude={"recorded_at": True, "source": {"client_id"}})
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model, for multi-row statements that skip the ORM's per-row work."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def scope_of(client: ApiClient) -> Scope:
    return Scope(kind=ClientKind(client.kind), la_code=client.la_code, school_urn=client.school_urn)


class CorrectionRaced(Exception):
    """The leaver a correction names was corrected by another transaction after this one read it."""


# What another writer's commit between our read and ours raises; settled by reading again.
LOST_RACES = (IntegrityError, psycopg.errors.IntegrityError, CorrectionRaced)
SETTLE_ATTEMPTS = 5  # each attempt lost means a rival committed: more than a few is a stampede, not a race


@dataclass
class Outcome:
    """The result of one submitted event, as the API reports it."""

    outcome: ItemOutcome
    status_code: int
    body: dict[str, Any]
    event_id: uuid.UUID | None = None
    event_type: str | None = None
    errors: list[Problem] = field(default_factory=list)


@dataclass
class Item:
    """One checked event to store, with the client that sent it and what makes a retry 'the same' (the
    content hash, or a digest of the request the server built the event from)."""

    client: ApiClient
    event: Envelope
    digest: str

    @classmethod
    def of(cls, client: ApiClient, event: Envelope, digest: str | None = None) -> Item:
        return cls(client, event, digest or content_hash(event))


@dataclass
class _NewRow:
    """A submission row this transaction inserts (plain data: building SQLModel rows cost a third of a
    batch's CPU, measured); the columns of ``referral_submissions`` by name."""

    event_id: str
    client_id: str
    event_type: str
    request_hash: str
    response_code: int
    response_body: dict[str, Any]
    accepted_at: datetime
    corrected_by: str | None = None
    stored: bool = False  # read from the store (True), or inserted by this transaction

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "event_id", "client_id", "event_type", "request_hash", "response_code", "response_body",
        "accepted_at", "corrected_by",
    )  # fmt: skip

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}  # not asdict: it deep-copies the body


def rejection(
    status_code: int, problems: list[Problem], outcome: ItemOutcome = ItemOutcome.REJECTED
) -> Outcome:
    body = {"errors": [p.model_dump() for p in problems]}
    return Outcome(outcome=outcome, status_code=status_code, body=body, errors=problems)


def check(
    client: ApiClient, data: bytes | str | dict[str, Any], now: datetime | None = None
) -> Envelope | Outcome:
    """Validate one event for this client: the stamped event, or why it was refused (422 rule, 403 scope)."""
    event, problems = parse_event(data)
    if event is None:
        return rejection(422, problems)
    forbidden = scope_problems(event, scope_of(client))
    if forbidden:
        return rejection(403, forbidden, ItemOutcome.FORBIDDEN)
    problems = service_rule_problems(event, now or datetime.now(UTC))
    if problems:
        return rejection(422, problems)
    # The server, not the sender, says who sent it and when it arrived.
    source = event.source.model_copy(update={"client_id": client.id})
    return event.model_copy(update={"source": source, "recorded_at": utcnow()})


class Intake:
    def __init__(self, engine: Engine, intake_topic: str, urgent_topic: str | None = None) -> None:
        """``urgent_topic``: where facts that say a child may be at risk now go (``shared.events.urgency``);
        None puts every fact on ``intake_topic``."""
        self.engine = engine
        self.intake_topic = intake_topic
        self.urgent_topic = urgent_topic
        self.postgres = engine.dialect.name == "postgresql"
        # SQLite has one writer: queueing writers here is cheaper than SQLite's busy-wait sleeps.
        self.write_lock: AbstractContextManager[Any] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    def store(
        self, client: ApiClient, events: list[Envelope], digests: list[str | None] | None = None
    ) -> list[Outcome]:
        """Accept checked events: all new ones in one transaction; duplicates and conflicts answered from the
        idempotency records. A concurrent submission of one event_id is settled by the unique constraint."""
        items = [Item.of(client, e, d) for e, d in zip(events, digests or [None] * len(events), strict=True)]
        return self.store_items(items)

    def store_items(self, items: list[Item]) -> list[Outcome]:
        """``store`` for events of several clients at once (group commit): one transaction for them all."""
        with self.write_lock:
            return self._store_settled(items)

    def _store_settled(self, items: list[Item]) -> list[Outcome]:
        try:
            return self._store(items)
        except LOST_RACES:
            # Another writer (a second replica) accepted one of these event_ids, or corrected a leaver one of
            # them corrects, between our read and our commit: settle each event on its own, now that the
            # winner's row is visible.
            return [self._store_alone(item) for item in items]

    def _store_alone(self, item: Item) -> Outcome:
        """One event in its own transaction, again while it loses races: each lost race means a rival
        committed, so the next read sees its row (three replicas correcting one leaver lose twice)."""
        for _ in range(SETTLE_ATTEMPTS - 1):
            try:
                return self._store([item])[0]
            except LOST_RACES:
                continue
        return self._store([item])[0]  # losing this one too is a stampede: an error, not an answer

    def _store(self, items: list[Item]) -> list[Outcome]:
        ids = list({str(i.event.event_id) for i in items} | {c for i in items if (c := corrects(i.event))})
        # Core, not the ORM: a session and ORM rows cost ~40% of a small group's store (measured)
        with self.engine.begin() as connection:
            known: dict[str, _NewRow] = {row.event_id: row for row in self._known(connection, ids)}
            outcomes: list[Outcome] = []
            new_rows: dict[str, _NewRow] = {}  # event_id -> the submission row this transaction inserts
            new_outbox: list[dict[str, Any]] = []
            now = utcnow()
            for item in items:
                client, event = item.client, item.event
                event_id = str(event.event_id)
                previous = known.get(event_id)
                if previous is not None:
                    outcomes.append(self._replay(client, previous, item.digest, event))
                    continue
                target_id = corrects(event)
                if target_id is not None:
                    refused = _correction_refused(client, known.get(target_id), event_id)
                    if refused is not None:
                        outcomes.append(refused)
                        continue
                    target = known[target_id]
                    target.corrected_by = event_id  # one correction per event: the chain has one end
                    if target.stored:  # stored before: updated with this transaction
                        submissions = table_of(Submission)
                        updated = connection.execute(
                            update(submissions)
                            .where(submissions.c.event_id == target_id, submissions.c.corrected_by.is_(None))
                            .values(corrected_by=event_id)
                        )
                        if updated.rowcount != 1:
                            # Corrected by another writer since our read: two corrections would both be
                            # published, and a leaver's chain would have two ends.
                            raise CorrectionRaced(target_id)
                body = Accepted(
                    event_id=event.event_id,
                    event_type=event.event_type,
                    status_url=f"/v1/events/{event_id}",
                    warnings=advisories(event),
                ).model_dump(mode="json")
                row = _NewRow(event_id, client.id, event.event_type, item.digest, 202, body, now)
                new_rows[event_id] = known[event_id] = row
                # The unique event_id of the submission already rules out a second outbox row.
                new_outbox.append(
                    {
                        "event_id": event_id,
                        "topic": self.topic_for(event),
                        "key": partition_key(event),
                        "value": event.model_dump_json().encode(),
                        "created_at": now,
                        "published_at": None,
                    }
                )
                outcomes.append(Outcome(ItemOutcome.ACCEPTED, 202, body, event.event_id, event.event_type))
            if new_rows:
                self._insert(connection, Submission, [r.columns() for r in new_rows.values()])
                self._insert(connection, ReferralOutbox, new_outbox)
        return outcomes

    def topic_for(self, event: Envelope) -> str:
        """The intake topic of an accepted fact: the urgent lane, or the ordinary one."""
        if self.urgent_topic is not None and intake_for(event) is URGENT_INTAKE:
            return self.urgent_topic
        return self.intake_topic

    def _among(self, ids: list[str]) -> ColumnElement[bool]:
        """``event_id IN ids``; on PostgreSQL as ``= ANY(array)``: one statement text whatever the count, so
        it is compiled and planned once, not once per batch size."""
        event_id = table_of(Submission).c.event_id
        if self.postgres:
            return event_id == any_(bindparam("ids", ids, type_=ARRAY(String)))
        return event_id.in_(ids)

    def _known(self, connection: Connection, ids: list[str]) -> list[_NewRow]:
        """The stored submissions among these event ids (the idempotency records)."""
        table = table_of(Submission)
        columns = [table.c[name] for name in _NewRow.COLUMNS]
        rows = connection.execute(select_columns(*columns).where(self._among(ids))).all()
        return [_NewRow(**row._asdict(), stored=True) for row in rows]

    def _insert(self, connection: Connection, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
        """All rows in one statement: COPY on PostgreSQL (a batch of 100 was 100 pipelined INSERTs, ~60% of
        the store's time, measured), a multi-row executemany elsewhere. Same transaction either way."""
        table = table_of(model)
        if not self.postgres:
            connection.execute(insert(table), rows)
            return
        columns = list(rows[0])
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        raw = connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        names = ", ".join(columns)
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([Json(row[c]) if c in json_columns else row[c] for c in columns])

    @staticmethod
    def _replay(client: ApiClient, previous: Submission | _NewRow, digest: str, event: Envelope) -> Outcome:
        if previous.client_id != client.id or previous.request_hash != digest:
            problem = Problem(
                field="event_id",
                rule="event_id_reused",
                message="this event_id was already used for a different event; send a new event_id",
            )
            return rejection(409, [problem], ItemOutcome.CONFLICT)
        return Outcome(
            ItemOutcome.DUPLICATE,
            previous.response_code,
            previous.response_body,
            event.event_id,
            event.event_type,
        )

    def status(self, client: ApiClient, event_id: uuid.UUID) -> EventStatus | None:
        """Where a client's own event has got to; None for an unknown event or another client's."""
        with Session(self.engine) as session:
            row = session.exec(select(Submission).where(Submission.event_id == str(event_id))).first()
            if row is None or row.client_id != client.id:
                return None
            published_at = session.exec(
                select(ReferralOutbox.published_at).where(ReferralOutbox.event_id == row.event_id)
            ).first()
        if row.processed_at is not None:
            status = SubmissionStatus.PROCESSED
        elif published_at is not None:
            status = SubmissionStatus.PUBLISHED
        else:
            status = SubmissionStatus.ACCEPTED
        return EventStatus(
            event_id=uuid.UUID(row.event_id),
            event_type=row.event_type,
            status=status,
            accepted_at=row.accepted_at,
            published_at=published_at,
            processed_at=row.processed_at,
            child_id=uuid.UUID(row.child_id) if row.child_id else None,
            corrected_by=uuid.UUID(row.corrected_by) if row.corrected_by else None,
        )

    def original(self, client: ApiClient, event_id: uuid.UUID) -> tuple[Submission | None, bytes | None]:
        """A client's own submission and the event as it was accepted (None once the published outbox row
        has been purged by retention)."""
        with Session(self.engine) as session:
            row = session.exec(select(Submission).where(Submission.event_id == str(event_id))).first()
            if row is None or row.client_id != client.id:
                return None, None
            value = session.exec(
                select(ReferralOutbox.value).where(ReferralOutbox.event_id == row.event_id)
            ).first()
        return row, value

    def mark_processed(self, facts: dict[str, str]) -> int:
        """Record that tracking resolved these events (event_id -> child_id); returns how many were ours."""
        if not facts:
            return 0
        with self.write_lock, Session(self.engine) as session:
            rows = session.exec(select(Submission).where(col(Submission.event_id).in_(list(facts)))).all()
            for row in rows:
                if row.processed_at is None:
                    row.processed_at = utcnow()
                    row.child_id = facts[row.event_id]
                    session.add(row)
            session.commit()
            return len(rows)

    def outbox_depth(self) -> int:
        with Session(self.engine) as session:
            stmt = (
                select(func.count())
                .select_from(ReferralOutbox)
                .where(col(ReferralOutbox.published_at).is_(None))
            )
            return int(session.exec(stmt).one())
