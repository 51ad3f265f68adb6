"""The one consumer loop of the plain (aiokafka) consumers, with the one dead-letter policy.

Policy (docs/ARCHITECTURE.md, "Dead letters"), decided by ``decide`` from the error a handler raised:

- poison: the record itself is wrong (it cannot be decoded or validated: ``POISON``). Retrying cannot help: it
  is dead-lettered at once (attempts=1) with its error type and message, and the partition moves on.
- transient: the database or the broker is away (``TRANSIENT``). The record is retried, with a backoff
  (``backoff``), until it succeeds: an outage only delays a partition, it never dead-letters good records.
- anything else (a bug, a conflict): retried ``MAX_ATTEMPTS`` times with the backoff, then dead-lettered with
  the number of attempts; the partition moves on.

A dead letter is written by the service (its outbox, so in its own transaction) and is retried until it is
written; only then is the record's offset committed. Offsets are committed after the handler's transaction:
a crash in between redelivers the record, which handlers make a no-op (processed event ids).

The loop hands a partition's fetched records to the handler together (one transaction); when that fails it
goes one record at a time, so only the failing record is retried or dead-lettered. A record being retried is
read again on the next poll (the consumer seeks back to it): the loop keeps polling, so a long outage does
not take the consumer out of its group, and the other partitions keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Histogram
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from shared.db import session_scope
from shared.deadletter import dead_letter_for
from shared.kafka import RETRY_S, aiokafka_config, start_with_retry, wait_for_event
from shared.logs import get_logger
from shared.outbox import OutboxBase, add_to_outbox
from shared.settings import Settings

log = get_logger(__name__)

# The record itself is wrong: retrying cannot help.
POISON: tuple[type[BaseException], ...] = (ValidationError, ValueError, KeyError, TypeError, AssertionError)
# The infrastructure is away: retry until it is back.
TRANSIENT: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, TimeoutError)
MAX_ATTEMPTS = 5
RECORD_AGE = Histogram(
    "cme_consumer_record_age_seconds",
    "How old the first record of each partition's fetch is when the consumer gets it (now minus its Kafka "
    "timestamp): how long it took the producer, the broker and this consumer's poll to bring it here",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, record: ConsumerRecord) -> Record:  # type: ignore[type-arg]
        return cls(record.topic, record.partition, record.offset, record.key, record.value or b"")

    def where(self) -> dict[str, Any]:
        """Where the record is, for log lines (never its key or value: they can name a child)."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class Decision:
    action: Literal["retry", "dead_letter"]
    reason: str  # "poison", "transient" or "attempts"
    delay_s: float = 0.0


def backoff(attempt: int) -> float:
    """Seconds before the next try after ``attempt`` failed ones: 0.5, 1, 2, 4, 8, then 10."""
    return float(min(0.5 * 2 ** (attempt - 1), 10.0))


def decide(error: BaseException, attempt: int, max_attempts: int = MAX_ATTEMPTS) -> Decision:
    """What to do with a record whose handler raised ``error`` on its ``attempt``-th try."""
    # A database error that says the connection is gone is transient, whatever it wraps.
    if isinstance(error, TRANSIENT) or (isinstance(error, DBAPIError) and error.connection_invalidated):
        return Decision("retry", "transient", backoff(attempt))
    if isinstance(error, POISON):
        return Decision("dead_letter", "poison")
    if attempt >= max_attempts:
        return Decision("dead_letter", "attempts")
    return Decision("retry", "error", backoff(attempt))


Handle = Callable[[Sequence[Record]], Awaitable[Any]]
DeadLetter = Callable[[Record, BaseException, int], Awaitable[None]]


def add_dead_letter(
    session: Session,
    outbox: type[OutboxBase],
    dead_letter_topic: str,
    service: str,
    record: Record,
    error: BaseException,
    attempts: int,
) -> None:
    """Queue the dead letter of ``record`` in the caller's transaction (the service's outbox)."""
    dead = dead_letter_for(
        service=service, key=record.key, value=record.value, error=error, attempts=attempts, **record.where()
    )
    key = record.key.decode(errors="replace") if record.key else None
    add_to_outbox(session, outbox, dead_letter_topic, key, dead)


def outbox_dead_letter(
    engine: Engine, outbox: type[OutboxBase], dead_letter_topic: str, service: str
) -> DeadLetter:
    """A ``DeadLetter`` that writes to the service's outbox in its own transaction."""

    def write(record: Record, error: BaseException, attempts: int) -> None:
        with session_scope(engine) as session:
            add_dead_letter(session, outbox, dead_letter_topic, service, record, error, attempts)

    async def dead_letter(record: Record, error: BaseException, attempts: int) -> None:
        await asyncio.to_thread(write, record, error, attempts)

    return dead_letter


def new_consumer(
    settings: Settings, topics: Sequence[str], group_id: str, client_id: str
) -> AIOKafkaConsumer:
    """The one consumer configuration: a consumer group, offsets committed by the loop only, a new group
    starting from the earliest record (nothing published before a service's first start is skipped)."""
    return AIOKafkaConsumer(
        *topics,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=client_id,
        **aiokafka_config(settings),
    )


class ConsumerLoop:
    """Polls one aiokafka consumer and hands each partition's records to ``handle`` under the policy above.

    ``pending`` holds the partitions whose fetched records are not handled yet (escalation's clock reads it:
    a partition is caught up only once what was fetched from it is handled)."""

    def __init__(
        self,
        name: str,
        make_consumer: Callable[[], AIOKafkaConsumer],
        handle: Handle,
        dead_letter: DeadLetter,
        *,
        max_records: int = 200,
        poll_ms: int = 500,
        after_poll: Callable[[], None] | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.name = name
        self.make_consumer = make_consumer
        self.handle = handle
        self.dead_letter = dead_letter
        self.max_records = max_records
        self.poll_ms = poll_ms
        self.after_poll = after_poll  # e.g. wake a dispatcher or a timer
        self.max_attempts = max_attempts
        self.consumer: AIOKafkaConsumer | None = None
        self.pending: set[TopicPartition] = set()
        # time.monotonic() at the loop's latest turn (a poll, handled or failed); None until it runs. A loop
        # whose turn is old is stuck in an await that never returns (a liveness check reads it).
        self.last_turn: float | None = None
        self._attempts: dict[tuple[str, int, int], int] = {}  # failed tries of a record being retried
        self._stop = asyncio.Event()

    async def start(self, stop: asyncio.Event | None = None) -> bool:
        """Start the consumer, waiting for the broker; False if ``stop`` was set first."""
        self._stop.clear()
        self.consumer = await start_with_retry(self.make_consumer, stop or self._stop, self.name)
        return self.consumer is not None

    async def stop(self) -> None:
        self._stop.set()
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and handle until ``stop`` is set (``start`` first, or it starts the consumer itself)."""
        if self.consumer is None and not await self.start(stop):
            return
        while not stop.is_set():
            self.last_turn = time.monotonic()
            try:
                await self.poll_once(stop)
            except Exception as exc:
                # A fetch refused mid-rebalance or a broker away must not end the loop: a dead loop left its
                # service running and "not ready", its partitions unread until someone restarted it. (A
                # partition's own failures are handled in poll_once, which seeks it back.)
                log.error(
                    "consumer_poll_failed",
                    consumer=self.name,
                    error_type=type(exc).__name__,
                    error=str(exc)[:200],
                )
                self.pending.clear()
                await wait_for_event(stop, RETRY_S)

    async def poll_once(self, stop: asyncio.Event) -> None:
        consumer = self.consumer
        assert consumer is not None, "start() first"
        fetched = await consumer.getmany(timeout_ms=self.poll_ms, max_records=self.max_records)
        self.pending = {tp for tp, records in fetched.items() if records}
        now_ms = time.time() * 1000
        for records in fetched.values():
            if records and records[0].timestamp is not None:
                RECORD_AGE.labels(self.name).observe(max(0.0, now_ms - records[0].timestamp) / 1000)
        delay = 0.0
        for tp, records in fetched.items():
            if records:
                try:
                    delay = max(delay, await self._partition(consumer, tp, [Record.of(r) for r in records]))
                except Exception as exc:  # a commit refused (a rebalance), the broker away: read them again
                    log.warning("partition_failed", consumer=self.name, error_type=type(exc).__name__)
                    with contextlib.suppress(Exception):  # revoked meanwhile: its next owner reads them
                        consumer.seek(tp, records[0].offset)
                    delay = max(delay, RETRY_S)
            self.pending.discard(tp)
        if fetched and self.after_poll is not None:
            self.after_poll()
        if delay:
            await wait_for_event(stop, delay)  # a record is being retried: give the outage time

    async def _partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[Record]
    ) -> float:
        """Handle one partition's records; returns the wait before a failed one is tried again (0: none)."""
        retrying = any((r.topic, r.partition, r.offset) in self._attempts for r in records)
        if len(records) > 1 and not retrying:
            try:
                await self.handle(records)
                await consumer.commit({tp: records[-1].offset + 1})
                return 0.0
            except Exception as exc:
                log.warning(
                    "batch_one_by_one", consumer=self.name, size=len(records), error_type=type(exc).__name__
                )
        for record in records:
            delay = await self._one(consumer, tp, record)
            if delay:
                consumer.seek(tp, record.offset)  # read it again on a later poll; later records wait for it
                return delay
        return 0.0

    async def _one(self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: Record) -> float:
        where = (record.topic, record.partition, record.offset)
        try:
            await self.handle([record])
        except Exception as exc:
            attempt = self._attempts.get(where, 0) + 1
            decision = decide(exc, attempt, self.max_attempts)
            error_type = type(exc).__name__
            log.warning(
                "record_failed",
                consumer=self.name,
                attempt=attempt,
                decision=decision.action,
                reason=decision.reason,
                error_type=error_type,
                **record.where(),
            )
            if decision.action == "retry":
                self._attempts[where] = attempt
                return decision.delay_s
            try:
                await self.dead_letter(record, exc, attempt)
            except Exception as failed:  # its outbox is away too: keep the record, try it again later
                self._attempts[where] = attempt - 1
                log.warning("dead_letter_failed", consumer=self.name, error_type=type(failed).__name__)
                return backoff(attempt)
            log.error("record_dead_lettered", consumer=self.name, attempts=attempt, reason=decision.reason,
                      error_type=error_type, **record.where())  # fmt: skip
        self._attempts.pop(where, None)
        await consumer.commit({tp: record.offset + 1})
        return 0.0
