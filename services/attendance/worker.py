"""The attendance faust worker: marks from cme.attendance.v1 (keyed by UPN) into a per-pupil table, absence
threshold crossings and retractions out onto cme.intake.v1 (as a school's facts would arrive).

Delivery is at least once: a crossing is sent before the pupil's state is written and the offset committed,
so after a crash the mark is applied again to the recovered state and the same event (same deterministic
event_id) is sent again; the tracking service deduplicates on event_id.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import faust
from pydantic import ValidationError

from services.attendance import metrics
from services.attendance.rules import AttendanceRules
from services.attendance.settings import AttendanceSettings, attendance_settings
from services.attendance.state import AttendanceEngine, PupilAttendance, SessionMark
from shared.deadletter import dead_letter_for
from shared.events.attendance import AttendanceMark
from shared.events.catalogue import encode_event
from shared.kafka import ensure_topics
from shared.logs import bind_event, get_logger
from shared.school_calendar import CalendarRegistry
from shared.settings import Settings
from shared.streams import raw_topic, stream_app
from shared.topics import ATTENDANCE, DEAD_LETTER, INTAKE

log = get_logger(__name__)
STATE_TABLE = "attendance-state"


def app_id(settings: Settings) -> str:
    # The prefix makes each test (and each side-by-side deployment) its own consumer group and changelog.
    return f"{settings.topic_prefix}cme-attendance"


@dataclass
class Emitted:
    key: bytes
    value: bytes


@dataclass
class Handled:
    """What one record leads to: the events to send, and the pupil's new state (None: leave it as it is)."""

    outcome: str
    emitted: list[Emitted]
    state: bytes | None


class MarkHandler:
    """Decode, apply and encode one record: everything the agent does apart from the I/O (benchmarked)."""

    def __init__(self, engine: AttendanceEngine) -> None:
        self.engine = engine

    def handle(self, key: bytes, value: bytes, stored: bytes | None) -> Handled:
        mark = AttendanceMark.model_validate_json(value)
        bind_event(mark)
        if key != mark.payload.upn.encode():
            # The table is partitioned like the topic: a mark keyed otherwise would split a pupil's state.
            raise ValueError("record key is not the mark's UPN")
        state = PupilAttendance.from_bytes(stored) if stored else PupilAttendance()
        outcome = self.engine.apply(state, SessionMark.from_event(mark))
        emitted = [Emitted(key, encode_event(e)) for e in outcome.events]
        for e in outcome.events:
            metrics.THRESHOLD_EVENTS.labels(e.event_type, str(getattr(e.payload, "rule", ""))).inc()
        changed = outcome.status in ("applied", "unchanged")
        return Handled(outcome.status, emitted, state.to_bytes() if changed else None)


def make_engine(cfg: AttendanceSettings) -> AttendanceEngine:
    rules = AttendanceRules(overrides_dir=cfg.attendance_rules_dir)
    return AttendanceEngine(CalendarRegistry(cfg.calendars_dir), rules)


def create_app(settings: Settings, *, prepare: bool = True) -> faust.App:
    """Build the faust app. With ``prepare`` the topics are created first (a faust worker started before its
    source topic exists never consumes it on Kafka 4, see docs/KAFKA_VERSIONS.md)."""
    cfg = attendance_settings(settings)
    if prepare:
        ensure_topics(cfg, (ATTENDANCE, INTAKE, DEAD_LETTER))
    app = stream_app(cfg, app_id(cfg), cfg.attendance_store, state_dir=f"{cfg.topic_prefix}attendance-faust")
    marks_topic = raw_topic(app, ATTENDANCE.name(cfg))
    intake = raw_topic(app, INTAKE.name(cfg))
    dead_letter = raw_topic(app, DEAD_LETTER.name(cfg))
    # Keys are UPN bytes, values PupilAttendance.to_bytes(): a few hundred bytes to a few KB per pupil.
    # (The app's raw key/value serializers apply to the table's changelog too.)
    table = app.Table(
        STATE_TABLE, default=None, partitions=cfg.topic_partitions, key_type=bytes, value_type=bytes
    )
    handler = MarkHandler(make_engine(cfg))

    @app.agent(marks_topic)
    async def process_marks(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            key: bytes = event.key or b""
            value: bytes = event.value
            started = time.perf_counter()
            try:
                handled = handler.handle(key, value, table.get(key))
            except (ValidationError, ValueError) as exc:
                metrics.MARKS.labels("invalid").inc()
                msg = event.message
                letter = dead_letter_for(
                    service="attendance", topic=msg.topic, partition=msg.partition, offset=msg.offset,
                    key=key, value=value, error=exc,
                )  # fmt: skip
                await dead_letter.send(key=key, value=encode_event(letter))
                log.warning("mark_dead_lettered", offset=msg.offset, partition=msg.partition)
                yield None
                continue
            for out in handled.emitted:
                await intake.send(key=out.key, value=out.value)
            if handled.state is not None:
                table[key] = handled.state
            metrics.MARKS.labels(handled.outcome).inc()
            metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
            if handled.emitted:
                log.info("thresholds_emitted", count=len(handled.emitted), partition=event.message.partition)
            yield None

    return app
