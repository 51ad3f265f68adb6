"""The attendance faust worker: marks from cme.attendance.v1 (keyed by UPN) into a per-pupil table, absence
threshold crossings and retractions out onto cme.intake.v1 (as a school's facts would arrive).

Marks are taken in batches (``attendance_batch_max`` marks, or what came within ``attendance_batch_linger_s``)
and handled per partition in offset order: the batch is folded per pupil in memory (``fold.MarkHandler``),
its events and dead letters are sent and their acknowledgements awaited together, then each changed pupil's
table entry is written once. Only then may the batch's offsets be committed.

Delivery is at least once: events are acknowledged by the broker before the pupil's state is written and
before the offset may be committed, so after a crash the marks are applied again to the recovered state and
the same events (same deterministic event_ids) are sent again; the tracking service deduplicates on event_id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import faust

from services.attendance import metrics
from services.attendance.fold import Folded, MarkHandler
from services.attendance.rules import AttendanceRules
from services.attendance.settings import AttendanceSettings, attendance_settings
from services.attendance.state import AttendanceEngine
from shared.deadletter import dead_letter_for
from shared.events.catalogue import encode_event
from shared.kafka import ensure_topics
from shared.logs import get_logger
from shared.school_calendar import CalendarRegistry
from shared.settings import Settings
from shared.startup import retry_until_done
from shared.stream_batching import batches, by_partition, current, release
from shared.streams import raw_topic, stream_app
from shared.topics import ATTENDANCE, DEAD_LETTER, INTAKE

log = get_logger(__name__)

STATE_TABLE = "attendance-state"


def app_id(settings: Settings) -> str:
    # The prefix makes each test (and each side-by-side deployment) its own consumer group and changelog.
    return f"{settings.topic_prefix}cme-attendance"


def make_engine(cfg: AttendanceSettings) -> AttendanceEngine:
    rules = AttendanceRules(overrides_dir=cfg.attendance_rules_dir)
    return AttendanceEngine(CalendarRegistry(cfg.calendars_dir), rules)


def create_faust_app(settings: Settings, *, prepare: bool = True) -> faust.App:
    """Build the faust app. With ``prepare`` the topics are created first (a faust worker started before its
    source topic exists never consumes it on Kafka 4, see docs/KAFKA_VERSIONS.md)."""
    cfg = attendance_settings(settings)
    if prepare:
        # Started before Kafka, the worker waits for it (the API, if any, answers not ready meanwhile).
        topics = (ATTENDANCE, INTAKE, DEAD_LETTER)
        retry_until_done("attendance", "topics", lambda: ensure_topics(cfg, topics))
    app = stream_app(cfg, app_id(cfg), cfg.attendance_store, state_dir=f"{cfg.topic_prefix}attendance-faust")
    # A batch sends its events and its table's changelog records together: the shared producer linger
    # (CME_STREAM_PRODUCER_LINGER_S) packs them into a few requests instead of one per record (aiokafka's
    # sender took ~14% of the worker's time without it; about +35% marks/s measured); bigger requests too.
    app.conf.producer_max_batch_size = 256 * 1024
    marks_topic = raw_topic(app, ATTENDANCE.name(cfg))
    intake = raw_topic(app, INTAKE.name(cfg))
    dead_letter = raw_topic(app, DEAD_LETTER.name(cfg))
    # Keys are UPN bytes, values PupilAttendance.to_bytes(): a few hundred bytes to a few KB per pupil.
    # (The app's raw key/value serializers apply to the table's changelog too.)
    table = app.Table(
        STATE_TABLE, default=None, partitions=cfg.topic_partitions, key_type=bytes, value_type=bytes
    )
    handler = MarkHandler(make_engine(cfg))

    def dead_letters(events: Sequence[Any], folded: Folded) -> list[tuple[Any, bytes, bytes]]:
        out = []
        for poisoned in folded.poisoned:
            event = events[poisoned.index]
            msg = event.message
            key: bytes = event.key or b""
            letter = dead_letter_for(
                service="attendance", topic=msg.topic, partition=msg.partition, offset=msg.offset,
                key=key, value=event.value, error=poisoned.error,
            )  # fmt: skip
            out.append((dead_letter, key, encode_event(letter)))
            log.warning(
                "mark_dead_lettered",
                offset=msg.offset,
                partition=msg.partition,
                error_type=type(poisoned.error).__name__,
            )
        return out

    async def handle_partition(events: Sequence[Any]) -> None:
        """One partition's events of a batch, in offset order: fold, send and await, then write state."""
        started = time.perf_counter()
        current(events[0])
        folded = handler.fold([(e.key or b"", e.value) for e in events], table.get)
        metrics.APPLY_SECONDS.observe((time.perf_counter() - started) / len(events))
        if folded.one_by_one:
            metrics.BATCH_FALLBACKS.inc()
            log.warning(
                "batch_one_by_one",
                marks=len(events),
                poisoned=len(folded.poisoned),
                partition=events[0].message.partition,
            )
        messages = dead_letters(events, folded)
        messages += [(intake, out.key, out.value) for out in folded.emitted]
        # Send in order (the producer keeps the order within a partition, so per pupil), then wait for every
        # acknowledgement at once: the state and the offsets move on only once the outputs exist.
        pending = [await topic.send(key=key, value=value) for topic, key, value in messages]
        if pending:
            await asyncio.gather(*pending)
        for key, state in folded.states.items():
            table[key] = state
        for outcome, count in folded.outcomes.items():
            metrics.MARKS.labels(outcome).inc(count)
        for out in folded.emitted:
            metrics.THRESHOLD_EVENTS.labels(out.event_type, out.rule).inc()
        metrics.BATCH_MARKS.observe(len(events))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if folded.emitted:
            log.info(
                "thresholds_emitted",
                count=len(folded.emitted),
                partition=events[0].message.partition,
                event_ids=[out.event_id for out in folded.emitted],
            )

    @app.agent(marks_topic)
    async def process_marks(stream: Any) -> None:
        async for events in batches(stream, cfg.attendance_batch_max, cfg.attendance_batch_linger_s):
            try:
                for group in by_partition(events):
                    await handle_partition(group)
                    release(group)
            except Exception as exc:
                # Sending or the table failed: the held events stay uncommitted and come again after restart.
                # Crash the worker (its supervisor restarts it) and take nothing more meanwhile: a restarted
                # agent would let later marks of these pupils overtake the failed ones.
                log.error("batch_failed", error_type=type(exc).__name__, batch=len(events))
                await app.crash(exc)
                await asyncio.Event().wait()  # until the stopping worker cancels this task

    return app
