"""The escalation worker: the Kafka consumers, the timer loop, the outbox relay and the gauges, one process.

Consumer: transitions, child facts and alert acks, one database transaction per fetched batch of a partition
(one per record when a batch fails, so only a failing record is retried and dead-lettered), offsets committed
after the transaction (a redelivery is a no-op thanks to the processed-events table); the records move their
partition's event-time watermark in the same transaction, and tracking's progress records on the transitions
topic move tracking's mark of their partition (and nothing else). A second consumer reads tracking's
provisional transitions (its urgent lane, cme.case-transitions-urgent.v1) the same way but moves no watermark,
so that they do not wait behind the bulk. Timer: marks the partitions it has read to
the end as caught up with now (the transitions topic's no further than tracking's mark), and tracking's mark
of each child-events partition as caught up with the latest time whose end (asked for after it) tracking's
offset covers, then decides what the horizon lets it (``services.escalation.watermarks``), one transaction per
deadline. Relay: publishes the outbox to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta

from aiokafka import TopicPartition
from sqlalchemy import func, insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.escalation import metrics
from services.escalation.acks import handle_ack
from services.escalation.child_context import load_children
from services.escalation.child_facts import handle_child_fact, remembers
from services.escalation.episodes import load_idle
from services.escalation.merges import handle_merge
from services.escalation.models import (
    DeadlineStatus,
    EscalationDeadline,
    EscalationOutbox,
    EscalationProcessedEvent,
    EscalationRecord,
    EscalationStatus,
)
from services.escalation.settings import EscalationRole, EscalationSettings
from services.escalation.timer import decide_due
from services.escalation.timesource import TimeSource
from services.escalation.transitions import handle_transition
from services.escalation.unit_of_work import SERVICE, Deps, Outcome, processed_id, set_record_partition
from services.escalation.watermarks import (
    EndSamples,
    Horizon,
    advance_tracking_mark,
    advance_watermark,
    load_horizon,
    tracking_mark_topic,
    tracking_offsets,
    watermarks,
)
from shared.consumer import ConsumerLoop, Record, add_dead_letter, new_consumer, outbox_dead_letter
from shared.db import session_scope
from shared.events.catalogue import decode_event, decode_inbound
from shared.events.envelope import Envelope, utcnow
from shared.events.internal import AlertAck, CaseTransition, ChildFact, ChildMerged, TrackingProgress
from shared.logs import bind_event, get_logger
from shared.outbox import OutboxRelay, new_producer
from shared.priority_lock import PriorityLock
from shared.sql import any_of
from shared.topics import ALERT_ACKS, CASE_TRANSITIONS, CHILD_EVENTS, DEAD_LETTER, URGENT_TRANSITIONS

log = get_logger(__name__)

FIRE_BATCH = 50  # deadlines decided per transaction


# The consumers each role runs; every role also runs the timer, the gauges and the outbox relay. The groups
# are the same whatever the role, so a deployment moves from one process to the split pair (or back) without
# losing or repeating a committed offset. Workers claim deadlines conditionally, so each role's timer may
# decide what falls due. A relay in each process means no alert waits for another process to be up: a row
# two relays send is published twice, and notify applies an event once (the first copy of a row always comes
# before the first copy of the next, as each relay sends in id order).
ROLE_CONSUMERS: dict[EscalationRole, tuple[str, ...]] = {
    "all": ("consumer", "urgent consumer"),
    "in_order": ("consumer",),
    "urgent": ("urgent consumer",),
}


def group_id(settings: EscalationSettings) -> str:
    return f"{settings.topic_prefix}cme-escalation"


def urgent_group_id(settings: EscalationSettings) -> str:
    return f"{settings.topic_prefix}cme-escalation-urgent"


class EscalationWorker:
    def __init__(
        self, settings: EscalationSettings, engine: Engine, deps: Deps, time_source: TimeSource
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._deps = deps
        self._time = time_source
        self._topics = {
            CASE_TRANSITIONS.name(settings): "transition",
            CHILD_EVENTS.name(settings): "child_fact",
            ALERT_ACKS.name(settings): "ack",
            URGENT_TRANSITIONS.name(settings): "transition",
        }
        # The inputs a deadline depends on: its partition's horizon is the lowest watermark of these,
        # tracking's mark included unless switched off for a rolling upgrade. Acks are people acting now,
        # not facts about the child, and are applied when read.
        self._transitions_topic = CASE_TRANSITIONS.name(settings)
        self._read_topics = (self._transitions_topic, CHILD_EVENTS.name(settings))
        self._tracking_mark = tracking_mark_topic(CHILD_EVENTS.name(settings))
        self._mark_required = settings.escalation_require_tracking_mark
        self._horizon_topics = self._read_topics + ((self._tracking_mark,) if self._mark_required else ())
        # The child-events ends asked for (each after sampling the time): tracking is caught up at t when its
        # mark covers an end asked for after t.
        self._facts_ends = EndSamples()
        self._inputs = {
            self._transitions_topic: "transitions",
            CHILD_EVENTS.name(settings): "child_events",
            self._tracking_mark: "tracking",
        }
        self._live_window = timedelta(seconds=settings.escalation_live_window_s)
        self._dead_letter_topic = DEAD_LETTER.name(settings)
        self._wake = asyncio.Event()
        urgent = URGENT_TRANSITIONS.name(settings)
        read_in_order = [t for t in self._topics if t != urgent]
        self._loop = ConsumerLoop(
            "escalation-consumer",
            lambda: new_consumer(settings, read_in_order, group_id(settings), "cme-escalation"),
            self._handle_in_order,
            outbox_dead_letter(engine, EscalationOutbox, self._dead_letter_topic, SERVICE),
            max_records=200,
            poll_ms=300,
            after_poll=self._wake.set,  # an immediate rule may be due now
        )
        # Tracking's provisional transitions (its urgent lane), read by a consumer of their own so that they
        # do not wait behind the bulk's transitions and facts; no watermark moves for them (their in-order
        # twins follow on the transitions topic), and what they start immediately is decided at once.
        self._urgent_loop = ConsumerLoop(
            "escalation-urgent-consumer",
            lambda: new_consumer(settings, [urgent], urgent_group_id(settings), "cme-escalation-urgent"),
            self._handle_urgent,
            outbox_dead_letter(engine, EscalationOutbox, self._dead_letter_topic, SERVICE),
            max_records=200,
            poll_ms=300,
            after_poll=self._wake.set,
        )
        # Every process relays (one_relay=False): an alert the urgent process decides is published by that
        # process at once, not at another's next poll; notify applies a row sent twice once.
        self.relay = OutboxRelay(
            engine,
            EscalationOutbox,
            lambda: new_producer(settings, "cme-escalation"),
            idle_s=0.1,
            one_relay=False,
        )
        self._stop = asyncio.Event()
        # One unit of work at a time in this process (no self-deadlocks); the urgent consumer and the
        # due-check go before the in-order consumer's next batch (shared/priority_lock.py).
        self._turn = PriorityLock()
        self._tasks: list[asyncio.Task[None]] = []
        self._timer_turn: float | None = None  # time.monotonic() at the timer's latest turn
        self._consumers: list[ConsumerLoop] = []  # the consumer loops this process's role runs

    async def start(self) -> None:
        self._time.now()  # a simulated time file that is missing or invalid stops the start, loudly
        loops = {"consumer": self._loop, "urgent consumer": self._urgent_loop}
        consumers = [(name, loops[name]) for name in ROLE_CONSUMERS[self._settings.escalation_role]]
        self._consumers = [loop for _, loop in consumers]
        for _, loop in consumers:
            await loop.start()
        self._stop.clear()
        self._timer_turn = time.monotonic()  # judged from here: waiting for the broker above is not stuck
        self._tasks = [
            asyncio.create_task(self._guard("timer", self._timer)),
            asyncio.create_task(self._guard("gauges", self._gauges)),
            asyncio.create_task(self.relay.run(self._stop)),
        ]
        for name, loop in consumers:
            run = functools.partial(loop.run, self._stop)
            self._tasks.append(asyncio.create_task(self._guard(name, run)))
        log.info(
            "escalation_worker_started",
            simulated_time=self._time.simulated,
            role=self._settings.escalation_role,
        )

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._tasks = []
        await self._loop.stop()
        await self._urgent_loop.stop()

    async def _guard(self, name: str, loop: Callable[[], object]) -> None:
        """Keep a loop alive across unexpected errors (logged), until stop."""
        while not self._stop.is_set():
            try:
                await loop()  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation_loop_failed", loop=name)
                await asyncio.sleep(1.0)

    # -- consumer ---------------------------------------------------------------------------------------

    async def _handle_in_order(self, raws: Sequence[Record]) -> None:
        """A partition's records in one transaction (the loop goes one by one when it fails)."""
        await self._handle("in_order", raws)

    async def _handle_urgent(self, raws: Sequence[Record]) -> None:
        await self._handle("urgent", raws)

    async def _handle(self, by: str, raws: Sequence[Record]) -> None:
        async with self._unit_of_work(by):
            outcomes = await asyncio.to_thread(self.handle_records, list(raws))
            decided = await asyncio.to_thread(self._decide_in_turn)
        if decided or any(o.published for o in outcomes):
            self.relay.wakeup.set()  # committed: publish now, not at the relay's next idle poll

    def _decide_in_turn(self) -> int:
        """Right after the records, in the same turn, decide what the horizon lets us decide now (what a
        due-check would decide next, in the same order): the immediate deadlines the records started (an
        at-risk child's social care and police alerts, a missing child's caseworker alert) go out without
        waiting for the due-check's two turns. In a transaction of its own: a failure leaves them to the
        due-check and never fails the records, which are committed."""
        try:
            now = self._time.now()
            return self._fire(now, self._horizon(now), FIRE_BATCH)
        except Exception:
            log.exception("decide_in_turn_failed")
            return 0

    @contextlib.asynccontextmanager
    async def _unit_of_work(self, by: str) -> AsyncIterator[None]:
        """This process's turn to write, urgent for all but the in-order consumer, timed for the metrics."""
        asked = time.perf_counter()
        async with self._turn.hold(urgent=by != "in_order"):
            got = time.perf_counter()
            metrics.LOCK_WAIT.labels(by).observe(got - asked)
            try:
                yield
            finally:
                metrics.LOCK_HELD.labels(by).observe(time.perf_counter() - got)

    def handle_record(self, raw: Record) -> Outcome:
        return self.handle_records([raw])[0]

    def handle_records(self, raws: list[Record]) -> list[Outcome]:
        """Records of one partition, in order, in one transaction. A record that cannot be decoded is
        dead-lettered (in the same transaction), not retried."""
        decoded: list[tuple[Record, Envelope | BaseException]] = []
        facts: dict[int, Envelope] = {}  # id() of a child fact -> its inbound fact, decoded once
        for raw in raws:
            try:
                event = decode_event(raw.value)
                if isinstance(event, ChildFact):
                    # A fact we cannot read is a dead letter, not a retry.
                    facts[id(event)] = decode_inbound(event.payload.fact)
                decoded.append((raw, event))
            except Exception as exc:
                decoded.append((raw, exc))
        now = self._time.now()
        results: list[tuple[Record, Envelope | None, Outcome]] = []
        with session_scope(self._engine) as session:
            newest: dict[tuple[str, int], datetime] = {}
            # Event ids already handled, read for the whole batch at once; the new ones are written together
            # at the end of the batch's transaction (a redelivery is a no-op).
            ids = [processed_id(item) for _, item in decoded if isinstance(item, Envelope)]
            seen = set(
                session.exec(
                    select(EscalationProcessedEvent.event_id).where(
                        any_of(session, col(EscalationProcessedEvent.event_id), ids)
                    )
                ).all()
            )
            first_is_fact, unsettled = self._batch_children(decoded, facts, seen)
            load_children(session, first_is_fact, unsettled)
            load_idle(session, [key for key in first_is_fact if key not in unsettled])
            processed: list[dict[str, object]] = []
            tracking: dict[int, tuple[int, datetime | None]] = {}  # partition -> (next offset, folded to)
            for raw, item in decoded:
                if not isinstance(item, Envelope):
                    self._add_dead_letter(session, raw, item, 1)
                    results.append((raw, None, Outcome("dead_lettered")))
                    continue
                if isinstance(item, TrackingProgress):
                    # Tracking's mark: it moves tracking's watermark of its partition and nothing else (no
                    # processed-event row either: the mark only moves forward, so a repeat is harmless).
                    results.append((raw, item, self._progress(raw, item, tracking)))
                    continue
                bind_event(item)
                set_record_partition(session, raw.partition)
                remembered_as = processed_id(item)
                if remembered_as in seen:
                    outcome = Outcome("duplicate")
                else:
                    seen.add(remembered_as)
                    processed.append(
                        {"event_id": remembered_as, "topic": raw.topic, "processed_at": utcnow()}
                    )
                    outcome = self._dispatch(session, item, now, facts.get(id(item)))
                results.append((raw, item, outcome))
                if raw.topic in self._read_topics:
                    where = (raw.topic, raw.partition)
                    if where not in newest:
                        newest[where] = watermarks(session, [raw.topic]).get(where) or item.occurred_at
                    if item.occurred_at < newest[where]:
                        # Older than what the partition has already shown: what was decided stays decided.
                        metrics.LATE_RECORDS.labels(kind=self._topics[raw.topic]).inc()
                    newest[where] = max(newest[where], item.occurred_at)
            if processed:
                session.execute(insert(EscalationProcessedEvent), processed)
            for (topic, partition), moment in newest.items():
                advance_watermark(session, topic, partition, moment)
            for partition, (next_offset, folded_to) in tracking.items():
                advance_tracking_mark(session, self._tracking_mark, partition, next_offset, folded_to)
        for raw, handled, outcome in results:
            kind = (
                "tracking_progress"
                if isinstance(handled, TrackingProgress)
                else self._topics.get(raw.topic, "unknown")
            )
            metrics.RECORDS.labels(kind=kind, outcome=outcome.action).inc()
            if handled is None:
                log.error("record_dead_lettered", topic=raw.topic, partition=raw.partition, offset=raw.offset)
                continue
            if isinstance(handled, TrackingProgress):
                continue  # one per partition per second: counted, not logged
            log.info(
                "record_handled",
                outcome=outcome.action,
                started=outcome.started,
                cancelled=outcome.cancelled,
                published=outcome.published,
                **handled.log_fields(),
            )
        return [outcome for _, _, outcome in results]

    def _progress(
        self, raw: Record, mark: TrackingProgress, tracking: dict[int, tuple[int, datetime | None]]
    ) -> Outcome:
        """Tracking's mark of a partition; it must come on the same partition of the transitions topic, after
        the transitions it covers (a mark elsewhere proves nothing about them, and is not applied)."""
        p = mark.payload
        if raw.topic != self._transitions_topic or raw.partition != p.partition:
            log.error(
                "tracking_progress_misrouted", topic=raw.topic, partition=raw.partition, names=p.partition
            )
            return Outcome("misrouted")
        offset, folded = tracking.get(p.partition, (p.next_offset, p.folded_to))
        if p.folded_to is not None:
            folded = p.folded_to if folded is None else max(folded, p.folded_to)
        tracking[p.partition] = (max(offset, p.next_offset), folded)
        return Outcome("progress")

    @staticmethod
    def _batch_children(
        decoded: Sequence[tuple[Record, Envelope | BaseException]], facts: dict[int, Envelope], seen: set[str]
    ) -> tuple[dict[tuple[str, str], bool], set[tuple[str, str]]]:
        """The children of the batch's new transitions and child facts, each with whether the first of its
        records that reads or writes what escalation knows of it is a child fact
        (``child_context.load_children``; a retraction does neither); and the children whose history a
        transition re-folds, whose alert is acknowledged or who are merged (``episodes.load_idle``)."""
        first: dict[tuple[str, str], bool] = {}
        unsettled: set[tuple[str, str]] = set()
        for _, item in decoded:
            if isinstance(item, BaseException) or processed_id(item) in seen:
                continue  # unreadable, or a redelivery (not applied again)
            if isinstance(item, CaseTransition):
                key = (str(item.payload.child_id), item.payload.la_code)
                first.setdefault(key, False)
                if item.payload.history is not None:
                    unsettled.add(key)
            elif isinstance(item, ChildFact) and remembers(facts[id(item)]):
                first.setdefault((str(item.payload.child_id), item.payload.la_code), True)
            elif isinstance(item, AlertAck):
                unsettled.add((str(item.payload.child_id), item.payload.la_code))
            elif isinstance(item, ChildMerged):
                p = item.payload
                unsettled |= {(str(p.merged_child_id), p.la_code), (str(p.surviving_child_id), p.la_code)}
        return first, unsettled

    def _dispatch(
        self, session: Session, event: Envelope, now: datetime, fact: Envelope | None = None
    ) -> Outcome:
        """``fact``: a child fact's inbound fact, already decoded."""
        if isinstance(event, CaseTransition):
            return handle_transition(session, self._deps, event, now)
        if isinstance(event, ChildFact):
            return handle_child_fact(session, self._deps, event, now, fact)
        if isinstance(event, AlertAck):
            return handle_ack(session, self._deps, event, now)
        if isinstance(event, ChildMerged):
            return handle_merge(session, self._deps, event, now)
        # A split needs nothing here: tracking re-opens the restored case with a transition.
        return Outcome("not_watched")

    def _add_dead_letter(self, session: Session, raw: Record, exc: BaseException, attempts: int) -> None:
        add_dead_letter(session, EscalationOutbox, self._dead_letter_topic, SERVICE, raw, exc, attempts)

    # -- timer ------------------------------------------------------------------------------------------

    def turns(self) -> dict[str, float | None]:
        """Each loop's latest turn (liveness, ``shared.ops.loops_turning``): the timer, which decides every
        statutory clock, the consumers and the relay. None: not running (before start)."""
        consumers = {loop.name: loop.last_turn for loop in self._consumers}
        return {"timer": self._timer_turn, **consumers, "outbox-relay": self.relay.last_turn}

    async def _timer(self) -> None:
        while not self._stop.is_set():
            self._timer_turn = time.monotonic()
            fired = 0
            try:
                fired = await self.run_due_check()
                metrics.DUE_CHECK_COMPLETED.set_to_current_time()
            except Exception:
                log.exception("due_check_failed")
            if fired >= self._settings.escalation_due_batch:
                continue  # more may be due: do not wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.escalation_tick_s)
            self._wake.clear()

    async def mark_caught_up(self) -> int:
        """Move the watermark of every assigned input partition this consumer has read and handled to the end
        to the time sampled *before* asking the broker where the end is: every record published by then was
        below that end, so every fact up to then is applied. Tracking's mark of a child-events partition
        moves to the latest such time whose end its offset covers (the mark, read here after the transitions
        it covers, names the offset; the ends are kept a while, so a mark a second behind a partition that
        keeps growing still counts). The transitions topic's goes no further than tracking's mark: reading it
        to the end proves every transition tracking had relayed is read, not that tracking had folded every
        fact up to now. Returns how many partitions were caught up."""
        consumer = self._loop.consumer
        if consumer is None:
            return 0
        mark = self._time.now()
        partitions = [tp for tp in consumer.assignment() if tp.topic in self._read_topics]
        if not partitions:
            return 0
        try:
            ends = await consumer.end_offsets(partitions)
        except Exception:
            log.warning("end_offsets_failed", partitions=len(partitions))
            return 0
        caught: list[TopicPartition] = []
        for tp in partitions:
            position = await consumer.position(tp)
            # Checked after the await: records fetched meanwhile are not handled yet.
            if tp not in self._loop.pending and position >= ends.get(tp, position + 1):
                caught.append(tp)
        for tp, end in ends.items():
            if tp.topic != self._transitions_topic:
                self._facts_ends.add(tp.partition, mark, end)

        def write() -> None:
            with session_scope(self._engine) as session:
                for partition, next_offset in tracking_offsets(session, self._tracking_mark).items():
                    caught_up_at = self._facts_ends.caught_up_at(partition, next_offset)
                    if caught_up_at is not None:
                        advance_watermark(session, self._tracking_mark, partition, caught_up_at)
                tracking = watermarks(session, [self._tracking_mark]) if self._mark_required else {}
                for tp in caught:
                    moment = mark
                    if self._mark_required and tp.topic == self._transitions_topic:
                        folded = tracking.get((self._tracking_mark, tp.partition))
                        if folded is None:
                            continue
                        moment = min(mark, folded)
                    advance_watermark(session, tp.topic, tp.partition, moment)

        async with self._unit_of_work("due_check"):
            await asyncio.to_thread(write)
        return len(caught)

    async def run_due_check(self) -> int:
        """One due-check: mark what is caught up, then decide every deadline the horizon lets us (up to one
        batch, in transactions of FIRE_BATCH); returns how many were decided."""
        await self.mark_caught_up()
        now = self._time.now()
        current = await asyncio.to_thread(self._horizon, now)
        total = 0
        while total < self._settings.escalation_due_batch:
            limit = min(FIRE_BATCH, self._settings.escalation_due_batch - total)
            async with self._unit_of_work("due_check"):
                decided = await asyncio.to_thread(self._fire, now, current, limit)
            total += decided
            if decided < limit:
                break
        if total:
            self.relay.wakeup.set()
        return total

    def _horizon(self, now: datetime) -> Horizon:
        started = time.perf_counter()
        with Session(self._engine) as session:
            found = load_horizon(session, self._horizon_topics, now, self._live_window)
            marks = watermarks(session, self._inputs)
        metrics.DUE_CHECK_SECONDS.observe(time.perf_counter() - started)
        for (topic, partition), moment in marks.items():
            lag = max(0.0, (now - moment).total_seconds())
            metrics.HORIZON_LAG.labels(partition=str(partition), input=self._inputs[topic]).set(lag)
        return found

    def _fire(self, now: datetime, horizon: Horizon, limit: int) -> int:
        """Decide due deadlines in one transaction, in due order (the order every worker claims them in, so
        two workers never wait on each other in a cycle); a failure rolls them all back for the next check."""
        with session_scope(self._engine) as session:
            decided = decide_due(session, self._deps, now, horizon, limit)
        for deadline_id, outcome in decided:
            log.info(
                "deadline_fired", deadline_id=deadline_id, outcome=outcome.action, published=outcome.published
            )
        return len(decided)

    # -- gauges -----------------------------------------------------------------------------------------

    async def _gauges(self) -> None:
        while not self._stop.is_set():
            await asyncio.to_thread(self._refresh_gauges)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=10.0)

    def _refresh_gauges(self) -> None:
        with Session(self._engine) as session:
            pending = session.exec(
                select(func.count())
                .select_from(EscalationDeadline)
                .where(col(EscalationDeadline.status) == DeadlineStatus.PENDING)
            ).one()
            open_escalations = session.exec(
                select(func.count())
                .select_from(EscalationRecord)
                .where(col(EscalationRecord.status) == EscalationStatus.OPEN)
            ).one()
        metrics.OPEN_DEADLINES.set(pending)
        metrics.OPEN_ESCALATIONS.set(open_escalations)
